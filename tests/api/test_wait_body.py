"""/wait and /join: the body waits on the run's pushes and reads its status sparingly."""

import asyncio
import json
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from api.langgraph import streaming
from core import realtime, state
from tests.factories import make_session, make_thread, make_workflow
from threads_app import services

pytestmark = pytest.mark.django_db(transaction=True)


def running_run(owner):
    thread = make_thread(make_session(owner), make_workflow("pipeline"))
    with mock.patch.object(services, "enqueue"):
        run = services.create_run(thread, input={"steps": 1})
    state.update_state("run", run.pk, {"status": "running"})
    assert realtime.flush()  # that change's push is out before a test starts waiting
    return run


async def eventually(condition, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_wait_reads_the_status_once_and_then_follows_the_pushes(alice, monkeypatch):
    run = await database_sync_to_async(running_run)(alice)
    reads = []
    read_status = streaming._run_status

    async def counting_read(run_id):
        reads.append(run_id)
        return await read_status(run_id)

    monkeypatch.setattr(streaming, "_run_status", counting_read)
    monkeypatch.setattr(streaming, "POLL_S", 30.0)  # no poll: only pushes wake the wait

    async def body():
        return [chunk async for chunk in streaming._wait_body(run.pk)]

    waiting = asyncio.ensure_future(body())
    await eventually(lambda: reads)  # subscribed, and read the status once
    layer = get_channel_layer()
    for seq in range(1, 21):
        event = {"type": "run.event", "run_id": str(run.pk), "seq": seq, "event": "custom"}
        await layer.group_send(f"run.{run.pk}", realtime.group_message(event))
    await asyncio.sleep(0.1)
    assert len(reads) == 1  # twenty events, no read
    assert not waiting.done()

    await database_sync_to_async(state.update_state)("run", run.pk, {"status": "success"})
    chunks = await asyncio.wait_for(waiting, 10)

    assert json.loads(chunks[-1]) == {}  # the thread's values (none: it never ran)
    assert len(reads) == 1  # the first read; the change's push carried its status


async def test_wait_reads_the_database_for_a_change_that_carries_no_status(alice, monkeypatch):
    # A deletion's push says the run's state before it: the database says it is gone.
    run = await database_sync_to_async(running_run)(alice)
    monkeypatch.setattr(streaming, "POLL_S", 30.0)
    waiting = asyncio.ensure_future(streaming.wait_for_end(run.pk, timeout=60))
    await asyncio.sleep(0.2)
    await database_sync_to_async(run.thread.delete)()
    deleted = {"type": "state.changed", "entity": "run", "id": str(run.pk), "kind": "deleted"}
    await get_channel_layer().group_send(
        f"run.{run.pk}", realtime.group_message(deleted | {"status": "running"})
    )
    await asyncio.wait_for(waiting, 10)


async def test_wait_notices_the_end_without_any_push(alice, monkeypatch):
    # A push may be lost (Redis restarted): the half-second poll still ends the wait.
    run = await database_sync_to_async(running_run)(alice)
    monkeypatch.setattr(realtime, "push", lambda groups, payload: None)

    async def body():
        return [chunk async for chunk in streaming._wait_body(run.pk)]

    waiting = asyncio.ensure_future(body())
    await asyncio.sleep(0.2)
    await database_sync_to_async(state.update_state)("run", run.pk, {"status": "error"})
    chunks = await asyncio.wait_for(waiting, 10)

    assert "__error__" in json.loads(chunks[-1])


async def test_wait_polls_on_when_the_channel_layer_fails(alice, monkeypatch):
    # Redis going away under a wait: it ends from the database instead of failing.
    run = await database_sync_to_async(running_run)(alice)
    layer = get_channel_layer()
    failures = []

    async def failing_receive(channel):
        failures.append(channel)
        raise ConnectionError("the channel layer went away")

    monkeypatch.setattr(layer, "receive", failing_receive)
    monkeypatch.setattr(streaming, "POLL_S", 0.1)

    async def body():
        return [chunk async for chunk in streaming._wait_body(run.pk)]

    waiting = asyncio.ensure_future(body())
    await eventually(lambda: failures)
    await database_sync_to_async(state.update_state)("run", run.pk, {"status": "success"})
    chunks = await asyncio.wait_for(waiting, 10)

    assert json.loads(chunks[-1]) == {}
