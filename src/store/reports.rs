//! Scheduled report deliveries: what was sent, where, and what is still owed.
//!
//! One row per report, period and configured delivery. A delivery is `pending` until its first attempt,
//! `failed` while its attempts fail, and `delivered` once one succeeded; a delivered row is never changed
//! again, so a report is never sent twice to a delivery that has it.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_ms, ms, q, Store, StoreError};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Failed,
    Delivered,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Failed => "failed",
            DeliveryState::Delivered => "delivered",
        }
    }

    fn parse(s: &str) -> Option<DeliveryState> {
        [DeliveryState::Pending, DeliveryState::Failed, DeliveryState::Delivered].into_iter().find(|d| d.as_str() == s)
    }
}

/// One delivery of one period's report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryRecord {
    pub report: String,
    /// The period the report covers, e.g. `2026-W49`.
    pub period: String,
    /// The configured delivery's name.
    pub delivery: String,
    /// `email`, `webhook`, `s3` or `directory`.
    pub kind: String,
    pub state: DeliveryState,
    pub attempts: i64,
    /// When the report of this period was first due for this delivery.
    pub first_seen: DateTime<Utc>,
    pub last_attempt: Option<DateTime<Utc>>,
    pub delivered: Option<DateTime<Utc>>,
    /// The newest failure, while the delivery has not succeeded.
    pub last_error: Option<String>,
    /// Where it went, without secrets: recipients, the webhook's host, the S3 keys, the files.
    pub target: Option<String>,
    /// What the receiver answered: the relay's reply, the webhook's status, the objects' ETags.
    pub response: Option<String>,
}

const COLUMNS: &str = "report, period, delivery, kind, state, attempts, first_seen_ms, last_attempt_ms, \
                       delivered_ms, last_error, target, response";

fn record(r: &sqlx::any::AnyRow) -> Result<DeliveryRecord, StoreError> {
    const WHAT: &str = "report deliveries";
    let state: String = r.try_get("state").map_err(q(WHAT))?;
    let opt_time = |col: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(r.try_get::<Option<i64>, _>(col).map_err(q(WHAT))?.map(from_ms))
    };
    Ok(DeliveryRecord {
        report: r.try_get("report").map_err(q(WHAT))?,
        period: r.try_get("period").map_err(q(WHAT))?,
        delivery: r.try_get("delivery").map_err(q(WHAT))?,
        kind: r.try_get("kind").map_err(q(WHAT))?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt { what: "report delivery state", detail: format!("{state:?}") })?,
        attempts: r.try_get("attempts").map_err(q(WHAT))?,
        first_seen: from_ms(r.try_get("first_seen_ms").map_err(q(WHAT))?),
        last_attempt: opt_time("last_attempt_ms")?,
        delivered: opt_time("delivered_ms")?,
        last_error: r.try_get("last_error").map_err(q(WHAT))?,
        target: r.try_get("target").map_err(q(WHAT))?,
        response: r.try_get("response").map_err(q(WHAT))?,
    })
}

impl Store {
    /// Opens a row for each `(delivery, kind)` of `report`'s `period` that has none yet (state `pending`,
    /// first seen `now`); existing rows are left as they are. Returns every row of the period, by delivery.
    pub async fn open_report_deliveries(
        &self,
        report: &str,
        period: &str,
        deliveries: &[(&str, &str)],
        now: DateTime<Utc>,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        const WHAT: &str = "open report deliveries";
        let mut tx = self.begin_write("begin report deliveries write").await?;
        for (delivery, kind) in deliveries {
            sqlx::query(
                "INSERT INTO report_deliveries (report, period, delivery, kind, state, attempts, first_seen_ms) \
                 VALUES ($1, $2, $3, $4, 'pending', 0, $5) ON CONFLICT (report, period, delivery) DO NOTHING",
            )
            .bind(report)
            .bind(period)
            .bind(*delivery)
            .bind(*kind)
            .bind(ms(now))
            .execute(&mut *tx)
            .await
            .map_err(q(WHAT))?;
        }
        tx.commit().await.map_err(q("commit report deliveries write"))?;
        self.report_deliveries(report, Some(period)).await
    }

    /// The delivery rows of `report` (of one period, or of all), newest period first, then by delivery.
    pub async fn report_deliveries(
        &self,
        report: &str,
        period: Option<&str>,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let order = "ORDER BY period DESC, delivery";
        let rows = match period {
            Some(p) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM report_deliveries WHERE report = $1 AND period = $2 {order}"
                ))
                .bind(report)
                .bind(p)
                .fetch_all(self.pool())
                .await
            }
            None => {
                sqlx::query(&format!("SELECT {COLUMNS} FROM report_deliveries WHERE report = $1 {order}"))
                    .bind(report)
                    .fetch_all(self.pool())
                    .await
            }
        }
        .map_err(q("report deliveries"))?;
        rows.iter().map(record).collect()
    }

    /// Records an attempt of a delivery that is not delivered yet: `Ok((target, response))` marks it
    /// delivered, `Err(error)` failed. Returns `false` (and changes nothing) when the row is already
    /// delivered or missing.
    pub async fn record_report_attempt(
        &self,
        report: &str,
        period: &str,
        delivery: &str,
        at: DateTime<Utc>,
        result: Result<(&str, Option<&str>), &str>,
    ) -> Result<bool, StoreError> {
        const WHAT: &str = "record a report delivery";
        let query = match result {
            Ok((target, response)) => sqlx::query(
                "UPDATE report_deliveries SET state = 'delivered', attempts = attempts + 1, last_attempt_ms = $4, \
                 delivered_ms = $4, last_error = NULL, target = $5, response = $6 \
                 WHERE report = $1 AND period = $2 AND delivery = $3 AND state <> 'delivered'",
            )
            .bind(report)
            .bind(period)
            .bind(delivery)
            .bind(ms(at))
            .bind(target)
            .bind(response),
            Err(error) => sqlx::query(
                "UPDATE report_deliveries SET state = 'failed', attempts = attempts + 1, last_attempt_ms = $4, \
                 last_error = $5 WHERE report = $1 AND period = $2 AND delivery = $3 AND state <> 'delivered'",
            )
            .bind(report)
            .bind(period)
            .bind(delivery)
            .bind(ms(at))
            .bind(error),
        };
        let mut tx = self.begin_write("begin report delivery write").await?;
        let done = query.execute(&mut *tx).await.map_err(q(WHAT))?.rows_affected() == 1;
        tx.commit().await.map_err(q("commit report delivery write"))?;
        Ok(done)
    }
}
