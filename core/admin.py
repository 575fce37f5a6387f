"""Admin helpers shared by the apps: pretty JSON, links, cheap pagination, state-aware saves."""

import json
from functools import cached_property

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import RequestDataTooBig
from django.core.paginator import Paginator
from django.db import connections, models
from django.forms.fields import InvalidJSONInput
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.views import defaults

from core import state
from core.ids import short_id
from core.metadata import InvalidJSON, check_depth


def pretty_json(value) -> str:
    """A JSON value as an indented, escaped <pre> block."""
    text = json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    return format_html('<pre class="statehouse-json">{}</pre>', text)


def admin_link(obj, label: str | None = None) -> str:
    """A link to ``obj``'s admin change page ("-" for None)."""
    if obj is None:
        return "-"
    meta = obj._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label or str(obj))


def changelist_link(model, label: str, **filters) -> str:
    meta = model._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    return format_html('<a href="{}?{}">{}</a>', url, query, label)


def timeline_link(thread_id, label: str = "Checkpoint timeline") -> str:
    """A link to a thread's checkpoint timeline (its root namespace)."""
    url = reverse("admin:checkpoints_app_checkpoint_timeline", args=[str(thread_id)])
    return format_html('<a href="{}?ns=">{}</a>', url, label)


def join_links(*links) -> str:
    """Links (already-escaped HTML) side by side, separated by a middle dot."""
    return format_html_join(" · ", "{}", ((link,) for link in links))


def money_column(field: str, description: str = "cost"):
    """An admin column for ``list_display`` showing a Decimal field as dollars the way
    every page writes them (``$0.00184``, never ``0E-10``), sortable by the field."""
    from core.live import money

    @admin.display(description=description, ordering=field)
    def column(obj):
        return money(getattr(obj, field))

    column.__name__ = f"{field}_money"
    return column


class EstimatedCountPaginator(Paginator):
    """Never counts a whole large table.

    Unfiltered on PostgreSQL, the count is the planner's estimate (``pg_class.reltuples``)
    when it is large; a filtered queryset is counted, which its indexes keep cheap.
    """

    exact_below = 10_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        query = getattr(queryset, "query", None)
        if query is not None and not query.where and not query.distinct:
            estimate = _estimated_rows(queryset.model, queryset.db)
            if estimate is not None and estimate >= self.exact_below:
                return estimate
        return super().count


def _estimated_rows(model, using: str) -> int | None:
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            [model._meta.db_table],
        )
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


class LargeTableAdmin(admin.ModelAdmin):
    """Changelist settings for tables that grow without bound."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50


class ReadOnlyAdmin(LargeTableAdmin):
    """Append-only history: visible, never added, changed or deleted by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class DepthCheckedJSONField(forms.JSONField):
    """A JSON form field that refuses JSON nested deeper than STATEHOUSE_MAX_JSON_DEPTH
    (as the API does) with a form error, instead of a RecursionError (a 500) in
    ``json.loads`` or later."""

    def to_python(self, value):
        try:
            value = super().to_python(value)
            check_depth(value, "The value")
        except (RecursionError, InvalidJSON):
            limit = settings.STATEHOUSE_MAX_JSON_DEPTH
            raise forms.ValidationError(
                f"The value is nested more than {limit} levels deep "
                f"(STATEHOUSE_MAX_JSON_DEPTH is {limit}).",
                code="too_deep",
            ) from None
        return value

    def bound_data(self, data, initial):
        """Too deep: shown again as the text that was sent, never encoded again."""
        try:
            value = super().bound_data(data, initial)
            check_depth(value, "The value")
        except (RecursionError, InvalidJSON):
            return InvalidJSONInput(data)
        return value


def object_json_fields(model) -> list[str]:
    """The model's JSON fields that hold an object: those whose default is ``dict``
    (metadata, config, context...), as the API requires of them."""
    return [
        field.name
        for field in model._meta.concrete_fields
        if isinstance(field, models.JSONField) and field.default is dict
    ]


def _kind(value) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):  # forms.JSONField gives a str subclass
        return "a string"
    if isinstance(value, bool):
        return "true or false"
    return "a number"


class StatefulAdminForm(forms.ModelForm):
    """Carries the version the editor saw, so a save over someone else's change is refused.

    JSON fields that hold an object take only an object (blank: ``{}``), as in the API.
    """

    expected_version = forms.IntegerField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            self.fields["expected_version"].initial = self.instance.version

    def clean(self):
        data = super().clean()
        for name in object_json_fields(self._meta.model):
            if name not in data:
                continue
            value = {} if data[name] is None else data[name]
            if not isinstance(value, dict):
                self.add_error(
                    name, f'Enter a JSON object such as {{"key": "value"}}, not {_kind(value)}.'
                )
                continue
            data[name] = value
        return data


class StatefulAdmin(LargeTableAdmin):
    """Admin edits of stateful entities go through the state manager.

    So they are versioned, recorded in history, pushed live, and refused with a message
    when the object changed since the form was opened.
    """

    form = StatefulAdminForm
    formfield_overrides = {models.JSONField: {"form_class": DepthCheckedJSONField}}
    state_readonly = ("id", "version", "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        return tuple(self.state_readonly) + tuple(super().get_readonly_fields(request, obj))

    def save_model(self, request, obj, form, change):
        entity_type = obj.state_entity_type
        fields = [name for name in form.changed_data if name != "expected_version"]
        values = {name: form.cleaned_data[name] for name in fields}
        if not change:
            created = state.create_state(entity_type, values | {"id": obj.pk}, actor=request.user)
            obj.version, obj.created_at = created.version, created.created_at
            return
        if not values:
            return
        saved = state.update_state(
            entity_type,
            obj.pk,
            values,
            expected_version=form.cleaned_data.get("expected_version"),
            actor=request.user,
        )
        obj.version = saved.version

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except state.StateConflict as exc:
            self.message_user(
                request,
                f"Not saved: {exc}. Reload the page to see the current values.",
                messages.ERROR,
            )
            return self._redirect_back(request, object_id)
        except state.InvalidState as exc:
            self.message_user(request, f"Not saved: {exc}", messages.ERROR)
            return self._redirect_back(request, object_id)

    def _redirect_back(self, request, object_id):
        from django.http import HttpResponseRedirect

        return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request, obj):
        state.delete_state(obj.state_entity_type, obj.pk, actor=request.user)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)

    @admin.display(description="id")
    def short(self, obj):
        return short_id(obj.pk)


def bad_request(request, exception):
    """handler400: a form larger than DATA_UPLOAD_MAX_MEMORY_SIZE is answered 413 with a
    page saying so (nothing was saved); any other bad request as Django does."""
    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        context = {
            **admin.site.each_context(request),
            "title": "Request too large",
            "limit_bytes": limit,
            "limit_mb": f"{limit / (1024 * 1024):g}",
        }
        return TemplateResponse(
            request, "admin/statehouse/request_too_big.html", context, status=413
        ).render()
    return defaults.bad_request(request, exception)
