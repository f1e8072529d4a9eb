"""Reads of `spans` for one trace: its spans for the timeline, one span in full, and the captured
input messages of given calls.

Every statement is scoped to one project and one trace (or a few named ones). A span's `model` is
the schema's ALIAS column (the response model, else the requested one). Text that is shown goes
through `toValidUTF8`, so bytes that are not UTF-8 show as U+FFFD.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from tokentrail.store._rows import Client, first, rows

__all__ = ["input_messages", "span", "spans"]

# each span's newest copy (as FINAL would keep it, which merges across every part of the table's
# partitions and costs several times the read of one trace). Read in the sort key's order, the
# rows of every part that holds some of the trace are merged into one ordered stream: for a
# 10,000-span trace that costs more than reading them at once and sorting (~48 ms against ~30)
_SPANS = """
SELECT * EXCEPT (start_time, ingested_at) FROM (
    SELECT span_id, parent_span_id, toValidUTF8(substring(name, 1, 300)) AS name, step_kind,
        toUnixTimestamp64Nano(start_time) AS start_ns, duration_ns, status_code, service_name, agent_name, tool_name,
        model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, billable,
        cost_usd, retry_attempt, error_type, step_subkind, finish_reasons, start_time, ingested_at
    FROM spans
    WHERE project = {project:String} AND trace_id = {trace_id:String}
    ORDER BY span_id, ingested_at DESC
    LIMIT 1 BY span_id)
ORDER BY start_time, span_id
LIMIT {limit:UInt32}
SETTINGS optimize_read_in_order = 0
"""

_SPAN = """
SELECT span_id, parent_span_id, toValidUTF8(name) AS name, span_kind, toUnixTimestamp64Nano(start_time) AS start_ns,
    toUnixTimestamp64Nano(end_time) AS end_ns, duration_ns, service_name, scope_name, scope_version,
    mapApply((k, v) -> (toValidUTF8(k), toValidUTF8(v)), resource_attributes) AS resource_attributes,
    mapApply((k, v) -> (toValidUTF8(k), toValidUTF8(v)), attributes) AS attributes, status_code,
    toValidUTF8(status_message) AS status_message, arrayMap(t -> toUnixTimestamp64Nano(t), events.time) AS events_time,
    events.name AS events_name, events.attributes AS events_attributes, links.trace_id AS links_trace_id,
    links.span_id AS links_span_id, convention, step_kind, step_subkind, operation, agent_name, workflow_name,
    request_model, response_model, provider, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    reasoning_tokens, usage_reported, billable, cost_usd, cost_source, price_version, reported_cost_usd,
    catalog_cost_usd, tool_name, tool_call_id, conversation_id, user_id, response_id, finish_reasons, error_type,
    retry_attempt, toValidUTF8(retry_reason) AS retry_reason, toValidUTF8(input_messages) AS input_messages,
    toValidUTF8(output_messages) AS output_messages, toValidUTF8(system_instructions) AS system_instructions,
    toValidUTF8(tool_arguments) AS tool_arguments, toValidUTF8(tool_result) AS tool_result
FROM spans FINAL
WHERE project = {project:String} AND trace_id = {trace_id:String} AND span_id = {span_id:String}
LIMIT 1
"""

# The span ids are tested with has(): the set of a subquery (IN (SELECT arrayJoin(...))) does not
# narrow the granules read, so every span of the traces had its messages read and dropped (50 calls
# of a 1,000-span trace: ~23 ms against ~12; of a 10,000-span one ~33 against ~21). has() narrows
# them as a bound list would, and stays fast with 40,000 ids (a count: 167 ms against 137).
_MESSAGES = """
SELECT trace_id, span_id, parent_span_id, input_messages FROM spans
WHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)})) AND has({span_ids:Array(String)}, span_id)
"""


def spans(client: Client, project: str, trace_id: str, limit: int) -> list[dict[str, Any]]:
    """The trace's first `limit` spans by start time, with what the timeline and the context
    chart show of each (names cut at 300 characters)."""
    return rows(client, _SPANS, {"project": project, "trace_id": trace_id, "limit": limit})


def span(client: Client, project: str, trace_id: str, span_id: str) -> dict[str, Any] | None:
    """Everything stored for one span, or None."""
    return first(client, _SPAN, {"project": project, "trace_id": trace_id, "span_id": span_id})


def input_messages(
    client: Client, project: str, trace_ids: Collection[str], span_ids: Collection[str]
) -> list[dict[str, Any]]:
    """trace_id, span_id, parent_span_id and input_messages of the named spans."""
    params = {"project": project, "trace_ids": sorted(trace_ids), "span_ids": sorted(span_ids)}
    return rows(client, _MESSAGES, params)
