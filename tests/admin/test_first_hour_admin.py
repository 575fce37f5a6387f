"""What an operator's first hour found in the admin (issue 15), fixed: the related links
are links, thread and session pages lead to the checkpoint timeline, messages and LLM
calls, money is written one way, the runtime's fields are not editable, a rollback asks
first, and /api/docs needs nothing from outside the server."""

import re
import uuid
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from core.time import now
from history_app.models import LLMCall
from tests.factories import make_session, make_thread, make_workflow
from threads_app import services
from threads_app.models import Run, Thread


def get(client, user, url):
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


@pytest.fixture
def thread(alice):
    return make_thread(make_session(alice, "Refund"), make_workflow("chat"))


def test_the_related_field_of_a_thread_is_links_not_escaped_html(client, staff, thread):
    html = get(client, staff, reverse("admin:threads_app_thread_change", args=[thread.pk]))
    related = html.split("field-links")[1].split("</div>\n")[1]
    assert "&lt;a" not in related
    timeline = reverse("admin:checkpoints_app_checkpoint_timeline", args=[str(thread.pk)])
    for href, label in (
        (reverse("admin:threads_app_run_changelist") + f"?thread__id__exact={thread.pk}", "Runs"),
        (timeline + "?ns=", "Checkpoint timeline"),
        (
            reverse("admin:history_app_message_changelist") + f"?thread__id__exact={thread.pk}",
            "Messages",
        ),
        (
            reverse("admin:history_app_llmcall_changelist") + f"?thread__id__exact={thread.pk}",
            "LLM calls",
        ),
    ):
        assert f'<a href="{href}">{label}</a>' in html, label


def test_the_session_page_links_its_threads_messages_llm_calls_and_timelines(client, staff, thread):
    session = thread.session
    html = get(client, staff, reverse("admin:sessions_app_session_change", args=[session.pk]))
    for model in ("threads_app_thread", "history_app_message", "history_app_llmcall"):
        url = reverse(f"admin:{model}_changelist") + f"?session__id__exact={session.pk}"
        assert f'href="{url}"' in html, model
    timeline = reverse("admin:checkpoints_app_checkpoint_timeline", args=[str(thread.pk)])
    assert f'href="{timeline}?ns="' in html


def test_the_thread_list_heads_the_session_column_and_sorts_it(client, staff, thread):
    html = get(client, staff, reverse("admin:threads_app_thread_changelist"))
    header = re.search(r'<th scope="col" class="sortable column-session_link">.*?</th>', html, re.S)
    assert header and ">Session</a>" in header[0]


def test_costs_in_the_lists_are_dollars_never_0e_10(client, staff, thread):
    Thread.objects.filter(pk=thread.pk).update(total_cost=Decimal("0E-10"))
    session = thread.session
    type(session).objects.filter(pk=session.pk).update(total_cost=Decimal("-0.00184"))
    threads = get(client, staff, reverse("admin:threads_app_thread_changelist"))
    sessions = get(client, staff, reverse("admin:sessions_app_session_changelist"))
    assert '<td class="field-total_cost_money">$0</td>' in threads
    assert '<td class="field-total_cost_money">-$0.00184</td>' in sessions
    assert "0E-10" not in threads + sessions and "0.0000000000" not in threads + sessions


def test_an_llm_call_shows_its_costs_in_dollars(client, staff, thread):
    moment = now()
    call = LLMCall.objects.create(
        lc_run_id=uuid.uuid4(),
        started_at=moment,
        day=moment.date(),
        session=thread.session,
        thread=thread,
        model_name="gpt-4o-mini",
        provider="openai",
        input_tokens=85,
        output_tokens=22,
        total_tokens=107,
        cost_input=Decimal("0.0000127500"),
        cost_output=Decimal("0E-10"),
        cost_total=Decimal("0.0000127500"),
        cost_source="genai-prices",
    )
    html = get(client, staff, reverse("admin:history_app_llmcall_change", args=[call.pk]))
    assert "$0.000013" in html and "0E-10" not in html and "0.0000127500" not in html


def test_an_operator_cannot_edit_a_threads_status_or_error(client, staff, thread):
    url = reverse("admin:threads_app_thread_change", args=[thread.pk])
    html = get(client, staff, url)
    assert 'name="status"' not in html and 'name="error"' not in html
    response = client.post(
        url,
        {
            "session": thread.session_id,
            "workflow": thread.workflow_id,
            "status": "error",
            "error": "by hand",
            "config": "{}",
            "metadata": "{}",
            "expected_version": thread.version,
            "runs-TOTAL_FORMS": "0",
            "runs-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    thread.refresh_from_db()
    assert thread.status == "idle" and thread.error == ""


def test_a_finished_runs_fields_are_shown_not_edited(client, staff, thread):
    from core import state

    run = state.create_state(
        "run", {"thread": thread, "workflow": thread.workflow, "input": {"q": 1}}
    )
    Run.objects.filter(pk=run.pk).update(status="success")
    html = get(client, staff, reverse("admin:threads_app_run_change", args=[run.pk]))
    for name in ("status", "input", "kwargs", "command", "config", "metadata"):
        assert f'name="{name}"' not in html, name


@pytest.mark.django_db(transaction=True)
def test_cancel_and_roll_back_in_the_admin_asks_first(client, staff, alice):
    thread = make_thread(make_session(alice, "Batch"), make_workflow("pipeline"))
    run = services.create_run(thread, input={"steps": 1}, after_seconds=3600)
    client.force_login(staff)
    url = reverse("admin:threads_app_run_changelist")
    asked = client.post(url, {"action": "rollback_runs", ACTION_CHECKBOX_NAME: [run.pk]})
    assert asked.status_code == 200
    assert "every checkpoint it wrote is" in asked.content.decode()
    run.refresh_from_db()
    assert run.status == "pending" and not run.cancel_requested

    done = client.post(
        url, {"action": "rollback_runs", ACTION_CHECKBOX_NAME: [run.pk], "confirm": "yes"}
    )
    assert done.status_code == 302
    assert not Run.objects.filter(pk=run.pk, status="pending", cancel_requested="").exists()


def test_the_api_docs_load_nothing_from_outside_the_server(client, staff):
    html = get(client, staff, "/api/docs")
    assert "swagger-ui-bundle.js" in html
    external = re.findall(r'(?:src|href)="(https?://[^"]+)"', html)
    assert external == []
    assert '<html lang="en">' in html
