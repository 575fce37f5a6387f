"""INSERT of many rows with SQL built once per model and row count.

Why: ``bulk_create`` compiles its statement at every call (about 1 ms of CPU) and, outside
a transaction, opens one for it (a BEGIN and a COMMIT more); the state manager's history
rows and a run's event log are written this way at every state change and step
(``bench/api.py``, "CPU per 1-step run"). The statement names the model's table and
columns only; the values are bound, prepared by their fields as the ORM prepares them.
"""

import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from django.db import connections, models, transaction

from core import write_batch

# Far below any backend's limit on parameters per statement.
MAX_ROWS_PER_STATEMENT = 500


@cache
def _fields(model: type[models.Model]) -> tuple[models.Field, ...]:
    """What an INSERT writes: every concrete field but a key the database assigns (an
    AutoField's; a UUID key is written)."""
    return tuple(
        field
        for field in model._meta.concrete_fields
        if not (field.primary_key and getattr(field, "db_returning", False))
    )


@cache
def _sql(model: type[models.Model], rows: int) -> str:
    fields = _fields(model)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    columns = ", ".join(f'"{field.column}"' for field in fields)
    table = model._meta.db_table
    return f'INSERT INTO "{table}" ({columns}) VALUES {", ".join([row] * rows)}'  # noqa: S608


@cache
def _queued_sql(model: type[models.Model], rows: int, alias: str) -> str:
    """The INSERT as a write of a batch (core.write_batch): its rows selected from a
    VALUES list if the batch's guard holds. Each value is cast to its column's type
    (without a length, which the column itself checks): in a VALUES list that is not
    the INSERT's own, an untyped NULL or string would be text."""
    fields = _fields(model)
    connection = connections[alias]
    casts = [re.sub(r"\(.*\)", "", field.db_type(connection)) for field in fields]
    row = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
    columns = ", ".join(f'"{field.column}"' for field in fields)
    table = model._meta.db_table
    values = ", ".join([row] * rows)
    return (
        f'INSERT INTO "{table}" ({columns}) SELECT * FROM (VALUES {values}) AS v'  # noqa: S608
        f" WHERE {write_batch.GUARD}"
    )


def insert_instance(obj: models.Model, using: str) -> None:
    """Save the new ``obj`` (its key set) with one INSERT built once per model, as
    ``save(force_insert=True)`` would without signals: each field's ``pre_save`` value,
    then ``obj`` is marked saved in ``using``."""
    row = {field.attname: field.pre_save(obj, True) for field in _fields(type(obj))}
    insert_rows(type(obj), [row], connections[using])
    obj._state.adding = False
    obj._state.db = using


def insert_rows(
    model: type[models.Model],
    rows: Sequence[Mapping[str, Any]],
    connection,
    returning: tuple[str, Sequence[Any]] | None = None,
) -> tuple | None:
    """Write ``rows`` (each its values by field attname) on ``connection``: one
    statement, or several in one transaction (all or none) past the backend's batch
    size, in the caller's transaction if there is one.

    ``returning``: an SQL expression list and its parameters that the (last) INSERT
    returns, a subquery say, read in the same round trip; its first row is returned
    (None without ``returning``). A subquery there sees the database as the statement
    started, after any lock the caller's transaction took before it.

    In a write batch (core.write_batch, PostgreSQL) the INSERT is queued instead, and
    what it returns is a ``Queued`` whose ``row`` is set once the batch is sent."""
    fields = _fields(model)
    size = min(connection.ops.bulk_batch_size(fields, rows), MAX_ROWS_PER_STATEMENT)
    if len(rows) > size:
        with transaction.atomic(using=connection.alias):
            for start in range(0, len(rows) - size, size):
                insert_rows(model, rows[start : start + size], connection)
            last = (len(rows) - 1) // size * size
            return insert_rows(model, rows[last:], connection, returning)
    params = [
        field.get_db_prep_save(row[field.attname], connection) for row in rows for field in fields
    ]
    batch = write_batch.current(connection)
    if batch is not None:
        sql = _queued_sql(model, len(rows), connection.alias)
        if returning is not None:
            sql = f"{sql} RETURNING {returning[0]}"
            params += returning[1]
        table = model._meta.db_table
        return batch.add(sql, params, table, updates=False, returning=returning is not None)
    sql = _sql(model, len(rows))
    if returning is not None:
        expressions, extra = returning
        sql = f"{sql} RETURNING {expressions}"
        params += extra
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        # All rows read: SQLite keeps a statement with rows left to read in progress.
        return cursor.fetchall()[0] if returning is not None else None
