"""The abstract base of stateful entities (session, workflow, thread, run)."""

from typing import ClassVar

from django.conf import settings
from django.db import models

from core.ids import new_id
from core.time import now


class StatefulModel(models.Model):
    """An entity whose changes go through ``core.state`` and are announced on the bus.

    ``state_entity_type`` names it in the state manager's registry; ``version`` is bumped
    by every change and is what optimistic concurrency checks against.
    """

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(default=now, editable=False)
    updated_at = models.DateTimeField(default=now, editable=False)

    state_entity_type: ClassVar[str] = ""
    # Fields that update_state refuses to change (besides id, version and timestamps).
    state_readonly_fields: ClassVar[tuple[str, ...]] = ()
    # Running sums (usage totals) added to with core.state.add_to_counters only.
    state_counter_fields: ClassVar[tuple[str, ...]] = ()

    class Meta:
        abstract = True

    @property
    def short_id(self) -> str:
        return self.id.hex[:8]


class ApiKey(models.Model):
    """A key for the JSON API: shown once at creation, stored as a SHA-256 hash.

    Keys are random (256 bits), so a fast hash is enough; ``prefix`` is the visible part
    that identifies a key in lists and logs.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.owner})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
