"""The official langgraph-sdk client against a real Statehouse server, sync and async."""

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import AuthenticationError, ConflictError, NotFoundError
from langgraph_sdk.schema import Command

pytestmark = pytest.mark.system


@pytest.fixture
def client(live_api):
    return get_sync_client(url=live_api.api, api_key=live_api.keys["alice"])


@pytest.fixture
def aclient(live_api):
    return get_client(url=live_api.api, api_key=live_api.keys["alice"])


def test_assistants_crud_search_count_graph_and_schemas(client):
    created = client.assistants.create(
        graph_id="pipeline", config={"recursion_limit": 50}, metadata={"team": "ops"}, name="slow"
    )
    assert created["graph_id"] == "pipeline"

    assert client.assistants.get(created["assistant_id"])["name"] == "slow"
    found = client.assistants.search(metadata={"team": "ops"})
    assert [a["assistant_id"] for a in found] == [created["assistant_id"]]
    assert client.assistants.count(graph_id="pipeline") >= 2  # the system one too
    graph = client.assistants.get_graph(created["assistant_id"])
    assert {"step"} <= {node["id"] for node in graph["nodes"]}
    schemas = client.assistants.get_schemas("pipeline")
    assert "steps" in schemas["input_schema"]["properties"]
    patched = client.assistants.update(created["assistant_id"], name="slower")
    assert patched["name"] == "slower"
    client.assistants.delete(created["assistant_id"])
    with pytest.raises(NotFoundError):
        client.assistants.get(created["assistant_id"])


def test_a_graph_id_works_wherever_an_assistant_id_does(client):
    system = client.assistants.get("chat")
    assert system["graph_id"] == "chat"
    assert system["metadata"]["created_by"] == "system"


def test_threads_create_get_update_search_count_copy_delete(client):
    thread = client.threads.create(metadata={"customer": "acme", "tier": "gold"})
    assert thread["status"] == "idle"
    assert (
        client.threads.create(thread_id=thread["thread_id"], if_exists="do_nothing")["thread_id"]
        == thread["thread_id"]
    )
    with pytest.raises(ConflictError):
        client.threads.create(thread_id=thread["thread_id"], if_exists="raise")

    client.threads.update(thread["thread_id"], metadata={"stage": "triage"})
    fetched = client.threads.get(thread["thread_id"])
    assert fetched["metadata"]["stage"] == "triage"
    assert fetched["metadata"]["customer"] == "acme"

    found = client.threads.search(metadata={"customer": "acme", "stage": "triage"})
    assert [t["thread_id"] for t in found] == [thread["thread_id"]]
    assert client.threads.count(metadata={"customer": "acme"}) == 1

    client.runs.wait(thread["thread_id"], "pipeline", input={"steps": 2})
    copy = client.threads.copy(thread["thread_id"])
    assert copy["thread_id"] != thread["thread_id"]
    assert client.threads.get_state(copy["thread_id"])["values"]["completed_steps"] == [1, 2]

    client.threads.delete(thread["thread_id"])
    with pytest.raises(NotFoundError):
        client.threads.get(thread["thread_id"])


def test_a_session_id_in_metadata_groups_threads(client):
    first = client.threads.create()
    session_id = first["metadata"]["session_id"]
    second = client.threads.create(metadata={"session_id": session_id})
    assert second["metadata"]["session_id"] == session_id
    assert client.threads.count(metadata={"session_id": session_id}) == 2


def test_runs_wait_returns_the_final_values(client):
    thread = client.threads.create()

    values = client.runs.wait(thread["thread_id"], "pipeline", input={"steps": 3})

    assert values["completed_steps"] == [1, 2, 3]
    [run] = client.runs.list(thread["thread_id"])
    assert run["status"] == "success"
    assert client.runs.get(thread["thread_id"], run["run_id"])["status"] == "success"


def test_a_failing_run_raises_from_wait(client):
    thread = client.threads.create()
    with pytest.raises(Exception, match="GraphRecursionError"):
        client.runs.wait(
            thread["thread_id"], "pipeline", input={"steps": 30}, config={"recursion_limit": 3}
        )


def test_stateless_runs(client):
    values = client.runs.wait(None, "pipeline", input={"steps": 2})
    assert values["completed_steps"] == [1, 2]
    parts = list(client.runs.stream(None, "pipeline", input={"steps": 1}, stream_mode="values"))
    assert parts[0].event == "metadata"
    assert parts[-1].event == "values"  # the stream just closes after the last values


@pytest.mark.parametrize(
    "mode,graph",
    [
        ("values", "pipeline"),
        ("updates", "pipeline"),
        ("custom", "pipeline"),
        ("debug", "pipeline"),
        ("messages-tuple", "chat"),
        ("messages", "chat"),
    ],
)
def test_runs_stream_in_every_mode(client, mode, graph):
    thread = client.threads.create()
    graph_input = (
        {"steps": 2} if graph == "pipeline" else {"messages": [{"role": "user", "content": "hi"}]}
    )

    parts = list(
        client.runs.stream(thread["thread_id"], graph, input=graph_input, stream_mode=mode)
    )

    events = [part.event for part in parts]
    assert events[0] == "metadata"
    assert parts[0].data["run_id"]
    assert "end" not in events  # the stream just closes at the run's end, as LangGraph's
    body = [part for part in parts if part.event != "metadata"]
    assert body, events
    if mode == "values":
        assert body[-1].data["completed_steps"] == [1, 2]
    elif mode == "updates":
        assert [p.data for p in body] == [{"step": {"completed_steps": [1]}}] * 1 + [
            {"step": {"completed_steps": [2]}}
        ]
    elif mode == "custom":
        assert [p.data for p in body] == [{"step": 1, "of": 2}, {"step": 2, "of": 2}]
    elif mode == "debug":
        assert {p.data["type"] for p in body} >= {"checkpoint", "task", "task_result"}
    elif mode == "messages-tuple":
        assert {p.event for p in body} == {"messages"}
        message, metadata = body[-1].data
        assert message["content"]
        assert metadata["langgraph_node"] in ("agent", "tools")
    else:
        assert {p.event for p in body} <= {
            "messages/metadata",
            "messages/partial",
            "messages/complete",
        }
        assert any(p.event == "messages/complete" for p in body)


def test_interrupt_and_resume_with_a_command(client):
    thread = client.threads.create()

    first = client.runs.wait(thread["thread_id"], "approval", input={"request": "refund 1042"})

    assert first["__interrupt__"][0]["value"]["question"].startswith("Approve")
    assert client.threads.get(thread["thread_id"])["status"] == "interrupted"
    state = client.threads.get_state(thread["thread_id"])
    assert state["next"] == ["review"]
    assert state["tasks"][0]["interrupts"]

    final = client.runs.wait(
        thread["thread_id"],
        "approval",
        command=Command(resume={"action": "edit", "draft": "Refund approved."}),
    )

    assert final["final"] == "Refund approved."
    assert client.threads.get(thread["thread_id"])["status"] == "idle"


def test_update_state_as_node_and_history(client):
    thread = client.threads.create()
    client.runs.wait(thread["thread_id"], "approval", input={"request": "x"})

    result = client.threads.update_state(
        thread["thread_id"], {"approved": True, "reviewer_note": "by hand"}, as_node="review"
    )

    assert result["checkpoint"]["checkpoint_id"]
    state = client.threads.get_state(thread["thread_id"])
    assert state["values"]["reviewer_note"] == "by hand"
    assert state["next"] == ["finish"]
    history = client.threads.get_history(thread["thread_id"], limit=3)
    assert len(history) == 3
    assert history[0]["checkpoint"]["checkpoint_id"] == result["checkpoint"]["checkpoint_id"]
    older = client.threads.get_state(
        thread["thread_id"], checkpoint_id=history[1]["checkpoint"]["checkpoint_id"]
    )
    assert "reviewer_note" not in older["values"]
    filtered = client.threads.get_history(thread["thread_id"], metadata={"source": "update"})
    assert [h["metadata"]["source"] for h in filtered] == ["update"]


def test_cancel_a_running_run(client):
    thread = client.threads.create()
    run = client.runs.create(thread["thread_id"], "pipeline", input={"steps": 100, "delay_s": 0.05})
    for _ in client.runs.join_stream(thread["thread_id"], run["run_id"], stream_mode="custom"):
        break  # it is running

    client.runs.cancel(thread["thread_id"], run["run_id"], wait=True)

    assert client.runs.get(thread["thread_id"], run["run_id"])["status"] == "interrupted"


def test_deleting_the_thread_ends_a_wait_and_a_stream_with_an_error(client):
    """They end at once, with an error naming the run, instead of waiting forever."""
    thread = client.threads.create()
    run = client.runs.create(thread["thread_id"], "pipeline", input={"steps": 200, "delay_s": 0.05})
    stream = client.runs.join_stream(thread["thread_id"], run["run_id"], stream_mode="custom")
    assert next(stream).event in ("metadata", "custom")  # it is running

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.runs.join, thread["thread_id"], run["run_id"])
        time.sleep(0.3)  # the join is waiting
        client.threads.delete(thread["thread_id"])
        rest = list(stream)
        joined = waiting.result(timeout=30)

    assert joined["__error__"]["error"] == "RunDeleted"
    assert run["run_id"] in joined["__error__"]["message"]
    assert rest[-1].event == "error"
    assert rest[-1].data["error"] == "RunDeleted"
    with pytest.raises(NotFoundError):
        client.runs.get(thread["thread_id"], run["run_id"])


def test_reject_is_a_conflict(client):
    thread = client.threads.create()
    run = client.runs.create(thread["thread_id"], "pipeline", input={"steps": 100, "delay_s": 0.05})
    try:
        with pytest.raises(ConflictError):
            client.runs.create(
                thread["thread_id"], "pipeline", input={"steps": 1}, multitask_strategy="reject"
            )
    finally:
        client.runs.cancel(thread["thread_id"], run["run_id"], wait=True)


def test_join_stream_replays_from_last_event_id_after_a_drop(live_api, client):
    thread = client.threads.create()
    run = client.runs.create(
        thread["thread_id"],
        "pipeline",
        input={"steps": 6, "delay_s": 0.2},
        stream_mode=["custom"],
    )
    url = f"{live_api.api}/threads/{thread['thread_id']}/runs/{run['run_id']}/stream"
    seen_ids = []
    with (
        httpx.Client(headers={"X-Api-Key": live_api.keys["alice"]}, timeout=30) as raw,
        raw.stream("GET", url, headers={"Last-Event-ID": "0"}) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("id: "):
                seen_ids.append(int(line[4:]))
            if len(seen_ids) == 3:
                break  # the connection drops here

    rest = list(
        client.runs.join_stream(thread["thread_id"], run["run_id"], last_event_id=str(seen_ids[-1]))
    )

    custom = [p.data["step"] for p in rest if p.event == "custom"]
    assert custom == sorted(custom)
    assert custom[-1] == 6
    assert rest[-1].event == "custom"  # the run's last event, then the stream closes
    # Nothing already seen is sent again, and nothing after it is missing.
    assert len(custom) == 6 - (len(seen_ids) - 1)


def test_unsupported_fields_are_refused_by_name(client):
    thread = client.threads.create()
    with pytest.raises(httpx.HTTPStatusError) as refused:
        client.runs.create(
            thread["thread_id"], "pipeline", input={"steps": 1}, webhook="https://example.com"
        )
    assert refused.value.response.status_code == 422
    assert "webhook" in refused.value.response.text


@pytest.mark.parametrize("key", ["revoked", "sh_deadbeef_not-a-real-key"])
def test_a_wrong_key_is_told_it_is_not_authenticated(live_api, key):
    """Reads and writes alike: a 401 naming the problem, not a CSRF failure."""
    sdk = get_sync_client(url=live_api.api, api_key=live_api.keys.get(key, key))
    with pytest.raises(AuthenticationError) as read:
        sdk.threads.search()
    with pytest.raises(AuthenticationError) as write:
        sdk.threads.create()
    for refused in (read, write):
        assert refused.value.response.status_code == 401
        assert "API key is unknown or revoked" in refused.value.response.json()["detail"]


async def test_the_async_client_runs_streams_and_resumes(aclient):
    thread = await aclient.threads.create()
    values = await aclient.runs.wait(thread["thread_id"], "pipeline", input={"steps": 2})
    assert values["completed_steps"] == [1, 2]

    events = [
        part.event
        async for part in aclient.runs.stream(
            thread["thread_id"], "approval", input={"request": "x"}, stream_mode="updates"
        )
    ]
    assert events[0] == "metadata"
    assert events[-1] == "updates"  # the interrupt, then the stream closes
    resumed = await aclient.runs.wait(
        thread["thread_id"], "approval", command=Command(resume={"action": "approve"})
    )
    assert resumed["approved"] is True
    found = await aclient.threads.search(status="idle", limit=100)
    assert thread["thread_id"] in [t["thread_id"] for t in found]
