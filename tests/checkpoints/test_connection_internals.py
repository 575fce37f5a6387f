"""checkpoints_app.connections reaches into Django's connection handling: these tests
fail when a Django (or psycopg) upgrade changes what it relies on (then fix the module,
and run bench/checkpoints.py)."""

import threading

import psycopg_pool
import pytest
from django.db import connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorDebugWrapper

from checkpoints_app import connections as saver_connections
from core import cursors


def test_the_wrapper_attributes_it_uses_exist(db):
    for name in (
        "close_if_health_check_failed",
        "ensure_connection",
        "validate_thread_sharing",
        "validate_no_broken_transaction",
        "inc_thread_sharing",
        "is_usable",
        "get_autocommit",
        "make_cursor",
        "make_debug_cursor",
    ):
        assert callable(getattr(BaseDatabaseWrapper, name)), name
    connection.ensure_connection()
    for name in ("connection", "close_at", "errors_occurred", "in_atomic_block"):
        assert hasattr(connection, name), name
    assert isinstance(connection.queries_logged, bool)
    assert connection.execute_wrappers == []
    assert hasattr(connection.wrap_database_errors, "__enter__")
    assert callable(CursorDebugWrapper.debug_sql)


def test_a_created_connection_can_be_installed_for_one_thread_and_removed(db):
    seen = {}

    def borrow():
        created = connections.create_connection("default")
        created.inc_thread_sharing()
        connections["default"] = created
        seen["installed"] = connections["default"] is created
        del connections["default"]
        seen["fresh"] = connections["default"] is not created
        connections["default"].close()
        created.close()

    worker = threading.Thread(target=borrow)
    worker.start()
    worker.join(10)

    assert seen == {"installed": True, "fresh": True}


def test_only_initialized_connections_are_listed_without_creating_one(db):
    seen = {}

    def look():
        seen["before"] = [w.alias for w in connections.all(initialized_only=True)]
        connections["default"]
        seen["after"] = [w.alias for w in connections.all(initialized_only=True)]
        seen["found"] = saver_connections._thread_connection("default") is connections["default"]
        connections["default"].close()

    worker = threading.Thread(target=look)
    worker.start()
    worker.join(10)

    assert seen == {"before": [], "after": ["default"], "found": True}


def test_a_statement_runs_on_the_cached_raw_cursor_as_on_djangos(db):
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 + %s", [1])
        expected = cursor.fetchall()

    rows = cursors.run_statement(connection, "SELECT 1 + %s", [1], fetch=True)

    assert [tuple(row) for row in rows] == [tuple(row) for row in expected]
    raw, kept, _ = connection.__dict__[cursors.CURSORS]
    assert raw is connection.connection  # kept per raw connection
    assert kept


def test_on_postgresql_django_still_turns_preparing_off(db, on_postgres):
    connection.ensure_connection()
    # Django sets psycopg's prepare_threshold to None; the saver relies on that to
    # prepare only its own statements (see connections._raw_cursor).
    assert connection.connection.prepare_threshold in (None, cursors.NEVER)
    # The debug cursor of server-side binding logs the statement composed by Django.
    assert connection.ops.compose_sql("SELECT %s", [1]) == "SELECT 1"


def test_djangos_pool_refuses_a_check_in_its_options_so_the_check_is_set_on_the_pool(
    db, on_postgres
):
    # Django 5.2 passes check= itself and OPTIONS["pool"] on top (ticket #37075): when an
    # upgrade accepts a "check" option, pass check_when_idle there instead.
    settings_dict = {
        **connection.settings_dict,
        "OPTIONS": {**connection.settings_dict["OPTIONS"], "pool": {"check": print}},
    }
    wrapper = type(connections["default"])(settings_dict, alias="pool-check-option")
    with pytest.raises(TypeError, match="multiple values for keyword argument 'check'"):
        assert wrapper.pool is None  # never reached: making the pool raises


def _one_connection_pool(**callbacks) -> "psycopg_pool.ConnectionPool":
    """A psycopg pool of one connection to the test database, not opened yet."""
    return psycopg_pool.ConnectionPool(
        kwargs={**connection.get_connection_params(), "autocommit": True},
        min_size=1,
        max_size=1,
        open=False,
        **callbacks,
    )


def _first_lend(pool) -> object:
    """Open ``pool``, lend its connection once, close it; the connection lent."""
    try:
        pool.open(wait=True)
        with pool.connection() as lent:
            return lent
    finally:
        pool.close()


def test_psycopg_pools_check_is_the_callable_it_keeps_in_check(db, on_postgres):
    # What check_django_pools_when_idle replaces: psycopg_pool's default check, kept in
    # ConnectionPool._check and called on each getconn.
    assert callable(psycopg_pool.ConnectionPool.check_connection)
    checked = []
    pool = _one_connection_pool(check=psycopg_pool.ConnectionPool.check_connection)
    assert pool._check is psycopg_pool.ConnectionPool.check_connection
    pool._check = checked.append

    assert checked == [_first_lend(pool)]


def test_psycopg_pools_configure_is_the_callable_it_keeps_in_configure(db, on_postgres):
    # What _stamp_uses wraps to note when a connection was made: ConnectionPool._configure,
    # called on each connection the pool makes, before it is lent.
    made = []
    pool = _one_connection_pool(configure=print)
    assert pool._configure is print
    pool._configure = made.append

    assert made == [_first_lend(pool)]


def test_psycopg_pools_reconnect_delays_come_from_the_class_attributes_it_sets(db):
    """retry_connecting_steadily sets AttemptWithBackoff's first delay and backoff, which
    psycopg_pool reads when a connection attempt fails: tries every half second."""
    from psycopg_pool.base import AttemptWithBackoff

    assert {"INITIAL_DELAY", "DELAY_BACKOFF", "DELAY_JITTER"} <= set(vars(AttemptWithBackoff))
    saver_connections.retry_connecting_steadily()
    attempt = AttemptWithBackoff(timeout=60)
    delays = []
    for now in (0.0, 1.0, 2.0, 3.0):
        attempt.update_delay(now)
        delays.append(attempt.delay)
    assert all(0.4 <= delay <= 0.6 for delay in delays), delays
