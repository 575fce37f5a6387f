"""The hot statements' cursors: a speed-up that reaches into Django's internals.

A hot statement (the checkpoint saver's, a write batch, a row loaded by SQL compiled
once) is short to run, and Django's cursor wrapper (made per statement) and its
client-side parameter binding cost more than the statement: :func:`run_statement` keeps
one raw cursor per connection, binds on the server in binary (blobs travel as bytes, not
hex text) and, when asked, prepares the statements (planned once per connection) and
numbers their placeholders once per text. ``bench/checkpoints.py`` measures the saver
with them (its lines "checkpoints <backend> put" and "checkpoints <backend> get_tuple");
run it before and after touching this module.

What it relies on is pinned by ``tests/checkpoints/test_connection_internals.py``:
``BaseDatabaseWrapper``'s ``connection``, ``close_if_health_check_failed``,
``ensure_connection``, ``validate_thread_sharing``, ``validate_no_broken_transaction``,
``wrap_database_errors``, ``queries_logged``, ``execute_wrappers``, ``make_cursor``,
``make_debug_cursor``, and ``CursorDebugWrapper.debug_sql``; on PostgreSQL,
``ops.compose_sql`` and psycopg's ``prepare_threshold`` that Django sets to None.
"""

import itertools
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

try:
    import psycopg
except ImportError:  # pragma: no cover - SQLite only
    psycopg = None


@lru_cache(maxsize=512)
def _qmark(statement: str) -> str:
    # The saver's statements have no literal "%", so this is Django's conversion.
    return statement.replace("%s", "?")


class _QmarkCursor:
    """A sqlite3 cursor taking the saver's %s placeholders, converted once per statement
    (Django's SQLite cursor converts with a regex on every call)."""

    def __init__(self, cursor):
        self.cursor = cursor

    def execute(self, statement, params=None):
        return self.cursor.execute(_qmark(statement), params or ())

    def __getattr__(self, name):
        return getattr(self.cursor, name)

    def __iter__(self):
        return iter(self.cursor)


_PLACEHOLDER = re.compile(r"%[s%]")


@lru_cache(maxsize=256)
def _numbered(statement: str) -> str:
    """``statement``'s %s placeholders as PostgreSQL's $1, $2, ... (and %% as %)."""
    numbers = itertools.count(1)
    return _PLACEHOLDER.sub(lambda m: "%" if m[0] == "%%" else f"${next(numbers)}", statement)


NEVER = 2**31 - 1

if psycopg is not None:

    class _PreparedCursor(psycopg.Cursor):
        """Server-side binding, prepared statements (as PostgresSaver)."""

        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=True, binary=binary)

    class _PreparedRawCursor(psycopg.RawCursor):
        """The same, for statements with $1, $2, ... placeholders already."""

        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=True, binary=binary)

    _CURSOR_CLASSES = {
        (False, False): psycopg.Cursor,
        (True, False): _PreparedCursor,
        (False, True): psycopg.RawCursor,
        (True, True): _PreparedRawCursor,
    }


def _raw_cursor(
    connection: BaseDatabaseWrapper, prepare: bool, numbered: bool = False, binary: bool = True
):
    """A DB-API cursor on the connection (which must be open).

    On PostgreSQL it binds parameters on the server and exchanges values in binary:
    Django's default client-side cursor sends and receives bytea as hex text, which
    doubles every blob and costs more than the rest of a read. With ``prepare`` its
    statements are prepared (planned once per connection), as PostgresSaver's are.
    ``numbered``: its statements have $1, $2, ... placeholders (see run_statement).
    Not ``binary``: values come back in text, loaded as Django's own cursors load them
    (its jsonb loader, say, which gives the text a JSONField parses).
    """
    if connection.vendor == "postgresql":
        pg_connection = connection.connection
        if prepare and pg_connection.prepare_threshold is None:
            # Django turns preparing off (None), which also ignores prepare=True. A
            # threshold never reached keeps Django's own statements unprepared and
            # lets ours be prepared on request.
            pg_connection.prepare_threshold = NEVER
        cursor = _CURSOR_CLASSES[prepare, numbered](pg_connection)
        cursor.format = psycopg.pq.Format.BINARY if binary else psycopg.pq.Format.TEXT
        return cursor
    return _QmarkCursor(connection.connection.cursor())


class _ServerBindingDebugCursor(CursorDebugWrapper):
    """Django's debug cursor reads the logged SQL off a client-side psycopg cursor; with
    server-side binding it would log None, so log the statement with its parameters."""

    def execute(self, sql, params=None):
        with self.debug_sql(self._composed(sql, params)):
            return CursorWrapper.execute(self, sql, params)

    def _composed(self, sql, params):
        try:
            return self.db.ops.compose_sql(sql, params)
        except Exception:
            return sql


def saver_cursor(connection: BaseDatabaseWrapper, prepare: bool = False, binary: bool = True):
    """A cursor for the saver's statements, wrapped by Django as its own cursors are
    (queries logged and counted by tests, errors translated)."""
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        raw = _raw_cursor(connection, prepare, binary=binary)
    if connection.queries_logged:
        if connection.vendor == "postgresql":
            return _ServerBindingDebugCursor(raw, connection)
        return connection.make_debug_cursor(raw)
    return connection.make_cursor(raw)


CURSORS = "_statehouse_checkpoint_cursors"


def run_statement(
    connection: BaseDatabaseWrapper,
    statement: str,
    params: Sequence[Any],
    prepare: bool = False,
    fetch: bool = False,
    numbered: bool = False,
    binary: bool = True,
):
    """Run one of the hot statements; its rows if ``fetch``.

    With ``prepare``, the statement is prepared from its second run on the connection:
    preparing is a round trip of its own, which a statement run once on a connection (a
    request's or a task's, closed at its end with CONN_MAX_AGE 0) never pays back.

    When nobody watches the queries (no logging, no execute wrappers), the cursor is
    kept on the connection and run as Django's cursor wrapper runs one (broken
    transaction check, error translation): making and wrapping a cursor is a good part
    of a short call's cost.

    ``numbered`` (PostgreSQL): its %s placeholders are made $1, $2, ... once per
    statement text, not by psycopg at every run. psycopg keeps its conversion of a
    statement only up to 4 kB and 50 parameters; a longer one (a write batch) it
    parses again each time, which cost more than the statement's round trip.
    ``binary``: see _raw_cursor.
    """
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = connection.connection
    cache = connection.__dict__.get(CURSORS)
    if cache is None or cache[0] is not raw:
        # (raw connection, cursors by kind, the statements run on it so far)
        cache = connection.__dict__[CURSORS] = (raw, {}, set())
    if prepare and statement not in cache[2]:
        prepare = False
        if len(cache[2]) < 256:  # statements vary (row counts); keep the set bounded
            cache[2].add(statement)
    if connection.queries_logged or connection.execute_wrappers:
        with saver_cursor(connection, prepare, binary) as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if fetch else None
    numbered = numbered and connection.vendor == "postgresql"
    kind = (prepare, numbered, binary)
    cursor = cache[1].get(kind)
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        if cursor is None:
            connection.validate_thread_sharing()
            cursor = _raw_cursor(connection, prepare, numbered, binary)
            if isinstance(cursor, _QmarkCursor):
                cursor = cursor.cursor  # the sqlite3 cursor: statements converted below
            cache[1][kind] = cursor
        if connection.vendor == "sqlite":
            statement = _qmark(statement)
        elif numbered:
            statement = _numbered(statement)
        cursor.execute(statement, params)
        if not fetch:
            return None
        rows = cursor.fetchall()
        if len(rows) > 100:
            # A psycopg cursor holds its last result until the next one: do not keep a
            # large one alive on the connection.
            cursor.close()
            del cache[1][kind]
        return rows
