"""LLM calls, usage, and a thread's checkpoint timeline with restore and fork, over the API."""

from decimal import Decimal

import pytest
from django.test import Client

from core.apikeys import create_api_key
from tests.factories import make_session
from threads_app import services

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def chat_run(alice, celery_worker):
    thread = services.create_thread(make_session(alice), services.resolve_workflow("chat"))
    run = services.create_run(thread, input={"messages": [{"role": "user", "content": "Hi"}]})
    run = services.wait_for_run(run.pk)
    assert run.status == "success", run.error
    return run


def api_for(user):
    return Client(headers={"X-Api-Key": create_api_key(user)[1]})


def test_llm_calls_and_usage_of_the_callers_runs(alice, bob, chat_run):
    api = api_for(alice)

    calls = api.get("/api/llm-calls", {"thread_id": str(chat_run.thread_id)}).json()["items"]
    assert [c["total_tokens"] for c in calls] == [138, 107]  # newest first
    assert all(c["model_name"] == "gpt-4o-mini-2024-07-18" for c in calls)
    by_model = api.get("/api/usage", {"by": "model"}).json()
    [row] = by_model["rows"]
    assert row["model_name"] == "gpt-4o-mini-2024-07-18"
    assert row["total_tokens"] == 245
    assert Decimal(by_model["totals"]["cost"]) == sum(Decimal(c["cost_total"]) for c in calls)
    assert api.get("/api/usage", {"by": "planet"}).status_code == 422

    # bob sees none of it.
    assert api_for(bob).get("/api/llm-calls").json()["items"] == []
    assert api_for(bob).get("/api/usage", {"by": "model"}).json()["rows"] == []


def test_the_checkpoint_timeline_restore_and_fork(alice, chat_run):
    api = api_for(alice)
    thread_id = str(chat_run.thread_id)

    timeline = api.get(f"/api/threads/{thread_id}/checkpoints").json()["items"]
    assert len(timeline) >= 4
    assert timeline[0]["run_id"] == str(chat_run.pk)
    first_turn = next(item for item in timeline if item["step"] == 1)

    forked = api.post(
        f"/api/threads/{thread_id}/fork",
        {"checkpoint_id": first_turn["checkpoint_id"]},
        "application/json",
    )
    assert forked.status_code == 200, forked.content
    assert forked.json()["thread_id"] != thread_id
    assert len(forked.json()["values"]["messages"]) == 2

    restored = api.post(
        f"/api/threads/{thread_id}/restore",
        {"checkpoint_id": first_turn["checkpoint_id"]},
        "application/json",
    )
    assert restored.status_code == 200, restored.content
    assert len(restored.json()["thread"]["values"]["messages"]) == 2
    head = api.get(f"/api/threads/{thread_id}/checkpoints", {"limit": 1}).json()["items"][0]
    assert head["source"] == "fork"

    missing = api.post(
        f"/api/threads/{thread_id}/restore", {"checkpoint_id": "nope"}, "application/json"
    )
    assert missing.status_code == 404


def test_a_thread_created_through_the_api_can_start_from_the_sessions_context(alice, chat_run):
    api = api_for(alice)
    session_id = str(chat_run.thread.session_id)

    created = api.post(
        "/api/threads",
        {"metadata": {"session_id": session_id, "graph_id": "chat"}, "from_session_context": True},
        "application/json",
    )

    assert created.status_code == 200, created.content
    assert [m["type"] for m in created.json()["values"]["messages"]] == [
        "human",
        "ai",
        "tool",
        "ai",
    ]
    assert created.json()["metadata"]["session_id"] == session_id
