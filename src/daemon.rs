//! The daemon's spine: run each collector on its schedule, store, refresh `/metrics`.
//!
//! One task per collector runs its schedule. A run is: open a run row, run the job (collection is
//! cancellable; the write that follows is not, so a shutdown waits for the write in flight), close the run
//! row, re-render `/metrics` from the database and the call counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use collector::aws::calls::{by_operation, counting_calls};
use collector::aws::inventory::InventorySettings;
use collector::{AwsContext, ScopeFailure};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};

use crate::billing::{self, BillingView};
use crate::config::{Config, Schedule};
use crate::jobs::{self, Detail, JobKind, JobOutput};
use crate::metrics::{self, CollectorStatus, Snapshot};
use crate::server::{self, AppState};
use crate::store::{RunOutcome, Store};

/// What one run of a collector did, for logs, the CLI summary and tests.
#[derive(Debug, Clone, Serialize)]
pub struct CycleSummary {
    pub collector: String,
    pub run_id: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub duration_secs: f64,
    pub outcome: RunOutcome,
    /// Items collected: resources, cost rows, ...
    pub items: u64,
    /// AWS call attempts this run made, by `service:operation`.
    pub api_calls: BTreeMap<String, u64>,
    pub failures: Vec<ScopeFailure>,
    /// What went wrong, when something did.
    pub error: Option<String>,
    pub detail: Detail,
}

impl CycleSummary {
    pub fn api_call_total(&self) -> u64 {
        self.api_calls.values().sum()
    }

    /// The inventory facts of an inventory run.
    pub fn inventory(&self) -> Option<&jobs::inventory::InventoryDetail> {
        match &self.detail {
            Detail::Inventory(d) => Some(d),
            _ => None,
        }
    }

    /// The Logs facts of a Logs run.
    pub fn logs(&self) -> Option<&jobs::logs::LogsDetail> {
        match &self.detail {
            Detail::Logs(d) => Some(d),
            _ => None,
        }
    }

    /// The CloudWatch facts of a CloudWatch run.
    pub fn cloudwatch(&self) -> Option<&jobs::cloudwatch::CloudWatchDetail> {
        match &self.detail {
            Detail::CloudWatch(d) => Some(d),
            _ => None,
        }
    }

    /// The billing files facts of a billing files run.
    pub fn billing_files(&self) -> Option<&jobs::billing_files::BillingFilesDetail> {
        match &self.detail {
            Detail::BillingFiles(d) => Some(d),
            _ => None,
        }
    }

    /// The facts of a rules evaluation.
    pub fn rules(&self) -> Option<&jobs::rules::RulesDetail> {
        match &self.detail {
            Detail::Rules(d) => Some(d),
            _ => None,
        }
    }

    /// The Cost Explorer facts of a Cost Explorer run.
    pub fn cost_explorer(&self) -> Option<&jobs::cost_explorer::CostExplorerDetail> {
        match &self.detail {
            Detail::CostExplorer(d) => Some(d),
            _ => None,
        }
    }
}

/// A job and when it runs.
#[derive(Debug, Clone)]
pub struct ScheduledJob {
    pub schedule: Schedule,
    pub kind: JobKind,
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
    /// The newest CloudWatch series (pass-through metrics and resource info).
    cloudwatch: Arc<Mutex<Arc<Vec<jobs::cloudwatch::Series>>>>,
    cloudwatch_metrics_requested: Arc<AtomicU64>,
    /// (account, region, log group) → newest event time.
    log_last_events: Arc<Mutex<BTreeMap<(String, String, String), DateTime<Utc>>>>,
    billing: Arc<Mutex<BillingState>>,
    /// The newest rules evaluation's aggregates, for `/metrics`.
    rules: Arc<Mutex<Option<Arc<metrics::RulesAggregates>>>>,
    /// The metric anomaly detectors of the scored CloudWatch series.
    metric_anomalies: Arc<Mutex<jobs::metric_anomaly::MetricAnomalies>>,
    /// Their scores and counters after the newest CloudWatch run, for `/metrics`.
    metric_anomaly_view: Arc<Mutex<Option<Arc<jobs::metric_anomaly::AnomalyView>>>>,
}

/// The billing files' counters, and their cost windows, computed again only after a load or when the day
/// changes (a refresh after every other job's run would otherwise read every billing row again).
#[derive(Default)]
struct BillingState {
    counters: metrics::BillingCounters,
    view: Option<Arc<BillingView>>,
    stale: bool,
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
                CollectorStatus {
                    last_duration_secs: Some(duration),
                    last_success: Some(ended),
                    runs: BTreeMap::new(),
                },
            );
        }
        // Account ids learnt by earlier runs, until the next inventory run confirms them.
        let known: Vec<(String, String)> = store
            .accounts()
            .await?
            .into_iter()
            .filter(|(name, _)| config.aws.accounts.iter().any(|a| &a.name == name))
            .collect();
        let state = AppState::default().with_api(store.clone(), config.api.tokens.clone());
        let daemon = Daemon {
            config: Arc::new(config),
            store,
            aws,
            state,
            collectors: Arc::new(Mutex::new(collectors)),
            accounts: Arc::new(Mutex::new(known)),
            cloudwatch: Arc::new(Mutex::new(Arc::new(Vec::new()))),
            cloudwatch_metrics_requested: Arc::new(AtomicU64::new(0)),
            log_last_events: Arc::new(Mutex::new(BTreeMap::new())),
            billing: Arc::new(Mutex::new(BillingState::default())),
            rules: Arc::new(Mutex::new(None)),
            metric_anomalies: Arc::new(Mutex::new(Default::default())),
            metric_anomaly_view: Arc::new(Mutex::new(None)),
        };
        // Serve what the database already knows until the first run ends.
        daemon.refresh_metrics().await;
        Ok(daemon)
    }

    /// The enabled collectors with their schedules.
    pub fn jobs(&self) -> Vec<ScheduledJob> {
        let mut out = Vec::new();
        if let Some(j) = &self.config.inventory {
            out.push(ScheduledJob { schedule: j.schedule.clone(), kind: JobKind::Inventory(j.settings.clone()) });
        }
        if let Some(j) = &self.config.cost_explorer {
            out.push(ScheduledJob { schedule: j.schedule.clone(), kind: JobKind::CostExplorer(j.settings.clone()) });
        }
        if let Some(j) = &self.config.cloudwatch {
            out.push(ScheduledJob { schedule: j.schedule.clone(), kind: JobKind::CloudWatch(j.settings.clone()) });
        }
        if let Some(j) = &self.config.logs {
            out.push(ScheduledJob { schedule: j.schedule.clone(), kind: JobKind::Logs(j.settings.clone()) });
        }
        if let Some(j) = &self.config.terraform {
            out.push(ScheduledJob { schedule: j.schedule.clone(), kind: JobKind::Terraform(j.settings.clone()) });
        }
        if let Some(j) = &self.config.billing_files {
            out.push(ScheduledJob { schedule: j.schedule.clone(), kind: JobKind::BillingFiles(j.settings.clone()) });
        }
        if let Some(j) = &self.config.rules {
            out.push(ScheduledJob { schedule: j.schedule.clone(), kind: JobKind::Rules(j.settings.clone()) });
        }
        out
    }

    /// Whether a collector (a job other than the rules evaluation) is configured.
    fn has_collectors(&self) -> bool {
        let c = &self.config;
        c.inventory.is_some()
            || c.cost_explorer.is_some()
            || c.cloudwatch.is_some()
            || c.logs.is_some()
            || c.terraform.is_some()
            || c.billing_files.is_some()
    }

    pub(crate) fn set_accounts(&self, accounts: Vec<(String, String)>) {
        *self.accounts.lock().unwrap_or_else(|p| p.into_inner()) = accounts;
    }

    /// (configured name, account id) of the accounts the inventory reached.
    pub fn accounts(&self) -> Vec<(String, String)> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_cloudwatch_series(&self, series: Vec<jobs::cloudwatch::Series>) {
        *self.cloudwatch.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(series);
    }

    pub(crate) fn set_log_group_last_event(&self, account: &str, region: &str, group: &str, t: Option<DateTime<Utc>>) {
        let mut all = self.log_last_events.lock().unwrap_or_else(|p| p.into_inner());
        let key = (account.to_string(), region.to_string(), group.to_string());
        match t {
            Some(t) => all.insert(key, t),
            None => all.remove(&key),
        };
    }

    pub(crate) fn note_billing_load(
        &self,
        detail: &jobs::billing_files::BillingFilesDetail,
        failure_kinds: impl Iterator<Item = &'static str>,
    ) {
        let mut st = self.billing.lock().unwrap_or_else(|p| p.into_inner());
        let c = &mut st.counters;
        c.rows_read += detail.rows_read;
        c.rows_skipped += detail.rows_skipped;
        c.cost_rows += detail.cost_rows;
        for kind in failure_kinds {
            *c.failures.entry(kind).or_default() += 1;
        }
        c.files = Some([
            ("loaded", detail.files_loaded),
            ("unchanged", detail.files_unchanged),
            ("failed", detail.files_failed),
        ]);
        st.stale = true;
    }

    /// The billing view for `/metrics`: the cached one, or computed again after a load or a change of day.
    /// `None` when the collector is off; the previous view when the database cannot be read.
    async fn billing_view(&self, now: DateTime<Utc>) -> Option<Arc<BillingView>> {
        let settings = &self.config.billing_files.as_ref()?.settings;
        let (cached, stale) = {
            let st = self.billing.lock().unwrap_or_else(|p| p.into_inner());
            (st.view.clone(), st.stale)
        };
        if let Some(view) = &cached {
            if !stale && view.today == Some(now.date_naive()) {
                return cached;
            }
        }
        match billing::billing_view(&self.store, now, &settings.tag_keys, settings.resource_costs).await {
            Ok(view) => {
                if view.resources_left_out > 0 {
                    warn!(
                        left_out = view.resources_left_out,
                        "resources beyond max_resource_series get no cloudwarden_resource_cost_usd series"
                    );
                }
                let view = Arc::new(view);
                let mut st = self.billing.lock().unwrap_or_else(|p| p.into_inner());
                st.view = Some(view.clone());
                st.stale = false;
                Some(view)
            }
            Err(error) => {
                error!(%error, "cannot read billing costs; keeping the previous billing series");
                cached
            }
        }
    }

    pub(crate) fn metric_anomalies(&self) -> Arc<Mutex<jobs::metric_anomaly::MetricAnomalies>> {
        self.metric_anomalies.clone()
    }

    pub(crate) fn set_metric_anomaly_view(&self, view: jobs::metric_anomaly::AnomalyView) {
        *self.metric_anomaly_view.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(view));
    }

    pub(crate) fn set_rules_aggregates(&self, aggregates: Arc<metrics::RulesAggregates>) {
        *self.rules.lock().unwrap_or_else(|p| p.into_inner()) = Some(aggregates);
    }

    /// Whether the collector has ever succeeded (kept across restarts).
    pub(crate) fn collector_succeeded(&self, collector: &str) -> bool {
        let all = self.collectors.lock().unwrap_or_else(|p| p.into_inner());
        all.get(collector).is_some_and(|s| s.last_success.is_some())
    }

    pub(crate) fn add_cloudwatch_metrics_requested(&self, n: u64) {
        self.cloudwatch_metrics_requested.fetch_add(n, Ordering::Relaxed);
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
        let costs = match metrics::cost_windows(&self.store, Utc::now()).await {
            Ok(c) => c,
            Err(error) => {
                error!(%error, "cannot read costs; keeping the previous /metrics");
                return;
            }
        };
        let (patterns, log_groups) = match (self.store.pattern_counts().await, self.store.log_groups().await) {
            (Ok(p), Ok(g)) => (p, g),
            (Err(error), _) | (_, Err(error)) => {
                error!(%error, "cannot read log counters; keeping the previous /metrics");
                return;
            }
        };
        // Findings come from the rules and from the CloudWatch job's metric anomalies.
        let scores_anomalies = self.config.cloudwatch.as_ref().is_some_and(|j| j.settings.scores_anomalies());
        let findings = match self.config.rules.is_some() || scores_anomalies {
            false => None,
            true => match self.store.finding_counts().await {
                Ok(c) => Some(c),
                Err(error) => {
                    error!(%error, "cannot count findings; keeping the previous /metrics");
                    return;
                }
            },
        };
        let billing = self.billing_view(Utc::now()).await;
        let billing_counters = self
            .config
            .billing_files
            .as_ref()
            .map(|_| self.billing.lock().unwrap_or_else(|p| p.into_inner()).counters.clone());
        let snapshot = Snapshot {
            billing,
            billing_counters,
            patterns,
            log_groups,
            log_last_events: self.log_last_events.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            inventory,
            costs,
            accounts: self.accounts.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            collectors: self.collectors.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            api_calls: self.aws.stats.snapshot(),
            cloudwatch: self.cloudwatch.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            cloudwatch_metrics_requested: self.cloudwatch_metrics_requested.load(Ordering::Relaxed),
            rules: self.rules.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            findings,
            metric_anomaly: self.metric_anomaly_view.lock().unwrap_or_else(|p| p.into_inner()).clone(),
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

    /// One run of a job at `now`, with its run row, counters and metrics refresh.
    pub async fn run_job(&self, kind: &JobKind, now: DateTime<Utc>, cancel: &CancellationToken) -> CycleSummary {
        let name = kind.name();
        let clock = Instant::now();
        let run_id = match self.store.begin_run(name, now).await {
            Ok(id) => Some(id),
            Err(e) => {
                error!(collector = name, error = %e, "cannot record the start of the run");
                None
            }
        };
        let job = async {
            match kind {
                JobKind::Inventory(s) => jobs::inventory::run(self, s, cancel).await,
                JobKind::CostExplorer(s) => jobs::cost_explorer::run(self, s, now, cancel).await,
                JobKind::CloudWatch(s) => jobs::cloudwatch::run(self, s, now, cancel).await,
                JobKind::Logs(s) => jobs::logs::run(self, s, now, cancel).await,
                JobKind::Terraform(s) => jobs::terraform::run(self, s, cancel).await,
                JobKind::BillingFiles(s) => jobs::billing_files::run(self, s, cancel).await,
                JobKind::Rules(s) => jobs::rules::run(self, s, now, cancel).await,
            }
        };
        // This run's own calls, even while other jobs call AWS at the same time.
        let (out, calls): (JobOutput, _) = counting_calls(job).await;
        let mut summary = CycleSummary {
            collector: name.to_string(),
            run_id,
            started_at: now,
            duration_secs: clock.elapsed().as_secs_f64(),
            outcome: out.outcome,
            items: out.items,
            api_calls: by_operation(&calls).into_iter().map(|((s, o), n)| (format!("{s}:{o}"), n)).collect(),
            failures: out.failures,
            error: out.error,
            detail: out.detail,
        };
        if summary.error.is_none() && !summary.failures.is_empty() {
            let shown: Vec<String> = summary
                .failures
                .iter()
                .take(5)
                .map(|f| format!("{} {} {}: {}", f.account, f.region.as_deref().unwrap_or("-"), f.source, f.error))
                .collect();
            summary.error = Some(shown.join("; "));
        }
        let ended = Utc::now();
        if let Some(id) = run_id {
            if let Err(e) = self
                .store
                .finish_run(
                    id,
                    ended,
                    summary.outcome,
                    summary.api_call_total(),
                    summary.items,
                    summary.error.as_deref(),
                )
                .await
            {
                error!(collector = name, error = %e, "cannot record the end of the run");
            }
        }
        self.note_run(name, summary.outcome, summary.duration_secs, ended);
        self.refresh_metrics().await;
        // Ready once a collector has brought data (the rules job only evaluates what is stored; it counts
        // when it is the only job).
        let collected = name != jobs::rules::NAME || !self.has_collectors();
        if collected && matches!(summary.outcome, RunOutcome::Success | RunOutcome::Partial) {
            self.state.set_ready();
        }
        match summary.outcome {
            RunOutcome::Failed => {
                warn!(
                    collector = name,
                    error = summary.error.as_deref().unwrap_or(""),
                    duration_secs = summary.duration_secs,
                    "run failed"
                )
            }
            outcome => info!(
                collector = name,
                outcome = outcome.as_str(),
                items = summary.items,
                api_calls = summary.api_call_total(),
                failures = summary.failures.len(),
                duration_secs = summary.duration_secs,
                "run finished"
            ),
        }
        summary
    }

    /// One inventory run now.
    pub async fn inventory_cycle(&self, settings: &InventorySettings, cancel: &CancellationToken) -> CycleSummary {
        self.run_job(&JobKind::Inventory(settings.clone()), Utc::now(), cancel).await
    }

    /// Runs a job on its schedule until `cancel`: first at once (or once `after` turns true), then at each
    /// next scheduled time. `done` is told when the first run has ended.
    async fn schedule_loop(
        self,
        job: ScheduledJob,
        cancel: CancellationToken,
        after: Option<watch::Receiver<bool>>,
        done: Option<watch::Sender<bool>>,
    ) {
        let name = job.kind.name();
        if let Some(mut after) = after {
            info!(collector = name, "first run waits for the first inventory run");
            tokio::select! {
                // An error means the inventory task has ended: go on without it.
                _ = after.wait_for(|ready| *ready) => {}
                _ = cancel.cancelled() => return,
            }
        }
        loop {
            let span = info_span!("collection_cycle", collector = name);
            self.run_job(&job.kind, Utc::now(), &cancel).instrument(span).await;
            if let Some(done) = &done {
                done.send_replace(true);
            }
            if cancel.is_cancelled() {
                return;
            }
            let next = job.schedule.next_after(Utc::now());
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            info!(collector = name, next = %next.to_rfc3339(), "next run scheduled");
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
        info!(%addr, "serving /metrics, /healthz, /readyz and /api/v1/findings");
        // On a database without any resource yet, the jobs that read the inventory (CloudWatch discovery,
        // Logs, rules) would find nothing: their first run waits for the inventory's first run.
        let jobs = self.jobs();
        let inventory_enabled = jobs.iter().any(|j| matches!(j.kind, JobKind::Inventory(_)));
        let empty = match self.store.inventory_counts().await {
            Ok(counts) => counts.is_empty(),
            Err(error) => {
                warn!(%error, "cannot read the inventory counts; assuming an empty inventory");
                true
            }
        };
        let (inventory_done, inventory_ready) = watch::channel(false);
        let mut tasks = Vec::new();
        for job in jobs {
            info!(collector = job.kind.name(), schedule = %job.schedule, "collector enabled");
            let is_inventory = matches!(job.kind, JobKind::Inventory(_));
            let after = (inventory_enabled && empty && job.kind.reads_inventory()).then(|| inventory_ready.clone());
            let done = is_inventory.then(|| inventory_done.clone());
            tasks.push(tokio::spawn(self.clone().schedule_loop(job, shutdown.clone(), after, done)));
        }
        drop(inventory_done);
        if tasks.is_empty() {
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
