"""Session use cases, and the aggregate of a session's threads."""

import uuid
from functools import cache

from django.db import NotSupportedError, connections, transaction

from core import state, write_batch
from core.metadata import normalize_metadata
from core.statuses import ACTIVE_THREAD_STATUSES
from core.time import now
from sessions_app.models import Session


def create_session(owner, title: str = "", metadata: dict | None = None, actor=None) -> Session:
    return state.create_state(
        "session",
        {"owner": owner, "title": title, "metadata": metadata or {}},
        actor=actor or owner,
    )


def _merged_counts(vendor: str, statuses: tuple[str, ...]) -> str:
    """SQL for ``threads_by_status`` with each of ``statuses`` moved by a delta (two
    parameters each: the key and the delta; never below 0, a key at 0 removed)."""
    column = '"threads_by_status"'
    if vendor == "postgresql":
        count = f"NULLIF(GREATEST(COALESCE(({column} ->> %s)::integer, 0) + %s, 0), 0)"
        pairs = ", ".join([f"%s::text, {count}"] * len(statuses))
        return f"jsonb_strip_nulls({column} || jsonb_build_object({pairs}))"
    if vendor == "sqlite":
        # JSON merge patch (RFC 7396): a null removes its key.
        count = f"NULLIF(MAX(COALESCE(CAST(json_extract({column}, %s) AS integer), 0) + %s, 0), 0)"
        pairs = ", ".join([f"%s, {count}"] * len(statuses))
        return f"json_patch({column}, json_object({pairs}))"
    raise NotSupportedError("the session aggregate needs PostgreSQL or SQLite")


@cache
def _counts_sql(vendor: str, statuses: tuple[str, ...], total: bool, active: bool, at: bool):
    """The aggregate's UPDATE for one shape of change, built once: the model's table and
    column names and placeholders only (the values are bound). Parameters: the total
    and active deltas (when not 0), each status's key and delta, the moment (twice),
    then the session's id."""
    greatest = "GREATEST" if vendor == "postgresql" else "MAX"  # SQLite's MAX(a, b)
    sets = []
    if total:
        sets.append(f'"thread_count" = {greatest}("thread_count" + %s, 0)')
    if active:
        sets.append(f'"active_thread_count" = {greatest}("active_thread_count" + %s, 0)')
    if statuses:
        sets.append(f'"threads_by_status" = {_merged_counts(vendor, statuses)}')
    if at:
        # GREATEST ignores a null on PostgreSQL, MAX is null on SQLite: a first activity.
        latest = f'COALESCE({greatest}("last_activity_at", %s), %s)'
        sets.append(f'"last_activity_at" = {latest}')
    table = Session._meta.db_table
    return f'UPDATE "{table}" SET {", ".join(sets)} WHERE "id" = %s'  # noqa: S608


def add_thread_counts(session_id, statuses: dict[str, int], at=None, using: str = "default"):
    """Count threads in (or out of) the session's aggregate with one UPDATE: ``statuses``
    maps a thread status to the threads gained (or lost, negative) in it; the thread
    count, the active count and ``threads_by_status`` (statuses with no thread left are
    removed) follow, and ``last_activity_at`` becomes ``at`` if that is later.

    Called by the thread receiver on the state bus, in the transaction of the thread's
    change, so it writes the row directly rather than through the state manager (whose
    announcement would re-enter the bus): the aggregate is derived bookkeeping, it bumps
    no version (a client's ``expected_version`` never conflicts with a thread's progress)
    and records no StateEvent (the thread's own change is the event). Counters added in
    the database, not read and written back: concurrent changes of threads of one session
    queue on the row's lock and each adds to what the one before committed. Threads
    before sessions, as everywhere (see history_app.recording), so the two never deadlock.
    A count never goes below 0.

    The statement is written out (``_counts_sql``) rather than built by the ORM: it runs
    twice per run, and compiling its JSON expressions cost about 1 ms each time.
    """
    statuses = {status: n for status, n in statuses.items() if n}
    total = sum(statuses.values())
    active = sum(n for status, n in statuses.items() if status in ACTIVE_THREAD_STATUSES)
    if not (statuses or at is not None):
        return
    connection = connections[using]
    vendor = connection.vendor
    params: list = [delta for delta in (total, active) if delta]
    for status, n in statuses.items():
        name = str(status)  # a status enum's value
        params += [name, name if vendor == "postgresql" else f'$."{name}"', n]
    if at is not None:
        moment = Session._meta.get_field("last_activity_at").get_db_prep_value(at, connection)
        params += [moment, moment]
    params.append(Session._meta.pk.get_db_prep_value(session_id, connection))
    sql = _counts_sql(vendor, tuple(statuses), bool(total), bool(active), at is not None)
    # Sent with the thread's change where its writes are one statement (core.write_batch).
    queued = f"{sql} AND {write_batch.GUARD}"
    write_batch.write(connection, sql, queued, params, Session._meta.db_table, updates=True)


def close_session(session_id, actor=None, expected_version: int | None = None) -> Session:
    return state.update_state(
        "session",
        session_id,
        {"status": Session.Status.CLOSED, "closed_at": now()},
        expected_version=expected_version,
        actor=actor,
    )


def visible_sessions(user):
    """``user``'s sessions (staff: every session)."""
    if user.is_active and user.is_staff:
        return Session.objects.all()
    return Session.objects.filter(owner=user)


class SessionNotFound(LookupError):
    """No session of that id that the caller may see."""


def session_for_new_thread(user, session_id=None) -> Session:
    """The session a new thread of ``user``'s joins: the one ``session_id`` names (one
    ``user`` may see; SessionNotFound otherwise), or without it a new session of theirs
    (``created_by`` "api": LangGraph clients name no session)."""
    if not session_id:
        return state.create_state(
            "session",
            {"owner": user, "title": "", "metadata": {"created_by": "api"}},
            actor=user,
        )
    try:
        pk = uuid.UUID(str(session_id))
    except ValueError:
        raise SessionNotFound(f"Session {session_id} not found") from None
    session = visible_sessions(user).filter(pk=pk).first()
    if session is None:
        raise SessionNotFound(f"Session {session_id} not found")
    return session


def patch_session(session_id, changes: dict, expected_version=None, actor=None) -> Session:
    """Apply ``changes`` (title, metadata, context), the metadata merged into the
    session's, under the row's lock: without ``expected_version`` concurrent patches
    queue on the lock and all apply (StateConflict when it is stale)."""
    changes = dict(changes)
    if "metadata" in changes:
        changes["metadata"] = normalize_metadata(changes["metadata"])
    with transaction.atomic():
        locked = Session.objects.select_for_update().filter(pk=session_id).first()
        if locked is None:
            raise SessionNotFound(f"Session {session_id} not found")
        if "metadata" in changes:
            changes["metadata"] = locked.metadata | changes["metadata"]
        return state.update_state(
            "session", locked.pk, changes, expected_version=expected_version, actor=actor
        )
