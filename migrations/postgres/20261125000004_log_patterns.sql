-- CloudWatch Logs pattern counters: the running total per (account, region, log group, pattern) and the
-- end of the time range counted so far, so no event is counted twice across runs or restarts.

CREATE TABLE log_pattern_counts (
    account_id         TEXT NOT NULL,
    region             TEXT NOT NULL,
    log_group          TEXT NOT NULL,
    pattern_name       TEXT NOT NULL,
    filter_pattern     TEXT NOT NULL,
    matches            BIGINT NOT NULL,
    counted_until_ms   BIGINT NOT NULL,
    PRIMARY KEY (account_id, region, log_group, pattern_name)
);
