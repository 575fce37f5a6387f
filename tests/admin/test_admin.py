"""The admin: every model renders for staff with realistic data; edits go through state."""

import json

import pytest
from django.urls import reverse

from checkpoints_app.models import RestorePoint
from history_app.models import StateEvent
from sessions_app.models import Session
from tests.factories import make_session, make_thread, make_workflow
from threads_app import services as threads
from threads_app.models import Run, Thread, Workflow


@pytest.fixture
def data(alice):
    session = make_session(alice, "Refund for order 1042", channel="web", locale="de")
    chat = make_workflow("chat")
    thread = make_thread(session, chat, topic="refund")
    threads.mark_thread_running(thread.pk)
    threads.mark_thread_finished(
        thread.pk, {"messages": [{"role": "ai", "content": "<b>done</b>"}]}
    )
    failed = make_thread(session, make_workflow("pipeline"))
    threads.mark_thread_running(failed.pk)
    threads.mark_thread_failed(failed.pk, "step 3 failed")
    from core import state

    run = state.create_state(
        "run",
        {"thread": thread, "workflow": chat, "input": {"messages": [{"role": "user"}]}},
    )
    return {"session": session, "thread": thread, "workflow": chat, "run": run}


MODELS = [Session, Thread, Workflow, Run, StateEvent, RestorePoint]


def _url(model, action, *args):
    meta = model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{action}", args=args)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelists_render_for_staff(client, staff, data, model):
    client.force_login(staff)

    response = client.get(_url(model, "changelist"))

    assert response.status_code == 200
    assert response.context["cl"].result_count >= 1


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_change_pages_render_for_staff(client, staff, data, model):
    client.force_login(staff)
    obj = model.objects.order_by("pk").first()

    response = client.get(_url(model, "change", obj.pk))

    assert response.status_code == 200


def test_json_is_shown_pretty_and_escaped(client, staff, data):
    client.force_login(staff)

    response = client.get(_url(Thread, "change", data["thread"].pk))

    body = response.content.decode()
    assert '<pre class="statehouse-json">' in body
    assert "&lt;b&gt;done&lt;/b&gt;" in body
    assert "<b>done</b>" not in body


def test_the_session_page_shows_its_threads_inline(client, staff, data):
    client.force_login(staff)

    response = client.get(_url(Session, "change", data["session"].pk))

    body = response.content.decode()
    assert str(data["thread"].pk) in body
    assert "threads_by_status" in body


def test_changelists_do_not_count_the_whole_table(client, staff, data):
    client.force_login(staff)

    response = client.get(_url(StateEvent, "changelist"))

    assert response.context["cl"].show_full_result_count is False
    assert response.context["cl"].full_result_count is None


@pytest.mark.parametrize("term", ["refund", "not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_search_never_fails(client, staff, data, term):
    client.force_login(staff)
    for model in (Session, Thread, Run, StateEvent):
        response = client.get(_url(model, "changelist"), {"q": term})
        assert response.status_code == 200, model


def test_search_by_id_finds_the_session(client, staff, data):
    client.force_login(staff)

    response = client.get(_url(Session, "changelist"), {"q": str(data["session"].pk)})

    assert list(response.context["cl"].result_list) == [data["session"]]


def test_anonymous_users_are_sent_to_login(client, data):
    for model in MODELS:
        response = client.get(_url(model, "changelist"))
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))


def test_non_staff_users_cannot_use_the_admin(client, alice, data):
    client.force_login(alice)

    response = client.get(_url(Session, "changelist"))

    assert response.status_code == 302


def _session_form(session, **changes):
    form = {
        "owner": session.owner_id,
        "title": session.title,
        "status": session.status,
        "closed_at_0": "",
        "closed_at_1": "",
        "metadata": json.dumps(session.metadata),
        "context": json.dumps(session.context),
        "expected_version": session.version,
        "threads-TOTAL_FORMS": "0",
        "threads-INITIAL_FORMS": "0",
        "threads-MIN_NUM_FORMS": "0",
        "threads-MAX_NUM_FORMS": "0",
    }
    form.update(changes)
    return form


def test_an_admin_edit_goes_through_the_state_manager(client, staff, data):
    client.force_login(staff)
    session = Session.objects.get(pk=data["session"].pk)

    response = client.post(
        _url(Session, "change", session.pk), _session_form(session, title="Escalated")
    )

    assert response.status_code == 302
    session.refresh_from_db()
    assert session.title == "Escalated"
    event = StateEvent.objects.filter(entity_id=session.pk).first()
    assert event.changed_fields == ["title"]
    assert event.actor == "user:staff"


def test_a_stale_admin_edit_is_refused_with_a_message(client, staff, data):
    client.force_login(staff)
    session = Session.objects.get(pk=data["session"].pk)
    form = _session_form(session, title="Mine")
    from core import state

    state.update_state("session", session.pk, {"title": "Theirs"})  # someone else saved

    response = client.post(_url(Session, "change", session.pk), form, follow=True)

    session.refresh_from_db()
    assert session.title == "Theirs"
    messages = [str(m) for m in response.context["messages"]]
    assert any("changed concurrently" in m for m in messages)


def test_state_events_are_read_only(client, staff, data):
    client.force_login(staff)
    event = StateEvent.objects.first()

    assert client.get(_url(StateEvent, "add")).status_code == 403
    assert client.post(_url(StateEvent, "delete", event.pk), {"post": "yes"}).status_code == 403
    client.post(_url(StateEvent, "change", event.pk), {"actor": "forged"})
    event.refresh_from_db()
    assert event.actor != "forged"


def test_adding_a_session_in_the_admin_records_its_creation(client, staff, alice):
    client.force_login(staff)
    form = _session_form(
        Session(owner=alice, title="From admin", status="active"), expected_version=""
    )

    response = client.post(_url(Session, "add"), form)

    assert response.status_code == 302
    session = Session.objects.get(title="From admin")
    assert StateEvent.objects.filter(entity_id=session.pk, kind="created").exists()


def test_deleting_a_thread_in_the_admin_deletes_its_checkpoints(client, staff, data):
    from checkpoints_app.models import Checkpoint
    from checkpoints_app.saver import DjangoSaver
    from tests.checkpoints.helpers import thread_of

    thread = data["thread"]
    thread_of(DjangoSaver(), 3, thread_id=str(thread.pk))
    assert Checkpoint.objects.filter(thread_id=str(thread.pk)).exists()
    client.force_login(staff)

    response = client.post(_url(Thread, "delete", thread.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not Thread.objects.filter(pk=thread.pk).exists()
    assert not Checkpoint.objects.filter(thread_id=str(thread.pk)).exists()
    assert StateEvent.objects.filter(entity_id=str(thread.pk), kind="deleted").exists()


def test_the_thread_list_heads_its_session_column_and_sorts_by_it(client, staff, data):
    from django.contrib.admin.templatetags.admin_list import result_headers

    client.force_login(staff)

    response = client.get(_url(Thread, "changelist"))

    headers = {h["text"]: h for h in result_headers(response.context["cl"])}
    assert headers["session"]["sortable"] is True
