"""React's real useStream hook in a real browser against a real Statehouse server.

The page (tests/clients/usestream, built by Vite from npm packages) is served from its
own origin and calls the API on the server's, so the browser goes through CORS, as a
React app or Agent Chat UI does. Playwright drives Debian's Chromium.
"""

import re
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ARTIFACTS

pytestmark = pytest.mark.e2e

FINAL_ANSWER = "Good news: Order 1042 shipped yesterday and arrives tomorrow."

# Every (loading, messages shown) the page goes through, as the DOM changes.
RECORD_RENDERS = """
() => {
  window.__renders = [];
  const record = () => {
    const loading = document.querySelector('#status')?.dataset.loading;
    const shown = document.querySelectorAll('#messages li').length;
    const last = window.__renders[window.__renders.length - 1];
    if (!last || last[0] !== loading || last[1] !== shown) window.__renders.push([loading, shown]);
  };
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true,
                                                      characterData: true, attributes: true});
  record();
}
"""


@pytest.fixture
def requests_seen(page):
    """Every URL the page asked for (checked: only the page's origin and the API)."""
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    return seen


@pytest.fixture
def open_page(page, usestream_page, live_api, requests_seen):
    def open_page(graph: str, **extra):
        query = {"api": live_api.api, "key": live_api.keys["alice"], "graph": graph, **extra}
        page.goto(f"{usestream_page}?{urlencode(query)}")
        expect(page.locator("h1")).to_have_text(f"useStream: {graph}")
        return page

    yield open_page
    origins = {usestream_page.rsplit("/", 1)[0], live_api.url}
    strangers = [url for url in requests_seen if not any(url.startswith(o) for o in origins)]
    assert strangers == []


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"usestream-{name}.png"), full_page=True)


def thread_of(page) -> str:
    expect(page.locator("#thread")).to_have_text(re.compile(r"^[0-9a-f-]{36}$"))
    return page.locator("#thread").inner_text()


def test_a_message_submitted_with_use_stream_streams_the_chat_graph_into_the_page(
    open_page, live_api
):
    page = open_page("chat")
    page.evaluate(RECORD_RENDERS)

    page.get_by_role("button", name="Send").click()

    messages = page.locator("#messages li")
    expect(messages).to_have_count(4)  # the question, the tool call, its result, the answer
    expect(messages.nth(0)).to_have_attribute("data-type", "human")
    expect(messages.nth(1).locator("[data-tool-call]")).to_have_text(" calls lookup_order")
    expect(messages.nth(2)).to_have_text("Order 1042 shipped yesterday and arrives tomorrow.")
    expect(messages.nth(3)).to_have_text(FINAL_ANSWER)
    expect(page.locator("#status")).to_have_attribute("data-loading", "false")
    expect(page.locator("#error")).to_have_text("")
    screenshot(page, "chat")

    # The messages were shown while the run was streaming, not only once it was done.
    renders = page.evaluate("window.__renders")
    assert any(loading == "true" and shown >= 2 for loading, shown in renders), renders
    with live_api.client() as api:
        thread = api.get(f"/threads/{thread_of(page)}").json()
    assert thread["status"] == "idle"
    assert thread["values"]["messages"][-1]["content"] == FINAL_ANSWER


def test_use_stream_answers_the_approval_graphs_interrupt(open_page, live_api):
    page = open_page("approval")

    page.get_by_role("button", name="Ask for a refund").click()
    expect(page.locator("#question")).to_have_text("Approve this draft, or edit it?")
    expect(page.locator("#draft")).to_contain_text("regarding 'a refund'")
    screenshot(page, "approval-interrupt")
    thread_id = thread_of(page)
    with live_api.client() as api:
        assert api.get(f"/threads/{thread_id}").json()["status"] == "interrupted"

    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#final")).to_contain_text("Dear customer, regarding 'a refund'")
    expect(page.locator("#note")).to_have_text("approved in the browser")
    expect(page.locator("#interrupt")).to_have_count(0)
    expect(page.locator("#error")).to_have_text("")
    screenshot(page, "approval-answered")
    with live_api.client() as api:
        thread = api.get(f"/threads/{thread_id}").json()
        runs = api.get(f"/threads/{thread_id}/runs").json()
    assert thread["status"] == "idle"
    assert thread["values"]["approved"] is True
    assert [run["status"] for run in runs] == ["success", "success"]


def test_a_page_reloaded_mid_run_rejoins_the_resumable_stream(open_page, live_api, requests_seen):
    steps = 12
    page = open_page("pipeline", steps=steps, delay=0.4)

    page.get_by_role("button", name="Run the pipeline").click()
    expect(page.locator("#steps")).to_have_text(re.compile(r"^1,2"))
    thread_id = thread_of(page)
    assert f"thread={thread_id}" in page.url
    with live_api.client() as api:
        (run,) = api.get(f"/threads/{thread_id}/runs").json()
    assert run["status"] == "running"
    screenshot(page, "pipeline-before-reload")

    requests_seen.clear()
    page.reload()

    # Back on the thread, the page re-joins the run's stream (no new run) and follows it.
    expect(page.locator("#status")).to_have_attribute("data-loading", "true")
    everything = ",".join(str(n) for n in range(1, steps + 1))
    expect(page.locator("#steps")).to_have_text(everything, timeout=60_000)
    expect(page.locator("#status")).to_have_attribute("data-loading", "false")
    expect(page.locator("#error")).to_have_text("")
    screenshot(page, "pipeline-rejoined")
    joined = f"/threads/{thread_id}/runs/{run['run_id']}/stream"
    assert any(joined in url for url in requests_seen), requests_seen
    with live_api.client() as api:
        runs = api.get(f"/threads/{thread_id}/runs").json()
        state = api.get(f"/threads/{thread_id}/state").json()
    assert [(r["run_id"], r["status"]) for r in runs] == [(run["run_id"], "success")]
    assert state["values"]["completed_steps"] == list(range(1, steps + 1))


def test_the_api_answers_the_pages_cors_preflight(usestream_page, live_api):
    origin = usestream_page.rsplit("/", 1)[0]
    response = httpx.options(
        live_api.api + "/threads/search",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "x-api-key" in allowed
