"""Issue 13's items through the official JavaScript SDK (@langchain/langgraph-sdk 1.15),
against a real Statehouse server serving tests/clients/graphs (the `nested` graph with a
subgraph, `signed` with a runtime context, and the demo graphs): bulk cancels, run
deletes, prune and count; the events, tasks and checkpoints modes with and without
subgraphs; a client leaving a stream; the thread-level stream; multitask strategies;
durability, context, feedbackKeys, onCompletion keep, ifNotExists; schemas and xray; refusals.
"""

import uuid
from pathlib import Path

import pytest

from tests.api.conftest import running_api
from tests.api.test_stream_modes import REFERENCE, TASK_ID
from tests.clients.conftest import NodeScripts

pytestmark = pytest.mark.system

GRAPHS = Path(__file__).parent / "graphs" / "langgraph.json"


@pytest.fixture(scope="module")
def items_api(tmp_path_factory, node_modules):
    var_dir = tmp_path_factory.mktemp("js-items-api")
    with running_api(var_dir, name="jsitems", STATEHOUSE_GRAPHS_FILE=str(GRAPHS)) as api:
        yield api


@pytest.fixture(scope="module")
def js(items_api):
    return NodeScripts(items_api.api, items_api.keys["alice"])


def names(parts) -> list[str]:
    return [TASK_ID.sub("", part["event"]) for part in parts]


# --- many at once -----------------------------------------------------------------------


def test_cancel_many_by_ids_with_rollback_and_by_status(js):
    out = js("bulk", "cancel_many")

    assert [r["status"] for r in out["afterIds"]] == ["interrupted", "pending", "pending"]
    assert out["bGone"]["status"] == 404  # rolled back: deleted
    assert out["cAfter"]["status"] == "interrupted"  # by status: every pending run of hers
    assert out["noneLeft"]["status"] == 404
    assert "No matching runs to cancel" in out["noneLeft"]["body"]["detail"]


def test_create_batch_runs_every_payload_with_its_camel_case_fields(js):
    """The SDK sends each payload's own camelCase keys (onCompletion...) beside
    assistant_id; they mean what they spell."""
    out = js("bulk", "batch")

    assert len(out["runs"]) == 2
    assert [run["kwargs"]["input"] for run in out["runs"]] == [{"steps": 1}, {"steps": 2}]
    assert [run["kwargs"].get("on_completion") for run in out["runs"]] == ["keep", "keep"]
    assert [len(values["completed_steps"]) for values in out["joined"]] == [1, 2]


def test_a_deleted_run_is_gone(js):
    out = js("bulk", "delete_run")

    assert out["gone"]["status"] == 404
    assert out["again"]["status"] == 404
    assert [r["run_id"] for r in out["listed"]] == [out["kept"]["run_id"]]


def test_threads_count_and_prune(js):
    out = js("bulk", "count_and_prune", marker=f"js-prune-{uuid.uuid4().hex[:8]}")

    assert out["counted"] == 3
    assert out["pruned"] == {"pruned_count": 2}
    assert out["after"] == 1
    assert out["gone"]["status"] == 404
    assert [t["thread_id"] for t in out["left"]] == [out["threads"][2]["thread_id"]]


# --- streams ----------------------------------------------------------------------------


@pytest.mark.parametrize("subgraphs", [False, True], ids=["flat", "subgraphs"])
@pytest.mark.parametrize("mode", ["events", "tasks", "checkpoints", "values", "updates"])
def test_each_mode_streams_what_the_reference_streams(js, mode, subgraphs):
    out = js("streams", "mode", mode=mode, subgraphs=subgraphs)

    assert names(out["parts"]) == ["metadata", *REFERENCE[(mode, subgraphs)]]
    assert out["parts"][0]["data"]["run_id"] == out["run"]["run_id"]
    assert out["run"]["status"] == "success"
    # Replayed from the run's log: the same events with the same data.
    assert [(p["event"], p["data"]) for p in out["replay"]] == [
        (p["event"], p["data"]) for p in out["parts"]
    ]


def test_the_tasks_and_checkpoints_modes_carry_the_references_payloads(js):
    tasks = [p["data"] for p in js("streams", "mode", mode="tasks", subgraphs=False)["parts"][1:]]
    starts = [t for t in tasks if "input" in t]
    results = [t for t in tasks if "result" in t]
    assert [t["name"] for t in starts] == ["prepare", "child", "finish"]
    assert [t["name"] for t in results] == ["prepare", "child", "finish"]
    assert results[-1]["result"] == {"done": True}

    parts = js("streams", "mode", mode="checkpoints", subgraphs=False)["parts"][1:]
    checkpoints = [p["data"] for p in parts]
    assert all({"config", "values", "next", "metadata"} <= set(c) for c in checkpoints)
    assert checkpoints[-1]["values"]["done"] is True
    assert checkpoints[-1]["next"] == []


def test_a_subgraph_stream_names_its_events_by_the_subgraphs_namespace(js):
    out = js("streams", "mode", mode="values", subgraphs=True)

    nested = {p["event"] for p in out["parts"] if "|" in p["event"]}
    (name,) = nested
    assert name.startswith("values|child:")
    assert [p["data"] for p in out["parts"] if p["event"] == name][-1]["text"] == "HI"
    assert out["parts"][-1]["data"]["done"] is True


def test_on_disconnect_cancel_interrupts_the_run_when_the_client_aborts(js):
    out = js("streams", "disconnect", onDisconnect="cancel")

    assert [p["data"]["step"] for p in out["seen"] if p["event"] == "custom"] == [1]
    assert out["run"]["status"] == "interrupted"
    assert len(out["values"]["completed_steps"]) < 6


def test_on_disconnect_continue_finishes_the_run_and_join_stream_rejoins_it(js):
    out = js("streams", "disconnect", onDisconnect="continue")

    assert out["run"]["status"] == "success"
    assert out["values"]["completed_steps"] == [1, 2, 3, 4, 5, 6]
    seen = [p["data"]["step"] for p in out["seen"] if p["event"] == "custom"]
    rest = [p["data"]["step"] for p in out["rejoined"] if p["event"] == "custom"]
    assert seen + rest == [1, 2, 3, 4, 5, 6]  # nothing lost, nothing twice


@pytest.mark.parametrize(
    "stream_mode,expected",
    [
        ("run_modes", ["metadata", "updates", "updates", "metadata"]),
        ("lifecycle", ["metadata", "metadata"]),
    ],
)
def test_threads_join_stream_replays_and_follows_the_threads_runs(js, stream_mode, expected):
    out = js("streams", "thread_stream", streamMode=stream_mode)

    replay = out["replay"]
    assert [p["event"] for p in replay] == expected
    assert replay[0]["data"] == {"run_id": out["finished"]["run_id"], "attempt": 1}
    assert replay[-1]["data"] == {"status": "run_done", "run_id": out["finished"]["run_id"]}
    live = out["live"]
    assert live[-1]["data"] == {"status": "run_done", "run_id": out["running"]["run_id"]}
    if stream_mode == "run_modes":
        assert [p["data"]["step"] for p in live if p["event"] == "custom"] == [3, 4]
    else:
        assert {p["event"] for p in live} == {"metadata"}
    assert out["after"]["status"] == "success"


# --- run fields -------------------------------------------------------------------------


def test_multitask_reject_is_a_409_and_the_first_run_goes_on(js):
    out = js("fields", "multitask", strategy="reject")

    assert out["second"]["status"] == 409
    assert "detail" in out["second"]["body"]
    assert [r["run_id"] for r in out["listed"]] == [out["first"]["run_id"]]


def test_multitask_interrupt_stops_the_first_run_and_runs_the_second(js):
    out = js("fields", "multitask", strategy="interrupt")

    assert out["firstAfter"]["value"]["status"] == "interrupted"
    assert out["secondAfter"]["status"] == "success"
    assert [r["run_id"] for r in out["listed"]] == [
        out["second"]["value"]["run_id"],
        out["first"]["run_id"],
    ]


def test_multitask_rollback_deletes_the_rolled_back_run(js):
    out = js("fields", "multitask", strategy="rollback")

    assert out["firstAfter"]["status"] == 404
    assert out["secondAfter"]["status"] == "success"
    assert [r["run_id"] for r in out["listed"]] == [out["second"]["value"]["run_id"]]
    # The rolled-back run's steps are gone with its checkpoints: only the second's one.
    assert out["values"]["completed_steps"] == [1]


def test_multitask_enqueue_runs_the_second_after_the_first(js):
    out = js("fields", "multitask", strategy="enqueue")

    assert out["firstAfter"]["value"]["status"] == "success"
    assert out["secondAfter"]["status"] == "success"
    assert out["values"]["completed_steps"] == [1, 2, 3, 4]


@pytest.mark.parametrize("durability,checkpoints", [("sync", 4), ("async", 4), ("exit", 1)])
def test_durability_decides_how_often_the_run_is_checkpointed(js, durability, checkpoints):
    out = js("fields", "durability", durability=durability)

    assert out["values"] == {"steps": 2, "completed_steps": [1, 2]}
    assert out["checkpoints"] == checkpoints


def test_the_runs_context_reaches_the_graph(js):
    out = js("fields", "context")

    assert out["signed"] == {"text": "HI", "said_by": "ann"}
    assert out["other"] == {"text": "HO", "said_by": "bea"}


def test_feedback_keys_are_kept_with_the_run(js):
    out = js("fields", "feedback_keys")

    assert out["fetched"]["kwargs"]["feedback_keys"] == ["score", "helpful"]
    assert out["fetched"]["status"] == "success"


def test_on_completion_keep_keeps_a_stateless_runs_thread(js):
    out = js("fields", "on_completion", onCompletion="keep")

    assert out["thread"]["ok"], out["thread"]
    assert out["values"] == {"steps": 1, "completed_steps": [1]}
    assert out["fetched"]["status"] == "success"


def test_if_not_exists_create_makes_the_thread(js):
    out = js("fields", "if_not_exists")

    assert out["values"] == {"steps": 1, "completed_steps": [1]}
    assert out["thread"]["thread_id"] == out["threadId"]
    assert out["thread"]["metadata"]["graph_id"] == "pipeline"
    assert out["refused"]["status"] == 404
    assert out["notCreated"]["status"] == 404


def test_the_schemas_have_the_context_and_the_graph_draws_subgraphs_with_xray(js):
    out = js("fields", "schemas_and_graph")

    schemas = out["schemas"]
    assert schemas["graph_id"] == "signed"
    assert set(schemas["state_schema"]["properties"]) == {"text", "said_by"}
    assert schemas["context_schema"]["properties"] == {
        "user": {"default": "nobody", "title": "User", "type": "string"}
    }
    flat = {node["id"] for node in out["flat"]["nodes"]}
    xray = {node["id"] for node in out["xray"]["nodes"]}
    assert flat == {"__start__", "inner", "sign", "__end__"}
    assert "inner:shout" in xray
    assert {node["id"] for node in out["xray1"]["nodes"]} == xray


def test_a_webhook_and_bad_fields_are_422s_naming_the_field(js):
    out = js("fields", "refused")

    assert out["webhook"]["status"] == 422
    assert "webhook" in str(out["webhook"]["body"]["detail"])
    for field, outcome in (
        ("multitask_strategy", out["strategy"]),
        ("on_disconnect", out["disconnect"]),
    ):
        assert outcome["status"] == 422
        [error] = outcome["body"]["detail"]
        assert error["loc"] == ["body", field]
    assert out["runs"] == []  # nothing was written
