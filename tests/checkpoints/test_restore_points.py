"""A restore point names the thread's latest root checkpoint when the thread starts
running, found in the same INSERT."""

import pytest

from checkpoints_app.models import Checkpoint, RestorePoint
from checkpoints_app.saver import DjangoSaver
from tests.counts import writes
from tests.factories import make_session, make_thread, make_workflow
from threads_app import registry
from threads_app import services as threads

# The graph writes its checkpoints from threads of its own: they must see the thread.
pytestmark = pytest.mark.django_db(transaction=True)


def test_it_names_the_latest_root_checkpoint(alice, django_assert_num_queries):
    thread = make_thread(make_session(alice), make_workflow("pipeline"))
    graph = registry.load_graph("pipeline", {}, checkpointer=DjangoSaver())
    config = {"configurable": {"thread_id": str(thread.pk)}}
    graph.invoke({"steps": 2}, config)
    latest = graph.get_state(config).config["configurable"]["checkpoint_id"]
    assert Checkpoint.objects.filter(thread_id=str(thread.pk)).count() > 1

    # BEGIN, load, write, aggregate, restore point, StateEvent, COMMIT
    with django_assert_num_queries(3 + writes(4)):
        threads.mark_thread_running(thread.pk)

    [point] = RestorePoint.objects.filter(thread_id=thread.pk)
    assert (point.checkpoint_ns, point.checkpoint_id) == ("", latest)


def test_a_thread_without_checkpoints_has_none(alice):
    thread = make_thread(make_session(alice), make_workflow("pipeline"))

    threads.mark_thread_running(thread.pk)

    [point] = RestorePoint.objects.filter(thread_id=thread.pk)
    assert point.checkpoint_id == ""
