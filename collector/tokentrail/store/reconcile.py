"""The reconciler: what is derived from `spans` once they are stored, for the traces that changed.

Three jobs, each recomputed inside ClickHouse from the trace's stored spans, so a re-sent or
replayed span never counts twice and a span that arrives late is folded in:

1. Unbill duplicates (`unbill_duplicates`). A model-call span whose child is a model-call span
   reporting usage for the same request (a framework's span around the client's own) repeats the
   child's usage: only the leaf stays billable. Two spans of one trace with the same response id
   are one request recorded twice (a client traced beside a framework): one stays billable.
2. Trace summaries (`summarize`): one `traces` row per trace (times, root, agents, models,
   counts, tokens and cost of its billable calls, task), rewritten whole.
3. File outcomes (`file_outcomes`): outcomes carried by spans go into `outcomes` under their
   target, and targets elsewhere that just received one are touched so they are analysed again.

`reconcile` runs them, in that order, for a set of (project, trace id) pairs: the writer after
each batch, `reprice` after rewriting costs, and any other writer of spans.

Every read of `spans FINAL` picks its traces in PREWHERE, and only there: FINAL applies WHERE
after it has merged the versions of each row, so with WHERE alone every row of the granules the
traces lie in (with random trace ids, most of a small table) was read and merged whole, maps and
all, to keep a few. PREWHERE filters as the rows are read, before that merge; it may, because
project and trace id are part of the sorting key, the same in every version of a span, so it
keeps or drops all of them and the merge sees the same rows per span as before. A condition on
any other column (`billable`, which a later version may change) stays in WHERE, after the merge.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tokentrail.store._rows import Row, bound, rows

__all__ = ["file_outcomes", "reconcile", "summarize", "unbill_duplicates"]

# First the few wrapper parents, from narrow columns; then only those rows are rewritten (reading
# every column of every span of the traces, to find none in most batches, was the slow part).
# Two different response ids are two requests, both billed. (co-sharded: spans of the same traces)
_WRAPPER_PARENTS = """
SELECT p.trace_id AS trace_id, p.span_id AS span_id FROM (
    SELECT trace_id, span_id, response_id FROM spans FINAL
    PREWHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)}))
    WHERE billable = 1
) AS p
INNER JOIN (
    SELECT trace_id, parent_span_id, response_id FROM spans FINAL
    PREWHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)}))
    WHERE step_kind = 'llm' AND usage_reported = 1 AND parent_span_id != ''
      -- an earlier attempt of the parent's request was billed on its own, not repeated by it
      AND step_subkind != 'attempt'
) AS c ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id
WHERE p.response_id = '' OR c.response_id = '' OR p.response_id = c.response_id
GROUP BY p.trace_id, p.span_id
"""

# Response ids that two billable spans of a trace share (co-sharded: the spans of the same traces,
# grouped by trace). Rare (a client traced beside a framework), and found from narrow columns, so
# that _TWINS reads the spans' messages for these traces only, and usually not at all.
_TWIN_GROUPS = """
SELECT trace_id, response_id FROM spans FINAL
PREWHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)}))
WHERE billable = 1 AND response_id != ''
GROUP BY trace_id, response_id HAVING count() > 1
"""

# The billable spans of those groups: the twins, with what each recorded (co-sharded: the spans of
# the same traces, their groups from those traces).
_TWINS = """
SELECT trace_id, response_id, span_id,
    input_messages != '' OR output_messages != '' AS has_content,
    notEmpty(finish_reasons) AS has_finish_reasons
FROM spans FINAL
PREWHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)}))
WHERE billable = 1 AND (trace_id, response_id) IN (SELECT arrayJoin({groups:Array(Tuple(String, String))}))
ORDER BY trace_id, response_id, start_time, span_id
"""

_UNBILL = """
INSERT INTO spans
SELECT * REPLACE (toUInt8(0) AS billable, now64(3) AS ingested_at)
FROM (
    -- a subquery, because the REPLACE alias would shadow `billable` in this WHERE
    SELECT * FROM spans FINAL
    PREWHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)}))
      AND has({span_ids:Array(String)}, span_id)
    WHERE billable = 1
)
"""

_SUMMARIZE = """
INSERT INTO traces (project, trace_id, start_time, end_time, duration_ns, root_span_id, root_name,
    service_name, services, agent_name, agents, models, span_count, llm_calls, tool_calls,
    error_count, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    reasoning_tokens, cost_usd, unpriced_calls, conversation_id, user_id, status, task_id, task_type,
    coding_agent, team, repository, span_names, names_recorded)
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
    groupUniqArrayIf(model, billable = 1 AND model != ''),
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
    if(argMin(status_code, (parent_span_id != '', start_time)) = 'ERROR', 'error', 'ok'),
    anyIf(attributes['tokentrail.task.id'], attributes['tokentrail.task.id'] != ''
          AND NOT (parent_span_id = '' AND startsWith(name, 'outcome '))),
    -- the attribute the user named (on a span, else on its resource), else ours
    if(countIf(named != '') > 0, argMinIf(named, start_time, named != ''),
       argMinIf(attributes['tokentrail.task.type'], start_time, attributes['tokentrail.task.type'] != '')),
    anyIf(convention, convention IN ('claude_code', 'codex', 'gemini_cli')),
    anyIf(team_of, team_of != ''),
    anyIf(repository_of, repository_of != ''),
    -- the span-name search's: up to 200 distinct names, else none (and the search reads the spans)
    if(length(groupUniqArray(201)(name) AS names) <= 200, arraySort(names), []),
    toUInt8(length(names) <= 200)
FROM (
    SELECT *, model, if(attributes[{task_attribute:String}] != '', attributes[{task_attribute:String}],
                        resource_attributes[{task_attribute:String}]) AS named,
        if(attributes['team'] != '', attributes['team'], resource_attributes['team']) AS team_of,
        multiIf(attributes['repository'] != '', attributes['repository'],
                resource_attributes['repository'] != '', resource_attributes['repository'],
                resource_attributes['vcs.repository.name']) AS repository_of
    FROM spans FINAL
    PREWHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)}))
)
GROUP BY project, trace_id
-- a trace that is only a standalone outcome (aimed at other work) is not a task of its own
HAVING countIf(NOT (parent_span_id = '' AND startsWith(name, 'outcome ')
                    AND attributes['tokentrail.outcome.name'] != '')) > 0
"""

# Outcomes carried by spans: on a span of the trace they judge (`record_outcome()` inside the
# work), or as a standalone `outcome {name}` span aimed at a trace, a task or a conversation.
_OUTCOMES = """
INSERT INTO outcomes (project, target_kind, target_id, outcome_id, name, success, value, recorded_at,
    source_trace_id)
SELECT project,
    multiIf(NOT standalone OR target_trace != '', 'trace', task != '', 'task', conversation_id != '', 'conversation',
            'trace') AS kind,
    multiIf(NOT standalone, trace_id, target_trace != '', target_trace, task != '', task,
            conversation_id != '', conversation_id, trace_id),
    span_id,
    attributes['tokentrail.outcome.name'],
    multiIf(verdict IN ('true', '1'), toNullable(toUInt8(1)), verdict IN ('false', '0'), toNullable(toUInt8(0)), NULL),
    attributes['tokentrail.outcome.value'],
    end_time,
    trace_id
FROM (
    SELECT *, parent_span_id = '' AND startsWith(name, 'outcome ') AS standalone,
        attributes['tokentrail.outcome.trace_id'] AS target_trace, attributes['tokentrail.task.id'] AS task,
        lower(attributes['tokentrail.outcome.success']) AS verdict
    FROM spans FINAL
    PREWHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)}))
    WHERE attributes['tokentrail.outcome.name'] != ''
)
"""

# ... or as a `tokentrail.outcome` event on any span of the trace it judges (when the span does
# not also carry it as attributes, as `record_outcome()` does, so it is not filed twice).
_OUTCOME_EVENTS = """
INSERT INTO outcomes (project, target_kind, target_id, outcome_id, name, success, value, recorded_at,
    source_trace_id)
SELECT project, 'trace', trace_id, concat(span_id, ':', toString(n)), e_attrs['tokentrail.outcome.name'],
    multiIf(lower(e_attrs['tokentrail.outcome.success']) IN ('true', '1'), toNullable(toUInt8(1)),
            lower(e_attrs['tokentrail.outcome.success']) IN ('false', '0'), toNullable(toUInt8(0)), NULL),
    e_attrs['tokentrail.outcome.value'], e_time, trace_id
FROM spans FINAL
ARRAY JOIN events.name AS e_name, events.attributes AS e_attrs, events.time AS e_time, arrayEnumerate(events.name) AS n
PREWHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)}))
WHERE e_name = 'tokentrail.outcome' AND e_attrs['tokentrail.outcome.name'] != ''
  AND attributes['tokentrail.outcome.name'] = ''
"""

# Targets elsewhere that just received an outcome: their summary is rewritten (same values, new
# updated_at), so the waste analysis looks at them again.
_TARGETS = """
SELECT DISTINCT target_kind, target_id FROM outcomes
WHERE project = {project:String} AND source_trace_id IN (SELECT arrayJoin({trace_ids:Array(String)}))
  AND NOT (target_kind = 'trace' AND target_id IN (SELECT arrayJoin({trace_ids:Array(String)})))
"""

_TOUCH = """
INSERT INTO traces SELECT * REPLACE (now64(3) AS updated_at) FROM traces FINAL
WHERE project = {project:String}
  AND (trace_id IN (SELECT arrayJoin({traces:Array(String)})) OR task_id IN (SELECT arrayJoin({tasks:Array(String)}))
       OR conversation_id IN (SELECT arrayJoin({conversations:Array(String)})))
"""

_CHUNK = 2000


def unbill_duplicates(client: Any, project: str, trace_ids: list[str]) -> int:
    """Clear `billable` on wrapper parents and on all but one of each set of request twins;
    returns how many spans were unbilled."""
    params = {"project": project, "trace_ids": trace_ids}
    unbill = {(r["trace_id"], r["span_id"]) for r in rows(client, _WRAPPER_PARENTS, params)}
    # a wrapper and its leaf are not twins: the leaf stays billed
    twins = [r for r in _twins(client, project, trace_ids) if (r["trace_id"], r["span_id"]) not in unbill]
    unbill.update(_extra_twins(twins))
    if unbill:
        client.command(
            _UNBILL,
            parameters=bound(
                {
                    "project": project,
                    "trace_ids": sorted({t for t, _ in unbill}),
                    "span_ids": sorted({s for _, s in unbill}),
                }
            ),
        )
    return len(unbill)


def _twins(client: Any, project: str, trace_ids: list[str]) -> list[Row]:
    """The billable spans that share a response id with another of their trace, in start order
    within each (trace, response id). In the common case, no such pair, their messages are not
    read at all."""
    groups = [
        (r["trace_id"], r["response_id"])
        for r in rows(client, _TWIN_GROUPS, {"project": project, "trace_ids": trace_ids})
    ]
    if not groups:
        return []
    params = {"project": project, "trace_ids": sorted({t for t, _ in groups}), "groups": groups}
    return rows(client, _TWINS, params)


def _extra_twins(twins: list[Row]) -> list[tuple[str, str]]:
    """(trace id, span id) of the twins to unbill: of each response id's spans, in start order,
    the one that recorded the most (content, then finish reasons) stays billed, else the first."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in twins:
        groups.setdefault((row["trace_id"], row["response_id"]), []).append(row)
    out = []
    for (trace_id, _), group in groups.items():
        keep = max(group, key=lambda r: (bool(r["has_content"]), bool(r["has_finish_reasons"])))
        out += [(trace_id, r["span_id"]) for r in group if r is not keep]  # max keeps the first of equals
    return out


def summarize(client: Any, project: str, trace_ids: list[str], task_attribute: str = "") -> None:
    """Rewrite the `traces` rows of these traces from their spans. `task_attribute`: a span or
    resource attribute that names a trace's task type; `tokentrail.task.type` when it is absent."""
    client.command(
        _SUMMARIZE,
        parameters=bound({"project": project, "trace_ids": trace_ids, "task_attribute": task_attribute}),
    )


def file_outcomes(client: Any, project: str, trace_ids: list[str]) -> None:
    """File the outcomes these traces' spans carry, and touch the other targets they judge."""
    params = bound({"project": project, "trace_ids": trace_ids})  # written once for its three statements
    client.command(_OUTCOMES, parameters=params)
    client.command(_OUTCOME_EVENTS, parameters=params)
    targets: dict[str, list[str]] = {"trace": [], "task": [], "conversation": []}
    for row in rows(client, _TARGETS, params):
        targets[row["target_kind"]].append(row["target_id"])
    if any(targets.values()):
        client.command(
            _TOUCH,
            parameters=bound(
                {
                    "project": project,
                    "traces": targets["trace"],
                    "tasks": targets["task"],
                    "conversations": targets["conversation"],
                }
            ),
        )


def reconcile(
    client: Any,
    traces: Iterable[tuple[str, str]],
    task_attribute: str = "",
    outcome_traces: Iterable[tuple[str, str]] | None = None,
) -> int:
    """Run the three jobs for these (project, trace id) pairs; returns how many traces.

    `outcome_traces`: those of the traces with a span that records an outcome (None: any may);
    outcomes are filed for these only, which spares the other traces' attribute maps."""
    with_outcomes = None if outcome_traces is None else set(outcome_traces)
    by_project: dict[str, list[str]] = {}
    for project, trace_id in traces:
        by_project.setdefault(project, []).append(trace_id)
    done = 0
    for project, ids in by_project.items():
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            unbill_duplicates(client, project, chunk)
            summarize(client, project, chunk, task_attribute)
            done += len(chunk)
            judged = [t for t in chunk if with_outcomes is None or (project, t) in with_outcomes]
            if judged:
                file_outcomes(client, project, judged)
    return done
