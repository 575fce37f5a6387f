"""threads_app.lifecycle: what a run's start, requeue and end, and a state written
outside a run, make of the run and its thread (statuses, values, interrupts, timestamps,
and the history rows the state manager writes for them)."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import transaction

from core import state
from core.thread_state import MAX_THREAD_VALUES_BYTES, cached_values, written_state
from core.time import now
from history_app.models import StateEvent
from tests.factories import make_session, make_thread, make_workflow
from threads_app import lifecycle
from threads_app.lifecycle import Outcome
from threads_app.models import Run, Thread

IDLE, BUSY = Thread.Status.IDLE, Thread.Status.BUSY
INTERRUPTED, ERROR = Thread.Status.INTERRUPTED, Thread.Status.ERROR
AN_INTERRUPT = {"id": "i1", "value": {"question": "ok?"}, "task_id": "t1"}
BIG = {"blob": "x" * (MAX_THREAD_VALUES_BYTES + 1)}
TRUNCATED = {"__truncated__": True, "note": "too large to cache; read the checkpoint"}


# --- the rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "outcome, interrupts, pending, expected",
    [
        (Outcome.SUCCESS, [], False, IDLE),
        (Outcome.SUCCESS, [AN_INTERRUPT], False, INTERRUPTED),
        (Outcome.SUCCESS, [], True, INTERRUPTED),  # stopped before a node (interrupt_before)
        (Outcome.ERROR, [AN_INTERRUPT], True, ERROR),
        (Outcome.TIMEOUT, [], False, ERROR),
        (Outcome.INTERRUPT, [], True, IDLE),  # cancelled: only an interrupt waits
        (Outcome.INTERRUPT, [AN_INTERRUPT], False, INTERRUPTED),
        (Outcome.ROLLBACK, [], False, IDLE),
    ],
)
def test_the_thread_status_follows_the_outcome_interrupts_and_pending_nodes(
    outcome, interrupts, pending, expected
):
    assert lifecycle.thread_status(outcome, interrupts, pending) == expected


def test_each_outcome_has_its_run_status_and_a_cancel_is_named_by_its_action():
    assert {outcome: lifecycle.RUN_STATUS[outcome] for outcome in Outcome} == {
        Outcome.SUCCESS: Run.Status.SUCCESS,
        Outcome.ERROR: Run.Status.ERROR,
        Outcome.TIMEOUT: Run.Status.TIMEOUT,
        Outcome.INTERRUPT: Run.Status.INTERRUPTED,
        Outcome.ROLLBACK: Run.Status.INTERRUPTED,
    }
    # The runtime passes a cancel's action as it was requested (a plain string).
    assert lifecycle.run_end("rollback").run_status == Run.Status.INTERRUPTED


def test_a_success_leaves_the_values_as_result_and_completed_at():
    moment = now()
    changes = lifecycle.thread_after_run(Outcome.SUCCESS, "", {"n": 1}, [], False, moment)
    assert changes == {
        "values": {"n": 1},
        "status": IDLE,
        "interrupts": [],
        "result": {"n": 1},
        "completed_at": moment,
    }


def test_a_success_at_an_interrupt_keeps_it_and_completes_nothing():
    changes = lifecycle.thread_after_run(Outcome.SUCCESS, "", {}, [AN_INTERRUPT], False, now())
    assert changes == {"values": {}, "status": INTERRUPTED, "interrupts": [AN_INTERRUPT]}


@pytest.mark.parametrize("outcome", [Outcome.ERROR, Outcome.TIMEOUT])
def test_an_error_or_a_timeout_records_the_reason_and_failed_at(outcome):
    moment = now()
    changes = lifecycle.thread_after_run(outcome, "boom", {}, [AN_INTERRUPT], False, moment)
    assert changes == {
        "values": {},
        "status": ERROR,
        "error": "boom",
        "failed_at": moment,
        "interrupts": [],
    }


def test_a_cancel_keeps_the_interrupts_and_no_timestamp():
    changes = lifecycle.thread_after_run(Outcome.INTERRUPT, "x", {}, [AN_INTERRUPT], True, now())
    assert changes == {"values": {}, "status": INTERRUPTED, "interrupts": [AN_INTERRUPT]}


def test_values_are_cached_as_json_up_to_the_cap():
    assert cached_values({"when": now().date(), "items": (1, 2)})["items"] == [1, 2]
    at_the_cap = {"blob": "x" * (MAX_THREAD_VALUES_BYTES - 20)}
    assert cached_values(at_the_cap) == at_the_cap
    assert cached_values(BIG) == TRUNCATED


def test_a_result_past_the_cap_is_the_truncation_note_too():
    changes = lifecycle.thread_after_run(Outcome.SUCCESS, "", BIG, [], False, now())
    assert changes["values"] == changes["result"] == TRUNCATED


@pytest.mark.parametrize(
    "interrupts, pending, keep_error, expected",
    [
        ([], False, False, IDLE),
        ([AN_INTERRUPT], False, False, INTERRUPTED),
        ([], True, False, INTERRUPTED),
        ([], False, True, None),  # an error stays while nothing waits
        ([AN_INTERRUPT], False, True, INTERRUPTED),
    ],
)
def test_a_state_written_outside_a_run_waits_or_is_idle(interrupts, pending, keep_error, expected):
    changes = written_state(BIG, interrupts, pending, keep_error=keep_error)
    assert changes["values"] == TRUNCATED
    assert changes["interrupts"] == interrupts
    assert changes.get("status") == expected


def test_the_interrupts_of_a_snapshot_are_kept_with_their_task():
    item = SimpleNamespace(id="i1", value={"question": "ok?"})
    task = SimpleNamespace(id="t1", interrupts=(item,))
    snapshot = SimpleNamespace(tasks=(task, SimpleNamespace(id="t2", interrupts=())))
    assert lifecycle.snapshot_interrupts(snapshot) == [AN_INTERRUPT]


@pytest.mark.parametrize("status, copied", [(BUSY, IDLE), (INTERRUPTED, INTERRUPTED)])
def test_a_copy_starts_with_the_values_interrupts_and_status_never_busy(status, copied):
    source = Thread(status=status, values={"n": 1}, interrupts=[AN_INTERRUPT])
    assert lifecycle.copied_state(source) == {
        "values": {"n": 1},
        "interrupts": [AN_INTERRUPT],
        "status": copied,
    }


# --- the writes ---------------------------------------------------------------------


@pytest.fixture
def thread(alice):
    return make_thread(make_session(alice), make_workflow("pipeline"))


@pytest.fixture
def run(thread):
    return state.create_state("run", {"thread": thread, "workflow": thread.workflow})


def _fresh(obj):
    return type(obj).objects.get(pk=obj.pk)


def _events(obj):
    return list(
        StateEvent.objects.filter(entity_id=obj.pk, kind="updated")
        .order_by("id")
        .values_list("changed_fields", "actor")
    )


def test_a_claim_makes_the_run_running_with_a_lease_and_the_thread_busy(run, thread):
    state.update_state("thread", thread.pk, {"status": ERROR, "error": "before"})
    before = now()

    claimed = lifecycle.run_started(run, _fresh(thread), "w1", lease_s=30)

    assert claimed.status == Run.Status.RUNNING
    assert (claimed.attempt, claimed.claimed_by) == (1, "w1")
    assert claimed.heartbeat_at == claimed.started_at >= before
    assert claimed.lease_expires_at == claimed.heartbeat_at + timedelta(seconds=30)
    busy = _fresh(thread)
    assert (busy.status, busy.error) == (BUSY, "")
    assert busy.started_at == claimed.started_at
    assert _events(run) == [
        (
            ["status", "attempt", "claimed_by", "lease_expires_at", "heartbeat_at", "started_at"],
            "worker:w1",
        )
    ]
    assert _events(thread)[-1] == (["status", "started_at", "error"], "worker:w1")


def test_a_second_attempt_keeps_the_first_start_and_a_busy_thread_is_not_written(run, thread):
    first = lifecycle.run_started(run, _fresh(thread), "w1", lease_s=30)
    requeued = lifecycle.run_requeued(first, actor="sweeper", error="lost")
    assert (requeued.status, requeued.claimed_by, requeued.lease_expires_at) == (
        Run.Status.PENDING,
        "",
        None,
    )
    assert requeued.error == "lost"
    thread_events = len(_events(thread))

    second = lifecycle.run_started(requeued, _fresh(thread), "w2", lease_s=30)

    assert second.attempt == 2
    assert second.started_at == first.started_at
    assert len(_events(thread)) == thread_events


def _started(run, thread):
    return lifecycle.run_started(run, _fresh(thread), "w1", lease_s=30)


def test_a_success_ends_the_run_and_leaves_the_thread_idle_with_its_result(run, thread):
    current = _started(run, thread)
    end = lifecycle.run_end("success", values={"n": 3})

    lifecycle.run_finished(current, _fresh(thread), end, actor="worker:w1")

    done = _fresh(run)
    assert (done.status, done.error, done.lease_expires_at) == (Run.Status.SUCCESS, "", None)
    assert done.finished_at == end.moment
    idle = _fresh(thread)
    assert (idle.status, idle.values, idle.result, idle.interrupts) == (
        IDLE,
        {"n": 3},
        {"n": 3},
        [],
    )
    assert idle.completed_at == end.moment
    assert _events(run)[-1] == (["status", "finished_at", "lease_expires_at"], "worker:w1")
    assert _events(thread)[-1] == (["values", "status", "result", "completed_at"], "worker:w1")


def test_a_run_stopped_at_an_interrupt_leaves_the_thread_waiting(run, thread):
    current = _started(run, thread)

    lifecycle.run_finished(
        current, _fresh(thread), lifecycle.run_end("success", interrupts=[AN_INTERRUPT])
    )

    assert _fresh(run).status == Run.Status.SUCCESS
    waiting = _fresh(thread)
    assert (waiting.status, waiting.interrupts, waiting.completed_at) == (
        INTERRUPTED,
        [AN_INTERRUPT],
        None,
    )


def test_an_error_ends_run_and_thread_in_error_with_the_reason(run, thread):
    current = _started(run, thread)
    end = lifecycle.run_end("error", "ValueError: boom", values=BIG)

    lifecycle.run_finished(current, _fresh(thread), end)

    failed = _fresh(run)
    assert (failed.status, failed.error) == (Run.Status.ERROR, "ValueError: boom")
    errored = _fresh(thread)
    assert (errored.status, errored.error, errored.values) == (ERROR, "ValueError: boom", TRUNCATED)
    assert errored.failed_at == end.moment


def test_a_timeout_is_the_run_s_own_status(run, thread):
    lifecycle.run_finished(
        _started(run, thread), _fresh(thread), lifecycle.run_end("timeout", "timed out")
    )
    assert _fresh(run).status == Run.Status.TIMEOUT
    assert _fresh(thread).status == ERROR


def test_a_rollback_deletes_the_run_and_leaves_the_thread_idle(run, thread):
    lifecycle.run_finished(
        _started(run, thread), _fresh(thread), lifecycle.run_end("rollback", "cancelled")
    )
    assert not Run.objects.filter(pk=run.pk).exists()
    assert _fresh(thread).status == IDLE


def test_a_stale_run_is_not_finished(run, thread):
    stale = _fresh(run)  # the version before the claim
    _started(run, thread)
    # (The conflict marks the caller's transaction for rollback: the test's is outside.)
    with pytest.raises(state.StateConflict), transaction.atomic():
        lifecycle.run_finished(stale, _fresh(thread), lifecycle.run_end("success"))
    assert _fresh(run).status == Run.Status.RUNNING
    assert _fresh(thread).status == BUSY


def test_a_run_out_of_attempts_gives_up_with_its_thread(run, thread):
    state.update_state("run", run.pk, {"attempt": 3, "error": "OperationalError: gone"})

    reason = lifecycle.run_gave_up(_fresh(run))

    assert reason == "gave up after 3 attempt(s): OperationalError: gone"
    failed = _fresh(run)
    assert (failed.status, failed.error, failed.claimed_by) == (Run.Status.ERROR, reason, "")
    assert failed.finished_at is not None
    errored = _fresh(thread)
    assert (errored.status, errored.error) == (ERROR, reason)
    assert errored.failed_at is not None
    assert _events(thread)[-1] == (["status", "error", "failed_at"], "sweeper")


def test_a_force_failed_run_asks_its_worker_to_stop_and_leaves_the_thread_to_the_caller(
    run, thread
):
    failed = lifecycle.run_failed(_started(run, thread), "stuck", actor="user:staff")

    assert (failed.status, failed.error, failed.cancel_requested) == (
        Run.Status.ERROR,
        "stuck",
        "interrupt",
    )
    assert (failed.claimed_by, failed.lease_expires_at) == ("", None)
    assert _fresh(thread).status == BUSY


def test_a_pending_run_cancelled_says_so_and_leaves_the_thread(run, thread):
    cancelled = lifecycle.run_cancelled(run, "interrupt")

    assert cancelled.status == Run.Status.INTERRUPTED
    assert cancelled.error == "cancelled (interrupt) before it started"
    assert cancelled.cancel_requested == "interrupt"
    assert cancelled.finished_at is not None
    assert _events(thread) == []


def test_the_thread_helpers_set_status_and_timestamps(thread):
    before = now()
    assert lifecycle.thread_busy(thread.pk).started_at >= before
    finished = lifecycle.thread_finished(thread.pk, {"answer": 42})
    assert (finished.status, finished.result) == (IDLE, {"answer": 42})
    assert finished.completed_at >= before
    failed = lifecycle.thread_failed(thread.pk, "boom")
    assert (failed.status, failed.error) == (ERROR, "boom")
    assert failed.failed_at >= before


def test_a_written_state_keeps_an_error_unless_it_waits(thread):
    lifecycle.thread_failed(thread.pk, "boom")

    lifecycle.state_written(_fresh(thread), {"n": 1}, [], False)
    assert (_fresh(thread).status, _fresh(thread).values) == (ERROR, {"n": 1})

    lifecycle.state_written(_fresh(thread), {"n": 2}, [AN_INTERRUPT], False, actor="user:x")
    waiting = _fresh(thread)
    assert (waiting.status, waiting.interrupts) == (INTERRUPTED, [AN_INTERRUPT])
    assert _events(thread)[-1] == (["values", "interrupts", "status"], "user:x")

    lifecycle.state_written(waiting, BIG, [], False)
    assert (_fresh(thread).status, _fresh(thread).values) == (IDLE, TRUNCATED)


def test_a_seeded_thread_caches_its_first_values_and_says_where_they_came_from(thread):
    seeded = lifecycle.thread_seeded(thread, {"messages": [{"role": "user"}]})

    assert seeded.values == {"messages": [{"role": "user"}]}
    assert seeded.metadata["started_from_session_context"] is True
    assert seeded.metadata["topic"] == "refund"
    assert _events(thread)[-1] == (["values", "metadata"], "system")
