"""The workflow registry: langgraph.json in LangGraph's own format."""

import json
import uuid

import pytest
from langgraph.pregel import Pregel

from threads_app import registry, services
from threads_app.models import Workflow

GRAPH_FILE = '''
from typing_extensions import TypedDict
from langgraph.graph import StateGraph, START, END


class State(TypedDict):
    n: int


def build(config):
    """A factory: the run's config decides the increment."""
    step = config.get("configurable", {}).get("step", 1)
    graph = StateGraph(State)
    graph.add_node("inc", lambda s: {"n": s["n"] + step})
    graph.add_edge(START, "inc")
    graph.add_edge("inc", END)
    return graph


uncompiled = build({})
'''


@pytest.fixture
def own_project(tmp_path, settings):
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "counter.py").write_text(GRAPH_FILE)
    (tmp_path / "pkg_counter_mod.py").write_text(GRAPH_FILE)
    (tmp_path / "langgraph.json").write_text(
        json.dumps(
            {
                "dependencies": ["."],
                "graphs": {
                    "factory": "./agents/counter.py:build",
                    "uncompiled": "./agents/counter.py:uncompiled",
                    "by_module": "pkg_counter_mod:build",
                    "broken": "./agents/missing.py:graph",
                },
            }
        )
    )
    settings.STATEHOUSE_GRAPHS_FILE = str(tmp_path / "langgraph.json")
    registry.reset()
    yield tmp_path
    registry.reset()


def test_the_shipped_file_registers_the_demo_graphs():
    registry.reset()
    assert registry.graph_ids() == ["approval", "chat", "pipeline"]
    assert isinstance(registry.load_graph("chat"), Pregel)


def test_a_users_own_langgraph_json_is_loaded(own_project):
    assert registry.graph_ids() == ["broken", "by_module", "factory", "uncompiled"]
    factory = registry.load_graph("factory", {"configurable": {"step": 5}})
    assert factory.invoke({"n": 1}) == {"n": 6}
    assert registry.load_graph("uncompiled").invoke({"n": 1}) == {"n": 2}
    assert registry.load_graph("by_module").invoke({"n": 0}) == {"n": 1}


def test_a_broken_entry_names_the_graph(own_project):
    with pytest.raises(registry.GraphLoadError, match="'broken'"):
        registry.load_graph("broken")
    with pytest.raises(registry.GraphNotFound, match="nope"):
        registry.load_graph("nope")


def test_a_checkpointer_is_attached_to_a_copy():
    from langgraph.checkpoint.memory import InMemorySaver

    saver = InMemorySaver()
    graph = registry.load_graph("pipeline", checkpointer=saver)
    assert graph.checkpointer is saver
    assert registry.load_graph("pipeline").checkpointer is None


def test_each_graph_gets_a_system_workflow_with_langgraph_servers_id(db):
    services.sync_system_workflows()

    chat = Workflow.objects.get(graph_id="chat", is_system=True)
    assert chat.pk == uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), "chat")
    assert services.resolve_workflow("chat") == chat
    assert services.resolve_workflow(str(chat.pk)) == chat


def test_further_workflows_share_a_graph(db):
    custom = services.create_workflow("pipeline", "slow pipeline", config={"recursion_limit": 99})

    assert custom.graph_id == "pipeline"
    assert not custom.is_system
    assert services.resolve_workflow(custom.pk) == custom
    with pytest.raises(services.WorkflowNotFound):
        services.create_workflow("nope")
