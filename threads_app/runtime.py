"""Executing runs durably in Celery workers.

A worker *claims* a pending run (a compare-and-set through the state manager that sets
``claimed_by`` and a lease), renews the lease with a heartbeat while the graph runs,
streams every step into the run's event log and its Channels group, and records the
outcome through the state manager. If the worker dies, its lease expires and the sweeper
puts the run back to pending; the next attempt resumes from the run's last checkpoint
(same ``run_id``), so steps already checkpointed are not executed again.

A transient database error (the connection lost, the server restarting, a serialization
failure or deadlock) is not the graph's failure: the attempt ends, the run goes back to
pending and is sent again after a backoff, to resume from its last checkpoint like a run
whose worker died (its attempts count against ``max_attempts``). A claim that fails on
such an error is retried by the task itself (Celery's ``autoretry_for``), in seconds.
"""

import logging
import os
import socket
import threading
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    connections,
    transaction,
)
from django.db.models import Exists, Max, OuterRef, Q
from langgraph.types import Command

from checkpoints_app.connections import own_connection
from core import realtime, state, write_batch
from core.bulk_insert import insert_rows
from core.jsonable import to_jsonable
from core.metadata import json_size
from core.rowloader import one_row
from core.time import now
from threads_app import lifecycle, registry
from threads_app.models import Run, RunEvent, Thread
from threads_app.streaming import GraphStream, debug_chunk

logger = logging.getLogger(__name__)

# Live pushes carry the event itself only when it is small; otherwise a notice with
# its sequence number, and the client reads the event log.
MAX_PUSHED_EVENT_BYTES = 32 * 1024


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_native_id()}"


def lease_seconds() -> float:
    return settings.STATEHOUSE_RUN_LEASE_S


def heartbeat_seconds() -> float:
    return settings.STATEHOUSE_HEARTBEAT_S or lease_seconds() / 3


# --- transient database errors ------------------------------------------------------

# SQLSTATEs a retry may not meet again: connection exceptions (class 08), the server
# shutting down or restarting (57P01-57P03), serialization failures and deadlocks.
TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03", "40001", "40P01")
# A run whose attempt failed on one is sent again after RETRY_BASE_S * 2**(attempt - 1)
# seconds, at most RETRY_MAX_S.
RETRY_BASE_S = 1.0
RETRY_MAX_S = 30.0
# Pauses between tries to put such a run back to pending while the database is away;
# past them the run's lease expires and the sweeper requeues it.
RELEASE_PAUSES_S = (0.5, 1.0, 2.0, 4.0, 8.0)


class DatabaseUnavailable(Exception):
    """A run could not be claimed because of a transient database error; the task
    retries (see threads_app.tasks)."""


def _transient_classes() -> tuple[type[BaseException], ...]:
    classes: list[type[BaseException]] = [OperationalError, InterfaceError]
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        pass
    else:
        classes += [psycopg.OperationalError, psycopg.InterfaceError]
    return tuple(classes)


_TRANSIENT_CLASSES = _transient_classes()


def is_transient_db_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) is a database error worth retrying:
    psycopg's or Django's OperationalError/InterfaceError, or a transient SQLSTATE."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, _TRANSIENT_CLASSES):
            return True
        sqlstate = getattr(exc, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(TRANSIENT_SQLSTATES):
            return True
        exc = exc.__cause__
    return False


def retry_delay(attempt: int) -> float:
    """Seconds before a run whose attempt ``attempt`` failed transiently is sent again."""
    return min(RETRY_BASE_S * 2 ** max(attempt - 1, 0), RETRY_MAX_S)


def drop_broken_connection() -> None:
    """Close this thread's connection if an error left it unusable, so the next query
    reconnects instead of failing on it again (a caller's transaction keeps its own)."""
    if connection.connection is not None and not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


# --- claiming -----------------------------------------------------------------------


def _claim_query(run_id):
    """The run, with its thread (and session) and workflow, both rows locked in one
    statement, and whether another run of the thread goes first (``blocked``).

    The thread's lock is taken first, as by every writer (see ThreadQuerySet.lock), and
    a row changed while we waited for it is read as it is now: PostgreSQL reads a locked
    row again once its lock is ours. The ``blocked`` subquery keeps what it saw before
    such a wait, which can only be a run since ended: it is then its finish that starts
    this run (see start_next_run), while a run that started or went back to pending
    meanwhile was pending or running then too.
    """
    others = Run.objects.filter(
        thread_id=OuterRef("thread_id"), status__in=(Run.Status.PENDING, Run.Status.RUNNING)
    ).exclude(pk=OuterRef("pk"))
    ahead = others.filter(Q(status=Run.Status.RUNNING) | Q(created_at__lt=OuterRef("created_at")))
    return (
        Run.objects.select_related("thread__session", "workflow")
        .select_for_update(of=("thread", "self"))
        .annotate(blocked=Exists(ahead))
        .filter(pk=run_id)
    )


def _claimed(run_id):
    """``_claim_query``'s run, its SQL compiled once per connection (core.rowloader):
    compiling it cost more than 1 ms at each claim."""
    return one_row(_claim_query, connection).fetch(run_id)


def claim_run(run_id, worker: str) -> Run | None:
    """Take the run for ``worker``; None if it is not ours to run now.

    The thread's row is locked while claiming, so two runs of one thread never run at
    once (a run queued behind another one is started when that one finishes). The run
    returned has its thread, session and workflow loaded, as the execution needs them.
    """
    with transaction.atomic():
        run = _claimed(run_id)
        # None if it is gone (deleted, rolled back while pending, say); a cancel that got
        # to the lock first is seen.
        if run is None or run.status != Run.Status.PENDING or run.blocked:
            return None
        if run.not_before and run.not_before > now():
            return None
        if run.attempt >= run.max_attempts:
            lifecycle.run_gave_up(run)
            from threads_app.services import start_next_run

            transaction.on_commit(lambda: start_next_run(run.thread_id))
            return None
        return lifecycle.run_started(run, run.thread, worker, lease_seconds())


# --- heartbeat ----------------------------------------------------------------------


class Heartbeat(threading.Thread):
    """Renews the run's lease from a thread of its own, and notices when it is lost."""

    def __init__(self, run: Run, worker: str):
        super().__init__(name=f"heartbeat-{run.pk}", daemon=True)
        self.run_id = run.pk
        self.worker = worker
        self.stopped = threading.Event()
        self.lease_lost = False

    def run(self) -> None:
        connected = False
        try:
            while not self.stopped.wait(heartbeat_seconds()):
                if not connected:
                    # Not one of the pool's: the heartbeat keeps it as long as the run.
                    own_connection()
                    connected = True
                try:
                    self.beat()
                except Exception:
                    # The database is away: the lease runs on, the next beat tries again.
                    logger.warning("run %s: heartbeat failed", self.run_id, exc_info=True)
                    drop_broken_connection()
                if self.lease_lost:
                    return
        finally:
            connection.close()

    def beat(self) -> None:
        """Renew the lease (one UPDATE); lost when the run is no longer ours (requeued by
        the sweeper, failed by an operator, deleted). Cancel requests are read at each
        step (Execution._check)."""
        moment = now()
        renewed = Run.objects.filter(
            pk=self.run_id, claimed_by=self.worker, status=Run.Status.RUNNING
        ).update(lease_expires_at=moment + timedelta(seconds=lease_seconds()), heartbeat_at=moment)
        if renewed == 0:
            self.lease_lost = True

    def stop(self) -> None:
        self.stopped.set()
        self.join(5)


# --- event log ----------------------------------------------------------------------


class EventLog:
    """Appends a run's events with increasing ``seq``, pushes them to ``run.<id>`` and
    ``thread.<id>`` (the thread page shows its current run's progress).

    Events are written in small batches (at each step, or every 50 events or 200 ms for
    token streams) and pushed once written, so a late client can replay what it missed.
    Only the worker holding a run writes its events: a first attempt starts at 1, a
    later one after the last event of those before.
    """

    def __init__(self, run: Run):
        self.run = run
        self.group = f"run.{run.pk}"
        last = None
        if run.attempt > 1:
            last = RunEvent.objects.filter(run=run).aggregate(last=Max("seq"))["last"]
        self.seq = last or 0
        self.buffer: list[RunEvent] = []
        self.flushed_at = time.monotonic()

    def add(self, event: str, data: Any, namespace: str = "", hold: bool = False) -> None:
        """Log an event; written with the next flush (at once past 50 events or 200
        ms since the last one, unless ``hold``: the caller flushes next)."""
        self.seq += 1
        self.buffer.append(
            RunEvent(
                run=self.run,
                seq=self.seq,
                event=event,
                namespace=namespace,
                data=to_jsonable(data),
                attempt=self.run.attempt,
                created_at=now(),
            )
        )
        if not hold and (len(self.buffer) >= 50 or time.monotonic() - self.flushed_at > 0.2):
            self.flush()

    def flush(self, reading: tuple[str, list] | None = None) -> tuple | None:
        """Write the events logged since the last flush. ``reading``: SQL expressions
        and their parameters read in the same round trip (returned by the INSERT, or
        selected alone when there is nothing to write); their row is returned."""
        self.flushed_at = time.monotonic()
        if not self.buffer:
            return _select(reading) if reading is not None else None
        batch, self.buffer = self.buffer, []
        try:
            read = _insert_events(batch, reading)
        except IntegrityError:
            if _deleted(self.run.pk):
                raise RunDeleted from None
            raise
        except Exception:
            self.buffer = batch + self.buffer  # written at the next flush (the database back)
            raise
        payloads = []
        for item in batch:
            payload = {
                "type": "run.event",
                "run_id": str(self.run.pk),
                "seq": item.seq,
                "event": item.event,
                "namespace": item.namespace,
            }
            if json_size(item.data) <= MAX_PUSHED_EVENT_BYTES:
                payload["data"] = item.data
            else:
                payload["truncated"] = True
            payloads.append(payload)
        # Pushed once written: at once, or when the caller's transaction commits.
        transaction.on_commit(lambda: self._push(payloads))
        return read

    def _push(self, payloads: list[dict]) -> None:
        for payload in payloads:
            realtime.push([self.group, f"thread.{self.run.thread_id}"], payload)


def _insert_events(events: list[RunEvent], reading: tuple[str, list] | None = None):
    """Write ``events`` with one INSERT (core.bulk_insert), in the caller's transaction
    or, outside one, on its own (``bulk_create`` would open a transaction for it: a BEGIN
    and a COMMIT more); returning ``reading``'s row if given."""
    rows = [vars(event) for event in events]
    return insert_rows(RunEvent, rows, connections[DEFAULT_DB_ALIAS], returning=reading)


def _select(reading: tuple[str, list]) -> tuple:
    expressions, params = reading
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {expressions}", params)
        return cursor.fetchone()


# --- execution ----------------------------------------------------------------------


class RunStopped(Exception):
    def __init__(self, reason: str, action: str = ""):
        self.reason = reason
        self.action = action
        super().__init__(reason)


class RunDeleted(Exception):
    """The run was deleted while it ran (with its thread or session, say)."""


def _deleted(run_id) -> bool:
    return not Run.objects.filter(pk=run_id).exists()


def _graph_config(run: Run, resuming: bool, callbacks: list) -> dict:
    workflow_config = run.workflow.config if run.workflow else {}
    config = dict(workflow_config) | dict(run.config or {})
    configurable = dict(workflow_config.get("configurable") or {})
    configurable.update((run.config or {}).get("configurable") or {})
    configurable.update(
        thread_id=str(run.thread_id),
        run_id=str(run.pk),
        assistant_id=str(run.workflow_id) if run.workflow_id else "",
        graph_id=run.workflow.graph_id if run.workflow else "",
    )
    checkpoint_id = (run.kwargs or {}).get("checkpoint_id")
    if checkpoint_id and not resuming:
        configurable["checkpoint_id"] = checkpoint_id
    else:
        configurable.pop("checkpoint_id", None)
    config["configurable"] = configurable
    config["metadata"] = dict(config.get("metadata") or {}) | dict(run.metadata or {})
    config["metadata"].update(
        run_id=str(run.pk),
        thread_id=str(run.thread_id),
        graph_id=configurable["graph_id"],
        assistant_id=configurable["assistant_id"],
    )
    config["run_id"] = run.pk
    config["callbacks"] = callbacks
    return config


def _graph_context(run: Run) -> dict:
    """The graph's runtime context: its assistant's, with the run's keys over it, as
    LangGraph Server gives it (a graph whose context schema has defaults gets them when
    neither names a key)."""
    assistant_context = run.workflow.context if run.workflow else {}
    return dict(assistant_context or {}) | dict((run.kwargs or {}).get("context") or {})


def _run_checkpoints_exist(saver, run: Run) -> bool:
    config = {"configurable": {"thread_id": str(run.thread_id)}}
    return next(iter(saver.list(config, filter={"run_id": str(run.pk)}, limit=1)), None) is not None


def _callbacks(run: Run) -> list:
    """Callbacks attached to every run: usage capture (tokens and cost of each LLM call)."""
    from history_app.callbacks import UsageCallbackHandler

    thread = run.thread
    return [
        UsageCallbackHandler(
            run_id=run.pk,
            thread_id=thread.pk,
            session_id=thread.session_id,
            user_id=thread.session.owner_id,
        )
    ]


def execute_run(run_id) -> str:
    """The Celery task's body: claim, execute, record. Returns the run's final status.

    Raises DatabaseUnavailable when the claim fails on a transient database error; an
    attempt that fails on one puts the run back to pending (see release_for_retry).
    """
    worker = worker_id()
    try:
        run = claim_run(run_id, worker)
    except Exception as exc:
        if not is_transient_db_error(exc):
            raise
        drop_broken_connection()
        raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc
    if run is None:
        return "skipped"
    return execute_claimed(run, worker)[0]


def execute_claimed(run: Run, worker: str, send_next=None) -> tuple[str, Run | None]:
    """Execute ``run``, claimed by ``worker`` (with its thread, session and workflow
    loaded): its final status as execute_run returns it, and the run as it finished,
    with its thread (None unless it finished here), so that its output needs no read.
    ``send_next``: what the finish hands the run queued next on the thread to (its id
    and not_before, or None) instead of enqueueing it (services.send_next_run)."""
    execution = None
    try:
        execution = Execution(run, worker, send_next)
        return execution.execute(), execution.finished
    except Exception as exc:
        if not is_transient_db_error(exc):
            raise
        logger.warning("run %s: attempt %s hit a database error", run.pk, run.attempt)
        return release_for_retry(run, worker, exc, execution.log if execution else None), None


def release_for_retry(run: Run, worker: str, exc: BaseException, log=None) -> str:
    """Put a run whose attempt failed on a transient database error back to pending and
    send it again after a backoff; it resumes from its last checkpoint. The events the
    attempt could not write (``log``'s buffer) are written first.

    Tried again for a little while if the database is still away; after that the run's
    lease expires and the sweeper requeues it. Returns "retrying" or "lease-lost".
    """
    from threads_app.services import enqueue

    cause = f"{type(exc).__name__}: {exc}".strip()
    for pause in (0.0, *RELEASE_PAUSES_S):
        time.sleep(pause)
        drop_broken_connection()
        try:
            with transaction.atomic():
                Thread.objects.lock(run.thread_id)
                current = Run.objects.select_for_update().filter(pk=run.pk).first()
                if current is None or current.status != Run.Status.RUNNING:
                    return "lease-lost"
                if current.claimed_by != worker:
                    return "lease-lost"
                if log is not None:
                    log.flush()
                delay = retry_delay(current.attempt)
                lifecycle.run_requeued(current, actor=f"worker:{worker}", error=cause)
                transaction.on_commit(lambda delay=delay: enqueue(run.pk, countdown=delay))
            logger.warning("run %s: retrying in %g s after %s", run.pk, delay, cause)
            return "retrying"
        except Exception as again:
            if not is_transient_db_error(again):
                raise
    logger.warning("run %s: the database is still away; the sweeper will requeue it", run.pk)
    return "lease-lost"


def _finish_query(run_id):
    """The run and its thread, locked in one statement for the run's finish."""
    return (
        Run.objects.select_related("thread")
        .select_for_update(of=("thread", "self"))
        .filter(pk=run_id)
    )


def _cancel_request(run_id) -> tuple[str, list]:
    """The run's ``cancel_requested`` (NULL if the run is gone) as an SQL expression
    and its parameter: read at each step along with the step's events (EventLog.flush),
    written out (the ORM compiled its query at each step)."""
    meta = Run._meta
    column = meta.get_field("cancel_requested").column
    sql = f'(SELECT "{column}" FROM "{meta.db_table}" WHERE "{meta.pk.column}" = %s)'  # noqa: S608
    return sql, [meta.pk.get_db_prep_value(run_id, connection)]


class Execution:
    def __init__(self, run: Run, worker: str, send_next=None):
        """``run`` as claim_run returned it: with its thread, session and workflow.
        ``send_next``: see execute_claimed."""
        self.run = run
        self.worker = worker
        self.send_next = send_next
        self.actor = f"worker:{worker}"
        self.step = 0
        self.node = ""
        self.log: EventLog | None = None
        # The top graph's last "values" chunk, and whether it stopped at an interrupt.
        self.values: Any = None
        self.interrupted = False
        # The run as its finish wrote it, with its thread.
        self.finished: Run | None = None

    def execute(self) -> str:
        try:
            return self._execute()
        except RunDeleted:
            self._forget()
            return "deleted"

    def _forget(self) -> None:
        """What is left of a deleted run: checkpoints the graph wrote for a thread that
        was deleted meanwhile (the delete removed those written before it)."""
        from checkpoints_app.saver import DjangoSaver

        run = self.run
        if not Thread.objects.filter(pk=run.thread_id).exists():
            DjangoSaver().delete_thread(str(run.thread_id))
        logger.info("run %s was deleted while it ran; stopped", run.pk)

    def _execute(self) -> str:
        from checkpoints_app.saver import DjangoSaver

        run = self.run
        log = self.log = EventLog(run)
        heartbeat = Heartbeat(run, self.worker)
        heartbeat.start()
        saver = DjangoSaver()
        started = time.monotonic()
        timeout = float((run.kwargs or {}).get("timeout_s") or settings.STATEHOUSE_RUN_TIMEOUT_S)
        outcome: tuple[str, str] = (lifecycle.Outcome.SUCCESS, "")
        graph = stream = None
        config: dict = {}
        try:
            graph_id = run.workflow.graph_id if run.workflow else ""
            graph = registry.load_graph(graph_id, run.config or {}, checkpointer=saver)
            resuming = run.attempt > 1 and _run_checkpoints_exist(saver, run)
            config = _graph_config(run, resuming, _callbacks(run))
            graph_input = self._input(resuming)
            log.add("metadata", {"run_id": str(run.pk), "attempt": run.attempt})
            # "custom" always: it carries a graph's own progress ({"step", "of"}), which
            # the status pages show whatever the client asked to stream; streams still
            # send only the requested modes.
            modes = list(dict.fromkeys([*self._modes(), "updates", "values", "custom"]))
            kwargs = run.kwargs or {}
            subgraphs = bool(kwargs.get("stream_subgraphs"))
            if "events" in modes:
                config["run_name"] = graph_id  # the top graph's name in its events
            stream = GraphStream(
                graph,
                graph_input,
                config,
                modes,
                subgraphs,
                # By default a step starts only once the checkpoint before it is stored:
                # when a write fails (the database away), no later step has run, and the
                # retry redoes at most the step whose checkpoint was lost. A run may ask
                # for LangGraph's "async" or "exit" instead (fewer writes, less kept).
                durability=kwargs.get("durability") or "sync",
                interrupt_before=kwargs.get("interrupt_before"),
                interrupt_after=kwargs.get("interrupt_after"),
                context=_graph_context(run),
            )
            wanted = {*self._modes(), "custom"}
            for namespace, mode, chunk in stream:
                if mode in wanted:
                    log.add(
                        mode, debug_chunk(chunk) if mode == "debug" else chunk, "|".join(namespace)
                    )
                if mode == "values" and not namespace:
                    self.values = chunk
                if mode == "updates" and not namespace:
                    if isinstance(chunk, dict) and "__interrupt__" in chunk:
                        self.interrupted = True
                    self._progress(log, chunk)
                    # The step's events written and its cancel request read: one statement.
                    (cancel,) = log.flush(_cancel_request(run.pk))
                    self._check(heartbeat, started, timeout, cancel)
        except RunStopped as stop:
            outcome = (stop.action or lifecycle.Outcome.TIMEOUT, stop.reason)
        except RunDeleted:
            raise
        except Exception as exc:
            if is_transient_db_error(exc):
                raise  # not the graph's error: execute_run retries the run
            if _deleted(run.pk):
                raise RunDeleted from exc  # the graph failed because its run went away
            logger.exception("run %s failed", run.pk)
            outcome = (lifecycle.Outcome.ERROR, f"{type(exc).__name__}: {exc}")
        finally:
            heartbeat.stop()
            if stream is not None:
                try:
                    stream.close()  # no step of the graph runs (or writes) after this
                except Exception:
                    logger.exception("run %s: closing the graph's stream failed", run.pk)
        # The events logged since the last step are written by the finish, in its
        # transaction; an attempt that meets a database error writes them when it
        # releases the run (release_for_retry).
        if not heartbeat.lease_lost:
            # The writes of a step no checkpoint followed (an interrupt in a node, a failed
            # branch: the saver sends the others with the step's checkpoint), stored before
            # the run's end is recorded; a database error here retries the attempt.
            saver.flush()
        if heartbeat.lease_lost:
            if _deleted(run.pk):
                raise RunDeleted
            logger.warning("run %s: lease lost, another worker owns it now", run.pk)
            return "lease-lost"
        return self._finish(outcome, graph, config, saver, log)

    def _modes(self) -> list[str]:
        modes = (self.run.kwargs or {}).get("stream_mode") or ["values"]
        return ["messages" if mode == "messages-tuple" else mode for mode in modes]

    def _input(self, resuming: bool):
        run = self.run
        if resuming:
            return None  # continue from this run's last checkpoint
        if run.command:
            command = dict(run.command)
            return Command(**command)
        return run.input

    def _progress(self, log: EventLog, update: Any) -> None:
        nodes = [n for n in update if not n.startswith("__")] if isinstance(update, dict) else []
        if not nodes:
            return  # an interrupt, not a step
        self.step += 1
        self.node = nodes[0] if nodes else ""
        payload = {"step": self.step, "nodes": nodes}
        log.add("progress", payload)

    def _check(self, heartbeat: Heartbeat, started: float, timeout: float, cancel) -> None:
        """Stop at this step boundary? ``cancel``: the run's cancel_requested, just read
        (None: the run is gone)."""
        if cancel is None:
            raise RunDeleted
        if heartbeat.lease_lost:
            raise RunStopped("lease lost")
        if cancel:
            raise RunStopped(f"cancelled ({cancel})", action=cancel)
        if time.monotonic() - started > timeout:
            raise RunStopped(f"timed out after {timeout:g} s")

    def _final_state(self, kind, graph) -> tuple[Any, list, bool]:
        """The graph's values, interrupts and whether nodes are still to run, at the end.

        After a success that stopped at no interrupt, they are the last "values" chunk
        the top graph streamed (its output is its whole state: the output channels are
        the state's), none and no: that chunk is the state of the last checkpoint. Else
        they are read from the checkpoint (LangGraph's get_state).
        """
        if (
            kind == lifecycle.Outcome.SUCCESS
            and not self.interrupted
            and self.values is not None
            and graph.output_channels == graph.stream_channels_asis
        ):
            return self.values, [], False
        latest = {"configurable": {"thread_id": str(self.run.thread_id)}}
        snapshot = graph.get_state(latest)
        return snapshot.values, lifecycle.snapshot_interrupts(snapshot), bool(snapshot.next)

    def _finish(self, outcome, graph, config, saver, log: EventLog) -> str:
        kind, reason = outcome
        run = self.run
        values, interrupts, pending = {}, [], False
        if kind == lifecycle.Outcome.ROLLBACK:
            saver.delete_for_runs([str(run.pk)])
        if graph is not None and config:
            try:
                values, interrupts, pending = self._final_state(kind, graph)
                if kind == lifecycle.Outcome.SUCCESS:
                    self._record_messages(values)
            except Exception as exc:
                if is_transient_db_error(exc):
                    raise
                logger.exception("run %s: reading the final state failed", run.pk)
        end = lifecycle.run_end(kind, reason, values, interrupts, pending)
        failed = kind in (lifecycle.Outcome.ERROR, lifecycle.Outcome.TIMEOUT)
        terminal_event = "error" if failed else "end"
        # In the transaction that ends the run: an attempt whose end did not commit (the
        # database went away) leaves no terminal event for streams to stop at.
        event = {"status": end.run_status, "error": reason} if reason else None
        if kind != lifecycle.Outcome.ROLLBACK and self._finish_as_held(end, terminal_event, event):
            return end.run_status
        from threads_app.services import next_run_sql, send_next_run

        # One transaction: the locks, then every write of the run's end in one statement
        # (core.write_batch: the last events, the run, the thread and what follows).
        with transaction.atomic(), write_batch.collect(connection):
            # The thread and the run locked in one statement (the thread's lock first),
            # each read as it is once the locks are ours.
            current = one_row(_finish_query, connection).fetch(run.pk)
            if current is None:
                raise RunDeleted
            if current.claimed_by != self.worker or current.status != Run.Status.RUNNING:
                return "lease-lost"
            if kind != lifecycle.Outcome.ROLLBACK:
                log.add(terminal_event, event, hold=True)
            # The last events, and the run queued next on the thread read along: after
            # the lock (a run created while we waited for it is seen), in one statement.
            pending = log.flush(next_run_sql(run.thread_id))
            lifecycle.run_finished(current, current.thread, end, actor=self.actor)
            send = self.send_next or send_next_run
            transaction.on_commit(lambda: send(write_batch.value(pending)))
        self.finished = current
        return end.run_status

    def _finish_as_held(self, end: lifecycle.RunEnd, terminal_event: str, event) -> bool:
        """The run's end in one statement and no transaction (PostgreSQL): the last
        events, the run and its thread as this execution holds them, each compared at
        the version it claimed (core.write_batch: a run cancelled, requeued or deleted
        since, or a thread changed, fails the compare and writes nothing); then the run
        queued next on the thread looked for and sent. Whether it was written: if not,
        the caller's transaction reads both rows under their locks and decides.

        The look comes after the commit, by a query of its own: the statement's view of
        the database is from before it took the thread's lock, so it would miss a run
        created behind this one by a transaction that held that lock meanwhile."""
        if connection.vendor != "postgresql":
            return False
        from threads_app.services import start_next_run

        run, log = self.run, self.log
        buffered, seq = list(log.buffer), log.seq
        try:
            with write_batch.atomic(connection):
                log.add(terminal_event, event, hold=True)
                log.flush()
                lifecycle.run_finished(run, run.thread, end, actor=self.actor)
                transaction.on_commit(lambda: start_next_run(run.thread_id, self.send_next))
        except state.StateConflict:
            log.buffer, log.seq = buffered, seq  # nothing was written
            return False
        self.finished = run
        return True

    def _record_messages(self, values) -> None:
        messages = values.get("messages") if isinstance(values, dict) else None
        if not messages:
            return
        from history_app.services import record_run_messages

        try:
            record_run_messages(self.run, messages)
        except Exception as exc:
            if is_transient_db_error(exc):
                raise  # recorded by the retry (it adds only the messages not recorded yet)
            logger.exception("run %s: recording messages failed", self.run.pk)


# --- the sweeper --------------------------------------------------------------------


def sweep() -> dict[str, int]:
    """Requeue runs whose worker died, resend lost pending runs, prune old event logs.

    Safe to run from any number of workers at once: every change is a compare-and-set.
    """
    from threads_app.services import enqueue, expire_temporary_threads

    close_old_connections()
    moment = now()
    requeued = 0
    for run in Run.objects.filter(status=Run.Status.RUNNING, lease_expires_at__lt=moment):
        try:
            with transaction.atomic():
                lifecycle.run_requeued(run, actor="sweeper")
                transaction.on_commit(lambda run_id=run.pk: enqueue(run_id))
            requeued += 1
            logger.warning(
                "run %s: lease expired (worker %s lost); requeued", run.pk, run.claimed_by
            )
        except state.StateConflict:
            continue
    resend_before = moment - timedelta(seconds=settings.STATEHOUSE_PENDING_RESEND_S)
    busy_threads = Run.objects.filter(status=Run.Status.RUNNING).values("thread_id")
    stale = (
        Run.objects.filter(status=Run.Status.PENDING, updated_at__lt=resend_before)
        .exclude(thread_id__in=busy_threads)
        .exclude(not_before__gt=moment)
        .values_list("pk", flat=True)[:500]
    )
    resent = 0
    for run_id in stale:
        enqueue(run_id)
        resent += 1
    keep = timedelta(days=settings.STATEHOUSE_RUN_EVENTS_KEEP_DAYS)
    pruned, _ = RunEvent.objects.filter(created_at__lt=moment - keep).delete()
    expired = expire_temporary_threads()
    return {
        "requeued": requeued,
        "resent": resent,
        "pruned_events": pruned,
        "expired_threads": expired,
    }


class Sweeper(threading.Thread):
    """Sweeps every STATEHOUSE_SWEEP_INTERVAL_S seconds inside a worker process."""

    def __init__(self):
        super().__init__(name="statehouse-sweeper", daemon=True)
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while True:
                try:
                    sweep()
                except Exception:
                    logger.exception("sweep failed")
                if self.stopped.wait(settings.STATEHOUSE_SWEEP_INTERVAL_S):
                    return
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
