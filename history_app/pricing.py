"""What an LLM call cost: a price override, else the provider's own figure, else genai-prices.

genai-prices is used with the price data bundled in the installed package only: nothing
here starts its updater (``UpdatePrices``), so no price is ever fetched at run time, and a
price changes only when the package is upgraded (then ``manage.py reprice``).

Costs are ``Decimal`` US dollars rounded (half-even) to 1e-10; an unknown model costs
``None`` (never 0) with source ``unpriced``.
"""

import fnmatch
import logging
import warnings
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import cache

import genai_prices
from genai_prices import data_snapshot

from history_app.models import COST_PLACES, LLMCall, ModelPrice

logger = logging.getLogger(__name__)

QUANTUM = Decimal(1).scaleb(-COST_PLACES)
MILLION = Decimal(1_000_000)
GENAI_PRICES_VERSION = f"genai-prices {genai_prices.__version__}"

# LangChain's provider names (ls_provider, response_metadata["model_provider"]) that
# genai-prices knows under another id.
PROVIDER_ALIASES = {
    "azure_openai": "azure",
    "azure": "azure",
    "google_genai": "google",
    "google_vertexai": "google",
    "google_anthropic_vertex": "google",
    "vertexai": "google",
    "bedrock": "aws",
    "bedrock_converse": "aws",
    "amazon_bedrock": "aws",
    "mistralai": "mistral",
    "together": "together",
    "xai": "x-ai",
    "fireworks": "fireworks",
}


@dataclass(frozen=True)
class Tokens:
    """Token counts the LangChain way (input includes cache, output includes reasoning)."""

    input: int = 0
    output: int = 0
    total: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    input_audio: int = 0
    output_audio: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0


@dataclass(frozen=True)
class Cost:
    input: Decimal | None
    output: Decimal | None
    total: Decimal | None
    source: str
    resolved_model: str = ""
    version: str = ""

    @classmethod
    def unpriced(cls) -> "Cost":
        return cls(None, None, None, LLMCall.CostSource.UNPRICED)


def quantize(value: Decimal) -> Decimal:
    return value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def normalize_provider(provider: str | None) -> str:
    name = (provider or "").strip().lower()
    return PROVIDER_ALIASES.get(name, name)


def bundled_snapshot() -> data_snapshot.DataSnapshot:
    """genai-prices' bundled data (even if someone installed a fetched snapshot)."""
    return data_snapshot._bundled_snapshot()


@cache
def _known_provider(provider: str) -> bool:
    return data_snapshot.find_provider_by_id(bundled_snapshot().providers, provider) is not None


def genai_usage(tokens: Tokens) -> genai_prices.Usage:
    """The call's tokens as genai-prices counts them (its input includes cache reads too)."""
    values = {
        "input_tokens": tokens.input,
        "output_tokens": tokens.output,
        "cache_read_tokens": tokens.cache_read,
        "cache_write_tokens": tokens.cache_write,
        "output_reasoning_tokens": tokens.reasoning,
        "input_audio_tokens": tokens.input_audio,
        "output_audio_tokens": tokens.output_audio,
        "cache_write_5m_tokens": tokens.cache_write_5m,
        "cache_write_1h_tokens": tokens.cache_write_1h,
    }
    return genai_prices.Usage(**{key: value for key, value in values.items() if value})


def library_price(provider: str, model_name: str, tokens: Tokens, at: datetime) -> Cost:
    """The cost from genai-prices' bundled data, or unpriced."""
    if not model_name:
        return Cost.unpriced()
    snapshot = bundled_snapshot()
    provider_id = normalize_provider(provider)
    usage = genai_usage(tokens)
    attempts = [provider_id] if provider_id and _known_provider(provider_id) else []
    attempts.append(None)  # by the model name alone
    for candidate in attempts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                calc = snapshot.calc(usage, model_name, candidate, None, at)
        except LookupError:
            continue
        except (ValueError, ArithmeticError) as exc:
            logger.warning("cannot price %s/%s usage %s: %s", provider, model_name, tokens, exc)
            return Cost.unpriced()
        return Cost(
            quantize(calc.input_price),
            quantize(calc.output_price),
            quantize(calc.total_price),
            LLMCall.CostSource.COMPUTED,
            resolved_model=f"{calc.provider.id}/{calc.model.id}",
            version=GENAI_PRICES_VERSION,
        )
    return Cost.unpriced()


def _specificity(price: ModelPrice, model_name: str) -> tuple:
    exact = price.model_pattern.lower() == model_name.lower()
    return (bool(price.provider), exact, len(price.model_pattern), price.pk)


def find_override(provider: str, model_name: str, at: datetime) -> ModelPrice | None:
    """The most specific price override valid at ``at`` for this provider and model."""
    if not model_name:
        return None
    name = model_name.lower()
    provider_id = normalize_provider(provider)
    candidates = [
        price
        for price in ModelPrice.objects.all()
        if (price.valid_from is None or price.valid_from <= at)
        and (price.valid_to is None or at < price.valid_to)
        and (not price.provider or normalize_provider(price.provider) == provider_id)
        and fnmatch.fnmatchcase(name, price.model_pattern.lower())
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda price: _specificity(price, model_name))


def override_price(price: ModelPrice, tokens: Tokens) -> Cost:
    input_rate = price.input_per_mtok
    read_rate = price.cache_read_per_mtok if price.cache_read_per_mtok is not None else input_rate
    write_rate = (
        price.cache_write_per_mtok if price.cache_write_per_mtok is not None else input_rate
    )
    uncached = max(tokens.input - tokens.cache_read - tokens.cache_write, 0)
    cost_input = (uncached * input_rate + tokens.cache_read * read_rate) + (
        tokens.cache_write * write_rate
    )
    cost_input = quantize(cost_input / MILLION)
    cost_output = quantize(tokens.output * price.output_per_mtok / MILLION)
    return Cost(
        cost_input,
        cost_output,
        cost_input + cost_output,
        LLMCall.CostSource.OVERRIDE,
        resolved_model=str(price),
        version=f"override:{price.pk}",
    )


def provider_cost(value) -> Decimal | None:
    """A cost the provider reported (e.g. OpenRouter's ``cost``), if it is a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        cost = Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        return None
    if not cost.is_finite() or cost < 0:
        return None
    return quantize(cost)


def price_call(
    provider: str,
    model_name: str,
    tokens: Tokens,
    at: datetime,
    reported_cost: Decimal | None = None,
) -> Cost:
    """The call's cost at the time it was made."""
    override = find_override(provider, model_name, at)
    if override is not None:
        return override_price(override, tokens)
    if reported_cost is not None:
        return Cost(
            None,
            None,
            reported_cost,
            LLMCall.CostSource.PROVIDER,
            resolved_model=model_name,
            version="provider",
        )
    return library_price(provider, model_name, tokens, at)


def tokens_of(call: LLMCall) -> Tokens:
    """A recorded call's tokens (for repricing); audio and TTL splits come from its usage."""
    usage = call.usage if isinstance(call.usage, dict) else {}
    input_details = usage.get("input_token_details") or {}
    output_details = usage.get("output_token_details") or {}

    def count(details, key):
        value = details.get(key) if isinstance(details, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    return Tokens(
        input=call.input_tokens,
        output=call.output_tokens,
        total=call.total_tokens,
        cache_read=call.cache_read_tokens,
        cache_write=call.cache_write_tokens,
        reasoning=call.reasoning_tokens,
        input_audio=count(input_details, "audio"),
        output_audio=count(output_details, "audio"),
        cache_write_5m=count(input_details, "ephemeral_5m_input_tokens"),
        cache_write_1h=count(input_details, "ephemeral_1h_input_tokens"),
    )
