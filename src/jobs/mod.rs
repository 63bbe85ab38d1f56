//! The daemon's jobs and their contract.
//!
//! A job is one module here: its settings type, a value implementing [`Job`] (built from the validated
//! configuration), and the metric families it renders from what it published. A job reaches the world only
//! through the [`JobContext`] it is handed (store, AWS clients, clock, cancellation); it never sees another
//! job's state nor the daemon. The bookkeeping around a run — run rows, API call counts, supervision,
//! schedules, rendering `/metrics` — is the same for all and lives in [`crate::runtime`].
//!
//! Adding a job: a file in this folder and one line in [`registered`].

pub mod billing_files;
pub mod cleanup;
pub mod cloudwatch;
pub mod cost_explorer;
pub mod inventory;
pub mod logs;
pub mod metric_anomaly;
pub mod retention;
pub mod rules;
pub mod terraform;
pub mod weekly_report;

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use collector::{AwsContext, ScopeFailure};
use futures::future::BoxFuture;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Schedule};
use crate::metrics::Exposition;
use crate::runtime::Clock;
use crate::store::{RunOutcome, Store};

pub use self::rules::RulesSettings;
pub use billing_files::BillingFilesSettings;
pub use cleanup::CleanupJobSettings;
pub use cloudwatch::CloudWatchSettings;
pub use cost_explorer::CostExplorerSettings;
pub use logs::LogsSettings;
pub use terraform::TerraformSettings;

/// Every job the configuration enables, with its schedule. The one place where jobs are registered.
pub fn registered(config: &Config) -> Vec<Registration> {
    [
        inventory::register(config),
        cost_explorer::register(config),
        cloudwatch::register(config),
        logs::register(config),
        terraform::register(config),
        billing_files::register(config),
        rules::register(config),
        cleanup::register(config),
        weekly_report::register(config),
        retention::register(config),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// An enabled job and when it runs.
pub struct Registration {
    pub schedule: Schedule,
    pub job: Box<dyn Job>,
}

impl Registration {
    pub fn new(schedule: Schedule, job: impl Job) -> Registration {
        Registration { schedule, job: Box::new(job) }
    }
}

/// All a job may use: what it reads and writes, the time, and the signal to stop.
#[derive(Clone)]
pub struct JobContext {
    pub store: Store,
    pub aws: AwsContext,
    pub clock: Clock,
    /// The time this run is for (its scheduled time; tests choose it).
    pub now: DateTime<Utc>,
    /// Cancelled at shutdown: collection stops, a write in flight completes.
    pub cancel: CancellationToken,
}

impl JobContext {
    /// The configured account named `name`.
    pub fn account(&self, name: &str) -> Result<&collector::aws::AccountConfig, String> {
        self.aws
            .accounts
            .iter()
            .find(|a| a.spec.name == name)
            .ok_or_else(|| format!("no configured account is named {name:?}"))
    }

    /// The id of the configured account `name`: as the inventory stored it, or asked of STS.
    pub async fn account_id(&self, name: &str) -> Result<String, String> {
        let known = self.store.accounts().await.map_err(|e| e.to_string())?;
        if let Some((_, id)) = known.into_iter().find(|(n, _)| n == name) {
            return Ok(id);
        }
        let account = self.account(name)?;
        collector::aws::account_id(&self.aws, account)
            .await
            .map_err(|e| format!("cannot identify account {name:?}: {e}"))
    }
}

/// A job: one entry point, its own state across runs, and its own metric families.
pub trait Job: Send + 'static {
    /// The job's name in run rows, metrics, logs and `/status`.
    fn name(&self) -> &'static str;

    /// Whether the job works from what the inventory stored, so its first run on an empty database waits
    /// for the inventory's.
    fn reads_inventory(&self) -> bool {
        false
    }

    /// Whether the job collects from AWS or files (the rules evaluation does not: it only reads the store).
    fn collects(&self) -> bool {
        true
    }

    /// What the job publishes from the store alone, before its first run, so `/metrics` after a restart shows
    /// what is known. `None`: nothing until the first run.
    fn restore<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, Result<Option<Published>, String>> {
        let _ = ctx;
        Box::pin(async { Ok(None) })
    }

    /// One run. Collection watches `ctx.cancel`; a write that has begun is finished.
    fn run<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, JobOutput>;
}

/// What a job shows on `/metrics`: rendered from the value it published, never from the store.
pub trait Render: Send + Sync + 'static {
    fn render(&self, out: &mut Exposition);
}

/// A job's published value.
pub type Published = Arc<dyn Render>;

/// What one run of a job produced.
#[derive(Clone, Serialize)]
pub struct JobOutput {
    pub outcome: RunOutcome,
    /// Items collected (resources, cost rows, ...).
    pub items: u64,
    pub failures: Vec<ScopeFailure>,
    pub error: Option<String>,
    /// Job-specific facts of the run, for the CLI summary and tests.
    pub detail: Detail,
    /// The new value for `/metrics`; `None` keeps the previous one.
    #[serde(skip)]
    pub published: Option<Published>,
    /// Run again no later than this (work left that is worth retrying before the next scheduled run).
    pub retry_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for JobOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobOutput")
            .field("outcome", &self.outcome)
            .field("items", &self.items)
            .field("failures", &self.failures)
            .field("error", &self.error)
            .field("detail", &self.detail)
            .field("published", &self.published.is_some())
            .field("retry_at", &self.retry_at)
            .finish()
    }
}

impl JobOutput {
    pub fn new(outcome: RunOutcome, items: u64) -> JobOutput {
        JobOutput {
            outcome,
            items,
            failures: Vec::new(),
            error: None,
            detail: Detail::none(),
            published: None,
            retry_at: None,
        }
    }

    pub fn failed(error: impl Into<String>) -> JobOutput {
        JobOutput { error: Some(error.into()), ..JobOutput::new(RunOutcome::Failed, 0) }
    }

    pub fn cancelled() -> JobOutput {
        JobOutput { error: Some("cancelled by shutdown".into()), ..JobOutput::new(RunOutcome::Cancelled, 0) }
    }

    pub fn with_detail<T: Serialize + fmt::Debug + Send + Sync + 'static>(mut self, detail: T) -> JobOutput {
        self.detail = Detail::new(detail);
        self
    }

    /// Asks to run again no later than `t`.
    pub fn retry_at(mut self, t: DateTime<Utc>) -> JobOutput {
        self.retry_at = Some(t);
        self
    }

    pub fn publish(mut self, value: impl Render) -> JobOutput {
        self.published = Some(Arc::new(value));
        self
    }
}

/// Job-specific facts of a run: the job's own type, read back with [`Detail::get`], and its JSON.
#[derive(Clone)]
pub struct Detail {
    value: Option<Arc<dyn Any + Send + Sync>>,
    debug: String,
    json: serde_json::Value,
}

impl Detail {
    pub fn none() -> Detail {
        Detail { value: None, debug: String::new(), json: serde_json::Value::Null }
    }

    pub fn new<T: Serialize + fmt::Debug + Send + Sync + 'static>(value: T) -> Detail {
        let json = serde_json::to_value(&value).unwrap_or(serde_json::Value::Null);
        Detail { debug: format!("{value:?}"), value: Some(Arc::new(value)), json }
    }

    /// Names the job in the JSON facts (`"kind": "inventory"`).
    pub fn tag(&mut self, job: &str) {
        match &mut self.json {
            serde_json::Value::Object(m) => {
                m.insert("kind".into(), job.into());
            }
            other => *other = serde_json::json!({ "kind": job }),
        }
    }

    /// The facts, when they are of type `T`.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.value.as_deref().and_then(|v| v.downcast_ref())
    }
}

impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.debug.is_empty() { "None" } else { &self.debug })
    }
}

impl Serialize for Detail {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}
