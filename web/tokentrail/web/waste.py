"""The waste ledger as the pages show it: bucket labels, a report row (its buckets, total, waste
and share), the breakdown by model, findings with their evidence and the item a bloated call
carried, and CSV cells. The reads are `tokentrail.store.waste`'s; the buckets and the rules are
the analysis's (`tokentrail.analysis.ledger`).
"""

from __future__ import annotations

import json
from typing import Any

from tokentrail.analysis.ledger import BUCKETS, largest_carried_item
from tokentrail.store import Client
from tokentrail.store import spans as span_reads
from tokentrail.store.filters import TraceFilter
from tokentrail.store.waste import WasteReader

__all__ = ["BUCKETS", "LABELS", "by_model", "cell", "findings", "ledger", "reader", "report_row"]

LABELS = {
    "retry": "Retries",
    "loop": "Loops",
    "duplicate": "Duplicates",
    "no_outcome": "No outcome",
    "context_bloat": "Context bloat",
    "cache_miss": "Cache misses",
    "oversized_model": "Oversized model",
    "productive": "Productive",
}


def reader(client: Client) -> WasteReader:
    return WasteReader(client, BUCKETS)


def report_row(row: dict[str, Any], key: Any = None) -> dict[str, Any]:
    """A row of the report from a read with each bucket's dollars under its name."""
    buckets = {b: row[b] for b in BUCKETS}
    total = sum(buckets.values())
    wasted = total - buckets["productive"]
    return {
        "key": row["key"] if key is None else key,
        "traces": row["traces"],
        "total_usd": total,
        "wasted_usd": wasted,
        "waste_share": wasted / total if total > 0 else None,
        "buckets": buckets,
        "wasted_tokens": row["wasted_tokens"],
        "findings": row["findings"],
    }


def by_model(waste: WasteReader, f: TraceFilter) -> list[dict[str, Any]]:
    """Per model: the total of its billable calls, the waste the findings on them charge, and
    the rest as productive; most waste first."""
    entries: dict[str, dict[str, Any]] = {}

    def entry(model: str) -> dict[str, Any]:
        empty = {"key": model, "traces": 0, "wasted_tokens": 0, "findings": 0, "total": 0.0}
        return entries.setdefault(model, {**empty, **dict.fromkeys(BUCKETS, 0.0)})

    for row in waste.model_costs(f):
        entry(row["model"]).update(traces=row["traces"], total=row["total_usd"])
    for row in waste.model_waste(f):
        e = entry(row["model"])
        e[row["detector"]] += row["wasted_usd"]
        e["wasted_tokens"] += row["wasted_tokens"]
        e["findings"] += row["findings"]
    rows = []
    for e in entries.values():
        e["productive"] = max(0.0, e["total"] - sum(e[b] for b in BUCKETS[:-1]))
        rows.append(report_row(e))
    return sorted(rows, key=lambda r: (-r["wasted_usd"], str(r["key"])))


def ledger(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """One trace's ledger as shown, from its row (`WasteReader.ledger`): its buckets, total,
    waste, wasted tokens, unpriced calls, outcome."""
    if row is None:
        return None
    return {
        "buckets": {b: row[b] for b in BUCKETS},
        "total_usd": row["total_usd"],
        "wasted_usd": row["total_usd"] - row["productive"],
        **{k: row[k] for k in ("wasted_tokens", "unpriced_calls", "outcome", "analyzed_at")},
    }


def findings(client: Client, project: str, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Findings as shown: the evidence decoded, and on a context-bloat finding the largest item
    its call carried along (`stale_item`, where message content was captured)."""
    for x in found:
        try:
            x["evidence"] = json.loads(x["evidence"]) if x["evidence"] else {}
        except ValueError:
            x["evidence"] = {}
        x["stale_item"] = None
    _name_stale_items(client, project, found)
    return found


def _name_stale_items(client: Client, project: str, found: list[dict[str, Any]]) -> None:
    """Set `stale_item` on the context-bloat findings among `found`. Token counts alone cannot
    say which tool output a bloated call carried; its captured input can. The billed leaf may be
    a client library's span under a framework's: the content is then on the parent."""
    bloated = [x for x in found if x["detector"] == "context_bloat"]
    if not bloated:
        return
    keys = {(x["trace_id"], x["span_id"]) for x in bloated}
    trace_ids = {t for t, _ in keys}
    found = span_reads.input_messages(client, project, trace_ids, {s for _, s in keys})
    content = {(r["trace_id"], r["span_id"]): r["input_messages"] for r in found if r["input_messages"]}
    parents = {(r["trace_id"], r["span_id"]): r["parent_span_id"] for r in found}
    missing = {parents[k] for k in keys if k not in content and parents.get(k)}
    if missing:
        for r in span_reads.input_messages(client, project, trace_ids, missing):
            if r["input_messages"]:
                content[(r["trace_id"], r["span_id"])] = r["input_messages"]
    for x in bloated:
        key = (x["trace_id"], x["span_id"])
        messages = content.get(key) or content.get((key[0], parents.get(key, "")))
        item = largest_carried_item(messages) if messages else None
        if item is not None:
            x["stale_item"] = f"{item[0]}, ~{item[1]:,} tokens"


def cell(value: Any) -> Any:
    """A CSV text cell that a spreadsheet would run as a formula is prefixed with a quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
