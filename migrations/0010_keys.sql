-- Projects and their API keys (tokentrail.store.keys; `tokentrail projects` and `tokentrail keys`).
--
-- Both tables are small and changed by inserting a newer version of a row (its `updated_at` is
-- the version): readers use FINAL. A key's secret is never stored, only its SHA-256.
CREATE TABLE IF NOT EXISTS projects
(
    name String,
    created_at DateTime64(3, 'UTC'),
    -- 1: the project was deleted (its data is kept; its keys no longer count)
    deleted UInt8 DEFAULT 0,
    updated_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY name;

CREATE TABLE IF NOT EXISTS api_keys
(
    -- the public part of the key text `tt_<key_id>_<secret>`
    key_id String,
    project String,
    -- 'ingest' (send telemetry and outcomes) or 'read' (read the project's data)
    scope LowCardinality(String),
    -- hex SHA-256 of the secret part
    secret_sha256 String,
    label String DEFAULT '',
    created_at DateTime64(3, 'UTC'),
    expires_at Nullable(DateTime64(3, 'UTC')),
    revoked_at Nullable(DateTime64(3, 'UTC')),
    updated_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY key_id;
