"""`approval`: drafts a reply, then asks a human to approve or edit it (interrupt())."""

from typing import NotRequired

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from typing_extensions import TypedDict


class ApprovalState(TypedDict):
    request: str
    draft: NotRequired[str]
    approved: NotRequired[bool]
    reviewer_note: NotRequired[str]
    final: NotRequired[str]


def draft(state: ApprovalState) -> dict:
    return {"draft": f"Dear customer, regarding '{state['request']}': we will refund you."}


def review(state: ApprovalState) -> dict:
    """Resume with {"action": "approve"} or {"action": "edit", "draft": "..."}."""
    decision = interrupt({"question": "Approve this draft, or edit it?", "draft": state["draft"]})
    if not isinstance(decision, dict):
        decision = {"action": "approve" if decision in (True, "approve", "yes") else "reject"}
    action = decision.get("action", "approve")
    if action == "edit":
        return {"draft": decision["draft"], "approved": True, "reviewer_note": "edited"}
    return {"approved": action == "approve", "reviewer_note": decision.get("note", action)}


def finish(state: ApprovalState) -> dict:
    return {"final": state["draft"] if state.get("approved") else ""}


builder = StateGraph(ApprovalState)
builder.add_node("draft", draft)
builder.add_node("review", review)
builder.add_node("finish", finish)
builder.add_edge(START, "draft")
builder.add_edge("draft", "review")
builder.add_edge("review", "finish")
builder.add_edge("finish", END)
graph = builder.compile()
