//! Billing files and their daily costs: one `billing_files` row per file (its fingerprint says whether it
//! changed), its cost rows in `billing_costs`. A file is replaced whole, in one transaction. Amounts are
//! stored as exact decimal strings and summed here with `Decimal`, never in SQL as floating point.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use collector::billing::{DailyCost, Decimal, FileCosts, FileRef};
use collector::money;
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::Row;

use super::{from_ms, insert_values, ms, q, Store, StoreError};

/// Parameters per `billing_costs` row.
const COLUMNS: usize = 14;

/// A loaded billing file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BillingFile {
    pub id: i64,
    pub uri: String,
    pub fingerprint: String,
    /// `csv`, `csv.gz` or `parquet`.
    pub format: String,
    /// `focus` or `cur`.
    pub schema: String,
    pub rows_read: i64,
    pub rows_skipped: i64,
    /// Daily cost rows the file rolled up into.
    pub cost_rows: i64,
    pub loaded_at: DateTime<Utc>,
}

/// What cost totals are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingGroup {
    /// `YYYY-MM-DD`.
    Day,
    Provider,
    /// The sub-account (`SubAccountId`, `line_item_usage_account_id`).
    Account,
    Service,
    Region,
    ChargeCategory,
}

impl BillingGroup {
    fn column(self) -> &'static str {
        match self {
            BillingGroup::Day => "day",
            BillingGroup::Provider => "provider",
            BillingGroup::Account => "account_id",
            BillingGroup::Service => "service",
            BillingGroup::Region => "region",
            BillingGroup::ChargeCategory => "charge_category",
        }
    }
}

/// The cost of one group in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BillingTotal {
    /// The group's value (empty for a missing region).
    pub group: String,
    pub currency: String,
    pub billed_cost: Decimal,
    pub effective_cost: Decimal,
    pub list_cost: Decimal,
}

const INSERT_COSTS: &str = "INSERT INTO billing_costs (file_id, day, provider, billing_account_id, account_id, \
     service, resource_id, region, charge_category, currency, billed_cost, effective_cost, list_cost, tags) VALUES ";

fn decimal(what: &'static str, text: &str) -> Result<Decimal, StoreError> {
    Decimal::from_str(text).map_err(|e| StoreError::Corrupt { what, detail: format!("{text:?}: {e}") })
}

impl Store {
    /// The stored row of a billing file, if it was ever loaded.
    pub async fn billing_file(&self, uri: &str) -> Result<Option<BillingFile>, StoreError> {
        let rows = self.billing_files_where(Some(uri)).await?;
        Ok(rows.into_iter().next())
    }

    /// Every loaded billing file, by URI.
    pub async fn billing_files(&self) -> Result<Vec<BillingFile>, StoreError> {
        self.billing_files_where(None).await
    }

    async fn billing_files_where(&self, uri: Option<&str>) -> Result<Vec<BillingFile>, StoreError> {
        const WHAT: &str = "list billing files";
        let sql = format!(
            "SELECT id, uri, fingerprint, format, schema, rows_read, rows_skipped, cost_rows, loaded_at_ms \
             FROM billing_files {} ORDER BY uri",
            if uri.is_some() { "WHERE uri = $1" } else { "" }
        );
        let mut query = sqlx::query(&sql);
        if let Some(uri) = uri {
            query = query.bind(uri);
        }
        let rows = query.fetch_all(self.pool()).await.map_err(q(WHAT))?;
        rows.iter()
            .map(|r| {
                Ok(BillingFile {
                    id: r.try_get("id").map_err(q(WHAT))?,
                    uri: r.try_get("uri").map_err(q(WHAT))?,
                    fingerprint: r.try_get("fingerprint").map_err(q(WHAT))?,
                    format: r.try_get("format").map_err(q(WHAT))?,
                    schema: r.try_get("schema").map_err(q(WHAT))?,
                    rows_read: r.try_get("rows_read").map_err(q(WHAT))?,
                    rows_skipped: r.try_get("rows_skipped").map_err(q(WHAT))?,
                    cost_rows: r.try_get("cost_rows").map_err(q(WHAT))?,
                    loaded_at: from_ms(r.try_get("loaded_at_ms").map_err(q(WHAT))?),
                })
            })
            .collect()
    }

    /// Whether a listed file is already loaded as it is now (same URI, same fingerprint).
    pub async fn billing_file_unchanged(&self, file: &FileRef) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT fingerprint FROM billing_files WHERE uri = $1")
            .bind(&file.uri)
            .fetch_optional(self.pool())
            .await
            .map_err(q("find billing file"))?;
        match row {
            Some(r) => Ok(r.try_get::<String, _>("fingerprint").map_err(q("find billing file"))? == file.fingerprint),
            None => Ok(false),
        }
    }

    /// Stores what was read from a file, replacing whatever an earlier version of it left, in one
    /// transaction: either the new rows are all there or the earlier ones still are. Returns the file's id.
    pub async fn replace_billing_file(
        &self,
        file: &FileRef,
        read: &FileCosts,
        loaded_at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin_write("begin billing file write").await?;
        let row = sqlx::query(
            "INSERT INTO billing_files (uri, fingerprint, format, schema, rows_read, rows_skipped, cost_rows, \
             loaded_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (uri) DO UPDATE SET fingerprint = excluded.fingerprint, format = excluded.format, \
             schema = excluded.schema, rows_read = excluded.rows_read, rows_skipped = excluded.rows_skipped, \
             cost_rows = excluded.cost_rows, loaded_at_ms = excluded.loaded_at_ms RETURNING id",
        )
        .bind(&file.uri)
        .bind(&file.fingerprint)
        .bind(file.format.as_str())
        .bind(read.schema.as_str())
        .bind(read.rows_read as i64)
        .bind(read.rows_skipped as i64)
        .bind(read.cost_rows() as i64)
        .bind(ms(loaded_at))
        .fetch_one(&mut *tx)
        .await
        .map_err(q("upsert billing file"))?;
        let id: i64 = row.try_get("id").map_err(q("upsert billing file"))?;
        sqlx::query("DELETE FROM billing_costs WHERE file_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(q("delete billing costs"))?;
        crate::crash::pause_point("billing-write").await;
        let chunk = self.backend().insert_chunk();
        let mut costs = read.costs().peekable();
        while costs.peek().is_some() {
            let rows: Vec<_> = costs.by_ref().take(chunk).collect();
            let sql = insert_values(INSERT_COSTS, rows.len(), COLUMNS, self.backend());
            let mut query = sqlx::query(&sql);
            for c in &rows {
                let tags = serde_json::to_string(c.tags)
                    .map_err(|e| StoreError::Corrupt { what: "billing tags", detail: e.to_string() })?;
                query = query
                    .bind(id)
                    .bind(c.day.format("%Y-%m-%d").to_string())
                    .bind(c.provider)
                    .bind(c.billing_account_id)
                    .bind(c.sub_account_id)
                    .bind(c.service_name)
                    .bind(c.resource_id)
                    .bind(c.region)
                    .bind(c.charge_category)
                    .bind(c.currency)
                    .bind(c.billed_cost.to_string())
                    .bind(c.effective_cost.to_string())
                    .bind(c.list_cost.to_string())
                    .bind(tags);
            }
            query.execute(&mut *tx).await.map_err(q("insert billing costs"))?;
        }
        tx.commit().await.map_err(q("commit billing file write"))?;
        Ok(id)
    }

    /// Cost totals of every loaded file per group and currency, for days in `days` (inclusive) or all days,
    /// sorted by group then currency. Summed exactly, row by row, as decimals.
    pub async fn billing_totals(
        &self,
        group_by: BillingGroup,
        days: Option<(NaiveDate, NaiveDate)>,
    ) -> Result<Vec<BillingTotal>, StoreError> {
        const WHAT: &str = "billing totals";
        let col = group_by.column();
        let sql = format!(
            "SELECT {col} AS group_key, currency, billed_cost, effective_cost, list_cost FROM billing_costs{}",
            if days.is_some() { " WHERE day >= $1 AND day <= $2" } else { "" }
        );
        let mut query = sqlx::query(&sql);
        if let Some((from, to)) = days {
            query = query.bind(from.format("%Y-%m-%d").to_string()).bind(to.format("%Y-%m-%d").to_string());
        }
        let mut sums: BTreeMap<(String, String), [Decimal; 3]> = BTreeMap::new();
        let mut rows = query.fetch(self.pool());
        while let Some(r) = rows.try_next().await.map_err(q(WHAT))? {
            let group: Option<String> = r.try_get("group_key").map_err(q(WHAT))?;
            let currency: String = r.try_get("currency").map_err(q(WHAT))?;
            let amounts = [
                decimal("billed cost", &r.try_get::<String, _>("billed_cost").map_err(q(WHAT))?)?,
                decimal("effective cost", &r.try_get::<String, _>("effective_cost").map_err(q(WHAT))?)?,
                decimal("list cost", &r.try_get::<String, _>("list_cost").map_err(q(WHAT))?)?,
            ];
            let sum = sums.entry((group.unwrap_or_default(), currency)).or_insert([Decimal::ZERO; 3]);
            for (s, a) in sum.iter_mut().zip(amounts) {
                money::add_to(s, a)?;
            }
        }
        Ok(sums
            .into_iter()
            .map(|((group, currency), [billed, effective, list])| BillingTotal {
                group,
                currency,
                billed_cost: billed.normalize(),
                effective_cost: effective.normalize(),
                list_cost: list.normalize(),
            })
            .collect())
    }

    /// The stored daily costs of days `from..=to`, every file together, ordered by day.
    pub async fn billing_daily_costs(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<DailyCost>, StoreError> {
        let mut out = Vec::new();
        self.for_each_billing_cost(from, to, |c| out.push(c)).await?;
        Ok(out)
    }

    /// The newest day with stored billing costs.
    pub async fn billing_newest_day(&self) -> Result<Option<NaiveDate>, StoreError> {
        let day: Option<String> = sqlx::query_scalar("SELECT MAX(day) FROM billing_costs")
            .fetch_one(self.pool())
            .await
            .map_err(q("newest billing day"))?;
        day.map(|d| {
            NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                .map_err(|e| StoreError::Corrupt { what: "billing day", detail: format!("{d:?}: {e}") })
        })
        .transpose()
    }

    /// Calls `f` with each stored daily cost of days `from..=to`, every file together, ordered by day, one
    /// row at a time: memory does not grow with the number of rows.
    pub async fn for_each_billing_cost(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        mut f: impl FnMut(DailyCost),
    ) -> Result<(), StoreError> {
        const WHAT: &str = "billing daily costs";
        let mut rows = sqlx::query(
            "SELECT day, provider, billing_account_id, account_id, service, resource_id, region, charge_category, \
             currency, billed_cost, effective_cost, list_cost, tags FROM billing_costs WHERE day >= $1 AND day <= $2 \
             ORDER BY day, account_id, service",
        )
        .bind(from.format("%Y-%m-%d").to_string())
        .bind(to.format("%Y-%m-%d").to_string())
        .fetch(self.pool());
        while let Some(r) = rows.try_next().await.map_err(q(WHAT))? {
            let day: String = r.try_get("day").map_err(q(WHAT))?;
            let tags: String = r.try_get("tags").map_err(q(WHAT))?;
            f(DailyCost {
                day: NaiveDate::parse_from_str(&day, "%Y-%m-%d")
                    .map_err(|e| StoreError::Corrupt { what: "billing day", detail: format!("{day:?}: {e}") })?,
                provider: r.try_get("provider").map_err(q(WHAT))?,
                billing_account_id: r.try_get("billing_account_id").map_err(q(WHAT))?,
                sub_account_id: r.try_get("account_id").map_err(q(WHAT))?,
                service_name: r.try_get("service").map_err(q(WHAT))?,
                resource_id: r.try_get("resource_id").map_err(q(WHAT))?,
                region: r.try_get("region").map_err(q(WHAT))?,
                charge_category: r.try_get("charge_category").map_err(q(WHAT))?,
                currency: r.try_get("currency").map_err(q(WHAT))?,
                billed_cost: decimal("billed cost", &r.try_get::<String, _>("billed_cost").map_err(q(WHAT))?)?,
                effective_cost: decimal("effective cost", &r.try_get::<String, _>("effective_cost").map_err(q(WHAT))?)?,
                list_cost: decimal("list cost", &r.try_get::<String, _>("list_cost").map_err(q(WHAT))?)?,
                tags: serde_json::from_str(&tags)
                    .map_err(|e| StoreError::Corrupt { what: "billing tags", detail: e.to_string() })?,
            });
        }
        Ok(())
    }
}
