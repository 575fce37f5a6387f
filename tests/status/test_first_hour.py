"""What an operator's first hour found on the status pages (issue 15), fixed: one way of
writing times, durations and money; counts that match their lists; capped lists that
link to the rest; bookkeeping state changes hidden by default; restored and forked
threads that are paused, not waiting for a human, and continue from the page."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from checkpoints_app import services as checkpoints
from control_room import charts
from core import live, state
from core.time import now
from tests.factories import make_session
from tests.status.conftest import finished, new_thread
from tests.status.test_pages import page, squash
from threads_app import services
from threads_app.models import Run, Thread

# The worker runs the graphs in threads of its own: they must see committed rows.
pytestmark = pytest.mark.django_db(transaction=True)

TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


# --- 6: one format ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.00184"), "$0.00184"),
        (Decimal("-0.00184"), "-$0.00184"),
        (Decimal("0E-10"), "$0"),
        (Decimal("0.0000000000"), "$0"),
        (Decimal("12.5"), "$12.50"),
        (Decimal("-1234.5"), "-$1,234.50"),
        (Decimal("0.0000001"), "<$0.000001"),
        (None, "—"),
    ],
)
def test_money_is_written_one_way(value, text):
    assert live.money(value) == text


def test_the_usage_pages_write_money_as_the_status_pages_do():
    from control_room.views import usage

    assert usage.money(Decimal("-0.00184")) == "-$0.00184"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(11, "11 s"), (59, "59 s"), (60, "1 min"), (252, "4 min 12 s"), (7500, "2 h 5 min")],
)
def test_durations_say_seconds_minutes_and_hours(seconds, text):
    start = datetime(2026, 12, 1, 7, 29, 43, tzinfo=UTC)
    assert live.duration(start, start + timedelta(seconds=seconds)) == text


def test_a_moment_has_its_date_seconds_and_zone():
    moment = datetime(2026, 12, 1, 7, 29, 43, 512000, tzinfo=UTC)
    assert live.when(moment) == "2026-12-01 07:29:43 UTC"
    assert live.when(moment, "ms") == "2026-12-01 07:29:43.512 UTC"
    assert live.when(None) == "—"


def test_an_empty_chart_has_one_zero_line_not_a_made_up_axis():
    empty = charts.bar_chart([("12-01", 0), ("12-02", 0)], fmt=lambda v: str(int(v)))
    assert [tick.label for tick in empty.ticks] == ["0"]
    small = charts.bar_chart([("12-01", 1)], fmt=lambda v: str(int(v)))
    assert [tick.label for tick in small.ticks] == ["0", "1"]


def test_the_admin_writes_times_to_the_second_with_the_zone(client, staff):
    thread = new_thread(staff, "pipeline")
    html = page(client, staff, reverse("admin:threads_app_thread_change", args=[thread.pk]))
    created = re.search(r'field-created_at.*?class="readonly">([^<]+)<', html, re.S)[1]
    assert re.fullmatch(TIME, created.strip()), created


def test_a_thread_page_says_how_long_a_run_took_in_seconds(client, alice, pipeline_thread):
    run = pipeline_thread.runs.get()
    Run.objects.filter(pk=run.pk).update(
        started_at=run.created_at, finished_at=run.created_at + timedelta(seconds=11)
    )
    text = squash(page(client, alice, reverse("status:thread", args=[pipeline_thread.pk])))
    assert "11 s" in text and "minutes" not in text
    assert re.search(rf"Created {TIME}", text), text


# --- 8: counts match their lists; capped lists link to the rest ---------------------


def test_the_dashboard_counts_what_it_lists(client, staff, alice):
    for _ in range(3):
        make_session(alice, title="Idle session")  # active sessions with nothing going on
    busy = new_thread(alice, "pipeline")
    services.mark_thread_running(busy.pk)
    text = squash(page(client, staff, reverse("status:dashboard")))
    assert "1 sessions at work" in text


def test_a_capped_dashboard_list_links_to_the_rest(client, staff, alice, monkeypatch):
    from control_room.views import dashboard

    monkeypatch.setattr(dashboard, "LIST_LIMIT", 2)
    for _ in range(3):
        services.mark_thread_running(new_thread(alice, "pipeline").pk)
    html = page(client, staff, reverse("status:dashboard"))
    assert "The 2 most recently updated of 3 running threads" in squash(html)
    assert reverse("admin:threads_app_thread_changelist") + "?status__exact=busy" in html


def test_a_capped_thread_list_of_a_session_links_to_the_rest(client, alice, monkeypatch):
    from control_room.views import sessions

    monkeypatch.setattr(sessions, "THREAD_LIMIT", 2)
    session = make_session(alice, title="Busy session")
    workflow = services.resolve_workflow("pipeline")
    for _ in range(3):
        services.create_thread(session, workflow)
    html = page(client, alice, reverse("status:session", args=[session.pk]))
    assert "The 2 newest of 3 threads" in squash(html)
    assert f"?session__id__exact={session.pk}" in html


def test_bookkeeping_changes_are_hidden_until_asked_for(client, alice):
    session = make_session(alice, title="Support")
    thread = services.create_thread(session, services.resolve_workflow("pipeline"))
    services.mark_thread_running(thread.pk)
    # An aggregate update recorded as a state change (as databases written before the
    # aggregate was kept out of the history hold them).
    state.update_state("session", session.pk, {"last_activity_at": now()})
    url = reverse("status:session", args=[session.pk])

    html = page(client, alice, url)
    history = html.split('id="session-history"')[1].split("</table>")[0]
    assert "thread_count" not in history and "last_activity_at" not in history
    assert "status, started_at" in history  # the thread's own change is there
    assert "Show them" in html

    shown = page(client, alice, url + "?bookkeeping=1")
    assert "last_activity_at" in shown.split('id="session-history"')[1]
    assert "Hide those" in shown


# --- 3: restored and forked threads ---------------------------------------------------


@pytest.fixture
def restored_thread(alice, celery_worker):
    """A 4-step pipeline that ran to the end, then was restored to step 2."""
    thread = new_thread(alice, "pipeline", title="Reindex")
    finished(services.create_run(thread, input={"steps": 4}, stream_mode=["values", "custom"]))
    from checkpoints_app.models import Checkpoint

    middle = Checkpoint.objects.filter(thread_id=str(thread.pk), metadata__step=2).get()
    checkpoints.restore(thread, middle.checkpoint_id)
    thread.refresh_from_db()
    return thread


def test_a_restored_thread_is_paused_not_waiting_for_a_human(client, staff, restored_thread):
    assert restored_thread.status == "interrupted" and not restored_thread.interrupts
    html = page(client, staff, reverse("status:dashboard"))
    waiting = html.split("Waiting for a human")[1].split("<h2>")[0]
    assert str(restored_thread.pk)[:8] not in waiting
    assert "Nothing waits for a human." in waiting
    assert str(restored_thread.pk)[:8] in html.split('id="paused-threads"')[1]


def test_a_restored_thread_page_shows_where_it_stands_and_continues(client, alice, restored_thread):
    url = reverse("status:thread", args=[restored_thread.pk])
    text = squash(page(client, alice, url))
    assert "restored to an earlier checkpoint" in text
    assert "Step 4" not in text and "Waiting for a human" not in text
    assert "Continue from here" in text

    response = client.post(
        reverse("status:thread_continue", args=[restored_thread.pk]),
        {"expected_version": restored_thread.version},
        follow=True,
    )
    assert "Continued: run" in squash(response.content.decode())
    run = finished(restored_thread.runs.order_by("-created_at").first())
    assert run.status == "success" and run.input is None
    thread = Thread.objects.get(pk=restored_thread.pk)
    assert thread.status == "idle"
    assert thread.values["completed_steps"] == [1, 2, 3, 4]


def test_continue_is_refused_on_a_stale_page(client, alice, restored_thread):
    client.force_login(alice)
    response = client.post(
        reverse("status:thread_continue", args=[restored_thread.pk]),
        {"expected_version": restored_thread.version - 1},
        follow=True,
    )
    assert "Not continued" in squash(response.content.decode())
    assert restored_thread.runs.count() == 1


def test_continue_is_for_the_owner_and_staff(client, bob, restored_thread):
    client.force_login(bob)
    response = client.post(
        reverse("status:thread_continue", args=[restored_thread.pk]),
        {"expected_version": restored_thread.version},
    )
    assert response.status_code == 404


def test_a_forked_thread_page_names_its_source(client, alice, restored_thread):
    from checkpoints_app.models import Checkpoint

    first = Checkpoint.objects.filter(thread_id=str(restored_thread.pk), metadata__step=1)
    forked = checkpoints.fork(restored_thread, first.first().checkpoint_id)
    text = squash(page(client, alice, reverse("status:thread", args=[forked.pk])))
    assert f"Forked from thread {restored_thread.short_id}" in text
    assert "Continue from here" in text


# --- 7: the status page asks before a rollback ---------------------------------------


def test_cancel_and_roll_back_asks_first(client, alice):
    thread = new_thread(alice, "pipeline")
    run = services.create_run(thread, input={"steps": 1}, after_seconds=3600)
    client.force_login(alice)
    url = reverse("status:run_cancel", args=[run.pk])

    asked = client.post(url, {"action": "rollback"})
    assert asked.status_code == 200
    assert "every checkpoint it wrote is deleted" in squash(asked.content.decode())
    run.refresh_from_db()
    assert run.status == "pending" and not run.cancel_requested

    client.post(url, {"action": "rollback", "confirm": "yes"})
    assert not Run.objects.filter(pk=run.pk, status="pending", cancel_requested="").exists()


def test_a_sessions_own_changes_stay_visible_under_the_filter(alice):
    """The bookkeeping filter keeps a session's real changes (its title) visible."""
    from control_room.views import sessions

    session = make_session(alice, title="Old title")
    state.update_state("session", session.pk, {"title": "New title"})
    context = sessions.session_context(session)
    assert any("title" in event.changed_fields for event in context["history"])
