"""Thread, workflow and run use cases: one function per use case.

Runs are committed first and enqueued after commit (``transaction.on_commit``), so a
worker never sees a run that may still roll back.
"""

import time
import uuid
from datetime import UTC, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils.dateparse import parse_datetime

from checkpoints_app.models import Checkpoint
from core import state, write_batch
from core.cursors import run_statement
from core.ids import system_assistant_id
from core.metadata import InvalidJSON, normalize_metadata
from core.rowloader import one_row, row_where
from core.time import now
from threads_app import graph_state, lifecycle, registry
from threads_app.errors import InvalidRun
from threads_app.models import Run, Thread, Workflow, WorkflowVersion
from threads_app.streaming import STREAM_MODES

ACTIVE_RUN_STATUSES = (Run.Status.PENDING, Run.Status.RUNNING)
COMMAND_KEYS = frozenset({"resume", "update", "goto"})
CANCEL_ACTIONS = ("interrupt", "rollback")


class WorkflowNotFound(LookupError):
    pass


class WorkflowVersionNotFound(LookupError):
    """The assistant has no version of that number."""


class RunRejected(Exception):
    """The thread is busy and the run asked for the ``reject`` multitask strategy."""


class RunFinished(Exception):
    """An action on a run that has already finished (a stale page, a second click)."""


# --- workflows ----------------------------------------------------------------------


def ensure_system_workflow(graph_id: str, name: str = "", description: str = "") -> Workflow:
    """The graph's system workflow (id as LangGraph Server derives it), created once."""
    workflow_id = system_assistant_id(graph_id)
    existing = Workflow.objects.filter(pk=workflow_id).first()
    if existing is not None:
        return existing
    return new_workflow(
        {
            "id": workflow_id,
            "graph_id": graph_id,
            "name": name or graph_id,
            "description": description,
            "is_system": True,
        },
        actor="system",
    )


def record_version(workflow: Workflow) -> WorkflowVersion:
    """Store the assistant as it is now as its version ``workflow.assistant_version``."""
    return WorkflowVersion.objects.create(
        workflow=workflow,
        version=workflow.assistant_version,
        graph_id=workflow.graph_id,
        name=workflow.name,
        description=workflow.description,
        config=workflow.config,
        context=workflow.context,
        metadata=workflow.metadata,
    )


def new_workflow(initial: dict, actor=None) -> Workflow:
    """Create a workflow with its version 1 (LangGraph Server's assistant versions)."""
    with transaction.atomic():
        workflow = state.create_state("workflow", initial, actor=actor)
        record_version(workflow)
    return workflow


def patch_workflow(workflow_id, changes: dict, actor=None) -> Workflow:
    """Apply ``changes`` as a new version of the assistant (metadata merged, as
    LangGraph Server does), under the row's lock."""
    with transaction.atomic():
        locked = Workflow.objects.select_for_update().filter(pk=workflow_id).first()
        if locked is None:
            raise state.EntityNotFound("workflow", workflow_id)
        changes = dict(changes)
        if "metadata" in changes:
            changes["metadata"] = locked.metadata | changes["metadata"]
        latest = locked.versions.order_by("-version").values_list("version", flat=True).first()
        changes["assistant_version"] = (latest or locked.assistant_version) + 1
        workflow = state.update_state("workflow", locked.pk, changes, actor=actor)
        record_version(workflow)
    return workflow


def set_latest_version(workflow_id, version: int, actor=None) -> Workflow:
    """Make version ``version`` the assistant's current one (its graph, name, config,
    context and metadata); WorkflowVersionNotFound if it has no such version."""
    with transaction.atomic():
        locked = Workflow.objects.select_for_update().filter(pk=workflow_id).first()
        if locked is None:
            raise state.EntityNotFound("workflow", workflow_id)
        chosen = locked.versions.filter(version=version).first()
        if chosen is None:
            raise WorkflowVersionNotFound(f"Version {version} not found for assistant {locked.pk}")
        changes = {
            "assistant_version": chosen.version,
            "graph_id": chosen.graph_id,
            "name": chosen.name,
            "description": chosen.description,
            "config": chosen.config,
            "context": chosen.context,
            "metadata": chosen.metadata,
        }
        return state.update_state("workflow", locked.pk, changes, actor=actor)


def sync_system_workflows() -> list[Workflow]:
    """A system workflow for every graph in the registry."""
    return [ensure_system_workflow(graph_id) for graph_id in registry.graph_ids()]


def visible_workflows(user):
    """The workflows ``user`` may see and use: their own and the system ones (staff: all)."""
    if user.is_active and user.is_staff:
        return Workflow.objects.all()
    return Workflow.objects.filter(Q(is_system=True) | Q(owner=user))


def may_use_workflow(user, workflow: Workflow) -> bool:
    """Whether ``workflow`` is one of ``visible_workflows(user)``, said of a loaded row."""
    if user.is_active and user.is_staff:
        return True
    return workflow.is_system or workflow.owner_id == user.pk


def resolve_workflow(ref: Any, user=None) -> Workflow:
    """A Workflow from an instance, its id, or a graph id (LangGraph accepts either).

    With ``user`` (the API's callers), another owner's workflow is not found; internal
    callers (the runtime, the admin) pass no user and see every workflow.
    """
    if isinstance(ref, Workflow):
        if user is not None and not visible_workflows(user).filter(pk=ref.pk).exists():
            raise WorkflowNotFound(f"no workflow {ref.pk}")
        return ref
    text = str(ref)
    try:
        workflow_id = uuid.UUID(text)
    except ValueError:
        if text in registry.graph_ids():
            return ensure_system_workflow(text)
        raise WorkflowNotFound(f"no workflow or graph {text!r}") from None
    workflows = Workflow.objects.all() if user is None else visible_workflows(user)
    workflow = workflows.filter(pk=workflow_id).first()
    if workflow is None:
        raise WorkflowNotFound(f"no workflow {workflow_id}")
    return workflow


def create_workflow(graph_id: str, name: str = "", config=None, metadata=None, actor=None):
    """A further workflow on a registered graph (same graph, other config)."""
    if graph_id not in registry.graph_ids():
        raise WorkflowNotFound(f"no graph {graph_id!r} (known: {', '.join(registry.graph_ids())})")
    return new_workflow(
        {
            "graph_id": graph_id,
            "name": name or graph_id,
            "config": config or {},
            "metadata": normalize_metadata(metadata),
        },
        actor=actor,
    )


# --- threads ------------------------------------------------------------------------


def create_thread(
    session,
    workflow=None,
    metadata=None,
    config=None,
    actor=None,
    from_session_context: bool = False,
) -> Thread:
    """A new thread in ``session``; with ``from_session_context`` it starts from the
    session's context window (its recent messages, and its summary as a system message)."""
    with transaction.atomic():
        thread = state.create_state(
            "thread",
            {
                "session": session,
                "workflow": workflow,
                "metadata": metadata or {},
                "config": config or {},
            },
            actor=actor,
        )
        if from_session_context:
            seed_from_session_context(thread, actor=actor)
    return thread


def seed_from_session_context(thread: Thread, actor=None) -> None:
    """Write the session's context as the thread's first state (its `messages` channel)."""
    from checkpoints_app.saver import DjangoSaver
    from history_app.services import context_for_new_thread

    if thread.workflow_id is None:
        raise InvalidRun("a thread starts from the session's context only with a workflow")
    messages = context_for_new_thread(thread.session)["messages"]
    if not messages:
        return
    graph = registry.load_graph(thread.workflow.graph_id, thread.config, checkpointer=DjangoSaver())
    if "messages" not in graph.channels:
        raise InvalidRun(
            f"graph {thread.workflow.graph_id!r} has no messages channel to start from"
        )
    config = {"configurable": {"thread_id": str(thread.pk), "checkpoint_ns": ""}}
    graph.update_state(config, {"messages": messages}, as_node="__start__")
    lifecycle.thread_seeded(thread, graph.get_state(config).values, actor=actor)


def mark_thread_running(thread_id, actor=None, expected_version=None) -> Thread:
    return lifecycle.thread_busy(thread_id, actor=actor, expected_version=expected_version)


def mark_thread_finished(thread_id, result=None, actor=None) -> Thread:
    return lifecycle.thread_finished(thread_id, result, actor=actor)


def mark_thread_failed(thread_id, error: str, actor=None) -> Thread:
    return lifecycle.thread_failed(thread_id, error, actor=actor)


# --- runs ---------------------------------------------------------------------------


def _stream_modes(stream_mode) -> list[str]:
    modes = [stream_mode] if isinstance(stream_mode, str) else list(stream_mode or ["values"])
    unknown = [mode for mode in modes if mode not in STREAM_MODES]
    if unknown:
        raise InvalidRun(
            f"unsupported stream_mode {', '.join(map(str, unknown))} "
            f"(supported: {', '.join(STREAM_MODES)})"
        )
    return sorted(set(modes), key=modes.index)


def _command(command, graph) -> dict | None:
    if command is None:
        return None
    if not isinstance(command, dict) or not command:
        raise InvalidRun("command must be an object with resume, update or goto")
    unknown = sorted(set(command) - COMMAND_KEYS)
    if unknown:
        raise InvalidRun(
            f"command has unknown key(s) {', '.join(unknown)} (use resume, update, goto)"
        )
    goto = command.get("goto")
    if goto is None:
        return command
    targets = goto if isinstance(goto, list) else [goto]
    # A target is a node name or a Send: {"node": name, "input": ...}.
    names = [t.get("node") if isinstance(t, dict) else t for t in targets]
    if not all(isinstance(name, str) for name in names):
        raise InvalidRun("command.goto must be a node name, a Send, or a list of them")
    known = set(graph.nodes) - {"__start__"}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidRun(f"command.goto names unknown node(s) {', '.join(unknown)}")
    return command


def _interrupt_nodes(name: str, nodes, graph) -> list[str] | str | None:
    if nodes is None or nodes == "*":
        return nodes
    if isinstance(nodes, str):
        nodes = [nodes]
    known = set(graph.nodes) - {"__start__"}
    unknown = [node for node in nodes if node not in known]
    if unknown:
        raise InvalidRun(f"{name} names unknown node(s) {', '.join(unknown)}")
    return list(nodes)


def _has_checkpoint(thread: Thread, checkpoint_id: str | None = None) -> bool:
    """Whether the thread has a checkpoint (that one, given its id)."""
    checkpoints = Checkpoint.objects.filter(thread_id=str(thread.pk), checkpoint_ns="")
    if checkpoint_id:
        checkpoints = checkpoints.filter(checkpoint_id=checkpoint_id)
    return checkpoints.exists()


def _check_input(graph, value, thread: Thread) -> None:
    """The input as validate_input checks it, the required keys only on the thread's
    first run: the checkpoint is looked for only when the first run's check refuses it
    (missing keys), since that check adds to the other's."""
    from threads_app.validation import validate_input

    try:
        validate_input(graph, value, first_run=True)
    except InvalidRun:
        if not _has_checkpoint(thread):
            raise
        validate_input(graph, value, first_run=False)


def _run_thread_query(thread_id):
    """_read_thread_query's thread, locked."""
    return _read_thread_query(thread_id).select_for_update(of=("self",))


def _read_thread_query(thread_id):
    """The thread with its workflow, its session's owner and whether a blocking budget
    applies to them (BudgetExceeded needs more reads only then)."""
    from history_app.budgets import blocking

    budgets = blocking(OuterRef("session__owner_id"), OuterRef("session_id"))
    return (
        Thread.objects.select_related("workflow", "session")
        .annotate(session_owner_id=F("session__owner_id"), budgeted=Exists(budgets))
        .filter(pk=thread_id)
    )


def _active_runs(thread_id):
    return Run.objects.filter(thread_id=thread_id, status__in=ACTIVE_RUN_STATUSES).only("pk")


def _has_active_run(thread: Thread) -> bool:
    """Whether a run of ``thread`` is pending or running (its SQL compiled once)."""
    return row_where(_active_runs, [Thread._meta.pk]).fetch(thread.pk) is not None


def _none_active(thread: Thread, error, query: bool = False) -> None:
    """Write nothing if a run of ``thread`` is pending or running: ``error()`` is raised.

    Read after the thread's lock, by a statement of its own (one that waited for the
    lock would not see a run created meanwhile): on PostgreSQL a check of the statement
    that writes the new run (core.write_batch: the caller's writes follow in its
    transaction), elsewhere (or with ``query``) a query now."""
    batch = write_batch.current(connection)
    if batch is None or query:
        if _has_active_run(thread):
            raise error()
        return
    meta, thread_id = Run._meta, Thread._meta.pk.get_db_prep_value(thread.pk, connection)
    statuses = ", ".join(["%s"] * len(ACTIVE_RUN_STATUSES))
    sql = (
        f'NOT EXISTS (SELECT 1 FROM "{meta.db_table}" WHERE'  # noqa: S608
        f' "{meta.get_field("thread").column}" = %s AND "{meta.get_field("status").column}"'
        f" IN ({statuses}))"
    )
    batch.require(sql, [thread_id, *ACTIVE_RUN_STATUSES], error)


def _busy_with(thread: Thread) -> str:
    first = _active_runs(thread.pk).order_by("created_at").first()
    return (
        f"thread {thread.pk} is busy with run {first.pk if first else '(finished since)'}; "
        "multitask_strategy 'reject' refuses a second run"
    )


def _lock_for_run(thread_id, user, lock: bool = True) -> Thread | None:
    """``_run_thread_query``'s thread (``_read_thread_query``'s without ``lock``), its
    SQL compiled once per connection (core.rowloader); None if it is gone or ``user``
    may not see it (visible_threads, said from the row so that every caller's statement
    is the same: another owner's thread is locked only until the refusal rolls back)."""
    query = _run_thread_query if lock else _read_thread_query
    thread = one_row(query, connection).fetch(thread_id)
    if thread is None or user is None or (user.is_active and user.is_staff):
        return thread
    return thread if thread.session_owner_id == user.pk else None


def _run_workflow(workflow, thread: Thread, user) -> Workflow:
    """The run's workflow: resolve_workflow(ref, user), taken from the thread's row when
    ``ref`` names the thread's workflow rather than read again. The API names its
    assistant (``workflow``); the other callers may leave it to the thread."""
    ref = workflow if user is not None else workflow or thread.workflow_id or ""
    own = thread.workflow
    if own is None or isinstance(ref, Workflow):
        return resolve_workflow(ref, user=user)
    text = str(ref)
    if text in registry.graph_ids():
        named = system_assistant_id(text) == own.pk
    else:
        try:
            named = uuid.UUID(text) == own.pk
        except ValueError:
            named = False
    if named and (user is None or may_use_workflow(user, own)):
        return own
    return resolve_workflow(ref, user=user)


def create_run(
    thread: Thread | uuid.UUID | str,
    *,
    workflow=None,
    input: Any = None,
    command: dict | None = None,
    config: dict | None = None,
    context: dict | None = None,
    metadata: dict | None = None,
    stream_mode=None,
    stream_subgraphs: bool = False,
    interrupt_before=None,
    interrupt_after=None,
    checkpoint_id: str | None = None,
    multitask_strategy: str = Run.MultitaskStrategy.ENQUEUE,
    after_seconds: float | None = None,
    timeout_s: float | None = None,
    max_attempts: int | None = None,
    extra_kwargs: dict | None = None,
    actor=None,
    user=None,
    send: bool = True,
    claim_for: str | None = None,
) -> Run:
    """Validate and create a pending run on ``thread`` (a Thread or its id); it is
    enqueued after commit (unless not ``send``: a server that executes it itself,
    threads_app/inprocess.py).

    With ``claim_for`` (a worker id; implies not ``send``), a run that can start now
    (no other run of its thread pending or running, not scheduled later) is created
    already claimed by that worker, running, its thread busy, in this transaction:
    the caller executes it (runtime.execute_claimed). Any other is created pending and
    not sent: it is queued behind the thread's runs, whose end starts it, or due later.

    With ``user`` (the API's callers), the thread and the workflow are ones ``user``
    may see: ThreadNotFound or WorkflowNotFound ("Assistant ... not found") otherwise.
    Raises InvalidRun or WorkflowNotFound for a bad request, BudgetExceeded, and
    RunRejected for the ``reject`` strategy on a busy thread; in every case nothing is
    written. Everything is checked under the thread's lock, taken first: the thread is
    read once, and a run created meanwhile is seen by the multitask rules.
    """
    thread_id = thread.pk if isinstance(thread, Thread) else thread
    options = {
        "input": input,
        "command": command,
        "config": config,
        "context": context,
        "metadata": metadata,
        "stream_mode": stream_mode,
        "stream_subgraphs": stream_subgraphs,
        "interrupt_before": interrupt_before,
        "interrupt_after": interrupt_after,
        "checkpoint_id": checkpoint_id,
        "multitask_strategy": multitask_strategy,
        "after_seconds": after_seconds,
        "timeout_s": timeout_s,
        "max_attempts": max_attempts,
        "extra_kwargs": extra_kwargs,
        "actor": actor,
    }
    if claim_for is None:
        return _create_run(thread_id, workflow, user, send, None, options)
    try:
        created = _create_run_as_read(thread_id, workflow, user, claim_for, options)
        if created is not None:
            return created
        return _create_run(thread_id, workflow, user, False, claim_for, options)
    except _RunAhead:
        # Another run of the thread was there: looked for again under a new lock, and
        # created pending in that transaction if it still is (its finish starts this).
        return _create_run(thread_id, workflow, user, False, claim_for, options, look=True)


class _RunAhead(Exception):
    """A run to be created running found another run of its thread pending or running:
    nothing was written."""


def _create_run_as_read(thread_id, workflow, user, claim_for, options: dict) -> Run | None:
    """A run created running with no transaction but its writes (PostgreSQL): the
    thread read without its lock, then one statement (core.write_batch.atomic) that
    writes the run and the thread busy only if the thread is still at the version read
    and no run of it is pending or running. None where this does not apply (another
    database, a strategy other than ``enqueue``, a run due later, a thread not found or
    changed since it was read): create_run takes the thread's lock then.

    Unlocked, the look for a run ahead sees the database as the statement began: a run
    created pending by a transaction that held the thread's lock meanwhile is not seen,
    and goes after this one (which its claim then waits for). For ``reject``, which must
    see it, the thread is locked."""
    if connection.vendor != "postgresql" or options["after_seconds"]:
        return None
    if options["multitask_strategy"] != Run.MultitaskStrategy.ENQUEUE:
        return None
    thread = _lock_for_run(thread_id, user, lock=False)
    if thread is None:
        return None  # the locked path says which error
    try:
        with write_batch.atomic(connection):
            chosen = _run_workflow(workflow, thread, user)
            return _validated_run(thread, chosen, claim_for=claim_for, look=False, **options)
    except (state.StateConflict, WorkflowNotFound):
        return None


def _create_run(
    thread_id, workflow, user, send: bool, claim_for, options: dict, look: bool = False
) -> Run:
    """create_run in one transaction, under the thread's lock, its writes one statement
    on PostgreSQL (core.write_batch). ``look``: with ``claim_for``, whether another run
    goes first is asked by a query of its own, the run created pending if one does."""
    with transaction.atomic(), write_batch.collect(connection):
        locked = _lock_for_run(thread_id, user)
        if locked is None:
            if user is not None:
                raise ThreadNotFound(f"Thread {thread_id} not found")
            raise state.EntityNotFound("thread", thread_id)
        try:
            workflow = _run_workflow(workflow, locked, user)
        except WorkflowNotFound:
            if user is None:
                raise
            raise WorkflowNotFound(f"Assistant {workflow} not found") from None
        run = _validated_run(locked, workflow, claim_for=claim_for, look=look, **options)
        if send:
            countdown = options["after_seconds"]
            transaction.on_commit(lambda: enqueue(run.pk, countdown=countdown))
    return run


def _validated_run(
    locked: Thread,
    workflow: Workflow,
    *,
    input,
    command,
    config,
    context,
    metadata,
    stream_mode,
    stream_subgraphs,
    interrupt_before,
    interrupt_after,
    checkpoint_id,
    multitask_strategy,
    after_seconds,
    timeout_s,
    max_attempts,
    extra_kwargs,
    actor,
    claim_for,
    look,
) -> Run:
    """create_run's checks and writes, on the thread it locked."""
    try:
        graph = registry.load_graph(workflow.graph_id, config or {})
    except registry.GraphNotFound as exc:
        raise WorkflowNotFound(str(exc)) from None
    if input is not None and command is not None:
        raise InvalidRun("give input or command, not both")
    command = _command(command, graph)
    modes = _stream_modes(stream_mode)
    if multitask_strategy not in Run.MultitaskStrategy.values:
        raise InvalidRun(
            f"unknown multitask_strategy {multitask_strategy!r} "
            f"(use {', '.join(Run.MultitaskStrategy.values)})"
        )
    if config is not None and not isinstance(config, dict):
        raise InvalidRun("config must be an object")
    if context is not None and not isinstance(context, dict):
        raise InvalidRun("context must be an object")
    if after_seconds is not None and (after_seconds < 0 or after_seconds > 86400 * 7):
        raise InvalidRun("after_seconds must be between 0 and 604800")
    if timeout_s is not None and timeout_s <= 0:
        raise InvalidRun("timeout_s must be positive")
    try:
        metadata = normalize_metadata(metadata)
    except InvalidJSON as exc:
        raise InvalidRun(str(exc)) from None
    kwargs = {
        "stream_mode": modes,
        "stream_subgraphs": bool(stream_subgraphs),
        "interrupt_before": _interrupt_nodes("interrupt_before", interrupt_before, graph),
        "interrupt_after": _interrupt_nodes("interrupt_after", interrupt_after, graph),
        "checkpoint_id": checkpoint_id or None,
        "timeout_s": timeout_s or settings.STATEHOUSE_RUN_TIMEOUT_S,
        "context": context or None,
        **(extra_kwargs or {}),
    }
    if checkpoint_id and not _has_checkpoint(locked, checkpoint_id):
        raise InvalidRun(f"checkpoint_id: thread {locked.pk} has no checkpoint {checkpoint_id!r}")
    if input is not None:
        _check_input(graph, input, locked)
    if (
        command
        and "resume" in command
        and not _has_checkpoint(locked)
        and not _has_active_run(locked)
    ):
        raise InvalidRun(
            f"command.resume: thread {locked.pk} has nothing to resume (no run has started it)"
        )
    if locked.budgeted:
        _check_budgets(locked)
    # Runs of the thread pending or running, read after the lock (a run created meanwhile,
    # its creator holding the lock, is seen).
    cancelled = False
    if multitask_strategy in CANCEL_ACTIONS:
        active = locked.runs.filter(status__in=ACTIVE_RUN_STATUSES).order_by("created_at")
        for other_id in active.values_list("pk", flat=True):
            cancel_run(other_id, action=multitask_strategy, actor=actor)
            cancelled = True  # cancelled, but it may still be running: go after it
    elif multitask_strategy == Run.MultitaskStrategy.REJECT:
        _none_active(locked, lambda: RunRejected(_busy_with(locked)), look)
    # As LangGraph Server: the thread's stored metadata names the graph and assistant
    # of its latest run (so a metadata search finds it), and a thread belongs to the
    # graph of its first run.
    thread_changes: dict[str, Any] = {}
    named = {"graph_id": workflow.graph_id, "assistant_id": str(workflow.pk)}
    if any(locked.metadata.get(key) != value for key, value in named.items()):
        thread_changes["metadata"] = locked.metadata | named
    if locked.workflow_id is None:
        thread_changes["workflow"] = workflow
    initial = {
        "thread": locked,
        "workflow": workflow,
        "input": input,
        "command": command,
        "config": config or {},
        "metadata": metadata,
        "kwargs": kwargs,
        "multitask_strategy": multitask_strategy,
        "not_before": now() + timedelta(seconds=after_seconds) if after_seconds else None,
        "max_attempts": max_attempts or settings.STATEHOUSE_RUN_MAX_ATTEMPTS,
    }
    claim = claim_for is not None and not after_seconds and not cancelled
    if claim and look:
        claim = not _has_active_run(locked)
    elif claim and multitask_strategy != Run.MultitaskStrategy.REJECT:  # (checked above)
        _none_active(locked, _RunAhead)
    if claim:
        lease = settings.STATEHOUSE_RUN_LEASE_S
        return lifecycle.run_created_running(
            initial, locked, thread_changes, claim_for, lease, actor=actor
        )
    if thread_changes:
        state.update_state("thread", locked.pk, thread_changes, actor=actor)
    return state.create_state("run", initial, actor=actor)


def _check_budgets(thread: Thread) -> None:
    """Budgets set to block refuse new runs (BudgetExceeded, before anything is written)."""
    from history_app.budgets import check_budgets

    check_budgets(thread.session_owner_id, thread.session_id)


def start_next_run(thread_id, send=None) -> None:
    """Enqueue the oldest pending run of the thread (runs queued behind another); with
    ``send``, hand it (its id and not_before, or None) to that instead (inprocess)."""
    sql, params = next_run_sql(thread_id)
    pending = run_statement(connection, f"SELECT {sql}", params, prepare=True, fetch=True)[0]
    (send or send_next_run)(pending)


def next_run_sql(thread_id) -> tuple[str, list]:
    """start_next_run's lookup as two SQL expressions (the run's id and not_before,
    NULL without one) and their parameters, for a statement that reads it along (a
    run's finish, runtime.Execution): the oldest pending run of the thread."""
    meta = Run._meta
    names = ("thread", "status", "created_at", "not_before")
    column = {name: f'"{meta.get_field(name).column}"' for name in names}
    oldest = (
        f'FROM "{meta.db_table}" WHERE {column["thread"]} = %s AND {column["status"]} = %s'
        f" ORDER BY {column['created_at']} LIMIT 1"
    )
    thread = meta.get_field("thread").get_db_prep_value(thread_id, connection)
    sql = f'(SELECT "{meta.pk.column}" {oldest}), (SELECT {column["not_before"]} {oldest})'
    return sql, [thread, Run.Status.PENDING] * 2


def send_next_run(pending: tuple | None) -> None:
    """Enqueue ``pending`` (a run's id and not_before, or None), at its time."""
    if pending is None or pending[0] is None:
        return
    run_id, not_before = pending
    if not isinstance(run_id, uuid.UUID):  # SQLite's raw rows: the id as hex text
        run_id = uuid.UUID(run_id)
    if isinstance(not_before, str):  # SQLite returns a subquery's datetime as UTC text
        not_before = parse_datetime(not_before).replace(tzinfo=UTC)
    delay = (not_before - now()).total_seconds() if not_before else 0
    enqueue(run_id, countdown=max(delay, 0) or None)


def enqueue(run_id, countdown: float | None = None) -> None:
    """Send the run to a worker. Never raises: with the broker down the committed run
    stays pending and is sent once the broker is back (threads_app/broker.py)."""
    from threads_app.broker import send_run

    send_run(run_id, countdown)


def cancel_run(run_id, action: str = "interrupt", actor=None) -> Run | None:
    """Cancel a run from any process.

    A pending run is cancelled at once; a running one is asked to stop, and its worker
    stops at the next step boundary (``interrupt`` keeps the checkpoints written so far,
    ``rollback`` removes them, restores the thread and deletes the run, as LangGraph
    Server does). Returns the run, or None for a pending run rolled back (deleted).
    """
    if action not in CANCEL_ACTIONS:
        raise InvalidRun(f"unknown cancel action {action!r} (use interrupt or rollback)")
    thread_id = Run.objects.filter(pk=run_id).values_list("thread_id", flat=True).first()
    if thread_id is None:
        raise state.EntityNotFound("run", run_id)
    with transaction.atomic():
        # A worker claiming or finishing the run waits for us (or we for it), so the
        # status read here is the one the write applies to.
        Thread.objects.lock(thread_id)
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.status in Run.FINAL_STATUSES:
            raise RunFinished(f"run {run.pk} has already finished ({run.status})")
        if run.status == Run.Status.PENDING and action == "rollback":
            from checkpoints_app.saver import DjangoSaver

            # A run sent back to pending (its worker lost) may have written checkpoints.
            DjangoSaver().delete_for_runs([str(run.pk)])
            state.delete_state("run", run.pk, actor=actor)
            return None
        if run.status == Run.Status.PENDING:
            return lifecycle.run_cancelled(run, action, actor=actor)
        return state.update_state(
            "run", run.pk, {"cancel_requested": action}, expected_version=run.version, actor=actor
        )


def wait_for_run(run_id, timeout: float = 60.0, poll: float = 0.05) -> Run | None:
    """Block until the run reaches a final status (or ``timeout``); returns it, or None
    once it is deleted (rolled back, say)."""
    deadline = time.monotonic() + timeout
    while True:
        run = Run.objects.filter(pk=run_id).first()
        if run is None or run.status in Run.FINAL_STATUSES or time.monotonic() >= deadline:
            return run
        time.sleep(poll)


def retry_run(run_id, actor=None) -> Run:
    """A new run with the same request as a finished one (admin "retry")."""
    old = Run.objects.select_related("thread").get(pk=run_id)
    if old.status not in Run.FINAL_STATUSES:
        raise RunFinished(f"run {old.pk} is still {old.status}; cancel it first")
    kwargs = old.kwargs or {}
    return create_run(
        old.thread,
        workflow=old.workflow_id and str(old.workflow_id),
        input=old.input,
        command=old.command,
        config=old.config,
        metadata=old.metadata | {"retry_of": str(old.pk)},
        stream_mode=kwargs.get("stream_mode"),
        interrupt_before=kwargs.get("interrupt_before"),
        interrupt_after=kwargs.get("interrupt_after"),
        actor=actor,
    )


def _lock_unfinished_run(run_id) -> Run:
    """The run, locked after its thread (the lock order of claims and cancels), inside
    the caller's transaction. EntityNotFound if it is gone, RunFinished if it ended."""
    thread_id = Run.objects.filter(pk=run_id).values_list("thread_id", flat=True).first()
    if thread_id is None:
        raise state.EntityNotFound("run", run_id)
    Thread.objects.lock(thread_id)
    run = Run.objects.select_for_update().filter(pk=run_id).first()
    if run is None:  # deleted while we waited for the thread
        raise state.EntityNotFound("run", run_id)
    if run.status in Run.FINAL_STATUSES:
        raise RunFinished(f"run {run.pk} has already finished ({run.status})")
    return run


def requeue_run(run_id, actor=None) -> Run:
    """Send a stuck run to a worker again: a pending run whose message was lost, or a
    running one whose lease expired (its worker is gone) back to pending first. A running
    run with a live lease is refused (InvalidRun), a finished one too (RunFinished)."""
    with transaction.atomic():
        run = _lock_unfinished_run(run_id)
        if run.status == Run.Status.RUNNING:
            if run.lease_expires_at is not None and run.lease_expires_at > now():
                raise InvalidRun(f"run {run.pk} is running on {run.claimed_by} (its lease is live)")
            run = lifecycle.run_requeued(run, actor=actor)
        transaction.on_commit(lambda: enqueue(run_id))
    return run


def force_fail_run(run_id, reason: str = "", actor=None) -> Run:
    """End a stuck run as ``error`` (its thread too, when no other run is active on it).

    A worker still holding the run is asked to stop at its next step."""
    reason = reason or "failed by an operator"
    with transaction.atomic():
        run = _lock_unfinished_run(run_id)
        thread_id = run.thread_id
        run = lifecycle.run_failed(run, reason, actor=actor)
        others = Run.objects.filter(thread_id=thread_id, status__in=ACTIVE_RUN_STATUSES)
        if not others.exists():
            lifecycle.thread_failed(thread_id, reason, actor=actor)
        else:
            # A run queued behind this one would wait for it forever: send it on.
            transaction.on_commit(lambda: start_next_run(thread_id))
    return run


def force_fail_thread(thread_id, reason: str = "", actor=None) -> Thread:
    """Mark a thread ``error`` that says it is busy (or waits) with no run going on it;
    refused (InvalidRun) while one of its runs is pending or running."""
    reason = reason or "failed by an operator"
    with transaction.atomic():
        thread = Thread.objects.lock(thread_id)
        if thread is None:
            raise state.EntityNotFound("thread", thread_id)
        if thread.runs.filter(status__in=ACTIVE_RUN_STATUSES).exists():
            raise InvalidRun(f"thread {thread.pk} has a run going; cancel or fail that run")
        return lifecycle.thread_failed(thread.pk, reason, actor=actor)


def expire_temporary_threads() -> int:
    """Delete the threads of finished stateless runs after their time to live."""
    cutoff = now() - timedelta(seconds=settings.STATEHOUSE_TEMPORARY_THREAD_TTL_S)
    expired = Thread.objects.filter(metadata__temporary=True, updated_at__lt=cutoff).exclude(
        status=Thread.Status.BUSY
    )
    count = 0
    for thread in expired[:200]:
        if thread.runs.filter(status__in=ACTIVE_RUN_STATUSES).exists():
            continue
        delete_thread(thread.pk, actor="sweeper")
        count += 1
    return count


def delete_thread(thread_id, actor=None) -> dict:
    """Delete a thread with its runs, their events and its checkpoints; returns its last
    state. A run still going is deleted too: its worker notices at its next step and
    stops (see runtime.RunDeleted)."""
    with transaction.atomic():
        # The cascade deletes the runs before the thread: lock the thread first by hand,
        # then its runs, so that an event a worker writes meanwhile waits for the delete
        # (and then finds its run gone) instead of outliving the cascade's delete of the
        # events, which would make the runs' delete fail.
        Thread.objects.lock(thread_id)
        list(Run.objects.select_for_update().filter(thread_id=thread_id).values_list("pk"))
        return state.delete_state("thread", thread_id, actor=actor)


# --- what a user may see (the API and the pages) -------------------------------------


def visible_threads(user):
    """The threads of ``user``'s sessions (staff: every thread)."""
    if user.is_active and user.is_staff:
        return Thread.objects.all()
    return Thread.objects.filter(session__owner=user)


# The two queries of visible_threads (staff see every thread, others their
# sessions' threads), built for stand-in users and compiled once each.
def _any_with_state(pk, thread_key):
    staff = get_user_model()(is_active=True, is_staff=True)
    return _visible_with_state(staff, pk, thread_key)


def _owned_with_state(pk, thread_key, owner_id):
    owner = get_user_model()(pk=owner_id, is_active=True, is_staff=False)
    return _visible_with_state(owner, pk, thread_key)


def _visible_with_state(user, pk, thread_key):
    threads = visible_threads(user).select_related("session", "workflow")
    return graph_state.with_latest_checkpoint(threads, thread_key).filter(pk=pk)


def visible_with_state(user, pk: uuid.UUID) -> Thread | None:
    """The thread ``pk`` if ``user`` may see it, read through
    graph_state.with_latest_checkpoint, its SQL compiled once (core.rowloader.row_where):
    the ORM compiled it and its subqueries at each state read, about 3 ms of CPU."""
    fields = [Thread._meta.pk, Checkpoint._meta.get_field("thread_id")]
    if user.is_active and user.is_staff:
        return row_where(_any_with_state, fields).fetch(pk, str(pk))
    fields.append(get_user_model()._meta.pk)
    return row_where(_owned_with_state, fields).fetch(pk, str(pk), user.pk)


def visible_runs(user):
    """The runs on ``user``'s threads (staff: every run)."""
    if user.is_active and user.is_staff:
        return Run.objects.all()
    return Run.objects.filter(thread__session__owner=user)


# --- the use cases of the API's creates, copies and edits ---------------------------


class ThreadNotFound(LookupError):
    """No thread of that id that the caller may see."""


class AlreadyExists(Exception):
    """A create named the id of an assistant or a thread that exists."""


class StillActive(Exception):
    """Refused while a run goes on: a busy thread's state update, a delete of a run
    that is pending or running."""


def create_assistant(
    user,
    graph_id: str,
    assistant_id: str | None = None,
    if_exists: str = "raise",
    name: str = "",
    description: str = "",
    config: dict | None = None,
    context: dict | None = None,
    metadata: dict | None = None,
) -> Workflow:
    """A new assistant of ``user``'s (id ``assistant_id``, a UUID, if given) on a graph,
    with its version 1. An existing assistant of that id is returned with ``if_exists``
    "do_nothing", refused (AlreadyExists) otherwise, and not found (WorkflowNotFound)
    when ``user`` may not see it: never said to exist."""
    if assistant_id:
        existing = Workflow.objects.filter(pk=assistant_id).first()
        if existing is not None:
            if not visible_workflows(user).filter(pk=existing.pk).exists():
                raise WorkflowNotFound(f"Assistant {assistant_id} not found")
            if if_exists == "do_nothing":
                return existing
            raise AlreadyExists(f"Assistant {assistant_id} already exists")
    return new_workflow(
        {
            **({"id": assistant_id} if assistant_id else {}),
            "graph_id": graph_id,
            "name": name or graph_id,
            "description": description or "",
            "config": config or {},
            "context": context or {},
            "metadata": normalize_metadata(metadata),
            "owner": user,
        },
        actor=user,
    )


def create_thread_for(
    user,
    thread_id: str | None = None,
    metadata: dict | None = None,
    if_exists: str = "raise",
    from_session_context: bool = False,
    run_workflow=None,
) -> Thread:
    """A new thread of ``user``'s (id ``thread_id``, a UUID, if given) in the session its
    metadata names (``session_id``) or a new one, on the graph or assistant it names
    (``graph_id``, ``assistant_id``) when ``user`` may use it; with
    ``from_session_context`` it starts from the session's context window.

    ``run_workflow`` names the assistant of the run about to be created on the new
    thread (the API's stateless runs): the thread starts on it, its metadata naming it
    as create_run would write it, so that the run changes nothing on the thread; one
    ``user`` may not use is not found (WorkflowNotFound, "Assistant ... not found").

    An existing thread of that id is returned with ``if_exists`` "do_nothing", refused
    (AlreadyExists) otherwise, and not found (ThreadNotFound) when ``user`` may not see
    it. The session, the thread and its first state commit together or not at all.
    """
    from sessions_app.services import session_for_new_thread

    if thread_id:
        existing = Thread.objects.filter(pk=thread_id).first()
        if existing is not None:
            if not visible_threads(user).filter(pk=existing.pk).exists():
                raise ThreadNotFound(f"Thread {thread_id} not found")
            if if_exists == "do_nothing":
                return existing
            raise AlreadyExists(f"Thread {thread_id} already exists")
    metadata = normalize_metadata(metadata)
    workflow = None
    graph_id = metadata.get("graph_id") or metadata.get("assistant_id")
    if run_workflow is not None:
        try:
            workflow = resolve_workflow(run_workflow, user=user)
        except WorkflowNotFound:
            raise WorkflowNotFound(f"Assistant {run_workflow} not found") from None
        metadata |= {"graph_id": workflow.graph_id, "assistant_id": str(workflow.pk)}
    elif graph_id:
        try:
            workflow = resolve_workflow(graph_id, user=user)
        except WorkflowNotFound:
            workflow = None
    with transaction.atomic():
        initial = {
            "session": session_for_new_thread(user, metadata.get("session_id")),
            "workflow": workflow,
            "metadata": {k: v for k, v in metadata.items() if k != "session_id"},
        }
        if thread_id:
            initial["id"] = thread_id
        thread = state.create_state("thread", initial, actor=user)
        if from_session_context:
            seed_from_session_context(thread, actor=user)
    return thread


def copy_thread(source: Thread, actor=None) -> Thread:
    """A new thread in ``source``'s session with its graph, metadata (``copied_from``
    added), config, state and checkpoints."""
    from checkpoints_app.saver import DjangoSaver

    with transaction.atomic():
        copy = state.create_state(
            "thread",
            {
                "session": source.session,
                "workflow": source.workflow,
                "metadata": source.metadata | {"copied_from": str(source.pk)},
                "config": source.config,
                **lifecycle.copied_state(source),
            },
            actor=actor,
        )
        DjangoSaver().copy_thread(str(source.pk), str(copy.pk))
    return copy


def patch_thread(thread_id, metadata: dict, actor=None) -> Thread:
    """Merge ``metadata`` into the thread's (``session_id`` names its session and is
    never stored), under the row's lock: concurrent patches queue on it and each keeps
    the others' keys (no lost write, no version conflict)."""
    changes = normalize_metadata(metadata)
    with transaction.atomic():
        locked = Thread.objects.lock(thread_id)
        if locked is None:
            raise ThreadNotFound(f"Thread {thread_id} not found")
        merged = locked.metadata | changes
        merged.pop("session_id", None)
        return state.update_state("thread", locked.pk, {"metadata": merged}, actor=actor)


def update_thread_state(thread_id, values, as_node=None, checkpoint=None, actor=None) -> dict:
    """Write ``values`` to the thread's graph state as if ``as_node`` had returned them
    (graph_state.update), under the thread's lock: refused (StillActive) while it is
    busy, no run starts between the check and the write, and the new checkpoint and the
    thread's record commit together. Returns the new checkpoint."""
    with transaction.atomic():
        thread = Thread.objects.lock(thread_id)
        if thread is None:
            raise ThreadNotFound(f"Thread {thread_id} not found")
        if thread.status == Thread.Status.BUSY:
            raise StillActive(f"Thread {thread_id} is busy with a run")
        return graph_state.update(thread, values, as_node, checkpoint, actor=actor)


def prune_threads(thread_ids, strategy: str = "delete", actor=None) -> int:
    """``delete``: the threads, with their runs and checkpoints; ``keep_latest``: every
    checkpoint of theirs but each namespace's latest. Returns how many were pruned (one
    deleted meanwhile is not)."""
    from checkpoints_app.saver import DjangoSaver

    pruned = 0
    for thread_id in thread_ids:
        if strategy == "delete":
            try:
                delete_thread(thread_id, actor=actor)
            except state.EntityNotFound:
                continue
        else:
            DjangoSaver().prune_thread(str(thread_id), keep_last=1)
        pruned += 1
    return pruned


def cancel_runs(run_ids, action: str = "interrupt", actor=None) -> int:
    """Cancel each run (cancel_run); returns how many were cancelled (one that finished
    or was deleted meanwhile is not)."""
    cancelled = 0
    for run_id in run_ids:
        try:
            cancel_run(run_id, action=action, actor=actor)
        except (RunFinished, state.EntityNotFound):
            continue
        cancelled += 1
    return cancelled


def delete_run(run_id, actor=None) -> None:
    """Delete a finished run with its events, its thread locked first (the lock order
    of claims and cancels); refused (StillActive) while it is pending or running."""
    with transaction.atomic():
        thread_id = Run.objects.filter(pk=run_id).values_list("thread_id", flat=True).first()
        if thread_id is None:
            raise state.EntityNotFound("run", run_id)
        Thread.objects.lock(thread_id)
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            raise state.EntityNotFound("run", run_id)
        if run.status in ACTIVE_RUN_STATUSES:
            raise StillActive(f"Run {run_id} is {run.status}; cancel it first")
        state.delete_state("run", run.pk, actor=actor)
