"""History use cases: messages, session context, usage aggregations.

What the runtime calls, each from the module that defines it:

* ``history_app.callbacks.UsageCallbackHandler(run_id, thread_id, session_id, user_id)``
  in ``config["callbacks"]`` of every run: records each LLM call as it ends
  (``history_app.recording.record_llm_call``);
* :func:`record_run_messages` here, with the run and its graph state's ``messages``;
* ``history_app.budgets.check_budgets`` before creating a run (raises ``BudgetExceeded``);
* :func:`context_for_new_thread` here, to seed a new thread from its session.
"""

import hashlib
import json
import logging
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Max, Q, Sum

from core import state
from core.messages import message_role
from core.metadata import InvalidJSON, json_size, strip_nul, to_json
from core.time import now
from history_app.models import DailyModelUsage, DailySessionUsage, LLMCall, Message
from sessions_app.models import Session

logger = logging.getLogger(__name__)

CONTEXT_RETRIES = 5

# --- messages ---------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    """A JSON-friendly copy (unknown objects become strings, NUL characters dropped)."""
    try:
        return strip_nul(json.loads(to_json(value)))
    except InvalidJSON:
        return strip_nul(json.loads(json.dumps(value, default=str)))


def _normalize(message: Any) -> dict | None:
    """role, content, id, name and extras of a BaseMessage, a dict or a (role, text) pair."""
    if message is None:
        return None
    if isinstance(message, str):
        return {"role": "user", "content": message, "id": "", "name": "", "extra": {}}
    if isinstance(message, (tuple, list)) and len(message) == 2:
        return {
            "role": message_role(message[0]),
            "content": message[1],
            "id": "",
            "name": "",
            "extra": {},
        }
    if isinstance(message, dict):
        data = message
        kind = data.get("role") or data.get("type")
        get = data.get
    else:
        kind = getattr(message, "type", None) or type(message).__name__
        if kind == "chat":
            kind = getattr(message, "role", "user")

        def get(key, default=None):
            return getattr(message, key, default)

    role = message_role(kind)
    if role not in Message.Role.values:
        return None  # RemoveMessage and other non-messages
    extra = {}
    for key in ("tool_calls", "tool_call_id", "invalid_tool_calls", "status"):
        value = get(key)
        if value:
            extra[key] = value
    content = get("content", "")
    return {
        "role": role,
        "content": content if content is not None else "",
        "id": str(get("id") or ""),
        "name": str(get("name") or "")[:200],
        "extra": extra,
    }


def _derived_id(thread_id, position: int, item: dict) -> str:
    digest = hashlib.sha256(
        to_json([str(thread_id), position, item["role"], _json_safe(item["content"])]).encode()
    ).hexdigest()[:32]
    return f"derived:{digest}"


def record_run_messages(run, messages, *, update_context: bool = True) -> list[Message]:
    """Record the messages of the run's graph state that are not recorded yet.

    ``run`` is a Run or its id. ``messages`` is the state's ``messages`` list (LangChain
    messages, dicts or (role, text) pairs), whole or
    only the new tail. Messages are keyed by their LangChain id within the thread, so
    recording the same state again adds nothing. Returns the new Message rows, and
    refreshes the session's context window when there are any.
    """
    run_id = getattr(run, "pk", run)
    thread_id = run.thread_id if hasattr(run, "thread_id") else _fields("run", run_id, "thread_id")
    session_id = _fields("thread", thread_id, "session_id")
    items = []
    for position, message in enumerate(messages or []):
        try:
            item = _normalize(message)
        except Exception:
            logger.exception("skipping a message that cannot be read: %r", message)
            continue
        if item is None:
            continue
        item["content"] = _json_safe(item["content"])
        item["extra"] = _json_safe(item["extra"])
        item["id"] = (item["id"] or _derived_id(thread_id, position, item))[:255]
        items.append(item)
    if not items:
        return []
    ids = [item["id"] for item in items]
    with transaction.atomic():
        known = set(
            Message.objects.filter(thread_id=thread_id, message_id__in=ids).values_list(
                "message_id", flat=True
            )
        )
        last = Message.objects.filter(thread_id=thread_id).aggregate(m=Max("sequence"))["m"]
        sequence = -1 if last is None else last
        rows = []
        seen = set()
        at = now()
        for item in items:
            if item["id"] in known or item["id"] in seen:
                continue
            seen.add(item["id"])
            sequence += 1
            rows.append(
                Message(
                    session_id=session_id,
                    thread_id=thread_id,
                    run_id=run_id,
                    sequence=sequence,
                    role=item["role"],
                    content=item["content"],
                    message_id=item["id"],
                    name=item["name"],
                    extra=item["extra"],
                    created_at=at,
                )
            )
        Message.objects.bulk_create(rows, ignore_conflicts=True)
    if rows and update_context:
        refresh_session_context(session_id)
    return rows


# --- session context -----------------------------------------------------------------------


def _context_item(message: Message) -> dict:
    item = {
        "id": message.message_id,
        "role": message.role,
        "content": message.content,
        "thread_id": str(message.thread_id),
        "at": message.created_at.isoformat(),
    }
    if message.name:
        item["name"] = message.name
    for key in ("tool_calls", "tool_call_id"):
        if message.extra.get(key):
            item[key] = message.extra[key]
    return item


def context_window(session_id, size: int | None = None) -> list[dict]:
    """The session's last ``size`` distinct messages across its threads, oldest first."""
    size = settings.STATEHOUSE_CONTEXT_WINDOW if size is None else size
    if size <= 0:
        return []
    window: list[dict] = []
    seen: set[str] = set()
    recent = Message.objects.filter(session_id=session_id).order_by("-id")
    # Copies of a message (a new thread seeded from the session) count once.
    for message in recent[: size * 3].iterator():
        if message.message_id in seen:
            continue
        seen.add(message.message_id)
        window.append(_context_item(message))
        if len(window) == size:
            break
    window.reverse()
    limit = settings.STATEHOUSE_MAX_STATE_BYTES // 4
    while window and json_size(window) > limit:
        window.pop(0)
    return window


def _with_defaults(context: Any) -> dict:
    context = dict(context) if isinstance(context, dict) else {}
    context.setdefault("messages", [])
    context.setdefault("summary", "")
    context.setdefault("variables", {})
    return context


def _fields(entity_type: str, entity_id, field: str):
    """One field of a thread or run (history may not import threads_app's models)."""
    row = state.read_fields(entity_type, entity_id, [field])
    if row is None:
        raise state.EntityNotFound(entity_type, entity_id)
    return row[field]


def _update_context(session_id, change) -> Any:
    return state.update_state_with_retry(
        "session",
        session_id,
        lambda current: {"context": change(_with_defaults(current.get("context")))},
        attempts=CONTEXT_RETRIES,
        actor="history",
    )


def refresh_session_context(session_id) -> None:
    """Recompute the session's message window (through the state manager)."""
    try:
        _update_context(session_id, lambda ctx: ctx | {"messages": context_window(session_id)})
    except state.EntityNotFound:
        return


def update_session_context(
    session, *, summary: str | None = None, variables: dict | None = None, actor=None
):
    """Set the session's summary and/or merge variables into its context."""
    session_id = getattr(session, "pk", session)

    def change(context):
        if summary is not None:
            context["summary"] = summary
        if variables is not None:
            context["variables"] = dict(context.get("variables") or {}) | dict(variables)
        return context

    return _update_context(session_id, change)


def session_context(session) -> dict:
    """The session's context: {"messages": [...], "summary": "", "variables": {}}."""
    if not hasattr(session, "context"):
        session = Session._base_manager.get(pk=session)
    return _with_defaults(session.context)


def context_for_new_thread(session, include_summary: bool = True) -> dict:
    """What a new thread of this session can start from.

    ``messages`` are dicts LangChain accepts as messages (``role``, ``content``, ``id``,
    and ``name``/``tool_calls``/``tool_call_id`` when they have them), oldest first;
    keeping the ids lets the session window count them once. A leading system message
    carries the summary when there is one. ``variables`` are the session's variables.
    """
    context = session_context(session)
    messages = []
    if include_summary and context["summary"]:
        messages.append(
            {
                "role": "system",
                "content": f"Summary of the conversation so far: {context['summary']}",
            }
        )
    keys = ("role", "content", "id", "name", "tool_calls", "tool_call_id")
    for item in context["messages"]:
        messages.append({key: item[key] for key in keys if key in item})
    return {
        "messages": messages,
        "summary": context["summary"],
        "variables": dict(context["variables"]),
    }


# --- aggregations -----------------------------------------------------------------------

DIMENSIONS = {
    "day": ("day",),
    "model": ("provider", "model_name"),
    "provider": ("provider",),
    "cost_source": ("cost_source",),
    "session": ("session_id",),
    "user": ("user_id",),
    "thread": ("thread_id",),
    "run": ("run_id",),
    "node": ("node",),
}
ORDERINGS = {"cost": "-m_cost", "tokens": "-m_total_tokens", "calls": "-m_calls", "key": None}


def _date_range(rows, start: date | None, end: date | None):
    if start is not None:
        rows = rows.filter(day__gte=start)
    if end is not None:
        rows = rows.filter(day__lte=end)
    return rows


def _source(dimension: str, filters: dict):
    """The cheapest table that can answer: a rollup when the filters allow it."""
    given = {name for name, value in filters.items() if value is not None}
    if dimension in ("day", "model", "provider", "cost_source") and given <= {"model"}:
        return "model_days"
    if dimension in ("day", "session", "user") and given <= {"session", "user"}:
        return "session_days"
    return "calls"


def _filtered(source: str, *, session=None, thread=None, run=None, user=None, model=None):
    def pk(value):
        return getattr(value, "pk", value)

    if source == "model_days":
        rows = DailyModelUsage.objects.all()
    elif source == "session_days":
        rows = DailySessionUsage.objects.all()
    else:
        rows = LLMCall.objects.all()
    if session is not None:
        rows = rows.filter(session_id=pk(session))
    if thread is not None:
        rows = rows.filter(thread_id=pk(thread))
    if run is not None:
        rows = rows.filter(run_id=pk(run))
    if user is not None:
        rows = rows.filter(user_id=pk(user))
    if model is not None:
        rows = rows.filter(model_name=model)
    return rows


# Aggregates are computed under these aliases (a name may not be both a column and an
# annotation) and returned under the plain names.
PREFIX = "m_"


def _measures(source: str) -> dict:
    unpriced = Q(cost_source=LLMCall.CostSource.UNPRICED)
    if source == "session_days":
        calls, unpriced_calls = Sum("calls"), Sum("unpriced_calls")
    elif source == "model_days":
        calls, unpriced_calls = Sum("calls"), Sum("calls", filter=unpriced)
    else:
        calls, unpriced_calls = Count("id"), Count("id", filter=unpriced)
    measures = {
        "calls": calls,
        "unpriced_calls": unpriced_calls,
        "input_tokens": Sum("input_tokens"),
        "output_tokens": Sum("output_tokens"),
        "total_tokens": Sum("total_tokens"),
        "cost": Sum("cost_total"),
    }
    if source != "session_days":
        for name in ("cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
            measures[name] = Sum(name)
    return {PREFIX + name: value for name, value in measures.items()}


def _clean(row: dict) -> dict:
    """Plain names; no calls means zero tokens and a zero cost (never None)."""
    clean = {}
    for key, value in row.items():
        if key.startswith(PREFIX):
            key = key[len(PREFIX) :]
            if value is None:
                value = Decimal(0) if key == "cost" else 0
        clean[key] = value
    return clean


def usage_by(
    dimension: str,
    *,
    start: date | None = None,
    end: date | None = None,
    session=None,
    thread=None,
    run=None,
    user=None,
    model: str | None = None,
    order: str = "cost",
    limit: int | None = None,
) -> list[dict]:
    """Tokens and cost grouped by ``dimension`` over a date range (UTC days, inclusive).

    Dimensions: day, model, provider, cost_source, session, user, thread, run, node.
    Each row has the dimension's key(s) and calls, unpriced_calls, input_tokens,
    output_tokens, total_tokens, cost (unpriced calls add no cost), and the cache and
    reasoning breakdown where the source has it. Rollups answer when they can.
    """
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}; known: {', '.join(DIMENSIONS)}")
    if order not in ORDERINGS:
        raise ValueError(f"unknown order {order!r}; known: {', '.join(ORDERINGS)}")
    filters = {"session": session, "thread": thread, "run": run, "user": user, "model": model}
    source = _source(dimension, filters)
    keys = DIMENSIONS[dimension]
    rows = _date_range(_filtered(source, **filters), start, end)
    rows = rows.values(*keys).annotate(**_measures(source))
    ordering = ORDERINGS[order]
    rows = rows.order_by(*((ordering,) if ordering else ()), *keys)
    if limit is not None:
        rows = rows[:limit]
    return [_clean(dict(row)) for row in rows]


def usage_totals(
    *,
    start: date | None = None,
    end: date | None = None,
    session=None,
    thread=None,
    run=None,
    user=None,
    model: str | None = None,
) -> dict:
    """The same measures as :func:`usage_by`, summed over everything that matches."""
    filters = {"session": session, "thread": thread, "run": run, "user": user, "model": model}
    source = _source("day", filters)
    rows = _date_range(_filtered(source, **filters), start, end)
    return _clean(rows.aggregate(**_measures(source)))


def session_usage(session) -> dict:
    """A session's usage summary: its running totals and its spending by model and day."""
    session_id = getattr(session, "pk", session)
    return {
        "totals": usage_totals(session=session_id),
        "by_model": usage_by("model", session=session_id),
        "by_thread": usage_by("thread", session=session_id),
        "by_day": usage_by("day", session=session_id, order="key"),
    }


# --- the dashboard -----------------------------------------------------------------------


def _usernames(user_ids) -> dict:
    User = get_user_model()
    rows = User._default_manager.filter(pk__in=[u for u in user_ids if u is not None])
    return {pk: name for pk, name in rows.values_list("pk", User.USERNAME_FIELD)}


def _session_titles(session_ids) -> dict:
    rows = Session._base_manager.filter(pk__in=[s for s in session_ids if s is not None])
    return {pk: (title, owner) for pk, title, owner in rows.values_list("pk", "title", "owner_id")}


def unpriced_summary(limit: int = 20) -> list[dict]:
    """Models whose calls have no price, with their call count and last call."""
    rows = (
        LLMCall.objects.filter(cost_source=LLMCall.CostSource.UNPRICED)
        .values("provider", "model_name")
        .annotate(calls=Count("id"), last_call=Max("started_at"))
        .order_by("-last_call")
    )
    return list(rows[:limit])


def daily_series(start: date, end: date) -> list[dict]:
    """Cost and tokens for each day from start to end (days without calls included)."""
    by_day = {row["day"]: row for row in usage_by("day", start=start, end=end, order="key")}
    series = []
    day = start
    while day <= end:
        row = by_day.get(day) or {
            "day": day,
            "calls": 0,
            "unpriced_calls": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "total_tokens": 0,
            "cost": Decimal(0),
        }
        series.append(row)
        day += timedelta(days=1)
    return series


def top_sessions(start: date, end: date, limit: int = 10) -> list[dict]:
    rows = usage_by("session", start=start, end=end, limit=limit)
    titles = _session_titles(row["session_id"] for row in rows)
    names = _usernames(owner for _title, owner in titles.values())
    for row in rows:
        title, owner = titles.get(row["session_id"], (None, None))
        row["title"] = title
        row["deleted"] = row["session_id"] not in titles
        row["owner"] = names.get(owner, "")
    return rows


def top_users(start: date, end: date, limit: int = 10) -> list[dict]:
    rows = usage_by("user", start=start, end=end, limit=limit)
    names = _usernames(row["user_id"] for row in rows)
    for row in rows:
        row["username"] = names.get(row["user_id"], f"#{row['user_id']}")
    return rows


def dashboard_data(days: int = 30, today: date | None = None) -> dict:
    """Everything the usage dashboard shows, for the last ``days`` days."""
    end = today or now().date()
    start = end - timedelta(days=days - 1)
    series = daily_series(start, end)
    return {
        "start": start,
        "end": end,
        "days": days,
        "series": series,
        "totals": usage_totals(start=start, end=end),
        "models": usage_by("model", start=start, end=end, limit=10),
        "sessions": top_sessions(start, end),
        "users": top_users(start, end),
        "unpriced": unpriced_summary(),
    }
