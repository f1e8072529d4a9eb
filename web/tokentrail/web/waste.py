"""Reads of the waste ledger (tables `trace_waste`, `waste_findings`) and the views built on them:
the waste report, the overview, and a trace's own ledger and findings.

Findings are read only from each trace's latest analysis (matching `analyzed_at`).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from tokentrail.analysis.ledger import BUCKETS, largest_carried_item
from tokentrail.web.filters import MAX_NS, BadRequest, TraceFilter

__all__ = [
    "DIMENSIONS",
    "FINDING_FIELDS",
    "WasteQueries",
    "findings_csv",
    "findings_view",
    "report_csv",
    "report_view",
]

Client = Any

#: report dimension -> expression over trace_waste (model is per call, from the findings)
DIMENSIONS = {
    "agent": "agent_name",
    "service": "service_name",
    "user": "user_id",
    "day": "toString(toDate(start_time))",
    "model": "",
}
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

_SUMS = ", ".join(f"sum({b}_usd)" for b in BUCKETS)
_RANGE = (
    "project = {project:String} AND start_time >= fromUnixTimestamp64Nano({start_ns:Int64})"
    " AND start_time < fromUnixTimestamp64Nano({end_ns:Int64})"
)
_CURRENT = f"(trace_id, analyzed_at) IN (SELECT trace_id, analyzed_at FROM trace_waste FINAL WHERE {_RANGE})"

#: a finding as the pages, the JSON and the CSV show it: what, where, how much, by which rule, on which numbers
FINDING_FIELDS = (
    "trace_id",
    "span_id",
    "start_ns",
    "detector",
    "rule",
    "wasted_usd",
    "wasted_tokens",
    "time_lost_ns",
    "model",
    "agent",
    "reason",
    "related",
    "evidence",
)
_FINDING_SELECT = (
    "trace_id, span_id, toUnixTimestamp64Nano(start_time), detector, rule, wasted_usd, wasted_tokens, "
    "time_lost_ns, model, agent_name, reason, related_span_ids, evidence"
)
_CONTENT = """
SELECT trace_id, span_id, parent_span_id, input_messages FROM spans
WHERE project = {project:String} AND trace_id IN {trace_ids:Array(String)} AND span_id IN {span_ids:Array(String)}
"""


def _params(f: TraceFilter) -> dict[str, Any]:
    return {"project": f.project, "start_ns": f.start_ns, "end_ns": f.end_ns or MAX_NS}


def _row(key: Any, traces: int, sums: list[float], tokens: int, findings: int) -> dict[str, Any]:
    buckets = dict(zip(BUCKETS, sums, strict=True))
    total = sum(buckets.values())
    wasted = total - buckets["productive"]
    return {
        "key": key,
        "traces": traces,
        "total_usd": total,
        "wasted_usd": wasted,
        "waste_share": wasted / total if total > 0 else None,
        "buckets": buckets,
        "wasted_tokens": tokens,
        "findings": findings,
    }


class WasteQueries:
    def __init__(self, client: Client) -> None:
        self.client = client

    def _rows(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return list(self.client.query(sql, parameters=params).result_rows)

    def by(self, f: TraceFilter, dimension: str) -> list[dict[str, Any]]:
        params = _params(f)
        if dimension == "model":
            return self._by_model(params)
        sql = (
            f"SELECT {DIMENSIONS[dimension]} AS key, count(), {_SUMS}, sum(wasted_tokens), sum(findings) "
            f"FROM trace_waste FINAL WHERE {_RANGE} GROUP BY key "
            "ORDER BY sum(total_usd) - sum(productive_usd) DESC, key LIMIT 500"
        )
        if dimension == "day":
            sql = sql.replace("ORDER BY sum(total_usd) - sum(productive_usd) DESC, key", "ORDER BY key")
        return [
            _row(r[0], r[1], list(r[2 : 2 + len(BUCKETS)]), r[-2], r[-1]) for r in self._rows(sql, params)
        ]

    def _by_model(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        # per call: a model's total from its billable spans, its waste from the findings on them
        totals = self._rows(
            "SELECT if(response_model != '', response_model, request_model) AS m, sum(ifNull(cost_usd, 0)), "
            "uniqExact(trace_id) FROM spans FINAL WHERE billable = 1 AND trace_id IN "
            f"(SELECT trace_id FROM trace_waste FINAL WHERE {_RANGE}) AND project = {{project:String}} GROUP BY m",
            params,
        )
        waste = self._rows(
            "SELECT model, detector, sum(ifNull(wasted_usd, 0)), sum(wasted_tokens), count() FROM waste_findings "
            f"WHERE project = {{project:String}} AND {_CURRENT} GROUP BY model, detector",
            params,
        )
        by_model: dict[str, dict[str, Any]] = {}
        for model, total, traces in totals:
            by_model[model] = {
                "traces": traces,
                "total": total,
                "sums": dict.fromkeys(BUCKETS, 0.0),
                "tokens": 0,
                "n": 0,
            }
        for model, detector, usd, tokens, n in waste:
            entry = by_model.setdefault(
                model, {"traces": 0, "total": 0.0, "sums": dict.fromkeys(BUCKETS, 0.0), "tokens": 0, "n": 0}
            )
            entry["sums"][detector] += usd
            entry["tokens"] += tokens
            entry["n"] += n
        rows = []
        for model, e in by_model.items():
            e["sums"]["productive"] = max(0.0, e["total"] - sum(e["sums"].values()))
            rows.append(_row(model, e["traces"], [e["sums"][b] for b in BUCKETS], e["tokens"], e["n"]))
        return sorted(rows, key=lambda r: (-r["wasted_usd"], str(r["key"])))

    def totals(self, f: TraceFilter) -> dict[str, Any]:
        sql = f"SELECT count(), {_SUMS}, sum(wasted_tokens), sum(findings) FROM trace_waste FINAL WHERE {_RANGE}"
        r = self._rows(sql, _params(f))[0]
        return _row("total", r[0], list(r[1 : 1 + len(BUCKETS)]), r[-2], r[-1])

    def top_findings(self, f: TraceFilter, limit: int = 10) -> list[dict[str, Any]]:
        return self.list_findings(f, "", limit)

    def by_detector(self, f: TraceFilter) -> list[dict[str, Any]]:
        """Per detector: how often, how much, and the trace where it cost most (an example)."""
        sql = (
            "SELECT detector, count(), uniqExact(trace_id), sum(ifNull(wasted_usd, 0)), sum(wasted_tokens), "
            "argMax(trace_id, ifNull(wasted_usd, 0)), argMax(reason, ifNull(wasted_usd, 0)) FROM waste_findings "
            f"WHERE project = {{project:String}} AND {_CURRENT} GROUP BY detector ORDER BY sum(ifNull(wasted_usd, 0)) DESC"
        )
        names = (
            "detector",
            "findings",
            "traces",
            "wasted_usd",
            "wasted_tokens",
            "example_trace",
            "example_reason",
        )
        return [dict(zip(names, r, strict=True)) for r in self._rows(sql, _params(f))]

    def not_analyzed(self, f: TraceFilter) -> int:
        sql = (
            f"SELECT count() FROM traces FINAL WHERE {_RANGE} AND trace_id NOT IN "
            f"(SELECT trace_id FROM trace_waste FINAL WHERE {_RANGE})"
        )
        return int(self._rows(sql, _params(f))[0][0])

    # --- one trace -----------------------------------------------------------------------------

    def ledger(self, project: str, trace_id: str) -> dict[str, Any] | None:
        sql = (
            f"SELECT {', '.join(f'{b}_usd' for b in BUCKETS)}, total_usd, wasted_tokens, unpriced_calls, outcome, "
            "analyzed_at FROM trace_waste FINAL WHERE project = {project:String} AND trace_id = {trace_id:String}"
        )
        rows = self._rows(sql, {"project": project, "trace_id": trace_id})
        if not rows:
            return None
        r = rows[0]
        n = len(BUCKETS)
        return {
            "buckets": dict(zip(BUCKETS, r[:n], strict=True)),
            "total_usd": r[n],
            "wasted_usd": r[n] - r[n - 1],
            "wasted_tokens": r[n + 1],
            "unpriced_calls": r[n + 2],
            "outcome": r[n + 3],
            "analyzed_at": r[n + 4],
        }

    def findings(self, project: str, trace_id: str) -> list[dict[str, Any]]:
        sql = (
            f"SELECT {_FINDING_SELECT} FROM waste_findings "
            "WHERE project = {project:String} AND trace_id = {trace_id:String} AND analyzed_at = "
            "(SELECT max(analyzed_at) FROM trace_waste WHERE project = {project:String} AND trace_id = {trace_id:String}) "
            "ORDER BY detector, span_id"
        )
        return self._findings(project, self._rows(sql, {"project": project, "trace_id": trace_id}))

    def list_findings(self, f: TraceFilter, detector: str, limit: int) -> list[dict[str, Any]]:
        """The range's findings (of one detector, or all), costliest first."""
        sql = (
            f"SELECT {_FINDING_SELECT} FROM waste_findings WHERE project = {{project:String}} AND {_CURRENT} "
            "AND ({detector:String} = '' OR detector = {detector:String}) "
            "ORDER BY ifNull(wasted_usd, 0) DESC, wasted_tokens DESC, trace_id, span_id LIMIT {limit:UInt32}"
        )
        return self._findings(
            f.project, self._rows(sql, {**_params(f), "detector": detector, "limit": limit})
        )

    def _findings(self, project: str, rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
        found = []
        for r in rows:
            x = dict(zip(FINDING_FIELDS, r, strict=True))
            try:
                x["evidence"] = json.loads(x["evidence"]) if x["evidence"] else {}
            except ValueError:
                x["evidence"] = {}
            x["stale_item"] = None
            found.append(x)
        self._name_stale_items(project, [x for x in found if x["detector"] == "context_bloat"])
        return found

    def _name_stale_items(self, project: str, bloated: list[dict[str, Any]]) -> None:
        """Where message content was captured, a context-bloat finding names the largest thing its
        call carried along (token counts alone cannot say which tool output it was). The billed
        leaf may be a client library's span under a framework's; the content is then on that one."""
        if not bloated:
            return
        keys = {(x["trace_id"], x["span_id"]) for x in bloated}
        params = {
            "project": project,
            "trace_ids": sorted({t for t, _ in keys}),
            "span_ids": sorted({s for _, s in keys}),
        }
        rows = self._rows(_CONTENT, params)
        content = {(t, s): m for t, s, _, m in rows if m}
        parents = {(t, s): p for t, s, p, _ in rows}
        missing = sorted({parents[k] for k in keys if k not in content and parents.get(k)})
        if missing:
            content |= {
                (t, s): m for t, s, _, m in self._rows(_CONTENT, {**params, "span_ids": missing}) if m
            }
        for x in bloated:
            key = (x["trace_id"], x["span_id"])
            messages = content.get(key) or content.get((key[0], parents.get(key, "")))
            item = largest_carried_item(messages) if messages else None
            if item is not None:
                x["stale_item"] = f"{item[0]}, ~{item[1]:,} tokens"


def report_view(queries: WasteQueries, f: TraceFilter, by: str) -> dict[str, Any]:
    if by not in DIMENSIONS:
        raise BadRequest(f"by must be one of {', '.join(DIMENSIONS)}; got {by[:40]!r}")
    trend = queries.by(f, "day")
    return {
        "filter": f,
        "by": by,
        "dimensions": list(DIMENSIONS),
        "buckets": list(BUCKETS),
        "labels": LABELS,
        "totals": queries.totals(f),
        "rows": queries.by(f, by) if by != "day" else trend,
        "trend": trend,
        "detectors": queries.by_detector(f),
        "top": queries.top_findings(f),
        "not_analyzed": queries.not_analyzed(f),
    }


def report_json(data: dict[str, Any]) -> dict[str, Any]:
    return {
        k: data[k] for k in ("by", "buckets", "totals", "rows", "trend", "detectors", "top", "not_analyzed")
    }


def _cell(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula is prefixed with a quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def report_csv(data: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    buckets = data["buckets"]
    writer.writerow(
        [
            data["by"],
            "traces",
            "total_usd",
            "wasted_usd",
            "waste_share",
            *(f"{b}_usd" for b in buckets),
            "wasted_tokens",
            "findings",
        ]
    )
    for r in data["rows"]:
        writer.writerow(
            [
                _cell(r["key"]),
                r["traces"],
                f"{r['total_usd']:.8f}",
                f"{r['wasted_usd']:.8f}",
                "" if r["waste_share"] is None else f"{r['waste_share']:.4f}",
                *(f"{r['buckets'][b]:.8f}" for b in buckets),
                r["wasted_tokens"],
                r["findings"],
            ]
        )
    return out.getvalue()


#: findings a page lists; the JSON and CSV take up to MAX_EXPORT
FINDINGS_SHOWN = 200
MAX_EXPORT = 10_000


def findings_view(
    queries: WasteQueries, f: TraceFilter, detector: str, limit: int = FINDINGS_SHOWN
) -> dict[str, Any]:
    if detector and detector not in BUCKETS[:-1]:
        raise BadRequest(f"detector must be one of {', '.join(BUCKETS[:-1])}; got {detector[:40]!r}")
    return {
        "filter": f,
        "detector": detector,
        "detectors": list(BUCKETS[:-1]),
        "labels": LABELS,
        "findings": queries.list_findings(f, detector, limit),
        "limit": limit,
    }


def findings_json(data: dict[str, Any]) -> dict[str, Any]:
    return {"detector": data["detector"], "limit": data["limit"], "findings": data["findings"]}


def findings_csv(data: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*FINDING_FIELDS[:-2], "stale_item", "related", "formula", "evidence"])
    for x in data["findings"]:
        writer.writerow(
            [
                *(_cell(x[k]) for k in FINDING_FIELDS[:5]),
                "" if x["wasted_usd"] is None else f"{x['wasted_usd']:.8f}",
                x["wasted_tokens"],
                x["time_lost_ns"],
                _cell(x["model"]),
                _cell(x["agent"]),
                _cell(x["reason"]),
                _cell(x["stale_item"] or ""),
                " ".join(x["related"]),
                _cell(str(x["evidence"].get("formula", ""))),
                _cell(json.dumps(x["evidence"], sort_keys=True)),
            ]
        )
    return out.getvalue()
