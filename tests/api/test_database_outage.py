"""The API while the database is unreachable: 503 with a JSON body (authentication
included), normal answers as soon as it is back; waits and streams that cannot follow
their run end with an ``error`` (never hang, never a half-written response)."""

import asyncio
import json
from contextlib import contextmanager
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from django.db import OperationalError, connection, connections
from django.test import Client

from api.langgraph import streaming
from core import realtime, state
from core.apikeys import create_api_key
from tests.factories import make_session, make_thread, make_workflow
from threads_app import services

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def database_unreachable():
    """Point the default database somewhere it cannot be reached, for real: PostgreSQL
    at a port nothing listens on, SQLite at a file in a folder that does not exist."""
    settings = connections.settings["default"]
    saved = dict(settings)
    connection.close()
    if connection.vendor == "postgresql":
        settings.update(HOST="127.0.0.1", PORT="9")  # discard: refused
    else:
        settings["NAME"] = "/nonexistent/statehouse/db.sqlite3"
    connection.settings_dict = settings
    try:
        yield
    finally:
        connection.close()
        settings.clear()
        settings.update(saved)
        connection.settings_dict = settings


def test_a_request_while_the_database_is_down_is_a_json_503_then_200_again(alice):
    secret = create_api_key(alice)[1]
    client = Client(headers={"X-Api-Key": secret})
    assert client.get("/api/sessions").status_code == 200

    with database_unreachable():
        down = client.get("/api/sessions")  # fails in authentication (verify_api_key)
        posted = client.post("/api/threads", {}, "application/json")

    for response in (down, posted):
        assert response.status_code == 503
        assert response["Content-Type"].startswith("application/json")
        assert "database unavailable" in response.json()["detail"].lower()
        assert response["Retry-After"]
    back = client.get("/api/sessions")
    assert back.status_code == 200
    assert back["Content-Type"].startswith("application/json")


def running_run(owner):
    thread = make_thread(make_session(owner), make_workflow("pipeline"))
    with mock.patch.object(services, "enqueue"):
        run = services.create_run(thread, input={"steps": 1})
    state.update_state("run", run.pk, {"status": "running"})
    assert realtime.flush()
    return run


def failing(times: int | None):
    """A database read that fails ``times`` times (None: always), then reads."""
    calls = {"n": 0}

    def wrap(read):
        async def flaky(*args):
            calls["n"] += 1
            if times is None or calls["n"] <= times:
                raise OperationalError("server closed the connection unexpectedly")
            return await read(*args)

        return flaky

    return wrap, calls


async def collect(generator, timeout=20):
    async def body():
        return [chunk async for chunk in generator]

    return await asyncio.wait_for(body(), timeout)


async def test_a_wait_ends_with_an_error_when_the_database_stays_away(alice, monkeypatch):
    run = await database_sync_to_async(running_run)(alice)
    wrap, calls = failing(None)
    monkeypatch.setattr(streaming, "_run_status", wrap(streaming._run_status))
    monkeypatch.setattr(streaming, "DB_GRACE_S", 0.6)

    chunks = await collect(streaming._wait_body(run.pk))

    body = json.loads(chunks[-1])
    assert body["__error__"]["error"] == "DatabaseUnavailable"
    assert "/join" in body["__error__"]["message"]
    assert calls["n"] >= 2  # tried again before giving up


async def test_a_wait_rides_out_a_short_outage(alice, monkeypatch):
    run = await database_sync_to_async(running_run)(alice)
    wrap, calls = failing(2)
    monkeypatch.setattr(streaming, "_run_status", wrap(streaming._run_status))
    await database_sync_to_async(state.update_state)("run", run.pk, {"status": "success"})

    chunks = await collect(streaming._wait_body(run.pk))

    assert json.loads(chunks[-1]) == {}  # the run's result (the thread's values)
    assert calls["n"] == 3


def sse_events(chunks) -> list[tuple[str, dict, str | None]]:
    events = []
    for chunk in chunks:
        lines = chunk.decode().strip().splitlines()
        if not lines or lines[0].startswith(":"):
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        events.append((fields["event"], json.loads(fields["data"]), fields.get("id")))
    return events


async def test_a_stream_ends_with_an_error_event_when_the_database_stays_away(alice, monkeypatch):
    run = await database_sync_to_async(running_run)(alice)
    wrap, _calls = failing(None)
    monkeypatch.setattr(streaming, "_events_after", wrap(streaming._events_after))
    monkeypatch.setattr(streaming, "DB_GRACE_S", 0.6)

    chunks = await collect(streaming._event_stream(run.pk, ["values"], 7, False))

    name, data, event_id = sse_events(chunks)[-1]
    assert name == "error"
    assert data["error"] == "DatabaseUnavailable"
    assert "Last-Event-ID 7" in data["message"]  # where to re-join from
    assert event_id is None


async def test_a_stream_rides_out_a_short_outage(alice, monkeypatch):
    run = await database_sync_to_async(running_run)(alice)
    wrap, calls = failing(2)
    monkeypatch.setattr(streaming, "_run_status", wrap(streaming._run_status))
    await database_sync_to_async(state.update_state)("run", run.pk, {"status": "success"})

    chunks = await collect(streaming._event_stream(run.pk, ["values"], 0, False))

    assert sse_events(chunks) == []  # the run ended: the stream just closes, as LangGraph's
    assert calls["n"] == 3
