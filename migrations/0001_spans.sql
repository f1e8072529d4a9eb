-- One row per span: the OpenTelemetry fields plus typed columns normalized at ingest from
-- whichever convention the emitter used (see normalize.py). Hot queries read typed columns;
-- the attribute maps are kept whole for the span detail view and for debugging.
--
-- ReplacingMergeTree keyed on (project, trace_id, span_id): a batch re-sent by a retrying
-- exporter, or replayed from the spool after a crash, replaces rows instead of adding them.
-- Ordered by trace id, so fetching one trace is a primary-key range read.
CREATE TABLE IF NOT EXISTS spans
(
    project LowCardinality(String),
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    parent_span_id String CODEC(ZSTD(1)),
    trace_state String CODEC(ZSTD(1)),
    name String CODEC(ZSTD(1)),
    span_kind LowCardinality(String),
    start_time DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    end_time DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    duration_ns UInt64 CODEC(T64, ZSTD(1)),
    service_name LowCardinality(String),
    scope_name LowCardinality(String),
    scope_version LowCardinality(String),
    resource_attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    status_code LowCardinality(String),
    status_message String CODEC(ZSTD(1)),
    events Nested
    (
        time DateTime64(9),
        name LowCardinality(String),
        attributes Map(LowCardinality(String), String)
    ),
    links Nested
    (
        trace_id String,
        span_id String,
        trace_state String,
        attributes Map(LowCardinality(String), String)
    ),

    -- normalized
    convention LowCardinality(String),
    step_kind LowCardinality(String),
    step_subkind LowCardinality(String),
    operation LowCardinality(String),
    agent_name LowCardinality(String),
    workflow_name LowCardinality(String),
    request_model LowCardinality(String),
    response_model LowCardinality(String),
    provider LowCardinality(String),
    input_tokens UInt64,
    output_tokens UInt64,
    cache_read_tokens UInt64,
    cache_write_tokens UInt64,
    reasoning_tokens UInt64,
    usage_reported UInt8,
    -- 1 for a leaf model call whose tokens and cost count; parents that repeat usage get 0
    billable UInt8,
    cost_usd Nullable(Float64),
    cost_source LowCardinality(String),
    price_version LowCardinality(String),
    tool_name LowCardinality(String),
    tool_call_id String CODEC(ZSTD(1)),
    tool_args_hash UInt64,
    input_hash UInt64,
    conversation_id String CODEC(ZSTD(1)),
    user_id String CODEC(ZSTD(1)),
    response_id String CODEC(ZSTD(1)),
    finish_reasons Array(LowCardinality(String)),
    error_type LowCardinality(String),
    retry_attempt UInt16,
    retry_reason String CODEC(ZSTD(1)),
    input_messages String CODEC(ZSTD(3)),
    output_messages String CODEC(ZSTD(3)),
    system_instructions String CODEC(ZSTD(3)),
    tool_arguments String CODEC(ZSTD(3)),
    tool_result String CODEC(ZSTD(3)),
    ingested_at DateTime64(3) DEFAULT now64(3),

    INDEX idx_start start_time TYPE minmax GRANULARITY 1,
    INDEX idx_conversation conversation_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(start_time)
ORDER BY (project, trace_id, span_id)
SETTINGS index_granularity = 8192;
