"""The LangGraph Server API surface, so that the official `langgraph-sdk` client works.

Assistants are Workflows, threads are Threads (each in a Session), runs are Runs executed
by the Celery runtime; thread state and history are read through DjangoSaver. A request
field Statehouse does not support is refused with 422 naming it (the request schemas
forbid unknown fields), never silently ignored.
"""

import asyncio
import json
import logging
import re
import uuid
import warnings
from datetime import datetime
from typing import Any, Literal

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.http import HttpResponse, StreamingHttpResponse
from ninja import Query, Router, Schema
from ninja.errors import HttpError
from ninja.schema import DjangoGetter
from pydantic import ConfigDict, Field, model_validator

from core import state
from core.metadata import InvalidJSON, normalize_metadata
from sessions_app.models import Session
from threads_app import graph_state, registry, services
from threads_app.models import Run, RunEvent, Thread, Workflow, WorkflowVersion
from threads_app.streaming import STREAM_MODES, MessageAccumulator, event_name, sse

langgraph_router = Router(tags=["LangGraph"])

Json = dict[str, Any]
logger = logging.getLogger(__name__)

MAX_INT = 2**31 - 1  # pagination numbers beyond this are refused (422), not passed on


class Strict(Schema):
    """Request bodies: unknown fields are refused (422 naming the field)."""

    model_config = ConfigDict(extra="forbid")


def _limit(value: int) -> int:
    return max(1, min(int(value), settings.STATEHOUSE_API_MAX_LIMIT))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _is_staff(user) -> bool:
    return bool(user.is_active and user.is_staff)


# --- ownership: another owner's object is a 404 -------------------------------------


def visible_threads(user):
    threads = Thread.objects.select_related("session", "workflow")
    return threads if _is_staff(user) else threads.filter(session__owner=user)


def get_thread(request, thread_id) -> Thread:
    try:
        pk = uuid.UUID(str(thread_id))
    except ValueError:
        raise HttpError(404, f"Thread {thread_id} not found") from None
    thread = visible_threads(request.auth).filter(pk=pk).first()
    if thread is None:
        raise HttpError(404, f"Thread {thread_id} not found")
    return thread


def get_run(request, thread_id, run_id) -> Run:
    thread = get_thread(request, thread_id)
    try:
        pk = uuid.UUID(str(run_id))
    except ValueError:
        raise HttpError(404, f"Run {run_id} not found") from None
    run = Run.objects.filter(pk=pk, thread=thread).select_related("thread", "workflow").first()
    if run is None:
        raise HttpError(404, f"Run {run_id} not found")
    return run


def get_workflow(request, assistant_id, write: bool = False) -> Workflow:
    try:
        workflow = services.resolve_workflow(assistant_id, user=request.auth)
    except services.WorkflowNotFound:
        raise HttpError(404, f"Assistant {assistant_id} not found") from None
    if write and not _is_staff(request.auth) and workflow.owner_id != request.auth.pk:
        # System assistants and other users' assistants are read-only for non-staff.
        raise HttpError(404 if workflow.owner_id else 409, "This assistant cannot be changed")
    return workflow


# --- shapes -------------------------------------------------------------------------


def assistant_out(workflow: Workflow) -> Json:
    return {
        "assistant_id": str(workflow.pk),
        "graph_id": workflow.graph_id,
        "config": workflow.config,
        "context": workflow.context,
        "metadata": workflow.metadata | ({"created_by": "system"} if workflow.is_system else {}),
        "name": workflow.name,
        "description": workflow.description or None,
        "version": workflow.assistant_version,
        "created_at": _iso(workflow.created_at),
        "updated_at": _iso(workflow.updated_at),
    }


def version_out(version: WorkflowVersion) -> Json:
    """One of an assistant's versions, as LangGraph Server lists them."""
    return {
        "assistant_id": str(version.workflow_id),
        "graph_id": version.graph_id,
        "config": version.config,
        "context": version.context,
        "metadata": version.metadata,
        "name": version.name,
        "description": version.description or None,
        "version": version.version,
        "created_at": _iso(version.created_at),
    }


def thread_out(thread: Thread) -> Json:
    interrupts: dict[str, list] = {}
    for item in thread.interrupts or []:
        task = item.get("task_id") or ""
        interrupts.setdefault(task, []).append({"value": item.get("value"), "id": item.get("id")})
    metadata = dict(thread.metadata)
    metadata.setdefault("session_id", str(thread.session_id))
    if thread.workflow_id:
        metadata.setdefault("graph_id", thread.workflow.graph_id)
        metadata.setdefault("assistant_id", str(thread.workflow_id))
    return {
        "thread_id": str(thread.pk),
        "created_at": _iso(thread.created_at),
        "updated_at": _iso(thread.updated_at),
        "state_updated_at": _iso(thread.updated_at),
        "metadata": metadata,
        "status": thread.status,
        "values": thread.values,
        "interrupts": interrupts,
        "config": thread.config,
        "error": thread.error or None,
    }


def run_out(run: Run) -> Json:
    return {
        "run_id": str(run.pk),
        "thread_id": str(run.thread_id),
        "assistant_id": str(run.workflow_id) if run.workflow_id else None,
        "created_at": _iso(run.created_at),
        "updated_at": _iso(run.updated_at),
        "status": run.status,
        "metadata": run.metadata,
        "multitask_strategy": run.multitask_strategy,
        "kwargs": {
            "input": run.input,
            "command": run.command,
            "config": run.config,
            **{k: v for k, v in (run.kwargs or {}).items() if k != "timeout_s"},
        },
    }


# --- info ---------------------------------------------------------------------------


@langgraph_router.get("/ok", summary="Liveness (authenticated, like every API route)")
def ok(request):
    return {"ok": True}


@langgraph_router.get("/info", summary="Server information")
def info(request):
    """What the server can do, in LangGraph Server's shape (plus the registered graphs)."""
    return {
        "version": "statehouse-1.0",
        "langgraph_py_version": _version("langgraph"),
        "flags": {
            "assistants": True,
            "crons": False,
            "langsmith": False,
            "langsmith_tracing_replicas": False,
            "langsmith_tracing_session_on_runs": False,
        },
        "host": {
            "kind": "self-hosted",
            "project_id": None,
            "host_revision_id": None,
            "revision_id": None,
            "tenant_id": None,
        },
        "graphs": registry.graph_ids(),
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


# --- assistants ---------------------------------------------------------------------


class AssistantCreate(Strict):
    graph_id: str
    assistant_id: str | None = None
    config: Json | None = None
    context: Json | None = None
    metadata: Json | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    name: str | None = None
    description: str | None = None


class AssistantPatch(Strict):
    graph_id: str | None = None
    config: Json | None = None
    context: Json | None = None
    metadata: Json | None = None
    name: str | None = None
    description: str | None = None


class AssistantSearch(Strict):
    metadata: Json | None = None
    graph_id: str | None = None
    name: str | None = None
    limit: int = Field(default=10, ge=1, le=MAX_INT)
    offset: int = Field(default=0, ge=0, le=MAX_INT)
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None


class AssistantCount(Strict):
    metadata: Json | None = None
    graph_id: str | None = None
    name: str | None = None


def _check_graph(graph_id: str) -> None:
    if graph_id not in registry.graph_ids():
        known = ", ".join(registry.graph_ids())
        raise HttpError(422, f"graph_id {graph_id!r} is not registered (known: {known})")


@langgraph_router.post("/assistants", summary="Create an assistant")
def create_assistant(request, body: AssistantCreate):
    _check_graph(body.graph_id)
    if body.assistant_id:
        try:
            existing = Workflow.objects.filter(pk=uuid.UUID(body.assistant_id)).first()
        except ValueError:
            raise HttpError(422, "assistant_id must be a UUID") from None
        if existing is not None:
            if not services.visible_workflows(request.auth).filter(pk=existing.pk).exists():
                # Another owner's: answered as an unknown assistant is, never "exists".
                raise HttpError(404, f"Assistant {body.assistant_id} not found")
            if body.if_exists == "do_nothing":
                return assistant_out(existing)
            raise HttpError(409, f"Assistant {body.assistant_id} already exists")
    workflow = services.new_workflow(
        {
            **({"id": body.assistant_id} if body.assistant_id else {}),
            "graph_id": body.graph_id,
            "name": body.name or body.graph_id,
            "description": body.description or "",
            "config": body.config or {},
            "context": body.context or {},
            "metadata": normalize_metadata(body.metadata),
            "owner": request.auth,
        },
        actor=request.auth,
    )
    return assistant_out(workflow)


def _assistants(request, body) -> Any:
    workflows = services.visible_workflows(request.auth)
    if body.graph_id:
        workflows = workflows.filter(graph_id=body.graph_id)
    if body.name:
        workflows = workflows.filter(name__icontains=body.name)
    return _json_contains(workflows, "metadata", body.metadata)


@langgraph_router.post("/assistants/search", summary="Search assistants")
def search_assistants(request, body: AssistantSearch):
    services.sync_system_workflows()
    order = {"assistant_id": "id"}.get(body.sort_by or "created_at", body.sort_by or "created_at")
    prefix = "" if body.sort_order == "asc" else "-"
    workflows = _assistants(request, body).order_by(prefix + order, "id")
    page = workflows[body.offset : body.offset + _limit(body.limit)]
    return [assistant_out(workflow) for workflow in page]


@langgraph_router.post("/assistants/count", response=int, summary="Count assistants")
def count_assistants(request, body: AssistantCount):
    services.sync_system_workflows()
    return _assistants(request, body).count()


@langgraph_router.get("/assistants/{assistant_id}", summary="Get an assistant")
def read_assistant(request, assistant_id: str):
    return assistant_out(get_workflow(request, assistant_id))


@langgraph_router.patch("/assistants/{assistant_id}", summary="Update an assistant")
def patch_assistant(request, assistant_id: str, body: AssistantPatch):
    workflow = get_workflow(request, assistant_id, write=True)
    changes = body.model_dump(exclude_none=True)
    if "graph_id" in changes:
        _check_graph(changes["graph_id"])
    if "metadata" in changes:
        changes["metadata"] = normalize_metadata(changes["metadata"])
    try:
        # A new version; the metadata merge reads the row under its lock (see patch_thread).
        workflow = services.patch_workflow(workflow.pk, changes, actor=request.auth)
    except state.EntityNotFound:
        raise HttpError(404, f"Assistant {assistant_id} not found") from None
    return assistant_out(workflow)


class VersionSearch(Strict):
    metadata: Json | None = None
    limit: int = Field(default=10, ge=1, le=MAX_INT)
    offset: int = Field(default=0, ge=0, le=MAX_INT)


class VersionChange(Strict):
    version: int = Field(ge=1, le=MAX_INT)


@langgraph_router.post("/assistants/{assistant_id}/versions", summary="An assistant's versions")
def assistant_versions(request, assistant_id: str, body: VersionSearch):
    """Newest first, filtered by metadata containment."""
    workflow = get_workflow(request, assistant_id)
    versions = _json_contains(workflow.versions.all(), "metadata", body.metadata)
    page = versions.order_by("-version")[body.offset : body.offset + _limit(body.limit)]
    return [version_out(version) for version in page]


@langgraph_router.post("/assistants/{assistant_id}/latest", summary="Set the latest version")
def set_latest_version(request, assistant_id: str, body: VersionChange):
    workflow = get_workflow(request, assistant_id, write=True)
    try:
        workflow = services.set_latest_version(workflow.pk, body.version, actor=request.auth)
    except services.WorkflowVersionNotFound as exc:
        raise HttpError(404, str(exc)) from None
    except state.EntityNotFound:
        raise HttpError(404, f"Assistant {assistant_id} not found") from None
    return assistant_out(workflow)


@langgraph_router.delete("/assistants/{assistant_id}", response={204: None})
def delete_assistant(request, assistant_id: str):
    workflow = get_workflow(request, assistant_id, write=True)
    state.delete_state("workflow", workflow.pk, actor=request.auth)
    return 204, None


def _xray(value: str | None) -> bool | int:
    """``xray`` as LangGraph Server reads it: true/false, or a positive depth."""
    if not value or value in ("false", "False"):
        return False
    if value in ("true", "True"):
        return True
    try:
        depth = int(value)
    except ValueError:
        depth = 0
    if depth <= 0:
        raise HttpError(422, "Invalid xray value")
    return depth


@langgraph_router.get("/assistants/{assistant_id}/graph", summary="The assistant's graph")
def assistant_graph(request, assistant_id: str, xray: str | None = None):
    """The drawable graph as JSON; ``xray`` (true or a depth) draws subgraphs inside."""
    depth = _xray(xray)
    workflow = get_workflow(request, assistant_id)
    graph = registry.load_graph(workflow.graph_id, workflow.config)
    try:
        drawn = graph.get_graph(xray=depth).to_json()
    except NotImplementedError:
        raise HttpError(422, "The graph does not support visualization") from None
    for node in drawn.get("nodes", []):
        if isinstance(node.get("data"), dict):
            node["data"].pop("id", None)  # a Python object path, as the reference drops it
    return drawn


def _state_jsonschema(graph) -> Json:
    """The graph's state (its channels' update types), not its input schema."""
    from pydantic import create_model

    fields: dict[str, Any] = {}
    for name in graph.stream_channels_list:
        kind = graph.channels[name].UpdateType
        try:
            create_model(name, value=(kind, None)).model_json_schema()
        except Exception:
            kind = Any
        fields[name] = (kind, None)
    return create_model(graph.get_name("State"), **fields).model_json_schema()


def _graph_schemas(graph) -> Json:
    def schema(method):
        try:
            return method()
        except Exception:
            logger.warning("graph %s: a schema failed", graph.name, exc_info=True)
            return None

    return {
        "input_schema": schema(graph.get_input_jsonschema),
        "output_schema": schema(graph.get_output_jsonschema),
        "state_schema": schema(lambda: _state_jsonschema(graph)),
        "config_schema": schema(lambda: _configurable_jsonschema(graph)),
        "context_schema": schema(graph.get_context_jsonschema),
    }


def _configurable_jsonschema(graph) -> Json:
    """The ``configurable`` part of the config schema, without LangGraph's own keys."""
    from pydantic import TypeAdapter

    with warnings.catch_warnings():
        # Deprecated in LangGraph 1.0 but still what holds a graph's config_schema.
        warnings.simplefilter("ignore")
        fields = getattr(graph.config_schema(), "model_fields", None) or {}
    if "configurable" not in fields:
        return {}
    schema = TypeAdapter(fields["configurable"].annotation).json_schema()
    internal = ("__pregel_checkpointer", "__pregel_store", "checkpoint_id", "checkpoint_ns")
    for key in (*internal, "thread_id"):
        schema.get("properties", {}).pop(key, None)
    return schema


@langgraph_router.get("/assistants/{assistant_id}/schemas", summary="The graph's schemas")
def assistant_schemas(request, assistant_id: str):
    workflow = get_workflow(request, assistant_id)
    graph = registry.load_graph(workflow.graph_id, workflow.config)
    return {"graph_id": workflow.graph_id, **_graph_schemas(graph)}


def _subgraphs(request, assistant_id: str, namespace: str | None, recurse: bool) -> Json:
    workflow = get_workflow(request, assistant_id)
    graph = registry.load_graph(workflow.graph_id, workflow.config)
    found = graph.get_subgraphs(namespace=namespace, recurse=recurse)
    return {ns: _graph_schemas(subgraph) for ns, subgraph in found}


@langgraph_router.get("/assistants/{assistant_id}/subgraphs", summary="The graph's subgraphs")
def assistant_subgraphs(
    request, assistant_id: str, namespace: str | None = None, recurse: bool = False
):
    """The schemas of each subgraph, by namespace (``recurse``: nested ones too)."""
    return _subgraphs(request, assistant_id, namespace, recurse)


@langgraph_router.get(
    "/assistants/{assistant_id}/subgraphs/{namespace}", summary="The subgraphs under a namespace"
)
def assistant_subgraphs_in(request, assistant_id: str, namespace: str, recurse: bool = False):
    return _subgraphs(request, assistant_id, namespace, recurse)


# --- threads ------------------------------------------------------------------------


class ThreadCreate(Strict):
    thread_id: str | None = None
    metadata: Json | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    # Statehouse: start from the session's context window (needs metadata.graph_id).
    from_session_context: bool = False


class ThreadPatch(Strict):
    metadata: Json


class ThreadSearch(Strict):
    metadata: Json | None = None
    values: Json | None = None
    ids: list[str] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: int = Field(default=10, ge=1, le=MAX_INT)
    offset: int = Field(default=0, ge=0, le=MAX_INT)
    sort_by: Literal["thread_id", "status", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None


class ThreadCount(Strict):
    metadata: Json | None = None
    values: Json | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None


def _json_contains(queryset, field: str, wanted: Json | None):
    """Filter on JSON containment: PostgreSQL's @> (GIN-indexable), key by key elsewhere."""
    if not wanted:
        return queryset
    try:
        wanted = normalize_metadata(wanted)
    except InvalidJSON as exc:
        raise HttpError(422, f"{field} filter: {exc}") from None
    if queryset.db == "default" and _vendor() == "postgresql":
        return queryset.filter(**{f"{field}__contains": wanted})
    condition = Q()
    for key, value in wanted.items():
        condition &= Q(**{f"{field}__{key}": value})
    return queryset.filter(condition)


def _vendor() -> str:
    from django.db import connection

    return connection.vendor


def _session_for(request, metadata: Json) -> Session:
    """The session named by metadata.session_id (the caller's), or a new one."""
    session_id = metadata.get("session_id")
    if session_id:
        sessions = Session.objects.all()
        if not _is_staff(request.auth):
            sessions = sessions.filter(owner=request.auth)
        try:
            session = sessions.filter(pk=uuid.UUID(str(session_id))).first()
        except ValueError:
            session = None
        if session is None:
            raise HttpError(404, f"Session {session_id} not found")
        return session
    return state.create_state(
        "session",
        {"owner": request.auth, "title": "", "metadata": {"created_by": "api"}},
        actor=request.auth,
    )


def create_thread_for(request, thread_id: str | None, metadata: Json | None, **extra) -> Thread:
    metadata = normalize_metadata(metadata)
    workflow = None
    graph_id = metadata.get("graph_id") or metadata.get("assistant_id")
    if graph_id:
        try:
            workflow = services.resolve_workflow(graph_id, user=request.auth)
        except services.WorkflowNotFound:
            workflow = None
    with transaction.atomic():
        session = _session_for(request, metadata)
        initial = {
            "session": session,
            "workflow": workflow,
            "metadata": {k: v for k, v in metadata.items() if k != "session_id"},
            **extra,
        }
        if thread_id:
            initial["id"] = thread_id
        return state.create_state("thread", initial, actor=request.auth)


@langgraph_router.post("/threads", summary="Create a thread")
def create_thread(request, body: ThreadCreate):
    if body.thread_id:
        try:
            uuid.UUID(body.thread_id)
        except ValueError:
            raise HttpError(422, "thread_id must be a UUID") from None
        existing = Thread.objects.filter(pk=body.thread_id).select_related("session").first()
        if existing is not None:
            if not (_is_staff(request.auth) or existing.session.owner_id == request.auth.pk):
                # Another owner's: answered as an unknown thread is, never "exists".
                raise HttpError(404, f"Thread {body.thread_id} not found")
            if body.if_exists == "do_nothing":
                return thread_out(existing)
            raise HttpError(409, f"Thread {body.thread_id} already exists")
    with transaction.atomic():
        thread = create_thread_for(request, body.thread_id, body.metadata)
        if body.from_session_context:
            services.seed_from_session_context(thread, actor=request.auth)
    return thread_out(Thread.objects.select_related("workflow").get(pk=thread.pk))


def _threads(request, body):
    threads = visible_threads(request.auth)
    if getattr(body, "ids", None):
        try:
            threads = threads.filter(pk__in=[uuid.UUID(i) for i in body.ids])
        except ValueError:
            raise HttpError(422, "ids must be UUIDs") from None
    if body.status:
        threads = threads.filter(status=body.status)
    metadata = dict(body.metadata or {})
    session_id = metadata.pop("session_id", None)
    if session_id:
        try:
            threads = threads.filter(session_id=uuid.UUID(session_id))
        except (ValueError, TypeError, AttributeError):
            raise HttpError(
                422, f"metadata.session_id must be a session id (a UUID), got {session_id!r:.80}"
            ) from None
    threads = _json_contains(threads, "metadata", metadata)
    return _json_contains(threads, "values", body.values)


@langgraph_router.post("/threads/search", summary="Search threads")
def search_threads(request, body: ThreadSearch):
    order = {"thread_id": "id"}.get(body.sort_by or "created_at", body.sort_by or "created_at")
    prefix = "" if body.sort_order == "asc" else "-"
    threads = _threads(request, body).order_by(prefix + order, "id")
    return [thread_out(t) for t in threads[body.offset : body.offset + _limit(body.limit)]]


@langgraph_router.post("/threads/count", response=int, summary="Count threads")
def count_threads(request, body: ThreadCount):
    return _threads(request, body).count()


class ThreadPrune(Strict):
    thread_ids: list[str] = Field(default_factory=list, max_length=1000)
    strategy: Literal["delete", "keep_latest"] = "delete"


@langgraph_router.post("/threads/prune", summary="Delete threads, or all but their latest state")
def prune_threads(request, body: ThreadPrune):
    """``delete``: the threads, with their runs and checkpoints; ``keep_latest``: every
    checkpoint but each namespace's latest. Unknown (or another owner's) ids are skipped,
    as LangGraph Server skips them; the answer counts the threads pruned."""
    from checkpoints_app.saver import DjangoSaver

    try:
        wanted = [uuid.UUID(str(thread_id)) for thread_id in body.thread_ids]
    except ValueError:
        raise HttpError(422, "Invalid thread ID: must be a UUID") from None
    found = visible_threads(request.auth).filter(pk__in=wanted).values_list("pk", flat=True)
    pruned = 0
    for thread_id in list(found):
        if body.strategy == "delete":
            try:
                services.delete_thread(thread_id, actor=request.auth)
            except state.EntityNotFound:
                continue  # deleted meanwhile
        else:
            DjangoSaver().prune_thread(str(thread_id), keep_last=1)
        pruned += 1
    return {"pruned_count": pruned}


@langgraph_router.get("/threads/{thread_id}", summary="Get a thread")
def read_thread(request, thread_id: str):
    return thread_out(get_thread(request, thread_id))


@langgraph_router.patch("/threads/{thread_id}", summary="Update a thread's metadata")
def patch_thread(request, thread_id: str, body: ThreadPatch):
    thread = get_thread(request, thread_id)
    changes = normalize_metadata(body.metadata)
    with transaction.atomic():
        # The merge reads the metadata under the row's lock: concurrent PATCHes queue
        # here and each one keeps the others' keys (no lost write, no version conflict).
        locked = Thread.objects.lock(thread.pk)
        if locked is None:
            raise HttpError(404, f"Thread {thread_id} not found")
        metadata = locked.metadata | changes
        metadata.pop("session_id", None)
        state.update_state("thread", locked.pk, {"metadata": metadata}, actor=request.auth)
    return thread_out(Thread.objects.select_related("workflow").get(pk=thread.pk))


@langgraph_router.delete("/threads/{thread_id}", response={204: None})
def delete_thread(request, thread_id: str):
    thread = get_thread(request, thread_id)
    services.delete_thread(thread.pk, actor=request.auth)
    return 204, None


@langgraph_router.post("/threads/{thread_id}/copy", summary="Copy a thread with its checkpoints")
def copy_thread(request, thread_id: str):
    from checkpoints_app.saver import DjangoSaver

    source = get_thread(request, thread_id)
    with transaction.atomic():
        copy = state.create_state(
            "thread",
            {
                "session": source.session,
                "workflow": source.workflow,
                "metadata": source.metadata | {"copied_from": str(source.pk)},
                "config": source.config,
                "values": source.values,
                "interrupts": source.interrupts,
                "status": source.status if source.status != "busy" else "idle",
            },
            actor=request.auth,
        )
        DjangoSaver().copy_thread(str(source.pk), str(copy.pk))
    return thread_out(Thread.objects.select_related("workflow").get(pk=copy.pk))


# --- thread state -------------------------------------------------------------------


class StateUpdate(Strict):
    values: Any = None
    as_node: str | None = None
    checkpoint_id: str | None = None
    checkpoint: Json | None = None


class StateAtCheckpoint(Strict):
    checkpoint: Json
    subgraphs: bool = False


class HistoryQuery(Strict):
    limit: int = Field(default=10, ge=1, le=MAX_INT)
    before: str | Json | None = None
    metadata: Json | None = None
    checkpoint: Json | None = None


@langgraph_router.get("/threads/{thread_id}/state", summary="The thread's current state")
def thread_state(request, thread_id: str, subgraphs: bool = False):
    return graph_state.current(get_thread(request, thread_id), subgraphs=subgraphs)


def _state_at(thread: Thread, checkpoint, subgraphs: bool) -> Json:
    try:
        return graph_state.current(thread, checkpoint=checkpoint, subgraphs=subgraphs)
    except graph_state.CheckpointNotFound as exc:
        raise HttpError(404, str(exc)) from None


@langgraph_router.post("/threads/{thread_id}/state/checkpoint", summary="State at a checkpoint")
def thread_state_at_post(request, thread_id: str, body: StateAtCheckpoint):
    thread = get_thread(request, thread_id)
    return _state_at(thread, body.checkpoint, body.subgraphs)


@langgraph_router.get("/threads/{thread_id}/state/{checkpoint_id}", summary="State at a checkpoint")
def thread_state_at(request, thread_id: str, checkpoint_id: str, subgraphs: bool = False):
    thread = get_thread(request, thread_id)
    return _state_at(thread, {"checkpoint_id": checkpoint_id}, subgraphs)


@langgraph_router.post("/threads/{thread_id}/state", summary="Update the thread's state")
def update_thread_state(request, thread_id: str, body: StateUpdate):
    thread = get_thread(request, thread_id)
    checkpoint = dict(body.checkpoint or {})
    if body.checkpoint_id:
        checkpoint["checkpoint_id"] = body.checkpoint_id
    with transaction.atomic():
        # No run starts between the check and the update, and the new checkpoint and
        # the thread's record commit together.
        thread = Thread.objects.lock(thread.pk)
        if thread is None:
            raise HttpError(404, f"Thread {thread_id} not found")
        if thread.status == Thread.Status.BUSY:
            raise HttpError(409, f"Thread {thread_id} is busy with a run")
        return graph_state.update(thread, body.values, body.as_node, checkpoint, actor=request.auth)


@langgraph_router.post("/threads/{thread_id}/history", summary="The thread's state history")
def thread_history(request, thread_id: str, body: HistoryQuery):
    thread = get_thread(request, thread_id)
    return graph_state.history(
        thread,
        limit=_limit(body.limit),
        before=body.before,
        metadata=body.metadata,
        checkpoint=body.checkpoint,
    )


@langgraph_router.get("/threads/{thread_id}/history", summary="The thread's state history")
def thread_history_get(
    request, thread_id: str, limit: int = Query(10, ge=1, le=MAX_INT), before: str | None = None
):
    thread = get_thread(request, thread_id)
    before_config = {"checkpoint_id": before} if before else None
    return graph_state.history(thread, limit=_limit(limit), before=before_config)


# --- runs ---------------------------------------------------------------------------


class CommandIn(Strict):
    resume: Any = None
    update: Any = None
    goto: Any = None


class RunCreate(Strict):
    assistant_id: str
    input: Any = None
    command: CommandIn | None = None
    config: Json | None = None
    context: Json | None = None
    metadata: Json | None = None
    stream_mode: str | list[str] = "values"
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    checkpoint_id: str | None = None
    checkpoint: Json | None = None
    multitask_strategy: Literal["reject", "interrupt", "rollback", "enqueue"] = "enqueue"
    if_not_exists: Literal["create", "reject"] = "reject"
    after_seconds: float | None = Field(default=None, ge=0)
    on_completion: Literal["delete", "keep"] | None = None
    # What a stream does when its client goes away: "cancel" the run or let it
    # "continue" (to be joined again). Stored with the run (see the README).
    on_disconnect: Literal["cancel", "continue"] | None = None
    # How often LangGraph stores checkpoints; checkpoint_during is the older spelling
    # (true: "async", false: "exit"). Statehouse's default is "sync".
    durability: Literal["sync", "async", "exit"] | None = None
    checkpoint_during: bool | None = None
    feedback_keys: list[str] | None = None


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


class BatchRunCreate(RunCreate):
    """One run of ``POST /runs/batch``. The JavaScript SDK's ``createBatch`` sends each
    payload with its camelCase keys as given (``assistantId``, ``onCompletion``...) plus
    ``assistant_id``; those keys are read as the fields they spell, rather than refused
    as unknown (LangGraph Server ignores them, dropping what they ask for)."""

    @model_validator(mode="before")
    @classmethod
    def read_camel_case_keys(cls, data: Any) -> Any:
        if isinstance(data, DjangoGetter):  # how ninja's Schema hands the body over
            data = data._obj
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        read, spelled = {}, {}
        for key, value in data.items():
            name = key if key in fields else _snake_case(key)
            name = name if name in fields else key
            if name in read and read[name] != value:
                raise ValueError(f"{spelled[name]} and {key} disagree; give one of them")
            read[name], spelled[name] = value, key
        return read


def _run_options(body: RunCreate) -> Json:
    """The run fields Statehouse keeps with the run (its kwargs) as given."""
    if body.durability is not None and body.checkpoint_during is not None:
        raise HttpError(422, "give durability or checkpoint_during, not both")
    durability = body.durability
    if body.checkpoint_during is not None:
        durability = "async" if body.checkpoint_during else "exit"
    options = {
        "on_disconnect": body.on_disconnect,
        "stream_resumable": body.stream_resumable,
        "durability": durability,
        "feedback_keys": body.feedback_keys,
        "on_completion": body.on_completion,
    }
    return {key: value for key, value in options.items() if value is not None}


def _start_run(request, thread: Thread, body: RunCreate, workflow: Workflow, **extra) -> Run:
    command = body.command.model_dump(exclude_none=True) if body.command else None
    checkpoint_id = body.checkpoint_id or (body.checkpoint or {}).get("checkpoint_id")
    # useStream resumes with {"input": {}, "command": {...}}: an empty input is no input.
    graph_input = None if command is not None and body.input in ({}, None) else body.input
    return services.create_run(
        thread,
        workflow=workflow,
        input=graph_input,
        command=command,
        config=body.config,
        context=body.context,
        metadata=body.metadata,
        stream_mode=body.stream_mode,
        stream_subgraphs=body.stream_subgraphs,
        interrupt_before=body.interrupt_before,
        interrupt_after=body.interrupt_after,
        checkpoint_id=checkpoint_id,
        multitask_strategy=body.multitask_strategy,
        after_seconds=body.after_seconds,
        extra_kwargs=_run_options(body) | extra,
        actor=request.auth,
    )


def _create_run(request, thread_id: str | None, body: RunCreate) -> Run:
    """The run on the caller's thread ``thread_id``, or on a thread created for it (a
    stateless run's own, when ``thread_id`` is None, or ``if_not_exists: "create"``).

    A created thread (and its session) commits with the run or not at all: a request
    that fails validation writes nothing.
    """
    if thread_id is not None:
        try:
            thread = get_thread(request, thread_id)
        except HttpError:
            if body.if_not_exists != "create":
                raise
        else:
            return _start_run(request, thread, body, get_workflow(request, body.assistant_id))
        try:
            uuid.UUID(thread_id)
        except ValueError:
            raise HttpError(422, "thread_id must be a UUID") from None
        if Thread.objects.filter(pk=thread_id).exists():
            raise HttpError(404, f"Thread {thread_id} not found")
    workflow = get_workflow(request, body.assistant_id)
    metadata = {}
    if thread_id is None and body.on_completion != "keep":
        metadata["temporary"] = True  # deleted after the run finishes
    with transaction.atomic():
        thread = create_thread_for(request, thread_id, metadata)
        return _start_run(request, thread, body, workflow)


def _locations(run: Run, tail: str = "") -> dict[str, str]:
    path = f"/threads/{run.thread_id}/runs/{run.pk}"
    headers = {"Content-Location": path}
    if tail:
        headers["Location"] = path + tail
    return headers


def _with_headers(response, headers: dict[str, str]):
    for key, value in headers.items():
        response[key] = value
    return response


@langgraph_router.post("/threads/{thread_id}/runs", summary="Create a background run")
def create_run(request, thread_id: str, body: RunCreate, response: HttpResponse):
    run = _create_run(request, thread_id, body)
    _with_headers(response, _locations(run))
    return run_out(run)


@langgraph_router.post("/runs", summary="Create a stateless background run")
def create_stateless_run(request, body: RunCreate, response: HttpResponse):
    run = _create_run(request, None, body)
    _with_headers(response, _locations(run))
    return run_out(run)


@langgraph_router.post("/runs/batch", summary="Create several stateless background runs")
def create_stateless_runs(request, body: list[BatchRunCreate]):
    """All of them or none: a refused one (a 4xx naming it) creates nothing."""
    if len(body) > settings.STATEHOUSE_API_MAX_LIMIT:
        raise HttpError(422, f"at most {settings.STATEHOUSE_API_MAX_LIMIT} runs in a batch")
    with transaction.atomic():
        runs = [_create_run(request, None, item) for item in body]
    return [run_out(run) for run in runs]


@langgraph_router.get("/threads/{thread_id}/runs", summary="List a thread's runs")
def list_runs(
    request,
    thread_id: str,
    limit: int = Query(10, ge=1, le=MAX_INT),
    offset: int = Query(0, ge=0, le=MAX_INT),
    status: Literal["pending", "running", "success", "error", "timeout", "interrupted"]
    | None = None,
):
    thread = get_thread(request, thread_id)
    runs = thread.runs.order_by("-created_at")
    if status:
        runs = runs.filter(status=status)
    return [run_out(run) for run in runs[offset : offset + _limit(limit)]]


# --- waiting and streaming ----------------------------------------------------------

# A waiting request reads the database again after this long without a push (a push may
# be lost: the run's event log and status in the database are the truth).
POLL_S = 0.5
# A waiting request whose database reads fail (a restart, say) tries again for this long,
# then ends with an error; the client joins again (/join, or /stream with Last-Event-ID).
DB_GRACE_S = 10.0


class DatabaseLost(Exception):
    """The database stayed unreachable past DB_GRACE_S while following a run."""


async def _db(read, *args):
    """``await read(*args)``, a database read, tried again while the database is away."""
    from threads_app.runtime import drop_broken_connection, is_transient_db_error

    loop = asyncio.get_running_loop()
    deadline = loop.time() + DB_GRACE_S
    pause = 0.25
    while True:
        try:
            return await read(*args)
        except Exception as exc:
            if not is_transient_db_error(exc):
                raise
            # The async ORM's thread keeps its connection: drop it, or it fails again.
            await sync_to_async(drop_broken_connection)()
            if loop.time() + pause > deadline:
                raise DatabaseLost(f"{type(exc).__name__}: {exc}".strip()) from exc
            logger.warning("database read failed; trying again in %g s", pause, exc_info=True)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)


def _lost(run_id, last_id: int | None = None) -> dict[str, str]:
    """The error a wait or stream ends with when it cannot follow the run any more."""
    where = f"/stream with Last-Event-ID {last_id}" if last_id is not None else "/join"
    return {
        "error": "DatabaseUnavailable",
        "message": f"the database is unreachable, so run {run_id} cannot be followed; "
        f"it goes on: join it again ({where})",
    }


async def _final_output(run_id) -> Json:
    """What /wait and /join return: the thread's values, or the run's error."""

    @sync_to_async
    def read():
        run = Run.objects.select_related("thread").filter(pk=run_id).first()
        if run is None:
            return {"__error__": _deleted(run_id)}
        if run.status in (Run.Status.ERROR, Run.Status.TIMEOUT):
            kind, _, message = run.error.partition(": ")
            return {"__error__": {"error": kind or run.status, "message": message or run.error}}
        values = dict(run.thread.values or {}) if isinstance(run.thread.values, dict) else {}
        if run.thread.interrupts:
            values["__interrupt__"] = [
                {"value": i.get("value"), "id": i.get("id")} for i in run.thread.interrupts
            ]
        return values

    return await read()


async def _run_status(run_id) -> str | None:
    """The run's status; None once it is deleted (with its thread, say)."""
    return await Run.objects.filter(pk=run_id).values_list("status", flat=True).afirst()


def _deleted(run_id) -> dict[str, str]:
    """The error /wait, /join and streams end with when the run is deleted before it ends."""
    return {"error": "RunDeleted", "message": f"run {run_id} was deleted before it finished"}


def _may_have_ended(message: dict | None) -> bool:
    """Whether a push to the run's group may mean it ended: a change of the run's state
    (its events come before it, while it still runs) or no push at all (a poll)."""
    if message is None:
        return True
    event = message.get("event") or {}
    return event.get("type") == "state.changed" and event.get("entity") == "run"


async def _wait_body(run_id):
    """Whitespace keep-alives while the run runs, then the JSON result.

    The run's status is read again when its state changes or after POLL_S without a
    push, not at each of its events (the events of a run come first, then the change).
    """
    heartbeat = settings.STATEHOUSE_SSE_HEARTBEAT_S
    try:
        async with RunEvents(run_id) as events:
            waited = 0.0
            status = await _db(_run_status, run_id)
            while status is not None and status not in Run.FINAL_STATUSES:
                message = await events.wait(POLL_S)
                waited = 0.0 if message is not None else waited + POLL_S
                if waited >= heartbeat:
                    waited = 0.0
                    yield b"\n"
                if _may_have_ended(message):
                    status = await _db(_run_status, run_id)
        body = await _db(_final_output, run_id)
    except DatabaseLost:
        body = {"__error__": _lost(run_id)}
    yield json.dumps(body, default=str).encode()


def _json_stream(body, headers: dict[str, str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="application/json")
    return _with_headers(response, headers)


@langgraph_router.post("/threads/{thread_id}/runs/wait", summary="Create a run and wait for it")
async def wait_run(request, thread_id: str, body: RunCreate):
    run = await sync_to_async(_create_run)(request, thread_id, body)
    wait = _cancel_when_gone(_wait_body(run.pk), request, run, body.on_disconnect == "cancel")
    return _json_stream(wait, _locations(run, "/join"))


@langgraph_router.post("/runs/wait", summary="Create a stateless run and wait for it")
async def wait_stateless_run(request, body: RunCreate):
    run = await sync_to_async(_create_run)(request, None, body)
    wait = _cancel_when_gone(_wait_body(run.pk), request, run, body.on_disconnect == "cancel")
    return _json_stream(wait, _locations(run, "/join"))


@langgraph_router.get("/threads/{thread_id}/runs/{run_id}/join", summary="Wait for a run")
async def join_run(request, thread_id: str, run_id: str, cancel_on_disconnect: bool = False):
    run = await sync_to_async(get_run)(request, thread_id, run_id)
    wait = _cancel_when_gone(_wait_body(run.pk), request, run, cancel_on_disconnect)
    return _json_stream(wait, _locations(run, "/join"))


# Cancels started for clients gone away, kept until done (the loop holds tasks weakly).
_cancelling: set[asyncio.Task] = set()


async def _cancel_when_gone(body, request, run: Run, cancel: bool):
    """``body``; with ``cancel`` (on_disconnect "cancel"), the run is cancelled when its
    client goes away before the body ends (the server closes or cancels the iteration)."""
    ended = False
    try:
        async for part in body:
            yield part
        ended = True
    finally:
        if cancel and not ended:
            task = asyncio.ensure_future(sync_to_async(_cancel_gone)(run.pk, request.auth))
            _cancelling.add(task)
            task.add_done_callback(_cancelling.discard)


def _cancel_gone(run_id, actor) -> None:
    try:
        services.cancel_run(run_id, action="interrupt", actor=actor)
    except (services.RunFinished, state.EntityNotFound):
        return  # it ended (or was deleted) meanwhile
    logger.info("run %s: cancelled, its client went away (on_disconnect=cancel)", run_id)


class RunEvents:
    """Wakes a waiting request when the run's feed announces a new event (or ends).

    The run's event log in the database is the source of truth; the channel layer only
    shortens the wait, so a missed push costs at most one poll interval.
    """

    def __init__(self, run_id, group: str = ""):
        self.group = group or f"run.{run_id}"
        self.layer = get_channel_layer()
        self.channel = None
        self.receiving: asyncio.Task | None = None

    async def __aenter__(self):
        if self.layer is not None:
            from core import realtime

            realtime.set_server_loop(asyncio.get_running_loop())
            try:
                channel = await self.layer.new_channel()
                await self.layer.group_add(self.group, channel)
            except Exception as exc:  # Redis down: the database poll alone follows the run
                logger.warning("%s: the channel layer failed (%s); polling", self.group, exc)
            else:
                self.channel = channel
        return self

    async def __aexit__(self, *exc):
        if self.receiving is not None:
            self.receiving.cancel()
        if self.channel is not None:
            try:
                await self.layer.group_discard(self.group, self.channel)
            except Exception as exc:  # the answer is complete: do not cut it off
                logger.warning("%s: leaving the group failed (%s)", self.group, exc)

    async def wait(self, timeout: float) -> dict | None:
        """The next push to the run's group, or None after ``timeout`` seconds.

        One receive stays pending across waits rather than being cancelled at each
        timeout: cancelling channels_redis's receive mid-command could leave the wait
        hanging on it, and the poll must go on whatever the layer does.
        """
        if self.channel is None:
            await asyncio.sleep(timeout)
            return None
        if self.receiving is None:
            self.receiving = asyncio.ensure_future(self.layer.receive(self.channel))
        done, _ = await asyncio.wait({self.receiving}, timeout=timeout)
        if not done:
            return None
        received, self.receiving = self.receiving, None
        try:
            return received.result()
        except Exception:
            # The layer failed (Redis restarting, say): the database poll carries on.
            logger.warning("%s: the channel layer failed; polling", self.group, exc_info=True)
            await asyncio.sleep(timeout)
            return None


def _wanted(modes: list[str]) -> set[str]:
    """The log's events a stream in ``modes`` sends (with the run's start and errors)."""
    wanted = set(modes) | {"metadata", "error"}
    if "messages-tuple" in wanted:
        wanted.add("messages")
    return wanted


def _frames(event: RunEvent, modes: list[str], accumulator: MessageAccumulator):
    """(name, data) of what one logged event of a run becomes in a stream in ``modes``,
    as LangGraph Server names them: ``mode|<namespace>``, but the messages/* events of
    the ``messages`` mode carry no namespace, nor do ``events``."""
    if event.event == "messages" and "messages-tuple" not in modes:
        return accumulator.feed(event.data)
    if event.event == "events":
        return [("events", event.data)]
    return [(event_name(event.event, event.namespace), event.data)]


async def _event_stream(run_id, modes: list[str], last_id: int | None, subgraphs: bool):
    """The run's events as SSE after ``last_id`` (None: those logged from now on) until
    it ends, with heartbeats. Like LangGraph Server's, the stream just closes at the
    run's end (no end event); a failed run's last event is its ``error``.

    Ends with an ``error`` event when the database stays unreachable (see _db)."""
    wanted = _wanted(modes)
    accumulator = MessageAccumulator()
    heartbeat = settings.STATEHOUSE_SSE_HEARTBEAT_S
    try:
        async with RunEvents(run_id) as feed:
            if last_id is None:
                last_id = await _db(_last_seq, run_id)
            idle = 0.0
            while True:
                events = await _db(_events_after, run_id, last_id)
                for event in events:
                    last_id = event.seq
                    if event.event == "end":
                        return
                    if event.event not in wanted or (event.namespace and not subgraphs):
                        continue
                    if event.event == "error":
                        yield sse("error", _error_data(event), event.seq)
                        return
                    for name, data in _frames(event, modes, accumulator):
                        yield sse(name, data, event.seq)
                if events:
                    idle = 0.0
                    continue
                status = await _db(_run_status, run_id)
                if status is None:
                    yield sse("error", _deleted(run_id))
                    return
                if status in Run.FINAL_STATUSES and not await _db(_more, run_id, last_id):
                    return
                if await feed.wait(POLL_S) is None:
                    idle += POLL_S
                    if idle >= heartbeat:
                        idle = 0.0
                        yield b": heartbeat\n\n"
    except DatabaseLost:
        yield sse("error", _lost(run_id, last_id))


async def _events_after(run_id, last_id) -> list[RunEvent]:
    query = RunEvent.objects.filter(run_id=run_id, seq__gt=last_id).order_by("seq")[:500]
    return [e async for e in query]


async def _last_seq(run_id) -> int:
    last = await RunEvent.objects.filter(run_id=run_id).aaggregate(last=Max("seq"))
    return last["last"] or 0


async def _more(run_id, last_id) -> bool:
    return await RunEvent.objects.filter(run_id=run_id, seq__gt=last_id).aexists()


def _error_data(event: RunEvent) -> dict[str, str]:
    """A failed run's error as LangGraph Server sends it: ``{"error", "message"}``."""
    data = event.data if isinstance(event.data, dict) else {}
    message = data.get("error") or ""
    kind, _, detail = message.partition(": ")
    return {"error": kind or data.get("status") or "error", "message": detail or message}


def _sse_response(request, run: Run, modes, last_id: int | None, subgraphs: bool, cancel: bool):
    """The run's stream; every event carries its id (every run's log is kept, so every
    stream can be joined again after a drop from ``Last-Event-ID``)."""
    body = _cancel_when_gone(_event_stream(run.pk, modes, last_id, subgraphs), request, run, cancel)
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"
    return _with_headers(response, _locations(run, "/stream"))


def _modes(value) -> list[str]:
    modes = [value] if isinstance(value, str) else list(value or ["values"])
    return modes


def _last_event_id(request) -> int | None:
    """Where a join starts: after the event with the ``Last-Event-ID`` given, or (None)
    at the events to come when there is none, or it is not one of Statehouse's ids (as
    LangGraph Server, which replays nothing then). ``-1`` and ``0``: from the start."""
    raw = (request.headers.get("Last-Event-ID") or "").strip()
    try:
        return max(int(raw), 0)
    except ValueError:
        return None


@langgraph_router.post("/threads/{thread_id}/runs/stream", summary="Create a run and stream it")
async def stream_run(request, thread_id: str, body: RunCreate):
    run = await sync_to_async(_create_run)(request, thread_id, body)
    cancel = body.on_disconnect == "cancel"
    return _sse_response(request, run, _modes(body.stream_mode), 0, body.stream_subgraphs, cancel)


@langgraph_router.post("/runs/stream", summary="Create a stateless run and stream it")
async def stream_stateless_run(request, body: RunCreate):
    run = await sync_to_async(_create_run)(request, None, body)
    cancel = body.on_disconnect == "cancel"
    return _sse_response(request, run, _modes(body.stream_mode), 0, body.stream_subgraphs, cancel)


@langgraph_router.get("/threads/{thread_id}/runs/{run_id}/stream", summary="Join a run's stream")
async def join_stream(
    request,
    thread_id: str,
    run_id: str,
    stream_mode: str | None = None,
    cancel_on_disconnect: bool = False,
):
    run = await sync_to_async(get_run)(request, thread_id, run_id)
    modes = stream_mode.split(",") if stream_mode else (run.kwargs or {}).get("stream_mode")
    unknown = [mode for mode in _modes(modes) if mode not in STREAM_MODES]
    if unknown:
        raise HttpError(422, f"unsupported stream_mode {', '.join(unknown)}")
    subgraphs = bool((run.kwargs or {}).get("stream_subgraphs"))
    last_id = _last_event_id(request)
    return _sse_response(request, run, _modes(modes), last_id, subgraphs, cancel_on_disconnect)


# The thread-level stream's modes (LangGraph Server's ThreadStreamMode).
THREAD_STREAM_MODES = ("run_modes", "lifecycle", "state_update")


def _thread_stream_modes(request) -> list[str]:
    """``stream_modes`` (what LangGraph Server reads) or ``stream_mode`` (what the SDKs
    send), repeated or comma-separated; ``run_modes`` by default."""
    values = request.GET.getlist("stream_modes") or request.GET.getlist("stream_mode")
    modes = [mode.strip() for value in values for mode in value.split(",") if mode.strip()]
    for mode in modes:
        if mode not in THREAD_STREAM_MODES:
            raise HttpError(422, f"Invalid stream mode: {mode}")
    if "state_update" in modes:
        raise HttpError(
            422,
            "stream mode state_update is not supported: Statehouse does not stream a "
            "thread's state updates (read GET /threads/{thread_id}/state instead)",
        )
    return modes or ["run_modes"]


def _thread_frames(event: RunEvent, modes: list[str], accumulators: dict):
    """What one logged event of a run on the thread becomes in the thread's stream:
    with ``run_modes`` every event the run streams, with ``lifecycle`` its start and
    end; a run's end is ``metadata {"status": "run_done", "run_id"}``."""
    run_modes = (event.run.kwargs or {}).get("stream_mode") or ["values"]
    if event.event in ("end", "error"):
        frames = []
        if event.event == "error" and "run_modes" in modes:
            frames.append(("error", _error_data(event)))
        return [*frames, ("metadata", {"status": "run_done", "run_id": str(event.run_id)})]
    if event.event == "metadata":
        return [("metadata", {"run_id": str(event.run_id), "attempt": event.attempt})]
    if "run_modes" not in modes or event.event not in _wanted(run_modes) - {"metadata"}:
        return []
    subgraphs = bool((event.run.kwargs or {}).get("stream_subgraphs"))
    if event.namespace and not subgraphs:
        return []
    accumulator = accumulators.setdefault(event.run_id, MessageAccumulator())
    return _frames(event, run_modes, accumulator)


async def _thread_events_after(thread_id, last_id) -> list[RunEvent]:
    query = (
        RunEvent.objects.filter(run__thread_id=thread_id, id__gt=last_id)
        .select_related("run")
        .order_by("id")[:500]
    )
    return [e async for e in query]


async def _thread_last_id(thread_id) -> int:
    last = await RunEvent.objects.filter(run__thread_id=thread_id).aaggregate(last=Max("id"))
    return last["last"] or 0


async def _thread_exists(thread_id) -> bool:
    return await Thread.objects.filter(pk=thread_id).aexists()


async def _thread_stream(thread_id, modes: list[str], last_id: int | None):
    """The thread's runs' events as SSE, ids the log's own (one sequence across the
    thread's runs), until the client goes away or the thread is deleted."""
    accumulators: dict = {}
    heartbeat = settings.STATEHOUSE_SSE_HEARTBEAT_S
    try:
        async with RunEvents(None, group=f"thread.{thread_id}") as feed:
            if last_id is None:
                last_id = await _db(_thread_last_id, thread_id)
            idle = 0.0
            while True:
                events = await _db(_thread_events_after, thread_id, last_id)
                for event in events:
                    last_id = event.id
                    for name, data in _thread_frames(event, modes, accumulators):
                        yield sse(name, data, event.id)
                if events:
                    idle = 0.0
                    continue
                if not await _db(_thread_exists, thread_id):
                    yield sse("error", {"error": "ThreadDeleted", "message": "thread deleted"})
                    return
                if await feed.wait(POLL_S) is None:
                    idle += POLL_S
                    if idle >= heartbeat:
                        idle = 0.0
                        yield b": heartbeat\n\n"
    except DatabaseLost:
        yield sse("error", _lost(thread_id, last_id))


@langgraph_router.get("/threads/{thread_id}/stream", summary="Join a thread's stream")
async def join_thread_stream(request, thread_id: str):
    """Every run's events on the thread, live (or from ``Last-Event-ID``), as LangGraph
    Server's thread stream: ``run_modes`` (the default) and ``lifecycle``."""
    thread = await sync_to_async(get_thread)(request, thread_id)
    modes = _thread_stream_modes(request)
    raw = (request.headers.get("Last-Event-ID") or "").strip()
    last_id = None
    if raw:
        try:
            last_id = max(int(raw), 0)
        except ValueError:
            raise HttpError(422, f"Invalid last-event-id: {raw!r} is not an event id") from None
    body = _thread_stream(thread.pk, modes, last_id)
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"
    return response


@langgraph_router.get("/threads/{thread_id}/runs/{run_id}", summary="Get a run")
def read_run(request, thread_id: str, run_id: str):
    return run_out(get_run(request, thread_id, run_id))


@langgraph_router.delete("/threads/{thread_id}/runs/{run_id}", response={204: None})
def delete_run(request, thread_id: str, run_id: str):
    run = get_run(request, thread_id, run_id)
    if run.status in services.ACTIVE_RUN_STATUSES:
        raise HttpError(409, f"Run {run_id} is {run.status}; cancel it first")
    state.delete_state("run", run.pk, actor=request.auth)
    return 204, None


@langgraph_router.post("/threads/{thread_id}/runs/{run_id}/cancel", response={202: None, 204: None})
def cancel_run(
    request,
    thread_id: str,
    run_id: str,
    wait: bool = False,
    action: Literal["interrupt", "rollback"] = "interrupt",
):
    run = get_run(request, thread_id, run_id)
    try:
        services.cancel_run(run.pk, action=action, actor=request.auth)
    except services.RunFinished:
        raise HttpError(404, NO_RUNS_TO_CANCEL) from None
    if wait:
        services.wait_for_run(run.pk, timeout=60)
        return 204, None
    return 202, None


# LangGraph Server's answer when nothing it was asked to cancel is pending or running.
NO_RUNS_TO_CANCEL = (
    "No matching runs to cancel. Please verify the thread ID and run IDs are correct, "
    "and the runs haven't been deleted or completed."
)


class RunsCancel(Strict):
    thread_id: str | None = None
    run_ids: list[str] | None = None
    status: Literal["pending", "running", "all"] | None = None


@langgraph_router.post("/runs/cancel", response={204: None}, summary="Cancel several runs")
def cancel_runs(request, body: RunsCancel, action: Literal["interrupt", "rollback"] = "interrupt"):
    """As LangGraph Server: either ``status`` (every pending and/or running run the caller
    may see) or ``thread_id`` with ``run_ids``. 404 when none of them can be cancelled."""
    if body.status is not None:
        if body.thread_id is not None or body.run_ids is not None:
            raise HttpError(422, "Cannot specify 'thread_id' or 'run_ids' when using 'status'")
        statuses = ["pending", "running"] if body.status == "all" else [body.status]
        runs = Run.objects.filter(status__in=statuses)
        if not _is_staff(request.auth):
            runs = runs.filter(thread__session__owner=request.auth)
    else:
        if body.thread_id is None or body.run_ids is None:
            raise HttpError(422, "Must provide either a status, or both 'thread_id' and 'run_ids'")
        thread = get_thread(request, body.thread_id)
        try:
            run_ids = [uuid.UUID(str(run_id)) for run_id in body.run_ids]
        except ValueError:
            raise HttpError(422, "Invalid run ID: must be a UUID") from None
        runs = thread.runs.filter(pk__in=run_ids)
    cancelled = 0
    for run_id in list(runs.values_list("pk", flat=True)[: settings.STATEHOUSE_API_MAX_LIMIT]):
        try:
            services.cancel_run(run_id, action=action, actor=request.auth)
        except (services.RunFinished, state.EntityNotFound):
            continue  # finished (or deleted) meanwhile: as for one that never matched
        cancelled += 1
    if not cancelled:
        raise HttpError(404, NO_RUNS_TO_CANCEL)
    return 204, None
