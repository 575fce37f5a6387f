"""An operator's first hour in the control room, in Chromium, on the real demo data.

Every page these tests open is checked the same way (``Visit``): it requests nothing
from outside the server, axe-core finds no serious or critical violation, the document
does not scroll sideways at 1400 px nor at 390 px, and a screenshot at each width goes
to test-artifacts/.
"""

import fcntl
import json
import re
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.clients.conftest import node_modules  # noqa: F401 (npm ci of axe-core)
from tests.e2e.conftest import ARTIFACTS

pytestmark = pytest.mark.e2e

WIDE, NARROW = 1400, 390
TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"

DEMO_FACTS = """
import json
from checkpoints_app.models import Checkpoint
from history_app.models import LLMCall, Message
from sessions_app.models import Session
from threads_app.models import Run, Thread

threads = Thread.objects.filter(session__title__startswith="Demo: ")
runs = Run.objects.filter(thread__in=threads)
active = ["pending", "running"]
print(json.dumps({
    "sessions": Session.objects.filter(title__startswith="Demo: ").count(),
    "threads": threads.count(),
    "runs": runs.count(),
    "run_statuses": sorted(runs.values_list("status", flat=True)),
    "errors": list(runs.filter(status="error").values_list("error", flat=True)),
    "checkpoints": Checkpoint.objects.filter(thread_id__in=[str(t.pk) for t in threads]).count(),
    "messages": Message.objects.filter(thread__in=threads).count(),
    "llm_calls": LLMCall.objects.filter(thread__in=threads).count(),
    "busy_without_run": threads.filter(status="busy").exclude(runs__status__in=active).count(),
    "waiting": [str(t.pk) for t in threads.filter(status="interrupted") if t.interrupts],
    "session_ids": {s.title: str(s.pk) for s in Session.objects.filter(title__startswith="Demo: ")},
    "thread_ids": {t.metadata.get("topic") or t.metadata.get("job"): str(t.pk) for t in threads},
}))
"""

AXE = """
async (exclude) => {
  const context = exclude.length ? { exclude: exclude } : document;
  const result = await axe.run(context, { resultTypes: ["violations"] });
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                   nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")) }));
}
"""

OVERFLOW = """
(selectors) => {
  const out = { page: [document.documentElement.scrollWidth, window.innerWidth], boxes: [] };
  // What sticks out of the window, deepest first (to say why the page scrolls sideways).
  out.wide = [...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.children.length)
    .slice(0, 5)
    .map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`);
  for (const selector of selectors) {
    for (const element of document.querySelectorAll(selector)) {
      const box = element.getBoundingClientRect();
      const parent = element.parentElement.getBoundingClientRect();
      if (box.right > parent.right + 1 || box.left < parent.left - 1) {
        out.boxes.push([selector, Math.round(box.left), Math.round(box.right),
                        Math.round(parent.left), Math.round(parent.right)]);
      }
    }
  }
  return out;
}
"""

CONTRAST = """
() => {
  const channel = (value) => {
    value /= 255;
    return value <= 0.03928 ? value / 12.92 : Math.pow((value + 0.055) / 1.055, 2.4);
  };
  const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const background = (element) => {
    for (let node = element; node; node = node.parentElement) {
      const color = rgb(getComputedStyle(node).backgroundColor);
      if (color.length >= 3 && (color.length === 3 || color[3] > 0)) return color.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const worst = [];
  for (const link of document.querySelectorAll("main a, #content a")) {
    if (!link.offsetParent || link.classList.contains("button")) continue;
    const fg = luminance(rgb(getComputedStyle(link).color));
    const bg = luminance(background(link));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const name = link.textContent.trim().slice(0, 40);
    if (ratio < 4.5) worst.push([name, Math.round(ratio * 100) / 100]);
  }
  return worst;
}
"""


class Visit:
    """Opens pages and checks each one (see the module docstring)."""

    def __init__(self, page, site, axe_source, name):
        self.page, self.site, self.axe_source, self.name = page, site, axe_source, name
        self.foreign: list[str] = []
        self.count = 0
        origin = urlsplit(site.url)
        local = {(origin.hostname, origin.port)}

        def watch(request):
            parts = urlsplit(request.url)
            if parts.scheme in ("data", "blob", "about"):
                return
            if (parts.hostname, parts.port) not in local:
                self.foreign.append(request.url)

        page.on("request", watch)

    def __call__(self, path, *, wait_for=None, overflow=(), axe_exclude=()):
        page = self.page
        if path is not None:
            page.goto(self.site.url + path)
        if wait_for:
            expect(page.locator(wait_for).first).to_be_visible()
        self.check(overflow, axe_exclude)
        return page

    def check(self, overflow=(), axe_exclude=()):
        page = self.page
        self.count += 1
        label = f"{self.name}-{self.count}"
        for width in (WIDE, NARROW):
            page.set_viewport_size({"width": width, "height": 900})
            sizes = page.evaluate(OVERFLOW, list(overflow))
            assert sizes["page"][0] <= sizes["page"][1], (
                f"{page.url} scrolls sideways at {width} px: {sizes}"
            )
            if width == WIDE:
                assert not sizes["boxes"], f"{page.url} at {width} px: {sizes['boxes']}"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{label}-{width}.png"), full_page=True)
        page.set_viewport_size({"width": WIDE, "height": 900})
        if not page.evaluate("typeof window.axe !== 'undefined'"):
            page.add_script_tag(content=self.axe_source)
        violations = page.evaluate(AXE, list(axe_exclude))
        assert not violations, f"{page.url}: {json.dumps(violations, indent=1)}"
        assert not self.foreign, f"requests off the server: {self.foreign}"


@pytest.fixture(scope="module")
def demo(site):
    """`manage.py load_demo` as `make run` runs it, twice (the second does nothing)."""
    first = site.manage("load_demo")
    second = site.manage("load_demo")
    facts = json.loads(site.manage("shell", "-c", DEMO_FACTS).stdout.strip().splitlines()[-1])
    return {"first": first.stdout, "second": second.stdout, **facts}


@pytest.fixture(scope="module")
def axe_source(node_modules):  # noqa: F811
    """axe-core's script, read under the lock `npm ci` is run under (tests/clients), so
    another test run reinstalling node_modules meanwhile cannot pull it away."""
    with open(Path(tempfile.gettempdir()) / "statehouse-npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return (node_modules / "axe-core" / "axe.min.js").read_text()


@pytest.fixture
def visit(request, operator_page, site, axe_source):
    return Visit(operator_page, site, axe_source, request.node.name)


# --- 4: the demo is real ------------------------------------------------------------


def test_the_demo_is_real_runs_and_loads_once(demo):
    assert "Demo data loaded" in demo["first"]
    assert "loaded already" in demo["second"]
    assert demo["sessions"] == 2 and demo["threads"] == 5
    assert demo["run_statuses"] == ["error"] + ["success"] * 5
    assert demo["errors"] == ["ValueError: sleep length must be non-negative"]
    assert demo["checkpoints"] >= 20
    assert demo["messages"] >= 4 and demo["llm_calls"] >= 2
    assert demo["busy_without_run"] == 0
    assert len(demo["waiting"]) == 1


def test_the_demo_dashboard_shows_what_waits_and_failed(visit, demo):
    page = visit("/status/", wait_for="#waiting-threads")
    waiting = page.locator("#waiting-threads tbody tr")
    expect(waiting).to_have_count(1)
    expect(waiting.first).to_contain_text("Approve this draft, or edit it?")
    expect(page.locator("#recent-errors")).to_contain_text("sleep length must be non-negative")
    expect(page.locator("#running-threads")).to_have_count(0)  # nothing "running for 11 min"
    # 8: each figure counts its list.
    sessions = page.locator("#active-sessions tbody tr").count()
    expect(page.locator("#stat-active-sessions .value")).to_have_text(str(sessions))
    expect(page.locator("#stat-waiting-threads .value")).to_have_text("1")
    assert not page.evaluate(CONTRAST)  # 9: links at 4.5:1 or more


# --- 1, 2, 6, 7: the admin ----------------------------------------------------------


def test_the_thread_admin_links_its_history_and_owns_no_runtime_field(visit, demo):
    thread_id = demo["thread_ids"]["order status"]
    page = visit(f"/admin/threads_app/thread/{thread_id}/change/", wait_for=".field-links")
    related = page.locator(".field-links .readonly")
    assert "&lt;" not in related.inner_html() and "<a" not in related.inner_text()
    names = related.locator("a").all_inner_texts()
    assert names == ["Runs", "Checkpoint timeline", "Messages", "LLM calls", "State changes"]
    # The runtime owns the status and the error: shown, not editable.
    expect(page.locator("[name=status]")).to_have_count(0)
    expect(page.locator("[name=error]")).to_have_count(0)
    expect(page.locator(".field-status .readonly")).to_contain_text("Idle")
    expect(page.locator(".field-started_at .readonly")).to_have_text(re.compile(TIME))

    for name, check in (
        ("Checkpoint timeline", "#checkpoint-timeline"),
        ("Messages", "#result_list"),
        ("LLM calls", "#result_list"),
    ):
        visit(f"/admin/threads_app/thread/{thread_id}/change/")
        page.locator(".field-links a", has_text=name).click()
        visit(None, wait_for=check, overflow=["#result_list", "#checkpoint-timeline"])
        assert page.locator(f"{check} tbody tr").count() >= 1, name
    # An LLM call's cost in dollars, never 0E-10 or 0.0000000000.
    page.locator("#result_list tbody tr a").first.click()
    for field in ("cost_input_money", "cost_output_money", "cost_total_money"):
        expect(page.locator(f".field-{field} .readonly")).to_have_text(
            re.compile(r"^(\$0|\$\d+\.\d+|\$0\.\d+)$")
        )
    visit(None)


def test_the_threads_changelist_has_a_sortable_session_column(visit, demo):
    page = visit("/admin/threads_app/thread/", overflow=["#result_list"])
    header = page.locator("th.column-session_link")
    expect(header).to_have_count(1)
    assert header.inner_text().strip().lower() == "session"
    header.locator("a").first.click()
    expect(page).to_have_url(re.compile(r"[?&]o=2"))
    expect(page.locator("th.column-session_link.sorted")).to_have_count(1)
    cells = page.locator("#result_list td.field-started_at").all_inner_texts()
    assert cells and all(re.fullmatch(TIME, text) or text == "-" for text in cells), cells
    costs = page.locator("#result_list td.field-total_cost_money").all_inner_texts()
    assert costs and all(re.fullmatch(r"-?\$[\d.,]+|<\$0\.000001", c) for c in costs), costs
    visit(None)


def test_the_session_admin_links_threads_messages_llm_calls_and_timelines(visit, demo):
    session_id = demo["session_ids"]["Demo: support conversation"]
    page = visit(f"/admin/sessions_app/session/{session_id}/change/", wait_for=".field-related")
    names = page.locator(".field-related .readonly a").all_inner_texts()
    assert names == ["Threads", "Messages", "LLM calls"]
    timelines = page.locator(".field-checkpoints a", has_text="Timeline")
    expect(timelines).to_have_count(3)  # one per thread, none for the empty form
    timelines.first.click()
    visit(None, wait_for="#checkpoint-timeline", overflow=["#checkpoint-timeline"])
    # "Fork from here" stays on one line beside "Restore to here".
    restore = page.locator("#checkpoint-timeline a", has_text="Restore to here").first
    fork = page.locator("#checkpoint-timeline a", has_text="Fork from here").first
    assert fork.bounding_box()["height"] <= restore.bounding_box()["height"] + 1
    assert abs(fork.bounding_box()["y"] - restore.bounding_box()["y"]) < 2

    page = visit("/admin/sessions_app/session/", overflow=["#result_list"])
    costs = page.locator("#result_list td.field-total_cost_money").all_inner_texts()
    assert costs and not any("E-" in c or "0000000" in c for c in costs), costs
    visit("/admin/history_app/stateevent/", overflow=["#result_list"])


def test_a_run_is_shown_not_edited_and_a_rollback_asks_first(visit, site, demo):
    thread_id = site.new_thread()
    run = site.start_run(thread_id, "pipeline", {"steps": 400, "delay_s": 0.05})
    page = visit(f"/admin/threads_app/run/{run['run_id']}/change/")
    for name in ("status", "input", "kwargs", "command", "config"):
        expect(page.locator(f"[name={name}]")).to_have_count(0)
    expect(page.locator(".field-kwargs .readonly")).to_contain_text("stream_mode")

    visit(f"/admin/threads_app/run/?thread__id__exact={thread_id}")
    page.locator("#result_list input[name=_selected_action]").first.check()
    page.select_option("select[name=action]", "rollback_runs")
    page.locator("button[name=index], button[type=submit]", has_text="Go").first.click()
    visit(None, wait_for="#rollback-runs")
    expect(page.locator("#content-main")).to_contain_text("every checkpoint it wrote is deleted")
    page.locator("a.closelink", has_text="No, go back").click()
    with site.api() as api:
        assert api.get(f"/threads/{thread_id}/runs/{run['run_id']}").json()["status"] in (
            "pending",
            "running",
        )

    # The status page asks too, and "Yes" stops the run.
    page.goto(f"{site.url}/status/threads/{thread_id}/")
    page.locator("[data-action=rollback]").click()
    visit(None, wait_for="#rollback-confirm")
    page.locator("[data-action=confirm-rollback]").click()
    expect(page.locator(".sh-notices")).to_contain_text("cancel and roll back")
    with site.api() as api:
        response = api.get(f"/threads/{thread_id}/runs/{run['run_id']}", params={})
        assert response.status_code == 404 or response.json()["status"] not in (
            "pending",
            "running",
        )


# --- 3: restored and forked threads ---------------------------------------------------


def test_a_restored_thread_is_paused_not_waiting_and_continues_from_here(visit, site, demo):
    thread_id = demo["thread_ids"]["reindex"]
    page = visit(f"/admin/checkpoints_app/checkpoint/thread/{thread_id}/?ns=")
    # A checkpoint in the middle: step 3 of the six-step pipeline.
    row = page.locator("#checkpoint-timeline tbody tr").filter(
        has=page.locator("td:nth-child(2)", has_text=re.compile(r"^3$"))
    )
    row.locator("a", has_text="Restore to here").click()
    visit(None)
    page.locator("input[type=submit]").click()
    expect(page.locator(".messagelist")).to_contain_text("Restored")

    dashboard = visit("/status/", wait_for="#paused-threads")
    expect(dashboard.locator("#waiting-threads tbody tr")).to_have_count(1)
    expect(dashboard.locator("#paused-threads")).to_contain_text(thread_id[:8])
    expect(dashboard.locator("#stat-waiting-threads .value")).to_have_text("1")

    page = visit(f"/status/threads/{thread_id}/", wait_for="[data-head-moved]")
    expect(page.locator('[data-fragment="run"]')).not_to_contain_text("Step 6")
    expect(page.locator('[data-fragment="interrupts"]')).to_be_hidden()
    page.locator("[data-action=continue]").click()
    expect(page.locator(".sh-notices")).to_contain_text("Continued: run")
    expect(page.locator('[data-fragment="run"] [data-live-entity="run"]')).to_have_text("success")
    with site.api() as api:
        values = api.get(f"/threads/{thread_id}/state").json()["values"]
    assert values["completed_steps"] == [1, 2, 3, 4, 5, 6]
    visit(None)


def test_a_forked_thread_says_where_it_came_from(visit, site, demo):
    thread_id = demo["thread_ids"]["refund"]
    page = visit(f"/admin/checkpoints_app/checkpoint/thread/{thread_id}/?ns=")
    page.locator("#checkpoint-timeline tbody tr").last.locator(
        "a", has_text="Fork from here"
    ).click()
    page.locator("input[type=submit]").click()
    expect(page.locator(".messagelist")).to_contain_text("Forked")
    forked = re.search(r"thread ([0-9a-f-]{36})", page.locator(".messagelist").inner_text())[1]
    page = visit(f"/status/threads/{forked}/", wait_for="[data-head-moved]")
    expect(page.locator("[data-head-moved]")).to_contain_text("Forked from thread")
    expect(page.locator('[data-fragment="run"]')).not_to_contain_text("Step")


# --- 5, 6, 8, 9: pages --------------------------------------------------------------


def test_the_status_pages_format_times_and_money_one_way(visit, site, demo):
    session_id = demo["session_ids"]["Demo: support conversation"]
    page = visit(f"/status/sessions/{session_id}/", overflow=["table"])
    starts = page.locator("#session-threads tbody td:nth-child(4)").all_inner_texts()
    assert starts and all(re.fullmatch(TIME, text) or text == "—" for text in starts), starts
    expect(page.locator("#session-history tbody tr").first).to_contain_text(re.compile(TIME))
    assert not page.evaluate(CONTRAST)
    threads = page.locator("#session-threads tbody tr").count()
    expect(page.locator(".sh-stats .stat").first.locator(".value")).to_have_text(str(threads))
    # 8: no bookkeeping rows by default, and a way to show them.
    fields = page.locator("#session-history tbody td:nth-child(4)").all_inner_texts()
    assert fields and not any(
        set(f.split(", "))
        <= {"thread_count", "active_thread_count", "threads_by_status", "last_activity_at"}
        for f in fields
    ), fields
    show = page.locator("#history-filter a", has_text="Show them")
    if show.count():  # bookkeeping rows exist (tests/status checks the filter itself)
        show.click()
        visit(None, overflow=["table"])
        shown = page.locator("#session-history tbody td:nth-child(4)").all_inner_texts()
        assert any("last_activity_at" in f for f in shown), shown

    thread_id = demo["thread_ids"]["order status"]
    page = visit(f"/status/threads/{thread_id}/", overflow=["#thread-runs", ".sh-times"])
    took = page.locator("#thread-runs tbody td:nth-child(5)").all_inner_texts()
    assert took and all(re.fullmatch(r"\d+ s", t) for t in took), took
    expect(page.locator(".sh-times")).to_contain_text(re.compile(TIME))
    expect(page.locator(".sh-times")).to_contain_text(re.compile(r"took \d+ s"))
    cost = page.locator('[data-usage-field="cost"]').first.inner_text()
    assert re.fullmatch(r"\$0\.\d+", cost), cost
    contrast = page.evaluate(CONTRAST)
    assert not contrast, contrast

    for topic in ("refund", "apology", "export"):
        visit(f"/status/threads/{demo['thread_ids'][topic]}/", overflow=["#thread-runs"])
    page = visit("/usage/", overflow=["table"])
    assert not page.evaluate(CONTRAST)
    expect(page.locator("#totals")).not_to_contain_text("$-")


def test_the_api_docs_load_from_the_server_alone(visit):
    # Swagger UI's own widget (django-ninja's bundle) nests buttons and uses light greys;
    # the page around it is checked, and every file it loads comes from the server.
    page = visit("/api/docs", wait_for=".swagger-ui .info .title", axe_exclude=["#swagger-ui"])
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Statehouse")
    expect(page.locator(".opblock").first).to_be_visible()
