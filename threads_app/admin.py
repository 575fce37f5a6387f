import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from core import state
from core.admin import (
    StatefulAdmin,
    admin_link,
    changelist_link,
    join_links,
    money_column,
    pretty_json,
    timeline_link,
)
from core.live import live_status, money, status_page_link
from history_app.models import LLMCall, Message, StateEvent
from threads_app import services
from threads_app.models import Run, Thread, Workflow


@admin.register(Workflow)
class WorkflowAdmin(StatefulAdmin):
    list_display = ("short", "graph_id", "name", "is_system", "version", "updated_at", "graph")
    list_filter = ("is_system", "graph_id")
    search_fields = ("=id", "graph_id", "name")
    fields = ("graph_id", "name", "description", "config", "context", "metadata", "is_system")

    @admin.display(description="graph")
    def graph(self, obj):
        """The workflow's page: its graph drawn, and a form to start a run."""
        url = reverse("status:workflow", args=[obj.pk])
        return format_html('<a class="sh-status-link" href="{}">graph, start a run</a>', url)


class RunInline(admin.TabularInline):
    model = Run
    fields = ("id", "status", "attempt", "created_at", "finished_at")
    readonly_fields = fields
    show_change_link = True
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("-created_at",)


class ResumeForm(forms.Form):
    """Answer a thread's pending interrupt: approve, or edit with a JSON value."""

    action = forms.ChoiceField(
        choices=[("approve", "Approve"), ("edit", "Edit"), ("reject", "Reject")]
    )
    draft = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)
    resume_json = forms.CharField(
        label="or resume with this JSON value",
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
    )
    expected_version = forms.IntegerField(widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        raw = data.get("resume_json", "").strip()
        if raw:
            try:
                data["resume"] = json.loads(raw)
            except ValueError as exc:
                raise forms.ValidationError(f"resume value is not JSON: {exc}") from None
        elif data.get("action") == "edit":
            if not data.get("draft"):
                raise forms.ValidationError("give the edited draft")
            data["resume"] = {"action": "edit", "draft": data["draft"]}
        else:
            data["resume"] = {"action": data.get("action", "approve")}
        return data


@admin.register(Thread)
class ThreadAdmin(StatefulAdmin):
    list_display = (
        "short",
        "session_link",
        "workflow",
        live_status,
        "total_tokens",
        money_column("total_cost"),
        "started_at",
        status_page_link,
    )
    list_filter = ("status", "workflow", "created_at")
    search_fields = ("=id", "=session__id", "session__title")
    list_select_related = ("session", "workflow")
    raw_id_fields = ("session",)
    date_hierarchy = "created_at"
    inlines = (RunInline,)
    # The runtime owns a thread's status and error (its runs set them); an operator
    # changes them through the actions (cancel, resume, restore), never by hand.
    readonly_fields = (
        "status",
        "error",
        "session_link",
        "values_json",
        "interrupts_json",
        "result_json",
        "started_at",
        "completed_at",
        "failed_at",
        "usage",
        "links",
    )
    fieldsets = (
        (None, {"fields": ("id", "session", "session_link", "workflow", "status", "version")}),
        ("Data", {"fields": ("config", "metadata")}),
        ("State", {"fields": ("values_json", "interrupts_json", "result_json", "error")}),
        ("Lifecycle", {"fields": ("created_at", "started_at", "completed_at", "failed_at")}),
        ("Usage", {"fields": ("usage", "links")}),
    )

    def delete_model(self, request, obj):
        # The thread is locked first (the lock order of claims and cancels), and a run
        # it has going stops at its next step; its checkpoints go with it.
        services.delete_thread(obj.pk, actor=request.user)

    @admin.display(description="session", ordering="session__created_at")
    def session_link(self, obj):
        return admin_link(obj.session)

    @admin.display(description="values")
    def values_json(self, obj):
        return pretty_json(obj.values)

    @admin.display(description="interrupts")
    def interrupts_json(self, obj):
        if not obj.interrupts:
            return pretty_json(obj.interrupts)
        url = reverse("admin:threads_app_thread_resume", args=[obj.pk])
        return format_html(
            '{}<p><a class="button" href="{}">Answer and resume</a></p>',
            pretty_json(obj.interrupts),
            url,
        )

    def get_urls(self):
        resume = self.admin_site.admin_view(self.resume_view)
        return [
            path("<uuid:pk>/resume/", resume, name="threads_app_thread_resume"),
            *super().get_urls(),
        ]

    def resume_view(self, request, pk):
        """A form answering the thread's interrupt; POST starts a run resuming it."""
        thread = get_object_or_404(Thread, pk=pk)
        if not self.has_change_permission(request, thread):
            raise PermissionDenied
        change_url = reverse("admin:threads_app_thread_change", args=[thread.pk])
        if request.method == "POST":
            form = ResumeForm(request.POST)
            if form.is_valid():
                fresh = Thread.objects.get(pk=thread.pk)
                if fresh.version != form.cleaned_data["expected_version"] or not fresh.interrupts:
                    self.message_user(
                        request,
                        "Not resumed: the thread changed since this page was opened "
                        "(it may have been resumed already).",
                        messages.WARNING,
                    )
                    return redirect(change_url)
                try:
                    run = services.create_run(
                        thread,
                        command={"resume": form.cleaned_data["resume"]},
                        multitask_strategy="reject",
                        actor=request.user,
                    )
                except (services.InvalidRun, services.RunRejected) as exc:
                    self.message_user(request, f"Not resumed: {exc}", messages.ERROR)
                    return redirect(change_url)
                self.message_user(request, f"Resumed: run {run.short_id} started.")
                return redirect(reverse("admin:threads_app_run_change", args=[run.pk]))
        else:
            form = ResumeForm(initial={"expected_version": thread.version, "action": "approve"})
        context = {
            **self.admin_site.each_context(request),
            "title": f"Resume {thread}",
            "thread": thread,
            "interrupts": pretty_json(thread.interrupts),
            "form": form,
            "opts": self.model._meta,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/threads_app/thread/resume.html", context)

    @admin.display(description="result")
    def result_json(self, obj):
        return pretty_json(obj.result)

    @admin.display(description="usage")
    def usage(self, obj):
        return pretty_json(
            {"calls": obj.total_calls, "tokens": obj.total_tokens, "cost": money(obj.total_cost)}
        )

    @admin.display(description="related")
    def links(self, obj):
        if obj.pk is None or obj._state.adding:
            return "-"
        return join_links(
            changelist_link(Run, "Runs", thread__id__exact=obj.pk),
            timeline_link(obj.pk),
            changelist_link(Message, "Messages", thread__id__exact=obj.pk),
            changelist_link(LLMCall, "LLM calls", thread__id__exact=obj.pk),
            changelist_link(StateEvent, "State changes", entity_id=obj.pk),
        )


@admin.register(Run)
class RunAdmin(StatefulAdmin):
    """Runs are shown and acted on here, never made or moved by hand.

    A run is started by ``services.create_run`` (the API, the thread's resume page, the
    retry action), which also enqueues it; one added or edited here would be pending
    forever and block its thread. So there is no add page and every field is read-only;
    the actions go through the services.
    """

    actions = ("cancel_runs", "rollback_runs", "retry_runs")

    list_display = (
        "short",
        "thread_link",
        "workflow",
        live_status,
        "attempt",
        "claimed_by",
        "created_at",
        "started_at",
        "finished_at",
        status_page_link,
    )
    list_filter = ("status", "multitask_strategy", "workflow", "created_at")
    search_fields = ("=id", "=thread__id")
    list_select_related = ("thread", "workflow")
    raw_id_fields = ("thread",)
    date_hierarchy = "created_at"
    readonly_fields = (
        "thread_link",
        "attempt",
        "claimed_by",
        "lease_expires_at",
        "heartbeat_at",
        "started_at",
        "finished_at",
        "events",
    )
    fieldsets = (
        (None, {"fields": ("id", "thread", "thread_link", "workflow", "status", "version")}),
        ("Request", {"fields": ("input", "command", "config", "metadata", "kwargs")}),
        ("Scheduling", {"fields": ("multitask_strategy", "not_before", "max_attempts")}),
        (
            "Execution",
            {
                "fields": (
                    "attempt",
                    "claimed_by",
                    "lease_expires_at",
                    "heartbeat_at",
                    "started_at",
                    "finished_at",
                    "error",
                )
            },
        ),
        ("History", {"fields": ("created_at", "updated_at", "events")}),
    )

    def has_add_permission(self, request):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [name for _, options in self.fieldsets for name in options["fields"]]

    @admin.display(description="thread", ordering="thread__created_at")
    def thread_link(self, obj):
        return admin_link(obj.thread)

    @admin.display(description="state changes")
    def events(self, obj):
        return changelist_link(StateEvent, "State changes of this run", entity_id=obj.pk)

    def _cancel(self, request, queryset, action):
        done, stale = 0, []
        for run in queryset:
            try:
                services.cancel_run(run.pk, action=action, actor=request.user)
                done += 1
            except (services.RunFinished, state.StateConflict) as exc:
                stale.append(str(exc))
        if done:
            self.message_user(request, f"Asked {done} run(s) to stop ({action}).")
        for message in stale:
            self.message_user(request, f"Not cancelled: {message}", messages.WARNING)

    @admin.action(description="Cancel (keep checkpoints)", permissions=["change"])
    def cancel_runs(self, request, queryset):
        self._cancel(request, queryset, "interrupt")

    @admin.action(description="Cancel and roll back…", permissions=["change"])
    def rollback_runs(self, request, queryset):
        """Asks first (as "delete selected" does): a rollback deletes checkpoints."""
        if request.POST.get("confirm") == "yes":
            self._cancel(request, queryset, "rollback")
            return None
        runs = list(queryset.select_related("thread"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Cancel and roll back these runs?",
            "opts": self.model._meta,
            "runs": runs,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "select_across": request.POST.get("select_across", "0"),
        }
        return TemplateResponse(request, "admin/threads_app/run/rollback_confirm.html", context)

    @admin.action(description="Retry (a new run with the same request)", permissions=["change"])
    def retry_runs(self, request, queryset):
        for run in queryset:
            try:
                new = services.retry_run(run.pk, actor=request.user)
                self.message_user(request, f"Run {run.short_id} retried as {new.short_id}.")
            except (services.RunFinished, services.InvalidRun, services.RunRejected) as exc:
                self.message_user(request, f"Not retried: {exc}", messages.WARNING)
