"""A run's creation (services.create_run) in one read of the thread, under its lock
(issue 16): the checks that need the database look only when they must, and the
multitask rules see a run created while the creation waited for the lock."""

import pytest
from django.db import connection

from tests.factories import make_session
from tests.threads.test_run_races import _race
from threads_app import runtime, services
from threads_app.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

# BEGIN, lock thread (+ workflow, budgets), INSERT run, INSERT StateEvent, COMMIT; on
# PostgreSQL the two INSERTs are one statement (core.write_batch)
RUN_CREATE = 4 if connection.vendor == "postgresql" else 5


@pytest.fixture
def thread(alice, monkeypatch):
    monkeypatch.setattr(services, "enqueue", lambda *args, **kwargs: None)
    return services.create_thread(make_session(alice), services.resolve_workflow("pipeline"))


def test_a_run_on_a_thread_that_has_run_is_created_in_five_statements(
    thread, django_assert_max_num_queries
):
    runtime.execute_run(services.create_run(thread, input={"steps": 1}).pk)

    with django_assert_max_num_queries(RUN_CREATE):
        run = services.create_run(thread, input={"steps": 1})
    with django_assert_max_num_queries(RUN_CREATE):
        services.create_run(thread.pk, input={"steps": 1})  # by its id too

    assert run.status == Run.Status.PENDING
    assert run.kwargs["stream_mode"] == ["values"]


def test_required_input_keys_are_asked_of_the_first_run_only(thread, django_assert_max_num_queries):
    with pytest.raises(services.InvalidRun, match="missing required key"):
        services.create_run(thread, input={"delay_s": 0})
    runtime.execute_run(services.create_run(thread, input={"steps": 1}).pk)

    # Refused by the first run's check, accepted once the thread has a checkpoint: one
    # statement more (the checkpoint looked for).
    with django_assert_max_num_queries(RUN_CREATE + 1):
        run = services.create_run(thread, input={"delay_s": 0})
    assert run.input == {"delay_s": 0}
    with pytest.raises(services.InvalidRun, match="unknown key"):
        services.create_run(thread, input={"stepz": 1})


def test_a_reject_waiting_for_the_lock_sees_the_run_created_meanwhile(thread):
    first, second = _race(
        lambda: services.create_run(thread, input={"steps": 1}, multitask_strategy="reject"),
        lambda: services.create_run(thread, input={"steps": 1}, multitask_strategy="reject"),
    )

    assert isinstance(first, Run), first
    assert isinstance(second, services.RunRejected), second
    assert list(Run.objects.filter(thread=thread).values_list("pk", flat=True)) == [first.pk]


def test_a_reject_on_a_busy_thread_writes_nothing_and_names_the_run(
    thread, django_assert_max_num_queries
):
    first = services.create_run(thread, input={"steps": 1})

    # The look for an active run is in the statement that would write the new one.
    rejected = pytest.raises(services.RunRejected, match=str(first.pk))
    with rejected, django_assert_max_num_queries(RUN_CREATE + 1):  # and the run named
        services.create_run(thread, input={"steps": 1}, multitask_strategy="reject")
    assert list(Run.objects.filter(thread=thread).values_list("pk", flat=True)) == [first.pk]


def test_an_interrupt_cancels_the_pending_runs_before_it(thread):
    waiting = [services.create_run(thread, input={"steps": 1}) for _ in range(2)]
    run = services.create_run(thread, input={"steps": 1}, multitask_strategy="interrupt")

    statuses = Run.objects.filter(pk__in=[r.pk for r in waiting]).values_list("status", flat=True)
    assert set(statuses) == {Run.Status.INTERRUPTED}
    assert Run.objects.get(pk=run.pk).status == Run.Status.PENDING


def test_a_gone_thread_is_not_found(thread):
    from core.state import EntityNotFound

    services.delete_thread(thread.pk)
    with pytest.raises(EntityNotFound):
        services.create_run(thread, input={"steps": 1})
