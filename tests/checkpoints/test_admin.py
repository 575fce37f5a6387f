"""The checkpoint admin: table, timeline, decoded values, diffs, restore and fork."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from checkpoints_app.models import Checkpoint, CheckpointBlob
from core import state
from tests.checkpoints import graphs
from tests.factories import make_session, make_thread


@pytest.fixture
def chat(threaded_saver, alice):
    """A Statehouse thread with two turns of the chat graph."""
    thread = make_thread(make_session(alice))
    app = graphs.chat_graph().compile(checkpointer=threaded_saver)
    config = {"configurable": {"thread_id": str(thread.pk)}}
    for i in range(2):
        app.invoke(graphs.human(f"question {i}"), config)
    return thread, app, config


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def first_turn_end(thread) -> Checkpoint:
    rows = Checkpoint.objects.filter(thread_id=str(thread.pk), checkpoint_ns="")
    return next(row for row in rows.order_by("checkpoint_id") if row.step == 3)


def timeline_url(thread_id) -> str:
    return reverse("admin:checkpoints_app_checkpoint_timeline", args=[str(thread_id)])


def test_the_changelist_lists_checkpoints_and_finds_them_by_thread(staff_client, chat):
    thread, _, _ = chat
    url = reverse("admin:checkpoints_app_checkpoint_changelist")

    listed = staff_client.get(url)
    found = staff_client.get(url, {"q": str(thread.pk)})
    missed = staff_client.get(url, {"q": "no-such-thread"})

    assert listed.status_code == 200
    assert found.status_code == 200
    assert found.content.count(timeline_url(thread.pk).encode()) == 10
    assert "0 checkpoints" in missed.content.decode()


def test_a_checkpoint_page_shows_decoded_values_and_the_difference_with_its_parent(
    staff_client, chat
):
    thread, _, _ = chat
    row = first_turn_end(thread)

    page = staff_client.get(reverse("admin:checkpoints_app_checkpoint_change", args=[row.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    assert "looking up question 0" in html  # a message, decoded from its blob
    assert "answer 1" in html
    assert "Difference with the parent" in html
    assert "messages <small>(changed)</small>" in html
    assert "+    &quot;content&quot;: &quot;answer 1&quot;," in html  # the line answer added
    assert "Restore to here" in html
    assert "Fork from here" in html


def test_a_blob_that_cannot_be_decoded_is_shown_as_such(staff_client, chat):
    thread, _, _ = chat
    row = first_turn_end(thread)
    version = row.blob_versions["messages"]
    CheckpointBlob.objects.filter(
        thread_id=str(thread.pk), channel="messages", version=version
    ).update(blob=b"\xc1\xc1 not msgpack")

    page = staff_client.get(reverse("admin:checkpoints_app_checkpoint_change", args=[row.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    assert "messages (undecodable)" in html
    assert "msgpack blob of 14 bytes" in html


def test_the_timeline_lists_a_threads_checkpoints_newest_first(staff_client, chat):
    thread, app, config = chat
    ids = [s.config["configurable"]["checkpoint_id"] for s in app.get_state_history(config)]

    page = staff_client.get(timeline_url(thread.pk))

    html = page.content.decode()
    assert page.status_code == 200
    positions = [html.index(checkpoint_id) for checkpoint_id in ids]
    assert positions == sorted(positions)
    assert "(latest)" in html
    assert html.count("Restore to here") == len(ids)
    assert "messages, turns" in html  # what the agent step changed


def test_the_timeline_serves_any_langgraph_thread_without_operations(staff_client, threaded_saver):
    app = graphs.chat_graph().compile(checkpointer=threaded_saver)
    app.invoke(graphs.human("hi"), {"configurable": {"thread_id": "not/a-uuid"}})

    page = staff_client.get(timeline_url("not/a-uuid"))

    assert page.status_code == 200
    assert "Restore to here" not in page.content.decode()
    assert staff_client.get(timeline_url("no-such-thread")).status_code == 404


def test_restore_asks_for_confirmation_then_restores_on_post(staff_client, chat):
    thread, app, config = chat
    row = first_turn_end(thread)
    url = reverse("admin:checkpoints_app_checkpoint_restore", args=[row.pk])
    before = Checkpoint.objects.count()

    confirm = staff_client.get(url)

    assert confirm.status_code == 200
    assert b"csrfmiddlewaretoken" in confirm.content
    assert Checkpoint.objects.count() == before

    done = staff_client.post(
        url, {"expected_version": state.get_state("thread", thread.pk)["version"]}
    )

    assert done.status_code == 302
    assert done["Location"].startswith(timeline_url(thread.pk))
    head = app.get_state(config)
    assert head.metadata["restored_from"] == row.checkpoint_id
    assert head.values["turns"] == 1
    assert state.get_state("thread", thread.pk)["values"]["turns"] == 1


def test_a_restore_over_a_changed_thread_is_refused_with_a_message(staff_client, chat):
    thread, _, _ = chat
    row = first_turn_end(thread)
    stale = state.get_state("thread", thread.pk)["version"]
    state.update_state("thread", thread.pk, {"metadata": {"changed": True}})
    before = Checkpoint.objects.count()

    done = staff_client.post(
        reverse("admin:checkpoints_app_checkpoint_restore", args=[row.pk]),
        {"expected_version": stale},
        follow=True,
    )

    assert "the thread changed since this page was opened" in done.content.decode()
    assert Checkpoint.objects.count() == before


def test_fork_creates_a_thread_and_shows_its_timeline(staff_client, chat):
    thread, app, _ = chat
    row = first_turn_end(thread)
    Thread = state.entity_model("thread")

    done = staff_client.post(reverse("admin:checkpoints_app_checkpoint_fork", args=[row.pk]))

    forked = Thread.objects.exclude(pk=thread.pk).get()
    assert done.status_code == 302
    assert done["Location"].startswith(timeline_url(forked.pk))
    assert forked.session_id == thread.session_id
    state_now = app.get_state({"configurable": {"thread_id": str(forked.pk)}})
    assert state_now.config["configurable"]["checkpoint_id"] == row.checkpoint_id


def test_people_who_are_not_staff_cannot_reach_the_pages_or_operate(client, alice, chat):
    thread, _, _ = chat
    row = first_turn_end(thread)
    client.force_login(alice)
    before = Checkpoint.objects.count()
    urls = [
        timeline_url(thread.pk),
        reverse("admin:checkpoints_app_checkpoint_change", args=[row.pk]),
        reverse("admin:checkpoints_app_checkpoint_restore", args=[row.pk]),
    ]

    for url in urls:
        response = client.get(url)
        assert response.status_code == 302
        assert "/login/" in response["Location"]
    refused = client.post(reverse("admin:checkpoints_app_checkpoint_fork", args=[row.pk]))

    assert refused.status_code == 302
    assert Checkpoint.objects.count() == before
    assert state.entity_model("thread").objects.count() == 1


def test_staff_without_the_thread_change_permission_see_but_cannot_operate(client, chat):
    thread, _, _ = chat
    row = first_turn_end(thread)
    viewer = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_checkpoint"))
    client.force_login(viewer)

    timeline = client.get(timeline_url(thread.pk))
    restore = client.post(reverse("admin:checkpoints_app_checkpoint_restore", args=[row.pk]))

    assert timeline.status_code == 200
    assert "Restore to here" not in timeline.content.decode()
    assert restore.status_code == 403


def test_operations_need_the_csrf_token(staff, chat):
    thread, _, _ = chat
    row = first_turn_end(thread)
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    before = Checkpoint.objects.count()

    response = client.post(reverse("admin:checkpoints_app_checkpoint_restore", args=[row.pk]))

    assert response.status_code == 403
    assert Checkpoint.objects.count() == before
