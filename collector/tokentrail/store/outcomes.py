"""How a trace ended, from the `outcomes` table: the verdict every reader (the waste analysis, the UI)
shares. The reconciler (`tokentrail.store.reconcile`) files the outcomes; this reads them.

An outcome judges a trace, a task id or a conversation id; a trace takes the outcomes of all
three. Per target, the latest outcome of each name counts (a ticket reopened after it was
resolved). A trace *failed* if any of those says failure, *succeeded* if none failed and one says
success, and is *unknown* otherwise (no outcome, or outcomes with a value but no verdict).

On a cluster outcomes are sharded by their target, not by trace (tokentrail.store.cluster), so
every join and `IN` between traces and outcomes is GLOBAL.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokentrail.store._rows import Client, Row, rows

__all__ = ["TARGETS", "latest_outcomes", "traces_judged", "traces_with_outcome"]

#: target kind -> the `traces` column an outcome of that kind names
TARGETS = {"trace": "trace_id", "task": "task_id", "conversation": "conversation_id"}

# per target of one kind and outcome name, the latest verdict (NULL: a value without one)
_LATEST = """
    SELECT target_kind, target_id, name, argMax(success, recorded_at) AS ok FROM outcomes FINAL
    WHERE project = {{project:String}} AND target_kind = '{kind}'{targets}
    GROUP BY target_kind, target_id, name"""

_VERDICTS = """(
    SELECT target_id, countIf(ok = 0) > 0 AS failed, countIf(ok = 1) > 0 AS succeeded, count() AS outcomes
    FROM ({latest})
    GROUP BY target_id
)"""

_LATEST_OF = """
SELECT target_kind, target_id, name, argMax(success, recorded_at) AS ok, argMax(value, recorded_at) AS value
FROM outcomes FINAL
WHERE project = {project:String}
  AND ((target_kind = 'trace' AND target_id IN (SELECT arrayJoin({traces:Array(String)})))
       OR (target_kind = 'task' AND target_id IN (SELECT arrayJoin({tasks:Array(String)})))
       OR (target_kind = 'conversation' AND target_id IN (SELECT arrayJoin({conversations:Array(String)}))))
GROUP BY target_kind, target_id, name
ORDER BY target_kind, target_id, name
"""


def traces_with_outcome(columns: str, where: str, joins: str = "", *, bounded: bool = False) -> str:
    """`SELECT {columns}, outcome, outcomes FROM traces FINAL WHERE {where}` with each trace's outcome
    ('success', 'failure' or '') and how many outcomes judged it. `columns` and `where` are the
    caller's fixed SQL over `traces` columns (and `joins`, more joins onto `t`); values stay bound
    parameters. `bounded`: read only the outcomes on the selected traces, their tasks and their
    conversations (a primary-key read of `outcomes`), for a selection of a few traces."""
    verdicts = {
        kind: _VERDICTS.format(
            latest=_LATEST.format(
                kind=kind,
                targets=f" AND target_id GLOBAL IN (SELECT {column} FROM traces WHERE {where})"
                if bounded
                else "",
            )
        )
        for kind, column in TARGETS.items()
    }
    return f"""
SELECT {columns},
    multiIf(ot.failed OR ok.failed OR oc.failed, 'failure', ot.succeeded OR ok.succeeded OR oc.succeeded, 'success', '')
        AS outcome,
    ot.outcomes + ok.outcomes + oc.outcomes AS outcomes
FROM (SELECT * FROM traces FINAL WHERE {where}) AS t
{joins}
GLOBAL LEFT JOIN {verdicts["trace"]} AS ot ON ot.target_id = t.trace_id
GLOBAL LEFT JOIN {verdicts["task"]} AS ok ON ok.target_id = t.task_id
GLOBAL LEFT JOIN {verdicts["conversation"]} AS oc ON oc.target_id = t.conversation_id
"""


def traces_judged(columns: str, where: str) -> str:
    """`SELECT {columns}, name, target, ok` once per trace of `traces FINAL WHERE {where}` and
    outcome that judges it (through the trace, its task or its conversation): the outcome's
    name, its target ('kind:id') and its latest verdict (1 success, 0 failure, 2 none). A trace
    no outcome judges has no row. `columns` and `where` as for `traces_with_outcome`."""
    parts = [
        f"SELECT {columns}, l.name AS name, concat('{kind}:', l.target_id) AS target, ifNull(l.ok, 2) AS ok "
        f"FROM (SELECT * FROM traces FINAL WHERE {where}) AS t "
        f"GLOBAL INNER JOIN ({_LATEST.format(kind=kind, targets='')}) AS l ON l.target_id = t.{column}"
        for kind, column in TARGETS.items()
    ]
    return "\nUNION ALL\n".join(parts)


def latest_outcomes(
    client: Client, project: str, traces: Sequence[str], tasks: Sequence[str], conversations: Sequence[str]
) -> list[Row]:
    """The latest outcome of each name on these targets: target_kind, target_id, name, ok (1, 0
    or None) and value; a read of the named targets only."""
    params = {
        "project": project,
        "traces": list(traces),
        "tasks": [t for t in tasks if t],
        "conversations": [c for c in conversations if c],
    }
    return rows(client, _LATEST_OF, params)
