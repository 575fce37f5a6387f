"""Celery tasks: thin wrappers over threads_app.runtime."""

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown

from threads_app import broker, runtime

_sweeper: runtime.Sweeper | None = None


@shared_task(
    name=broker.EXECUTE_RUN,
    acks_late=True,
    reject_on_worker_lost=True,
    # A claim that failed on a transient database error is sent again after 1, 2, 4...
    # seconds (at most 30, with full jitter); past that the sweeper's resend remains.
    autoretry_for=(runtime.DatabaseUnavailable,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=20,
)
def execute_run(run_id: str) -> str:
    return runtime.execute_run(run_id)


@worker_ready.connect(dispatch_uid="threads_app.start_sweeper")
def start_sweeper(**kwargs) -> None:
    """Sweep at worker start (runs a dead worker left behind), then periodically."""
    global _sweeper
    if _sweeper is None or not _sweeper.is_alive():
        _sweeper = runtime.Sweeper()
        _sweeper.start()
    broker.start_watch()


@worker_shutdown.connect(dispatch_uid="threads_app.stop_sweeper")
def stop_sweeper(**kwargs) -> None:
    if _sweeper is not None:
        _sweeper.stop()
    broker.stop_watch()
