-- Per-trace summary that keeps trace lists and reports fast. Recomputed from `spans` by the
-- collector's summarizer whenever a trace receives spans, so a re-sent span never counts twice;
-- the newest row per (project, trace_id) wins.
CREATE TABLE IF NOT EXISTS traces
(
    project LowCardinality(String),
    trace_id String,
    start_time DateTime64(9),
    end_time DateTime64(9),
    duration_ns UInt64,
    root_span_id String,
    root_name String,
    service_name LowCardinality(String),
    services Array(LowCardinality(String)),
    agent_name LowCardinality(String),
    agents Array(LowCardinality(String)),
    models Array(LowCardinality(String)),
    span_count UInt32,
    llm_calls UInt32,
    tool_calls UInt32,
    error_count UInt32,
    input_tokens UInt64,
    output_tokens UInt64,
    cache_read_tokens UInt64,
    cache_write_tokens UInt64,
    reasoning_tokens UInt64,
    -- sum over billable calls whose price is known; unpriced_calls counts the others
    cost_usd Float64,
    unpriced_calls UInt32,
    conversation_id String,
    user_id String,
    status LowCardinality(String),
    updated_at DateTime64(3) DEFAULT now64(3),

    INDEX idx_start start_time TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (project, trace_id);
