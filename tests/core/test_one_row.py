"""core.rowloader.one_row: a queryset compiled once and fetched by primary key must give
what the ORM gives (the row, its select_related rows, its annotations), and these tests
fail when a Django upgrade changes the internals it uses."""

import threading
import uuid

import pytest
from django.db import NotSupportedError, connection, transaction
from django.db.models import Exists, OuterRef, Value
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from core import state
from core.rowloader import one_row
from tests.factories import make_session, make_thread, make_workflow
from threads_app import runtime, services
from threads_app.models import Run


def _with_everything(pk):
    later = Run.objects.filter(
        thread_id=OuterRef("thread_id"), created_at__gt=OuterRef("created_at")
    )
    return (
        Run.objects.select_related("thread__session", "workflow")
        .annotate(later=Exists(later), label=Value("x"))
        .filter(pk=pk)
    )


@pytest.fixture
def runs(alice):
    thread = make_thread(make_session(alice), make_workflow("pipeline"))
    return [services.create_run(thread, input={"steps": 1}, send=False) for _ in range(2)]


def _fields(obj):
    return {field.attname: getattr(obj, field.attname) for field in obj._meta.concrete_fields}


def test_a_fetch_gives_what_the_orm_gives(runs):
    for run in runs:
        fetched = one_row(_with_everything, connection).fetch(run.pk)
        expected = _with_everything(run.pk).first()

        assert _fields(fetched) == _fields(expected)
        assert (fetched.later, fetched.label) == (expected.later, expected.label)
        assert _fields(fetched.thread) == _fields(expected.thread)
        assert _fields(fetched.thread.session) == _fields(expected.thread.session)
        assert _fields(fetched.workflow) == _fields(expected.workflow)
        assert fetched._state.db == expected._state.db
        assert not fetched._state.adding
    assert [one_row(_with_everything, connection).fetch(run.pk).later for run in runs] == [
        True,
        False,
    ]


def test_a_fetch_takes_a_string_key_and_finds_nothing_for_a_missing_one(runs):
    prepared = one_row(_with_everything, connection)

    assert prepared.fetch(str(runs[0].pk)).pk == runs[0].pk
    assert prepared.fetch(uuid.uuid4()) is None


def test_the_statement_is_the_orms_own(runs):
    prepared = one_row(_with_everything, connection)
    queryset = _with_everything(runs[0].pk)  # ordered as QuerySet.first() orders it
    assert queryset.ordered
    sql, _ = queryset[:1].query.get_compiler(connection=connection).as_sql()

    assert prepared.sql == sql
    assert one_row(_with_everything, connection) is one_row(_with_everything, connection)


@pytest.mark.django_db(transaction=True)
def test_a_locking_query_needs_a_transaction(runs):
    with (
        pytest.raises(TransactionManagementError)
        if connection.features.has_select_for_update
        else _nothing()
    ):
        one_row(runtime._finish_query, connection).fetch(runs[0].pk)
    with transaction.atomic():
        locked = one_row(runtime._finish_query, connection).fetch(runs[0].pk)
    assert locked.thread.pk == runs[0].thread_id


def test_the_claim_sees_a_run_ahead(runs):
    with transaction.atomic():
        first, second = (runtime._claimed(run.pk) for run in runs)
    assert (first.blocked, second.blocked) == (False, True)
    assert second.thread.session.pk == runs[1].thread.session_id


def _twice(pk):
    return state.entity_model("run").objects.filter(pk=pk, thread__runs__pk=pk)


def _without_the_key(pk):
    return state.entity_model("run").objects.filter(status="pending")


def test_a_key_taken_twice_is_bound_twice_and_a_query_without_it_refused(runs):
    assert one_row(_twice, connection).fetch(runs[1].pk).pk == runs[1].pk
    with pytest.raises(NotSupportedError, match="does not take"):
        one_row(_without_the_key, connection)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.django_db(transaction=True)
def test_threads_share_it_and_each_fetches_on_its_own_connection(runs):
    """Compiled once for the process (each ASGI request has a thread and a connection
    wrapper of its own); a fetch runs on the calling thread's connection."""
    from django.db import connections

    run = runs[0]
    with transaction.atomic():  # a locking query is compiled in a transaction only
        mine = one_row(runtime._finish_query, connection)
        assert mine.fetch(run.pk).pk == run.pk
    seen = []

    def other():
        try:
            with transaction.atomic():
                prepared = one_row(runtime._finish_query, connection)
                with CaptureQueriesContext(connections["default"]) as captured:
                    fetched = prepared.fetch(run.pk)
                seen.append((prepared, fetched.pk, len(captured)))
        finally:
            connections.close_all()

    worker = threading.Thread(target=other)
    worker.start()
    worker.join()
    assert seen == [(mine, run.pk, 1)]  # the same prepared query, on that thread's connection
