"""Deleting a thread: its checkpoints go with it, and a run it had going stops cleanly."""

import logging
import threading

import pytest

from checkpoints_app.models import Checkpoint, CheckpointBlob, CheckpointWrite
from core import state
from tests.factories import make_session
from tests.threads.test_runtime import finished, wait_until
from threads_app import runtime, services
from threads_app.models import Run, RunEvent, Thread

pytestmark = pytest.mark.django_db(transaction=True)


def _saved(thread_id):
    thread_id = str(thread_id)
    return sum(
        model.objects.filter(thread_id=thread_id).count()
        for model in (Checkpoint, CheckpointBlob, CheckpointWrite)
    )


def _new_thread(alice):
    return services.create_thread(make_session(alice), services.resolve_workflow("pipeline"))


def test_a_deleted_thread_takes_its_checkpoints_along(alice, celery_worker):
    thread = _new_thread(alice)
    other = _new_thread(alice)
    for each in (thread, other):
        assert finished(services.create_run(each, input={"steps": 2})).status == "success"
    assert _saved(thread.pk) and _saved(other.pk)

    services.delete_thread(thread.pk, actor="ops")

    assert not Thread.objects.filter(pk=thread.pk).exists()
    assert _saved(thread.pk) == 0
    assert _saved(other.pk)  # another thread's checkpoints stay


def test_a_deleted_session_takes_its_threads_checkpoints_along(alice, celery_worker):
    thread = _new_thread(alice)
    assert finished(services.create_run(thread, input={"steps": 2})).status == "success"
    assert _saved(thread.pk)

    state.delete_state("session", thread.session_id, actor="ops")

    assert not Thread.objects.filter(pk=thread.pk).exists()
    assert _saved(thread.pk) == 0


def test_a_run_whose_thread_is_deleted_stops_at_its_next_step_and_leaves_nothing(alice, caplog):
    thread = _new_thread(alice)
    # Held back from the workers; this test runs it in a thread of its own.
    run = services.create_run(thread, input={"steps": 200, "delay_s": 0.05}, after_seconds=3600)
    Run.objects.filter(pk=run.pk).update(not_before=None)
    result = {}

    def work():
        try:
            result["status"] = runtime.execute_run(run.pk)
        except Exception as exc:
            result["status"] = exc

    worker = threading.Thread(target=work)
    caplog.set_level(logging.INFO, logger="threads_app.runtime")
    worker.start()
    wait_until(
        lambda: RunEvent.objects.filter(run_id=run.pk, event="progress").count() >= 2,
        message="the run's first steps",
    )

    services.delete_thread(thread.pk, actor="ops")
    worker.join(30)

    assert result["status"] == "deleted"
    assert _saved(thread.pk) == 0  # nor any written after the delete
    assert not RunEvent.objects.filter(run_id=run.pk).exists()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert any("was deleted while it ran" in r.getMessage() for r in caplog.records)
