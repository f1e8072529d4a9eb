-- What the waste rules need to hold on any emitter's spans, and the evidence behind each finding.
--
-- spans, normalized at ingest:
--   cache_reported    the span carries an attribute for cached input tokens (0 counts): only then
--                     can a cache miss be told from a hit
--   reported_cost_usd the cost the emitter reported, kept beside the cost that counts (cost_usd)
--   catalog_cost_usd  the catalog's price for the same tokens (NULL: model unknown)
--   system_hash       hash of the system instructions: calls with the same one do the same kind of step
--   requested_tools   hashes (tool name + arguments) of the tool calls the model asked for in its
--                     captured output, for runs whose tools leave no spans of their own
ALTER TABLE spans
    ADD COLUMN IF NOT EXISTS cache_reported UInt8,
    ADD COLUMN IF NOT EXISTS reported_cost_usd Nullable(Float64),
    ADD COLUMN IF NOT EXISTS catalog_cost_usd Nullable(Float64),
    ADD COLUMN IF NOT EXISTS system_hash UInt64,
    ADD COLUMN IF NOT EXISTS requested_tools Array(UInt64);

-- waste_findings: the rule that made each finding, the numbers it rests on (JSON: tokens, prices,
-- the formula, the spans compared), and the wall time the waste cost (failed attempts, backoff).
ALTER TABLE waste_findings
    ADD COLUMN IF NOT EXISTS rule LowCardinality(String),
    ADD COLUMN IF NOT EXISTS evidence String CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS time_lost_ns UInt64;

-- Which model did which kind of step, and succeeded, per trace (written by the waste analysis):
-- the evidence of the oversized-model rule, which only suggests a cheaper model this project has
-- seen doing the same kind of step. A step is keyed by what makes two calls the same kind of
-- work: the agent that made it ('agent:NAME'), else the task type ('task:TYPE'), else the system
-- prompt ('system:HASH').
CREATE TABLE IF NOT EXISTS model_steps
(
    project LowCardinality(String),
    step String,
    step_kind LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    trace_id String,
    span_id String,
    calls UInt32,
    start_time DateTime64(9),
    analyzed_at DateTime64(3),

    INDEX idx_start start_time TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(analyzed_at)
ORDER BY (project, step, step_kind, provider, model, trace_id);
