"""The statements DjangoSaver sends for a 1-step run on an existing thread, from every
thread LangGraph calls it from, pinned so that they cannot creep back: the read of the
thread's latest checkpoint and three ``put``, each one statement in autocommit on
PostgreSQL (no BEGIN/COMMIT round trips around it); the two ``put_writes`` send nothing
of their own, their writes go in the statements of the puts that follow them (issue 16:
batched per step); and no check of a pooled connection lent again within
``STATEHOUSE_DB_CHECK_IDLE_S``."""

import operator
import threading
from typing import Annotated, TypedDict

import pytest
from django.db import connection, connections
from django.db.backends.signals import connection_created
from langgraph.graph import END, START, StateGraph

from checkpoints_app.models import Checkpoint, CheckpointBlob, CheckpointWrite

CHECKPOINTS = f'INSERT INTO "{Checkpoint._meta.db_table.upper()}"'
KINDS = {
    "WITH C AS MATERIALIZED": "read",
    CHECKPOINTS: "put",
    f'INSERT INTO "{CheckpointBlob._meta.db_table.upper()}"': "put's blobs",  # SQLite
    f'INSERT INTO "{CheckpointWrite._meta.db_table.upper()}"': "put_writes",
    "BEGIN": "begin",  # SQLite's BEGIN IMMEDIATE (psycopg sends BEGIN without a cursor)
}


def kind(sql: str) -> str:
    text = " ".join(sql.split()).upper()
    if text.startswith("WITH NEW_") and f") {CHECKPOINTS}" in text:
        return "put"  # PostgreSQL: blobs, writes and checkpoint in one statement
    return next((name for start, name in KINDS.items() if text.startswith(start)), text[:60])


def carries_writes(sql: str) -> bool:
    """A PostgreSQL put whose statement stores pending writes too."""
    text = " ".join(sql.split()).upper()
    return kind(sql) == "put" and "NEW_WRITES AS (INSERT" in text


class Recorder:
    """An execute wrapper on every connection: each statement's kind, and whether it ran
    in autocommit (a transaction of its own, without a BEGIN and a COMMIT)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.statements: list[tuple[str, bool]] = []
        self.texts: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        wrapper = context["connection"]
        with self.lock:
            self.statements.append((kind(sql), wrapper.get_autocommit()))
            self.texts.append(sql)
        return execute(sql, params, many, context)

    def watch(self, sender, connection, **kwargs):
        if self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name, _ in self.statements:
            counts[name] = counts.get(name, 0) + 1
        return counts


@pytest.fixture
def recorder():
    found = Recorder()
    connection.ensure_connection()
    found.watch(None, connection)
    connection_created.connect(found.watch, weak=False, dispatch_uid="statement-counts")
    yield found
    connection_created.disconnect(dispatch_uid="statement-counts")
    connection.execute_wrappers.remove(found)


@pytest.fixture
def checks(monkeypatch):
    """The checks of pooled connections (the saver's pool calls ``is_usable``)."""
    made = []
    cls = type(connections["default"])
    is_usable = cls.is_usable

    def counted(self):
        made.append(self)
        return is_usable(self)

    monkeypatch.setattr(cls, "is_usable", counted)
    return made


class State(TypedDict, total=False):
    steps: int
    completed: Annotated[list[int], operator.add]


def one_step_graph(saver):
    def step(state: State):
        return {"completed": [len(state.get("completed") or []) + 1]}

    graph = StateGraph(State)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_edge("step", END)
    return graph.compile(checkpointer=saver)


def test_a_one_step_run_on_an_existing_thread(threaded_saver, recorder, checks):
    graph = one_step_graph(threaded_saver)
    config = {"configurable": {"thread_id": "counted"}}
    graph.invoke({"steps": 1}, config, durability="sync")  # the thread exists
    recorder.statements.clear()
    recorder.texts.clear()
    checks.clear()

    # As the runtime streams a run: LangGraph writes from its thread pool.
    for _ in graph.stream(
        {"steps": 1}, config, stream_mode=["updates", "values"], durability="sync"
    ):
        pass
    counts, statements, checked = recorder.kinds(), list(recorder.statements), list(checks)
    texts = list(recorder.texts)
    left = threaded_saver.pending_write_count()

    assert graph.get_state(config).values["completed"] == [1, 2]
    assert left == 0  # the step's writes went with the checkpoint after it
    if connection.vendor == "postgresql":
        assert counts == {"read": 1, "put": 3}
        # The __start__ task's writes with the step's checkpoint, the step's with the last.
        assert sum(map(carries_writes, texts)) == 2
        assert all(autocommit for _, autocommit in statements)
        assert checked == []  # each connection lent again at once: no check
    else:
        # SQLite: a put with blobs or writes is a transaction of its own (one commit), a
        # statement for each of its tables.
        assert counts == {"read": 1, "put": 3, "put's blobs": 2, "begin": 3, "put_writes": 2}


def test_a_statement_is_prepared_from_its_second_run_on_a_connection(on_postgres, threaded_saver):
    # Preparing is a round trip of its own: a statement run once on a connection (a
    # request's, a task's) is not prepared.
    def prepared() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements")
            return cursor.fetchone()[0]

    config = {"configurable": {"thread_id": "prepared", "checkpoint_ns": ""}}
    connection.close()  # a new connection, as a request's

    found = []
    for _ in range(3):
        threaded_saver.get_tuple(config)
        found.append(prepared())

    assert found == [0, 1, 1]
