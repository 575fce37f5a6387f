"""Redis down: the API degrades instead of failing, and the rate limits fail open.

These tests use a real unreachable Redis (a closed port) or a Redis server of their own
that they stop and start (tests/system/private_redis.py), never the shared one.
"""

import asyncio
import json
import logging
import uuid

import pytest
from channels.layers import get_channel_layer
from django.test import AsyncRequestFactory, Client
from django.urls import reverse

from api import app as api_module
from config.celery import app as celery_app
from control_room.views import health
from core import realtime
from core.apikeys import create_api_key
from core.outages import OutageLog
from core.throttling import RedisCounter, UserRateThrottle
from tests.factories import make_session, make_thread
from tests.system.private_redis import running_redis
from threads_app import broker, services
from threads_app.models import Run

CLOSED = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def private_redis(tmp_path):
    with running_redis(tmp_path) as redis:
        yield redis


def _window(throttle, monkeypatch, limit=3):
    """The throttle set to ``limit`` requests a minute, in a minute of its own."""
    monkeypatch.setattr(throttle, "num_requests", limit)
    clock = 60.0 * (10**9 + uuid.uuid4().int % 10**6)
    monkeypatch.setattr(throttle, "timer", lambda: clock)


@pytest.fixture
def user_throttle(monkeypatch):
    [throttle] = api_module.api.throttle
    assert isinstance(throttle, UserRateThrottle)
    _window(throttle, monkeypatch)
    return throttle


def _outage_lines(caplog, logger_name):
    return [r for r in caplog.records if r.name == logger_name and r.levelno >= logging.WARNING]


# --- the user rate limit ------------------------------------------------------------------


def test_the_rate_limit_fails_open_when_redis_is_unreachable(
    alice, user_throttle, monkeypatch, caplog
):
    monkeypatch.setattr(user_throttle, "counter", RedisCounter(CLOSED))
    monkeypatch.setattr(
        RedisCounter, "outage", OutageLog(RedisCounter.outage.logger, "Redis unreachable")
    )
    client = Client(headers={"X-Api-Key": create_api_key(alice)[1]})

    with caplog.at_level(logging.WARNING, logger="core.throttling"):
        statuses = [client.get("/api/sessions").status_code for _ in range(6)]

    assert statuses == [200] * 6  # over the limit of 3, but nothing can count them
    [line] = _outage_lines(caplog, "core.throttling")  # one line, not one per request
    assert "Redis unreachable" in line.getMessage()


def test_the_rate_limit_recovers_by_itself_when_redis_is_back(
    alice, user_throttle, monkeypatch, private_redis
):
    counter = RedisCounter(private_redis.url)
    counter.retry_after = 0  # try Redis again at the next request
    monkeypatch.setattr(user_throttle, "counter", counter)
    client = Client(headers={"X-Api-Key": create_api_key(alice)[1]})
    assert client.get("/api/sessions").status_code == 200  # connected: counted

    private_redis.stop()
    assert [client.get("/api/sessions").status_code for _ in range(4)] == [200] * 4
    private_redis.start()  # the same port, an empty Redis: the same client reconnects

    statuses = [client.get("/api/sessions").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_while_redis_is_unreachable_the_counter_does_not_try_at_every_request(
    alice, user_throttle, monkeypatch
):
    counter = RedisCounter(CLOSED)
    monkeypatch.setattr(user_throttle, "counter", counter)
    calls = []
    real_incr = counter.client.incr
    monkeypatch.setattr(counter.client, "incr", lambda *a, **k: calls.append(a) or real_incr(*a))
    client = Client(headers={"X-Api-Key": create_api_key(alice)[1]})

    for _ in range(5):
        assert client.get("/api/sessions").status_code == 200

    assert len(calls) == 1  # then a second without trying (retry_after)


# --- requests that fail authentication ------------------------------------------------------


@pytest.fixture
def failed_auth(monkeypatch):
    _window(api_module.failed_auth_limit, monkeypatch)
    return api_module.failed_auth_limit


def test_requests_failing_authentication_are_limited_per_client_address(
    alice, failed_auth, settings
):
    settings.STATEHOUSE_TRUSTED_PROXIES = []
    attacker = Client(REMOTE_ADDR="203.0.113.7", headers={"X-Api-Key": "sh_wrong"})
    statuses = [attacker.get("/api/sessions").status_code for _ in range(3)]
    assert statuses == [401, 401, 401]

    refused = attacker.get("/api/sessions")
    assert refused.status_code == 429
    assert refused.json() == {"detail": "Too many requests that failed authentication"}
    assert int(refused["Retry-After"]) >= 1
    # No key at all counts the same; another address has its own count.
    assert Client(REMOTE_ADDR="203.0.113.7").post("/api/threads", {}).status_code == 429
    assert Client(REMOTE_ADDR="203.0.113.8").get("/api/sessions").status_code == 401
    # A client that authenticates is not refused because of its address's failures.
    secret = create_api_key(alice)[1]
    ok = Client(REMOTE_ADDR="203.0.113.7", headers={"X-Api-Key": secret})
    assert ok.get("/api/sessions").status_code == 200


def test_x_forwarded_for_is_ignored_unless_the_proxy_is_trusted(failed_auth, settings, db):
    settings.STATEHOUSE_TRUSTED_PROXIES = []
    for n in range(3):  # a new forged address each time: still one client
        forged = Client(REMOTE_ADDR="198.51.100.1", HTTP_X_FORWARDED_FOR=f"10.9.9.{n}")
        assert forged.get("/api/sessions").status_code == 401
    forged = Client(REMOTE_ADDR="198.51.100.1", HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert forged.get("/api/sessions").status_code == 429


def test_behind_a_trusted_proxy_the_client_is_the_forwarded_address(failed_auth, settings, db):
    settings.STATEHOUSE_TRUSTED_PROXIES = ["10.0.0.0/8"]

    def via_proxy(chain):
        return Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=chain).get("/api/sessions")

    # The client is the right-most address that is not a trusted proxy: whatever the
    # client itself put in front of it is not believed.
    for forged in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        assert via_proxy(f"{forged}, 192.0.2.10, 10.0.0.3").status_code == 401
    assert via_proxy("192.0.2.10, 10.0.0.3").status_code == 429
    assert via_proxy("192.0.2.11").status_code == 401  # another client behind the proxy


def test_the_failed_authentication_limit_fails_open_too(failed_auth, monkeypatch, db):
    monkeypatch.setattr(failed_auth, "counter", RedisCounter(CLOSED))
    client = Client(REMOTE_ADDR="203.0.113.9")
    assert [client.get("/api/sessions").status_code for _ in range(5)] == [401] * 5


# --- what needs the broker ------------------------------------------------------------------


@pytest.fixture
def unreachable_broker(monkeypatch):
    """The Celery app's producers on a closed port (the pools are made again lazily)."""
    monkeypatch.setitem(celery_app.conf, "broker_url", CLOSED)
    monkeypatch.setitem(celery_app.conf, "broker_write_url", None)
    monkeypatch.setattr(celery_app, "_pool", None)
    monkeypatch.setattr(celery_app.amqp, "_producer_pool", None)
    monkeypatch.setitem(celery_app.conf, "broker_transport_options", {})


def test_a_run_is_accepted_while_the_broker_is_unreachable(
    alice, unreachable_broker, django_capture_on_commit_callbacks
):
    thread = make_thread(make_session(alice), services.resolve_workflow("pipeline"))
    client = Client(headers={"X-Api-Key": create_api_key(alice)[1]})

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/api/threads/{thread.pk}/runs",
            {"assistant_id": "pipeline", "input": {"steps": 1}},
            "application/json",
        )

    assert response.status_code == 200, response.content
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.status == "pending"  # committed, to be sent once the broker is back


def test_sending_a_run_to_an_unreachable_broker_returns_false(alice, unreachable_broker):
    thread = make_thread(make_session(alice))
    assert broker.send_run(uuid.uuid4()) is False
    assert Run.objects.filter(thread=thread).count() == 0


def test_a_request_that_needs_redis_when_it_is_down_is_a_503_naming_it(alice, monkeypatch):
    """Nothing the API does needs Redis today (runs are rows, waits poll); anything that
    meets Redis down all the same answers 503 naming it, not an HTML 500."""
    import redis

    def down(*args, **kwargs):
        raise redis.ConnectionError("Error 111 connecting to 10.0.0.5:6379")

    monkeypatch.setattr(services, "create_run", down)
    thread = make_thread(make_session(alice))
    client = Client(headers={"X-Api-Key": create_api_key(alice)[1]})

    response = client.post(
        f"/api/threads/{thread.pk}/runs", {"assistant_id": "pipeline"}, "application/json"
    )

    assert response.status_code == 503
    assert response.json() == {
        "detail": "Service unavailable: Redis (the broker, the channel layer) is unreachable"
    }
    assert "10.0.0.5" not in response.content.decode()


# --- noticing lost messages ----------------------------------------------------------------


def test_the_watch_tells_a_redis_restart_and_an_outage_once(private_redis):
    watch = broker.BrokerWatch(private_redis.url)
    assert watch.messages_lost() is False  # the first look
    assert watch.messages_lost() is False

    private_redis.restart()  # nothing on disk: its queues are gone
    assert watch.messages_lost() is True
    assert watch.messages_lost() is False

    private_redis.stop()
    assert watch.messages_lost() is False  # cannot tell yet
    private_redis.start()
    assert watch.messages_lost() is True  # back: what was sent meanwhile was lost
    assert watch.messages_lost() is False


def test_resend_pending_sends_every_pending_run_not_queued_behind_a_running_one(alice, monkeypatch):
    sent = []
    monkeypatch.setattr(
        broker, "send_run", lambda run_id, countdown=None: sent.append(run_id) or True
    )
    monkeypatch.setattr(services, "enqueue", lambda run_id, countdown=None: None)
    pipeline = services.resolve_workflow("pipeline")
    idle = make_thread(make_session(alice), pipeline)
    waiting = services.create_run(idle, input={"steps": 1})
    busy = make_thread(make_session(alice), pipeline)
    running = services.create_run(busy, input={"steps": 1})
    Run.objects.filter(pk=running.pk).update(status="running")
    services.create_run(busy, input={"steps": 1}, multitask_strategy="enqueue")

    assert broker.resend_pending() == 1
    assert sent == [waiting.pk]


# --- /healthz and live pushes ------------------------------------------------------------


@pytest.fixture
def redis_down_everywhere(settings, unreachable_broker):
    settings.CELERY_BROKER_URL = CLOSED
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [CLOSED]},
        }
    }


def test_healthz_names_the_broker_and_the_channel_layer_when_redis_is_down(
    client, db, redis_down_everywhere
):
    response = client.get(reverse("history:healthz"))

    assert response.status_code == 503
    assert response.json() == {
        "status": "failed",
        "checks": {"database": "ok", "broker": "failed", "channel_layer": "failed"},
        "failed": ["broker", "channel_layer"],
    }


@pytest.mark.django_db(transaction=True)
async def test_healthz_is_200_again_once_redis_is_back(settings, private_redis):
    """In one event loop, as in a server process (the layer keeps its connections)."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [private_redis.url]},
        }
    }
    settings.CELERY_BROKER_URL = private_redis.url

    async def healthz():
        response = await health.healthz(AsyncRequestFactory().get("/healthz"))
        return json.loads(response.content)

    # A live feed of this process waiting on the shared layer, as streams do.
    shared = get_channel_layer()
    feed = asyncio.create_task(shared.receive(await shared.new_channel("feed.")))
    assert (await healthz())["status"] == "ok"
    private_redis.stop()
    assert (await healthz())["failed"] == ["broker", "channel_layer"]
    private_redis.start()

    try:
        for _ in range(3):
            assert await healthz() == {
                "status": "ok",
                "checks": {"database": "ok", "broker": "ok", "channel_layer": "ok"},
            }
    finally:
        feed.cancel()
        await asyncio.gather(feed, return_exceptions=True)
        await shared.flush()


def test_reads_answer_while_redis_is_down(alice, redis_down_everywhere, user_throttle, monkeypatch):
    monkeypatch.setattr(user_throttle, "counter", RedisCounter(CLOSED))
    session = make_session(alice)
    client = Client(headers={"X-Api-Key": create_api_key(alice)[1]})

    assert client.get(f"/api/sessions/{session.pk}").status_code == 200
    assert client.get("/api/sessions").status_code == 200


@pytest.fixture
def fresh_pusher(monkeypatch):
    """Pushes sent by a background loop of this test's own (on the test's channel layer)."""
    monkeypatch.setattr(realtime, "_senders", {})
    monkeypatch.setattr(realtime, "_server_loop", None)
    monkeypatch.setattr(realtime, "_background_loop", None)
    monkeypatch.setattr(realtime, "_publisher", None)
    yield
    loop = realtime._background_loop
    if loop is not None:

        async def cancel_senders():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_senders(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)


def test_live_pushes_are_dropped_and_logged_once_when_the_channel_layer_fails(
    redis_down_everywhere, fresh_pusher, monkeypatch, caplog
):
    monkeypatch.setattr(realtime, "_outage", OutageLog(realtime.logger, "channel layer failed"))

    with caplog.at_level(logging.WARNING, logger="core.realtime"):
        for n in range(20):
            realtime.push(["dashboard"], {"type": "test", "n": n})  # never raises
        assert realtime.flush(10)

    [line] = _outage_lines(caplog, "core.realtime")
    assert "channel layer failed" in line.getMessage()
