"""The saver's connections and cursors: a speed-up that reaches into Django's internals.

Why: LangGraph's sync loop writes checkpoints from a thread pool and the ``a*`` methods
run in an executor: threads that would each open (and leave open) a Django connection
of their own. :class:`ConnectionPool` lends them a few connections kept open instead,
installed as the thread's connection for one saver call. And a saver call is a handful
of short statements, for which Django's cursor wrapper (made per statement) and its
client-side parameter binding cost more than the statement: :func:`run_statement` keeps
one raw cursor per connection, binds on the server in binary (blobs travel as bytes,
not hex text) and, when asked, prepares the statements. ``bench/checkpoints.py``
measures the saver with them: its lines "checkpoints <backend> graph" (LangGraph's loop
writing from its thread pool: the pool), "checkpoints <backend> put" and "checkpoints
<backend> get_tuple" (a few short statements: the cursors); run it before and after
touching this module.

What it relies on (pinned by ``tests/checkpoints/test_connection_internals.py``, which
fails when a Django upgrade changes them): ``connections.create_connection``,
``connections.all(initialized_only=True)``, assigning and deleting
``connections[alias]`` for the current thread,
``BaseDatabaseWrapper``'s ``connection``, ``close_at``, ``errors_occurred``,
``inc_thread_sharing``, ``is_usable``, ``close_if_health_check_failed``,
``ensure_connection``, ``validate_thread_sharing``, ``validate_no_broken_transaction``,
``wrap_database_errors``, ``queries_logged``, ``execute_wrappers``, ``make_cursor``,
``make_debug_cursor``, and ``CursorDebugWrapper.debug_sql``; on PostgreSQL,
``ops.compose_sql`` and psycopg's ``prepare_threshold`` that Django sets to None.

Checks before a pooled connection is lent: psycopg_pool's check (an empty query) on every
lend was a round trip per saver call and per request. Both the saver's pool and Django's
psycopg pool (:func:`check_django_pools_when_idle`) now check a connection only when
:func:`lent_unchecked` says no: it sat idle ``STATEHOUSE_DB_CHECK_IDLE_S`` or more, its
last use ended in an error, or the server has sent it something (a server ending a
connection sends an error first). Django 5.2 refuses a ``check`` in ``OPTIONS["pool"]``
(it passes its own as well: Django ticket #37075), so the check is set on the pool Django
made: psycopg_pool's ``ConnectionPool._check`` (and its ``_configure`` and ``putconn``,
wrapped to note when a connection was made and came back), pinned with the rest.
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import select
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.utils import load_backend

try:
    import psycopg
    import psycopg_pool
except ImportError:  # pragma: no cover - SQLite only
    psycopg = psycopg_pool = None

POOLED = "_statehouse_checkpoint_pool"
RELEASED_AT = "_statehouse_released_at"  # on a wrapper of the saver's pool: when it came back
# On a connection of Django's pool: when it was last lent or came back, the later.
IN_USE_AT = "_statehouse_in_use_at"


def _readable(fd: int) -> bool:
    """Whether a socket has something to read, without waiting."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # Windows


def lent_unchecked(pg_connection, since: float | None) -> bool:
    """Whether a pooled PostgreSQL connection last in use at ``since`` (``time.monotonic()``;
    None: unknown) may be lent again without a check.

    Yes when it was in use less than ``STATEHOUSE_DB_CHECK_IDLE_S`` ago, psycopg has not
    seen it break, and nothing arrived since: a server that ends a connection (a restart,
    ``pg_terminate_backend``) sends an error and closes it, which makes the socket
    readable, while a healthy idle connection receives nothing. A connection lost without
    a word (a network cut) fails its next statement instead, as it would fail a check.
    """
    if since is None or time.monotonic() - since >= settings.STATEHOUSE_DB_CHECK_IDLE_S:
        return False
    return not pg_connection.closed and not _readable(pg_connection.fileno())


def check_when_idle(pg_connection) -> None:
    """The check of Django's pools: psycopg_pool's ``check_connection`` (raises for a
    broken connection) when :func:`lent_unchecked` says the connection needs one.

    Its idle time counts from when it was made or came back to the pool (``_stamp_uses``)
    or was last lent, the latest; one that came back broken psycopg_pool drops by
    itself."""
    if not lent_unchecked(pg_connection, getattr(pg_connection, IN_USE_AT, None)):
        psycopg_pool.ConnectionPool.check_connection(pg_connection)
    setattr(pg_connection, IN_USE_AT, time.monotonic())


def _stamp_uses(pool) -> None:
    """Note on each connection of ``pool`` when it was made and when it comes back
    (psycopg_pool keeps no such time, and lends its connections in turn: counted from
    their last lend, those held by a run for a while were checked at their next lend,
    idle or not; one the pool had just made, growing under load, was checked at its
    first)."""
    putconn, configure = pool.putconn, pool._configure

    def stamped_putconn(conn):
        setattr(conn, IN_USE_AT, time.monotonic())
        putconn(conn)

    def stamped_configure(conn):
        if configure is not None:
            configure(conn)
        setattr(conn, IN_USE_AT, time.monotonic())

    pool.putconn = stamped_putconn
    pool._configure = stamped_configure


def check_django_pools_when_idle() -> None:
    """Give Django's psycopg pools :func:`check_when_idle` instead of psycopg_pool's check
    on every lend (what ``CONN_HEALTH_CHECKS`` makes Django pass; without it, no check),
    their connections' making and returns noted (``_stamp_uses``).
    Called when the app is ready; a pool Django makes again later (``close_pool`` on a
    time zone change) keeps psycopg_pool's check."""
    for wrapper in connections.all():
        if wrapper.vendor != "postgresql" or not wrapper.settings_dict["OPTIONS"].get("pool"):
            continue
        pool = wrapper.pool
        if pool._check is psycopg_pool.ConnectionPool.check_connection:
            pool._check = check_when_idle
            _stamp_uses(pool)


def _needs_check(wrapper: BaseDatabaseWrapper) -> bool:
    """Whether an idle wrapper of the saver's pool is checked before it is lent."""
    if wrapper.errors_occurred:
        return True
    if wrapper.vendor != "postgresql":
        return True  # SQLite's check costs nothing (no server)
    return not lent_unchecked(wrapper.connection, getattr(wrapper, RELEASED_AT, None))


def mark_idle(wrapper: BaseDatabaseWrapper) -> None:
    """Note that ``wrapper``, kept open for later use, is idle from now (_needs_check)."""
    setattr(wrapper, RELEASED_AT, time.monotonic())


def close_if_broken(wrapper: BaseDatabaseWrapper) -> None:
    """Before a kept connection is used again: close it if it may be broken
    (_needs_check: idle a while, an error, something from the server) and a check (a
    round trip) fails, so that the next query opens a new one; otherwise it is used
    without Django's health check."""
    if wrapper.connection is None:
        return
    if _needs_check(wrapper) and not wrapper.is_usable():
        # Broken by an error, or ended while idle (a server restart, say).
        wrapper.close()
    else:
        wrapper.errors_occurred = False
        wrapper.health_check_done = True


def own_connection(alias: str = DEFAULT_DB_ALIAS) -> BaseDatabaseWrapper:
    """Give this thread a connection object for ``alias`` of its own, outside Django's
    pool (``OPTIONS["pool"]``) and kept open from one use to the next (no
    ``CONN_MAX_AGE``), and return it.

    For a thread that would otherwise hold one of the pool's connections for as long
    as a run goes (a server process's run thread, a run's heartbeat): the pool is kept
    for requests and saver calls, which hold theirs briefly. The thread closes it
    (``connection.close()``) when it is done with it; close_if_broken before reusing it.
    """
    settings_dict = {**connections.settings[alias], "CONN_MAX_AGE": None}
    settings_dict["OPTIONS"] = {
        name: value for name, value in settings_dict["OPTIONS"].items() if name != "pool"
    }
    wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, alias)
    wrapper.inc_thread_sharing()  # so that whoever keeps it may close it at exit
    connections[alias] = wrapper
    return wrapper


class ConnectionPool:
    """Django connections lent to threads that must not open their own.

    A borrowed connection is installed as the thread's connection for one saver call
    and returned afterwards; idle ones stay open (up to ``max_idle`` per alias) so the
    next call does not reconnect. When the database uses Django's own connection pool
    (``OPTIONS["pool"]``), the connection goes back to that pool after every call
    instead, so that savers never hold connections others wait for. An idle connection
    is checked before it is lent (a round trip) when :func:`_needs_check` says so, and
    closed if it fails. After a fork the inherited connections are forgotten (not
    closed: their sockets belong to the parent).
    """

    max_idle = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[str, list[BaseDatabaseWrapper]] = defaultdict(list)
        self._pid = os.getpid()
        self._orphans: list[BaseDatabaseWrapper] = []

    def acquire(self, alias: str) -> BaseDatabaseWrapper:
        with self._lock:
            if self._pid != os.getpid():
                for idle in self._idle.values():
                    self._orphans.extend(idle)
                self._idle.clear()
                self._pid = os.getpid()
            idle = self._idle[alias]
            wrapper = idle.pop() if idle else None
        if wrapper is None:
            wrapper = connections.create_connection(alias)
            wrapper.inc_thread_sharing()
            setattr(wrapper, POOLED, True)
        elif wrapper.connection is not None:
            max_age = wrapper.settings_dict.get("CONN_MAX_AGE") or 0
            if max_age and wrapper.close_at is not None and time.monotonic() >= wrapper.close_at:
                wrapper.close()
            else:
                close_if_broken(wrapper)
        return wrapper

    def release(self, alias: str, wrapper: BaseDatabaseWrapper) -> None:
        if wrapper.in_atomic_block or (
            wrapper.connection is not None and not wrapper.get_autocommit()
        ):
            wrapper.close()  # left in a transaction by a bug: never lend it again
            return
        if wrapper.settings_dict["OPTIONS"].get("pool"):
            wrapper.close()  # back to Django's pool; the wrapper itself is kept
        mark_idle(wrapper)
        with self._lock:
            idle = self._idle[alias]
            if self._pid == os.getpid() and len(idle) < self.max_idle:
                idle.append(wrapper)
                return
        wrapper.close()

    def close_all(self) -> None:
        with self._lock:
            wrappers = [w for idle in self._idle.values() for w in idle]
            self._idle.clear()
        for wrapper in wrappers:
            wrapper.close()

    def idle_count(self, alias: str | None = None) -> int:
        """How many idle wrappers hold an open connection."""
        with self._lock:
            aliases = [alias] if alias is not None else list(self._idle)
            return sum(
                1
                for name in aliases
                for wrapper in self._idle.get(name, ())
                if wrapper.connection is not None
            )


pool = ConnectionPool()
_MAIN_THREAD = threading.main_thread()
atexit.register(pool.close_all)


def close_pooled_connections() -> None:
    """Close the idle connections the savers keep for other threads (tests, shutdown)."""
    pool.close_all()


def pooled_connection_count(alias: str | None = None) -> int:
    return pool.idle_count(alias)


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


def _raw_cursor(connection: BaseDatabaseWrapper, prepare: bool, numbered: bool = False):
    """A DB-API cursor on the connection (which must be open).

    On PostgreSQL it binds parameters on the server and exchanges values in binary:
    Django's default client-side cursor sends and receives bytea as hex text, which
    doubles every blob and costs more than the rest of a read. With ``prepare`` its
    statements are prepared (planned once per connection), as PostgresSaver's are.
    ``numbered``: its statements have $1, $2, ... placeholders (see run_statement).
    """
    if connection.vendor == "postgresql":
        pg_connection = connection.connection
        if prepare and pg_connection.prepare_threshold is None:
            # Django turns preparing off (None), which also ignores prepare=True. A
            # threshold never reached keeps Django's own statements unprepared and
            # lets ours be prepared on request.
            pg_connection.prepare_threshold = NEVER
        cursor = _CURSOR_CLASSES[prepare, numbered](pg_connection)
        cursor.format = psycopg.pq.Format.BINARY
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


def saver_cursor(connection: BaseDatabaseWrapper, prepare: bool = False):
    """A cursor for the saver's statements, wrapped by Django as its own cursors are
    (queries logged and counted by tests, errors translated)."""
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        raw = _raw_cursor(connection, prepare)
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
    """
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = connection.connection
    cache = connection.__dict__.get(CURSORS)
    if cache is None or cache[0] is not raw:
        # (raw connection, cursors by (prepare, numbered), the statements run so far)
        cache = connection.__dict__[CURSORS] = (raw, {}, set())
    if prepare and statement not in cache[2]:
        prepare = False
        if len(cache[2]) < 256:  # statements vary (row counts); keep the set bounded
            cache[2].add(statement)
    if connection.queries_logged or connection.execute_wrappers:
        with saver_cursor(connection, prepare) as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if fetch else None
    numbered = numbered and connection.vendor == "postgresql"
    kind = (prepare, numbered)
    cursor = cache[1].get(kind)
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        if cursor is None:
            connection.validate_thread_sharing()
            cursor = _raw_cursor(connection, prepare, numbered)
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


def _thread_connection(alias: str) -> BaseDatabaseWrapper | None:
    """This thread's connection object for ``alias``, without creating one."""
    for wrapper in connections.all(initialized_only=True):
        if wrapper.alias == alias:
            return wrapper
    return None


class saver_connection:
    """``with saver_connection(alias) as connection``: the connection a saver call uses.

    The main thread's own; this thread's own when it is open already or inside
    ``atomic`` (the caller's transaction); otherwise one borrowed from the pool,
    installed as this thread's connection until the call ends.
    """

    __slots__ = ("alias", "borrowed", "own")

    def __init__(self, alias: str):
        self.alias = alias
        self.borrowed = None

    def __enter__(self) -> BaseDatabaseWrapper:
        alias = self.alias
        if threading.current_thread() is _MAIN_THREAD:
            return connections[alias]
        own = self.own = _thread_connection(alias)
        if own is not None and (
            own.connection is not None or own.in_atomic_block or getattr(own, POOLED, False)
        ):
            # Open already: whoever opened it closes it (a request's end, a task's end),
            # and borrowing a second one here could wait forever on a full pool while
            # this thread holds the first (a request that read a row, then the state).
            return own
        wrapper = self.borrowed = pool.acquire(alias)
        connections[alias] = wrapper
        return wrapper

    def __exit__(self, *exc_info) -> None:
        wrapper = self.borrowed
        if wrapper is None:
            return
        self.borrowed = None
        if self.own is None:
            del connections[self.alias]
        else:
            connections[self.alias] = self.own
        pool.release(self.alias, wrapper)
