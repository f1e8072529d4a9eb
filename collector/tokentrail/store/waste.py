"""Reads of the waste ledger: `trace_waste` (one row per analysed trace, its cost split into
buckets) and `waste_findings` (one row per call a detector charged), for the waste report, the
findings list, the overview and one trace's ledger.

The newest analysis of a trace wins: `trace_waste` is read FINAL, and findings only where their
`analyzed_at` matches it (`_CURRENT`). A range's rows are the analysed traces that start in its
window, and, when the filter narrows further, only those among the filter's traces
(`tokentrail.store.filters.matching_traces`). Per-call rows (a breakdown by model, findings) keep
only the filtered model's calls. The buckets are `trace_waste`'s `{bucket}_usd` columns; the
caller names them (the analysis defines them), and each row carries a bucket's dollars under the
bucket's name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tokentrail.store._rows import Client, first, joined, rows
from tokentrail.store.filters import TraceFilter, matching_traces, model_is, trace_where, window

__all__ = ["DIMENSIONS", "WasteReader"]

#: report dimension -> expression over trace_waste (the model is per call, from spans and findings)
DIMENSIONS = {
    "agent": "agent_name",
    "service": "service_name",
    "user": "user_id",
    "day": "toString(toDate(start_time))",
    "model": "",
}
_FINDING = (
    "trace_id, span_id, toUnixTimestamp64Nano(start_time) AS start_ns, detector, rule, wasted_usd, wasted_tokens, "
    "time_lost_ns, model, agent_name AS agent, reason, related_span_ids AS related, evidence"
)
_OF_TRACE = (
    "project = {project:String} AND trace_id = {trace_id:String} AND analyzed_at = "
    "(SELECT max(analyzed_at) FROM trace_waste WHERE project = {project:String} AND trace_id = {trace_id:String})"
)


class WasteReader:
    """The ledger's reads over one client, for the buckets `buckets` (in their order)."""

    def __init__(self, client: Client, buckets: Sequence[str]) -> None:
        if not all(re.fullmatch(r"[a-z_]+", b) for b in buckets):
            raise ValueError(f"bucket names are column name stems: {buckets!r}")
        self.client = client
        self.buckets = tuple(buckets)
        self._sums = ", ".join(f"sum({b}_usd) AS {b}" for b in buckets)

    def _range(self, f: TraceFilter) -> tuple[str, dict[str, Any]]:
        """The analysed traces of the range, over `trace_waste` columns."""
        clauses, params = window(f)
        narrowed, more = matching_traces(f)
        return " AND ".join(clauses) + narrowed, {**params, **more}

    def _current(self, f: TraceFilter, ledgers: str = "") -> tuple[str, dict[str, Any]]:
        """The range's findings of the latest analyses, the model filter's calls only; with
        `ledgers`, a further test of the `trace_waste` rows, only those ledgers' findings."""
        where, params = self._range(f)
        model, more = model_is(f)
        # co-sharded: over waste_findings rows, by trace_id
        sql = (
            "project = {project:String} AND (trace_id, analyzed_at) IN "
            f"(SELECT trace_id, analyzed_at FROM trace_waste FINAL WHERE {where}"
            f"{' AND ' + ledgers if ledgers else ''}){model}"
        )
        return sql, {**params, **more}

    def by(self, f: TraceFilter, dimension: str) -> list[dict[str, Any]]:
        """Per value of a trace dimension: key, traces, each bucket's dollars, wasted_tokens and
        findings; most waste first (by day: in date order)."""
        where, params = self._range(f)
        order = "key" if dimension == "day" else "sum(total_usd) - sum(productive_usd) DESC, key"
        sql = (
            f"SELECT {DIMENSIONS[dimension]} AS key, count() AS traces, {self._sums}, "
            "sum(wasted_tokens) AS wasted_tokens, sum(findings) AS findings "
            f"FROM trace_waste FINAL WHERE {where} GROUP BY key ORDER BY {order} LIMIT 500"
        )
        return rows(self.client, sql, params)

    def totals(self, f: TraceFilter) -> dict[str, Any]:
        """The range's traces, each bucket's dollars, wasted_tokens and findings."""
        where, params = self._range(f)
        sql = (
            f"SELECT count() AS traces, {self._sums}, sum(wasted_tokens) AS wasted_tokens, "
            f"sum(findings) AS findings FROM trace_waste FINAL WHERE {where}"
        )
        return first(self.client, sql, params) or {}

    def model_costs(self, f: TraceFilter) -> list[dict[str, Any]]:
        """Per model: the cost of its billable calls in the range's traces, and in how many. From
        the ledgers' sums per model; the calls themselves only of ledgers written without them."""
        where, params = self._range(f)
        only, more = _model_entry(f)
        sql = (
            "SELECT model, sum(usd) AS total_usd, count() AS traces FROM ("
            f"SELECT call_models, call_model_usd FROM trace_waste FINAL WHERE {where} AND models_recorded = 1) "
            f"ARRAY JOIN call_models AS model, call_model_usd AS usd{only} GROUP BY model"
        )
        found = rows(self.client, sql, {**params, **more})
        if not self._older_ledgers(f, "models_recorded"):
            return found
        model, more = model_is(f)
        # co-sharded: spans and trace_waste, by trace_id
        sql = (
            "SELECT model, sum(ifNull(cost_usd, 0)) AS total_usd, uniqExact(trace_id) AS traces FROM spans FINAL "
            f"WHERE project = {{project:String}} AND billable = 1{model} AND trace_id IN "
            f"(SELECT trace_id FROM trace_waste FINAL WHERE {where} AND models_recorded = 0) GROUP BY model"
        )
        return _summed(found, rows(self.client, sql, {**params, **more}), ("model",))

    def model_waste(self, f: TraceFilter) -> list[dict[str, Any]]:
        """Per model and detector: wasted_usd, wasted_tokens and findings on its calls. From the
        ledgers' sums; the findings themselves only of ledgers written without them."""
        where, params = self._range(f)
        only, more = _model_entry(f)
        sql = (
            "SELECT model, detector, sum(usd) AS wasted_usd, sum(tokens) AS wasted_tokens, sum(n) AS findings "
            "FROM (SELECT finding_models, finding_detectors, finding_counts, finding_usd, finding_tokens "
            f"FROM trace_waste FINAL WHERE {where} AND models_recorded = 1) "
            "ARRAY JOIN finding_models AS model, finding_detectors AS detector, finding_counts AS n, "
            f"finding_usd AS usd, finding_tokens AS tokens{only} GROUP BY model, detector"
        )
        found = rows(self.client, sql, {**params, **more})
        if not self._older_ledgers(f, "models_recorded"):
            return found
        where, params = self._current(f, "models_recorded = 0")
        sql = (
            "SELECT model, detector, sum(ifNull(wasted_usd, 0)) AS wasted_usd, sum(wasted_tokens) AS wasted_tokens, "
            f"count() AS findings FROM waste_findings WHERE {where} GROUP BY model, detector"
        )
        return _summed(found, rows(self.client, sql, params), ("model", "detector"))

    def by_detector(self, f: TraceFilter) -> list[dict[str, Any]]:
        """Per detector: how often, how much, and the trace where it cost most (an example)."""
        if f.model:  # per call: only the findings know their model
            return [_drop_top(r) for r in self._detectors_of_findings(f, "")]
        where, params = self._range(f)
        # the ledgers' sums per detector; the findings themselves only of ledgers written without them
        sql = (
            "SELECT detector, sum(n) AS findings, count() AS traces, sum(usd) AS wasted_usd, "
            "sum(tokens) AS wasted_tokens, argMax(trace_id, most) AS example_trace, max(most) AS top FROM ("
            "SELECT trace_id, detectors, detector_findings, detector_usd, detector_tokens, detector_top_usd "
            f"FROM trace_waste FINAL WHERE {where} AND detectors_recorded = 1) "
            "ARRAY JOIN detectors AS detector, detector_findings AS n, detector_usd AS usd, "
            "detector_tokens AS tokens, detector_top_usd AS most GROUP BY detector"
        )
        found = {r["detector"]: {**r, "example_reason": ""} for r in rows(self.client, sql, params)}
        for r in _example_reasons(self.client, f.project, found.values()):
            found[r["detector"]]["example_reason"] = r["reason"]
        older = self._older_ledgers(f, "detectors_recorded")
        for r in self._detectors_of_findings(f, "detectors_recorded = 0") if older else []:
            mine = found.get(r["detector"])
            if mine is None:
                found[r["detector"]] = r
                continue
            for key in ("findings", "traces", "wasted_usd", "wasted_tokens"):
                mine[key] += r[key]
            if r["top"] > mine["top"]:
                mine.update(
                    example_trace=r["example_trace"], example_reason=r["example_reason"], top=r["top"]
                )
        return sorted((_drop_top(r) for r in found.values()), key=lambda r: -r["wasted_usd"])

    def _detectors_of_findings(self, f: TraceFilter, ledgers: str) -> list[dict[str, Any]]:
        """`by_detector` from the findings one by one (of the ledgers `ledgers` selects), with
        each detector's costliest finding's dollars (`top`)."""
        where, params = self._current(f, ledgers)
        sql = (
            "SELECT detector, count() AS findings, uniqExact(trace_id) AS traces, sum(usd) AS wasted_usd, "
            "sum(tokens) AS wasted_tokens, argMax(trace_id, usd) AS example_trace, "
            "argMax(reason, usd) AS example_reason, max(usd) AS top FROM (SELECT detector, trace_id, reason, "
            f"ifNull(wasted_usd, 0) AS usd, wasted_tokens AS tokens FROM waste_findings WHERE {where}) "
            "GROUP BY detector ORDER BY wasted_usd DESC"
        )
        return rows(self.client, sql, params)

    def _older_ledgers(self, f: TraceFilter, recorded: str) -> bool:
        """Whether any ledger of the range was written without the sums its flag `recorded`
        (`detectors_recorded`, `models_recorded`) says it holds."""
        where, params = self._range(f)
        sql = f"SELECT count() AS n FROM trace_waste FINAL WHERE {where} AND {recorded} = 0"
        return bool((first(self.client, sql, params) or {})["n"])

    def not_analyzed(self, f: TraceFilter) -> int:
        """How many of the filter's traces have no analysis yet."""
        where, params = trace_where(f)
        clauses, _ = window(f)
        # co-sharded: traces and trace_waste, by trace_id
        sql = (
            "SELECT countIf(analyzed = 0) AS n FROM (SELECT analyzed FROM traces FINAL ANY LEFT JOIN "
            f"(SELECT trace_id, 1 AS analyzed FROM trace_waste FINAL WHERE {' AND '.join(clauses)}) AS w "
            f"USING (trace_id) WHERE {where})"
        )
        return int(joined(self.client, sql, params)[0]["n"])

    def findings(self, f: TraceFilter, detector: str, limit: int) -> list[dict[str, Any]]:
        """The range's findings (of one detector, or all), costliest first."""
        params: dict[str, Any] = {"detector": detector, "limit": limit}
        ledgers = ""
        if not f.model:
            # Only traces whose costliest finding is among the `limit` costliest traces' can hold
            # one of the `limit` costliest findings; ledgers without sums per detector may all.
            top = (
                "if({detector:String} = '', arrayMax(detector_top_usd), "
                "detector_top_usd[indexOf(detectors, {detector:String})])"
            )
            found = "(has(detectors, {detector:String}) OR ({detector:String} = '' AND notEmpty(detectors)))"
            ranged, more = self._range(f)
            sql = (
                f"SELECT {top} AS top FROM trace_waste FINAL WHERE {ranged} AND detectors_recorded = 1 "
                f"AND {found} ORDER BY top DESC LIMIT 1 OFFSET {{offset:UInt32}}"
            )
            least = first(self.client, sql, {**more, **params, "offset": max(limit, 1) - 1})
            params["least"] = least["top"] if least else 0.0
            ledgers = f"(detectors_recorded = 0 OR ({found} AND {top} >= {{least:Float64}}))"
        where, more = self._current(f, ledgers)
        sql = (
            f"SELECT {_FINDING} FROM waste_findings WHERE {where} "
            "AND ({detector:String} = '' OR detector = {detector:String}) "
            "ORDER BY ifNull(wasted_usd, 0) DESC, wasted_tokens DESC, trace_id, span_id LIMIT {limit:UInt32}"
        )
        return rows(self.client, sql, {**more, **params})

    # --- one trace -----------------------------------------------------------------------------

    def ledger(self, project: str, trace_id: str) -> dict[str, Any] | None:
        """The trace's latest ledger: each bucket's dollars, total_usd, wasted_tokens,
        unpriced_calls, outcome, analyzed_at and how many findings it has; None before its first
        analysis."""
        buckets = ", ".join(f"{b}_usd AS {b}" for b in self.buckets)
        sql = (
            f"SELECT {buckets}, total_usd, wasted_tokens, unpriced_calls, outcome, analyzed_at, findings "
            "FROM trace_waste FINAL WHERE project = {project:String} AND trace_id = {trace_id:String}"
        )
        return first(self.client, sql, {"project": project, "trace_id": trace_id})

    def trace_findings(
        self, project: str, trace_id: str, span_ids: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """The findings of the trace's latest analysis, by detector and span; with `span_ids`,
        only the findings on those spans."""
        params: dict[str, Any] = {"project": project, "trace_id": trace_id}
        only = ""
        if span_ids is not None:
            only, params["span_ids"] = (
                " AND has({span_ids:Array(String)}, span_id)",
                list(span_ids),
            )
        sql = f"SELECT {_FINDING} FROM waste_findings WHERE {_OF_TRACE}{only} ORDER BY detector, span_id"
        return rows(self.client, sql, params)

    def trace_marks(self, project: str, trace_id: str) -> list[dict[str, Any]]:
        """span_id, detector, reason and wasted_usd of the trace's latest findings, by detector and
        span: the timeline's badges, and what picks the findings a page lists in full (a large
        trace has thousands, and their evidence is most of what a finding weighs)."""
        sql = (
            "SELECT span_id, detector, reason, wasted_usd FROM waste_findings "
            f"WHERE {_OF_TRACE} ORDER BY detector, span_id"
        )
        return rows(self.client, sql, {"project": project, "trace_id": trace_id})


_DETECTOR_COLUMNS = (
    "detector",
    "findings",
    "traces",
    "wasted_usd",
    "wasted_tokens",
    "example_trace",
    "example_reason",
)


def _model_entry(f: TraceFilter) -> tuple[str, dict[str, Any]]:
    """` WHERE model = the model filter` over a ledger's entries per model, or "" without one."""
    return (" WHERE model = {model:String}", {"model": f.model}) if f.model else ("", {})


def _summed(
    rows: list[dict[str, Any]], more: list[dict[str, Any]], keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Rows of the same sums over two sets of traces (no trace in both), added up by `keys`."""
    found = {tuple(r[k] for k in keys): dict(r) for r in rows}
    for r in more:
        mine = found.setdefault(tuple(r[k] for k in keys), {**r, **{k: 0 for k in r if k not in keys}})
        for k in r:
            if k not in keys:
                mine[k] += r[k]
    return list(found.values())


def _drop_top(row: dict[str, Any]) -> dict[str, Any]:
    """A row of `by_detector`, its columns in their order."""
    return {k: row[k] for k in _DETECTOR_COLUMNS}


def _example_reasons(client: Client, project: str, found: Any) -> list[dict[str, Any]]:
    """detector, reason: of each example trace, the reason of that detector's costliest finding
    in its latest analysis."""
    pairs = [(r["detector"], r["example_trace"]) for r in found]
    if not pairs:
        return []
    # co-sharded: over waste_findings rows, by trace_id
    sql = (
        "SELECT detector, trace_id, argMax(reason, ifNull(wasted_usd, 0)) AS reason FROM waste_findings "
        "WHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({traces:Array(String)})) AND (trace_id, analyzed_at) IN "
        "(SELECT trace_id, analyzed_at FROM trace_waste FINAL WHERE project = {project:String} "
        "AND trace_id IN (SELECT arrayJoin({traces:Array(String)}))) GROUP BY detector, trace_id"
    )
    wanted = set(pairs)
    params = {"project": project, "traces": sorted({t for _, t in pairs})}
    return [r for r in rows(client, sql, params) if (r["detector"], r["trace_id"]) in wanted]
