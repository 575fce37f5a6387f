"""Liveness and what the server can do, in LangGraph Server's shapes."""

from importlib.metadata import PackageNotFoundError, version

from ninja import Router, Schema

from threads_app import registry

router = Router()


class Ok(Schema):
    ok: bool


class Flags(Schema):
    assistants: bool
    crons: bool
    langsmith: bool
    langsmith_tracing_replicas: bool
    langsmith_tracing_session_on_runs: bool


class Host(Schema):
    kind: str
    project_id: str | None
    host_revision_id: str | None
    revision_id: str | None
    tenant_id: str | None


class Info(Schema):
    version: str
    langgraph_py_version: str
    flags: Flags
    host: Host
    graphs: list[str]


@router.get("/ok", response=Ok, summary="Liveness (authenticated, like every API route)")
def ok(request):
    return {"ok": True}


@router.get("/info", response=Info, summary="Server information")
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
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
