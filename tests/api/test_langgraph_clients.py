"""What LangGraph's own clients send (React useStream, Agent Chat UI, Studio, the JS SDK)
gets the answer LangGraph Server (`langgraph dev` 0.16.7) gives: the run fields, thread
metadata, rollback and cancel, assistant versions, subgraphs and schemas, batches, bulk
cancels, pruning, text/plain bodies and /info (CORS: test_cors.py).
"""

import json
import uuid
from pathlib import Path

import pytest
from django.test import Client

from api.langgraph.runs import NO_RUNS_TO_CANCEL
from checkpoints_app.saver import DjangoSaver
from core.apikeys import create_api_key
from core.state import update_state
from tests.factories import make_session, make_thread
from threads_app import registry, runtime, services
from threads_app.models import Run, Thread, Workflow, WorkflowVersion

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def api(alice):
    return Client(headers={"X-Api-Key": create_api_key(alice)[1]})


@pytest.fixture
def bob_api(bob):
    return Client(headers={"X-Api-Key": create_api_key(bob)[1]})


@pytest.fixture
def thread(alice):
    return make_thread(make_session(alice), services.resolve_workflow("pipeline"))


@pytest.fixture
def no_enqueue(monkeypatch):
    """Runs stay pending: nothing is sent to a worker (tests run them in-process)."""
    monkeypatch.setattr(services, "enqueue", lambda run_id, countdown=None: None)


def post(client, path, body):
    return client.post("/api" + path, json.dumps(body), "application/json")


def checkpoints(thread_id, run_id=None):
    config = {"configurable": {"thread_id": str(thread_id), "checkpoint_ns": ""}}
    return list(DjangoSaver().list(config, filter={"run_id": str(run_id)} if run_id else None))


# --- run creation fields ---------------------------------------------------------------


@pytest.mark.django_db
def test_the_fields_use_stream_sends_are_accepted_and_kept_with_the_run(api, thread):
    body = {
        "assistant_id": "pipeline",
        "input": {"steps": 1},
        "on_disconnect": "continue",
        "stream_resumable": True,
        "durability": "exit",
        "feedback_keys": ["thumbs"],
        "context": {"user": "u1"},
    }

    response = post(api, f"/threads/{thread.pk}/runs", body)

    assert response.status_code == 200, response.content
    kwargs = response.json()["kwargs"]
    assert kwargs["on_disconnect"] == "continue"
    assert kwargs["stream_resumable"] is True
    assert kwargs["durability"] == "exit"
    assert kwargs["feedback_keys"] == ["thumbs"]
    assert kwargs["context"] == {"user": "u1"}
    stored = Run.objects.get(pk=response.json()["run_id"]).kwargs
    assert stored["on_disconnect"] == "continue" and stored["durability"] == "exit"


@pytest.mark.django_db
@pytest.mark.parametrize("during,durability", [(True, "async"), (False, "exit")])
def test_checkpoint_during_is_the_older_spelling_of_durability(api, thread, during, durability):
    body = {"assistant_id": "pipeline", "input": {"steps": 1}, "checkpoint_during": during}

    response = post(api, f"/threads/{thread.pk}/runs", body)

    assert response.status_code == 200, response.content
    assert response.json()["kwargs"]["durability"] == durability


@pytest.mark.django_db
def test_durability_and_checkpoint_during_together_are_refused(api, thread):
    body = {"assistant_id": "pipeline", "durability": "sync", "checkpoint_during": True}

    response = post(api, f"/threads/{thread.pk}/runs", body)

    assert response.status_code == 422
    assert response.json() == {"detail": "give durability or checkpoint_during, not both"}
    assert not Run.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "field,value", [("on_disconnect", "nope"), ("durability", "sometimes"), ("webhook", "http://x")]
)
def test_a_bad_run_field_is_a_422_whose_loc_names_it_once(api, thread, field, value):
    body = {"assistant_id": "pipeline", "input": {"steps": 1}, field: value}

    response = post(api, f"/threads/{thread.pk}/runs", body)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", field]
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_a_validation_error_in_a_list_body_has_a_clean_loc(api):
    response = post(api, "/runs/batch", [{"assistant_id": "pipeline"}, {"input": {}}])

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", 1, "assistant_id"]


@pytest.mark.django_db(transaction=True)
def test_an_empty_input_with_a_command_is_no_input(api, alice, no_enqueue):
    thread = make_thread(make_session(alice), services.resolve_workflow("approval"))
    body = {"assistant_id": "approval", "input": {"request": "refund"}}
    first = post(api, f"/threads/{thread.pk}/runs", body)
    assert first.status_code == 200, first.content
    assert runtime.execute_run(first.json()["run_id"]) == "success"
    assert Thread.objects.get(pk=thread.pk).status == "interrupted"

    body = {"assistant_id": "approval", "input": {}, "command": {"resume": "yes"}}
    response = post(api, f"/threads/{thread.pk}/runs", body)

    assert response.status_code == 200, response.content
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.input is None and run.command == {"resume": "yes"}
    assert runtime.execute_run(run.pk) == "success"
    thread.refresh_from_db()
    assert thread.status == "idle"
    assert thread.interrupts == []


@pytest.fixture
def nested_graph(tmp_path, settings):
    """A graph with a subgraph and a runtime context (the client tests' `signed`)."""
    graphs = {
        "nested": str(ROOT / "tests/clients/graphs/signed.py") + ":graph",
        "pipeline": str(ROOT / "threads_app/demo_graphs/pipeline.py") + ":graph",
    }
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": graphs}))
    settings.STATEHOUSE_GRAPHS_FILE = str(tmp_path / "langgraph.json")
    registry.reset()
    yield services.resolve_workflow("nested")
    registry.reset()


@pytest.mark.django_db(transaction=True)
def test_the_runs_context_reaches_the_graph(api, alice, nested_graph, no_enqueue):
    thread = make_thread(make_session(alice), nested_graph)
    body = {"assistant_id": "nested", "input": {"text": "hi"}, "context": {"user": "ann"}}

    response = post(api, f"/threads/{thread.pk}/runs", body)

    assert response.status_code == 200, response.content
    assert runtime.execute_run(response.json()["run_id"]) == "success"
    thread.refresh_from_db()
    assert thread.values == {"text": "HI", "said_by": "ann"}


@pytest.mark.django_db(transaction=True)
def test_the_context_is_the_assistants_under_the_runs_with_the_schemas_defaults(
    api, alice, nested_graph, no_enqueue
):
    """As LangGraph Server: no context anywhere gives the context schema's defaults, an
    assistant's context applies to its runs, and a run's keys go over it."""
    created = post(api, "/assistants", {"graph_id": "nested", "context": {"user": "ann"}})
    assistant = created.json()["assistant_id"]
    said = []
    for body in (
        {"assistant_id": "nested"},
        {"assistant_id": assistant},
        {"assistant_id": assistant, "context": {"user": "bob"}},
    ):
        thread = make_thread(make_session(alice), nested_graph)
        response = post(api, f"/threads/{thread.pk}/runs", body | {"input": {"text": "hi"}})
        assert response.status_code == 200, response.content
        assert runtime.execute_run(response.json()["run_id"]) == "success"
        thread.refresh_from_db()
        said.append(thread.values["said_by"])

    assert said == ["nobody", "ann", "bob"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("durability,expected", [("sync", 4), ("exit", 1)])
def test_durability_is_passed_to_langgraph(api, thread, no_enqueue, durability, expected):
    """With "exit" LangGraph stores the run's state once, at its end; "sync" (the default)
    at each step (the input, the start, then two steps)."""
    body = {"assistant_id": "pipeline", "input": {"steps": 2}, "durability": durability}

    response = post(api, f"/threads/{thread.pk}/runs", body)

    run_id = response.json()["run_id"]
    assert runtime.execute_run(run_id) == "success"
    assert len(checkpoints(thread.pk, run_id)) == expected
    thread.refresh_from_db()
    assert thread.values["completed_steps"] == [1, 2]


# --- thread metadata -------------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_stores_its_graph_and_assistant_in_the_threads_metadata(api, alice):
    own = post(api, "/assistants", {"graph_id": "approval"}).json()["assistant_id"]
    thread = post(api, "/threads", {"metadata": {"topic": "x"}}).json()["thread_id"]
    assert Thread.objects.get(pk=thread).metadata == {"topic": "x"}

    assert (
        post(
            api, f"/threads/{thread}/runs", {"assistant_id": own, "input": {"request": "r"}}
        ).status_code
        == 200
    )
    stateless = post(api, "/runs", {"assistant_id": "pipeline", "input": {"steps": 1}}).json()

    stored = Thread.objects.get(pk=thread).metadata
    assert stored == {"topic": "x", "graph_id": "approval", "assistant_id": own}
    found = post(api, "/threads/search", {"metadata": {"graph_id": "approval"}}).json()
    assert [t["thread_id"] for t in found] == [thread]
    found = post(api, "/threads/search", {"metadata": {"assistant_id": own}}).json()
    assert [t["thread_id"] for t in found] == [thread]
    found = post(api, "/threads/search", {"metadata": {"graph_id": "pipeline"}}).json()
    assert [t["thread_id"] for t in found] == [stateless["thread_id"]]
    assert found[0]["metadata"]["assistant_id"] == str(services.resolve_workflow("pipeline").pk)


# --- rollback and cancel ---------------------------------------------------------------


@pytest.mark.django_db
def test_cancelling_a_finished_run_is_a_404_as_the_reference_answers(api, thread):
    run = services.create_run(thread, input={"steps": 1})
    update_state("run", run.pk, {"status": "success"})

    response = api.post(f"/api/threads/{thread.pk}/runs/{run.pk}/cancel")

    assert response.status_code == 404
    assert response.json() == {"detail": NO_RUNS_TO_CANCEL}


@pytest.mark.django_db
def test_rolling_back_a_pending_run_deletes_it(api, thread):
    run = services.create_run(thread, input={"steps": 1}, after_seconds=30)

    response = api.post(f"/api/threads/{thread.pk}/runs/{run.pk}/cancel?action=rollback")

    assert response.status_code == 202
    gone = api.get(f"/api/threads/{thread.pk}/runs/{run.pk}")
    assert gone.status_code == 404
    assert gone.json() == {"detail": f"Run {run.pk} not found"}


@pytest.mark.django_db(transaction=True)
def test_the_rollback_strategy_deletes_the_rolled_back_run_and_its_checkpoints(
    api, thread, celery_worker
):
    before = len(checkpoints(thread.pk))
    long = {"assistant_id": "pipeline", "input": {"steps": 200, "delay_s": 0.05}}
    first = post(api, f"/threads/{thread.pk}/runs", long).json()["run_id"]
    runtime_wait(lambda: checkpoints(thread.pk, first), "the first run's first checkpoint")

    body = {"assistant_id": "pipeline", "input": {"steps": 2}, "multitask_strategy": "rollback"}
    second = post(api, f"/threads/{thread.pk}/runs", body).json()["run_id"]

    assert services.wait_for_run(second).status == "success"
    assert api.get(f"/api/threads/{thread.pk}/runs/{first}").status_code == 404
    listed = api.get(f"/api/threads/{thread.pk}/runs").json()
    assert [run["run_id"] for run in listed] == [second]
    assert checkpoints(thread.pk, first) == []
    assert len(checkpoints(thread.pk)) == before + 4  # the second run's only
    assert Thread.objects.get(pk=thread.pk).values["completed_steps"] == [1, 2]


def runtime_wait(predicate, what, timeout=30):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- bulk cancel and batches -----------------------------------------------------------


@pytest.mark.django_db
def test_runs_are_cancelled_by_id_on_a_thread(api, thread):
    first = services.create_run(thread, input={"steps": 1}, after_seconds=30)
    second = services.create_run(thread, input={"steps": 1}, after_seconds=30)
    body = {"thread_id": str(thread.pk), "run_ids": [str(first.pk)]}

    response = post(api, "/runs/cancel", body)

    assert response.status_code == 204
    assert Run.objects.get(pk=first.pk).status == "interrupted"
    assert Run.objects.get(pk=second.pk).status == "pending"
    again = post(api, "/runs/cancel", body)
    assert again.status_code == 404
    assert again.json() == {"detail": NO_RUNS_TO_CANCEL}


@pytest.mark.django_db
def test_runs_are_cancelled_by_status_only_the_callers(api, bob, thread):
    mine = services.create_run(thread, input={"steps": 1}, after_seconds=30)
    bobs = services.create_run(
        make_thread(make_session(bob), services.resolve_workflow("pipeline")),
        input={"steps": 1},
        after_seconds=30,
    )

    response = api.post("/api/runs/cancel?action=rollback", '{"status": "all"}', "text/plain")

    assert response.status_code == 204
    assert not Run.objects.filter(pk=mine.pk).exists()  # rolled back: deleted
    assert Run.objects.get(pk=bobs.pk).status == "pending"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body,detail",
    [
        (
            {"status": "pending", "run_ids": []},
            "Cannot specify 'thread_id' or 'run_ids' when using 'status'",
        ),
        ({"run_ids": []}, "Must provide either a status, or both 'thread_id' and 'run_ids'"),
    ],
)
def test_a_bulk_cancel_needs_a_status_or_a_thread_and_ids(api, body, detail):
    response = post(api, "/runs/cancel", body)

    assert response.status_code == 422
    assert response.json() == {"detail": detail}


@pytest.mark.django_db
def test_another_owners_runs_are_not_cancelled_by_id(bob_api, thread):
    run = services.create_run(thread, input={"steps": 1}, after_seconds=30)

    response = post(
        bob_api, "/runs/cancel", {"thread_id": str(thread.pk), "run_ids": [str(run.pk)]}
    )

    assert response.status_code == 404
    assert response.json() == {"detail": f"Thread {thread.pk} not found"}
    assert Run.objects.get(pk=run.pk).status == "pending"


@pytest.mark.django_db
def test_a_batch_creates_stateless_runs_all_or_none(api):
    runs = [{"assistant_id": "pipeline", "input": {"steps": n}} for n in (1, 2)]

    response = post(api, "/runs/batch", runs)

    assert response.status_code == 200, response.content
    created = response.json()
    assert [run["kwargs"]["input"] for run in created] == [{"steps": 1}, {"steps": 2}]
    assert len({run["thread_id"] for run in created}) == 2
    count = Run.objects.count(), Thread.objects.count()
    refused = post(api, "/runs/batch", [runs[0], {"assistant_id": "nope"}])
    assert refused.status_code == 404
    assert (Run.objects.count(), Thread.objects.count()) == count


@pytest.mark.django_db
def test_batch_items_read_the_javascript_sdks_camel_case_keys(api):
    """createBatch sends each payload's own keys (assistantId, onCompletion...) beside
    assistant_id: they mean the fields they spell; a key that is no field is refused."""
    item = {"assistantId": "pipeline", "assistant_id": "pipeline", "input": {"steps": 1}}

    response = post(api, "/runs/batch", [item | {"onCompletion": "keep", "afterSeconds": 60}])

    assert response.status_code == 200, response.content
    run = Run.objects.get(pk=response.json()[0]["run_id"])
    assert run.kwargs["on_completion"] == "keep"
    assert run.not_before is not None
    count = Run.objects.count(), Thread.objects.count()
    disagree = post(api, "/runs/batch", [item | {"assistantId": "chat"}])
    unknown = post(api, "/runs/batch", [item | {"colour": "red"}])
    assert disagree.status_code == 422
    assert "assistantId and assistant_id disagree" in json.dumps(disagree.json())
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", 0, "colour"]
    assert (Run.objects.count(), Thread.objects.count()) == count


# --- threads prune ---------------------------------------------------------------------


@pytest.mark.django_db
def test_prune_deletes_threads_and_skips_unknown_and_others(api, bob, thread):
    other = make_thread(make_session(bob))
    body = {"thread_ids": [str(thread.pk), str(other.pk), str(uuid.uuid4())]}

    response = post(api, "/threads/prune", body)

    assert response.status_code == 200
    assert response.json() == {"pruned_count": 1}
    assert not Thread.objects.filter(pk=thread.pk).exists()
    assert Thread.objects.filter(pk=other.pk).exists()
    assert post(api, "/threads/prune", {"thread_ids": []}).json() == {"pruned_count": 0}


@pytest.mark.django_db
def test_prune_keep_latest_keeps_only_the_latest_checkpoint(api, thread):
    for steps in (1, 2, 3):
        assert (
            post(api, f"/threads/{thread.pk}/state", {"values": {"steps": steps}}).status_code
            == 200
        )
    assert len(checkpoints(thread.pk)) == 3

    response = post(
        api, "/threads/prune", {"thread_ids": [str(thread.pk)], "strategy": "keep_latest"}
    )

    assert response.json() == {"pruned_count": 1}
    assert len(checkpoints(thread.pk)) == 1
    assert api.get(f"/api/threads/{thread.pk}/state").json()["values"]["steps"] == 3


@pytest.mark.django_db
def test_prune_refuses_an_unknown_strategy_and_bad_ids(api):
    bad = post(api, "/threads/prune", {"thread_ids": [], "strategy": "all"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "strategy"]
    ids = post(api, "/threads/prune", {"thread_ids": ["x"]})
    assert ids.status_code == 422
    assert ids.json() == {"detail": "Invalid thread ID: must be a UUID"}


# --- assistants ------------------------------------------------------------------------


@pytest.mark.django_db
def test_each_create_and_patch_is_a_version_listed_newest_first(api):
    created = post(api, "/assistants", {"graph_id": "pipeline", "config": {"tags": ["a"]}}).json()
    assistant = created["assistant_id"]
    assert created["version"] == 1
    path = f"/api/assistants/{assistant}"
    api.patch(path, json.dumps({"metadata": {"stage": "beta"}}), "application/json")
    patched = api.patch(path, json.dumps({"config": {"tags": ["b"]}}), "application/json").json()
    assert patched["version"] == 3

    versions = post(api, f"/assistants/{assistant}/versions", {}).json()

    assert [v["version"] for v in versions] == [3, 2, 1]
    assert set(versions[0]) == {
        "assistant_id",
        "graph_id",
        "config",
        "context",
        "metadata",
        "name",
        "description",
        "version",
        "created_at",
    }
    assert versions[0]["config"] == {"tags": ["b"]} and versions[2]["config"] == {"tags": ["a"]}
    assert versions[0]["metadata"] == {"stage": "beta"} and versions[2]["metadata"] == {}
    beta = post(api, f"/assistants/{assistant}/versions", {"metadata": {"stage": "beta"}}).json()
    assert [v["version"] for v in beta] == [3, 2]
    page = post(api, f"/assistants/{assistant}/versions", {"limit": 1, "offset": 1}).json()
    assert [v["version"] for v in page] == [2]


@pytest.mark.django_db
def test_setting_the_latest_version_brings_back_its_config_and_metadata(api):
    assistant = post(api, "/assistants", {"graph_id": "pipeline", "context": {"k": 1}}).json()
    path = f"/api/assistants/{assistant['assistant_id']}"
    body = {"config": {"tags": ["b"]}, "context": {"k": 2}, "metadata": {"m": 1}, "name": "two"}
    api.patch(path, json.dumps(body), "application/json")

    response = post(api, f"/assistants/{assistant['assistant_id']}/latest", {"version": 1})

    assert response.status_code == 200, response.content
    latest = response.json()
    assert latest["version"] == 1
    assert (latest["config"], latest["context"], latest["metadata"]) == ({}, {"k": 1}, {})
    assert latest["name"] == "pipeline"
    assert api.get(path).json()["version"] == 1
    # The next patch is a new version after the highest one.
    assert api.patch(path, json.dumps({"name": "three"}), "application/json").json()["version"] == 3
    missing = post(api, f"/assistants/{assistant['assistant_id']}/latest", {"version": 9})
    assert missing.status_code == 404
    assert missing.json() == {
        "detail": f"Version 9 not found for assistant {assistant['assistant_id']}"
    }


@pytest.mark.django_db
def test_system_assistants_have_a_first_version(api):
    system = services.resolve_workflow("chat")

    versions = post(api, f"/assistants/{system.pk}/versions", {}).json()

    assert [(v["version"], v["graph_id"]) for v in versions] == [(1, "chat")]
    assert WorkflowVersion.objects.filter(workflow=system).count() == 1


@pytest.mark.django_db
def test_the_schemas_include_the_true_state_and_the_context(api, nested_graph):
    schemas = api.get(f"/api/assistants/{nested_graph.pk}/schemas").json()

    assert schemas["graph_id"] == "nested"
    assert set(schemas["state_schema"]["properties"]) == {"text", "said_by"}
    assert schemas["context_schema"]["properties"] == {
        "user": {"default": "nobody", "title": "User", "type": "string"}
    }
    pipeline = services.resolve_workflow("pipeline")
    schemas = api.get(f"/api/assistants/{pipeline.pk}/schemas").json()
    # The state has the channels the input schema has and those only the graph writes.
    assert set(schemas["state_schema"]["properties"]) == {"steps", "delay_s", "completed_steps"}
    assert schemas["state_schema"] != schemas["input_schema"]


@pytest.mark.django_db
def test_subgraphs_are_listed_with_their_schemas(api, nested_graph):
    path = f"/api/assistants/{nested_graph.pk}/subgraphs"

    found = api.get(path).json()

    assert list(found) == ["inner"]
    assert set(found["inner"]) == {
        "input_schema",
        "output_schema",
        "state_schema",
        "config_schema",
        "context_schema",
    }
    assert set(found["inner"]["state_schema"]["properties"]) == {"text"}
    assert list(api.get(path + "?namespace=inner&recurse=true").json()) == ["inner"]
    assert api.get(path + "?namespace=other").json() == {}
    assert list(api.get(path + "/inner").json()) == ["inner"]
    pipeline = services.resolve_workflow("pipeline")
    assert api.get(f"/api/assistants/{pipeline.pk}/subgraphs").json() == {}


@pytest.mark.django_db
def test_the_graph_with_xray_draws_the_subgraphs_nodes(api, nested_graph):
    path = f"/api/assistants/{nested_graph.pk}/graph"

    flat = api.get(path).json()
    xray = api.get(path + "?xray=true").json()

    assert {node["id"] for node in flat["nodes"]} == {"__start__", "inner", "sign", "__end__"}
    assert "inner:shout" in {node["id"] for node in xray["nodes"]}
    assert {node["id"] for node in api.get(path + "?xray=1").json()["nodes"]} == {
        node["id"] for node in xray["nodes"]
    }
    assert all("id" not in (node.get("data") or {}) for node in xray["nodes"])
    for bad in ("0", "-1", "maybe"):
        response = api.get(path + f"?xray={bad}")
        assert response.status_code == 422
        assert response.json() == {"detail": "Invalid xray value"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "method,path,body",
    [
        ("post", "/assistants/{a}/versions", {}),
        ("post", "/assistants/{a}/latest", {"version": 1}),
        ("get", "/assistants/{a}/subgraphs", None),
        ("get", "/assistants/{a}/subgraphs/inner", None),
    ],
)
def test_another_owners_assistant_is_a_404_on_the_new_routes(api, bob_api, method, path, body):
    assistant = post(api, "/assistants", {"graph_id": "pipeline"}).json()["assistant_id"]
    url = "/api" + path.replace("{a}", assistant)
    kwargs = (
        {"data": json.dumps(body), "content_type": "application/json"} if body is not None else {}
    )

    response = getattr(bob_api, method)(url, **kwargs)

    assert response.status_code == 404
    assert response.json() == {"detail": f"Assistant {assistant} not found"}
    assert Workflow.objects.get(pk=assistant).assistant_version == 1


# --- Studio ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_json_body_sent_as_text_plain_is_read_as_json(api, thread):
    response = api.post("/api/threads/search", json.dumps({"limit": 1}), "text/plain")
    assert response.status_code == 200
    assert [t["thread_id"] for t in response.json()] == [str(thread.pk)]
    created = api.post("/api/assistants", '{"graph_id": "chat"}', "text/plain;charset=UTF-8")
    assert created.status_code == 200
    assert created.json()["graph_id"] == "chat"


@pytest.mark.django_db
def test_info_reports_the_capabilities_in_the_references_shape(api):
    info = api.get("/api/info").json()

    assert info["flags"] == {
        "assistants": True,
        "crons": False,
        "langsmith": False,
        "langsmith_tracing_replicas": False,
        "langsmith_tracing_session_on_runs": False,
    }
    assert info["host"] == {
        "kind": "self-hosted",
        "project_id": None,
        "host_revision_id": None,
        "revision_id": None,
        "tenant_id": None,
    }
    assert {"version", "langgraph_py_version"} <= set(info)
