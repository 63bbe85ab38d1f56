//! `/metrics`: rendered once per collection cycle from a snapshot of what the daemon knows, then served from
//! memory. A scrape never calls AWS and never touches the database.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, NaiveDate, Utc};
use collector::{ApiCallKey, CallOutcome};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::store::{RunOutcome, ScopeCount, Store, StoreError};

/// The content type of what [`render`] produces.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of what [`to_text_format`] produces: the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a collector has done since the daemon started (runs) and ever (last success).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CollectorStatus {
    /// Wall time of the newest finished run, in seconds.
    pub last_duration_secs: Option<f64>,
    /// End of the newest successful run (kept across restarts in the database).
    pub last_success: Option<DateTime<Utc>>,
    /// Runs by outcome since this process started.
    pub runs: BTreeMap<RunOutcome, u64>,
}

/// One `cloudwarden_cost_usd` series: a window's cost of one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostGauge {
    /// `yesterday`, `last_7_days` or `month_to_date`.
    pub window: &'static str,
    /// `unblended` or `amortized`.
    pub cost_type: &'static str,
    /// `service`, `account`, `tag:<key>`, or `total`.
    pub dimension: String,
    /// The service name, account id or tag value; empty for the total.
    pub key: String,
    pub usd: f64,
}

/// Everything `/metrics` shows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub patterns: Vec<crate::store::PatternCount>,
    /// (account, region, name, retention days, stored bytes) per live log group.
    pub log_groups: Vec<(String, String, String, Option<i64>, Option<i64>)>,
    pub log_last_events: BTreeMap<(String, String, String), DateTime<Utc>>,
    pub inventory: Vec<ScopeCount>,
    pub costs: Vec<CostGauge>,
    /// (configured name, account id).
    pub accounts: Vec<(String, String)>,
    pub collectors: BTreeMap<String, CollectorStatus>,
    pub api_calls: BTreeMap<ApiCallKey, u64>,
    /// CloudWatch pass-through series and `aws_resource_info`.
    pub cloudwatch: std::sync::Arc<Vec<crate::jobs::cloudwatch::Series>>,
    /// Metrics requested through GetMetricData since start (the billed unit).
    pub cloudwatch_metrics_requested: u64,
    /// Cost windows of the loaded billing files; `None` when that collector is off.
    pub billing: Option<std::sync::Arc<crate::billing::BillingView>>,
    /// What the billing files loads did since start; `None` when that collector is off.
    pub billing_counters: Option<BillingCounters>,
    /// The newest evaluation's aggregates; `None` before the first evaluation or when rules are off.
    pub rules: Option<std::sync::Arc<RulesAggregates>>,
    /// Open findings by kind and severity; `None` when neither rules nor metric anomalies are on.
    pub findings: Option<Vec<crate::store::FindingCount>>,
    /// Metric anomaly scores and counters; `None` before the first CloudWatch run that scores series.
    pub metric_anomaly: Option<std::sync::Arc<crate::jobs::metric_anomaly::AnomalyView>>,
}

/// What `/metrics` shows of one rules evaluation: its aggregates, without the findings.
#[derive(Debug, Clone)]
pub struct RulesAggregates {
    pub tag_compliance: Vec<rules::tagging::Compliance>,
    pub budgets: Vec<rules::budget::BudgetStatus>,
    pub cost_anomaly: Vec<rules::anomaly::cost::SeriesScore>,
    /// `None` when drift was not evaluated.
    pub drift: Option<rules::engine::DriftSummary>,
    pub cleanup: rules::engine::CleanupSummary,
}

impl RulesAggregates {
    pub fn of(e: rules::engine::Evaluation) -> RulesAggregates {
        RulesAggregates {
            tag_compliance: e.tag_compliance,
            budgets: e.budgets,
            cost_anomaly: e.cost_anomaly,
            drift: e.drift,
            cleanup: e.cleanup,
        }
    }
}

/// What the billing files loads did since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BillingCounters {
    pub rows_read: u64,
    pub rows_skipped: u64,
    pub cost_rows: u64,
    /// Failed sources and files by kind.
    pub failures: BTreeMap<&'static str, u64>,
    /// Files of the newest load by status: loaded, unchanged, failed.
    pub files: Option<[(&'static str, u64); 3]>,
}

/// The labels of a `cloudwarden_cost_usd` or `cloudwarden_billing_cost_usd` series: `scope` (total, service,
/// account, tag), `window`, `cost_type`, then `service`, `account`, or `tag_key` and `tag_value`.
fn cost_labels(c: &CostGauge) -> Vec<(String, String)> {
    let scope = if c.dimension.starts_with("tag:") { "tag" } else { c.dimension.as_str() };
    let mut labels = vec![
        ("scope".to_string(), scope.to_string()),
        ("window".to_string(), c.window.to_string()),
        ("cost_type".to_string(), c.cost_type.to_string()),
    ];
    match c.dimension.as_str() {
        "total" => {}
        "service" => labels.push(("service".into(), c.key.clone())),
        "account" => labels.push(("account".into(), c.key.clone())),
        d => {
            let key = d.strip_prefix("tag:").unwrap_or(d);
            labels.push(("tag_key".into(), key.to_string()));
            labels.push(("tag_value".into(), c.key.clone()));
        }
    }
    labels
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    account: String,
    region: String,
    resource_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CollectorLabels {
    collector: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    collector: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: String,
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabels {
    account: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Renders a snapshot in the OpenMetrics text format.
pub fn render(s: &Snapshot) -> String {
    let mut root = Registry::default();
    // CloudWatch pass-through series keep their own `aws_` names.
    let mut families: BTreeMap<&str, (&str, Family<Vec<(String, String)>, FloatGauge>)> = BTreeMap::new();
    for series in s.cloudwatch.iter() {
        let (_, family) = families.entry(&series.name).or_insert_with(|| (&series.help, Family::default()));
        family.get_or_create(&series.labels).set(series.value);
    }
    for (name, (help, family)) in families {
        root.register(name, help, family);
    }
    let reg = root.sub_registry_with_prefix("cloudwarden");

    let resources = Family::<ScopeLabels, Gauge>::default();
    let untagged = Family::<ScopeLabels, Gauge>::default();
    for c in &s.inventory {
        let l = ScopeLabels {
            account: c.account_id.clone(),
            region: c.region.clone(),
            resource_type: c.resource_type.clone(),
        };
        resources.get_or_create(&l).set(c.total);
        untagged.get_or_create(&l).set(c.untagged);
    }
    reg.register("resources", "Live resources in the inventory", resources);
    reg.register("untagged_resources", "Live resources that carry no tag of their own", untagged);

    let accounts = Family::<AccountLabels, Gauge>::default();
    for (name, id) in &s.accounts {
        accounts.get_or_create(&AccountLabels { account: id.clone(), name: name.clone() }).set(1);
    }
    reg.register("account_info", "Accounts being collected, by id and configured name", accounts);

    let duration = Family::<CollectorLabels, FloatGauge>::default();
    let last_success = Family::<CollectorLabels, FloatGauge>::default();
    let runs = Family::<RunLabels, Counter>::default();
    for (name, st) in &s.collectors {
        let l = CollectorLabels { collector: name.clone() };
        if let Some(d) = st.last_duration_secs {
            duration.get_or_create(&l).set(d);
        }
        if let Some(t) = st.last_success {
            last_success.get_or_create(&l).set(t.timestamp_millis() as f64 / 1000.0);
        }
        // A collector that has run since start shows every outcome, from 0, so a first failure is an
        // increase of an existing series (rates and increase() need the series before the event).
        if !st.runs.is_empty() {
            for outcome in RunOutcome::FINISHED {
                let _ = runs.get_or_create(&RunLabels { collector: name.clone(), outcome: outcome.as_str().into() });
            }
        }
        for (outcome, n) in &st.runs {
            runs.get_or_create(&RunLabels { collector: name.clone(), outcome: outcome.as_str().into() }).inc_by(*n);
        }
    }
    reg.register("collection_duration_seconds", "Wall time of the collector's newest finished run", duration);
    reg.register(
        "collection_last_success_timestamp_seconds",
        "Unix time at which the collector's newest successful run ended",
        last_success,
    );
    reg.register("collection_runs", "Collector runs by outcome since the daemon started", runs);

    let calls = Family::<CallLabels, Counter>::default();
    // Every outcome of an operation that has been called, from 0 (as for runs above).
    for k in &s.api_calls.keys().map(|k| (&k.service, &k.operation)).collect::<BTreeSet<_>>() {
        for outcome in CallOutcome::ALL {
            let _ = calls.get_or_create(&CallLabels {
                service: k.0.clone(),
                operation: k.1.clone(),
                outcome: outcome.as_str().into(),
            });
        }
    }
    for (k, n) in &s.api_calls {
        calls
            .get_or_create(&CallLabels {
                service: k.service.clone(),
                operation: k.operation.clone(),
                outcome: k.outcome.as_str().into(),
            })
            .inc_by(*n);
    }
    reg.register("aws_api_calls", "AWS API call attempts, retries included", calls);

    // Billed requests: Cost Explorer charges each GetCostAndUsage request that is answered.
    let ce_requests: u64 = s
        .api_calls
        .iter()
        .filter(|(k, _)| k.service == "costexplorer" && k.outcome == CallOutcome::Success)
        .map(|(_, n)| n)
        .sum();
    let ce = Counter::<u64>::default();
    ce.inc_by(ce_requests);
    reg.register("costexplorer_requests", "Cost Explorer requests answered (each billed)", ce);
    let cw = Counter::<u64>::default();
    cw.inc_by(s.cloudwatch_metrics_requested);
    reg.register("cloudwatch_metrics_requested", "Metrics requested through GetMetricData (the billed unit)", cw);
    let cost = Family::<Vec<(String, String)>, Counter<f64, AtomicU64>>::default();
    cost.get_or_create(&vec![("service".to_string(), "costexplorer".to_string())])
        .inc_by(ce_requests as f64 * crate::jobs::cost_explorer::REQUEST_PRICE_USD);
    cost.get_or_create(&vec![("service".to_string(), "cloudwatch".to_string())])
        .inc_by(s.cloudwatch_metrics_requested as f64 / 1000.0 * crate::jobs::cloudwatch::PRICE_PER_1000_METRICS_USD);
    reg.register("aws_api_cost_usd", "Estimated charges for cloudwarden's own AWS API calls", cost);

    let costs = Family::<Vec<(String, String)>, FloatGauge>::default();
    for c in &s.costs {
        costs.get_or_create(&cost_labels(c)).set(c.usd);
    }
    reg.register(
        "cost_usd",
        "Cost from Cost Explorer per window (yesterday, last_7_days, month_to_date) and scope (total, service, account, tag)",
        costs,
    );

    if let Some(view) = &s.billing {
        render_billing_view(reg, view);
    }
    if let Some(c) = &s.billing_counters {
        render_billing_counters(reg, c);
    }

    if let Some(r) = &s.rules {
        render_rules(reg, r);
    }
    if let Some(counts) = &s.findings {
        render_findings(reg, counts);
    }
    if let Some(view) = &s.metric_anomaly {
        render_metric_anomaly(reg, view);
    }

    let matches = Family::<Vec<(String, String)>, Counter>::default();
    for p in &s.patterns {
        matches
            .get_or_create(&vec![
                ("account".into(), p.account_id.clone()),
                ("region".into(), p.region.clone()),
                ("log_group".into(), p.log_group.clone()),
                ("pattern".into(), p.pattern_name.clone()),
            ])
            .inc_by(p.matches.max(0) as u64);
    }
    reg.register(
        "log_pattern_matches",
        "Log events matching a configured filter pattern (kept across restarts)",
        matches,
    );
    let stored = Family::<Vec<(String, String)>, Gauge>::default();
    let retention = Family::<Vec<(String, String)>, Gauge>::default();
    let last_event = Family::<Vec<(String, String)>, FloatGauge>::default();
    for (account, region, group, days, bytes) in &s.log_groups {
        let labels = vec![
            ("account".into(), account.clone()),
            ("region".into(), region.clone()),
            ("log_group".into(), group.clone()),
        ];
        stored.get_or_create(&labels).set(bytes.unwrap_or(0));
        // 0 means the group never expires its events.
        retention.get_or_create(&labels).set(days.unwrap_or(0) * 86_400);
        if let Some(t) = s.log_last_events.get(&(account.clone(), region.clone(), group.clone())) {
            last_event.get_or_create(&labels).set(t.timestamp_millis() as f64 / 1000.0);
        }
    }
    reg.register("log_group_stored_bytes", "Bytes a log group stores, as CloudWatch Logs reports", stored);
    reg.register("log_group_retention_seconds", "Retention of a log group in seconds; 0 means never expire", retention);
    reg.register(
        "log_group_last_event_timestamp_seconds",
        "Unix time of the newest event of any stream of the log group",
        last_event,
    );

    let build = Family::<VersionLabels, Gauge>::default();
    build.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
    reg.register("build_info", "Always 1; the version of the running daemon", build);

    let mut out = String::new();
    encode(&mut out, &root).expect("writing to a String cannot fail");
    out
}

/// An OpenMetrics body of [`render`] in the Prometheus text format (0.0.4), for tools and scrapers that do not
/// read OpenMetrics (`promtool check metrics`): a counter's `# HELP` and `# TYPE` name its `_total` series, type
/// `unknown` is `untyped`, and the OpenMetrics-only lines (`# UNIT`, `# EOF`) are left out. Samples are the
/// same in both formats.
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) { "_total" } else { "" };
                let tail = if prefix == "# TYPE " && tail == "unknown" { "untyped" } else { tail };
                out.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn render_billing_view(reg: &mut Registry, view: &crate::billing::BillingView) {
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

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
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

fn render_findings(reg: &mut Registry, counts: &[crate::store::FindingCount]) {
    let family = Family::<Vec<(String, String)>, Gauge>::default();
    for kind in rules::finding::FindingKind::ALL {
        for severity in rules::finding::Severity::ALL {
            let open = counts.iter().find(|c| c.kind == kind && c.severity == severity).map_or(0, |c| c.open);
            family.get_or_create(&labels(&[("kind", kind.as_str()), ("severity", severity.as_str())])).set(open);
        }
    }
    reg.register("findings", "Open findings by kind and severity", family);
}

fn render_metric_anomaly(reg: &mut Registry, v: &crate::jobs::metric_anomaly::AnomalyView) {
    let scores = Family::<Vec<(String, String)>, FloatGauge>::default();
    for (labels, score) in &v.scores {
        scores.get_or_create(labels).set(*score);
    }
    reg.register(
        "metric_anomaly_score",
        "Anomaly score (0..1) of the newest point of a scored CloudWatch series, with its pass-through labels",
        scores,
    );
    let scored = Counter::<u64>::default();
    scored.inc_by(v.points_scored);
    reg.register("metric_anomaly_points_scored", "CloudWatch points fed to the anomaly detectors since start", scored);
    let late = Counter::<u64>::default();
    late.inc_by(v.late_points);
    reg.register(
        "metric_anomaly_late_points",
        "CloudWatch points that arrived after a newer point of their series had been scored (not scored) since start",
        late,
    );
    let series = Gauge::<i64>::default();
    series.set(v.series as i64);
    reg.register("metric_anomaly_series", "CloudWatch series with an anomaly detector in memory", series);
    let left_out = Gauge::<i64>::default();
    left_out.set(v.left_out as i64);
    reg.register(
        "metric_anomaly_left_out_series",
        "CloudWatch series chosen for anomaly scoring but left out by max_anomaly_series in the newest run",
        left_out,
    );
}

fn render_billing_counters(reg: &mut Registry, c: &BillingCounters) {
    let read = Counter::<u64>::default();
    read.inc_by(c.rows_read);
    reg.register("billing_rows_read", "Rows read from billing files since start, skipped rows included", read);
    let skipped = Counter::<u64>::default();
    skipped.inc_by(c.rows_skipped);
    reg.register("billing_rows_skipped", "Malformed billing rows skipped since start (skip_malformed)", skipped);
    let failures = Family::<Vec<(String, String)>, Counter>::default();
    for kind in crate::jobs::billing_files::FAILURE_KINDS {
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

/// Total calls in a snapshot of the API counters that ended with `outcome`, for summaries.
pub fn calls_with(api_calls: &BTreeMap<ApiCallKey, u64>, outcome: CallOutcome) -> u64 {
    api_calls.iter().filter(|(k, _)| k.outcome == outcome).map(|(_, v)| v).sum()
}

/// The exported cost windows a UTC day falls in, relative to `today`: `yesterday`, `last_7_days` (the seven
/// full days before today) and `month_to_date` (today's partial day included).
pub fn windows_of(day: NaiveDate, today: NaiveDate) -> impl Iterator<Item = &'static str> {
    use chrono::{Datelike, Days};
    let month_start = today.with_day(1).unwrap_or(today);
    [
        (day == today - Days::new(1), "yesterday"),
        (day >= today - Days::new(7) && day < today, "last_7_days"),
        (day >= month_start && day <= today, "month_to_date"),
    ]
    .into_iter()
    .filter_map(|(inside, w)| inside.then_some(w))
}

/// Sums the stored daily costs into the exported windows, relative to `now` (UTC days): yesterday, the
/// last seven full days, and the month to date (today's partial day included).
pub async fn cost_windows(store: &Store, now: DateTime<Utc>) -> Result<Vec<CostGauge>, StoreError> {
    use chrono::{Datelike, Days};
    use collector::aws::costexplorer::CostMetric;
    use rust_decimal::prelude::ToPrimitive;
    use rust_decimal::Decimal;

    let today = now.date_naive();
    let month_start = today.with_day(1).unwrap_or(today);
    let week_start = today - Days::new(7);
    let from = month_start.min(week_start);
    let mut out = Vec::new();
    for metric in CostMetric::ALL {
        let days = store.cost_days(metric, from, today + Days::new(1)).await?;
        let mut sums: BTreeMap<(&'static str, String, String), Decimal> = BTreeMap::new();
        for d in &days {
            for w in windows_of(d.day, today) {
                collector::money::add_to(sums.entry((w, d.dimension.clone(), d.key.clone())).or_default(), d.amount)?;
                if d.dimension == "service" {
                    collector::money::add_to(sums.entry((w, "total".into(), String::new())).or_default(), d.amount)?;
                }
            }
        }
        for ((window, dimension, key), amount) in sums {
            out.push(CostGauge {
                window,
                cost_type: metric.as_str(),
                dimension,
                key,
                usd: amount.to_f64().unwrap_or(0.0),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(openmetrics: &str, text: &str) {
        assert_eq!(to_text_format(openmetrics), text);
    }

    #[test]
    fn the_text_format_names_counters_by_their_total_series() {
        check(
            "# HELP cloudwarden_runs Runs since start.\n# TYPE cloudwarden_runs counter\n\
             cloudwarden_runs_total{outcome=\"success\"} 3\n\
             # HELP cloudwarden_ratio A share.\n# TYPE cloudwarden_ratio gauge\n# UNIT cloudwarden_ratio ratio\n\
             cloudwarden_ratio 0.5\n# HELP odd Something.\n# TYPE odd unknown\nodd 1\n# EOF\n",
            "# HELP cloudwarden_runs_total Runs since start.\n# TYPE cloudwarden_runs_total counter\n\
             cloudwarden_runs_total{outcome=\"success\"} 3\n\
             # HELP cloudwarden_ratio A share.\n# TYPE cloudwarden_ratio gauge\n\
             cloudwarden_ratio 0.5\n# HELP odd Something.\n# TYPE odd untyped\nodd 1\n",
        );
        check("# EOF\n", "");
    }

    #[test]
    fn every_outcome_of_a_called_operation_and_of_a_collector_that_ran_starts_at_zero() {
        let mut s = Snapshot::default();
        s.api_calls.insert(
            ApiCallKey { service: "ec2".into(), operation: "DescribeVolumes".into(), outcome: CallOutcome::Success },
            4,
        );
        s.collectors.insert(
            "inventory".into(),
            CollectorStatus { runs: BTreeMap::from([(RunOutcome::Success, 2)]), ..Default::default() },
        );
        // Known from the database only, not run since start: no run series.
        s.collectors.insert("logs".into(), CollectorStatus::default());
        let om = render(&s);
        let calls = "cloudwarden_aws_api_calls_total{service=\"ec2\",operation=\"DescribeVolumes\",outcome=";
        assert!(om.contains(&format!("{calls}\"success\"}} 4\n")), "{om}");
        for outcome in ["throttled", "client_error", "server_error", "transport_error"] {
            assert!(om.contains(&format!("{calls}\"{outcome}\"}} 0\n")), "{outcome}: {om}");
        }
        let runs = "cloudwarden_collection_runs_total{collector=\"inventory\",outcome=";
        assert!(om.contains(&format!("{runs}\"success\"}} 2\n")), "{om}");
        for outcome in ["partial", "failed", "cancelled", "skipped"] {
            assert!(om.contains(&format!("{runs}\"{outcome}\"}} 0\n")), "{outcome}: {om}");
        }
        assert!(!om.contains("collector=\"logs\",outcome="), "{om}");
    }

    #[test]
    fn a_rendered_snapshot_has_help_and_type_for_every_series_in_both_formats() {
        let mut s = Snapshot::default();
        s.log_groups.push(("111111111111".into(), "eu-west-1".into(), "/app".into(), Some(14), Some(2048)));
        s.log_groups.push(("111111111111".into(), "eu-west-1".into(), "/tmp".into(), None, None));
        let om = render(&s);
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("cloudwarden_log_group_retention_seconds{account=\"111111111111\",region=\"eu-west-1\",log_group=\"/app\"} 1209600\n"), "{om}");
        assert!(om.contains("cloudwarden_log_group_retention_seconds{account=\"111111111111\",region=\"eu-west-1\",log_group=\"/tmp\"} 0\n"), "{om}");
        let text = to_text_format(&om);
        // Every series belongs to the family the last # TYPE line named, which has a # HELP line.
        let mut family = String::new();
        let mut helped = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helped.insert(rest.split(' ').next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_string();
                assert!(helped.contains(&family), "no help for {family}");
                if rest.ends_with(" counter") {
                    assert!(family.ends_with("_total"), "{line}");
                }
            } else {
                assert!(!line.starts_with('#'), "{line}");
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, family, "{line}");
            }
        }
        assert!(
            text.contains(
                "# TYPE cloudwarden_costexplorer_requests_total counter\ncloudwarden_costexplorer_requests_total 0\n"
            ),
            "{text}"
        );
    }
}
