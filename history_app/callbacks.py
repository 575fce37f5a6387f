"""Usage capture without touching user graphs: a LangChain callback handler.

The runtime passes ``UsageCallbackHandler(run_id, thread_id, session_id, user_id)`` in
``config["callbacks"]`` of every run; LangChain hands it every model call of the graph.
Each call is recorded when it ends (streaming included: LangChain merges the chunks and
their ``usage_metadata`` before ``on_llm_end``), with the node and step it ran in.

The handler never raises into the graph: whatever goes wrong is logged, and a call
whose usage cannot be read is recorded with what could be read, unpriced. It runs in
LangGraph's worker threads; a database connection it opens in such a thread is closed
after its write, so thread pools do not leak connections.
"""

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, router
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import ChatGeneration, LLMResult

from core.metadata import strip_nul
from core.time import now
from history_app import pricing
from history_app.models import LLMCall
from history_app.recording import CallRecord, record_llm_call

logger = logging.getLogger(__name__)


@dataclass
class _Start:
    at: datetime
    monotonic: float
    metadata: dict
    invocation: dict
    serialized_id: list


def _as_uuid(value) -> uuid.UUID | None:
    if value is None or value == "":
        return None
    if isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(value))


def _as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _jsonable(value: Any) -> Any:
    try:
        return strip_nul(json.loads(json.dumps(value, default=str)))
    except (TypeError, ValueError):
        return {"unreadable": repr(value)[:1000]}


class _Counts:
    """Reads token counts, remembering whether any was not a proper count."""

    def __init__(self):
        self.ok = True

    def __call__(self, mapping: Any, key: str) -> int:
        if not isinstance(mapping, dict):
            if mapping is not None:
                self.ok = False
            return 0
        value = mapping.get(key)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.ok = False
            return 0
        if value < 0 or value != value or value in (float("inf"), float("-inf")):
            self.ok = False
            return 0
        if isinstance(value, float) and not value.is_integer():
            self.ok = False
        return int(value)


def tokens_from_usage(usage: Any) -> tuple[pricing.Tokens, bool]:
    """LangChain ``usage_metadata`` as Tokens, and whether it was well-formed."""
    count = _Counts()
    if not isinstance(usage, dict):
        return pricing.Tokens(), False
    input_details = usage.get("input_token_details") or {}
    output_details = usage.get("output_token_details") or {}
    input_tokens = count(usage, "input_tokens")
    output_tokens = count(usage, "output_tokens")
    total = count(usage, "total_tokens") or input_tokens + output_tokens
    tokens = pricing.Tokens(
        input=input_tokens,
        output=output_tokens,
        total=total,
        cache_read=count(input_details, "cache_read"),
        cache_write=count(input_details, "cache_creation"),
        reasoning=count(output_details, "reasoning"),
        input_audio=count(input_details, "audio"),
        output_audio=count(output_details, "audio"),
        cache_write_5m=count(input_details, "ephemeral_5m_input_tokens"),
        cache_write_1h=count(input_details, "ephemeral_1h_input_tokens"),
    )
    ok = count.ok and "input_tokens" in usage and "output_tokens" in usage
    if tokens.cache_read + tokens.cache_write > tokens.input or tokens.reasoning > tokens.output:
        ok = False
    return tokens, ok


def _legacy_usage(llm_output: dict) -> dict | None:
    """OpenAI-style ``llm_output["token_usage"]`` as LangChain usage_metadata."""
    token_usage = llm_output.get("token_usage") or llm_output.get("usage")
    if not isinstance(token_usage, dict):
        return None
    if "prompt_tokens" not in token_usage and "input_tokens" not in token_usage:
        return None
    usage = {
        "input_tokens": token_usage.get("prompt_tokens", token_usage.get("input_tokens")),
        "output_tokens": token_usage.get("completion_tokens", token_usage.get("output_tokens")),
        "total_tokens": token_usage.get("total_tokens"),
    }
    if usage["total_tokens"] is None:
        usage.pop("total_tokens")
    return usage


def _add_usage(left: dict | None, right: dict) -> dict:
    if left is None:
        return right
    merged = dict(left)
    for key, value in right.items():
        if isinstance(value, dict):
            merged[key] = _add_usage(_as_dict(merged.get(key)), value)
        elif isinstance(value, int | float) and isinstance(merged.get(key), int | float):
            merged[key] = merged[key] + value
        else:
            merged.setdefault(key, value)
    return merged


class UsageCallbackHandler(BaseCallbackHandler):
    """Records every LLM call of a run (tokens, placement, cost) as it ends.

    ``run_id``, ``thread_id`` and ``session_id`` are Statehouse's ids (UUIDs or their
    strings); ``user_id`` is the user's primary key (the session's owner when None).
    """

    raise_error = False

    def __init__(self, run_id=None, thread_id=None, session_id=None, user_id=None):
        super().__init__()
        self.run_id = _as_uuid(run_id)
        self.thread_id = _as_uuid(thread_id)
        self.session_id = _as_uuid(session_id)
        self.user_id = getattr(user_id, "pk", user_id)
        self._starts: dict[uuid.UUID, _Start] = {}
        self._lock = threading.Lock()
        self.recorded = 0

    # --- LangChain events ---------------------------------------------------------------

    def on_chat_model_start(self, serialized, messages, *, run_id, **kwargs) -> None:
        self._start(serialized, run_id, kwargs)

    def on_llm_start(self, serialized, prompts, *, run_id, **kwargs) -> None:
        self._start(serialized, run_id, kwargs)

    def on_llm_error(self, error, *, run_id, **kwargs) -> None:
        with self._lock:
            self._starts.pop(run_id, None)

    def on_llm_end(self, response: LLMResult, *, run_id, parent_run_id=None, **kwargs) -> None:
        try:
            with self._lock:
                start = self._starts.pop(run_id, None)
            record = self._record(response, run_id, parent_run_id, start)
        except Exception:
            logger.exception("could not read LLM call %s; it is not recorded", run_id)
            return
        try:
            _write(lambda: record_llm_call(record))
            self.recorded += 1
        except Exception:
            logger.exception(
                "could not record LLM call %s of run %s (%s)",
                run_id,
                self.run_id,
                record.model_name,
            )

    # --- reading the call ---------------------------------------------------------------

    def _start(self, serialized, run_id, kwargs) -> None:
        try:
            start = _Start(
                at=now(),
                monotonic=time.monotonic(),
                metadata=dict(_as_dict(kwargs.get("metadata"))),
                invocation=dict(_as_dict(kwargs.get("invocation_params"))),
                serialized_id=list(_as_dict(serialized).get("id") or []),
            )
        except Exception:
            logger.exception("could not read the start of LLM call %s", run_id)
            return
        with self._lock:
            self._starts[run_id] = start

    def _record(self, response: LLMResult, run_id, parent_run_id, start: _Start | None):
        end_at = now()
        usage = None
        response_metadata: dict = {}
        for candidates in getattr(response, "generations", None) or []:
            for generation in candidates or []:
                message = getattr(generation, "message", None)
                if isinstance(generation, ChatGeneration) and message is not None:
                    if not response_metadata:
                        response_metadata = _as_dict(getattr(message, "response_metadata", None))
                    found = getattr(message, "usage_metadata", None)
                    if found:
                        # One prompt's usage is on its first candidate; prompts add up.
                        usage = _add_usage(usage, dict(found))
                        break
        llm_output = _as_dict(getattr(response, "llm_output", None))
        if usage is None:
            usage = _legacy_usage(llm_output)
        tokens, usage_ok = tokens_from_usage(usage)
        if usage is None:
            usage_ok = False  # the model reported no usage: its cost is unknown
        metadata = start.metadata if start else {}
        invocation = start.invocation if start else {}
        model_name = (
            response_metadata.get("model_name")
            or response_metadata.get("model")
            or llm_output.get("model_name")
            or llm_output.get("model")
            or invocation.get("model")
            or invocation.get("model_name")
            or metadata.get("ls_model_name")
            or ""
        )
        provider = (
            response_metadata.get("model_provider")
            or metadata.get("ls_provider")
            or (start.serialized_id[2] if start and len(start.serialized_id) > 3 else "")
            or ""
        )
        step = metadata.get("langgraph_step")
        started_at = start.at if start else end_at
        latency = None
        if start is not None:
            latency = max(0, round((time.monotonic() - start.monotonic) * 1000))
        reported = response_metadata.get("cost")
        if reported is None:
            reported = _as_dict(llm_output.get("token_usage")).get("cost")
        return CallRecord(
            lc_run_id=_as_uuid(run_id),
            lc_parent_run_id=_as_uuid(parent_run_id),
            session_id=self.session_id,
            thread_id=self.thread_id,
            run_id=self.run_id,
            user_id=self.user_id,
            node=str(metadata.get("langgraph_node") or ""),
            step=step if isinstance(step, int) and not isinstance(step, bool) else None,
            provider=str(provider),
            model_name=str(model_name),
            started_at=started_at,
            latency_ms=latency,
            tokens=tokens,
            usage=_jsonable(usage) if usage is not None else {},
            reported_cost=pricing.provider_cost(reported),
            usage_ok=usage_ok,
        )


def _write(fn):
    """Run a database write; close the connection after if this thread opened it.

    A connection that was open before (the runtime's own, maybe inside a transaction) is
    left alone; in the main thread (tests, management commands) too.
    """
    alias = router.db_for_write(LLMCall) or DEFAULT_DB_ALIAS
    connection = connections[alias]
    opened_here = connection.connection is None
    try:
        return fn()
    finally:
        if (
            opened_here
            and threading.current_thread() is not threading.main_thread()
            and not connection.in_atomic_block
        ):
            connection.close()
