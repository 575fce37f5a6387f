"""Statehouse's API for history: LLM calls and usage aggregations.

Non-staff callers see only their own sessions' calls and usage.
"""

import uuid
from datetime import date
from typing import Literal

from django.conf import settings
from ninja import Query, Router, Schema
from ninja.errors import HttpError
from pydantic import Field

from history_app import services
from history_app.models import LLMCall

router = Router(tags=["History"])

MAX_INT = 2**31 - 1


def _is_staff(user) -> bool:
    return bool(user.is_active and user.is_staff)


def _uuid(value: str | None, name: str) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise HttpError(422, f"{name} must be a UUID") from None


def _money(value) -> str | None:
    return None if value is None else str(value)


def call_out(call: LLMCall) -> dict:
    return {
        "id": call.pk,
        "lc_run_id": str(call.lc_run_id),
        "session_id": str(call.session_id),
        "thread_id": str(call.thread_id),
        "run_id": str(call.run_id) if call.run_id else None,
        "node": call.node,
        "step": call.step,
        "provider": call.provider,
        "model_name": call.model_name,
        "resolved_model": call.resolved_model,
        "started_at": call.started_at.isoformat(),
        "latency_ms": call.latency_ms,
        "input_tokens": call.input_tokens,
        "output_tokens": call.output_tokens,
        "total_tokens": call.total_tokens,
        "cache_read_tokens": call.cache_read_tokens,
        "cache_write_tokens": call.cache_write_tokens,
        "reasoning_tokens": call.reasoning_tokens,
        "cost_input": _money(call.cost_input),
        "cost_output": _money(call.cost_output),
        "cost_total": _money(call.cost_total),
        "cost_source": call.cost_source,
        "pricing_version": call.pricing_version,
    }


class CallFilters(Schema):
    session_id: str | None = None
    thread_id: str | None = None
    run_id: str | None = None
    model: str | None = None
    cost_source: Literal["provider", "computed", "override", "unpriced"] | None = None
    start: date | None = None
    end: date | None = None
    before_id: int | None = Field(default=None, ge=1, le=2**62)
    limit: int = Field(default=100, ge=1, le=MAX_INT)


@router.get("/llm-calls", summary="LLM calls, newest first (filters, keyset pagination)")
def llm_calls(request, filters: Query[CallFilters]):
    calls = LLMCall.objects.all()
    if not _is_staff(request.auth):
        calls = calls.filter(user_id=request.auth.pk)
    for field, value in (
        ("session_id", _uuid(filters.session_id, "session_id")),
        ("thread_id", _uuid(filters.thread_id, "thread_id")),
        ("run_id", _uuid(filters.run_id, "run_id")),
    ):
        if value:
            calls = calls.filter(**{field: value})
    if filters.model:
        calls = calls.filter(model_name=filters.model)
    if filters.cost_source:
        calls = calls.filter(cost_source=filters.cost_source)
    if filters.start:
        calls = calls.filter(day__gte=filters.start)
    if filters.end:
        calls = calls.filter(day__lte=filters.end)
    if filters.before_id:
        calls = calls.filter(pk__lt=filters.before_id)
    limit = min(filters.limit, settings.STATEHOUSE_API_MAX_LIMIT)
    rows = list(calls.order_by("-id")[:limit])
    return {
        "items": [call_out(call) for call in rows],
        "next_before_id": rows[-1].pk if len(rows) == limit else None,
    }


class UsageQuery(Schema):
    by: Literal[
        "day", "model", "provider", "cost_source", "session", "user", "thread", "run", "node"
    ]
    start: date | None = None
    end: date | None = None
    session_id: str | None = None
    thread_id: str | None = None
    run_id: str | None = None
    model: str | None = None
    order: Literal["cost", "tokens", "calls", "key"] = "cost"
    limit: int = Field(default=100, ge=1, le=MAX_INT)


def _plain(row: dict) -> dict:
    return {
        key: (str(value) if hasattr(value, "quantize") else value) for key, value in row.items()
    }


@router.get("/usage", summary="Tokens and cost grouped by a dimension over a date range")
def usage(request, query: Query[UsageQuery]):
    if query.start and query.end and query.start > query.end:
        raise HttpError(422, "start is after end")
    user = None if _is_staff(request.auth) else request.auth.pk
    if query.by == "user" and user is not None:
        pass  # a non-staff caller sees their own row only
    filters = {
        "start": query.start,
        "end": query.end,
        "session": _uuid(query.session_id, "session_id"),
        "thread": _uuid(query.thread_id, "thread_id"),
        "run": _uuid(query.run_id, "run_id"),
        "user": user,
        "model": query.model,
    }
    limit = min(query.limit, settings.STATEHOUSE_API_MAX_LIMIT)
    rows = services.usage_by(query.by, order=query.order, limit=limit, **filters)
    totals = services.usage_totals(**filters)
    return {"by": query.by, "rows": [_plain(r) for r in rows], "totals": _plain(totals)}
