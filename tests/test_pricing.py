"""PriceBook against the catalog's own calculation (never hand-typed prices)."""

from __future__ import annotations

import pytest
from genai_prices import Usage, calc_price, data_snapshot

from tokentrail.pricing import PriceBook, call_cost
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


def test_call_cost_follows_the_rule_for_each_kind_of_call():
    """The served model first, then the asked-for one; a reported cost counts unless it is $0 for
    a call with tokens; a call that is not billed has no cost; an unknown model, an unknown one."""
    book = PriceBook()
    tokens = (1200, 80, 1000, 0)  # input, output, cache read, cache write
    catalog = _catalog("gpt-4o-mini", "openai", input_tokens=1200, output_tokens=80, cache_read_tokens=1000)

    def cost(models: tuple[str, ...], billable: bool = True, reported: float | None = None) -> tuple:
        return call_cost(book, "openai", models, billable, tokens, reported)

    computed = cost(("", "gpt-4o-mini"))
    assert computed[1:3] == ("computed", book.version)
    assert computed[0] == computed[3] == pytest.approx(catalog)
    assert cost(("no-such-snapshot", "gpt-4o-mini"))[0] == pytest.approx(catalog)  # the asked-for model
    assert cost(("no-such-model",)) == (None, "unknown", book.version, None)
    assert cost(("gpt-4o-mini",), billable=False) == (None, "", "", None)
    reported = cost(("gpt-4o-mini",), reported=0.25)
    assert reported[:3] == (0.25, "reported", book.version)
    assert reported[3] == pytest.approx(catalog)  # the catalog's figure beside it
    assert cost(("gpt-4o-mini",), reported=0.0)[1] == "computed"  # $0 for a call with tokens
    assert call_cost(book, "openai", ("gpt-4o-mini",), True, (0, 0, 0, 0), 0.0)[:2] == (0.0, "reported")
    assert call_cost(None, "openai", ("gpt-4o-mini",), True, tokens, None) == (None, "unknown", "", None)
