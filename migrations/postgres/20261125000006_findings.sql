-- Findings of the rules engine. A finding's identity is (kind, rule, subject); at most one row per identity
-- is open (resolved_at_ms IS NULL). An evaluation refreshes the open rows it produces again (last_seen_ms,
-- message, severity, details) and resolves the open rows of the kinds it evaluated that it did not produce;
-- a finding that comes back after being resolved opens a new row. Money is an exact decimal string.

CREATE TABLE findings (
    id             BIGSERIAL PRIMARY KEY,
    kind           TEXT NOT NULL,
    rule           TEXT NOT NULL,
    subject        TEXT NOT NULL,
    account_id     TEXT,
    region         TEXT,
    resource_type  TEXT,
    severity       TEXT NOT NULL,
    message        TEXT NOT NULL,
    monthly_usd    TEXT,
    details        TEXT NOT NULL,
    first_seen_ms  BIGINT NOT NULL,
    last_seen_ms   BIGINT NOT NULL,
    resolved_at_ms BIGINT
);

CREATE UNIQUE INDEX findings_open_identity ON findings (kind, rule, subject) WHERE resolved_at_ms IS NULL;
CREATE INDEX findings_by_kind ON findings (kind, first_seen_ms);
