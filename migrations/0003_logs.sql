-- OTLP log records, stored as sent. Coding agents (Claude Code, Codex, Gemini CLI) report each
-- API call as a log event. record_hash makes re-sent batches replace.
CREATE TABLE IF NOT EXISTS logs
(
    project LowCardinality(String),
    timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    observed_timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    flags UInt32,
    severity_text LowCardinality(String),
    severity_number UInt8,
    service_name LowCardinality(String),
    scope_name LowCardinality(String),
    scope_version LowCardinality(String),
    event_name LowCardinality(String),
    body String CODEC(ZSTD(3)),
    resource_attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    record_hash UInt64,
    ingested_at DateTime64(3) DEFAULT now64(3),

    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project, service_name, toStartOfHour(timestamp), record_hash);
