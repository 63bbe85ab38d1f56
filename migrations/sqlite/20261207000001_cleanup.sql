-- Cleanup: a plan per resource and action (a persisted state machine), the append-only audit trail of every
-- transition, and exemptions granted through the API. A finding counts the evaluations in a row that produced
-- it, so a candidate is acted on only once it has been seen on several.

ALTER TABLE findings ADD COLUMN evaluations BIGINT NOT NULL DEFAULT 1;

CREATE TABLE cleanup_plans (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The candidate finding (one episode of the resource being a candidate) the plan came from.
    finding_id     BIGINT NOT NULL,
    -- The plan this one escalates (terminate after stop), if any.
    parent_id      BIGINT,
    arn            TEXT NOT NULL,
    account_id     TEXT NOT NULL,
    region         TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    rule           TEXT NOT NULL,
    action         TEXT NOT NULL,
    state          TEXT NOT NULL,
    reason         TEXT NOT NULL,
    owner          TEXT NOT NULL,
    monthly_usd    TEXT,
    due_ms         BIGINT NOT NULL,
    -- The mark tag's value as set on the resource: `<action>@<due date>`.
    mark_value     TEXT NOT NULL,
    created_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL,
    marked_ms      BIGINT,
    -- When the mark tag was taken off again (a released or rejected plan).
    unmarked_ms    BIGINT,
    notified_ms    BIGINT,
    warned_ms      BIGINT,
    approved_ms    BIGINT,
    approved_by    TEXT,
    acting_ms      BIGINT,
    called_ms      BIGINT,
    done_ms        BIGINT,
    -- Identifies the plan's action at AWS (a snapshot's tag, a final snapshot's name).
    token          TEXT NOT NULL,
    request_id     TEXT,
    snapshot_id    TEXT,
    error_code     TEXT,
    error          TEXT
);

-- At most one plan per resource and action is under way.
CREATE UNIQUE INDEX cleanup_plans_active ON cleanup_plans (arn, action)
    WHERE state NOT IN ('done', 'failed', 'released', 'rejected');
CREATE INDEX cleanup_plans_by_finding ON cleanup_plans (finding_id);
CREATE INDEX cleanup_plans_by_state ON cleanup_plans (state, due_ms);

CREATE TABLE cleanup_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    plan_id     BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    -- `scheduler`, or the name of the API token that asked.
    actor       TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    arn         TEXT NOT NULL,
    action      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    request_id  TEXT
);

CREATE INDEX cleanup_audit_by_plan ON cleanup_audit (plan_id, id);

-- The audit trail is append-only: the database refuses to change or remove a row.
CREATE TRIGGER cleanup_audit_no_update BEFORE UPDATE ON cleanup_audit
BEGIN
    SELECT RAISE(ABORT, 'cleanup_audit is append-only');
END;

CREATE TRIGGER cleanup_audit_no_delete BEFORE DELETE ON cleanup_audit
BEGIN
    SELECT RAISE(ABORT, 'cleanup_audit is append-only');
END;

CREATE TABLE cleanup_exemptions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    arn         TEXT NOT NULL,
    reason      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL
);

CREATE INDEX cleanup_exemptions_by_arn ON cleanup_exemptions (arn, expires_ms);
