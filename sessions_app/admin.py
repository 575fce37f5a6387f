from django.contrib import admin

from core.admin import (
    StatefulAdmin,
    changelist_link,
    join_links,
    money_column,
    pretty_json,
    timeline_link,
)
from core.live import live_status, money, status_page_link
from history_app.models import LLMCall, Message, StateEvent
from sessions_app.models import Session
from threads_app.models import Thread


class ThreadInline(admin.TabularInline):
    model = Thread
    fields = ("id", "status", "workflow", "started_at", "updated_at", "checkpoints")
    readonly_fields = fields
    show_change_link = True
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("-created_at",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("workflow")

    @admin.display(description="checkpoints")
    def checkpoints(self, obj):
        if obj._state.adding:  # the inline's empty form
            return "-"
        return timeline_link(obj.pk, "Timeline")


@admin.register(Session)
class SessionAdmin(StatefulAdmin):
    list_display = (
        "short",
        "title",
        "owner",
        live_status,
        "thread_count",
        "active_thread_count",
        "total_tokens",
        money_column("total_cost"),
        "last_activity_at",
        "created_at",
        status_page_link,
    )
    list_filter = ("status", "created_at")
    search_fields = ("=id", "title", "owner__username")
    list_select_related = ("owner",)
    autocomplete_fields = ("owner",)
    date_hierarchy = "created_at"
    inlines = (ThreadInline,)
    # closed_at is set by closing the session (sessions_app.services.close_session).
    readonly_fields = (
        "closed_at",
        "aggregate",
        "totals",
        "last_activity_at",
        "related",
        "state_history",
    )
    fieldsets = (
        (None, {"fields": ("id", "owner", "title", "status", "closed_at", "version")}),
        ("Data", {"fields": ("metadata", "context")}),
        ("Threads", {"fields": ("aggregate", "last_activity_at", "related")}),
        ("Usage", {"fields": ("totals",)}),
        ("History", {"fields": ("created_at", "updated_at", "state_history")}),
    )

    @admin.display(description="thread aggregate")
    def aggregate(self, obj):
        return pretty_json(
            {
                "thread_count": obj.thread_count,
                "active_thread_count": obj.active_thread_count,
                "threads_by_status": obj.threads_by_status,
            }
        )

    @admin.display(description="usage totals")
    def totals(self, obj):
        return pretty_json(
            {
                "calls": obj.total_calls,
                "input_tokens": obj.total_input_tokens,
                "output_tokens": obj.total_output_tokens,
                "total_tokens": obj.total_tokens,
                "cost": money(obj.total_cost),
            }
        )

    @admin.display(description="related")
    def related(self, obj):
        """The session's threads, messages and LLM calls (each thread's checkpoint
        timeline is linked from the threads table below)."""
        if obj.pk is None or obj._state.adding:
            return "-"
        return join_links(
            changelist_link(Thread, "Threads", session__id__exact=obj.pk),
            changelist_link(Message, "Messages", session__id__exact=obj.pk),
            changelist_link(LLMCall, "LLM calls", session__id__exact=obj.pk),
        )

    @admin.display(description="state changes")
    def state_history(self, obj):
        return changelist_link(StateEvent, "State changes of this session", session_id=obj.pk)
