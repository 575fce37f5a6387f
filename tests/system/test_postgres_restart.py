"""Fault injection: restart PostgreSQL (down ~3 s) under real processes mid-run.

Needs PostgreSQL and Redis (the production-mode pass of .ci/run). The test starts a
PostgreSQL server of its own (tests/system/private_postgres.py), so the restart
disturbs nothing else, and points a uvicorn server and two Celery worker processes at it
(on the shared Redis, with a queue and channel prefix of their own). It then checks that
every run ends ``success`` with each step checkpointed exactly once, that clients which
were waiting or streaming get the result or an ``error`` event (never hang), and that the
API answers JSON throughout (503 while the database is down) and 200 again within 5 s.
"""

import json
import os
import threading
import time
import uuid

import httpx
import psycopg
import pytest
from django.conf import settings

from tests.system import private_postgres
from tests.system.conftest import UvicornServer, free_port, manage
from tests.workers import WorkerProcess

pytestmark = pytest.mark.system

RUNS = 6
STEPS = 12
DELAY_S = 0.3
BACK_WITHIN_S = 5.0
FINAL = ("success", "error", "timeout", "interrupted")


@pytest.fixture
def production():
    if settings.CELERY_BROKER_URL.startswith("memory://"):
        pytest.skip("needs REDIS_URL (production mode)")
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        pytest.skip("needs PostgreSQL: run with DATABASE_URL=postgres://...")
    if not private_postgres.available():
        pytest.skip("no PostgreSQL server binaries to start a private server with")


@pytest.fixture
def pg(production):
    server = private_postgres.PrivatePostgres(free_port()).start()
    yield server
    server.remove()


@pytest.fixture(params=["connections", "pool"])
def stack(request, pg, tmp_path):
    """The private database migrated, a user with an API key, a server and two workers:
    with a connection per request or task (CONN_MAX_AGE 0), or Django's psycopg pool."""
    tag = uuid.uuid4().hex[:8]
    environ = dict(os.environ)
    if request.param == "pool":
        environ.update(DB_POOL_MAX="4", DB_POOL_MIN="2")
    environ.update(
        DATABASE_URL=pg.url,
        STATEHOUSE_QUEUE=f"pgrestart-{tag}",
        CHANNELS_PREFIX=f"pgrestart-{tag}",
        STATEHOUSE_VAR_DIR=str(tmp_path / "var"),
        STATEHOUSE_RUN_LEASE_S="10",
        STATEHOUSE_HEARTBEAT_S="1",
        STATEHOUSE_SWEEP_INTERVAL_S="2",
        PYTHONUNBUFFERED="1",
    )
    manage(environ, "migrate", "--noinput")
    manage(
        environ,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model as g; "
        "g().objects.create_user('alice', password='pw-alice-restart')",
    )
    key = manage(environ, "create_api_key", "alice").stdout.strip().splitlines()[-1]
    server = UvicornServer(environ, free_port(), tmp_path / "server.log").start()
    workers = [
        WorkerProcess(environ, tmp_path / f"worker-{n}.log", concurrency=2).start()
        for n in range(2)
    ]
    client = httpx.Client(base_url=server.url + "/api", headers={"X-Api-Key": key}, timeout=10)
    try:
        yield client, server
    finally:
        client.close()
        for worker in workers:
            worker.stop()
        server.stop()


class Poller(threading.Thread):
    """GETs a thread over and over, recording every answer, until stopped."""

    def __init__(self, client, path):
        super().__init__(daemon=True)
        self.client = client
        self.path = path
        self.answers: list[tuple[float, int, str, str]] = []
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:
                response = self.client.get(self.path, timeout=5)
                kind = response.headers.get("content-type", "")
                self.answers.append((time.monotonic(), response.status_code, kind, response.text))
            except httpx.HTTPError as exc:
                self.answers.append((time.monotonic(), 0, "", repr(exc)))
            self.stopped.wait(0.1)


def follow(target, *args):
    """Run ``target(*args)`` in a thread; the result lands in the returned dict."""
    box: dict = {}

    def body():
        try:
            box["result"] = target(*args)
        except Exception as exc:
            box["error"] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    box["thread"] = thread
    return box


def wait_request(client, thread_id):
    response = client.post(
        f"/threads/{thread_id}/runs/wait",
        json={"assistant_id": "pipeline", "input": {"steps": STEPS, "delay_s": DELAY_S}},
        timeout=httpx.Timeout(10, read=60),
    )
    return response.status_code, json.loads(response.text)


def stream_request(client, thread_id):
    events = []
    with client.stream(
        "POST",
        f"/threads/{thread_id}/runs/stream",
        json={
            "assistant_id": "pipeline",
            "input": {"steps": STEPS, "delay_s": DELAY_S},
            "stream_mode": ["custom"],
        },
        timeout=httpx.Timeout(10, read=60),
    ) as response:
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def wait_for(predicate, timeout, message):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {message}")


def run_rows(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT id::text, thread_id::text, status, error, attempt FROM threads_app_run"
        ).fetchall()


def step_executions(pg_url, run_id) -> dict[int, int]:
    """How many times each step's node ran (its custom event, from every attempt)."""
    counts: dict[int, int] = {}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT data FROM threads_app_runevent WHERE run_id = %s AND event = 'custom'",
            [run_id],
        ).fetchall()
    for (data,) in rows:
        data = json.loads(data) if isinstance(data, str) else data
        counts[data["step"]] = counts.get(data["step"], 0) + 1
    return counts


def progress(pg_url) -> int:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM threads_app_runevent WHERE event = 'progress'"
        ).fetchone()[0]


def test_a_postgres_restart_mid_run_loses_no_run_and_no_client(pg, stack):
    client, _server = stack
    threads = [client.post("/threads", json={}).json()["thread_id"] for _ in range(RUNS + 2)]
    background = threads[:RUNS]
    for thread_id in background:
        response = client.post(
            f"/threads/{thread_id}/runs",
            json={"assistant_id": "pipeline", "input": {"steps": STEPS, "delay_s": DELAY_S}},
        )
        assert response.status_code == 200, response.text
    waiting = follow(wait_request, client, threads[RUNS])
    streaming = follow(stream_request, client, threads[RUNS + 1])
    # Some runs are mid-run (steps checkpointed), the others queued behind them.
    wait_for(lambda: progress(pg.url) >= 8, 60, "runs to be under way")
    poller = Poller(client, f"/threads/{threads[0]}")
    poller.start()

    pg.restart(down_s=3)
    back_at = time.monotonic()

    ok_again = wait_for(
        lambda: next((a for a in poller.answers if a[0] >= back_at and a[1] == 200), None),
        BACK_WITHIN_S,
        "the API to answer 200 after the database came back",
    )
    assert ok_again[0] - back_at <= BACK_WITHIN_S

    def finished():
        rows = run_rows(pg.url)
        done = len(rows) == RUNS + 2 and all(row[2] in FINAL for row in rows)
        return rows if done else None

    rows = wait_for(finished, 120, "every run to finish")
    poller.stopped.set()
    poller.join(10)
    waiting["thread"].join(60)
    streaming["thread"].join(60)

    for run_id, thread_id, status, error, _attempt in rows:
        assert status == "success", f"run {run_id}: {status} {error}"
        state = client.get(f"/threads/{thread_id}/state").json()
        assert state["values"]["completed_steps"] == list(range(1, STEPS + 1)), run_id
        executions = step_executions(pg.url, run_id)
        assert sorted(executions) == list(range(1, STEPS + 1)), (run_id, executions)
        # A step whose checkpoint the outage cut off runs again; no other step does.
        assert sum(1 for n in executions.values() if n > 1) <= 1, (run_id, executions)

    # The API never failed with an HTML page: JSON 200s, JSON 503s while it was down.
    statuses = {status for _, status, _, _ in poller.answers}
    assert statuses <= {200, 503}, poller.answers
    assert all(kind.startswith("application/json") for _, _, kind, _ in poller.answers)
    for _, status, _, text in poller.answers:
        if status == 503:
            assert "database unavailable" in json.loads(text)["detail"].lower()

    # The clients opened before the restart got their result or an error event.
    assert not waiting["thread"].is_alive() and not streaming["thread"].is_alive()
    assert "error" not in waiting, waiting.get("error")
    code, body = waiting["result"]
    assert code == 200
    if "__error__" in body:
        assert body["__error__"]["error"] == "DatabaseUnavailable"
    else:
        assert body["completed_steps"] == list(range(1, STEPS + 1))
    assert "error" not in streaming, streaming.get("error")
    last = streaming["result"][-1]
    if last[0] == "error":
        assert last[1]["error"] == "DatabaseUnavailable"
    else:
        # The stream just closes after the run's last event (no end event, as LangGraph's).
        assert last == ("custom", {"step": STEPS, "of": STEPS}), last

    # And either can join the run again afterwards and get its result.
    runs_of = {thread_id: run_id for run_id, thread_id, *_ in rows}
    for thread_id in threads[RUNS:]:
        joined = client.get(f"/threads/{thread_id}/runs/{runs_of[thread_id]}/join")
        assert joined.json()["completed_steps"] == list(range(1, STEPS + 1))
