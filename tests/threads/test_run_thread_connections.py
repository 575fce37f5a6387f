"""A run executed by a server process (threads_app/inprocess.py) takes none of the
connections of Django's pool (DB_POOL_MAX): its run thread and its heartbeat have
connections of their own, so runs never starve the requests and checkpoint writes of
their process, however many run slots it has."""

import json

import pytest
from django.db import connection

from tests.checkpoints.test_pool_health import run_with_djangos_pool

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="Django's connection pool: PostgreSQL only"
)

# In a process with a pool of one connection: two runs of three slow steps executed by
# its run threads at once, their heartbeats beating every 0.1 s, and, while they run,
# another thread that needs the pool's connection. Then a third run on a run thread the
# first two used: its connection kept, not opened again.
SCRIPT = """
import json, threading, time
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from sessions_app.services import create_session
from threads_app import inprocess, services
settings.STATEHOUSE_HEARTBEAT_S = 0.1
settings.STATEHOUSE_SERVER_RUN_SLOTS = 2
owner = get_user_model().objects.create_user("pooled-%d" % time.time_ns())
session = create_session(owner, "pooled", {}, actor=owner)
workflow = services.resolve_workflow("pipeline")
def start(steps, delay_s):
    thread = services.create_thread(session, workflow, {})
    assert inprocess.reserve()
    run = services.create_run(
        thread, input={"steps": steps, "delay_s": delay_s}, claim_for=inprocess.claimant()
    )
    connection.close()  # back to the pool, as a request gives it back (runs/wait)
    return inprocess.start(run)
executions = [start(3, 0.4), start(3, 0.4)]
time.sleep(0.9)  # the runs are in their graphs, their heartbeats have beaten
waited = []
def other():
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    waited.append(time.monotonic() - started)
    connection.close()
helper = threading.Thread(target=other)
helper.start()
helper.join()
running = [not execution.done() for execution in executions]
statuses = [execution.result()[0] for execution in executions]
def backends():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        )
        return cursor.fetchone()[0]
before = backends()
statuses.append(start(1, 0).result()[0])
after = backends()
connection.close()
print(json.dumps(
    {"running": running, "waited_s": waited[0], "statuses": statuses,
     "backends": [before, after]}
))
"""


def test_server_runs_leave_the_pool_to_others_and_keep_their_connections(
    on_postgres, transactional_db
):
    found = json.loads(run_with_djangos_pool(SCRIPT))

    assert found["running"] == [True, True]  # the other thread asked while the runs went on
    # It got the pool's one connection at once, not after the runs (the pool's timeout
    # is 30 s; the runs' steps take 1.2 s).
    assert found["waited_s"] < 0.3, found
    assert found["statuses"] == ["success", "success", "success"]
    # The third run used a run thread's kept connection: no backend opened for it.
    before, after = found["backends"]
    assert after == before, found
