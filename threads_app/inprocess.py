"""Runs executed by the server process whose request waits for them (``runs/wait``).

Why: a waited run otherwise goes from the server to the broker, to a worker, and back
through the channel layer, each hop paid in CPU on both sides (``bench/api.py``, "CPU per
1-step run"). Executed here, in a thread of the server's, it is leased, kept alive by
its heartbeat, checkpointed, logged and finished exactly as in a worker (this is
``runtime.execute_claimed``); only the process differs, as in LangGraph Server, which
runs its queue in its API processes.

What keeps it durable is the lease, as for a worker: if this process dies mid-run, the
lease expires and a worker's sweeper requeues the run, which resumes from its last
checkpoint; an attempt that meets a transient database error is put back to pending and
sent to the workers (``runtime.release_for_retry``).

A run that can start at once is created already claimed, running, in the transaction
that creates it (``services.create_run``'s ``claim_for``): no claim of its own, no
pending state. One that cannot (its thread busy with another run, say) is created
pending and queued: the end of the run before it sends it to the workers. Either way
the request then follows the run as it follows any other.

A server process executes at most STATEHOUSE_SERVER_RUN_SLOTS runs at once, in threads
of its own (not the event loop's executor, which other work needs): with every slot
taken, a waited run goes to the workers. ``STATEHOUSE_WAITED_RUNS_IN_SERVER = False``
sends every run to the workers.

Each run thread has a database connection of its own, outside Django's pool
(``connections.own_connection``), kept open from one run to the next: a run holds its
connection for as long as it goes, and in the pool (``DB_POOL_MAX``) the runs would take
the connections the process's requests and checkpoint writes wait for. So a process
keeps up to its pool's connections for requests plus one per run slot.
"""

import atexit
import itertools
import logging
import os
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from django.conf import settings
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper

from checkpoints_app.connections import (
    close_if_broken,
    left_in_transaction,
    mark_idle,
    own_connection,
)
from threads_app import runtime
from threads_app.models import Run

logger = logging.getLogger(__name__)

# execute_here's answer when the run did not finish here and is the workers' to run.
SENT = "sent"


_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_taken = 0
_executions = itertools.count(1)
# The run threads' own connections, closed at exit.
_connections: list[BaseDatabaseWrapper] = []


def reserve() -> bool:
    """Take a slot for a run about to be created to be executed here (see start); False
    when none is free or executing here is turned off: the run goes to the workers."""
    global _taken
    slots = settings.STATEHOUSE_SERVER_RUN_SLOTS
    if not settings.STATEHOUSE_WAITED_RUNS_IN_SERVER or slots <= 0:
        return False
    with _lock:
        if _taken >= slots:
            return False
        _taken += 1
        return True


def release() -> None:
    """Give back a slot reserve() took (start gives it back when its run is done)."""
    global _taken
    with _lock:
        _taken -= 1


def claimant() -> str:
    """A worker id for one execution in this process's run threads, to create a run
    claimed by (services.create_run's ``claim_for``): host, process and a number of
    its own, so that no two executions, here or elsewhere, hold the same claim."""
    return f"{socket.gethostname()}:{os.getpid()}:run-{next(_executions)}"


def start(run: Run) -> Future:
    """Execute ``run`` (created claimed by a claimant(), a slot reserved for it) in one
    of this process's run threads; the future's result is execute_here's."""
    global _executor
    with _lock:
        if _executor is None:
            # A thread for every slot, made only as needed: reserve() bounds the runs at
            # once, so a run (running, its lease ticking, from the moment it is created)
            # waits for no thread but one that has just given its slot back.
            _executor = ThreadPoolExecutor(
                max(settings.STATEHOUSE_SERVER_RUN_SLOTS, 1),
                thread_name_prefix="statehouse-run",
                initializer=_own_connection,
            )
    execution = _executor.submit(_execute_in_run_thread, run)
    execution.add_done_callback(lambda _: release())
    return execution


def _own_connection() -> None:
    """A run thread's first act: a database connection of its own (see the module's
    docstring)."""
    wrapper = own_connection()
    with _lock:
        _connections.append(wrapper)


def close_connections() -> None:
    """Close the run threads' connections (at exit)."""
    with _lock:
        wrappers = list(_connections)
    for wrapper in wrappers:
        wrapper.close()


atexit.register(close_connections)


def _execute_in_run_thread(run: Run) -> tuple[str, Run | None]:
    """execute_here in a run thread, on the thread's own connection: checked first only
    when it may be broken (idle a while, an error, the server ended it), and kept open
    afterwards for the thread's next run."""
    close_if_broken(connection)
    try:
        return execute_here(run)
    finally:
        if left_in_transaction(connection):
            connection.close()  # not kept
        mark_idle(connection)


def send_next(pending: tuple | None) -> None:
    """What the finish of a run executed here does with the run queued next on its
    thread (its id and not_before, or None): executes it here too, in another run
    thread, when it is due now and a slot is free, else sends it to the workers
    (services.send_next_run). Such a run is most often a client's next on a thread its
    last run kept busy, waited for by a request of this process or another: the
    request follows it wherever it is executed."""
    from threads_app.services import send_next_run

    if pending is None or pending[0] is None:
        return
    run_id, not_before = pending
    if not_before is not None or not reserve():
        send_next_run(pending)
        return
    try:
        claimed = runtime.claim_run(run_id, claimant())
    except Exception:
        release()
        logger.warning("run %s: claiming it here failed", run_id, exc_info=True)
        runtime.drop_broken_connection()
        send_next_run(pending)  # the workers retry the claim
        return
    if claimed is None:
        # Not to be run now (taken, cancelled, behind another run, out of attempts): a
        # worker's claim would find the same.
        release()
        return
    try:
        start(claimed)
    except RuntimeError:
        # The run threads are shutting down (the process exits): the run's lease runs
        # out and the sweeper gives it to a worker.
        release()
        logger.warning("run %s: claimed but not started here; left to its lease", run_id)


def execute_here(run: Run) -> tuple[str, Run | None]:
    """Execute ``run``, created claimed by ``run.claimed_by``, in this thread: its final
    status and the run as it finished, with its thread (runtime.execute_claimed), or
    (SENT, None) when it did not finish here and is the workers' to finish.

    An attempt that meets a database error is put back to pending and sent to the
    workers (runtime.release_for_retry); an unexpected error leaves the run to its
    lease, which runs out, and the sweeper gives it to a worker. The request follows
    the run meanwhile, as it follows any other."""
    try:
        return runtime.execute_claimed(run, run.claimed_by, send_next)
    except Exception:
        # Not the graph's error (the execution records those).
        logger.exception("run %s: executing it in the server failed", run.pk)
        return SENT, None
