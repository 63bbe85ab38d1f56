-- Scheduled report deliveries: one row per report, period (an ISO week such as 2026-W49) and configured
-- delivery. A delivery is sent until it succeeds, and never again once `state` is `delivered`.
-- Timestamps are Unix milliseconds (UTC).

CREATE TABLE report_deliveries (
    report           TEXT NOT NULL,
    period           TEXT NOT NULL,
    delivery         TEXT NOT NULL,
    kind             TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    first_seen_ms    BIGINT NOT NULL,
    last_attempt_ms  BIGINT,
    delivered_ms     BIGINT,
    last_error       TEXT,
    target           TEXT,
    response         TEXT,
    PRIMARY KEY (report, period, delivery)
);
