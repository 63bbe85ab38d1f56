//! Collection runs: one row per collector run, opened when it starts and closed with its outcome.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{from_ms, ms, q, Store, StoreError};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Running,
    /// Everything was collected.
    Success,
    /// Some accounts, regions or services failed; what was collected is stored.
    Partial,
    /// Nothing usable was collected.
    Failed,
    /// Stopped by shutdown before it finished.
    Cancelled,
    /// Nothing to do yet (e.g. Cost Explorer inside its minimum interval); no AWS call was made.
    Skipped,
}

impl RunOutcome {
    /// The outcomes a finished run can have (not `Running`), in the order `/metrics` lists them.
    pub const FINISHED: [RunOutcome; 5] =
        [RunOutcome::Success, RunOutcome::Partial, RunOutcome::Failed, RunOutcome::Cancelled, RunOutcome::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Success => "success",
            RunOutcome::Partial => "partial",
            RunOutcome::Failed => "failed",
            RunOutcome::Cancelled => "cancelled",
            RunOutcome::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Running, Self::Success, Self::Partial, Self::Failed, Self::Cancelled, Self::Skipped]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub collector: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    pub api_calls: i64,
    pub items: i64,
    pub error: Option<String>,
    /// When the process running it last said it was alive (open runs only).
    pub heartbeat: Option<DateTime<Utc>>,
}

/// The error of a run the process died in.
const ABANDONED: &str = "abandoned: the daemon stopped before the run finished";

/// How often a process says its open runs are alive.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(30);
/// An open run whose process has not beaten for this long is abandoned (three missed heartbeats).
pub const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(90);

impl Store {
    /// Opens a run row; returns its id.
    pub async fn begin_run(&self, collector: &str, started_at: DateTime<Utc>) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO collection_runs (collector, started_at_ms, outcome, instance, heartbeat_ms) \
             VALUES ($1, $2, $3, $4, $2) RETURNING id",
        )
        .bind(collector)
        .bind(ms(started_at))
        .bind(RunOutcome::Running.as_str())
        .bind(&*self.instance)
        .fetch_one(self.pool())
        .await
        .map_err(q("begin run"))?;
        row.try_get::<i64, _>("id").map_err(q("begin run"))
    }

    /// Closes a run row with its outcome.
    pub async fn finish_run(
        &self,
        id: i64,
        ended_at: DateTime<Utc>,
        outcome: RunOutcome,
        api_calls: u64,
        items: u64,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE collection_runs SET ended_at_ms = $1, outcome = $2, api_calls = $3, items = $4, error = $5 \
             WHERE id = $6",
        )
        .bind(ms(ended_at))
        .bind(outcome.as_str())
        .bind(api_calls as i64)
        .bind(items as i64)
        .bind(error)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(q("finish run"))?;
        Ok(())
    }

    /// Says that this process is alive: its open runs get `now` as their heartbeat. The runtime calls it
    /// every [`HEARTBEAT`].
    pub async fn heartbeat(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE collection_runs SET heartbeat_ms = $1 WHERE instance = $2 AND outcome = $3 AND ended_at_ms IS NULL",
        )
        .bind(ms(now))
        .bind(&*self.instance)
        .bind(RunOutcome::Running.as_str())
        .execute(self.pool())
        .await
        .map_err(q("run heartbeat"))?;
        Ok(done.rows_affected())
    }

    /// Runs that never finished because their process died are closed as failed (`abandoned`): open runs of
    /// other processes whose heartbeat (or start, for rows without one) is older than [`ABANDONED_AFTER`].
    /// A live process's runs are never touched, so a second instance or `collect --once` started against
    /// a database a daemon uses leaves the daemon's runs alone. Called at start-up and with each heartbeat.
    pub async fn close_abandoned_runs(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let stale = ms(now) - i64::try_from(ABANDONED_AFTER.as_millis()).unwrap_or(i64::MAX);
        let done = sqlx::query(
            "UPDATE collection_runs SET ended_at_ms = $1, outcome = $2, error = $3 WHERE outcome = $4 \
             AND (instance IS NULL OR instance <> $5) AND COALESCE(heartbeat_ms, started_at_ms) < $6",
        )
        .bind(ms(now))
        .bind(RunOutcome::Failed.as_str())
        .bind(ABANDONED)
        .bind(RunOutcome::Running.as_str())
        .bind(&*self.instance)
        .bind(stale)
        .execute(self.pool())
        .await
        .map_err(q("close abandoned runs"))?;
        Ok(done.rows_affected())
    }

    /// The newest runs of a collector, newest first.
    pub async fn runs(&self, collector: &str, limit: i64) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, collector, started_at_ms, ended_at_ms, outcome, api_calls, items, error, heartbeat_ms \
             FROM collection_runs WHERE collector = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(collector)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(q("list runs"))?;
        rows.iter()
            .map(|r| {
                let outcome: String = r.try_get("outcome").map_err(q("list runs"))?;
                Ok(RunRow {
                    id: r.try_get("id").map_err(q("list runs"))?,
                    collector: r.try_get("collector").map_err(q("list runs"))?,
                    started_at: from_ms(r.try_get("started_at_ms").map_err(q("list runs"))?),
                    ended_at: r.try_get::<Option<i64>, _>("ended_at_ms").map_err(q("list runs"))?.map(from_ms),
                    outcome: RunOutcome::parse(&outcome)
                        .ok_or(StoreError::Corrupt { what: "run outcome", detail: outcome })?,
                    api_calls: r.try_get("api_calls").map_err(q("list runs"))?,
                    items: r.try_get("items").map_err(q("list runs"))?,
                    error: r.try_get("error").map_err(q("list runs"))?,
                    heartbeat: r.try_get::<Option<i64>, _>("heartbeat_ms").map_err(q("list runs"))?.map(from_ms),
                })
            })
            .collect()
    }

    /// When the collector's newest finished run started (any outcome), for its schedule after a restart. A
    /// run the process died in (closed as abandoned) does not count: it did not happen, so a restart runs
    /// the job at once when its time has come.
    pub async fn last_run_started(&self, collector: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query(
            "SELECT MAX(started_at_ms) AS started_at_ms FROM collection_runs WHERE collector = $1 AND outcome <> $2 \
             AND NOT (outcome = $3 AND error = $4)",
        )
        .bind(collector)
        .bind(RunOutcome::Running.as_str())
        .bind(RunOutcome::Failed.as_str())
        .bind(ABANDONED)
        .fetch_one(self.pool())
        .await
        .map_err(q("last run"))?;
        let started: Option<i64> = row.try_get("started_at_ms").map_err(q("last run"))?;
        Ok(started.map(from_ms))
    }

    /// When each collector last succeeded, and how long that run took.
    pub async fn last_successes(&self) -> Result<Vec<(String, DateTime<Utc>, f64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.collector, r.started_at_ms, r.ended_at_ms FROM collection_runs r \
             JOIN (SELECT collector, MAX(id) AS id FROM collection_runs WHERE outcome = $1 GROUP BY collector) m \
             ON r.id = m.id",
        )
        .bind(RunOutcome::Success.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(q("last successes"))?;
        rows.iter()
            .map(|r| {
                let started: i64 = r.try_get("started_at_ms").map_err(q("last successes"))?;
                let ended: Option<i64> = r.try_get("ended_at_ms").map_err(q("last successes"))?;
                let ended = ended.unwrap_or(started);
                Ok((
                    r.try_get("collector").map_err(q("last successes"))?,
                    from_ms(ended),
                    (ended - started) as f64 / 1000.0,
                ))
            })
            .collect()
    }
}
