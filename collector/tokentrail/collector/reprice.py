"""Recompute the cost of stored model calls with the price catalog installed now.

When `genai-prices` is upgraded (a provider changed its prices, a model was added), costs that
were computed at ingest can be recomputed for a time range: `tokentrail reprice --since 30d`.
Costs the emitter reported are left as they are. A changed span is rewritten whole (the table
replaces rows by key), its trace summary is refreshed, and the trace is analysed for waste again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokentrail.collector import summary
from tokentrail.collector.pricing import PriceBook

__all__ = ["RepriceResult", "reprice"]

_CANDIDATES = """
SELECT trace_id, span_id, provider, response_model, request_model, input_tokens, output_tokens,
    cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_usd
FROM spans FINAL
WHERE project = {project:String}
  AND start_time >= fromUnixTimestamp64Nano({start:Int64}) AND start_time < fromUnixTimestamp64Nano({end:Int64})
  AND usage_reported = 1 AND cost_source != 'reported'
ORDER BY trace_id, span_id
"""

_REWRITE = """
INSERT INTO spans
SELECT * REPLACE (
    transform(span_id, {ids:Array(String)}, {costs:Array(Nullable(Float64))}, CAST(NULL AS Nullable(Float64)))
        AS cost_usd,
    if(has({unknown:Array(String)}, span_id), 'unknown', 'computed') AS cost_source,
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


def _cost(prices: PriceBook, row: tuple[Any, ...]) -> float | None:
    _, _, provider, response_model, request_model, inp, out, cache_read, cache_write, reasoning, _ = row
    for model in dict.fromkeys(m for m in (response_model, request_model) if m):
        cost = prices.cost(provider, model, input_tokens=inp, output_tokens=out, cache_read_tokens=cache_read,
                           cache_write_tokens=cache_write, reasoning_tokens=reasoning)  # fmt: skip
        if cost is not None:
            return cost
    return None


def reprice(client: Any, project: str, start_ns: int, end_ns: int, prices: PriceBook,
            progress: Callable[[int, int], None] | None = None, task_attribute: str = "") -> RepriceResult:  # fmt: skip
    rows = client.query(_CANDIDATES, parameters={"project": project, "start": start_ns, "end": end_ns}).result_rows
    result = RepriceResult(examined=len(rows), version=prices.version)
    changed: list[tuple[str, str, float | None]] = []
    for row in rows:
        new = _cost(prices, row)
        old = row[-1]
        if new != old:
            changed.append((row[0], row[1], new))
    touched: set[tuple[str, str]] = set()
    for i in range(0, len(changed), _BATCH):
        batch = changed[i : i + _BATCH]
        trace_ids = sorted({t for t, _, _ in batch})
        params: dict[str, Any] = {
            "project": project,
            "trace_ids": trace_ids,
            "ids": [s for _, s, _ in batch],
            "costs": [c for _, _, c in batch],
            "unknown": [s for _, s, c in batch if c is None],
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
