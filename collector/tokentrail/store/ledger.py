"""What the waste analysis (`tokentrail.analysis`) reads and writes.

It reads spans (typed columns, as an Arrow stream), trace summaries with their outcome verdict,
the conversation before a trace, and the evidence earlier analyses stored (`model_steps`); it
writes ledgers (`trace_waste`), findings (`waste_findings`) and evidence, as Arrow streams whose
schema names the columns. A trace is due for analysis when its summary changed after its last
analysis and has been quiet since.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from tokentrail.store._rows import Row, bound, rows
from tokentrail.store.outcomes import traces_with_outcome

__all__ = [
    "conversation_traces",
    "evidence",
    "findings_by_detector",
    "last_model_calls",
    "main_run_steps",
    "pending_traces",
    "spans_stream",
    "trace_ids_started",
    "trace_summaries",
    "waste_totals",
    "write_streams",
]

# no FINAL (it doubles the read): the reader keeps the newest copy of a replaced row (ingested_at)
_SPANS = """
SELECT trace_id, span_id, parent_span_id, step_kind, step_subkind, toUnixTimestamp64Nano(start_time) AS start_ns,
    duration_ns, status_code, tool_name, tool_args_hash, tool_args_hash != 0 AS has_tool_args,
    model, request_model, provider, agent_name, input_tokens,
    output_tokens, cache_read_tokens, cache_reported, billable, cost_usd, input_hash, system_hash, requested_tools,
    finish_reasons, error_type, retry_attempt, toUnixTimestamp64Milli(ingested_at) AS ingested_at
FROM spans
WHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)}))
ORDER BY trace_id, start_time, span_id
"""

# the outcome comes from the outcomes table, not from attribute maps
_TRACES = traces_with_outcome(
    "t.trace_id AS trace_id, toUnixTimestamp64Nano(t.start_time) AS start_ns, t.service_name AS service_name, "
    "t.agent_name AS agent_name, t.user_id AS user_id, t.conversation_id AS conversation_id, "
    "t.task_type AS task_type, t.repository AS repository",
    "project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)}))",
)

_CONVERSATIONS = """
SELECT trace_id, conversation_id, agent_name, toUnixTimestamp64Nano(start_time) AS start_ns FROM traces FINAL
WHERE project = {project:String} AND conversation_id IN (SELECT arrayJoin({conversations:Array(String)}))
  AND start_time > fromUnixTimestamp64Nano({since:Int64})
"""

# (no FINAL: a rewritten row repeats its tokens, and argMax picks one of the copies; the columns
# are named outside the aggregation, where no name can stand for both a column and an aggregate)
_LAST_CALLS = """
SELECT trace_id, last.1 AS span_id, last.2 AS request_model, last.3 AS model, last.4 AS input_tokens,
    last.5 AS output_tokens, toUnixTimestamp64Nano(last.6) AS end_ns
FROM (
    SELECT trace_id, argMax((span_id, request_model, model, input_tokens, output_tokens, end_time), end_time) AS last
    FROM spans
    WHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)})) AND billable = 1 AND step_kind = 'llm'
    GROUP BY trace_id
)
"""

_EVIDENCE = """
SELECT step, step_kind, provider, model, groupUniqArray(1000)(trace_id) AS traces FROM model_steps FINAL
WHERE project = {project:String} AND start_time > now64(9) - INTERVAL 30 DAY
GROUP BY step, step_kind, provider, model
"""

# every project's: the background analysis serves them all (co-sharded: per trace, by trace_id)
_PENDING = """
SELECT t.project AS project, t.trace_id AS trace_id, t.updated AS version FROM (
    SELECT project, trace_id, max(updated_at) AS updated FROM traces
    WHERE updated_at > now64(3) - toIntervalSecond({lookback:UInt32})
    GROUP BY project, trace_id
    HAVING updated < now64(3) - toIntervalMillisecond({idle_ms:UInt32})
) AS t
LEFT JOIN (
    SELECT project, trace_id, max(analyzed_at) AS analyzed FROM trace_waste GROUP BY project, trace_id
) AS w ON t.project = w.project AND t.trace_id = w.trace_id
WHERE w.analyzed < t.updated
ORDER BY t.updated
LIMIT {limit:UInt32}
"""

_STARTED = """
SELECT trace_id FROM traces FINAL
WHERE project = {project:String}
  AND start_time >= fromUnixTimestamp64Nano({start:Int64}) AND start_time < fromUnixTimestamp64Nano({end:Int64})
ORDER BY trace_id
"""

# the findings of each trace's latest analysis (co-sharded: by trace_id)
_FINDINGS_BY_DETECTOR = """
SELECT detector, count() AS findings, sum(ifNull(wasted_usd, 0)) AS usd FROM waste_findings
WHERE project = {project:String}
  AND (trace_id, analyzed_at) IN (SELECT trace_id, analyzed_at FROM trace_waste FINAL WHERE project = {project:String})
GROUP BY detector ORDER BY detector
"""

_WASTE_TOTALS = """
SELECT sum(total_usd) AS spend, sum(total_usd - productive_usd) AS wasted
FROM trace_waste FINAL WHERE project = {project:String}
"""


def spans_stream(client: Any, project: str, trace_ids: Sequence[str]) -> bytes:
    """The traces' spans as one Arrow stream, in trace and start order, columns named as the
    ledger reads them (`start_ns`, `model`, `has_tool_args`…). Rows a later write replaced are
    still there (the newest by `ingested_at`, in Unix milliseconds, counts)."""
    params = {"project": project, "trace_ids": list(trace_ids)}
    return bytes(client.raw_query(_SPANS, parameters=bound(params), fmt="ArrowStream"))


def trace_summaries(client: Any, project: str, trace_ids: Sequence[str]) -> list[Row]:
    """Per trace with a summary: trace_id, start_ns, service_name, agent_name, user_id,
    conversation_id, task_type, outcome ('success', 'failure' or '') and outcomes (how many)."""
    return rows(client, _TRACES, {"project": project, "trace_ids": list(trace_ids)})


def conversation_traces(client: Any, project: str, conversations: Sequence[str], since_ns: int) -> list[Row]:
    """trace_id, conversation_id, agent_name, start_ns of the conversations' traces since then."""
    params = {"project": project, "conversations": list(conversations), "since": since_ns}
    return rows(client, _CONVERSATIONS, params)


# Each span's newest copy (as FINAL would keep it: far cheaper over the scattered traces of a
# conversation, which touch most of the table) of the tool calls, compactions and roots: one read,
# where asking for the roots in a subquery read the traces twice.
_MAIN_RUN_STEPS = """
SELECT trace_id, span_id, parent_span_id, step_kind, step_subkind, tool_name, tool_args_hash, has_tool_args FROM (
    SELECT trace_id, span_id, parent_span_id, step_kind, step_subkind, tool_name, tool_args_hash,
        tool_args_hash != 0 AS has_tool_args, start_time
    FROM spans
    WHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)}))
    ORDER BY trace_id, span_id, ingested_at DESC
    LIMIT 1 BY trace_id, span_id)
WHERE step_kind = 'tool' OR step_subkind = 'compaction' OR parent_span_id = ''
ORDER BY trace_id, start_time, span_id
"""


def main_run_steps(client: Any, project: str, trace_ids: Sequence[str]) -> list[Row]:
    """The tool calls and compactions directly under each trace's root (its main run), in start
    order: trace_id, span_id, parent_span_id (the root's), step_kind, step_subkind, tool_name,
    tool_args_hash, has_tool_args. (A run reads those of a few hundred thousand steps: the rows
    are passed on as read.)"""
    found = rows(client, _MAIN_RUN_STEPS, {"project": project, "trace_ids": list(trace_ids)})
    roots = {(r["trace_id"], r["span_id"]) for r in found if r["parent_span_id"] == ""}
    return [
        r
        for r in found
        if (r["step_kind"] == "tool" or r["step_subkind"] == "compaction")
        and (r["trace_id"], r["parent_span_id"]) in roots
    ]


def last_model_calls(client: Any, project: str, trace_ids: Sequence[str]) -> list[Row]:
    """Per trace, its last billed model call: trace_id, span_id, request_model, model,
    input_tokens, output_tokens, end_ns."""
    return rows(client, _LAST_CALLS, {"project": project, "trace_ids": list(trace_ids)})


def evidence(client: Any, project: str) -> list[Row]:
    """Which models did which kinds of step successfully in the last 30 days, as earlier analyses
    stored it: step, step_kind, provider, model, traces (up to 1,000 trace ids)."""
    return rows(client, _EVIDENCE, {"project": project})


def pending_traces(client: Any, lookback_s: int, idle_ms: int, limit: int) -> list[Row]:
    """(project, trace_id, version) of traces changed in the last `lookback_s` seconds, quiet for
    `idle_ms`, and not analysed since they changed (version: when they last changed); the
    longest waiting first."""
    return rows(client, _PENDING, {"lookback": lookback_s, "idle_ms": idle_ms, "limit": limit})


def trace_ids_started(client: Any, project: str, start_ns: int, end_ns: int) -> list[str]:
    """The project's traces that started in [start_ns, end_ns)."""
    params = {"project": project, "start": start_ns, "end": end_ns}
    return [r["trace_id"] for r in rows(client, _STARTED, params)]


def write_streams(client: Any, streams: dict[str, bytes]) -> None:
    """Insert Arrow streams into their tables (table name -> stream; an empty stream is no rows).
    Each stream's schema names its columns."""
    for table, data in streams.items():
        if data:
            columns = pa.ipc.open_stream(data).schema.names
            client.raw_insert(table, columns, data, settings={"async_insert": 0}, fmt="ArrowStream")


def findings_by_detector(client: Any, project: str) -> list[Row]:
    """detector, findings and usd (wasted) over each trace's latest analysis."""
    return rows(client, _FINDINGS_BY_DETECTOR, {"project": project})


def waste_totals(client: Any, project: str) -> Row:
    """spend and wasted (USD) over every analysed trace of the project."""
    return rows(client, _WASTE_TOTALS, {"project": project})[0]
