"""A run's creation, POST /threads/{id}/runs, in six statements (issue 16): the API key
with its user; then one transaction: the thread locked with the ownership check, its
workflow and whether a blocking budget applies, the run, its StateEvent. The answers
(404s, 422s, 429) are the ones the separate reads gave."""

import json
from decimal import Decimal

import pytest
from django.test import Client

from core.apikeys import create_api_key
from history_app.models import Budget, StateEvent
from tests.factories import api_client, make_session
from threads_app import runtime, services
from threads_app.models import Run, Thread

pytestmark = pytest.mark.django_db(transaction=True)

# API key; BEGIN, lock thread (+ workflow, budgets), INSERT run, INSERT StateEvent, COMMIT
RUN_CREATE = 6


@pytest.fixture
def client(alice, monkeypatch):
    monkeypatch.setattr(services, "enqueue", lambda *args, **kwargs: None)
    return api_client(alice)


@pytest.fixture
def thread(alice):
    """A pipeline thread that has run once."""
    thread = services.create_thread(make_session(alice), services.resolve_workflow("pipeline"))
    runtime.execute_run(services.create_run(thread, input={"steps": 1}).pk)
    return thread


def post(client, thread_id, **body):
    body = {"assistant_id": "pipeline", "input": {"steps": 1}} | body
    return client.post(
        f"/api/threads/{thread_id}/runs", json.dumps(body), content_type="application/json"
    )


def test_a_run_on_an_existing_thread_is_created_in_six_statements(
    client, thread, django_assert_max_num_queries
):
    with django_assert_max_num_queries(RUN_CREATE):
        response = post(client, thread.pk)

    assert response.status_code == 200, response.content
    run = Run.objects.get(pk=response.json()["run_id"])
    assert (run.thread_id, run.status, run.input) == (thread.pk, "pending", {"steps": 1})
    assert run.workflow_id == thread.workflow_id
    assert StateEvent.objects.filter(entity_id=run.pk, kind="created").count() == 1


def test_the_assistant_by_its_id_is_taken_from_the_thread_read_too(
    client, thread, django_assert_max_num_queries
):
    with django_assert_max_num_queries(RUN_CREATE):
        response = post(client, thread.pk, assistant_id=str(thread.workflow_id))
    assert response.status_code == 200, response.content


def test_another_assistant_is_read_and_named_by_the_thread(
    client, thread, django_assert_max_num_queries
):
    services.resolve_workflow("chat")  # the system workflow exists
    # The workflow read; the thread's metadata naming it (update_state: the thread read
    # again, its UPDATE and StateEvent).
    with django_assert_max_num_queries(RUN_CREATE + 4):
        response = post(client, thread.pk, assistant_id="chat", input=None)
    assert response.status_code == 200, response.content
    assert Run.objects.get(pk=response.json()["run_id"]).workflow.graph_id == "chat"
    thread.refresh_from_db()
    assert thread.metadata["graph_id"] == "chat"  # the graph of its latest run


def test_another_owners_thread_and_assistant_are_not_found(client, thread, bob):
    bobs = services.create_thread(make_session(bob), services.resolve_workflow("pipeline"))
    response = post(client, bobs.pk)
    assert (response.status_code, response.json()) == (
        404,
        {"detail": f"Thread {bobs.pk} not found"},
    )

    assistant = services.create_assistant(bob, "pipeline")
    response = post(client, thread.pk, assistant_id=str(assistant.pk))
    assert response.status_code == 404
    assert response.json() == {"detail": f"Assistant {assistant.pk} not found"}
    response = post(client, thread.pk, assistant_id="no-such-graph")
    assert response.json() == {"detail": "Assistant no-such-graph not found"}
    assert post(client, "not-a-uuid").json() == {"detail": "Thread not-a-uuid not found"}
    assert post(client, "not-a-uuid", if_not_exists="create").status_code == 422
    assert not Run.objects.filter(thread=bobs).exists()
    assert Run.objects.filter(thread=thread).count() == 1  # its first run only


def test_a_thread_of_a_new_id_is_created_when_asked(client, alice):
    thread_id = "6b0f3f4e-1a84-4a0f-9b7e-1f1f6c0b2a11"
    assert post(client, thread_id).status_code == 404
    response = post(client, thread_id, if_not_exists="create")
    assert response.status_code == 200, response.content
    assert Thread.objects.get(pk=thread_id).session.owner == alice


def test_a_used_up_blocking_budget_refuses_the_run(client, thread, alice):
    Budget.objects.create(
        name="Cap", scope="user", user=alice, limit=Decimal("0.01"), action="block"
    )
    assert post(client, thread.pk).status_code == 200  # nothing spent yet

    thread.session.__class__.objects.filter(pk=thread.session_id).update(total_cost=1)
    Budget.objects.create(
        name="Session cap", scope="session", period="total", limit=Decimal("0.5"), action="block"
    )
    response = post(client, thread.pk)
    assert response.status_code == 429
    assert "Session cap" in response.json()["detail"]
    assert Run.objects.filter(thread=thread).count() == 2


def test_staff_may_start_a_run_on_anyones_thread(thread, staff, monkeypatch):
    monkeypatch.setattr(services, "enqueue", lambda *args, **kwargs: None)
    ops = Client(headers={"X-Api-Key": create_api_key(staff)[1]})
    response = post(ops, thread.pk)
    assert response.status_code == 200, response.content
    assert Run.objects.get(pk=response.json()["run_id"]).thread_id == thread.pk


def test_a_stateless_runs_thread_starts_on_its_assistant(
    client, alice, django_assert_max_num_queries
):
    services.resolve_workflow("pipeline")  # the system workflow exists
    body = json.dumps({"assistant_id": "pipeline", "input": {"steps": 1}})
    # API key; BEGIN, the workflow, the session (INSERT, StateEvent), the thread
    # (INSERT, session counts, StateEvent), the run (thread lock, INSERT, StateEvent),
    # two SAVEPOINTs and their RELEASEs, COMMIT: the run changes nothing on the thread.
    with django_assert_max_num_queries(16):
        response = client.post("/api/runs", body, content_type="application/json")

    assert response.status_code == 200, response.content
    thread = Run.objects.get(pk=response.json()["run_id"]).thread
    workflow = services.resolve_workflow("pipeline")
    assert thread.workflow == workflow
    assert thread.metadata == {
        "temporary": True,
        "graph_id": "pipeline",
        "assistant_id": str(workflow.pk),
    }
    assert StateEvent.objects.filter(entity_id=thread.pk).count() == 1  # created


def test_a_thread_created_for_a_run_is_on_the_callers_assistant(client, alice, bob):
    mine = services.create_assistant(alice, "pipeline")
    thread_id = "0f6d1c1e-6a1b-4c55-9f8e-3c7b1b6a9d21"
    response = post(client, thread_id, assistant_id=str(mine.pk), if_not_exists="create")
    assert response.status_code == 200, response.content
    thread = Thread.objects.get(pk=thread_id)
    assert (thread.workflow, thread.metadata["assistant_id"]) == (mine, str(mine.pk))

    theirs = services.create_assistant(bob, "pipeline")
    body = json.dumps({"assistant_id": str(theirs.pk), "input": {"steps": 1}})
    response = client.post("/api/runs", body, content_type="application/json")
    assert response.status_code == 404
    assert response.json() == {"detail": f"Assistant {theirs.pk} not found"}
    assert Thread.objects.count() == 1  # nothing written
