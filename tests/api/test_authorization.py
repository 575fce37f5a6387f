"""The authorization matrix: every route with no key, a revoked key, another owner's key,
the owner and staff. Another owner's object is a 404, never a 403 that leaks it."""

import uuid

import pytest
from django.test import Client

from api.app import api as ninja_api
from api.langgraph.runs import NO_RUNS_TO_CANCEL
from core.apikeys import create_api_key, revoke
from core.ids import system_assistant_id
from core.state import update_state
from history_app.models import StateEvent
from sessions_app.models import Session
from tests.factories import make_session, make_thread
from threads_app import services
from threads_app.models import Run, Thread, Workflow

# (method, path, body, blocks): blocks = the route waits for a run (not called as staff here).
ROUTES = [
    ("get", "/ok", None, False),
    ("get", "/info", None, False),
    ("post", "/assistants", {"graph_id": "pipeline"}, False),
    ("post", "/assistants/search", {}, False),
    ("post", "/assistants/count", {}, False),
    ("get", "/assistants/{assistant}", None, False),
    ("patch", "/assistants/{assistant}", {"name": "renamed"}, False),
    ("get", "/assistants/{assistant}/graph", None, False),
    ("get", "/assistants/{assistant}/schemas", None, False),
    ("get", "/assistants/{assistant}/subgraphs", None, False),
    ("get", "/assistants/{assistant}/subgraphs/{namespace}", None, False),
    ("post", "/assistants/{assistant}/versions", {}, False),
    ("post", "/assistants/{assistant}/latest", {"version": 1}, False),
    ("delete", "/assistants/{assistant}", None, False),
    ("post", "/threads", {}, False),
    ("post", "/threads/search", {}, False),
    ("post", "/threads/count", {}, False),
    ("post", "/threads/prune", {"thread_ids": []}, False),
    ("get", "/threads/{thread}", None, False),
    ("patch", "/threads/{thread}", {"metadata": {"a": 1}}, False),
    ("post", "/threads/{thread}/copy", None, False),
    ("get", "/threads/{thread}/state", None, False),
    ("post", "/threads/{thread}/state/checkpoint", {"checkpoint": {}}, False),
    ("get", "/threads/{thread}/state/{checkpoint}", None, False),
    ("post", "/threads/{thread}/state", {"values": {"steps": 2}}, False),
    ("post", "/threads/{thread}/history", {}, False),
    ("get", "/threads/{thread}/history", None, False),
    ("post", "/threads/{thread}/runs", {"assistant_id": "pipeline", "input": {"steps": 1}}, False),
    ("get", "/threads/{thread}/runs", None, False),
    ("post", "/threads/{thread}/runs/wait", {"assistant_id": "pipeline"}, True),
    ("post", "/threads/{thread}/runs/stream", {"assistant_id": "pipeline"}, True),
    ("get", "/threads/{thread}/runs/{run}", None, False),
    ("get", "/threads/{thread}/runs/{run}/join", None, True),
    ("get", "/threads/{thread}/runs/{run}/stream", None, True),
    ("get", "/threads/{thread}/stream", None, True),
    ("post", "/threads/{thread}/runs/{run}/cancel", None, False),
    ("delete", "/threads/{thread}/runs/{run}", None, False),
    ("delete", "/threads/{thread}", None, False),
    ("post", "/runs", {"assistant_id": "pipeline", "input": {"steps": 1}}, False),
    ("post", "/runs/wait", {"assistant_id": "pipeline"}, True),
    ("post", "/runs/stream", {"assistant_id": "pipeline"}, True),
    ("post", "/runs/batch", [{"assistant_id": "pipeline", "input": {"steps": 1}}], False),
    ("post", "/runs/cancel", {"thread_id": "{thread}", "run_ids": []}, False),
    ("post", "/sessions", {"title": "x"}, False),
    ("get", "/sessions", None, False),
    ("get", "/sessions/{session}", None, False),
    ("patch", "/sessions/{session}", {"title": "y"}, False),
    ("get", "/sessions/{session}/threads", None, False),
    ("get", "/sessions/{session}/messages", None, False),
    ("get", "/sessions/{session}/history", None, False),
    ("post", "/sessions/{session}/close", None, False),
    ("get", "/llm-calls", None, False),
    ("get", "/usage?by=model", None, False),
    ("get", "/threads/{thread}/checkpoints", None, False),
    ("post", "/threads/{thread}/restore", {"checkpoint_id": "{checkpoint}"}, False),
    ("post", "/threads/{thread}/fork", {"checkpoint_id": "{checkpoint}"}, False),
]

OBJECT_PLACEHOLDERS = ("{assistant}", "{thread}", "{run}", "{session}")


def test_the_matrix_covers_every_route():
    schema = ninja_api.get_openapi_schema()
    documented = {
        (method, path.removeprefix("/api"))
        for path, operations in schema["paths"].items()
        for method in operations
    }
    placeholders = {
        "{assistant}": "{assistant_id}",
        "{thread}": "{thread_id}",
        "{run}": "{run_id}",
        "{session}": "{session_id}",
        "{checkpoint}": "{checkpoint_id}",
        "{namespace}": "{namespace}",
    }
    covered = set()
    for method, path, _, _ in ROUTES:
        path = path.split("?")[0]
        for short, name in placeholders.items():
            path = path.replace(short, name)
        covered.add((method, path))
    assert documented == covered, sorted(documented ^ covered)


@pytest.fixture
def world(alice, bob, staff):
    session = make_session(alice)
    thread = make_thread(session, services.resolve_workflow("pipeline"))
    run = services.create_run(thread, input={"steps": 1})
    update_state("run", run.pk, {"status": "success"})
    assistant = services.create_workflow("pipeline", "alice's")
    update_state("workflow", assistant.pk, {"owner": alice})
    revoked, revoked_secret = create_api_key(alice)
    revoke(revoked)
    keys = {
        "alice": create_api_key(alice)[1],
        "bob": create_api_key(bob)[1],
        "staff": create_api_key(staff)[1],
        "revoked": revoked_secret,
    }
    ids = {
        "{assistant}": str(assistant.pk),
        "{thread}": str(thread.pk),
        "{run}": str(run.pk),
        "{session}": str(session.pk),
        "{checkpoint}": "1ef00000-0000-6000-8000-000000000000",
        "{namespace}": "step",
    }
    return keys, ids


def _call(key, method, path, body, ids):
    for placeholder, value in ids.items():
        path = path.replace(placeholder, value)
        if isinstance(body, dict):
            body = {k: (value if v == placeholder else v) for k, v in body.items()}
    # As an API client: it never sends a CSRF token, and the check is not skipped.
    client = Client(enforce_csrf_checks=True, headers={"X-Api-Key": key} if key else {})
    kwargs = {"content_type": "application/json", "data": body} if body is not None else {}
    return getattr(client, method)("/api" + path, **kwargs)


@pytest.mark.parametrize("method,path,body,blocks", ROUTES, ids=[f"{m} {p}" for m, p, *_ in ROUTES])
def test_no_key_and_a_revoked_key_are_refused(world, method, path, body, blocks):
    keys, ids = world
    for key in (None, keys["revoked"], "sh_deadbeef_not-a-real-key"):
        response = _call(key, method, path, body, ids)
        assert response.status_code == 401, (key, response.content)
        expected = "unknown or revoked" if key else "an API key (X-Api-Key) or a login"
        assert expected in response.json()["detail"]


@pytest.mark.parametrize(
    "method,path,body,blocks",
    [r for r in ROUTES if any(p in r[1] for p in OBJECT_PLACEHOLDERS)],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_another_owners_objects_are_not_found(world, method, path, body, blocks):
    keys, ids = world
    response = _call(keys["bob"], method, path, body, ids)
    assert response.status_code == 404, response.content


def test_collections_show_only_the_callers_objects(world):
    keys, ids = world
    bob_threads = _call(keys["bob"], "post", "/threads/search", {}, ids).json()
    assert ids["{thread}"] not in [t["thread_id"] for t in bob_threads]
    bob_sessions = _call(keys["bob"], "get", "/sessions", None, ids).json()["items"]
    assert ids["{session}"] not in [s["session_id"] for s in bob_sessions]
    assert _call(keys["bob"], "post", "/threads/count", {}, ids).json() == 0


def test_another_owners_assistant_is_neither_listed_nor_counted(world):
    keys, ids = world
    for who, listed in (("bob", False), ("alice", True), ("staff", True)):
        found = _call(keys[who], "post", "/assistants/search", {"limit": 100}, ids).json()
        assert (ids["{assistant}"] in [a["assistant_id"] for a in found]) is listed, who
        # The system assistants of the registered graphs are everyone's.
        assert str(system_assistant_id("pipeline")) in [a["assistant_id"] for a in found]
        count = _call(keys[who], "post", "/assistants/count", {"graph_id": "pipeline"}, ids)
        assert count.json() == (2 if listed else 1), who


def test_a_system_assistant_is_visible_to_everyone(world):
    keys, ids = world
    system = system_assistant_id("pipeline")
    for who in ("alice", "bob", "staff"):
        response = _call(keys[who], "get", f"/assistants/{system}", None, ids)
        assert response.status_code == 200, who
        assert (
            _call(keys[who], "get", f"/assistants/{system}/schemas", None, ids).status_code == 200
        )


# Every way of starting a run (or a thread bound to an assistant) with another owner's
# assistant: on the caller's own thread, stateless, and creating the thread on the way.
RUNS_WITH_ASSISTANT = [
    ("post", "/threads/{own_thread}/runs"),
    ("post", "/threads/{own_thread}/runs/wait"),
    ("post", "/threads/{own_thread}/runs/stream"),
    ("post", "/threads/{new_thread}/runs"),
    ("post", "/threads/{new_thread}/runs/wait"),
    ("post", "/threads/{new_thread}/runs/stream"),
    ("post", "/runs"),
    ("post", "/runs/wait"),
    ("post", "/runs/stream"),
]


@pytest.mark.parametrize(
    "method,path", RUNS_WITH_ASSISTANT, ids=[p for _, p in RUNS_WITH_ASSISTANT]
)
def test_another_owners_assistant_cannot_run(world, bob, method, path):
    keys, ids = world
    own = make_thread(make_session(bob))
    ids = ids | {"{own_thread}": str(own.pk), "{new_thread}": str(uuid.uuid4())}
    body = {"assistant_id": ids["{assistant}"], "input": {"steps": 1}, "if_not_exists": "create"}
    before = _counts()

    response = _call(keys["bob"], method, path, body, ids)

    assert response.status_code == 404, response.content
    assert response.json() == {"detail": f"Assistant {ids['{assistant}']} not found"}
    assert _counts() == before


def test_a_thread_cannot_be_bound_to_another_owners_assistant(world):
    keys, ids = world
    body = {"metadata": {"assistant_id": ids["{assistant}"]}}

    created = _call(keys["bob"], "post", "/threads", body, ids)

    assert created.status_code == 200, created.content
    thread = Thread.objects.get(pk=created.json()["thread_id"])
    assert thread.workflow_id is None
    assert created.json()["metadata"].get("graph_id") is None


@pytest.mark.parametrize(
    "path,body",
    [
        ("/threads", {"thread_id": "{thread}"}),
        ("/threads", {"thread_id": "{thread}", "if_exists": "do_nothing"}),
        ("/assistants", {"graph_id": "pipeline", "assistant_id": "{assistant}"}),
        (
            "/assistants",
            {"graph_id": "pipeline", "assistant_id": "{assistant}", "if_exists": "do_nothing"},
        ),
    ],
    ids=["thread", "thread do_nothing", "assistant", "assistant do_nothing"],
)
def test_creating_with_another_owners_id_answers_like_an_unknown_object(world, path, body):
    """No "already exists": the answer is the 404 a GET of an unknown id gives."""
    keys, ids = world
    before = _counts()

    response = _call(keys["bob"], "post", path, body, ids)

    kind, key = ("Thread", "{thread}") if path == "/threads" else ("Assistant", "{assistant}")
    unknown = str(uuid.uuid4())
    assert response.status_code == 404, response.content
    assert response.json() == {"detail": f"{kind} {ids[key]} not found"}
    lookup = _call(keys["bob"], "get", f"/{kind.lower()}s/{unknown}", None, ids)
    assert lookup.json() == {"detail": f"{kind} {unknown} not found"}
    assert _counts() == before


@pytest.mark.parametrize("route", ["/runs", "/runs/wait", "/runs/stream"])
def test_a_run_creating_a_thread_with_another_owners_id_answers_like_an_unknown_thread(
    world, route
):
    keys, ids = world
    body = {"assistant_id": "pipeline", "input": {"steps": 1}, "if_not_exists": "create"}
    before = _counts()

    response = _call(keys["bob"], "post", "/threads/{thread}" + route, body, ids)

    assert response.status_code == 404, response.content
    assert response.json() == {"detail": f"Thread {ids['{thread}']} not found"}
    assert _counts() == before


def test_creating_with_ones_own_existing_id_still_conflicts(world):
    keys, ids = world
    thread = _call(keys["alice"], "post", "/threads", {"thread_id": ids["{thread}"]}, ids)
    assert thread.status_code == 409
    assert "already exists" in thread.json()["detail"]
    body = {"graph_id": "pipeline", "assistant_id": ids["{assistant}"]}
    assert _call(keys["alice"], "post", "/assistants", body, ids).status_code == 409


def _counts():
    return (
        Session.objects.count(),
        Thread.objects.count(),
        Run.objects.count(),
        Workflow.objects.count(),
        StateEvent.objects.count(),
    )


@pytest.mark.parametrize(
    "method,path,body,blocks",
    [r for r in ROUTES if not r[3]],
    ids=lambda v: v if isinstance(v, str) else None,
)
@pytest.mark.parametrize("who", ["alice", "staff"])
def test_the_owner_and_staff_may(world, method, path, body, blocks, who):
    keys, ids = world
    response = _call(keys[who], method, path, body, ids)
    if path.endswith("/cancel"):
        # Allowed, and told (as LangGraph Server tells) that nothing is left to cancel.
        assert response.status_code == 404, response.content
        assert response.json() == {"detail": NO_RUNS_TO_CANCEL}
        return
    if path.endswith(("/restore", "/fork")):
        # Allowed, and told there is no such checkpoint (the thread never ran).
        assert response.status_code == 404, response.content
        assert "has no checkpoint" in response.json()["detail"]
        return
    if path.endswith("/state/{checkpoint}"):
        # Allowed, and told there is no such checkpoint.
        assert response.status_code == 404, response.content
        assert "has no checkpoint" in response.json()["detail"]
        return
    assert response.status_code < 300, (who, response.status_code, response.content[:300])


def test_a_browser_session_needs_csrf_for_writes(world, alice):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert browser.get("/api/sessions").status_code == 200
    assert browser.post("/api/sessions", {"title": "x"}, "application/json").status_code == 403


def test_the_docs_are_for_staff(client, world, alice, staff):
    client.force_login(alice)
    assert client.get("/api/docs").status_code == 302
    client.force_login(staff)
    assert client.get("/api/docs").status_code == 200
    assert client.get("/api/openapi.json").status_code == 200
