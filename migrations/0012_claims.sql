-- Who does a piece of work that any of several collectors on one database could do
-- (tokentrail.store.claims): analysing a due trace, sending a budget alert. Each collector that
-- finds the work writes a claim; the earliest claim, as the database's clock stamps it on insert,
-- wins. A claim older than its lease is ignored, so the work of a collector that died is taken up.
CREATE TABLE IF NOT EXISTS claims
(
    -- what kind of work: "analysis" (subject: a trace id), "budget_alert" (subject: a budget)
    kind LowCardinality(String),
    project LowCardinality(String),
    subject String,
    -- which version of the subject: a trace's last change, a budget's period
    version DateTime64(3),
    holder String,
    claimed_at DateTime64(9) DEFAULT now64(9)
)
ENGINE = MergeTree
ORDER BY (kind, subject, version, claimed_at)
TTL toDateTime(claimed_at) + INTERVAL 1 DAY;
