"""The offline Studio in Chromium: the graph with the running node during a real run,
a state edited and continued, a fork and a replay shown as branches, a run started from
a form (a schema error shown first), a stuck run requeued.

Every page goes through the control room's ``Visit`` checks: nothing requested from
outside the server, no serious or critical axe-core violation, no sideways scrolling at
1400 px nor 390 px, and a screenshot at each width in test-artifacts/.
"""

import json
import re

import pytest
from playwright.sync_api import expect

from tests.clients.conftest import node_modules  # noqa: F401 (npm ci of axe-core)
from tests.e2e.conftest import wait_live
from tests.e2e.test_control_room import axe_source, visit  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

STUCK_RUN = """
from datetime import timedelta
from core import state
from core.time import now
from threads_app import services
from threads_app.models import Run, Thread
thread = Thread.objects.get(pk={thread_id!r})
workflow = services.resolve_workflow("pipeline")
state.update_state("thread", thread.pk, {{"workflow": workflow}})
# A pending run no worker was told about (as if its message was lost), 2 hours old.
run = state.create_state("run", {{"thread": thread, "workflow": workflow, "input": {{"steps": 2}}}})
Run.objects.filter(pk=run.pk).update(created_at=now() - timedelta(hours=2))
print(run.pk)
"""


def run_status(site, thread_id, run_id) -> str:
    with site.api() as api:
        return api.get(f"/threads/{thread_id}/runs/{run_id}").json()["status"]


def finished_run(site, thread_id, run_id) -> dict:
    with site.api() as api:
        response = api.get(f"/threads/{thread_id}/runs/{run_id}/join", timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def pipeline_thread(site, steps=3) -> str:
    thread_id = site.new_thread()
    run = site.start_run(thread_id, "pipeline", {"steps": steps})
    finished_run(site, thread_id, run["run_id"])
    return thread_id


def values(site, thread_id) -> dict:
    with site.api() as api:
        return api.get(f"/threads/{thread_id}/state").json()["values"]


def open_checkpoint(visit, thread_id, step: int):  # noqa: F811
    page = visit(f"/status/threads/{thread_id}/", wait_for="#checkpoints")
    page.locator("#checkpoints li a.sh-step", has_text=re.compile(rf"^step {step}$")).first.click()
    return visit(None, wait_for="#checkpoint-values", overflow=[".sh-diff"])


def test_the_graph_highlights_the_running_node_during_a_real_run(visit, site):  # noqa: F811
    thread_id = site.new_thread()
    page = visit(f"/status/threads/{thread_id}/")
    wait_live(page)
    run = site.start_run(thread_id, "pipeline", {"steps": 12, "delay_s": 0.4})

    graph = page.locator("#thread-graph")
    running = graph.locator('[data-node="step"][data-node-state="running"]')
    expect(running).to_have_count(1)
    expect(graph.locator("[data-running-nodes]")).to_have_text("step")
    color = running.locator("rect").evaluate("(r) => getComputedStyle(r).stroke")
    assert color == "rgb(180, 86, 12)", color  # drawn as running, not only tagged
    expect(graph.locator('[data-edge="__start__→step"].sh-edge-taken')).to_have_count(1)
    visit.check(overflow=[".sh-graph-wrap"])

    expect(page.locator('[data-fragment="run"] [data-live-entity="run"]')).to_have_text("success")
    expect(graph.locator('[data-node-state="running"]')).to_have_count(0)
    expect(graph.locator("[data-path] li")).to_have_count(12)
    expect(graph.locator('[data-edge="step→__end__"].sh-edge-taken')).to_have_count(1)
    expect(graph.locator(".sh-edge-conditional")).to_have_count(2)  # step→step, step→end
    assert run_status(site, thread_id, run["run_id"]) == "success"
    visit.check(overflow=[".sh-graph-wrap"])

    # The workflow page draws the same graph.
    page.locator("#thread-graph a", has_text="Workflow page").click()
    visit(None, wait_for="#workflow-graph-svg")
    expect(page.locator('#workflow-graph-svg [data-node="step"]')).to_have_count(1)


def test_a_state_edit_continues_to_a_new_result(visit, site):  # noqa: F811
    thread_id = pipeline_thread(site, steps=3)
    page = open_checkpoint(visit, thread_id, 1)
    expect(page.locator("#checkpoint-diff")).to_contain_text("completed_steps")
    expect(page.locator("#edit-as-node")).to_have_value("step")

    page.fill("#edit-values", json.dumps({"steps": 5}))
    page.locator("[data-action=edit-state]").click()
    expect(page.locator(".sh-notices")).to_contain_text("continues")
    expect(page.locator('[data-fragment="run"] [data-live-entity="run"]')).to_have_text("success")
    assert values(site, thread_id)["completed_steps"] == [1, 2, 3, 4, 5]
    expect(page.locator("#checkpoints li[data-branch='1']").first).to_be_visible()
    visit.check(overflow=["#checkpoints"])


def test_a_fork_and_a_replay_are_shown_as_branches(visit, site):  # noqa: F811
    thread_id = pipeline_thread(site, steps=3)
    page = open_checkpoint(visit, thread_id, 2)
    page.locator("[data-action=fork]").click()
    expect(page.locator(".sh-notices")).to_contain_text("a new branch")
    timeline = page.locator("#checkpoints")
    expect(page.locator('[data-fragment="checkpoints"]')).to_contain_text("2 branches")
    branch = timeline.locator("li.sh-branch-start")
    expect(branch).to_have_count(1)
    expect(branch).to_contain_text("branch 1")
    expect(timeline.locator("[data-forks]")).to_contain_text("2 branches from here")
    visit.check(overflow=["#checkpoints"])

    page = open_checkpoint(visit, thread_id, 1)
    page.locator("[data-action=replay]").click()
    expect(page.locator(".sh-notices")).to_contain_text("Replaying from checkpoint")
    expect(page.locator('[data-fragment="run"] [data-live-entity="run"]')).to_have_text("success")
    expect(page.locator('[data-fragment="checkpoints"]')).to_contain_text("3 branches")
    assert values(site, thread_id)["completed_steps"] == [1, 2, 3]
    visit.check(overflow=["#checkpoints"])


def test_a_run_started_from_the_form_after_a_schema_error(visit, site):  # noqa: F811
    page = visit("/status/workflows/", wait_for="#workflow-list")
    page.locator("#workflow-list a", has_text="pipeline").click()
    visit(None, wait_for="#start-run")
    expect(page.locator("#run-input")).to_have_value(re.compile(r'"steps": 0'))

    # While typing, the page says the text is not JSON yet; the server checks the schema.
    page.fill("#run-input", '{"steps": ')
    expect(page.locator("#run-input-json")).to_contain_text("Not JSON yet")
    expect(page.locator("#run-input")).to_have_attribute("aria-invalid", "true")
    page.fill("#run-input", json.dumps({"steps": "three"}))
    expect(page.locator("#run-input-json")).to_be_hidden()
    page.locator("[data-action=start-run]").click()
    errors = page.locator("#run-input-errors")
    expect(errors).to_contain_text("input.steps: 'three' is not of type 'integer'")
    expect(page.locator("#run-input")).to_have_attribute("aria-invalid", "true")
    visit.check()

    page.fill("#run-input", json.dumps({"steps": 2}))
    page.locator("[data-action=start-run]").click()
    expect(page.locator(".sh-notices")).to_contain_text("started")
    expect(page.locator('[data-fragment="run"] [data-live-entity="run"]')).to_have_text("success")
    expect(page.locator("#thread-graph [data-path] li")).to_have_count(2)
    visit.check()


def test_a_stuck_run_is_requeued_after_a_confirmation(visit, site):  # noqa: F811
    thread_id = site.new_thread()
    run_id = site.manage("shell", "-c", STUCK_RUN.format(thread_id=thread_id)).stdout.split()[-1]
    page = visit("/status/stuck/", wait_for="#stuck-pending")
    row = page.locator(f'#stuck-pending tr[data-run="{run_id}"]')
    expect(row).to_contain_text("pending")
    row.locator("[data-action=requeue]").click()
    visit(None, wait_for="#stuck-confirm")
    expect(page.locator("[data-effect]")).to_contain_text("goes back to pending")
    assert run_status(site, thread_id, run_id) == "pending"
    page.locator("[data-action=confirm]").click()
    expect(page.locator(".sh-notices")).to_contain_text("requeued")
    assert finished_run(site, thread_id, run_id)["completed_steps"] == [1, 2]
    page = visit("/status/stuck/", wait_for="#stuck-pending")
    expect(page.locator(f'tr[data-run="{run_id}"]')).to_have_count(0)
