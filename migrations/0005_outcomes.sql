-- Outcomes (README, "Outcomes and cost per task") and the task a trace belongs to.
--
-- An outcome targets a trace, a task id or a conversation id, and may arrive hours after the
-- work it judges, from another process. It is kept whether or not its target has arrived yet;
-- readers join outcomes to traces when they ask, so a late outcome or a late trace attaches.
ALTER TABLE traces ADD COLUMN IF NOT EXISTS task_id String DEFAULT '';
ALTER TABLE traces ADD COLUMN IF NOT EXISTS task_type LowCardinality(String) DEFAULT '';

CREATE TABLE IF NOT EXISTS outcomes
(
    project LowCardinality(String),
    -- 'trace', 'task' or 'conversation'
    target_kind LowCardinality(String),
    target_id String,
    -- the span that carried it (a re-sent span replaces its row)
    outcome_id String,
    name String,
    -- NULL: the outcome has a value but no verdict
    success Nullable(UInt8),
    value String,
    recorded_at DateTime64(9),
    source_trace_id String
)
ENGINE = ReplacingMergeTree
ORDER BY (project, target_kind, target_id, outcome_id);
