"""The status pages render complete on the server, with data and with none."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from core import state
from core.time import now
from history_app.models import Alert, Budget, DailyModelUsage
from tests.factories import make_session, make_thread
from tests.status.conftest import new_thread
from threads_app import services


def page(client, user, url, status=200):
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == status, response.content[:500]
    return response.content.decode()


def squash(html: str) -> str:
    """The page's text with whitespace collapsed, for assertions on what people read."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# --- access -------------------------------------------------------------------------


def test_status_pages_send_anonymous_visitors_to_the_admin_login(client, alice):
    thread = make_thread(make_session(alice))
    for url in (
        reverse("status:dashboard"),
        reverse("status:session", args=[thread.session_id]),
        reverse("status:thread", args=[thread.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("admin:login") + "?next=")


def test_the_dashboard_is_for_staff(client, alice):
    page(client, alice, reverse("status:dashboard"), status=403)


def test_others_objects_are_not_found_and_staff_see_everything(client, alice, bob, staff):
    thread = new_thread(alice, "pipeline")
    run = services.create_run(thread, input={"steps": 1}, after_seconds=3600)
    urls = [
        reverse("status:session", args=[thread.session_id]),
        reverse("status:thread", args=[thread.pk]),
        reverse("status:run", args=[run.pk]),
    ]
    for url in urls:
        page(client, bob, url, status=404)
    for user in (alice, staff):
        page(client, user, urls[0])
        page(client, user, urls[1])
        assert client.get(urls[2]).status_code == 302


# --- dashboard ----------------------------------------------------------------------


def test_the_dashboard_renders_complete_with_nothing_to_show(client, staff):
    html = page(client, staff, reverse("status:dashboard"))
    text = squash(html)

    assert 'data-live-feed="/ws/dashboard/"' in html
    assert "statehouse/live.js" in html
    for empty in (
        "No thread is running.",
        "Nothing waits for a human.",
        "No expired lease.",
        "The queue is empty.",
        "No session has a running or waiting thread.",
        "No failed run in the last 24 hours.",
        "No budget alert.",
    ):
        assert empty in text
    assert "0 pending runs (queue)" in text
    assert "$0 cost today" in text


def test_the_dashboard_shows_what_runs_waits_queues_and_fails(client, staff, alice):
    # States as the runtime leaves them, made through the state manager (in this test's
    # transaction, which the sweeper of a running test worker cannot see).
    moment = now()
    running = new_thread(alice, "pipeline", title="Nightly import")
    running_run = services.create_run(running, input={"steps": 5})
    state.update_state(
        "run",
        running_run.pk,
        {
            "status": "running",
            "attempt": 1,
            "claimed_by": "host:1:2",
            "lease_expires_at": moment - timedelta(minutes=2),
        },
    )
    state.update_state("thread", running.pk, {"status": "busy", "started_at": moment})
    waiting = new_thread(alice, "approval", title="Refund request")
    state.update_state(
        "thread",
        waiting.pk,
        {
            "status": "interrupted",
            "interrupts": [{"id": "i1", "value": {"question": "Approve this draft?"}}],
        },
    )
    queued = new_thread(alice, "pipeline")
    services.create_run(queued, input={"steps": 1}, after_seconds=3600)
    failed = new_thread(alice, "pipeline")
    failed_run = services.create_run(failed, input={"steps": 1})
    state.update_state(
        "run",
        failed_run.pk,
        {"status": "error", "error": "ValueError: the import file is empty", "finished_at": moment},
    )
    budget = Budget.objects.create(name="Alice monthly", user=alice, limit=Decimal("1.00"))
    Alert.objects.create(
        budget=budget,
        subject=f"user:{alice.pk}",
        user_id=alice.pk,
        period_start=moment.date(),
        metric="cost",
        limit=Decimal("1.00"),
        spent=Decimal("1.25"),
        message="alice spent $1.25 of $1.00 this month",
    )
    DailyModelUsage.objects.create(
        day=moment.date(),
        provider="openai",
        model_name="gpt-4o-mini",
        cost_source="computed",
        calls=3,
        total_tokens=12345,
        cost_total=Decimal("1.5"),
    )

    html = page(client, staff, reverse("status:dashboard"))
    text = squash(html)

    assert "1 running threads" in text
    assert "1 waiting for a human" in text
    assert "1 pending runs (queue)" in text
    assert "1 runs with expired leases" in text
    assert "12,345 tokens today (3 calls)" in text
    assert "$1.50 cost today" in text
    running_row = re.search(r'<table id="running-threads">.*?</table>', html, re.S).group(0)
    assert running.short_id in running_row
    assert f'data-live-entity="thread" data-live-id="{running.pk}"' in running_row
    waiting_row = re.search(r'<table id="waiting-threads">.*?</table>', html, re.S).group(0)
    assert "Approve this draft?" in waiting_row
    expired = re.search(r'<table id="expired-runs">.*?</table>', html, re.S).group(0)
    assert running_run.short_id in expired and "host:1:2" in expired
    assert queued.short_id in re.search(r'<table id="queued-runs">.*?</table>', html, re.S).group(0)
    errors = re.search(r'<table id="recent-errors">.*?</table>', html, re.S).group(0)
    assert "the import file is empty" in errors
    assert "alice spent $1.25 of $1.00 this month" in text
    sessions = re.search(r'<table id="active-sessions">.*?</table>', html, re.S).group(0)
    assert "Nightly import" in sessions and "Refund request" in sessions


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_after_real_runs_shows_the_waiting_thread_and_todays_cost(
    client, staff, waiting_thread, chat_thread
):
    html = page(client, staff, reverse("status:dashboard"))
    text = squash(html)

    assert "Approve this draft, or edit it?" in text
    chat_thread.refresh_from_db()
    assert chat_thread.total_tokens > 0
    assert f"{chat_thread.total_tokens:,} tokens today" in text
    assert "$0 cost today" not in text


def test_a_dashboard_fragment_is_the_body_alone(client, staff):
    client.force_login(staff)
    body = client.get(reverse("status:dashboard") + "?fragment=body")
    assert body.status_code == 200
    assert body.content.decode().lstrip().startswith('<div data-fragment="body"')
    assert client.get(reverse("status:dashboard") + "?fragment=nope").status_code == 404


# --- session page -------------------------------------------------------------------


def test_a_session_page_without_threads_renders_complete(client, alice):
    session = make_session(alice, title="Quiet session")
    html = page(client, alice, reverse("status:session", args=[session.pk]))
    text = squash(html)

    assert "Quiet session" in text
    assert f'data-live-feed="/ws/sessions/{session.pk}/"' in html
    assert "This session has no thread yet." in text
    assert "No message recorded yet." in text
    assert "session" in re.search(r'<table id="session-history">.*?</table>', html, re.S).group(0)


@pytest.mark.django_db(transaction=True)
def test_a_session_page_shows_threads_totals_messages_and_history(client, alice, chat_thread):
    session = chat_thread.session
    session.refresh_from_db()
    html = page(client, alice, reverse("status:session", args=[session.pk]))
    text = squash(html)

    threads = re.search(r'<table id="session-threads">.*?</table>', html, re.S).group(0)
    assert chat_thread.short_id in threads
    assert f'data-live-entity="thread" data-live-id="{chat_thread.pk}">idle<' in threads
    assert session.total_tokens > 0
    assert f"{session.total_tokens:,} tokens" in text
    messages = re.search(r'<ol class="sh-message-list" id="session-messages">.*?</ol>', html, re.S)
    assert "Where is order 1042?" in messages.group(0)
    assert "Good news: Order 1042 shipped yesterday" in messages.group(0)
    assert "lookup_order" in messages.group(0)
    history = squash(re.search(r'<table id="session-history">.*?</table>', html, re.S).group(0))
    assert "busy → idle" in history


# --- thread page --------------------------------------------------------------------


def test_a_thread_page_without_runs_renders_complete(client, alice):
    thread = make_thread(make_session(alice), services.resolve_workflow("pipeline"))
    html = page(client, alice, reverse("status:thread", args=[thread.pk]))
    text = squash(html)

    assert f"Thread {thread.short_id}" in text
    assert f'data-live-feed="/ws/threads/{thread.pk}/"' in html
    assert "No run on this thread yet." in text
    assert "No messages yet." in text
    assert "No checkpoint yet." in text
    assert "0 tokens so far" in text
    assert "Waiting for a human" not in text


@pytest.mark.django_db(transaction=True)
def test_a_thread_page_shows_the_runs_progress_checkpoints_and_a_retry(
    client, alice, pipeline_thread
):
    html = page(client, alice, reverse("status:thread", args=[pipeline_thread.pk]))
    run = pipeline_thread.runs.get()
    panel = re.search(r'<section data-fragment="run".*?</section>', html, re.S).group(0)

    assert f'data-run-id="{run.pk}"' in panel
    assert f'data-live-entity="run" data-live-id="{run.pk}">success<' in panel
    assert "Step 3 of 3" in squash(panel)
    assert 'max="3" value="3"' in panel
    assert "Node step" in squash(panel)
    assert reverse("status:run_retry", args=[run.pk]) in panel
    assert reverse("status:run_cancel", args=[run.pk]) not in panel
    timeline = re.search(r'<ol class="sh-timeline" id="checkpoints">.*?</ol>', html, re.S).group(0)
    assert "step 3" in timeline and "step -1" in timeline
    assert run.short_id in timeline


@pytest.mark.django_db(transaction=True)
def test_a_waiting_thread_page_asks_the_question_with_a_safe_form(client, alice, waiting_thread):
    html = page(client, alice, reverse("status:thread", args=[waiting_thread.pk]))
    form = re.search(r'<form method="post" action="[^"]*resume/".*?</form>', html, re.S).group(0)

    assert "Approve this draft, or edit it?" in html
    assert "we will refund you" in form  # the draft, ready to edit
    assert 'name="csrfmiddlewaretoken"' in form
    assert f'name="expected_version" value="{waiting_thread.version}"' in form
    for action in ("approve", "edit", "reject", "json"):
        assert f'name="action" value="{action}"' in form


@pytest.mark.django_db(transaction=True)
def test_a_chat_thread_page_shows_the_conversation_and_its_cost(client, alice, chat_thread):
    html = page(client, alice, reverse("status:thread", args=[chat_thread.pk]))
    messages = re.search(r"<ol class=\"sh-message-list\" data-messages>.*?</ol>", html, re.S)
    items = re.findall(r'class="sh-message sh-role-(\w+)"', messages.group(0))

    assert items == ["user", "assistant", "tool", "assistant"]
    assert "Good news: Order 1042 shipped yesterday" in messages.group(0)
    text = squash(html)
    assert f"{chat_thread.total_tokens:,} tokens so far" in text
    assert chat_thread.total_cost > 0
    assert "$0 cost so far" not in text


def test_a_thread_page_offers_to_cancel_an_active_run(client, alice):
    thread = new_thread(alice, "pipeline")
    run = services.create_run(thread, input={"steps": 2}, after_seconds=3600)
    html = page(client, alice, reverse("status:thread", args=[thread.pk]))
    panel = re.search(r'<section data-fragment="run".*?</section>', html, re.S).group(0)

    assert f'data-live-entity="run" data-live-id="{run.pk}">pending<' in panel
    assert panel.count(reverse("status:run_cancel", args=[run.pk])) == 2  # cancel, roll back
    assert reverse("status:run_retry", args=[run.pk]) not in panel
    assert "Step 0" in squash(panel)


def test_a_thread_page_can_follow_an_older_run(client, alice):
    thread = new_thread(alice, "pipeline")
    first = services.create_run(thread, input={"steps": 1}, after_seconds=3600)
    services.create_run(thread, input={"steps": 2}, after_seconds=3600)
    url = reverse("status:thread", args=[thread.pk])

    html = page(client, alice, f"{url}?run={first.pk}")
    panel = re.search(r'<section data-fragment="run".*?</section>', html, re.S).group(0)
    assert f'data-run-id="{first.pk}"' in panel
    assert "data-pinned" in panel
    assert client.get(f"{url}?run=not-a-run").status_code == 404
    other = new_thread(alice, "pipeline")
    foreign = services.create_run(other, input={"steps": 1}, after_seconds=3600)
    assert client.get(f"{url}?run={foreign.pk}").status_code == 404


def test_thread_fragments_are_their_section_alone(client, alice):
    thread = new_thread(alice, "pipeline")
    services.create_run(thread, input={"steps": 1}, after_seconds=3600)
    client.force_login(alice)
    url = reverse("status:thread", args=[thread.pk])

    for name in ("summary", "run", "interrupts", "messages", "runs", "checkpoints"):
        response = client.get(f"{url}?fragment={name}")
        assert response.status_code == 200, name
        html = response.content.decode().strip()
        assert re.match(rf'<(section|div) data-fragment="{name}"', html), name
        assert "<html" not in html
    assert client.get(f"{url}?fragment=secrets").status_code == 404
