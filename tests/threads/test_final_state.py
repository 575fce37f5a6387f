"""The thread's values at the end of a run: after a success that stopped at no
interrupt, the last values the graph streamed (no second read of the checkpoint); else
LangGraph's get_state. Either way what get_state says once the run is over."""

import json

import pytest
from langgraph.pregel import Pregel

from core.thread_state import cached_values
from tests.factories import make_session
from threads_app import lifecycle, registry, runtime, services
from threads_app.models import Thread

pytestmark = pytest.mark.django_db(transaction=True)
GET_STATE = Pregel.get_state  # the tests' own reads, not counted by ``reads``

OUTPUT_SCHEMA_GRAPH = """
from typing_extensions import TypedDict
from langgraph.graph import StateGraph, START, END


class State(TypedDict, total=False):
    n: int
    secret: str


class Output(TypedDict):
    n: int


builder = StateGraph(State, output_schema=Output)
builder.add_node("inc", lambda s: {"n": s.get("n", 0) + 1, "secret": "kept"})
builder.add_edge(START, "inc")
builder.add_edge("inc", END)
graph = builder.compile()
"""


@pytest.fixture
def reads(monkeypatch):
    """The get_state calls of the runs (the worker's end-of-run reads)."""
    made = []
    get_state = Pregel.get_state

    def counted(self, config, **kwargs):
        made.append(config)
        return get_state(self, config, **kwargs)

    monkeypatch.setattr(Pregel, "get_state", counted)
    return made


@pytest.fixture
def run_here(monkeypatch):
    """Runs executed in this thread, not sent to a worker."""
    monkeypatch.setattr(services, "enqueue", lambda *args, **kwargs: None)

    def run(thread, **request):
        created = services.create_run(thread, **request)
        return runtime.execute_run(created.pk)

    return run


def new_thread(owner, graph_id):
    return services.create_thread(make_session(owner), services.resolve_workflow(graph_id))


def graph_state(thread):
    graph = registry.load_graph(thread.workflow.graph_id, checkpointer=_saver())
    return GET_STATE(graph, {"configurable": {"thread_id": str(thread.pk)}})


def _saver():
    from checkpoints_app.saver import DjangoSaver

    return DjangoSaver()


def assert_cached_as_get_state_says(thread):
    thread = Thread.objects.get(pk=thread.pk)
    snapshot = graph_state(thread)
    assert thread.values == cached_values(snapshot.values)
    assert thread.interrupts == lifecycle.snapshot_interrupts(snapshot)
    return thread


@pytest.mark.parametrize(
    "graph_id,request_",
    [
        ("pipeline", {"input": {"steps": 2}}),
        ("chat", {"input": {"messages": [{"role": "user", "content": "Where is order 42?"}]}}),
    ],
)
def test_a_success_keeps_what_the_graph_streamed(alice, run_here, reads, graph_id, request_):
    thread = new_thread(alice, graph_id)
    assert run_here(thread, **request_) == "success"
    assert run_here(thread, **request_) == "success"  # on a thread with checkpoints

    assert reads == []
    thread = assert_cached_as_get_state_says(thread)
    assert thread.status == Thread.Status.IDLE
    assert thread.result == thread.values


def test_an_interrupt_is_read_from_the_checkpoint(alice, run_here, reads):
    thread = new_thread(alice, "approval")

    assert run_here(thread, input={"request": "refund"}) == "success"
    assert len(reads) == 1
    waiting = assert_cached_as_get_state_says(thread)
    assert waiting.status == Thread.Status.INTERRUPTED
    assert waiting.interrupts[0]["value"]["question"] == "Approve this draft, or edit it?"

    assert run_here(thread, command={"resume": {"action": "approve"}}) == "success"
    assert len(reads) == 1  # resumed to the end: what it streamed
    done = assert_cached_as_get_state_says(thread)
    assert (done.status, done.values["approved"]) == (Thread.Status.IDLE, True)


def test_a_static_interrupt_is_read_from_the_checkpoint(alice, run_here, reads):
    thread = new_thread(alice, "pipeline")

    assert run_here(thread, input={"steps": 2}, interrupt_after=["step"]) == "success"

    assert len(reads) == 1
    waiting = assert_cached_as_get_state_says(thread)
    assert waiting.status == Thread.Status.INTERRUPTED  # nodes still to run


def test_a_graph_whose_output_is_not_its_state_is_read_from_the_checkpoint(
    alice, run_here, reads, tmp_path, settings
):
    (tmp_path / "own.py").write_text(OUTPUT_SCHEMA_GRAPH)
    (tmp_path / "langgraph.json").write_text(
        json.dumps({"dependencies": ["."], "graphs": {"own": "./own.py:graph"}})
    )
    settings.STATEHOUSE_GRAPHS_FILE = str(tmp_path / "langgraph.json")
    registry.reset()
    try:
        services.sync_system_workflows()
        thread = new_thread(alice, "own")
        assert run_here(thread, input={"n": 1}) == "success"
        assert len(reads) == 1
        thread = assert_cached_as_get_state_says(thread)
        assert thread.values == {"n": 2, "secret": "kept"}  # the state, not the output
    finally:
        registry.reset()
