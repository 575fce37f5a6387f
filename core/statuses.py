"""The status vocabularies of threads and runs, in the kernel so that every app can
import them (``history_app`` and ``checkpoints_app`` never import ``threads_app``).

They follow LangGraph Server: a thread is ``idle|busy|interrupted|error`` as the SDK
sees it ("busy" is the seed's "running"); a run's ``interrupted`` means cancelled (a
graph's ``interrupt()`` ends its run as ``success`` and leaves the thread interrupted).
"""

from django.db import models


class ThreadStatus(models.TextChoices):
    IDLE = "idle"
    BUSY = "busy"
    INTERRUPTED = "interrupted"
    ERROR = "error"


class RunStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"  # cancelled; a graph's interrupt() ends as success


# Threads that are not done: running, or waiting for a human.
ACTIVE_THREAD_STATUSES = (ThreadStatus.BUSY, ThreadStatus.INTERRUPTED)
FINAL_RUN_STATUSES = frozenset(
    {RunStatus.SUCCESS, RunStatus.ERROR, RunStatus.TIMEOUT, RunStatus.INTERRUPTED}
)
