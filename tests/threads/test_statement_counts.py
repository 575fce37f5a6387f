"""The statements a worker sends for a 1-step run on an existing thread, pinned so that
they cannot creep back (issue 16).

A run's start is one transaction, and on PostgreSQL its writes are one statement
(core.write_batch). A worker's claim: the run and its thread locked and read in one
statement (with the session and workflow the execution needs, and whether another run
goes first), the run running, the thread busy, the session's counts, the restore point,
both StateEvents in one INSERT. A run a server executes at once (threads_app/inprocess.py)
has no claim: it is created running, in the transaction that creates it. A run's finish
is one transaction too: the run and thread locked, the last events with the look for a
run queued behind it, the run final, the thread idle with its values, the session's
counts, both StateEvents. Between them: the event log at each step with the run's cancel
request read in the same statement, and the checkpoints (pinned by
tests/checkpoints/test_statement_counts.py). No row the worker wrote is read again, and
the final state is the one the graph streamed.
"""

import re
import threading

import pytest
from django.db import connection
from django.db.backends.signals import connection_created

from core import state
from history_app.models import StateEvent
from tests.factories import make_session
from threads_app import runtime, services
from threads_app.models import Run, RunEvent, Thread

pytestmark = pytest.mark.django_db(transaction=True)

# As the database's statement log counts them (Django logs BEGIN and COMMIT too). On
# PostgreSQL a transaction's writes go out as one statement (core.write_batch); SQLite
# sends each on its own.
POSTGRESQL = connection.vendor == "postgresql"
# BEGIN, lock run+thread, [UPDATE run, UPDATE thread, UPDATE session, INSERT restore
# point, INSERT StateEvents], COMMIT
CLAIM = 4 if POSTGRESQL else 8
# PostgreSQL: read thread, [look for a run of the thread ahead of it, INSERT run
# (running), UPDATE thread, UPDATE session, INSERT restore point, INSERT StateEvents]
# with no transaction (Django logs a BEGIN and a COMMIT it never sends: see
# test_a_run_created_running_is_a_read_and_one_statement_alone). SQLite: BEGIN, lock
# thread, look, INSERT run, UPDATE thread, UPDATE session, INSERT restore point, INSERT
# StateEvents, COMMIT
CREATED_RUNNING = 4 if POSTGRESQL else 9
# PostgreSQL: [INSERT the last events, UPDATE run, UPDATE thread, UPDATE session, INSERT
# StateEvents] with no transaction, then the look for the run queued next (Django logs a
# BEGIN and a COMMIT it never sends: see test_a_run_finish_is_one_statement_alone).
# SQLite: BEGIN, read run+thread, INSERT the last events returning the next pending run,
# UPDATE run, UPDATE thread, UPDATE session, INSERT StateEvents, COMMIT
FINISH = 4 if POSTGRESQL else 8
WORKER_THREAD = CLAIM + FINISH + 2


class Recorder:
    """Every statement on every connection (the saver's pool, LangGraph's threads)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.statements: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        with self.lock:
            self.statements.append(" ".join(sql.split()))
        return execute(sql, params, many, context)

    def watch(self, sender, connection, **kwargs):
        if self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)


@pytest.fixture
def recorder():
    found = Recorder()
    connection.ensure_connection()
    found.watch(None, connection)
    connection_created.connect(found.watch, weak=False, dispatch_uid="run-statement-counts")
    yield found
    connection_created.disconnect(dispatch_uid="run-statement-counts")
    connection.execute_wrappers.remove(found)


@pytest.fixture
def thread(alice, monkeypatch):
    """A thread that has run once; runs are executed here, not sent to a worker."""
    monkeypatch.setattr(services, "enqueue", lambda *args, **kwargs: None)
    thread = services.create_thread(make_session(alice), services.resolve_workflow("pipeline"))
    first = services.create_run(thread, input={"steps": 1})
    assert runtime.execute_run(first.pk) == "success"
    return thread


def test_a_run_start(thread, django_assert_max_num_queries):
    run = services.create_run(thread, input={"steps": 1})

    with django_assert_max_num_queries(CLAIM):
        claimed = runtime.claim_run(run.pk, "worker-a")

    assert claimed.status == Run.Status.RUNNING
    # What the execution needs came with the lock.
    with django_assert_max_num_queries(0):
        assert claimed.thread.status == Thread.Status.BUSY
        assert claimed.thread.session.owner_id == thread.session.owner_id
        assert claimed.workflow.graph_id == "pipeline"


def test_a_run_finish(thread, django_assert_max_num_queries, monkeypatch):
    finish = runtime.Execution._finish
    finished = []

    def counted(self, *args):
        with django_assert_max_num_queries(FINISH):
            finished.append(finish(self, *args))
        return finished[-1]

    monkeypatch.setattr(runtime.Execution, "_finish", counted)
    run = services.create_run(thread, input={"steps": 1})

    assert runtime.execute_run(run.pk) == "success"
    assert finished == [Run.Status.SUCCESS]


class Wire:
    """The statements the client sends on the test thread's connection, from libpq's
    trace of it (Django's query log shows a BEGIN and a COMMIT it may never send)."""

    def __init__(self, path):
        self.path = path
        self.statements: list[str] = []

    def __enter__(self):
        connection.ensure_connection()
        self.out = self.path.open("w")
        connection.connection.pgconn.trace(self.out.fileno())
        return self

    def __exit__(self, *exc):
        connection.connection.pgconn.untrace()
        self.out.close()
        parsed: dict[str, str] = {}  # the statements parsed (prepared), by name
        bound = ""
        for line in self.path.read_text().splitlines():
            if "\tF\t" not in line:
                continue  # the server's
            message, rest = [*line.split("\t", 4)[3:], ""][:2]
            rest = rest.strip()
            if message == "Query":  # a statement sent as text, run at once
                self.statements.append(rest.strip('"'))
            elif message == "Parse":  # "name" "text" ...
                name, text = re.match(r'"([^"]*)" "(.*)" \d+', rest).groups()
                parsed[name] = text
            elif message == "Bind":  # "portal" "statement" ...
                bound = re.match(r'"[^"]*" "([^"]*)"', rest).group(1)
            elif message == "Execute":  # the statement bound last, run
                self.statements.append(parsed[bound])


@pytest.mark.skipif(not POSTGRESQL, reason="a statement alone: PostgreSQL's write batch")
def test_a_run_finish_is_one_statement_alone(thread, monkeypatch, tmp_path):
    finish = runtime.Execution._finish
    wires = []

    def traced(self, *args):
        with Wire(tmp_path / "finish.trace") as wire:
            wires.append(wire)
            return finish(self, *args)

    monkeypatch.setattr(runtime.Execution, "_finish", traced)
    run = services.create_run(thread, input={"steps": 1})
    assert runtime.execute_run(run.pk) == "success"

    # Every write of the end in one statement, then the look for a run queued next: no
    # BEGIN, no COMMIT.
    [wire] = wires
    written, look = wire.statements
    assert written.startswith("WITH guard AS") and "UPDATE" in written
    assert look.startswith("SELECT") and '"status" = ' in look


@pytest.mark.skipif(not POSTGRESQL, reason="a statement alone: PostgreSQL's write batch")
def test_a_run_created_running_is_a_read_and_one_statement_alone(thread, tmp_path):
    with Wire(tmp_path / "start.trace") as wire:
        run = services.create_run(thread, input={"steps": 1}, claim_for="host:1:run-1")

    assert run.status == Run.Status.RUNNING
    read, written = wire.statements
    assert read.startswith("SELECT") and "FOR UPDATE" not in read
    assert written.startswith("WITH guard AS") and "NOT EXISTS" in written
    thread.refresh_from_db()
    assert thread.status == Thread.Status.BUSY


@pytest.mark.skipif(not POSTGRESQL, reason="the thread read without its lock: PostgreSQL")
def test_a_run_created_running_on_a_thread_changed_since_it_was_read(thread, monkeypatch):
    read = services._lock_for_run

    def changed_after_the_read(thread_id, user, lock=True):
        found = read(thread_id, user, lock)
        if not lock:  # another writer, between the read and the write
            state.update_state("thread", thread_id, {"metadata": {"by": "another writer"}})
        return found

    monkeypatch.setattr(services, "_lock_for_run", changed_after_the_read)
    run = services.create_run(thread, input={"steps": 1}, claim_for="host:1:run-1")

    # Created running all the same, under the thread's lock, keeping the other's change.
    assert run.status == Run.Status.RUNNING
    thread.refresh_from_db()
    assert thread.status == Thread.Status.BUSY
    assert thread.metadata["by"] == "another writer"
    assert Run.objects.filter(thread=thread, status=Run.Status.RUNNING).count() == 1


def test_a_finish_whose_run_changed_meanwhile_reads_it_under_its_lock(thread):
    run = services.create_run(thread, input={"steps": 1})
    claimed = runtime.claim_run(run.pk, "worker-a")
    # An operator's change after the claim: the execution's copy is out of date.
    state.update_state("run", run.pk, {"metadata": {"note": "touched"}})

    status, finished = runtime.execute_claimed(claimed, "worker-a")

    assert status == Run.Status.SUCCESS
    assert finished.metadata == {"note": "touched"}  # read again, not overwritten
    assert Run.objects.get(pk=run.pk).status == Run.Status.SUCCESS
    kinds = RunEvent.objects.filter(run=run).values_list("event", flat=True)
    assert list(kinds).count("end") == 1


def test_a_whole_run_on_an_existing_thread(thread, django_assert_max_num_queries, recorder):
    run = services.create_run(thread, input={"steps": 1})
    recorder.statements.clear()

    with django_assert_max_num_queries(WORKER_THREAD):
        assert runtime.execute_run(run.pk) == "success"

    # And the checkpoint writes: three puts, two put_writes (PostgreSQL: one statement
    # each; SQLite: a put with blobs is a transaction of BEGIN IMMEDIATE and two).
    writes = 3 if connection.vendor == "postgresql" else 7
    statements = recorder.statements
    assert len(statements) <= WORKER_THREAD + writes, "\n".join(statements)
    thread.refresh_from_db()
    assert thread.status == Thread.Status.IDLE
    assert thread.values["completed_steps"] == [1, 2]  # its first run did step 1
    assert StateEvent.objects.filter(entity_id=run.pk).count() == 3  # created, running, done
    events = RunEvent.objects.filter(run=run).order_by("seq").values_list("event", flat=True)
    assert list(events) == ["metadata", "values", "custom", "progress", "values", "end"]


def test_a_run_created_running(thread, django_assert_max_num_queries):
    with django_assert_max_num_queries(CREATED_RUNNING):
        run = services.create_run(thread, input={"steps": 1}, claim_for="host:1:run-1")

    assert run.status == Run.Status.RUNNING
    assert run.claimed_by == "host:1:run-1"
    assert run.lease_expires_at is not None
    thread.refresh_from_db()
    assert thread.status == Thread.Status.BUSY
    # One state change per entity: the run created running, the thread busy.
    assert StateEvent.objects.filter(entity_id=run.pk).count() == 1
    assert StateEvent.objects.filter(entity_id=thread.pk, new__status="busy").count() == 2


def test_a_whole_run_created_running(thread, django_assert_max_num_queries):
    with django_assert_max_num_queries(CREATED_RUNNING + FINISH + 2):
        run = services.create_run(thread, input={"steps": 1}, claim_for="host:1:run-1")
        status, finished = runtime.execute_claimed(run, run.claimed_by)

    assert status == Run.Status.SUCCESS
    assert finished.thread.values["completed_steps"] == [1, 2]
    assert StateEvent.objects.filter(entity_id=run.pk).count() == 2  # created running, done
