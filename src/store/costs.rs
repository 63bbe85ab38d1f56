//! Cost Explorer data: daily cost per grouping, replaced window by window, and the fetch log that decides
//! what the next fetch asks for.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use collector::aws::costexplorer::{CostFetch, CostMetric, CostRow};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::Row;

use super::{from_ms, ms, q, Store, StoreError};

const CHUNK: usize = 500;

/// A stored fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostFetchRow {
    pub fetched_at: DateTime<Utc>,
    pub window_start: NaiveDate,
    /// Exclusive.
    pub window_end: NaiveDate,
    pub requests: i64,
    pub rows: i64,
}

/// One stored day of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostDay {
    pub day: NaiveDate,
    pub dimension: String,
    pub key: String,
    pub metric: CostMetric,
    pub amount: Decimal,
    pub estimated: bool,
}

fn day(s: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| StoreError::Corrupt { what: "cost day", detail: format!("{s:?}: {e}") })
}

/// The rows to write, one per key (day, dimension, group, metric), the last one fetched winning, in the order
/// fetched. Pages of a fetch may repeat a key (keys that collide once parsed), and PostgreSQL refuses an upsert
/// that touches one row twice in a statement ("ON CONFLICT DO UPDATE command cannot affect row a second
/// time"); SQLite would take the last. Deduplicated here, every statement sends each key once on both.
fn last_per_key(rows: &[CostRow]) -> Vec<&CostRow> {
    let mut last = std::collections::HashMap::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        last.insert((r.day, r.dimension.as_str(), r.key.as_str(), r.metric.as_str()), i);
    }
    rows.iter()
        .enumerate()
        .filter(|(i, r)| last[&(r.day, r.dimension.as_str(), r.key.as_str(), r.metric.as_str())] == *i)
        .map(|(_, r)| r)
        .collect()
}

impl Store {
    /// Replaces the days `[start, end)` of every fetched dimension with what the fetch returned, in one
    /// transaction, and logs the fetch.
    pub async fn record_costs(
        &self,
        fetch: &CostFetch,
        dimensions: &[String],
        start: NaiveDate,
        end: NaiveDate,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let (s, e) = (start.format("%Y-%m-%d").to_string(), end.format("%Y-%m-%d").to_string());
        let mut tx = self.begin_write("begin cost write").await?;
        for d in dimensions {
            sqlx::query("DELETE FROM ce_costs WHERE dimension = $1 AND day >= $2 AND day < $3")
                .bind(d)
                .bind(&s)
                .bind(&e)
                .execute(&mut *tx)
                .await
                .map_err(q("replace cost window"))?;
        }
        let mut written = 0;
        for chunk in last_per_key(&fetch.rows).chunks(CHUNK) {
            let mut sql = String::from(
                "INSERT INTO ce_costs (day, dimension, group_key, metric, amount, unit, estimated, fetched_at_ms) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 8;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${},${},${},${},${},${},${},${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8
                ));
            }
            sql.push_str(
                " ON CONFLICT (day, dimension, group_key, metric) DO UPDATE SET amount = excluded.amount, \
                 unit = excluded.unit, estimated = excluded.estimated, fetched_at_ms = excluded.fetched_at_ms",
            );
            let mut query = sqlx::query(&sql);
            for &r in chunk {
                query = query
                    .bind(r.day.format("%Y-%m-%d").to_string())
                    .bind(&r.dimension)
                    .bind(&r.key)
                    .bind(r.metric.as_str())
                    .bind(r.amount.to_string())
                    .bind(&r.unit)
                    .bind(r.estimated as i32)
                    .bind(ms(at));
            }
            written += query.execute(&mut *tx).await.map_err(q("insert costs"))?.rows_affected();
        }
        for (id, name) in &fetch.account_names {
            sqlx::query(
                "INSERT INTO ce_account_names (account_id, name) VALUES ($1, $2) \
                 ON CONFLICT (account_id) DO UPDATE SET name = excluded.name",
            )
            .bind(id)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(q("account names"))?;
        }
        sqlx::query(
            "INSERT INTO ce_fetches (fetched_at_ms, window_start, window_end, requests, row_count) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(ms(at))
        .bind(&s)
        .bind(&e)
        .bind(fetch.requests as i64)
        .bind(fetch.rows.len() as i64)
        .execute(&mut *tx)
        .await
        .map_err(q("log cost fetch"))?;
        tx.commit().await.map_err(q("commit costs"))?;
        Ok(written)
    }

    /// The newest successful fetch, if any.
    pub async fn last_cost_fetch(&self) -> Result<Option<CostFetchRow>, StoreError> {
        let row = sqlx::query(
            "SELECT fetched_at_ms, window_start, window_end, requests, row_count FROM ce_fetches ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await
        .map_err(q("last cost fetch"))?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(CostFetchRow {
            fetched_at: from_ms(r.try_get("fetched_at_ms").map_err(q("last cost fetch"))?),
            window_start: day(&r.try_get::<String, _>("window_start").map_err(q("last cost fetch"))?)?,
            window_end: day(&r.try_get::<String, _>("window_end").map_err(q("last cost fetch"))?)?,
            requests: r.try_get("requests").map_err(q("last cost fetch"))?,
            rows: r.try_get("row_count").map_err(q("last cost fetch"))?,
        }))
    }

    /// The account names Cost Explorer gave with its costs by account: (account id, name).
    pub async fn ce_account_names(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT account_id, name FROM ce_account_names ORDER BY account_id")
            .fetch_all(self.pool())
            .await
            .map_err(q("cost explorer account names"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("account_id").map_err(q("cost explorer account names"))?,
                    r.try_get("name").map_err(q("cost explorer account names"))?,
                ))
            })
            .collect()
    }

    /// Stored daily costs of one metric in `[from, to)`, ordered by day, dimension, key.
    pub async fn cost_days(
        &self,
        metric: CostMetric,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<CostDay>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, dimension, group_key, amount, estimated FROM ce_costs WHERE metric = $1 AND day >= $2 AND day < $3 \
             ORDER BY day, dimension, group_key",
        )
        .bind(metric.as_str())
        .bind(from.format("%Y-%m-%d").to_string())
        .bind(to.format("%Y-%m-%d").to_string())
        .fetch_all(self.pool())
        .await
        .map_err(q("cost days"))?;
        rows.iter()
            .map(|r| {
                let amount: String = r.try_get("amount").map_err(q("cost days"))?;
                Ok(CostDay {
                    day: day(&r.try_get::<String, _>("day").map_err(q("cost days"))?)?,
                    dimension: r.try_get("dimension").map_err(q("cost days"))?,
                    key: r.try_get("group_key").map_err(q("cost days"))?,
                    metric,
                    amount: Decimal::from_str(&amount)
                        .map_err(|e| StoreError::Corrupt { what: "cost amount", detail: format!("{amount:?}: {e}") })?,
                    estimated: r.try_get::<i32, _>("estimated").map_err(q("cost days"))? != 0,
                })
            })
            .collect()
    }
}
