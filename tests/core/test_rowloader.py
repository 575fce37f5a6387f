"""core.rowloader reaches into Django's SQL compiler: these tests fail when a Django
upgrade changes what it relies on (then fix the loader, and run bench/state_bus.py)."""

import datetime
import decimal

import pytest
from django.db import connection, models
from django.db.models.sql.compiler import SQLCompiler

from core import state
from core.rowloader import RowLoader, row_loader
from tests.factories import make_session, make_thread, make_workflow


@pytest.mark.parametrize("entity_type", ["session", "thread", "run", "workflow"])
def test_the_compiled_statement_is_the_orms_own(db, entity_type):
    model = state.entity_model(entity_type)
    loader = RowLoader(model, connection)
    queryset = model._base_manager.filter(pk="00000000-0000-0000-0000-000000000001")
    sql, params = queryset.query.get_compiler(connection=connection).as_sql()

    assert loader.sql == sql
    assert len(params) == 1
    # Every concrete field, in the ORM's column order.
    assert loader.columns == [field.attname for field in model._meta.concrete_fields]


def test_the_compiler_internals_it_uses_still_exist(db):
    model = state.entity_model("session")
    compiler = model._base_manager.all().query.get_compiler(connection=connection)
    compiler.as_sql()

    assert hasattr(SQLCompiler, "get_converters")
    column, _sql, _alias = compiler.select[0]
    assert column.target.attname == "id"
    converters = compiler.get_converters([column for column, _, _ in compiler.select])
    for converter_list, expression in converters.values():
        assert all(callable(convert) for convert in converter_list)
        assert hasattr(expression, "output_field")
    assert callable(model.from_db)
    # What RowLoader reads off the model, the query and the fields.
    assert model._meta.pk is model._meta.concrete_fields[0]
    assert hasattr(model._base_manager.all().query, "get_compiler")
    assert callable(model._meta.pk.get_db_prep_value)
    assert callable(model._meta.pk.to_python)


def test_it_loads_what_the_orm_loads_converters_included(alice):
    session = make_session(alice, title="Loaded")
    thread = make_thread(session, workflow=make_workflow("pipeline"))
    state.update_state("thread", thread.pk, {"metadata": {"k": [1, "ü"]}})

    loaded = row_loader(type(thread), connection).load(thread.pk)
    from_orm = type(thread).objects.get(pk=thread.pk)

    assert state.to_state(loaded) == state.to_state(from_orm)
    assert loaded.metadata == {"k": [1, "ü"]}  # the JSON converter ran
    assert row_loader(type(thread), connection) is row_loader(type(thread), connection)
    assert row_loader(type(thread), connection).load(session.pk) is None


def _sample(field: models.Field, current: object) -> object:
    """A value of the field's type unlike a default (None when the field keeps its own)."""
    if field.primary_key or field.is_relation or field.choices:
        return None
    if isinstance(field, models.JSONField):
        return {"k": [1, "ü", None, 2.5, True]}
    if isinstance(field, models.DateTimeField):
        return datetime.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=datetime.UTC)
    if isinstance(field, models.DecimalField):
        return decimal.Decimal("1.5").quantize(decimal.Decimal(10) ** -field.decimal_places)
    if isinstance(field, models.BooleanField):
        return not current
    if isinstance(field, models.IntegerField):
        return 7
    if isinstance(field, models.CharField | models.TextField):
        return "text ü"
    raise AssertionError(f"no sample for {type(field).__name__}: add one")


def _fields(obj) -> dict[str, tuple[type, object]]:
    return {
        field.attname: (type(getattr(obj, field.attname)), getattr(obj, field.attname))
        for field in obj._meta.concrete_fields
    }


@pytest.fixture
def one_of_each(alice):
    session = make_session(alice, title="Loaded")
    workflow = make_workflow("pipeline")
    thread = make_thread(session, workflow=workflow)
    run = state.create_state("run", {"thread": thread, "workflow": workflow, "input": {}})
    return [session, workflow, thread, run]


def test_it_loads_what_the_orm_loads_for_every_field_type(one_of_each):
    """Every field type of the stateful models, as stored first (nulls and defaults
    included) and then with a value of its type in every field; JSON, datetime, decimal
    and boolean fields go through the ORM's converters (``from_db_value`` and the
    backend's)."""
    for obj in one_of_each:
        model = type(obj)
        loader = RowLoader(model, connection)
        assert _fields(loader.load(obj.pk)) == _fields(model.objects.filter(pk=obj.pk).get())

        values = {}
        for field in model._meta.concrete_fields:
            sample = _sample(field, getattr(obj, field.attname))
            if sample is not None:
                values[field.attname] = sample
        model._base_manager.filter(pk=obj.pk).update(**values)
        loaded = loader.load(obj.pk)
        from_orm = model.objects.filter(pk=obj.pk).get()

        assert _fields(loaded) == _fields(from_orm)
        assert {name: getattr(loaded, name) for name in values} == values
        assert loaded.get_deferred_fields() == set()
        assert loaded._state.adding is False
        assert loaded._state.db == from_orm._state.db


def test_a_loader_that_would_defer_fields_is_refused(db, monkeypatch):
    model = state.entity_model("session")
    deferring = model._base_manager.get_queryset().defer("title")
    monkeypatch.setattr(model._base_manager, "get_queryset", lambda: deferring)

    with pytest.raises(RuntimeError, match="every concrete field"):
        RowLoader(model, connection)
