"""Usage capture: the callback handler records each model call with its tokens, place and cost."""

import logging
import operator
import threading
import uuid
from decimal import Decimal
from typing import Annotated, TypedDict

import genai_prices
import pytest
from django.db.backends.signals import connection_created
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langgraph.graph import END, START, MessagesState, StateGraph

from history_app.callbacks import UsageCallbackHandler
from history_app.models import LLMCall
from sessions_app.models import Session
from tests.history.conftest import MODEL, ai_message, fake_model
from threads_app.models import Thread


def _expected(call_or_tokens, at, model=MODEL, provider="openai"):
    usage = genai_prices.Usage(
        input_tokens=1200, cache_read_tokens=200, output_tokens=300, output_reasoning_tokens=50
    )
    return genai_prices.calc_price(usage, model, provider_id=provider, genai_request_timestamp=at)


def test_an_invoked_model_call_is_recorded_with_exact_tokens_and_cost(place):
    fake_model().invoke("Where is my refund?", config=place.config())

    call = LLMCall.objects.get()
    assert (call.session_id, call.thread_id, call.run_id) == (
        place.session.pk,
        place.thread.pk,
        place.run.pk,
    )
    assert call.user_id == place.owner.pk
    assert call.model_name == MODEL
    assert call.provider == "openai"
    assert (call.input_tokens, call.output_tokens, call.total_tokens) == (1200, 300, 1500)
    assert (call.cache_read_tokens, call.cache_write_tokens, call.reasoning_tokens) == (200, 0, 50)
    assert call.usage["input_token_details"] == {"cache_read": 200}

    expected = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=1200, cache_read_tokens=200, output_tokens=300, output_reasoning_tokens=50
        ),
        MODEL,
        provider_id="openai",
        genai_request_timestamp=call.started_at,
    )
    assert call.cost_source == "computed"
    assert call.cost_input == expected.input_price
    assert call.cost_output == expected.output_price
    assert call.cost_total == expected.total_price
    # 1,000 uncached at $2.50/M + 200 cached at $1.25/M + 300 out at $10/M
    assert call.cost_total == Decimal("0.00575")
    assert call.resolved_model == "openai/gpt-4o"
    assert call.pricing_version == f"genai-prices {genai_prices.__version__}"
    assert call.latency_ms is not None
    assert call.day == call.started_at.date()


def test_a_streamed_call_is_recorded_like_an_invoked_one(place):
    chunks = list(fake_model().stream("Hello", config=place.config()))

    assert "".join(chunk.content for chunk in chunks) == "Sure."
    call = LLMCall.objects.get()
    assert (call.input_tokens, call.output_tokens, call.reasoning_tokens) == (1200, 300, 50)
    assert call.cost_total == Decimal("0.00575")


class ChunkedModel(BaseChatModel):
    """Streams its answer in chunks; usage comes with the last one (as OpenAI's does)."""

    @property
    def _llm_type(self) -> str:
        return "chunked-fake"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        return ChatResult(generations=[ChatGeneration(message=ai_message())])

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        for word in ("Sure", ", ", "done."):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata={
                    "input_tokens": 1200,
                    "output_tokens": 300,
                    "total_tokens": 1500,
                    "input_token_details": {"cache_read": 200},
                    "output_token_details": {"reasoning": 50},
                },
                response_metadata={"model_name": MODEL, "model_provider": "openai"},
            )
        )


def test_usage_arriving_in_the_last_stream_chunk_is_recorded(place):
    text = "".join(chunk.content for chunk in ChunkedModel().stream("Hi", config=place.config()))

    assert text == "Sure, done."
    call = LLMCall.objects.get()
    assert (call.input_tokens, call.output_tokens, call.total_tokens) == (1200, 300, 1500)
    assert call.model_name == MODEL
    assert call.cost_total == Decimal("0.00575")


def test_an_unknown_model_is_recorded_unpriced_never_free(place):
    fake_model(ai_message(model="acme-llm-9000", provider="acme")).invoke(
        "Hi", config=place.config()
    )

    call = LLMCall.objects.get()
    assert call.cost_source == "unpriced"
    assert call.cost_total is None
    assert call.cost_input is None
    assert call.cost_output is None
    assert call.total_tokens == 1500


def test_the_node_and_step_of_a_langgraph_call_are_recorded(place):
    model = fake_model(ai_message("Draft"), ai_message("Checked", model="gpt-4o-mini"))

    def draft(state: MessagesState):
        return {"messages": [model.invoke(state["messages"])]}

    def review(state: MessagesState):
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("draft", draft)
    builder.add_node("review", review)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "review")
    builder.add_edge("review", END)
    graph = builder.compile()

    result = graph.invoke({"messages": [HumanMessage("Refund?")]}, config=place.config())

    assert [m.content for m in result["messages"]] == ["Refund?", "Draft", "Checked"]
    calls = list(LLMCall.objects.order_by("step"))
    assert [(c.node, c.step, c.model_name) for c in calls] == [
        ("draft", 1, MODEL),
        ("review", 2, "gpt-4o-mini"),
    ]
    assert all(c.lc_parent_run_id is not None for c in calls)


class Box(TypedDict):
    answers: Annotated[list, operator.add]


@pytest.mark.django_db(transaction=True)
def test_calls_from_langgraphs_thread_pool_leave_no_connection_open(alice):
    from tests.history.conftest import Place

    place = Place(alice)
    model = fake_model(*[ai_message(str(i)) for i in range(6)])

    def ask(state: Box):
        return {"answers": [model.invoke("Go").content]}

    builder = StateGraph(Box)
    for name in ("a", "b", "c"):
        builder.add_node(name, ask)
        builder.add_edge(START, name)
        builder.add_edge(name, END)
    graph = builder.compile()

    threads = set()
    opened = []

    class Spy(UsageCallbackHandler):
        def on_llm_end(self, *args, **kwargs):
            threads.add(threading.current_thread() is threading.main_thread())
            return super().on_llm_end(*args, **kwargs)

    def record_opening(sender, connection, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            opened.append(connection)

    connection_created.connect(record_opening, dispatch_uid="history-test-opened")
    try:
        for _ in range(3):
            graph.invoke(
                {"answers": []},
                config={"callbacks": [Spy(place.run.pk, place.thread.pk, place.session.pk)]},
            )
    finally:
        connection_created.disconnect(dispatch_uid="history-test-opened")

    assert False in threads  # some calls were recorded from LangGraph's worker threads
    assert LLMCall.objects.count() == 9
    assert opened  # ... on connections of their own
    # Each was closed (or handed back to the pool) after its write.
    assert [wrapper for wrapper in opened if wrapper.connection is not None] == []


def test_the_same_langchain_run_reported_twice_counts_once(place):
    handler = place.handler()
    run_id = uuid.uuid4()
    result = LLMResult(generations=[[ChatGeneration(message=ai_message())]])

    handler.on_llm_end(result, run_id=run_id)
    handler.on_llm_end(result, run_id=run_id)

    assert LLMCall.objects.filter(lc_run_id=run_id).count() == 1
    session = Session.objects.get(pk=place.session.pk)
    assert session.total_calls == 1
    assert session.total_tokens == 1500


def test_the_user_defaults_to_the_sessions_owner(place):
    fake_model().invoke("Hi", config=place.config(user=False))

    assert LLMCall.objects.get().user_id == place.owner.pk


def test_malformed_usage_never_breaks_the_graph_and_is_recorded_unpriced(place, caplog):
    broken = ai_message("Still answered")
    # What a buggy integration might hand over: strings, negatives, a list.
    broken.usage_metadata = {
        "input_tokens": "lots",
        "output_tokens": 40,
        "total_tokens": -1,
        "input_token_details": ["cache_read", 3],
    }
    model = fake_model(broken)

    def agent(state: MessagesState):
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    graph = builder.compile()

    result = graph.invoke({"messages": [HumanMessage("Hi")]}, config=place.config())

    assert result["messages"][-1].content == "Still answered"
    call = LLMCall.objects.get()
    assert call.node == "agent"
    assert call.output_tokens == 40
    assert call.input_tokens == 0
    assert call.usage_valid is False
    assert call.cost_source == "unpriced"
    assert call.cost_total is None
    assert call.usage["input_tokens"] == "lots"


def test_a_call_without_usage_is_recorded_unpriced(place):
    fake_model(AIMessage("No usage reported")).invoke("Hi", config=place.config())

    call = LLMCall.objects.get()
    assert call.total_tokens == 0
    assert call.cost_source == "unpriced"
    assert call.cost_total is None


def test_garbage_responses_and_failing_writes_are_logged_not_raised(place, caplog):
    handler = place.handler()
    caplog.set_level(logging.ERROR, logger="history_app.callbacks")

    handler.on_llm_end(object(), run_id=uuid.uuid4())  # no generations at all
    lost = UsageCallbackHandler(
        run_id=None, thread_id=place.thread.pk, session_id=uuid.uuid4(), user_id=None
    )
    lost.on_llm_end(
        LLMResult(generations=[[ChatGeneration(message=ai_message())]]), run_id=uuid.uuid4()
    )

    # The first is recorded with what could be read (nothing), the second is logged.
    assert LLMCall.objects.count() == 1
    assert LLMCall.objects.get().cost_source == "unpriced"
    assert "could not record LLM call" in caplog.text


def test_totals_are_updated_with_each_call(place):
    handler_config = place.config()
    fake_model(ai_message(), ai_message(model="acme-x")).invoke("a", config=handler_config)
    fake_model(ai_message(model="acme-x")).invoke("b", config=handler_config)

    session = Session.objects.get(pk=place.session.pk)
    thread = Thread.objects.get(pk=place.thread.pk)
    assert session.total_calls == thread.total_calls == 2
    assert session.total_input_tokens == 2400
    assert session.total_output_tokens == 600
    assert session.total_tokens == thread.total_tokens == 3000
    # the unpriced call adds no cost
    assert session.total_cost == thread.total_cost == Decimal("0.00575")


def test_a_live_event_is_pushed_after_commit(
    place, mocker_push, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        fake_model().invoke("Hi", config=place.config())

    groups, payload = next(p for p in mocker_push if p[1]["type"] == "usage.recorded")
    assert groups == [f"thread.{place.thread.pk}", f"session.{place.session.pk}", "dashboard"]
    assert payload["tokens"] == 1500
    assert payload["cost"] == "0.0057500000"
    assert payload["session_total_cost"] == "0.0057500000"
    assert payload["model"] == MODEL


def test_nothing_is_pushed_before_commit(place, mocker_push):
    fake_model().invoke("Hi", config=place.config())

    assert not [p for p in mocker_push if p[1]["type"] == "usage.recorded"]
