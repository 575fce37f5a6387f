import uuid

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html

from core import state
from core.admin import ReadOnlyAdmin, admin_link, pretty_json
from core.ids import short_id
from core.live import money
from history_app.models import (
    Alert,
    Budget,
    DailyModelUsage,
    DailySessionUsage,
    LLMCall,
    Message,
    ModelPrice,
    StateEvent,
)
from sessions_app.models import Session


@admin.register(StateEvent)
class StateEventAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "entity_type",
        "entity",
        "kind",
        "version",
        "changed",
        "actor",
    )
    list_filter = ("entity_type", "kind", "created_at")
    search_fields = ("=entity_id", "=session_id", "actor")
    date_hierarchy = "created_at"
    fields = (
        "id",
        "created_at",
        "entity_type",
        "entity",
        "session_id",
        "kind",
        "version",
        "actor",
        "changed_fields",
        "old_json",
        "new_json",
    )
    readonly_fields = fields

    @admin.display(description="entity")
    def entity(self, obj):
        model = state.entity_model(obj.entity_type)
        current = model._base_manager.filter(pk=obj.entity_id).first()
        return admin_link(current) if current else f"{obj.entity_id} (deleted)"

    @admin.display(description="changed fields")
    def changed(self, obj):
        return ", ".join(obj.changed_fields)

    @admin.display(description="old")
    def old_json(self, obj):
        return pretty_json(obj.old)

    @admin.display(description="new")
    def new_json(self, obj):
        return pretty_json(obj.new)


# --- filters that never scan the calls table -------------------------------------------------


class _RollupValuesFilter(admin.SimpleListFilter):
    """Choices from the small daily rollup instead of SELECT DISTINCT over every call."""

    field = ""

    def lookups(self, request, model_admin):
        values = (
            DailyModelUsage.objects.order_by(self.field)
            .values_list(self.field, flat=True)
            .distinct()
        )
        return [(value, value or "(none)") for value in values[:200]]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(**{self.field: value})


class ModelFilter(_RollupValuesFilter):
    title = "model"
    parameter_name = "model_name"
    field = "model_name"


class ProviderFilter(_RollupValuesFilter):
    title = "provider"
    parameter_name = "provider"
    field = "provider"


class UserFilter(admin.SimpleListFilter):
    """Users who have spent something (from the daily rollup)."""

    title = "user"
    parameter_name = "user_id"

    def lookups(self, request, model_admin):
        ids = list(
            DailySessionUsage.objects.order_by().values_list("user_id", flat=True).distinct()[:200]
        )
        User = get_user_model()
        names = User._default_manager.filter(pk__in=ids).values_list("pk", User.USERNAME_FIELD)
        return sorted(((str(pk), name) for pk, name in names), key=lambda item: item[1])

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        try:
            return queryset.filter(user_id=int(value))
        except ValueError:
            return queryset.none()


def _uuid_search(queryset, term, fields):
    try:
        value = uuid.UUID(term.strip())
    except ValueError:
        return None
    match = Q()
    for field in fields:
        match |= Q(**{field: value})
    return queryset.filter(match)


def _link(app_label: str, model_name: str, pk) -> str:
    """A link to an object's admin page by id, without loading it (list pages)."""
    if pk is None:
        return "-"
    url = reverse(f"admin:{app_label}_{model_name}_change", args=[pk])
    return format_html('<a href="{}">{}</a>', url, short_id(pk))


def _ref(model: type[models.Model], pk, label: str | None = None) -> str:
    if pk is None:
        return "-"
    obj = model._base_manager.filter(pk=pk).first()
    if obj is None:
        return f"{short_id(pk)} (deleted)"
    return admin_link(obj, label or short_id(pk))


class PlacementLinks:
    """Admin columns and fields linking a history row to its session, thread and run."""

    @admin.display(description="session")
    def session_link(self, obj):
        return _link("sessions_app", "session", obj.session_id)

    @admin.display(description="thread")
    def thread_link(self, obj):
        return _link("threads_app", "thread", obj.thread_id)

    @admin.display(description="session")
    def session_ref(self, obj):
        return _ref(Session, obj.session_id)

    @admin.display(description="thread")
    def thread_ref(self, obj):
        return _ref(state.entity_model("thread"), obj.thread_id)

    @admin.display(description="run")
    def run_ref(self, obj):
        return _ref(state.entity_model("run"), obj.run_id)


@admin.register(LLMCall)
class LLMCallAdmin(PlacementLinks, ReadOnlyAdmin):
    list_display = (
        "started_at",
        "model_name",
        "provider",
        "node",
        "step",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "cost",
        "cost_source",
        "latency_ms",
        "session_link",
    )
    list_filter = (ModelFilter, ProviderFilter, "cost_source", UserFilter)
    date_hierarchy = "started_at"
    search_help_text = "A session, thread, run or LangChain run id; or a model name."
    search_fields = ("=model_name",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "lc_run_id",
                    "lc_parent_run_id",
                    "session_ref",
                    "thread_ref",
                    "run_ref",
                    "user_ref",
                    "node",
                    "step",
                    "started_at",
                    "latency_ms",
                    "day",
                )
            },
        ),
        ("Model", {"fields": ("provider", "model_name", "resolved_model")}),
        (
            "Tokens",
            {
                "fields": (
                    "input_tokens",
                    "cache_read_tokens",
                    "cache_write_tokens",
                    "output_tokens",
                    "reasoning_tokens",
                    "total_tokens",
                    "usage_valid",
                    "usage_json",
                )
            },
        ),
        (
            "Cost (USD)",
            {
                "fields": (
                    "cost_input_money",
                    "cost_output_money",
                    "cost_total_money",
                    "cost_source",
                    "pricing_version",
                )
            },
        ),
    )

    def get_readonly_fields(self, request, obj=None):
        return [name for _title, options in self.fieldsets for name in options["fields"]]

    def get_search_results(self, request, queryset, search_term):
        if search_term:
            found = _uuid_search(
                queryset, search_term, ("session_id", "thread_id", "run_id", "lc_run_id")
            )
            if found is not None:
                return found, False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="input cost")
    def cost_input_money(self, obj):
        return money(obj.cost_input)

    @admin.display(description="output cost")
    def cost_output_money(self, obj):
        return money(obj.cost_output)

    @admin.display(description="total cost")
    def cost_total_money(self, obj):
        return money(obj.cost_total)

    @admin.display(description="cost", ordering="cost_total")
    def cost(self, obj):
        if obj.cost_total is None:
            return format_html('<span title="{}">—</span>', "unpriced")
        return money(obj.cost_total)

    @admin.display(description="user")
    def user_ref(self, obj):
        if obj.user_id is None:
            return "-"
        user = get_user_model()._default_manager.filter(pk=obj.user_id).first()
        return str(user) if user else f"#{obj.user_id} (deleted)"

    @admin.display(description="raw usage")
    def usage_json(self, obj):
        return pretty_json(obj.usage)


@admin.register(Message)
class MessageAdmin(PlacementLinks, ReadOnlyAdmin):
    list_display = ("id", "created_at", "session_link", "thread_link", "sequence", "role", "text")
    list_filter = ("role",)
    date_hierarchy = "created_at"
    search_help_text = "A session, thread or run id; or a LangChain message id."
    search_fields = ("=message_id",)
    fields = (
        "session_ref",
        "thread_ref",
        "run_ref",
        "sequence",
        "role",
        "name",
        "message_id",
        "created_at",
        "content_json",
        "extra_json",
    )
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        if search_term:
            found = _uuid_search(queryset, search_term, ("session_id", "thread_id", "run_id"))
            if found is not None:
                return found.order_by("thread_id", "sequence"), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="content")
    def text(self, obj):
        content = obj.content
        if isinstance(content, list):
            content = " ".join(
                block.get("text", "") if isinstance(block, dict) else str(block)
                for block in content
            )
        content = str(content)
        return content[:120] + ("…" if len(content) > 120 else "")

    @admin.display(description="content")
    def content_json(self, obj):
        return pretty_json(obj.content)

    @admin.display(description="extra")
    def extra_json(self, obj):
        return pretty_json(obj.extra)


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = (
        "model_pattern",
        "provider",
        "input_per_mtok",
        "output_per_mtok",
        "cache_read_per_mtok",
        "cache_write_per_mtok",
        "valid_from",
        "valid_to",
        "note",
    )
    list_filter = ("provider",)
    search_fields = ("model_pattern", "note")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        self.message_user(
            request,
            "New calls use this price now; run `manage.py reprice` to price past calls again.",
        )


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ("name", "scope", "subject", "metric", "limit", "period", "action", "is_active")
    list_filter = ("scope", "metric", "period", "action", "is_active")
    search_fields = ("name",)
    raw_id_fields = ("user", "session")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="applies to")
    def subject(self, obj):
        if obj.scope == Budget.Scope.USER:
            return str(obj.user) if obj.user_id else "every user"
        return str(obj.session) if obj.session_id else "every session"


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "budget",
        "subject",
        "period_start",
        "spent",
        "limit",
        "blocking",
        "webhook_status",
    )
    list_filter = ("blocking", "webhook_status", "budget")
    date_hierarchy = "created_at"
    readonly_fields = (
        "budget",
        "subject",
        "user_id",
        "session_id",
        "period_start",
        "metric",
        "limit",
        "spent",
        "blocking",
        "message",
        "created_at",
        "webhook_status",
        "webhook_attempts",
        "webhook_error",
        "delivered_at",
    )
    fields = readonly_fields
