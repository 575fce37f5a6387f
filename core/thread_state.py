"""The thread fields that follow from its graph state: the cached values (capped) and,
when a state is written outside a run, the status.

threads_app.lifecycle decides every other change of a thread; this part is in the
kernel because checkpoints_app (restore, fork) writes it too and may not import
threads_app, so both write by these rules and neither keeps a copy of them.
"""

from typing import Any

from core.jsonable import to_jsonable
from core.metadata import json_size
from core.statuses import ThreadStatus

# The thread keeps its graph's latest values as a cache for pages and search; above this
# size only the checkpoints hold them.
MAX_THREAD_VALUES_BYTES = 256 * 1024


def cached_values(values: Any) -> Any:
    """``values`` as the thread keeps them: as JSON, or a note saying to read the
    checkpoint when they are larger than MAX_THREAD_VALUES_BYTES."""
    values = to_jsonable(values)
    if json_size(values) > MAX_THREAD_VALUES_BYTES:
        return {"__truncated__": True, "note": "too large to cache; read the checkpoint"}
    return values


def waiting_status(interrupts: list, pending: bool) -> ThreadStatus:
    """A thread that stopped with interrupts or nodes still to run waits (interrupted);
    otherwise it is idle."""
    return ThreadStatus.INTERRUPTED if interrupts or pending else ThreadStatus.IDLE


def written_state(
    values: Any, interrupts: list, pending: bool, *, keep_error: bool = False
) -> dict[str, Any]:
    """The thread's changes when its graph state is written outside a run (an update, a
    restore, a fork): its values, its interrupts and the status they imply. With
    ``keep_error``, a thread in error stays so unless the new state waits."""
    changes: dict[str, Any] = {"values": cached_values(values), "interrupts": interrupts}
    if not keep_error or interrupts or pending:
        changes["status"] = waiting_status(interrupts, pending)
    return changes
