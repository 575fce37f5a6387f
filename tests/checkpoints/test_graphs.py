"""Real graphs through DjangoSaver give what they give with LangGraph's InMemorySaver."""

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from checkpoints_app.models import Checkpoint
from tests.checkpoints import graphs


def conversation(checkpointer) -> dict:
    """Three turns, history, then a replay and a fork from the first turn's end."""
    app = graphs.chat_graph().compile(checkpointer=checkpointer)
    config = {"configurable": {"thread_id": "chat-1"}}
    results = [graphs.plain(app.invoke(graphs.human(f"q{i}"), config)) for i in range(3)]
    history = [graphs.snapshot_summary(s) for s in app.get_state_history(config)]
    first_turn_end = next(
        s for s in app.get_state_history(config) if s.metadata["step"] == 3 and not s.next
    )
    replayed = graphs.plain(app.invoke(None, first_turn_end.config))
    forked_config = app.update_state(
        first_turn_end.config, graphs.human("changed my mind"), as_node="answer"
    )
    forked = graphs.plain(app.invoke(graphs.human("q-fork"), forked_config))
    latest = graphs.snapshot_summary(app.get_state(config))
    return {
        "results": results,
        "history": history,
        "replayed": replayed,
        "forked": forked,
        "latest": latest,
        "checkpoints": len(list(app.get_state_history(config))),
    }


async def aconversation(checkpointer) -> dict:
    app = graphs.chat_graph().compile(checkpointer=checkpointer)
    config = {"configurable": {"thread_id": "chat-async"}}
    results = [graphs.plain(await app.ainvoke(graphs.human(f"q{i}"), config)) for i in range(3)]
    history = [graphs.snapshot_summary(s) async for s in app.aget_state_history(config)]
    snapshots = [s async for s in app.aget_state_history(config)]
    first_turn_end = next(s for s in snapshots if s.metadata["step"] == 3 and not s.next)
    replayed = graphs.plain(await app.ainvoke(None, first_turn_end.config))
    forked_config = await app.aupdate_state(
        first_turn_end.config, graphs.human("changed my mind"), as_node="answer"
    )
    forked = graphs.plain(await app.ainvoke(graphs.human("q-fork"), forked_config))
    latest = graphs.snapshot_summary(await app.aget_state(config))
    return {
        "results": results,
        "history": history,
        "replayed": replayed,
        "forked": forked,
        "latest": latest,
    }


def approval(checkpointer) -> dict:
    app = graphs.approval_graph().compile(checkpointer=checkpointer)
    config = {"configurable": {"thread_id": "approval-1"}}
    first = app.invoke(graphs.human("please refund"), config)
    paused = graphs.snapshot_summary(app.get_state(config))
    done = app.invoke(Command(resume="yes"), config)
    return {
        "interrupt": graphs.plain([i.value for i in first["__interrupt__"]]),
        "paused": paused,
        "done": graphs.plain(done),
        "history": [graphs.snapshot_summary(s) for s in app.get_state_history(config)],
    }


async def aapproval(checkpointer) -> dict:
    app = graphs.approval_graph().compile(checkpointer=checkpointer)
    config = {"configurable": {"thread_id": "approval-async"}}
    first = await app.ainvoke(graphs.human("please refund"), config)
    paused = graphs.snapshot_summary(await app.aget_state(config))
    done = await app.ainvoke(Command(resume="yes"), config)
    return {
        "interrupt": graphs.plain([i.value for i in first["__interrupt__"]]),
        "paused": paused,
        "done": graphs.plain(done),
        "history": [graphs.snapshot_summary(s) async for s in app.aget_state_history(config)],
    }


def subgraph(checkpointer) -> dict:
    app = graphs.parent_graph().compile(checkpointer=checkpointer)
    config = {"configurable": {"thread_id": "parent-1"}}
    app.invoke(graphs.human("I want a shirt"), config)
    state = app.get_state(config, subgraphs=True)
    inner = state.tasks[0].state
    done = app.invoke(Command(resume="M"), config)
    return {
        "paused_next": list(state.next),
        "inner_next": list(inner.next),
        "inner_namespace": inner.config["configurable"]["checkpoint_ns"].split(":")[0],
        "inner_interrupts": [i.value for i in state.tasks[0].interrupts],
        "done": graphs.plain(done),
    }


def test_a_multi_turn_conversation_replays_and_forks_as_with_the_memory_saver(threaded_saver):
    ours = conversation(threaded_saver)

    assert ours == conversation(InMemorySaver())
    assert len(ours["history"]) == 3 * 5  # input + 4 steps a turn
    assert ours["results"][2]["messages"][-1] == ("ai", "answer 3")
    assert ours["replayed"] == ours["results"][0]
    assert ours["forked"]["messages"][-1] == ("ai", "answer 2")
    assert Checkpoint.objects.filter(thread_id="chat-1").count() == ours["checkpoints"]


async def test_an_async_conversation_replays_and_forks_as_with_the_memory_saver(threaded_saver):
    ours = await aconversation(threaded_saver)

    assert ours == await aconversation(InMemorySaver())
    assert ours["forked"]["messages"][-1] == ("ai", "answer 2")


def test_an_interrupt_pauses_and_a_resume_command_finishes_as_with_the_memory_saver(
    threaded_saver,
):
    ours = approval(threaded_saver)

    assert ours == approval(InMemorySaver())
    assert ours["paused"]["next"] == ["review"]
    assert ours["paused"]["interrupts"][0]["question"] == "approve the refund?"
    assert ours["done"]["messages"][-1] == ("ai", "published (reviewed: yes)")


async def test_an_async_interrupt_and_resume_match_the_memory_saver(threaded_saver):
    ours = await aapproval(threaded_saver)

    assert ours == await aapproval(InMemorySaver())
    assert ours["done"]["notes"] == ["reviewed: yes"]


def test_a_subgraph_checkpoints_in_its_own_namespace_and_resumes(threaded_saver):
    ours = subgraph(threaded_saver)

    assert ours == subgraph(InMemorySaver())
    assert ours["inner_next"] == ["ask"]
    assert ours["inner_namespace"] == "order"
    assert ours["done"]["messages"][-2:] == [("ai", "ordered, size M"), ("ai", "bye")]
    namespaces = set(
        Checkpoint.objects.filter(thread_id="parent-1").values_list("checkpoint_ns", flat=True)
    )
    assert "" in namespaces
    assert any(ns.startswith("order:") for ns in namespaces)


def test_update_state_as_a_node_writes_a_checkpoint_the_next_run_continues_from(threaded_saver):
    from langgraph.checkpoint.memory import InMemorySaver as Memory

    def run(checkpointer):
        app = graphs.chat_graph().compile(checkpointer=checkpointer)
        config = {"configurable": {"thread_id": "update-1"}}
        app.invoke(graphs.human("q"), config)
        updated = app.update_state(config, {"notes": ["by hand"]}, as_node="tool")
        after = app.get_state(config)
        return {
            "source": after.metadata["source"],
            "next": list(after.next),
            "notes": after.values["notes"],
            "points_at_new": updated["configurable"]["checkpoint_id"]
            == after.config["configurable"]["checkpoint_id"],
            "continued": graphs.plain(app.invoke(None, config)),
        }

    ours = run(threaded_saver)

    assert ours == run(Memory())
    assert ours["source"] == "update"
    assert ours["next"] == ["answer"]
    assert ours["points_at_new"] is True
