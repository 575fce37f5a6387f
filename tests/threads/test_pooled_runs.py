"""A run executed in a process with Django's connection pool (DB_POOL_MAX) holds none of
the pool's connections while its graph runs: its executor's thread and its heartbeat
give theirs back after each write, so runs never starve the checkpoint saver and the
requests of their process."""

import json

import pytest
from django.db import connection

from tests.checkpoints.test_pool_health import run_with_djangos_pool

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="Django's connection pool: PostgreSQL only"
)

# In a process with a pool of one connection: a run of three slow steps, its heartbeat
# beating every 0.1 s, and, while it runs, another thread that needs the connection.
SCRIPT = """
import json, threading, time
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from sessions_app.services import create_session
from threads_app import runtime, services
settings.STATEHOUSE_HEARTBEAT_S = 0.1
owner = get_user_model().objects.create_user("pooled-%d" % time.time_ns())
session = create_session(owner, "pooled", {}, actor=owner)
thread = services.create_thread(session, services.resolve_workflow("pipeline"), {})
run = services.create_run(thread, input={"steps": 3, "delay_s": 0.4}, send=False)
connection.close()  # back to the pool
done = []
executing = threading.Thread(target=lambda: done.append(runtime.execute_run(run.pk)))
executing.start()
time.sleep(0.9)  # the run is in its graph, its heartbeat has beaten
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
running = executing.is_alive()
executing.join()
print(json.dumps({"running": running, "waited_s": waited[0], "status": done[0]}))
"""


def test_a_run_leaves_the_pool_to_others_while_its_graph_runs(on_postgres, transactional_db):
    found = json.loads(run_with_djangos_pool(SCRIPT))

    assert found["running"] is True  # the other thread asked while the run went on
    # It got the pool's one connection at once, not after the run (the pool's timeout
    # is 30 s; the run's steps take 1.2 s).
    assert found["waited_s"] < 0.3, found
    assert found["status"] == "success"
