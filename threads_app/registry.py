"""The workflow registry: graphs from a `langgraph.json`, in LangGraph's own format.

``{"graphs": {"chat": "./path/to/file.py:graph", "other": "package.module:factory"}}``
A graph is a compiled graph, an uncompiled ``StateGraph``, or a factory taking the run's
config and returning either. Paths are relative to the file's folder, and that folder
(plus its ``dependencies`` entries that are folders) is put on ``sys.path``.
"""

import importlib
import importlib.util
import inspect
import json
import sys
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel


class GraphNotFound(LookupError):
    def __init__(self, graph_id: str):
        known = ", ".join(graph_ids())
        super().__init__(f"no graph {graph_id!r} in {graphs_file()} (known: {known})")


class GraphLoadError(RuntimeError):
    pass


@dataclass(frozen=True)
class GraphSpec:
    graph_id: str
    spec: str
    base_dir: Path


def graphs_file() -> Path:
    return Path(settings.STATEHOUSE_GRAPHS_FILE)


@cache
def _specs() -> dict[str, GraphSpec]:
    path = graphs_file()
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GraphLoadError(f"cannot read {path}: {exc}") from None
    graphs = config.get("graphs")
    if not isinstance(graphs, dict):
        raise GraphLoadError(f'{path} has no "graphs" object')
    base = path.parent.resolve()
    for dependency in [".", *config.get("dependencies", [])]:
        folder = (base / dependency).resolve()
        if folder.is_dir() and str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    specs = {}
    for graph_id, spec in graphs.items():
        if isinstance(spec, dict):  # {"path": "...", "description": ...}
            spec = spec.get("path", "")
        if not isinstance(spec, str) or ":" not in spec:
            raise GraphLoadError(f"graph {graph_id!r}: expected 'path.py:attr' or 'module:attr'")
        specs[graph_id] = GraphSpec(graph_id, spec, base)
    return specs


def graph_ids() -> list[str]:
    return sorted(_specs())


_load_lock = threading.Lock()


@cache
def _target(graph_id: str) -> Any:
    """The graph object or factory named by the spec (imported once)."""
    try:
        spec = _specs()[graph_id]
    except KeyError:
        raise GraphNotFound(graph_id) from None
    location, _, attr = spec.spec.rpartition(":")
    with _load_lock:
        try:
            if location.endswith(".py"):
                file = (spec.base_dir / location).resolve()
                name = f"statehouse_graphs.{graph_id}"
                module_spec = importlib.util.spec_from_file_location(name, file)
                if module_spec is None or module_spec.loader is None:
                    raise GraphLoadError(f"graph {graph_id!r}: cannot load {file}")
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[name] = module
                module_spec.loader.exec_module(module)
            else:
                module = importlib.import_module(location)
        except GraphLoadError:
            raise
        except Exception as exc:
            raise GraphLoadError(f"graph {graph_id!r}: importing {location} failed: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise GraphLoadError(f"graph {graph_id!r}: {location} has no {attr!r}") from None


def load_graph(graph_id: str, config: dict | None = None, checkpointer=None) -> Pregel:
    """A compiled graph for ``graph_id`` bound to ``checkpointer``."""
    target = _target(graph_id)
    if not isinstance(target, Pregel | StateGraph) and callable(target):
        takes_config = bool(inspect.signature(target).parameters)
        target = target(config or {}) if takes_config else target()
    if isinstance(target, StateGraph):
        return target.compile(checkpointer=checkpointer)
    if isinstance(target, Pregel):
        return target.copy(update={"checkpointer": checkpointer}) if checkpointer else target
    raise GraphLoadError(f"graph {graph_id!r} is a {type(target).__name__}, not a graph")


def reset() -> None:
    """Forget loaded graphs (tests that point STATEHOUSE_GRAPHS_FILE elsewhere)."""
    _specs.cache_clear()
    _target.cache_clear()
