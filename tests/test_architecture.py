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


DOMAIN_PACKAGES = {"core", "threads_app", "sessions_app", "history_app", "checkpoints_app"}
# Where the status vocabularies are defined: the kernel's, and history_app's own alert
# delivery states.
STATUS_DEFINITIONS = {"core.statuses", "history_app.models"}
# Moving to api/ / control_room/ in this issue; the coordinator removes this exemption.
MOVING = {
    "core.management.commands.load_demo",
    "history_app.metrics",
    "threads_app.api",
    "threads_app.checkpoints_api",
    "threads_app.streaming",
    "threads_app.studio",
}
# Being rewritten around threads_app.lifecycle in this issue (their copied statuses are
# reported to the coordinator, who removes this exemption).
REWRITTEN = {"threads_app.lifecycle", "threads_app.runtime"}


def _exempt(module: str) -> bool:
    name = module.rpartition(".")[2]
    return (
        module in STATUS_DEFINITIONS | MOVING | REWRITTEN
        or name.endswith("views")
        or name.endswith("consumers")
    )


# Every module of the domain packages (migrations are not in MODULES).
DOMAIN_MODULES = sorted(
    module
    for module in MODULES
    if imports_graph.package_of(module) in DOMAIN_PACKAGES and not _exempt(module)
)


def _calls_get_model(path) -> bool:
    tree = ast.parse(path.read_text())
    return any(
        isinstance(node, ast.Attribute) and node.attr == "get_model" for node in ast.walk(tree)
    )


@pytest.mark.parametrize("module", DOMAIN_MODULES)
def test_no_apps_get_model_in_the_domain_modules(module):
    """Other apps' models are reached by plain imports or through the state manager's
    registry (core.state.entity_model / read_fields / add_to_counters), which is the one
    scan of the installed models (apps.get_models)."""
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


@pytest.mark.parametrize("module", DOMAIN_MODULES)
def test_statuses_are_imported_never_copied(module):
    """core.statuses holds the vocabularies (history_app's own alert delivery states
    are history_app's, in its models)."""
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
