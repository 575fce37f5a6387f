"""Bad input is a clear 4xx JSON answer naming the problem, and writes nothing.

Deeply nested JSON, ids that are not ids, stateless runs that fail validation, unknown
checkpoints and paths that lead nowhere.
"""

import json
import uuid

import pytest
from django.test import Client

from checkpoints_app.models import Checkpoint
from core.apikeys import create_api_key
from history_app.models import StateEvent
from sessions_app.models import Session
from tests.factories import make_session, make_thread
from threads_app import services
from threads_app.models import Run, RunEvent, Thread, Workflow

pytestmark = pytest.mark.django_db

LIMIT = 100  # STATEHOUSE_MAX_JSON_DEPTH's default


@pytest.fixture
def api(alice):
    return Client(headers={"X-Api-Key": create_api_key(alice)[1]})


@pytest.fixture
def thread(alice):
    return make_thread(make_session(alice), services.resolve_workflow("pipeline"))


def _counts():
    return {
        model.__name__: model.objects.count()
        for model in (Session, Thread, Run, RunEvent, StateEvent, Workflow, Checkpoint)
    }


def _nested(depth: int) -> str:
    """A JSON object nested ``depth`` levels deep, as text."""
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def _send(api, method, path, text):
    return getattr(api, method)(path, text, "application/json")


# --- deep JSON ------------------------------------------------------------------------

# (method, path, body with the nested value at {deep}, the field the answer names)
DEEP = [
    ("post", "/api/threads", '{"metadata": {deep}}', "metadata"),
    ("patch", "/api/threads/{thread}", '{"metadata": {deep}}', "metadata"),
    ("post", "/api/threads/search", '{"metadata": {deep}}', "metadata"),
    ("post", "/api/threads/count", '{"values": {deep}}', "values"),
    ("post", "/api/threads/{thread}/state", '{"values": {deep}}', "values"),
    ("post", "/api/assistants", '{"graph_id": "pipeline", "config": {deep}}', "config"),
    ("post", "/api/assistants/search", '{"metadata": {deep}}', "metadata"),
    ("post", "/api/runs", '{"assistant_id": "pipeline", "input": {deep}}', "input"),
    ("post", "/api/runs/wait", '{"assistant_id": "pipeline", "config": {deep}}', "config"),
    ("post", "/api/runs/stream", '{"assistant_id": "pipeline", "context": {deep}}', "context"),
    (
        "post",
        "/api/threads/{thread}/runs",
        '{"assistant_id": "pipeline", "command": {"update": {deep}}}',
        "command",
    ),
    ("post", "/api/sessions", '{"metadata": {deep}}', "metadata"),
    ("patch", "/api/sessions/{session}", '{"context": {deep}}', "context"),
]


@pytest.mark.parametrize(
    "method,path,body,field", DEEP, ids=[f"{m} {p} {f}" for m, p, _, f in DEEP]
)
@pytest.mark.parametrize("depth", [LIMIT + 1, 476, 600])
def test_json_nested_past_the_limit_is_refused_naming_the_field(
    api, thread, method, path, body, field, depth
):
    path = path.format(thread=thread.pk, session=thread.session_id)
    before = _counts()

    response = _send(api, method, path, body.replace("{deep}", _nested(depth)))

    assert response.status_code == 422, response.content[:300]
    assert response.json() == {
        "detail": f"{field} is nested more than {LIMIT} levels deep "
        f"(STATEHOUSE_MAX_JSON_DEPTH is {LIMIT})"
    }
    assert _counts() == before


def test_json_nested_at_the_limit_is_accepted(api):
    response = _send(api, "post", "/api/sessions", '{"metadata": ' + _nested(LIMIT) + "}")
    assert response.status_code == 200, response.content[:300]


@pytest.mark.parametrize("depth", [5_000, 200_000])
def test_a_body_too_deep_to_parse_is_refused(api, depth):
    before = _counts()

    response = _send(api, "post", "/api/threads", '{"metadata": ' + "[" * depth + "]" * depth + "}")

    assert response.status_code == 422, response.content[:300]
    assert response.json() == {
        "detail": f"The request body is nested more than {LIMIT} levels deep "
        f"(STATEHOUSE_MAX_JSON_DEPTH is {LIMIT})"
    }
    assert _counts() == before


def test_deep_metadata_from_python_is_refused_without_recursion():
    from core.metadata import InvalidJSON, normalize_metadata

    value: dict = {}
    for _ in range(100_000):
        value = {"a": value}
    with pytest.raises(InvalidJSON, match=f"metadata is nested more than {LIMIT} levels deep"):
        normalize_metadata(value)


# --- ids that are not ids ---------------------------------------------------------------


@pytest.mark.parametrize("route", ["search", "count"])
@pytest.mark.parametrize("value", ["nope", "1234", ""])
def test_a_session_id_filter_that_is_not_a_uuid_is_refused(api, thread, route, value):
    body = {"metadata": {"session_id": value}}
    response = api.post(f"/api/threads/{route}", body, "application/json")
    if value == "":
        # An empty filter filters nothing, as for every other key.
        assert response.status_code == 200
        return
    assert response.status_code == 422, response.content[:300]
    assert response.json() == {
        "detail": f"metadata.session_id must be a session id (a UUID), got {value!r}"
    }


@pytest.mark.parametrize("route", ["search", "count"])
def test_a_session_id_filter_that_is_not_a_string_is_refused(api, route):
    response = api.post(
        f"/api/threads/{route}", {"metadata": {"session_id": 7}}, "application/json"
    )
    assert response.status_code == 422
    assert "metadata.session_id must be a session id" in response.json()["detail"]


def test_a_session_id_filter_finds_the_sessions_threads(api, thread):
    body = {"metadata": {"session_id": str(thread.session_id)}}
    found = api.post("/api/threads/search", body, "application/json").json()
    assert [t["thread_id"] for t in found] == [str(thread.pk)]


# --- stateless runs that fail validation write nothing ----------------------------------

HUGE = "x" * (1024 * 1024 + 1)
INVALID_RUNS = [
    ("unknown assistant", {"assistant_id": str(uuid.uuid4()), "input": {"steps": 1}}, 404),
    ("unknown graph", {"assistant_id": "no-such-graph", "input": {"steps": 1}}, 404),
    ("bad input key", {"assistant_id": "pipeline", "input": {"nope": 1}}, 422),
    ("input not an object", {"assistant_id": "pipeline", "input": [1, 2]}, 422),
    ("oversized input", {"assistant_id": "chat", "input": {"messages": [HUGE]}}, 422),
    ("unknown stream mode", {"assistant_id": "pipeline", "stream_mode": "nope"}, 422),
    ("unknown node", {"assistant_id": "pipeline", "interrupt_before": ["nope"]}, 422),
]
STATELESS = ["/api/runs", "/api/runs/wait", "/api/runs/stream"]


@pytest.mark.parametrize("path", STATELESS)
@pytest.mark.parametrize(
    "body,status", [r[1:] for r in INVALID_RUNS], ids=[r[0] for r in INVALID_RUNS]
)
def test_a_stateless_run_refused_writes_nothing(api, path, body, status):
    before = _counts()

    response = api.post(path, body, "application/json")

    assert response.status_code == status, response.content[:300]
    assert isinstance(response.json()["detail"], str | list)
    assert _counts() == before


@pytest.mark.parametrize("path", STATELESS)
def test_a_stateless_run_with_nan_writes_nothing(api, path):
    before = _counts()
    text = json.dumps(
        {"assistant_id": "pipeline", "input": {"steps": 1}, "metadata": {"x": float("nan")}}
    )

    response = _send(api, "post", path, text)

    assert response.status_code == 422, response.content[:300]
    assert "NaN" in response.json()["detail"] or "JSON" in response.json()["detail"]
    assert _counts() == before


@pytest.mark.parametrize("path", STATELESS)
def test_a_stateless_run_with_a_nul_character_writes_nothing(api, path, on_postgres):
    """PostgreSQL refuses NUL in JSON (SQLite stores it, and the run runs)."""
    before = _counts()
    body = {"assistant_id": "chat", "input": {"messages": [{"role": "user", "content": "a\x00b"}]}}

    response = api.post(path, body, "application/json")

    assert response.status_code == 422, response.content[:300]
    assert "A value in the request cannot be used" in response.json()["detail"]
    assert _counts() == before


def test_a_run_creating_its_thread_writes_nothing_when_refused(api):
    before = _counts()
    path = f"/api/threads/{uuid.uuid4()}/runs"
    body = {"assistant_id": "pipeline", "input": {"nope": 1}, "if_not_exists": "create"}

    response = api.post(path, body, "application/json")

    assert response.status_code == 422, response.content[:300]
    assert "unknown key(s) nope" in response.json()["detail"]
    assert _counts() == before


# --- checkpoints, history and paths -----------------------------------------------------


def test_the_state_at_an_unknown_checkpoint_is_not_found(api, thread):
    before = _counts()
    checkpoint = "1ef00000-0000-6000-8000-000000000000"

    response = api.get(f"/api/threads/{thread.pk}/state/{checkpoint}")

    assert response.status_code == 404, response.content[:300]
    assert response.json() == {"detail": f"Thread {thread.pk} has no checkpoint {checkpoint}"}
    posted = api.post(
        f"/api/threads/{thread.pk}/state/checkpoint",
        {"checkpoint": {"checkpoint_id": checkpoint}},
        "application/json",
    )
    assert posted.status_code == 404
    assert posted.json() == response.json()
    assert _counts() == before


def test_the_state_at_a_real_checkpoint_is_found(api, thread):
    from checkpoints_app.saver import DjangoSaver
    from threads_app import registry

    graph = registry.load_graph("pipeline", {}, checkpointer=DjangoSaver())
    config = graph.update_state({"configurable": {"thread_id": str(thread.pk)}}, {"steps": 2})
    checkpoint = config["configurable"]["checkpoint_id"]

    response = api.get(f"/api/threads/{thread.pk}/state/{checkpoint}")

    assert response.status_code == 200
    assert response.json()["checkpoint"]["checkpoint_id"] == checkpoint


@pytest.mark.parametrize("before", ["zzz", "../x", "1ef00000"])
def test_history_before_something_that_is_not_a_checkpoint_id_is_refused(api, thread, before):
    expected = {"detail": f"before must be a checkpoint id (a UUID), got {before!r}"}

    posted = api.post(f"/api/threads/{thread.pk}/history", {"before": before}, "application/json")
    as_object = api.post(
        f"/api/threads/{thread.pk}/history",
        {"before": {"configurable": {"checkpoint_id": before}}},
        "application/json",
    )
    got = api.get(f"/api/threads/{thread.pk}/history", {"before": before})

    for response in (posted, as_object, got):
        assert response.status_code == 422, response.content[:300]
        assert response.json() == expected


def test_history_before_a_checkpoint_id_answers(api, thread):
    before = "1ef00000-0000-6000-8000-000000000000"
    response = api.post(f"/api/threads/{thread.pk}/history", {"before": before}, "application/json")
    assert response.status_code == 200
    assert response.json() == []


UNKNOWN_PATHS = [
    "/api/nope",
    "/api/nope/",
    "/api/%ff",
    "/api/threads/{thread}/nope",
    "/api/threads/{thread}%2Fnope",
    "/api/threads/{thread}/runs/%2F/join",
]
# Segments that decode to something that is no id (they reach a route, or none).
ENCODED_SEGMENTS = [
    "/api/threads/%2e%2e/state",
    "/api/threads/%2e%2e",
    "/api/threads/%2E%2E/history",
    "/api/threads/%00/state",
    "/api/threads/%00",
    "/api/threads/a%2Fb/state",
    "/api/threads/%2F/state",
    "/api/sessions/%2e%2e",
    "/api/assistants/%00/graph",
]


def _assert_json_not_found(response):
    assert response.status_code == 404, (response.status_code, response.content[:200])
    assert response["Content-Type"].startswith("application/json")
    assert set(response.json()) == {"detail"}
    assert "not found" in response.json()["detail"].lower()


@pytest.mark.parametrize("path", UNKNOWN_PATHS)
@pytest.mark.parametrize("method", ["get", "post", "patch", "delete"])
def test_unknown_api_paths_are_a_json_404(api, thread, path, method):
    response = getattr(api, method)(path.format(thread=thread.pk))
    _assert_json_not_found(response)
    assert response.json() == {"detail": "Not Found"}


@pytest.mark.parametrize("path", ENCODED_SEGMENTS)
def test_percent_encoded_segments_are_a_json_404(api, path):
    _assert_json_not_found(api.get(path))


def test_an_unknown_api_path_without_a_key_is_a_json_404_too():
    response = Client().get("/api/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("delete", "/api/threads/{thread}/state", {"GET", "POST"}),
        ("put", "/api/threads/{thread}", {"GET", "PATCH", "DELETE"}),
        ("get", "/api/threads/search", {"POST"}),
    ],
)
def test_a_known_path_with_a_method_it_lacks_is_a_json_405(api, thread, method, path, allowed):
    response = getattr(api, method)(path.format(thread=thread.pk))
    assert response.status_code == 405
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": "Method Not Allowed"}
    assert {m.strip() for m in response["Allow"].split(",")} == allowed
