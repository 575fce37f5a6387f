"""The saver's connections: a speed-up that reaches into Django's internals.

Why: LangGraph's sync loop writes checkpoints from a thread pool and the ``a*`` methods
run in an executor: threads that would each open (and leave open) a Django connection
of their own. :class:`ConnectionPool` lends them a few connections kept open instead,
installed as the thread's connection for one saver call. ``bench/checkpoints.py``
measures the saver with it: its line "checkpoints <backend> graph" (LangGraph's loop
writing from its thread pool); run it before and after touching this module. The
saver's statements run on ``core.cursors``.

Threads that hold a connection as long as a run goes (a server's run thread, a
heartbeat) get one of their own outside Django's pool (:func:`own_connection`).

What it relies on (pinned by ``tests/checkpoints/test_connection_internals.py``, which
fails when a Django upgrade changes them): ``connections.create_connection``,
``connections.all(initialized_only=True)``, assigning and deleting
``connections[alias]`` for the current thread, ``BaseDatabaseWrapper``'s ``connection``,
``close_at``, ``errors_occurred``, ``health_check_done``, ``inc_thread_sharing`` and
``is_usable``.

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
import os
import select
import threading
import time
from collections import defaultdict

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import load_backend

try:
    import psycopg
    import psycopg_pool
    import psycopg_pool.base
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


# How often Django's pools try to connect again while the database is away. psycopg_pool
# waits 1 s, then 2, then 4: after a 3 s restart, a pool whose second try came just too
# early tried again 4 s later, and the requests waiting for a connection waited that long
# past their clients' timeouts (tests/system/test_postgres_restart.py, under load). A
# try at a database that is down is refused at once, so every half second costs nothing.
RECONNECT_EVERY_S = 0.5


def retry_connecting_steadily() -> None:
    """Make psycopg_pool try a lost connection again every RECONNECT_EVERY_S (its
    ``AttemptWithBackoff``'s first delay, with no backoff), for every pool in the
    process: Django's, here."""
    psycopg_pool.base.AttemptWithBackoff.INITIAL_DELAY = RECONNECT_EVERY_S
    psycopg_pool.base.AttemptWithBackoff.DELAY_BACKOFF = 1.0


def check_django_pools_when_idle() -> None:
    """Give Django's psycopg pools :func:`check_when_idle` instead of psycopg_pool's check
    on every lend (what ``CONN_HEALTH_CHECKS`` makes Django pass; without it, no check),
    their connections' making and returns noted (``_stamp_uses``), and steady tries to
    connect again (:func:`retry_connecting_steadily`).
    Called when the app is ready; a pool Django makes again later (``close_pool`` on a
    time zone change) keeps psycopg_pool's check."""
    for wrapper in connections.all():
        if wrapper.vendor != "postgresql" or not wrapper.settings_dict["OPTIONS"].get("pool"):
            continue
        retry_connecting_steadily()
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


def left_in_transaction(wrapper: BaseDatabaseWrapper) -> bool:
    """Whether a bug left ``wrapper`` inside a transaction: a kept connection in that
    state is closed, never used again."""
    return wrapper.in_atomic_block or (
        wrapper.connection is not None and not wrapper.get_autocommit()
    )


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
        if left_in_transaction(wrapper):
            wrapper.close()  # never lend it again
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
