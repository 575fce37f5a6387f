"""Checkpoints in the admin: a read-only table, a per-thread timeline, decoded values, the
difference with the parent, and "restore to here" / "fork from here" for staff."""

import difflib
import json
import uuid
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from checkpoints_app import serialization, services
from checkpoints_app.models import Checkpoint, RestorePoint
from checkpoints_app.saver import DjangoSaver, RawCheckpoint
from core import state
from core.admin import ReadOnlyAdmin, admin_link, pretty_json
from core.jsonable import to_jsonable

TIMELINE_PAGE = 50


class Undecodable:
    """A stored value the serializer could not read back."""

    def __init__(self, kind: str, size: int, error: Exception):
        self.kind, self.size = kind, size
        self.error = f"{type(error).__name__}: {error}"

    def as_json(self) -> dict:
        return {"undecodable": f"{self.kind} blob of {self.size} bytes", "error": self.error}


def _decode(saver: DjangoSaver, kind: str, blob: bytes | None) -> Any:
    try:
        return to_jsonable(saver.decode((kind, blob)))
    except Exception as exc:  # a display must never fail on one bad value
        return Undecodable(kind, len(blob or b""), exc)


def _shown(value: Any) -> Any:
    return value.as_json() if isinstance(value, Undecodable) else value


def decoded_values(saver: DjangoSaver, raw: RawCheckpoint) -> dict[str, Any]:
    """Every channel value of a stored checkpoint as JSON (Undecodable when it fails)."""
    inline = raw.checkpoint.get("channel_values")
    values = dict(inline) if isinstance(inline, dict) else {}
    for channel, (kind, blob) in raw.blobs.items():
        values[channel] = _decode(saver, kind, blob)
    return dict(sorted(values.items()))


def decoded_writes(saver: DjangoSaver, raw: RawCheckpoint) -> list[dict[str, Any]]:
    return [
        {
            "task_id": task_id,
            "task_path": task_path,
            "idx": idx,
            "channel": channel,
            "value": _shown(_decode(saver, kind, blob)),
        }
        for task_id, channel, kind, blob, task_path, idx in raw.writes
    ]


def _text(value: Any) -> str:
    return json.dumps(_shown(value), indent=2, sort_keys=True, default=str, ensure_ascii=False)


def diff(parent: dict[str, Any] | None, child: dict[str, Any]) -> list[dict[str, Any]]:
    """Per channel, what changed from the parent's values to the child's."""
    parent = parent or {}
    changes = []
    for channel in sorted(set(parent) | set(child)):
        if channel not in parent:
            changes.append({"channel": channel, "change": "added", "new": _text(child[channel])})
        elif channel not in child:
            changes.append({"channel": channel, "change": "removed", "old": _text(parent[channel])})
        else:
            old, new = _text(parent[channel]), _text(child[channel])
            if old != new:
                lines = difflib.unified_diff(
                    old.splitlines(), new.splitlines(), "parent", "this", lineterm="", n=2
                )
                changes.append({"channel": channel, "change": "changed", "diff": "\n".join(lines)})
    return changes


def _statehouse_thread(thread_id: str):
    """The Statehouse thread a LangGraph thread id names, if any."""
    try:
        pk = uuid.UUID(str(thread_id))
    except ValueError:
        return None
    return state.entity_model("thread")._base_manager.filter(pk=pk).first()


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = (
        "checkpoint_id",
        "timeline_link",
        "checkpoint_ns",
        "step",
        "source",
        "run_id",
        "created_at",
    )
    search_fields = ("=thread_id", "=checkpoint_id", "=run_id")
    ordering = ("-id",)
    fields = (
        "timeline_link",
        "checkpoint_ns",
        "checkpoint_id",
        "parent_link",
        "created_at",
        "run_id",
        "operations",
        "metadata_json",
        "values_json",
        "diff_html",
        "writes_json",
    )
    readonly_fields = fields

    saver_class = DjangoSaver

    def get_saver(self) -> DjangoSaver:
        return self.saver_class()

    def get_search_results(self, request, queryset, search_term):
        # Ids are searched exactly (indexed); no DISTINCT needed.
        queryset, _ = super().get_search_results(request, queryset, search_term)
        return queryset, False

    # --- loading and decoding, once per object -------------------------------------

    def _loaded(self, obj: Checkpoint) -> dict[str, Any]:
        cached = getattr(obj, "_statehouse_loaded", None)
        if cached is not None:
            return cached
        saver = self.get_saver()
        config = {
            "configurable": {
                "thread_id": obj.thread_id,
                "checkpoint_ns": obj.checkpoint_ns,
                "checkpoint_id": obj.checkpoint_id,
            }
        }
        loaded: dict[str, Any] = {"values": {}, "writes": [], "parent": None, "error": None}
        try:
            raw = saver.get_raw(config)
            if raw is not None:
                loaded["values"] = decoded_values(saver, raw)
                loaded["writes"] = decoded_writes(saver, raw)
            if obj.parent_checkpoint_id:
                config["configurable"]["checkpoint_id"] = obj.parent_checkpoint_id
                parent = saver.get_raw(config)
                if parent is not None:
                    loaded["parent"] = decoded_values(saver, parent)
        except Exception as exc:  # bad stored JSON, say: show it, do not fail the page
            loaded["error"] = f"{type(exc).__name__}: {exc}"
        obj._statehouse_loaded = loaded
        return loaded

    # --- columns and fields ---------------------------------------------------------

    @admin.display(description="thread")
    def timeline_link(self, obj):
        url = reverse("admin:checkpoints_app_checkpoint_timeline", args=[obj.thread_id])
        query = urlencode({"ns": obj.checkpoint_ns})
        return format_html('<a href="{}?{}">{}</a>', url, query, obj.thread_id)

    @admin.display(description="parent")
    def parent_link(self, obj):
        if not obj.parent_checkpoint_id:
            return "-"
        parent = (
            Checkpoint.objects.filter(
                thread_id=obj.thread_id,
                checkpoint_ns=obj.checkpoint_ns,
                checkpoint_id=obj.parent_checkpoint_id,
            )
            .only("id", "checkpoint_id")
            .first()
        )
        if parent is None:
            return f"{obj.parent_checkpoint_id} (deleted)"
        return admin_link(parent, parent.checkpoint_id)

    @admin.display(description="step")
    def step(self, obj):
        return obj.step

    @admin.display(description="source")
    def source(self, obj):
        return obj.source

    @admin.display(description="metadata")
    def metadata_json(self, obj):
        return pretty_json(obj.metadata)

    @admin.display(description="channel values")
    def values_json(self, obj):
        loaded = self._loaded(obj)
        if loaded["error"]:
            return format_html('<p class="errornote">Cannot read: {}</p>', loaded["error"])
        return format_html_join(
            "",
            "<h4>{}{}</h4>{}",
            (
                (
                    channel,
                    " (undecodable)" if isinstance(value, Undecodable) else "",
                    pretty_json(_shown(value)),
                )
                for channel, value in loaded["values"].items()
            ),
        ) or format_html("<p>{}</p>", "No channel values.")

    @admin.display(description="difference with the parent")
    def diff_html(self, obj):
        loaded = self._loaded(obj)
        if loaded["error"]:
            return "-"
        changes = diff(loaded["parent"], loaded["values"])
        if not changes:
            return "No channel changed." if obj.parent_checkpoint_id else "First checkpoint."
        rows = []
        for change in changes:
            body = change.get("diff") or change.get("new") or change.get("old") or ""
            rows.append((change["channel"], change["change"], body))
        return format_html_join(
            "",
            '<h4>{} <small>({})</small></h4><pre class="statehouse-json">{}</pre>',
            rows,
        )

    @admin.display(description="pending writes")
    def writes_json(self, obj):
        return pretty_json(self._loaded(obj)["writes"])

    @admin.display(description="operations")
    def operations(self, obj):
        if obj.checkpoint_ns != "" or _statehouse_thread(obj.thread_id) is None:
            return "-"
        restore = reverse("admin:checkpoints_app_checkpoint_restore", args=[obj.pk])
        fork = reverse("admin:checkpoints_app_checkpoint_fork", args=[obj.pk])
        return format_html(
            '<a class="button" href="{}">Restore to here</a> '
            '<a class="button" href="{}">Fork from here</a>',
            restore,
            fork,
        )

    # --- views ------------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "thread/<path:thread_id>/",
                view(self.timeline_view),
                name="checkpoints_app_checkpoint_timeline",
            ),
            path(
                "<int:pk>/restore/",
                view(self.restore_view),
                name="checkpoints_app_checkpoint_restore",
            ),
            path("<int:pk>/fork/", view(self.fork_view), name="checkpoints_app_checkpoint_fork"),
            *super().get_urls(),
        ]

    def timeline_view(self, request, thread_id):
        """A thread's checkpoints, newest first, with what each one changed."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        ns = request.GET.get("ns", "")
        before = request.GET.get("before") or None
        rows = Checkpoint.objects.filter(thread_id=thread_id, checkpoint_ns=ns)
        if before:
            rows = rows.filter(checkpoint_id__lt=before)
        rows = list(
            rows.order_by("-checkpoint_id").values(
                "id",
                "checkpoint_id",
                "parent_checkpoint_id",
                "checkpoint",
                "metadata",
                "run_id",
                "created_at",
            )[: TIMELINE_PAGE + 1]
        )
        more = len(rows) > TIMELINE_PAGE
        rows = rows[:TIMELINE_PAGE]
        versions = {row["checkpoint_id"]: _versions(row["checkpoint"]) for row in rows}
        missing = {
            row["parent_checkpoint_id"]
            for row in rows
            if row["parent_checkpoint_id"] and row["parent_checkpoint_id"] not in versions
        }
        if missing:
            for checkpoint_id, checkpoint in Checkpoint.objects.filter(
                thread_id=thread_id, checkpoint_ns=ns, checkpoint_id__in=missing
            ).values_list("checkpoint_id", "checkpoint"):
                versions[checkpoint_id] = _versions(checkpoint)
        thread = _statehouse_thread(thread_id)
        operable = thread is not None and ns == "" and self._can_operate(request)
        entries = []
        for row in rows:
            metadata = row["metadata"] if isinstance(row["metadata"], dict) else {}
            parent = row["parent_checkpoint_id"]
            mine = versions[row["checkpoint_id"]]
            theirs = versions.get(parent, {}) if parent else {}
            entries.append(
                {
                    **row,
                    "step": metadata.get("step"),
                    "source": metadata.get("source"),
                    "changed": sorted(
                        channel
                        for channel in set(mine) | set(theirs)
                        if mine.get(channel) != theirs.get(channel)
                        and serialization.is_state_channel(channel)
                    ),
                    "url": reverse("admin:checkpoints_app_checkpoint_change", args=[row["id"]]),
                }
            )
        namespaces = list(
            Checkpoint.objects.filter(thread_id=thread_id)
            .order_by("checkpoint_ns")
            .values_list("checkpoint_ns", flat=True)
            .distinct()[:50]
        )
        if not entries and not before and not namespaces:
            raise Http404(f"no checkpoints for thread {thread_id!r}")
        context = {
            **self.admin_site.each_context(request),
            "title": f"Checkpoints of thread {thread_id}",
            "opts": self.model._meta,
            "thread_id": thread_id,
            "thread": thread,
            "thread_link": admin_link(thread) if thread is not None else None,
            "ns": ns,
            "namespaces": namespaces,
            "entries": entries,
            "operable": operable,
            "next_before": entries[-1]["checkpoint_id"] if more else None,
        }
        return TemplateResponse(request, "admin/checkpoints_app/checkpoint/timeline.html", context)

    def _can_operate(self, request) -> bool:
        """Restore and fork change a thread: staff with the thread change permission."""
        meta = state.entity_model("thread")._meta
        return (
            request.user.is_active
            and request.user.is_staff
            and request.user.has_perm(f"{meta.app_label}.change_{meta.model_name}")
        )

    def _operation(self, request, pk, action: str):
        if not self._can_operate(request):
            raise PermissionDenied
        checkpoint = get_object_or_404(Checkpoint, pk=pk)
        thread = _statehouse_thread(checkpoint.thread_id)
        if thread is None or checkpoint.checkpoint_ns != "":
            raise Http404("only a Statehouse thread's root checkpoints can be restored or forked")
        timeline = (
            reverse("admin:checkpoints_app_checkpoint_timeline", args=[checkpoint.thread_id])
            + "?ns="
        )
        if request.method == "POST":
            try:
                if action == "restore":
                    config = services.restore(
                        thread,
                        checkpoint.checkpoint_id,
                        actor=request.user,
                        expected_version=_int(request.POST.get("expected_version")),
                        saver=self.get_saver(),
                    )
                    new_id = config["configurable"]["checkpoint_id"]
                    self.message_user(
                        request,
                        f"Restored: checkpoint {new_id} is the thread's head, a copy of "
                        f"{checkpoint.checkpoint_id}.",
                    )
                    return redirect(timeline)
                forked = services.fork(
                    thread, checkpoint.checkpoint_id, actor=request.user, saver=self.get_saver()
                )
                self.message_user(
                    request,
                    f"Forked: thread {forked.pk} ends at checkpoint {checkpoint.checkpoint_id}.",
                )
                return redirect(
                    reverse("admin:checkpoints_app_checkpoint_timeline", args=[str(forked.pk)])
                    + "?ns="
                )
            except state.StateConflict:
                self.message_user(
                    request,
                    "Not done: the thread changed since this page was opened. Check it and "
                    "try again.",
                    messages.WARNING,
                )
            except (state.StateError, ValueError) as exc:
                self.message_user(request, f"Not done: {exc}", messages.ERROR)
            return redirect(timeline)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{'Restore' if action == 'restore' else 'Fork'} thread {thread.pk}",
            "opts": self.model._meta,
            "action": action,
            "checkpoint": checkpoint,
            "thread": thread,
            "thread_link": admin_link(thread),
            "timeline": timeline,
            "detail": reverse("admin:checkpoints_app_checkpoint_change", args=[checkpoint.pk]),
        }
        return TemplateResponse(request, "admin/checkpoints_app/checkpoint/confirm.html", context)

    def restore_view(self, request, pk):
        return self._operation(request, pk, "restore")

    def fork_view(self, request, pk):
        return self._operation(request, pk, "fork")


def _versions(checkpoint) -> dict[str, Any]:
    if not isinstance(checkpoint, dict):
        return {}
    versions = checkpoint.get("channel_versions")
    return versions if isinstance(versions, dict) else {}


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@admin.register(RestorePoint)
class RestorePointAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "thread_id",
        "thread_version",
        "checkpoint_id",
        "trigger_reason",
        "created_at",
    )
    list_filter = ("trigger_reason", "created_at")
    search_fields = ("=thread_id", "=session_id", "checkpoint_id")
    date_hierarchy = "created_at"
    fields = (
        "id",
        "thread_id",
        "session_id",
        "thread_version",
        "checkpoint_ns",
        "checkpoint_id",
        "trigger_reason",
        "created_at",
        "snapshot_json",
    )
    readonly_fields = fields

    @admin.display(description="snapshot")
    def snapshot_json(self, obj):
        return pretty_json(obj.snapshot)
