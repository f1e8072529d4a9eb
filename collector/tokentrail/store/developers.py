"""Reads for the Developers pages: the work of coding agents (Claude Code, Codex CLI, Gemini CLI)
per developer, team, repository or tool, their sessions, and one session's prompts in time order.

A coding agent's trace is one task: the work on one user prompt. Its `conversation_id` is the
tool's session id, `user_id` the developer, `coding_agent` the tool, `team` and `repository`
what its resource says. A task succeeded when an outcome on its trace, its task id or its
session says so (`tokentrail.store.outcomes`); its waste is its latest ledger (`trace_waste`).

Every read is over `traces` rows (one per prompt) and per-trace ledgers, never over spans: a
day-long session of thousands of model and tool calls is a few hundred rows here. The caller's
filter selects the traces (`tokentrail.store.filters.trace_where`) and says which coding agents
count (its `coding_agent`, `ANY_CODING_AGENT` for all of them); the session reads take the
session id and the filter's project and time window only. Lists are capped (`MAX_GROUPS`) or
paged by keyset. One session's reads select its `traces` rows in the window and read the
ledgers, findings and outcomes of those traces alone (by primary key), a page of prompts at a
time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokentrail.store._rows import Client, Row, first, rows
from tokentrail.store.filters import TraceFilter, trace_where, window
from tokentrail.store.outcomes import traces_judged, traces_with_outcome
from tokentrail.store.traces import Page, before_cursor, page_of

__all__ = [
    "GROUPS",
    "MAX_GROUPS",
    "ORDERS",
    "PERIODS",
    "findings_per_prompt",
    "groups",
    "has_coding_data",
    "outcomes_by_name",
    "prompts",
    "prompts_through",
    "session",
    "sessions",
    "totals",
    "trend",
]

#: grouping -> its expression over `traces` (as `t`)
GROUPS = {
    "developer": "t.user_id",
    "team": "t.team",
    "repository": "t.repository",
    "coding_agent": "t.coding_agent",
}
#: trend period -> the day that starts it (weeks start on Monday, UTC)
PERIODS = {
    "day": "toString(toDate(t.start_time))",
    "week": "toString(toMonday(t.start_time))",
}
#: row order -> ORDER BY over the per-task aggregates. Never by tokens: by cost per successful
#: task (groups without a successful task last, costliest first), or by waste.
ORDERS = {
    "per_success": "succeeded = 0, if(succeeded > 0, cost_usd / succeeded, 0) DESC, cost_usd DESC, key",
    "waste": "wasted_usd DESC, cost_usd DESC, key",
}
#: groups a report lists at most (a team of hundreds fits many times over)
MAX_GROUPS = 2000

# each trace's latest ledger, as `w`: its analysed cost, its waste and findings; 0s before its
# first analysis (w_analyzed = 0). co-sharded: trace_waste joined to traces by trace_id
_WASTE = """LEFT JOIN (
    SELECT trace_id, total_usd AS w_total, total_usd - productive_usd AS w_wasted, findings AS w_findings,
        1 AS w_analyzed
    FROM trace_waste FINAL WHERE {where}) AS w ON w.trace_id = t.trace_id"""

# a task's figures, for the aggregates below
_TASK = (
    "t.conversation_id AS session, t.user_id AS developer, t.cost_usd AS cost, t.unpriced_calls AS unpriced, "
    "w.w_total AS w_total, w.w_wasted AS w_wasted, w.w_analyzed AS w_analyzed"
)
# over tasks with `_TASK`'s columns, `outcome` and `key`
_PER_TASK = (
    "uniqExactIf(session, session != '') AS sessions, uniqExactIf(developer, developer != '') AS developers, "
    "count() AS tasks, countIf(outcome = 'success') AS succeeded, countIf(outcome = 'failure') AS failed, "
    "sum(cost) AS cost_usd, sum(unpriced) AS unpriced_calls, sum(w_wasted) AS wasted_usd, "
    "sum(w_total) AS analyzed_usd, countIf(w_analyzed = 0) AS not_analyzed"
)

# a session's prompts, over `traces_with_outcome` columns
_SESSION_TASK = (
    "t.conversation_id AS session, t.user_id AS developer, t.coding_agent AS tool, t.team AS team_of, "
    "t.repository AS repo, toUnixTimestamp64Nano(t.start_time) AS start_ns, toUnixTimestamp64Nano(t.end_time) AS end_ns, "
    "t.duration_ns AS busy, t.cost_usd AS cost, t.unpriced_calls AS unpriced, t.llm_calls AS call_n, "
    "t.tool_calls AS tool_n, t.error_count AS errs, t.models AS used, w.w_wasted AS w_wasted, "
    "w.w_analyzed AS w_analyzed"
)
_PER_SESSION = (
    "groupUniqArrayIf(10)(toValidUTF8(developer), developer != '') AS developers, "
    "groupUniqArrayIf(3)(tool, tool != '') AS tools, groupUniqArrayIf(5)(toValidUTF8(team_of), team_of != '') AS teams, "
    "groupUniqArrayIf(5)(toValidUTF8(repo), repo != '') AS repositories, min(start_ns) AS first_ns, "
    "max(end_ns) AS last_ns, sum(busy) AS busy_ns, count() AS prompts, countIf(outcome = 'success') AS succeeded, "
    "countIf(outcome = 'failure') AS failed, sum(cost) AS cost_usd, sum(unpriced) AS unpriced_calls, "
    "sum(w_wasted) AS wasted_usd, countIf(w_analyzed = 0) AS not_analyzed, sum(call_n) AS llm_calls, "
    "sum(tool_n) AS tool_calls, sum(errs) AS errors, arraySort(groupUniqArrayArray(20)(used)) AS models"
)
_PROMPT = (
    "t.trace_id AS trace_id, toUnixTimestamp64Nano(t.start_time) AS start_ns, "
    "toUnixTimestamp64Nano(t.end_time) AS end_ns, t.duration_ns AS duration_ns, t.cost_usd AS cost_usd, "
    "t.unpriced_calls AS unpriced_calls, t.llm_calls AS llm_calls, t.tool_calls AS tool_calls, "
    "t.error_count AS errors, t.status AS status, t.models AS models, toValidUTF8(t.task_id) AS task_id, "
    "t.coding_agent AS coding_agent, w.w_wasted AS wasted_usd, w.w_findings AS findings, w.w_analyzed AS analyzed"
)

# the findings of each trace's latest analysis, per trace of a page (co-sharded: by trace_id)
_FINDINGS = """
SELECT trace_id, count() AS findings, countIf(detector = 'retry') AS retries FROM waste_findings
WHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)}))
  AND (trace_id, analyzed_at) IN (
      SELECT trace_id, analyzed_at FROM trace_waste FINAL
      WHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)})))
GROUP BY trace_id
"""


def _tasks(f: TraceFilter, columns: str) -> tuple[str, dict[str, Any]]:
    """The filter's tasks, each with `columns`, `_TASK`'s figures, its outcome and its waste."""
    where, params = trace_where(f)
    clauses, _ = window(f)
    sql = traces_with_outcome(f"{columns}, {_TASK}", where, _WASTE.format(where=" AND ".join(clauses)))
    return sql, params


def groups(client: Client, f: TraceFilter, by: str, order: str) -> list[Row]:
    """Per value of `by` (a `GROUPS` key): key, sessions, developers, tasks, succeeded, failed,
    cost_usd, unpriced_calls, wasted_usd, analyzed_usd (the cost of the analysed tasks, which the
    waste is a share of) and not_analyzed; in `order` (an `ORDERS` key); at most `MAX_GROUPS`."""
    inner, params = _tasks(f, f"toValidUTF8({GROUPS[by]}) AS key")
    sql = f"SELECT key, {_PER_TASK} FROM ({inner}) GROUP BY key ORDER BY {ORDERS[order]} LIMIT {MAX_GROUPS}"
    return rows(client, sql, params)


def totals(client: Client, f: TraceFilter) -> Row:
    """All of the filter's tasks as one row keyed 'all', with the figures of `groups`."""
    inner, params = _tasks(f, "'all' AS key")
    return first(client, f"SELECT key, {_PER_TASK} FROM ({inner}) GROUP BY key", params) or {}


def trend(client: Client, f: TraceFilter, period: str) -> list[Row]:
    """Per `PERIODS` period (its first day as key), in date order, the figures of `groups`."""
    inner, params = _tasks(f, f"{PERIODS[period]} AS key")
    return rows(
        client, f"SELECT key, {_PER_TASK} FROM ({inner}) GROUP BY key ORDER BY key LIMIT 1000", params
    )


def outcomes_by_name(client: Client, f: TraceFilter, by: str | None) -> list[Row]:
    """Per value of `by` (None: all tasks, keyed 'all') and outcome name, what the outcomes of that
    name judged: key, name, targets (how many traces, tasks or sessions got one), succeeded,
    failed (their latest verdicts) and cost_usd, the cost of the tasks they judge, each task
    once (an outcome on a session judges all of the session's tasks)."""
    where, params = trace_where(f)
    key = f"toValidUTF8({GROUPS[by]})" if by else "'all'"
    inner = traces_judged(f"{key} AS key, t.trace_id AS trace_id, t.cost_usd AS cost", where)
    sql = f"""
SELECT key, outcome AS name, sum(trace_cost) AS cost_usd, groupUniqArrayArray(verdicts) AS judged,
    length(judged) AS targets, arrayCount(v -> v.2 = 1, judged) AS succeeded, arrayCount(v -> v.2 = 0, judged) AS failed
FROM (
    SELECT key, toValidUTF8(name) AS outcome, trace_id, any(cost) AS trace_cost, groupUniqArray((target, ok)) AS verdicts
    FROM ({inner}) GROUP BY key, outcome, trace_id)
GROUP BY key, outcome ORDER BY key, outcome LIMIT 20000
"""
    found = rows(client, sql, params)
    for row in found:
        del row["judged"]
    return found


def has_coding_data(client: Client, project: str) -> bool:
    """Whether any trace of the project came from a coding agent."""
    sql = (
        "SELECT count() AS n FROM (SELECT 1 FROM traces WHERE project = {project:String} "
        "AND coding_agent != '' LIMIT 1)"
    )
    return bool((first(client, sql, {"project": project}) or {})["n"])


def sessions(client: Client, f: TraceFilter) -> Page:
    """A page of the sessions of the filter's tasks, latest activity first: session_id,
    developers, tools, teams, repositories, first_ns, last_ns, busy_ns (the prompts' time), prompts,
    succeeded, failed, cost_usd, unpriced_calls, wasted_usd, not_analyzed, llm_calls, tool_calls,
    errors, models; the next page's cursor is (last_ns, session_id)."""
    where, params = trace_where(f)
    clauses, _ = window(f)
    having = before_cursor(f, params, "session_id")
    inner = traces_with_outcome(
        _SESSION_TASK, f"{where} AND conversation_id != ''", _WASTE.format(where=" AND ".join(clauses))
    )
    sql = (
        f"SELECT session AS session_id, {_PER_SESSION} FROM ({inner}) GROUP BY session {having} "
        "ORDER BY last_ns DESC, session_id DESC LIMIT {limit:UInt32}"
    )
    return page_of(rows(client, sql, params), f.limit, "last_ns", "session_id")


def _one_session(f: TraceFilter, session_id: str) -> tuple[str, str, dict[str, Any]]:
    """WHERE over `traces` for the coding-agent prompts of one session in the filter's window, and
    the waste join bounded to that session's traces."""
    clauses, params = window(f)
    clauses += ["conversation_id = {session:String}", "coding_agent != ''"]
    where = " AND ".join(clauses)
    # co-sharded: trace_waste and traces, by trace_id
    ledgers = f"project = {{project:String}} AND trace_id IN (SELECT trace_id FROM traces WHERE {where})"
    return where, _WASTE.format(where=ledgers), {**params, "session": session_id}


def session(client: Client, f: TraceFilter, session_id: str) -> Row | None:
    """The session's prompts in the filter's window taken together (the figures of `sessions`),
    or None when it has none there."""
    where, joins, params = _one_session(f, session_id)
    inner = traces_with_outcome(_SESSION_TASK, where, joins, bounded=True)
    sql = f"SELECT session AS session_id, {_PER_SESSION} FROM ({inner}) GROUP BY session"
    return first(client, sql, params)


def prompts(
    client: Client, f: TraceFilter, session_id: str, after: tuple[int, str] | None, limit: int
) -> list[Row]:
    """Up to `limit` of the session's prompts in start order, from `after` (start_ns, trace_id)
    on, that one included: trace_id, start_ns, end_ns, duration_ns, cost_usd, unpriced_calls,
    llm_calls, tool_calls, errors, status, models, task_id, coding_agent, wasted_usd, findings,
    analyzed, outcome and outcomes."""
    where, joins, params = _one_session(f, session_id)
    if after is not None:
        where += (
            " AND (toUnixTimestamp64Nano(start_time), trace_id) >= ({after_ns:Int64}, {after_trace:String})"
        )
        params["after_ns"], params["after_trace"] = after
    params["limit"] = limit
    sql = (
        traces_with_outcome(_PROMPT, where, joins, bounded=True)
        + " ORDER BY start_ns, trace_id LIMIT {limit:UInt32}"
    )
    return rows(client, sql, params)


def prompts_through(client: Client, f: TraceFilter, session_id: str, last: tuple[int, str]) -> int:
    """How many of the session's prompts in the window come before `last` (start_ns, trace_id),
    that one included: the number of a page's last prompt."""
    where, _, params = _one_session(f, session_id)
    sql = (
        f"SELECT count() AS n FROM traces FINAL WHERE {where} "
        "AND (toUnixTimestamp64Nano(start_time), trace_id) <= ({last_ns:Int64}, {last_trace:String})"
    )
    params["last_ns"], params["last_trace"] = last
    return int((first(client, sql, params) or {"n": 0})["n"])


def findings_per_prompt(client: Client, project: str, trace_ids: Sequence[str]) -> dict[str, Row]:
    """trace id -> findings and retries (findings of the retry rules) of its latest analysis."""
    if not trace_ids:
        return {}
    found = rows(client, _FINDINGS, {"project": project, "trace_ids": list(trace_ids)})
    return {r["trace_id"]: r for r in found}
