//! CloudWatch Logs pattern counters.

use serde::Serialize;
use sqlx::Row;

use super::{q, Store, StoreError};

/// Where a pattern counter stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatternCount {
    pub account_id: String,
    pub region: String,
    pub log_group: String,
    pub pattern_name: String,
    pub filter_pattern: String,
    pub matches: i64,
    /// Events before this time (Unix ms) are counted.
    pub counted_until_ms: i64,
}

impl Store {
    /// Every pattern counter.
    pub async fn pattern_counts(&self) -> Result<Vec<PatternCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT account_id, region, log_group, pattern_name, filter_pattern, matches, counted_until_ms \
             FROM log_pattern_counts ORDER BY account_id, region, log_group, pattern_name",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q("pattern counts"))?;
        rows.iter()
            .map(|r| {
                Ok(PatternCount {
                    account_id: r.try_get("account_id").map_err(q("pattern counts"))?,
                    region: r.try_get("region").map_err(q("pattern counts"))?,
                    log_group: r.try_get("log_group").map_err(q("pattern counts"))?,
                    pattern_name: r.try_get("pattern_name").map_err(q("pattern counts"))?,
                    filter_pattern: r.try_get("filter_pattern").map_err(q("pattern counts"))?,
                    matches: r.try_get("matches").map_err(q("pattern counts"))?,
                    counted_until_ms: r.try_get("counted_until_ms").map_err(q("pattern counts"))?,
                })
            })
            .collect()
    }

    /// Adds `matches` counted over `[from_ms, until_ms)` to a counter. The update only applies if the counter
    /// still stands at `from_ms` (or does not exist yet), so a range is never added twice. A changed filter
    /// pattern restarts the counter at zero. Returns whether the update applied.
    pub async fn add_pattern_matches(
        &self,
        c: &PatternCount,
        from_ms: i64,
        matches: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO log_pattern_counts (account_id, region, log_group, pattern_name, filter_pattern, matches, counted_until_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (account_id, region, log_group, pattern_name) DO UPDATE SET \
             matches = CASE WHEN log_pattern_counts.filter_pattern = excluded.filter_pattern \
                       THEN log_pattern_counts.matches + excluded.matches ELSE excluded.matches END, \
             filter_pattern = excluded.filter_pattern, counted_until_ms = excluded.counted_until_ms \
             WHERE log_pattern_counts.counted_until_ms = $8 OR log_pattern_counts.filter_pattern <> excluded.filter_pattern",
        )
        .bind(&c.account_id)
        .bind(&c.region)
        .bind(&c.log_group)
        .bind(&c.pattern_name)
        .bind(&c.filter_pattern)
        .bind(matches)
        .bind(until_ms)
        .bind(from_ms)
        .execute(self.pool())
        .await
        .map_err(q("add pattern matches"))?;
        Ok(done.rows_affected() == 1)
    }

    /// (account, region, name, retention days, stored bytes) of every live log group, from the inventory.
    pub async fn log_groups(&self) -> Result<Vec<(String, String, String, Option<i64>, Option<i64>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT account_id, region, resource_id, details FROM resources \
             WHERE resource_type = 'logs:log-group' AND gone_at_ms IS NULL ORDER BY account_id, region, resource_id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q("log groups"))?;
        rows.iter()
            .map(|r| {
                let details: String = r.try_get("details").map_err(q("log groups"))?;
                let v: serde_json::Value = serde_json::from_str(&details)
                    .map_err(|e| StoreError::Corrupt { what: "log group details", detail: e.to_string() })?;
                Ok((
                    r.try_get("account_id").map_err(q("log groups"))?,
                    r.try_get("region").map_err(q("log groups"))?,
                    r.try_get("resource_id").map_err(q("log groups"))?,
                    v["retention_days"].as_i64(),
                    v["stored_bytes"].as_i64(),
                ))
            })
            .collect()
    }
}
