"""Core's receiver on the state bus: live pushes, after commit only, one per entity.

The changes a transaction makes are pushed once it commits, one push per entity carrying
its latest state (:func:`coalesce`), all from one ``on_commit`` callback (a
:class:`Pushes`), in the order the entities first changed. Nothing is pushed for a
rolled-back transaction, nor for what a rolled-back savepoint changed: Django discards
the callbacks registered while that savepoint was open, so a change joins the pushes of
a callback only if both share one fate (:meth:`Pushes.shares_fate`). Outside a
transaction a change is pushed at once.

The pushes of a transaction go out where its first change registered them among its
other ``on_commit`` callbacks.
"""

import dataclasses
import uuid

from django.db import transaction

from core import realtime
from core.events import StateChange


def coalesce(changes: list[StateChange]) -> StateChange:
    """One change that says what ``changes`` (of one entity, in order) did together.

    The latest state, version, actor and time; the state before the first; the fields
    any of them changed. Created then updated is created; anything then deleted is
    deleted, as the entity was before the first (what was seen of it: where it went
    meanwhile never committed).
    """
    first, last = changes[0], changes[-1]
    if len(changes) == 1:
        return first
    kind = last.kind
    if first.kind == "created" and kind == "updated":
        kind = "created"
    fields = dict.fromkeys(field for change in changes for field in change.changed_fields)
    return dataclasses.replace(
        last, kind=kind, old_state=first.old_state, changed_fields=tuple(fields)
    )


class Pushes:
    """The ``on_commit`` callback that pushes the changes of one transaction (or of one
    savepoint, until it is released), one per entity, in the order they first changed.

    Once run it takes no more changes (tests run callbacks without a commit, and keep
    them registered).
    """

    def __init__(self):
        self.changes: dict[tuple[str, uuid.UUID], list[StateChange]] = {}
        self.done = False

    def add(self, change: StateChange) -> None:
        self.changes.setdefault((change.entity_type, change.entity_id), []).append(change)

    def take(self, other: "Pushes") -> None:
        """Take over the changes of ``other`` (registered later), which pushes nothing."""
        for key, changes in other.changes.items():
            self.changes.setdefault(key, []).extend(changes)
        other.changes = {}

    def __call__(self) -> None:
        self.done = True
        entities, self.changes = self.changes, {}
        for changes in entities.values():
            change = coalesce(changes)
            realtime.push(change.groups(), change.compact())

    @staticmethod
    def shares_fate(registered_in: set, open_savepoints: set) -> bool:
        """Whether a callback registered while the savepoints ``registered_in`` were open
        (Django's record of it, still kept: none of them rolled back) will be run or
        discarded together with one registered now, in ``open_savepoints``.

        Those of its savepoints that are not open any more were released, so its fate is
        that of the ones still open: ours if all of ours were open then. (A block without
        a savepoint, ``None`` in Django's list, is left out: its rollback rolls back the
        enclosing savepoint or transaction.)
        """
        return open_savepoints <= registered_in


def push_after_commit(sender, change: StateChange, **kwargs) -> None:
    """Add the change to the pushes its transaction makes after commit (made at once
    outside a transaction); nothing is pushed for a rolled-back change."""
    connection = transaction.get_connection(change.using)
    pushes = _pending_pushes(connection) if connection.in_atomic_block else None
    if pushes is None:
        pushes = Pushes()
        pushes.add(change)
        transaction.on_commit(pushes, using=change.using)
    else:
        pushes.add(change)


def _pending_pushes(connection) -> Pushes | None:
    """The callback a change made now joins: the first registered one that shares its
    fate, with any later one that does merged into it (their changes came after its
    own); None if there is none."""
    open_savepoints = set(connection.savepoint_ids) - {None}
    mine = [
        func
        for registered_in, func, _robust in connection.run_on_commit
        if isinstance(func, Pushes)
        and not func.done
        and Pushes.shares_fate(registered_in, open_savepoints)
    ]
    if not mine:
        return None
    for later in mine[1:]:
        mine[0].take(later)
    return mine[0]
