"""Cost per task and per successful task, its spread, and right-sizing advice.

A task is one trace; its *type* is `tokentrail.task.type` when the agent set it, else the root
agent's name, else the root span's name. Cost per successful task is the spend of all tasks of a
type (failed and unjudged ones included: that money was spent to get the successes) divided by
the number of successful ones.
"""

from __future__ import annotations

from typing import Any

from tokentrail.analysis.outcomes import traces_with_outcome
from tokentrail.web.filters import MAX_NS, BadRequest, TraceFilter

__all__ = ["GROUPS", "CostQueries", "costs_view"]

Client = Any

_TASK = "if(t.task_type != '', t.task_type, if(t.agent_name != '', t.agent_name, t.root_name))"
#: grouping -> expression over `traces` (model is per call, from spans)
GROUPS = {
    "task": _TASK,
    "user": "t.user_id",
    "team": "r.team",
    "service": "t.service_name",
    "day": "toString(toDate(t.start_time))",
    "model": "",
}
# a trace's team: the named attribute on its root span, else on the root span's resource
_TEAMS = """LEFT JOIN (
    SELECT trace_id, any(if(attributes[{team_attribute:String}] != '', attributes[{team_attribute:String}],
                            resource_attributes[{team_attribute:String}])) AS team
    FROM spans WHERE project = {project:String} AND parent_span_id = ''
      AND start_time >= fromUnixTimestamp64Nano({start_ns:Int64})
    GROUP BY trace_id) AS r ON r.trace_id = t.trace_id"""
_RANGE = (
    "project = {project:String} AND start_time >= fromUnixTimestamp64Nano({start_ns:Int64})"
    " AND start_time < fromUnixTimestamp64Nano({end_ns:Int64})"
)
_COLUMNS = (
    "key",
    "tasks",
    "succeeded",
    "failed",
    "cost_usd",
    "mean_usd",
    "p50_usd",
    "p95_usd",
    "unpriced_calls",
    "models",
)


def _params(f: TraceFilter) -> dict[str, Any]:
    return {"project": f.project, "start_ns": f.start_ns, "end_ns": f.end_ns or MAX_NS}


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    row["cost_per_success_usd"] = row["cost_usd"] / row["succeeded"] if row["succeeded"] else None
    judged = row["succeeded"] + row["failed"]
    row["success_rate"] = row["succeeded"] / judged if judged else None
    return row


class CostQueries:
    def __init__(self, client: Client, team_attribute: str = "team") -> None:
        self.client = client
        self.team_attribute = team_attribute

    def _rows(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return list(self.client.query(sql, parameters=params).result_rows)

    def groups(self, f: TraceFilter, by: str) -> list[dict[str, Any]]:
        if by == "model":
            return self._by_model(f)
        inner = traces_with_outcome(
            f"{GROUPS[by]} AS key, t.cost_usd AS cost, t.unpriced_calls AS unpriced, t.models AS models",
            _RANGE,
            _TEAMS if by == "team" else "",
        )
        order = "key" if by == "day" else "sum(cost) DESC, key"
        sql = (
            "SELECT key, count(), countIf(outcome = 'success'), countIf(outcome = 'failure'), sum(cost), avg(cost), "
            "quantileExact(0.5)(cost), quantileExact(0.95)(cost), sum(unpriced), "
            f"arraySort(groupUniqArrayArray(models)) FROM ({inner}) GROUP BY key ORDER BY {order} LIMIT 500"
        )
        params = {**_params(f), "team_attribute": self.team_attribute}
        return [_finish(dict(zip(_COLUMNS, r, strict=True))) for r in self._rows(sql, params)]

    def _by_model(self, f: TraceFilter) -> list[dict[str, Any]]:
        """Per model: its calls' cost, and the outcomes of the tasks it worked on."""
        judged = traces_with_outcome("t.trace_id AS trace_id", _RANGE)
        sql = (
            "SELECT if(s.response_model != '', s.response_model, s.request_model) AS key, "
            "uniqExact(s.trace_id), uniqExactIf(s.trace_id, o.outcome = 'success'), "
            "uniqExactIf(s.trace_id, o.outcome = 'failure'), sum(ifNull(s.cost_usd, 0)), avg(ifNull(s.cost_usd, 0)), "
            "quantileExact(0.5)(ifNull(s.cost_usd, 0)), quantileExact(0.95)(ifNull(s.cost_usd, 0)), "
            "countIf(s.cost_usd IS NULL), [key] "
            "FROM spans AS s FINAL JOIN (" + judged + ") AS o ON o.trace_id = s.trace_id "
            "WHERE s.project = {project:String} AND s.billable = 1 "
            "AND s.start_time >= fromUnixTimestamp64Nano({start_ns:Int64}) "
            "GROUP BY key ORDER BY sum(ifNull(s.cost_usd, 0)) DESC LIMIT 500"
        )
        rows = [_finish(dict(zip(_COLUMNS, r, strict=True))) for r in self._rows(sql, _params(f))]
        for row in rows:  # per model the spread is per call, not per task
            row["per"] = "call"
        return rows

    def totals(self, f: TraceFilter) -> dict[str, Any]:
        inner = traces_with_outcome("t.cost_usd AS cost, t.unpriced_calls AS unpriced", _RANGE)
        sql = (
            "SELECT 'all', count(), countIf(outcome = 'success'), countIf(outcome = 'failure'), sum(cost), avg(cost), "
            "quantileExact(0.5)(cost), quantileExact(0.95)(cost), sum(unpriced), [] "
            f"FROM ({inner})"
        )
        row = _finish(dict(zip(_COLUMNS, self._rows(sql, _params(f))[0], strict=True)))
        if not row["tasks"]:
            row.update(mean_usd=None, p50_usd=None, p95_usd=None)
        return row

    def advice(self, f: TraceFilter) -> list[dict[str, Any]]:
        """Per task type and model: the evidence, and the oversized-model waste the analysis found."""
        tasks = traces_with_outcome(f"t.trace_id AS trace_id, {_TASK} AS task", _RANGE)
        sql = (
            "SELECT o.task, if(s.response_model != '', s.response_model, s.request_model) AS model, count(), "
            "avg(s.output_tokens), quantileExact(0.95)(s.output_tokens), sum(ifNull(s.cost_usd, 0)), "
            "uniqExactIf(s.trace_id, o.outcome = 'success'), uniqExactIf(s.trace_id, o.outcome != ''), "
            "sum(w.wasted), anyIf(w.reason, w.reason != '') "
            "FROM spans AS s FINAL JOIN (" + tasks + ") AS o ON o.trace_id = s.trace_id "
            "LEFT JOIN (SELECT trace_id, span_id, ifNull(wasted_usd, 0) AS wasted, reason FROM waste_findings "
            "WHERE project = {project:String} AND detector = 'oversized_model' "
            "AND (trace_id, analyzed_at) IN (SELECT trace_id, analyzed_at FROM trace_waste FINAL WHERE "
            + _RANGE
            + ")"
            ") AS w ON w.trace_id = s.trace_id AND w.span_id = s.span_id "
            "WHERE s.project = {project:String} AND s.billable = 1 "
            "AND s.start_time >= fromUnixTimestamp64Nano({start_ns:Int64}) "
            "GROUP BY o.task, model ORDER BY sum(w.wasted) DESC, sum(ifNull(s.cost_usd, 0)) DESC LIMIT 200"
        )
        names = (
            "task",
            "model",
            "calls",
            "mean_output",
            "p95_output",
            "cost_usd",
            "succeeded",
            "judged",
            "oversized_usd",
            "suggestion",
        )
        return [dict(zip(names, r, strict=True)) for r in self._rows(sql, _params(f))]


def costs_view(queries: CostQueries, f: TraceFilter, by: str, now_ns: int) -> dict[str, Any]:
    if by not in GROUPS:
        raise BadRequest(f"by must be one of {', '.join(GROUPS)}; got {by[:40]!r}")
    window_days = max((((f.end_ns or now_ns) - f.start_ns) / 86_400e9) if f.start_ns else 0.0, 0.0)
    advice = queries.advice(f)
    for row in advice:
        row["success_rate"] = row["succeeded"] / row["judged"] if row["judged"] else None
        # the saving found in the window, scaled to 30 days (only for a bounded window)
        row["monthly_saving_usd"] = (
            row["oversized_usd"] * 30 / window_days if window_days and row["oversized_usd"] else None
        )
    models_per_task: dict[str, int] = {}
    for row in advice:
        models_per_task[row["task"]] = models_per_task.get(row["task"], 0) + 1
    return {
        "filter": f,
        "by": by,
        "groups": list(GROUPS),
        "totals": queries.totals(f),
        "rows": queries.groups(f, by),
        "trend": queries.groups(f, "day"),
        "advice": [r for r in advice if r["oversized_usd"] or models_per_task[r["task"]] > 1],
        "window_days": window_days,
    }


def costs_json(data: dict[str, Any]) -> dict[str, Any]:
    return {k: data[k] for k in ("by", "totals", "rows", "trend", "advice", "window_days")}
