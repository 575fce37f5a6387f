"""Messages of runs, deduplicated by LangChain id, and the session's context window."""

from langchain_core.messages import (
    AIMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)

from core import state
from history_app.models import Message, StateEvent
from history_app.services import (
    context_for_new_thread,
    record_run_messages,
    session_context,
    update_session_context,
)
from sessions_app.models import Session
from tests.factories import make_thread


def conversation():
    return [
        SystemMessage("You are a support agent.", id="m-sys"),
        HumanMessage("Where is my refund?", id="m-1"),
        AIMessage(
            "",
            id="m-2",
            tool_calls=[{"name": "lookup", "args": {"order": 1042}, "id": "call-1"}],
        ),
        ToolMessage("refund sent on May 2", tool_call_id="call-1", id="m-3"),
        AIMessage([{"type": "text", "text": "It was sent on May 2."}], id="m-4"),
    ]


def test_a_runs_messages_are_recorded_with_roles_and_order(place):
    created = record_run_messages(place.run, conversation())

    assert len(created) == 5
    rows = list(Message.objects.filter(thread=place.thread).order_by("sequence"))
    assert [(m.sequence, m.role, m.message_id) for m in rows] == [
        (0, "system", "m-sys"),
        (1, "user", "m-1"),
        (2, "assistant", "m-2"),
        (3, "tool", "m-3"),
        (4, "assistant", "m-4"),
    ]
    assert rows[2].extra["tool_calls"][0]["args"] == {"order": 1042}
    assert rows[3].extra["tool_call_id"] == "call-1"
    assert rows[4].content == [{"type": "text", "text": "It was sent on May 2."}]
    assert {m.session_id for m in rows} == {place.session.pk}
    assert {m.run_id for m in rows} == {place.run.pk}


def test_recording_the_same_state_again_adds_nothing(place):
    record_run_messages(place.run, conversation())
    version = Session.objects.get(pk=place.session.pk).version

    again = record_run_messages(place.run, conversation())

    assert again == []
    assert Message.objects.count() == 5
    assert Session.objects.get(pk=place.session.pk).version == version


def test_a_later_run_adds_only_its_new_messages(place):
    record_run_messages(place.run, conversation())
    second = place.new_run()
    state_after = [*conversation(), HumanMessage("Thanks!", id="m-5"), AIMessage("Bye", id="m-6")]

    created = record_run_messages(second.pk, state_after)  # a Run or its id

    assert [(m.message_id, m.sequence, m.run_id) for m in created] == [
        ("m-5", 5, second.pk),
        ("m-6", 6, second.pk),
    ]


def test_dicts_and_messages_without_ids_are_deduplicated_too(place):
    messages = [
        {"role": "user", "content": "Hi"},
        {"type": "ai", "content": "Hello"},
        ("user", "Refund?"),
        RemoveMessage(id="m-x"),
    ]

    first = record_run_messages(place.run, messages)
    again = record_run_messages(place.run, messages)

    assert [m.role for m in first] == ["user", "assistant", "user"]
    assert all(m.message_id.startswith("derived:") for m in first)
    assert again == []


def test_the_session_context_keeps_the_last_messages_across_threads(place, settings):
    settings.STATEHOUSE_CONTEXT_WINDOW = 4
    record_run_messages(place.run, conversation())
    other = make_thread(place.session)
    other_run = place.new_run(thread=other)
    record_run_messages(other_run, [HumanMessage("New question", id="n-1")])

    context = session_context(Session.objects.get(pk=place.session.pk))

    assert [m["id"] for m in context["messages"]] == ["m-2", "m-3", "m-4", "n-1"]
    assert context["messages"][-1]["thread_id"] == str(other.pk)
    assert context["summary"] == ""
    assert context["variables"] == {}


def test_the_context_is_changed_through_the_state_manager(place):
    record_run_messages(place.run, conversation())

    event = StateEvent.objects.filter(entity_id=place.session.pk, kind="updated").latest("id")
    assert event.changed_fields == ["context"]
    assert event.actor == "history"
    assert len(event.new["context"]["messages"]) == 5


def test_summary_and_variables_are_kept_when_messages_arrive(place):
    update_session_context(place.session, summary="Refund asked.", variables={"order": 1042})
    update_session_context(place.session.pk, variables={"lang": "de"})
    record_run_messages(place.run, conversation())

    context = session_context(place.session.pk)

    assert context["summary"] == "Refund asked."
    assert context["variables"] == {"order": 1042, "lang": "de"}
    assert len(context["messages"]) == 5


def test_a_new_thread_can_start_from_the_session_context(place):
    record_run_messages(place.run, conversation())
    update_session_context(place.session, summary="Refund for order 1042.")

    start = context_for_new_thread(Session.objects.get(pk=place.session.pk))

    assert start["summary"] == "Refund for order 1042."
    assert start["messages"][0]["role"] == "system"
    assert "Refund for order 1042." in start["messages"][0]["content"]
    # LangChain accepts them as they are (tool calls included).
    messages = convert_to_messages(start["messages"])
    assert [m.type for m in messages] == ["system", "system", "human", "ai", "tool", "ai"]
    assert messages[3].tool_calls[0]["name"] == "lookup"
    assert messages[4].tool_call_id == "call-1"


def test_seeded_messages_count_once_in_the_window(place):
    record_run_messages(place.run, conversation())
    start = context_for_new_thread(place.session.pk, include_summary=False)
    thread = make_thread(place.session)
    seeded = [*start["messages"], {"role": "user", "content": "Follow-up", "id": "f-1"}]

    record_run_messages(place.new_run(thread=thread), seeded)

    ids = [m["id"] for m in session_context(place.session.pk)["messages"]]
    assert ids == ["m-sys", "m-1", "m-2", "m-3", "m-4", "f-1"]


def test_a_concurrent_session_change_does_not_lose_the_context(place, monkeypatch):
    """The context update retries on a version conflict instead of failing the run."""
    real_update = state.update_state
    raced = []

    def update_after_someone_else(entity_type, entity_id, changes, **kwargs):
        if entity_type == "session" and "context" in changes and not raced:
            raced.append(True)
            real_update("session", entity_id, {"title": "Renamed meanwhile"})
        return real_update(entity_type, entity_id, changes, **kwargs)

    monkeypatch.setattr(state, "update_state", update_after_someone_else)

    record_run_messages(place.run, conversation())

    session = Session.objects.get(pk=place.session.pk)
    assert raced
    assert session.title == "Renamed meanwhile"
    assert len(session.context["messages"]) == 5
