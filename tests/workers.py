"""Real Celery workers for tests.

Embedded mode: a worker thread in this process on the memory:// broker. Production mode
(REDIS_URL set): a `celery -A config worker` process on Redis, against the test database.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

from config.celery import app as celery_app
from core.worker import EmbeddedWorker

ROOT = Path(__file__).resolve().parents[1]


def worker_env(db_name: str) -> dict:
    environ = dict(os.environ)
    url = settings.DATABASE_URL.rsplit("/", 1)[0] + "/" + db_name
    environ.update(
        DATABASE_URL=url,
        STATEHOUSE_QUEUE=settings.CELERY_TASK_DEFAULT_QUEUE,
        PYTHONUNBUFFERED="1",
    )
    return environ


class WorkerProcess:
    def __init__(self, environ: dict, log_path: Path, concurrency: int = 2):
        self.environ = environ
        self.log_path = log_path
        self.concurrency = concurrency
        self.process: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        self.log = open(self.log_path, "a")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(self.concurrency),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=self.environ,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "ready." in self.log_path.read_text():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("worker did not start:\n" + self.log_path.read_text()[-3000:])

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(5)
        self.log.close()


def start_session_worker(tmp_path_factory):
    """A thread worker (memory:// broker) or a worker process (Redis), for the session."""
    if settings.CELERY_BROKER_URL.startswith("memory://"):
        # No sweeper beside the tests' worker thread: tests that need a sweep call
        # runtime.sweep() themselves (the production pass's worker processes do sweep).
        worker = EmbeddedWorker(celery_app, concurrency=2, announce=False)
        worker.start()
        return worker
    from django.db import connection

    with celery_app.connection_for_write() as conn:
        celery_app.control.purge(connection=conn)
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    return WorkerProcess(worker_env(connection.settings_dict["NAME"]), log_path).start()
