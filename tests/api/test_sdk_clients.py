"""The Python SDK, sync and async, sending what LangGraph's browser clients send
(useStream's run fields and resume, versions, subgraphs, batches, bulk cancels, prune),
against a real Statehouse server: the answers LangGraph Server gives."""

import time

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import NotFoundError
from langgraph_sdk.schema import Command

pytestmark = pytest.mark.system


@pytest.fixture
def client(live_api):
    return get_sync_client(url=live_api.api, api_key=live_api.keys["alice"])


@pytest.fixture
def aclient(live_api):
    return get_client(url=live_api.api, api_key=live_api.keys["alice"])


def _until(predicate, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_use_stream_submit_and_resume(client):
    """useStream's fields on a stream, then its resume: {"input": {}, "command": ...}."""
    thread = client.threads.create()["thread_id"]

    parts = list(
        client.runs.stream(
            thread,
            "approval",
            input={"request": "refund 7"},
            stream_mode=["values"],
            on_disconnect="continue",
            stream_resumable=True,
            durability="async",
            feedback_keys=["score"],
        )
    )

    assert parts[0].event == "metadata"
    assert any(p.event == "values" and p.data.get("draft") for p in parts)
    [run] = client.runs.list(thread)
    assert run["kwargs"]["on_disconnect"] == "continue"
    assert run["kwargs"]["stream_resumable"] is True
    final = client.runs.wait(thread, "approval", input={}, command=Command(resume="yes"))
    assert final["approved"] is True
    found = client.threads.search(metadata={"graph_id": "approval"}, limit=100)
    assert thread in [t["thread_id"] for t in found]


def test_rollback_deletes_the_rolled_back_run_and_a_finished_run_cannot_be_cancelled(client):
    thread = client.threads.create()["thread_id"]
    first = client.runs.create(thread, "pipeline", input={"steps": 300, "delay_s": 0.05})
    _until(lambda: client.runs.get(thread, first["run_id"])["status"] == "running", "a start")

    second = client.runs.create(
        thread, "pipeline", input={"steps": 1}, multitask_strategy="rollback"
    )
    client.runs.join(thread, second["run_id"])

    with pytest.raises(NotFoundError):
        client.runs.get(thread, first["run_id"])
    assert [r["run_id"] for r in client.runs.list(thread)] == [second["run_id"]]
    with pytest.raises(NotFoundError) as finished:
        client.runs.cancel(thread, second["run_id"])
    assert "No matching runs to cancel" in finished.value.response.text


def test_versions_subgraphs_batches_bulk_cancels_and_prune(client):
    assistant = client.assistants.create("pipeline", config={"tags": ["one"]}, name="v1")
    client.assistants.update(assistant["assistant_id"], config={"tags": ["two"]})
    versions = client.assistants.get_versions(assistant["assistant_id"])
    assert [(v["version"], v["config"]) for v in versions] == [
        (2, {"tags": ["two"]}),
        (1, {"tags": ["one"]}),
    ]
    latest = client.assistants.set_latest(assistant["assistant_id"], 1)
    assert (latest["version"], latest["config"]) == (1, {"tags": ["one"]})
    assert client.assistants.get_subgraphs(assistant["assistant_id"]) == {}
    assert "state_schema" in client.assistants.get_schemas(assistant["assistant_id"])

    runs = client.runs.create_batch(
        [{"assistant_id": "pipeline", "input": {"steps": n}} for n in (1, 2)]
    )
    assert len({r["thread_id"] for r in runs}) == 2

    thread = client.threads.create()["thread_id"]
    later = client.runs.create(thread, "pipeline", input={"steps": 1}, after_seconds=600)
    client.runs.cancel_many(thread_id=thread, run_ids=[later["run_id"]])
    assert client.runs.get(thread, later["run_id"])["status"] == "interrupted"
    with pytest.raises(httpx.HTTPStatusError) as none_left:
        client.runs.cancel_many(thread_id=thread, run_ids=[later["run_id"]])
    assert none_left.value.response.status_code == 404

    assert client.threads.prune([thread]) == {"pruned_count": 1}
    with pytest.raises(NotFoundError):
        client.threads.get(thread)


async def test_the_async_client_lists_versions_and_cancels_in_bulk(aclient):
    assistant = await aclient.assistants.create("pipeline", metadata={"team": "a"})
    await aclient.assistants.update(assistant["assistant_id"], metadata={"stage": "beta"})

    beta = await aclient.assistants.get_versions(
        assistant["assistant_id"], metadata={"stage": "beta"}
    )

    assert [v["version"] for v in beta] == [2]
    assert beta[0]["metadata"] == {"team": "a", "stage": "beta"}
    thread = (await aclient.threads.create())["thread_id"]
    later = await aclient.runs.create(thread, "pipeline", input={"steps": 1}, after_seconds=600)
    await aclient.runs.cancel_many(thread_id=thread, run_ids=[later["run_id"]], action="rollback")
    with pytest.raises(NotFoundError):
        await aclient.runs.get(thread, later["run_id"])
    assert await aclient.threads.prune([thread], strategy="keep_latest") == {"pruned_count": 1}
