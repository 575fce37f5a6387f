"""How a thread follows its runs and checkpoints: the one place that says what a run's
start, end or requeue, or a written graph state, makes of the run and its thread.

A run is claimed (running, with a lease; its thread busy), put back to pending (its
lease expired, an operator requeued it, a transient error ended its attempt), and ends:

    outcome              run           thread
    success              success       idle (result, completed_at), or interrupted when
                                       the graph stopped at interrupts or nodes to run
    error, timeout       error/timeout error (error, failed_at)
    interrupt, rollback  interrupted   interrupted if it has interrupts, else idle
                         (cancelled)   (a rollback deletes the run)
    gave up, force-fail  error         error (error, failed_at)

Every write goes through the state manager (``core.state``), so each change is
versioned, in the history (StateEvent), announced and pushed. The callers (runtime,
services, graph_state) lock rows, check leases and schedule the next run; these
functions only write, and take everything one change needs, so that a run's start and
its end are each one call.

Thread status, values and interrupts are assigned here and nowhere else in threads_app
(tests/test_architecture.py checks it). The values cap and the status of a state
written outside a run are in ``core.thread_state``, which this module uses: restore and
fork in checkpoints_app write a thread's state by the same rules, and checkpoints_app
may not import threads_app, while threads_app already builds on core. This module
imports only core and threads_app.models, so every other module of the app can import
it without a circle.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from core import state
from core.jsonable import to_jsonable
from core.thread_state import cached_values, waiting_status, written_state
from core.time import now
from threads_app.models import Run, Thread


class Outcome(StrEnum):
    """How a run's execution ended (a cancel is named by its action)."""

    SUCCESS = Run.Status.SUCCESS
    ERROR = Run.Status.ERROR
    TIMEOUT = Run.Status.TIMEOUT
    INTERRUPT = "interrupt"  # cancelled, its checkpoints kept
    ROLLBACK = "rollback"  # cancelled, its checkpoints and the run deleted


RUN_STATUS = {
    Outcome.SUCCESS: Run.Status.SUCCESS,
    Outcome.ERROR: Run.Status.ERROR,
    Outcome.TIMEOUT: Run.Status.TIMEOUT,
    Outcome.INTERRUPT: Run.Status.INTERRUPTED,
    Outcome.ROLLBACK: Run.Status.INTERRUPTED,
}


def snapshot_interrupts(snapshot) -> list[dict[str, Any]]:
    """The interrupts of a LangGraph StateSnapshot's tasks, as the thread keeps them."""
    return [
        {"id": item.id, "value": to_jsonable(item.value), "task_id": task.id}
        for task in snapshot.tasks
        for item in task.interrupts
    ]


def thread_status(outcome: str, interrupts: list, pending: bool) -> Thread.Status:
    """The thread's status once a run ended with ``outcome`` (an Outcome), leaving
    ``interrupts`` and, with ``pending``, nodes still to run."""
    if outcome == Outcome.SUCCESS:
        return waiting_status(interrupts, pending)
    if outcome in (Outcome.ERROR, Outcome.TIMEOUT):
        return Thread.Status.ERROR
    return waiting_status(interrupts, False)  # cancelled: only an interrupt waits


def thread_after_run(
    outcome: str, reason: str, values: Any, interrupts: list, pending: bool, moment
) -> dict[str, Any]:
    """The thread's changes at the end of a run (see the module's table)."""
    values = cached_values(values)
    status = thread_status(outcome, interrupts, pending)
    changes: dict[str, Any] = {"values": values, "status": status}
    if outcome == Outcome.SUCCESS and status == Thread.Status.INTERRUPTED:
        changes |= {"interrupts": interrupts}
    elif outcome == Outcome.SUCCESS:
        changes |= {"interrupts": [], "result": values, "completed_at": moment}
    elif status == Thread.Status.ERROR:
        changes |= {"error": reason, "failed_at": moment, "interrupts": []}
    else:
        changes |= {"interrupts": interrupts}
    return changes


# --- runs ---------------------------------------------------------------------------


def run_started(run: Run, thread: Thread, worker: str, lease_s: float) -> Run:
    """``worker`` claimed the pending ``run``: running, attempt counted, leased for
    ``lease_s`` seconds; its ``thread`` busy (started now, its error cleared) unless it
    already is. The caller holds both rows' locks and read them: both are written in
    one batch of the state manager (changed in place) and not read again."""
    moment = now()
    updates: list[tuple[Any, dict[str, Any]]] = [
        (run, _claimed(run.attempt + 1, run.started_at or moment, worker, lease_s, moment))
    ]
    if thread.status != Thread.Status.BUSY:
        updates.append((thread, _busy(moment)))
    state.update_states(updates, actor=f"worker:{worker}")
    return run


def run_created_running(
    initial: dict[str, Any],
    thread: Thread,
    thread_changes: dict[str, Any],
    worker: str,
    lease_s: float,
    actor: Any = None,
) -> Run:
    """A run created with ``initial`` already claimed by ``worker`` (a server that
    executes it at once, threads_app/inprocess.py): running, its first attempt, leased
    for ``lease_s`` seconds; its ``thread``, read under its lock, given
    ``thread_changes`` and busy. One transaction and one state change per entity: the
    run is never pending."""
    moment = now()
    changes = dict(thread_changes)
    if thread.status != Thread.Status.BUSY:
        changes |= _busy(moment)
    return state.create_state(
        "run",
        initial | _claimed(1, moment, worker, lease_s, moment),
        actor=actor,
        updates=[(thread, changes)] if changes else [],
    )


def _claimed(attempt: int, started_at, worker: str, lease_s: float, moment) -> dict[str, Any]:
    return {
        "status": Run.Status.RUNNING,
        "attempt": attempt,
        "claimed_by": worker,
        "lease_expires_at": moment + timedelta(seconds=lease_s),
        "heartbeat_at": moment,
        "started_at": started_at,
    }


def run_requeued(run: Run, actor: Any = None, error: str | None = None) -> Run:
    """The running ``run`` back to pending without a worker (its lease expired, an
    operator requeued it, or a transient ``error`` ended its attempt)."""
    changes: dict[str, Any] = {
        "status": Run.Status.PENDING,
        "claimed_by": "",
        "lease_expires_at": None,
    }
    if error is not None:
        changes["error"] = error
    return state.update_state("run", run.pk, changes, expected_version=run.version, actor=actor)


@dataclass(frozen=True)
class RunEnd:
    """How a run's execution ended and what that makes of the run and its thread,
    worked out (values serialized and capped) before the transaction that records it."""

    outcome: str
    reason: str
    run_status: Run.Status
    thread_changes: dict[str, Any]
    moment: datetime


def run_end(
    outcome: str,
    reason: str = "",
    values: Any = None,
    interrupts: list | None = None,
    pending: bool = False,
) -> RunEnd:
    """The end of a run's execution with ``outcome`` (an Outcome; ``reason`` for an
    error, a timeout or a cancel), leaving the graph's ``values``, ``interrupts``
    and, with ``pending``, nodes still to run."""
    moment = now()
    changes = thread_after_run(outcome, reason, values or {}, interrupts or [], pending, moment)
    return RunEnd(outcome, reason, RUN_STATUS[outcome], changes, moment)


def run_finished(run: Run, thread: Thread, end: RunEnd, actor: Any = None) -> None:
    """Record ``end``: the run final (deleted for a rollback) and its thread as the
    module's table says. Both as read under their locks (their versions are checked;
    they are written in one batch of the state manager, changed in place, and not read
    again)."""
    run_changes = {
        "status": end.run_status,
        "error": end.reason,
        "finished_at": end.moment,
        "lease_expires_at": None,
    }
    if end.outcome == Outcome.ROLLBACK:
        # As LangGraph Server: a rolled-back run is deleted, as its checkpoints were.
        state.delete_state("run", run.pk, expected_version=run.version, actor=actor)
        state.update_states([(thread, end.thread_changes)], actor=actor)
    else:
        state.update_states([(run, run_changes), (thread, end.thread_changes)], actor=actor)


def run_gave_up(run: Run, actor: Any = "sweeper") -> str:
    """The pending ``run`` used all its attempts: it and its thread end in error.
    Returns the reason recorded."""
    cause = run.error or "the worker running it was lost each time"
    reason = f"gave up after {run.attempt} attempt(s): {cause}"
    state.update_state(
        "run",
        run.pk,
        {"status": Run.Status.ERROR, "error": reason, "finished_at": now(), "claimed_by": ""},
        expected_version=run.version,
        actor=actor,
    )
    thread_failed(run.thread_id, reason, actor=actor)
    return reason


def run_failed(run: Run, reason: str, actor: Any = None) -> Run:
    """An operator ended ``run`` as error; a worker still holding it is asked to stop
    at its next step. Its thread is the caller's to fail (see thread_failed)."""
    return state.update_state(
        "run",
        run.pk,
        {
            "status": Run.Status.ERROR,
            "error": reason,
            "finished_at": now(),
            "claimed_by": "",
            "lease_expires_at": None,
            "cancel_requested": "interrupt",
        },
        expected_version=run.version,
        actor=actor,
    )


def run_cancelled(run: Run, action: str, actor: Any = None) -> Run:
    """The pending ``run`` cancelled (``action``: interrupt or rollback) before a worker
    started it; its thread is not changed."""
    return state.update_state(
        "run",
        run.pk,
        {
            "status": Run.Status.INTERRUPTED,
            "cancel_requested": action,
            "finished_at": now(),
            "error": f"cancelled ({action}) before it started",
        },
        expected_version=run.version,
        actor=actor,
    )


# --- threads ------------------------------------------------------------------------


def _busy(moment) -> dict[str, Any]:
    return {"status": Thread.Status.BUSY, "started_at": moment, "error": ""}


def thread_busy(thread_id, actor: Any = None, expected_version=None) -> Thread:
    """The thread busy: started now, its error cleared."""
    return state.update_state(
        "thread", thread_id, _busy(now()), expected_version=expected_version, actor=actor
    )


def thread_finished(thread_id, result: Any = None, actor: Any = None) -> Thread:
    """The thread idle with ``result``, completed now."""
    return state.update_state(
        "thread",
        thread_id,
        {"status": Thread.Status.IDLE, "result": result, "completed_at": now()},
        actor=actor,
    )


def thread_failed(thread_id, error: str, actor: Any = None) -> Thread:
    """The thread in error with ``error``, failed now."""
    return state.update_state(
        "thread",
        thread_id,
        {"status": Thread.Status.ERROR, "error": error, "failed_at": now()},
        actor=actor,
    )


def thread_seeded(thread: Thread, values: Any, actor: Any = None) -> Thread:
    """The new thread's first state (the session's context) was written: its values
    cached, and its metadata says where they came from."""
    changes = {
        "values": cached_values(values),
        "metadata": thread.metadata | {"started_from_session_context": True},
    }
    return state.update_state("thread", thread.pk, changes, actor=actor)


def state_written(
    thread: Thread, values: Any, interrupts: list, pending: bool, actor: Any = None
) -> Thread:
    """The thread's graph state was written outside a run (an update of its state):
    its values and interrupts cached, interrupted while it waits, idle otherwise; a
    thread in error stays so unless it now waits (core.thread_state.written_state)."""
    keep_error = thread.status == Thread.Status.ERROR
    changes = written_state(values, interrupts, pending, keep_error=keep_error)
    return state.update_state("thread", thread.pk, changes, actor=actor)


def copied_state(source: Thread) -> dict[str, Any]:
    """The fields a copy of ``source`` starts with: its values and interrupts, and its
    status, except that a copy is never busy (no run goes on it)."""
    status = Thread.Status.IDLE if source.status == Thread.Status.BUSY else source.status
    return {"values": source.values, "interrupts": source.interrupts, "status": status}
