"""Statehouse's API for history: LLM calls and usage aggregations.

Non-staff callers see only their own sessions' calls and usage.
"""

import uuid
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from django.conf import settings
from ninja import Query, Router, Schema
from ninja.errors import HttpError
from ninja.pagination import paginate
from pydantic import Field, PlainSerializer, WithJsonSchema

from api.common import MAX_INT, Invalid, Json, Time, is_staff
from api.pagination import BeforeId
from history_app import services
from history_app.models import LLMCall

router = Router(tags=["History"])


def _decimal(value: Decimal) -> str:
    return str(value)


# An amount of money as the API writes it: a decimal string, never a float.
Money = Annotated[
    Decimal, PlainSerializer(_decimal, return_type=str), WithJsonSchema({"type": "string"})
]


def _uuid(value: str | None, name: str) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise HttpError(422, f"{name} must be a UUID") from None


class CallOut(Schema):
    """One LLM call: its place in a run, its tokens and what it cost."""

    id: int
    lc_run_id: uuid.UUID
    session_id: uuid.UUID
    thread_id: uuid.UUID
    run_id: uuid.UUID | None
    node: str
    step: int | None
    provider: str
    model_name: str
    resolved_model: str
    started_at: Time
    latency_ms: int | None
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_input: Money | None
    cost_output: Money | None
    cost_total: Money | None
    cost_source: str
    pricing_version: str


class CallFilters(Schema):
    session_id: str | None = None
    thread_id: str | None = None
    run_id: str | None = None
    model: str | None = None
    cost_source: Literal["provider", "computed", "override", "unpriced"] | None = None
    start: date | None = None
    end: date | None = None


@router.get(
    "/llm-calls",
    response={200: list[CallOut], 422: Invalid},
    summary="LLM calls, newest first (filters, keyset pagination)",
)
@paginate(BeforeId)
def llm_calls(request, filters: Query[CallFilters]):
    calls = LLMCall.objects.all()
    if not is_staff(request.auth):
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
    return calls


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


class UsageOut(Schema):
    """Rows grouped by ``by`` (their key columns depend on it) and the totals; amounts
    of money are decimal strings."""

    by: str
    rows: list[Json]
    totals: Json


def _plain(row: dict) -> dict[str, Any]:
    return {
        key: (str(value) if hasattr(value, "quantize") else value) for key, value in row.items()
    }


@router.get(
    "/usage",
    response={200: UsageOut, 422: Invalid},
    summary="Tokens and cost grouped by a dimension over a date range",
)
def usage(request, query: Query[UsageQuery]):
    if query.start and query.end and query.start > query.end:
        raise HttpError(422, "start is after end")
    user = None if is_staff(request.auth) else request.auth.pk  # non-staff: their own usage
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
