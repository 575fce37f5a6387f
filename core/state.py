"""The state manager: every change to a stateful entity goes through here.

One call is one transaction: load the row, validate the changes, write them with a
compare-and-set on ``version``, then announce the change on the ``state_changed`` signal
(and all the call's changes together on ``state_changed_batch``). Receivers run in the
same transaction, so a receiver that raises rolls the change back. On PostgreSQL the
call's writes and those of its receivers are queued and sent as one statement at its
end (``core.write_batch``). ``update_states``
writes several rows the caller has read (under their locks) in one transaction, without
reading them again.

Entity types come from a registry built from the installed models that subclass
:class:`core.models.StatefulModel` (``state_entity_type = "session"``, ...).
"""

import datetime
import decimal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, connections, models, router, transaction
from django.db.models import F

from core import write_batch
from core.bulk_insert import insert_instance
from core.events import ChangeKind, StateChange, state_changed, state_changed_batch
from core.metadata import InvalidJSON, json_size
from core.models import StatefulModel
from core.rowloader import row_loader
from core.time import now


class StateError(Exception):
    """Base of the state manager's errors."""


class EntityNotFound(StateError, LookupError):
    def __init__(self, entity_type: str, entity_id: object):
        self.entity_type = entity_type
        self.entity_id = entity_id
        super().__init__(f"{entity_type} {entity_id} does not exist")


class StateConflict(StateError):
    """The entity changed since the caller read it; nothing was written."""

    def __init__(self, entity_type: str, entity_id: object, expected: int | None, actual: int):
        self.entity_type = entity_type
        self.entity_id = entity_id
        self.expected_version = expected
        self.actual_version = actual
        super().__init__(
            f"{entity_type} {entity_id} was changed concurrently "
            f"(expected version {expected}, found {actual})"
        )


class InvalidState(StateError, ValueError):
    """The requested state is not acceptable; nothing was written."""


# --- registry -----------------------------------------------------------------------


@cache
def _registry() -> dict[str, type[StatefulModel]]:
    """Entity type -> model, from the installed models. This scan (apps.get_models) is
    the state manager's registry and stays: it is how the kernel knows the apps' models
    without importing them; other modules import a model or ask this registry."""
    registry: dict[str, type[StatefulModel]] = {}
    for model in apps.get_models():
        entity_type = getattr(model, "state_entity_type", "")
        if issubclass(model, StatefulModel) and entity_type:
            if entity_type in registry:
                raise RuntimeError(f"two models claim entity type {entity_type!r}")
            registry[entity_type] = model
    return registry


def entity_types() -> list[str]:
    return sorted(_registry())


def entity_model(entity_type: str) -> type[StatefulModel]:
    try:
        return _registry()[entity_type]
    except KeyError:
        raise InvalidState(
            f"unknown entity type {entity_type!r}; known: {', '.join(entity_types())}"
        ) from None


# --- state serialization ----------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A field value as JSON-friendly data (what the payload and StateEvent carry)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


@dataclass(frozen=True)
class _Spec:
    """What the state manager knows about one model, computed once."""

    attnames: tuple[str, ...]
    writable: dict[str, models.Field]  # accepted change key -> field
    json_fields: frozenset[str]
    fields: dict[str, models.Field]  # attname -> concrete field


_SYSTEM_FIELDS = frozenset({"id", "version", "created_at", "updated_at"})


@cache
def _spec(model: type[StatefulModel]) -> _Spec:
    fields = model._meta.concrete_fields
    writable: dict[str, models.Field] = {}
    for field in fields:
        if field.name in _SYSTEM_FIELDS or field.name in model.state_readonly_fields:
            continue
        if field.name in model.state_counter_fields:
            continue
        writable[field.name] = field
        writable[field.attname] = field  # "session" and "session_id" both accepted
    return _Spec(
        attnames=tuple(f.attname for f in fields),
        writable=writable,
        json_fields=frozenset(f.attname for f in fields if isinstance(f, models.JSONField)),
        fields={f.attname: f for f in fields},
    )


def to_state(obj: StatefulModel) -> dict[str, Any]:
    """The entity's state: every concrete field by attname, as JSON-friendly values."""
    return {name: _plain(getattr(obj, name)) for name in _spec(type(obj)).attnames}


def _check_size(entity_type: str, state: dict[str, Any]) -> None:
    try:
        size = json_size(state)
    except InvalidJSON as exc:
        raise InvalidState(f"{entity_type} state cannot be stored: {exc}") from None
    limit = settings.STATEHOUSE_MAX_STATE_BYTES
    if size > limit:
        raise InvalidState(
            f"{entity_type} state is {size} bytes, more than STATEHOUSE_MAX_STATE_BYTES ({limit})"
        )


def _apply(
    obj: StatefulModel, entity_type: str, changes: dict[str, Any], validate: bool = True
) -> list[str]:
    """Set the changes on ``obj`` and validate them; returns the attnames touched."""
    if not isinstance(changes, dict):
        raise InvalidState(f"changes must be a dict, got {type(changes).__name__}")
    spec = _spec(type(obj))
    unknown = sorted(key for key in changes if key not in spec.writable)
    if unknown:
        raise InvalidState(f"{entity_type} has no writable field(s): {', '.join(unknown)}")
    touched = []
    for key, value in changes.items():
        field = spec.writable[key]
        setattr(obj, key, value)
        touched.append(field.attname)
    if not validate:
        return touched
    names = {spec.writable[key].name for key in changes} - _loaded_relations(changes)
    try:
        obj.clean_fields(exclude=[f.name for f in obj._meta.fields if f.name not in names])
    except ValidationError as exc:
        raise InvalidState(f"invalid {entity_type}: {_describe(exc)}") from None
    return touched


def _loaded_relations(values: dict[str, Any]) -> set[str]:
    """Fields given a saved instance: their row was just read, so validating them would
    only read it again (a foreign key's validation is a query); the database's own
    constraint still refuses a row deleted since."""
    return {
        key
        for key, value in values.items()
        if isinstance(value, models.Model) and value.pk is not None and not value._state.adding
    }


def _describe(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in exc.message_dict.items())
    return " ".join(exc.messages)


def _actor(actor: Any) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    username = getattr(actor, "get_username", None)
    if callable(username):
        return f"user:{username()}"
    return str(actor)


def _db(model: type[StatefulModel], using: str | None) -> str:
    return using or router.db_for_write(model) or DEFAULT_DB_ALIAS


def _load(model, entity_type: str, entity_id: object, using: str) -> StatefulModel:
    try:
        obj = row_loader(model, connections[using]).load(entity_id)
    except (ValidationError, ValueError, TypeError):
        obj = None
    if obj is None:
        raise EntityNotFound(entity_type, entity_id)
    return obj


def _announce(
    model, obj, kind: ChangeKind, old, new, changed, actor: str, using: str
) -> StateChange:
    change = StateChange(
        entity_type=model.state_entity_type,
        entity_id=obj.pk,
        kind=kind,
        old_state=old,
        new_state=new,
        changed_fields=tuple(changed),
        version=obj.version,
        actor=actor,
        timestamp=obj.updated_at,
        using=using,
    )
    state_changed.send(sender=model, change=change)
    return change


def _prepare(
    obj: StatefulModel, entity_type: str, changes: dict[str, Any], expected_version: int | None
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Set ``changes`` on ``obj`` and validate them: the state before and after, and the
    fields they change. StateConflict when ``expected_version`` is not the row's."""
    if expected_version is not None and expected_version != obj.version:
        raise StateConflict(entity_type, obj.pk, expected_version, obj.version)
    old = to_state(obj)
    touched = _apply(obj, entity_type, changes)
    # Only the touched fields were set (and cleaned): the others are as in ``old``.
    new = old | {name: _plain(getattr(obj, name)) for name in touched}
    changed = [name for name in touched if old[name] != new[name]]
    if changed:
        _check_size(entity_type, new)
    return old, new, changed


def _prepare_all(updates: list[tuple[StatefulModel, dict[str, Any]]]) -> list[tuple]:
    """``_prepare`` for each ``(row, changes)``: ``(model, row, old, new, changed)`` for
    those that change something, every one validated before anything is written."""
    prepared = []
    for obj, changes in updates:
        model = entity_model(type(obj).state_entity_type)
        old, new, changed = _prepare(obj, model.state_entity_type, changes, None)
        if changed:
            prepared.append((model, obj, old, new, changed))
    return prepared


@cache
def _cas_sql(model: type[StatefulModel], changed: tuple[str, ...]) -> str:
    """The compare-and-set UPDATE of ``changed`` (attnames), built once per model and
    set of fields: the model's table and column names and placeholders only (the values
    are bound, prepared by their fields as the ORM prepares them). Parameters: the new
    version, ``updated_at``, the changed values, the id and the version read.

    Written out rather than built by the ORM: every state change is one, and compiling
    an UPDATE cost about 0.5 ms of CPU each time."""
    fields = _spec(model).fields
    names = ("version", "updated_at", *changed)
    sets = ", ".join(f'"{fields[name].column}" = %s' for name in names)
    meta = model._meta
    return f'UPDATE "{meta.db_table}" SET {sets} WHERE "{meta.pk.column}" = %s AND "version" = %s'  # noqa: S608


def _write(
    model, obj: StatefulModel, new: dict[str, Any], changed: list[str], moment, db: str
) -> StateConflict | None:
    """Write the ``changed`` fields of ``obj`` with a compare-and-set on the version it
    was read at, and bump it (``obj`` and ``new`` too); the conflict if another writer
    changed the row since (``obj`` keeps its version then).

    In a write batch (core.write_batch) the UPDATE is queued, its compare-and-set one of
    the batch's checks: the conflict is raised when the batch is sent."""
    current = obj.version
    connection = connections[db]
    meta = model._meta
    fields = _spec(model).fields
    pk = meta.pk.get_db_prep_value(obj.pk, connection)
    params = [current + 1, fields["updated_at"].get_db_prep_save(moment, connection)]
    names = tuple(dict.fromkeys(changed))
    params += [fields[name].get_db_prep_save(getattr(obj, name), connection) for name in names]
    params += [pk, current]
    batch = write_batch.current(connection)
    if batch is not None:
        sql = f"{_cas_sql(model, names)} AND {write_batch.GUARD}"
        batch.add(sql, params, meta.db_table, updates=True)
        batch.compare(
            meta.db_table, meta.pk.column, pk, current, lambda: _conflict(model, obj, current, db)
        )
        batch.on_failure(lambda before=obj.updated_at: _put_back(obj, current, before))
    else:
        with connection.cursor() as cursor:
            cursor.execute(_cas_sql(model, names), params)
            written = cursor.rowcount
        if written != 1:
            return _conflict(model, obj, current, db)
    obj.version = current + 1
    obj.updated_at = moment
    new["version"] = obj.version
    new["updated_at"] = moment.isoformat()
    return None


def _conflict(model, obj: StatefulModel, expected: int, db: str) -> StateConflict:
    actual = model._base_manager.using(db).filter(pk=obj.pk).values_list("version", flat=True)
    return StateConflict(model.state_entity_type, obj.pk, expected, actual.first() or -1)


def _put_back(obj: StatefulModel, version: int, updated_at) -> None:
    obj.version = version
    obj.updated_at = updated_at


# --- the state manager API ----------------------------------------------------------


def get_state(entity_type: str, entity_id: object, using: str | None = None) -> dict[str, Any]:
    """The entity's current state as a dict (including ``version``)."""
    model = entity_model(entity_type)
    db = using or router.db_for_read(model) or DEFAULT_DB_ALIAS
    return to_state(_load(model, entity_type, entity_id, db))


def create_state(
    entity_type: str,
    initial: dict[str, Any],
    actor: Any = None,
    using: str | None = None,
    updates: list[tuple[StatefulModel, dict[str, Any]]] = (),
) -> StatefulModel:
    """Create an entity at version 1 and announce it; returns the saved instance.

    ``updates``: ``(row, changes)`` pairs written in the same transaction, as
    ``update_states`` writes them (rows the caller read under their locks, compared and
    set on the version read), and announced with the creation in one
    ``state_changed_batch``: a run created running, say, with its thread busy. Every
    change is validated before anything is written; a conflict rolls all back."""
    model = entity_model(entity_type)
    if not isinstance(initial, dict):
        raise InvalidState(f"initial state must be a dict, got {type(initial).__name__}")
    initial = dict(initial)
    obj_id = initial.pop("id", None)
    db = _db(model, using)
    obj = model()
    if obj_id is not None:
        try:
            obj.id = uuid.UUID(str(obj_id))
        except ValueError:
            raise InvalidState(f"{entity_type} id is not a UUID: {obj_id!r}") from None
    _apply(obj, entity_type, initial, validate=False)
    try:
        obj.clean_fields(exclude=["id", *_loaded_relations(initial)])
    except ValidationError as exc:
        raise InvalidState(f"invalid {entity_type}: {_describe(exc)}") from None
    _check_size(entity_type, to_state(obj))
    prepared = _prepare_all(updates)
    actor_name = _actor(actor)
    with transaction.atomic(using=db, savepoint=False), write_batch.collect(connections[db]):
        moment = obj.created_at = obj.updated_at = now()
        state = to_state(obj)
        insert_instance(obj, db)  # save(force_insert=True), its INSERT compiled once
        announced = [_announce(model, obj, "created", None, state, state.keys(), actor_name, db)]
        for row_model, row, old, new, changed in prepared:
            error = _write(row_model, row, new, changed, moment, db)
            if error is not None:
                raise error  # undoes the creation and the writes before it
            announced.append(
                _announce(row_model, row, "updated", old, new, changed, actor_name, db)
            )
        state_changed_batch.send(sender=None, changes=announced)
    return obj


def update_state(
    entity_type: str,
    entity_id: object,
    changes: dict[str, Any],
    expected_version: int | None = None,
    actor: Any = None,
    using: str | None = None,
) -> StatefulModel:
    """Apply ``changes`` (field -> value) to the entity and announce them.

    The write is a compare-and-set on ``version``: if ``expected_version`` is stale, or
    another writer changed the row between our read and our write, :class:`StateConflict`
    is raised and nothing is written. Changes that change nothing bump no version and
    announce nothing. A stale ``expected_version`` is found before anything is written
    and leaves an outer ``atomic`` block usable (for a retry); a conflict found by the
    write, or an error raised by a receiver, marks that block for rollback.
    """
    model = entity_model(entity_type)
    db = _db(model, using)
    actor_name = _actor(actor)
    error: StateError | None = None
    with transaction.atomic(using=db, savepoint=False), write_batch.collect(connections[db]):
        try:
            obj = _load(model, entity_type, entity_id, db)
            old, new, changed = _prepare(obj, entity_type, changes, expected_version)
        except StateError as exc:
            # Nothing is written yet: leave the block cleanly so that an outer
            # transaction stays usable (for a retry, say), and raise below.
            error = exc
        else:
            if not changed:
                return obj
            written = _write(model, obj, new, changed, now(), db)
            if written is not None:
                raise written  # (at once, on SQLite) rolls the transaction back
            change = _announce(model, obj, "updated", old, new, changed, actor_name, db)
            state_changed_batch.send(sender=None, changes=[change])
    if error is not None:
        raise error
    return obj


def update_states(
    updates: list[tuple[StatefulModel, dict[str, Any]]],
    actor: Any = None,
    using: str | None = None,
) -> list[StatefulModel]:
    """Apply each ``(row, changes)`` of ``updates`` in one transaction and announce them.

    Each row is an instance the caller read, normally under its lock, and is not read
    again: its write is a compare-and-set on the version it was read at. The rows are
    changed in place and returned (one row of each entity at most). Changes that change
    nothing are skipped, as in ``update_state``; ``state_changed`` is sent for each
    change as it is written, then ``state_changed_batch`` once with all of them.

    Every change is validated before anything is written (InvalidState: nothing written,
    an outer block stays usable). A conflict (StateConflict: a row changed since it was
    read) rolls the call's transaction back, marking an outer block for rollback. On
    PostgreSQL the writes and those of the receivers go out as one statement
    (core.write_batch), which writes all of them or, on a conflict, none.
    """
    actor_name = _actor(actor)
    prepared = _prepare_all(updates)
    if not prepared:
        return [obj for obj, _ in updates]
    db = _db(prepared[0][0], using)
    moment = now()
    with transaction.atomic(using=db, savepoint=False), write_batch.collect(connections[db]):
        announced = []
        for model, obj, old, new, changed in prepared:
            error = _write(model, obj, new, changed, moment, db)
            if error is not None:
                raise error  # (at once, on SQLite) rolls the transaction back
            announced.append(_announce(model, obj, "updated", old, new, changed, actor_name, db))
        state_changed_batch.send(sender=None, changes=announced)
    return [obj for obj, _ in updates]


def delete_state(
    entity_type: str,
    entity_id: object,
    expected_version: int | None = None,
    actor: Any = None,
    using: str | None = None,
) -> dict[str, Any]:
    """Delete the entity and announce it; returns its last state."""
    model = entity_model(entity_type)
    db = _db(model, using)
    conflict = None
    with transaction.atomic(using=db, savepoint=False), write_batch.collect(connections[db]):
        obj = _load(model, entity_type, entity_id, db)
        old = to_state(obj)
        if expected_version is not None and expected_version != obj.version:
            conflict = StateConflict(entity_type, obj.pk, expected_version, obj.version)
        else:
            deleted = model._base_manager.using(db).filter(pk=obj.pk, version=obj.version)
            if deleted.delete()[0] == 0:
                conflict = StateConflict(entity_type, obj.pk, obj.version, -1)
            else:
                obj.updated_at = now()
                change = _announce(model, obj, "deleted", old, None, old.keys(), _actor(actor), db)
                state_changed_batch.send(sender=None, changes=[change])
    if conflict is not None:
        raise conflict
    return old


def update_state_with_retry(
    entity_type: str,
    entity_id: object,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    attempts: int = 5,
    actor: Any = None,
    using: str | None = None,
) -> StatefulModel:
    """A read-modify-write through the state manager, retried on a version conflict.

    ``change(state)`` gets the entity's current state and returns the changes to make
    from it; the write is a compare-and-set on the version that state was read at. When
    another writer got in between, the state is read again and ``change`` called again,
    up to ``attempts`` times (the last :class:`StateConflict` is raised).
    """
    for attempt in range(attempts):
        current = get_state(entity_type, entity_id, using=using)
        try:
            return update_state(
                entity_type,
                entity_id,
                change(current),
                expected_version=current["version"],
                actor=actor,
                using=using,
            )
        except StateConflict:
            if attempt == attempts - 1:
                raise
    raise ValueError(f"attempts must be at least 1, got {attempts}")


# --- counters -----------------------------------------------------------------------


def add_to_counters(
    entity_type: str, entity_id: object, deltas: dict[str, Any], using: str | None = None
) -> bool:
    """Add ``deltas`` to the entity's counter fields with one ``UPDATE ... SET f = f + d``.

    Counters (``state_counter_fields``: usage totals) are running sums kept by whoever
    records what they count: added to with ``F()`` expressions in the caller's
    transaction, never read-modify-written, and, like the aggregate fields, neither
    versioned nor announced (they change at every LLM call; the recorder pushes its own
    live event). ``update_state`` refuses them. Returns False if the entity is gone.
    """
    model = entity_model(entity_type)
    unknown = sorted(set(deltas) - set(model.state_counter_fields))
    if unknown:
        raise InvalidState(f"{entity_type} has no counter field(s): {', '.join(unknown)}")
    updates = {name: F(name) + value for name, value in deltas.items() if value}
    if not updates:
        return True
    rows = model._base_manager.using(_db(model, using)).filter(pk=entity_id)
    return rows.update(**updates) == 1


def read_fields(
    entity_type: str, entity_id: object, fields: list[str], using: str | None = None
) -> dict[str, Any] | None:
    """Some fields of one entity as stored (no state conversion), or None if it is gone:
    for apps that may not import the entity's model (history reads thread totals)."""
    model = entity_model(entity_type)
    db = using or router.db_for_read(model) or DEFAULT_DB_ALIAS
    return model._base_manager.using(db).filter(pk=entity_id).values(*fields).first()
