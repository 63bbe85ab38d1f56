-- cloudwarden's first schema: accounts, the resource inventory with its history, and collection runs.
-- Timestamps are Unix milliseconds (UTC).

CREATE TABLE accounts (
    name          TEXT PRIMARY KEY,
    account_id    TEXT,
    role_arn      TEXT,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL
);

CREATE TABLE resources (
    arn           TEXT PRIMARY KEY,
    resource_type TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    region        TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    name          TEXT,
    state         TEXT,
    tags          TEXT NOT NULL,
    untagged      INTEGER NOT NULL,
    details       TEXT NOT NULL,
    created_at_ms BIGINT,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL,
    gone_at_ms    BIGINT
);

CREATE INDEX resources_live ON resources (account_id, resource_type, region) WHERE gone_at_ms IS NULL;

CREATE TABLE collection_runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    collector     TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    ended_at_ms   BIGINT,
    outcome       TEXT NOT NULL,
    api_calls     BIGINT NOT NULL DEFAULT 0,
    items         BIGINT NOT NULL DEFAULT 0,
    error         TEXT
);

CREATE INDEX collection_runs_by_collector ON collection_runs (collector, started_at_ms);
