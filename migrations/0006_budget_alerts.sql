-- Budget alerts already sent, one per budget and period (tokentrail.analysis.budgets).
CREATE TABLE IF NOT EXISTS budget_alerts
(
    budget String,
    period_start DateTime64(3),
    projected_usd Float64,
    sent_at DateTime64(3) DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (budget, period_start);
