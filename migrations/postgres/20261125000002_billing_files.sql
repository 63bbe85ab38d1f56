-- Billing export files (FOCUS 1.0, CUR 2.0) and their cost rolled up per day and key.
-- A file is known by its URI; its fingerprint (S3 ETag, or size and mtime) tells whether it changed.
-- Amounts are exact decimal strings, summed in the application, never as floating point.

CREATE TABLE billing_files (
    id            BIGSERIAL PRIMARY KEY,
    uri           TEXT NOT NULL UNIQUE,
    fingerprint   TEXT NOT NULL,
    format        TEXT NOT NULL,
    schema        TEXT NOT NULL,
    rows_read     BIGINT NOT NULL,
    rows_skipped  BIGINT NOT NULL,
    cost_rows     BIGINT NOT NULL,
    loaded_at_ms  BIGINT NOT NULL
);

CREATE TABLE billing_costs (
    file_id            BIGINT NOT NULL REFERENCES billing_files (id),
    day                TEXT NOT NULL,
    provider           TEXT NOT NULL,
    billing_account_id TEXT NOT NULL,
    account_id         TEXT NOT NULL,
    service            TEXT NOT NULL,
    resource_id        TEXT,
    region             TEXT,
    charge_category    TEXT NOT NULL,
    currency           TEXT NOT NULL,
    billed_cost        TEXT NOT NULL,
    effective_cost     TEXT NOT NULL,
    list_cost          TEXT NOT NULL,
    tags               TEXT NOT NULL
);

CREATE INDEX billing_costs_by_file ON billing_costs (file_id);
CREATE INDEX billing_costs_by_day ON billing_costs (day);
