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

``STATEHOUSE_WAITED_RUNS_IN_SERVER = False`` sends every run to the workers.
"""

import logging

from django.conf import settings
from django.db import close_old_connections, connection

from threads_app import runtime
from threads_app.services import enqueue

logger = logging.getLogger(__name__)

# execute_here's answer when the run was sent to the workers instead.
SENT = "sent"


def enabled() -> bool:
    return settings.STATEHOUSE_WAITED_RUNS_IN_SERVER


def execute_here(run_id) -> str:
    """Claim and execute the pending run ``run_id`` in this thread (created without being
    sent to the workers). Returns its final status as ``runtime.execute_run`` does, or
    SENT when it could not start here (not claimable now, or the claim met a database
    error) and was sent to the workers; a second sending is harmless (the claim is a
    compare-and-set)."""
    close_old_connections()
    try:
        try:
            outcome = runtime.execute_run(run_id)
        except runtime.DatabaseUnavailable:
            outcome = "skipped"
        except Exception:
            # Not the graph's error (execute_run records those): the run's lease runs out
            # and the sweeper gives it to a worker; the request follows it meanwhile.
            logger.exception("run %s: executing it in the server failed", run_id)
            return SENT
        if outcome == "skipped":
            enqueue(run_id)
            return SENT
        return outcome
    finally:
        connection.close()  # back to the pool: this thread serves other runs later
