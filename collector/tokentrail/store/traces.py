"""Reads of `traces` (one summary row per trace) for the trace list, its totals and filter menus,
one trace's summary, and conversations (traces grouped by conversation id).

Every statement is scoped to one project and selects its traces with the filter's WHERE clause
(`tokentrail.store.filters`). Lists are paged by keyset: the next page starts after the last
row's (sort value, id), which the caller hands back as the filter's cursor. Text that is shown
goes through `toValidUTF8`: another writer may have stored bytes that are not UTF-8, and a page
shows them as U+FFFD rather than failing.

An aggregate never takes the name of a column its statement also reads (ClickHouse would read
the alias there): aggregates run over a subquery that renames what they read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokentrail.store._rows import Client, first, joined, rows
from tokentrail.store.filters import (
    INTEGER_SORTS,
    TRACES_WITH_WASTE,
    TraceFilter,
    trace_where,
    traces_with_waste,
    window,
)

__all__ = [
    "Page",
    "before_cursor",
    "conversations",
    "facets",
    "has_data",
    "page_of",
    "projects",
    "totals",
    "trace",
    "traces",
]

# sort key -> its expression over `traces`; a cursor's value is bound as Int64 for the keys in
# INTEGER_SORTS (the filter's parser checks it is an integer) and as Float64 for the others
_SORT_KEYS = {
    "start": "toUnixTimestamp64Nano(start_time)",
    "cost": "cost_usd",
    "tokens": "input_tokens + output_tokens",
    "duration": "duration_ns",
    "spans": "span_count",
    "waste": "wasted_usd",
}

# a trace's own columns; with its waste (`_TRACE`) where it is read joined with its ledger
_TRACE_OWN = """
SELECT trace_id, toUnixTimestamp64Nano(start_time) AS start_ns, duration_ns, toValidUTF8(root_name) AS root_name,
    service_name, agent_name, models, span_count, llm_calls, tool_calls, error_count, input_tokens, output_tokens,
    cache_read_tokens, reasoning_tokens, cost_usd, unpriced_calls, conversation_id, user_id, status
"""
_TRACE = _TRACE_OWN + ", wasted_usd, analyzed"

# the waste of given traces (co-sharded: trace_waste, by trace_id)
_WASTE_OF = """
SELECT trace_id, total_usd - productive_usd AS wasted_usd FROM trace_waste FINAL
WHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({page:Array(String)}))
"""

_TOTALS = """
SELECT count() AS traces, sum(span_count) AS spans, sum(llm_calls) AS llm_calls, sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens, sum(cache_read_tokens) AS cache_read_tokens, sum(cost) AS cost_usd,
    sum(unpriced) AS unpriced_calls, countIf(status = 'error') AS errors,
    quantileExactIf(0.5)(cost, unpriced = 0) AS cost_p50, quantileExactIf(0.95)(cost, unpriced = 0) AS cost_p95,
    sum(wasted) AS wasted_usd, countIf(analyzed = 0) AS not_analyzed
FROM (
    SELECT span_count, llm_calls, input_tokens, output_tokens, cache_read_tokens, cost_usd AS cost,
        unpriced_calls AS unpriced, status, wasted_usd AS wasted, analyzed
    FROM {source} WHERE {where})
"""

_FACETS = """
SELECT arraySort(groupUniqArrayArray(services)) AS services,
    arraySort(arrayFilter(x -> x != '', groupUniqArrayArray(arrayPushBack(agents, agent_name)))) AS agents,
    arraySort(groupUniqArrayArray(models)) AS models
FROM (
    SELECT services, agents, agent_name, models FROM traces FINAL WHERE {where} LIMIT 100000)
"""

_CONVERSATIONS = """
SELECT conversation_id, count() AS traces, min(toUnixTimestamp64Nano(start_time)) AS first_ns,
    max(toUnixTimestamp64Nano(start_time) + duration_ns) AS last_ns, sum(cost_usd) AS cost_usd,
    sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, sum(unpriced_calls) AS unpriced_calls,
    countIf(status = 'error') AS errors, arraySort(groupUniqArrayIf(agent_name, agent_name != '')) AS agents,
    arraySort(groupUniqArrayIf(user_id, user_id != '')) AS users
FROM (
    SELECT conversation_id, start_time, duration_ns, cost_usd, input_tokens, output_tokens, unpriced_calls,
        status, agent_name, user_id
    FROM traces FINAL WHERE {where} AND conversation_id != '')
GROUP BY conversation_id {having}
ORDER BY last_ns DESC, conversation_id DESC LIMIT {{limit:UInt32}}
"""


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: tuple[Any, str] | None  # (sort value, id) of the page's last row, if more follow


def page_of(found: list[dict[str, Any]], limit: int, value: str, key: str) -> Page:
    """Rows fetched with `limit + 1`: the extra one says another page follows."""
    if len(found) <= limit:
        return Page(found, None)
    found = found[:limit]
    return Page(found, (found[-1][value], found[-1][key]))


def before_cursor(f: TraceFilter, params: dict[str, Any], key: str) -> str:
    """For a list of groups, latest activity first: `HAVING (last_ns, {key}) <` the filter's cursor
    (or nothing on the first page), binding it and the page's `limit` (one more row than shown)."""
    params["limit"] = f.limit + 1
    if f.cursor is None:
        return ""
    params["cursor_value"], params["cursor_trace"] = f.cursor
    return f"HAVING (last_ns, {key}) < ({{cursor_value:Int64}}, {{cursor_trace:String}})"


def traces(client: Client, f: TraceFilter) -> Page:
    """A page of the filter's traces in its sort order, each with its waste."""
    where, params = trace_where(f, waste_joined=True)
    key = _SORT_KEYS[f.sort]
    key_type = "Int64" if f.sort in INTEGER_SORTS else "Float64"
    order = "DESC" if f.dir == "desc" else "ASC"
    if f.cursor is not None:
        op = "<" if f.dir == "desc" else ">"
        where += f" AND ({key}, trace_id) {op} ({{cursor_value:{key_type}}}, {{cursor_trace:String}})"
        params["cursor_value"], params["cursor_trace"] = f.cursor
    params["limit"] = f.limit + 1
    sorted_by = f"ORDER BY sort_value {order}, trace_id {order} LIMIT {{limit:UInt32}}"
    if f.sort == "waste" or f.has_waste:
        sql = f"{_TRACE}, {key} AS sort_value FROM {TRACES_WITH_WASTE} WHERE {where} {sorted_by}"
        found = joined(client, sql, params)
    else:
        # the page from the summaries alone, then the waste of its traces: joining every ledger
        # to find fifty would read them all
        found = rows(
            client, f"{_TRACE_OWN}, {key} AS sort_value FROM traces FINAL WHERE {where} {sorted_by}", params
        )
        ids = [r["trace_id"] for r in found]
        wasted = {r["trace_id"]: r["wasted_usd"] for r in rows(client, _WASTE_OF, {**params, "page": ids})}
        # as the join gives them: 0 and not analysed where a trace has no ledger yet
        found = [
            {
                **_without(r, "sort_value"),
                "wasted_usd": wasted.get(r["trace_id"], 0.0),
                "analyzed": int(r["trace_id"] in wasted),
                "sort_value": r["sort_value"],
            }
            for r in found
        ]
    page = page_of(found, f.limit, "sort_value", "trace_id")
    for row in page.rows:
        del row["sort_value"]
    return page


def _without(row: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != key}


def totals(client: Client, f: TraceFilter) -> dict[str, Any]:
    """Counts, tokens, cost (with its median and p95 over fully priced traces) and waste of the
    filter's traces; a percentile is None where no trace is fully priced."""
    where, params = trace_where(f, waste_joined=True)
    row = joined(client, _TOTALS.format(source=TRACES_WITH_WASTE, where=where), params)[0]
    for key in ("cost_p50", "cost_p95"):  # NaN when no trace is fully priced
        if not row["traces"] or row[key] != row[key]:
            row[key] = None
    return row


def facets(client: Client, f: TraceFilter) -> dict[str, list[str]]:
    """Choices for the filter menus: the services, agents and models of the window's traces."""
    clauses, params = window(f)
    found = first(client, _FACETS.format(where=" AND ".join(clauses)), params) or {}
    return {name: list(found[name])[:500] for name in ("services", "agents", "models")}


def projects(client: Client) -> list[str]:
    return [r["project"] for r in rows(client, "SELECT DISTINCT project FROM traces ORDER BY project", {})]


def has_data(client: Client, project: str) -> bool:
    """Whether any span of the project has arrived (its summaries may lag)."""
    sql = "SELECT count() AS n FROM (SELECT 1 FROM spans WHERE project = {project:String} LIMIT 1)"
    return bool((first(client, sql, {"project": project}) or {})["n"])


def trace(client: Client, project: str, trace_id: str) -> dict[str, Any] | None:
    """One trace's summary with its waste, or None while the summary is still being computed."""
    one = "trace_id = {trace_id:String}"
    sql = f"{_TRACE} FROM {traces_with_waste(one)} WHERE project = {{project:String}} AND {one}"
    return first(client, sql, {"project": project, "trace_id": trace_id})


def conversations(client: Client, f: TraceFilter) -> Page:
    """A page of the conversations of the filter's traces, latest activity first."""
    where, params = trace_where(f)
    having = before_cursor(f, params, "conversation_id")
    sql = _CONVERSATIONS.format(where=where, having=having)
    return page_of(rows(client, sql, params), f.limit, "last_ns", "conversation_id")
