-- The waste ledger (README, "Waste"), written by the analysis.
--
-- trace_waste: one row per analysed trace, its cost split into buckets that add up to
-- total_usd. The newest analysis of a trace wins.
CREATE TABLE IF NOT EXISTS trace_waste
(
    project LowCardinality(String),
    trace_id String,
    start_time DateTime64(9),
    service_name LowCardinality(String),
    agent_name LowCardinality(String),
    user_id String,
    total_usd Float64,
    retry_usd Float64,
    loop_usd Float64,
    duplicate_usd Float64,
    no_outcome_usd Float64,
    context_bloat_usd Float64,
    cache_miss_usd Float64,
    oversized_model_usd Float64,
    productive_usd Float64,
    wasted_tokens UInt64,
    findings UInt32,
    unpriced_calls UInt32,
    outcome LowCardinality(String),
    analyzed_at DateTime64(3),

    INDEX idx_start start_time TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(analyzed_at)
ORDER BY (project, trace_id);

-- waste_findings: what each detector found, one row per call (span) it charged. Rows of an
-- older analysis of the same trace are ignored by readers, which match analyzed_at with
-- trace_waste.
CREATE TABLE IF NOT EXISTS waste_findings
(
    project LowCardinality(String),
    trace_id String,
    analyzed_at DateTime64(3),
    detector LowCardinality(String),
    span_id String,
    related_span_ids Array(String),
    wasted_usd Nullable(Float64),
    wasted_tokens UInt64,
    reason String,
    model LowCardinality(String),
    start_time DateTime64(9),
    service_name LowCardinality(String),
    agent_name LowCardinality(String),
    user_id String,

    INDEX idx_start start_time TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(analyzed_at)
ORDER BY (project, trace_id, detector, span_id);
