"""Statehouse's own session resources, in process (Django test client with an API key)."""

import pytest
from django.test import Client

from core.apikeys import create_api_key
from sessions_app.models import Session
from tests.factories import make_session, make_thread


@pytest.fixture
def api(alice):
    return Client(headers={"X-Api-Key": create_api_key(alice)[1]})


def test_create_get_patch_and_close_a_session(api, alice):
    created = api.post(
        "/api/sessions", {"title": "Support", "metadata": {"channel": "web"}}, "application/json"
    )
    assert created.status_code == 200
    session_id = created.json()["session_id"]
    assert created.json()["owner"] == "alice"

    patched = api.patch(
        f"/api/sessions/{session_id}",
        {"title": "Escalated", "expected_version": 1},
        "application/json",
    )
    assert patched.json()["title"] == "Escalated"
    assert patched.json()["version"] == 2

    stale = api.patch(
        f"/api/sessions/{session_id}", {"title": "Late", "expected_version": 1}, "application/json"
    )
    assert stale.status_code == 409
    assert "concurrently" in stale.json()["detail"]

    closed = api.post(f"/api/sessions/{session_id}/close")
    assert closed.json()["status"] == "closed"
    assert api.post(f"/api/sessions/{session_id}/close").status_code == 409


def test_list_sessions_with_a_cursor_and_filters(api, alice, bob):
    for n in range(5):
        make_session(alice, f"alice {n}")
    make_session(bob, "bob's")

    first = api.get("/api/sessions", {"limit": 2}).json()
    second = api.get("/api/sessions", {"limit": 2, "cursor": first["next_cursor"]}).json()
    third = api.get("/api/sessions", {"limit": 2, "cursor": second["next_cursor"]}).json()

    titles = [s["title"] for page in (first, second, third) for s in page["items"]]
    assert titles == [f"alice {n}" for n in (4, 3, 2, 1, 0)]
    assert third["next_cursor"] is None
    assert api.get("/api/sessions", {"q": "alice 3"}).json()["items"][0]["title"] == "alice 3"
    assert api.get("/api/sessions", {"cursor": "garbage!"}).status_code == 400


def test_limits_are_capped(api, alice, settings):
    settings.STATEHOUSE_API_MAX_LIMIT = 3
    for n in range(5):
        make_session(alice, f"s{n}")
    assert len(api.get("/api/sessions", {"limit": 10_000}).json()["items"]) == 3


def test_a_sessions_threads_and_history(api, alice):
    session = make_session(alice)
    thread = make_thread(session)

    threads = api.get(f"/api/sessions/{session.pk}/threads").json()
    assert [t["thread_id"] for t in threads["items"]] == [str(thread.pk)]
    history = api.get(f"/api/sessions/{session.pk}/history").json()["items"]
    assert {e["entity_type"] for e in history} == {"session", "thread"}
    assert api.get(f"/api/sessions/{session.pk}/messages").json() == {
        "items": [],
        "next_after_id": None,
    }


def test_another_owners_session_is_not_found(api, bob):
    theirs = make_session(bob)
    for path in ("", "/threads", "/messages", "/history"):
        response = api.get(f"/api/sessions/{theirs.pk}{path}")
        assert response.status_code == 404, path
    assert api.post(f"/api/sessions/{theirs.pk}/close").status_code == 404
    assert Session.objects.get(pk=theirs.pk).status == "active"


def test_unknown_fields_are_refused_by_name(api):
    response = api.post("/api/sessions", {"title": "x", "colour": "red"}, "application/json")
    assert response.status_code == 422
    assert "colour" in response.content.decode()
