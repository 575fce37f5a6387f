"""The state-change event bus: a Django signal and its typed payload.

``state_changed`` is sent inside the transaction of every change made through
``core.state``, with the entity's model class as ``sender`` and a :class:`StateChange`
as ``change``. It is a ``ModelSignal``: a receiver that wants one entity connects with
that model as sender, lazily by label, as Django's own model signals allow::

    state_changed.connect(receiver, sender="threads_app.Thread", dispatch_uid="...")

``state_changed_batch`` follows, once per call of the state manager, with all the
changes of that call (one, or those of ``update_states``).

Receivers that must be consistent with the change write in that same transaction (a
receiver that raises rolls the change back); side effects that may be lost and redone
(live pushes) are registered with ``transaction.on_commit``. A receiver never writes
through the state manager itself: a change announced from inside a dispatch would
re-enter the bus (write the derived rows directly, see ``sessions_app.services``).
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from django.db.models.signals import ModelSignal
from django.dispatch import Signal

# Receivers per sender are cached (as for Django's model signals): a dispatch looks up
# the receivers of one model instead of filtering every receiver.
state_changed = ModelSignal(use_caching=True)
# Sent once per call of the state manager, after the ``state_changed`` of each of its
# changes, with all of them (``changes``, in order; ``sender`` None): for a receiver that
# writes one row per change, to write them in one statement (history's StateEvents).
state_changed_batch = Signal()

ChangeKind = Literal["created", "updated", "deleted"]


@dataclass(frozen=True, slots=True)
class StateChange:
    entity_type: str
    entity_id: uuid.UUID
    kind: ChangeKind
    old_state: dict[str, Any] | None
    new_state: dict[str, Any] | None
    changed_fields: tuple[str, ...]
    version: int
    actor: str
    timestamp: datetime
    using: str = "default"

    @property
    def state(self) -> dict[str, Any]:
        """The newest known state: the new one, or the old one for a deletion."""
        return self.new_state if self.new_state is not None else (self.old_state or {})

    def changed(self, field: str) -> bool:
        return field in self.changed_fields

    def value(self, field: str) -> Any:
        return self.state.get(field)

    def groups(self) -> list[str]:
        """Channels groups that want to hear of this change."""
        groups = [f"{self.entity_type}.{self.entity_id}"]
        state = self.state
        for parent in ("session", "thread"):
            parent_id = state.get(f"{parent}_id")
            if parent_id and parent != self.entity_type:
                groups.append(f"{parent}.{parent_id}")
        # A thread moved to another session: its old session must hear it left.
        if self.old_state and self.new_state:
            old_session = self.old_state.get("session_id")
            if old_session and old_session != self.new_state.get("session_id"):
                groups.append(f"session.{old_session}")
        groups.append("dashboard")
        return groups

    def compact(self) -> dict[str, Any]:
        """A small JSON payload for live pushes (never the whole state)."""
        state = self.state
        payload = {
            "type": "state.changed",
            "entity": self.entity_type,
            "id": str(self.entity_id),
            "kind": self.kind,
            "version": self.version,
            "changed": list(self.changed_fields),
            "at": self.timestamp.isoformat(),
        }
        for key in ("status", "session_id", "thread_id"):
            if key in state:
                payload[key] = state[key]
        return payload
