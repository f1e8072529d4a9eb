"""What repricing reads and writes: the stored model calls of a time range with what they were
charged, and the rewrite of the ones whose cost changed (`tokentrail.collector.reprice`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokentrail.store._rows import Row, bound, rows

__all__ = ["CostChange", "model_calls", "rewrite_costs"]

_MODEL_CALLS = """
SELECT trace_id, span_id, provider, response_model, request_model, input_tokens, output_tokens,
    cache_read_tokens, cache_write_tokens,
    -- billable as the ingest saw it, before wrapper parents were unbilled
    step_kind IN ('llm', 'embedding') AS model_call,
    -- rows written before reported costs had a column of their own kept them in cost_usd
    if(reported_cost_usd IS NULL AND cost_source = 'reported', cost_usd, reported_cost_usd) AS reported,
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
    WHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)})) AND has({ids:Array(String)}, span_id)
)
"""


@dataclass(frozen=True, slots=True)
class CostChange:
    """A span's new cost columns."""

    trace_id: str
    span_id: str
    cost_usd: float | None
    cost_source: str
    reported_cost_usd: float | None
    catalog_cost_usd: float | None


def model_calls(client: Any, project: str, start_ns: int, end_ns: int) -> list[Row]:
    """The project's spans that reported usage and started in [start_ns, end_ns), with their
    tokens and cost columns; `model_call`: billable as the ingest saw it, `reported`: the cost the
    emitter reported."""
    return rows(client, _MODEL_CALLS, {"project": project, "start": start_ns, "end": end_ns})


def rewrite_costs(client: Any, project: str, changes: Sequence[CostChange], version: str) -> None:
    """Rewrite these spans whole with their new cost columns, priced by catalog `version`."""
    client.command(
        _REWRITE,
        parameters=bound(
            {
                "project": project,
                "trace_ids": sorted({c.trace_id for c in changes}),
                "ids": [c.span_id for c in changes],
                "costs": [c.cost_usd for c in changes],
                "sources": [c.cost_source for c in changes],
                "reported": [c.reported_cost_usd for c in changes],
                "catalog": [c.catalog_cost_usd for c in changes],
                "version": version,
            }
        ),
        settings={"async_insert": 0},
    )
