"""LangGraph Server's assistants: Statehouse's workflows, each create and patch a new
version; their graphs drawn, and their schemas."""

import logging
import uuid
import warnings
from typing import Any, Literal

from ninja import Router, Schema, Status
from ninja.errors import HttpError
from pydantic import Field

from api.common import (
    MAX_INT,
    Detail,
    Invalid,
    Json,
    Strict,
    Time,
    get_workflow,
    json_contains,
    page_size,
)
from core import state
from core.metadata import normalize_metadata
from threads_app import registry, services
from threads_app.models import Workflow, WorkflowVersion

router = Router()
logger = logging.getLogger(__name__)


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


class VersionSearch(Strict):
    metadata: Json | None = None
    limit: int = Field(default=10, ge=1, le=MAX_INT)
    offset: int = Field(default=0, ge=0, le=MAX_INT)


class VersionChange(Strict):
    version: int = Field(ge=1, le=MAX_INT)


class AssistantOut(Schema):
    """An assistant as LangGraph Server answers one: its current version; a system
    assistant's metadata says ``created_by: system``."""

    assistant_id: uuid.UUID
    graph_id: str
    config: Json
    context: Json
    metadata: Json
    name: str
    description: str | None
    version: int
    created_at: Time
    updated_at: Time

    @staticmethod
    def resolve_assistant_id(workflow: Workflow) -> uuid.UUID:
        return workflow.pk

    @staticmethod
    def resolve_metadata(workflow: Workflow) -> Json:
        return workflow.metadata | ({"created_by": "system"} if workflow.is_system else {})

    @staticmethod
    def resolve_description(workflow: Workflow) -> str | None:
        return workflow.description or None

    @staticmethod
    def resolve_version(workflow: Workflow) -> int:
        return workflow.assistant_version


class VersionOut(Schema):
    """One of an assistant's versions, as LangGraph Server lists them."""

    assistant_id: uuid.UUID
    graph_id: str
    config: Json
    context: Json
    metadata: Json
    name: str
    description: str | None
    version: int
    created_at: Time

    @staticmethod
    def resolve_assistant_id(version: WorkflowVersion) -> uuid.UUID:
        return version.workflow_id

    @staticmethod
    def resolve_description(version: WorkflowVersion) -> str | None:
        return version.description or None


class GraphSchemas(Schema):
    """A graph's JSON schemas (None for one that could not be made)."""

    input_schema: Json | None
    output_schema: Json | None
    state_schema: Json | None
    config_schema: Json | None
    context_schema: Json | None


class AssistantSchemas(Schema):
    graph_id: str
    input_schema: Json | None
    output_schema: Json | None
    state_schema: Json | None
    config_schema: Json | None
    context_schema: Json | None


def _check_graph(graph_id: str) -> None:
    if graph_id not in registry.graph_ids():
        known = ", ".join(registry.graph_ids())
        raise HttpError(422, f"graph_id {graph_id!r} is not registered (known: {known})")


@router.post(
    "/assistants",
    response={200: AssistantOut, 404: Detail, 409: Detail, 422: Invalid},
    summary="Create an assistant",
)
def create_assistant(request, body: AssistantCreate):
    _check_graph(body.graph_id)
    if body.assistant_id:
        try:
            uuid.UUID(body.assistant_id)
        except ValueError:
            raise HttpError(422, "assistant_id must be a UUID") from None
    return services.create_assistant(
        request.auth,
        body.graph_id,
        assistant_id=body.assistant_id,
        if_exists=body.if_exists,
        name=body.name or "",
        description=body.description or "",
        config=body.config,
        context=body.context,
        metadata=body.metadata,
    )


def _assistants(request, body):
    workflows = services.visible_workflows(request.auth)
    if body.graph_id:
        workflows = workflows.filter(graph_id=body.graph_id)
    if body.name:
        workflows = workflows.filter(name__icontains=body.name)
    return json_contains(workflows, "metadata", body.metadata)


@router.post(
    "/assistants/search",
    response={200: list[AssistantOut], 422: Invalid},
    summary="Search assistants",
)
def search_assistants(request, body: AssistantSearch):
    services.sync_system_workflows()
    order = {"assistant_id": "id"}.get(body.sort_by or "created_at", body.sort_by or "created_at")
    prefix = "" if body.sort_order == "asc" else "-"
    workflows = _assistants(request, body).order_by(prefix + order, "id")
    return workflows[body.offset : body.offset + page_size(body.limit)]


@router.post("/assistants/count", response={200: int, 422: Invalid}, summary="Count assistants")
def count_assistants(request, body: AssistantCount):
    services.sync_system_workflows()
    return _assistants(request, body).count()


@router.get(
    "/assistants/{assistant_id}",
    response={200: AssistantOut, 404: Detail},
    summary="Get an assistant",
)
def read_assistant(request, assistant_id: str):
    return get_workflow(request, assistant_id)


@router.patch(
    "/assistants/{assistant_id}",
    response={200: AssistantOut, 404: Detail, 409: Detail, 422: Invalid},
    summary="Update an assistant",
)
def patch_assistant(request, assistant_id: str, body: AssistantPatch):
    workflow = get_workflow(request, assistant_id, write=True)
    changes = body.model_dump(exclude_none=True)
    if "graph_id" in changes:
        _check_graph(changes["graph_id"])
    if "metadata" in changes:
        changes["metadata"] = normalize_metadata(changes["metadata"])
    try:
        # A new version; the metadata merge reads the row under its lock.
        return services.patch_workflow(workflow.pk, changes, actor=request.auth)
    except state.EntityNotFound:
        raise HttpError(404, f"Assistant {assistant_id} not found") from None


@router.post(
    "/assistants/{assistant_id}/versions",
    response={200: list[VersionOut], 404: Detail, 422: Invalid},
    summary="An assistant's versions",
)
def assistant_versions(request, assistant_id: str, body: VersionSearch):
    """Newest first, filtered by metadata containment."""
    workflow = get_workflow(request, assistant_id)
    versions = json_contains(workflow.versions.all(), "metadata", body.metadata)
    return versions.order_by("-version")[body.offset : body.offset + page_size(body.limit)]


@router.post(
    "/assistants/{assistant_id}/latest",
    response={200: AssistantOut, 404: Detail, 409: Detail, 422: Invalid},
    summary="Set the latest version",
)
def set_latest_version(request, assistant_id: str, body: VersionChange):
    workflow = get_workflow(request, assistant_id, write=True)
    try:
        return services.set_latest_version(workflow.pk, body.version, actor=request.auth)
    except services.WorkflowVersionNotFound as exc:
        raise HttpError(404, str(exc)) from None
    except state.EntityNotFound:
        raise HttpError(404, f"Assistant {assistant_id} not found") from None


@router.delete(
    "/assistants/{assistant_id}",
    response={204: None, 404: Detail, 409: Detail},
    summary="Delete an assistant",
)
def delete_assistant(request, assistant_id: str):
    workflow = get_workflow(request, assistant_id, write=True)
    state.delete_state("workflow", workflow.pk, actor=request.auth)
    return Status(204, None)


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


@router.get(
    "/assistants/{assistant_id}/graph",
    response={200: Json, 404: Detail, 422: Invalid},
    summary="The assistant's graph",
)
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


@router.get(
    "/assistants/{assistant_id}/schemas",
    response={200: AssistantSchemas, 404: Detail},
    summary="The graph's schemas",
)
def assistant_schemas(request, assistant_id: str):
    workflow = get_workflow(request, assistant_id)
    graph = registry.load_graph(workflow.graph_id, workflow.config)
    return {"graph_id": workflow.graph_id, **_graph_schemas(graph)}


def _subgraphs(request, assistant_id: str, namespace: str | None, recurse: bool) -> Json:
    workflow = get_workflow(request, assistant_id)
    graph = registry.load_graph(workflow.graph_id, workflow.config)
    found = graph.get_subgraphs(namespace=namespace, recurse=recurse)
    return {ns: _graph_schemas(subgraph) for ns, subgraph in found}


@router.get(
    "/assistants/{assistant_id}/subgraphs",
    response={200: dict[str, GraphSchemas], 404: Detail},
    summary="The graph's subgraphs",
)
def assistant_subgraphs(
    request, assistant_id: str, namespace: str | None = None, recurse: bool = False
):
    """The schemas of each subgraph, by namespace (``recurse``: nested ones too)."""
    return _subgraphs(request, assistant_id, namespace, recurse)


@router.get(
    "/assistants/{assistant_id}/subgraphs/{namespace}",
    response={200: dict[str, GraphSchemas], 404: Detail},
    summary="The subgraphs under a namespace",
)
def assistant_subgraphs_in(request, assistant_id: str, namespace: str, recurse: bool = False):
    return _subgraphs(request, assistant_id, namespace, recurse)
