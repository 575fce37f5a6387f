"""The receivers on the state bus: history, restore points, atomicity (the session
aggregate: tests/sessions/test_aggregate.py)."""

import pytest
from django.db import transaction

from checkpoints_app.models import RestorePoint
from core import state
from core.events import state_changed
from history_app.models import StateEvent
from sessions_app.models import Session
from tests.factories import make_session, make_thread, make_workflow
from threads_app import services as threads
from threads_app.models import Thread


def test_every_change_records_one_state_event(alice):
    session = make_session(alice)
    state.update_state("session", session.pk, {"title": "Renamed"}, actor="ops")

    events = list(StateEvent.objects.filter(entity_id=session.pk).order_by("id"))
    assert [(e.kind, e.version) for e in events] == [("created", 1), ("updated", 2)]
    update = events[1]
    assert update.changed_fields == ["title"]
    assert update.old == {"title": "Support chat"}
    assert update.new == {"title": "Renamed"}
    assert update.actor == "ops"
    assert update.session_id == session.pk


class Boom(Exception):
    pass


@pytest.fixture
def failing_handler():
    def explode(sender, change, **kwargs):
        if change.entity_type == "session" and change.kind == "updated":
            raise Boom("handler failed")

    state_changed.connect(explode, dispatch_uid="test-explode")
    yield
    state_changed.disconnect(dispatch_uid="test-explode")


@pytest.mark.django_db(transaction=True)
def test_a_failing_handler_leaves_no_trace(alice, failing_handler, mocker_push):
    session = make_session(alice)
    mocker_push.clear()
    events_before = StateEvent.objects.count()

    with pytest.raises(Boom):
        state.update_state("session", session.pk, {"title": "Never"})

    fresh = Session.objects.get(pk=session.pk)
    assert fresh.title == "Support chat"
    assert fresh.version == 1
    assert StateEvent.objects.count() == events_before
    assert mocker_push == []


@pytest.mark.django_db(transaction=True)
def test_a_failing_handler_rolls_back_the_outer_transaction_too(alice, failing_handler):
    session = make_session(alice)

    with pytest.raises(Boom), transaction.atomic():
        state.update_state("thread", make_thread(session).pk, {"metadata": {"x": 1}})
        state.update_state("session", session.pk, {"title": "Never"})

    assert Thread.objects.count() == 0
    assert Session.objects.get(pk=session.pk).title == "Support chat"


def test_a_restore_point_is_recorded_when_a_thread_starts_running(alice):
    session = make_session(alice)
    thread = make_thread(session, make_workflow("pipeline"))
    assert not RestorePoint.objects.exists()

    running = threads.mark_thread_running(thread.pk)
    # Staying busy does not record another one.
    state.update_state("thread", thread.pk, {"metadata": {"step": 2}})

    [point] = RestorePoint.objects.all()
    assert point.thread_id == thread.pk
    assert point.session_id == session.pk
    assert point.thread_version == running.version
    assert point.trigger_reason == "state_change"
    assert point.snapshot["status"] == "busy"

    threads.mark_thread_finished(thread.pk)
    threads.mark_thread_running(thread.pk)
    assert RestorePoint.objects.count() == 2
