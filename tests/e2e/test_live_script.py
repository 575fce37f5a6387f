"""The live script on a real thread page, fed events of the test's own making."""

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import assert_not_reloaded, mark_document, wait_live

pytestmark = pytest.mark.e2e


@pytest.fixture
def thread_page(operator_page, site):
    page = operator_page
    thread_id = site.new_thread()
    page.goto(f"{site.url}/status/threads/{thread_id}/")
    wait_live(page)
    mark_document(page)
    return page, thread_id


def feed(page, event):
    page.evaluate("(event) => window.statehouseLive.handle(event)", event)


def test_streamed_tokens_and_messages_appear_as_they_arrive(thread_page):
    page, _thread_id = thread_page
    run = {"type": "run.event", "run_id": "r1", "seq": 1}

    feed(
        page,
        run
        | {
            "event": "values",
            "data": {"messages": [{"type": "human", "id": "h1", "content": "Hi"}]},
        },
    )
    for token in ("Hel", "lo, ", "operator"):
        chunk = {"type": "AIMessageChunk", "id": "a1", "content": token}
        feed(page, run | {"event": "messages", "data": [chunk, {"langgraph_node": "agent"}]})
    tool = {"type": "tool", "id": "t1", "content": [{"type": "text", "text": "shipped"}]}
    feed(page, run | {"event": "messages", "data": [tool, {}]})

    messages = page.locator("[data-messages] > li")
    expect(messages).to_have_count(3)
    expect(messages.nth(0).locator(".sh-role")).to_have_text("user")
    expect(messages.nth(1)).to_have_attribute("data-message-id", "a1")
    expect(messages.nth(1).locator(".sh-role")).to_have_text("assistant")
    expect(messages.nth(1).locator(".sh-text")).to_have_text("Hello, operator")
    expect(messages.nth(2).locator(".sh-text")).to_have_text("shipped")
    expect(page.locator("[data-messages-empty]")).to_be_hidden()
    assert_not_reloaded(page)


def test_progress_events_move_the_step_and_the_bar(thread_page, site):
    page, thread_id = thread_page
    queued = site.start_run(thread_id, "pipeline", {"steps": 5}, after_seconds=3600)
    panel = page.locator('[data-fragment="run"]')
    expect(panel).to_have_attribute("data-run-id", queued["run_id"])
    run = {"type": "run.event", "run_id": queued["run_id"]}

    feed(page, run | {"seq": 1, "event": "progress", "data": {"step": 2, "nodes": ["step"]}})
    expect(panel.locator("[data-progress-step]")).to_have_text("2")
    expect(panel.locator("[data-progress-bar]")).to_be_hidden()  # no total known yet
    feed(page, run | {"seq": 2, "event": "custom", "data": {"step": 2, "of": 5}})

    expect(panel.locator("[data-progress-of]")).to_have_text("5")
    bar = panel.locator("[data-progress-bar]")
    expect(bar).to_be_visible()
    expect(bar).to_have_attribute("max", "5")
    expect(bar).to_have_js_property("value", 2)
    feed(page, run | {"seq": 3, "event": "progress", "data": {"step": 1, "nodes": ["step"]}})
    expect(panel.locator("[data-progress-step]")).to_have_text("2")  # never backwards
    assert_not_reloaded(page)
    with site.api() as api:
        api.post(f"/threads/{thread_id}/runs/{queued['run_id']}/cancel")


def test_usage_and_state_events_update_figures_and_badges(thread_page):
    page, thread_id = thread_page
    tokens = page.locator(f'[data-usage-thread="{thread_id}"][data-usage-field="tokens"]')
    cost = page.locator(f'[data-usage-thread="{thread_id}"][data-usage-field="cost"]')

    feed(
        page,
        {
            "type": "usage.recorded",
            "thread_id": thread_id,
            "session_id": "elsewhere",
            "thread_total_tokens": 12345,
            "thread_total_cost": "1.5",
        },
    )
    expect(tokens).to_have_text("12,345")
    expect(cost).to_have_text("$1.50")
    feed(
        page,
        {"type": "usage.recorded", "thread_id": thread_id, "thread_total_cost": "0.0000499"},
    )
    expect(cost).to_have_text("$0.00005")  # as the server formats it

    feed(
        page,
        {"type": "state.changed", "entity": "thread", "id": thread_id, "status": "error"},
    )
    badge = page.locator(f'h1 [data-live-id="{thread_id}"]')
    expect(badge).to_have_text("error")
    expect(badge).to_have_class("sh-badge sh-status-error")
    assert_not_reloaded(page)
