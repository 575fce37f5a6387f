"""A pooled connection the server ended (a restart, pg_terminate_backend) is never lent
again: the saver's own pool checks an idle connection before lending it, and Django's
psycopg pool is configured with psycopg_pool's ``check``."""

import subprocess
import sys
import threading
from pathlib import Path

from django.db import connection

from checkpoints_app.connections import pool as _pool
from checkpoints_app.saver import DjangoSaver, pooled_connection_count
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
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])


def test_the_savers_pool_does_not_lend_a_connection_the_server_ended(on_postgres, transactional_db):
    saver = DjangoSaver()
    assert in_a_thread(lambda: saver.get_tuple(CONFIG)) is None
    dead = idle_backend_pids()
    assert dead and pooled_connection_count() >= 1

    terminate(dead)

    # What the runtime does after a PostgreSQL restart: a saver call from another thread.
    assert in_a_thread(lambda: saver.get_tuple(CONFIG)) is None
    alive = idle_backend_pids()
    assert alive and not set(alive) & set(dead)


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
        "    other.execute('SELECT pg_terminate_backend(%s)', [pid])\n"
        "with connection.cursor() as c:\n"
        "    c.execute('SELECT pg_backend_pid()'); again = c.fetchone()[0]\n"
        "print('replaced' if again != pid else 'same')\n"
    )
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
    assert result.stdout.strip().splitlines()[-1] == "replaced"
