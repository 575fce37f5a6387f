"""`signed`: a graph with a runtime context and a subgraph, for the client tests.

inner (a compiled subgraph: shout) -> sign, which writes the context's `user`, so a
run's `context` shows in its output, the schemas have a context schema and the graph
drawn with xray has the subgraph's nodes.
"""

from dataclasses import dataclass
from typing import NotRequired

from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime
from typing_extensions import TypedDict


@dataclass
class Who:
    user: str = "nobody"


class Inner(TypedDict):
    text: str


class Outer(TypedDict):
    text: str
    said_by: NotRequired[str]


def shout(state: Inner) -> dict:
    return {"text": state["text"].upper()}


inner_builder = StateGraph(Inner)
inner_builder.add_node("shout", shout)
inner_builder.add_edge(START, "shout")
inner = inner_builder.compile()


def sign(state: Outer, runtime: Runtime[Who]) -> dict:
    return {"said_by": runtime.context.user}


builder = StateGraph(Outer, context_schema=Who)
builder.add_node("inner", inner)
builder.add_node("sign", sign)
builder.add_edge(START, "inner")
builder.add_edge("inner", "sign")
graph = builder.compile()
