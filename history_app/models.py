from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from core.time import now

# Costs are US dollars to 1e-10 (a ten-billionth of a dollar), the precision of the
# session and thread totals, so that a total is exactly the sum of its calls.
COST_DIGITS = 18
COST_PLACES = 10
ZERO = Decimal(0)


def _cost(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=COST_DIGITS, decimal_places=COST_PLACES, **kwargs)


def _sum_cost(**kwargs) -> models.DecimalField:
    return models.DecimalField(
        max_digits=COST_DIGITS + 4, decimal_places=COST_PLACES, default=ZERO, **kwargs
    )


class StateEvent(models.Model):
    """One change of one entity: append-only, written in the change's transaction.

    ``old`` and ``new`` hold the values of the changed fields only (the whole state on
    creation and deletion), so a state at any version can be rebuilt by replaying.
    Versions are not unique per entity id: a thread deleted and created again with the
    same id (as LangGraph clients do) starts again at version 1.
    """

    class Kind(models.TextChoices):
        CREATED = "created"
        UPDATED = "updated"
        DELETED = "deleted"

    id = models.BigAutoField(primary_key=True)
    entity_type = models.CharField(max_length=32)
    entity_id = models.UUIDField()
    # The session the entity belongs to, for "a session's state-change history".
    session_id = models.UUIDField(null=True, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    version = models.PositiveIntegerField()
    changed_fields = models.JSONField(default=list)
    old = models.JSONField(null=True, blank=True)
    new = models.JSONField(null=True, blank=True)
    actor = models.CharField(max_length=200, default="system")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["entity_id", "-id"], name="stateevent_entity"),
            models.Index(fields=["session_id", "-id"], name="stateevent_session"),
            models.Index(fields=["entity_type", "-created_at"], name="stateevent_type_created"),
        ]

    def __str__(self) -> str:
        return f"{self.entity_type} {str(self.entity_id)[:8]} v{self.version} {self.kind}"


class Message(models.Model):
    """One message of a thread's conversation, as the graph's ``messages`` state held it.

    Append-only: recorded once per (thread, LangChain message id); a message without an id
    gets one derived from its thread, position and content, so re-recording adds nothing.
    """

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        TOOL = "tool"
        SYSTEM = "system"

    id = models.BigAutoField(primary_key=True)
    session = models.ForeignKey(
        "sessions_app.Session", on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    thread = models.ForeignKey(
        "threads_app.Thread", on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    run = models.ForeignKey(
        "threads_app.Run",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
    )
    # Position in the thread's conversation (0-based).
    sequence = models.PositiveIntegerField()
    role = models.CharField(max_length=16, choices=Role.choices)
    # A string, or LangChain's list of content blocks.
    content = models.JSONField(default=str, blank=True)
    message_id = models.CharField("LangChain message id", max_length=255)
    name = models.CharField(max_length=200, blank=True)
    # tool_calls, tool_call_id, the LangChain type when it is not the role's usual one.
    extra = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["thread", "message_id"], name="message_thread_msgid"),
        ]
        indexes = [
            models.Index(fields=["session", "-id"], name="message_session"),
            models.Index(fields=["thread", "sequence"], name="message_thread_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.sequence}"


class LLMCall(models.Model):
    """One model call: tokens the LangChain way, where it ran, and what it cost.

    ``input_tokens`` includes cache reads and writes, ``output_tokens`` includes reasoning;
    the breakdown columns say how much of each. The usage history outlives the session it
    was spent in: session, thread, run and user are references without database
    constraints, so deleting a session keeps its spend (and the rollups stay exact).
    """

    class CostSource(models.TextChoices):
        PROVIDER = "provider", "reported by the provider"
        COMPUTED = "computed", "computed from genai-prices"
        OVERRIDE = "override", "computed from a price override"
        UNPRICED = "unpriced", "unpriced (unknown model)"

    id = models.BigAutoField(primary_key=True)
    lc_run_id = models.UUIDField("LangChain run id", unique=True)
    lc_parent_run_id = models.UUIDField("LangChain parent run id", null=True, blank=True)
    session = models.ForeignKey(
        "sessions_app.Session",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="llm_calls",
    )
    thread = models.ForeignKey(
        "threads_app.Thread",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="llm_calls",
    )
    run = models.ForeignKey(
        "threads_app.Run",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="llm_calls",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="llm_calls",
    )
    node = models.CharField("graph node", max_length=200, blank=True)
    step = models.IntegerField("graph step", null=True, blank=True)
    provider = models.CharField(max_length=64, blank=True)
    model_name = models.CharField("model (as reported)", max_length=200, blank=True)
    resolved_model = models.CharField("priced as", max_length=200, blank=True)
    started_at = models.DateTimeField()
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    day = models.DateField(help_text="UTC day of started_at")

    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    usage = models.JSONField("raw usage", default=dict, blank=True)
    usage_valid = models.BooleanField(
        default=True, help_text="False: the model reported no readable usage; never priced."
    )

    cost_input = _cost(null=True, blank=True)
    cost_output = _cost(null=True, blank=True)
    cost_total = _cost(null=True, blank=True)
    cost_source = models.CharField(max_length=16, choices=CostSource.choices)
    pricing_version = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=now)

    class Meta:
        verbose_name = "LLM call"
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["-started_at"], name="llmcall_started"),
            models.Index(fields=["session", "started_at"], name="llmcall_session_started"),
            models.Index(fields=["thread", "started_at"], name="llmcall_thread_started"),
            models.Index(fields=["run", "started_at"], name="llmcall_run_started"),
            models.Index(fields=["user", "day"], name="llmcall_user_day"),
            models.Index(fields=["model_name", "started_at"], name="llmcall_model_started"),
            models.Index(fields=["provider", "started_at"], name="llmcall_provider_started"),
            models.Index(fields=["day"], name="llmcall_day"),
            models.Index(
                fields=["started_at"],
                name="llmcall_unpriced",
                condition=Q(cost_source="unpriced"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_name or '?'} {self.total_tokens} tokens"


class DailyModelUsage(models.Model):
    """Per day and model: the sums of the calls, kept with each recorded call.

    Maintained in the transaction that inserts the call (and by ``reprice``), so it is
    always exactly the sum of the LLMCall rows it stands for. Unpriced calls add no cost.
    """

    id = models.BigAutoField(primary_key=True)
    day = models.DateField()
    provider = models.CharField(max_length=64, blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    cost_source = models.CharField(max_length=16, choices=LLMCall.CostSource.choices)
    calls = models.PositiveBigIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    cost_input = _sum_cost()
    cost_output = _sum_cost()
    cost_total = _sum_cost()

    class Meta:
        verbose_name = "daily usage by model"
        verbose_name_plural = "daily usage by model"
        ordering = ["-day", "model_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "provider", "model_name", "cost_source"],
                name="dailymodel_key",
            )
        ]
        indexes = [models.Index(fields=["model_name", "day"], name="dailymodel_model_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.model_name}"


class DailySessionUsage(models.Model):
    """Per day, session and user: the sums of the calls (rollup, like DailyModelUsage)."""

    id = models.BigAutoField(primary_key=True)
    day = models.DateField()
    session_id = models.UUIDField()
    user_id = models.BigIntegerField()
    calls = models.PositiveBigIntegerField(default=0)
    unpriced_calls = models.PositiveBigIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    cost_total = _sum_cost()

    class Meta:
        verbose_name = "daily usage by session"
        verbose_name_plural = "daily usage by session"
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "session_id", "user_id"], name="dailysession_key"
            )
        ]
        indexes = [
            models.Index(fields=["session_id", "day"], name="dailysession_session_day"),
            models.Index(fields=["user_id", "day"], name="dailysession_user_day"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.session_id}"


# A price below zero would make every cost priced with it negative.
NOT_NEGATIVE = [MinValueValidator(ZERO, "A price cannot be negative.")]


class ModelPrice(models.Model):
    """A price override (US dollars per million tokens); it wins over genai-prices.

    ``model_pattern`` is an exact model name or a shell-style pattern (``gpt-4o*``),
    matched case-insensitively against the model name the provider reported. Among
    overrides valid at the call's time, a provider-specific one beats an any-provider one,
    and an exact name beats a pattern, and a longer pattern beats a shorter one.
    """

    provider = models.CharField(
        max_length=64, blank=True, help_text="Provider id (openai, anthropic...); blank: any."
    )
    model_pattern = models.CharField(
        max_length=200, help_text="Exact model name, or a pattern such as gpt-4o* or claude-?-*."
    )
    input_per_mtok = models.DecimalField(
        "input $/Mtok",
        max_digits=14,
        decimal_places=6,
        help_text="Uncached input tokens.",
        validators=NOT_NEGATIVE,
    )
    output_per_mtok = models.DecimalField(
        "output $/Mtok",
        max_digits=14,
        decimal_places=6,
        help_text="Output, reasoning included.",
        validators=NOT_NEGATIVE,
    )
    cache_read_per_mtok = models.DecimalField(
        "cache read $/Mtok",
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Blank: the input price.",
        validators=NOT_NEGATIVE,
    )
    cache_write_per_mtok = models.DecimalField(
        "cache write $/Mtok",
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Blank: the input price.",
        validators=NOT_NEGATIVE,
    )
    valid_from = models.DateTimeField(null=True, blank=True, help_text="Blank: always.")
    valid_to = models.DateTimeField(null=True, blank=True, help_text="Blank: open-ended.")
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "model price override"
        ordering = ["provider", "model_pattern", "-valid_from"]
        indexes = [models.Index(fields=["model_pattern"], name="modelprice_pattern")]

    def __str__(self) -> str:
        return f"{self.provider or '*'}/{self.model_pattern}"


class Budget(models.Model):
    """A spending limit in USD or tokens, per user or per session, over a period.

    With no user (or session) chosen, the budget applies to every user (or every session)
    on its own. ``block`` budgets also make new runs fail fast once crossed.
    """

    class Scope(models.TextChoices):
        USER = "user"
        SESSION = "session"

    class Metric(models.TextChoices):
        COST = "cost", "USD"
        TOKENS = "tokens", "tokens"

    class Period(models.TextChoices):
        DAY = "day"
        WEEK = "week"
        MONTH = "month"
        TOTAL = "total"

    class Action(models.TextChoices):
        ALERT = "alert", "alert only"
        BLOCK = "block", "alert and block new runs"

    name = models.CharField(max_length=200)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.USER)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="budgets",
        help_text="Blank with scope 'user': every user.",
    )
    session = models.ForeignKey(
        "sessions_app.Session",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="budgets",
        help_text="Blank with scope 'session': every session.",
    )
    metric = models.CharField(max_length=16, choices=Metric.choices, default=Metric.COST)
    limit = models.DecimalField(max_digits=20, decimal_places=6)
    period = models.CharField(max_length=16, choices=Period.choices, default=Period.MONTH)
    action = models.CharField(max_length=16, choices=Action.choices, default=Action.ALERT)
    webhook_url = models.URLField(
        blank=True, help_text="Blank: STATEHOUSE_ALERT_WEBHOOK_URL (if set)."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=now, editable=False)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["is_active", "scope"], name="budget_active_scope")]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        from django.core.exceptions import ValidationError

        if self.scope == self.Scope.USER and self.session_id:
            raise ValidationError("A user budget has no session.")
        if self.scope == self.Scope.SESSION and self.user_id:
            raise ValidationError("A session budget has no user.")
        if self.limit is not None and self.limit <= 0:
            raise ValidationError("The limit must be positive.")


class Alert(models.Model):
    """A budget crossed: one per budget, subject (user or session) and period."""

    class Delivery(models.TextChoices):
        NONE = "", "no webhook"
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    id = models.BigAutoField(primary_key=True)
    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    # "user:<id>" or "session:<uuid>": whose spending crossed the limit.
    subject = models.CharField(max_length=64)
    user_id = models.BigIntegerField(null=True, blank=True)
    session_id = models.UUIDField(null=True, blank=True)
    period_start = models.DateField()
    metric = models.CharField(max_length=16, choices=Budget.Metric.choices)
    limit = models.DecimalField(max_digits=20, decimal_places=6)
    spent = models.DecimalField(max_digits=24, decimal_places=10)
    blocking = models.BooleanField(default=False)
    message = models.TextField()
    created_at = models.DateTimeField(default=now)
    webhook_status = models.CharField(
        max_length=16, choices=Delivery.choices, blank=True, default=""
    )
    webhook_attempts = models.PositiveIntegerField(default=0)
    webhook_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "subject", "period_start"], name="alert_once_per_period"
            )
        ]
        indexes = [models.Index(fields=["-created_at"], name="alert_created")]

    def __str__(self) -> str:
        return self.message
