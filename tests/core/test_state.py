import uuid
from datetime import datetime
from decimal import Decimal

import pytest

from core import state
from core.events import StateChange, state_changed
from history_app.models import StateEvent
from sessions_app.models import Session
from tests.counts import writes
from tests.factories import make_session, make_thread, make_workflow


@pytest.fixture
def changes():
    """Every StateChange sent while the test runs."""
    seen: list[StateChange] = []

    def receiver(sender, change, **kwargs):
        seen.append(change)

    state_changed.connect(receiver, dispatch_uid="test-receiver")
    yield seen
    state_changed.disconnect(dispatch_uid="test-receiver")


def test_the_registry_knows_every_stateful_entity():
    assert state.entity_types() == ["run", "session", "thread", "workflow"]
    assert state.entity_model("session") is Session


def test_it_creates_at_version_1_and_announces_it(alice, changes):
    session = state.create_state("session", {"owner": alice, "title": "Hi"}, actor=alice)

    assert session.version == 1
    assert Session.objects.get(pk=session.pk).title == "Hi"
    [change] = [c for c in changes if c.entity_type == "session"]
    assert change.kind == "created"
    assert change.entity_id == session.pk
    assert change.old_state is None
    assert change.new_state["title"] == "Hi"
    assert change.new_state["owner_id"] == alice.pk
    assert change.version == 1
    assert change.actor == "user:alice"


def test_an_update_bumps_the_version_and_sends_a_typed_payload(alice, changes):
    session = make_session(alice)
    changes.clear()

    updated = state.update_state(
        "session", session.pk, {"title": "Renamed"}, expected_version=1, actor="api"
    )

    assert updated.version == 2
    assert Session.objects.get(pk=session.pk).version == 2
    [change] = changes
    assert isinstance(change, StateChange)
    assert change.entity_type == "session"
    assert change.entity_id == session.pk
    assert change.kind == "updated"
    assert change.old_state["title"] == "Support chat"
    assert change.new_state["title"] == "Renamed"
    assert change.changed_fields == ("title",)
    assert change.version == 2
    assert change.actor == "api"
    assert isinstance(change.timestamp, datetime)
    assert change.timestamp.tzinfo is not None
    assert change.new_state["version"] == 2


def test_get_state_returns_json_friendly_values(alice):
    session = make_session(alice)

    current = state.get_state("session", session.pk)

    assert current["id"] == str(session.pk)
    assert current["version"] == 1
    assert Decimal(current["total_cost"]) == 0
    assert isinstance(current["created_at"], str)


def test_an_update_that_changes_nothing_bumps_nothing(alice, changes):
    session = make_session(alice)
    changes.clear()

    state.update_state("session", session.pk, {"title": "Support chat"})

    assert Session.objects.get(pk=session.pk).version == 1
    assert changes == []


def test_a_stale_expected_version_conflicts_and_writes_nothing(alice, changes):
    session = make_session(alice)
    state.update_state("session", session.pk, {"title": "First"})
    changes.clear()
    events_before = StateEvent.objects.count()

    with pytest.raises(state.StateConflict) as raised:
        state.update_state("session", session.pk, {"title": "Second"}, expected_version=1)

    assert raised.value.expected_version == 1
    assert raised.value.actual_version == 2
    assert Session.objects.get(pk=session.pk).title == "First"
    assert StateEvent.objects.count() == events_before
    assert changes == []


def test_an_unknown_entity_raises_entity_not_found(db):
    with pytest.raises(state.EntityNotFound, match="session"):
        state.update_state("session", uuid.uuid4(), {"title": "x"})
    with pytest.raises(state.EntityNotFound):
        state.get_state("thread", "not-a-uuid")


def test_an_unknown_entity_type_is_refused(db):
    with pytest.raises(state.InvalidState, match="unknown entity type 'planet'"):
        state.get_state("planet", uuid.uuid4())


def test_unknown_and_read_only_fields_are_refused(alice):
    session = make_session(alice)

    with pytest.raises(state.InvalidState, match=r"no writable field.*colour"):
        state.update_state("session", session.pk, {"colour": "red"})
    with pytest.raises(state.InvalidState, match="version"):
        state.update_state("session", session.pk, {"version": 7})


def test_an_invalid_choice_is_refused_before_writing(alice):
    session = make_session(alice)

    with pytest.raises(state.InvalidState, match="status"):
        state.update_state("session", session.pk, {"status": "exploded"})

    assert Session.objects.get(pk=session.pk).status == "active"


def test_a_state_that_is_not_json_is_refused_before_writing(alice, changes):
    session = make_session(alice)
    changes.clear()

    with pytest.raises(state.InvalidState, match=r"metadata.*JSON"):
        state.update_state("session", session.pk, {"metadata": {"when": object()}})

    assert Session.objects.get(pk=session.pk).metadata == {"channel": "web"}
    assert changes == []


def test_a_state_over_the_size_limit_is_refused(alice, settings):
    settings.STATEHOUSE_MAX_STATE_BYTES = 10_000
    session = make_session(alice)

    with pytest.raises(state.InvalidState, match="STATEHOUSE_MAX_STATE_BYTES"):
        state.update_state("session", session.pk, {"context": {"blob": "x" * 20_000}})
    with pytest.raises(state.InvalidState, match="STATEHOUSE_MAX_STATE_BYTES"):
        state.create_state("session", {"owner": alice, "metadata": {"blob": "y" * 20_000}})

    assert Session.objects.get(pk=session.pk).context == {}
    assert Session.objects.count() == 1


def test_create_validates_required_fields(db):
    with pytest.raises(state.InvalidState, match="owner"):
        state.create_state("session", {"title": "nobody's"})


def test_a_relation_given_as_a_loaded_row_is_not_read_again(alice, django_assert_num_queries):
    session = make_session(alice)
    thread = make_thread(session)
    # The thread as an id is checked (a query); as the row just read, it is not.
    with django_assert_num_queries(1 + writes(2)):  # the check, the row, its history event
        state.create_state("run", {"thread_id": thread.pk, "input": {}})
    with django_assert_num_queries(writes(2)):  # the row, its history event
        state.create_state("run", {"thread": thread, "input": {}})


def test_a_relation_to_a_missing_row_is_refused_by_name(alice):
    from threads_app.models import Run

    with pytest.raises(state.InvalidState, match=r"thread: .*is not a valid choice"):
        state.create_state("run", {"thread_id": uuid.uuid4(), "input": {}})
    assert Run.objects.count() == 0


def test_delete_announces_the_last_state(alice, changes):
    session = make_session(alice)
    changes.clear()

    last = state.delete_state("session", session.pk, actor=alice)

    assert last["title"] == "Support chat"
    assert not Session.objects.filter(pk=session.pk).exists()
    [change] = changes
    assert change.kind == "deleted"
    assert change.new_state is None
    event = StateEvent.objects.get(entity_id=session.pk, kind="deleted")
    assert event.old["title"] == "Support chat"


def test_an_update_inside_an_outer_transaction_can_be_retried_after_a_conflict(alice):
    from django.db import transaction

    session = make_session(alice)
    with transaction.atomic():
        with pytest.raises(state.StateConflict):
            state.update_state("session", session.pk, {"title": "a"}, expected_version=5)
        # The outer transaction is still usable.
        state.update_state("session", session.pk, {"title": "b"}, expected_version=1)

    assert Session.objects.get(pk=session.pk).title == "b"


def test_thread_changes_carry_their_session_in_the_payload(alice, changes):
    session = make_session(alice)
    thread = make_thread(session)
    changes.clear()

    state.update_state("thread", thread.pk, {"metadata": {"topic": "billing"}})

    [change] = changes
    assert change.new_state["session_id"] == str(session.pk)
    assert f"session.{session.pk}" in change.groups()
    assert f"thread.{thread.pk}" in change.groups()
    assert "dashboard" in change.groups()


def test_the_row_loader_reads_every_entity_as_the_orm_does(alice, django_assert_num_queries):
    from threads_app.models import Run, Thread

    session = make_session(alice, title="Loaded")
    state.update_state("session", session.pk, {"metadata": {"k": [1, "ü"]}})
    state.add_to_counters("session", session.pk, {"total_cost": Decimal("0.0125")})
    thread = make_thread(session, workflow=make_workflow("pipeline"))
    run = Run.objects.create(thread=thread, input={"x": 1})
    rows = {"session": session, "thread": thread, "run": run, "workflow": thread.workflow}

    for entity_type, row in rows.items():
        model = state.entity_model(entity_type)
        with django_assert_num_queries(1):
            loaded = state._load(model, entity_type, row.pk, "default")
        from_orm = model.objects.get(pk=row.pk)
        assert type(loaded) is model
        assert state.to_state(loaded) == state.to_state(from_orm)
        assert loaded._state.adding is False
        assert loaded._state.db == "default"
    assert Thread.objects.get(pk=thread.pk).session_id == session.pk


@pytest.mark.parametrize("entity_id", ["not-a-uuid", 12.5, None, str(uuid.uuid4())])
def test_a_bad_or_missing_id_is_entity_not_found(db, entity_id):
    with pytest.raises(state.EntityNotFound):
        state.get_state("session", entity_id)
    with pytest.raises(state.EntityNotFound):
        state.update_state("session", entity_id, {"title": "x"})


# --- per sender ---------------------------------------------------------------------------


def test_receivers_connected_for_one_model_hear_only_its_changes(alice):
    from threads_app.models import Thread

    heard = []

    def receiver(sender, change, **kwargs):
        heard.append((sender, change.entity_type))

    state_changed.connect(receiver, sender="threads_app.Thread", dispatch_uid="test-thread-only")
    try:
        session = make_session(alice)
        make_thread(session)
        state.update_state("session", session.pk, {"title": "Renamed"})
    finally:
        state_changed.disconnect(sender="threads_app.Thread", dispatch_uid="test-thread-only")

    assert heard == [(Thread, "thread")]


# --- compare-and-set with retries ---------------------------------------------------------


def test_update_with_retry_computes_from_the_current_state(alice):
    session = make_session(alice)

    updated = state.update_state_with_retry(
        "session", session.pk, lambda current: {"title": current["title"] + "!"}, actor="ops"
    )

    assert updated.title == "Support chat!"
    assert updated.version == 2


def test_update_with_retry_reads_again_after_a_concurrent_write(alice):
    session = make_session(alice)
    seen_versions = []

    def change(current):
        seen_versions.append(current["version"])
        if len(seen_versions) == 1:  # someone else writes between our read and our write
            state.update_state("session", session.pk, {"metadata": {"other": True}})
        return {"title": f"after v{current['version']}"}

    updated = state.update_state_with_retry("session", session.pk, change)

    assert seen_versions == [1, 2]
    assert updated.title == "after v2"
    assert updated.metadata == {"other": True}  # nothing lost
    assert Session.objects.get(pk=session.pk).version == 3


def test_update_with_retry_gives_up_after_its_attempts(alice):
    session = make_session(alice)
    calls = []

    def always_raced(current):
        calls.append(current["version"])
        state.update_state("session", session.pk, {"metadata": {"n": len(calls)}})
        return {"title": "never"}

    with pytest.raises(state.StateConflict):
        state.update_state_with_retry("session", session.pk, always_raced, attempts=3)

    assert calls == [1, 2, 3]
    assert Session.objects.get(pk=session.pk).title == "Support chat"


# --- counters ---------------------------------------------------------------------------------


def test_counters_are_added_to_without_a_version_or_an_announcement(alice, changes):
    session = make_session(alice)
    changes.clear()

    assert state.add_to_counters("session", session.pk, {"total_calls": 2, "total_tokens": 30})
    assert state.add_to_counters("session", session.pk, {"total_calls": 1, "total_tokens": 0})

    fresh = Session.objects.get(pk=session.pk)
    assert (fresh.total_calls, fresh.total_tokens, fresh.version) == (3, 30, 1)
    assert changes == []
    assert not state.add_to_counters("session", uuid.uuid4(), {"total_calls": 1})


def test_counters_are_refused_by_update_state_and_other_fields_by_add_to_counters(alice):
    session = make_session(alice)

    with pytest.raises(state.InvalidState, match="no writable field"):
        state.update_state("session", session.pk, {"total_cost": Decimal(1)})
    with pytest.raises(state.InvalidState, match="no counter field"):
        state.add_to_counters("session", session.pk, {"title": 1})


def test_read_fields_reads_stored_values_or_none(alice):
    session = make_session(alice)

    assert state.read_fields("session", session.pk, ["owner_id"]) == {"owner_id": alice.pk}
    assert state.read_fields("session", uuid.uuid4(), ["owner_id"]) is None
