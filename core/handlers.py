"""Core's receiver on the state bus: live pushes, after commit only."""

from functools import partial

from django.db import transaction

from core import realtime
from core.events import StateChange


def push_after_commit(sender, change: StateChange, **kwargs) -> None:
    """Push a compact event once the change commits; nothing for a rolled-back change."""
    transaction.on_commit(
        partial(realtime.push, change.groups(), change.compact()), using=change.using
    )
