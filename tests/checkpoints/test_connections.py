"""Connection hygiene: LangGraph's threads, event loops, Celery tasks and ASGI requests
leave no Django connection open behind them."""

import asyncio
import threading
import time

import pytest
from django.db import connection
from django.db.backends.signals import connection_created

from checkpoints_app.connections import ConnectionPool
from checkpoints_app.models import Checkpoint
from checkpoints_app.saver import (
    DjangoSaver,
    close_pooled_connections,
    pooled_connection_count,
)
from config.celery import app as celery_app
from tests.checkpoints import graphs

POOLED = "_statehouse_checkpoint_pool"


class Opened:
    """The Django connections opened while the test runs, and in which thread."""

    def __init__(self):
        self.records: list[tuple[threading.Thread, object, object]] = []
        self.backends: dict[int, bool] = {}  # PostgreSQL backend pid: opened by the saver?

    def __call__(self, sender, connection, **kwargs):
        # The wrapper, and the driver connection it got (under Django's connection
        # pool, a wrapper "connects" by taking one of the pool's).
        self.records.append((threading.current_thread(), connection, connection.connection))
        if connection.vendor == "postgresql":
            pid = connection.connection.info.backend_pid
            self.backends[pid] = self.backends.get(pid, False) or getattr(connection, POOLED, False)

    def strays(self):
        """Connections opened by a thread other than the main one, not lent by the pool."""
        return [
            (thread.name, wrapper)
            for thread, wrapper, _ in self.records
            if thread is not threading.main_thread() and not getattr(wrapper, POOLED, False)
        ]

    def pooled(self):
        """The saver's pooled wrappers that connected, each once."""
        found = {id(w): w for _, w, _ in self.records if getattr(w, POOLED, False)}
        return list(found.values())

    def sockets(self):
        """The distinct driver connections the saver's pooled wrappers used."""
        found = {id(raw): raw for _, w, raw in self.records if getattr(w, POOLED, False)}
        return list(found.values())


@pytest.fixture
def opened():
    recorder = Opened()
    connection_created.connect(recorder, weak=False, dispatch_uid="checkpoint-tests-opened")
    yield recorder
    connection_created.disconnect(dispatch_uid="checkpoint-tests-opened")


def turns(saver, thread_id, count):
    app = graphs.chat_graph().compile(checkpointer=saver)
    config = {"configurable": {"thread_id": thread_id}}
    return [app.invoke(graphs.human(f"q{i}"), config)["turns"] for i in range(count)]


def eventually(condition, attempts=100) -> bool:
    """Whether ``condition()`` becomes true, checking every 50 ms for a while."""
    for _ in range(attempts):
        if condition():
            return True
        time.sleep(0.05)
    return False


def live_backend_pids() -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return {row[0] for row in cursor.fetchall()}


def test_langgraphs_writer_threads_borrow_pooled_connections_and_leave_none(threaded_saver, opened):
    assert turns(threaded_saver, "pool-1", 6) == [1, 2, 3, 4, 5, 6]

    assert opened.strays() == []
    pooled = opened.pooled()
    still_open = [wrapper for wrapper in pooled if wrapper.connection is not None]
    assert 1 <= len(opened.sockets()) < 6 * 9  # reused: not one per put or put_writes
    assert len(still_open) == pooled_connection_count() <= ConnectionPool.max_idle
    assert Checkpoint.objects.filter(thread_id="pool-1").count() == 6 * 5

    close_pooled_connections()

    assert pooled_connection_count() == 0
    assert all(wrapper.connection is None for wrapper in pooled)


async def test_async_calls_run_off_the_event_loop_on_pooled_connections(threaded_saver, opened):
    app = graphs.chat_graph().compile(checkpointer=threaded_saver)
    config = {"configurable": {"thread_id": "async-1"}}

    results = await asyncio.gather(
        *(
            app.ainvoke(graphs.human("hi"), {"configurable": {"thread_id": f"async-{i}"}})
            for i in range(4)
        )
    )
    latest = await threaded_saver.aget_tuple(config)

    assert [r["turns"] for r in results] == [1, 1, 1, 1]
    assert latest.metadata["step"] == 3
    assert opened.strays() == []
    still_open = [wrapper for wrapper in opened.pooled() if wrapper.connection is not None]
    assert len(still_open) == pooled_connection_count() <= ConnectionPool.max_idle


def test_a_thread_whose_connection_is_open_uses_it_instead_of_borrowing(threaded_saver, opened):
    # A request thread reads a row (its connection opens, the request's end closes it),
    # then the state: borrowing a second connection there could wait forever on a full
    # database pool while the thread holds the first one.
    turns(threaded_saver, "own-1", 1)
    close_pooled_connections()
    opened.records.clear()
    config = {"configurable": {"thread_id": "own-1"}}
    seen = {}

    def request_like():
        try:
            seen["rows"] = Checkpoint.objects.filter(thread_id="own-1").count()
            own = connection.connection
            seen["latest"] = threaded_saver.get_tuple(config)
            seen["still own"] = connection.connection is own
        finally:
            connection.close()

    thread = threading.Thread(target=request_like, name="request-thread")
    thread.start()
    thread.join(30)

    assert seen["rows"] == 5
    assert seen["latest"].checkpoint["channel_values"]["turns"] == 1
    assert seen["still own"] is True
    assert opened.pooled() == []  # no borrowed connection was opened
    assert pooled_connection_count() == 0


def test_postgres_backends_do_not_grow_with_runs(on_postgres, threaded_saver, opened):
    # Only the backends this process opened count: other processes (the test Celery
    # worker, servers of earlier tests) come and go on the same database.
    django_pool = connection.settings_dict["OPTIONS"].get("pool")
    # With Django's pool, connections go back to it after each call (its size bounds
    # them); without, the saver keeps a few idle ones, plus the test's own connection.
    limit = django_pool["max_size"] if django_pool else ConnectionPool.max_idle + 1

    def ours_open() -> set[int]:
        return set(opened.backends) & live_backend_pids()

    turns(threaded_saver, "pg-1", 2)
    # (a connection closed by the client leaves pg_stat_activity a moment later)
    assert eventually(lambda: 1 <= len(ours_open()) <= limit)
    turns(threaded_saver, "pg-1", 8)  # ~70 more saver calls: no more backends kept
    assert eventually(lambda: 1 <= len(ours_open()) <= limit)
    if django_pool:
        assert pooled_connection_count() == 0  # nothing held between calls
        assert connection.pool.get_stats()["pool_size"] <= django_pool["max_size"]
    else:
        saver_backends = {pid for pid, by_saver in opened.backends.items() if by_saver}
        kept = saver_backends & live_backend_pids()  # idle, for the next call
        assert 1 <= len(kept) <= ConnectionPool.max_idle
        close_pooled_connections()
        # (a connection closed by the client leaves pg_stat_activity a moment later)
        assert eventually(lambda: not (saver_backends & live_backend_pids()))


@celery_app.task(name="tests.checkpoints.chat_turn", bind=True)
def chat_turn(self, thread_id: str, text: str) -> dict:
    app = graphs.chat_graph().compile(checkpointer=DjangoSaver())
    result = app.invoke(graphs.human(text), {"configurable": {"thread_id": thread_id}})
    return {"task_id": self.request.id, "turns": result["turns"]}


def test_the_saver_works_inside_a_celery_task_run_in_a_worker_thread(threaded_saver, opened):
    results = []

    def worker():  # as Celery's thread pool runs a task: its tracer, in a thread of its own
        for text in ("hello", "again"):
            outcome = chat_turn.apply(args=["celery-1", text])
            results.append(outcome.result if outcome.successful() else outcome.traceback)

    thread = threading.Thread(target=worker, name="celery-pool-worker")
    thread.start()
    thread.join(60)

    assert [r["turns"] for r in results] == [1, 2]
    assert all(r["task_id"] for r in results)
    assert threaded_saver.get_tuple({"configurable": {"thread_id": "celery-1"}}) is not None
    assert opened.strays() == []


@pytest.mark.urls("tests.checkpoints.asgi_urls")
async def test_the_saver_works_inside_asgi_requests(threaded_saver, async_client, opened):
    first = await async_client.get("/async/web-1/")
    second = await async_client.get("/sync/web-1/")

    assert first.status_code == 200
    assert first.json() == {"last": "answer 1", "turns": 1}
    assert second.json() == {"last": "answer 2", "turns": 2}
    latest = await threaded_saver.aget_tuple({"configurable": {"thread_id": "web-1"}})
    assert latest.checkpoint["channel_values"]["turns"] == 2
    assert opened.strays() == []


def test_a_numbered_statement_runs_as_its_percent_s_form(db, on_postgres):
    """run_statement's ``numbered`` (PostgreSQL): the %s placeholders made $1, $2, ...
    once per text (a literal %% stays a %), and the same rows as psycopg's own
    conversion gives."""
    from core.cursors import _numbered, run_statement

    statement = "SELECT %s::int + %s::int, 'a%%b', %s::text"
    assert _numbered(statement) == "SELECT $1::int + $2::int, 'a%b', $3::text"
    params = [2, 3, "x"]
    for numbered in (False, True, True):  # the last one from the cached cursor
        assert run_statement(connection, statement, params, fetch=True, numbered=numbered) == [
            (5, "a%b", "x")
        ]
