"""A Celery worker running in a thread of the current process (embedded mode, tests).

It is a plain ``WorkController`` (no signal handlers, no remote control), so it can live
beside the ASGI server and share the ``memory://`` broker with the code that enqueues.
A plain ``WorkController`` sends neither ``worker_ready`` nor ``worker_shutdown`` (the
``celery worker`` program does); this one sends both, so what a worker starts beside its
tasks (the runtime's sweeper) runs in embedded mode too.
"""

import logging
import socket
import threading

from celery import Celery, signals
from celery.worker import WorkController, state

logger = logging.getLogger(__name__)


class EmbeddedWorker:
    def __init__(
        self, app: Celery, concurrency: int = 2, pool: str = "threads", announce: bool = True
    ):
        self.app = app
        self.concurrency = concurrency
        self.pool = pool
        self.announce = announce  # send worker_ready / worker_shutdown
        self.controller: WorkController | None = None
        self.thread: threading.Thread | None = None

    @property
    def hostname(self) -> str:
        return f"embedded-{threading.get_native_id()}@{socket.gethostname()}"

    def start(self) -> None:
        self.app.set_current()
        self.app.loader.import_default_modules()
        self.controller = WorkController(
            app=self.app,
            hostname=self.hostname,
            concurrency=self.concurrency,
            pool=self.pool,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="INFO",
        )
        self.thread = threading.Thread(
            target=self.controller.start, name="statehouse-worker", daemon=True
        )
        self.thread.start()
        logger.info("embedded Celery worker started (%s, %d)", self.pool, self.concurrency)
        if self.announce:
            signals.worker_ready.send(sender=self.controller)

    def stop(self, timeout: float = 10.0) -> None:
        if self.controller is None or self.thread is None:
            return
        if self.announce:
            signals.worker_shutdown.send(sender=self.controller)
        # The worker's consumer loop checks this flag and shuts down warm.
        state.should_terminate = 0
        self.thread.join(timeout)
        state.should_terminate = None
        self.controller = self.thread = None
