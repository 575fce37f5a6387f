"""Realistic data for the status pages: runs executed by a real worker."""

import time

import pytest

from tests.factories import make_session
from threads_app import services
from threads_app.models import Run


def finished(run, timeout=60) -> Run:
    result = services.wait_for_run(run.pk, timeout=timeout)
    assert result.status in Run.FINAL_STATUSES, f"run still {result.status}"
    return result


def wait_until(predicate, what="a condition", timeout=30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def new_thread(owner, graph_id, title="Support chat"):
    return services.create_thread(
        make_session(owner, title=title), services.resolve_workflow(graph_id)
    )


@pytest.fixture
def pipeline_thread(alice, celery_worker):
    """A pipeline thread whose 3-step run succeeded, streaming its step count."""
    thread = new_thread(alice, "pipeline", title="Nightly import")
    finished(services.create_run(thread, input={"steps": 3}, stream_mode=["values", "custom"]))
    thread.refresh_from_db()
    return thread


@pytest.fixture
def waiting_thread(alice, celery_worker):
    """An approval thread waiting for a human to approve its draft."""
    thread = new_thread(alice, "approval", title="Refund request")
    finished(services.create_run(thread, input={"request": "refund order 1042"}))
    thread.refresh_from_db()
    assert thread.status == "interrupted"
    return thread


@pytest.fixture
def chat_thread(alice, celery_worker):
    """A chat thread after one conversation turn: messages, LLM calls, tokens and cost."""
    thread = new_thread(alice, "chat")
    finished(
        services.create_run(
            thread, input={"messages": [{"role": "user", "content": "Where is order 1042?"}]}
        )
    )
    thread.refresh_from_db()
    return thread
