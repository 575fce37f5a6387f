"""A transient database error is not a graph's error: the run is retried, not failed.

Transient: the connection lost, the server restarting or shutting down, a serialization
failure or deadlock (psycopg's or Django's OperationalError/InterfaceError, SQLSTATE
classes 08, 57P01-57P03, 40001, 40P01). Such an attempt puts the run back to pending and
it resumes from its last checkpoint; a claim that fails on one is retried by the task.
"""

import threading
import time
from unittest import mock

import psycopg
import psycopg.errors
import pytest
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection

from checkpoints_app.saver import DjangoSaver, close_pooled_connections
from tests.factories import make_session
from threads_app import runtime, services, tasks
from threads_app.models import Run, RunEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _close_pooled_connections():
    """Runs here borrow the saver's pooled connections in LangGraph's threads."""
    yield
    close_pooled_connections()


def wrapped(error: Exception) -> Exception:
    """``error`` as Django raises it: its own class, raised from the driver's."""
    django_class = (
        OperationalError if isinstance(error, psycopg.OperationalError) else InterfaceError
    )
    try:
        try:
            raise error
        except Exception as exc:
            raise django_class(str(exc)) from exc
    except Exception as outer:
        return outer


class StrangeDatabaseError(DatabaseError):
    def __init__(self, sqlstate):
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CrashShutdown("crash"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.InterfaceError("the connection is closed"),
        wrapped(psycopg.errors.AdminShutdown("terminating connection")),
        wrapped(psycopg.InterfaceError("the connection is lost")),
        OperationalError("server closed the connection unexpectedly"),
        StrangeDatabaseError("08006"),
        StrangeDatabaseError("57P03"),
    ],
    ids=repr,
)
def test_connection_loss_restarts_and_serialization_failures_are_transient(error):
    assert runtime.is_transient_db_error(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a graph's own bug"),
        KeyError("completed_steps"),
        RuntimeError("GraphRecursionError: recursion limit"),
        IntegrityError("duplicate key value violates unique constraint"),
        psycopg.errors.UniqueViolation("duplicate key"),
        psycopg.errors.UndefinedTable("relation does not exist"),
        StrangeDatabaseError("22P02"),
    ],
    ids=repr,
)
def test_a_graphs_own_errors_and_bad_statements_are_not_transient(error):
    assert not runtime.is_transient_db_error(error)


def test_the_retry_backoff_doubles_up_to_a_cap():
    delays = [runtime.retry_delay(attempt) for attempt in range(1, 9)]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_real_terminated_connection_is_a_transient_error(on_postgres):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    with psycopg.connect(_conninfo()) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(Exception) as caught, connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert runtime.is_transient_db_error(caught.value)
    runtime.drop_broken_connection()
    with connection.cursor() as cursor:  # a new connection, not the broken one
        cursor.execute("SELECT 1")


def _conninfo() -> str:
    settings = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        dbname=settings["NAME"],
        user=settings["USER"] or None,
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        password=settings["PASSWORD"] or None,
    )


# --- the runtime --------------------------------------------------------------------


@pytest.fixture
def pipeline_run(alice):
    thread = services.create_thread(make_session(alice), services.resolve_workflow("pipeline"))
    with mock.patch.object(services, "enqueue"):
        return services.create_run(
            thread, input={"steps": 4}, stream_mode=["custom"], max_attempts=3
        )


def steps_run(run) -> dict[int, int]:
    counts: dict[int, int] = {}
    for data in RunEvent.objects.filter(run=run, event="custom").values_list("data", flat=True):
        counts[data["step"]] = counts.get(data["step"], 0) + 1
    return counts


def fail_once(monkeypatch, target, name, after_calls: int, error: Exception):
    """Make ``target.name`` raise ``error`` at its call number ``after_calls + 1``."""
    original = getattr(target, name)
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == after_calls + 1:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, flaky)
    return calls


def test_an_attempt_that_loses_the_database_is_retried_from_its_checkpoint(
    pipeline_run, monkeypatch
):
    run = pipeline_run
    # The saver's third write fails as a server restart makes it fail.
    fail_once(
        monkeypatch,
        DjangoSaver,
        "put",
        2,
        wrapped(
            psycopg.errors.AdminShutdown("terminating connection due to administrator command")
        ),
    )
    sent = []
    monkeypatch.setattr(services, "enqueue", lambda run_id, countdown=None: sent.append(countdown))

    assert runtime.execute_run(run.pk) == "retrying"

    run.refresh_from_db()
    assert run.status == "pending"
    assert run.attempt == 1
    assert run.claimed_by == ""
    assert "administrator command" in run.error
    assert sent == [runtime.retry_delay(1)]
    assert not RunEvent.objects.filter(run=run, event__in=("end", "error")).exists()
    run.thread.refresh_from_db()
    assert run.thread.status == "busy"  # not "error"

    assert runtime.execute_run(run.pk) == "success"

    run.refresh_from_db()
    assert run.attempt == 2
    assert run.error == ""
    run.thread.refresh_from_db()
    assert run.thread.status == "idle"
    assert run.thread.values["completed_steps"] == [1, 2, 3, 4]
    executions = steps_run(run)
    assert sorted(executions) == [1, 2, 3, 4]
    assert sum(1 for n in executions.values() if n > 1) <= 1  # the step cut off, at most
    assert RunEvent.objects.filter(run=run, event="end").count() == 1


def test_a_graphs_own_error_still_fails_the_run(pipeline_run, monkeypatch):
    fail_once(monkeypatch, DjangoSaver, "put", 1, ValueError("a bug in the graph"))
    monkeypatch.setattr(services, "enqueue", lambda *a, **k: None)

    assert runtime.execute_run(pipeline_run.pk) == "error"

    pipeline_run.refresh_from_db()
    assert pipeline_run.status == "error"
    assert "ValueError: a bug in the graph" in pipeline_run.error


def test_a_run_whose_last_attempt_failed_transiently_gives_up_naming_why(pipeline_run, monkeypatch):
    Run.objects.filter(pk=pipeline_run.pk).update(max_attempts=1)
    fail_once(monkeypatch, DjangoSaver, "put", 0, OperationalError("connection lost"))
    monkeypatch.setattr(services, "enqueue", lambda *a, **k: None)

    assert runtime.execute_run(pipeline_run.pk) == "retrying"
    assert runtime.execute_run(pipeline_run.pk) == "skipped"

    pipeline_run.refresh_from_db()
    assert pipeline_run.status == "error"
    assert pipeline_run.error == "gave up after 1 attempt(s): OperationalError: connection lost"


def test_a_heartbeat_that_fails_keeps_beating(pipeline_run, monkeypatch, settings):
    settings.STATEHOUSE_HEARTBEAT_S = 0.01
    run = runtime.claim_run(pipeline_run.pk, "worker-h")
    heartbeat = runtime.Heartbeat(run, "worker-h")
    fail_once(monkeypatch, runtime.Heartbeat, "beat", 0, OperationalError("connection lost"))
    beats = threading.Semaphore(0)
    original = heartbeat.beat

    def counted():
        original()
        beats.release()

    heartbeat.beat = counted
    heartbeat.start()
    try:
        assert beats.acquire(timeout=10), "no beat after the failed one"
        assert heartbeat.is_alive()
    finally:
        heartbeat.stop()


def test_a_claim_that_fails_on_the_database_is_retried_by_the_task_in_seconds(
    pipeline_run, monkeypatch
):
    fail_once(monkeypatch, runtime, "claim_run", 0, OperationalError("the database is restarting"))
    retries = []
    retry = tasks.execute_run.retry

    def recording_retry(*args, countdown=None, **kwargs):
        retries.append(countdown)
        return retry(*args, countdown=countdown, **kwargs)

    monkeypatch.setattr(tasks.execute_run, "retry", recording_retry)
    result = tasks.execute_run.apply(args=[str(pipeline_run.pk)])

    assert result.successful() and result.result == "success"
    assert len(retries) == 1
    assert 0 <= retries[0] <= 1  # retry_backoff=1 with full jitter: the first in <= 1 s
    pipeline_run.refresh_from_db()
    assert pipeline_run.status == "success"
    assert pipeline_run.attempt == 1  # the failed claim did not count as an attempt


def test_a_run_whose_connections_are_terminated_mid_run_ends_in_success(
    alice, on_postgres, celery_worker
):
    """The worker's own connections (its task's, the heartbeat's, the saver's pool) are
    ended by the server mid-run, as a restart ends them: the run still succeeds."""
    thread = services.create_thread(make_session(alice), services.resolve_workflow("pipeline"))
    run = services.create_run(thread, input={"steps": 8, "delay_s": 0.2}, stream_mode=["custom"])
    deadline = time.monotonic() + 60
    while RunEvent.objects.filter(run=run, event="custom").count() < 3:
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.05)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 1

    run = services.wait_for_run(run.pk, timeout=60)
    assert run.status == "success", run.error
    thread.refresh_from_db()
    assert thread.values["completed_steps"] == list(range(1, 9))
    executions = steps_run(run)
    assert sorted(executions) == list(range(1, 9))
    assert sum(1 for n in executions.values() if n > 1) <= 1


def test_messages_a_finishing_run_could_not_record_are_recorded_by_its_retry(alice, monkeypatch):
    from history_app import services as history
    from history_app.models import Message

    thread = services.create_thread(make_session(alice), services.resolve_workflow("chat"))
    with mock.patch.object(services, "enqueue"):
        run = services.create_run(thread, input={"messages": [{"role": "user", "content": "Hi"}]})
    fail_once(monkeypatch, history, "record_run_messages", 0, OperationalError("connection lost"))
    monkeypatch.setattr(services, "enqueue", lambda *a, **k: None)

    assert runtime.execute_run(run.pk) == "retrying"
    assert not Message.objects.filter(thread_id=thread.pk).exists()
    assert runtime.execute_run(run.pk) == "success"

    roles = sorted(Message.objects.filter(thread_id=thread.pk).values_list("role", flat=True))
    assert roles.count("user") == 1  # recorded once, by the retry
    assert len(roles) >= 2  # and the assistant's answer
