"""core.rowloader reaches into Django's SQL compiler: these tests fail when a Django
upgrade changes what it relies on (then fix the loader, and run bench/state_bus.py)."""

import pytest
from django.db import connection
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
