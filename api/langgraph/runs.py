"""LangGraph Server's runs: created on a thread or stateless (in the background, streamed
or waited for), in batches; listed, read, cancelled and deleted."""

import re
import uuid
from typing import Any, Literal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.http import HttpResponse
from ninja import Query, Router, Schema, Status
from ninja.errors import HttpError
from ninja.schema import DjangoGetter
from pydantic import Field, model_validator

from api.common import (
    MAX_INT,
    Detail,
    Invalid,
    Json,
    Strict,
    Time,
    get_run,
    get_thread,
    page_size,
)
from api.langgraph.streaming import (
    EVENT_STREAM,
    execute_here,
    locations,
    stream_modes,
    stream_response,
    wait_for_end,
    wait_response,
    with_headers,
)
from threads_app import inprocess, services
from threads_app.models import Run, Thread

router = Router()

# LangGraph Server's answer when nothing it was asked to cancel is pending or running.
NO_RUNS_TO_CANCEL = (
    "No matching runs to cancel. Please verify the thread ID and run IDs are correct, "
    "and the runs haven't been deleted or completed."
)


class CommandIn(Strict):
    resume: Any = None
    update: Any = None
    goto: Any = None


class RunCreate(Strict):
    assistant_id: str
    input: Any = None
    command: CommandIn | None = None
    config: Json | None = None
    context: Json | None = None
    metadata: Json | None = None
    stream_mode: str | list[str] = "values"
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    checkpoint_id: str | None = None
    checkpoint: Json | None = None
    multitask_strategy: Literal["reject", "interrupt", "rollback", "enqueue"] = "enqueue"
    if_not_exists: Literal["create", "reject"] = "reject"
    after_seconds: float | None = Field(default=None, ge=0)
    on_completion: Literal["delete", "keep"] | None = None
    # What a stream does when its client goes away: "cancel" the run or let it
    # "continue" (to be joined again). Stored with the run (see the README).
    on_disconnect: Literal["cancel", "continue"] | None = None
    # How often LangGraph stores checkpoints; checkpoint_during is the older spelling
    # (true: "async", false: "exit"). Statehouse's default is "sync".
    durability: Literal["sync", "async", "exit"] | None = None
    checkpoint_during: bool | None = None
    feedback_keys: list[str] | None = None


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


class BatchRunCreate(RunCreate):
    """One run of ``POST /runs/batch``. The JavaScript SDK's ``createBatch`` sends each
    payload with its camelCase keys as given (``assistantId``, ``onCompletion``...) plus
    ``assistant_id``; those keys are read as the fields they spell, rather than refused
    as unknown (LangGraph Server ignores them, dropping what they ask for)."""

    @model_validator(mode="before")
    @classmethod
    def read_camel_case_keys(cls, data: Any) -> Any:
        if isinstance(data, DjangoGetter):  # how ninja's Schema hands the body over
            data = data._obj
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        read, spelled = {}, {}
        for key, value in data.items():
            name = key if key in fields else _snake_case(key)
            name = name if name in fields else key
            if name in read and read[name] != value:
                raise ValueError(f"{spelled[name]} and {key} disagree; give one of them")
            read[name], spelled[name] = value, key
        return read


class RunsCancel(Strict):
    thread_id: str | None = None
    run_ids: list[str] | None = None
    status: Literal["pending", "running", "all"] | None = None


class RunOut(Schema):
    """A run, as LangGraph Server answers one: ``kwargs`` holds what it was asked to do."""

    run_id: uuid.UUID
    thread_id: uuid.UUID
    assistant_id: uuid.UUID | None
    created_at: Time
    updated_at: Time
    status: Run.Status
    metadata: Json
    multitask_strategy: str
    kwargs: Json

    @staticmethod
    def resolve_run_id(run: Run) -> uuid.UUID:
        return run.pk

    @staticmethod
    def resolve_assistant_id(run: Run) -> uuid.UUID | None:
        return run.workflow_id

    @staticmethod
    def resolve_kwargs(run: Run) -> Json:
        return {
            "input": run.input,
            "command": run.command,
            "config": run.config,
            **{k: v for k, v in (run.kwargs or {}).items() if k != "timeout_s"},
        }


# --- creating runs ------------------------------------------------------------------


def _run_options(body: RunCreate) -> Json:
    """The run fields Statehouse keeps with the run (its kwargs) as given."""
    if body.durability is not None and body.checkpoint_during is not None:
        raise HttpError(422, "give durability or checkpoint_during, not both")
    durability = body.durability
    if body.checkpoint_during is not None:
        durability = "async" if body.checkpoint_during else "exit"
    options = {
        "on_disconnect": body.on_disconnect,
        "stream_resumable": body.stream_resumable,
        "durability": durability,
        "feedback_keys": body.feedback_keys,
        "on_completion": body.on_completion,
    }
    return {key: value for key, value in options.items() if value is not None}


def _start_run(
    request, thread: Thread | uuid.UUID, body: RunCreate, claim_for: str | None = None
) -> Run:
    """The run, on the caller's thread (a Thread or its id) and assistant: create_run
    reads both, and answers 404 for those the caller may not see. ``claim_for``: see
    services.create_run."""
    command = body.command.model_dump(exclude_none=True) if body.command else None
    checkpoint_id = body.checkpoint_id or (body.checkpoint or {}).get("checkpoint_id")
    # useStream resumes with {"input": {}, "command": {...}}: an empty input is no input.
    graph_input = None if command is not None and body.input in ({}, None) else body.input
    return services.create_run(
        thread,
        workflow=body.assistant_id,
        input=graph_input,
        command=command,
        config=body.config,
        context=body.context,
        metadata=body.metadata,
        stream_mode=body.stream_mode,
        stream_subgraphs=body.stream_subgraphs,
        interrupt_before=body.interrupt_before,
        interrupt_after=body.interrupt_after,
        checkpoint_id=checkpoint_id,
        multitask_strategy=body.multitask_strategy,
        after_seconds=body.after_seconds,
        extra_kwargs=_run_options(body),
        actor=request.auth,
        user=request.auth,
        claim_for=claim_for,
    )


def _create_run(
    request, thread_id: str | None, body: RunCreate, claim_for: str | None = None
) -> Run:
    """The run on the caller's thread ``thread_id``, or on a thread created for it (a
    stateless run's own, when ``thread_id`` is None, or ``if_not_exists: "create"``);
    sent to the workers, or with ``claim_for`` created claimed by it if it can start
    now (see _wait).

    A created thread (and its session) commits with the run or not at all: a request
    that fails validation writes nothing.
    """
    if thread_id is not None:
        try:
            pk = uuid.UUID(thread_id)
        except ValueError:
            pk = None
        if pk is not None:
            try:
                return _start_run(request, pk, body, claim_for)
            except services.ThreadNotFound:
                pass
        if body.if_not_exists != "create":
            raise HttpError(404, f"Thread {thread_id} not found")
        if pk is None:
            raise HttpError(422, "thread_id must be a UUID")
    metadata = {}
    if thread_id is None and body.on_completion != "keep":
        metadata["temporary"] = True  # deleted after the run finishes
    with transaction.atomic():
        # Another owner's thread of that id is not found (never said to exist).
        thread = services.create_thread_for(
            request.auth, thread_id, metadata, run_workflow=body.assistant_id
        )
        return _start_run(request, thread, body, claim_for)


@sync_to_async
def _create_followed_run(
    request, thread_id: str | None, body: RunCreate, claim_for: str | None = None
):
    """_create_run for a request that then follows the run (waits for it or streams it).
    Its database connection goes back to the pool at once rather than when the response
    ends: a request waiting on a run would otherwise hold one for as long as the run
    goes, and with runs executed by the server (inprocess) the waits could take every
    connection the runs need."""
    try:
        return _create_run(request, thread_id, body, claim_for)
    finally:
        if not connection.in_atomic_block:  # a test's transaction stays open
            connection.close()


async def _wait(request, thread_id: str | None, body: RunCreate):
    """A waited run starting now is executed by this server process, not sent to the
    workers (threads_app/inprocess.py says why and what keeps it durable)."""
    here = not body.after_seconds and inprocess.reserve()
    claim_for = inprocess.claimant() if here else None
    try:
        run = await _create_followed_run(request, thread_id, body, claim_for)
    except BaseException:
        if here:
            inprocess.release()
        raise
    execution = None
    if here and run.status == Run.Status.RUNNING:
        execution = execute_here(run)
    elif here:
        inprocess.release()  # queued behind another run of its thread, whose end sends it
    return wait_response(request, run, body.on_disconnect == "cancel", execution)


CREATED = {200: RunOut, 404: Detail, 409: Detail, 422: Invalid, 429: Detail}
WAITED = {200: Json, 404: Detail, 409: Detail, 422: Invalid, 429: Detail}
STREAMED = {404: Detail, 409: Detail, 422: Invalid, 429: Detail}


@router.post("/threads/{thread_id}/runs", response=CREATED, summary="Create a background run")
def create_run(request, thread_id: str, body: RunCreate, response: HttpResponse):
    run = _create_run(request, thread_id, body)
    with_headers(response, locations(run))
    return run


@router.get(
    "/threads/{thread_id}/runs",
    response={200: list[RunOut], 404: Detail, 422: Invalid},
    summary="List a thread's runs",
)
def list_runs(
    request,
    thread_id: str,
    limit: int = Query(10, ge=1, le=MAX_INT),
    offset: int = Query(0, ge=0, le=MAX_INT),
    status: Literal["pending", "running", "success", "error", "timeout", "interrupted"]
    | None = None,
):
    thread = get_thread(request, thread_id)
    runs = thread.runs.order_by("-created_at")
    if status:
        runs = runs.filter(status=status)
    return runs[offset : offset + page_size(limit)]


# Before /threads/{thread_id}/runs/{run_id}, which would take "stream" and "wait" for ids.
@router.post(
    "/threads/{thread_id}/runs/stream",
    response=STREAMED,
    openapi_extra=EVENT_STREAM,
    summary="Create a run and stream it",
)
async def stream_run(request, thread_id: str, body: RunCreate):
    run = await _create_followed_run(request, thread_id, body)
    cancel = body.on_disconnect == "cancel"
    modes = stream_modes(body.stream_mode)
    return stream_response(request, run, modes, 0, body.stream_subgraphs, cancel)


@router.post(
    "/threads/{thread_id}/runs/wait", response=WAITED, summary="Create a run and wait for it"
)
async def wait_run(request, thread_id: str, body: RunCreate):
    """The run's final output, as ``/join`` answers it."""
    return await _wait(request, thread_id, body)


@router.post("/runs", response=CREATED, summary="Create a stateless background run")
def create_stateless_run(request, body: RunCreate, response: HttpResponse):
    run = _create_run(request, None, body)
    with_headers(response, locations(run))
    return run


@router.post(
    "/runs/stream",
    response=STREAMED,
    openapi_extra=EVENT_STREAM,
    summary="Create a stateless run and stream it",
)
async def stream_stateless_run(request, body: RunCreate):
    run = await _create_followed_run(request, None, body)
    cancel = body.on_disconnect == "cancel"
    modes = stream_modes(body.stream_mode)
    return stream_response(request, run, modes, 0, body.stream_subgraphs, cancel)


@router.post("/runs/wait", response=WAITED, summary="Create a stateless run and wait for it")
async def wait_stateless_run(request, body: RunCreate):
    """The run's final output, as ``/join`` answers it."""
    return await _wait(request, None, body)


@router.post(
    "/runs/batch",
    response={200: list[RunOut], 404: Detail, 409: Detail, 422: Invalid, 429: Detail},
    summary="Create several stateless background runs",
)
def create_stateless_runs(request, body: list[BatchRunCreate]):
    """All of them or none: a refused one (a 4xx naming it) creates nothing."""
    if len(body) > settings.STATEHOUSE_API_MAX_LIMIT:
        raise HttpError(422, f"at most {settings.STATEHOUSE_API_MAX_LIMIT} runs in a batch")
    with transaction.atomic():
        return [_create_run(request, None, item) for item in body]


@router.post(
    "/runs/cancel",
    response={204: None, 404: Detail, 422: Invalid},
    summary="Cancel several runs",
)
def cancel_runs(request, body: RunsCancel, action: Literal["interrupt", "rollback"] = "interrupt"):
    """As LangGraph Server: either ``status`` (every pending and/or running run the caller
    may see) or ``thread_id`` with ``run_ids``. 404 when none of them can be cancelled."""
    if body.status is not None:
        if body.thread_id is not None or body.run_ids is not None:
            raise HttpError(422, "Cannot specify 'thread_id' or 'run_ids' when using 'status'")
        statuses = ["pending", "running"] if body.status == "all" else [body.status]
        runs = services.visible_runs(request.auth).filter(status__in=statuses)
    else:
        if body.thread_id is None or body.run_ids is None:
            raise HttpError(422, "Must provide either a status, or both 'thread_id' and 'run_ids'")
        thread = get_thread(request, body.thread_id)
        try:
            run_ids = [uuid.UUID(str(run_id)) for run_id in body.run_ids]
        except ValueError:
            raise HttpError(422, "Invalid run ID: must be a UUID") from None
        runs = thread.runs.filter(pk__in=run_ids)
    run_ids = list(runs.values_list("pk", flat=True)[: settings.STATEHOUSE_API_MAX_LIMIT])
    if not services.cancel_runs(run_ids, action=action, actor=request.auth):
        raise HttpError(404, NO_RUNS_TO_CANCEL)
    return Status(204, None)


# --- one run ------------------------------------------------------------------------


@router.get(
    "/threads/{thread_id}/runs/{run_id}", response={200: RunOut, 404: Detail}, summary="Get a run"
)
def read_run(request, thread_id: str, run_id: str):
    return get_run(request, thread_id, run_id)


@router.delete(
    "/threads/{thread_id}/runs/{run_id}",
    response={204: None, 404: Detail, 409: Detail},
    summary="Delete a finished run",
)
def delete_run(request, thread_id: str, run_id: str):
    run = get_run(request, thread_id, run_id)
    services.delete_run(run.pk, actor=request.auth)
    return Status(204, None)


@router.post(
    "/threads/{thread_id}/runs/{run_id}/cancel",
    response={202: None, 204: None, 404: Detail, 422: Invalid},
    summary="Cancel a run",
)
async def cancel_run(
    request,
    thread_id: str,
    run_id: str,
    wait: bool = False,
    action: Literal["interrupt", "rollback"] = "interrupt",
):
    """202 once asked; with ``wait``, 204 once the run has stopped (or after 60 s)."""
    run = await sync_to_async(get_run)(request, thread_id, run_id)
    try:
        await sync_to_async(services.cancel_run)(run.pk, action=action, actor=request.auth)
    except services.RunFinished:
        raise HttpError(404, NO_RUNS_TO_CANCEL) from None
    if wait:
        await wait_for_end(run.pk, timeout=60)
        return Status(204, None)
    return Status(202, None)
