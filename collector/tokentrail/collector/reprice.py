"""Recompute the cost of stored model calls with the price catalog installed now.

When `genai-prices` is upgraded (a provider changed its prices, a model was added), costs can be
recomputed for a time range: `tokentrail reprice --since 30d`. The rule is the ingest's own
(`pricing.price_call`): a cost the emitter reported still counts, unless it is a $0 the catalog
contradicts; the catalog's figure beside it is brought up to date. A changed span is rewritten
whole (the table replaces rows by key), the reconciler (`tokentrail.store.reconcile`) brings its
trace's summary up to date, and the trace is analysed for waste again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokentrail.pricing import PriceBook, price_call
from tokentrail.store import reprice as stored
from tokentrail.store.reconcile import reconcile
from tokentrail.store.reprice import CostChange

__all__ = ["RepriceResult", "reprice"]

_BATCH = 5000


@dataclass
class RepriceResult:
    examined: int = 0
    changed: int = 0
    traces: int = 0
    version: str = ""


def _changes(calls: list[dict[str, Any]], prices: PriceBook) -> list[CostChange]:
    """The calls whose cost columns differ from what `price_call` says today."""
    changed = []
    for call in calls:
        new = price_call(
            prices,
            call["provider"],
            (call["response_model"], call["request_model"]),
            billable=bool(call["model_call"]),
            input_tokens=call["input_tokens"],
            output_tokens=call["output_tokens"],
            cache_read_tokens=call["cache_read_tokens"],
            cache_write_tokens=call["cache_write_tokens"],
            reported=call["reported"],
        )
        if (new.cost, new.source, new.catalog) != (
            call["cost_usd"],
            call["cost_source"],
            call["catalog_cost_usd"],
        ):
            changed.append(
                CostChange(
                    call["trace_id"],
                    call["span_id"],
                    new.cost,
                    new.source,
                    call["reported"],
                    new.catalog,
                )
            )
    return changed


def reprice(
    client: Any,
    project: str,
    start_ns: int,
    end_ns: int,
    prices: PriceBook,
    progress: Callable[[int, int], None] | None = None,
    task_attribute: str = "",
) -> RepriceResult:
    """Reprice the project's model calls that started in [start_ns, end_ns); `progress` is told
    (changed spans rewritten, all to rewrite) after each batch."""
    calls = stored.model_calls(client, project, start_ns, end_ns)
    changed = _changes(calls, prices)
    touched: set[tuple[str, str]] = set()
    for i in range(0, len(changed), _BATCH):
        batch = changed[i : i + _BATCH]
        stored.rewrite_costs(client, project, batch, prices.version)
        batch_traces = {(project, c.trace_id) for c in batch}
        reconcile(client, batch_traces, task_attribute)
        touched |= batch_traces
        if progress is not None:
            progress(min(i + _BATCH, len(changed)), len(changed))
    return RepriceResult(len(calls), len(changed), len(touched), prices.version)
