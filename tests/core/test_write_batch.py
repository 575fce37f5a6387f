"""core.write_batch: the writes of a state change as one statement on PostgreSQL, all or
none, every read after them seeing them; on SQLite each write at once."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from checkpoints_app.models import RestorePoint
from core import state, write_batch
from core.bulk_insert import insert_rows
from core.time import now
from history_app.models import StateEvent
from sessions_app.models import Session
from sessions_app.services import add_thread_counts
from tests.factories import make_session, make_thread
from threads_app.models import Thread

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="writable CTEs: PostgreSQL only"
)


def _event(session, version=1) -> dict:
    return {
        "entity_type": "session",
        "entity_id": session.pk,
        "session_id": session.pk,
        "kind": "updated",
        "version": version,
        "changed_fields": ["title"],
        "old": {"title": "a"},
        "new": {"title": None},  # a JSON null and SQL NULLs go through the casts
        "actor": "test",
        "created_at": now(),
    }


def _events(session) -> int:
    return StateEvent.objects.filter(entity_id=session.pk, actor="test").count()


@postgresql_only
def test_a_thread_change_and_what_it_derives_are_one_statement(alice):
    session = make_session(alice)
    thread = make_thread(session)

    with CaptureQueriesContext(connection) as queries:
        state.update_state("thread", thread.pk, {"status": Thread.Status.BUSY})

    # The load, then one statement: the thread's UPDATE, the session's counts, the
    # restore point and the StateEvent.
    statements = [query["sql"] for query in queries.captured_queries]
    assert len(statements) == 2, statements
    assert statements[1].startswith("WITH guard AS")
    session.refresh_from_db()
    assert session.threads_by_status == {"busy": 1}
    assert RestorePoint.objects.filter(thread_id=thread.pk).count() == 1
    assert StateEvent.objects.filter(entity_id=thread.pk, new__status="busy").count() == 1


@postgresql_only
def test_a_stale_row_writes_nothing_of_the_batch(alice):
    session = make_session(alice)
    thread = Thread.objects.get(pk=make_thread(session).pk)
    state.update_state("thread", thread.pk, {"metadata": {"by": "another writer"}})

    with pytest.raises(state.StateConflict) as raised, transaction.atomic():
        state.update_states([(thread, {"status": Thread.Status.BUSY})])

    assert (raised.value.expected_version, raised.value.actual_version) == (1, 2)
    assert thread.version == 1  # put back: nothing was written
    session.refresh_from_db()
    assert session.threads_by_status == {"idle": 1}  # the counts were in the batch too
    assert RestorePoint.objects.filter(thread_id=thread.pk).count() == 0
    assert not StateEvent.objects.filter(entity_id=thread.pk, new__status="busy").exists()


@postgresql_only
def test_an_unmet_requirement_writes_nothing_and_raises_its_error(alice):
    session = make_session(alice)

    not_now = pytest.raises(LookupError, match="not now")
    with not_now, transaction.atomic(), write_batch.collect(connection) as batch:
        insert_rows(StateEvent, [_event(session)], connection)
        batch.require("%s > 1", [1], lambda: LookupError("not now"))

    assert _events(session) == 0


@postgresql_only
def test_a_read_sees_the_writes_queued_before_it(alice):
    session = make_session(alice)

    with transaction.atomic(), write_batch.collect(connection) as batch:
        insert_rows(StateEvent, [_event(session), _event(session, 2)], connection)
        assert len(batch.writes) == 1  # queued, not sent
        assert _events(session) == 2  # the read sent it first
        assert batch.writes == []


@postgresql_only
def test_a_second_update_of_a_table_goes_in_a_statement_of_its_own(alice):
    session = make_session(alice)

    captured = CaptureQueriesContext(connection)
    with captured as queries, transaction.atomic(), write_batch.collect(connection):
        # One statement cannot update a row twice: the second sends the first.
        add_thread_counts(session.pk, {"busy": 1})
        add_thread_counts(session.pk, {"busy": 1})

    assert Session.objects.get(pk=session.pk).threads_by_status == {"busy": 2}
    assert sum(query["sql"].startswith("WITH guard") for query in queries.captured_queries) == 2


@postgresql_only
def test_a_queued_insert_returns_its_row_once_sent(alice):
    session = make_session(alice)

    with transaction.atomic(), write_batch.collect(connection):
        read = insert_rows(StateEvent, [_event(session)], connection, returning=("%s + 1", [41]))
        assert isinstance(read, write_batch.Queued) and read.row is None

    assert write_batch.value(read) == (42,)
    assert _events(session) == 1


@postgresql_only
def test_an_error_in_the_block_drops_what_is_queued(alice):
    session = make_session(alice)

    with pytest.raises(RuntimeError), transaction.atomic(), write_batch.collect(connection):
        insert_rows(StateEvent, [_event(session)], connection)
        raise RuntimeError("changed my mind")

    assert _events(session) == 0
    assert write_batch.current(connection) is None


@pytest.mark.skipif(connection.vendor == "postgresql", reason="SQLite: no writable CTEs")
def test_on_sqlite_every_write_runs_at_once(alice):
    session = make_session(alice)

    with write_batch.collect(connection) as batch:
        assert batch is None
        assert insert_rows(StateEvent, [_event(session)], connection) is None
        assert _events(session) == 1
