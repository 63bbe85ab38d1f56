//! Terraform state resources, per origin.

use chrono::{DateTime, Utc};
use collector::terraform::StateFile;
use serde::Serialize;
use sqlx::Row;

use super::{ms, q, Store, StoreError};

const CHUNK: usize = 400;
const COLUMNS: usize = 14;

/// A stored managed resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredTfResource {
    pub origin: String,
    pub address: String,
    pub resource_type: Option<String>,
    pub arn: Option<String>,
}

impl Store {
    /// Replaces the rows of each state read (and only those) in one transaction. `arn_of` gives a
    /// resource's canonical ARN. Returns the rows written.
    pub async fn record_states(
        &self,
        states: &[StateFile],
        arn_of: &(dyn Fn(&collector::terraform::TfResource) -> Option<String> + Sync),
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write("begin terraform write").await?;
        let mut written = 0;
        for state in states {
            sqlx::query("DELETE FROM tf_resources WHERE origin = $1")
                .bind(&state.origin)
                .execute(&mut *tx)
                .await
                .map_err(q("replace terraform state"))?;
            for chunk in state.resources.chunks(CHUNK) {
                let mut sql = String::from(
                    "INSERT INTO tf_resources (origin, address, deposed, tf_type, provider, resource_type, resource_id, arn, \
                     region, account_id, tags, serial, lineage, seen_at_ms) VALUES ",
                );
                for i in 0..chunk.len() {
                    if i > 0 {
                        sql.push(',');
                    }
                    let cols: Vec<String> = (1..=COLUMNS).map(|c| format!("${}", i * COLUMNS + c)).collect();
                    sql.push_str(&format!("({})", cols.join(",")));
                }
                // The same address can only repeat through a malformed state; keep the last.
                sql.push_str(" ON CONFLICT (origin, address, deposed) DO NOTHING");
                let mut query = sqlx::query(&sql);
                for r in chunk {
                    let tags = serde_json::to_string(&r.tags)
                        .map_err(|e| StoreError::Corrupt { what: "terraform tags", detail: e.to_string() })?;
                    query = query
                        .bind(&state.origin)
                        .bind(&r.address)
                        .bind(r.deposed.clone().unwrap_or_default())
                        .bind(&r.tf_type)
                        .bind(&r.provider)
                        .bind(r.resource_type.clone())
                        .bind(r.id.clone())
                        .bind(arn_of(r))
                        .bind(r.region.clone())
                        .bind(r.account_id.clone())
                        .bind(tags)
                        .bind(state.serial as i64)
                        .bind(&state.lineage)
                        .bind(ms(at));
                }
                written += query.execute(&mut *tx).await.map_err(q("insert terraform resources"))?.rows_affected();
            }
        }
        tx.commit().await.map_err(q("commit terraform state"))?;
        Ok(written)
    }

    /// Every stored managed resource, ordered by origin and address.
    pub async fn tf_resources(&self) -> Result<Vec<StoredTfResource>, StoreError> {
        let rows = sqlx::query(
            "SELECT origin, address, resource_type, arn FROM tf_resources ORDER BY origin, address, deposed",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q("terraform resources"))?;
        rows.iter()
            .map(|r| {
                Ok(StoredTfResource {
                    origin: r.try_get("origin").map_err(q("terraform resources"))?,
                    address: r.try_get("address").map_err(q("terraform resources"))?,
                    resource_type: r.try_get("resource_type").map_err(q("terraform resources"))?,
                    arn: r.try_get("arn").map_err(q("terraform resources"))?,
                })
            })
            .collect()
    }
}
