"""Prices: genai-prices' bundled data, overrides that win, unpriced models, reprice."""

import io
import socket
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import genai_prices
import pytest
from django.core.management import call_command
from genai_prices import data_snapshot

from history_app import pricing
from history_app.models import LLMCall, ModelPrice
from history_app.pricing import Tokens
from sessions_app.models import Session
from tests.history.conftest import MODEL, ai_message, assert_totals_consistent, fake_model
from threads_app.models import Thread

pytestmark = pytest.mark.django_db

TOKENS = Tokens(input=1200, output=300, total=1500, cache_read=200, reasoning=50)
AT = datetime(2025, 6, 1, 12, tzinfo=UTC)


def _reprice(*args):
    out = io.StringIO()
    call_command("reprice", *args, stdout=out)
    return out.getvalue()


def test_prices_come_from_the_bundled_data_without_any_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("pricing tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)

    cost = pricing.library_price("anthropic", "claude-3-5-sonnet-20241022", TOKENS, AT)

    assert cost.source == "computed"
    assert cost.total > 0
    assert data_snapshot.get_snapshot().from_auto_update is False


def test_the_library_price_equals_calc_price_to_the_last_decimal():
    usage = genai_prices.Usage(
        input_tokens=1200, cache_read_tokens=200, output_tokens=300, output_reasoning_tokens=50
    )
    for model, provider in [(MODEL, "openai"), ("claude-3-5-haiku-latest", "anthropic")]:
        expected = genai_prices.calc_price(
            usage, model, provider_id=provider, genai_request_timestamp=AT
        )
        cost = pricing.library_price(provider, model, TOKENS, AT)
        assert (cost.input, cost.output, cost.total) == (
            expected.input_price,
            expected.output_price,
            expected.total_price,
        )


def test_langchain_provider_names_are_mapped_to_genai_prices_ids():
    assert pricing.normalize_provider("google_genai") == "google"
    assert pricing.normalize_provider("bedrock_converse") == "aws"
    assert pricing.normalize_provider("OpenAI") == "openai"
    cost = pricing.library_price("google_genai", "gemini-1.5-flash", TOKENS, AT)
    assert cost.resolved_model.startswith("google/")


def test_an_override_changes_the_cost(place):
    ModelPrice.objects.create(
        provider="openai",
        model_pattern="gpt-4o*",
        input_per_mtok=Decimal(5),
        output_per_mtok=Decimal(20),
        cache_read_per_mtok=Decimal(2),
    )

    fake_model().invoke("Hi", config=place.config())

    call = LLMCall.objects.get()
    assert call.cost_source == "override"
    # 1,000 uncached x $5/M + 200 cached x $2/M ; 300 out x $20/M
    assert call.cost_input == Decimal("0.0054")
    assert call.cost_output == Decimal("0.006")
    assert call.cost_total == Decimal("0.0114")
    assert call.pricing_version.startswith("override:")


def test_the_most_specific_override_valid_at_the_call_wins():
    ModelPrice.objects.create(model_pattern="gpt-4o*", input_per_mtok=1, output_per_mtok=1)
    exact = ModelPrice.objects.create(model_pattern=MODEL, input_per_mtok=2, output_per_mtok=2)
    ModelPrice.objects.create(
        provider="openai",
        model_pattern="gpt-*",
        input_per_mtok=3,
        output_per_mtok=3,
        valid_to=AT - timedelta(days=1),  # expired before the call
    )
    openai = ModelPrice.objects.create(
        provider="openai", model_pattern="gpt-4o-*", input_per_mtok=4, output_per_mtok=4
    )

    assert pricing.find_override("anthropic", MODEL, AT) == exact
    assert pricing.find_override("openai", MODEL, AT) == openai
    assert pricing.find_override("openai", "o1-mini", AT) is None


def test_the_price_at_the_time_of_the_call_is_used():
    switch = datetime(2025, 3, 1, tzinfo=UTC)
    ModelPrice.objects.create(
        model_pattern="acme-1", input_per_mtok=1, output_per_mtok=1, valid_to=switch
    )
    ModelPrice.objects.create(
        model_pattern="acme-1", input_per_mtok=2, output_per_mtok=2, valid_from=switch
    )
    tokens = Tokens(input=1_000_000, output=0, total=1_000_000)

    before = pricing.price_call("acme", "acme-1", tokens, switch - timedelta(seconds=1))
    after = pricing.price_call("acme", "acme-1", tokens, switch)

    assert (before.total, after.total) == (Decimal(1), Decimal(2))


def test_a_cost_reported_by_the_provider_is_kept(place):
    message = ai_message(model="openrouter/some-model", provider="openrouter")
    message.response_metadata["cost"] = 0.0042

    fake_model(message).invoke("Hi", config=place.config())

    call = LLMCall.objects.get()
    assert call.cost_source == "provider"
    assert call.cost_total == Decimal("0.0042")


def test_reprice_prices_unpriced_calls_after_an_override_is_added(place):
    model = fake_model(ai_message(model="acme-llm"), ai_message(model="acme-llm"), ai_message())
    for _ in range(3):
        model.invoke("Hi", config=place.config())
    assert LLMCall.objects.filter(cost_source="unpriced").count() == 2

    ModelPrice.objects.create(model_pattern="acme-*", input_per_mtok=1, output_per_mtok=2)
    output = _reprice("--batch-size", "2")

    assert "changed 2 (2 newly priced)" in output
    assert "0 calls remain unpriced" in output
    acme = LLMCall.objects.filter(model_name="acme-llm")
    assert {c.cost_source for c in acme} == {"override"}
    # 1,200 in x $1/M + 300 out x $2/M
    assert {c.cost_total for c in acme} == {Decimal("0.0018")}
    session = Session.objects.get(pk=place.session.pk)
    assert session.total_cost == Decimal("0.0018") * 2 + Decimal("0.00575")
    assert Thread.objects.get(pk=place.thread.pk).total_cost == session.total_cost
    assert assert_totals_consistent() == 3


def test_reprice_follows_overrides_added_and_removed(place):
    fake_model(ai_message(), ai_message()).invoke("Hi", config=place.config())
    override = ModelPrice.objects.create(
        model_pattern="gpt-4o*", input_per_mtok=10, output_per_mtok=10
    )

    _reprice()
    call = LLMCall.objects.get()
    assert (call.cost_source, call.cost_total) == ("override", Decimal("0.015"))
    assert_totals_consistent()

    override.delete()
    _reprice()
    call.refresh_from_db()
    assert (call.cost_source, call.cost_total) == ("computed", Decimal("0.00575"))
    assert_totals_consistent()


def test_reprice_dry_run_writes_nothing(place):
    fake_model(ai_message(model="acme-llm")).invoke("Hi", config=place.config())
    ModelPrice.objects.create(model_pattern="acme-llm", input_per_mtok=1, output_per_mtok=1)

    output = _reprice("--dry-run")

    assert "would change 1" in output
    assert LLMCall.objects.get().cost_source == "unpriced"
    assert Session.objects.get(pk=place.session.pk).total_cost == 0


def test_reprice_leaves_calls_with_unreadable_usage_unpriced(place):
    broken = ai_message(model="acme-llm")
    broken.usage_metadata = {"input_tokens": "?", "output_tokens": 3}
    fake_model(broken).invoke("Hi", config=place.config())
    ModelPrice.objects.create(model_pattern="acme-llm", input_per_mtok=1, output_per_mtok=1)

    _reprice()

    assert LLMCall.objects.get().cost_source == "unpriced"


@pytest.mark.parametrize("bad", [["--batch-size", "0"], ["--since", "yesterday"]])
def test_reprice_refuses_bad_arguments(db, bad):
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        _reprice(*bad)
