//! The CloudWatch job: builds the queries of every discovery and static job for every account and region,
//! runs them in batches of 500 per (period, window) group, and keeps the newest datapoint of each as a
//! series for `/metrics`. Discovery selects resources from the stored inventory by type and tags, so
//! untagged resources are queried too. The series a job scores for anomalies get every point of their window,
//! fed to their detectors by [`super::metric_anomaly`]. A run's series are published encoded ([`PassThrough`]):
//! the bytes every `/metrics` rendering shares.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use collector::aws::cloudwatch::{self, dedup_labels, exposition_name, label_name, MetricQuery};
use collector::aws::{account_id, AwsError};
use collector::ScopeFailure;
use futures::stream::{self, StreamExt};
use rules::finding::FindingKind;
use serde::Serialize;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use futures::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode_registry;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tracing::warn;

use super::metric_anomaly::{AnomalyView, Fed, MetricAnomalies, SeriesSpec};
use super::{Job, JobContext, JobOutput, Published, Registration, Render};
use crate::config::check::{
    collector, item, key, Checker, Seg, Shared, MAX_DELAY_SECS, MAX_PERIOD_SECS, MAX_WINDOW_SECS,
};
use crate::config::schema::{AnomalyEntry, CloudWatchSection};
use crate::config::{Config, Job as Scheduled};
use crate::metrics::{render_findings, Exposition, Rope};
use crate::store::{FindingCount, RunOutcome, StoreError};
use rules::anomaly::metric::detector::DEFAULT_THRESHOLD;

pub const NAME: &str = "cloudwatch";

pub fn register(config: &Config) -> Option<Registration> {
    let j = config.cloudwatch.as_ref()?;
    let job = CloudWatch {
        settings: j.settings.clone(),
        series: PassThrough::default(),
        anomalies: Arc::new(Mutex::new(MetricAnomalies::default())),
        anomaly_view: None,
    };
    Some(Registration::new(j.schedule.clone(), job))
}

pub struct CloudWatch {
    pub settings: CloudWatchSettings,
    /// The newest series (pass-through metrics and resource info), encoded; kept when a run fails.
    series: PassThrough,
    /// The detectors of the scored series (fed in a blocking task).
    anomalies: Arc<Mutex<MetricAnomalies>>,
    /// Their scores and counters after the newest run.
    anomaly_view: Option<Arc<AnomalyView>>,
}

impl CloudWatch {
    async fn published(&self, ctx: &JobContext) -> Result<Published, StoreError> {
        let findings = match self.settings.scores_anomalies() {
            true => Some(ctx.store.finding_counts().await?),
            false => None,
        };
        Ok(Arc::new(CloudWatchView { series: self.series.clone(), anomaly: self.anomaly_view.clone(), findings }))
    }
}

impl Job for CloudWatch {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads_inventory(&self) -> bool {
        !self.settings.discovery.is_empty()
    }

    fn restore<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, Result<Option<Published>, String>> {
        Box::pin(async move { self.published(ctx).await.map(Some).map_err(|e| e.to_string()) })
    }

    fn run<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, JobOutput> {
        Box::pin(async move {
            let out = run(self, ctx).await;
            match self.published(ctx).await {
                Ok(p) => JobOutput { published: Some(p), ..out },
                Err(error) => {
                    tracing::error!(%error, "cannot count findings; /metrics keeps the previous CloudWatch series");
                    out
                }
            }
        })
    }
}

/// What `/metrics` shows of CloudWatch: the pass-through series, the anomaly scores and the open
/// `metric_anomaly` findings.
pub struct CloudWatchView {
    pub series: PassThrough,
    pub anomaly: Option<Arc<AnomalyView>>,
    pub findings: Option<Vec<FindingCount>>,
}

impl Render for CloudWatchView {
    fn render(&self, out: &mut Exposition) {
        // Pass-through series keep their own `aws_` names. The largest families a daemon exports: encoded once
        // when the run published them, and shared by every rendering.
        out.encoded(&self.series.0);
        if let Some(view) = &self.anomaly {
            view.render(out);
        }
        if let Some(counts) = &self.findings {
            render_findings(out, counts, |kind| kind == FindingKind::MetricAnomaly);
        }
    }
}

/// A run's pass-through series as `/metrics` shows them: OpenMetrics gauge families (no `# EOF`), encoded
/// once when the run publishes them, in segments of whole lines. The structured series are not kept: a
/// rendering shares these bytes, and both text formats share their sample lines.
#[derive(Debug, Clone, Default)]
pub struct PassThrough(Rope);

/// The size of a segment of encoded series. Each is allocated once at its full size and never grows, so
/// encoding copies nothing and leaves no larger buffer behind (one contiguous body would grow by doubling).
const SEGMENT_BYTES: usize = 1 << 20;

impl PassThrough {
    pub fn encode(series: Vec<Series>) -> PassThrough {
        PassThrough::encode_in(series, SEGMENT_BYTES)
    }

    fn encode_in(series: Vec<Series>, segment_bytes: usize) -> PassThrough {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Families(series)));
        let mut out = Segments { done: Vec::new(), current: String::new(), segment_bytes };
        // Writing to memory cannot fail.
        let _ = encode_registry(&mut out, &registry);
        out.seal();
        PassThrough(Rope::new(out.done))
    }

    /// Bytes of the encoded families.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The encoded families, as segments of whole lines.
    pub fn segments(&self) -> &[Bytes] {
        self.0.segments()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Encoded text cut into segments of about `segment_bytes`, each ending at the end of a line.
struct Segments {
    done: Vec<Bytes>,
    current: String,
    segment_bytes: usize,
}

impl Segments {
    /// Room for the encoder's writes that cross the segment's size (it writes in pieces of about 4 KiB), so
    /// a segment does not grow for them.
    const SLACK: usize = 8192;

    /// Ends the current segment after its first `end` bytes; the rest begins the next one.
    fn seal_at(&mut self, end: usize) {
        let mut next = String::with_capacity(self.segment_bytes + Self::SLACK);
        next.push_str(&self.current[end..]);
        self.current.truncate(end);
        let full = std::mem::replace(&mut self.current, next);
        if !full.is_empty() {
            self.done.push(Bytes::from(full));
        }
    }

    fn seal(&mut self) {
        self.seal_at(self.current.len());
    }
}

impl std::fmt::Write for Segments {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.current.capacity() == 0 {
            self.current.reserve_exact(self.segment_bytes + Self::SLACK);
        }
        self.current.push_str(s);
        // Full: the segment ends after the last whole line written.
        if self.current.len() >= self.segment_bytes {
            if let Some(i) = s.rfind('\n') {
                self.seal_at(self.current.len() - s.len() + i + 1);
            }
        }
        Ok(())
    }
}

/// The pass-through series as gauge families, grouped by name, written as they are encoded.
#[derive(Debug)]
struct Families(Vec<Series>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut families: BTreeMap<&str, Vec<&Series>> = BTreeMap::new();
        for s in self.0.iter() {
            families.entry(&s.name).or_default().push(s);
        }
        for (name, mut series) in families {
            // One series per label set; the last one written wins, as a gauge set twice.
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
            let mut family = encoder.encode_descriptor(name, &series[0].help, None, MetricType::Gauge)?;
            for (i, s) in series.iter().enumerate() {
                if series.get(i + 1).is_some_and(|next| next.labels == s.labels) {
                    continue;
                }
                ConstGauge::new(s.value).encode(family.encode_family(&s.labels)?)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    pub namespace: String,
    pub resource_type: String,
    pub dimension: String,
    pub metrics: Vec<String>,
    pub statistics: Vec<String>,
    pub period_secs: i32,
    pub length_secs: i64,
    pub delay_secs: i64,
    pub tag_selectors: BTreeMap<String, String>,
    pub export_tags: Vec<String>,
    pub anomaly: Option<AnomalySettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Static {
    pub namespace: String,
    pub dimensions: Vec<(String, String)>,
    pub metrics: Vec<String>,
    pub statistics: Vec<String>,
    pub period_secs: i32,
    pub length_secs: i64,
    pub delay_secs: i64,
    pub anomaly: Option<AnomalySettings>,
}

/// The series of one job that the metric anomaly detector scores.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalySettings {
    /// (metric, statistic) pairs of the job.
    pub series: BTreeSet<(String, String)>,
    /// A series whose newest score is at least this has an open `metric_anomaly` finding.
    pub threshold: f64,
}

impl AnomalySettings {
    fn scores(&self, metric: &str, statistic: &str) -> bool {
        self.series.iter().any(|(m, s)| m == metric && s == statistic)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CloudWatchSettings {
    pub regions: Vec<String>,
    pub discovery: Vec<Discovery>,
    pub statics: Vec<Static>,
    /// Account-regions queried at once.
    pub max_concurrency: usize,
    /// Most series scored for anomalies at once.
    pub max_anomaly_series: usize,
}

/// One exported series: its name, labels and newest value. Names, help texts and label keys and values are
/// shared between the series of a run ([`Interner`]): a run can publish hundreds of thousands of series
/// whose names, keys and most values repeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: Arc<str>,
    pub help: Arc<str>,
    pub labels: Vec<(Arc<str>, Arc<str>)>,
    pub value: f64,
}

/// One shared copy of each string a run's series use.
#[derive(Debug, Default)]
pub struct Interner(HashSet<Arc<str>>);

impl Interner {
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(s) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(s);
        self.0.insert(shared.clone());
        shared
    }

    pub fn labels(&mut self, labels: &[(String, String)]) -> Vec<(Arc<str>, Arc<str>)> {
        labels.iter().map(|(k, v)| (self.get(k), self.get(v))).collect()
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CloudWatchDetail {
    pub queries: u64,
    pub calls: u64,
    pub metrics_requested: u64,
    pub series: u64,
    /// Points fed to the anomaly detectors in this run.
    pub points_scored: u64,
    /// Points that arrived after a newer point had been fed: not scored.
    pub late_points: u64,
    /// Series with a detector after this run.
    pub anomaly_series: u64,
    /// New series left out by `max_anomaly_series`.
    pub anomaly_left_out: u64,
    /// Series whose newest score reaches their threshold (open `metric_anomaly` findings).
    pub anomaly_findings: u64,
    pub findings_opened: u64,
    pub findings_resolved: u64,
}

impl CloudWatchSettings {
    /// Whether any job scores series for anomalies.
    pub fn scores_anomalies(&self) -> bool {
        self.discovery.iter().any(|j| j.anomaly.is_some()) || self.statics.iter().any(|j| j.anomaly.is_some())
    }
}

/// Does the resource carry every selected tag (`*` accepting any value)?
pub fn selected(tags: &BTreeMap<String, String>, selectors: &BTreeMap<String, String>) -> bool {
    selectors.iter().all(|(k, v)| tags.get(k).is_some_and(|t| v == "*" || t == v))
}

struct Target {
    account: usize,
    account_id: String,
    region: String,
    queries: Vec<MetricQuery>,
    /// The scored series among the queries, by query index.
    anomaly: BTreeMap<usize, SeriesSpec>,
}

/// A scored series and the datapoints of its window.
type Window = (SeriesSpec, Vec<(DateTime<Utc>, f64)>);

/// The scored series of a query, when its job scores it and no earlier query of the run is the same series.
#[allow(clippy::too_many_arguments)]
fn anomaly_spec(
    settings: Option<&AnomalySettings>,
    q: &MetricQuery,
    account_id: &str,
    region: &str,
    arn: Option<&str>,
    resource_type: Option<&str>,
    seen: &mut HashSet<String>,
) -> Option<SeriesSpec> {
    let settings = settings.filter(|a| a.scores(&q.metric_name, &q.statistic))?;
    let key = SeriesSpec::key_of(arn, account_id, region, &q.dimensions, &q.namespace, &q.metric_name, &q.statistic);
    if !seen.insert(key.clone()) {
        return None;
    }
    Some(SeriesSpec {
        key,
        namespace: q.namespace.clone(),
        metric: q.metric_name.clone(),
        statistic: q.statistic.clone(),
        account_id: account_id.to_string(),
        region: region.to_string(),
        arn: arn.map(str::to_string),
        resource_type: resource_type.map(str::to_string),
        dimensions: q.dimensions.clone(),
        labels: base_labels(account_id, region, q),
        period_secs: q.period_secs as i64,
        length_secs: q.length_secs,
        threshold: settings.threshold,
    })
}

/// A query's series labels: account, region, its dimensions, and its extra labels (selected tags). Names
/// that collide once snake-cased keep their first label (the configuration rejects the collisions it can
/// see; dimensions are in the order of their names).
fn base_labels(account_id: &str, region: &str, q: &MetricQuery) -> Vec<(String, String)> {
    let mut labels = vec![("account".to_string(), account_id.to_string()), ("region".to_string(), region.to_string())];
    labels.extend(q.dimensions.iter().map(|(k, v)| (label_name("dimension_", k), v.clone())));
    labels.extend(q.extra_labels.iter().cloned());
    dedup_labels(&mut labels);
    labels
}

async fn run(job: &mut CloudWatch, ctx: &JobContext) -> JobOutput {
    let settings = job.settings.clone();
    let s = &settings;
    let now = ctx.now;
    let mut failures = Vec::new();
    let mut info = Vec::new();
    let known: BTreeMap<String, String> = match ctx.store.accounts().await {
        Ok(a) => a.into_iter().collect(),
        Err(e) => return JobOutput::failed(e.to_string()),
    };
    let mut targets = Vec::new();
    let mut intern = Interner::default();
    // Every scored series of the run, failed scopes included: the others are dropped.
    let mut live = HashSet::new();
    for (ai, account) in ctx.aws.accounts.iter().enumerate() {
        let id = match known.get(&account.spec.name) {
            Some(id) => id.clone(),
            None => match account_id(&ctx.aws, account).await {
                Ok(id) => id,
                Err(error) => {
                    failures.push(ScopeFailure {
                        account: account.spec.name.clone(),
                        account_id: None,
                        region: None,
                        source: "sts:GetCallerIdentity".into(),
                        error: error.message,
                    });
                    continue;
                }
            },
        };
        for region in &s.regions {
            let mut queries = Vec::new();
            let mut anomaly = BTreeMap::new();
            for job in &s.discovery {
                let resources = match ctx.store.live_resources(&id, region, &job.resource_type).await {
                    Ok(r) => r,
                    Err(e) => return JobOutput::failed(e.to_string()),
                };
                for r in resources.iter().filter(|r| selected(&r.tags, &job.tag_selectors)) {
                    let mut tags: Vec<(String, String)> = job
                        .export_tags
                        .iter()
                        .map(|k| (label_name("tag_", k), r.tags.get(k).cloned().unwrap_or_default()))
                        .collect();
                    dedup_labels(&mut tags);
                    let mut labels = vec![
                        ("arn".to_string(), r.arn.clone()),
                        ("account".to_string(), id.clone()),
                        ("region".to_string(), region.clone()),
                        ("resource_type".to_string(), job.resource_type.clone()),
                    ];
                    labels.extend(tags.iter().cloned());
                    info.push(Series {
                        name: intern.get("aws_resource_info"),
                        help: intern.get("Resources selected by CloudWatch discovery jobs, with their exported tags"),
                        labels: intern.labels(&labels),
                        value: 1.0,
                    });
                    for m in &job.metrics {
                        for stat in &job.statistics {
                            let mut q = MetricQuery {
                                namespace: job.namespace.clone(),
                                metric_name: m.clone(),
                                dimensions: vec![(job.dimension.clone(), r.id.clone())],
                                statistic: stat.clone(),
                                period_secs: job.period_secs,
                                length_secs: job.length_secs,
                                delay_secs: job.delay_secs,
                                extra_labels: tags.clone(),
                                all_points: false,
                            };
                            let (arn, rt) = (Some(r.arn.as_str()), Some(job.resource_type.as_str()));
                            if let Some(spec) = anomaly_spec(job.anomaly.as_ref(), &q, &id, region, arn, rt, &mut live)
                            {
                                q.all_points = true;
                                anomaly.insert(queries.len(), spec);
                            }
                            queries.push(q);
                        }
                    }
                }
            }
            for job in &s.statics {
                for m in &job.metrics {
                    for stat in &job.statistics {
                        let mut q = MetricQuery {
                            namespace: job.namespace.clone(),
                            metric_name: m.clone(),
                            dimensions: job.dimensions.clone(),
                            statistic: stat.clone(),
                            period_secs: job.period_secs,
                            length_secs: job.length_secs,
                            delay_secs: job.delay_secs,
                            extra_labels: vec![],
                            all_points: false,
                        };
                        if let Some(spec) = anomaly_spec(job.anomaly.as_ref(), &q, &id, region, None, None, &mut live) {
                            q.all_points = true;
                            anomaly.insert(queries.len(), spec);
                        }
                        queries.push(q);
                    }
                }
            }
            if !queries.is_empty() {
                targets.push(Target { account: ai, account_id: id.clone(), region: region.clone(), queries, anomaly });
            }
        }
    }

    let mut detail =
        CloudWatchDetail { queries: targets.iter().map(|t| t.queries.len() as u64).sum(), ..Default::default() };
    let mut units: Vec<futures::future::BoxFuture<'_, (usize, Result<cloudwatch::CloudWatchFetch, AwsError>)>> =
        Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let account = &ctx.aws.accounts[t.account];
        units.push(Box::pin(async move {
            let batches = cloudwatch::plan(&t.queries, now);
            (i, cloudwatch::fetch(&ctx.aws, account, &t.region, &t.queries, &batches).await)
        }));
    }
    let fetches = stream::iter(units).buffer_unordered(s.max_concurrency.max(1)).collect::<Vec<_>>();
    let results = tokio::select! {
        r = fetches => r,
        _ = ctx.cancel.cancelled() => return JobOutput::cancelled(),
    };
    let mut series = Vec::new();
    let mut ok = 0;
    // The windows of the scored series that were fetched, in a stable order.
    let mut windows: Vec<Window> = Vec::new();
    for (i, r) in results {
        let t = &targets[i];
        match r {
            Ok(f) => {
                ok += 1;
                detail.calls += f.calls;
                detail.metrics_requested += f.metrics_requested;
                // A batch whose answer does not fit it: its series are missing, the scope is partial.
                for error in f.failed_batches {
                    failures.push(ScopeFailure {
                        account: ctx.aws.accounts[t.account].spec.name.clone(),
                        account_id: Some(t.account_id.clone()),
                        region: Some(t.region.clone()),
                        source: "cloudwatch:GetMetricData".into(),
                        error: error.to_string(),
                    });
                }
                let mut points: BTreeMap<usize, Vec<(DateTime<Utc>, f64)>> =
                    f.points.into_iter().map(|p| (p.query, p.points)).collect();
                for (q, spec) in &t.anomaly {
                    windows.push((spec.clone(), points.remove(q).unwrap_or_default()));
                }
                for sample in f.samples {
                    let q = &t.queries[sample.query];
                    series.push(Series {
                        name: intern.get(&exposition_name(&q.namespace, &q.metric_name, &q.statistic)),
                        help: intern.get(&format!("CloudWatch {} {} {}", q.namespace, q.metric_name, q.statistic)),
                        labels: intern.labels(&base_labels(&t.account_id, &t.region, q)),
                        value: sample.value,
                    });
                }
            }
            Err(error) => failures.push(ScopeFailure {
                account: ctx.aws.accounts[t.account].spec.name.clone(),
                account_id: Some(t.account_id.clone()),
                region: Some(t.region.clone()),
                source: "cloudwatch:GetMetricData".into(),
                error: error.to_string(),
            }),
        }
    }
    ctx.aws.stats.add_metrics_requested(detail.metrics_requested);
    detail.series = series.len() as u64;
    let mut outcome = if failures.is_empty() {
        RunOutcome::Success
    } else if ok == 0 && !targets.is_empty() {
        RunOutcome::Failed
    } else {
        RunOutcome::Partial
    };
    let mut error = None;
    if s.scores_anomalies() {
        // Not cancellable: a shutdown waits for the findings write.
        let scored = score_anomalies(ctx, s, job.anomalies.clone(), live, windows, &failures, &mut detail).await;
        match scored {
            Ok(view) => job.anomaly_view = view.map(Arc::new).or(job.anomaly_view.take()),
            Err(e) => {
                warn!(error = %e, "cannot record metric anomaly findings");
                error = Some(format!("cannot record metric anomaly findings: {e}"));
                if outcome == RunOutcome::Success {
                    outcome = RunOutcome::Partial;
                }
            }
        }
    }
    if outcome != RunOutcome::Failed {
        series.extend(info);
        // Encoding hundreds of thousands of series takes a while: off the runtime's threads.
        let encode = move || {
            let encoded = PassThrough::encode(series);
            // The series freed here were this thread's (the encoder's buffers) or a runtime thread's.
            crate::memory::collect();
            encoded
        };
        match tokio::task::spawn_blocking(encode).await {
            Ok(encoded) => job.series = encoded,
            Err(e) => match e.try_into_panic() {
                // A panic is the run's (the runtime counts it as a failed run).
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => return JobOutput::cancelled(),
            },
        }
    }
    let mut out = JobOutput::new(outcome, detail.series).with_detail(detail);
    out.failures = failures;
    out.error = error;
    out
}

/// Feeds the fetched windows to the detectors, drops the series no longer queried, and records the
/// `metric_anomaly` findings of the scopes that were read. Open findings in a scope whose fetch failed are
/// left as they are; when an account could not be reached at all, no series is dropped and no finding
/// resolved.
async fn score_anomalies(
    ctx: &JobContext,
    s: &CloudWatchSettings,
    state: Arc<Mutex<MetricAnomalies>>,
    live: HashSet<String>,
    windows: Vec<Window>,
    failures: &[ScopeFailure],
    detail: &mut CloudWatchDetail,
) -> Result<Option<AnomalyView>, StoreError> {
    let now = ctx.now;
    let account_unreached = failures.iter().any(|f| f.account_id.is_none() || f.region.is_none());
    let failed: Vec<(String, String)> =
        failures.iter().filter_map(|f| Some((f.account_id.clone()?, f.region.clone()?))).collect();
    let max = s.max_anomaly_series;
    let decided_failed = failed.clone();
    let work = move || {
        let mut a = state.lock().unwrap_or_else(|p| p.into_inner());
        a.begin_run();
        if !account_unreached {
            a.retain(&live);
        }
        let mut fed = Fed::default();
        for (spec, points) in windows {
            let f = a.feed(spec, &points, max);
            fed.scored += f.scored;
            fed.late += f.late;
        }
        let findings =
            a.findings(|spec| !decided_failed.iter().any(|(acc, reg)| *acc == spec.account_id && *reg == spec.region));
        (fed, findings, a.view())
    };
    let (fed, findings, view) = match tokio::task::spawn_blocking(work).await {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "metric anomaly scoring failed");
            return Ok(None);
        }
    };
    detail.points_scored = fed.scored;
    detail.late_points = fed.late;
    detail.anomaly_series = view.series;
    detail.anomaly_left_out = view.left_out;
    if view.left_out > 0 {
        warn!(left_out = view.left_out, max_anomaly_series = max, "series beyond max_anomaly_series are not scored");
    }
    let kinds: &[FindingKind] = if account_unreached { &[] } else { &[FindingKind::MetricAnomaly] };
    let w = ctx.store.record_findings_except(kinds, &failed, &findings, now).await?;
    detail.anomaly_findings = findings.len() as u64;
    detail.findings_opened = w.opened;
    detail.findings_resolved = w.resolved;
    Ok(Some(view))
}

/// Checks `[collectors.cloudwatch]`: its settings when it is enabled and valid.
pub(crate) fn check(
    cx: &mut Checker<'_>,
    s: &CloudWatchSection,
    shared: &Shared<'_>,
) -> Option<Scheduled<CloudWatchSettings>> {
    let base = collector(NAME);
    let regions = if s.regions.is_empty() { shared.inventory_regions.to_vec() } else { s.regions.clone() };
    if regions.is_empty() {
        cx.error(&key(&base, "regions"), "name at least one region (or configure the inventory's)");
    }
    cx.regions(&base, "regions", &s.regions);
    let mut discovery = Vec::new();
    for (i, j) in s.discovery.iter().enumerate() {
        let job = item(&base, "discovery", i);
        check_metric_job(cx, &job, &j.namespace, &j.metrics, &j.statistics, j.period_secs, j.length_secs, j.delay_secs);
        if !j.resource_type.contains(':') {
            cx.error(
                &key(&job, "resource_type"),
                format!("expected service:type, e.g. ec2:instance, got {:?}", j.resource_type),
            );
        }
        if j.dimension.trim().is_empty() {
            cx.error(&key(&job, "dimension"), "must name the dimension that carries the resource id");
        }
        // Each exported tag is a `tag_<key>` label: two keys must not become one label.
        let mut labels: BTreeMap<String, &str> = BTreeMap::new();
        for (k, tag) in j.export_tags.iter().enumerate() {
            let path = item(&job, "export_tags", k);
            let label = label_name("tag_", tag);
            match labels.get(&label) {
                Some(first) if first == tag => cx.error(&path, format!("tag key {tag:?} is listed twice")),
                Some(first) => cx.error(
                    &path,
                    format!("tag keys {first:?} and {tag:?} both become the label {label}: export one of them"),
                ),
                None => {
                    labels.insert(label, tag);
                }
            }
        }
        let anomaly = j.anomaly.as_ref().map(|a| check_anomaly(cx, &job, a, &j.metrics, &j.statistics));
        discovery.push(Discovery {
            namespace: j.namespace.clone(),
            resource_type: j.resource_type.clone(),
            dimension: j.dimension.clone(),
            metrics: j.metrics.clone(),
            statistics: j.statistics.clone(),
            period_secs: j.period_secs,
            length_secs: j.length_secs.unwrap_or(j.period_secs as i64),
            delay_secs: j.delay_secs,
            tag_selectors: j.tag_selectors.clone(),
            export_tags: j.export_tags.clone(),
            anomaly,
        });
    }
    let mut statics = Vec::new();
    for (i, j) in s.static_jobs.iter().enumerate() {
        let job = item(&base, "static", i);
        check_metric_job(cx, &job, &j.namespace, &j.metrics, &j.statistics, j.period_secs, j.length_secs, j.delay_secs);
        // Each dimension is a `dimension_<name>` label: two names must not become one label.
        let mut labels: BTreeMap<String, &str> = BTreeMap::new();
        for name in j.dimensions.keys() {
            let label = label_name("dimension_", name);
            match labels.get(&label) {
                Some(first) => cx.error(
                    &key(&job, "dimensions"),
                    format!("dimensions {first:?} and {name:?} both become the label {label}"),
                ),
                None => {
                    labels.insert(label, name);
                }
            }
        }
        let anomaly = j.anomaly.as_ref().map(|a| check_anomaly(cx, &job, a, &j.metrics, &j.statistics));
        statics.push(Static {
            namespace: j.namespace.clone(),
            dimensions: j.dimensions.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            metrics: j.metrics.clone(),
            statistics: j.statistics.clone(),
            period_secs: j.period_secs,
            length_secs: j.length_secs.unwrap_or(j.period_secs as i64),
            delay_secs: j.delay_secs,
            anomaly,
        });
    }
    if s.max_anomaly_series == 0 {
        cx.error(&key(&base, "max_anomaly_series"), "must be at least 1");
    }
    let schedule = cx.schedule(&base, s.interval_secs, s.cron.as_deref(), 300)?;
    let settings = CloudWatchSettings {
        regions,
        discovery,
        statics,
        max_concurrency: 4,
        max_anomaly_series: s.max_anomaly_series,
    };
    s.enabled.then_some(Scheduled { schedule, settings })
}

/// The statistics GetMetricData accepts that we export: the five basic ones and percentiles.
fn valid_statistic(s: &str) -> bool {
    matches!(s, "Average" | "Sum" | "Minimum" | "Maximum" | "SampleCount")
        || s.strip_prefix('p').is_some_and(|p| p.parse::<f64>().is_ok_and(|v| (0.0..=100.0).contains(&v)))
}

/// Checks what discovery and static jobs share: namespace, metrics, statistics, period, window and delay.
#[allow(clippy::too_many_arguments)]
fn check_metric_job(
    cx: &mut Checker<'_>,
    job: &[Seg],
    namespace: &str,
    metrics: &[String],
    statistics: &[String],
    period_secs: i32,
    length_secs: Option<i64>,
    delay_secs: i64,
) {
    let at = |k| key(job, k);
    if namespace.trim().is_empty() {
        cx.error(&at("namespace"), "must not be empty");
    }
    if metrics.is_empty() {
        cx.error(&at("metrics"), "must name at least one metric");
    }
    if statistics.is_empty() {
        cx.error(&at("statistics"), "must name at least one statistic");
    }
    for s in statistics {
        if !valid_statistic(s) {
            cx.error(
                &at("statistics"),
                format!("unknown statistic {s:?}: use Average, Sum, Minimum, Maximum, SampleCount or pNN"),
            );
        }
    }
    if !(matches!(period_secs, 1 | 5 | 10 | 30) || (period_secs >= 60 && period_secs % 60 == 0)) {
        cx.error(&at("period_secs"), "must be 1, 5, 10, 30 or a multiple of 60");
    }
    cx.at_most(&at("period_secs"), period_secs.into(), MAX_PERIOD_SECS, false);
    if let Some(l) = length_secs {
        if l < period_secs as i64 {
            cx.error(&at("length_secs"), "must be at least the period");
        }
        cx.at_most(&at("length_secs"), l.into(), MAX_WINDOW_SECS, false);
    }
    if delay_secs < 0 {
        cx.error(&at("delay_secs"), "must not be negative");
    }
    cx.at_most(&at("delay_secs"), delay_secs.into(), MAX_DELAY_SECS, false);
}

/// The `anomaly` entry of the job at `job`: its series resolved to (metric, statistic) pairs of the job, and
/// its threshold.
fn check_anomaly(
    cx: &mut Checker<'_>,
    job: &[Seg],
    entry: &AnomalyEntry,
    metrics: &[String],
    statistics: &[String],
) -> AnomalySettings {
    let at = |k| key(&key(job, "anomaly"), k);
    let mut series = BTreeSet::new();
    match &entry.series {
        None => {
            for m in metrics {
                for st in statistics {
                    series.insert((m.clone(), st.clone()));
                }
            }
        }
        Some(list) => {
            if list.is_empty() {
                cx.error(&at("series"), "must name at least one series (leave it out for every series of the job)");
            }
            for (i, entry_item) in list.iter().enumerate() {
                let path = item(&key(job, "anomaly"), "series", i);
                let (metric, stats): (&str, Vec<&String>) = match entry_item.rsplit_once(':') {
                    Some((m, st)) => match statistics.iter().find(|s| s.as_str() == st) {
                        Some(s) => (m, vec![s]),
                        None => {
                            cx.error(&path, format!("statistic {st:?} is not one of the job's statistics"));
                            continue;
                        }
                    },
                    None => (entry_item.as_str(), statistics.iter().collect()),
                };
                if !metrics.iter().any(|m| m == metric) {
                    cx.error(&path, format!("metric {metric:?} is not one of the job's metrics"));
                    continue;
                }
                let before = series.len();
                series.extend(stats.iter().map(|st| (metric.to_string(), st.to_string())));
                if series.len() == before {
                    cx.error(&path, format!("{entry_item:?} is listed twice"));
                }
            }
        }
    }
    let threshold = entry.threshold.unwrap_or(DEFAULT_THRESHOLD);
    if !(threshold > 0.0 && threshold <= 1.0) {
        cx.error(&at("threshold"), "must be greater than 0 and at most 1 (scores are in 0..1)");
    }
    AnomalySettings { series, threshold }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_selectors() {
        let tags: BTreeMap<String, String> = [("team".to_string(), "web".to_string())].into();
        let sel = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(selected(&tags, &sel(&[])));
        assert!(selected(&tags, &sel(&[("team", "web")])));
        assert!(selected(&tags, &sel(&[("team", "*")])));
        assert!(!selected(&tags, &sel(&[("team", "data")])));
        assert!(!selected(&tags, &sel(&[("env", "*")])));
    }

    /// Pass-through series as the job builds them: four families, label values to escape, every kind of
    /// value, and label sets repeated (the last value written wins).
    fn pass_through() -> Vec<Series> {
        let mut intern = Interner::default();
        let values = [0.0, -1.5, 1e300, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.1, 123456789.0, 1e-9, 42.0];
        let names = [
            ("aws_ec2_cpuutilization_average", "CloudWatch AWS/EC2 CPUUtilization Average"),
            ("aws_rds_free_storage_space_minimum", "help with \\ backslash and \"quotes\""),
            ("aws_resource_info", "Resources selected by CloudWatch discovery jobs, with their exported tags"),
            ("aws_a_b", "x"),
        ];
        (0..3000usize)
            .map(|i| {
                let (name, help) = names[(i * 7) % names.len()];
                let team =
                    ["plain", "quo\"te", "back\\slash", "new\nline", "ünïcode", "", "# HELP x y", "\n# EOF"][i % 8];
                let n = if i % 10 == 9 { i - 5 } else { i };
                let labels = [
                    ("account".to_string(), format!("{:012}", n % 17)),
                    ("region".to_string(), ["us-east-1", "eu-west-1", "ap-southeast-2"][i % 3].to_string()),
                    ("dimension_instance_id".to_string(), format!("i-{n:017x}")),
                    ("tag_team".to_string(), team.to_string()),
                ];
                Series {
                    name: intern.get(name),
                    help: intern.get(help),
                    labels: intern.labels(&labels),
                    value: values[i % values.len()],
                }
            })
            .collect()
    }

    /// A body's families in order, each its metadata lines and its sample lines sorted: the registries'
    /// families write their series in no fixed order.
    fn families(body: &str) -> Vec<(Vec<&str>, Vec<&str>)> {
        let mut out: Vec<(Vec<&str>, Vec<&str>)> = Vec::new();
        for line in body.lines() {
            match out.last_mut() {
                Some((_, samples)) if !line.starts_with('#') => samples.push(line),
                Some((meta, samples)) if samples.is_empty() => meta.push(line),
                _ => out.push((vec![line], Vec::new())),
            }
        }
        out.iter_mut().for_each(|(_, samples)| samples.sort_unstable());
        out
    }

    #[test]
    fn published_series_render_as_the_series_encoded_at_each_rendering_did() {
        let findings = Some(vec![FindingCount {
            kind: FindingKind::MetricAnomaly,
            severity: rules::finding::Severity::Warning,
            open: 2,
        }]);
        let render = |view: &dyn Fn(&mut Exposition)| {
            let mut out = Exposition::new();
            crate::metrics::render_self(&mut out, &[], &BTreeMap::new(), 12);
            view(&mut out);
            out.finish()
        };
        // As every rendering encoded the series before they were published encoded.
        let each_rendering = render(&|out| {
            out.unprefixed().register_collector(Box::new(Families(pass_through())));
            render_findings(out, findings.as_deref().unwrap(), |kind| kind == FindingKind::MetricAnomaly);
        });
        let view = CloudWatchView { series: PassThrough::encode(pass_through()), anomaly: None, findings };
        let published = render(&|out| view.render(out));
        let before = String::from_utf8(each_rendering.openmetrics.to_vec()).unwrap();
        let after = String::from_utf8(published.openmetrics.to_vec()).unwrap();
        // The pass-through families come first, byte for byte; the rest is the same up to the order of series.
        let pass = String::from_utf8(view.series.0.to_vec()).unwrap();
        let pass = pass.as_str();
        assert!(pass.len() > 100_000 && before.starts_with(pass) && after.starts_with(pass));
        assert_eq!(families(&after), families(&before));
        let text = String::from_utf8(published.text.to_vec()).unwrap();
        assert_eq!(text, crate::metrics::to_text_format(&after));
        assert!(text.starts_with(pass), "the sample lines of gauges are the same in both formats");
        assert_eq!(families(&text), families(&crate::metrics::to_text_format(&before)));
        for (gz, plain) in [(&published.openmetrics_gzip, after), (&published.text_gzip, text)] {
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back).unwrap();
            assert_eq!(back, plain.into_bytes());
        }
        // The published bytes are the rendering's, in both formats: shared, not copied.
        let shared: Vec<_> = view.series.segments().iter().map(|s| s.as_ptr_range()).collect();
        let within = |r: &Rope| r.segments().iter().filter(|s| shared.iter().any(|p| p.contains(&s.as_ptr()))).count();
        assert_eq!(within(&published.openmetrics), view.series.segments().len());
        assert!(within(&published.text) >= 1);
    }

    #[test]
    fn encoded_series_are_cut_into_segments_of_whole_lines_only() {
        let whole = PassThrough::encode(pass_through());
        assert_eq!(whole.segments().len(), 1, "the test series fit one segment");
        let cut = PassThrough::encode_in(pass_through(), 4096);
        assert!(cut.segments().len() > 50, "{}", cut.segments().len());
        assert_eq!(cut.0.to_vec(), whole.0.to_vec());
        assert!(cut.segments().iter().all(|s| s.ends_with(b"\n")));
        assert_eq!(PassThrough::encode(Vec::new()).len(), 0);
    }

    #[test]
    fn series_never_carry_a_label_twice() {
        let pairs = |p: &[(&str, &str)]| p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let q = MetricQuery {
            namespace: "AWS/EC2".into(),
            metric_name: "CPUUtilization".into(),
            // As a static job's dimensions come: sorted by name.
            dimensions: pairs(&[("InstanceId", "i-1"), ("instance-id", "i-2"), ("instance_id", "i-3")]),
            statistic: "Average".into(),
            period_secs: 300,
            length_secs: 300,
            delay_secs: 0,
            extra_labels: pairs(&[("tag_team_name", "a"), ("tag_team_name", "b")]),
            all_points: false,
        };
        assert_eq!(
            base_labels("111111111111", "eu-west-1", &q),
            pairs(&[
                ("account", "111111111111"),
                ("region", "eu-west-1"),
                ("dimension_instance_id", "i-1"),
                ("tag_team_name", "a"),
            ])
        );
    }
}
