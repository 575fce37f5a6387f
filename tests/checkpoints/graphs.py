"""Small real LangGraph graphs for the checkpoint tests, and a way to compare runs."""

import operator
from typing import Annotated, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt


class ChatState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    turns: int
    notes: Annotated[list[str], operator.add]


def chat_graph():
    """agent -> tool -> answer: three nodes, messages accumulate."""

    def agent(state: ChatState):
        question = state["messages"][-1].content
        return {
            "messages": [AIMessage(content=f"looking up {question}")],
            "turns": state.get("turns", 0) + 1,
        }

    def tool(state: ChatState):
        return {"notes": [f"searched {state.get('turns', 0)}"]}

    def answer(state: ChatState):
        return {"messages": [AIMessage(content=f"answer {state.get('turns', 0)}")]}

    graph = StateGraph(ChatState)
    graph.add_node("agent", agent)
    graph.add_node("tool", tool)
    graph.add_node("answer", answer)
    graph.add_edge(START, "agent")
    graph.add_edge("agent", "tool")
    graph.add_edge("tool", "answer")
    graph.add_edge("answer", END)
    return graph


def approval_graph():
    """draft -> review (interrupts for a human) -> publish."""

    def draft(state: ChatState):
        return {"messages": [AIMessage(content="draft: refund 20 EUR")]}

    def review(state: ChatState):
        decision = interrupt(
            {"question": "approve the refund?", "draft": state["messages"][-1].content}
        )
        return {"notes": [f"reviewed: {decision}"]}

    def publish(state: ChatState):
        verdict = state["notes"][-1]
        return {"messages": [AIMessage(content=f"published ({verdict})")]}

    graph = StateGraph(ChatState)
    graph.add_node("draft", draft)
    graph.add_node("review", review)
    graph.add_node("publish", publish)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "review")
    graph.add_edge("review", "publish")
    graph.add_edge("publish", END)
    return graph


def parent_graph():
    """A parent whose middle node is a compiled subgraph (checkpointed in its own
    namespace) that interrupts."""

    def inner_ask(state: ChatState):
        answer = interrupt("which size?")
        return {"notes": [f"size {answer}"]}

    def inner_done(state: ChatState):
        return {"messages": [AIMessage(content=f"ordered, {state['notes'][-1]}")]}

    inner = StateGraph(ChatState)
    inner.add_node("ask", inner_ask)
    inner.add_node("done", inner_done)
    inner.add_edge(START, "ask")
    inner.add_edge("ask", "done")
    inner.add_edge("done", END)

    def greet(state: ChatState):
        return {"messages": [AIMessage(content="hello")]}

    def bye(state: ChatState):
        return {"messages": [AIMessage(content="bye")]}

    graph = StateGraph(ChatState)
    graph.add_node("greet", greet)
    graph.add_node("order", inner.compile())
    graph.add_node("bye", bye)
    graph.add_edge(START, "greet")
    graph.add_edge("greet", "order")
    graph.add_edge("order", "bye")
    graph.add_edge("bye", END)
    return graph


def human(text: str) -> dict:
    return {"messages": [HumanMessage(content=text)]}


def plain(value):
    """Values with the random parts (message ids) taken out, for comparing two runs."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if hasattr(value, "type") and hasattr(value, "content"):  # a message
        return (value.type, value.content)
    return value


def snapshot_summary(snapshot) -> dict:
    return {
        "values": plain(snapshot.values),
        "next": list(snapshot.next),
        "step": snapshot.metadata.get("step") if snapshot.metadata else None,
        "source": snapshot.metadata.get("source") if snapshot.metadata else None,
        "interrupts": [plain(i.value) for i in snapshot.interrupts],
        "has_parent": snapshot.parent_config is not None,
    }
