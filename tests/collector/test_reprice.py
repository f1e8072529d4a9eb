"""Repricing: computed costs follow the installed catalog; reported costs stay, with the catalog's figure
beside them brought up to date; summaries follow."""

from __future__ import annotations

import math
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.otlp import add_span
from tokentrail.collector.reprice import reprice
from tokentrail.collector.writer import load
from tokentrail.pricing import PriceBook


class OldCatalog(PriceBook):
    """An older catalog: every price twice today's, and a model it did not know yet."""

    def __init__(self) -> None:
        super().__init__()
        self.version = "genai-prices 0.0.1"

    def cost(self, provider: str, model: str, **usage: Any) -> float | None:  # type: ignore[override]
        if model.startswith("gpt-4.1"):
            return None
        now = super().cost(provider, model, **usage)
        return None if now is None else 2 * now


def _request() -> bytes:
    request = ExportTraceServiceRequest()
    chat = {
        "gen_ai__operation__name": "chat",
        "gen_ai__provider__name": "openai",
        "gen_ai__usage__input_tokens": 1000,
        "gen_ai__usage__output_tokens": 100,
    }
    add_span(request, "00000000000000d1", "", "chat gpt-4o", gen_ai__request__model="gpt-4o", **chat)
    add_span(request, "00000000000000d2", "", "chat gpt-4.1", gen_ai__request__model="gpt-4.1", **chat)
    add_span(request, "00000000000000d3", "", "chat house", gen_ai__request__model="house-model", **chat)
    add_span(
        request,
        "00000000000000d4",
        "",
        "ChatOpenAI",
        openinference__span__kind="LLM",
        llm__model_name="gpt-4o",
        llm__provider="openai",
        llm__token_count__prompt=1000,
        llm__token_count__completion=100,
        llm__cost__total="0.5",
    )
    return request.SerializeToString()


def test_reprice_recomputes_computed_costs_only(store):
    load(store.client, "default", [_request()], OldCatalog())
    before = dict(
        (r[0], r[1:])
        for r in store.client.query(
            "SELECT span_id, cost_usd, cost_source, price_version FROM spans FINAL"
        ).result_rows
    )
    today = PriceBook()
    gpt4o = today.cost("openai", "gpt-4o", input_tokens=1000, output_tokens=100)
    gpt41 = today.cost("openai", "gpt-4.1", input_tokens=1000, output_tokens=100)
    assert gpt4o is not None and gpt41 is not None
    assert before["00000000000000d1"] == (2 * gpt4o, "computed", "genai-prices 0.0.1")
    assert before["00000000000000d2"][:2] == (None, "unknown")

    assert before["00000000000000d4"] == (0.5, "reported", "genai-prices 0.0.1")

    result = reprice(store.client, "default", 0, 2**62, today)
    # the reported cost stays; only the catalog's figure beside it changes
    assert (result.examined, result.changed, result.traces) == (4, 3, 1)
    after = dict(
        (r[0], r[1:])
        for r in store.client.query(
            "SELECT span_id, cost_usd, cost_source, price_version, reported_cost_usd, catalog_cost_usd FROM spans FINAL"
        ).result_rows
    )
    assert after["00000000000000d1"] == (gpt4o, "computed", today.version, None, gpt4o)
    assert after["00000000000000d2"] == (gpt41, "computed", today.version, None, gpt41)  # newly known model
    assert after["00000000000000d3"][:2] == (None, "unknown")  # still unknown: unchanged
    assert after["00000000000000d4"] == (0.5, "reported", today.version, 0.5, gpt4o)
    ((cost, unpriced),) = store.client.query("SELECT cost_usd, unpriced_calls FROM traces FINAL").result_rows
    assert math.isclose(cost, gpt4o + gpt41 + 0.5, rel_tol=1e-9) and unpriced == 1
    assert reprice(store.client, "default", 0, 2**62, today).changed == 0  # nothing left to change


def test_reprice_command(store, settings, monkeypatch, capsys):
    from tokentrail.cli import main

    load(store.client, "default", [_request()], OldCatalog())
    monkeypatch.setenv("TOKENTRAIL_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", settings.clickhouse_url)
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_DATABASE", settings.database)
    assert main(["reprice", "--since", "30d"]) == 0
    assert "0 model calls" in capsys.readouterr().out  # the spans are from 2023
    assert main(["reprice", "--since", "2000d"]) == 0
    out = capsys.readouterr()
    assert "4 model calls examined; 3 changed in 1 traces" in out.out
    assert "3/3 spans" in out.err  # the progress bar


def test_a_reported_zero_the_catalog_contradicts_does_not_count(store):
    """OpenLIT reports gen_ai.usage.cost = 0 when it cannot fetch its price list: the catalog's price
    counts then, and the reported figure is kept beside it."""
    request = ExportTraceServiceRequest()
    add_span(
        request,
        "00000000000000e1",
        "",
        "chat gpt-4o-mini",
        gen_ai__operation__name="chat",
        gen_ai__system="openai",
        gen_ai__request__model="gpt-4o-mini",
        gen_ai__usage__input_tokens=1000,
        gen_ai__usage__output_tokens=100,
        gen_ai__usage__cost=0.0,
    )
    add_span(
        request,
        "00000000000000e2",
        "",
        "chat unknown",
        gen_ai__operation__name="chat",
        gen_ai__system="openai",
        gen_ai__request__model="house-model",
        gen_ai__usage__input_tokens=1000,
        gen_ai__usage__output_tokens=100,
        gen_ai__usage__cost=0.0,
    )
    add_span(
        request,
        "00000000000000e3",
        "",
        "chat gpt-4o",
        gen_ai__operation__name="chat",
        gen_ai__system="openai",
        gen_ai__request__model="gpt-4o",
        gen_ai__usage__input_tokens=1000,
        gen_ai__usage__output_tokens=100,
        gen_ai__usage__cost=0.02,
    )
    load(store.client, "default", [request.SerializeToString()], PriceBook())
    rows = dict(
        (r[0], r[1:])
        for r in store.client.query(
            "SELECT span_id, cost_usd, cost_source, reported_cost_usd, catalog_cost_usd FROM spans FINAL"
        ).result_rows
    )
    mini = PriceBook().cost("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=100)
    gpt4o = PriceBook().cost("openai", "gpt-4o", input_tokens=1000, output_tokens=100)
    assert mini is not None and gpt4o is not None
    assert rows["00000000000000e1"] == (mini, "computed", 0.0, mini)
    assert rows["00000000000000e2"] == (None, "unknown", 0.0, None)  # unknown, never $0
    assert rows["00000000000000e3"] == (0.02, "reported", 0.02, gpt4o)  # kept; the difference can be shown
    ((cost, unpriced),) = store.client.query("SELECT cost_usd, unpriced_calls FROM traces FINAL").result_rows
    assert math.isclose(cost, mini + 0.02) and unpriced == 1
