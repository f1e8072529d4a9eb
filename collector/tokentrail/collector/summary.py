"""Keep `traces` (the per-trace summary) and the `billable` flag right as spans arrive.

Both are recomputed from `spans` for the traces a batch touched, inside ClickHouse, so a
re-sent or replayed span never counts twice and spans that arrive late are folded in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["refresh"]

# An LLM span whose child is an LLM span reporting usage (a framework span around the client
# call) repeats the child's usage: only the leaf stays billable (DESIGN.md "Billable").
_UNBILL_PARENTS = """
INSERT INTO spans
SELECT * REPLACE (toUInt8(0) AS billable, now64(3) AS ingested_at)
FROM (
    -- a subquery, because the REPLACE alias would shadow `billable` in this WHERE
    SELECT * FROM spans FINAL
    WHERE project = {project:String} AND trace_id IN {trace_ids:Array(String)} AND billable = 1
      AND span_id IN (
          SELECT parent_span_id FROM spans FINAL
          WHERE project = {project:String} AND trace_id IN {trace_ids:Array(String)}
            AND step_kind = 'llm' AND usage_reported = 1 AND parent_span_id != '')
)
"""

_SUMMARIZE = """
INSERT INTO traces (project, trace_id, start_time, end_time, duration_ns, root_span_id, root_name,
    service_name, services, agent_name, agents, models, span_count, llm_calls, tool_calls,
    error_count, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    reasoning_tokens, cost_usd, unpriced_calls, conversation_id, user_id, status)
SELECT
    project,
    trace_id,
    min(start_time) AS t0,
    max(end_time) AS t1,
    toUInt64(greatest(0, dateDiff('nanosecond', t0, t1))),
    argMin(span_id, (parent_span_id != '', start_time)),
    argMin(name, (parent_span_id != '', start_time)),
    argMin(service_name, (parent_span_id != '', start_time)),
    groupUniqArray(service_name),
    if(countIf(step_kind = 'agent' AND agent_name != '') > 0,
       argMinIf(agent_name, start_time, step_kind = 'agent' AND agent_name != ''),
       argMinIf(workflow_name, start_time, workflow_name != '')),
    groupUniqArrayIf(agent_name, agent_name != ''),
    groupUniqArrayIf(if(response_model != '', response_model, request_model),
                     billable = 1 AND (response_model != '' OR request_model != '')),
    toUInt32(count()),
    toUInt32(countIf(billable = 1)),
    toUInt32(countIf(step_kind = 'tool')),
    toUInt32(countIf(status_code = 'ERROR')),
    sumIf(input_tokens, billable = 1),
    sumIf(output_tokens, billable = 1),
    sumIf(cache_read_tokens, billable = 1),
    sumIf(cache_write_tokens, billable = 1),
    sumIf(reasoning_tokens, billable = 1),
    sumIf(ifNull(cost_usd, 0), billable = 1),
    toUInt32(countIf(billable = 1 AND cost_usd IS NULL)),
    anyIf(conversation_id, conversation_id != ''),
    anyIf(user_id, user_id != ''),
    if(argMin(status_code, (parent_span_id != '', start_time)) = 'ERROR', 'error', 'ok')
FROM spans FINAL
WHERE project = {project:String} AND trace_id IN {trace_ids:Array(String)}
GROUP BY project, trace_id
"""

_CHUNK = 2000


def refresh(client: Any, traces: Iterable[tuple[str, str]]) -> int:
    """Recompute billable flags and summaries for these (project, trace_id) pairs."""
    by_project: dict[str, list[str]] = {}
    for project, trace_id in traces:
        by_project.setdefault(project, []).append(trace_id)
    done = 0
    for project, ids in by_project.items():
        for i in range(0, len(ids), _CHUNK):
            params = {"project": project, "trace_ids": ids[i : i + _CHUNK]}
            client.command(_UNBILL_PARENTS, parameters=params)
            client.command(_SUMMARIZE, parameters=params)
            done += len(params["trace_ids"])
    return done
