"""Fault injection: Redis restarted mid-run under a real server and real workers.

uvicorn and two Celery worker processes run on a Redis server of this test's own (it keeps
nothing on disk: a restart loses every queued message) against the test database. Runs
are going, others are queued in Redis, clients wait and stream; Redis goes away and comes
back empty. Every run must end ``success`` with each step executed once, the queued runs
must start within seconds of Redis being back (the sweeper's own resend waits
STATEHOUSE_PENDING_RESEND_S, left at its 60 s default here), reads must answer while Redis
is down, and no client may hang.

Needs PostgreSQL and REDIS_URL (the production-mode pass of .ci/run).
"""

import json
import threading
import time
import uuid

import httpx
import pytest
from django.conf import settings
from django.db import connection

from core.apikeys import create_api_key
from tests.system.conftest import UvicornServer, free_port
from tests.system.private_redis import running_redis
from tests.workers import WorkerProcess, worker_env
from threads_app.models import Run, RunEvent

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

STEPS = 12
DELAY_S = 0.4
PIPELINE = {"assistant_id": "pipeline", "input": {"steps": STEPS, "delay_s": DELAY_S}}


@pytest.fixture
def production(on_postgres):
    if settings.CELERY_BROKER_URL.startswith("memory://"):
        pytest.skip("needs REDIS_URL (production mode)")


@pytest.fixture
def stack(production, tmp_path):
    """Redis of its own, uvicorn and two one-slot workers on it, against the test database."""
    with running_redis(tmp_path) as redis:
        environ = worker_env(connection.settings_dict["NAME"])
        environ.update(
            REDIS_URL=redis.url,
            STATEHOUSE_QUEUE=f"outage-{uuid.uuid4().hex[:8]}",
            CHANNELS_PREFIX=f"outage-{uuid.uuid4().hex[:8]}",
            STATEHOUSE_VAR_DIR=str(tmp_path),
            STATEHOUSE_PENDING_RESEND_S="60",  # the default: only the fast path is in time
            STATEHOUSE_SSE_HEARTBEAT_S="1",
        )
        workers = [
            WorkerProcess(environ, tmp_path / f"worker{n}.log", concurrency=1).start()
            for n in (1, 2)
        ]
        server = UvicornServer(environ, free_port(), tmp_path / "server.log").start()
        try:
            yield redis, server
        finally:
            server.stop()
            for worker in workers:
                worker.stop()


def poll(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout} s")


def progress(run_id) -> int:
    return RunEvent.objects.filter(run_id=run_id, event="progress").count()


def step_executions(run_id) -> dict[int, int]:
    counts: dict[int, int] = {}
    for data in RunEvent.objects.filter(run_id=run_id, event="custom").values_list(
        "data", flat=True
    ):
        counts[data["step"]] = counts.get(data["step"], 0) + 1
    return counts


class Client(threading.Thread):
    """A client call in a thread of its own; ``result`` is what it got at the end."""

    def __init__(self, call):
        super().__init__(daemon=True)
        self.call = call
        self.result = None

    def run(self):
        self.result = self.call()


def test_a_redis_restart_mid_run_loses_no_run_and_no_client(alice, stack):
    redis, server = stack
    api = httpx.Client(
        base_url=server.url + "/api", headers={"X-Api-Key": create_api_key(alice)[1]}, timeout=30
    )

    def new_thread() -> str:
        response = api.post("/threads", json={})
        assert response.status_code == 200, response.text
        return response.json()["thread_id"]

    def start(thread_id, **extra) -> str:
        body = PIPELINE | {"stream_mode": ["custom", "updates"]} | extra
        response = api.post(f"/threads/{thread_id}/runs", json=body)
        assert response.status_code == 200, response.text
        return response.json()["run_id"]

    # Two runs going (one per worker slot), two queued in Redis behind them. Every run has
    # a thread of its own (a pipeline thread's second run would continue its steps).
    runs = [start(new_thread()) for _ in range(4)]
    poll(lambda: Run.objects.filter(pk__in=runs, status="running").count() == 2, 60, "two runs")
    going = [
        str(pk)
        for pk in Run.objects.filter(pk__in=runs, status="running").values_list("pk", flat=True)
    ]
    queued = [run_id for run_id in runs if run_id not in going]
    poll(lambda: all(progress(run_id) >= 2 for run_id in going), 60, "two steps of each")

    # Clients: a join on a running run, a stream of the other, a wait for a new run.
    def client():
        return httpx.Client(base_url=api.base_url, headers=api.headers, timeout=120)

    def thread_of(run_id):
        return Run.objects.get(pk=run_id).thread_id

    def join():
        with client() as http:
            return http.get(f"/threads/{thread_of(going[0])}/runs/{going[0]}/join").status_code

    def stream():
        """(event, data) pairs of a join of the run, until the server closes it."""
        events = []
        url = f"/threads/{thread_of(going[1])}/runs/{going[1]}/stream"
        with client() as http, http.stream("GET", url) as response:
            for line in response.iter_lines():
                if line.startswith("event: "):
                    events.append([line[len("event: ") :], None])
                elif line.startswith("data: ") and events:
                    events[-1][1] = json.loads(line[len("data: ") :])
        return events

    wait_thread = new_thread()

    def wait():
        with client() as http:
            response = http.post(f"/threads/{wait_thread}/runs/wait", json=PIPELINE)
            return response.status_code, response.json()

    clients = [Client(join), Client(stream), Client(wait)]
    for each in clients:
        each.start()
    poll(lambda: Run.objects.filter(thread_id=wait_thread).exists(), 30, "the wait's run")

    redis.stop()
    # Reads need only the database: they answer while Redis is down (the rate limit is
    # off), a new run is accepted (a row, sent once Redis is back), /healthz names Redis.
    for _ in range(3):
        assert api.get(f"/threads/{thread_of(runs[0])}").status_code == 200
        assert api.get(f"/threads/{thread_of(runs[1])}/runs/{runs[1]}").status_code == 200
        assert api.post("/threads/search", json={}).status_code == 200
    while_down = start(new_thread())
    health = httpx.get(server.url + "/healthz", timeout=30)
    assert health.status_code == 503
    assert health.json()["failed"] == ["broker", "channel_layer"]
    redis.start()  # the same port, empty: the queued messages are gone

    # The API answers again, healthy, within 5 s of Redis being back.
    poll(
        lambda: httpx.get(server.url + "/healthz", timeout=5).status_code == 200,
        5,
        "/healthz 200 after Redis is back",
    )
    # The runs whose message was lost start within seconds, not after the 60 s resend:
    # at most behind the two going runs and one more run per worker slot.
    waited = str(Run.objects.get(thread_id=wait_thread).pk)
    for run_id in [*queued, waited, while_down]:
        poll(
            lambda run_id=run_id: Run.objects.get(pk=run_id).started_at is not None,
            20 + 2 * STEPS * DELAY_S,
            f"run {run_id} starting after Redis is back",
        )

    everything = [*runs, waited, while_down]
    poll(
        lambda: Run.objects.filter(pk__in=everything, status="success").count() == len(everything),
        120,
        "every run ending",
    )
    for run_id in everything:
        assert step_executions(run_id) == {step: 1 for step in range(1, STEPS + 1)}, run_id
        values = Run.objects.select_related("thread").get(pk=run_id).thread.values
        assert values["completed_steps"] == list(range(1, STEPS + 1)), run_id

    for each in clients:
        each.join(60)
        assert not each.is_alive(), "a client hung"
    joined, events, (wait_status, wait_values) = (each.result for each in clients)
    assert joined == 200
    # The stream closed after the run's last step (streams end as LangGraph Server's do,
    # with no event of their own), or said with an error event that it could not follow.
    assert events, "the stream sent nothing"
    last_event = events[-1][0]
    if last_event != "error":
        updates = [data for event, data in events if event == "updates"]
        assert updates and updates[-1]["step"]["completed_steps"][-1] == STEPS, events
    assert wait_status == 200
    assert wait_values["completed_steps"] == list(range(1, STEPS + 1))
