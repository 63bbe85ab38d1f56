//! The billing files job: loads FOCUS 1.0 and CUR 2.0 exports from every configured source into the
//! database. Files already loaded as they are are not read again; a changed file replaces its rows in one
//! transaction; a file that fails keeps what was stored from it before.

use collector::billing::{BillingSource, ReadOptions};
use collector::ScopeFailure;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::{error, warn};

use super::{Job, JobContext, JobOutput, Published, Registration, Render};
use crate::billing::{load_billing_until, BillingView, FileStatus, LoadReport};
use crate::config::check::{collector, item, key, Checker, Shared};
use crate::config::schema::BillingFilesSection;
use crate::config::{Config, Job as Scheduled};
use crate::metrics::{cost_labels, Exposition, FloatGauge};
use crate::store::RunOutcome;

pub const NAME: &str = "billing_files";

pub fn register(config: &Config) -> Option<Registration> {
    let j = config.billing_files.as_ref()?;
    let job = BillingFiles { settings: j.settings.clone(), counters: BillingCounters::default(), view: None };
    Some(Registration::new(j.schedule.clone(), job))
}

pub struct BillingFiles {
    pub settings: BillingFilesSettings,
    counters: BillingCounters,
    /// The cost windows, computed again only after a load or when the day changes (they read every billing
    /// row of the month).
    view: Option<Arc<BillingView>>,
}

/// What the billing files loads did since the daemon started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BillingCounters {
    pub rows_read: u64,
    pub rows_skipped: u64,
    pub cost_rows: u64,
    /// Failed sources and files by kind.
    pub failures: BTreeMap<&'static str, u64>,
    /// Files of the newest load by status: loaded, unchanged, failed.
    pub files: Option<[(&'static str, u64); 3]>,
}

impl BillingFiles {
    /// The cost windows at `now`: the cached ones unless files were loaded or the day changed. The previous
    /// view when the database cannot be read.
    async fn view(&mut self, ctx: &JobContext, now: DateTime<Utc>, loaded: bool) -> Option<Arc<BillingView>> {
        if let Some(view) = &self.view {
            if !loaded && view.today == Some(now.date_naive()) {
                return Some(view.clone());
            }
        }
        let s = &self.settings;
        match crate::billing::billing_view(&ctx.store, now, &s.tag_keys, s.resource_costs).await {
            Ok(view) => {
                if view.resources_left_out > 0 {
                    warn!(
                        left_out = view.resources_left_out,
                        "resources beyond max_resource_series get no cloudwarden_resource_cost_usd series"
                    );
                }
                self.view = Some(Arc::new(view));
            }
            Err(error) => error!(%error, "cannot read billing costs; keeping the previous billing series"),
        }
        self.view.clone()
    }

    fn published(&self) -> Published {
        Arc::new(BillingPublished { view: self.view.clone(), counters: self.counters.clone() })
    }
}

impl Job for BillingFiles {
    fn name(&self) -> &'static str {
        NAME
    }

    fn restore<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, Result<Option<Published>, String>> {
        Box::pin(async move {
            self.view(ctx, ctx.now, true).await;
            Ok(Some(self.published()))
        })
    }

    fn run<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, JobOutput> {
        Box::pin(async move {
            let (out, failure_kinds) = run(ctx, &self.settings).await;
            let loaded = match out.detail.get::<BillingFilesDetail>() {
                Some(detail) => {
                    let c = &mut self.counters;
                    c.rows_read += detail.rows_read;
                    c.rows_skipped += detail.rows_skipped;
                    c.cost_rows += detail.cost_rows;
                    c.files = Some([
                        ("loaded", detail.files_loaded),
                        ("unchanged", detail.files_unchanged),
                        ("failed", detail.files_failed),
                    ]);
                    detail.files_loaded > 0
                }
                None => false,
            };
            for kind in failure_kinds {
                *self.counters.failures.entry(kind).or_default() += 1;
            }
            self.view(ctx, ctx.clock.now(), loaded).await;
            let published = self.published();
            JobOutput { published: Some(published), ..out }
        })
    }
}

/// What `/metrics` shows of the billing files.
pub struct BillingPublished {
    pub view: Option<Arc<BillingView>>,
    pub counters: BillingCounters,
}

impl Render for BillingPublished {
    fn render(&self, out: &mut Exposition) {
        let reg = out.cloudwarden();
        if let Some(view) = &self.view {
            render_billing_view(reg, view);
        }
        render_billing_counters(reg, &self.counters);
    }
}

/// Every failure kind a load reports (a bounded label set).
pub const FAILURE_KINDS: [&str; 8] =
    ["invalid_source", "no_match", "list", "read", "unknown_schema", "malformed_row", "limit", "store"];

#[derive(Debug, Clone, PartialEq)]
pub struct BillingFilesSettings {
    pub sources: Vec<BillingSource>,
    /// The `[[accounts]]` name whose credentials read S3 sources.
    pub account: String,
    /// The export bucket's region.
    pub region: String,
    pub skip_malformed: bool,
    /// The bounds on one file's work.
    pub limits: collector::billing::Limits,
    /// Tag keys exported as `scope="tag"` cost series.
    pub tag_keys: Vec<String>,
    /// Per-resource cost series for at most this many resources; `None`: off.
    pub resource_costs: Option<usize>,
}

/// What one load did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BillingFilesDetail {
    pub files_loaded: u64,
    pub files_unchanged: u64,
    pub files_failed: u64,
    pub rows_read: u64,
    pub rows_skipped: u64,
    pub cost_rows: u64,
}

impl BillingFilesDetail {
    fn of(report: &LoadReport) -> BillingFilesDetail {
        BillingFilesDetail {
            files_loaded: report.loaded() as u64,
            files_unchanged: report.unchanged() as u64,
            files_failed: report.failed() as u64,
            rows_read: report.rows_read(),
            rows_skipped: report.rows_skipped(),
            cost_rows: report.cost_rows(),
        }
    }
}

/// The failures of a load, one per source not listed and per file not loaded, with their kind.
fn failures(account: &str, report: &LoadReport) -> Vec<(&'static str, ScopeFailure)> {
    let failure = |source: &str, error: &str| ScopeFailure {
        account: account.to_string(),
        account_id: None,
        region: None,
        source: source.to_string(),
        error: error.to_string(),
    };
    let mut out: Vec<_> = report.source_failures.iter().map(|f| (f.kind, failure(&f.source, &f.error))).collect();
    for file in &report.files {
        if let FileStatus::Failed { kind, error } = &file.status {
            out.push((*kind, failure(&file.uri, error)));
        }
    }
    out
}

/// One load, and the kinds of its failures.
async fn run(ctx: &JobContext, s: &BillingFilesSettings) -> (JobOutput, Vec<&'static str>) {
    let account = match ctx.account(&s.account) {
        Ok(a) => a,
        Err(e) => return (JobOutput::failed(e), Vec::new()),
    };
    let opts = ReadOptions { skip_malformed: s.skip_malformed, limits: s.limits };
    let report = load_billing_until(&ctx.store, &ctx.aws, account, &s.region, &s.sources, &opts, &ctx.cancel).await;
    let failures = failures(&s.account, &report);
    let detail = BillingFilesDetail::of(&report);
    let kinds = failures.iter().map(|(kind, _)| *kind).collect();
    let outcome = if report.cancelled {
        RunOutcome::Cancelled
    } else if report.is_complete() {
        RunOutcome::Success
    } else if report.loaded() + report.unchanged() == 0 {
        RunOutcome::Failed
    } else {
        RunOutcome::Partial
    };
    let error = report.cancelled.then(|| "cancelled by shutdown".to_string());
    let mut out = JobOutput::new(outcome, detail.rows_read).with_detail(detail);
    out.failures = failures.into_iter().map(|(_, f)| f).collect();
    out.error = error;
    (out, kinds)
}

fn render_billing_view(reg: &mut Registry, view: &BillingView) {
    let costs = Family::<Vec<(String, String)>, FloatGauge>::default();
    for c in &view.costs {
        costs.get_or_create(&cost_labels(c)).set(c.usd);
    }
    reg.register(
        "billing_cost_usd",
        "Cost from the loaded FOCUS/CUR billing files per window (yesterday, last_7_days, month_to_date), scope \
         (total, service, account, tag) and cost type (billed, effective, list); USD rows only",
        costs,
    );
    let newest = FloatGauge::default();
    if let Some(day) = view.newest_day {
        newest.set(day.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()).unwrap_or(0) as f64);
        reg.register(
            "billing_newest_day_timestamp_seconds",
            "Unix time of the start of the newest UTC day in the loaded billing files",
            newest,
        );
    }
    if !view.resources.is_empty() || view.resources_left_out > 0 {
        let resources = Family::<Vec<(String, String)>, FloatGauge>::default();
        for r in &view.resources {
            resources
                .get_or_create(&vec![
                    ("account".into(), r.account.clone()),
                    ("service".into(), r.service.clone()),
                    ("resource_id".into(), r.resource_id.clone()),
                    ("window".into(), r.window.to_string()),
                    ("cost_type".into(), r.cost_type.to_string()),
                ])
                .set(r.usd);
        }
        reg.register(
            "resource_cost_usd",
            "Cost of one resource from the billing files per window and cost type (opt-in; the most expensive \
             resources up to max_resource_series)",
            resources,
        );
        let left_out = Gauge::<i64>::default();
        left_out.set(view.resources_left_out as i64);
        reg.register(
            "resource_cost_left_out_resources",
            "Resources with billing cost that get no resource_cost_usd series because of max_resource_series",
            left_out,
        );
    }
}

fn render_billing_counters(reg: &mut Registry, c: &BillingCounters) {
    let read = Counter::<u64>::default();
    read.inc_by(c.rows_read);
    reg.register("billing_rows_read", "Rows read from billing files since start, skipped rows included", read);
    let skipped = Counter::<u64>::default();
    skipped.inc_by(c.rows_skipped);
    reg.register("billing_rows_skipped", "Malformed billing rows skipped since start (skip_malformed)", skipped);
    let failures = Family::<Vec<(String, String)>, Counter>::default();
    for kind in FAILURE_KINDS {
        failures.get_or_create(&vec![("kind".into(), kind.into())]).inc_by(c.failures.get(kind).copied().unwrap_or(0));
    }
    reg.register("billing_failures", "Billing sources not listed and files not loaded since start, by kind", failures);
    if let Some(files) = &c.files {
        let by_status = Family::<Vec<(String, String)>, Gauge>::default();
        for (status, n) in files {
            by_status.get_or_create(&vec![("status".into(), status.to_string())]).set(*n as i64);
        }
        reg.register(
            "billing_files",
            "Files of the newest billing load by status: loaded, unchanged, failed",
            by_status,
        );
    }
}

/// Checks `[collectors.billing_files]`: its settings when it is enabled and valid.
pub(crate) fn check(
    cx: &mut Checker<'_>,
    s: &BillingFilesSection,
    shared: &Shared<'_>,
) -> Option<Scheduled<BillingFilesSettings>> {
    let base = collector(NAME);
    let empty = "must name at least one file, directory, glob or s3:// location";
    let sources = cx.sources(&base, "sources", &s.sources, empty, BillingSource::parse);
    let account = cx.account(&base, s.account.as_ref(), shared);
    if let Some(r) = &s.region {
        cx.region(&key(&base, "region"), r);
    }
    for (i, k) in s.tag_keys.iter().enumerate() {
        if k.trim().is_empty() {
            cx.error(&item(&base, "tag_keys", i), "must not be empty");
        } else if s.tag_keys[..i].contains(k) {
            cx.error(&item(&base, "tag_keys", i), format!("tag key {k:?} is listed twice"));
        }
    }
    if s.resource_costs && s.max_resource_series == 0 {
        cx.error(&key(&base, "max_resource_series"), "must be at least 1 when resource_costs is on");
    }
    let region = s.region.clone().unwrap_or_else(|| shared.home_region.to_string());
    let defaults = collector::billing::Limits::default();
    let mut at_least = |name: &'static str, v: Option<u64>, min: u64, default: u64| {
        let v = v.unwrap_or(default);
        if v < min {
            cx.error(&key(&base, name), format!("must be at least {min}"));
        }
        v
    };
    let limits = collector::billing::Limits {
        max_record_bytes: at_least("max_record_bytes", s.max_record_bytes, 1024, defaults.max_record_bytes),
        max_decompressed_bytes: at_least(
            "max_decompressed_bytes",
            s.max_decompressed_bytes,
            1 << 20,
            defaults.max_decompressed_bytes,
        ),
        max_keys: usize::try_from(at_least("max_keys", s.max_keys.map(|k| k as u64), 1, defaults.max_keys as u64))
            .unwrap_or(usize::MAX),
    };
    let schedule = cx.schedule(&base, s.interval_secs, s.cron.as_deref(), 3600)?;
    let settings = BillingFilesSettings {
        sources,
        account: account?,
        region,
        skip_malformed: s.skip_malformed,
        limits,
        tag_keys: s.tag_keys.clone(),
        resource_costs: s.resource_costs.then_some(s.max_resource_series),
    };
    s.enabled.then_some(Scheduled { schedule, settings })
}
