"""Crash test: SIGKILL a real worker (or server) process mid-run; a new worker finishes
the run.

Needs PostgreSQL and Redis (the production-mode pass of .ci/run). The workers here use a
Redis server of their own (restarted by one test) and a queue of their own, so the test
session's worker never sees these runs; they reach the crash workers the way a lost
message does: the sweeper resends a pending run nobody picked up.
"""

import os
import signal
import threading
import time
import uuid
from contextlib import suppress
from unittest import mock

import httpx
import pytest
from django.conf import settings
from django.db import connection

from core.apikeys import create_api_key
from history_app.models import StateEvent
from tests.factories import make_session
from tests.system.conftest import UvicornServer, free_port
from tests.system.private_redis import PrivateRedis, running_redis
from tests.workers import WorkerProcess, worker_env
from threads_app import services
from threads_app.models import RunEvent

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

STEPS = 20


@pytest.fixture
def production(on_postgres):
    if settings.CELERY_BROKER_URL.startswith("memory://"):
        pytest.skip("needs REDIS_URL (production mode)")


@pytest.fixture
def private_redis(tmp_path):
    with running_redis(tmp_path) as redis:
        yield redis


def crash_env(redis: PrivateRedis):
    environ = worker_env(connection.settings_dict["NAME"])
    environ.update(
        REDIS_URL=redis.url,
        STATEHOUSE_QUEUE=f"crash-{uuid.uuid4().hex[:8]}",
        STATEHOUSE_RUN_LEASE_S="2",
        STATEHOUSE_HEARTBEAT_S="0.3",
        STATEHOUSE_SWEEP_INTERVAL_S="0.5",
        STATEHOUSE_PENDING_RESEND_S="0.5",
    )
    return environ


def wait_for_steps(run, count, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if RunEvent.objects.filter(run=run, event="progress").count() >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"run did not reach step {count}")


def step_executions(run):
    """How many times each step's node executed (its custom event, from every attempt)."""
    counts: dict[int, int] = {}
    for data in RunEvent.objects.filter(run=run, event="custom").values_list("data", flat=True):
        counts[data["step"]] = counts.get(data["step"], 0) + 1
    return counts


def assert_history_intact(run):
    for entity_id in (run.pk, run.thread_id, run.thread.session_id):
        versions = list(
            StateEvent.objects.filter(entity_id=entity_id)
            .order_by("version")
            .values_list("version", flat=True)
        )
        assert versions == list(range(1, len(versions) + 1)), f"gaps or duplicates: {versions}"


def finished_on_a_new_worker(environ, log_path, run):
    """After a kill: the steps done so far, and the run once a new worker finished it."""
    killed_at = RunEvent.objects.filter(run=run, event="progress").count()
    worker = WorkerProcess(environ, log_path, concurrency=1).start()
    try:
        return services.wait_for_run(run.pk, timeout=90), killed_at
    finally:
        worker.stop()


def assert_resumed_once(run, killed_at: int):
    """The run finished on its second attempt with every step: steps checkpointed before
    the kill (``killed_at`` of them) ran once, at most the step in flight ran twice."""
    assert run.status == "success", run.error
    assert run.attempt == 2
    run.thread.refresh_from_db()
    assert run.thread.values["completed_steps"] == list(range(1, STEPS + 1))
    executions = step_executions(run)
    assert sorted(executions) == list(range(1, STEPS + 1))
    for step in range(1, killed_at + 1):
        assert executions[step] == 1, (step, executions)
    assert sum(1 for n in executions.values() if n > 1) <= 1
    assert_history_intact(run)


def start_pipeline(alice):
    """A pending run with no message anywhere: the crash workers' sweeper sends it."""
    session = make_session(alice)
    thread = services.create_thread(session, services.resolve_workflow("pipeline"))
    with mock.patch.object(services, "enqueue"):
        return services.create_run(
            thread, input={"steps": STEPS, "delay_s": 0.25}, stream_mode=["custom", "updates"]
        )


def test_a_killed_worker_s_run_resumes_on_a_new_worker(alice, production, private_redis, tmp_path):
    environ = crash_env(private_redis)
    first = WorkerProcess(environ, tmp_path / "first.log", concurrency=1).start()
    run = start_pipeline(alice)
    wait_for_steps(run, 6)

    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(10)
    assert_resumed_once(*finished_on_a_new_worker(environ, tmp_path / "second.log", run))


def test_a_redis_restart_mid_run_loses_nothing(alice, production, private_redis, tmp_path):
    environ = crash_env(private_redis)
    worker = WorkerProcess(environ, tmp_path / "worker.log", concurrency=1).start()
    try:
        run = start_pipeline(alice)
        wait_for_steps(run, 4)
        private_redis.restart()
        run = services.wait_for_run(run.pk, timeout=90)
    finally:
        worker.stop()

    assert run.status == "success", run.error
    run.thread.refresh_from_db()
    assert run.thread.values["completed_steps"] == list(range(1, STEPS + 1))
    executions = step_executions(run)
    assert sorted(executions) == list(range(1, STEPS + 1))
    assert sum(1 for n in executions.values() if n > 1) <= 1
    assert_history_intact(run)


def test_a_killed_server_s_waited_run_resumes_on_a_worker(
    alice, production, private_redis, tmp_path
):
    """runs/wait executes its run in the server process (threads_app/inprocess.py): a
    server killed mid-run leaves a lease that runs out, and a worker's sweeper gives the
    run to a worker, which resumes it from its last checkpoint."""
    environ = crash_env(private_redis)
    thread = services.create_thread(make_session(alice), services.resolve_workflow("pipeline"))
    key = create_api_key(alice)[1]
    server = UvicornServer(environ, free_port(), tmp_path / "server.log").start()
    body = {
        "assistant_id": "pipeline",
        "input": {"steps": STEPS, "delay_s": 0.25},
        "stream_mode": ["custom", "updates"],
    }

    def wait():
        # The server is killed under it.
        with (
            httpx.Client(headers={"X-Api-Key": key}, timeout=120) as client,
            suppress(httpx.HTTPError),
        ):
            client.post(f"{server.url}/api/threads/{thread.pk}/runs/wait", json=body)

    waiting = threading.Thread(target=wait)
    waiting.start()
    try:
        deadline = time.monotonic() + 30
        while not (runs := list(thread.runs.all())) and time.monotonic() < deadline:
            time.sleep(0.05)
        [run] = runs
        wait_for_steps(run, 6)
        run.refresh_from_db()
        assert run.claimed_by.split(":")[1] == str(server.process.pid)  # the server runs it
    finally:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        server.log.close()
        waiting.join(30)
    assert_resumed_once(*finished_on_a_new_worker(environ, tmp_path / "worker.log", run))
