//! The resource inventory: upserts by ARN, gone-marking per complete scope, counts for `/metrics`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use collector::{InventoryReport, Resource};
use serde::Serialize;
use sqlx::Row;

use super::{from_ms, ms, q, Store, StoreError};

/// Rows per multi-row INSERT (14 parameters each keeps well under both databases' limits).
const CHUNK: usize = 500;
const COLUMNS: usize = 14;

/// What one inventory write changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InventoryWrite {
    /// Resources inserted or refreshed.
    pub upserted: u64,
    /// Resources newly marked gone.
    pub gone: u64,
}

/// Live resources of one (account, region, type).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ScopeCount {
    pub account_id: String,
    pub region: String,
    pub resource_type: String,
    pub total: i64,
    pub untagged: i64,
}

/// A resource as stored, with its sightings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredResource {
    pub arn: String,
    pub resource_type: String,
    pub account_id: String,
    pub region: String,
    pub state: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub untagged: bool,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub gone_at: Option<DateTime<Utc>>,
}

fn upsert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO resources (arn, resource_type, account_id, region, resource_id, name, state, tags, untagged, \
         details, created_at_ms, first_seen_ms, last_seen_ms, gone_at_ms) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..COLUMNS {
            if c > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("${}", r * COLUMNS + c + 1));
        }
        sql.push(')');
    }
    sql.push_str(
        " ON CONFLICT (arn) DO UPDATE SET resource_type = excluded.resource_type, account_id = excluded.account_id, \
         region = excluded.region, resource_id = excluded.resource_id, name = excluded.name, state = excluded.state, \
         tags = excluded.tags, untagged = excluded.untagged, details = excluded.details, \
         created_at_ms = excluded.created_at_ms, last_seen_ms = excluded.last_seen_ms, gone_at_ms = NULL",
    );
    sql
}

impl Store {
    /// Stores one inventory cycle in a single transaction: accounts, every resource seen (inserted or
    /// refreshed), and, for each scope the cycle covered completely, every live resource it did not see is
    /// marked gone at `observed_at`. Scopes that failed keep their resources as they were.
    pub async fn record_inventory(
        &self,
        report: &InventoryReport,
        role_arns: &BTreeMap<String, Option<String>>,
        observed_at: DateTime<Utc>,
    ) -> Result<InventoryWrite, StoreError> {
        let now = ms(observed_at);
        let mut tx = self.begin_write("begin inventory write").await?;
        for (name, id) in &report.accounts {
            sqlx::query(
                "INSERT INTO accounts (name, account_id, role_arn, first_seen_ms, last_seen_ms) VALUES ($1, $2, $3, $4, $4) \
                 ON CONFLICT (name) DO UPDATE SET account_id = excluded.account_id, role_arn = excluded.role_arn, \
                 last_seen_ms = excluded.last_seen_ms",
            )
            .bind(name)
            .bind(id)
            .bind(role_arns.get(name).cloned().flatten())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(q("upsert account"))?;
        }

        let mut write = InventoryWrite::default();
        for chunk in report.resources.chunks(CHUNK) {
            let sql = upsert_sql(chunk.len());
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = bind_resource(query, r, now)?;
            }
            let done = query.execute(&mut *tx).await.map_err(q("upsert resources"))?;
            write.upserted += done.rows_affected();
        }

        crate::crash::pause_point("inventory-write").await;
        for scope in &report.complete_scopes {
            let done = match &scope.region {
                Some(region) => sqlx::query(
                    "UPDATE resources SET gone_at_ms = $1 WHERE gone_at_ms IS NULL AND last_seen_ms < $1 \
                     AND account_id = $2 AND resource_type = $3 AND region = $4",
                )
                .bind(now)
                .bind(&scope.account_id)
                .bind(&scope.resource_type)
                .bind(region),
                None => sqlx::query(
                    "UPDATE resources SET gone_at_ms = $1 WHERE gone_at_ms IS NULL AND last_seen_ms < $1 \
                     AND account_id = $2 AND resource_type = $3",
                )
                .bind(now)
                .bind(&scope.account_id)
                .bind(&scope.resource_type),
            }
            .execute(&mut *tx)
            .await
            .map_err(q("mark gone"))?;
            write.gone += done.rows_affected();
        }
        // Where the Tagging API answered fully, the types only it lists are complete too, including a type whose
        // last resource disappeared (no scope of it was listed this cycle).
        let described = collector::aws::inventory::DESCRIBED;
        let others = (0..described.len()).map(|i| format!("${}", i + 4)).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "UPDATE resources SET gone_at_ms = $1 WHERE gone_at_ms IS NULL AND last_seen_ms < $1 \
             AND account_id = $2 AND region = $3 AND resource_type NOT IN ({others})"
        );
        for (account_id, region) in &report.tagging_complete {
            let mut query = sqlx::query(&sql).bind(now).bind(account_id).bind(region);
            for t in described {
                query = query.bind(t);
            }
            let done = query.execute(&mut *tx).await.map_err(q("mark gone"))?;
            write.gone += done.rows_affected();
        }
        tx.commit().await.map_err(q("commit inventory write"))?;
        Ok(write)
    }

    /// Live resources per (account, region, type), with how many are untagged.
    pub async fn inventory_counts(&self) -> Result<Vec<ScopeCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT account_id, region, resource_type, COUNT(*) AS total, SUM(untagged) AS untagged FROM resources \
             WHERE gone_at_ms IS NULL GROUP BY account_id, region, resource_type \
             ORDER BY account_id, region, resource_type",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q("count resources"))?;
        rows.iter()
            .map(|r| {
                Ok(ScopeCount {
                    account_id: r.try_get("account_id").map_err(q("count resources"))?,
                    region: r.try_get("region").map_err(q("count resources"))?,
                    resource_type: r.try_get("resource_type").map_err(q("count resources"))?,
                    total: r.try_get("total").map_err(q("count resources"))?,
                    untagged: r.try_get::<Option<i64>, _>(4).map_err(q("count resources"))?.unwrap_or(0),
                })
            })
            .collect()
    }

    /// Every resource ever seen, gone ones included, ordered by ARN.
    pub async fn resources(&self) -> Result<Vec<StoredResource>, StoreError> {
        let rows = sqlx::query(
            "SELECT arn, resource_type, account_id, region, state, tags, untagged, first_seen_ms, last_seen_ms, \
             gone_at_ms FROM resources ORDER BY arn",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q("list resources"))?;
        rows.iter()
            .map(|r| {
                let tags: String = r.try_get("tags").map_err(q("list resources"))?;
                let tags = serde_json::from_str(&tags)
                    .map_err(|e| StoreError::Corrupt { what: "resource tags", detail: e.to_string() })?;
                Ok(StoredResource {
                    arn: r.try_get("arn").map_err(q("list resources"))?,
                    resource_type: r.try_get("resource_type").map_err(q("list resources"))?,
                    account_id: r.try_get("account_id").map_err(q("list resources"))?,
                    region: r.try_get("region").map_err(q("list resources"))?,
                    state: r.try_get("state").map_err(q("list resources"))?,
                    tags,
                    untagged: r.try_get::<i32, _>("untagged").map_err(q("list resources"))? != 0,
                    first_seen: from_ms(r.try_get("first_seen_ms").map_err(q("list resources"))?),
                    last_seen: from_ms(r.try_get("last_seen_ms").map_err(q("list resources"))?),
                    gone_at: r.try_get::<Option<i64>, _>(9).map_err(q("list resources"))?.map(from_ms),
                })
            })
            .collect()
    }
}

/// A live resource, as discovery jobs select them.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveResource {
    pub arn: String,
    pub id: String,
    pub tags: BTreeMap<String, String>,
}

impl Store {
    /// (configured name, account id) of every account an inventory run has reached.
    pub async fn accounts(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT name, account_id FROM accounts WHERE account_id IS NOT NULL ORDER BY name")
            .fetch_all(self.pool())
            .await
            .map_err(q("accounts"))?;
        rows.iter()
            .map(|r| Ok((r.try_get("name").map_err(q("accounts"))?, r.try_get("account_id").map_err(q("accounts"))?)))
            .collect()
    }

    /// Live resources of one type in one account and region, ordered by ARN.
    pub async fn live_resources(
        &self,
        account_id: &str,
        region: &str,
        resource_type: &str,
    ) -> Result<Vec<LiveResource>, StoreError> {
        let rows = sqlx::query(
            "SELECT arn, resource_id, tags FROM resources WHERE gone_at_ms IS NULL AND account_id = $1 AND region = $2 \
             AND resource_type = $3 ORDER BY arn",
        )
        .bind(account_id)
        .bind(region)
        .bind(resource_type)
        .fetch_all(self.pool())
        .await
        .map_err(q("live resources"))?;
        rows.iter()
            .map(|r| {
                let tags: String = r.try_get("tags").map_err(q("live resources"))?;
                Ok(LiveResource {
                    arn: r.try_get("arn").map_err(q("live resources"))?,
                    id: r.try_get("resource_id").map_err(q("live resources"))?,
                    tags: serde_json::from_str(&tags)
                        .map_err(|e| StoreError::Corrupt { what: "resource tags", detail: e.to_string() })?,
                })
            })
            .collect()
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind_resource<'q>(query: AnyQuery<'q>, r: &'q Resource, now: i64) -> Result<AnyQuery<'q>, StoreError> {
    let tags =
        serde_json::to_string(&r.tags).map_err(|e| StoreError::Corrupt { what: "tags", detail: e.to_string() })?;
    let details = serde_json::to_string(&r.details)
        .map_err(|e| StoreError::Corrupt { what: "details", detail: e.to_string() })?;
    Ok(query
        .bind(&r.arn)
        .bind(&r.resource_type)
        .bind(&r.account_id)
        .bind(&r.region)
        .bind(&r.id)
        .bind(r.name.as_deref())
        .bind(r.state.as_deref())
        .bind(tags)
        .bind(r.is_untagged() as i32)
        .bind(details)
        .bind(r.created_at.map(ms))
        .bind(now)
        .bind(now)
        .bind(None::<i64>))
}
