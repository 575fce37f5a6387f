"""A speed-up that reaches into Django's internals: loading one row by primary key with
SQL the ORM compiled once.

Why: ``Model.objects.get(pk=...)`` builds, clones and compiles its query on every call,
about 0.6 ms of CPU, a third of a whole state update. ``bench/state_bus.py`` measures
the state manager with it: its lines "state_bus <backend> session update" and
"state_bus <backend> thread status update" (run it before and after touching this
module).

What it relies on (pinned by ``tests/core/test_rowloader.py``, which fails when a Django
upgrade changes them): ``SQLCompiler.as_sql()`` of a ``filter(pk=...)`` query takes the
primary key as its only parameter, ``compiler.select`` holds ``(Col, sql, alias)``
triples whose ``target.attname`` names the columns in order (every concrete field: a
loader that would select fewer, deferring some, refuses to be built),
``get_converters()`` maps positions to ``(converters, expression)``, each converter is
called as ``convert(value, expression, connection)``, and ``Model.from_db`` builds the
instance.
"""

import uuid

from django.db import models

_CACHE_ATTRIBUTE = "_statehouse_row_loaders"


class RowLoader:
    """Loads one instance of ``model`` by primary key on one connection.

    It keeps the SQL, the column order and the ORM's value converters of the model on
    that connection (connections belong to one thread, and so do their converters), and
    builds the instance with ``Model.from_db`` as the ORM does.
    """

    def __init__(self, model: type[models.Model], connection):
        pk_field = model._meta.pk
        query = model._base_manager.using(connection.alias).filter(pk=uuid.UUID(int=0))
        compiler = query.query.get_compiler(connection=connection)
        self.sql, params = compiler.as_sql()
        if len(params) != 1:
            raise RuntimeError("the load query must take the primary key only")
        self.model = model
        self.pk_field = pk_field
        self.connection = connection
        self.columns = [column.target.attname for column, _, _ in compiler.select]
        if self.columns != [field.attname for field in model._meta.concrete_fields]:
            raise RuntimeError("the load query must select every concrete field, in order")
        self.converters = compiler.get_converters([column for column, _, _ in compiler.select])

    def load(self, pk: object) -> models.Model | None:
        connection = self.connection
        value = self.pk_field.get_db_prep_value(self.pk_field.to_python(pk), connection)
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [value])
            row = cursor.fetchone()
        if row is None:
            return None
        values = list(row)
        for position, (converters, expression) in self.converters.items():
            for convert in converters:
                values[position] = convert(values[position], expression, connection)
        return self.model.from_db(connection.alias, self.columns, values)


def row_loader(model: type[models.Model], connection) -> RowLoader:
    """The model's loader on this connection, compiled at its first use there.

    Kept on the connection wrapper (one per thread and alias), so it goes with it.
    """
    per_model = connection.__dict__.setdefault(_CACHE_ATTRIBUTE, {})
    loader = per_model.get(model)
    if loader is None:
        loader = per_model[model] = RowLoader(model, connection)
    return loader
