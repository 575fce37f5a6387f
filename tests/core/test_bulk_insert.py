"""core.bulk_insert: rows written with SQL built once are the rows bulk_create writes,
and past one statement's batch they are written all or none."""

import pytest
from django.db import IntegrityError, connection, transaction

from core.bulk_insert import insert_instance, insert_rows
from core.time import now
from tests.factories import make_session, make_thread, make_workflow
from threads_app import services
from threads_app.models import RunEvent, Workflow

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def run(alice):
    thread = make_thread(make_session(alice), make_workflow("pipeline"))
    return services.create_run(thread, input={"steps": 1}, send=False)


def _event(run, seq, **extra):
    fields = {"run_id": run.pk, "seq": seq, "event": "values", "namespace": "", "attempt": 1}
    return fields | {"data": {"seq": seq, "nested": [1, "x"]}, "created_at": now()} | extra


def _rows(run):
    return list(RunEvent.objects.filter(run=run).order_by("seq").values())


def test_the_rows_are_those_bulk_create_writes(run):
    ours = [_event(run, seq) for seq in (1, 2)]
    insert_rows(RunEvent, ours, connection)
    theirs = [_event(run, seq) for seq in (3, 4)]
    RunEvent.objects.bulk_create([RunEvent(**row) for row in theirs])

    written = _rows(run)
    assert [row["data"] for row in written] == [row["data"] for row in ours + theirs]
    for row, given in zip(written, ours + theirs, strict=True):
        assert {name: row[name] for name in given} == given


def test_rows_past_one_statement_are_written_all_or_none(run, monkeypatch):
    monkeypatch.setattr("core.bulk_insert.MAX_ROWS_PER_STATEMENT", 2)
    rows = [_event(run, seq) for seq in range(1, 6)] + [_event(run, 1)]  # the last repeats seq 1

    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(RunEvent, rows, connection)

    assert _rows(run) == []
    insert_rows(RunEvent, rows[:5], connection)
    assert [row["seq"] for row in _rows(run)] == [1, 2, 3, 4, 5]


def test_the_insert_returns_what_it_is_asked_to_read_along(run):
    meta = run._meta
    asked = f'(SELECT "status" FROM "{meta.db_table}" WHERE "id" = %s)'  # noqa: S608
    pk = meta.pk.get_db_prep_value(run.pk, connection)

    read = insert_rows(RunEvent, [_event(run, 1), _event(run, 2)], connection, (asked, [pk]))

    assert read == (run.status,)
    assert [row["seq"] for row in _rows(run)] == [1, 2]


def test_past_one_statement_the_last_one_returns_it(run, monkeypatch):
    monkeypatch.setattr("core.bulk_insert.MAX_ROWS_PER_STATEMENT", 2)

    read = insert_rows(RunEvent, [_event(run, seq) for seq in range(1, 6)], connection, ("5", []))

    assert read == (5,)
    assert [row["seq"] for row in _rows(run)] == [1, 2, 3, 4, 5]


def test_an_instance_inserted_is_the_row_save_writes(alice):
    ours = Workflow(graph_id="pipeline", name="ours", config={"a": [1, "x"]})
    insert_instance(ours, "default")
    theirs = Workflow(graph_id="pipeline", name="theirs", config={"a": [1, "x"]})
    theirs.save(force_insert=True)

    assert not ours._state.adding and ours._state.db == "default"
    stored = {row["name"]: row for row in Workflow.objects.filter(graph_id="pipeline").values()}
    different = {"id", "name", "created_at", "updated_at"}
    assert stored["ours"]["id"] == ours.pk
    assert {k: v for k, v in stored["ours"].items() if k not in different} == {
        k: v for k, v in stored["theirs"].items() if k not in different
    }
