-- Coding agents (Claude Code, Codex CLI, Gemini CLI) report a session as OTLP log events and
-- metrics. The events are kept as sent in `logs`, and here once more, typed and ordered by
-- session, so that the session builder (tokentrail.collector.coding) reads one session's events
-- as one range and turns them into traces: one per prompt or turn, beside any spans the tool sent.
CREATE TABLE IF NOT EXISTS agent_events
(
    project LowCardinality(String),
    -- claude_code, codex or gemini_cli
    tool LowCardinality(String),
    session_id String CODEC(ZSTD(1)),
    -- the prompt the event belongs to, when the tool says (Codex does not: turns are split at
    -- its user prompts)
    prompt_id String CODEC(ZSTD(1)),
    timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    -- the event's short name: api_request, tool_result, user_prompt, sse_event, ...
    event LowCardinality(String),
    -- event.sequence where the tool sends it, else -1
    sequence Int64,
    service_name LowCardinality(String),
    -- the span context the record was emitted in, when it was
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    resource_attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    body String CODEC(ZSTD(3)),
    record_hash UInt64,
    ingested_at DateTime64(3) DEFAULT now64(3),

    -- the tool's own spans may name no session: their trace finds it
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project, tool, session_id, timestamp, record_hash);

-- OTLP metric data points (sums, gauges, histograms), one row per point. A re-sent batch
-- replaces its rows. Cumulative sums are kept as sent; readers take increments per series.
CREATE TABLE IF NOT EXISTS metric_points
(
    project LowCardinality(String),
    metric LowCardinality(String),
    -- sum, gauge, histogram, exponential_histogram or summary
    kind LowCardinality(String),
    unit LowCardinality(String),
    -- delta, cumulative, or '' for gauges
    temporality LowCardinality(String),
    monotonic UInt8,
    start_time DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    time DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    -- a sum's or gauge's value; a histogram's sum
    value Float64,
    -- a histogram's count (0 for other kinds)
    count UInt64,
    service_name LowCardinality(String),
    scope_name LowCardinality(String),
    resource_attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    -- one series: the metric, its resource and its point attributes
    series UInt64,
    ingested_at DateTime64(3) DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(time)
ORDER BY (project, metric, series, start_time, time);

-- Who and what a trace's work was for, read from its spans or their resource: the coding agent
-- that did it, the team and the repository (OTEL_RESOURCE_ATTRIBUTES team=…,repository=…).
ALTER TABLE traces ADD COLUMN IF NOT EXISTS coding_agent LowCardinality(String) DEFAULT '';
ALTER TABLE traces ADD COLUMN IF NOT EXISTS team LowCardinality(String) DEFAULT '';
ALTER TABLE traces ADD COLUMN IF NOT EXISTS repository String DEFAULT '';
