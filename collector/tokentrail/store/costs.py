"""Reads for the costs page: cost per task grouped by a dimension, per model, in total, and the
right-sizing evidence per task type and model.

A task is one trace; its *type* is `tokentrail.task.type` when the agent set it, else the root
agent's name, else the root span's name (`_TASK`). Its outcome comes from `tokentrail.store.outcomes`.
The filter selects the tasks (`tokentrail.store.filters.trace_where`); per model, and in the
right-sizing rows, only the filtered model's calls count. Each row carries key, tasks,
succeeded, failed, cost_usd, mean_usd, p50_usd, p95_usd, unpriced_calls and models.
"""

from __future__ import annotations

from typing import Any

from tokentrail.store._rows import Client, first, rows
from tokentrail.store.filters import TraceFilter, model_is, since, trace_where, window
from tokentrail.store.outcomes import traces_with_outcome

__all__ = ["GROUPS", "advice", "by_model", "groups", "totals"]

_TASK = "if(t.task_type != '', t.task_type, if(t.agent_name != '', t.agent_name, t.root_name))"
#: grouping -> expression over `traces` (the model is per call, from spans)
GROUPS = {
    "task": _TASK,
    "user": "t.user_id",
    "team": "r.team",
    "service": "t.service_name",
    "day": "toString(toDate(t.start_time))",
    "model": "",
}
# a trace's team: the named attribute on its root span, else on the root span's resource
# (co-sharded: spans per trace, joined to traces by trace_id)
_TEAMS = """LEFT JOIN (
    SELECT trace_id, any(if(attributes[{{team_attribute:String}}] != '', attributes[{{team_attribute:String}}],
                            resource_attributes[{{team_attribute:String}}])) AS team
    FROM spans WHERE {where} AND parent_span_id = ''
    GROUP BY trace_id) AS r ON r.trace_id = t.trace_id"""
# over tasks with `cost`, `unpriced`, `models` and `outcome`
_PER_TASK = (
    "count() AS tasks, countIf(outcome = 'success') AS succeeded, countIf(outcome = 'failure') AS failed, "
    "sum(cost) AS cost_usd, avg(cost) AS mean_usd, quantileExact(0.5)(cost) AS p50_usd, "
    "quantileExact(0.95)(cost) AS p95_usd, sum(unpriced) AS unpriced_calls"
)
# the billable calls of the filter's tasks `o`, as `s` (the tasks carry their outcomes, which are
# not sharded by trace: GLOBAL)
_CALLS = (
    "FROM spans AS s FINAL GLOBAL JOIN ({tasks}) AS o ON o.trace_id = s.trace_id {joins}"
    "WHERE s.project = {{project:String}} AND s.billable = 1{since}{model}"
)


def groups(client: Client, f: TraceFilter, by: str, team_attribute: str) -> list[dict[str, Any]]:
    """Per value of a task dimension (not `model`): the tasks, their outcomes and their cost;
    costliest first (by day: in date order)."""
    where, params = trace_where(f)
    joins = ""
    if by == "team":
        clauses, _ = window(f)
        joins = _TEAMS.format(where=" AND ".join(clauses))
        params["team_attribute"] = team_attribute
    inner = traces_with_outcome(
        f"{GROUPS[by]} AS key, t.cost_usd AS cost, t.unpriced_calls AS unpriced, t.models AS models",
        where,
        joins,
    )
    order = "key" if by == "day" else "sum(cost) DESC, key"
    sql = (
        f"SELECT key, {_PER_TASK}, arraySort(groupUniqArrayArray(models)) AS models "
        f"FROM ({inner}) GROUP BY key ORDER BY {order} LIMIT 500"
    )
    return rows(client, sql, params)


def totals(client: Client, f: TraceFilter) -> dict[str, Any]:
    """All of the filter's tasks as one row, keyed 'all'."""
    where, params = trace_where(f)
    inner = traces_with_outcome("t.cost_usd AS cost, t.unpriced_calls AS unpriced", where)
    sql = f"SELECT 'all' AS key, {_PER_TASK}, [] AS models FROM ({inner})"
    return first(client, sql, params) or {}


def _calls(f: TraceFilter, task_columns: str, joins: str = "") -> tuple[str, dict[str, Any]]:
    """FROM and WHERE of the billable calls `s` of the filter's tasks `o` (`task_columns` of each)."""
    where, params = trace_where(f)
    model, more = model_is(f, "s.model")
    tasks = traces_with_outcome(task_columns, where)
    sql = _CALLS.format(tasks=tasks, joins=joins, since=since(f, "s.start_time"), model=model)
    return sql, {**params, **more}


def by_model(client: Client, f: TraceFilter) -> list[dict[str, Any]]:
    """Per model: its calls' cost (the spread per call) and the outcomes of the tasks it worked on."""
    calls, params = _calls(f, "t.trace_id AS trace_id")
    sql = (
        "SELECT s.model AS key, uniqExact(s.trace_id) AS tasks, "
        "uniqExactIf(s.trace_id, o.outcome = 'success') AS succeeded, "
        "uniqExactIf(s.trace_id, o.outcome = 'failure') AS failed, sum(ifNull(s.cost_usd, 0)) AS cost_usd, "
        "avg(ifNull(s.cost_usd, 0)) AS mean_usd, quantileExact(0.5)(ifNull(s.cost_usd, 0)) AS p50_usd, "
        "quantileExact(0.95)(ifNull(s.cost_usd, 0)) AS p95_usd, countIf(s.cost_usd IS NULL) AS unpriced_calls, "
        f"[key] AS models {calls} GROUP BY key ORDER BY sum(ifNull(s.cost_usd, 0)) DESC LIMIT 500"
    )
    return rows(client, sql, params)


def advice(client: Client, f: TraceFilter) -> list[dict[str, Any]]:
    """Per task type and model: task, model, calls, mean_output, p95_output, cost_usd, succeeded,
    judged (tasks with an outcome), oversized_usd (what the oversized-model rule found) and
    suggestion (its reason)."""
    where, _ = window(f)
    # co-sharded: the findings of the latest analyses, per trace, joined to spans by trace_id
    oversized = (
        "LEFT JOIN (SELECT trace_id, span_id, ifNull(wasted_usd, 0) AS wasted, reason FROM waste_findings "
        "WHERE project = {project:String} AND detector = 'oversized_model' AND (trace_id, analyzed_at) IN "
        f"(SELECT trace_id, analyzed_at FROM trace_waste FINAL WHERE {' AND '.join(where)})"
        ") AS w ON w.trace_id = s.trace_id AND w.span_id = s.span_id "
    )
    calls, params = _calls(f, f"t.trace_id AS trace_id, {_TASK} AS task", oversized)
    sql = (
        "SELECT o.task AS task, s.model AS model, count() AS calls, avg(s.output_tokens) AS mean_output, "
        "quantileExact(0.95)(s.output_tokens) AS p95_output, sum(ifNull(s.cost_usd, 0)) AS cost_usd, "
        "uniqExactIf(s.trace_id, o.outcome = 'success') AS succeeded, "
        "uniqExactIf(s.trace_id, o.outcome != '') AS judged, sum(w.wasted) AS oversized_usd, "
        f"anyIf(w.reason, w.reason != '') AS suggestion {calls} "
        "GROUP BY o.task, model ORDER BY sum(w.wasted) DESC, sum(ifNull(s.cost_usd, 0)) DESC LIMIT 200"
    )
    return rows(client, sql, params)
