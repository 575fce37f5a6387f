"""The writes of one state change sent as one statement (PostgreSQL).

A change through ``core.state`` is a handful of writes: the entity's INSERT or its
compare-and-set UPDATE, then what the receivers derive from it (the StateEvents, the
session's counts, a restore point). Inside :func:`collect` each of them is queued rather
than executed, and the queue goes out as one statement of writable CTEs when the block
ends: one round trip and one statement where there were three to seven (issue 16).

Every queued write is conditional on one guard at the head of that statement. The guard
locks each compared row at the version it was read at (``FOR UPDATE``: a row changed
since is not found) and evaluates the preconditions the caller added; either every
write happens or none does, and then the first failed check's error is raised (a
StateConflict, say). Nothing is written in that case, but what the receivers did in
Python (an ``on_commit`` callback) is not undone: the caller raises inside its
transaction, which rolls it back.

The sub-statements of one statement see the database as it was when the statement
began, and not each other's writes. So a write to a table the queue has already written
(an UPDATE after an INSERT or an UPDATE there) sends the queue first, and so does any
other statement run on the connection meanwhile (an execute wrapper): a read always
sees the writes queued before it.

A transaction whose writes are all it sends (a run's finish) can go without BEGIN and
COMMIT: :func:`atomic` sends the statement alone, atomic by itself.

SQLite has no writable CTEs: there :func:`collect` yields None and every write runs at
once, as outside a block.
"""

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from django.db import connections, transaction

from core.cursors import run_statement

try:
    from psycopg.pq import TransactionStatus
except ImportError:  # pragma: no cover - SQLite only
    TransactionStatus = None

# The guard's verdict, for a queued write's condition (``... WHERE <cond> AND GUARD``).
GUARD = "(SELECT ok FROM guard)"

_open: "WeakKeyDictionary[Any, Batch]" = WeakKeyDictionary()


class Queued:
    """A queued write's RETURNING row: ``row`` is set once the batch is sent (None
    until then, or if the write returned no row)."""

    row: tuple | None = None


@dataclass
class _Write:
    sql: str
    params: list
    table: str
    updates: bool
    returning: Queued | None


@dataclass
class _Check:
    sql: str  # a boolean expression
    params: list
    error: Callable[[], Exception]


@dataclass
class Batch:
    """The writes queued on one connection, and the checks they depend on."""

    connection: Any
    writes: list[_Write] = field(default_factory=list)
    checks: list[_Check] = field(default_factory=list)
    undo: list[Callable[[], None]] = field(default_factory=list)
    alone: bool = False  # the block is the transaction (see atomic)

    def compare(
        self, table: str, pk_column: str, pk, version: int, error: Callable[[], Exception]
    ) -> None:
        """Write nothing unless the row ``pk`` of ``table`` is at ``version`` (locked
        for the rest of the transaction); ``error()`` is raised otherwise."""
        sql = (
            f'(SELECT count(*) FROM (SELECT 1 FROM "{table}" WHERE "{pk_column}" = %s'  # noqa: S608
            ' AND "version" = %s FOR UPDATE) AS locked) = 1'
        )
        self.checks.append(_Check(sql, [pk, version], error))

    def require(self, sql: str, params: list, error: Callable[[], Exception]) -> None:
        """Write nothing unless the boolean SQL expression ``sql`` holds when the batch
        is sent; ``error()`` is raised otherwise."""
        self.checks.append(_Check(sql, list(params), error))

    def on_failure(self, undo: Callable[[], None]) -> None:
        """Call ``undo`` if a check fails (to put back what a write set in memory)."""
        self.undo.append(undo)

    def add(
        self, sql: str, params: list, table: str, updates: bool, returning: bool = False
    ) -> Queued | None:
        """Queue the write ``sql`` (an INSERT ... SELECT or an UPDATE whose condition
        includes ``GUARD``, on ``table``). ``updates``: it changes rows already there.
        ``returning``: its SQL ends with a RETURNING clause, whose first row the result's
        ``row`` will hold. The queue is sent first when the write could not see it."""
        if self._must_send_before(table, updates, returning):
            self.send()
        result = Queued() if returning else None
        self.writes.append(_Write(sql, list(params), table, updates, result))
        return result

    def _must_send_before(self, table: str, updates: bool, returning: bool) -> bool:
        if returning and any(write.returning for write in self.writes):
            return True  # one RETURNING row per statement
        return updates and any(write.table == table for write in self.writes)

    def send(self, last: bool = False) -> None:
        """Send what is queued as one statement; raise the first failed check's error
        (nothing written then). ``last``: nothing follows in the block."""
        writes, checks, undo = self.writes, self.checks, self.undo
        self.writes, self.checks, self.undo = [], [], []
        if not (writes or checks):
            return
        sql, params = _statement(writes, checks)
        # All the transaction sends: the statement goes alone, atomic by itself (no
        # BEGIN; psycopg sends no COMMIT for a transaction never begun).
        raw = self.connection.connection  # (atomic connected it)
        alone = last and self.alone and raw.info.transaction_status == TransactionStatus.IDLE
        # This batch's execute wrapper is off while it sends (nothing to send first), so
        # that the statement takes run_statement's unwatched way unless others watch.
        wrappers = self.connection.execute_wrappers
        position = wrappers.index(self)
        del wrappers[position]
        try:
            if alone:
                with self.connection.wrap_database_errors:
                    raw.autocommit = True
            # Bound on the server and prepared from its second run on the connection:
            # the statement is long, and the shapes a run's changes take are few.
            (row,) = run_statement(
                self.connection, sql, params, prepare=True, fetch=True, numbered=True
            )
        finally:
            wrappers.insert(position, self)
            if alone and not raw.closed:
                with self.connection.wrap_database_errors:
                    raw.autocommit = False
        verdicts, returned = row[1 : 1 + len(checks)], row[1 + len(checks) :]
        if not row[0]:
            for step in undo:
                step()
            raise next(check for check, ok in zip(checks, verdicts, strict=True) if not ok).error()
        for write in writes:
            if write.returning is not None:
                write.returning.row = tuple(returned)

    def __call__(self, execute, sql, params, many, context):
        """The execute wrapper: any other statement first sends the queue."""
        if self.writes:
            self.send()
        return execute(sql, params, many, context)


def _statement(writes: list[_Write], checks: list[_Check]) -> tuple[str, list]:
    """One statement for ``writes``: the guard (its verdict ``ok``, then each check's),
    each write a CTE, and the RETURNING row of the one write that has it."""
    names = [f"c{i}" for i in range(len(checks))]
    verdict = " AND ".join(names) or "true"
    tested = ", ".join(f"{check.sql} AS {name}" for check, name in zip(checks, names, strict=True))
    columns = ", ".join(["ok", *names])
    # Only the writers' own SQL and these names go into the text; the values are bound.
    parts = [f"guard AS (SELECT {verdict} AS ok, * FROM (SELECT {tested or '1'}) AS checks)"]  # noqa: S608
    params = [param for check in checks for param in check.params]
    source = "guard"
    for i, write in enumerate(writes):
        parts.append(f"w{i} AS ({write.sql})")
        params += write.params
        if write.returning is not None:
            source = f"guard LEFT JOIN LATERAL (SELECT * FROM w{i} LIMIT 1) AS r ON true"  # noqa: S608
            columns += ", r.*"
    return f"WITH {', '.join(parts)} SELECT {columns} FROM {source}", params  # noqa: S608


def current(connection) -> Batch | None:
    """The batch open on ``connection``, if any."""
    return _open.get(connections[connection.alias])


@contextmanager
def collect(connection, alone: bool = False):
    """Queue the writes made on ``connection`` in the block (by ``core.state`` and the
    receivers of its changes) and send them as one statement when it ends; nested
    blocks join the outermost. Yields the Batch, or None where writes run at once
    (SQLite). An exception in the block drops what is queued. ``alone``: see atomic."""
    connection = connections[connection.alias]  # not django.db.connection's proxy
    batch = _open.get(connection)
    if batch is not None or connection.vendor != "postgresql":
        yield batch
        return
    batch = _open[connection] = Batch(connection, alone=alone)
    try:
        with connection.execute_wrapper(batch):
            yield batch
            batch.send(last=True)
    finally:
        del _open[connection]


@contextmanager
def atomic(connection):
    """``transaction.atomic`` and ``collect`` together, for a transaction that may need
    nothing but its writes: if the block sends nothing before them, their statement goes
    alone, without BEGIN and COMMIT, and the ``on_commit`` callbacks run once it has
    (a run's finish, threads_app.runtime). Inside another transaction, part of it."""
    connection = connections[connection.alias]
    outermost = not connection.in_atomic_block
    with transaction.atomic(using=connection.alias), collect(connection, outermost) as batch:
        yield batch


def write(connection, sql: str, queued_sql: str, params: list, table: str, updates: bool):
    """Run the write ``sql`` now, or, in a batch open on ``connection``, queue its form
    ``queued_sql`` (conditional on ``GUARD``) to go with the batch (a receiver's write)."""
    batch = current(connection)
    if batch is not None:
        batch.add(queued_sql, params, table, updates=updates)
        return
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def value(read: Any) -> Any:
    """A write's RETURNING row whether it ran at once (the row) or was queued."""
    return read.row if isinstance(read, Queued) else read
