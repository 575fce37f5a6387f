"""Runs executed by the server process whose request waits for them (``runs/wait``).

Why: a waited run otherwise goes from the server to the broker, to a worker, and back
through the channel layer, each hop paid in CPU on both sides (``bench/api.py``, "CPU per
1-step run"). Executed here, in a thread of the server's, it is claimed, leased, kept
alive by its heartbeat, checkpointed, logged and finished exactly as in a worker (this is
``runtime.execute_run``); only the process differs, as in LangGraph Server, which runs
its queue in its API processes.

What keeps it durable is the lease, as for a worker: if this process dies mid-run, the
lease expires and a worker's sweeper requeues the run, which resumes from its last
checkpoint; an attempt that meets a transient database error is put back to pending and
sent to the workers (``runtime.release_for_retry``). A run that cannot start here at once
(its thread busy with another run, say) is sent to the workers. Either way the request
then follows the run as it follows any other.

A server process executes at most STATEHOUSE_SERVER_RUN_SLOTS runs at once, in threads
of its own (not the event loop's executor, which other work needs): with every slot
taken, a waited run goes to the workers. ``STATEHOUSE_WAITED_RUNS_IN_SERVER = False``
sends every run to the workers.
"""

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections, connection

from threads_app import runtime
from threads_app.services import enqueue

logger = logging.getLogger(__name__)

# execute_here's answer when the run was sent to the workers instead.
SENT = "sent"


_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_taken = 0


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


def start(run_id) -> Future:
    """Execute the run (created without being sent, a slot reserved for it) in one of
    this process's run threads; the future's result is execute_here's."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(thread_name_prefix="statehouse-run")
    execution = _executor.submit(execute_here, run_id)
    execution.add_done_callback(lambda _: release())
    return execution


def execute_here(run_id) -> str:
    """Claim and execute the pending run ``run_id`` in this thread (created without being
    sent to the workers). Returns its final status as ``runtime.execute_run`` does, or
    SENT when it did not start here and is the workers' to run.

    A run not claimed ("skipped") needs no sending: queued behind another run of its
    thread, it is sent when that one finishes (``services.start_next_run``), as a run
    created while its thread is busy always is; cancelled or deleted first, there is
    nothing to run. A claim that met a database error is sent (a worker's task retries
    it), as the Celery task's retry would; a second sending is harmless (the claim is a
    compare-and-set)."""
    close_old_connections()
    try:
        try:
            outcome = runtime.execute_run(run_id)
        except runtime.DatabaseUnavailable:
            enqueue(run_id)
            return SENT
        except Exception:
            # Not the graph's error (execute_run records those): the run's lease runs out
            # and the sweeper gives it to a worker; the request follows it meanwhile.
            logger.exception("run %s: executing it in the server failed", run_id)
            return SENT
        return SENT if outcome == "skipped" else outcome
    finally:
        connection.close()  # back to the pool: this thread serves other runs later
