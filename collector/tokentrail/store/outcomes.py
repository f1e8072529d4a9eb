"""How a trace ended, from the `outcomes` table: the verdict every reader (the waste analysis, the UI)
shares. The reconciler (`tokentrail.store.reconcile`) files the outcomes; this reads them.

An outcome judges a trace, a task id or a conversation id; a trace takes the outcomes of all
three. Per target, the latest outcome of each name counts (a ticket reopened after it was
resolved). A trace *failed* if any of those says failure, *succeeded* if none failed and one says
success, and is *unknown* otherwise (no outcome, or outcomes with a value but no verdict).
"""

from __future__ import annotations

__all__ = ["traces_with_outcome"]

_VERDICTS = """(
    SELECT target_id, countIf(ok = 0) > 0 AS failed, countIf(ok = 1) > 0 AS succeeded, count() AS outcomes
    FROM (
        SELECT target_kind, target_id, name, argMax(success, recorded_at) AS ok FROM outcomes FINAL
        WHERE project = {{project:String}} AND target_kind = '{kind}'
        GROUP BY target_kind, target_id, name
    )
    GROUP BY target_id
)"""


def traces_with_outcome(columns: str, where: str, joins: str = "") -> str:
    """`SELECT {columns}, outcome, outcomes FROM traces FINAL WHERE {where}` with each trace's outcome
    ('success', 'failure' or '') and how many outcomes judged it. `columns` and `where` are the
    caller's fixed SQL over `traces` columns (and `joins`, more joins onto `t`); values stay bound
    parameters."""
    return f"""
SELECT {columns},
    multiIf(ot.failed OR ok.failed OR oc.failed, 'failure', ot.succeeded OR ok.succeeded OR oc.succeeded, 'success', '')
        AS outcome,
    ot.outcomes + ok.outcomes + oc.outcomes AS outcomes
FROM (SELECT * FROM traces FINAL WHERE {where}) AS t
{joins}
LEFT JOIN {_VERDICTS.format(kind="trace")} AS ot ON ot.target_id = t.trace_id
LEFT JOIN {_VERDICTS.format(kind="task")} AS ok ON ok.target_id = t.task_id
LEFT JOIN {_VERDICTS.format(kind="conversation")} AS oc ON oc.target_id = t.conversation_id
"""
