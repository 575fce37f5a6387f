"""Every stream mode, with and without subgraphs, named and ended as LangGraph Server
(langgraph dev 0.16.7) streams the same graph, live and replayed from Last-Event-ID;
the thread-level stream. Real server, real langgraph-sdk (sync and async), raw SSE."""

import json
import re
from pathlib import Path

import pytest
from langgraph_sdk import get_client, get_sync_client

from tests.api.conftest import running_api

pytestmark = pytest.mark.system

GRAPHS = Path(__file__).parent / "stream_graphs" / "langgraph.json"
TASK_ID = re.compile(r":[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# What langgraph dev 0.16.7 streamed for the `nested` graph (tests/api/stream_graphs), by
# (mode, stream_subgraphs): the event names after `metadata`, task ids left out.
REFERENCE = {
    ("values", False): ["values"] * 4,
    ("values", True): ["values"] * 2 + ["values|child"] * 3 + ["values"] * 2,
    ("updates", False): ["updates"] * 3,
    ("updates", True): ["updates"] + ["updates|child"] * 2 + ["updates"] * 2,
    ("messages", False): ["messages/metadata", "messages/complete"],
    ("messages", True): ["messages/metadata"] + ["messages/partial"] * 3,
    ("messages-tuple", False): ["messages"],
    ("messages-tuple", True): ["messages|child"] * 3,
    ("custom", False): [],
    ("custom", True): ["custom|child"],
    ("debug", False): ["debug"] * 11,
    ("debug", True): ["debug"] * 6 + ["debug|child"] * 8 + ["debug"] * 5,
    ("events", False): ["events"] * 24,
    ("events", True): ["events"] * 24,
    ("tasks", False): ["tasks"] * 6,
    ("tasks", True): ["tasks"] * 3 + ["tasks|child"] * 4 + ["tasks"] * 3,
    ("checkpoints", False): ["checkpoints"] * 5,
    ("checkpoints", True): ["checkpoints"] * 3 + ["checkpoints|child"] * 4 + ["checkpoints"] * 2,
}


@pytest.fixture(scope="module")
def stream_api(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("stream-api")
    with running_api(var_dir, name="streams", STATEHOUSE_GRAPHS_FILE=str(GRAPHS)) as api:
        yield api


@pytest.fixture
def client(stream_api):
    return get_sync_client(url=stream_api.api, api_key=stream_api.keys["alice"])


@pytest.fixture
def raw(stream_api):
    with stream_api.client() as http:
        yield http


def names(parts) -> list[str]:
    return [TASK_ID.sub("", part.event) for part in parts]


def sse_frames(body: bytes) -> list[dict[str, str]]:
    frames = []
    for block in body.decode().split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if lines:
            frames.append(dict(line.split(": ", 1) for line in lines))
    return frames


def stream_raw(raw, thread_id, body) -> bytes:
    with raw.stream("POST", f"/threads/{thread_id}/runs/stream", json=body) as response:
        assert response.status_code == 200
        return response.read()


@pytest.mark.parametrize("subgraphs", [False, True], ids=["flat", "subgraphs"])
@pytest.mark.parametrize("mode", sorted({mode for mode, _ in REFERENCE}))
def test_each_mode_streams_the_events_the_reference_streams(client, mode, subgraphs):
    thread = client.threads.create()["thread_id"]

    parts = list(
        client.runs.stream(
            thread, "nested", input={"text": "hi"}, stream_mode=mode, stream_subgraphs=subgraphs
        )
    )

    assert names(parts) == ["metadata", *REFERENCE[(mode, subgraphs)]]
    assert set(parts[0].data) == {"run_id", "attempt"}
    run_id = parts[0].data["run_id"]
    assert client.runs.get(thread, run_id)["status"] == "success"
    # The same events again from the run's log.
    replayed = list(client.runs.join_stream(thread, run_id, last_event_id="0"))
    assert [(p.event, p.data) for p in replayed] == [(p.event, p.data) for p in parts]


@pytest.mark.parametrize("subgraphs", [False, True], ids=["flat", "subgraphs"])
async def test_the_async_client_gets_the_same_events(stream_api, subgraphs):
    client = get_client(url=stream_api.api, api_key=stream_api.keys["alice"])
    thread = (await client.threads.create())["thread_id"]
    for mode in ("values", "updates", "messages-tuple", "tasks"):
        parts = [
            part
            async for part in client.runs.stream(
                thread, "nested", input={"text": "hi"}, stream_mode=mode, stream_subgraphs=subgraphs
            )
        ]
        assert names(parts) == ["metadata", *REFERENCE[(mode, subgraphs)]], mode


def test_the_namespace_is_the_subgraphs_task_path(client):
    thread = client.threads.create()["thread_id"]
    parts = list(client.runs.stream(thread, "nested", input={"text": "hi"}, stream_subgraphs=True))
    nested = {p.event for p in parts if "|" in p.event}
    assert len(nested) == 1
    (name,) = nested
    mode, namespace = name.split("|", 1)
    assert mode == "values" and re.fullmatch(r"child:[0-9a-f-]{36}", namespace)
    assert [p.data for p in parts if p.event == name][-1]["text"] == "HI"


def test_the_events_mode_sends_langchain_v2_events(client):
    thread = client.threads.create()["thread_id"]
    parts = list(client.runs.stream(thread, "nested", input={"text": "hi"}, stream_mode="events"))
    events = [p.data for p in parts if p.event == "events"]

    assert set(events[0]) == {"event", "data", "name", "tags", "run_id", "metadata", "parent_ids"}
    assert (events[0]["event"], events[0]["name"], events[0]["parent_ids"]) == (
        "on_chain_start",
        "nested",
        [],
    )
    assert events[0]["data"] == {"input": {"text": "hi"}}
    assert (events[-1]["event"], events[-1]["name"]) == ("on_chain_end", "nested")
    assert events[-1]["data"]["output"]["done"] is True
    tokens = [e["data"]["chunk"]["content"] for e in events if e["event"] == "on_chat_model_stream"]
    assert "".join(tokens) == "said HI"
    speak = next(e for e in events if e["event"] == "on_chain_start" and e["name"] == "speak")
    assert speak["metadata"]["langgraph_node"] == "speak"
    assert speak["metadata"]["langgraph_checkpoint_ns"].startswith("child:")
    # The top graph's own chunks are the other modes' events, not `events`.
    top = events[0]["run_id"]
    assert not [e for e in events if e["event"] == "on_chain_stream" and e["run_id"] == top]


def test_a_stream_just_closes_at_the_end_of_the_run(raw):
    thread = raw.post("/threads", json={}).json()["thread_id"]
    body = stream_raw(raw, thread, {"assistant_id": "pipeline", "input": {"steps": 2}})

    frames = sse_frames(body)
    assert [f["event"] for f in frames] == ["metadata", "values", "values", "values"]
    assert json.loads(frames[-1]["data"])["completed_steps"] == [1, 2]
    assert b"event: end" not in body
    assert all(f["id"].isdigit() for f in frames)


def test_a_failed_run_ends_with_an_error_event(raw, client):
    thread = raw.post("/threads", json={}).json()["thread_id"]
    body = {
        "assistant_id": "pipeline",
        "input": {"steps": 30},
        "config": {"recursion_limit": 3},
        "stream_mode": "updates",
    }
    frames = sse_frames(stream_raw(raw, thread, body))

    assert frames[-1]["event"] == "error"
    error = json.loads(frames[-1]["data"])
    assert set(error) == {"error", "message"}
    assert error["error"] == "GraphRecursionError"
    parts = list(client.runs.stream(thread, "pipeline", input={"steps": 30}, config=body["config"]))
    assert parts[-1].event == "error"
    assert parts[-1].data["error"] == "GraphRecursionError"


@pytest.mark.parametrize(
    "last_event_id,replayed",
    [(None, 0), ("zzz", 0), ("1796115618500-0", 0), ("-1", 3), ("0", 3), ("first", 2)],
)
def test_last_event_id_on_a_finished_run(raw, last_event_id, replayed):
    """As LangGraph Server: none or an id that is not one replays nothing (200), -1 and 0
    everything, an id what came after it."""
    thread = raw.post("/threads", json={}).json()["thread_id"]
    body = {"assistant_id": "pipeline", "input": {"steps": 2}, "stream_mode": "updates"}
    first = sse_frames(stream_raw(raw, thread, body))
    assert [f["event"] for f in first] == ["metadata", "updates", "updates"]
    run_id = json.loads(first[0]["data"])["run_id"]
    if last_event_id == "first":
        last_event_id = first[0]["id"]
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}

    response = raw.get(f"/threads/{thread}/runs/{run_id}/stream", headers=headers)

    assert response.status_code == 200
    assert response.headers["Location"] == f"/threads/{thread}/runs/{run_id}/stream"
    assert sse_frames(response.content) == first[len(first) - replayed :][:replayed]


def test_a_resumable_stream_dropped_midway_is_joined_again_from_its_last_event(raw, client):
    thread = raw.post("/threads", json={}).json()["thread_id"]
    body = {
        "assistant_id": "pipeline",
        "input": {"steps": 5, "delay_s": 0.2},
        "stream_mode": "custom",
        "stream_resumable": True,
        "on_disconnect": "continue",
    }
    seen = []
    with raw.stream("POST", f"/threads/{thread}/runs/stream", json=body) as response:
        location = response.headers["Location"]
        for line in response.iter_lines():
            if line.startswith("id: "):
                seen.append(line[4:])
            if len(seen) == 3:
                break  # the client goes away

    run_id = location.split("/")[4]
    rest = list(client.runs.join_stream(thread, run_id, last_event_id=seen[-1]))

    steps = [p.data["step"] for p in rest if p.event == "custom"]
    assert steps == list(range(3, 6))  # metadata, steps 1 and 2 were seen
    assert client.runs.get(thread, run_id)["status"] == "success"


# --- the thread-level stream -----------------------------------------------------------


def thread_stream(raw, thread_id, query: str, last_event_id=None, until=None) -> list[dict]:
    """The thread stream's frames until one matches ``until`` (then the client leaves)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    frames = []
    with raw.stream("GET", f"/threads/{thread_id}/stream{query}", headers=headers) as response:
        assert response.status_code == 200, response.read()
        block = []
        for line in response.iter_lines():
            if line:
                block.append(line)
                continue
            fields = dict(item.split(": ", 1) for item in block if not item.startswith(":"))
            block = []
            if fields:
                frames.append(fields)
                if until(fields):
                    return frames
    return frames


def run_done(frame) -> bool:
    return frame["event"] == "metadata" and "run_done" in frame["data"]


@pytest.mark.parametrize(
    "query,expected",
    [
        ("", ["metadata", "updates", "updates", "metadata"]),
        ("?stream_modes=run_modes", ["metadata", "updates", "updates", "metadata"]),
        ("?stream_mode=lifecycle", ["metadata", "metadata"]),
        ("?stream_modes=lifecycle", ["metadata", "metadata"]),
    ],
)
def test_the_thread_stream_replays_and_follows_its_runs(raw, query, expected):
    thread = raw.post("/threads", json={}).json()["thread_id"]
    body = {"assistant_id": "pipeline", "input": {"steps": 2}, "stream_mode": "updates"}
    run_id = raw.post(f"/threads/{thread}/runs/wait", json=body).headers["Content-Location"]
    run_id = run_id.rsplit("/", 1)[1]

    frames = thread_stream(raw, thread, query, last_event_id="0", until=run_done)

    assert [f["event"] for f in frames] == expected
    assert json.loads(frames[0]["data"]) == {"run_id": run_id, "attempt": 1}
    assert json.loads(frames[-1]["data"]) == {"status": "run_done", "run_id": run_id}
    ids = [int(f["id"]) for f in frames]
    assert ids == sorted(ids)
    # From an id on: only what came after it.
    after = thread_stream(raw, thread, query, last_event_id=str(ids[0]), until=run_done)
    assert after == frames[1:]


def test_the_thread_stream_sends_runs_started_after_it_was_opened(raw, client):
    thread = raw.post("/threads", json={}).json()["thread_id"]
    client.runs.wait(thread, "pipeline", input={"steps": 1})  # before: not sent
    run = client.runs.create(
        thread, "pipeline", input={"steps": 1, "delay_s": 1}, stream_mode="custom"
    )

    frames = thread_stream(raw, thread, "?stream_mode=run_modes", until=run_done)

    assert [f["event"] for f in frames][-2:] == ["custom", "metadata"]
    assert {json.loads(f["data"]).get("run_id") for f in frames} - {None} == {run["run_id"]}


@pytest.mark.parametrize(
    "query,headers,detail",
    [
        ("?stream_mode=state_update", {}, "state_update is not supported"),
        ("?stream_modes=bogus", {}, "Invalid stream mode: bogus"),
        ("", {"Last-Event-ID": "zzz"}, "Invalid last-event-id"),
    ],
)
def test_the_thread_stream_refuses_what_it_cannot_do(raw, query, headers, detail):
    thread = raw.post("/threads", json={}).json()["thread_id"]
    response = raw.get(f"/threads/{thread}/stream{query}", headers=headers)
    assert response.status_code == 422
    assert detail in response.json()["detail"]


def test_another_owners_thread_stream_is_a_404(stream_api, raw):
    thread = raw.post("/threads", json={}).json()["thread_id"]
    with stream_api.client("bob") as bob:
        assert bob.get(f"/threads/{thread}/stream").status_code == 404
