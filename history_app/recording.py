"""Recording LLM calls: the call row, the running totals and the daily rollups, at once.

One transaction inserts the call and adds it, with ``F()`` expressions (never a
read-modify-write), to its thread's and its session's totals (their counter fields,
through ``core.state.add_to_counters``) and to the two daily rollups, so every total is
exactly the sum of the calls it stands for. Rows are locked
in one order everywhere (thread, session, daily session rows, daily model rows), the
order the state manager's own handlers use (thread, then session), so recorders,
``reprice`` and state changes never deadlock each other.

On PostgreSQL all of that is one statement (data-modifying CTEs, the rollups as
``INSERT ... ON CONFLICT DO UPDATE``, prepared), which also returns the new totals for
the live event and whether any budget applies, so a call costs two round trips with
the price override lookup; ``bench/history.py`` measures it (target 2 ms). Elsewhere
(SQLite, in-process) the same writes go through the ORM.
"""

# ruff: noqa: S608 - the one-statement recording is assembled from the models' table and
# column names and placeholders only; every value is a parameter.

import functools
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, router, transaction
from django.db.models import F

from core import realtime, state
from core.cursors import run_statement
from core.time import day as utc_day
from history_app import pricing
from history_app.models import ZERO, DailyModelUsage, DailySessionUsage, LLMCall
from history_app.pricing import Cost, Tokens

logger = logging.getLogger(__name__)


@dataclass
class CallRecord:
    """What the usage callback gathered about one model call."""

    lc_run_id: uuid.UUID
    session_id: uuid.UUID
    thread_id: uuid.UUID
    started_at: datetime
    run_id: uuid.UUID | None = None
    user_id: int | None = None
    lc_parent_run_id: uuid.UUID | None = None
    node: str = ""
    step: int | None = None
    provider: str = ""
    model_name: str = ""
    latency_ms: int | None = None
    tokens: Tokens = field(default_factory=Tokens)
    usage: dict = field(default_factory=dict)
    reported_cost: Decimal | None = None
    # False when the usage could not be read: the call is then recorded unpriced.
    usage_ok: bool = True


def _owner_of(session_id) -> int:
    session = state.read_fields("session", session_id, ["owner_id"])
    if session is None:
        raise ValueError(f"session {session_id} does not exist")
    return session["owner_id"]


def _cost_or_zero(value: Decimal | None) -> Decimal:
    return ZERO if value is None else value


def _upsert_add(model, key: dict, deltas: dict) -> None:
    """Add ``deltas`` to the row with ``key``, creating it if needed (race-safe)."""
    updates = {name: F(name) + value for name, value in deltas.items() if value}
    if updates and model.objects.filter(**key).update(**updates):
        return
    if not updates and model.objects.filter(**key).exists():
        return
    try:
        with transaction.atomic():
            model.objects.create(**key, **deltas)
    except IntegrityError:
        # Another transaction created it between our update and insert.
        if updates:
            model.objects.filter(**key).update(**updates)


def _call_values(call: LLMCall) -> dict:
    return {
        "calls": 1,
        "input_tokens": call.input_tokens,
        "output_tokens": call.output_tokens,
        "total_tokens": call.total_tokens,
        "cache_read_tokens": call.cache_read_tokens,
        "cache_write_tokens": call.cache_write_tokens,
        "reasoning_tokens": call.reasoning_tokens,
        "cost_input": _cost_or_zero(call.cost_input),
        "cost_output": _cost_or_zero(call.cost_output),
        "cost_total": _cost_or_zero(call.cost_total),
        "unpriced_calls": 1 if call.cost_source == LLMCall.CostSource.UNPRICED else 0,
    }


MODEL_FIELDS = (
    "calls",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_input",
    "cost_output",
    "cost_total",
)
SESSION_ROLLUP_FIELDS = (
    "calls",
    "unpriced_calls",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_total",
)


@dataclass
class Deltas:
    """Changes to totals and rollups, applied in the lock order (see module doc)."""

    threads: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    sessions: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    session_days: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    model_days: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))

    def add(self, call: LLMCall, sign: int = 1) -> None:
        values = _call_values(call)
        thread = self.threads[call.thread_id]
        thread["total_calls"] += sign
        thread["total_tokens"] += sign * call.total_tokens
        thread["total_cost"] += sign * values["cost_total"]
        session = self.sessions[call.session_id]
        session["total_calls"] += sign
        session["total_input_tokens"] += sign * call.input_tokens
        session["total_output_tokens"] += sign * call.output_tokens
        session["total_tokens"] += sign * call.total_tokens
        session["total_cost"] += sign * values["cost_total"]
        session_day = self.session_days[(call.day, call.session_id, call.user_id)]
        for name in SESSION_ROLLUP_FIELDS:
            session_day[name] += sign * values[name]
        model_day = self.model_days[(call.day, call.provider, call.model_name, call.cost_source)]
        for name in MODEL_FIELDS:
            model_day[name] += sign * values[name]

    def apply(self) -> None:
        for thread_id in sorted(self.threads, key=str):
            state.add_to_counters("thread", thread_id, self.threads[thread_id])
        for session_id in sorted(self.sessions, key=str):
            state.add_to_counters("session", session_id, self.sessions[session_id])
        for key in sorted(self.session_days, key=lambda k: (k[0], str(k[1]), k[2])):
            day, session_id, user_id = key
            _upsert_add(
                DailySessionUsage,
                {"day": day, "session_id": session_id, "user_id": user_id},
                dict(self.session_days[key]),
            )
        for key in sorted(self.model_days):
            day, provider, model_name, cost_source = key
            _upsert_add(
                DailyModelUsage,
                {
                    "day": day,
                    "provider": provider,
                    "model_name": model_name,
                    "cost_source": cost_source,
                },
                dict(self.model_days[key]),
            )


def _live_payload(call: LLMCall, session: dict | None = None, thread: dict | None = None) -> dict:
    """The ``usage.recorded`` event; the totals are read unless the write returned them."""
    totals = ["total_calls", "total_tokens", "total_cost"]
    if session is None:
        session = state.read_fields("session", call.session_id, totals) or {}
    if thread is None:
        thread = state.read_fields("thread", call.thread_id, totals) or {}

    def money(value):
        return None if value is None else str(value)

    return {
        "type": "usage.recorded",
        "session_id": str(call.session_id),
        "thread_id": str(call.thread_id),
        "run_id": str(call.run_id) if call.run_id else None,
        "model": call.model_name,
        "node": call.node,
        "tokens": call.total_tokens,
        "cost": money(call.cost_total),
        "cost_source": call.cost_source,
        "session_total_tokens": session.get("total_tokens"),
        "session_total_cost": money(session.get("total_cost")),
        "thread_total_tokens": thread.get("total_tokens"),
        "thread_total_cost": money(thread.get("total_cost")),
        "at": call.started_at.isoformat(),
    }


def _after_commit(call: LLMCall, payload: dict, budgets_apply: bool = True) -> None:
    groups = [f"thread.{call.thread_id}", f"session.{call.session_id}", "dashboard"]
    realtime.push(groups, payload)
    if not budgets_apply:
        return
    from history_app import budgets

    try:
        budgets.evaluate_after_call(call)
    except Exception:
        logger.exception("budget evaluation after LLM call %s failed", call.lc_run_id)


def _table(model) -> str:
    return model._meta.db_table


def _adds(table: str, columns) -> str:
    """``col = col + %s, ...`` for an UPDATE of ``table``."""
    return ", ".join(f"{col} = {table}.{col} + %s" for col in columns)


def _upsert(model, key: tuple, columns: tuple, source: str) -> str:
    """INSERT one row of ``key`` + ``columns`` values or add them to the row with that key."""
    table = _table(model)
    names = ", ".join((*key, *columns))
    values = ", ".join(["%s"] * (len(key) + len(columns)))
    adds = ", ".join(f"{col} = {table}.{col} + EXCLUDED.{col}" for col in columns)
    return (
        f"INSERT INTO {table} ({names}) SELECT {values} FROM {source} "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {adds} RETURNING 1"
    )


THREAD_ADDS = ("total_calls", "total_tokens", "total_cost")
SESSION_ADDS = (
    "total_calls",
    "total_input_tokens",
    "total_output_tokens",
    "total_tokens",
    "total_cost",
)


def _insert_fields() -> list:
    return [f for f in LLMCall._meta.concrete_fields if not f.primary_key]


@functools.cache
def _one_statement() -> str:
    """The recording statement (its text never changes, so it is prepared once)."""
    from history_app import budgets

    fields = _insert_fields()
    thread_table = _table(state.entity_model("thread"))
    session_table = _table(state.entity_model("session"))
    session_day = _upsert(
        DailySessionUsage,
        ("day", "session_id", "user_id"),
        SESSION_ROLLUP_FIELDS,
        "new_call WHERE (SELECT count(*) FROM session) >= 0",
    )
    model_day = _upsert(
        DailyModelUsage,
        ("day", "provider", "model_name", "cost_source"),
        MODEL_FIELDS,
        "new_call WHERE (SELECT count(*) FROM session_day) >= 0",
    )
    budget_sql, _params = budgets.applicable_sql(None, None)
    return f"""
        WITH new_call AS (
            INSERT INTO {_table(LLMCall)} ({", ".join(f.column for f in fields)})
            VALUES ({", ".join(["%s"] * len(fields))})
            ON CONFLICT (lc_run_id) DO NOTHING RETURNING id
        ), thread AS (
            UPDATE {thread_table} SET {_adds(thread_table, THREAD_ADDS)}
            WHERE id = %s AND EXISTS (SELECT 1 FROM new_call)
            RETURNING total_calls, total_tokens, total_cost
        ), session AS (
            UPDATE {session_table} SET {_adds(session_table, SESSION_ADDS)}
            WHERE id = %s AND EXISTS (SELECT 1 FROM new_call)
              AND (SELECT count(*) FROM thread) >= 0
            RETURNING total_calls, total_tokens, total_cost
        ), session_day AS ({session_day}
        ), model_day AS ({model_day}
        )
        SELECT new_call.id, thread.total_calls, thread.total_tokens, thread.total_cost,
               session.total_calls, session.total_tokens, session.total_cost,
               (SELECT count(*) FROM model_day), EXISTS ({budget_sql})
        FROM new_call LEFT JOIN thread ON true LEFT JOIN session ON true
    """


def _record_in_one_statement(call: LLMCall, db: str) -> LLMCall | None:
    """PostgreSQL: the call, both totals, both rollups and "do budgets apply?" in one
    statement (one round trip; atomic on its own, or part of the caller's transaction).

    The data-modifying CTEs run in the lock order of the module doc because each waits
    for the one before it (``(SELECT count(*) FROM previous) >= 0`` is evaluated before
    the next one's row is locked). A call already recorded (``ON CONFLICT DO NOTHING``,
    which also waits out a concurrent insert of the same call) changes nothing.
    """
    from history_app import budgets

    connection = connections[db]
    insert_values = [
        f.get_db_prep_save(f.pre_save(call, True), connection) for f in _insert_fields()
    ]
    values = _call_values(call)
    _sql, budget_params = budgets.applicable_sql(call.user_id, call.session_id)
    cost = values["cost_total"]
    params = [
        *insert_values,
        1,
        call.total_tokens,
        cost,
        call.thread_id,
        1,
        call.input_tokens,
        call.output_tokens,
        call.total_tokens,
        cost,
        call.session_id,
        call.day,
        call.session_id,
        call.user_id,
        *(values[name] for name in SESSION_ROLLUP_FIELDS),
        call.day,
        call.provider,
        call.model_name,
        call.cost_source,
        *(values[name] for name in MODEL_FIELDS),
        *budget_params,
    ]
    rows = run_statement(connection, _one_statement(), params, prepare=True, fetch=True)
    row = rows[0] if rows else None
    if row is None:
        return None  # the same LangChain run reported twice: counted once
    call.pk = row[0]
    call._state.adding = False
    call._state.db = db
    totals = ("total_calls", "total_tokens", "total_cost")
    thread = dict(zip(totals, row[1:4], strict=True)) if row[1] is not None else {}
    session = dict(zip(totals, row[4:7], strict=True)) if row[4] is not None else {}
    payload = _live_payload(call, session, thread)
    budgets_apply = row[8]
    transaction.on_commit(
        lambda: _after_commit(call, payload, budgets_apply), using=db, robust=True
    )
    return call


def record_llm_call(record: CallRecord) -> LLMCall | None:
    """Insert the call and add it to every total; None if it was recorded already."""
    user_id = record.user_id if record.user_id is not None else _owner_of(record.session_id)
    if record.usage_ok:
        cost = pricing.price_call(
            record.provider,
            record.model_name,
            record.tokens,
            record.started_at,
            reported_cost=record.reported_cost,
        )
    else:
        cost = Cost.unpriced()
    tokens = record.tokens
    call = LLMCall(
        lc_run_id=record.lc_run_id,
        lc_parent_run_id=record.lc_parent_run_id,
        session_id=record.session_id,
        thread_id=record.thread_id,
        run_id=record.run_id,
        user_id=user_id,
        node=record.node[:200],
        step=record.step,
        provider=record.provider[:64],
        model_name=record.model_name[:200],
        resolved_model=cost.resolved_model[:200],
        started_at=record.started_at,
        latency_ms=record.latency_ms,
        day=utc_day(record.started_at),
        input_tokens=tokens.input,
        output_tokens=tokens.output,
        total_tokens=tokens.total,
        cache_read_tokens=tokens.cache_read,
        cache_write_tokens=tokens.cache_write,
        reasoning_tokens=tokens.reasoning,
        usage=record.usage,
        usage_valid=record.usage_ok,
        cost_input=cost.input,
        cost_output=cost.output,
        cost_total=cost.total,
        cost_source=cost.source,
        pricing_version=cost.version[:64],
    )
    db = router.db_for_write(LLMCall) or DEFAULT_DB_ALIAS
    if connections[db].vendor == "postgresql":
        return _record_in_one_statement(call, db)
    with transaction.atomic(using=db):
        try:
            with transaction.atomic(using=db):
                call.save(force_insert=True, using=db)
        except IntegrityError:
            if LLMCall.objects.filter(lc_run_id=record.lc_run_id).exists():
                return None  # the same LangChain run reported twice: counted once
            raise
        deltas = Deltas()
        deltas.add(call)
        deltas.apply()
        payload = _live_payload(call)
        transaction.on_commit(lambda: _after_commit(call, payload), robust=True)
    return call


# --- repricing ---------------------------------------------------------------------------

REPRICE_SOURCES = (
    LLMCall.CostSource.UNPRICED,
    LLMCall.CostSource.COMPUTED,
    LLMCall.CostSource.OVERRIDE,
)


@dataclass
class RepriceResult:
    examined: int = 0
    changed: int = 0
    priced: int = 0  # of which were unpriced before
    unpriced: int = 0  # still unpriced after
    batches: int = 0


def _cost_fields_of(call: LLMCall) -> tuple:
    return (call.cost_input, call.cost_output, call.cost_total, call.cost_source)


def reprice(
    *,
    sources=REPRICE_SOURCES,
    since=None,
    batch_size: int = 1000,
    dry_run: bool = False,
) -> RepriceResult:
    """Price again the calls of ``sources`` with today's overrides and price data.

    Calls whose usage could not be read (``usage_valid`` False) stay unpriced. Works in
    batches by id; each batch locks its calls, updates them and moves their difference
    into the thread and session totals and the rollups in the same transaction, so the
    totals stay exact while calls keep being recorded.
    """
    result = RepriceResult()
    last_id = 0
    while True:
        with transaction.atomic():
            batch = LLMCall.objects.filter(
                id__gt=last_id, cost_source__in=list(sources), usage_valid=True
            )
            if since is not None:
                batch = batch.filter(day__gte=since)
            batch = list(batch.order_by("id").select_for_update()[:batch_size])
            if not batch:
                break
            last_id = batch[-1].id
            result.batches += 1
            deltas = Deltas()
            changed = []
            for call in batch:
                result.examined += 1
                cost = pricing.price_call(
                    call.provider, call.model_name, pricing.tokens_of(call), call.started_at
                )
                new = (cost.input, cost.output, cost.total, cost.source)
                if new == _cost_fields_of(call):
                    continue
                was_unpriced = call.cost_source == LLMCall.CostSource.UNPRICED
                deltas.add(call, sign=-1)
                call.cost_input, call.cost_output, call.cost_total, call.cost_source = new
                call.resolved_model = cost.resolved_model[:200]
                call.pricing_version = cost.version[:64]
                deltas.add(call, sign=+1)
                changed.append(call)
                if was_unpriced and cost.source != LLMCall.CostSource.UNPRICED:
                    result.priced += 1
            result.changed += len(changed)
            if changed and not dry_run:
                LLMCall.objects.bulk_update(
                    changed,
                    [
                        "cost_input",
                        "cost_output",
                        "cost_total",
                        "cost_source",
                        "resolved_model",
                        "pricing_version",
                    ],
                )
                deltas.apply()
                DailyModelUsage.objects.filter(calls=0).filter(
                    day__in={key[0] for key in deltas.model_days}
                ).delete()
        if len(batch) < batch_size:
            break
    result.unpriced = LLMCall.objects.filter(cost_source=LLMCall.CostSource.UNPRICED).count()
    return result
