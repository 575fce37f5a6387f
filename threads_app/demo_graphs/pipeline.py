"""`pipeline`: `steps` steps, one node execution each, optionally slow.

Input: {"steps": int, "delay_s": float}. Each step appends its number to
`completed_steps` and reports progress on the custom stream.
"""

import operator
import time
from typing import Annotated, NotRequired

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class PipelineState(TypedDict):
    steps: int
    delay_s: NotRequired[float]
    completed_steps: NotRequired[Annotated[list[int], operator.add]]


def step(state: PipelineState) -> dict:
    number = len(state.get("completed_steps") or []) + 1
    delay = state.get("delay_s") or 0
    if delay:
        time.sleep(delay)
    get_stream_writer()({"step": number, "of": state["steps"]})
    return {"completed_steps": [number]}


def more(state: PipelineState) -> str:
    return "step" if len(state.get("completed_steps") or []) < state["steps"] else END


builder = StateGraph(PipelineState)
builder.add_node("step", step)
builder.add_edge(START, "step")
builder.add_conditional_edges("step", more, ["step", END])
graph = builder.compile()
