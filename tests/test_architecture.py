"""The layout's rules, read from the source by tests/imports_graph.py (nothing imported).

core is the shared kernel and imports no app; the pages, their feeds, /metrics, /healthz
and the commands of `make run` are the control room's, which may import every app and
which no app imports; the JSON API is the api package's, which no app imports either.
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


def _exempt(module: str) -> bool:
    return module in STATUS_DEFINITIONS


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


# Where a thread's status, values and interrupts are decided: threads_app.lifecycle, and
# the rules it shares with checkpoints_app (which may not import threads_app).
THREAD_STATE_WRITERS = {"threads_app.lifecycle", "core.thread_state"}
THREAD_STATE_FIELDS = {"status", "values", "interrupts"}
# The state manager's writes: where the changes (or initial state) are among the arguments.
CHANGES_ARGUMENT = {"create_state": 1, "update_state": 2}


def _dict_keys(node, assigned: dict[str, set]) -> set:
    """The constant keys a changes expression spells: a dict literal (with its ``**``
    parts), ``a | b``, or a name assigned such a dict in the same function."""
    if isinstance(node, ast.Dict):
        keys = set()
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                keys |= _dict_keys(value, assigned)
            elif isinstance(key, ast.Constant):
                keys.add(key.value)
        return keys
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _dict_keys(node.left, assigned) | _dict_keys(node.right, assigned)
    if isinstance(node, ast.Name):
        return assigned.get(node.id, set())
    return set()


def _assigned_keys(scope) -> dict[str, set]:
    """name -> the keys given to it in ``scope``: ``name = {...}``, ``name |= {...}``,
    ``name["key"] = ...``."""
    assigned: dict[str, set] = {}
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign) and node.value:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    assigned.setdefault(target.id, set()).update(_dict_keys(node.value, assigned))
                elif (
                    isinstance(target, ast.Subscript)
                    and isinstance(target.value, ast.Name)
                    and isinstance(target.slice, ast.Constant)
                ):
                    assigned.setdefault(target.value.id, set()).add(target.slice.value)
    return assigned


def _thread_state_writes(path) -> list[str]:
    """State manager calls on a "thread" whose changes spell its status, values or
    interrupts (changes built by a function call are not seen: the rule is a guard)."""
    tree = ast.parse(path.read_text())
    scopes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    found = []
    for scope in [tree, *scopes]:
        assigned = _assigned_keys(scope)
        for call in ast.walk(scope):
            if not isinstance(call, ast.Call):
                continue
            name = getattr(call.func, "attr", getattr(call.func, "id", ""))
            if name == "update_states" and call.args:
                # update_states([(row, changes), ...]): the rows named like a thread.
                rows = call.args[0].elts if isinstance(call.args[0], ast.List | ast.Tuple) else []
                for row in rows:
                    if not (isinstance(row, ast.Tuple) and len(row.elts) == 2):
                        continue
                    if "thread" not in ast.unparse(row.elts[0]):
                        continue
                    spelled = _dict_keys(row.elts[1], assigned) & THREAD_STATE_FIELDS
                    if spelled:
                        found.append(f"line {call.lineno}: {', '.join(sorted(spelled))}")
                continue
            position = CHANGES_ARGUMENT.get(name)
            if position is None or len(call.args) <= position:
                continue
            entity = call.args[0]
            if not (isinstance(entity, ast.Constant) and entity.value == "thread"):
                continue
            spelled = _dict_keys(call.args[position], assigned) & THREAD_STATE_FIELDS
            if spelled:
                found.append(f"line {call.lineno}: {', '.join(sorted(spelled))}")
    return sorted(set(found))


@pytest.mark.parametrize("module", sorted(set(MODULES) - THREAD_STATE_WRITERS))
def test_only_the_lifecycle_sets_a_thread_s_status_values_and_interrupts(module):
    """Every other module asks threads_app.lifecycle (checkpoints_app: core.thread_state)."""
    assert _thread_state_writes(MODULES[module]) == []


def test_the_thread_state_rule_sees_the_writes_it_forbids(tmp_path):
    source = tmp_path / "offender.py"
    source.write_text(
        "def a(thread, changes):\n"
        "    state.update_state('thread', thread.pk, {'status': 'idle'})\n"
        "def b(thread):\n"
        "    changes = {'error': ''}\n"
        "    changes['values'] = {}\n"
        "    state.update_state('thread', thread.pk, changes, actor=None)\n"
        "def c(run):\n"
        "    state.create_state('thread', {'session': 1, **{'interrupts': []}})\n"
        "    state.update_state('run', run.pk, {'status': 'pending'})\n"
        "    state.update_state('thread', run.thread_id, {'metadata': {}})\n"
        "def d(run, thread):\n"
        "    state.update_states([(run, {'status': 'error'}), (thread, {'values': {}})])\n"
    )
    assert _thread_state_writes(source) == [
        "line 12: values",
        "line 2: status",
        "line 6: values",
        "line 8: interrupts",
    ]


def test_state_changed_receivers_are_connected_per_sender():
    """The apps connect their receivers to the models they listen to (lazy labels);
    only the bus's generic receiver (live pushes) hears every model, and history hears
    every call's changes together (state_changed_batch)."""
    from core.events import state_changed
    from sessions_app.models import Session
    from threads_app.models import Run, Thread

    def names(sender):
        return {
            getattr(receiver, "__qualname__", "")
            for receiver in state_changed._live_receivers(sender)[0]
        }

    generic = {"push_after_commit"}
    assert names(Thread) >= generic | {"update_session_aggregate", "record_restore_point"}
    assert names(Session) >= generic
    assert not names(Session) & {"update_session_aggregate", "record_restore_point"}
    assert not names(Run) & {"update_session_aggregate", "record_restore_point"}
    # History writes the StateEvents of each call of the state manager together.
    from core.events import state_changed_batch

    batch = {
        getattr(receiver, "__qualname__", "")
        for receiver in state_changed_batch._live_receivers(None)[0]
    }
    assert "record_state_events" in batch


def test_core_imports_no_app_and_no_config():
    assert imports_graph.upward_imports(EDGES) == []


CONTROL_ROOM = sorted(m for m in MODULES if imports_graph.package_of(m) == "control_room")


def test_no_app_imports_the_control_room():
    apps = {"core", "sessions_app", "threads_app", "checkpoints_app", "history_app"}
    imports = sorted(
        (module, target)
        for module, targets in EDGES.items()
        if imports_graph.package_of(module) in apps
        for target in targets
        if imports_graph.package_of(target) == "control_room"
    )
    assert imports == []


@pytest.mark.parametrize("module", CONTROL_ROOM)
def test_the_control_room_imports_the_models_it_reads(module):
    assert not _calls_get_model(MODULES[module])


@pytest.mark.parametrize(
    "module",
    [
        "control_room.views.dashboard",
        "control_room.metrics",
        "control_room.management.commands.load_demo",
    ],
)
def test_the_control_room_imports_the_statuses_it_compares(module):
    assert _status_literals(MODULES[module]) == []


def test_the_domain_never_imports_the_api():
    """The JSON API (the api package) is delivery: its routes call the domain's services,
    and no module of the domain imports one of its modules."""
    imports = sorted(
        (module, target)
        for module, targets in EDGES.items()
        if imports_graph.package_of(module) in DOMAIN_PACKAGES
        for target in targets
        if imports_graph.package_of(target) == "api"
    )
    assert imports == []


def test_no_api_module_is_left_in_the_domain():
    """Routes, request and answer schemas live in the api package, not in an app."""
    left = [
        module
        for module in MODULES
        if imports_graph.package_of(module) in DOMAIN_PACKAGES
        and module.rpartition(".")[2].endswith("api")
    ]
    assert left == []
