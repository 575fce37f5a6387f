"""A session's aggregate of its threads (counts by status, last activity), kept by the
thread receiver on the state bus with a counter UPDATE in the thread change's
transaction (added in the database, never read and written back)."""

import threading

import pytest
from django.db import connection

from core import state
from core.events import state_changed
from history_app.models import StateEvent
from sessions_app import handlers
from tests.counts import writes
from tests.factories import make_session, make_thread
from threads_app import services as threads
from threads_app.models import Run, Thread


@pytest.fixture
def dispatches():
    """Every change announced while the test runs, in order."""
    seen = []

    def receiver(sender, change, **kwargs):
        seen.append((sender, change.entity_type, change.entity_id))

    state_changed.connect(receiver, dispatch_uid="test-dispatches")
    yield seen
    state_changed.disconnect(dispatch_uid="test-dispatches")


def test_the_session_aggregate_follows_its_threads(alice):
    session = make_session(alice)
    first = make_thread(session)
    second = make_thread(session)
    threads.mark_thread_running(first.pk)
    threads.mark_thread_running(second.pk)
    threads.mark_thread_failed(second.pk, "boom")

    session.refresh_from_db()
    assert session.thread_count == 2
    assert session.active_thread_count == 1
    assert session.threads_by_status == {"busy": 1, "error": 1}
    assert session.last_activity_at == Thread.objects.get(pk=second.pk).updated_at

    threads.mark_thread_finished(first.pk, {"answer": 42})
    session.refresh_from_db()
    assert session.threads_by_status == {"error": 1, "idle": 1}
    assert session.active_thread_count == 0
    assert session.last_activity_at == Thread.objects.get(pk=first.pk).updated_at


def test_the_aggregate_is_bookkeeping_not_a_session_change(alice):
    """Written directly: no session version bumped, no session StateEvent (the thread's
    own events are the history), so a client's expected_version survives thread churn."""
    session = make_session(alice)
    thread = make_thread(session)
    threads.mark_thread_running(thread.pk)
    threads.mark_thread_finished(thread.pk)

    session.refresh_from_db()
    assert session.thread_count == 1
    assert session.version == 1
    assert list(StateEvent.objects.filter(entity_id=session.pk).values_list("kind")) == [
        ("created",)
    ]
    assert StateEvent.objects.filter(entity_id=thread.pk).count() == 3
    state.update_state("session", session.pk, {"title": "Still mine"}, expected_version=1)


def test_a_thread_change_is_announced_once_and_never_re_enters_the_bus(alice, dispatches):
    session = make_session(alice)
    thread = make_thread(session)
    dispatches.clear()

    threads.mark_thread_running(thread.pk)

    assert dispatches == [(Thread, "thread", thread.pk)]


def test_the_receiver_is_connected_for_threads_only(alice, monkeypatch):
    refreshed = []
    monkeypatch.setattr(
        handlers, "add_thread_counts", lambda session_id, *a, **kw: refreshed.append(session_id)
    )
    session = make_session(alice)
    assert refreshed == []  # a session change is not the aggregate's business

    thread = make_thread(session)
    assert refreshed == [str(session.pk)]

    run = state.create_state("run", {"thread": thread})
    state.update_state("run", run.pk, {"status": Run.Status.RUNNING})
    assert refreshed == [str(session.pk)]  # nor is a run's


def test_a_thread_moved_to_another_session_updates_both(alice):
    old_home = make_session(alice, "old")
    new_home = make_session(alice, "new")
    thread = make_thread(old_home)

    state.update_state("thread", thread.pk, {"session": new_home})

    old_home.refresh_from_db()
    new_home.refresh_from_db()
    assert (old_home.thread_count, old_home.threads_by_status) == (0, {})
    assert (new_home.thread_count, new_home.threads_by_status) == (1, {"idle": 1})


def test_deleting_a_thread_updates_the_aggregate(alice):
    session = make_session(alice)
    thread = make_thread(session)
    make_thread(session)

    state.delete_state("thread", thread.pk)

    session.refresh_from_db()
    assert session.thread_count == 1


def test_unrelated_thread_changes_do_not_touch_the_session(alice, django_assert_num_queries):
    session = make_session(alice)
    thread = make_thread(session)
    session.refresh_from_db()
    before = (session.version, session.last_activity_at)

    # load, write, StateEvent: nothing for the session
    with django_assert_num_queries(1 + writes(2)):
        state.update_state("thread", thread.pk, {"metadata": {"topic": "other"}})

    session.refresh_from_db()
    assert (session.version, session.last_activity_at) == before


def test_a_status_change_costs_one_statement_for_the_aggregate(alice, django_assert_num_queries):
    session = make_session(alice)
    thread = make_thread(session)

    # load, write, StateEvent + one UPDATE adding to the session's counts
    with django_assert_num_queries(1 + writes(3)):
        state.update_state("thread", thread.pk, {"status": Thread.Status.ERROR})

    session.refresh_from_db()
    assert session.threads_by_status == {"error": 1}


def recount(session):
    """The aggregate counted from the threads themselves."""
    by_status = {}
    for status in session.threads.values_list("status", flat=True):
        by_status[status] = by_status.get(status, 0) + 1
    active = sum(n for s, n in by_status.items() if s in (Thread.Status.BUSY, "interrupted"))
    return {"thread_count": sum(by_status.values()), "active": active, "by_status": by_status}


def aggregate(session):
    session.refresh_from_db()
    return {
        "thread_count": session.thread_count,
        "active": session.active_thread_count,
        "by_status": session.threads_by_status,
    }


def test_the_counts_follow_every_kind_of_thread_change(alice):
    home, other = make_session(alice, "home"), make_session(alice, "other")
    first, second, third = (make_thread(home) for _ in range(3))
    threads.mark_thread_running(first.pk)
    state.update_state("thread", second.pk, {"status": Thread.Status.INTERRUPTED})
    threads.mark_thread_failed(third.pk, "boom")
    state.update_state("thread", first.pk, {"session": other})
    threads.mark_thread_finished(second.pk)
    state.delete_state("thread", third.pk)

    assert (
        aggregate(home)
        == recount(home)
        == {
            "thread_count": 1,
            "active": 0,
            "by_status": {"idle": 1},
        }
    )
    assert (
        aggregate(other)
        == recount(other)
        == {
            "thread_count": 1,
            "active": 1,
            "by_status": {"busy": 1},
        }
    )


def test_counts_never_go_below_zero(alice):
    """A thread written behind the state manager's back (a test, a repair by hand) makes
    the counts drift; a later change then never takes one below 0 (the columns refuse
    negative numbers: the thread's change would fail)."""
    session = make_session(alice)
    thread = make_thread(session)
    Thread.objects.filter(pk=thread.pk).update(status=Thread.Status.BUSY)  # not counted

    threads.mark_thread_finished(thread.pk)  # busy -> idle: busy was never counted

    session.refresh_from_db()
    assert (session.active_thread_count, session.threads_by_status) == (0, {"idle": 2})


def test_last_activity_only_moves_forward(alice):
    from datetime import timedelta

    from sessions_app.services import add_thread_counts

    session = make_session(alice)
    make_thread(session)
    session.refresh_from_db()
    latest = session.last_activity_at

    add_thread_counts(session.pk, {}, at=latest - timedelta(hours=1))

    session.refresh_from_db()
    assert session.last_activity_at == latest


@pytest.mark.django_db(transaction=True)
def test_threads_of_one_session_changing_at_once_leave_an_exact_aggregate(alice, on_postgres):
    """Each change adds to the counts in one UPDATE: a later one waits for the row's lock
    and adds to what the earlier committed (a read-then-write would lose some)."""
    session = make_session(alice)
    rows = [make_thread(session) for _ in range(6)]
    barrier = threading.Barrier(len(rows))
    errors = []

    def start(thread_id):
        try:
            barrier.wait(timeout=10)
            threads.mark_thread_running(thread_id)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=start, args=(row.pk,)) for row in rows]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)

    assert errors == []
    session.refresh_from_db()
    assert session.threads_by_status == {"busy": 6}
    assert session.active_thread_count == 6
    assert session.thread_count == 6
