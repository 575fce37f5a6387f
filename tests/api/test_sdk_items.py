"""Issue 13's items through the real Python SDK (langgraph-sdk), its sync client and its
async client alike, against one real Statehouse server serving tests/clients/graphs (the
`nested` graph with a subgraph, `signed` with a runtime context, the demo graphs): what
tests/clients/test_js_sdk_items.py shows with the JavaScript SDK. Bulk cancels, run
deletes, count and prune; the events, tasks and checkpoints modes with and without
subgraphs; a client leaving a stream; the thread-level stream; multitask strategies;
durability, context, feedback_keys, on_completion keep, if_not_exists; schemas and xray;
refusals.
"""

import asyncio
import functools
import inspect
import time
import uuid
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client

from tests.api.conftest import running_api
from tests.api.test_stream_modes import REFERENCE, TASK_ID

pytestmark = pytest.mark.system

GRAPHS = Path(__file__).parent.parent / "clients" / "graphs" / "langgraph.json"
FINISHED = ("success", "error", "interrupted", "timeout")


@pytest.fixture(scope="module")
def items_api(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("py-items-api")
    with running_api(var_dir, name="pyitems", STATEHOUSE_GRAPHS_FILE=str(GRAPHS)) as api:
        yield api


class Sdk:
    """One of the SDK's two clients behind one face: every call is awaited when the
    client is the async one, every stream read with `for` or `async for` as it needs."""

    def __init__(self, kind: str, api):
        self.kind = kind
        connect = get_sync_client if kind == "sync" else get_client
        self.client = connect(url=api.api, api_key=api.keys["alice"])

    def _method(self, name: str):
        return functools.reduce(getattr, name.split("."), self.client)

    async def __call__(self, name: str, *args, **kwargs):
        result = self._method(name)(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    async def refused(self, name: str, *args, **kwargs) -> httpx.Response:
        """The answer to a call that must fail."""
        with pytest.raises(httpx.HTTPStatusError) as failed:
            await self(name, *args, **kwargs)
        return failed.value.response

    async def parts(self, name: str, *args, until=None, **kwargs) -> list:
        """The stream's parts, to its end or until `until(part)` holds: then the client
        closes the stream (goes away)."""
        stream = await self(name, *args, **kwargs)
        parts = []
        if self.kind == "sync":
            for part in stream:
                parts.append(part)
                if until and until(part):
                    break
            stream.close()
        else:
            async for part in stream:
                parts.append(part)
                if until and until(part):
                    break
            await stream.aclose()
        return parts

    async def thread(self) -> str:
        return (await self("threads.create"))["thread_id"]

    async def status(self, thread_id: str, run_id: str, statuses, timeout: float = 30) -> dict:
        """The run once its status is one of `statuses` (polled, with a deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            run = await self("runs.get", thread_id, run_id)
            if run["status"] in statuses:
                return run
            assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
            await asyncio.sleep(0.1)

    async def close(self):
        if self.kind == "sync":
            self.client.close()
        else:
            await self.client.aclose()


@pytest.fixture(params=["sync", "async"])
async def sdk(request, items_api):
    client = Sdk(request.param, items_api)
    yield client
    await client.close()


def names(parts) -> list[str]:
    return [TASK_ID.sub("", part.event) for part in parts]


def run_done(part) -> bool:
    return part.event == "metadata" and part.data.get("status") == "run_done"


# --- many at once -----------------------------------------------------------------------


async def test_cancel_many_by_ids_with_rollback_and_by_status(sdk):
    thread = await sdk.thread()
    a, b, c = [
        await sdk("runs.create", thread, "pipeline", input={"steps": n}, after_seconds=600)
        for n in (1, 2, 3)
    ]

    await sdk("runs.cancel_many", thread_id=thread, run_ids=[a["run_id"]])
    after = [(await sdk("runs.get", thread, r["run_id"]))["status"] for r in (a, b, c)]
    assert after == ["interrupted", "pending", "pending"]

    await sdk("runs.cancel_many", thread_id=thread, run_ids=[b["run_id"]], action="rollback")
    assert (await sdk.refused("runs.get", thread, b["run_id"])).status_code == 404

    await sdk("runs.cancel_many", status="pending")  # every pending run of hers
    assert (await sdk("runs.get", thread, c["run_id"]))["status"] == "interrupted"

    none_left = await sdk.refused("runs.cancel_many", thread_id=thread, run_ids=[c["run_id"]])
    assert none_left.status_code == 404
    assert "No matching runs to cancel" in none_left.json()["detail"]


async def test_create_batch_runs_every_payload_with_its_fields(sdk):
    runs = await sdk(
        "runs.create_batch",
        [
            {"assistant_id": "pipeline", "input": {"steps": 1}, "on_completion": "keep"},
            {"assistant_id": "pipeline", "input": {"steps": 2}, "on_completion": "keep"},
        ],
    )

    assert [run["kwargs"]["input"] for run in runs] == [{"steps": 1}, {"steps": 2}]
    assert [run["kwargs"]["on_completion"] for run in runs] == ["keep", "keep"]
    assert len({run["thread_id"] for run in runs}) == 2  # stateless: a thread each
    joined = [await sdk("runs.join", run["thread_id"], run["run_id"]) for run in runs]
    assert [values["completed_steps"] for values in joined] == [[1], [1, 2]]


async def test_a_deleted_run_is_gone(sdk):
    thread = await sdk.thread()
    kept = await sdk("runs.create", thread, "pipeline", input={"steps": 1})
    await sdk("runs.join", thread, kept["run_id"])
    run = await sdk("runs.create", thread, "pipeline", input={"steps": 1})
    await sdk("runs.join", thread, run["run_id"])

    await sdk("runs.delete", thread, run["run_id"])

    assert (await sdk.refused("runs.get", thread, run["run_id"])).status_code == 404
    assert (await sdk.refused("runs.delete", thread, run["run_id"])).status_code == 404
    assert [r["run_id"] for r in await sdk("runs.list", thread)] == [kept["run_id"]]


async def test_threads_count_and_prune(sdk):
    marker = {"marker": f"py-prune-{uuid.uuid4().hex[:8]}"}
    threads = [(await sdk("threads.create", metadata=marker))["thread_id"] for _ in range(3)]

    assert await sdk("threads.count", metadata=marker) == 3
    pruned = await sdk("threads.prune", threads[:2])

    assert pruned == {"pruned_count": 2}
    assert await sdk("threads.count", metadata=marker) == 1
    assert (await sdk.refused("threads.get", threads[0])).status_code == 404
    left = await sdk("threads.search", metadata=marker)
    assert [t["thread_id"] for t in left] == [threads[2]]


# --- streams ----------------------------------------------------------------------------


async def stream_nested(sdk, mode: str, subgraphs: bool):
    """A `nested` run streamed in `mode`; its parts, its run and its log replayed."""
    thread = await sdk.thread()
    created = []
    parts = await sdk.parts(
        "runs.stream",
        thread,
        "nested",
        input={"text": "hi"},
        stream_mode=mode,
        stream_subgraphs=subgraphs,
        on_run_created=created.append,
    )
    run = await sdk("runs.get", thread, created[0]["run_id"])
    replay = await sdk.parts("runs.join_stream", thread, run["run_id"], last_event_id="0")
    return parts, run, replay


@pytest.mark.parametrize("subgraphs", [False, True], ids=["flat", "subgraphs"])
@pytest.mark.parametrize("mode", ["events", "tasks", "checkpoints"])
async def test_each_mode_streams_what_the_reference_streams(sdk, mode, subgraphs):
    parts, run, replay = await stream_nested(sdk, mode, subgraphs)

    assert names(parts) == ["metadata", *REFERENCE[(mode, subgraphs)]]
    assert parts[0].data == {"run_id": run["run_id"], "attempt": 1}
    assert run["status"] == "success"
    # Replayed from the run's log: the same events with the same data.
    assert [(p.event, p.data) for p in replay] == [(p.event, p.data) for p in parts]


async def test_the_tasks_and_checkpoints_modes_carry_the_references_payloads(sdk):
    tasks = [p.data for p in (await stream_nested(sdk, "tasks", False))[0][1:]]
    starts = [t for t in tasks if "input" in t]
    results = [t for t in tasks if "result" in t]
    assert [t["name"] for t in starts] == ["prepare", "child", "finish"]
    assert [t["name"] for t in results] == ["prepare", "child", "finish"]
    assert results[-1]["result"] == {"done": True}

    checkpoints = [p.data for p in (await stream_nested(sdk, "checkpoints", False))[0][1:]]
    assert all({"config", "values", "next", "metadata"} <= set(c) for c in checkpoints)
    assert checkpoints[-1]["values"]["done"] is True
    assert checkpoints[-1]["next"] == []


async def test_a_subgraph_stream_names_its_events_by_the_subgraphs_namespace(sdk):
    parts, _, _ = await stream_nested(sdk, "values", True)

    nested = {p.event for p in parts if "|" in p.event}
    (name,) = nested
    assert name.startswith("values|child:")
    assert [p.data for p in parts if p.event == name][-1]["text"] == "HI"
    assert parts[-1].data["done"] is True


async def leave_after_the_first_step(sdk, on_disconnect: str):
    """A slow run streamed in the custom mode; the client goes away after its first step."""
    thread = await sdk.thread()
    created = []
    seen = await sdk.parts(
        "runs.stream",
        thread,
        "pipeline",
        input={"steps": 6, "delay_s": 0.3},
        stream_mode="custom",
        on_disconnect=on_disconnect,
        stream_resumable=on_disconnect == "continue",
        on_run_created=created.append,
        until=lambda part: part.event == "custom",
    )
    return thread, created[0]["run_id"], seen


async def test_on_disconnect_cancel_interrupts_the_run_when_the_client_leaves(sdk):
    thread, run_id, seen = await leave_after_the_first_step(sdk, "cancel")

    assert [p.data["step"] for p in seen if p.event == "custom"] == [1]
    assert (await sdk.status(thread, run_id, FINISHED))["status"] == "interrupted"
    values = (await sdk("threads.get_state", thread))["values"]
    assert len(values["completed_steps"]) < 6


async def test_on_disconnect_continue_finishes_the_run_and_join_stream_rejoins_it(sdk):
    thread, run_id, seen = await leave_after_the_first_step(sdk, "continue")

    # Re-joined from the last event this client saw: the rest of the run.
    rejoined = await sdk.parts("runs.join_stream", thread, run_id, last_event_id=seen[-1].id)

    assert (await sdk.status(thread, run_id, FINISHED))["status"] == "success"
    values = (await sdk("threads.get_state", thread))["values"]
    assert values["completed_steps"] == [1, 2, 3, 4, 5, 6]
    steps = [p.data["step"] for p in seen + rejoined if p.event == "custom"]
    assert steps == [1, 2, 3, 4, 5, 6]  # nothing lost, nothing twice


@pytest.mark.parametrize(
    "stream_mode,expected",
    [
        ("run_modes", ["metadata", "updates", "updates", "metadata"]),
        ("lifecycle", ["metadata", "metadata"]),
    ],
)
async def test_threads_join_stream_replays_and_follows_the_threads_runs(sdk, stream_mode, expected):
    thread = await sdk.thread()
    finished = await sdk(
        "runs.create", thread, "pipeline", input={"steps": 2}, stream_mode="updates"
    )
    await sdk("runs.join", thread, finished["run_id"])

    # The finished run, replayed from the start of the thread's log.
    replay = await sdk.parts(
        "threads.join_stream", thread, stream_mode=stream_mode, last_event_id="0", until=run_done
    )
    assert [p.event for p in replay] == expected
    assert replay[0].data == {"run_id": finished["run_id"], "attempt": 1}
    assert replay[-1].data == {"status": "run_done", "run_id": finished["run_id"]}

    # A running run (its two steps are the thread's third and fourth), followed from the
    # last event the client saw.
    running = await sdk(
        "runs.create",
        thread,
        "pipeline",
        input={"steps": 4, "delay_s": 0.5},
        stream_mode="custom",
    )
    live = await sdk.parts(
        "threads.join_stream",
        thread,
        stream_mode=stream_mode,
        last_event_id=replay[-1].id,
        until=run_done,
    )
    assert live[-1].data == {"status": "run_done", "run_id": running["run_id"]}
    if stream_mode == "run_modes":
        assert [p.data["step"] for p in live if p.event == "custom"] == [3, 4]
    else:
        assert {p.event for p in live} == {"metadata"}
    assert (await sdk("runs.get", thread, running["run_id"]))["status"] == "success"


# --- run fields -------------------------------------------------------------------------


async def start_a_long_run(sdk, steps: int = 300, delay_s: float = 0.05):
    thread = await sdk.thread()
    first = await sdk("runs.create", thread, "pipeline", input={"steps": steps, "delay_s": delay_s})
    await sdk.status(thread, first["run_id"], ["running"])
    return thread, first


async def test_multitask_reject_is_a_409_and_the_first_run_goes_on(sdk):
    thread, first = await start_a_long_run(sdk)

    second = await sdk.refused(
        "runs.create", thread, "pipeline", input={"steps": 1}, multitask_strategy="reject"
    )

    assert second.status_code == 409
    assert "detail" in second.json()
    assert (await sdk("runs.get", thread, first["run_id"]))["status"] == "running"
    await sdk("runs.cancel", thread, first["run_id"], wait=True)
    assert [r["run_id"] for r in await sdk("runs.list", thread)] == [first["run_id"]]


async def test_multitask_interrupt_stops_the_first_run_and_runs_the_second(sdk):
    thread, first = await start_a_long_run(sdk)

    second = await sdk(
        "runs.create", thread, "pipeline", input={"steps": 1}, multitask_strategy="interrupt"
    )
    await sdk("runs.join", thread, second["run_id"])

    assert (await sdk("runs.get", thread, first["run_id"]))["status"] == "interrupted"
    assert (await sdk("runs.get", thread, second["run_id"]))["status"] == "success"
    listed = [r["run_id"] for r in await sdk("runs.list", thread)]
    assert listed == [second["run_id"], first["run_id"]]


async def test_multitask_rollback_deletes_the_rolled_back_run(sdk):
    thread, first = await start_a_long_run(sdk)

    second = await sdk(
        "runs.create", thread, "pipeline", input={"steps": 1}, multitask_strategy="rollback"
    )
    await sdk("runs.join", thread, second["run_id"])

    assert (await sdk.refused("runs.get", thread, first["run_id"])).status_code == 404
    assert (await sdk("runs.get", thread, second["run_id"]))["status"] == "success"
    assert [r["run_id"] for r in await sdk("runs.list", thread)] == [second["run_id"]]
    # The rolled-back run's steps are gone with its checkpoints: only the second's one.
    assert (await sdk("threads.get_state", thread))["values"]["completed_steps"] == [1]


async def test_multitask_enqueue_runs_the_second_after_the_first(sdk):
    thread, first = await start_a_long_run(sdk, steps=3, delay_s=0.3)

    second = await sdk(
        "runs.create", thread, "pipeline", input={"steps": 1}, multitask_strategy="enqueue"
    )
    await sdk("runs.join", thread, second["run_id"])

    assert (await sdk("runs.get", thread, first["run_id"]))["status"] == "success"
    assert (await sdk("runs.get", thread, second["run_id"]))["status"] == "success"
    values = (await sdk("threads.get_state", thread))["values"]
    assert values["completed_steps"] == [1, 2, 3, 4]


@pytest.mark.parametrize("durability,checkpoints", [("sync", 4), ("async", 4), ("exit", 1)])
async def test_durability_decides_how_often_the_run_is_checkpointed(sdk, durability, checkpoints):
    thread = await sdk.thread()

    values = await sdk("runs.wait", thread, "pipeline", input={"steps": 2}, durability=durability)

    assert values == {"steps": 2, "completed_steps": [1, 2]}
    assert len(await sdk("threads.get_history", thread, limit=50)) == checkpoints


async def test_the_runs_context_reaches_the_graph(sdk):
    thread = await sdk.thread()
    signed = await sdk("runs.wait", thread, "signed", input={"text": "hi"}, context={"user": "ann"})
    other = await sdk("runs.wait", None, "signed", input={"text": "ho"}, context={"user": "bea"})

    assert signed == {"text": "HI", "said_by": "ann"}
    assert other == {"text": "HO", "said_by": "bea"}


async def test_the_context_is_the_assistants_under_the_runs_with_the_schemas_defaults(sdk):
    """No context anywhere: the context schema's defaults; an assistant's context applies
    to its runs; a run's keys go over it."""
    assistant = await sdk("assistants.create", "signed", context={"user": "cy"})
    said = []
    for assistant_id, context in (
        ("signed", None),
        (assistant["assistant_id"], None),
        (assistant["assistant_id"], {"user": "dee"}),
    ):
        values = await sdk("runs.wait", None, assistant_id, input={"text": "hi"}, context=context)
        said.append(values["said_by"])

    assert said == ["nobody", "cy", "dee"]


async def test_feedback_keys_are_kept_with_the_run(sdk):
    """The SDK sends feedback_keys with a stream (its create and wait have no such field)."""
    thread = await sdk.thread()
    keys = ["score", "helpful"]
    await sdk.parts("runs.stream", thread, "pipeline", input={"steps": 1}, feedback_keys=keys)

    [run] = await sdk("runs.list", thread)

    assert run["kwargs"]["feedback_keys"] == keys
    assert run["status"] == "success"


async def test_on_completion_keep_keeps_a_stateless_runs_thread(sdk):
    run = await sdk("runs.create", None, "pipeline", input={"steps": 1}, on_completion="keep")
    await sdk("runs.join", run["thread_id"], run["run_id"])

    thread = await sdk("threads.get", run["thread_id"])
    state = await sdk("threads.get_state", run["thread_id"])

    assert thread["thread_id"] == run["thread_id"]
    assert state["values"] == {"steps": 1, "completed_steps": [1]}
    assert (await sdk("runs.get", run["thread_id"], run["run_id"]))["status"] == "success"


async def test_if_not_exists_create_makes_the_thread(sdk):
    thread_id = str(uuid.uuid4())

    values = await sdk(
        "runs.wait", thread_id, "pipeline", input={"steps": 1}, if_not_exists="create"
    )

    assert values == {"steps": 1, "completed_steps": [1]}
    thread = await sdk("threads.get", thread_id)
    assert thread["metadata"]["graph_id"] == "pipeline"
    missing = str(uuid.uuid4())
    refused = await sdk.refused("runs.wait", missing, "pipeline", input={"steps": 1})
    assert refused.status_code == 404
    assert (await sdk.refused("threads.get", missing)).status_code == 404


async def test_the_schemas_have_the_context_and_the_graph_draws_subgraphs_with_xray(sdk):
    schemas = await sdk("assistants.get_schemas", "signed")

    assert schemas["graph_id"] == "signed"
    assert set(schemas["state_schema"]["properties"]) == {"text", "said_by"}
    assert schemas["context_schema"]["properties"] == {
        "user": {"default": "nobody", "title": "User", "type": "string"}
    }
    drawn = [await sdk("assistants.get_graph", "signed", xray=x) for x in (False, True, 1)]
    flat, xray, xray1 = [{node["id"] for node in graph["nodes"]} for graph in drawn]
    assert flat == {"__start__", "inner", "sign", "__end__"}
    assert "inner:shout" in xray
    assert xray1 == xray


async def test_a_webhook_and_bad_fields_are_422s_naming_the_field(sdk):
    thread = await sdk.thread()

    webhook = await sdk.refused(
        "runs.create", thread, "pipeline", input={"steps": 1}, webhook="https://example.com/hook"
    )
    assert webhook.status_code == 422
    assert "webhook" in str(webhook.json()["detail"])

    for field, call, value in (
        ("multitask_strategy", "runs.create", "bogus"),
        ("on_disconnect", "runs.wait", "later"),
    ):
        refused = await sdk.refused(call, thread, "pipeline", input={"steps": 1}, **{field: value})
        assert refused.status_code == 422
        [error] = refused.json()["detail"]
        assert error["loc"] == ["body", field]
    assert await sdk("runs.list", thread) == []  # nothing was written
