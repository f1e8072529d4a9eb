"""Recompute the cost of stored model calls with the price catalog installed now.

When `genai-prices` is upgraded (a provider changed its prices, a model was added), costs can be
recomputed for a time range: `tokentrail reprice --since 30d`. The rule is the ingest's own
(`pricing.price_call`): a cost the emitter reported still counts, unless it is a $0 the catalog
contradicts; the catalog's figure beside it is brought up to date. A changed span is rewritten
whole (the table replaces rows by key), its trace summary is refreshed, and the trace is analysed
for waste again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokentrail.collector import summary
from tokentrail.pricing import PriceBook, Priced, price_call

__all__ = ["RepriceResult", "reprice"]

_CANDIDATES = """
SELECT trace_id, span_id, provider, response_model, request_model, input_tokens, output_tokens,
    cache_read_tokens, cache_write_tokens,
    step_kind IN ('llm', 'embedding'),  -- billable as the ingest saw it, before parents were unbilled
    -- rows written before reported costs had a column of their own kept them in cost_usd
    if(reported_cost_usd IS NULL AND cost_source = 'reported', cost_usd, reported_cost_usd),
    cost_usd, cost_source, catalog_cost_usd
FROM spans FINAL
WHERE project = {project:String}
  AND start_time >= fromUnixTimestamp64Nano({start:Int64}) AND start_time < fromUnixTimestamp64Nano({end:Int64})
  AND usage_reported = 1
ORDER BY trace_id, span_id
"""

_REWRITE = """
INSERT INTO spans
SELECT * REPLACE (
    transform(span_id, {ids:Array(String)}, {costs:Array(Nullable(Float64))}, CAST(NULL AS Nullable(Float64)))
        AS cost_usd,
    transform(span_id, {ids:Array(String)}, {sources:Array(String)}, '') AS cost_source,
    transform(span_id, {ids:Array(String)}, {reported:Array(Nullable(Float64))}, CAST(NULL AS Nullable(Float64)))
        AS reported_cost_usd,
    transform(span_id, {ids:Array(String)}, {catalog:Array(Nullable(Float64))}, CAST(NULL AS Nullable(Float64)))
        AS catalog_cost_usd,
    {version:String} AS price_version,
    now64(3) AS ingested_at)
FROM (
    SELECT * FROM spans FINAL
    WHERE project = {project:String} AND trace_id IN {trace_ids:Array(String)} AND span_id IN {ids:Array(String)}
)
"""

_BATCH = 5000


@dataclass
class RepriceResult:
    examined: int = 0
    changed: int = 0
    traces: int = 0
    version: str = ""


def reprice(
    client: Any,
    project: str,
    start_ns: int,
    end_ns: int,
    prices: PriceBook,
    progress: Callable[[int, int], None] | None = None,
    task_attribute: str = "",
) -> RepriceResult:
    rows = client.query(
        _CANDIDATES, parameters={"project": project, "start": start_ns, "end": end_ns}
    ).result_rows
    result = RepriceResult(examined=len(rows), version=prices.version)
    changed: list[tuple[str, str, Priced, float | None]] = []
    for (
        trace_id,
        span_id,
        provider,
        response,
        request,
        inp,
        out,
        read,
        write,
        billable,
        reported,
        *old,
    ) in rows:
        new = price_call(
            prices,
            provider,
            (response, request),
            billable=bool(billable),
            input_tokens=inp,
            output_tokens=out,
            cache_read_tokens=read,
            cache_write_tokens=write,
            reported=reported,
        )
        if (new.cost, new.source, new.catalog) != tuple(old):
            changed.append((trace_id, span_id, new, reported))
    touched: set[tuple[str, str]] = set()
    for i in range(0, len(changed), _BATCH):
        batch = changed[i : i + _BATCH]
        trace_ids = sorted({t for t, *_ in batch})
        params: dict[str, Any] = {
            "project": project,
            "trace_ids": trace_ids,
            "ids": [s for _, s, _, _ in batch],
            "costs": [p.cost for _, _, p, _ in batch],
            "sources": [p.source for _, _, p, _ in batch],
            "reported": [r for _, _, _, r in batch],
            "catalog": [p.catalog for _, _, p, _ in batch],
            "version": prices.version,
        }
        client.command(_REWRITE, parameters=params, settings={"async_insert": 0})
        batch_traces = {(project, t) for t in trace_ids}
        summary.refresh(client, batch_traces, task_attribute)
        touched |= batch_traces
        if progress is not None:
            progress(min(i + _BATCH, len(changed)), len(changed))
    result.changed = len(changed)
    result.traces = len(touched)
    return result
