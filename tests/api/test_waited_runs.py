"""runs/wait executes a run that can start now in the server process that waits for it
(threads_app/inprocess.py), under the same claim and lease as a worker; any other run,
or every run with STATEHOUSE_WAITED_RUNS_IN_SERVER off, goes to the workers."""

import asyncio
import json
import os
import socket

import httpx
import pytest
from django.db import OperationalError

from api.langgraph import streaming
from core import state
from core.apikeys import create_api_key
from core.asgi_handler import SyncChainASGIHandler
from history_app.models import StateEvent
from tests.factories import make_session, make_thread, make_workflow
from threads_app import broker, inprocess, runtime, services
from threads_app.models import Run, Thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sent(monkeypatch):
    """The runs sent to the workers: each send is recorded, then made by the real
    broker (to the test session's real worker, for the tests that take
    ``celery_worker``)."""
    calls = []
    send_run = broker.send_run

    def recorded(run_id, countdown=None):
        calls.append(run_id)
        return send_run(run_id, countdown)

    monkeypatch.setattr(broker, "send_run", recorded)
    return calls


def _executed_in_a_server_run_thread(run: Run) -> bool:
    """Whether ``run`` was claimed for this process's run threads (inprocess.claimant),
    not by a worker: its claimed_by names the host, process and an execution here."""
    host, pid, execution = run.claimed_by.split(":")
    here = (host, pid) == (socket.gethostname(), str(os.getpid()))
    return here and execution.startswith("run-")


@pytest.fixture
def api(alice):
    """The server's ASGI handler, called in this process."""
    transport = httpx.ASGITransport(app=SyncChainASGIHandler())
    headers = {"X-Api-Key": create_api_key(alice)[1]}
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers)


@pytest.fixture
def thread(alice):
    return make_thread(make_session(alice), make_workflow("pipeline"))


async def _wait(api, path, body) -> dict:
    response = await api.post(path, json=body)
    assert response.status_code == 200
    return json.loads(response.content)


async def test_a_waited_run_is_executed_by_the_server_process(api, thread, sent):
    body = {"assistant_id": "pipeline", "input": {"steps": 2}}

    values = await _wait(api, f"/api/threads/{thread.pk}/runs/wait", body)

    run = await Run.objects.aget(thread=thread)
    assert values["steps"] == 2
    assert run.status == Run.Status.SUCCESS
    assert run.attempt == 1
    assert _executed_in_a_server_run_thread(run)
    assert sent == []  # never sent to the workers
    # Created running (never pending: no claim of its own), then finished.
    history = StateEvent.objects.filter(entity_id=run.pk).order_by("id")
    changes = [(event.kind, event.new["status"]) async for event in history]
    assert changes == [("created", "running"), ("updated", "success")]


async def test_a_stateless_waited_run_too(api, sent):
    values = await _wait(api, "/api/runs/wait", {"assistant_id": "pipeline", "input": {"steps": 1}})

    assert values["steps"] == 1
    assert sent == []


async def test_with_the_setting_off_the_run_goes_to_the_workers(
    api, thread, sent, settings, celery_worker
):
    settings.STATEHOUSE_WAITED_RUNS_IN_SERVER = False
    body = {"assistant_id": "pipeline", "input": {"steps": 1}}

    values = await _wait(api, f"/api/threads/{thread.pk}/runs/wait", body)

    run = await Run.objects.aget(thread=thread)
    assert values["steps"] == 1
    assert sent == [run.pk]
    assert not _executed_in_a_server_run_thread(run)


async def test_a_run_due_later_goes_to_the_workers(api, thread, sent, celery_worker):
    body = {"assistant_id": "pipeline", "input": {"steps": 1}, "after_seconds": 0.1}

    values = await _wait(api, f"/api/threads/{thread.pk}/runs/wait", body)

    run = await Run.objects.aget(thread=thread)
    assert values["steps"] == 1
    assert sent == [run.pk]
    assert not _executed_in_a_server_run_thread(run)


def test_a_run_behind_another_is_left_to_that_runs_finish(thread, sent, celery_worker):
    first = services.create_run(thread, input={"steps": 1}, send=False)
    state.update_state("run", first.pk, {"status": "running"})
    second = services.create_run(thread, input={"steps": 1}, claim_for=inprocess.claimant())

    assert second.status == Run.Status.PENDING  # not claimed: its thread is busy
    assert second.claimed_by == ""
    assert sent == []  # not yet
    # The attempt to create it running wrote nothing: one run, created pending.
    assert Run.objects.filter(thread=thread).count() == 2
    [created] = StateEvent.objects.filter(entity_id=second.pk)
    assert created.new["status"] == Run.Status.PENDING

    # What the first run's finish does once it commits.
    state.update_state("run", first.pk, {"status": "success"})
    services.start_next_run(thread.pk)
    assert sent == [second.pk]
    second = services.wait_for_run(second.pk, timeout=30)
    assert second.status == Run.Status.SUCCESS  # a worker ran it
    assert not _executed_in_a_server_run_thread(second)


async def test_a_run_queued_behind_one_executed_here_is_executed_here_after_it(api, thread, sent):
    """Two waited runs on one thread at once: the second is created pending behind the
    first, and the first's finish executes it in another run thread of this process
    (inprocess.send_next), not sending it to the workers."""
    path = f"/api/threads/{thread.pk}/runs/wait"
    slow = {"assistant_id": "pipeline", "input": {"steps": 2, "delay_s": 0.3}}
    first = asyncio.ensure_future(_wait(api, path, slow))
    while not await Run.objects.filter(thread=thread, status=Run.Status.RUNNING).aexists():
        await asyncio.sleep(0.02)

    # (Sent to the workers, it would wait for ever: this test has none.)
    waited = _wait(api, path, {"assistant_id": "pipeline", "input": {"steps": 1}})
    second = await asyncio.wait_for(waited, 30)

    assert (await first)["steps"] == 2
    assert second["steps"] == 1
    runs = [run async for run in Run.objects.filter(thread=thread).order_by("created_at")]
    assert [run.status for run in runs] == [Run.Status.SUCCESS, Run.Status.SUCCESS]
    assert all(_executed_in_a_server_run_thread(run) for run in runs)
    assert sent == []  # neither went to the workers
    history = StateEvent.objects.filter(entity_id=runs[1].pk).order_by("id")
    changes = [(event.kind, event.new["status"]) async for event in history]
    assert changes == [("created", "pending"), ("updated", "running"), ("updated", "success")]
    assert inprocess._taken == 0  # both slots given back


async def test_a_run_queued_behind_goes_to_the_workers_with_every_slot_taken(
    api, thread, sent, settings, celery_worker
):
    settings.STATEHOUSE_SERVER_RUN_SLOTS = 1  # the first run's
    path = f"/api/threads/{thread.pk}/runs/wait"
    slow = {"assistant_id": "pipeline", "input": {"steps": 2, "delay_s": 0.3}}
    first = asyncio.ensure_future(_wait(api, path, slow))
    while not await Run.objects.filter(thread=thread, status=Run.Status.RUNNING).aexists():
        await asyncio.sleep(0.02)

    second = await _wait(api, path, {"assistant_id": "pipeline", "input": {"steps": 1}})

    assert (await first)["steps"] == 2
    assert second["steps"] == 1
    queued = await Run.objects.filter(thread=thread).order_by("created_at").alast()
    # Sent when it was created (no slot to execute it here), and by the first's finish.
    assert sent == [queued.pk, queued.pk]
    assert not _executed_in_a_server_run_thread(queued)


def test_a_run_whose_run_ahead_ends_before_it_is_looked_again_is_created_running(
    thread, sent, monkeypatch
):
    first = services.create_run(thread, input={"steps": 1}, send=False)

    def first_ends_between(attempt):
        def attempted(*args, **kwargs):
            try:
                return attempt(*args, **kwargs)
            except services._RunAhead:
                # The run ahead ends after the attempt found it, before the look again.
                state.update_state("run", first.pk, {"status": "success"})
                raise

        return attempted

    # The first attempt: without the thread's lock (PostgreSQL), or under it.
    for name in ("_create_run_as_read", "_create_run"):
        monkeypatch.setattr(services, name, first_ends_between(getattr(services, name)))
    worker = inprocess.claimant()
    second = services.create_run(thread, input={"steps": 1}, claim_for=worker)

    # Not left pending with nothing to start it: created running, for its caller.
    assert (second.status, second.claimed_by) == (Run.Status.RUNNING, worker)
    assert sent == []


def test_an_attempt_that_meets_a_database_error_goes_to_the_workers(
    thread, sent, monkeypatch, celery_worker
):
    run = services.create_run(thread, input={"steps": 1}, claim_for=inprocess.claimant())
    execute = runtime.Execution.execute
    failures = [OperationalError("the database went away")]

    def fails_once(self):
        if failures:
            raise failures.pop()
        return execute(self)

    monkeypatch.setattr(runtime.Execution, "execute", fails_once)

    assert inprocess.execute_here(run) == ("retrying", None)
    assert sent == [run.pk]  # put back to pending and sent
    run = services.wait_for_run(run.pk, timeout=30)
    assert run.status == Run.Status.SUCCESS  # the worker's attempt went through
    assert run.attempt == 2
    assert not _executed_in_a_server_run_thread(run)


def test_a_run_created_to_be_executed_here_is_created_claimed_and_not_sent(thread, sent):
    run = services.create_run(thread, input={"steps": 1}, claim_for=inprocess.claimant())

    assert run.status == Run.Status.RUNNING
    assert run.attempt == 1
    assert Thread.objects.get(pk=thread.pk).status == Thread.Status.BUSY
    status, finished = inprocess.execute_here(run)
    assert status == Run.Status.SUCCESS
    assert finished.pk == run.pk
    assert finished.status == Run.Status.SUCCESS
    # The run as its finish wrote it, with its thread: what /wait answers, unread.
    stored = Run.objects.select_related("thread").get(pk=run.pk)
    assert (
        streaming.output_of(finished)
        == streaming.output_of(stored)
        == {
            "steps": 1,
            "completed_steps": [1],
        }
    )
    assert sent == []


async def test_the_run_goes_on_when_its_client_goes_away(api, thread, sent):
    request = api.post(
        f"/api/threads/{thread.pk}/runs/wait",
        json={"assistant_id": "pipeline", "input": {"steps": 3, "delay_s": 0.2}},
    )
    waiting = asyncio.ensure_future(request)
    await asyncio.sleep(0.3)
    waiting.cancel()  # the client is gone before the end
    await asyncio.gather(waiting, return_exceptions=True)

    for execution in list(streaming._executing):
        await execution
    run = await Run.objects.aget(thread=thread)
    assert run.status == Run.Status.SUCCESS
    assert sent == []


async def test_with_every_slot_taken_the_run_goes_to_the_workers(
    api, thread, sent, settings, celery_worker
):
    settings.STATEHOUSE_SERVER_RUN_SLOTS = 1
    assert inprocess.reserve()  # another run holds the only slot
    try:
        body = {"assistant_id": "pipeline", "input": {"steps": 1}}
        values = await _wait(api, f"/api/threads/{thread.pk}/runs/wait", body)
    finally:
        inprocess.release()

    run = await Run.objects.aget(thread=thread)
    assert values["steps"] == 1
    assert sent == [run.pk]
    assert not _executed_in_a_server_run_thread(run)


async def test_slots_are_given_back_after_runs_and_refused_requests(api, thread, sent):
    body = {"assistant_id": "pipeline", "input": {"steps": 1}}
    await _wait(api, f"/api/threads/{thread.pk}/runs/wait", body)
    refused = await api.post(
        f"/api/threads/{thread.pk}/runs/wait", json=body | {"assistant_id": "no-such-graph"}
    )

    assert refused.status_code == 404
    assert inprocess._taken == 0
    assert sent == []
