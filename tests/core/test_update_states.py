"""core.state.update_states: several rows the caller read, written in one transaction
without reading them again, each change announced, their StateEvents in one statement."""

import pytest
from django.db import transaction

from core import state
from core.events import state_changed, state_changed_batch
from history_app.models import StateEvent
from sessions_app.models import Session
from tests.counts import writes
from tests.factories import make_session, make_workflow
from threads_app.models import Workflow


@pytest.fixture
def announced():
    """(signal, entity types) for every dispatch while the test runs, in order."""
    seen = []

    def one(sender, change, **kwargs):
        seen.append(("change", change.entity_type))

    def batch(sender, changes, **kwargs):
        seen.append(("batch", [change.entity_type for change in changes]))

    state_changed.connect(one, dispatch_uid="test-one")
    state_changed_batch.connect(batch, dispatch_uid="test-batch")
    yield seen
    state_changed.disconnect(dispatch_uid="test-one")
    state_changed_batch.disconnect(dispatch_uid="test-batch")


@pytest.fixture
def rows(alice):
    session = make_session(alice)
    workflow = make_workflow("pipeline")
    return Session.objects.get(pk=session.pk), Workflow.objects.get(pk=workflow.pk)


def test_both_rows_are_written_and_announced_without_being_read_again(
    rows, announced, django_assert_num_queries
):
    session, workflow = rows
    announced.clear()

    # Two compare-and-set UPDATEs and one INSERT of both StateEvents.
    with django_assert_num_queries(writes(3)):
        written = state.update_states(
            [(session, {"title": "renamed"}), (workflow, {"description": "mine"})], actor="ops"
        )

    assert written == [session, workflow]
    assert (session.version, workflow.version) == (2, 2)  # changed in place
    assert session.updated_at == workflow.updated_at
    assert Session.objects.get(pk=session.pk).title == "renamed"
    assert Workflow.objects.get(pk=workflow.pk).description == "mine"
    assert announced == [
        ("change", "session"),
        ("change", "workflow"),
        ("batch", ["session", "workflow"]),
    ]
    events = StateEvent.objects.filter(kind="updated").order_by("id")
    assert [(e.entity_id, e.version, e.changed_fields, e.actor) for e in events] == [
        (session.pk, 2, ["title"], "ops"),
        (workflow.pk, 2, ["description"], "ops"),
    ]


def test_a_change_that_changes_nothing_is_skipped(rows, announced, django_assert_num_queries):
    session, workflow = rows
    announced.clear()

    with django_assert_num_queries(writes(2)):
        state.update_states([(session, {"title": session.title}), (workflow, {"name": "new"})])

    assert (session.version, workflow.version) == (1, 2)
    assert announced == [("change", "workflow"), ("batch", ["workflow"])]

    with django_assert_num_queries(0):
        state.update_states([(session, {"title": session.title})])


def test_an_invalid_change_writes_nothing(rows, announced):
    session, workflow = rows
    announced.clear()

    with transaction.atomic():
        with pytest.raises(state.InvalidState):
            state.update_states([(session, {"title": "fine"}), (workflow, {"nope": 1})])
        assert Session.objects.get(pk=session.pk).title != "fine"  # the block is usable

    assert announced == []


def test_a_stale_first_row_writes_nothing_and_keeps_its_version(rows):
    session, workflow = rows
    state.update_state("session", session.pk, {"title": "meanwhile"})

    # (The conflict marks the caller's transaction for rollback: the test's is outside.)
    with pytest.raises(state.StateConflict), transaction.atomic():
        state.update_states([(session, {"title": "mine"}), (workflow, {"name": "new"})])

    assert Workflow.objects.get(pk=workflow.pk).name != "new"
    assert Session.objects.get(pk=session.pk).title == "meanwhile"
    assert not StateEvent.objects.filter(entity_id=workflow.pk, kind="updated").exists()
    assert session.version == 1  # not bumped by a write that did not happen


@pytest.mark.django_db(transaction=True)
def test_a_stale_later_row_rolls_back_the_rows_before_it(alice):
    session = Session.objects.get(pk=make_session(alice).pk)
    workflow = Workflow.objects.get(pk=make_workflow("pipeline").pk)
    state.update_state("workflow", workflow.pk, {"name": "meanwhile"})

    with pytest.raises(state.StateConflict):
        state.update_states([(session, {"title": "mine"}), (workflow, {"name": "new"})])

    assert Session.objects.get(pk=session.pk).title != "mine"
    assert Workflow.objects.get(pk=workflow.pk).name == "meanwhile"
    assert not StateEvent.objects.filter(entity_id=session.pk, kind="updated").exists()


def test_single_writes_record_their_event_through_the_batch_signal(alice, announced):
    session = make_session(alice)
    state.update_state("session", session.pk, {"title": "one"})
    state.delete_state("session", session.pk)

    assert announced[-4:] == [
        ("change", "session"),
        ("batch", ["session"]),
        ("change", "session"),
        ("batch", ["session"]),
    ]
    kinds = StateEvent.objects.filter(entity_id=session.pk).order_by("id")
    assert list(kinds.values_list("kind", flat=True)) == ["created", "updated", "deleted"]


def test_a_creation_with_updates_is_one_batch_and_one_history_statement(
    rows, announced, alice, django_assert_num_queries
):
    session, _ = rows
    announced.clear()

    # The INSERT, the UPDATE, the StateEvents (one INSERT for both changes).
    with django_assert_num_queries(writes(3)):
        created = state.create_state(
            "workflow",
            {"name": "made along", "graph_id": "pipeline"},
            updates=[(session, {"title": "Touched"})],
        )

    assert announced == [
        ("change", "workflow"),
        ("change", "session"),
        ("batch", ["workflow", "session"]),
    ]
    assert Session.objects.get(pk=session.pk).title == "Touched"
    assert session.version == 2
    kinds = StateEvent.objects.filter(entity_id__in=[created.pk, session.pk]).order_by("id")
    assert [(event.entity_type, event.kind) for event in kinds][-2:] == [
        ("workflow", "created"),
        ("session", "updated"),
    ]


def test_a_creation_whose_update_conflicts_writes_nothing(rows, alice):
    session, _ = rows
    Session.objects.filter(pk=session.pk).update(version=5)  # another writer went first

    # (The conflict marks the caller's transaction for rollback: the test's is outside.)
    with pytest.raises(state.StateConflict), transaction.atomic():
        state.create_state(
            "workflow",
            {"name": "never made", "graph_id": "pipeline"},
            updates=[(session, {"title": "Lost"})],
        )

    assert not Workflow.objects.filter(name="never made").exists()
    assert Session.objects.get(pk=session.pk).title != "Lost"


def test_a_creation_whose_update_is_invalid_writes_nothing(rows, alice):
    session, _ = rows

    with pytest.raises(state.InvalidState):
        state.create_state(
            "workflow",
            {"name": "never made", "graph_id": "pipeline"},
            updates=[(session, {"no_such_field": 1})],
        )

    assert not Workflow.objects.filter(name="never made").exists()
