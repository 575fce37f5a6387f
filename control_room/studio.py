"""What the offline Studio pages show: a thread's graph with the current run's path, its
state, a checkpoint with its diff, the timeline with its branches, and the work that
needs an operator. Reads only; the writes are service functions (threads_app.services,
threads_app.graph_state, checkpoints_app.services).
"""

from dataclasses import dataclass
from datetime import timedelta

import jsonschema
from django.conf import settings

from control_room import graph_drawing
from core.time import now
from threads_app import graph_state, registry
from threads_app.models import Run, RunEvent, Thread

TIMELINE_LIMIT = 200
STUCK_LIMIT = 100


def workflow_graph(workflow, config=None):
    """The compiled graph of a workflow (None when its graph is not registered)."""
    if workflow is None or workflow.graph_id not in registry.graph_ids():
        return None
    return registry.load_graph(workflow.graph_id, config or workflow.config or {})


def thread_graph(thread: Thread):
    return graph_state._graph(thread)


# --- the graph ----------------------------------------------------------------------


def run_path(run: Run | None) -> list[str]:
    """The nodes the run executed, in order (from its progress events)."""
    if run is None:
        return []
    steps = (
        RunEvent.objects.filter(run=run, event="progress")
        .order_by("seq")
        .values_list("data", flat=True)
    )
    path = []
    for data in steps:
        if isinstance(data, dict):
            path.extend(str(node) for node in data.get("nodes") or [])
    return path


def graph_section(thread: Thread, run: Run | None) -> dict:
    """The drawing, the nodes running now and the path of ``run``."""
    graph = thread_graph(thread)
    if graph is None:
        return {"drawing": None}
    drawing = graph_drawing.draw(graph)
    active = run is not None and run.status in (Run.Status.PENDING, Run.Status.RUNNING)
    running = []
    if active and run.status == Run.Status.RUNNING:
        running = list(graph_state.current(thread)["next"])
    path = run_path(run)
    taken = set(zip([graph_drawing.START, *path], path, strict=False))
    if run is not None and run.status == Run.Status.SUCCESS and path:
        taken.add((path[-1], graph_drawing.END))
    return {
        "drawing": drawing,
        "running": running,
        "visited": set(path),
        "taken": taken,
        "path": path,
        "path_run": run,
    }


def decorate(drawing, running=(), visited=(), taken=()) -> dict:
    """Each node and edge of a drawing with the classes the template gives it."""
    nodes = []
    for node in drawing.nodes:
        state = "running" if node.id in running else "visited" if node.id in visited else ""
        nodes.append({"node": node, "state": state})
    edges = [{"edge": e, "taken": (e.source, e.target) in taken} for e in drawing.edges]
    return {"drawing": drawing, "nodes": nodes, "edges": edges}


# --- the state ----------------------------------------------------------------------


def is_conversation(value) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and "content" in item for item in value)
    )


def value_diff(old: dict, new: dict) -> list[dict]:
    """Top-level keys added, removed or changed between two state values."""
    old, new = old or {}, new or {}
    rows = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            rows.append({"key": key, "change": "added", "new": new[key]})
        elif key not in new:
            rows.append({"key": key, "change": "removed", "old": old[key]})
        elif old[key] != new[key]:
            rows.append({"key": key, "change": "changed", "old": old[key], "new": new[key]})
    return rows


def checkpoint_detail(thread: Thread, checkpoint_id: str) -> dict:
    """A checkpoint's state and its diff with its parent (CheckpointNotFound if none)."""
    snapshot = graph_state.current(thread, checkpoint={"checkpoint_id": checkpoint_id})
    parent = snapshot.get("parent_checkpoint") or {}
    parent_values, parent_next = {}, []
    if parent.get("checkpoint_id"):
        parent_state = graph_state.current(
            thread, checkpoint={"checkpoint_id": parent["checkpoint_id"]}
        )
        parent_values, parent_next = parent_state["values"], parent_state["next"]
    return {
        "snapshot": snapshot,
        "parent_id": parent.get("checkpoint_id") or "",
        "diff": value_diff(parent_values, snapshot["values"]),
        "written_by": list(parent_next),  # the nodes that ran from the parent to here
    }


def plain_values(graph, values: dict) -> dict:
    """The values of the channels a write replaces (no reducer): what an edit form can
    start from without doubling a list that a reducer would append to."""
    from langgraph.channels import LastValue

    if graph is None or not isinstance(values, dict):
        return {}
    return {
        key: value
        for key, value in values.items()
        if isinstance(graph.channels.get(key), LastValue)
    }


# --- the timeline with its branches --------------------------------------------------


@dataclass
class TimelineRow:
    id: str
    parent_id: str
    step: object
    source: str
    run_id: str
    created_at: object
    branch: int = 0  # 0: the line that leads to the thread's head
    forks_here: int = 0  # how many branches start from this checkpoint
    branch_start: bool = False  # the oldest checkpoint of a branch other than 0
    is_head: bool = False


def timeline(thread: Thread) -> dict:
    """The thread's root checkpoints, newest first, each with the branch it is on.

    Checkpoints with the same parent are branches (an edited state, a replay, a fork);
    the branch that leads to the latest checkpoint (the head) is branch 0.
    """
    from checkpoints_app.models import Checkpoint

    rows_qs = (
        Checkpoint.objects.filter(thread_id=str(thread.pk), checkpoint_ns="")
        .order_by("-checkpoint_id")
        .values("checkpoint_id", "parent_checkpoint_id", "metadata", "run_id", "created_at")
    )
    rows = []
    for item in rows_qs[:TIMELINE_LIMIT]:
        metadata = item["metadata"] if isinstance(item["metadata"], dict) else {}
        rows.append(
            TimelineRow(
                id=item["checkpoint_id"],
                parent_id=item["parent_checkpoint_id"] or "",
                step=metadata.get("step"),
                source=metadata.get("source", ""),
                run_id=item["run_id"] or metadata.get("run_id") or "",
                created_at=item["created_at"],
            )
        )
    by_id = {row.id: row for row in rows}
    children: dict[str, list[TimelineRow]] = {}
    for row in rows:
        children.setdefault(row.parent_id, []).append(row)
    leaves = [row for row in rows if row.id not in children]  # newest first
    claimed: set[str] = set()
    number = 0
    for leaf in leaves:
        line = []
        row = leaf
        while row is not None and row.id not in claimed:
            line.append(row)
            row = by_id.get(row.parent_id)
        if not line:
            continue
        for member in line:
            member.branch = number
            claimed.add(member.id)
        if number and row is not None:  # the branch starts from a checkpoint shown
            line[-1].branch_start = True
        number += 1
    for row in rows:
        siblings = children.get(row.id, [])
        row.forks_here = max(0, len(siblings) - 1)
    if rows:
        rows[0].is_head = True
    return {
        "rows": rows,
        "branches": number,
        "limit": TIMELINE_LIMIT,
        "by_id": by_id,
    }


# --- input -----------------------------------------------------------------------------


def input_schema(graph) -> dict:
    try:
        return graph.get_input_jsonschema()
    except Exception:
        return {"type": "object"}


def input_skeleton(schema: dict) -> dict:
    """An example input: the schema's required keys with an empty value of their type."""
    empty = {"string": "", "integer": 0, "number": 0, "boolean": False, "array": [], "object": {}}
    properties = schema.get("properties") or {}
    return {
        key: empty.get((properties.get(key) or {}).get("type"))
        for key in schema.get("required", [])
    }


def input_errors(graph, value, first_run: bool) -> list[dict]:
    """Every error of ``value`` against the graph's input schema: ``[{path, message}]``.

    Keys of simple types are checked in full; complex ones (messages, nested models,
    which LangGraph coerces) only for being present, as threads_app.validation does.
    """
    from threads_app.validation import _is_simple

    if not isinstance(value, dict):
        return [{"path": "input", "message": "the input must be a JSON object"}]
    schema = input_schema(graph)
    properties = schema.get("properties") or {}
    checked = {
        "type": "object",
        "properties": {
            key: field if _is_simple(field) else {} for key, field in properties.items()
        },
    }
    if properties and schema.get("additionalProperties", False) is not True:
        checked["additionalProperties"] = False
    if first_run and schema.get("required"):
        checked["required"] = list(schema["required"])
    validator = jsonschema.Draft202012Validator(checked)
    errors = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(part) for part in ["input", *error.absolute_path])
        errors.append({"path": path, "message": error.message})
    return errors


# --- stuck work ----------------------------------------------------------------------


def stuck_work(user_threads, user_runs) -> dict:
    """What needs an operator, among the threads and runs the user may see."""
    moment = now()
    pending_s = settings.STATEHOUSE_STUCK_PENDING_S  # pending longer than this: stuck
    pending_before = moment - timedelta(seconds=pending_s)
    pending = (
        user_runs.filter(status=Run.Status.PENDING, created_at__lt=pending_before)
        .exclude(not_before__gt=moment)
        .order_by("created_at")
    )
    expired = user_runs.filter(status=Run.Status.RUNNING, lease_expires_at__lt=moment).order_by(
        "lease_expires_at"
    )
    waiting = (
        user_threads.filter(status=Thread.Status.INTERRUPTED)
        .exclude(interrupts=[])
        .order_by("updated_at")
    )
    live = Run.objects.filter(status__in=(Run.Status.PENDING, Run.Status.RUNNING))
    busy = (
        user_threads.filter(status=Thread.Status.BUSY)
        .exclude(pk__in=live.values("thread_id"))
        .order_by("updated_at")
    )
    return {
        "now": moment,
        "pending_s": f"{pending_s:g}",
        "pending": list(pending[:STUCK_LIMIT]),
        "expired": list(expired[:STUCK_LIMIT]),
        "waiting": list(waiting[:STUCK_LIMIT]),
        "busy": list(busy[:STUCK_LIMIT]),
        "limit": STUCK_LIMIT,
    }
