"""DjangoSaver: LangGraph's checkpoint saver on the tables of Django models, in SQL.

Storage follows langgraph-checkpoint-postgres: a checkpoint row holds the checkpoint as
JSON with its primitive channel values inline; other values are blobs keyed by (thread,
namespace, channel, version), written only for the channels in ``new_versions``; pending
writes are rows of their own. The tables are Django models (``checkpoints_app.models``)
made by migrations, on PostgreSQL or SQLite.

Every call is a constant number of statements, whatever the size of the thread: a read is
one statement that returns the checkpoints, the blobs they use (each once) and their
writes; ``put`` is one statement on PostgreSQL (one transaction of a few on SQLite).
``put_writes`` sends nothing: a task's writes are kept by the saver instance and go in
the statement of its next ``put`` (a step's writes with the checkpoint that follows the
step), or with :meth:`DjangoSaver.flush`, which whoever runs a graph calls at its end;
every read (and delete, copy, prune) of the instance sends them first. The hot
statements are SQL written for each vendor, because the ORM cannot express "the blobs
named by a JSON column" or a multi-table insert; the other calls (deletes, copies,
prunes) are SQL too, on the models' tables. The ORM is used for the table names and the
schema only: no statement goes through a QuerySet.

Connections: a call uses the calling thread's Django connection when that thread is the
main thread, when that connection is open already (a request thread that has read a
row: its request's end closes it) or inside ``transaction.atomic`` (so it joins the
caller's transaction). From any other thread (LangGraph's sync loop writes from a thread
pool; ``a*`` methods run in the event loop's executor) it borrows a connection from a
small process-wide pool, installs it as the thread's connection for the duration of the
call and takes it back afterwards, so no connection is ever left open in a short-lived
thread (under Django's own connection pool, the connection goes back to that pool after
each call). The pool is in ``checkpoints_app.connections``, the saver's cursors in
``core.cursors`` (what they take from Django's internals, and why);
:func:`close_pooled_connections` closes the pool's idle connections.

On PostgreSQL the hot statements are prepared from their second run on a connection
(``prepare=False`` turns that off, for poolers that cannot keep prepared statements).
The statements of a 1-step run are pinned by ``tests/checkpoints/test_statement_counts.py``.
"""

# ruff: noqa: S608 - statements are assembled from table names and placeholders only;
# values always travel as parameters.
from __future__ import annotations

import asyncio
import math
import random
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import INTERRUPT, RESUME

try:  # the channel of the marker LangGraph makes durable before an error handler runs
    from langgraph._internal._constants import ERROR_SOURCE_NODE
except ImportError:  # pragma: no cover - another LangGraph layout
    ERROR_SOURCE_NODE = "__error_source_node__"

from checkpoints_app import models
from checkpoints_app.connections import close_pooled_connections as close_pooled_connections
from checkpoints_app.connections import pooled_connection_count as pooled_connection_count
from checkpoints_app.connections import saver_connection
from core.cursors import run_statement, saver_cursor
from core.metadata import strip_nul

try:
    import psycopg
except ImportError:  # pragma: no cover - SQLite only
    psycopg = None

try:  # orjson comes with langsmith (langchain-core); the standard library will do.
    import orjson

    def _dumps(value: Any) -> str:
        return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()

    _loads = orjson.loads
except ImportError:  # pragma: no cover
    import json

    def _dumps(value: Any) -> str:
        return json.dumps(value, default=_json_default, separators=(",", ":"), allow_nan=False)

    _loads = json.loads


def _json_default(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# --- input checks -----------------------------------------------------------------


def _checked(value: Any, what: str, limit: int) -> str:
    """An id as a string, refused with a ValueError if the column cannot hold it."""
    if not isinstance(value, str):
        if value is None:
            raise ValueError(f"{what} is required")
        value = str(value)
    if len(value) > limit:
        raise ValueError(
            f"{what} is {len(value)} characters long; the checkpoint store allows {limit}"
        )
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL character, which cannot be stored")
    return value


def _thread_id(config: RunnableConfig) -> str:
    try:
        value = config["configurable"]["thread_id"]
    except (KeyError, TypeError):
        raise ValueError("config['configurable']['thread_id'] is required") from None
    return _checked(value, "thread_id", models.THREAD_ID_MAX)


def _namespace(value: Any) -> str:
    return _checked(value or "", "checkpoint_ns", models.CHECKPOINT_NS_MAX)


def _checkpoint_id(value: Any) -> str:
    return _checked(value, "checkpoint_id", models.CHECKPOINT_ID_MAX)


_INT64 = 2**63


def _inline(value: Any) -> bool:
    """Whether a channel value is stored in the checkpoint's JSON rather than as a blob.

    Only values that come back from JSON (and from PostgreSQL's jsonb) as the very same
    value of the very same type: no subclasses (an enum stays a blob), no NUL (jsonb
    refuses it), no float that jsonb would give back as an int or lose the sign of.
    """
    kind = type(value)
    if value is None or kind is bool:
        return True
    if kind is int:
        return -_INT64 <= value < _INT64
    if kind is str:
        if "\x00" in value:
            return False
        if value.isascii():
            return True
        try:
            value.encode()
        except UnicodeEncodeError:  # lone surrogates
            return False
        return True
    if kind is float:
        return (
            math.isfinite(value)
            and "e" not in repr(value)
            and not (value == 0 and math.copysign(1.0, value) < 0)
        )
    return False


def _bytes(value: Any) -> bytes | None:
    return value if value is None or type(value) is bytes else bytes(value)


def _version(value: Any) -> str:
    """A channel version as the text the blob table keys it by."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return _dumps(value)


# --- SQL ---------------------------------------------------------------------------

# The read statement returns three kinds of rows in one result:
#
#   kind  a              b                     c           d          e              blob  idx
#   0     checkpoint_id  parent_checkpoint_id  checkpoint  metadata   blob_versions  -     -
#   1     channel        version               type        -          -              blob  -
#   2     checkpoint_id  task_id               channel     type       task_path      blob  idx
#
# preceded by thread_id and checkpoint_ns. Blobs are looked up by primary key, once per
# distinct (thread, namespace, channel, version) the selected checkpoints use.
_SELECT = """
WITH c AS MATERIALIZED (
    SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint,
           metadata, blob_versions
    FROM {cp}
    WHERE {where}
    ORDER BY checkpoint_id DESC{limit}
),
v AS MATERIALIZED (
    SELECT {distinct}c.thread_id, c.checkpoint_ns, e.key AS channel, {version} AS version
    FROM c CROSS JOIN {versions} e
)
SELECT 0, c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id,
       {checkpoint_text}, {metadata_text}, {blob_versions_text}, {null_blob},
       CAST(NULL AS INTEGER)
FROM c
UNION ALL
SELECT 1, v.thread_id, v.checkpoint_ns, v.channel, v.version, b.type, NULL, NULL, b.blob, NULL
{blobs}
UNION ALL
SELECT 2, w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.channel, w.type,
       w.task_path, w.blob, w.idx
FROM c JOIN {wr} w
    ON w.thread_id = c.thread_id AND w.checkpoint_ns = c.checkpoint_ns
    AND w.checkpoint_id = c.checkpoint_id
"""

# PostgreSQL: a LATERAL lookup (LIMIT 1 keeps it one) so that the planner, which cannot
# tell how many versions a checkpoint has, never hashes the whole blob table instead.
_PG_BLOBS = """FROM v CROSS JOIN LATERAL (
    SELECT type, blob FROM {bl}
    WHERE thread_id = v.thread_id AND checkpoint_ns = v.checkpoint_ns
    AND channel = v.channel AND version = v.version
    LIMIT 1
) b"""
_SQLITE_BLOBS = """FROM v JOIN {bl} b
    ON b.thread_id = v.thread_id AND b.checkpoint_ns = v.checkpoint_ns
    AND b.channel = v.channel AND b.version = v.version"""

_CHECKPOINT_COLUMNS = (
    "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, blob_versions, "
    "metadata, run_id, created_at"
)
_BLOB_COLUMNS = "thread_id, checkpoint_ns, channel, version, type, blob"
_WRITE_COLUMNS = (
    "thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob"
)


class _SQL:
    """The saver's statements for one database vendor (PostgreSQL or SQLite)."""

    def __init__(self, connection: BaseDatabaseWrapper):
        vendor = connection.vendor
        if vendor not in ("postgresql", "sqlite"):
            raise NotImplementedError(f"DjangoSaver supports PostgreSQL and SQLite, not {vendor}")
        quote = connection.ops.quote_name
        self.postgres = pg = vendor == "postgresql"
        self.cp = cp = quote(models.Checkpoint._meta.db_table)
        self.bl = bl = quote(models.CheckpointBlob._meta.db_table)
        self.wr = wr = quote(models.CheckpointWrite._meta.db_table)
        self.json = "%s::jsonb" if pg else "%s"
        self.metadata = "metadata::text" if pg else "metadata"  # a column read as JSON text
        self.adapt_datetime = connection.ops.adapt_datetimefield_value
        self.select_parts = {
            "cp": cp,
            "bl": bl,
            "wr": wr,
            "version": "e.value" if pg else "CAST(e.value AS TEXT)",
            "versions": "jsonb_each_text(c.blob_versions)" if pg else "json_each(c.blob_versions)",
            "checkpoint_text": "c.checkpoint::text" if pg else "c.checkpoint",
            "metadata_text": "c.metadata::text" if pg else "c.metadata",
            "blob_versions_text": "c.blob_versions::text" if pg else "c.blob_versions",
            "null_blob": "CAST(NULL AS bytea)" if pg else "CAST(NULL AS BLOB)",
            "blobs": (_PG_BLOBS if pg else _SQLITE_BLOBS).format(bl=bl),
        }
        self._selects: dict[tuple, str] = {}
        self._puts: dict[tuple[int, int, int], str] = {}
        # The (channel, version) of the blobs a checkpoint uses, as rows:
        # FROM {cp} c CROSS JOIN {each_version} e.
        self.each_version = (
            "jsonb_each_text(c.blob_versions)" if pg else "json_each(c.blob_versions)"
        )
        self.each_version_value = "e.value" if pg else "CAST(e.value AS TEXT)"
        self.upsert_checkpoint = (
            f"INSERT INTO {cp} ({_CHECKPOINT_COLUMNS}) "
            f"VALUES (%s, %s, %s, %s, {self.json}, {self.json}, {self.json}, %s, %s) "
            "ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET "
            "checkpoint = EXCLUDED.checkpoint, blob_versions = EXCLUDED.blob_versions, "
            "metadata = EXCLUDED.metadata, run_id = EXCLUDED.run_id"
        )

    @cached_property
    def get_latest(self) -> str:
        return self.select("thread_id = %s AND checkpoint_ns = %s", True, False, limit_to=1)

    @cached_property
    def get_exact(self) -> str:
        return self.select(
            "thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s", True, False, limit_to=1
        )

    def select(self, where: str, limit: bool, many: bool, *, limit_to: int | None = None) -> str:
        """The read statement for a WHERE clause (built once, then the same string); with
        ``limit`` a LIMIT parameter, or ``limit_to`` rows."""
        key = (where, limit, many, limit_to)
        statement = self._selects.get(key)
        if statement is None:
            clause = f"\n    LIMIT {int(limit_to)}" if limit_to else "\n    LIMIT %s"
            statement = _SELECT.format(
                where=where,
                limit=clause if limit else "",
                distinct="DISTINCT " if many else "",
                **self.select_parts,
            )
            if len(self._selects) < 256:  # filters vary; keep the cache bounded
                self._selects[key] = statement
        return statement

    def insert_blobs(self, count: int) -> str:
        rows = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * count)
        return f"INSERT INTO {self.bl} ({_BLOB_COLUMNS}) VALUES {rows} ON CONFLICT DO NOTHING"

    def put(self, blob_count: int, insert_count: int = 0, upsert_count: int = 0) -> str:
        """Blobs, pending writes (inserted if absent, and upserted) and the checkpoint in
        one statement (PostgreSQL: data-modifying CTEs; the parameters in that order)."""
        key = (blob_count, insert_count, upsert_count)
        statement = self._puts.get(key)
        if statement is None:
            ctes = []
            if blob_count:
                ctes.append(f"new_blobs AS ({self.insert_blobs(blob_count)})")
            if insert_count:
                ctes.append(f"new_writes AS ({self.insert_writes(insert_count, False)})")
            if upsert_count:
                ctes.append(f"upserted_writes AS ({self.insert_writes(upsert_count, True)})")
            statement = self.upsert_checkpoint
            if ctes:
                statement = f"WITH {', '.join(ctes)} {statement}"
            if len(self._puts) < 256:
                self._puts[key] = statement
        return statement

    def write_rows(self, insert_count: int, upsert_count: int) -> str:
        """PostgreSQL: pending writes inserted if absent and upserted, in one statement
        (the inserts' parameters first)."""
        if not upsert_count:
            return self.insert_writes(insert_count, False)
        upsert = self.insert_writes(upsert_count, True)
        if not insert_count:
            return upsert
        return f"WITH new_writes AS ({self.insert_writes(insert_count, False)}) {upsert}"

    def insert_writes(self, count: int, upsert: bool) -> str:
        rows = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * count)
        conflict = (
            "DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob"
            if upsert
            else "DO NOTHING"
        )
        return (
            f"INSERT INTO {self.wr} ({_WRITE_COLUMNS}) VALUES {rows} "
            f"ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) {conflict}"
        )

    def metadata_filter(self, filter: dict[str, Any]) -> tuple[list[str], list[Any], bool]:
        """WHERE terms for "metadata contains filter", and whether Python must re-check.

        PostgreSQL: ``metadata @> filter``, served by the GIN index. SQLite: one
        ``json_each`` probe per key; nested (object/array) values are only type-checked
        in SQL and then compared in Python with the same containment rules.
        """
        if self.postgres:
            return ["metadata @> %s::jsonb"], [_dumps(strip_nul(filter))], False
        terms, params, recheck = [], [], False
        for key, value in filter.items():
            probe = "EXISTS (SELECT 1 FROM json_each(metadata) m WHERE m.key = %s AND {})"
            params.append(str(key))
            if value is None:
                terms.append(probe.format("m.type = 'null'"))
            elif value is True or value is False:
                terms.append(probe.format(f"m.type = '{'true' if value else 'false'}'"))
            elif isinstance(value, int | float):
                terms.append(probe.format("m.type IN ('integer', 'real') AND m.value = %s"))
                params.append(value)
            elif isinstance(value, str):
                terms.append(probe.format("m.type = 'text' AND m.value = %s"))
                params.append(value)
            else:
                kind = "object" if isinstance(value, dict) else "array"
                terms.append(probe.format(f"m.type = '{kind}'"))
                recheck = True
        return terms, params, recheck


_SQL_CACHE: dict[tuple[str, str], _SQL] = {}


def _contains(document: Any, query: Any) -> bool:
    """PostgreSQL's jsonb ``@>``: whether ``document`` contains ``query``."""
    if isinstance(query, dict):
        return isinstance(document, dict) and all(
            key in document and _contains(document[key], value) for key, value in query.items()
        )
    if isinstance(query, list):
        if not isinstance(document, list):
            return False
        return all(any(_contains(item, wanted) for item in document) for wanted in query)
    if isinstance(query, bool) or isinstance(document, bool):
        return query is document
    return document == query


# --- the saver ----------------------------------------------------------------------


@dataclass(slots=True)
class RawCheckpoint:
    """A stored checkpoint before decoding: what the admin shows value by value."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    checkpoint: dict[str, Any]  # channel_values holds the inline values only
    metadata: dict[str, Any]
    blobs: dict[str, tuple[str, bytes | None]] = field(default_factory=dict)
    # (task_id, channel, type, blob, task_path, idx), in writes_sort_key order
    writes: list[tuple[str, str, str, bytes, str, int]] = field(default_factory=list)


class DjangoSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer storing checkpoints in the Django models' tables:
    hand-written SQL, not the ORM, on the caller's Django connection or one lent by the
    saver's own pool (see the module docstring).

    ``DjangoSaver()`` uses the default database (``using=`` another alias); ``serde=``
    replaces LangGraph's JsonPlusSerializer. Usable from sync and async code.

    On PostgreSQL its hot statements are prepared, as PostgresSaver's are (from their
    second run on a connection); pass ``prepare=False`` behind a pooler that cannot keep
    prepared statements (PgBouncer before 1.21 in transaction mode).

    Pending writes are batched per step. ``put_writes`` checks and serializes a task's
    writes at once (bad input raises there) but keeps them in this instance; the next
    ``put`` (the checkpoint that ends the step) stores them in its own statement, and
    any read, copy, delete or prune of this instance stores them first, so what
    ``put_writes`` accepted is always visible to this saver. Writes no ``put`` follows
    (a run interrupted inside a node, a step whose other branch raised) wait for
    :meth:`flush` (:meth:`aflush`): **call it when a graph's run ends**, however it ends,
    before telling anyone else that it ended; nothing flushes on its own. The
    trade-off: if the process dies before the step's checkpoint (or the flush), the
    step's buffered writes are lost; the step was not checkpointed, so a resume runs it
    again from the last checkpoint, and each checkpointed step still ran exactly once.
    (An error handler's marker, which LangGraph makes durable before the handler runs,
    is stored at once.)
    """

    def __init__(
        self,
        *,
        using: str | None = None,
        serde: SerializerProtocol | None = None,
        prepare: bool = True,
    ):
        super().__init__(serde=serde)
        self.using = using or router.db_for_write(models.Checkpoint) or DEFAULT_DB_ALIAS
        self.prepare = prepare
        # Pending writes not sent yet: (thread, ns, checkpoint, task, idx) -> (upsert, row).
        # _pending_lock guards the dict (task threads add to it at once) and _writing, the
        # put_writes calls under way, which a put waits for (LangGraph submits a task's
        # writes before the checkpoint after it, to threads that may start them late);
        # _send_lock is held from taking writes out of the dict until they are stored,
        # so that sends keep their order and a read waits for writes on their way.
        self._pending: dict[tuple, tuple[bool, tuple]] = {}
        self._pending_lock = threading.Lock()
        self._written = threading.Condition(self._pending_lock)
        self._writing = 0
        self._send_lock = threading.Lock()

    # --- plumbing ---------------------------------------------------------------

    def _sql(self, connection: BaseDatabaseWrapper) -> _SQL:
        key = (connection.alias, connection.vendor)
        sql = _SQL_CACHE.get(key)
        if sql is None:
            sql = _SQL_CACHE[key] = _SQL(connection)
        return sql

    async def _arun(self, fn, /, *args, **kwargs):
        # Off the event loop, in the loop's executor; the thread borrows a pooled
        # connection for the call (see _connection), so none is left open there.
        return await asyncio.to_thread(fn, *args, **kwargs)

    # --- reading ----------------------------------------------------------------

    def _select(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
        latest_only: bool = False,
    ) -> list[RawCheckpoint]:
        where: list[str] = []
        params: list[Any] = []
        if config is not None:
            configurable = config.get("configurable") or {}
            where.append("thread_id = %s")
            params.append(_thread_id(config))
            namespace = configurable.get("checkpoint_ns")
            if latest_only or namespace is not None:
                where.append("checkpoint_ns = %s")
                params.append(_namespace(namespace))
            if checkpoint_id := configurable.get("checkpoint_id"):
                where.append("checkpoint_id = %s")
                params.append(_checkpoint_id(checkpoint_id))
        if before is not None and (before_id := get_checkpoint_id(before)):
            where.append("checkpoint_id < %s")
            params.append(_checkpoint_id(before_id))
        if limit is not None and limit <= 0:
            return []
        self.flush()
        with saver_connection(self.using) as connection:
            sql = self._sql(connection)
            recheck = False
            if filter:
                terms, values, recheck = sql.metadata_filter(filter)
                where.extend(terms)
                params.extend(values)
            if recheck:
                where, params = self._prefilter(sql, where, params, filter, limit)
                limit = None
            if limit is not None:
                params.append(limit)
            statement = sql.select(
                " AND ".join(where) or "1 = 1", limit is not None, not latest_only
            )
            rows = run_statement(connection, statement, params, self.prepare, fetch=True)
        return self._assemble(rows)

    def _prefilter(self, sql: _SQL, where, params, filter, limit):
        """SQLite with nested filter values: pick the matching rows in Python first."""
        statement = (
            f"SELECT id, metadata FROM {sql.cp} WHERE {' AND '.join(where)} "
            "ORDER BY checkpoint_id DESC"
        )
        with saver_cursor(connections[self.using]) as cursor:
            cursor.execute(statement, params)
            ids = [pk for pk, metadata in cursor.fetchall() if _contains(_loads(metadata), filter)]
        if limit is not None:
            ids = ids[:limit]
        if not ids:
            return ["1 = 0"], []
        return [f"id IN ({', '.join(['%s'] * len(ids))})"], ids

    @staticmethod
    def _assemble(rows: list[tuple]) -> list[RawCheckpoint]:
        heads: list[RawCheckpoint] = []
        blobs: dict[tuple[str, str, str, str], tuple[str, bytes | None]] = {}
        writes: dict[tuple[str, str, str], list] = defaultdict(list)
        used: list[dict[str, str]] = []
        for kind, thread_id, ns, a, b, c, d, e, blob, idx in rows:
            if kind == 0:
                heads.append(RawCheckpoint(thread_id, ns, a, b, _loads(c), _loads(d)))
                used.append(_loads(e))
            elif kind == 1:
                blobs[(thread_id, ns, a, b)] = (c, blob)
            else:
                writes[(thread_id, ns, a)].append((b, c, d, _bytes(blob), e or "", idx))
        for raw, blob_versions in zip(heads, used, strict=True):
            for channel, version in blob_versions.items():
                found = blobs.get((raw.thread_id, raw.checkpoint_ns, channel, version))
                if found is not None and found[0] != "empty":
                    raw.blobs[channel] = (found[0], _bytes(found[1]))
            own = writes.get((raw.thread_id, raw.checkpoint_ns, raw.checkpoint_id))
            if own:
                own.sort(key=lambda w: writes_sort_key(w[4], w[0], w[5]))
                raw.writes = own
        if len(heads) > 1:
            heads.sort(key=lambda raw: raw.checkpoint_id, reverse=True)
        return heads

    def _tuple(self, raw: RawCheckpoint) -> CheckpointTuple:
        loads = self.serde.loads_typed
        checkpoint = raw.checkpoint
        values = checkpoint.get("channel_values")
        if values is None:
            values = checkpoint["channel_values"] = {}
        for channel, typed in raw.blobs.items():
            values[channel] = loads(typed)
        thread_id, ns = raw.thread_id, raw.checkpoint_ns
        parent = raw.parent_checkpoint_id
        return CheckpointTuple(
            {
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": ns,
                    "checkpoint_id": raw.checkpoint_id,
                }
            },
            checkpoint,
            raw.metadata,
            {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": parent}}
            if parent
            else None,
            [
                (task_id, channel, loads((kind, blob)))
                for task_id, channel, kind, blob, _, _ in raw.writes
            ],
        )

    def get_raw(self, config: RunnableConfig) -> RawCheckpoint | None:
        """The stored checkpoint ``get_tuple`` would return, not decoded."""
        thread_id = _thread_id(config)
        configurable = config["configurable"]
        ns = _namespace(configurable.get("checkpoint_ns"))
        checkpoint_id = configurable.get("checkpoint_id")
        self.flush()
        with saver_connection(self.using) as connection:
            sql = self._sql(connection)
            if checkpoint_id:
                statement = sql.get_exact
                params = (thread_id, ns, _checkpoint_id(checkpoint_id))
            else:
                statement, params = sql.get_latest, (thread_id, ns)
            rows = run_statement(connection, statement, params, self.prepare, fetch=True)
        found = self._assemble(rows)
        return found[0] if found else None

    def decode(self, typed: tuple[str, bytes | None]) -> Any:
        """A blob's value, through this saver's serializer."""
        return self.serde.loads_typed(typed)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        raw = self.get_raw(config)
        return None if raw is None else self._tuple(raw)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        for raw in self._select(config, filter, before, limit):
            yield self._tuple(raw)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._arun(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        def fetch() -> list[CheckpointTuple]:
            return [self._tuple(raw) for raw in self._select(config, filter, before, limit)]

        for item in await self._arun(fetch):
            yield item

    # --- writing ----------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint, with the pending writes this saver keeps (those of the
        step it ends, and any others), in one statement on PostgreSQL."""
        configurable = config["configurable"]
        thread_id = _thread_id(config)
        ns = _namespace(configurable.get("checkpoint_ns"))
        checkpoint_id = _checkpoint_id(checkpoint["id"])
        parent_id = configurable.get("checkpoint_id")
        if parent_id is not None:
            parent_id = _checkpoint_id(parent_id)

        values = checkpoint.get("channel_values") or {}
        versions = checkpoint.get("channel_versions") or {}
        inline = {}
        blob_versions = {}  # channel -> version of the blob holding its value
        for channel, value in values.items():
            if _inline(value):
                inline[channel] = value
            elif channel in versions:
                blob_versions[channel] = _version(versions[channel])
        blob_params: list[Any] = []
        dumps = self.serde.dumps_typed
        for channel, version in new_versions.items():
            if channel in blob_versions:
                _checked(channel, "channel name", models.CHANNEL_MAX)
                version = _version(version)
                blob_versions[channel] = version
                kind, blob = dumps(values[channel])
                blob_params += (thread_id, ns, channel, version, kind, blob)
        stored = {key: value for key, value in checkpoint.items() if key != "channel_values"}
        stored["channel_values"] = inline
        try:
            checkpoint_json = _dumps(stored)
        except TypeError as exc:
            raise ValueError(f"checkpoint cannot be stored as JSON: {exc}") from None
        metadata_json, run_id = _metadata(get_serializable_checkpoint_metadata(config, metadata))

        # Without pending writes, no lock: nothing to keep in order with a flush.
        locked = bool(self._pending or self._writing)
        if locked:
            self._send_lock.acquire()
        taken: dict[tuple, tuple[bool, tuple]] = {}
        try:
            taken = self._take(wait=True) if locked else {}
            with saver_connection(self.using) as connection:
                sql = self._sql(connection)
                row = (
                    thread_id,
                    ns,
                    checkpoint_id,
                    parent_id,
                    checkpoint_json,
                    _dumps(blob_versions),
                    metadata_json,
                    run_id,
                    sql.adapt_datetime(_now()),
                )
                blob_count = len(blob_params) // 6
                chunks = _write_chunks(taken)
                last = chunks.pop() if chunks else ([], [])
                if sql.postgres:
                    with _write(connection, atomic=False):
                        for inserts, upserts in chunks:  # past one statement's share
                            self._send_writes(connection, sql, inserts, upserts)
                        inserts, upserts = last
                        params = [*blob_params]
                        for write in (*inserts, *upserts):
                            params += write
                        params += row
                        # One statement: atomic by itself, or part of the caller's
                        # transaction.
                        statement = sql.put(blob_count, len(inserts), len(upserts))
                        run_statement(connection, statement, params, self.prepare)
                elif not blob_count and not taken:
                    with _write(connection, atomic=False):
                        run_statement(connection, sql.upsert_checkpoint, row, self.prepare)
                else:
                    with _write(connection):
                        if blob_count:
                            run_statement(
                                connection, sql.insert_blobs(blob_count), blob_params, self.prepare
                            )
                        for inserts, upserts in (*chunks, last):
                            self._send_writes(connection, sql, inserts, upserts)
                        run_statement(connection, sql.upsert_checkpoint, row, self.prepare)
        except BaseException:
            if taken:
                self._restore(taken)
            raise
        finally:
            if locked:
                self._send_lock.release()
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint_id,
            }
        }

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Check, serialize and keep a task's writes; the next ``put`` (or a read, or
        :meth:`flush`) stores them. Writes to LangGraph's special channels (errors,
        interrupts, resumes) replace the task's earlier ones; others are kept only where
        the task has none at that index, as each ``put_writes`` stored them before."""
        if self._keep_writes(config, writes, task_id, task_path):
            self.flush()

    def _keep_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> bool:
        """Add writes to the pending ones; whether they must be stored at once."""
        if not writes:
            return False
        with self._pending_lock:
            self._writing += 1
        try:
            keys, rows, upsert, urgent = self._write_rows(config, writes, task_id, task_path)
            with self._pending_lock:
                pending = self._pending
                for key, row in zip(keys, rows, strict=True):
                    _merge(pending, key, upsert, row)
            return urgent
        finally:
            with self._pending_lock:
                self._writing -= 1
                if not self._writing:
                    self._written.notify_all()

    def _write_rows(self, config, writes, task_id, task_path):
        """A put_writes call checked and serialized: the rows' keys, the rows, whether
        they are upserts, whether one is an error handler's marker."""
        configurable = config["configurable"]
        thread_id = _thread_id(config)
        ns = _namespace(configurable.get("checkpoint_ns"))
        checkpoint_id = _checkpoint_id(configurable.get("checkpoint_id"))
        task_id = _checked(task_id, "task_id", models.TASK_ID_MAX)
        upsert = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        # One row per (task, idx): the last one wins an upsert, the first an insert.
        rows: dict[int, tuple] = {}
        dumps = self.serde.dumps_typed
        path = task_path or ""
        urgent = False
        for position, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, position)
            if not upsert and idx in rows:
                continue
            _checked(channel, "channel name", models.CHANNEL_MAX)
            urgent = urgent or channel == ERROR_SOURCE_NODE
            kind, blob = dumps(value)
            rows[idx] = (thread_id, ns, checkpoint_id, task_id, path, idx, channel, kind, blob)
        keys = [(thread_id, ns, checkpoint_id, task_id, idx) for idx in rows]
        return keys, list(rows.values()), upsert, urgent

    def flush(self) -> None:
        """Store the pending writes this saver keeps (one statement on PostgreSQL, up to
        1,000 writes a statement), and wait for those another thread is storing. Call it
        when a graph's run ends (success, error, interrupt, cancel): the writes of a step
        that no checkpoint followed are stored only then. If it raises, the writes stay
        pending."""
        if not self._pending and not self._send_lock.locked():
            return
        with self._send_lock:
            taken = self._take()
            if not taken:
                return
            try:
                with saver_connection(self.using) as connection:
                    sql = self._sql(connection)
                    chunks = _write_chunks(taken)
                    atomic = not sql.postgres and (
                        len(chunks) > 1 or all(chunks[0])  # SQLite: more than one statement
                    )
                    with _write(connection, atomic=atomic):
                        for inserts, upserts in chunks:
                            self._send_writes(connection, sql, inserts, upserts)
            except BaseException:
                self._restore(taken)
                raise

    async def aflush(self) -> None:
        await self._arun(self.flush)

    def pending_write_count(self) -> int:
        """How many writes this saver keeps that are not stored yet."""
        with self._pending_lock:
            return len(self._pending)

    def _take(self, wait: bool = False) -> dict[tuple, tuple[bool, tuple]]:
        """The pending writes, out of the dict; with ``wait``, once the put_writes calls
        under way have added theirs."""
        with self._pending_lock:
            if wait:
                self._written.wait_for(lambda: not self._writing, timeout=5)
            taken, self._pending = self._pending, {}
        return taken

    def _restore(self, taken: dict[tuple, tuple[bool, tuple]]) -> None:
        """Writes that could not be stored back into the pending ones, before those
        added since."""
        with self._pending_lock:
            newer, self._pending = self._pending, dict(taken)
            for key, (upsert, row) in newer.items():
                _merge(self._pending, key, upsert, row)

    def _send_writes(self, connection, sql: _SQL, inserts: list, upserts: list) -> None:
        """Pending writes: on PostgreSQL one statement; on SQLite one per kind."""
        if sql.postgres:
            params = [value for write in (*inserts, *upserts) for value in write]
            statement = sql.write_rows(len(inserts), len(upserts))
            run_statement(connection, statement, params, self.prepare)
            return
        for rows, upsert in ((inserts, False), (upserts, True)):
            if rows:
                params = [value for write in rows for value in write]
                statement = sql.insert_writes(len(rows), upsert)
                run_statement(connection, statement, params, self.prepare)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._arun(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        # No I/O unless the writes must be stored at once: no trip to a thread.
        if self._keep_writes(config, writes, task_id, task_path):
            await self.aflush()

    # --- deleting, copying, pruning ---------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        thread_id = _checked(thread_id, "thread_id", models.THREAD_ID_MAX)
        self._delete_threads([thread_id])

    def _delete_threads(self, thread_ids: list[str]) -> None:
        if not thread_ids:
            return
        marks = ", ".join(["%s"] * len(thread_ids))
        self.flush()  # this saver's pending writes first
        with saver_connection(self.using) as connection:
            sql = self._sql(connection)
            with _write(connection), saver_cursor(connection) as cursor:
                for table in (sql.wr, sql.bl, sql.cp):
                    cursor.execute(f"DELETE FROM {table} WHERE thread_id IN ({marks})", thread_ids)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        wanted = {str(run_id) for run_id in run_ids}
        if not wanted:
            return
        columns = sorted({run_id[: models.RUN_ID_MAX] for run_id in wanted})
        marks = ", ".join(["%s"] * len(columns))
        self.flush()  # this saver's pending writes first
        with saver_connection(self.using) as connection:
            sql = self._sql(connection)
            with _write(connection):
                with saver_cursor(connection) as cursor:
                    cursor.execute(
                        f"SELECT id, thread_id, checkpoint_ns, checkpoint_id, {sql.metadata} "
                        f"FROM {sql.cp} WHERE run_id IN ({marks})",
                        columns,
                    )
                    found = cursor.fetchall()
                doomed = [
                    (pk, thread_id, ns, checkpoint_id)
                    for pk, thread_id, ns, checkpoint_id, metadata in found
                    if str(_loads(metadata).get("run_id")) in wanted
                ]
                self._delete_checkpoints(connection, sql, doomed)

    def _delete_checkpoints(self, connection, sql: _SQL, doomed: list[tuple]) -> int:
        """Delete checkpoints (pk, thread_id, ns, checkpoint_id), their writes, the blobs
        no remaining checkpoint uses, and the parent links to them. In the caller's
        transaction."""
        groups: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
        for pk, thread_id, ns, checkpoint_id in doomed:
            groups[(thread_id, ns)].append((pk, checkpoint_id))
        with saver_cursor(connection) as cursor:
            for (thread_id, ns), items in groups.items():
                for start in range(0, len(items), 500):
                    chunk = items[start : start + 500]
                    pks = [pk for pk, _ in chunk]
                    ids = [checkpoint_id for _, checkpoint_id in chunk]
                    marks = ", ".join(["%s"] * len(chunk))
                    cursor.execute(
                        f"SELECT DISTINCT e.key, {sql.each_version_value} "
                        f"FROM {sql.cp} c CROSS JOIN {sql.each_version} e WHERE c.id IN ({marks})",
                        pks,
                    )
                    freed = set(cursor.fetchall())
                    cursor.execute(f"DELETE FROM {sql.cp} WHERE id IN ({marks})", pks)
                    cursor.execute(
                        f"DELETE FROM {sql.wr} WHERE thread_id = %s AND checkpoint_ns = %s "
                        f"AND checkpoint_id IN ({marks})",
                        [thread_id, ns, *ids],
                    )
                    cursor.execute(
                        f"UPDATE {sql.cp} SET parent_checkpoint_id = NULL WHERE thread_id = %s "
                        f"AND checkpoint_ns = %s AND parent_checkpoint_id IN ({marks})",
                        [thread_id, ns, *ids],
                    )
                    if not freed:
                        continue
                    cursor.execute(
                        f"SELECT DISTINCT e.key, {sql.each_version_value} "
                        f"FROM {sql.cp} c CROSS JOIN {sql.each_version} e "
                        "WHERE c.thread_id = %s AND c.checkpoint_ns = %s",
                        [thread_id, ns],
                    )
                    garbage: dict[str, list[str]] = defaultdict(list)
                    for channel, version in freed - set(cursor.fetchall()):
                        garbage[channel].append(version)
                    for channel, versions in garbage.items():
                        marks = ", ".join(["%s"] * len(versions))
                        cursor.execute(
                            f"DELETE FROM {sql.bl} WHERE thread_id = %s AND checkpoint_ns = %s "
                            f"AND channel = %s AND version IN ({marks})",
                            [thread_id, ns, channel, *versions],
                        )
        return len(doomed)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.copy_history(source_thread_id, target_thread_id)

    def copy_history(
        self, source_thread_id: str, target_thread_id: str, until: str | None = None
    ) -> int:
        """Copy a thread's checkpoints (those up to ``until`` if given), their writes and
        the blobs they use to another thread; returns the number of checkpoints copied.
        Rows the target already has are kept."""
        source = _checked(source_thread_id, "source thread_id", models.THREAD_ID_MAX)
        target = _checked(target_thread_id, "target thread_id", models.THREAD_ID_MAX)
        bound = cbound = ""
        bound_params = []
        if until is not None:
            bound, cbound = " AND checkpoint_id <= %s", " AND c.checkpoint_id <= %s"
            bound_params = [_checkpoint_id(until)]
        self.flush()  # this saver's pending writes first
        with saver_connection(self.using) as connection:
            sql = self._sql(connection)
            with _write(connection), saver_cursor(connection) as cursor:
                cursor.execute(
                    f"INSERT INTO {sql.bl} ({_BLOB_COLUMNS}) "
                    f"SELECT %s, b.checkpoint_ns, b.channel, b.version, b.type, b.blob "
                    f"FROM {sql.bl} b WHERE b.thread_id = %s AND EXISTS ("
                    f"SELECT 1 FROM {sql.cp} c CROSS JOIN {sql.each_version} e "
                    f"WHERE c.thread_id = %s AND c.checkpoint_ns = b.checkpoint_ns{cbound} "
                    f"AND e.key = b.channel AND {sql.each_version_value} = b.version) "
                    "ON CONFLICT DO NOTHING",
                    [target, source, source, *bound_params],
                )
                cursor.execute(
                    f"INSERT INTO {sql.wr} ({_WRITE_COLUMNS}) "
                    "SELECT %s, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, "
                    f"type, blob FROM {sql.wr} WHERE thread_id = %s{bound} ON CONFLICT DO NOTHING",
                    [target, source, *bound_params],
                )
                cursor.execute(
                    f"INSERT INTO {sql.cp} ({_CHECKPOINT_COLUMNS}) "
                    "SELECT %s, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, "
                    "blob_versions, metadata, run_id, created_at "
                    f"FROM {sql.cp} WHERE thread_id = %s{bound} "
                    "ON CONFLICT DO NOTHING",
                    [target, source, *bound_params],
                )
                return cursor.rowcount

    def discard_resumes(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> None:
        """Take back the answers to a checkpoint's interrupts: its resume writes and what
        the resumed tasks wrote after them (their interrupts stay), so that the checkpoint
        waits for a human again, as it did when it was made."""
        thread_id = _checked(thread_id, "thread_id", models.THREAD_ID_MAX)
        ns = _namespace(checkpoint_ns)
        checkpoint_id = _checkpoint_id(checkpoint_id)
        self.flush()  # this saver's pending writes first
        with saver_connection(self.using) as connection:
            sql = self._sql(connection)
            with _write(connection, atomic=False), saver_cursor(connection) as cursor:
                cursor.execute(
                    f"DELETE FROM {sql.wr} WHERE thread_id = %s AND checkpoint_ns = %s "
                    "AND checkpoint_id = %s AND channel <> %s AND task_id IN ("
                    f"SELECT task_id FROM {sql.wr} WHERE thread_id = %s AND checkpoint_ns = %s "
                    "AND checkpoint_id = %s AND channel = %s)",
                    [thread_id, ns, checkpoint_id, INTERRUPT, thread_id, ns, checkpoint_id, RESUME],
                )

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be a sequence of thread ids, not a str")
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'")
        ids = [_checked(t, "thread_id", models.THREAD_ID_MAX) for t in thread_ids]
        if not ids:
            return
        if strategy == "delete":
            self._delete_threads(ids)
            return
        refused = self.delta_threads(ids)
        if refused:
            raise NotImplementedError(
                "keep_latest cannot prune threads that use a DeltaChannel (their latest "
                f"value is rebuilt from older checkpoints): {', '.join(refused)}"
            )
        for thread_id in ids:
            self.prune_thread(thread_id, keep_last=1)

    def delta_threads(self, thread_ids: Sequence[str]) -> list[str]:
        """The threads among ``thread_ids`` whose checkpoints use a DeltaChannel."""
        if not thread_ids:
            return []
        marks = ", ".join(["%s"] * len(thread_ids))
        self.flush()  # this saver's pending writes first
        with saver_connection(self.using) as connection:
            sql = self._sql(connection)
            has_key = (
                "(metadata ? 'counters_since_delta_snapshot' "
                "OR metadata ? 'delta_writes_versioned')"
                if sql.postgres
                else "(json_type(metadata, '$.counters_since_delta_snapshot') IS NOT NULL "
                "OR json_type(metadata, '$.delta_writes_versioned') IS NOT NULL)"
            )
            with saver_cursor(connection) as cursor:
                cursor.execute(
                    f"SELECT DISTINCT thread_id FROM {sql.cp} "
                    f"WHERE thread_id IN ({marks}) AND {has_key}",
                    list(thread_ids),
                )
                return sorted(row[0] for row in cursor.fetchall())

    def prune_thread(
        self,
        thread_id: str,
        *,
        keep_last: int = 1,
        older_than=None,
        dry_run: bool = False,
    ) -> list[tuple[str, str]]:
        """Delete a thread's checkpoints beyond the newest ``keep_last`` of each namespace
        (0: no limit) and, if ``older_than`` (a datetime) is given, those created before
        it; the newest checkpoint of each namespace is always kept. A subgraph call's
        namespace (``node:task_id``) goes whole with the root checkpoint the call started
        from, as in PostgresSaver (a ``checkpointer=True`` subgraph's, without a task id,
        keeps its newest). One transaction; returns the (namespace, checkpoint_id) deleted
        (or that would be, ``dry_run``)."""
        thread_id = _checked(thread_id, "thread_id", models.THREAD_ID_MAX)
        self.flush()  # this saver's pending writes first
        with saver_connection(self.using) as connection:
            sql = self._sql(connection)
            with _write(connection):
                with saver_cursor(connection) as cursor:
                    cursor.execute(
                        f"SELECT id, checkpoint_ns, checkpoint_id, created_at, "
                        f"CASE WHEN checkpoint_ns = '' THEN NULL ELSE {sql.metadata} END "
                        f"FROM {sql.cp} WHERE thread_id = %s "
                        "ORDER BY checkpoint_ns, checkpoint_id DESC",
                        [thread_id],
                    )
                    rows = cursor.fetchall()
                converter = connection.ops.convert_datetimefield_value if not sql.postgres else None
                doomed: dict[int, tuple] = {}
                call_roots: dict[str, str | None] = {}
                position = 0
                previous_ns = None
                for pk, ns, checkpoint_id, created_at, metadata in rows:
                    if metadata is not None and ":" in ns and ns not in call_roots:
                        parents = _loads(metadata).get("parents")
                        call_roots[ns] = parents.get("") if isinstance(parents, dict) else None
                    position = position + 1 if ns == previous_ns else 1
                    previous_ns = ns
                    if position == 1:
                        continue  # the namespace's latest: never deleted on its own
                    too_many = keep_last > 0 and position > keep_last
                    too_old = False
                    if older_than is not None:
                        if converter is not None:
                            created_at = converter(created_at, None, connection)
                        too_old = created_at < older_than
                    if too_many or too_old:
                        doomed[pk] = (pk, thread_id, ns, checkpoint_id)
                gone_roots = {item[3] for item in doomed.values() if item[2] == ""}
                ended_calls = {ns for ns, root in call_roots.items() if root in gone_roots}
                for pk, ns, checkpoint_id, _, _ in rows:
                    if ns in ended_calls:
                        doomed[pk] = (pk, thread_id, ns, checkpoint_id)
                if doomed and not dry_run:
                    self._delete_checkpoints(connection, sql, list(doomed.values()))
        return [(ns, checkpoint_id) for _, _, ns, checkpoint_id in doomed.values()]

    async def adelete_thread(self, thread_id: str) -> None:
        await self._arun(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._arun(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._arun(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._arun(self.prune, thread_ids, strategy=strategy)

    # --- versions -----------------------------------------------------------------

    def get_next_version(self, current: str | int | None, channel: None = None) -> str:
        """``<counter>.<random>``: increasing, and unique across branches of a thread, so
        that replaying from an old checkpoint never reuses a version (and its blob)."""
        if current is None:
            counter = 0
        elif isinstance(current, int):
            counter = current
        else:
            counter = int(str(current).split(".")[0])
        return f"{counter + 1:032}.{random.random():016}"  # noqa: S311 - not a secret


# Pending writes a statement carries at most (9 parameters each; PostgreSQL takes 65,535).
_WRITES_PER_STATEMENT = 1000


def _merge(pending: dict[tuple, tuple[bool, tuple]], key: tuple, upsert: bool, row: tuple) -> None:
    """Add a write to the pending ones as if each were stored in turn: an upsert replaces
    what is there (the task path stays the first one's, as an upsert leaves the stored
    row's), an insert is kept only where nothing is. So a key is pending once, as one
    insert-if-absent or one upsert, and a statement never touches a row twice."""
    found = pending.get(key)
    if found is None:
        pending[key] = (upsert, row)
    elif upsert:
        first = found[1]
        pending[key] = (True, row if row[4] == first[4] else (*row[:4], first[4], *row[5:]))


def _write_chunks(taken: dict[tuple, tuple[bool, tuple]]) -> list[tuple[list, list]]:
    """Pending writes as (inserts, upserts) per statement."""
    chunks: list[tuple[list, list]] = []
    items = list(taken.values())
    for start in range(0, len(items), _WRITES_PER_STATEMENT):
        inserts: list[tuple] = []
        upserts: list[tuple] = []
        for upsert, row in items[start : start + _WRITES_PER_STATEMENT]:
            (upserts if upsert else inserts).append(row)
        chunks.append((inserts, upserts))
    return chunks


# SQLite has one writer at a time; taking turns in the process spares our connections
# the busy handler's sleeps when LangGraph's threads write at once.
_SQLITE_WRITERS: dict[str, threading.RLock] = defaultdict(threading.RLock)


@contextmanager
def _write(connection: BaseDatabaseWrapper, atomic: bool = True) -> Iterator[None]:
    """Around the statements of a write: a transaction (or the caller's, without a
    savepoint: an error dooms the caller's block) when ``atomic``."""
    lock = None
    if connection.vendor == "sqlite" and not connection.in_atomic_block:
        lock = _SQLITE_WRITERS[connection.alias]
        lock.acquire()
    try:
        if atomic:
            with transaction.atomic(using=connection.alias, savepoint=False):
                yield
        else:
            yield
    finally:
        if lock is not None:
            lock.release()


def _now():
    from core.time import now

    return now()


def _metadata(metadata: dict[str, Any]) -> tuple[str, str]:
    """Metadata as JSON safe for any backend (no NUL), and its run id for the column."""
    try:
        text = _dumps(metadata)
    except TypeError as exc:
        raise ValueError(f"checkpoint metadata cannot be stored as JSON: {exc}") from None
    if "\\u0000" in text:
        metadata = strip_nul(metadata)
        text = _dumps(metadata)
    run_id = metadata.get("run_id")
    return text, "" if run_id is None else str(run_id)[: models.RUN_ID_MAX]
