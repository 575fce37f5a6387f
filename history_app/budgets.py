"""Budgets: limits on spending per user or per session over a period, and their alerts.

After each recorded call (once it committed), the budgets that apply to its user and
session are evaluated against the daily rollups; a budget crossed raises one
:class:`~history_app.models.Alert` per budget, subject and period (a unique constraint
makes that hold under concurrency too), pushed live to the dashboard and, when a webhook
is configured, sent by a Celery task. ``check_budgets`` is what the runtime calls before
it creates a run: a crossed ``block`` budget refuses it.
"""

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from celery import signature
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum

from core import realtime
from core.time import now
from history_app.models import Alert, Budget, DailySessionUsage, LLMCall
from sessions_app.models import Session

logger = logging.getLogger(__name__)

EPOCH = date(1970, 1, 1)
SEND_ALERT_WEBHOOK = "history_app.tasks.send_alert_webhook"


class BudgetExceeded(ValueError):
    """A blocking budget is used up: no new run until the period ends or the limit rises."""

    def __init__(self, budget: Budget, spent: Decimal, period_start: date, subject: str):
        self.budget = budget
        self.spent = spent
        self.period_start = period_start
        self.subject = subject
        limit = describe_amount(budget.metric, budget.limit)
        super().__init__(
            f"Budget {budget.name!r} is used up for {subject}: "
            f"{describe_amount(budget.metric, spent)} of {limit} "
            f"{period_phrase(budget.period, period_start)}. "
            "New runs are blocked until the period ends or the limit is raised."
        )


def describe_amount(metric: str, value: Decimal) -> str:
    if metric == Budget.Metric.TOKENS:
        return f"{int(value):,} tokens"
    return f"${value.quantize(Decimal('0.01')):,}" if value >= 1 else f"${value.normalize():f}"


def period_start(period: str, today: date) -> date:
    if period == Budget.Period.DAY:
        return today
    if period == Budget.Period.WEEK:
        return today - timedelta(days=today.weekday())
    if period == Budget.Period.MONTH:
        return today.replace(day=1)
    return EPOCH


def period_end(period: str, start: date) -> date | None:
    """The last day of the period that begins on ``start`` (None: open-ended)."""
    if period == Budget.Period.DAY:
        return start
    if period == Budget.Period.WEEK:
        return start + timedelta(days=6)
    if period == Budget.Period.MONTH:
        following = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
        return following - timedelta(days=1)
    return None


def period_phrase(period: str, start: date) -> str:
    if period == Budget.Period.TOTAL:
        return "in total"
    names = {"day": "today", "week": "this week", "month": "this month"}
    return f"{names[period]} (since {start.isoformat()})"


@dataclass(frozen=True)
class Subject:
    """Whose spending a budget counts: a user, or a session."""

    key: str
    label: str
    user_id: int | None = None
    session_id: object = None


def _subject(budget: Budget, user_id, session_id) -> Subject | None:
    if budget.scope == Budget.Scope.USER:
        if user_id is None:
            return None
        return Subject(f"user:{user_id}", _user_label(user_id), user_id=user_id)
    if session_id is None:
        return None
    return Subject(f"session:{session_id}", f"session {str(session_id)[:8]}", session_id=session_id)


def _user_label(user_id) -> str:
    User = get_user_model()
    name = User._default_manager.filter(pk=user_id).values_list(User.USERNAME_FIELD, flat=True)
    return f"user {name.first() or user_id}"


def _applicable(user_id, session_id):
    match = Q(scope=Budget.Scope.USER) & (Q(user__isnull=True) | Q(user_id=user_id))
    if session_id is not None:
        match |= Q(scope=Budget.Scope.SESSION) & (
            Q(session__isnull=True) | Q(session_id=session_id)
        )
    return Budget.objects.filter(match, is_active=True)


def blocking(user_id, session_id):
    """The active ``block`` budgets of this user or this session, as a queryset (the
    ids may be OuterRef: a run's creation asks whether any exists in its thread's read)."""
    return _applicable(user_id, session_id).filter(action=Budget.Action.BLOCK)


def applicable(user_id, session_id, *, blocking_only: bool = False):
    """Active budgets that count the spending of this user or this session."""
    budgets = blocking(user_id, session_id) if blocking_only else _applicable(user_id, session_id)
    return list(budgets.order_by("pk"))


def applicable_sql(user_id, session_id) -> tuple[str, list]:
    """``applicable`` as PostgreSQL selecting those budgets' ids (one statement text
    whatever the arguments, so it can be prepared), for a recorder that asks in its own
    statement whether there is anything to evaluate after the call."""
    sql = (
        f"SELECT id FROM {Budget._meta.db_table} WHERE is_active AND ("  # noqa: S608
        "(scope = %s AND (user_id IS NULL OR user_id = %s)) OR "
        "(%s::uuid IS NOT NULL AND scope = %s AND (session_id IS NULL OR session_id = %s)))"
    )
    return sql, [Budget.Scope.USER, user_id, session_id, Budget.Scope.SESSION, session_id]


def spent(budget: Budget, subject: Subject, start: date) -> Decimal:
    """What the subject spent (USD or tokens) since ``start``, from the daily rollup."""
    column = "cost_total" if budget.metric == Budget.Metric.COST else "total_tokens"
    if subject.session_id is not None and start == EPOCH:
        totals = Session._base_manager.filter(pk=subject.session_id).values(
            "total_cost", "total_tokens"
        )
        row = totals.first() or {}
        value = row.get("total_cost" if column == "cost_total" else "total_tokens")
        return Decimal(value or 0)
    rows = DailySessionUsage.objects.filter(day__gte=start)
    end = period_end(budget.period, start)
    if end is not None:
        rows = rows.filter(day__lte=end)
    if subject.session_id is not None:
        rows = rows.filter(session_id=subject.session_id)
    else:
        rows = rows.filter(user_id=subject.user_id)
    value = rows.aggregate(v=Sum(column))["v"]
    return Decimal(value or 0)


def check_budgets(user, session=None) -> None:
    """Raise :class:`BudgetExceeded` if a blocking budget of this user or session is used up.

    ``user`` and ``session`` may be instances or primary keys. Call it before creating a run.
    """
    user_id = getattr(user, "pk", user)
    session_id = getattr(session, "pk", session)
    today = now().date()
    for budget in applicable(user_id, session_id, blocking_only=True):
        subject = _subject(budget, user_id, session_id)
        if subject is None:
            continue
        start = period_start(budget.period, today)
        used = spent(budget, subject, start)
        if used >= budget.limit:
            raise BudgetExceeded(budget, used, start, subject.label)


def evaluate_after_call(call: LLMCall) -> list[Alert]:
    """Raise the alerts that this (committed) call's spending triggers; returns new ones."""
    created = []
    today = call.started_at.date() if call.started_at else now().date()
    for budget in applicable(call.user_id, call.session_id):
        subject = _subject(budget, call.user_id, call.session_id)
        if subject is None:
            continue
        start = period_start(budget.period, today)
        if Alert.objects.filter(budget=budget, subject=subject.key, period_start=start).exists():
            continue
        used = spent(budget, subject, start)
        if used < budget.limit:
            continue
        alert = _raise_alert(budget, subject, start, used)
        if alert is not None:
            created.append(alert)
    return created


def webhook_url_for(budget: Budget) -> str:
    return budget.webhook_url or settings.STATEHOUSE_ALERT_WEBHOOK_URL


def _raise_alert(budget: Budget, subject: Subject, start: date, used: Decimal) -> Alert | None:
    blocking = budget.action == Budget.Action.BLOCK
    message = (
        f"Budget {budget.name!r} crossed by {subject.label}: "
        f"{describe_amount(budget.metric, used)} of "
        f"{describe_amount(budget.metric, budget.limit)} {period_phrase(budget.period, start)}"
        + ("; new runs are blocked." if blocking else ".")
    )
    url = webhook_url_for(budget)
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                budget=budget,
                subject=subject.key,
                user_id=subject.user_id,
                session_id=subject.session_id,
                period_start=start,
                metric=budget.metric,
                limit=budget.limit,
                spent=used if budget.metric == Budget.Metric.COST else used.to_integral_value(),
                blocking=blocking,
                message=message,
                webhook_status=Alert.Delivery.PENDING if url else Alert.Delivery.NONE,
            )
            transaction.on_commit(lambda: _announce(alert, bool(url)), robust=True)
    except IntegrityError:
        return None  # raised concurrently by another call: one alert per period
    logger.warning("%s", message)
    return alert


def alert_payload(alert: Alert) -> dict:
    return {
        "type": "budget.alert",
        "alert_id": alert.pk,
        "budget_id": alert.budget_id,
        "budget": alert.budget.name,
        "subject": alert.subject,
        "period_start": alert.period_start.isoformat(),
        "metric": alert.metric,
        "limit": str(alert.limit),
        "spent": str(alert.spent),
        "blocking": alert.blocking,
        "message": alert.message,
        "at": alert.created_at.isoformat(),
    }


def _announce(alert: Alert, send_webhook: bool) -> None:
    realtime.push(["dashboard"], alert_payload(alert))
    if send_webhook:
        try:
            # By name: history_app.tasks imports this module (no import circle).
            signature(SEND_ALERT_WEBHOOK, args=(alert.pk,)).delay()
        except Exception:
            logger.exception("could not enqueue the webhook of alert %s", alert.pk)
