"""Benchmark: DjangoSaver against the savers LangGraph users compare it with.

    .venv/bin/python bench/checkpoints.py

On PostgreSQL (BENCH_DATABASE_URL, default postgres://root@127.0.0.1:5432/statehouse_bench,
created and migrated if missing) DjangoSaver runs against langgraph-checkpoint-postgres's
PostgresSaver on the same database; on SQLite (a scratch file in var/bench/, the project's
embedded settings) against langgraph-checkpoint-sqlite's SqliteSaver. Each backend runs
in a child process so that Django is configured exactly as the project configures it.

Workloads, each timed in short alternating rounds (the best round of each kept):

- graph: a real 3-node StateGraph (add_messages) invoked repeatedly on one thread;
- put: ``put`` + ``put_writes`` of a realistic checkpoint (the graph's, 12 messages;
  DjangoSaver stores each put's writes with the next put, and the last with a flush);
- get_tuple: the latest checkpoint of a thread;
- list50: ``list(limit=50)`` on a 300-checkpoint thread made by the graph.

The graph keeps the last 12 messages (as LangGraph recommends for long chats: trim or
summarize), so that a checkpoint stays the size of a real one. Decoding messages is the
serializer's work, the same for every saver, and it is most of a list's time: two more
lines show the extremes, ``list50-untrimmed`` (every checkpoint holds the whole chat) and
``list50-small-state`` (a workflow whose state is a few short fields: no blob to decode,
what is left is the saver's own cost).

One line per workload: operations per second for each saver, and the time ratio
DjangoSaver / anchor (below 1.0: DjangoSaver is faster).
"""

import gc
import operator
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, TypedDict

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
DEFAULT_URL = "postgres://root@127.0.0.1:5432/statehouse_bench"
ROUNDS = 9


def main() -> None:
    if len(sys.argv) > 1:
        run(sys.argv[1])
        return
    VAR.mkdir(parents=True, exist_ok=True)
    base = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "STATEHOUSE_VAR_DIR": str(VAR),
        "LOG_LEVEL": "WARNING",
    }
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    ensure_postgres_database(url)
    subprocess.run(
        [sys.executable, __file__, "postgres"], env={**base, "DATABASE_URL": url}, check=True
    )
    sqlite_env = {key: value for key, value in base.items() if key != "DATABASE_URL"}
    for name in ("statehouse.sqlite3", "anchor.sqlite3"):
        for suffix in ("", "-wal", "-shm"):
            (VAR / f"{name}{suffix}").unlink(missing_ok=True)
    subprocess.run([sys.executable, __file__, "sqlite"], env=sqlite_env, check=True)


def ensure_postgres_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    name = url.rsplit("/", 1)[1].split("?")[0]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


# --- the graph -----------------------------------------------------------------------


def build_graph(trim: int = 12):
    from langchain_core.messages import AIMessage, AnyMessage, RemoveMessage, ToolMessage
    from langgraph.graph import END, START, StateGraph
    from langgraph.graph.message import add_messages

    class State(TypedDict, total=False):
        messages: Annotated[list[AnyMessage], add_messages]
        turns: int
        topics: Annotated[list[str], operator.add]

    def plan(state: State):
        question = state["messages"][-1].content
        call = {
            "name": "search",
            "args": {"query": question},
            "id": f"call_{uuid.uuid4().hex[:12]}",
        }
        return {
            "messages": [AIMessage(content="", tool_calls=[call])],
            "turns": state.get("turns", 0) + 1,
        }

    def act(state: State):
        call = state["messages"][-1].tool_calls[0]
        found = f"Found 3 documents about {call['args']['query']!r}: " + "lorem ipsum " * 12
        return {
            "messages": [ToolMessage(content=found, tool_call_id=call["id"])],
            "topics": [call["args"]["query"][:20]],
        }

    def answer(state: State):
        text = "Here is what I found. " + state["messages"][-1].content[:160]
        update = [AIMessage(content=text)]
        if trim:  # keep the window at `trim` messages once this one is added
            update += [RemoveMessage(id=m.id) for m in state["messages"][: -(trim - 1)]]
        return {"messages": update}

    graph = StateGraph(State)
    graph.add_node("plan", plan)
    graph.add_node("act", act)
    graph.add_node("answer", answer)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "act")
    graph.add_edge("act", "answer")
    graph.add_edge("answer", END)
    return graph


def build_workflow_graph():
    """A 3-node ticket workflow whose state is a few short fields (all stored inline)."""
    from langgraph.graph import END, START, StateGraph

    class Ticket(TypedDict, total=False):
        messages: list  # the question, as the other graph gets it
        category: str
        priority: int
        summary: str
        replies: int
        status: str

    def classify(state: Ticket):
        text = state["messages"][-1].content
        return {"category": "billing" if "plan" in text else "other", "priority": len(text) % 5}

    def draft(state: Ticket):
        return {"summary": f"{state['category']} question, priority {state['priority']}"}

    def close(state: Ticket):
        return {"replies": state.get("replies", 0) + 1, "status": "answered"}

    graph = StateGraph(Ticket)
    graph.add_node("classify", classify)
    graph.add_node("draft", draft)
    graph.add_node("close", close)
    graph.add_edge(START, "classify")
    graph.add_edge("classify", "draft")
    graph.add_edge("draft", "close")
    graph.add_edge("close", END)
    return graph


def question(i: int):
    from langchain_core.messages import HumanMessage

    return {"messages": [HumanMessage(content=f"Question {i}: how do I change my plan?")]}


# --- workloads -----------------------------------------------------------------------


class Workloads:
    """The same operations against one saver."""

    def __init__(self, saver, graph, sample):
        self.saver = saver
        self.app = graph.compile(checkpointer=saver)
        self.sample = sample  # (checkpoint, metadata, new_versions, writes)

    def graph(self, n: int) -> None:
        config = {"configurable": {"thread_id": f"graph-{uuid.uuid4()}"}}
        for i in range(n):
            self.app.invoke(question(i), config)

    def put(self, n: int) -> None:
        from langgraph.checkpoint.base.id import uuid6

        checkpoint, metadata, new_versions, writes = self.sample
        config = {"configurable": {"thread_id": f"put-{uuid.uuid4()}", "checkpoint_ns": ""}}
        for _ in range(n):
            stored = self.saver.put(
                config, {**checkpoint, "id": str(uuid6())}, metadata, new_versions
            )
            self.saver.put_writes(stored, writes, str(uuid.uuid4()), "~__pregel_pull, answer")
            config = stored
        flush = getattr(self.saver, "flush", None)
        if flush is not None:
            flush()  # DjangoSaver stores writes with the next put: the last ones, here

    def prepare_thread(self, turns: int) -> dict:
        config = {"configurable": {"thread_id": f"list-{uuid.uuid4()}"}}
        for i in range(turns):
            self.app.invoke(question(i), config)
        return config

    def get_tuple(self, config: dict, n: int) -> None:
        for _ in range(n):
            assert self.saver.get_tuple(config) is not None

    def list50(self, config: dict, n: int) -> None:
        # As get_state_history lists: the thread's root namespace, newest first.
        config = {"configurable": {**config["configurable"], "checkpoint_ns": ""}}
        for _ in range(n):
            assert len(list(self.saver.list(config, limit=50))) == 50


def sample_checkpoint(graph):
    """A realistic checkpoint: the graph's state after a few turns, as the loop puts it."""
    from langgraph.checkpoint.memory import InMemorySaver

    class Recorder(InMemorySaver):
        last = None

        def put(self, config, checkpoint, metadata, new_versions):
            Recorder.last = (checkpoint, metadata, new_versions)
            return super().put(config, checkpoint, metadata, new_versions)

    app = graph.compile(checkpointer=Recorder())
    config = {"configurable": {"thread_id": "sample"}}
    for i in range(3):  # 3 turns: 10 messages
        app.invoke(question(i), config)
    checkpoint, metadata, new_versions = Recorder.last
    state = app.get_state(config)
    assert len(state.values["messages"]) == 12
    writes = [("messages", state.values["messages"][-1:]), ("topics", ["billing"])]
    return checkpoint, metadata, new_versions, writes


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def compare(backend: str, name: str, n: int, django, anchor) -> None:
    """Time ``n`` operations of each saver: ROUNDS short alternating rounds, the best
    round of each kept (a machine busy for a moment spoils a round, not the result)."""
    per_round = max(1, n // 3)
    best = {"django": float("inf"), "anchor": float("inf")}
    for _ in range(ROUNDS):
        gc.collect()
        best["anchor"] = min(best["anchor"], timed(anchor, per_round))
        gc.collect()
        best["django"] = min(best["django"], timed(django, per_round))
    ops = {key: per_round / seconds for key, seconds in best.items()}
    ratio = best["django"] / best["anchor"]
    print(
        f"checkpoints {backend} {name}: django {ops['django']:.1f} ops/s, "
        f"anchor {ops['anchor']:.1f} ops/s, ratio {ratio:.2f}",
        flush=True,
    )


def run(backend: str) -> None:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from checkpoints_app.saver import DjangoSaver, close_pooled_connections

    call_command("migrate", verbosity=0)
    graph = build_graph()
    sample = sample_checkpoint(graph)
    django_saver = DjangoSaver()
    if backend == "postgres":
        from django.db import connection
        from langgraph.checkpoint.postgres import PostgresSaver

        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE checkpoints_app_checkpoint, checkpoints_app_checkpointblob, "
                "checkpoints_app_checkpointwrite"
            )
        manager = PostgresSaver.from_conn_string(os.environ["DATABASE_URL"])
        anchor_saver = manager.__enter__()
        anchor_saver.setup()
        with anchor_saver._cursor() as cursor:
            cursor.execute("TRUNCATE checkpoints, checkpoint_blobs, checkpoint_writes")
    else:
        from langgraph.checkpoint.sqlite import SqliteSaver

        manager = SqliteSaver.from_conn_string(str(VAR / "anchor.sqlite3"))
        anchor_saver = manager.__enter__()
        anchor_saver.setup()

    try:
        ours, theirs = (
            Workloads(django_saver, graph, sample),
            Workloads(anchor_saver, graph, sample),
        )
        compare(backend, "graph", 30, ours.graph, theirs.graph)
        compare(backend, "put", 300, ours.put, theirs.put)
        threads = {w: w.prepare_thread(60) for w in (ours, theirs)}  # 5 checkpoints a turn
        for w, config in threads.items():
            assert len(list(w.saver.list(config))) == 300
        compare(
            backend,
            "get_tuple",
            1000,
            lambda n: ours.get_tuple(threads[ours], n),
            lambda n: theirs.get_tuple(threads[theirs], n),
        )
        compare(
            backend,
            "list50",
            30,
            lambda n: ours.list50(threads[ours], n),
            lambda n: theirs.list50(threads[theirs], n),
        )
        # The same list on a thread whose state holds the whole chat, and on one whose
        # state is small (a ticket workflow: no messages to decode).
        for name, other, n in (
            ("list50-untrimmed", build_graph(trim=0), 3),
            ("list50-small-state", build_workflow_graph(), 30),
        ):
            pair = Workloads(django_saver, other, sample), Workloads(anchor_saver, other, sample)
            made = {w: w.prepare_thread(60) for w in pair}
            compare(
                backend,
                name,
                n,
                lambda n, w=pair[0], c=made[pair[0]]: w.list50(c, n),
                lambda n, w=pair[1], c=made[pair[1]]: w.list50(c, n),
            )
    finally:
        manager.__exit__(None, None, None)
        close_pooled_connections()


if __name__ == "__main__":
    main()
