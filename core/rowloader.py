"""A speed-up that reaches into Django's internals: loading one row by primary key with
SQL the ORM compiled once (``row_loader``; ``one_row`` for a queryset of any shape;
``row_where`` for one filtered on a few values, a unique column say).

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
instance. ``one_row`` also relies on what ``ModelIterable`` uses: the compiler's
``klass_info`` and ``annotation_col_map`` once ``as_sql()`` ran, and
``get_related_populators`` for the ``select_related`` rows.
"""

import uuid
from collections.abc import Callable

from django.db import NotSupportedError, connections, models
from django.db.models.query import QuerySet, get_related_populators
from django.db.transaction import TransactionManagementError

from core.cursors import run_statement

# Compiled once per process, for every thread: the ASGI server runs each request in a
# thread of its own, with a connection wrapper of its own (core.asgi_handler), so SQL kept
# on the wrapper was compiled again at each request. Nothing in them changes once built.
_compiled: dict[tuple[object, str], "RowLoader | RowWhere"] = {}


def _first_row(connection, sql: str, params: list) -> tuple | None:
    """The first row ``sql`` reads. On PostgreSQL it is bound on the server and prepared
    from its second run on the connection: these are the hottest reads (an API key, a
    thread with its session), and PostgreSQL took longer to plan their joins than to run
    them. Values come back in text, as Django's cursor reads them."""
    if connection.vendor == "postgresql":
        rows = run_statement(connection, sql, params, prepare=True, fetch=True, binary=False)
        return rows[0] if rows else None
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


class RowLoader:
    """Loads one instance of ``model`` by primary key, on the calling thread's connection
    of the alias it was compiled for.

    It keeps the SQL, the column order and the ORM's value converters of the model, and
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
        self.alias = connection.alias
        self.columns = [column.target.attname for column, _, _ in compiler.select]
        if self.columns != [field.attname for field in model._meta.concrete_fields]:
            raise RuntimeError("the load query must select every concrete field, in order")
        self.converters = compiler.get_converters([column for column, _, _ in compiler.select])

    def load(self, pk: object) -> models.Model | None:
        connection = connections[self.alias]
        value = self.pk_field.get_db_prep_value(self.pk_field.to_python(pk), connection)
        row = _first_row(connection, self.sql, [value])
        if row is None:
            return None
        values = list(row)
        for position, (converters, expression) in self.converters.items():
            for convert in converters:
                values[position] = convert(values[position], expression, connection)
        return self.model.from_db(connection.alias, self.columns, values)


def row_loader(model: type[models.Model], connection) -> RowLoader:
    """The model's loader for ``connection``'s alias, compiled at its first use."""
    key = (model, connection.alias)
    loader = _compiled.get(key)
    if loader is None:
        loader = _compiled[key] = RowLoader(model, connections[connection.alias])
    return loader


# The value markers are made from: a query is compiled with them and its parameters
# are found again by them.
_MARKER = uuid.UUID("5e1ec7ed-0000-4000-8000-00000000c0de")


def one_row(build: Callable[[object], QuerySet], connection) -> "RowWhere":
    """``build``'s query filtered on a primary key (``build(pk)``), for ``connection``'s
    alias: :func:`row_where` on the model's primary key (a locking query is compiled at
    its first use in a transaction); each fetch runs on the calling thread's
    connection."""
    key = (build, connection.alias)
    prepared = _compiled.get(key)
    if prepared is None:
        model = build(_MARKER).model
        prepared = _compiled[key] = RowWhere(build, [model._meta.pk], connections[connection.alias])
    return prepared


def _marker(field: models.Field, index: int):
    """A value of ``field``'s kind that no real query binds, to find its parameter by."""
    kind = field.get_internal_type()
    if kind == "UUIDField":
        return uuid.UUID(int=_MARKER.int + 1 + index)
    if kind in ("AutoField", "BigAutoField", "IntegerField", "BigIntegerField"):
        return -0x5E1EC7ED00 - index
    if kind in ("CharField", "TextField"):
        return f"{_MARKER}:{index}"
    raise NotSupportedError(f"no marker for a {kind}")


class RowWhere:
    """The first row of a queryset filtered on a few values rather than one primary key
    (a unique column; a key and the owner its row must have, say), compiled once; its
    rows built as the ORM's ``ModelIterable`` builds them (the row's model, its
    select_related models, its annotations).

    ``build(*markers)`` returns the queryset for one marker per field of ``fields`` (a
    value of that field's kind); ``fetch(*values)`` binds each value, prepared by its
    field, wherever its marker was bound (a value may be bound more than once), and runs
    it on the calling thread's connection of the alias it was compiled for. Nothing in
    it changes once built, so threads share it.
    """

    def __init__(self, build: Callable[..., QuerySet], fields, connection):
        fields = tuple(fields)
        markers = [_marker(field, index) for index, field in enumerate(fields)]
        queryset = build(*markers)
        if not queryset.ordered:
            queryset = queryset.order_by("pk")  # as QuerySet.first()
        query = queryset[:1].query
        compiler = query.get_compiler(connection=connection)
        self.sql, params = compiler.as_sql()
        self.params = tuple(params)
        self.bindings = []
        for field, marker in zip(fields, markers, strict=True):
            prepared = field.get_db_prep_value(marker, connection)
            positions = [i for i, param in enumerate(params) if param == prepared]
            if not positions:
                raise NotSupportedError(f"the query does not take {field.name}")
            self.bindings.append((field, positions))
        self.alias = connection.alias
        features = connection.features
        self.for_update = (
            query.select_for_update
            and features.has_select_for_update
            and features.supports_transactions
        )
        select, klass_info = compiler.select, compiler.klass_info
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        self.model, self.model_slice = klass_info["model"], slice(start, end)
        self.init_list = [column.target.attname for column, _, _ in select[start:end]]
        self.related_populators = get_related_populators(klass_info, select, connection.alias)
        self.annotations = list(compiler.annotation_col_map.items())
        self.converters = compiler.get_converters([column for column, _, _ in select])

    def fetch(self, *values) -> models.Model | None:
        connection = connections[self.alias]
        if self.for_update and connection.get_autocommit():
            raise TransactionManagementError(
                "select_for_update cannot be used outside of a transaction."
            )
        params = list(self.params)
        for (field, positions), value in zip(self.bindings, values, strict=True):
            prepared = field.get_db_prep_value(value, connection)
            for position in positions:
                params[position] = prepared
        row = _first_row(connection, self.sql, params)
        if row is None:
            return None
        row = list(row)
        for position, (converters, expression) in self.converters.items():
            for convert in converters:
                row[position] = convert(row[position], expression, connection)
        obj = self.model.from_db(connection.alias, self.init_list, row[self.model_slice])
        for populator in self.related_populators:
            populator.populate(row, obj)
        for name, position in self.annotations:
            setattr(obj, name, row[position])
        return obj


_compiled_where: dict[tuple[Callable, str], RowWhere] = {}


def row_where(build: Callable[..., QuerySet], fields, using: str = "default") -> RowWhere:
    """``build``'s query filtered on ``fields``, compiled at its first use in the process.

    Kept for the process, not on the connection wrapper as :func:`one_row` keeps its
    queries: the ASGI server runs each request in a thread of its own, with a wrapper
    of its own (core.asgi_handler), so a query kept on the wrapper is compiled again at
    each request.
    """
    prepared = _compiled_where.get((build, using))
    if prepared is None:
        prepared = _compiled_where[build, using] = RowWhere(build, fields, connections[using])
    return prepared
