"""PriceBook against the catalog's own calculation (never hand-typed prices)."""

from __future__ import annotations

import pytest
from genai_prices import Usage, calc_price, data_snapshot

from tokentrail.pricing import PriceBook
from tokentrail.providers import PROVIDERS, catalog_id


def _catalog(model: str, provider_id: str | None, **usage: int) -> float:
    return float(calc_price(Usage(**usage), model, provider_id=provider_id).total_price)


@pytest.mark.parametrize(
    ("provider", "model", "catalog_provider", "usage"),
    [
        (
            "openai",
            "gpt-4o-mini-2024-07-18",
            "openai",
            {"input_tokens": 1200, "cache_read_tokens": 1000, "output_tokens": 80},
        ),
        (
            "anthropic",
            "claude-sonnet-4-5",
            "anthropic",
            {"input_tokens": 150, "cache_read_tokens": 30, "cache_write_tokens": 20, "output_tokens": 100},
        ),
        (
            "anthropic",
            "claude-sonnet-4-5",
            "anthropic",
            {"input_tokens": 300_000, "output_tokens": 100},
        ),  # tiered
        ("gcp.gemini", "gemini-2.5-pro", "google", {"input_tokens": 1000, "output_tokens": 10}),
        ("", "gpt-4o", None, {"input_tokens": 1000, "output_tokens": 10}),
    ],
)
def test_costs_match_the_catalog(provider, model, catalog_provider, usage):
    book = PriceBook()
    kwargs = {k: v for k, v in usage.items()}
    assert book.cost(provider, model, **kwargs) == pytest.approx(
        _catalog(model, catalog_provider, **usage), rel=1e-9
    )


def test_cached_input_is_cheaper_than_fresh_input():
    book = PriceBook()
    fresh = book.cost("openai", "gpt-4o", input_tokens=10_000, output_tokens=0)
    cached = book.cost("openai", "gpt-4o", input_tokens=10_000, cache_read_tokens=10_000, output_tokens=0)
    assert fresh is not None and cached is not None
    assert 0 < cached < fresh


def test_unknown_model_has_unknown_cost_not_zero():
    book = PriceBook()
    assert book.cost("openai", "my-finetune-that-does-not-exist", input_tokens=100, output_tokens=5) is None
    assert book.cost("openai", "", input_tokens=100, output_tokens=5) is None


def test_prefixed_and_aliased_names_resolve():
    book = PriceBook()
    plain = book.cost("openai", "gpt-4o", input_tokens=1000, output_tokens=10)
    assert book.cost("", "openai/gpt-4o", input_tokens=1000, output_tokens=10) == pytest.approx(plain)
    assert book.cost("azure.ai.openai", "gpt-4o", input_tokens=1000, output_tokens=10) is not None


def test_version_names_the_catalog():
    assert PriceBook().version.startswith("genai-prices ")
    assert PriceBook().version == PriceBook().version


def test_every_provider_with_a_catalog_id_is_in_the_catalog():
    catalog = {p.id for p in data_snapshot.get_snapshot().providers}
    ids = {p.name: p.catalog for p in PROVIDERS if p.catalog}
    assert {name: i for name, i in ids.items() if i not in catalog} == {}
    assert catalog_id("aws.bedrock") == "aws" and catalog_id("ibm.watsonx.ai") is None
