"""Serve Statehouse in one process: the ASGI server plus an in-process Celery worker."""

import logging
import os

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand

from config.celery import app as celery_app
from core.worker import EmbeddedWorker

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Start the ASGI server and, unless --no-worker, a Celery worker thread "
        "(embedded mode: memory:// broker, in-memory channel layer)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--no-worker", action="store_true", help="Do not start the in-process worker."
        )
        parser.add_argument("--worker-concurrency", type=int, default=2)

    def handle(self, *args, host, port, no_worker, worker_concurrency, **options):
        worker = None
        if not no_worker:
            worker = EmbeddedWorker(celery_app, concurrency=worker_concurrency)
            worker.start()
        mode = "embedded" if settings.CELERY_BROKER_URL.startswith("memory://") else "production"
        self.stdout.write(f"Statehouse ({mode} mode) at http://{host}:{port}/", ending="\n")
        self.stdout.flush()
        try:
            uvicorn.run(
                "config.asgi:application",
                host=host,
                port=port,
                lifespan="on",
                log_level=os.environ.get("UVICORN_LOG_LEVEL", "info"),
                ws_ping_interval=20,
            )
        finally:
            if worker is not None:
                worker.stop()
