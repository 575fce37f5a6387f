"""A worker process keeps its PostgreSQL connections from one run to the next.

Needs PostgreSQL and Redis (the production-mode pass of .ci/run). Celery's Django fixup
closes Django's connection pool after every task in prefork workers, so each run opened
new backends (a fork of the server and a login each); config/celery.py and
CELERY_DB_REUSE_MAX hand a task's connection back to the pool instead.
"""

import time
import uuid
from unittest import mock

import pytest
from django.conf import settings
from django.db import connection

from tests.factories import make_session
from tests.workers import WorkerProcess, worker_env
from threads_app import services
from threads_app.models import Run
from threads_app.tasks import execute_run

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

APP_NAME = f"statehouse-pool-test-{uuid.uuid4().hex[:6]}"
POOL_MAX = 2
RUNS = 8


@pytest.fixture
def production(on_postgres):
    if settings.CELERY_BROKER_URL.startswith("memory://"):
        pytest.skip("needs REDIS_URL (production mode)")


def worker_backends() -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [APP_NAME])
        return {pid for (pid,) in cursor.fetchall()}


def test_a_pooled_worker_reuses_its_connections_between_runs(alice, production, tmp_path):
    queue = f"pool-{uuid.uuid4().hex[:8]}"
    environ = worker_env(connection.settings_dict["NAME"])
    # PGAPPNAME names the worker's backends in pg_stat_activity (libpq reads it).
    environ.update(
        STATEHOUSE_QUEUE=queue, DB_POOL_MAX=str(POOL_MAX), DB_POOL_MIN="1", PGAPPNAME=APP_NAME
    )
    worker = WorkerProcess(environ, tmp_path / "worker.log", concurrency=1).start()
    thread = services.create_thread(make_session(alice), services.resolve_workflow("pipeline"))
    seen: set[int] = set()
    statuses = []
    try:
        for _ in range(RUNS):
            with mock.patch.object(services, "enqueue"):  # sent to this test's worker below
                run = services.create_run(thread, input={"steps": 1})
            execute_run.apply_async(args=[str(run.pk)], queue=queue)
            deadline = time.monotonic() + 60
            while Run.objects.get(pk=run.pk).status not in Run.FINAL_STATUSES:
                assert time.monotonic() < deadline, "the run did not finish"
                seen |= worker_backends()
                time.sleep(0.01)
            statuses.append(Run.objects.get(pk=run.pk).status)
            seen |= worker_backends()
    finally:
        worker.stop()

    assert statuses == ["success"] * RUNS
    assert seen, "the worker's backends were not seen (PGAPPNAME)"
    # One pool in the worker's child process, at most one more in its parent (the
    # sweeper): a fresh pool per task would have opened a new backend for every run.
    assert len(seen) <= 2 * POOL_MAX, f"{len(seen)} backends for {RUNS} runs"
