"""The thread page's forms: resume, cancel and retry. CSRF-protected, authorized, and a
stale action is answered with a message, never an error page."""

import re
from html import unescape

import pytest
from django.test import Client
from django.urls import reverse

from core import state
from tests.status.conftest import finished, new_thread, wait_until
from threads_app import services
from threads_app.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def notices(response) -> list[str]:
    """The messages the page shows its reader (after the redirect back to it)."""
    html = response.content.decode()
    return [unescape(text) for text in re.findall(r'<li class="sh-notice[^"]*">(.*?)</li>', html)]


def resume_url(thread):
    return reverse("status:thread_resume", args=[thread.pk])


def latest_run(thread) -> Run:
    return Run.objects.filter(thread=thread).order_by("-created_at").first()


# --- resume -------------------------------------------------------------------------


def test_approving_from_the_page_resumes_the_run_to_the_end(client, alice, waiting_thread):
    client.force_login(alice)

    response = client.post(
        resume_url(waiting_thread),
        {"action": "approve", "expected_version": waiting_thread.version},
        follow=True,
    )

    assert response.status_code == 200
    run = latest_run(waiting_thread)
    assert run.command == {"resume": {"action": "approve"}}
    assert any(f"Resumed: run {run.short_id} started." in n for n in notices(response))
    assert finished(run).status == "success"
    waiting_thread.refresh_from_db()
    assert waiting_thread.status == "idle"
    assert waiting_thread.values["approved"] is True
    assert waiting_thread.values["final"].startswith("Dear customer")


def test_an_edited_draft_is_what_the_run_resumes_with(client, alice, waiting_thread):
    client.force_login(alice)

    client.post(
        resume_url(waiting_thread),
        {"action": "edit", "draft": "Short and kind.", "expected_version": waiting_thread.version},
    )

    finished(latest_run(waiting_thread))
    waiting_thread.refresh_from_db()
    assert waiting_thread.values["final"] == "Short and kind."
    assert waiting_thread.values["reviewer_note"] == "edited"


def test_an_edit_without_a_draft_is_refused_with_a_message(client, alice, waiting_thread):
    client.force_login(alice)

    response = client.post(
        resume_url(waiting_thread),
        {"action": "edit", "draft": "  ", "expected_version": waiting_thread.version},
        follow=True,
    )

    assert response.status_code == 200
    assert Run.objects.filter(thread=waiting_thread).count() == 1
    assert any("Give the edited draft." in n for n in notices(response))


def test_a_stale_answer_is_refused_with_a_message(client, alice, waiting_thread):
    client.force_login(alice)
    url = resume_url(waiting_thread)
    answer = {"action": "approve", "expected_version": waiting_thread.version}
    client.post(url, answer)  # the first answer resumes the thread
    finished(latest_run(waiting_thread))

    response = client.post(url, answer, follow=True)  # a second tab, or a double click

    assert response.status_code == 200
    assert Run.objects.filter(thread=waiting_thread).count() == 2
    assert any("Not resumed: the thread changed" in n for n in notices(response))
    assert "Waiting for a human" not in response.content.decode()


def test_a_resume_needs_a_csrf_token(alice, waiting_thread):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    url = resume_url(waiting_thread)
    answer = {"action": "approve", "expected_version": waiting_thread.version}

    refused = browser.post(url, answer)
    assert refused.status_code == 403
    assert Run.objects.filter(thread=waiting_thread).count() == 1

    html = browser.get(reverse("status:thread", args=[waiting_thread.pk])).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    accepted = browser.post(url, answer | {"csrfmiddlewaretoken": token})
    assert accepted.status_code == 302
    assert Run.objects.filter(thread=waiting_thread).count() == 2
    finished(latest_run(waiting_thread))


def test_only_staff_and_the_owner_may_answer(client, bob, staff, waiting_thread):
    answer = {"action": "approve", "expected_version": waiting_thread.version}
    client.force_login(bob)
    assert client.post(resume_url(waiting_thread), answer).status_code == 404
    assert Run.objects.filter(thread=waiting_thread).count() == 1

    client.force_login(staff)
    assert client.post(resume_url(waiting_thread), answer).status_code == 302
    assert finished(latest_run(waiting_thread)).status == "success"


def test_actions_need_a_login_and_a_post(client, alice, waiting_thread):
    run = latest_run(waiting_thread)
    for url in (
        resume_url(waiting_thread),
        reverse("status:run_cancel", args=[run.pk]),
        reverse("status:run_retry", args=[run.pk]),
    ):
        response = client.post(url, {"action": "approve"})
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("admin:login"))
    client.force_login(alice)
    assert client.get(resume_url(waiting_thread)).status_code == 405
    assert Run.objects.filter(thread=waiting_thread).count() == 1


# --- cancel and retry ---------------------------------------------------------------


def test_cancelling_a_queued_run_from_the_page(client, alice, celery_worker):
    thread = new_thread(alice, "pipeline")
    run = services.create_run(thread, input={"steps": 1}, after_seconds=3600)
    client.force_login(alice)

    response = client.post(
        reverse("status:run_cancel", args=[run.pk]), {"action": "interrupt"}, follow=True
    )

    assert response.status_code == 200
    run.refresh_from_db()
    assert run.status == "interrupted"
    assert any(f"Asked run {run.short_id} to cancel." in n for n in notices(response))


def test_cancelling_a_running_run_stops_it(client, alice, celery_worker):
    thread = new_thread(alice, "pipeline")
    run = services.create_run(thread, input={"steps": 50, "delay_s": 0.1})
    wait_until(lambda: Run.objects.get(pk=run.pk).status == "running", "the run to start")
    client.force_login(alice)

    client.post(reverse("status:run_cancel", args=[run.pk]), {"action": "interrupt"})

    run = finished(run)
    assert run.status == "interrupted"
    assert run.error.startswith("cancelled")


def test_cancelling_a_finished_run_says_so(client, alice, pipeline_thread):
    run = pipeline_thread.runs.get()
    client.force_login(alice)

    response = client.post(
        reverse("status:run_cancel", args=[run.pk]), {"action": "rollback"}, follow=True
    )

    assert response.status_code == 200
    assert any("had already finished (success)" in n for n in notices(response))
    run.refresh_from_db()
    assert run.status == "success"


def test_a_cancel_racing_another_change_says_so(client, alice, monkeypatch, celery_worker):
    thread = new_thread(alice, "pipeline")
    run = services.create_run(thread, input={"steps": 1}, after_seconds=3600)

    def conflict(*args, **kwargs):
        raise state.StateConflict("run", run.pk, 1, 2)

    monkeypatch.setattr(services, "cancel_run", conflict)
    client.force_login(alice)
    response = client.post(reverse("status:run_cancel", args=[run.pk]), follow=True)

    assert response.status_code == 200
    assert any("changed at the same moment" in n for n in notices(response))


def test_retrying_a_finished_run_starts_a_new_one(client, alice, pipeline_thread):
    old = pipeline_thread.runs.get()
    client.force_login(alice)

    response = client.post(reverse("status:run_retry", args=[old.pk]), follow=True)

    new = latest_run(pipeline_thread)
    assert new.pk != old.pk
    assert new.metadata["retry_of"] == str(old.pk)
    assert new.input == old.input
    assert any(f"retried as run {new.short_id}" in n for n in notices(response))
    assert finished(new).status == "success"


def test_retrying_an_active_run_says_to_cancel_it_first(client, alice, celery_worker):
    thread = new_thread(alice, "pipeline")
    run = services.create_run(thread, input={"steps": 1}, after_seconds=3600)
    client.force_login(alice)

    response = client.post(reverse("status:run_retry", args=[run.pk]), follow=True)

    assert response.status_code == 200
    assert Run.objects.filter(thread=thread).count() == 1
    assert any("is still pending; cancel it first" in n for n in notices(response))


def test_others_runs_cannot_be_cancelled_or_retried(client, bob, pipeline_thread):
    run = pipeline_thread.runs.get()
    client.force_login(bob)

    assert client.post(reverse("status:run_cancel", args=[run.pk])).status_code == 404
    assert client.post(reverse("status:run_retry", args=[run.pk])).status_code == 404
    assert Run.objects.filter(thread=pipeline_thread).count() == 1
