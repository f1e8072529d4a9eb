"""Every SQL statement the web UI runs. Values are always bound parameters; the only text put
together here is chosen from fixed fragments in this module. Every statement is scoped to one
project. Text that is shown goes through `toValidUTF8`: another writer may have stored bytes that
are not UTF-8, and a page shows them as U+FFFD rather than failing or showing hex.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokentrail.web.filters import INTEGER_SORTS, TraceFilter

__all__ = [
    "TRACE_COLUMNS",
    "Queries",
]

Client = Any

# sort key → its expression over `traces`; a cursor's value is bound as Int64 for the keys in
# INTEGER_SORTS (the filter checks it is an integer) and as Float64 for the others
_SORT_KEYS = {
    "start": "toUnixTimestamp64Nano(start_time)",
    "cost": "cost_usd",
    "tokens": "input_tokens + output_tokens",
    "duration": "duration_ns",
    "spans": "span_count",
    "waste": "wasted_usd",
}

# Each trace's waste, from its latest analysis; `analyzed` is 0 for a trace not analysed yet.
_WITH_WASTE = """traces FINAL LEFT JOIN (
    SELECT trace_id, total_usd - productive_usd AS wasted_usd, 1 AS analyzed FROM trace_waste FINAL
    WHERE project = {project:String}) AS w USING (trace_id)"""

TRACE_COLUMNS = (
    "trace_id",
    "start_ns",
    "duration_ns",
    "root_name",
    "service_name",
    "agent_name",
    "models",
    "span_count",
    "llm_calls",
    "tool_calls",
    "error_count",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced_calls",
    "conversation_id",
    "user_id",
    "status",
    "wasted_usd",
    "analyzed",
)

_TRACE_SELECT = """
SELECT trace_id, toUnixTimestamp64Nano(start_time) AS start_ns, duration_ns, toValidUTF8(root_name), service_name,
    agent_name, models, span_count, llm_calls, tool_calls, error_count, input_tokens, output_tokens,
    cache_read_tokens, reasoning_tokens, cost_usd, unpriced_calls, conversation_id, user_id, status,
    wasted_usd, analyzed
"""

SPAN_COLUMNS = (
    "span_id",
    "parent_span_id",
    "name",
    "step_kind",
    "start_ns",
    "duration_ns",
    "status_code",
    "service_name",
    "agent_name",
    "tool_name",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "billable",
    "cost_usd",
    "retry_attempt",
    "error_type",
    "step_subkind",
    "finish_reasons",
)

_SPANS = """
SELECT span_id, parent_span_id, toValidUTF8(substring(name, 1, 300)), step_kind, toUnixTimestamp64Nano(start_time),
    duration_ns, status_code, service_name, agent_name, tool_name,
    if(response_model != '', response_model, request_model), input_tokens, output_tokens,
    cache_read_tokens, cache_write_tokens, reasoning_tokens, billable, cost_usd, retry_attempt, error_type,
    step_subkind, finish_reasons
FROM spans FINAL
WHERE project = {project:String} AND trace_id = {trace_id:String}
ORDER BY start_time, span_id
LIMIT {limit:UInt32}
"""

DETAIL_COLUMNS = (
    "span_id",
    "parent_span_id",
    "name",
    "span_kind",
    "start_ns",
    "end_ns",
    "duration_ns",
    "service_name",
    "scope_name",
    "scope_version",
    "resource_attributes",
    "attributes",
    "status_code",
    "status_message",
    "events_time",
    "events_name",
    "events_attributes",
    "links_trace_id",
    "links_span_id",
    "convention",
    "step_kind",
    "step_subkind",
    "operation",
    "agent_name",
    "workflow_name",
    "request_model",
    "response_model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "usage_reported",
    "billable",
    "cost_usd",
    "cost_source",
    "price_version",
    "reported_cost_usd",
    "catalog_cost_usd",
    "tool_name",
    "tool_call_id",
    "conversation_id",
    "user_id",
    "response_id",
    "finish_reasons",
    "error_type",
    "retry_attempt",
    "retry_reason",
    "input_messages",
    "output_messages",
    "system_instructions",
    "tool_arguments",
    "tool_result",
)

_DETAIL = """
SELECT span_id, parent_span_id, toValidUTF8(name), span_kind, toUnixTimestamp64Nano(start_time),
    toUnixTimestamp64Nano(end_time), duration_ns, service_name, scope_name, scope_version,
    mapApply((k, v) -> (toValidUTF8(k), toValidUTF8(v)), resource_attributes),
    mapApply((k, v) -> (toValidUTF8(k), toValidUTF8(v)), attributes), status_code, toValidUTF8(status_message),
    arrayMap(t -> toUnixTimestamp64Nano(t), events.time), events.name, events.attributes,
    links.trace_id, links.span_id, convention, step_kind, step_subkind, operation, agent_name,
    workflow_name, request_model, response_model, provider, input_tokens, output_tokens,
    cache_read_tokens, cache_write_tokens, reasoning_tokens, usage_reported, billable, cost_usd,
    cost_source, price_version, reported_cost_usd, catalog_cost_usd, tool_name, tool_call_id, conversation_id, user_id, response_id,
    finish_reasons, error_type, retry_attempt, toValidUTF8(retry_reason), toValidUTF8(input_messages),
    toValidUTF8(output_messages), toValidUTF8(system_instructions), toValidUTF8(tool_arguments),
    toValidUTF8(tool_result)
FROM spans FINAL
WHERE project = {project:String} AND trace_id = {trace_id:String} AND span_id = {span_id:String}
LIMIT 1
"""

CONVERSATION_COLUMNS = (
    "conversation_id",
    "traces",
    "first_ns",
    "last_ns",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "unpriced_calls",
    "errors",
    "agents",
    "users",
)


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: tuple[Any, str] | None


def _rows(result: Any, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in result.result_rows]


class Queries:
    """The web UI's reads, over one clickhouse-connect client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def _query(self, sql: str, params: dict[str, Any]) -> Any:
        return self.client.query(sql, parameters=params)

    # --- traces ------------------------------------------------------------------------------

    @staticmethod
    def _where(f: TraceFilter) -> tuple[str, dict[str, Any]]:
        clauses = ["project = {project:String}"]
        params: dict[str, Any] = {"project": f.project}
        if f.start_ns:
            clauses.append("start_time >= fromUnixTimestamp64Nano({start_ns:Int64})")
            params["start_ns"] = f.start_ns
        if f.end_ns:
            clauses.append("start_time < fromUnixTimestamp64Nano({end_ns:Int64})")
            params["end_ns"] = f.end_ns
        fixed = {
            "service": "has(services, {service:String})",
            "agent": "(agent_name = {agent:String} OR has(agents, {agent:String}))",
            "model": "has(models, {model:String})",
            "status": "status = {status:String}",
            "conversation": "conversation_id = {conversation:String}",
            "user": "user_id = {user:String}",
        }
        for name, clause in fixed.items():
            if getattr(f, name):
                clauses.append(clause)
                params[name] = getattr(f, name)
        if f.min_cost is not None:
            clauses.append("cost_usd >= {min_cost:Float64}")
            params["min_cost"] = f.min_cost
        if f.has_waste:
            clauses.append("wasted_usd > 0")
        if f.q:
            # Span-name text over the spans of the same window (a span starts no earlier than its trace).
            span_time = " AND start_time >= fromUnixTimestamp64Nano({start_ns:Int64})" if f.start_ns else ""
            clauses.append(
                "trace_id IN (SELECT trace_id FROM spans WHERE project = {project:String}"
                + span_time
                + " AND positionCaseInsensitiveUTF8(name, {q:String}) > 0)"
            )
            params["q"] = f.q
        return " AND ".join(clauses), params

    def traces(self, f: TraceFilter) -> Page:
        where, params = self._where(f)
        key = _SORT_KEYS[f.sort]
        key_type = "Int64" if f.sort in INTEGER_SORTS else "Float64"
        order = "DESC" if f.dir == "desc" else "ASC"
        if f.cursor is not None:
            op = "<" if f.dir == "desc" else ">"
            where += f" AND ({key}, trace_id) {op} ({{cursor_value:{key_type}}}, {{cursor_trace:String}})"
            params["cursor_value"], params["cursor_trace"] = f.cursor
        params["limit"] = f.limit + 1
        sql = (
            f"{_TRACE_SELECT}, {key} AS sort_value FROM {_WITH_WASTE} WHERE {where} "
            f"ORDER BY sort_value {order}, trace_id {order} LIMIT {{limit:UInt32}}"
        )
        result = self._query(sql, params)
        rows = [dict(zip((*TRACE_COLUMNS, "sort_value"), row, strict=True)) for row in result.result_rows]
        next_cursor = None
        if len(rows) > f.limit:
            rows = rows[: f.limit]
            next_cursor = (rows[-1]["sort_value"], rows[-1]["trace_id"])
        for row in rows:
            del row["sort_value"]
        return Page(rows, next_cursor)

    def totals(self, f: TraceFilter) -> dict[str, Any]:
        where, params = self._where(f)
        sql = (
            "SELECT count(), sum(span_count), sum(llm_calls), sum(input_tokens), sum(output_tokens), "
            "sum(cache_read_tokens), sum(cost_usd), sum(unpriced_calls), countIf(status = 'error'), "
            "quantileExactIf(0.5)(cost_usd, unpriced_calls = 0), quantileExactIf(0.95)(cost_usd, unpriced_calls = 0), "
            "sum(wasted_usd), countIf(analyzed = 0) "
            f"FROM {_WITH_WASTE} WHERE {where}"
        )
        names = (
            "traces",
            "spans",
            "llm_calls",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cost_usd",
            "unpriced_calls",
            "errors",
            "cost_p50",
            "cost_p95",
            "wasted_usd",
            "not_analyzed",
        )
        row = dict(zip(names, self._query(sql, params).result_rows[0], strict=True))
        for key in ("cost_p50", "cost_p95"):  # NaN when no trace is fully priced
            if not row["traces"] or row[key] != row[key]:
                row[key] = None
        return row

    def facets(self, f: TraceFilter) -> dict[str, list[str]]:
        """Choices for the filter menus: what occurs in the selected time range."""
        params: dict[str, Any] = {"project": f.project, "start_ns": f.start_ns}
        sql = (
            "SELECT arraySort(groupUniqArrayArray(services)), "
            "arraySort(arrayFilter(x -> x != '', groupUniqArrayArray(arrayPushBack(agents, agent_name)))), "
            "arraySort(groupUniqArrayArray(models)) FROM ("
            "SELECT services, agents, agent_name, models FROM traces FINAL WHERE project = {project:String} "
            "AND start_time >= fromUnixTimestamp64Nano({start_ns:Int64}) LIMIT 100000)"
        )
        services, agents, models = self._query(sql, params).result_rows[0]
        return {"services": list(services)[:500], "agents": list(agents)[:500], "models": list(models)[:500]}

    def projects(self) -> list[str]:
        return [
            row[0]
            for row in self._query("SELECT DISTINCT project FROM traces ORDER BY project", {}).result_rows
        ]

    def has_data(self, project: str) -> bool:
        sql = "SELECT count() FROM (SELECT 1 FROM spans WHERE project = {project:String} LIMIT 1)"
        return bool(self._query(sql, {"project": project}).result_rows[0][0])

    # --- one trace ---------------------------------------------------------------------------

    def trace(self, project: str, trace_id: str) -> dict[str, Any] | None:
        sql = (
            _TRACE_SELECT
            + f" FROM {_WITH_WASTE} WHERE project = {{project:String}} AND trace_id = {{trace_id:String}}"
        )
        rows = _rows(self._query(sql, {"project": project, "trace_id": trace_id}), TRACE_COLUMNS)
        return rows[0] if rows else None

    def spans(self, project: str, trace_id: str, limit: int) -> list[dict[str, Any]]:
        params = {"project": project, "trace_id": trace_id, "limit": limit}
        return _rows(self._query(_SPANS, params), SPAN_COLUMNS)

    def span(self, project: str, trace_id: str, span_id: str) -> dict[str, Any] | None:
        params = {"project": project, "trace_id": trace_id, "span_id": span_id}
        rows = _rows(self._query(_DETAIL, params), DETAIL_COLUMNS)
        return rows[0] if rows else None

    # --- conversations -----------------------------------------------------------------------

    def conversations(self, f: TraceFilter) -> Page:
        where, params = self._where(f)
        having = ""
        if f.cursor is not None:
            having = "HAVING (last_ns, conversation_id) < ({cursor_value:Int64}, {cursor_trace:String})"
            params["cursor_value"], params["cursor_trace"] = f.cursor
        params["limit"] = f.limit + 1
        source = _WITH_WASTE if f.has_waste else "traces FINAL"  # the join only when the filter needs it
        sql = (
            "SELECT conversation_id, count() AS traces, min(toUnixTimestamp64Nano(start_time)) AS first_ns, "
            "max(toUnixTimestamp64Nano(start_time) + duration_ns) AS last_ns, sum(cost_usd), sum(input_tokens), "
            "sum(output_tokens), sum(unpriced_calls), countIf(status = 'error'), "
            "arraySort(groupUniqArrayIf(agent_name, agent_name != '')), "
            "arraySort(groupUniqArrayIf(user_id, user_id != '')) "
            f"FROM {source} WHERE {where} AND conversation_id != '' GROUP BY conversation_id {having} "
            "ORDER BY last_ns DESC, conversation_id DESC LIMIT {limit:UInt32}"
        )
        rows = _rows(self._query(sql, params), CONVERSATION_COLUMNS)
        next_cursor = None
        if len(rows) > f.limit:
            rows = rows[: f.limit]
            next_cursor = (rows[-1]["last_ns"], rows[-1]["conversation_id"])
        return Page(rows, next_cursor)
