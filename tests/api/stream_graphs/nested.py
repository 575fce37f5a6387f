"""`nested`: a graph with a subgraph, for the streaming tests (and the reference server).

outer: prepare -> child (a compiled subgraph: shout -> speak) -> finish. The subgraph
writes a custom event and streams a chat model's tokens, so every stream mode has
something to say from inside it.
"""

from typing import Annotated

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict


class State(TypedDict, total=False):
    text: str
    messages: Annotated[list[AnyMessage], add_messages]
    done: bool


def shout(state: State) -> dict:
    get_stream_writer()({"shouting": state["text"]})
    return {"text": state["text"].upper()}


def speak(state: State, config: RunnableConfig) -> dict:
    model = GenericFakeChatModel(messages=iter([AIMessage(content=f"said {state['text']}")]))
    return {"messages": [model.invoke("speak", config)]}


child_builder = StateGraph(State)
child_builder.add_node("shout", shout)
child_builder.add_node("speak", speak)
child_builder.add_edge(START, "shout")
child_builder.add_edge("shout", "speak")
child = child_builder.compile()


def prepare(state: State) -> dict:
    return {"text": state.get("text") or "hi"}


def finish(state: State) -> dict:
    return {"done": True}


builder = StateGraph(State)
builder.add_node("prepare", prepare)
builder.add_node("child", child)
builder.add_node("finish", finish)
builder.add_edge(START, "prepare")
builder.add_edge("prepare", "child")
builder.add_edge("child", "finish")
graph = builder.compile()
