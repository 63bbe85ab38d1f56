-- Terraform state: one row per managed resource instance per state origin (a file path or s3:// URI).
-- The same ARN may appear in several states; each keeps its origin. An origin's rows are replaced only by
-- a successful read of that origin.

CREATE TABLE tf_resources (
    origin        TEXT NOT NULL,
    address       TEXT NOT NULL,
    deposed       TEXT NOT NULL,
    tf_type       TEXT NOT NULL,
    provider      TEXT NOT NULL,
    resource_type TEXT,
    resource_id   TEXT,
    arn           TEXT,
    region        TEXT,
    account_id    TEXT,
    tags          TEXT NOT NULL,
    serial        BIGINT NOT NULL,
    lineage       TEXT NOT NULL,
    seen_at_ms    BIGINT NOT NULL,
    PRIMARY KEY (origin, address, deposed)
);

CREATE INDEX tf_resources_arn ON tf_resources (arn);
