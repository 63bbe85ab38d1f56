//! Tag compliance per day: what the newest rules evaluation of each UTC day found, per account and type.

use chrono::NaiveDate;
use rules::tagging::Compliance;
use sqlx::Row;

use super::{q, Store, StoreError};

/// Tag compliance of one account and resource type on a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplianceDay {
    pub day: NaiveDate,
    pub account_id: String,
    pub resource_type: String,
    pub resources: i64,
    /// Resources in scope of at least one tagging rule.
    pub in_scope: i64,
    /// Of those, compliant with every rule in scope.
    pub compliant: i64,
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Replaces the compliance of `day` with `compliance`, in one transaction.
    pub async fn record_compliance(&self, day: NaiveDate, compliance: &[Compliance]) -> Result<(), StoreError> {
        const WHAT: &str = "record tag compliance";
        let day = day.format("%Y-%m-%d").to_string();
        let mut tx = self.begin_write("begin tag compliance write").await?;
        sqlx::query("DELETE FROM compliance_days WHERE day = $1")
            .bind(&day)
            .execute(&mut *tx)
            .await
            .map_err(q(WHAT))?;
        for c in compliance {
            sqlx::query(
                "INSERT INTO compliance_days (day, account_id, resource_type, resources, in_scope, compliant) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&day)
            .bind(&c.account_id)
            .bind(&c.resource_type)
            .bind(count(c.resources))
            .bind(count(c.in_scope))
            .bind(count(c.compliant))
            .execute(&mut *tx)
            .await
            .map_err(q(WHAT))?;
        }
        tx.commit().await.map_err(q("commit tag compliance write"))?;
        Ok(())
    }

    /// The compliance of the newest day on or before `day` that has any, per account and type.
    pub async fn compliance_as_of(&self, day: NaiveDate) -> Result<Vec<ComplianceDay>, StoreError> {
        const WHAT: &str = "tag compliance";
        let rows = sqlx::query(
            "SELECT day, account_id, resource_type, resources, in_scope, compliant FROM compliance_days \
             WHERE day = (SELECT MAX(day) FROM compliance_days WHERE day <= $1) ORDER BY account_id, resource_type",
        )
        .bind(day.format("%Y-%m-%d").to_string())
        .fetch_all(self.pool())
        .await
        .map_err(q(WHAT))?;
        rows.iter()
            .map(|r| {
                let d: String = r.try_get("day").map_err(q(WHAT))?;
                Ok(ComplianceDay {
                    day: NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                        .map_err(|e| StoreError::Corrupt { what: "compliance day", detail: format!("{d:?}: {e}") })?,
                    account_id: r.try_get("account_id").map_err(q(WHAT))?,
                    resource_type: r.try_get("resource_type").map_err(q(WHAT))?,
                    resources: r.try_get("resources").map_err(q(WHAT))?,
                    in_scope: r.try_get("in_scope").map_err(q(WHAT))?,
                    compliant: r.try_get("compliant").map_err(q(WHAT))?,
                })
            })
            .collect()
    }
}
