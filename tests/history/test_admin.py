"""The history admin: calls and messages read-only and cheap, prices and budgets editable."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from history_app.models import Alert, Budget, LLMCall, Message, ModelPrice
from history_app.services import record_run_messages
from tests.history.conftest import ai_message, fake_model


def _url(model, action, *args):
    meta = model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{action}", args=args)


@pytest.fixture
def calls(place):
    model = fake_model(ai_message(), ai_message(model="acme-llm", provider="acme"))
    model.invoke("a", config=place.config())
    model.invoke("b", config=place.config())
    return place


def test_the_llm_call_list_filters_by_model_provider_source_and_user(client, staff, calls):
    client.force_login(staff)
    url = _url(LLMCall, "changelist")

    everything = client.get(url)
    by_model = client.get(url, {"model_name": "acme-llm"})
    by_provider = client.get(url, {"provider": "openai"})
    unpriced = client.get(url, {"cost_source__exact": "unpriced"})
    by_user = client.get(url, {"user_id": str(calls.owner.pk)})

    assert everything.status_code == 200
    assert everything.context["cl"].result_count == 2
    assert [c.model_name for c in by_model.context["cl"].result_list] == ["acme-llm"]
    assert [c.provider for c in by_provider.context["cl"].result_list] == ["openai"]
    assert [c.cost_source for c in unpriced.context["cl"].result_list] == ["unpriced"]
    assert by_user.context["cl"].result_count == 2
    body = everything.content.decode()
    assert "acme-llm" in body and "$0.00575" in body


def test_the_llm_call_list_never_scans_the_table_for_filter_choices(client, staff, calls):
    client.force_login(staff)

    with CaptureQueriesContext(connection) as queries:
        response = client.get(_url(LLMCall, "changelist"), {"model_name": "gpt-4o-2024-08-06"})

    assert response.status_code == 200
    table = LLMCall._meta.db_table
    distinct = [q["sql"] for q in queries if table in q["sql"] and "DISTINCT" in q["sql"].upper()]
    # Only the date hierarchy's (of the filtered calls) remains; choices come from rollups.
    assert [sql for sql in distinct if "trunc" not in sql.lower()] == []


def test_the_llm_call_list_finds_calls_by_session_id(client, staff, calls):
    client.force_login(staff)

    response = client.get(_url(LLMCall, "changelist"), {"q": str(calls.session.pk)})

    assert response.context["cl"].result_count == 2


def test_llm_calls_are_read_only(client, staff, calls):
    client.force_login(staff)
    call = LLMCall.objects.first()

    page = client.get(_url(LLMCall, "change", call.pk))

    assert page.status_code == 200
    assert "Save" not in page.content.decode()
    assert client.get(_url(LLMCall, "add")).status_code == 403
    assert client.post(_url(LLMCall, "delete", call.pk), {"post": "yes"}).status_code == 403
    assert LLMCall.objects.filter(pk=call.pk).exists()


def test_an_llm_calls_page_links_its_session_thread_and_run(client, staff, calls):
    client.force_login(staff)
    call = LLMCall.objects.first()

    page = client.get(_url(LLMCall, "change", call.pk)).content.decode()

    for obj in (calls.session, calls.thread, calls.run):
        assert _url(type(obj), "change", obj.pk) in page


def test_messages_are_listed_by_session(client, staff, place):
    record_run_messages(place.run, [{"role": "user", "content": "Hi <b>there</b>", "id": "m-1"}])
    client.force_login(staff)

    listing = client.get(_url(Message, "changelist"), {"q": str(place.session.pk)})
    message = Message.objects.get()
    page = client.get(_url(Message, "change", message.pk))

    assert listing.context["cl"].result_count == 1
    assert page.status_code == 200
    assert "Hi &lt;b&gt;there&lt;/b&gt;" in page.content.decode()
    assert client.get(_url(Message, "add")).status_code == 403


def test_price_overrides_are_edited_in_the_admin(client, staff):
    client.force_login(staff)

    response = client.post(
        _url(ModelPrice, "add"),
        {
            "provider": "openai",
            "model_pattern": "gpt-4o*",
            "input_per_mtok": "2.5",
            "output_per_mtok": "10",
            "cache_read_per_mtok": "",
            "cache_write_per_mtok": "",
            "note": "contract price",
        },
    )

    assert response.status_code == 302
    price = ModelPrice.objects.get()
    assert (price.model_pattern, price.output_per_mtok) == ("gpt-4o*", Decimal(10))
    assert client.get(_url(ModelPrice, "changelist")).status_code == 200


def test_budgets_are_edited_and_alerts_only_read(client, staff, alice):
    client.force_login(staff)

    response = client.post(
        _url(Budget, "add"),
        {
            "name": "Alice",
            "scope": "user",
            "user": alice.pk,
            "metric": "cost",
            "limit": "25",
            "period": "month",
            "action": "block",
            "webhook_url": "",
            "is_active": "on",
        },
    )
    invalid = client.post(
        _url(Budget, "add"),
        {
            "name": "Wrong",
            "scope": "user",
            "metric": "cost",
            "limit": "0",
            "period": "month",
            "action": "alert",
        },
    )

    assert response.status_code == 302
    assert Budget.objects.get().user == alice
    assert invalid.status_code == 200
    assert "The limit must be positive." in invalid.content.decode()
    assert client.get(_url(Alert, "changelist")).status_code == 200
    assert client.get(_url(Alert, "add")).status_code == 403


def test_rollup_and_history_models_render_in_the_admin_index(client, staff):
    client.force_login(staff)

    body = client.get(reverse("admin:index")).content.decode()

    assert "LLM calls" in body
    assert "Model price overrides" in body
    assert "Budgets" in body
