-- Cost Explorer: daily cost per grouping (service, account, tag:<key>) and metric, amounts as exact decimal
-- strings; one row per fetch, so the next fetch knows which days are still open and when it may run again.

CREATE TABLE ce_costs (
    day           TEXT NOT NULL,
    dimension     TEXT NOT NULL,
    group_key     TEXT NOT NULL,
    metric        TEXT NOT NULL,
    amount        TEXT NOT NULL,
    unit          TEXT NOT NULL,
    estimated     INTEGER NOT NULL,
    fetched_at_ms BIGINT NOT NULL,
    PRIMARY KEY (day, dimension, group_key, metric)
);

CREATE TABLE ce_fetches (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    fetched_at_ms BIGINT NOT NULL,
    window_start  TEXT NOT NULL,
    window_end    TEXT NOT NULL,
    requests      BIGINT NOT NULL,
    row_count     BIGINT NOT NULL
);

CREATE TABLE ce_account_names (
    account_id TEXT PRIMARY KEY,
    name       TEXT NOT NULL
);
