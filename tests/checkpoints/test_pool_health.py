"""A pooled connection the server ended (a restart, pg_terminate_backend) is never lent
again, and a healthy one is lent without a round trip: the saver's own pool and Django's
psycopg pool check a connection before lending it only when it sat idle longer than
``STATEHOUSE_DB_CHECK_IDLE_S``, its last use ended in an error, or the server sent it
something (checkpoints_app.connections.lent_unchecked)."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import psycopg_pool
import pytest
from django.db import connection, connections

from checkpoints_app import connections as saver_connections
from checkpoints_app.connections import pool as _pool
from checkpoints_app.saver import DjangoSaver, pooled_connection_count
from core import cursors
from tests.workers import worker_env

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"configurable": {"thread_id": "pool-health", "checkpoint_ns": ""}}


def in_a_thread(fn):
    """``fn()`` in another thread (so the saver borrows a pooled connection)."""
    box = {}

    def body():
        try:
            box["result"] = fn()
        except Exception as exc:
            box["error"] = exc

    thread = threading.Thread(target=body, name="langgraph-like")
    thread.start()
    thread.join(30)
    if "error" in box:
        raise box["error"]
    return box.get("result")


def idle_backend_pids() -> list[int]:
    with _pool._lock:
        wrappers = list(_pool._idle[connection.alias])
    return [w.connection.info.backend_pid for w in wrappers if w.connection is not None]


def terminate(pids) -> None:
    """End these backends and wait until they are gone (pg_terminate_backend's timeout),
    so that the server has closed their connections when this returns."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM unnest(%s::int[]) AS pid", [pids]
        )


@pytest.fixture
def checks(monkeypatch):
    """The checks the saver's pool makes (``is_usable``: one round trip each)."""
    made = []
    cls = type(connections["default"])
    is_usable = cls.is_usable

    def counted(self):
        made.append(self)
        return is_usable(self)

    monkeypatch.setattr(cls, "is_usable", counted)
    return made


# --- the saver's pool -----------------------------------------------------------------


def test_the_savers_pool_lends_a_connection_used_just_now_without_a_check(
    on_postgres, transactional_db, checks
):
    saver = DjangoSaver()
    in_a_thread(lambda: saver.get_tuple(CONFIG))
    first = idle_backend_pids()

    in_a_thread(lambda: saver.get_tuple(CONFIG))
    in_a_thread(lambda: saver.get_tuple(CONFIG))

    assert idle_backend_pids() == first  # the same connection, lent again
    assert checks == []


def test_the_savers_pool_checks_a_connection_idle_too_long(
    on_postgres, transactional_db, checks, settings
):
    saver = DjangoSaver()
    in_a_thread(lambda: saver.get_tuple(CONFIG))
    first = idle_backend_pids()
    settings.STATEHOUSE_DB_CHECK_IDLE_S = 0  # every idle connection has sat too long

    in_a_thread(lambda: saver.get_tuple(CONFIG))

    assert len(checks) == 1
    assert idle_backend_pids() == first  # it passed: still the same connection


def test_the_savers_pool_checks_a_connection_whose_last_use_failed(
    on_postgres, transactional_db, checks
):
    def failing_call():
        with (
            saver_connections.saver_connection(connection.alias) as borrowed,
            pytest.raises(Exception, match="no_such_table"),
        ):
            cursors.run_statement(borrowed, "SELECT * FROM no_such_table", [])

    in_a_thread(failing_call)
    first = idle_backend_pids()

    in_a_thread(lambda: DjangoSaver().get_tuple(CONFIG))
    in_a_thread(lambda: DjangoSaver().get_tuple(CONFIG))

    assert len(checks) == 1  # after the error only
    assert idle_backend_pids() == first


def test_the_savers_pool_does_not_lend_a_connection_the_server_ended(
    on_postgres, transactional_db, checks
):
    saver = DjangoSaver()
    assert in_a_thread(lambda: saver.get_tuple(CONFIG)) is None
    dead = idle_backend_pids()
    assert dead and pooled_connection_count() >= 1

    terminate(dead)

    # What the runtime does after a PostgreSQL restart: a saver call from another thread,
    # here at once (well within STATEHOUSE_DB_CHECK_IDLE_S): the server's goodbye is seen.
    assert in_a_thread(lambda: saver.get_tuple(CONFIG)) is None
    alive = idle_backend_pids()
    assert alive and not set(alive) & set(dead)
    assert len(checks) == 1  # the dead one's, which failed


# --- Django's pool's check ------------------------------------------------------------


@pytest.fixture
def raw_connection(on_postgres, db):
    """A psycopg connection of its own, as Django's pool keeps them (autocommit)."""
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as raw:
        yield raw


@pytest.fixture
def pool_checks(monkeypatch):
    """The round trips of psycopg_pool's own check, which check_when_idle runs when needed."""
    made = []
    check = psycopg_pool.ConnectionPool.check_connection

    def counted(conn):
        made.append(conn)
        check(conn)

    monkeypatch.setattr(psycopg_pool.ConnectionPool, "check_connection", staticmethod(counted))
    return made


def test_djangos_pool_check_runs_only_for_a_connection_idle_too_long(
    raw_connection, pool_checks, settings
):
    check = saver_connections.check_when_idle

    check(raw_connection)  # never lent before: checked
    check(raw_connection)  # lent again at once: not
    check(raw_connection)
    assert len(pool_checks) == 1

    settings.STATEHOUSE_DB_CHECK_IDLE_S = 0
    check(raw_connection)
    assert len(pool_checks) == 2


def test_djangos_pool_check_refuses_a_connection_the_server_ended(raw_connection, pool_checks):
    check = saver_connections.check_when_idle
    check(raw_connection)
    terminate([raw_connection.info.backend_pid])

    with pytest.raises(psycopg.OperationalError):
        check(raw_connection)  # within the idle threshold, but the server said goodbye
    assert len(pool_checks) == 2


def run_with_djangos_pool(script: str) -> str:
    """The last line ``script`` prints, run by ``manage.py shell`` with the production
    settings and DB_POOL_MAX (a psycopg pool of one connection)."""
    environ = worker_env(connection.settings_dict["NAME"])
    environ.update(DB_POOL_MAX="1", DB_POOL_MIN="1")
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def test_djangos_pool_replaces_a_connection_the_server_ended(on_postgres, transactional_db):
    """The production settings with DB_POOL_MAX: a process takes a pooled connection,
    returns it, the server ends it, and the next request gets a live one."""
    script = (
        "from django.db import connection\n"
        "import psycopg\n"
        "with connection.cursor() as c:\n"
        "    c.execute('SELECT pg_backend_pid()'); pid = c.fetchone()[0]\n"
        "connection.close()  # back to the pool\n"
        "with psycopg.connect(connection.pool.conninfo, autocommit=True) as other:\n"
        "    other.execute('SELECT pg_terminate_backend(%s, 10000)', [pid])\n"
        "with connection.cursor() as c:\n"
        "    c.execute('SELECT pg_backend_pid()'); again = c.fetchone()[0]\n"
        "print('replaced' if again != pid else 'same')\n"
    )
    assert run_with_djangos_pool(script) == "replaced"


def test_djangos_pool_lends_a_connection_used_just_now_without_a_check(
    on_postgres, transactional_db
):
    script = (
        "import json, psycopg_pool\n"
        "from django.db import connection\n"
        "from checkpoints_app.connections import check_when_idle\n"
        "checks = []\n"
        "check = psycopg_pool.ConnectionPool.check_connection\n"
        "psycopg_pool.ConnectionPool.check_connection = staticmethod(\n"
        "    lambda conn: checks.append(1) or check(conn))\n"
        "pids = []\n"
        "for _ in range(3):\n"
        "    with connection.cursor() as c:\n"
        "        c.execute('SELECT pg_backend_pid()'); pids.append(c.fetchone()[0])\n"
        "    connection.close()  # back to the pool\n"
        "print(json.dumps({'installed': connection.pool._check is check_when_idle,\n"
        "                  'checks': len(checks), 'connections': len(set(pids))}))\n"
    )
    found = json.loads(run_with_djangos_pool(script))

    # The pool's connection, made just now, is lent without a check, and so again at once.
    assert found == {"installed": True, "checks": 0, "connections": 1}


def test_djangos_pool_counts_idle_time_from_when_a_connection_came_back(
    on_postgres, transactional_db
):
    """A connection held longer than the idle threshold (by a run, say) and lent again
    as soon as it came back is not checked; one that then sat idle that long is."""
    script = (
        "import json, time, psycopg_pool\n"
        "from django.conf import settings\n"
        "from django.db import connection\n"
        "checks = []\n"
        "check = psycopg_pool.ConnectionPool.check_connection\n"
        "psycopg_pool.ConnectionPool.check_connection = staticmethod(\n"
        "    lambda conn: checks.append(1) or check(conn))\n"
        "settings.STATEHOUSE_DB_CHECK_IDLE_S = 0.3\n"
        "def use(hold=0.0):\n"
        "    with connection.cursor() as c:\n"
        "        c.execute('SELECT 1')\n"
        "    time.sleep(hold)  # held, in use\n"
        "    connection.close()  # back to the pool\n"
        "use()  # the first lend, of a connection made just now: not checked\n"
        "use(hold=0.5)  # lent at once: not checked, then held past the threshold\n"
        "use()  # lent at once after it came back: not checked\n"
        "after_return = len(checks)\n"
        "time.sleep(0.5)\n"
        "use()  # idle past the threshold: checked\n"
        "print(json.dumps([after_return, len(checks)]))\n"
    )
    assert json.loads(run_with_djangos_pool(script)) == [0, 1]


def test_djangos_pool_made_again_in_a_worker_keeps_the_idle_only_check(
    on_postgres, transactional_db
):
    """Celery's fixup closes Django's pool in a prefork child (celery#10554); the task
    hooks give the pool Django makes again the idle-only check, not one per lend."""
    script = (
        "from django.db import connection\n"
        "from checkpoints_app.connections import check_when_idle\n"
        "from config.celery import release_task_connections\n"
        "before = connection.pool._check is check_when_idle\n"
        "connection.close_pool()  # what the fixup does in a forked worker\n"
        "fresh = connection.pool._check is check_when_idle\n"
        "release_task_connections()  # task_prerun\n"
        "after = connection.pool._check is check_when_idle\n"
        "print(before, fresh, after)\n"
    )
    assert run_with_djangos_pool(script) == "True False True"
