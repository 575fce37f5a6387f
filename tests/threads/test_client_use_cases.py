"""The use cases behind the API's creates, copies and edits (threads_app.services), called
directly: what each writes, what it refuses, and that another owner's object is never
said to exist."""

import uuid
from unittest import mock

import pytest

from checkpoints_app.models import Checkpoint
from core import state
from sessions_app.models import Session
from sessions_app.services import SessionNotFound
from tests.factories import make_session
from threads_app import services
from threads_app.errors import InvalidRun
from threads_app.models import Run, Thread, Workflow

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def no_broker():
    with mock.patch.object(services, "enqueue"):
        yield


def _pipeline_thread(owner):
    return services.create_thread(make_session(owner), services.resolve_workflow("pipeline"))


def _checkpoints(thread) -> int:
    return Checkpoint.objects.filter(thread_id=str(thread.pk)).count()


# --- create_assistant -----------------------------------------------------------------


def test_create_assistant_makes_the_users_assistant_with_its_first_version(alice):
    workflow = services.create_assistant(alice, "chat", metadata={"team": "a"})

    assert workflow.owner == alice
    assert (workflow.name, workflow.description) == ("chat", "")
    assert workflow.metadata == {"team": "a"}
    assert list(workflow.versions.values_list("version", flat=True)) == [1]


def test_create_assistant_with_an_id_that_exists(alice, bob):
    mine = services.create_assistant(alice, "chat", assistant_id=str(uuid.uuid4()))

    same = services.create_assistant(alice, "chat", str(mine.pk), if_exists="do_nothing")
    assert same.pk == mine.pk
    with pytest.raises(services.AlreadyExists, match="already exists"):
        services.create_assistant(alice, "chat", str(mine.pk))
    with pytest.raises(services.WorkflowNotFound, match=f"Assistant {mine.pk} not found"):
        services.create_assistant(bob, "chat", str(mine.pk), if_exists="do_nothing")
    assert Workflow.objects.filter(owner__isnull=False).count() == 1


# --- create_thread_for ----------------------------------------------------------------


def test_create_thread_for_opens_a_session_when_none_is_named(alice):
    thread = services.create_thread_for(alice, metadata={"graph_id": "chat", "topic": "x"})

    assert thread.session.owner == alice
    assert thread.session.metadata == {"created_by": "api"}
    assert thread.workflow.graph_id == "chat"
    assert thread.metadata == {"graph_id": "chat", "topic": "x"}


def test_create_thread_for_joins_the_named_session_and_keeps_its_id_out_of_metadata(alice):
    session = make_session(alice)

    thread = services.create_thread_for(alice, metadata={"session_id": str(session.pk)})

    assert thread.session_id == session.pk
    assert "session_id" not in thread.metadata


@pytest.mark.parametrize("named", ["bobs", "unknown", "not-a-uuid"])
def test_create_thread_for_refuses_a_session_the_user_may_not_see(alice, bob, named):
    wanted = {
        "bobs": lambda: str(make_session(bob).pk),
        "unknown": lambda: str(uuid.uuid4()),
        "not-a-uuid": lambda: "nope",
    }[named]()
    sessions = Session.objects.count()

    with pytest.raises(SessionNotFound, match=f"Session {wanted} not found"):
        services.create_thread_for(alice, metadata={"session_id": wanted})
    assert Session.objects.count() == sessions
    assert not Thread.objects.exists()


def test_create_thread_for_with_an_id_that_exists(alice, bob):
    thread_id = str(uuid.uuid4())
    thread = services.create_thread_for(alice, thread_id)

    again = services.create_thread_for(alice, thread_id, if_exists="do_nothing")
    assert again.pk == thread.pk
    with pytest.raises(services.AlreadyExists, match=f"Thread {thread_id} already exists"):
        services.create_thread_for(alice, thread_id)
    with pytest.raises(services.ThreadNotFound, match=f"Thread {thread_id} not found"):
        services.create_thread_for(bob, thread_id, if_exists="do_nothing")


def test_create_thread_for_writes_nothing_when_its_first_state_is_refused(alice):
    sessions = Session.objects.count()

    with pytest.raises(InvalidRun, match="only with a workflow"):
        services.create_thread_for(alice, from_session_context=True)

    assert Session.objects.count() == sessions
    assert not Thread.objects.exists()


# --- patch, state, copy -----------------------------------------------------------------


def test_patch_thread_merges_the_metadata_and_never_stores_a_session_id(alice):
    thread = services.create_thread(make_session(alice), metadata={"a": 1, "b": 2})

    patched = services.patch_thread(thread.pk, {"b": 3, "session_id": "x"}, actor=alice)

    assert patched.metadata == {"a": 1, "b": 3}
    with pytest.raises(services.ThreadNotFound):
        services.patch_thread(uuid.uuid4(), {"a": 1})


def test_update_thread_state_writes_a_checkpoint_unless_the_thread_is_busy(alice):
    thread = _pipeline_thread(alice)

    written = services.update_thread_state(thread.pk, {"steps": 3}, actor=alice)

    assert written["checkpoint"]["thread_id"] == str(thread.pk)
    thread.refresh_from_db()
    assert thread.values["steps"] == 3
    assert _checkpoints(thread) == 1
    Thread.objects.filter(pk=thread.pk).update(status=Thread.Status.BUSY)
    with pytest.raises(services.StillActive, match="busy with a run"):
        services.update_thread_state(thread.pk, {"steps": 4})
    assert _checkpoints(thread) == 1
    with pytest.raises(services.ThreadNotFound):
        services.update_thread_state(uuid.uuid4(), {"steps": 4})


def test_copy_thread_copies_its_state_and_checkpoints_and_is_never_busy(alice):
    thread = _pipeline_thread(alice)
    services.update_thread_state(thread.pk, {"steps": 3}, actor=alice)
    Thread.objects.filter(pk=thread.pk).update(status=Thread.Status.BUSY)
    thread.refresh_from_db()

    copy = services.copy_thread(thread, actor=alice)

    assert copy.pk != thread.pk
    assert (copy.session_id, copy.workflow_id) == (thread.session_id, thread.workflow_id)
    assert copy.metadata == thread.metadata | {"copied_from": str(thread.pk)}
    assert copy.values == thread.values
    assert copy.status == Thread.Status.IDLE
    assert _checkpoints(copy) == _checkpoints(thread) == 1


# --- prune, cancel, delete --------------------------------------------------------------


def test_prune_threads_deletes_them_or_keeps_their_latest_checkpoint(alice):
    deleted, kept = _pipeline_thread(alice), _pipeline_thread(alice)
    for thread in (deleted, kept):
        for steps in (1, 2, 3):
            services.update_thread_state(thread.pk, {"steps": steps})

    assert services.prune_threads([deleted.pk, uuid.uuid4()], "delete") == 1
    assert services.prune_threads([kept.pk], "keep_latest") == 1

    assert not Thread.objects.filter(pk=deleted.pk).exists()
    assert _checkpoints(kept) == 1


def test_cancel_runs_counts_the_runs_it_cancelled(alice, no_broker):
    thread = _pipeline_thread(alice)
    pending = [services.create_run(thread, input={"steps": 1}) for _ in range(2)]
    gone = services.create_run(thread, input={"steps": 1})
    state.delete_state("run", gone.pk)

    cancelled = services.cancel_runs([run.pk for run in pending] + [gone.pk], actor=alice)

    assert cancelled == 2
    assert set(Run.objects.values_list("status", flat=True)) == {Run.Status.INTERRUPTED}
    assert services.cancel_runs([pending[0].pk]) == 0  # finished already


def test_delete_run_refuses_a_run_that_has_not_finished(alice, no_broker):
    run = services.create_run(_pipeline_thread(alice), input={"steps": 1})

    with pytest.raises(services.StillActive, match=f"Run {run.pk} is pending; cancel it first"):
        services.delete_run(run.pk)
    services.cancel_run(run.pk)
    services.delete_run(run.pk, actor=alice)

    assert not Run.objects.filter(pk=run.pk).exists()
    with pytest.raises(state.EntityNotFound):
        services.delete_run(run.pk)
