"""Bad input in the admin is refused clearly, with nothing written; runs are not made here."""

import json
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from history_app.models import ModelPrice, StateEvent
from sessions_app.models import Session
from tests.factories import make_session, make_thread, make_workflow
from threads_app.models import Run, Thread, Workflow


def _url(model, action, *args):
    meta = model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{action}", args=args)


def _session_form(session, **changes):
    form = {
        "owner": session.owner_id,
        "title": session.title,
        "status": session.status,
        "closed_at_0": "",
        "closed_at_1": "",
        "metadata": json.dumps(session.metadata),
        "context": json.dumps(session.context),
        # A browser also sends these (fields with a callable default show their initial).
        "initial-metadata": json.dumps(session.metadata),
        "initial-context": json.dumps(session.context),
        "expected_version": session.version,
        "threads-TOTAL_FORMS": "0",
        "threads-INITIAL_FORMS": "0",
        "threads-MIN_NUM_FORMS": "0",
        "threads-MAX_NUM_FORMS": "0",
    }
    return form | changes


def _thread_form(thread, **changes):
    form = {
        "session": thread.session_id,
        "workflow": thread.workflow_id or "",
        "status": thread.status,
        "config": json.dumps(thread.config),
        "metadata": json.dumps(thread.metadata),
        "error": thread.error,
        "expected_version": thread.version,
        "runs-TOTAL_FORMS": "0",
        "runs-INITIAL_FORMS": "0",
        "runs-MIN_NUM_FORMS": "0",
        "runs-MAX_NUM_FORMS": "0",
    }
    return form | changes


def _workflow_form(workflow, **changes):
    form = {
        "graph_id": workflow.graph_id,
        "name": workflow.name,
        "description": workflow.description,
        "config": json.dumps(workflow.config),
        "context": json.dumps(workflow.context),
        "metadata": json.dumps(workflow.metadata),
        "expected_version": workflow.version,
    }
    return form | changes


@pytest.fixture
def session(alice):
    return make_session(alice, "Refund for order 1042", channel="web")


@pytest.fixture
def thread(session):
    return make_thread(session, make_workflow("chat"))


# --- A form over the request size limit -----------------------------------------------


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_a_form_over_the_size_limit_is_a_413_page_and_nothing_is_saved(
    client, staff, session, settings, encoding
):
    settings.DEBUG = False
    client.force_login(staff)
    form = _session_form(session, title="Escalated", metadata=json.dumps({"x": "a" * 3_000_000}))
    events = StateEvent.objects.count()

    if encoding == "urlencoded":  # what a browser sends for the admin's forms
        response = client.post(
            _url(Session, "change", session.pk),
            urlencode(form),
            content_type="application/x-www-form-urlencoded",
        )
    else:
        response = client.post(_url(Session, "change", session.pk), form)

    assert response.status_code == 413
    body = response.content.decode()
    assert "Not saved: the form is too large" in body
    assert f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes" in body
    assert "RequestDataTooBig" not in body
    session.refresh_from_db()
    assert session.title == "Refund for order 1042"
    assert StateEvent.objects.count() == events


def test_a_form_within_the_limit_is_saved(client, staff, session):
    client.force_login(staff)

    response = client.post(
        _url(Session, "change", session.pk),
        _session_form(session, metadata=json.dumps({"x": "a" * 100_000})),
    )

    assert response.status_code == 302
    session.refresh_from_db()
    assert len(session.metadata["x"]) == 100_000


# --- Prices cannot be negative ----------------------------------------------------------

PRICE = {
    "provider": "openai",
    "model_pattern": "gpt-4o*",
    "input_per_mtok": "2.5",
    "output_per_mtok": "10",
    "cache_read_per_mtok": "",
    "cache_write_per_mtok": "",
    "note": "",
}
PRICE_FIELDS = ["input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok"]


@pytest.mark.parametrize("field", PRICE_FIELDS)
def test_a_negative_price_is_refused_with_a_form_error(client, staff, field):
    client.force_login(staff)

    response = client.post(_url(ModelPrice, "add"), PRICE | {field: "-1"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field] == ["A price cannot be negative."]
    assert not ModelPrice.objects.exists()


def test_an_existing_price_cannot_be_made_negative(client, staff):
    price = ModelPrice.objects.create(
        model_pattern="gpt-4o*", input_per_mtok=Decimal("2.5"), output_per_mtok=Decimal(10)
    )
    client.force_login(staff)

    response = client.post(_url(ModelPrice, "change", price.pk), PRICE | {"output_per_mtok": "-10"})

    assert response.status_code == 200
    assert "A price cannot be negative." in response.content.decode()
    price.refresh_from_db()
    assert price.output_per_mtok == Decimal(10)


def test_a_free_price_is_accepted(client, staff):
    client.force_login(staff)

    response = client.post(_url(ModelPrice, "add"), PRICE | {"input_per_mtok": "0"})

    assert response.status_code == 302
    assert ModelPrice.objects.get().input_per_mtok == 0


# --- JSON fields that hold an object ----------------------------------------------------

NOT_OBJECTS = [("[1, 2, 3]", "a list"), ('"a string"', "a string"), ("5", "a number")]


@pytest.mark.parametrize("field", ["metadata", "context"])
@pytest.mark.parametrize("value,kind", NOT_OBJECTS)
def test_session_metadata_and_context_must_be_objects(client, staff, session, field, value, kind):
    client.force_login(staff)
    before = Session.objects.values().get(pk=session.pk)
    events = StateEvent.objects.count()

    response = client.post(
        _url(Session, "change", session.pk), _session_form(session, **{field: value})
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field] == [
        f'Enter a JSON object such as {{"key": "value"}}, not {kind}.'
    ]
    assert Session.objects.values().get(pk=session.pk) == before
    assert StateEvent.objects.count() == events


def test_a_session_added_with_list_metadata_is_refused(client, staff, alice):
    client.force_login(staff)
    form = _session_form(Session(owner=alice, title="From admin"), metadata="[1, 2, 3]")

    response = client.post(_url(Session, "add"), form | {"expected_version": ""})

    assert response.status_code == 200
    assert "metadata" in response.context["adminform"].form.errors
    assert not Session.objects.filter(title="From admin").exists()


@pytest.mark.parametrize("field", ["config", "metadata"])
def test_thread_json_fields_must_be_objects(client, staff, thread, field):
    client.force_login(staff)
    before = Thread.objects.values().get(pk=thread.pk)

    response = client.post(
        _url(Thread, "change", thread.pk), _thread_form(thread, **{field: "[1]"})
    )

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert Thread.objects.values().get(pk=thread.pk) == before


@pytest.mark.parametrize("field", ["config", "context", "metadata"])
def test_workflow_json_fields_must_be_objects(client, staff, field):
    workflow = make_workflow("chat")
    client.force_login(staff)
    before = Workflow.objects.values().get(pk=workflow.pk)

    response = client.post(
        _url(Workflow, "change", workflow.pk), _workflow_form(workflow, **{field: '"text"'})
    )

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert Workflow.objects.values().get(pk=workflow.pk) == before


@pytest.mark.parametrize("depth", [150, 950, 5000])
def test_json_nested_too_deep_is_a_form_error(client, staff, session, settings, depth):
    client.force_login(staff)
    before = Session.objects.values().get(pk=session.pk)
    deep = '{"a": ' + "[" * depth + "]" * depth + "}"

    response = client.post(
        _url(Session, "change", session.pk), _session_form(session, metadata=deep)
    )

    assert response.status_code == 200
    limit = settings.STATEHOUSE_MAX_JSON_DEPTH
    assert response.context["adminform"].form.errors["metadata"] == [
        f"The value is nested more than {limit} levels deep (STATEHOUSE_MAX_JSON_DEPTH is {limit})."
    ]
    assert Session.objects.values().get(pk=session.pk) == before


def test_json_nested_within_the_limit_is_saved(client, staff, session):
    client.force_login(staff)
    nested = {"a": [[["deep"]]]}

    response = client.post(
        _url(Session, "change", session.pk), _session_form(session, metadata=json.dumps(nested))
    )

    assert response.status_code == 302
    session.refresh_from_db()
    assert session.metadata == nested


def test_a_blank_object_field_is_saved_as_an_empty_object(client, staff, session):
    client.force_login(staff)

    response = client.post(_url(Session, "change", session.pk), _session_form(session, metadata=""))

    assert response.status_code == 302
    session.refresh_from_db()
    assert session.metadata == {}


def test_an_object_is_saved(client, staff, thread):
    client.force_login(staff)

    response = client.post(
        _url(Thread, "change", thread.pk), _thread_form(thread, metadata='{"topic": "billing"}')
    )

    assert response.status_code == 302
    thread.refresh_from_db()
    assert thread.metadata == {"topic": "billing"}


# --- Runs are started by the services, never added here --------------------------------


def test_runs_cannot_be_added_in_the_admin(client, staff, thread):
    client.force_login(staff)
    form = {
        "thread": thread.pk,
        "workflow": thread.workflow_id,
        "status": "pending",
        "input": '{"messages": []}',
        "command": "null",
        "config": "{}",
        "metadata": "{}",
        "kwargs": "{}",
        "multitask_strategy": "reject",
        "max_attempts": "3",
    }

    page = client.get(_url(Run, "add"))
    posted = client.post(_url(Run, "add"), form)
    changelist = client.get(_url(Run, "changelist"))

    assert page.status_code == 403
    assert posted.status_code == 403
    assert not Run.objects.exists()
    assert changelist.context["has_add_permission"] is False
    assert _url(Run, "add") not in changelist.content.decode()


def test_a_run_cannot_be_moved_by_hand_in_the_admin(client, staff, thread):
    from threads_app import services

    run = services.create_run(thread, input={"messages": []}, actor=staff)
    Run.objects.filter(pk=run.pk).update(status="success")  # as if it had finished
    client.force_login(staff)
    before = Run.objects.values().get(pk=run.pk)

    response = client.post(
        _url(Run, "change", run.pk),
        {"status": "pending", "input": '{"forged": true}', "expected_version": run.version},
    )

    assert response.status_code == 302
    assert Run.objects.values().get(pk=run.pk) == before
    page = client.get(_url(Run, "change", run.pk))
    assert set(page.context["adminform"].form.fields) == {"expected_version"}
