"""An operator watches runs in a real browser: the pages follow them without a reload."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import assert_not_reloaded, log_in, mark_document, wait_live

pytestmark = pytest.mark.e2e

RUN_BADGE = '[data-fragment="run"] [data-live-entity="run"]'
STEP = '[data-fragment="run"] [data-progress-step]'

# Records every step count the page shows, as it changes (sections may be replaced).
RECORD_STEPS = """
() => {
  window.__steps = [];
  setInterval(() => {
    const element = document.querySelector('[data-fragment="run"] [data-progress-step]');
    if (!element) return;
    const step = parseInt(element.textContent, 10);
    if (window.__steps[window.__steps.length - 1] !== step) window.__steps.push(step);
  }, 20);
}
"""

OPEN_SOCKET = """
(path) => new Promise((resolve) => {
  const socket = new WebSocket(`ws://${location.host}${path}`);
  let opened = false;
  socket.onopen = () => { opened = true; };
  socket.onmessage = (message) => {
    resolve({ opened, message: JSON.parse(message.data) });
    socket.close();
  };
  socket.onclose = (event) => resolve({ opened, code: event.code });
})
"""


def open_thread(page, site, thread_id):
    page.goto(f"{site.url}/status/threads/{thread_id}/")
    wait_live(page)
    mark_document(page)


def test_a_pipeline_run_is_followed_live_from_start_to_success(operator_page, site):
    page = operator_page
    thread_id = site.new_thread()
    open_thread(page, site, thread_id)
    expect(page.locator('[data-fragment="run"]')).to_contain_text("No run on this thread yet.")
    page.evaluate(RECORD_STEPS)

    run = site.start_run(thread_id, "pipeline", {"steps": 8, "delay_s": 0.3})

    badge = page.locator(RUN_BADGE)
    expect(page.locator('[data-fragment="run"]')).to_have_attribute("data-run-id", run["run_id"])
    expect(badge).to_have_text("running")
    expect(page.locator(f'h1 [data-live-id="{thread_id}"]')).to_have_text("busy")
    expect(page.locator(STEP)).to_have_text(re.compile(r"^[3-8]$"))
    expect(badge).to_have_text("success")
    expect(page.locator(STEP)).to_have_text("8")
    expect(page.locator('[data-fragment="run"] [data-progress-node]')).to_have_text("step")
    expect(page.locator(f'h1 [data-live-id="{thread_id}"]')).to_have_text("idle")
    steps = page.evaluate("window.__steps")
    assert steps == sorted(steps), steps  # the count only rises
    assert steps[-1] == 8
    assert len(set(steps) - {0, 8}) >= 2, steps  # seen between start and end, not just both
    expect(page.locator("#checkpoints li").first).to_contain_text("step 8")
    assert_not_reloaded(page)

    # A run that says how many steps it has gets a progress bar; the page follows the
    # newer run by itself.
    second = site.start_run(
        thread_id, "pipeline", {"steps": 4, "delay_s": 0.2}, stream_mode=["values", "custom"]
    )
    expect(page.locator('[data-fragment="run"]')).to_have_attribute("data-run-id", second["run_id"])
    bar = page.locator('[data-fragment="run"] [data-progress-bar]')
    expect(bar).to_be_visible()
    expect(bar).to_have_attribute("max", "4")
    expect(page.locator(RUN_BADGE)).to_have_text("success")
    expect(bar).to_have_attribute("value", "4")
    expect(page.locator('[data-fragment="run"] [data-progress-of]')).to_have_text("4")
    assert_not_reloaded(page)


def test_an_approval_is_answered_from_the_page_and_the_run_finishes(operator_page, site):
    page = operator_page
    thread_id = site.new_thread()
    open_thread(page, site, thread_id)

    site.start_run(thread_id, "approval", {"request": "refund order 1042"})

    waiting = page.locator('[data-fragment="interrupts"]')
    expect(waiting).to_contain_text("Approve this draft, or edit it?")
    expect(waiting.locator("textarea[name=draft]")).to_have_value(re.compile("we will refund you"))
    expect(page.locator(f'h1 [data-live-id="{thread_id}"]')).to_have_text("interrupted")
    assert_not_reloaded(page)  # the question came over the socket

    page.get_by_role("button", name="Approve and resume").click()

    expect(page.locator(".sh-notice-success")).to_contain_text("Resumed: run")
    wait_live(page)
    expect(page.locator(RUN_BADGE)).to_have_text("success")
    expect(page.locator(f'h1 [data-live-id="{thread_id}"]')).to_have_text("idle")
    expect(waiting).to_be_hidden()
    with site.api() as api:
        values = api.get(f"/threads/{thread_id}/state").json()["values"]
    assert values["approved"] is True
    assert values["final"].startswith("Dear customer")


def test_a_socket_without_a_login_is_refused(page, site):
    thread_id = site.new_thread()
    page.goto(site.url + "/admin/login/")  # same origin, no session

    refused = page.evaluate(OPEN_SOCKET, f"/ws/threads/{thread_id}/")
    assert refused["opened"] is False
    assert refused["code"] == 1006  # refused during the handshake (HTTP 403)
    assert "message" not in refused

    log_in(page, site)
    accepted = page.evaluate(OPEN_SOCKET, f"/ws/threads/{thread_id}/")
    assert accepted["opened"] is True
    assert accepted["message"] == {"type": "subscribed", "feed": f"thread.{thread_id}"}


def test_a_dropped_socket_says_so_reconnects_and_catches_up(operator_page, site):
    page = operator_page
    thread_id = site.new_thread()
    open_thread(page, site, thread_id)
    indicator = page.locator("[data-live-indicator]")

    site.server.stop()
    expect(indicator).to_have_attribute("data-state", "reconnecting")
    expect(indicator).to_contain_text("Disconnected: reconnecting in")
    # A change made while the page is cut off from the server.
    site.manage(
        "shell",
        "-c",
        "from core import state; "
        f"state.update_state('thread', '{thread_id}', "
        "{'status': 'error', 'error': 'the worker lost its database'})",
    )
    site.server.log_path = site.server.log_path.with_name("server-restarted.log")
    site.server.start()

    expect(indicator).to_have_attribute("data-state", "live", timeout=60_000)
    expect(page.locator(f'h1 [data-live-id="{thread_id}"]')).to_have_text("error")
    expect(page.locator('[data-fragment="summary"]')).to_contain_text(
        "Failed: the worker lost its database"
    )
    assert_not_reloaded(page)
