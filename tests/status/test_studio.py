"""The offline Studio's pages and services: the graph, the state, time travel, runs
started from a form, and stuck work (Django's test client; a real worker runs the runs)."""

import json
import re
from datetime import timedelta
from html import unescape

import pytest
from django.test import Client
from django.urls import reverse
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from control_room import graph_drawing, studio
from core import state
from core.time import now
from tests.factories import make_session
from tests.status.conftest import finished, new_thread
from tests.status.test_pages import page, squash
from threads_app import services
from threads_app.models import Run, Thread

pytestmark = pytest.mark.django_db(transaction=True)


def section(html: str, name: str) -> str:
    return re.search(rf'<section data-fragment="{name}".*?</section>', html, re.S).group(0)


def root_checkpoints(thread) -> list[dict]:
    from checkpoints_app.models import Checkpoint

    return list(
        Checkpoint.objects.filter(thread_id=str(thread.pk), checkpoint_ns="")
        .order_by("checkpoint_id")
        .values("checkpoint_id", "parent_checkpoint_id", "metadata")
    )


def at_step(thread, step: int) -> str:
    return next(
        row["checkpoint_id"] for row in root_checkpoints(thread) if row["metadata"]["step"] == step
    )


# --- the graph ----------------------------------------------------------------------


class S(TypedDict):
    x: int


def test_the_drawing_has_every_node_edge_and_subgraph_with_xray():
    inner = StateGraph(S)
    inner.add_node("a", lambda s: {})
    inner.add_node("b", lambda s: {})
    inner.add_edge(START, "a")
    inner.add_edge("a", "b")
    inner.add_edge("b", END)
    outer = StateGraph(S)
    outer.add_node("prep", lambda s: {})
    outer.add_node("sub", inner.compile())
    outer.add_edge(START, "prep")
    outer.add_edge("prep", "sub")
    outer.add_conditional_edges("sub", lambda s: END, ["prep", END])

    drawing = graph_drawing.draw(outer.compile(), xray=True)

    ids = {node.id for node in drawing.nodes}
    assert ids == {"__start__", "prep", "sub:a", "sub:b", "__end__"}
    assert [s["name"] for s in drawing.subgraphs] == ["sub"]
    frame = drawing.subgraphs[0]
    for node in drawing.nodes:
        inside = (
            frame["x"] <= node.x
            and node.x + node.w <= frame["x"] + frame["w"]
            and frame["y"] <= node.y
            and node.y + node.h <= frame["y"] + frame["h"]
        )
        assert inside == node.id.startswith("sub:"), node.id
    edges = {(e.source, e.target): e.conditional for e in drawing.edges}
    assert edges[("__start__", "prep")] is False
    assert edges[("sub:b", "__end__")] is True and edges[("sub:b", "prep")] is True
    # Laid out top to bottom: each edge's source above its target unless it loops back.
    y = {node.id: node.y for node in drawing.nodes}
    assert y["__start__"] < y["prep"] < y["sub:a"] < y["sub:b"] < y["__end__"]
    assert all(n.x >= 0 and n.x + n.w <= drawing.width for n in drawing.nodes)


def test_a_node_that_runs_again_gets_a_loop_and_the_thread_page_shows_the_path(
    client, alice, pipeline_thread
):
    html = page(client, alice, reverse("status:thread", args=[pipeline_thread.pk]))
    graph = section(html, "graph")
    assert '<svg class="sh-graph"' in graph
    assert 'data-node="step"' in graph and 'data-node="__start__"' in graph
    loop = re.search(r'<path class="([^"]*)" data-edge="step→step"', graph)
    assert loop and "sh-edge-conditional" in loop.group(1) and "sh-edge-taken" in loop.group(1)
    end = re.search(r'<path class="([^"]*)" data-edge="step→__end__"', graph).group(1)
    assert "sh-edge-conditional" in end and "sh-edge-taken" in end  # the run ended there
    path = re.search(r"<ol class=\"sh-path-list\" data-path>(.*?)</ol>", graph).group(1)
    assert re.findall(r"<li>(.*?)</li>", path) == ["step", "step", "step"]
    assert 'data-node-state="running"' not in graph  # nothing runs now


def test_the_graph_marks_the_nodes_a_running_run_is_executing(alice, monkeypatch):
    thread = new_thread(alice, "pipeline")
    run = services.create_run(thread, input={"steps": 2}, after_seconds=3600)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)
    run.refresh_from_db()
    monkeypatch.setattr(studio.graph_state, "current", lambda t: {"next": ["step"]})

    section_data = studio.graph_section(thread, run)

    decorated = studio.decorate(
        section_data["drawing"], section_data["running"], section_data["visited"]
    )
    states = {item["node"].id: item["state"] for item in decorated["nodes"]}
    assert states == {"__start__": "", "step": "running", "__end__": ""}


# --- the state ----------------------------------------------------------------------


def test_the_state_shows_values_as_a_tree_and_messages_as_a_conversation(
    client, alice, chat_thread, waiting_thread
):
    html = page(client, alice, reverse("status:thread", args=[chat_thread.pk]))
    state_html = section(html, "state")
    assert '<details class="sh-json-node" open>' in state_html
    conversation = re.search(r'<ol class="sh-message-list sh-conversation">.*?</ol>', state_html)
    assert "Where is order 1042?" in conversation.group(0)
    assert "sh-role-user" in conversation.group(0) and "sh-role-assistant" in conversation.group(0)

    html = page(client, alice, reverse("status:thread", args=[waiting_thread.pk]))
    text = squash(section(html, "state"))
    assert "Next review" in text
    assert "Approve this draft, or edit it?" in text


def test_a_checkpoint_opens_to_its_values_and_its_diff_with_its_parent(
    client, alice, pipeline_thread
):
    checkpoint_id = at_step(pipeline_thread, 1)
    html = page(
        client, alice, reverse("status:checkpoint", args=[pipeline_thread.pk, checkpoint_id])
    )

    diff = re.search(r'<table class="sh-compact sh-diff">.*?</table>', html, re.S).group(0)
    rows = re.findall(r'<tr class="sh-diff-(\w+)"><th scope="row"><code>(\w+)</code>', diff)
    assert rows == [("changed", "completed_steps")]
    assert "[1 item]" in diff and "[2 items]" in squash(
        page(
            client,
            alice,
            reverse("status:checkpoint", args=[pipeline_thread.pk, at_step(pipeline_thread, 2)]),
        )
    )
    assert 'name="as_node"' in html and '<option value="step" selected>' in html
    # The form starts from the keys a write replaces: not the list its reducer appends to.
    form = re.search(r'<textarea id="edit-values"[^>]*>(.*?)</textarea>', html, re.S).group(1)
    assert json.loads(unescape(form)) == {"steps": 3}
    assert re.search(r"loop · \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC", squash(html))


def test_another_owners_checkpoint_and_an_unknown_one_are_not_found(
    client, alice, bob, pipeline_thread
):
    checkpoint_id = at_step(pipeline_thread, 1)
    url = reverse("status:checkpoint", args=[pipeline_thread.pk, checkpoint_id])
    page(client, bob, url, status=404)
    page(client, alice, reverse("status:checkpoint", args=[pipeline_thread.pk, "nope"]), status=404)
    client.force_login(bob)
    for action in ("checkpoint_edit", "checkpoint_fork", "checkpoint_replay"):
        response = client.post(
            reverse(f"status:{action}", args=[pipeline_thread.pk, checkpoint_id])
        )
        assert response.status_code == 404, action
    assert len(root_checkpoints(pipeline_thread)) == 5


# --- time travel ----------------------------------------------------------------------


def test_a_state_edit_as_a_node_continues_to_a_new_result(client, alice, pipeline_thread):
    client.force_login(alice)
    checkpoint_id = at_step(pipeline_thread, 1)
    response = client.post(
        reverse("status:checkpoint_edit", args=[pipeline_thread.pk, checkpoint_id]),
        {"values": '{"steps": 5}', "as_node": "step", "continue": "1"},
    )
    assert response.status_code == 302
    run = pipeline_thread.runs.order_by("-created_at").first()
    assert finished(run).status == "success"
    pipeline_thread.refresh_from_db()
    assert pipeline_thread.values["completed_steps"] == [1, 2, 3, 4, 5]
    edited = [r for r in root_checkpoints(pipeline_thread) if r["metadata"]["source"] == "update"]
    assert [r["parent_checkpoint_id"] for r in edited] == [checkpoint_id]

    # The thread page's timeline shows the edit's line as the head and the old one as a branch.
    html = page(client, alice, reverse("status:thread", args=[pipeline_thread.pk]))
    timeline = section(html, "checkpoints")
    assert "2 branches" in squash(timeline)
    assert re.search(rf'data-checkpoint="{checkpoint_id}" data-branch="0"', timeline)
    assert re.search(r'class="sh-branch-1 sh-branch-start"[^>]*data-branch="1"', timeline)


def test_a_bad_edit_is_refused_on_the_page_and_writes_nothing(client, alice, pipeline_thread):
    client.force_login(alice)
    checkpoint_id = at_step(pipeline_thread, 1)
    before = len(root_checkpoints(pipeline_thread))
    url = reverse("status:checkpoint_edit", args=[pipeline_thread.pk, checkpoint_id])
    for values, as_node, said in (
        ("{not json", "step", "not JSON"),
        ('{"steps": 4}', "nowhere", "is not a node of the graph"),
    ):
        response = client.post(url, {"values": values, "as_node": as_node})
        assert response.status_code == 400
        assert said in response.content.decode()
    assert len(root_checkpoints(pipeline_thread)) == before
    assert pipeline_thread.runs.count() == 1


def test_fork_and_replay_make_branches_from_the_checkpoint(client, alice, pipeline_thread):
    client.force_login(alice)
    checkpoint_id = at_step(pipeline_thread, 2)
    fork = client.post(reverse("status:checkpoint_fork", args=[pipeline_thread.pk, checkpoint_id]))
    assert fork.status_code == 302
    children = [
        r for r in root_checkpoints(pipeline_thread) if r["parent_checkpoint_id"] == checkpoint_id
    ]
    assert len(children) == 2  # step 3 of the run, and the fork

    replay = client.post(
        reverse("status:checkpoint_replay", args=[pipeline_thread.pk, checkpoint_id])
    )
    assert replay.status_code == 302
    run = pipeline_thread.runs.order_by("-created_at").first()
    assert run.kwargs["checkpoint_id"] == checkpoint_id
    assert finished(run).status == "success"
    tree = studio.timeline(pipeline_thread)
    assert tree["branches"] == 3
    assert tree["by_id"][checkpoint_id].forks_here == 2


def test_time_travel_needs_a_csrf_token(alice, pipeline_thread):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    checkpoint_id = at_step(pipeline_thread, 1)
    url = reverse("status:checkpoint_fork", args=[pipeline_thread.pk, checkpoint_id])
    assert browser.post(url).status_code == 403
    html = browser.get(reverse("status:checkpoint", args=[pipeline_thread.pk, checkpoint_id]))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html.content.decode())[1]
    assert browser.post(url, {"csrfmiddlewaretoken": token}).status_code == 302


# --- start work from the browser ------------------------------------------------------


def workflow_id(graph_id: str):
    return services.resolve_workflow(graph_id).pk


def test_a_workflow_page_draws_its_graph_and_a_form_from_its_input_schema(client, alice):
    html = page(client, alice, reverse("status:workflow", args=[workflow_id("chat")]))
    assert 'data-node="agent"' in html and 'data-node="tools"' in html
    assert re.search(r'class="sh-edge sh-edge-conditional" data-edge="agent→tools"', html)
    assert re.search(r'class="sh-edge" data-edge="tools→agent"', html)
    # The edge there and the edge back are two curves, not one line drawn twice.
    paths = dict(re.findall(r'data-edge="(agent→tools|tools→agent)" d="([^"]+)"', html))
    assert paths["agent→tools"] != paths["tools→agent"]
    assert all(" Q" in path for path in paths.values()), paths
    assert "&quot;messages&quot;" in html  # the skeleton from the schema's required keys
    listing = page(client, alice, reverse("status:workflows"))
    assert reverse("status:workflow", args=[workflow_id("pipeline")]) in listing


def test_a_run_started_from_the_form_runs_on_a_new_thread(client, alice, celery_worker):
    client.force_login(alice)
    response = client.post(
        reverse("status:workflow_run", args=[workflow_id("pipeline")]),
        {"thread": "new", "input": '{"steps": 2}'},
    )
    assert response.status_code == 302
    thread = Thread.objects.get(session__owner=alice)
    assert response.url == reverse("status:thread", args=[thread.pk])
    assert thread.session.title == "Studio: pipeline"
    assert finished(thread.runs.get()).status == "success"


def test_input_errors_are_shown_by_the_form_and_nothing_is_written(client, alice):
    client.force_login(alice)
    url = reverse("status:workflow_run", args=[workflow_id("pipeline")])
    response = client.post(url, {"thread": "new", "input": '{"steps": "three", "color": 1}'})
    assert response.status_code == 400
    errors = re.search(r'<ul class="sh-field-errors">.*?</ul>', response.content.decode(), re.S)
    text = unescape(squash(errors.group(0)))
    assert "input.steps : 'three' is not of type 'integer'" in text
    assert "('color' was unexpected)" in text
    assert "&quot;three&quot;" in response.content.decode()  # what was typed stays
    response = client.post(url, {"thread": "new", "input": "{}"})
    assert "'steps' is a required property" in unescape(response.content.decode())
    response = client.post(url, {"thread": "new", "input": "[1"})
    assert "not JSON" in response.content.decode()
    assert not Thread.objects.filter(session__owner=alice).exists()
    assert not Run.objects.exists()


def test_a_run_on_another_owners_thread_is_refused(client, alice, bob):
    thread = new_thread(alice, "pipeline")
    client.force_login(bob)
    response = client.post(
        reverse("status:workflow_run", args=[workflow_id("pipeline")]),
        {"thread": str(thread.pk), "input": '{"steps": 1}'},
    )
    assert response.status_code == 400
    assert "no such thread of yours" in response.content.decode()
    assert not thread.runs.exists()


def test_another_owners_workflow_is_not_found(client, alice, bob):
    own = services.create_workflow("pipeline", name="alice's", actor=alice)
    own.owner = alice
    own.save(update_fields=["owner"])
    page(client, bob, reverse("status:workflow", args=[own.pk]), status=404)
    page(client, alice, reverse("status:workflow", args=[own.pk]))


# --- stuck work ---------------------------------------------------------------------


def stuck_pending_run(owner) -> Run:
    """A pending run no worker was told about (its message lost), two hours old."""
    thread = new_thread(owner, "pipeline")
    run = state.create_state(
        "run", {"thread": thread, "workflow": thread.workflow, "input": {"steps": 1}}
    )
    Run.objects.filter(pk=run.pk).update(created_at=now() - timedelta(hours=2))
    return run


def expired_lease_run(owner) -> Run:
    thread = new_thread(owner, "pipeline")
    run = state.create_state(
        "run", {"thread": thread, "workflow": thread.workflow, "input": {"steps": 1}}
    )
    Run.objects.filter(pk=run.pk).update(
        status=Run.Status.RUNNING,
        claimed_by="gone-worker",
        lease_expires_at=now() - timedelta(minutes=5),
    )
    Thread.objects.filter(pk=thread.pk).update(status=Thread.Status.BUSY)
    return run


def test_the_stuck_page_lists_what_needs_an_operator_and_only_ones_own(client, alice, bob):
    pending = stuck_pending_run(alice)
    expired = expired_lease_run(alice)
    lonely = services.create_thread(make_session(alice), services.resolve_workflow("pipeline"))
    Thread.objects.filter(pk=lonely.pk).update(status=Thread.Status.BUSY)
    waiting = services.create_thread(make_session(alice), services.resolve_workflow("approval"))
    Thread.objects.filter(pk=waiting.pk).update(
        status=Thread.Status.INTERRUPTED, interrupts=[{"id": "i", "value": {"question": "OK?"}}]
    )
    fresh = services.create_run(new_thread(alice, "pipeline"), input={"steps": 1}, after_seconds=60)

    html = page(client, alice, reverse("status:stuck"))
    for section_id, expected in (
        ("stuck-pending", pending.short_id),
        ("stuck-expired", expired.short_id),
        ("stuck-busy", lonely.short_id),
        ("stuck-waiting", waiting.short_id),
    ):
        part = re.search(
            rf'<section class="card sh-section" id="{section_id}">.*?</section>', html, re.S
        )
        assert expected in part.group(0), section_id
    assert "OK?" in html
    assert fresh.short_id not in html
    assert expired.thread.short_id not in re.search(r'id="stuck-busy">.*?</section>', html, re.S)[0]
    other = page(client, bob, reverse("status:stuck"))
    assert pending.short_id not in other and lonely.short_id not in other
    page(client, bob, reverse("status:stuck_run", args=[pending.pk, "requeue"]), status=404)


def test_each_action_asks_first_and_says_what_it_will_do(client, alice):
    run = stuck_pending_run(alice)
    client.force_login(alice)
    for action, said in (
        ("requeue", "goes back to pending"),
        ("fail", "ends as error"),
        ("cancel", "is cancelled"),
    ):
        response = client.get(reverse("status:stuck_run", args=[run.pk, action]))
        assert response.status_code == 200
        assert said in response.content.decode()
        response = client.post(reverse("status:stuck_run", args=[run.pk, action]))  # no "yes"
        assert response.status_code == 200
    run.refresh_from_db()
    assert run.status == Run.Status.PENDING and run.version == 1


def test_a_stuck_pending_run_requeued_runs_to_the_end(client, alice, celery_worker):
    run = stuck_pending_run(alice)
    client.force_login(alice)
    response = client.post(
        reverse("status:stuck_run", args=[run.pk, "requeue"]), {"confirm": "yes"}
    )
    assert response.status_code == 302
    assert finished(run).status == "success"


def test_an_expired_lease_is_requeued_and_a_live_one_refused(alice):
    run = expired_lease_run(alice)
    requeued = services.requeue_run(run.pk, actor=alice)
    assert requeued.status == Run.Status.PENDING and requeued.claimed_by == ""

    live = expired_lease_run(alice)
    Run.objects.filter(pk=live.pk).update(lease_expires_at=now() + timedelta(minutes=5))
    with pytest.raises(services.InvalidRun, match="lease is live"):
        services.requeue_run(live.pk)
    done = stuck_pending_run(alice)
    services.force_fail_run(done.pk)
    with pytest.raises(services.RunFinished):
        services.requeue_run(done.pk)


def test_force_fail_ends_the_run_and_its_thread_as_error(client, alice):
    run = expired_lease_run(alice)
    client.force_login(alice)
    client.post(reverse("status:stuck_run", args=[run.pk, "fail"]), {"confirm": "yes"})
    run.refresh_from_db()
    assert run.status == Run.Status.ERROR and run.error == "failed by an operator"
    assert run.finished_at is not None and run.cancel_requested == "interrupt"
    thread = Thread.objects.get(pk=run.thread_id)
    assert thread.status == Thread.Status.ERROR and thread.error == "failed by an operator"


def test_a_busy_thread_without_a_run_is_force_failed_but_not_one_with_a_run(client, alice):
    lonely = services.create_thread(make_session(alice), services.resolve_workflow("pipeline"))
    Thread.objects.filter(pk=lonely.pk).update(status=Thread.Status.BUSY)
    client.force_login(alice)
    assert (
        "no run is going on it"
        in client.get(reverse("status:stuck_thread", args=[lonely.pk])).content.decode()
    )
    client.post(reverse("status:stuck_thread", args=[lonely.pk]), {"confirm": "yes"})
    assert Thread.objects.get(pk=lonely.pk).status == Thread.Status.ERROR

    run = stuck_pending_run(alice)
    with pytest.raises(services.InvalidRun, match="has a run going"):
        services.force_fail_thread(run.thread_id)


def test_studio_pages_need_a_login(client, alice):
    thread = new_thread(alice, "pipeline")
    for url in (
        reverse("status:workflows"),
        reverse("status:workflow", args=[workflow_id("pipeline")]),
        reverse("status:checkpoint", args=[thread.pk, "x"]),
        reverse("status:stuck"),
    ):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))


def test_a_pending_run_is_stuck_only_past_the_threshold(client, alice, settings):
    run = stuck_pending_run(alice)
    Run.objects.filter(pk=run.pk).update(created_at=now() - timedelta(seconds=60))
    settings.STATEHOUSE_STUCK_PENDING_S = 120
    html = page(client, alice, reverse("status:stuck"))
    assert "pending for more than 120 s (0)" in squash(html).lower()
    assert run.short_id not in html
    settings.STATEHOUSE_STUCK_PENDING_S = 30
    html = page(client, alice, reverse("status:stuck"))
    assert "pending for more than 30 s (1)" in squash(html).lower()
    assert run.short_id in html


def test_a_run_queued_behind_a_force_failed_one_goes_on(alice, celery_worker):
    stuck = expired_lease_run(alice)
    thread = Thread.objects.get(pk=stuck.thread_id)
    behind = state.create_state(
        "run", {"thread": thread, "workflow": thread.workflow, "input": {"steps": 1}}
    )
    services.force_fail_run(stuck.pk, actor=alice)
    assert Thread.objects.get(pk=thread.pk).status == Thread.Status.BUSY  # not failed
    assert finished(behind).status == "success"
    assert Thread.objects.get(pk=thread.pk).status == Thread.Status.IDLE
