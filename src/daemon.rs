//! The daemon's spine: collect on each collector's schedule, store, refresh `/metrics`.
//!
//! One task per collector runs its schedule. A cycle is: open a run row, collect (cancellable), write the
//! result in one transaction (never cancelled: a shutdown waits for the write in flight), close the run row,
//! re-render `/metrics` from the database.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use collector::aws::calls::calls_between;
use collector::aws::inventory::{self, InventorySettings};
use collector::{AwsContext, ScopeFailure};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};

use crate::config::{Config, Job};
use crate::metrics::{self, CollectorStatus, Snapshot};
use crate::server::{self, AppState};
use crate::store::{InventoryWrite, RunOutcome, ScopeCount, Store};

pub const INVENTORY: &str = "inventory";

/// What one collection cycle did, for logs, the CLI summary and tests.
#[derive(Debug, Clone, Serialize)]
pub struct CycleSummary {
    pub collector: String,
    pub run_id: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub duration_secs: f64,
    pub outcome: RunOutcome,
    pub resources_seen: usize,
    pub write: InventoryWrite,
    /// AWS call attempts this cycle made, by `service:operation`.
    pub api_calls: BTreeMap<String, u64>,
    pub failures: Vec<ScopeFailure>,
    /// Live inventory after the cycle, per (account, region, type).
    pub inventory: Vec<ScopeCount>,
    /// Set when the cycle could not be stored.
    pub error: Option<String>,
}

impl CycleSummary {
    pub fn api_call_total(&self) -> u64 {
        self.api_calls.values().sum()
    }
}

/// The long-lived parts of the daemon.
#[derive(Clone)]
pub struct Daemon {
    pub config: Arc<Config>,
    pub store: Store,
    pub aws: AwsContext,
    pub state: AppState,
    collectors: Arc<Mutex<BTreeMap<String, CollectorStatus>>>,
    accounts: Arc<Mutex<Vec<(String, String)>>>,
}

impl Daemon {
    /// Opens the database (applying migrations) and prepares the AWS clients. Makes no AWS call.
    pub async fn new(config: Config) -> anyhow::Result<Daemon> {
        let store = Store::connect(&config.database.url, config.database.max_connections).await?;
        let closed = store.close_abandoned_runs(Utc::now()).await?;
        if closed > 0 {
            warn!(runs = closed, "closed runs left open by an earlier process as failed");
        }
        let aws = AwsContext::new(&config.aws).await;
        let mut collectors = BTreeMap::new();
        for (name, ended, duration) in store.last_successes().await? {
            collectors.insert(
                name,
                CollectorStatus { last_duration_secs: Some(duration), last_success: Some(ended), runs: BTreeMap::new() },
            );
        }
        let daemon = Daemon {
            config: Arc::new(config),
            store,
            aws,
            state: AppState::default(),
            collectors: Arc::new(Mutex::new(collectors)),
            accounts: Arc::new(Mutex::new(Vec::new())),
        };
        // Serve what the database already knows until the first cycle ends.
        daemon.refresh_metrics().await;
        Ok(daemon)
    }

    /// Re-renders `/metrics` from the database and the in-memory counters.
    pub async fn refresh_metrics(&self) {
        let inventory = match self.store.inventory_counts().await {
            Ok(c) => c,
            Err(error) => {
                error!(%error, "cannot read inventory counts; keeping the previous /metrics");
                return;
            }
        };
        let snapshot = Snapshot {
            inventory,
            accounts: self.accounts.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            collectors: self.collectors.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            api_calls: self.aws.stats.snapshot(),
        };
        self.state.set_metrics(metrics::render(&snapshot));
    }

    fn note_run(&self, collector: &str, outcome: RunOutcome, duration_secs: f64, ended: DateTime<Utc>) {
        let mut all = self.collectors.lock().unwrap_or_else(|p| p.into_inner());
        let st = all.entry(collector.to_string()).or_default();
        st.last_duration_secs = Some(duration_secs);
        *st.runs.entry(outcome).or_default() += 1;
        if outcome == RunOutcome::Success {
            st.last_success = Some(ended);
        }
    }

    /// One inventory cycle. `cancel` stops the collection phase; a write already started completes.
    pub async fn inventory_cycle(&self, settings: &InventorySettings, cancel: &CancellationToken) -> CycleSummary {
        let started_at = Utc::now();
        let clock = Instant::now();
        let before = self.aws.stats.snapshot();
        let mut summary = CycleSummary {
            collector: INVENTORY.into(),
            run_id: None,
            started_at,
            duration_secs: 0.0,
            outcome: RunOutcome::Failed,
            resources_seen: 0,
            write: InventoryWrite::default(),
            api_calls: BTreeMap::new(),
            failures: Vec::new(),
            inventory: Vec::new(),
            error: None,
        };
        match self.store.begin_run(INVENTORY, started_at).await {
            Ok(id) => summary.run_id = Some(id),
            Err(e) => {
                error!(error = %e, "cannot record the start of the run");
                summary.error = Some(e.to_string());
            }
        }

        let report = tokio::select! {
            r = inventory::collect(&self.aws, settings) => Some(r),
            _ = cancel.cancelled() => None,
        };
        match report {
            None => {
                summary.outcome = RunOutcome::Cancelled;
                summary.error = Some("cancelled by shutdown".into());
            }
            Some(report) => {
                summary.resources_seen = report.resources.len();
                summary.failures = report.failures.clone();
                summary.outcome = if report.failures.is_empty() {
                    RunOutcome::Success
                } else if report.complete_scopes.is_empty() {
                    RunOutcome::Failed
                } else {
                    RunOutcome::Partial
                };
                if !report.accounts.is_empty() {
                    *self.accounts.lock().unwrap_or_else(|p| p.into_inner()) = report.accounts.clone();
                }
                if summary.outcome != RunOutcome::Failed {
                    let roles = self.config.aws.accounts.iter().map(|a| (a.name.clone(), a.role_arn.clone())).collect();
                    match self.store.record_inventory(&report, &roles, started_at).await {
                        Ok(w) => summary.write = w,
                        Err(e) => {
                            error!(error = %e, "cannot store the inventory");
                            summary.outcome = RunOutcome::Failed;
                            summary.error = Some(e.to_string());
                        }
                    }
                }
                if summary.error.is_none() && !summary.failures.is_empty() {
                    let shown: Vec<String> = summary
                        .failures
                        .iter()
                        .take(5)
                        .map(|f| format!("{} {} {}: {}", f.account, f.region.as_deref().unwrap_or("-"), f.source, f.error))
                        .collect();
                    summary.error = Some(shown.join("; "));
                }
            }
        }

        summary.api_calls = calls_between(&before, &self.aws.stats.snapshot())
            .into_iter()
            .map(|((s, o), n)| (format!("{s}:{o}"), n))
            .collect();
        summary.duration_secs = clock.elapsed().as_secs_f64();
        let ended = Utc::now();
        if let Some(id) = summary.run_id {
            if let Err(e) = self
                .store
                .finish_run(id, ended, summary.outcome, summary.api_call_total(), summary.resources_seen as u64, summary.error.as_deref())
                .await
            {
                error!(error = %e, "cannot record the end of the run");
            }
        }
        self.note_run(INVENTORY, summary.outcome, summary.duration_secs, ended);
        self.refresh_metrics().await;
        if matches!(summary.outcome, RunOutcome::Success | RunOutcome::Partial) {
            self.state.set_ready();
        }
        summary.inventory = self.store.inventory_counts().await.unwrap_or_default();
        info!(
            outcome = summary.outcome.as_str(),
            resources = summary.resources_seen,
            gone = summary.write.gone,
            api_calls = summary.api_call_total(),
            failures = summary.failures.len(),
            duration_secs = summary.duration_secs,
            "inventory cycle finished"
        );
        summary
    }

    /// Runs a collector on its schedule until `cancel`: first at once, then at each next scheduled time.
    async fn schedule_loop(self, job: Job<InventorySettings>, cancel: CancellationToken) {
        loop {
            let span = info_span!("collection_cycle", collector = INVENTORY);
            self.inventory_cycle(&job.settings, &cancel).instrument(span).await;
            if cancel.is_cancelled() {
                return;
            }
            let next = job.schedule.next_after(Utc::now());
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            info!(collector = INVENTORY, next = %next.to_rfc3339(), "next run scheduled");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    /// Serves HTTP and runs every enabled collector until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let (addr, server) = server::serve(self.config.listen, self.state.clone(), shutdown.clone())
            .await
            .with_context(|| format!("cannot listen on {}", self.config.listen))?;
        info!(%addr, "serving /metrics, /healthz and /readyz");
        let mut tasks = Vec::new();
        if let Some(job) = self.config.inventory.clone() {
            info!(collector = INVENTORY, schedule = %job.schedule, "collector enabled");
            tasks.push(tokio::spawn(self.clone().schedule_loop(job, shutdown.clone())));
        } else {
            warn!("no collector is enabled; serving what the database holds");
        }
        shutdown.cancelled().await;
        info!("shutting down: waiting for writes in flight");
        for t in tasks {
            if let Err(e) = t.await {
                error!(error = %e, "collector task ended abnormally");
            }
        }
        server.await.context("server task")?.context("server")?;
        self.store.close().await;
        info!("stopped");
        Ok(())
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(error) => {
                    error!(%error, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => info!("SIGINT received"),
                _ = term.recv() => info!("SIGTERM received"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        token.cancel();
    });
}
