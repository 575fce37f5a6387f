"""core.rowloader.row_where: a queryset filtered on a few values, compiled once for the
process, must give what the ORM gives, on the calling thread's connection; these tests
fail when a Django upgrade changes the internals it uses (those of one_row)."""

import threading
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import NotSupportedError, connection, connections
from django.db.models import Exists, OuterRef, Value

from checkpoints_app.models import Checkpoint
from core.apikeys import create_api_key
from core.models import ApiKey
from core.rowloader import RowWhere, row_where
from tests.factories import make_session, make_thread, make_workflow
from threads_app.models import Run, Thread

THREAD_FIELDS = [Thread._meta.pk, Checkpoint._meta.get_field("thread_id")]
OWNED_FIELDS = [*THREAD_FIELDS, get_user_model()._meta.pk]


def _owned(pk, thread_key, owner_id):
    """A thread of an owner's session, with a subquery that takes the id as a string."""
    checkpoints = Checkpoint.objects.filter(thread_id=thread_key)
    runs = Run.objects.filter(thread=OuterRef("pk"))
    return (
        Thread.objects.select_related("session", "workflow")
        .annotate(has_checkpoint=Exists(checkpoints), has_runs=Exists(runs), label=Value("x"))
        .filter(pk=pk, session__owner_id=owner_id)
    )


def _fields(obj):
    return {field.attname: getattr(obj, field.attname) for field in obj._meta.concrete_fields}


@pytest.fixture
def threads(alice, bob):
    workflow = make_workflow("pipeline")
    return [make_thread(make_session(owner), workflow) for owner in (alice, bob)]


def test_a_fetch_gives_what_the_orm_gives(threads):
    prepared = row_where(_owned, OWNED_FIELDS)
    for thread in threads:
        owner = thread.session.owner_id
        fetched = prepared.fetch(thread.pk, str(thread.pk), owner)
        expected = _owned(thread.pk, str(thread.pk), owner).first()

        assert _fields(fetched) == _fields(expected)
        assert _fields(fetched.session) == _fields(expected.session)
        assert _fields(fetched.workflow) == _fields(expected.workflow)
        assert (fetched.has_checkpoint, fetched.has_runs, fetched.label) == (False, False, "x")
        assert fetched._state.db == expected._state.db and not fetched._state.adding


def test_every_value_is_bound_and_a_row_of_another_owner_is_not_found(threads):
    alices, bobs = threads
    prepared = row_where(_owned, OWNED_FIELDS)

    assert prepared.fetch(alices.pk, str(alices.pk), bobs.session.owner_id) is None
    assert prepared.fetch(uuid.uuid4(), str(alices.pk), alices.session.owner_id) is None
    assert prepared.fetch(str(bobs.pk), str(bobs.pk), bobs.session.owner_id).pk == bobs.pk


def test_the_statement_is_the_orms_own_and_compiled_once(threads):
    prepared = RowWhere(_owned, OWNED_FIELDS, connection)
    queryset = _owned(uuid.uuid4(), "x", 1)
    if not queryset.ordered:
        queryset = queryset.order_by("pk")  # as QuerySet.first()
    sql, _ = queryset[:1].query.get_compiler(connection=connection).as_sql()

    assert prepared.sql == sql
    assert row_where(_owned, OWNED_FIELDS) is row_where(_owned, OWNED_FIELDS)


def test_a_unique_column(alice):
    def by_prefix(prefix):
        return ApiKey.objects.select_related("owner").filter(prefix=prefix)

    key, _ = create_api_key(alice)
    prepared = row_where(by_prefix, [ApiKey._meta.get_field("prefix")])

    assert prepared.fetch(key.prefix).owner == alice
    assert prepared.fetch("sh_00000000") is None


def test_each_field_must_be_a_parameter():
    def unfiltered(pk, thread_key):
        return Thread.objects.filter(pk=pk)

    with pytest.raises(NotSupportedError, match="thread_id"):
        RowWhere(unfiltered, THREAD_FIELDS, connection)
    with pytest.raises(NotSupportedError, match="no marker"):
        RowWhere(unfiltered, [Thread._meta.get_field("created_at")], connection)


@pytest.mark.django_db(transaction=True)
def test_threads_share_it_each_on_its_own_connection(threads):
    """As in the ASGI server, where each request has a thread and a connection of its
    own."""
    thread = threads[0]
    owner = thread.session.owner_id
    prepared = row_where(_owned, OWNED_FIELDS)
    assert prepared.fetch(thread.pk, str(thread.pk), owner).pk == thread.pk
    theirs = []

    def other():
        try:
            theirs.append(row_where(_owned, OWNED_FIELDS))
            theirs.append(theirs[0].fetch(thread.pk, str(thread.pk), owner))
            theirs.append(connections["default"])
        finally:
            connections.close_all()

    worker = threading.Thread(target=other)
    worker.start()
    worker.join()
    assert theirs[0] is prepared
    assert theirs[1].pk == thread.pk
    assert theirs[2] is not connections["default"]
