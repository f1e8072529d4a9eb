-- Who may sign in to the web UI and which projects each may read (tokentrail.store.users).
--
-- Every change is a new row with a later updated_at; readers read FINAL, so the latest row of an
-- email (or of an email and project, or of a session) is the one that counts.

CREATE TABLE IF NOT EXISTS users
(
    -- lower case
    email String,
    -- 'scrypt$n$r$p$salt$hash' (base64); '' for an account that signs in through the identity
    -- header of a single sign-on proxy only
    password_hash String,
    disabled UInt8 DEFAULT 0,
    updated_at DateTime64(6)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY email;

CREATE TABLE IF NOT EXISTS memberships
(
    email String,
    project LowCardinality(String),
    role LowCardinality(String) DEFAULT 'member',
    removed UInt8 DEFAULT 0,
    updated_at DateTime64(6)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (email, project);

-- Sign-in sessions of the web UI: the signed cookie names one, and a session signed out (or of a
-- user whose password changed) is revoked here, whatever its cookie says.
CREATE TABLE IF NOT EXISTS ui_sessions
(
    session_id String,
    email String,
    created_at DateTime64(6),
    expires_at DateTime64(6),
    revoked UInt8 DEFAULT 0,
    updated_at DateTime64(6)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY session_id
TTL toDateTime(expires_at) + INTERVAL 1 DAY;
