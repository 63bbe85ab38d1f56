//! Retention: history older than `[database] retention_days` is deleted, a small batch per transaction so
//! that a writer never waits long for the prune (on SQLite each batch holds the write lock for milliseconds).
//!
//! What goes: resolved findings resolved before the cutoff, finished runs that ended before it (the newest
//! run of each job is always kept: schedules and `/status` read it), billing file costs, Cost Explorer costs
//! and tag compliance of days before it. What stays: open findings, the resources, cleanup plans and the
//! append-only audit trail, report deliveries.

use chrono::{DateTime, NaiveDate, Utc};

use super::{ms, q, Backend, Store, StoreError};

/// A table retention prunes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pruned {
    Findings,
    Runs,
    BillingCosts,
    CostExplorerCosts,
    ComplianceDays,
}

impl Pruned {
    pub const ALL: [Pruned; 5] =
        [Pruned::Findings, Pruned::Runs, Pruned::BillingCosts, Pruned::CostExplorerCosts, Pruned::ComplianceDays];

    /// The table's name (a metric label).
    pub fn table(self) -> &'static str {
        match self {
            Pruned::Findings => "findings",
            Pruned::Runs => "collection_runs",
            Pruned::BillingCosts => "billing_costs",
            Pruned::CostExplorerCosts => "ce_costs",
            Pruned::ComplianceDays => "compliance_days",
        }
    }
}

impl Store {
    /// Deletes at most `batch` rows of `what` older than `cutoff`, in one short transaction; returns how many
    /// went. Call it again until it returns less than `batch`.
    pub async fn prune_batch(&self, what: Pruned, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        let day = cutoff.date_naive().format("%Y-%m-%d").to_string();
        // SQLite's rowid and PostgreSQL's ctid name a row of a table without a key of its own.
        let row = match self.backend() {
            Backend::Sqlite => "rowid",
            Backend::Postgres => "ctid",
        };
        let sql = match what {
            Pruned::Findings => format!(
                "DELETE FROM findings WHERE id IN (SELECT id FROM findings WHERE resolved_at_ms IS NOT NULL \
                 AND resolved_at_ms < $1 LIMIT {batch})"
            ),
            Pruned::Runs => format!(
                "DELETE FROM collection_runs WHERE id IN (SELECT id FROM collection_runs WHERE ended_at_ms IS NOT NULL \
                 AND ended_at_ms < $1 AND id NOT IN (SELECT MAX(id) FROM collection_runs GROUP BY collector) \
                 LIMIT {batch})"
            ),
            Pruned::BillingCosts => format!(
                "DELETE FROM billing_costs WHERE {row} IN (SELECT {row} FROM billing_costs WHERE day < $1 LIMIT {batch})"
            ),
            Pruned::CostExplorerCosts => {
                format!("DELETE FROM ce_costs WHERE {row} IN (SELECT {row} FROM ce_costs WHERE day < $1 LIMIT {batch})")
            }
            Pruned::ComplianceDays => format!(
                "DELETE FROM compliance_days WHERE {row} IN (SELECT {row} FROM compliance_days WHERE day < $1 LIMIT {batch})"
            ),
        };
        let query = match what {
            Pruned::Findings | Pruned::Runs => sqlx::query(&sql).bind(ms(cutoff)),
            _ => sqlx::query(&sql).bind(day),
        };
        let mut tx = self.begin_write("begin a retention batch").await?;
        let done = query.execute(&mut *tx).await.map_err(q("prune old rows"))?.rows_affected();
        tx.commit().await.map_err(q("commit a retention batch"))?;
        Ok(done)
    }

    /// The oldest day of billing file costs, for tests and the CLI.
    pub async fn oldest_billing_day(&self) -> Result<Option<NaiveDate>, StoreError> {
        let day: Option<String> = sqlx::query_scalar("SELECT MIN(day) FROM billing_costs")
            .fetch_one(self.pool())
            .await
            .map_err(q("oldest billing day"))?;
        Ok(day.and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()))
    }
}
