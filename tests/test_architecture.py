"""The layout's rules, read from the source by tests/imports_graph.py (nothing imported).

Rules still broken elsewhere, and so not asserted yet: core importing apps (the
dashboard and load_demo, until the control room has a package of its own) and the
delivery modules (admin, API, pages) inside the domain apps.
"""

import ast

import pytest

from tests import imports_graph

EDGES = imports_graph.graph()
MODULES = imports_graph.project_modules()


def test_there_are_no_import_circles():
    assert imports_graph.circles(EDGES) == []


@pytest.mark.parametrize("package", ["history_app", "checkpoints_app"])
def test_history_and_checkpoints_never_import_threads_app(package):
    imports = sorted(
        (module, target)
        for module, targets in EDGES.items()
        if imports_graph.package_of(module) == package
        for target in targets
        if imports_graph.package_of(target) == "threads_app"
    )
    assert imports == []


# Domain modules that reach other apps' models only through plain imports or the state
# manager's registry (core.state.entity_model / read_fields / add_to_counters).
NO_GET_MODEL = [
    "checkpoints_app.handlers",
    "checkpoints_app.saver",
    "checkpoints_app.services",
    "history_app.budgets",
    "history_app.metrics",
    "history_app.recording",
    "history_app.services",
    "sessions_app.handlers",
    "sessions_app.services",
]


def _calls_get_model(path) -> bool:
    tree = ast.parse(path.read_text())
    return any(
        isinstance(node, ast.Attribute) and node.attr == "get_model" for node in ast.walk(tree)
    )


@pytest.mark.parametrize("module", NO_GET_MODEL)
def test_no_apps_get_model_in_the_domain_modules(module):
    assert not _calls_get_model(MODULES[module])


STATUS_WORDS = {"idle", "busy", "interrupted", "pending", "running", "success", "timeout"}


def _status_literals(path) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and id(node) not in docstrings
        and node.value in STATUS_WORDS
    ]


@pytest.mark.parametrize("module", NO_GET_MODEL)
def test_statuses_are_imported_never_copied(module):
    """core.statuses holds the vocabularies (history_app's own alert delivery states
    are history_app's and not in these modules)."""
    assert _status_literals(MODULES[module]) == []


def test_state_changed_receivers_are_connected_per_sender():
    """The apps connect their receivers to the models they listen to (lazy labels);
    only the bus's generic receivers (history, live pushes) hear every model."""
    from core.events import state_changed
    from sessions_app.models import Session
    from threads_app.models import Run, Thread

    def names(sender):
        return {
            getattr(receiver, "__qualname__", "")
            for receiver in state_changed._live_receivers(sender)[0]
        }

    generic = {"record_state_event", "push_after_commit"}
    assert names(Thread) >= generic | {"update_session_aggregate", "record_restore_point"}
    assert names(Session) >= generic
    assert not names(Session) & {"update_session_aggregate", "record_restore_point"}
    assert not names(Run) & {"update_session_aggregate", "record_restore_point"}
