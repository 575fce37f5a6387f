"""A state read, GET /threads/{id}/state, in two statements (issue 16): the API key with
its user, then the thread with the ownership check and what its cached state needs; the
answer is the one LangGraph's get_state gives."""

import json
import uuid

import pytest
from django.test import Client

from core.apikeys import create_api_key
from tests.factories import api_client, make_session
from threads_app import graph_state, runtime, services
from threads_app.models import Thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(alice):
    return api_client(alice)


def new_thread(owner, graph_id):
    return services.create_thread(make_session(owner), services.resolve_workflow(graph_id))


def ran(thread, **body):
    run = services.create_run(thread, send=False, **body)  # executed here, as a server does
    runtime.execute_run(run.pk)
    return thread


def read(client, thread) -> dict:
    response = client.get(f"/api/threads/{thread.pk}/state")
    assert response.status_code == 200, response.content
    return response.json()


def through_get_state(thread) -> dict:
    """The answer as LangGraph's get_state makes it (a thread read without the cache's
    annotations)."""
    plain = Thread.objects.select_related("workflow").get(pk=thread.pk)
    expected = graph_state.current(plain)
    assert graph_state._cached(plain) is None  # no annotations: LangGraph answered
    return expected


def same(client, thread, answer):
    assert answer == json.loads(json.dumps(through_get_state(thread), default=str))


def test_an_idle_thread_is_read_in_two_statements(alice, client, django_assert_max_num_queries):
    thread = ran(new_thread(alice, "pipeline"), input={"steps": 2})
    with django_assert_max_num_queries(2):
        answer = read(client, thread)
    assert answer["values"] == {"steps": 2, "completed_steps": [1, 2]}
    same(client, thread, answer)


def test_after_an_update_the_read_is_cached_and_current(
    alice, client, django_assert_max_num_queries
):
    thread = ran(new_thread(alice, "pipeline"), input={"steps": 1})
    services.update_thread_state(thread.pk, {"delay_s": 0.5}, as_node="step")
    with django_assert_max_num_queries(2):
        answer = read(client, thread)
    assert answer["values"]["delay_s"] == 0.5
    same(client, thread, answer)


def test_an_interrupted_thread_is_read_from_langgraph(alice, client):
    thread = ran(new_thread(alice, "approval"), input={"request": "refund"})
    assert Thread.objects.get(pk=thread.pk).status == Thread.Status.INTERRUPTED
    answer = read(client, thread)
    assert answer["next"] == ["review"] and answer["interrupts"]
    same(client, thread, answer)


def test_a_thread_that_never_ran(alice, client):
    thread = new_thread(alice, "pipeline")
    same(client, thread, read(client, thread))


def test_a_checkpoint_written_after_the_thread_is_read_from_langgraph(alice, client):
    # The cache is not current (a checkpoint newer than the thread's last change).
    thread = ran(new_thread(alice, "pipeline"), input={"steps": 1})
    Thread.objects.filter(pk=thread.pk).update(
        updated_at=Thread.objects.get(pk=thread.pk).created_at
    )
    answer = read(client, thread)
    assert (
        graph_state._cached(
            graph_state.with_latest_checkpoint(
                Thread.objects.select_related("workflow"), thread.pk
            ).get(pk=thread.pk)
        )
        is None
    )
    same(client, thread, answer)


def test_after_a_cancelled_run_the_read_is_langgraphs(alice, client):
    # A cancel leaves the thread idle even with nodes still to run: the row cannot say.
    thread = ran(new_thread(alice, "pipeline"), input={"steps": 1})
    thread.runs.update(status="cancelled")
    annotated = graph_state.with_latest_checkpoint(
        Thread.objects.select_related("workflow"), thread.pk
    ).get(pk=thread.pk)
    assert graph_state._cached(annotated) is None
    same(client, thread, read(client, thread))


def test_staff_read_any_thread_and_other_owners_none(
    alice, bob, staff, client, django_assert_max_num_queries
):
    # The thread is read with its SQL compiled once (core.rowloader.row_where), the
    # owner's check bound at each read; staff see every thread.
    thread = ran(new_thread(alice, "pipeline"), input={"steps": 1})
    answer = read(client, thread)
    staffs = Client(headers={"X-Api-Key": create_api_key(staff)[1]})
    staffs.get("/api/sessions")
    with django_assert_max_num_queries(2):
        assert read(staffs, thread) == answer
    bobs = Client(headers={"X-Api-Key": create_api_key(bob)[1]})
    for path in (thread.pk, new_thread(bob, "pipeline").pk.hex[:8] + "-nope", uuid.uuid4()):
        response = bobs.get(f"/api/threads/{path}/state")
        assert response.status_code == 404, path
        assert response.json()["detail"] == f"Thread {path} not found"
    assert (
        bobs.get(f"/api/threads/{thread.pk}/state", headers={"X-Api-Key": "sh_x_y"}).status_code
        == 401
    )
