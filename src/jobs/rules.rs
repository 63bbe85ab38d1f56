//! The rules job: reads the rule files again, builds the engine's inputs from the store (live resources,
//! daily costs, Terraform resources), evaluates them, records the findings with their history, and keeps the
//! evaluation's aggregates for `/metrics`.
//!
//! Daily costs come from the billing files; a day without any billing row is taken from Cost Explorer's
//! daily cost by service (amortized) instead, with no account, resource or tags. Amounts are the billing
//! files' effective cost, in USD rows only. Rows older than the per-resource window lose their resource id
//! and are summed per (day, account, service, tags): budgets and anomaly series stay exact, memory stays
//! bounded.
//!
//! An invalid rule file fails the run: the previous findings and metrics stay as they were.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::rules::engine::{evaluate_with_threads, CostIndex, Inputs};
use ::rules::file::{parse_rule_file, RuleFile, RuleFileError};
use ::rules::finding::FindingKind;
use ::rules::input::{DailyCost, Details, Resource};
use chrono::{Days, NaiveDate};
use collector::aws::costexplorer::CostMetric;
use collector::money;
use futures::future::BoxFuture;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use super::{Job, JobContext, JobOutput, Published, Registration, Render};
use crate::config::check::{item, key, Checker, Seg, Shared};
use crate::config::schema::RulesSection;
use crate::config::{Config, Job as Scheduled};
use crate::metrics::{labels, render_findings, Exposition, FloatGauge};
use crate::store::{FindingCount, RuleResource, RunOutcome, Store, StoreError};
use ::rules::located::Diagnostic;

pub const NAME: &str = "rules";

pub fn register(config: &Config) -> Option<Registration> {
    let j = config.rules.as_ref()?;
    Some(Registration::new(j.schedule.clone(), RulesJob { settings: j.settings.clone(), aggregates: None }))
}

pub struct RulesJob {
    pub settings: RulesSettings,
    /// The newest evaluation's aggregates, kept when a run fails.
    aggregates: Option<Arc<RulesAggregates>>,
}

impl RulesJob {
    async fn published(&self, ctx: &JobContext) -> Result<Published, StoreError> {
        let findings = ctx.store.finding_counts().await?;
        Ok(Arc::new(RulesView { aggregates: self.aggregates.clone(), findings }))
    }
}

impl Job for RulesJob {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads_inventory(&self) -> bool {
        true
    }

    fn collects(&self) -> bool {
        false
    }

    fn restore<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, Result<Option<Published>, String>> {
        Box::pin(async move { self.published(ctx).await.map(Some).map_err(|e| e.to_string()) })
    }

    fn run<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, JobOutput> {
        Box::pin(async move {
            let (out, aggregates) = run(ctx, &self.settings).await;
            if let Some(a) = aggregates {
                self.aggregates = Some(Arc::new(a));
            }
            match self.published(ctx).await {
                Ok(p) => JobOutput { published: Some(p), ..out },
                Err(error) => {
                    tracing::error!(%error, "cannot count findings; /metrics keeps the previous rules series");
                    out
                }
            }
        })
    }
}

/// What `/metrics` shows of one rules evaluation: its aggregates, without the findings.
#[derive(Debug, Clone)]
pub struct RulesAggregates {
    pub tag_compliance: Vec<::rules::tagging::Compliance>,
    pub budgets: Vec<::rules::budget::BudgetStatus>,
    pub cost_anomaly: Vec<::rules::anomaly::cost::SeriesScore>,
    /// `None` when drift was not evaluated.
    pub drift: Option<::rules::engine::DriftSummary>,
    pub cleanup: ::rules::engine::CleanupSummary,
}

impl RulesAggregates {
    pub fn of(e: ::rules::engine::Evaluation) -> RulesAggregates {
        RulesAggregates {
            tag_compliance: e.tag_compliance,
            budgets: e.budgets,
            cost_anomaly: e.cost_anomaly,
            drift: e.drift,
            cleanup: e.cleanup,
        }
    }
}

/// What `/metrics` shows of the rules: the newest evaluation's aggregates and the open findings.
pub struct RulesView {
    pub aggregates: Option<Arc<RulesAggregates>>,
    pub findings: Vec<FindingCount>,
}

impl Render for RulesView {
    fn render(&self, out: &mut Exposition) {
        if let Some(a) = &self.aggregates {
            render_rules(out.cloudwarden(), a);
        }
        render_findings(out, &self.findings, |kind| kind != FindingKind::MetricAnomaly);
    }
}

fn render_rules(reg: &mut Registry, r: &RulesAggregates) {
    use rust_decimal::prelude::ToPrimitive;

    let compliance = Family::<Vec<(String, String)>, FloatGauge>::default();
    for c in &r.tag_compliance {
        if let Some(ratio) = c.ratio() {
            compliance
                .get_or_create(&labels(&[("account", &c.account_id), ("resource_type", &c.resource_type)]))
                .set(ratio);
        }
    }
    reg.register(
        "tag_compliance_ratio",
        "Share of the resources in scope of a tagging rule that comply with every rule, per account and type",
        compliance,
    );

    let used = Family::<Vec<(String, String)>, FloatGauge>::default();
    let forecast = Family::<Vec<(String, String)>, FloatGauge>::default();
    for b in &r.budgets {
        let l = labels(&[("budget", &b.name)]);
        used.get_or_create(&l).set(b.used_ratio);
        forecast.get_or_create(&l).set(b.forecast_ratio);
    }
    reg.register("budget_used_ratio", "Spend of the budget's current period so far, as a share of its amount", used);
    reg.register(
        "budget_forecast_ratio",
        "Forecast spend at the end of the budget's current period, as a share of its amount",
        forecast,
    );

    let scores = Family::<Vec<(String, String)>, FloatGauge>::default();
    for a in &r.cost_anomaly {
        scores.get_or_create(&labels(&[("series_kind", a.series_kind.as_str()), ("key", &a.key)])).set(a.score);
    }
    reg.register(
        "cost_anomaly_score",
        "Anomaly score (0..1) of a cost series: its highest over the days evaluated",
        scores,
    );

    if let Some(d) = &r.drift {
        let drift = Family::<Vec<(String, String)>, Gauge>::default();
        for (kind, n) in &d.counts {
            drift.get_or_create(&labels(&[("kind", kind.name())])).set(*n as i64);
        }
        reg.register("drift_resources", "Drift findings by kind: unmanaged, missing, changed", drift);
        let coverage = Family::<Vec<(String, String)>, FloatGauge>::default();
        for c in &d.coverage {
            if let Some(ratio) = c.ratio() {
                coverage
                    .get_or_create(&labels(&[("account", &c.account_id), ("resource_type", &c.resource_type)]))
                    .set(ratio);
            }
        }
        reg.register(
            "iac_coverage_ratio",
            "Share of the live resources Terraform can manage that are in a loaded state, per account and type",
            coverage,
        );
    }

    let candidates = Family::<Vec<(String, String)>, Gauge>::default();
    let savings = Family::<Vec<(String, String)>, FloatGauge>::default();
    for c in &r.cleanup.by_rule {
        let l = labels(&[("rule", c.rule.name())]);
        candidates.get_or_create(&l).set(c.candidates as i64);
        savings.get_or_create(&l).set(c.monthly_usd.to_f64().unwrap_or(0.0));
    }
    reg.register("cleanup_candidates", "Resources a cleanup rule selects", candidates);
    reg.register(
        "cleanup_potential_savings_usd",
        "Estimated monthly saving of deleting the candidates of a cleanup rule, in USD",
        savings,
    );
}

/// Longest cost history read, in days.
const MAX_HISTORY_DAYS: u64 = 800;

/// Where rule files are: one `[rules] files` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSource {
    /// The entry as written in the configuration.
    pub written: String,
    /// The path or glob, relative ones resolved against the configuration file's directory.
    pub resolved: String,
}

impl RuleSource {
    fn is_glob(&self) -> bool {
        self.written.contains(['*', '?', '['])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesSettings {
    pub sources: Vec<RuleSource>,
    /// Threads the per-resource rule families are spread over.
    pub threads: usize,
    /// Tag keys the rules do not see: the cleanup mark tag, which cloudwarden itself sets (a resource marked
    /// because it is untagged must not count as tagged by its mark).
    pub ignored_tags: Vec<String>,
}

/// Something wrong with the rule files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesProblem {
    /// A `[rules] files` entry (by index) that is not a valid glob or matches no file.
    Source { index: usize, message: String },
    /// A rule file that cannot be read or is invalid.
    File(RuleFileError),
}

impl std::fmt::Display for RulesProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RulesProblem::Source { index, message } => write!(f, "rules.files[{index}]: {message}"),
            RulesProblem::File(e) => write!(f, "{e}"),
        }
    }
}

/// The rule set read from the files, and the files, in order.
#[derive(Debug, Clone)]
pub struct LoadedRules {
    pub rules: RuleFile,
    pub files: Vec<String>,
}

/// Reads, validates and merges every rule file the sources name (each file once, in source order, a glob's
/// matches sorted). Blocks on the file system. Returns every problem at once.
pub fn read_rule_files(sources: &[RuleSource]) -> Result<LoadedRules, Vec<RulesProblem>> {
    let mut problems = Vec::new();
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, source) in sources.iter().enumerate() {
        let found: Vec<PathBuf> = if source.is_glob() {
            match glob::glob(&source.resolved) {
                Err(e) => {
                    problems.push(RulesProblem::Source {
                        index,
                        message: format!("invalid glob {:?}: {e}", source.written),
                    });
                    continue;
                }
                Ok(entries) => {
                    let mut files = Vec::new();
                    for entry in entries {
                        match entry {
                            Ok(p) if p.is_dir() => {}
                            Ok(p) => files.push(p),
                            Err(e) => problems.push(RulesProblem::Source {
                                index,
                                message: format!("cannot read {}: {}", e.path().display(), e.error()),
                            }),
                        }
                    }
                    files.sort();
                    if files.is_empty() {
                        problems.push(RulesProblem::Source {
                            index,
                            message: format!("no file matches {:?}", source.written),
                        });
                    }
                    files
                }
            }
        } else {
            vec![PathBuf::from(&source.resolved)]
        };
        for p in found {
            if seen.insert(p.clone()) {
                paths.push(p);
            }
        }
    }
    let mut files = Vec::new();
    let mut parsed = Vec::new();
    for path in &paths {
        let label = path.display().to_string();
        match std::fs::read_to_string(path) {
            Err(e) => problems.push(RulesProblem::File(RuleFileError {
                file: label.clone(),
                line: None,
                path: String::new(),
                message: format!("cannot read: {e}"),
            })),
            Ok(text) => match parse_rule_file(&label, &text) {
                Ok(f) => parsed.push(f),
                Err(errors) => problems.extend(errors.0.into_iter().map(RulesProblem::File)),
            },
        }
        files.push(label);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    match RuleFile::merge(parsed) {
        Ok(rules) => Ok(LoadedRules { rules, files }),
        Err(errors) => Err(errors.0.into_iter().map(RulesProblem::File).collect()),
    }
}

/// What one evaluation did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RulesDetail {
    pub rule_files: u64,
    pub resources: u64,
    pub cost_rows: u64,
    /// Days of cost taken from billing files and from Cost Explorer.
    pub billing_days: u64,
    pub cost_explorer_days: u64,
    pub tf_resources: u64,
    /// Findings produced, and what recording them changed.
    pub findings: u64,
    pub opened: u64,
    pub refreshed: u64,
    pub resolved: u64,
}

/// The inventory's resource as the engine reads it.
pub fn rule_resource(r: RuleResource) -> Resource {
    let RuleResource { resource: r, first_seen } = r;
    let details = match r.details {
        collector::Details::Instance { instance_type, stopped_at, .. } => {
            Details::Instance { instance_type, stopped_at }
        }
        collector::Details::Volume { size_gib, volume_type, attached_instance_ids } => {
            Details::Volume { size_gib, volume_type, attached: !attached_instance_ids.is_empty() }
        }
        collector::Details::Snapshot { volume_id, size_gib } => Details::Snapshot { volume_id, size_gib },
        collector::Details::ElasticIp { public_ip, association_id, instance_id } => {
            Details::ElasticIp { public_ip, associated: association_id.is_some() || instance_id.is_some() }
        }
        collector::Details::LogGroup { retention_days, stored_bytes } => {
            Details::LogGroup { retention_days, stored_bytes }
        }
        collector::Details::Tagged | collector::Details::Bucket | collector::Details::DbInstance { .. } => {
            Details::Other
        }
    };
    Resource {
        arn: r.arn,
        resource_type: r.resource_type,
        account_id: r.account_id,
        region: r.region,
        id: r.id,
        name: r.name,
        state: r.state,
        tags: r.tags,
        created_at: r.created_at,
        first_seen,
        details,
    }
}

/// `r` without the tags in `ignored`.
pub fn without_tags(mut r: Resource, ignored: &[String]) -> Resource {
    for k in ignored {
        r.tags.remove(k);
    }
    r
}

/// How many days of cost the rule set looks at (`history`), and for how many of the newest the resource
/// ids are kept (`resource_days`), counted back from today.
pub fn cost_days_needed(rules: &RuleFile, today: NaiveDate) -> (u64, u64) {
    let mut history = CostIndex::WINDOW_DAYS as u64 + 1;
    let mut resource_days = history;
    for b in &rules.budgets {
        let (start, _) = b.period.bounds(today);
        let since_start = (today - start).num_days().max(0) as u64;
        history = history.max(since_start + 1).max(u64::from(b.history_weeks.max(1)) * 7 + 1);
    }
    if let Some(a) = &rules.cost_anomaly {
        let baseline = u64::from(a.baseline_weeks) * 7 + u64::from(a.lookback_days) + 1;
        history = history.max(baseline + u64::from(a.min_history_days));
        resource_days = resource_days.max(baseline);
    }
    (history.min(MAX_HISTORY_DAYS), resource_days.min(MAX_HISTORY_DAYS))
}

/// The engine's daily costs for `history` days up to today (see the module documentation); also the days
/// taken from billing files and from Cost Explorer.
pub async fn daily_costs(
    store: &Store,
    today: NaiveDate,
    history: u64,
    resource_days: u64,
) -> Result<(Vec<DailyCost>, u64, u64), StoreError> {
    let from = today.checked_sub_days(Days::new(history)).unwrap_or(today);
    let keep_ids_from = today.checked_sub_days(Days::new(resource_days)).unwrap_or(today);
    let mut recent = Vec::new();
    type Key = (NaiveDate, String, String, BTreeMap<String, String>);
    let mut older: BTreeMap<Key, rust_decimal::Decimal> = BTreeMap::new();
    let mut billing_days = BTreeSet::new();
    let mut overflow = None;
    store
        .for_each_billing_cost(from, today, |c| {
            billing_days.insert(c.day);
            if c.currency != "USD" {
                return;
            }
            if c.day >= keep_ids_from {
                recent.push(DailyCost {
                    day: c.day,
                    account_id: c.sub_account_id,
                    service: c.service_name,
                    resource_id: c.resource_id,
                    tags: c.tags,
                    amount: c.effective_cost,
                });
            } else if let Err(e) = money::add_to(
                older.entry((c.day, c.sub_account_id, c.service_name, c.tags)).or_default(),
                c.effective_cost,
            ) {
                overflow.get_or_insert(e);
            }
        })
        .await?;
    if let Some(e) = overflow {
        return Err(e.into());
    }
    let mut out: Vec<DailyCost> = older
        .into_iter()
        .map(|((day, account_id, service, tags), amount)| DailyCost {
            day,
            account_id,
            service,
            resource_id: None,
            tags,
            amount,
        })
        .collect();
    out.append(&mut recent);
    let mut ce_days = BTreeSet::new();
    let end = today.checked_add_days(Days::new(1)).unwrap_or(today);
    for d in store.cost_days(CostMetric::Amortized, from, end).await? {
        if d.dimension != "service" || billing_days.contains(&d.day) {
            continue;
        }
        ce_days.insert(d.day);
        out.push(DailyCost {
            day: d.day,
            account_id: String::new(),
            service: d.key,
            resource_id: None,
            tags: BTreeMap::new(),
            amount: d.amount,
        });
    }
    Ok((out, billing_days.len() as u64, ce_days.len() as u64))
}

/// The kinds an evaluation decides on: its open findings of these kinds that it does not produce again are
/// resolved. Drift is decided only when it is disabled or a state is loaded. `MetricAnomaly` is never among
/// them: the CloudWatch job records those.
pub fn evaluated_kinds(rules: &RuleFile, tf_loaded: bool) -> Vec<FindingKind> {
    let mut kinds = vec![FindingKind::Tagging, FindingKind::Budget, FindingKind::CostAnomaly, FindingKind::Cleanup];
    if !rules.drift.enabled || tf_loaded {
        kinds.push(FindingKind::Drift);
    }
    kinds
}

/// One evaluation, and its aggregates when it succeeded.
async fn run(ctx: &JobContext, s: &RulesSettings) -> (JobOutput, Option<RulesAggregates>) {
    match evaluate(ctx, s).await {
        Ok((out, aggregates)) => (out, Some(aggregates)),
        Err(out) => (out, None),
    }
}

/// Re-raises a panic of a blocking task in this task, so the runtime records it as the job's panic.
#[allow(clippy::result_large_err)]
fn join<T>(r: Result<T, tokio::task::JoinError>, what: &str) -> Result<T, JobOutput> {
    match r {
        Ok(v) => Ok(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(JobOutput::failed(format!("{what} failed: {e}"))),
    }
}

#[allow(clippy::result_large_err)]
async fn evaluate(ctx: &JobContext, s: &RulesSettings) -> Result<(JobOutput, RulesAggregates), JobOutput> {
    let now = ctx.now;
    if ctx.cancel.is_cancelled() {
        return Err(JobOutput::cancelled());
    }
    let sources = s.sources.clone();
    let loaded =
        match join(tokio::task::spawn_blocking(move || read_rule_files(&sources)).await, "reading the rule files")? {
            Ok(l) => l,
            Err(problems) => {
                let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                return Err(JobOutput::failed(format!(
                    "invalid rule files, previous findings kept: {}",
                    shown.join("; ")
                )));
            }
        };
    let today = now.date_naive();
    let (history, resource_days) = cost_days_needed(&loaded.rules, today);
    let inputs = async {
        let resources: Vec<Resource> = ctx
            .store
            .rule_resources()
            .await?
            .into_iter()
            .map(|r| without_tags(rule_resource(r), &s.ignored_tags))
            .collect();
        let costs = daily_costs(&ctx.store, today, history, resource_days).await?;
        let tf = ctx.store.rule_tf_resources().await?;
        Ok::<_, StoreError>((resources, costs, tf))
    };
    let (resources, (costs, billing_days, ce_days), tf) = match inputs.await {
        Ok(v) => v,
        Err(e) => return Err(JobOutput::failed(format!("cannot read the rules' inputs: {e}"))),
    };
    let tf_succeeded = match ctx.store.last_successes().await {
        Ok(s) => s.iter().any(|(name, _, _)| name == super::terraform::NAME),
        Err(e) => return Err(JobOutput::failed(format!("cannot read the rules' inputs: {e}"))),
    };
    let tf_loaded = !tf.is_empty() || tf_succeeded;
    let mut detail = RulesDetail {
        rule_files: loaded.files.len() as u64,
        resources: resources.len() as u64,
        cost_rows: costs.len() as u64,
        billing_days,
        cost_explorer_days: ce_days,
        tf_resources: tf.len() as u64,
        ..RulesDetail::default()
    };
    let kinds = evaluated_kinds(&loaded.rules, tf_loaded);
    let threads = s.threads;
    let evaluation = tokio::task::spawn_blocking(move || {
        let inputs = Inputs { now, resources: &resources, costs: &costs, tf_resources: &tf, tf_loaded };
        evaluate_with_threads(&loaded.rules, &inputs, threads)
    })
    .await;
    let evaluation = match join(evaluation, "the rules evaluation")? {
        Ok(e) => e,
        Err(e) => return Err(JobOutput::failed(format!("the rules evaluation failed, previous findings kept: {e}"))),
    };
    detail.findings = evaluation.findings.len() as u64;
    // Not cancellable: a shutdown waits for this write.
    match ctx.store.record_findings(&kinds, &evaluation.findings, now).await {
        Ok(w) => {
            detail.opened = w.opened;
            detail.refreshed = w.refreshed;
            detail.resolved = w.resolved;
        }
        Err(e) => return Err(JobOutput::failed(format!("cannot record the findings: {e}"))),
    }
    // The day's tag compliance, for the weekly report's week-over-week comparison.
    if let Err(e) = ctx.store.record_compliance(now.date_naive(), &evaluation.tag_compliance).await {
        return Err(JobOutput::failed(format!("cannot record the tag compliance: {e}")));
    }
    Ok((JobOutput::new(RunOutcome::Success, detail.findings).with_detail(detail), RulesAggregates::of(evaluation)))
}

/// Checks `[rules]` and reads the rule files it names: its settings when it is enabled and valid. A rule
/// file's own problems are returned apart, with that file's name and lines.
pub(crate) fn check(
    cx: &mut Checker<'_>,
    r: &RulesSection,
    shared: &Shared<'_>,
    rule_errors: &mut Vec<Diagnostic>,
) -> Option<Scheduled<RulesSettings>> {
    let base = vec![Seg::Key("rules")];
    if r.files.is_empty() {
        cx.error(&key(&base, "files"), "must name at least one rule file or glob");
    }
    let mut sources = Vec::new();
    for (i, f) in r.files.iter().enumerate() {
        if f.trim().is_empty() {
            cx.error(&item(&base, "files", i), "must not be empty");
        }
        let resolved =
            if Path::new(f).is_absolute() { f.clone() } else { shared.base_dir.join(f).display().to_string() };
        sources.push(RuleSource { written: f.clone(), resolved });
    }
    if !(1..=64).contains(&r.threads) {
        cx.error(&key(&base, "threads"), "must be between 1 and 64");
    }
    let schedule = cx.schedule(&base, r.interval_secs, r.cron.as_deref(), 300);
    if !r.enabled {
        return None;
    }
    if !sources.is_empty() && sources.iter().all(|s| !s.written.trim().is_empty()) {
        if let Err(problems) = read_rule_files(&sources) {
            for p in problems {
                match p {
                    RulesProblem::Source { index, message } => cx.error(&item(&base, "files", index), message),
                    RulesProblem::File(e) => rule_errors.push(e),
                }
            }
        }
    }
    schedule.map(|schedule| Scheduled {
        schedule,
        settings: RulesSettings { sources, threads: r.threads, ignored_tags: Vec::new() },
    })
}
