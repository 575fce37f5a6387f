from decimal import Decimal

from django.conf import settings
from django.db import models

from core.models import StatefulModel


class Session(StatefulModel):
    """A user's interaction context: its threads, their aggregate, and its totals."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        CLOSED = "closed"

    state_entity_type = "session"
    state_counter_fields = (
        "total_calls",
        "total_input_tokens",
        "total_output_tokens",
        "total_tokens",
        "total_cost",
    )

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_sessions"
    )
    title = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    metadata = models.JSONField(default=dict, blank=True)
    # Recent messages window, summary and variables (see history_app).
    context = models.JSONField(default=dict, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    # Aggregate of the session's threads, kept by sessions_app.services (not versioned).
    thread_count = models.PositiveIntegerField(default=0)
    active_thread_count = models.PositiveIntegerField(default=0)
    threads_by_status = models.JSONField(default=dict, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)

    # Running usage totals, kept by history_app (core.state.add_to_counters).
    total_calls = models.PositiveIntegerField(default=0)
    total_input_tokens = models.PositiveBigIntegerField(default=0)
    total_output_tokens = models.PositiveBigIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    total_cost = models.DecimalField(max_digits=18, decimal_places=10, default=Decimal(0))

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="session_owner_created"),
            models.Index(fields=["status", "-last_activity_at"], name="session_status_activity"),
            models.Index(fields=["-created_at"], name="session_created"),
        ]

    def __str__(self) -> str:
        return self.title or f"Session {self.short_id}"
