"""Cancels racing a worker's claim, with real threads on the real database.

Each test holds one side's transaction open while the other side starts, then commits.
On PostgreSQL it waits until the other side is seen waiting on a row lock in
pg_stat_activity; SQLite has no such view, so there it gives the other side half a
second to reach the database's write lock.
"""

import threading
import time

import pytest
from django.db import connection, connections, transaction

from tests.factories import make_session
from threads_app import runtime, services
from threads_app.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pending_run(alice):
    thread = services.create_thread(make_session(alice), services.resolve_workflow("pipeline"))
    # Held back from any worker, then made claimable by hand.
    run = services.create_run(thread, input={"steps": 1}, after_seconds=3600)
    Run.objects.filter(pk=run.pk).update(not_before=None)
    return Run.objects.get(pk=run.pk)


def _in_thread(fn, results):
    def target():
        try:
            results["value"] = fn()
        except Exception as exc:
            results["value"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


def _wait_for_a_lock_wait(timeout=10.0):
    """Block until some backend of this database waits on a row lock."""
    if connection.vendor != "postgresql":
        time.sleep(0.5)
        return
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("no backend ever waited on a lock")


def _race(first, second):
    """Run ``first`` in a transaction held open until ``second`` (started meanwhile in
    another thread) waits on a lock; then commit. Returns both results (or errors)."""
    done_first = threading.Event()
    release = threading.Event()
    results, other = {}, {}

    def hold():
        with transaction.atomic():
            result = first()
            done_first.set()
            release.wait(10)
            return result

    holder = _in_thread(hold, results)
    assert done_first.wait(10)
    waiter = _in_thread(second, other)
    _wait_for_a_lock_wait()
    release.set()
    holder.join(10)
    waiter.join(10)
    return results["value"], other["value"]


def test_a_cancel_during_a_claim_waits_for_it_and_asks_the_running_run_to_stop(pending_run):
    claimed, cancelled = _race(
        lambda: runtime.claim_run(pending_run.pk, "worker-a"),
        lambda: services.cancel_run(pending_run.pk, actor="ops"),
    )

    assert claimed.status == "running"
    assert not isinstance(cancelled, Exception), cancelled
    run = Run.objects.get(pk=pending_run.pk)
    assert run.status == "running"
    assert run.cancel_requested == "interrupt"
    assert run.claimed_by == "worker-a"


def test_a_claim_during_a_cancel_finds_the_run_ended_and_leaves_it(pending_run):
    cancelled, claimed = _race(
        lambda: services.cancel_run(pending_run.pk, action="rollback", actor="ops"),
        lambda: runtime.claim_run(pending_run.pk, "worker-a"),
    )

    assert cancelled is None  # a pending run rolled back is deleted (as LangGraph Server)
    assert claimed is None
    assert not Run.objects.filter(pk=pending_run.pk).exists()


def test_a_state_update_during_a_claim_waits_and_finds_the_thread_busy(pending_run, alice):
    from django.test import Client

    from checkpoints_app.models import Checkpoint

    thread_id = str(pending_run.thread_id)
    browser = Client()
    browser.force_login(alice)
    body = {"values": {"steps": 2}, "as_node": "step"}

    _, response = _race(
        lambda: runtime.claim_run(pending_run.pk, "worker-a"),
        lambda: browser.post(f"/api/threads/{thread_id}/state", body, "application/json"),
    )

    assert response.status_code == 409, response.content
    assert "is busy with a run" in response.json()["detail"]
    assert not Checkpoint.objects.filter(thread_id=thread_id).exists()  # nothing written
