"""Run actions in the admin: cancel, retry, and answering an interrupt."""

import pytest
from django.urls import reverse

from tests.factories import make_session
from tests.threads.test_runtime import _running, finished
from threads_app import services
from threads_app.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def interrupted_thread(alice):
    thread = services.create_thread(make_session(alice), services.resolve_workflow("approval"))
    finished(services.create_run(thread, input={"request": "refund"}))
    thread.refresh_from_db()
    assert thread.status == "interrupted"
    return thread


def test_staff_approve_an_interrupt_from_the_thread_page(client, staff, alice, celery_worker):
    thread = interrupted_thread(alice)
    client.force_login(staff)
    url = reverse("admin:threads_app_thread_resume", args=[thread.pk])

    page = client.get(url)
    assert page.status_code == 200
    assert "Approve this draft" in page.content.decode()
    response = client.post(url, {"action": "approve", "expected_version": thread.version})

    assert response.status_code == 302
    run = Run.objects.filter(thread=thread).order_by("-created_at").first()
    assert run.command == {"resume": {"action": "approve"}}
    finished(run)
    thread.refresh_from_db()
    assert thread.status == "idle"
    assert thread.values["approved"] is True
    assert thread.values["final"].startswith("Dear customer")


def test_an_edit_resumes_with_the_edited_draft(client, staff, alice, celery_worker):
    thread = interrupted_thread(alice)
    client.force_login(staff)

    client.post(
        reverse("admin:threads_app_thread_resume", args=[thread.pk]),
        {"action": "edit", "draft": "Short and kind.", "expected_version": thread.version},
    )

    finished(Run.objects.filter(thread=thread).order_by("-created_at").first())
    thread.refresh_from_db()
    assert thread.values["final"] == "Short and kind."


def test_a_stale_resume_form_is_refused_with_a_message(client, staff, alice, celery_worker):
    thread = interrupted_thread(alice)
    client.force_login(staff)
    url = reverse("admin:threads_app_thread_resume", args=[thread.pk])

    response = client.post(
        url, {"action": "approve", "expected_version": thread.version - 1}, follow=True
    )

    assert Run.objects.filter(thread=thread).count() == 1
    assert any("changed since" in str(m) for m in response.context["messages"])


def test_the_resume_form_needs_a_staff_login(client, alice, celery_worker):
    thread = interrupted_thread(alice)
    client.force_login(alice)

    response = client.get(reverse("admin:threads_app_thread_resume", args=[thread.pk]))

    assert response.status_code == 302
    assert "/admin/login/" in response.url


def test_cancel_action_stops_a_running_run(client, staff, alice, celery_worker):
    thread = services.create_thread(make_session(alice), services.resolve_workflow("pipeline"))
    run = services.create_run(thread, input={"steps": 200, "delay_s": 0.05})
    _running(run)
    client.force_login(staff)
    changelist = reverse("admin:threads_app_run_changelist")

    client.post(changelist, {"action": "cancel_runs", "_selected_action": [run.pk]})

    assert finished(run).status == "interrupted"
    response = client.post(
        changelist, {"action": "cancel_runs", "_selected_action": [run.pk]}, follow=True
    )
    assert any("already finished" in str(m) for m in response.context["messages"])


def test_retry_action_starts_a_new_run_with_the_same_request(client, staff, alice, celery_worker):
    thread = services.create_thread(make_session(alice), services.resolve_workflow("pipeline"))
    run = finished(services.create_run(thread, input={"steps": 2}))
    client.force_login(staff)

    client.post(
        reverse("admin:threads_app_run_changelist"),
        {"action": "retry_runs", "_selected_action": [run.pk]},
    )

    retry = Run.objects.exclude(pk=run.pk).get(thread=thread)
    assert retry.input == {"steps": 2}
    assert retry.metadata["retry_of"] == str(run.pk)
    assert finished(retry).status == "success"
