"""The offline Studio: workflow pages (the graph, a run started from a form), a
checkpoint's page (its state, its diff, edit / fork / replay from it) and the page of
stuck work with its confirmed actions.

Every page requires login; non-staff see only their own threads and runs (another
owner's is a 404) and the system workflows and their own. Every write is a CSRF-checked
POST through a service function.
"""

import contextlib
import json
import uuid
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from checkpoints_app.services import CheckpointNotFound, restore
from control_room import graph_drawing, studio
from control_room.views.threads import shown_runs, shown_threads
from core import state
from sessions_app.services import create_session
from threads_app import graph_state, services
from threads_app.errors import InvalidRun
from threads_app.models import Run, Thread


def _workflow(request, pk):
    return get_object_or_404(services.visible_workflows(request.user), pk=pk)


def _thread_url(thread_id) -> str:
    return reverse("status:thread", args=[thread_id])


# --- workflows ----------------------------------------------------------------------


@require_GET
@login_required
def workflow_list(request):
    workflows = services.visible_workflows(request.user).order_by("graph_id", "name")
    return render(request, "status/workflows.html", {"workflows": workflows})


def _workflow_page(request, workflow, *, input_text=None, errors=(), target="new", status=200):
    graph = studio.workflow_graph(workflow)
    schema = studio.input_schema(graph) if graph is not None else {}
    threads = shown_threads(request.user).filter(workflow=workflow).order_by("-created_at")[:20]
    context = {
        "workflow": workflow,
        "graph": studio.decorate(graph_drawing.draw(graph)) if graph is not None else None,
        "schema": schema,
        "schema_text": json.dumps(schema, indent=2),
        "input_text": input_text
        if input_text is not None
        else json.dumps(studio.input_skeleton(schema), indent=2),
        "errors": list(errors),
        "threads": threads,
        "target": target,
    }
    return render(request, "status/workflow.html", context, status=status)


@never_cache
@require_GET
@login_required
def workflow_detail(request, pk):
    return _workflow_page(request, _workflow(request, pk))


@require_POST
@login_required
def workflow_run(request, pk):
    """Start a run of the workflow on a new thread or one of the user's, its input
    checked against the graph's input schema first (errors shown by the form)."""
    workflow = _workflow(request, pk)
    graph = studio.workflow_graph(workflow)
    if graph is None:
        raise Http404("this workflow's graph is not registered")
    text = request.POST.get("input", "")
    target = request.POST.get("thread", "new") or "new"

    def refused(errors):
        return _workflow_page(
            request, workflow, input_text=text, errors=errors, target=target, status=400
        )

    thread = None
    if target != "new":
        thread = shown_threads(request.user).filter(pk=_uuid_or_none(target)).first()
        if thread is None:
            return refused([{"path": "thread", "message": "no such thread of yours"}])
    try:
        value = json.loads(text)
    except ValueError as exc:
        return refused([{"path": "input", "message": f"not JSON: {exc}"}])
    first_run = thread is None or not services._has_checkpoint(thread)
    errors = studio.input_errors(graph, value, first_run=first_run)
    if errors:
        return refused(errors)
    try:
        with transaction.atomic():
            if thread is None:
                session = create_session(
                    request.user,
                    title=f"Studio: {workflow}",
                    metadata={"created_by": "studio"},
                    actor=request.user,
                )
                thread = services.create_thread(session, workflow=workflow, actor=request.user)
            run = services.create_run(
                thread,
                workflow=workflow,
                input=value,
                multitask_strategy=Run.MultitaskStrategy.REJECT,
                actor=request.user,
            )
    except services.RunRejected:
        return refused([{"path": "thread", "message": "the thread is busy with another run"}])
    except (InvalidRun, services.WorkflowNotFound, ValueError) as exc:
        return refused([{"path": "input", "message": str(exc)}])
    messages.success(request, f"Run {run.short_id} started.")
    return redirect(_thread_url(thread.pk))


def _uuid_or_none(text):
    try:
        return uuid.UUID(str(text))
    except ValueError:
        return None


# --- a checkpoint: its state, diff, edit, fork, replay -------------------------------


def _checkpoint_or_404(thread, checkpoint_id):
    try:
        return studio.checkpoint_detail(thread, checkpoint_id)
    except (graph_state.CheckpointNotFound, state.InvalidState):
        raise Http404("no such checkpoint on this thread") from None


def _moment(value):
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value)
    return value


def _editable_nodes(graph) -> list[str]:
    return [name for name in graph.nodes if name != graph_drawing.END] if graph else []


@never_cache
@require_GET
@login_required
def checkpoint_detail(request, pk, checkpoint_id):
    thread = get_object_or_404(shown_threads(request.user), pk=pk)
    detail = _checkpoint_or_404(thread, checkpoint_id)
    return _checkpoint_page(request, thread, checkpoint_id, detail)


def _checkpoint_page(
    request, thread, checkpoint_id, detail, values_text=None, errors=(), status=200
):
    graph = studio.thread_graph(thread)
    snapshot = detail["snapshot"]
    nodes = _editable_nodes(graph)
    written_by = next((n for n in detail["written_by"] if n in nodes), "")
    as_node = request.POST.get("as_node") or written_by
    context = {
        "thread": thread,
        "session": thread.session,
        "checkpoint_id": checkpoint_id,
        "snapshot": snapshot,
        "parent_id": detail["parent_id"],
        "diff": detail["diff"],
        "nodes": nodes,
        "as_node": as_node,
        "values_text": values_text
        if values_text is not None
        else json.dumps(studio.plain_values(graph, snapshot["values"]), indent=2, default=str),
        "created_at": _moment(snapshot.get("created_at")),
        "errors": list(errors),
        "busy": thread.status == Thread.Status.BUSY,
    }
    return render(request, "status/checkpoint.html", context, status=status)


@require_POST
@login_required
def checkpoint_edit(request, pk, checkpoint_id):
    """Write new values at a checkpoint as a chosen node (the service the API's
    POST /threads/{id}/state uses), then, if asked, continue with a run from there."""
    thread = get_object_or_404(shown_threads(request.user), pk=pk)
    detail = _checkpoint_or_404(thread, checkpoint_id)
    text = request.POST.get("values", "")
    as_node = request.POST.get("as_node") or None

    def refused(message):
        return _checkpoint_page(
            request, thread, checkpoint_id, detail, values_text=text, errors=[message], status=400
        )

    try:
        values = json.loads(text)
    except ValueError as exc:
        return refused(f"The values are not JSON: {exc}")
    try:
        with transaction.atomic():
            locked = Thread.objects.lock(thread.pk)
            if locked.status == Thread.Status.BUSY:
                return refused("The thread is busy with a run; edit it once the run ends.")
            result = graph_state.update(
                locked, values, as_node, {"checkpoint_id": checkpoint_id}, actor=request.user
            )
            new_id = result["checkpoint"]["checkpoint_id"]
            run = None
            if request.POST.get("continue"):
                run = services.create_run(
                    Thread.objects.get(pk=thread.pk),
                    multitask_strategy=Run.MultitaskStrategy.REJECT,
                    actor=request.user,
                )
    except state.InvalidState as exc:
        return refused(str(exc))
    except (InvalidRun, services.RunRejected, services.WorkflowNotFound) as exc:
        return refused(f"Not continued: {exc}")
    if run is not None:
        messages.success(
            request, f"State edited (checkpoint {new_id[-8:]}); run {run.short_id} continues."
        )
    else:
        messages.success(request, f"State edited: new checkpoint {new_id[-8:]}.")
    return redirect(_thread_url(thread.pk))


@require_POST
@login_required
def checkpoint_fork(request, pk, checkpoint_id):
    """A new branch from the checkpoint: a copy of it becomes the thread's head (the next
    run continues from there); the old branch stays in the timeline."""
    thread = get_object_or_404(shown_threads(request.user), pk=pk)
    try:
        restore(thread, checkpoint_id, actor=request.user)
    except CheckpointNotFound:
        raise Http404("no such checkpoint on this thread") from None
    except state.InvalidState as exc:
        messages.error(request, f"Not forked: {exc}")
        return redirect(_thread_url(thread.pk))
    messages.success(request, f"Forked from checkpoint {checkpoint_id[-8:]}: a new branch.")
    return redirect(_thread_url(thread.pk))


@require_POST
@login_required
def checkpoint_replay(request, pk, checkpoint_id):
    """A run from the checkpoint: the nodes after it run again, on a new branch."""
    thread = get_object_or_404(shown_threads(request.user), pk=pk)
    try:
        run = services.create_run(
            thread,
            checkpoint_id=checkpoint_id,
            multitask_strategy=Run.MultitaskStrategy.REJECT,
            actor=request.user,
        )
    except (InvalidRun, services.RunRejected, services.WorkflowNotFound) as exc:
        reason = (
            "the thread is busy with another run" if isinstance(exc, services.RunRejected) else exc
        )
        messages.error(request, f"Not replayed: {reason}")
        return redirect(_thread_url(thread.pk))
    messages.success(
        request, f"Replaying from checkpoint {checkpoint_id[-8:]}: run {run.short_id}."
    )
    return redirect(_thread_url(thread.pk))


# --- stuck work ---------------------------------------------------------------------


@never_cache
@require_GET
@login_required
def stuck(request):
    context = studio.stuck_work(shown_threads(request.user), shown_runs(request.user))
    return render(request, "status/stuck.html", context)


RUN_ACTIONS = {
    "requeue": (
        "Requeue",
        "The run goes back to pending and is sent to a worker again; it resumes from its "
        "last checkpoint (a run whose worker is gone is taken over).",
    ),
    "fail": (
        "Force-fail",
        "The run ends as error (“failed by an operator”), and its thread too when no other "
        "run is going on it. A worker still holding it stops at its next step.",
    ),
    "cancel": (
        "Cancel",
        "The run is cancelled: a pending one at once, a running one at its next step; the "
        "checkpoints it wrote are kept.",
    ),
}


@require_http_methods(["GET", "POST"])
@login_required
def stuck_run_action(request, pk, action):
    """A confirmation page (GET) saying what the action does; the action itself (POST)."""
    run = get_object_or_404(shown_runs(request.user), pk=pk)
    if action not in RUN_ACTIONS:
        raise Http404("no such action")
    label, effect = RUN_ACTIONS[action]
    if request.method == "GET" or request.POST.get("confirm") != "yes":
        context = {"run": run, "thread": run.thread, "action": action, "label": label}
        context["effect"] = effect
        return render(request, "status/stuck_confirm.html", context)
    try:
        if action == "requeue":
            services.requeue_run(run.pk, actor=request.user)
            messages.success(request, f"Run {run.short_id} requeued.")
        elif action == "fail":
            services.force_fail_run(run.pk, actor=request.user)
            messages.success(request, f"Run {run.short_id} failed by you.")
        else:
            services.cancel_run(run.pk, action="interrupt", actor=request.user)
            messages.success(request, f"Run {run.short_id} cancelled.")
    except services.RunFinished as exc:
        messages.warning(request, f"Nothing done: {exc}.")
    except (InvalidRun, state.StateConflict) as exc:
        messages.warning(request, f"Nothing done: {exc}.")
    return redirect("status:stuck")


@require_http_methods(["GET", "POST"])
@login_required
def stuck_thread_fail(request, pk):
    thread = get_object_or_404(shown_threads(request.user), pk=pk)
    if request.method == "GET" or request.POST.get("confirm") != "yes":
        effect = (
            "The thread is marked error (“failed by an operator”): it says it is "
            f"{thread.status} but no run is going on it. Its checkpoints are kept; a new "
            "run on it starts from its latest one."
        )
        context = {"thread": thread, "action": "fail", "label": "Force-fail", "effect": effect}
        return render(request, "status/stuck_confirm.html", context)
    try:
        services.force_fail_thread(thread.pk, actor=request.user)
    except InvalidRun as exc:
        messages.warning(request, f"Nothing done: {exc}.")
    else:
        messages.success(request, f"Thread {thread.short_id} marked error.")
    return redirect("status:stuck")
