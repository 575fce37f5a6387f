"""Following a run over HTTP, as LangGraph Server does: its events as Server-Sent Events
(each stream mode's framing, the ``messages`` mode's partial messages), waiting for its
end (``/wait``, ``/join``), joining a run's or a thread's stream again, and cancelling a
run whose client went away.

The run's event log and status in the database are the truth; the channel layer only
wakes a waiting request early (a missed push costs one poll interval), and a database
that goes away for a while is read again (DB_GRACE_S) before the answer ends with an
error saying how to join again.

The streams are StreamingHttpResponses of their own, not ninja's ``SSE[...]`` answers:
those frame ``data:`` lines only, and these carry LangGraph Server's event names and ids,
heartbeat comments and headers; their routes document the ``text/event-stream`` answer
in ``openapi_extra``.
"""

import asyncio
import json
import logging
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.db.models import Max
from django.http import StreamingHttpResponse
from langchain_core.messages import BaseMessageChunk, message_chunk_to_message, messages_from_dict
from ninja import Router
from ninja.errors import HttpError

from api.common import Detail, Invalid, Json, get_run, get_thread
from core import state
from core.rowloader import one_row
from threads_app import services
from threads_app.models import Run, RunEvent, Thread
from threads_app.streaming import STREAM_MODES

router = Router()
logger = logging.getLogger(__name__)

# A waiting request reads the database again after this long without a push (a push may
# be lost: the run's event log and status in the database are the truth).
POLL_S = 0.5
# A waiting request whose database reads fail (a restart, say) tries again for this long,
# then ends with an error; the client joins again (/join, or /stream with Last-Event-ID).
DB_GRACE_S = 10.0

# What the OpenAPI document says of an answer that is a stream of Server-Sent Events.
EVENT_STREAM = {
    "responses": {
        200: {
            "description": "Server-Sent Events: `event: <mode>[|<namespace>]`, `data: <JSON>`, "
            "`id: <event id>`, and `: heartbeat` comments",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    }
}


# --- framing ------------------------------------------------------------------------


def event_name(mode: str, namespace: str) -> str:
    """``mode`` or ``mode|<namespace>``, LangGraph Server's event names."""
    return f"{mode}|{namespace}" if namespace else mode


def sse(event: str, data: Any, event_id: int | str | None = None) -> bytes:
    """One Server-Sent Event, its fields in LangGraph Server's order."""
    lines = [f"event: {event}"]
    lines.append("data: " + json.dumps(data, default=str, separators=(",", ":")))
    if event_id is not None:
        lines.append(f"id: {event_id}")
    return ("\n".join(lines) + "\n\n").encode()


class MessageAccumulator:
    """Turns stored (message, metadata) pairs into the ``messages`` mode's events, as
    LangGraph Server does: ``messages/metadata`` when a message first appears, then
    ``messages/partial`` with the message so far while it comes in chunks, or
    ``messages/complete`` for a message that came whole."""

    def __init__(self):
        self.messages: dict[str, BaseMessageChunk | Any] = {}

    def feed(self, data) -> list[tuple[str, Any]]:
        if not isinstance(data, list) or len(data) != 2 or not isinstance(data[0], dict):
            return []
        stored, metadata = data
        try:
            (message,) = messages_from_dict([{"type": stored.get("type"), "data": stored}])
        except (KeyError, ValueError, TypeError):
            return []
        message_id = message.id or "unknown"
        out = []
        previous = self.messages.get(message_id)
        if isinstance(previous, BaseMessageChunk) and isinstance(message, BaseMessageChunk):
            self.messages[message_id] = previous + message
        else:
            if message_id not in self.messages:
                out.append(("messages/metadata", {message_id: {"metadata": metadata}}))
            self.messages[message_id] = message
        whole = message_chunk_to_message(self.messages[message_id])
        kind = "messages/partial" if isinstance(message, BaseMessageChunk) else "messages/complete"
        out.append((kind, [whole.model_dump()]))
        return out


def stream_modes(value) -> list[str]:
    """A run's ``stream_mode`` as a list (``values`` by default)."""
    return [value] if isinstance(value, str) else list(value or ["values"])


def _wanted(modes: list[str]) -> set[str]:
    """The log's events a stream in ``modes`` sends (with the run's start and errors)."""
    wanted = set(modes) | {"metadata", "error"}
    if "messages-tuple" in wanted:
        wanted.add("messages")
    return wanted


def _frames(event: RunEvent, modes: list[str], accumulator: MessageAccumulator):
    """(name, data) of what one logged event of a run becomes in a stream in ``modes``,
    as LangGraph Server names them: ``mode|<namespace>``, but the messages/* events of
    the ``messages`` mode carry no namespace, nor do ``events``."""
    if event.event == "messages" and "messages-tuple" not in modes:
        return accumulator.feed(event.data)
    if event.event == "events":
        return [("events", event.data)]
    return [(event_name(event.event, event.namespace), event.data)]


def _error_data(event: RunEvent) -> dict[str, str]:
    """A failed run's error as LangGraph Server sends it: ``{"error", "message"}``."""
    data = event.data if isinstance(event.data, dict) else {}
    message = data.get("error") or ""
    kind, _, detail = message.partition(": ")
    return {"error": kind or data.get("status") or "error", "message": detail or message}


def _deleted(run_id) -> dict[str, str]:
    """The error /wait, /join and streams end with when the run is deleted before it ends."""
    return {"error": "RunDeleted", "message": f"run {run_id} was deleted before it finished"}


def _lost(run_id, last_id: int | None = None) -> dict[str, str]:
    """The error a wait or stream ends with when it cannot follow the run any more."""
    where = f"/stream with Last-Event-ID {last_id}" if last_id is not None else "/join"
    return {
        "error": "DatabaseUnavailable",
        "message": f"the database is unreachable, so run {run_id} cannot be followed; "
        f"it goes on: join it again ({where})",
    }


# --- following a run: database reads and the channel layer's pushes ------------------


class DatabaseLost(Exception):
    """The database stayed unreachable past DB_GRACE_S while following a run."""


async def _db(read, *args):
    """``await read(*args)``, a database read, tried again while the database is away."""
    from threads_app.runtime import drop_broken_connection, is_transient_db_error

    loop = asyncio.get_running_loop()
    deadline = loop.time() + DB_GRACE_S
    pause = 0.25
    while True:
        try:
            return await read(*args)
        except Exception as exc:
            if not is_transient_db_error(exc):
                raise
            # The async ORM's thread keeps its connection: drop it, or it fails again.
            await sync_to_async(drop_broken_connection)()
            if loop.time() + pause > deadline:
                raise DatabaseLost(f"{type(exc).__name__}: {exc}".strip()) from exc
            logger.warning("database read failed; trying again in %g s", pause, exc_info=True)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)


class RunEvents:
    """Wakes a waiting request when the run's feed announces a new event (or ends).

    The run's event log in the database is the source of truth; the channel layer only
    shortens the wait, so a missed push costs at most one poll interval.
    """

    def __init__(self, run_id, group: str = ""):
        self.group = group or f"run.{run_id}"
        self.layer = get_channel_layer()
        self.channel = None
        self.receiving: asyncio.Task | None = None

    async def __aenter__(self):
        if self.layer is not None:
            from core import realtime

            realtime.set_server_loop(asyncio.get_running_loop())
            try:
                channel = await self.layer.new_channel()
                await self.layer.group_add(self.group, channel)
            except Exception as exc:  # Redis down: the database poll alone follows the run
                logger.warning("%s: the channel layer failed (%s); polling", self.group, exc)
            else:
                self.channel = channel
        return self

    async def __aexit__(self, *exc):
        if self.receiving is not None:
            self.receiving.cancel()
        if self.channel is not None:
            try:
                await self.layer.group_discard(self.group, self.channel)
            except Exception as exc:  # the answer is complete: do not cut it off
                logger.warning("%s: leaving the group failed (%s)", self.group, exc)

    async def wait(self, timeout: float) -> dict | None:
        """The next push to the run's group, or None after ``timeout`` seconds.

        One receive stays pending across waits rather than being cancelled at each
        timeout: cancelling channels_redis's receive mid-command could leave the wait
        hanging on it, and the poll must go on whatever the layer does.
        """
        if self.channel is None:
            await asyncio.sleep(timeout)
            return None
        if self.receiving is None:
            self.receiving = asyncio.ensure_future(self.layer.receive(self.channel))
        done, _ = await asyncio.wait({self.receiving}, timeout=timeout)
        if not done:
            return None
        received, self.receiving = self.receiving, None
        try:
            return received.result()
        except Exception:
            # The layer failed (Redis restarting, say): the database poll carries on.
            logger.warning("%s: the channel layer failed; polling", self.group, exc_info=True)
            await asyncio.sleep(timeout)
            return None


async def _run_status(run_id) -> str | None:
    """The run's status; None once it is deleted (with its thread, say)."""
    return await Run.objects.filter(pk=run_id).values_list("status", flat=True).afirst()


def _pushed_status(run_id, message: dict | None) -> str | None:
    """The status a push to the run's group says the run now has, or None when it says
    nothing sure of it: no push (a silence or a layer failure), a push of an event, a
    deletion, or a change without a status. Those are read from the database."""
    if message is None:
        return None
    event = message.get("event") or {}
    if event.get("type") != "state.changed" or event.get("entity") != "run":
        return None
    if event.get("id") != str(run_id) or event.get("kind") == "deleted":
        return None
    return event.get("status")


def _may_have_ended(message: dict | None) -> bool:
    """Whether a push to the run's group may mean it ended: a change of the run's state
    (its events come before it, while it still runs) or no push at all (a poll)."""
    if message is None:
        return True
    event = message.get("event") or {}
    return event.get("type") == "state.changed" and event.get("entity") == "run"


async def _until_finished(run_id, events: RunEvents):
    """While the run has not finished, yields after each wait: True when it passed
    without a push (POLL_S). Ends once its status is final or it is deleted.

    A change of the run's state is decided from the status its push carries; the
    database is read at the start, after a wait without a push, and for a change that
    carries no status (a deletion), not at each of the run's events (they come first,
    then the change). A push that arrives out of order can only delay the end by one
    wait: a final status is never undone, and a silence reads the database.
    """
    status = await _db(_run_status, run_id)
    while status is not None and status not in Run.FINAL_STATUSES:
        message = await events.wait(POLL_S)
        yield message is None
        pushed = _pushed_status(run_id, message)
        if pushed is not None:
            status = pushed
        elif _may_have_ended(message):
            status = await _db(_run_status, run_id)


async def wait_for_end(run_id, timeout: float) -> None:
    """Until the run has finished (or is deleted), at most about ``timeout`` seconds,
    without holding a thread. DatabaseLost if the database stays away."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with RunEvents(run_id) as events:
        async for _ in _until_finished(run_id, events):
            if loop.time() >= deadline:
                return


# --- waiting: /wait and /join -------------------------------------------------------


def _run_with_thread(run_id):
    return Run.objects.select_related("thread").filter(pk=run_id)


async def _final_output(run_id) -> Json:
    """What /wait and /join return: the thread's values, or the run's error."""

    @sync_to_async
    def read():
        run = one_row(_run_with_thread, connection).fetch(run_id)
        if run is None:
            return {"__error__": _deleted(run_id)}
        return output_of(run)

    return await read()


def output_of(run: Run) -> Json:
    """_final_output's answer for the finished ``run``, with its thread loaded."""
    if run.status in (Run.Status.ERROR, Run.Status.TIMEOUT):
        kind, _, message = run.error.partition(": ")
        return {"__error__": {"error": kind or run.status, "message": message or run.error}}
    thread = run.thread
    values = dict(thread.values or {}) if isinstance(thread.values, dict) else {}
    if thread.interrupts:
        values["__interrupt__"] = [
            {"value": i.get("value"), "id": i.get("id")} for i in thread.interrupts
        ]
    return values


async def _wait_body(run_id, execution: asyncio.Future | None = None):
    """Whitespace keep-alives while the run runs, then the JSON result. With
    ``execution`` (execute_here's), the run's end and output are known when it returns;
    a run sent to the workers instead is followed."""
    heartbeat = settings.STATEHOUSE_SSE_HEARTBEAT_S
    try:
        outcome = finished = None
        if execution is not None:
            while not execution.done():
                await asyncio.wait({execution}, timeout=heartbeat)
                if not execution.done():
                    yield b"\n"
            outcome, finished = execution.result()
        if finished is not None:
            yield json.dumps(output_of(finished), default=str).encode()
            return
        if outcome not in (*Run.FINAL_STATUSES, "deleted"):
            async with RunEvents(run_id) as events:
                waited = 0.0
                async for idle in _until_finished(run_id, events):
                    waited = waited + POLL_S if idle else 0.0
                    if waited >= heartbeat:
                        waited = 0.0
                        yield b"\n"
        body = await _db(_final_output, run_id)
    except DatabaseLost:
        body = {"__error__": _lost(run_id)}
    yield json.dumps(body, default=str).encode()


# Runs executed by this process, kept until done (the loop holds tasks weakly): a client
# that goes away does not stop its run (on_disconnect "cancel" cancels it).
_executing: set[asyncio.Future] = set()


def execute_here(run: Run) -> asyncio.Future:
    """Start executing ``run`` (created claimed for this process, a slot reserved for
    it) in this process (threads_app/inprocess.py); its outcome once done."""
    from threads_app import inprocess

    execution = asyncio.wrap_future(inprocess.start(run))
    _executing.add(execution)
    execution.add_done_callback(_executing.discard)
    return execution


def locations(run: Run, tail: str = "") -> dict[str, str]:
    """The run's ``Content-Location`` (and ``Location``: the run's path and ``tail``)."""
    path = f"/threads/{run.thread_id}/runs/{run.pk}"
    headers = {"Content-Location": path}
    if tail:
        headers["Location"] = path + tail
    return headers


def with_headers(response, headers: dict[str, str]):
    for key, value in headers.items():
        response[key] = value
    return response


def wait_response(
    request, run: Run, cancel: bool, execution: asyncio.Future | None = None
) -> StreamingHttpResponse:
    """The run's final output (as /join answers it) once it ends; with ``cancel``, the
    run is cancelled if the client goes away first. ``execution``: execute_here's, for
    a run this process executes."""
    body = _cancel_when_gone(_wait_body(run.pk, execution), request, run, cancel)
    response = StreamingHttpResponse(body, content_type="application/json")
    return with_headers(response, locations(run, "/join"))


# Cancels started for clients gone away, kept until done (the loop holds tasks weakly).
_cancelling: set[asyncio.Task] = set()


async def _cancel_when_gone(body, request, run: Run, cancel: bool):
    """``body``; with ``cancel`` (on_disconnect "cancel"), the run is cancelled when its
    client goes away before the body ends (the server closes or cancels the iteration)."""
    ended = False
    try:
        async for part in body:
            yield part
        ended = True
    finally:
        if cancel and not ended:
            task = asyncio.ensure_future(sync_to_async(_cancel_gone)(run.pk, request.auth))
            _cancelling.add(task)
            task.add_done_callback(_cancelling.discard)


def _cancel_gone(run_id, actor) -> None:
    try:
        services.cancel_run(run_id, action="interrupt", actor=actor)
    except (services.RunFinished, state.EntityNotFound):
        return  # it ended (or was deleted) meanwhile
    logger.info("run %s: cancelled, its client went away (on_disconnect=cancel)", run_id)


# --- a run's stream -----------------------------------------------------------------


async def _events_after(run_id, last_id) -> list[RunEvent]:
    query = RunEvent.objects.filter(run_id=run_id, seq__gt=last_id).order_by("seq")[:500]
    return [e async for e in query]


async def _last_seq(run_id) -> int:
    last = await RunEvent.objects.filter(run_id=run_id).aaggregate(last=Max("seq"))
    return last["last"] or 0


async def _more(run_id, last_id) -> bool:
    return await RunEvent.objects.filter(run_id=run_id, seq__gt=last_id).aexists()


async def _event_stream(run_id, modes: list[str], last_id: int | None, subgraphs: bool):
    """The run's events as SSE after ``last_id`` (None: those logged from now on) until
    it ends, with heartbeats. Like LangGraph Server's, the stream just closes at the
    run's end (no end event); a failed run's last event is its ``error``.

    Ends with an ``error`` event when the database stays unreachable (see _db)."""
    wanted = _wanted(modes)
    accumulator = MessageAccumulator()
    heartbeat = settings.STATEHOUSE_SSE_HEARTBEAT_S
    try:
        async with RunEvents(run_id) as feed:
            if last_id is None:
                last_id = await _db(_last_seq, run_id)
            idle = 0.0
            while True:
                events = await _db(_events_after, run_id, last_id)
                for event in events:
                    last_id = event.seq
                    if event.event == "end":
                        return
                    if event.event not in wanted or (event.namespace and not subgraphs):
                        continue
                    if event.event == "error":
                        yield sse("error", _error_data(event), event.seq)
                        return
                    for name, data in _frames(event, modes, accumulator):
                        yield sse(name, data, event.seq)
                if events:
                    idle = 0.0
                    continue
                status = await _db(_run_status, run_id)
                if status is None:
                    yield sse("error", _deleted(run_id))
                    return
                if status in Run.FINAL_STATUSES and not await _db(_more, run_id, last_id):
                    return
                if await feed.wait(POLL_S) is None:
                    idle += POLL_S
                    if idle >= heartbeat:
                        idle = 0.0
                        yield b": heartbeat\n\n"
    except DatabaseLost:
        yield sse("error", _lost(run_id, last_id))


def _event_stream_response(body) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"
    return response


def stream_response(request, run: Run, modes, last_id: int | None, subgraphs: bool, cancel: bool):
    """The run's stream; every event carries its id (every run's log is kept, so every
    stream can be joined again after a drop from ``Last-Event-ID``)."""
    body = _cancel_when_gone(_event_stream(run.pk, modes, last_id, subgraphs), request, run, cancel)
    return with_headers(_event_stream_response(body), locations(run, "/stream"))


def _last_event_id(request) -> int | None:
    """Where a join starts: after the event with the ``Last-Event-ID`` given, or (None)
    at the events to come when there is none, or it is not one of Statehouse's ids (as
    LangGraph Server, which replays nothing then). ``-1`` and ``0``: from the start."""
    raw = (request.headers.get("Last-Event-ID") or "").strip()
    try:
        return max(int(raw), 0)
    except ValueError:
        return None


@router.get(
    "/threads/{thread_id}/runs/{run_id}/join",
    response={200: Json, 404: Detail, 422: Invalid},
    summary="Wait for a run",
)
async def join_run(request, thread_id: str, run_id: str, cancel_on_disconnect: bool = False):
    """The run's final output: the thread's values (with ``__interrupt__``), or
    ``{"__error__": {"error", "message"}}``; whitespace keeps the answer alive first."""
    run = await sync_to_async(get_run)(request, thread_id, run_id)
    return wait_response(request, run, cancel_on_disconnect)


@router.get(
    "/threads/{thread_id}/runs/{run_id}/stream",
    response={404: Detail, 422: Invalid},
    openapi_extra=EVENT_STREAM,
    summary="Join a run's stream",
)
async def join_stream(
    request,
    thread_id: str,
    run_id: str,
    stream_mode: str | None = None,
    cancel_on_disconnect: bool = False,
):
    run = await sync_to_async(get_run)(request, thread_id, run_id)
    modes = stream_mode.split(",") if stream_mode else (run.kwargs or {}).get("stream_mode")
    unknown = [mode for mode in stream_modes(modes) if mode not in STREAM_MODES]
    if unknown:
        raise HttpError(422, f"unsupported stream_mode {', '.join(unknown)}")
    subgraphs = bool((run.kwargs or {}).get("stream_subgraphs"))
    last_id = _last_event_id(request)
    return stream_response(
        request, run, stream_modes(modes), last_id, subgraphs, cancel_on_disconnect
    )


# --- a thread's stream --------------------------------------------------------------

# The thread-level stream's modes (LangGraph Server's ThreadStreamMode).
THREAD_STREAM_MODES = ("run_modes", "lifecycle", "state_update")


def _thread_stream_modes(request) -> list[str]:
    """``stream_modes`` (what LangGraph Server reads) or ``stream_mode`` (what the SDKs
    send), repeated or comma-separated; ``run_modes`` by default."""
    values = request.GET.getlist("stream_modes") or request.GET.getlist("stream_mode")
    modes = [mode.strip() for value in values for mode in value.split(",") if mode.strip()]
    for mode in modes:
        if mode not in THREAD_STREAM_MODES:
            raise HttpError(422, f"Invalid stream mode: {mode}")
    if "state_update" in modes:
        raise HttpError(
            422,
            "stream mode state_update is not supported: Statehouse does not stream a "
            "thread's state updates (read GET /threads/{thread_id}/state instead)",
        )
    return modes or ["run_modes"]


def _thread_frames(event: RunEvent, modes: list[str], accumulators: dict):
    """What one logged event of a run on the thread becomes in the thread's stream:
    with ``run_modes`` every event the run streams, with ``lifecycle`` its start and
    end; a run's end is ``metadata {"status": "run_done", "run_id"}``."""
    run_modes = (event.run.kwargs or {}).get("stream_mode") or ["values"]
    if event.event in ("end", "error"):
        frames = []
        if event.event == "error" and "run_modes" in modes:
            frames.append(("error", _error_data(event)))
        return [*frames, ("metadata", {"status": "run_done", "run_id": str(event.run_id)})]
    if event.event == "metadata":
        return [("metadata", {"run_id": str(event.run_id), "attempt": event.attempt})]
    if "run_modes" not in modes or event.event not in _wanted(run_modes) - {"metadata"}:
        return []
    subgraphs = bool((event.run.kwargs or {}).get("stream_subgraphs"))
    if event.namespace and not subgraphs:
        return []
    accumulator = accumulators.setdefault(event.run_id, MessageAccumulator())
    return _frames(event, run_modes, accumulator)


async def _thread_events_after(thread_id, last_id) -> list[RunEvent]:
    query = (
        RunEvent.objects.filter(run__thread_id=thread_id, id__gt=last_id)
        .select_related("run")
        .order_by("id")[:500]
    )
    return [e async for e in query]


async def _thread_last_id(thread_id) -> int:
    last = await RunEvent.objects.filter(run__thread_id=thread_id).aaggregate(last=Max("id"))
    return last["last"] or 0


async def _thread_exists(thread_id) -> bool:
    return await Thread.objects.filter(pk=thread_id).aexists()


async def _thread_stream(thread_id, modes: list[str], last_id: int | None):
    """The thread's runs' events as SSE, ids the log's own (one sequence across the
    thread's runs), until the client goes away or the thread is deleted."""
    accumulators: dict = {}
    heartbeat = settings.STATEHOUSE_SSE_HEARTBEAT_S
    try:
        async with RunEvents(None, group=f"thread.{thread_id}") as feed:
            if last_id is None:
                last_id = await _db(_thread_last_id, thread_id)
            idle = 0.0
            while True:
                events = await _db(_thread_events_after, thread_id, last_id)
                for event in events:
                    last_id = event.id
                    for name, data in _thread_frames(event, modes, accumulators):
                        yield sse(name, data, event.id)
                if events:
                    idle = 0.0
                    continue
                if not await _db(_thread_exists, thread_id):
                    yield sse("error", {"error": "ThreadDeleted", "message": "thread deleted"})
                    return
                if await feed.wait(POLL_S) is None:
                    idle += POLL_S
                    if idle >= heartbeat:
                        idle = 0.0
                        yield b": heartbeat\n\n"
    except DatabaseLost:
        yield sse("error", _lost(thread_id, last_id))


@router.get(
    "/threads/{thread_id}/stream",
    response={404: Detail, 422: Invalid},
    openapi_extra=EVENT_STREAM,
    summary="Join a thread's stream",
)
async def join_thread_stream(request, thread_id: str):
    """Every run's events on the thread, live (or from ``Last-Event-ID``), as LangGraph
    Server's thread stream: ``run_modes`` (the default) and ``lifecycle``."""
    thread = await sync_to_async(get_thread)(request, thread_id)
    modes = _thread_stream_modes(request)
    raw = (request.headers.get("Last-Event-ID") or "").strip()
    last_id = None
    if raw:
        try:
            last_id = max(int(raw), 0)
        except ValueError:
            raise HttpError(422, f"Invalid last-event-id: {raw!r} is not an event id") from None
    return _event_stream_response(_thread_stream(thread.pk, modes, last_id))
