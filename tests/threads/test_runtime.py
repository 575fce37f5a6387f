"""Each demo graph end to end through a real Celery worker, with history and checkpoints."""

import time
from datetime import timedelta

import pytest

from checkpoints_app.models import RestorePoint
from checkpoints_app.saver import DjangoSaver
from core.time import now
from history_app.models import StateEvent
from tests.factories import make_session
from threads_app import runtime, services
from threads_app.models import Run, RunEvent, Thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def thread(alice, celery_worker):
    session = make_session(alice)
    return services.create_thread(session, services.resolve_workflow("pipeline"))


def new_thread(alice, graph_id):
    session = make_session(alice)
    return services.create_thread(session, services.resolve_workflow(graph_id))


def finished(run, timeout=60):
    result = services.wait_for_run(run.pk, timeout=timeout)
    assert result.status in Run.FINAL_STATUSES, f"run still {result.status}"
    return result


def wait_until(predicate, timeout=30, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {message}")


def checkpoints(thread_id, run_id=None):
    config = {"configurable": {"thread_id": str(thread_id), "checkpoint_ns": ""}}
    filter = {"run_id": str(run_id)} if run_id else None
    return list(DjangoSaver().list(config, filter=filter))


def test_pipeline_runs_to_success_with_history_and_checkpoints(thread):
    run = services.create_run(thread, input={"steps": 3}, stream_mode=["values", "custom"])

    run = finished(run)

    assert run.status == "success"
    assert run.attempt == 1
    assert run.started_at and run.finished_at
    thread.refresh_from_db()
    assert thread.status == "idle"
    assert thread.values["completed_steps"] == [1, 2, 3]
    assert thread.completed_at is not None
    statuses = [
        e.new.get("status")
        for e in StateEvent.objects.filter(entity_id=run.pk).order_by("id")
        if e.new and "status" in e.new
    ]
    assert statuses == ["pending", "running", "success"]
    thread_statuses = [
        e.new["status"]
        for e in StateEvent.objects.filter(entity_id=thread.pk, kind="updated").order_by("id")
        if "status" in e.changed_fields
    ]
    assert thread_statuses == ["busy", "idle"]
    assert RestorePoint.objects.filter(thread_id=thread.pk).count() == 1
    assert len(checkpoints(thread.pk, run.pk)) >= 4
    session = thread.session
    session.refresh_from_db()
    assert session.threads_by_status == {"idle": 1}


def test_the_event_log_has_increasing_ids_and_every_requested_mode(thread):
    run = finished(
        services.create_run(thread, input={"steps": 2}, stream_mode=["updates", "custom"])
    )

    events = list(RunEvent.objects.filter(run=run).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = [e.event for e in events]
    assert kinds[0] == "metadata"
    assert kinds[-1] == "end"
    assert kinds.count("custom") == 2
    assert [e.data for e in events if e.event == "custom"] == [
        {"step": 1, "of": 2},
        {"step": 2, "of": 2},
    ]
    assert kinds.count("updates") == 2
    assert "values" not in kinds  # not requested
    assert [e.data["step"] for e in events if e.event == "progress"] == [1, 2]


def test_a_run_records_its_graphs_progress_even_without_the_custom_mode(thread):
    from control_room.views.threads import run_progress

    run = finished(services.create_run(thread, input={"steps": 3}))  # stream_mode: values

    assert run.kwargs.get("stream_mode") in (None, ["values"])
    custom = RunEvent.objects.filter(run=run, event="custom").order_by("seq")
    assert [e.data for e in custom] == [{"step": i, "of": 3} for i in (1, 2, 3)]
    progress = run_progress(run)
    assert (progress["step"], progress["of"], progress["percent"]) == (3, 3, 100)


def test_chat_calls_its_tool_and_answers(alice, celery_worker):
    thread = new_thread(alice, "chat")

    run = finished(
        services.create_run(
            thread,
            input={"messages": [{"role": "user", "content": "Where is order 1042?"}]},
            stream_mode=["messages-tuple", "values"],
        )
    )

    assert run.status == "success", run.error
    thread.refresh_from_db()
    messages = thread.values["messages"]
    assert [m["type"] for m in messages] == ["human", "ai", "tool", "ai"]
    assert messages[1]["tool_calls"][0]["name"] == "lookup_order"
    assert "arrives tomorrow" in messages[-1]["content"]
    assert RunEvent.objects.filter(run=run, event="messages").exists()


def test_approval_interrupts_and_resumes_with_a_command(alice, celery_worker):
    thread = new_thread(alice, "approval")

    first = finished(services.create_run(thread, input={"request": "refund order 1042"}))

    assert first.status == "success"  # interrupt() ends the run as success
    thread.refresh_from_db()
    assert thread.status == "interrupted"
    [pending] = thread.interrupts
    assert pending["id"]
    assert pending["value"]["question"].startswith("Approve")
    assert "refund order 1042" in pending["value"]["draft"]

    second = finished(
        services.create_run(
            thread, command={"resume": {"action": "edit", "draft": "Approved text"}}
        )
    )

    assert second.status == "success", second.error
    thread.refresh_from_db()
    assert thread.status == "idle"
    assert thread.interrupts == []
    assert thread.values["final"] == "Approved text"
    assert thread.values["reviewer_note"] == "edited"


def test_interrupt_before_pauses_the_thread(alice, celery_worker):
    thread = new_thread(alice, "approval")

    run = finished(services.create_run(thread, input={"request": "x"}, interrupt_before=["review"]))

    assert run.status == "success"
    thread.refresh_from_db()
    assert thread.status == "interrupted"
    assert "draft" in thread.values


def _running(run):
    wait_until(lambda: Run.objects.get(pk=run.pk).status == "running", message="run to start")
    wait_until(
        lambda: RunEvent.objects.filter(run=run, event="progress").exists(),
        message="a first step",
    )


def test_cancel_interrupt_stops_at_a_step_boundary_and_keeps_checkpoints(thread):
    run = services.create_run(thread, input={"steps": 200, "delay_s": 0.05})
    _running(run)

    services.cancel_run(run.pk, action="interrupt", actor="ops")
    run = finished(run)

    assert run.status == "interrupted"
    thread.refresh_from_db()
    done = thread.values["completed_steps"]
    assert 0 < len(done) < 200
    assert done == list(range(1, len(done) + 1))
    assert thread.status == "idle"
    assert len(checkpoints(thread.pk, run.pk)) > 1


def test_cancel_rollback_removes_the_runs_checkpoints_and_the_run(thread):
    first = finished(services.create_run(thread, input={"steps": 2}))
    before = checkpoints(thread.pk)
    run = services.create_run(thread, input={"steps": 200, "delay_s": 0.05})
    _running(run)

    services.cancel_run(run.pk, action="rollback")

    assert services.wait_for_run(run.pk) is None  # deleted, as LangGraph Server does
    assert not Run.objects.filter(pk=run.pk).exists()
    assert checkpoints(thread.pk, run.pk) == []
    assert len(checkpoints(thread.pk)) == len(before)
    thread.refresh_from_db()
    assert thread.values["completed_steps"] == [1, 2]
    assert first.status == "success"


def test_cancelling_a_pending_run_cancels_it_at_once(thread):
    run = services.create_run(thread, input={"steps": 1}, after_seconds=30)

    services.cancel_run(run.pk)

    run.refresh_from_db()
    assert run.status == "interrupted"
    with pytest.raises(services.RunFinished):
        services.cancel_run(run.pk)


def test_reject_refuses_a_second_run_on_a_busy_thread(thread):
    run = services.create_run(thread, input={"steps": 200, "delay_s": 0.05})
    _running(run)

    with pytest.raises(services.RunRejected, match="busy"):
        services.create_run(thread, input={"steps": 1}, multitask_strategy="reject")

    assert Run.objects.filter(thread=thread).count() == 1
    services.cancel_run(run.pk)
    finished(run)


def test_enqueue_runs_the_second_run_after_the_first(thread):
    first = services.create_run(thread, input={"steps": 3, "delay_s": 0.05})
    second = services.create_run(thread, input={"steps": 2})

    first, second = finished(first), finished(second)

    assert first.status == second.status == "success"
    assert second.started_at >= first.finished_at


def test_interrupt_strategy_cancels_the_running_run(thread):
    first = services.create_run(thread, input={"steps": 200, "delay_s": 0.05})
    _running(first)

    second = services.create_run(thread, input={"steps": 2}, multitask_strategy="interrupt")

    first, second = finished(first), finished(second)
    assert first.status == "interrupted"
    assert second.status == "success"
    assert len(checkpoints(thread.pk, first.pk)) > 0


def test_rollback_strategy_removes_the_first_runs_checkpoints(thread):
    first = services.create_run(thread, input={"steps": 200, "delay_s": 0.05})
    _running(first)

    second = services.create_run(thread, input={"steps": 2}, multitask_strategy="rollback")

    second = finished(second)
    assert services.wait_for_run(first.pk) is None  # the rolled-back run is deleted
    assert second.status == "success"
    assert checkpoints(thread.pk, first.pk) == []


def test_a_run_past_its_timeout_ends_as_timeout(thread):
    run = finished(
        services.create_run(thread, input={"steps": 200, "delay_s": 0.05}, timeout_s=0.3)
    )

    assert run.status == "timeout"
    assert "timed out" in run.error
    thread.refresh_from_db()
    assert thread.status == "error"
    assert thread.failed_at is not None


def test_after_seconds_delays_the_start(thread):
    run = services.create_run(thread, input={"steps": 1}, after_seconds=1)

    run = finished(run)

    assert run.status == "success"
    assert (run.started_at - run.created_at).total_seconds() >= 1


def test_a_failing_graph_ends_the_run_and_thread_in_error(thread):
    # A step count the graph cannot finish within LangGraph's recursion limit.
    run = finished(services.create_run(thread, input={"steps": 40}, config={"recursion_limit": 5}))

    assert run.status == "error"
    assert "GraphRecursionError" in run.error
    thread.refresh_from_db()
    assert thread.status == "error"
    assert "GraphRecursionError" in thread.error
    assert RunEvent.objects.filter(run=run, event="error").exists()


def test_a_dead_workers_run_is_requeued_and_resumes_from_its_checkpoint(thread):
    """The sweeper hands a run whose lease expired to a live worker (attempt 2)."""
    run = services.create_run(thread, input={"steps": 3}, after_seconds=3600)
    # A worker claims it and dies before doing anything.
    Run.objects.filter(pk=run.pk).update(not_before=None)
    claimed = runtime.claim_run(run.pk, "dead-worker")
    assert claimed.status == "running"
    Run.objects.filter(pk=run.pk).update(lease_expires_at=now() - timedelta(seconds=1))

    assert runtime.sweep()["requeued"] == 1
    run = finished(run)

    assert run.status == "success"
    assert run.attempt == 2
    thread.refresh_from_db()
    assert thread.values["completed_steps"] == [1, 2, 3]


def test_a_run_that_keeps_losing_its_worker_gives_up(thread):
    run = services.create_run(thread, input={"steps": 1}, after_seconds=3600, max_attempts=1)
    Run.objects.filter(pk=run.pk).update(not_before=None)
    runtime.claim_run(run.pk, "dead-worker")
    Run.objects.filter(pk=run.pk).update(lease_expires_at=now() - timedelta(seconds=1))

    runtime.sweep()
    run = finished(run)

    assert run.status == "error"
    assert "gave up after 1 attempt" in run.error
    thread.refresh_from_db()
    assert thread.status == "error"


def test_an_expired_lease_is_not_stolen_twice(thread):
    run = services.create_run(thread, input={"steps": 1}, after_seconds=3600)
    Run.objects.filter(pk=run.pk).update(not_before=None)
    runtime.claim_run(run.pk, "dead-worker")
    assert runtime.claim_run(run.pk, "another-worker") is None


@pytest.mark.parametrize(
    "request_kwargs,message",
    [
        ({"workflow": "no-such-graph", "input": {"steps": 1}}, "no workflow or graph"),
        ({"input": {"steps": "three"}}, "input.steps"),
        ({"input": {"stepz": 3}}, "unknown key"),
        ({"input": {"delay_s": 1}}, "missing required key"),
        ({"input": [1, 2]}, "must be an object"),
        ({"command": {"resume": 1, "jump": "x"}}, "unknown key"),
        ({"command": "resume"}, "command must be an object"),
        ({"input": {"steps": 1}, "command": {"resume": 1}}, "not both"),
        ({"input": {"steps": 1}, "stream_mode": ["bogus"]}, "unsupported stream_mode"),
        ({"input": {"steps": 1}, "interrupt_before": ["nope"]}, "unknown node"),
        ({"input": {"steps": 1}, "multitask_strategy": "shove"}, "multitask_strategy"),
        ({"command": {"goto": "nowhere"}}, "command.goto names unknown node"),
        ({"command": {"goto": [{"node": "nowhere", "input": {}}]}}, "unknown node.*nowhere"),
        ({"command": {"goto": 3}}, "node name, a Send"),
        ({"command": {"resume": "yes"}}, "nothing to resume"),
        ({"input": {"steps": 1}, "checkpoint_id": "1ef0-nope"}, "has no checkpoint '1ef0-nope'"),
    ],
)
def test_bad_requests_are_refused_and_leave_no_run(thread, request_kwargs, message):
    with pytest.raises((services.InvalidRun, services.WorkflowNotFound), match=message):
        services.create_run(thread, **request_kwargs)

    assert not Run.objects.filter(thread=thread).exists()
    thread.refresh_from_db()
    assert thread.status == "idle"


def test_a_run_from_an_existing_checkpoint_or_with_a_known_goto_is_accepted(thread):
    first = finished(services.create_run(thread, input={"steps": 2}))
    assert first.status == "success"
    [*_, oldest] = checkpoints(thread.pk)

    again = services.create_run(
        thread, input={"steps": 1}, checkpoint_id=oldest.config["configurable"]["checkpoint_id"]
    )
    jump = services.create_run(thread, command={"goto": "step", "update": {"steps": 1}})

    assert finished(again).status == "success"
    assert finished(jump).status == "success"


def test_a_chat_run_records_its_llm_calls_messages_and_totals(alice, celery_worker):
    from decimal import Decimal

    from history_app.models import LLMCall, Message

    thread = new_thread(alice, "chat")

    run = finished(
        services.create_run(thread, input={"messages": [{"role": "user", "content": "Order?"}]})
    )

    assert run.status == "success", run.error
    calls = list(LLMCall.objects.filter(run=run).order_by("started_at"))
    assert [c.total_tokens for c in calls] == [107, 138]
    assert [c.cache_read_tokens for c in calls] == [0, 64]
    assert {c.model_name for c in calls} == {"gpt-4o-mini-2024-07-18"}
    assert {c.node for c in calls} == {"agent"}
    assert all(c.cost_source == "computed" and c.cost_total > 0 for c in calls)
    thread.refresh_from_db()
    session = thread.session
    session.refresh_from_db()
    assert thread.total_calls == session.total_calls == 2
    assert thread.total_tokens == session.total_tokens == 245
    assert session.total_cost == sum((c.cost_total for c in calls), Decimal(0))
    roles = list(
        Message.objects.filter(run=run).order_by("sequence").values_list("role", flat=True)
    )
    assert roles == ["user", "assistant", "tool", "assistant"]


def test_threads_of_stateless_runs_expire_after_their_ttl(alice, celery_worker, settings):
    session = make_session(alice)
    temporary = services.create_thread(
        session, services.resolve_workflow("pipeline"), metadata={"temporary": True}
    )
    kept = services.create_thread(session, services.resolve_workflow("pipeline"))
    for thread in (temporary, kept):
        finished(services.create_run(thread, input={"steps": 1}))

    settings.STATEHOUSE_TEMPORARY_THREAD_TTL_S = 3600
    assert runtime.sweep()["expired_threads"] == 0
    settings.STATEHOUSE_TEMPORARY_THREAD_TTL_S = 0
    assert runtime.sweep()["expired_threads"] == 1

    assert not Thread.objects.filter(pk=temporary.pk).exists()
    assert checkpoints(temporary.pk) == []
    assert Thread.objects.filter(pk=kept.pk).exists()


def test_a_new_thread_can_start_from_the_sessions_context(alice, celery_worker):
    first = new_thread(alice, "chat")
    finished(
        services.create_run(first, input={"messages": [{"role": "user", "content": "Order?"}]})
    )
    first.refresh_from_db()

    second = services.create_thread(
        first.session, services.resolve_workflow("chat"), from_session_context=True
    )

    second.refresh_from_db()
    carried = [m["content"] for m in second.values["messages"]]
    assert carried == [m["content"] for m in first.values["messages"]]
    assert second.metadata["started_from_session_context"] is True
    run = finished(
        services.create_run(second, input={"messages": [{"role": "user", "content": "And?"}]})
    )
    assert run.status == "success", run.error
    second.refresh_from_db()
    assert len(second.values["messages"]) == len(carried) + 4


def test_a_thread_without_a_workflow_cannot_start_from_context(alice):
    session = make_session(alice)
    with pytest.raises(services.InvalidRun, match="workflow"):
        services.create_thread(session, None, from_session_context=True)
    assert not Thread.objects.filter(session=session).exists()
