"""History fixtures: a session with a thread and a run, fake chat models, the handler."""

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage

from core import state
from history_app.callbacks import UsageCallbackHandler
from tests.factories import make_session, make_thread, make_workflow

MODEL = "gpt-4o-2024-08-06"


def ai_message(
    content="Sure.",
    model=MODEL,
    provider="openai",
    input_tokens=1200,
    output_tokens=300,
    cache_read=200,
    reasoning=50,
    **extra,
):
    """An AIMessage as a provider integration returns it, with its usage."""
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "input_token_details": {"cache_read": cache_read},
        "output_token_details": {"reasoning": reasoning},
    }
    metadata = {"model_name": model}
    if provider:
        metadata["model_provider"] = provider
    return AIMessage(content=content, usage_metadata=usage, response_metadata=metadata, **extra)


def fake_model(*messages):
    return FakeMessagesListChatModel(responses=list(messages) or [ai_message()])


class Place:
    """A session, a thread in it and a run on that thread."""

    def __init__(self, owner, title="Support chat"):
        self.owner = owner
        self.session = make_session(owner, title)
        self.workflow = make_workflow("chat")
        self.thread = make_thread(self.session, self.workflow)
        self.run = self.new_run()

    def new_run(self, thread=None):
        return state.create_state(
            "run",
            {"thread": thread or self.thread, "workflow": self.workflow, "input": {}},
        )

    def handler(self, run=None, thread=None, user=True):
        run = run or self.run
        return UsageCallbackHandler(
            run_id=run.pk,
            thread_id=(thread or self.thread).pk,
            session_id=self.session.pk,
            user_id=self.owner.pk if user else None,
        )

    def config(self, **kwargs):
        return {"callbacks": [self.handler(**kwargs)]}


@pytest.fixture
def place(alice):
    return Place(alice)


@pytest.fixture(autouse=True)
def _quiet_pushes(mocker_push):
    """Live pushes are recorded, not sent (tests that check them read mocker_push)."""
    return mocker_push


def assert_totals_consistent():
    """Session and thread totals and both rollups equal the sums of the LLM calls."""
    from collections import defaultdict
    from decimal import Decimal

    from history_app.models import DailyModelUsage, DailySessionUsage, LLMCall
    from sessions_app.models import Session
    from threads_app.models import Thread

    calls = list(LLMCall.objects.all())
    zero = Decimal(0)

    def cost(call):
        return call.cost_total if call.cost_total is not None else zero

    sessions = defaultdict(lambda: [0, 0, 0, 0, zero])
    threads = defaultdict(lambda: [0, 0, zero])
    by_model = defaultdict(lambda: [0, 0, 0, 0, zero])
    by_session = defaultdict(lambda: [0, 0, 0, zero])
    for call in calls:
        s = sessions[call.session_id]
        s[0] += 1
        s[1] += call.input_tokens
        s[2] += call.output_tokens
        s[3] += call.total_tokens
        s[4] += cost(call)
        t = threads[call.thread_id]
        t[0] += 1
        t[1] += call.total_tokens
        t[2] += cost(call)
        m = by_model[(call.day, call.provider, call.model_name, call.cost_source)]
        m[0] += 1
        m[1] += call.input_tokens
        m[2] += call.output_tokens
        m[3] += call.cache_read_tokens
        m[4] += cost(call)
        d = by_session[(call.day, call.session_id, call.user_id)]
        d[0] += 1
        d[1] += call.cost_source == "unpriced"
        d[2] += call.total_tokens
        d[3] += cost(call)

    for session in Session.objects.all():
        expected = sessions.get(session.pk, [0, 0, 0, 0, zero])
        actual = [
            session.total_calls,
            session.total_input_tokens,
            session.total_output_tokens,
            session.total_tokens,
            session.total_cost,
        ]
        assert actual == expected, f"session {session.pk}"
    for thread in Thread.objects.all():
        expected = threads.get(thread.pk, [0, 0, zero])
        assert [thread.total_calls, thread.total_tokens, thread.total_cost] == expected
    rollup = {
        (r.day, r.provider, r.model_name, r.cost_source): [
            r.calls,
            r.input_tokens,
            r.output_tokens,
            r.cache_read_tokens,
            r.cost_total,
        ]
        for r in DailyModelUsage.objects.filter(calls__gt=0)
    }
    assert rollup == dict(by_model)
    rollup = {
        (r.day, r.session_id, r.user_id): [r.calls, r.unpriced_calls, r.total_tokens, r.cost_total]
        for r in DailySessionUsage.objects.filter(calls__gt=0)
    }
    assert rollup == dict(by_session)
    return len(calls)
