"""The thread status page and its actions: resume an interrupt, continue from a checkpoint,
cancel and retry runs.

The page is complete without JavaScript; the live script keeps it current over the
thread's feed (state changes of the thread and its runs, and the runs' streamed events)
and re-reads a section (``?fragment=<name>``) when the server has to say what changed.

Every action is a CSRF-protected POST, allowed to staff and the session's owner (others
get 404), and answers a stale request (a finished run, an interrupt answered meanwhile)
with a message on the page, never an error page.
"""

import contextlib
import json
import logging
from datetime import datetime

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from checkpoints_app.models import Checkpoint
from checkpoints_app.saver import DjangoSaver
from control_room import studio
from control_room.pages import fragment_name, listing
from core import live, state
from history_app.models import Message
from threads_app import graph_state, services
from threads_app.models import Run, RunEvent, Thread

logger = logging.getLogger(__name__)

FRAGMENTS = ("summary", "run", "interrupts", "messages", "runs", "checkpoints", "graph", "state")
MESSAGE_LIMIT = 50
RUN_LIMIT = 20
CHECKPOINT_LIMIT = 50


def shown_threads(user):
    """The threads ``user`` may see, with the session, owner and workflow pages show."""
    return services.visible_threads(user).select_related("session__owner", "workflow")


def shown_runs(user):
    """The runs ``user`` may see, with the thread, session and workflow pages show."""
    return services.visible_runs(user).select_related("thread__session", "workflow")


# --- what the sections show ---------------------------------------------------------


def thread_messages(thread: Thread) -> list[dict]:
    """The conversation: recorded messages, else the messages of the thread's values."""
    recorded = Message.objects.filter(thread=thread).order_by("-sequence")[:MESSAGE_LIMIT]
    rows = [
        {
            "id": row.message_id,
            "role": row.role,
            "text": live.message_text(row.content),
            "tool_calls": live.tool_call_labels((row.extra or {}).get("tool_calls")),
        }
        for row in reversed(list(recorded))
    ]
    if rows:
        return rows
    values = thread.values if isinstance(thread.values, dict) else {}
    raw = values.get("messages") if isinstance(values.get("messages"), list) else []
    for item in raw[-MESSAGE_LIMIT:]:
        if not isinstance(item, dict):
            continue
        rows.append(
            {
                "id": item.get("id") or "",
                "role": live.message_role(item.get("type")),
                "text": live.message_text(item.get("content")),
                "tool_calls": live.tool_call_labels(item.get("tool_calls")),
            }
        )
    return rows


def current_run(thread: Thread, request) -> Run | None:
    """The run the page follows: ``?run=<id>`` of this thread, else the newest one."""
    runs = thread.runs.select_related("workflow")
    wanted = request.GET.get("run")
    if wanted:
        try:
            return runs.get(pk=wanted)
        except (Run.DoesNotExist, ValidationError, ValueError):
            raise Http404("no such run on this thread") from None
    return runs.order_by("-created_at").first()


def head_checkpoint(thread: Thread) -> dict | None:
    """The thread's latest root checkpoint: id, step, source, run and when."""
    row = (
        Checkpoint.objects.filter(thread_id=str(thread.pk), checkpoint_ns="")
        .order_by("-checkpoint_id")
        .values("checkpoint_id", "metadata", "run_id", "created_at")
        .first()
    )
    if row is None:
        return None
    metadata = row["metadata"] if isinstance(row["metadata"], dict) else {}
    return {
        "id": row["checkpoint_id"],
        "step": metadata.get("step"),
        "source": metadata.get("source", ""),
        "restored_from": metadata.get("restored_from", ""),
        "run_id": row["run_id"],
        "created_at": row["created_at"],
    }


def is_paused(thread: Thread) -> bool:
    """Stopped at a checkpoint with nodes still to run and no question (a restore or a
    fork to a step in the middle): a run started without input continues from there."""
    return thread.status == Thread.Status.INTERRUPTED and not thread.interrupts


def run_progress(run: Run | None) -> dict:
    """Step, node and (when the graph says how many steps there are) the total."""
    progress = {"step": 0, "node": "", "of": None, "percent": None, "seq": 0}
    if run is None:
        return progress
    events = RunEvent.objects.filter(run=run)
    last = events.order_by("-seq").values_list("seq", flat=True).first()
    progress["seq"] = last or 0
    step = events.filter(event="progress").order_by("-seq").values_list("data", flat=True).first()
    if isinstance(step, dict):
        progress["step"] = int(step.get("step") or 0)
        nodes = step.get("nodes") or []
        progress["node"] = ", ".join(str(node) for node in nodes)
    for data in events.filter(event="custom").order_by("-seq").values_list("data", flat=True)[:20]:
        if isinstance(data, dict) and isinstance(data.get("of"), int) and data["of"] > 0:
            progress["of"] = data["of"]
            progress["step"] = max(progress["step"], int(data.get("step") or 0))
            break
    if run.status == Run.Status.SUCCESS and progress["of"]:
        progress["step"] = max(progress["step"], progress["of"])
    if progress["of"]:
        progress["percent"] = min(100, round(100 * progress["step"] / progress["of"]))
    return progress


def interrupts(thread: Thread) -> list[dict]:
    items = []
    for item in thread.interrupts or []:
        value = item.get("value") if isinstance(item, dict) else item
        question = draft = ""
        if isinstance(value, dict):
            question = str(value.get("question") or "")
            draft = str(value.get("draft") or "")
        elif isinstance(value, str):
            question = value
        items.append(
            {
                "id": item.get("id", "") if isinstance(item, dict) else "",
                "value": value,
                "question": question,
                "draft": draft,
            }
        )
    return items


def checkpoints(thread: Thread) -> dict:
    """The thread's checkpoint timeline, newest first (at most CHECKPOINT_LIMIT)."""
    config = {"configurable": {"thread_id": str(thread.pk)}}
    rows = []
    try:
        for item in DjangoSaver().list(config, limit=CHECKPOINT_LIMIT):
            metadata = item.metadata or {}
            checkpoint = item.checkpoint or {}
            configurable = item.config.get("configurable", {})
            ts = checkpoint.get("ts")
            with contextlib.suppress(ValueError):
                ts = datetime.fromisoformat(ts) if isinstance(ts, str) else ts
            rows.append(
                {
                    "id": configurable.get("checkpoint_id", ""),
                    "ns": configurable.get("checkpoint_ns", ""),
                    "step": metadata.get("step"),
                    "source": metadata.get("source", ""),
                    "run_id": metadata.get("run_id", ""),
                    "ts": ts,
                    "updated": sorted(
                        c for c in (checkpoint.get("updated_channels") or []) if "branch:" not in c
                    ),
                }
            )
    except Exception:
        logger.exception("listing the checkpoints of thread %s failed", thread.pk)
        error = "The checkpoints could not be read."
        return {"rows": [], "error": error, "limit": CHECKPOINT_LIMIT}
    return {"rows": rows, "error": "", "limit": CHECKPOINT_LIMIT}


SECTIONS = {
    "summary": lambda thread, request: {},
    "run": lambda thread, request: _run_section(thread, request),
    "interrupts": lambda thread, request: {"interrupts": interrupts(thread)},
    "messages": lambda thread, request: {"conversation": thread_messages(thread)},
    "runs": lambda thread, request: {
        "runs": listing(
            thread.runs.select_related("workflow").order_by("-created_at"),
            RUN_LIMIT,
            reverse("admin:threads_app_run_changelist") + f"?thread__id__exact={thread.pk}",
        )
    },
    "checkpoints": lambda thread, request: {"checkpoints": _with_branches(thread)},
    "graph": lambda thread, request: _graph_section(thread, request),
    "state": lambda thread, request: _state_section(thread),
}


def _with_branches(thread) -> dict:
    """The timeline, each root checkpoint with its branch (checkpoints with the same
    parent are branches: an edit, a fork, a replay)."""
    listed = checkpoints(thread)
    tree = studio.timeline(thread)
    for row in listed["rows"]:
        found = tree["by_id"].get(row["id"]) if not row["ns"] else None
        row["branch"] = found.branch if found else 0
        row["lane"] = min(row["branch"], 3)
        row["branch_start"] = bool(found and found.branch_start)
        row["forks_here"] = found.forks_here if found else 0
        row["parent_id"] = found.parent_id if found else ""
    listed["branches"] = tree["branches"]
    return listed


def _graph_section(thread, request) -> dict:
    try:
        section = studio.graph_section(thread, current_run(thread, request))
    except Http404:
        raise
    except Exception:
        logger.exception("drawing the graph of thread %s failed", thread.pk)
        return {"graph": None}
    drawing = section.pop("drawing")
    if drawing is None:
        return {"graph": None}
    graph = studio.decorate(drawing, section["running"], section["visited"], section["taken"])
    return {"graph": graph} | section


def _state_section(thread) -> dict:
    try:
        return {"snapshot": graph_state.current(thread), "state_error": ""}
    except Exception:
        logger.exception("reading the state of thread %s failed", thread.pk)
        return {"snapshot": {}, "state_error": "The state could not be read."}


def _run_section(thread, request) -> dict:
    pinned = bool(request.GET.get("run"))
    run = current_run(thread, request)
    head = head_checkpoint(thread)
    # Restored (or its state set) after its newest run: that run's progress is history,
    # not what the thread is at; the page says where the thread stands instead.
    moved = (
        not pinned
        and run is not None
        and run.status in Run.FINAL_STATUSES
        and head is not None
        and head["run_id"] != str(run.pk)
        and head["created_at"] > (run.finished_at or run.created_at)
    )
    return {
        "run": None if moved else run,
        "older_run": run if moved else None,
        "head": head,
        "paused": is_paused(thread),
        "progress": run_progress(None if moved else run),
        "pinned": pinned,
        "run_active": run is not None and run.status not in Run.FINAL_STATUSES,
    }


@never_cache
@require_GET
@login_required
def thread_detail(request, pk):
    thread = get_object_or_404(shown_threads(request.user), pk=pk)
    fragment = fragment_name(request, FRAGMENTS)
    base = {"thread": thread, "session": thread.session}
    if fragment:
        context = base | SECTIONS[fragment](thread, request)
        return render(request, f"status/thread/_{fragment}.html", context)
    context = dict(base)
    for section in SECTIONS.values():
        context |= section(thread, request)
    context["feed"] = live.feed_path("thread", thread.pk)
    return render(request, "status/thread.html", context)


@require_GET
@login_required
def run_detail(request, pk):
    """A run's status page is its thread's page following that run."""
    run = get_object_or_404(shown_runs(request.user), pk=pk)
    return redirect(reverse("status:thread", args=[run.thread_id]) + f"?run={run.pk}")


# --- actions ------------------------------------------------------------------------


class ResumeForm(forms.Form):
    """The answer to an interrupt: approve, reject, an edited draft, or any JSON value."""

    action = forms.ChoiceField(
        choices=[("approve", "Approve"), ("edit", "Edit"), ("reject", "Reject"), ("json", "JSON")]
    )
    draft = forms.CharField(required=False, strip=False)
    resume_json = forms.CharField(required=False)
    expected_version = forms.IntegerField(min_value=1)

    def clean(self):
        data = super().clean()
        action = data.get("action")
        if action == "edit":
            if not data.get("draft", "").strip():
                raise forms.ValidationError("Give the edited draft.")
            data["resume"] = {"action": "edit", "draft": data["draft"]}
        elif action == "json":
            try:
                data["resume"] = json.loads(data.get("resume_json") or "")
            except ValueError as exc:
                raise forms.ValidationError(f"The resume value is not JSON: {exc}") from None
        elif action:
            data["resume"] = {"action": action}
        return data


def _back(request, thread_id, **query) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    url = reverse("status:thread", args=[thread_id])
    if query:
        url += "?" + "&".join(f"{key}={value}" for key, value in query.items())
    return url


def _run_refused(exc: Exception) -> str:
    if isinstance(exc, services.RunRejected):
        return "the thread is busy with another run"
    return str(exc)


@require_POST
@login_required
def resume_thread(request, pk):
    thread = get_object_or_404(shown_threads(request.user), pk=pk)
    form = ResumeForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(" ".join(msgs) for msgs in form.errors.values())
        messages.error(request, f"Not resumed: {errors}")
        return redirect(_back(request, thread.pk))
    fresh = Thread.objects.get(pk=thread.pk)
    stale = (
        fresh.version != form.cleaned_data["expected_version"]
        or fresh.status != Thread.Status.INTERRUPTED
        or not fresh.interrupts
    )
    if stale:
        messages.warning(
            request,
            "Not resumed: the thread changed since the page showed this question "
            "(it may have been answered already). This is its current state.",
        )
        return redirect(_back(request, thread.pk))
    try:
        run = services.create_run(
            fresh,
            command={"resume": form.cleaned_data["resume"]},
            multitask_strategy=Run.MultitaskStrategy.REJECT,
            actor=request.user,
        )
    except (services.RunRejected, services.WorkflowNotFound, ValueError) as exc:
        messages.error(request, f"Not resumed: {_run_refused(exc)}")
        return redirect(_back(request, thread.pk))
    messages.success(request, f"Resumed: run {run.short_id} started.")
    return redirect(_back(request, thread.pk))


@require_POST
@login_required
def continue_thread(request, pk):
    """Start a run without input: the graph goes on from the thread's latest checkpoint
    (after a restore or a fork to a step in the middle, the nodes it had still to run)."""
    thread = get_object_or_404(shown_threads(request.user), pk=pk)
    fresh = Thread.objects.get(pk=thread.pk)
    if str(fresh.version) != request.POST.get("expected_version") or not is_paused(fresh):
        messages.warning(
            request,
            "Not continued: the thread changed since the page showed it. "
            "This is its current state.",
        )
        return redirect(_back(request, thread.pk))
    try:
        run = services.create_run(
            fresh, multitask_strategy=Run.MultitaskStrategy.REJECT, actor=request.user
        )
    except (services.RunRejected, services.WorkflowNotFound, ValueError) as exc:
        messages.error(request, f"Not continued: {_run_refused(exc)}")
        return redirect(_back(request, thread.pk))
    messages.success(request, f"Continued: run {run.short_id} started from the checkpoint.")
    return redirect(_back(request, thread.pk))


@require_POST
@login_required
def cancel_run(request, pk):
    run = get_object_or_404(shown_runs(request.user), pk=pk)
    action = request.POST.get("action", "interrupt")
    if action not in services.CANCEL_ACTIONS:
        messages.error(request, f"Not cancelled: unknown action {action!r}.")
        return redirect(_back(request, run.thread_id))
    confirmed = request.POST.get("confirm") == "yes"
    if action == "rollback" and not confirmed and run.status not in Run.FINAL_STATUSES:
        # A rollback deletes the run's checkpoints: the page asks first.
        context = {"run": run, "thread": run.thread, "session": run.thread.session}
        return render(request, "status/rollback_confirm.html", context)
    try:
        services.cancel_run(run.pk, action=action, actor=request.user)
    except services.RunFinished:
        current = Run.objects.filter(pk=run.pk).values_list("status", flat=True).first()
        messages.warning(
            request, f"Not cancelled: run {run.short_id} had already finished ({current})."
        )
    except state.StateConflict:
        messages.warning(
            request,
            f"Not cancelled: run {run.short_id} changed at the same moment; "
            "look at its current state and try again.",
        )
    except state.EntityNotFound:
        messages.warning(request, f"Not cancelled: run {run.short_id} no longer exists.")
    else:
        verb = "cancel and roll back" if action == "rollback" else "cancel"
        messages.success(request, f"Asked run {run.short_id} to {verb}.")
    return redirect(_back(request, run.thread_id))


@require_POST
@login_required
def retry_run(request, pk):
    run = get_object_or_404(shown_runs(request.user), pk=pk)
    try:
        new = services.retry_run(run.pk, actor=request.user)
    except services.RunFinished:
        current = Run.objects.filter(pk=run.pk).values_list("status", flat=True).first()
        messages.warning(
            request, f"Not retried: run {run.short_id} is still {current}; cancel it first."
        )
    except (services.RunRejected, services.WorkflowNotFound, ValueError) as exc:
        messages.error(request, f"Not retried: {_run_refused(exc)}")
    else:
        messages.success(request, f"Run {run.short_id} retried as run {new.short_id}.")
    return redirect(_back(request, run.thread_id))
