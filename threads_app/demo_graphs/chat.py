"""`chat`: an assistant over add_messages with one tool call, on a fake model.

The model is LangChain's FakeMessagesListChatModel answering like a real model would:
AIMessages with usage metadata and a real model id, so usage and cost capture work
without a network or an API key.
"""

from typing import Annotated

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from typing_extensions import TypedDict

MODEL_NAME = "gpt-4o-mini-2024-07-18"


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


@tool
def lookup_order(order_id: str) -> str:
    """Look up the status of an order."""
    return f"Order {order_id} shipped yesterday and arrives tomorrow."


def _usage(input_tokens: int, output_tokens: int, cache_read: int = 0) -> dict:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "input_token_details": {"cache_read": cache_read},
    }


def _reply(state: ChatState) -> AIMessage:
    """What the fake model says next: call the tool first, then answer from its result."""
    metadata = {"model_name": MODEL_NAME, "model_provider": "openai"}
    last = state["messages"][-1]
    if isinstance(last, ToolMessage):
        return AIMessage(
            content=f"Good news: {last.content}",
            usage_metadata=_usage(120, 18, cache_read=64),
            response_metadata=metadata,
        )
    return AIMessage(
        content="",
        tool_calls=[{"name": "lookup_order", "args": {"order_id": "1042"}, "id": "call_1042"}],
        usage_metadata=_usage(85, 22),
        response_metadata=metadata,
    )


def agent(state: ChatState, config: RunnableConfig) -> dict:
    # A model per call: the fake model hands out the very message object it was given.
    model = FakeMessagesListChatModel(responses=[_reply(state)])
    return {"messages": [model.invoke(state["messages"], config)]}


def route(state: ChatState) -> str:
    last = state["messages"][-1]
    return "tools" if getattr(last, "tool_calls", None) else END


builder = StateGraph(ChatState)
builder.add_node("agent", agent)
builder.add_node("tools", ToolNode([lookup_order]))
builder.add_edge(START, "agent")
builder.add_conditional_edges("agent", route, ["tools", END])
builder.add_edge("tools", "agent")
graph = builder.compile()
