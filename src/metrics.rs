//! `/metrics`: each job renders its own metric families from the value it published, the runtime adds its self
//! metrics, and the result is kept as shared bytes in both text formats, gzip-compressed once per rendering. A
//! scrape never calls AWS and never touches the database: it is a reference count and a write.
//!
//! A body is a [`Rope`]: shared byte segments in order. The sample lines are the same in both formats, so the
//! text format is the OpenMetrics segments with their `# HELP`, `# TYPE`, `# UNIT` and `# EOF` lines written
//! again, its long runs of sample lines slices of the same bytes. A job that publishes many series encodes
//! them once when it publishes them ([`Exposition::encoded`]); every rendering shares those bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::ops::Range;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::body::Bytes;
use chrono::NaiveDate;
use collector::{ApiCallKey, CallOutcome};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::runtime::JobStatus;
use crate::store::RunOutcome;

/// The content type of the OpenMetrics body.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of what [`to_text_format`] produces: the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Labels as name/value pairs, for families whose label set is built at run time.
pub type Labels = Vec<(String, String)>;

/// A gauge holding an `f64`.
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// Labels from static pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// One rendering under way: the `cloudwarden_` families, pass-through families under their own names (in a
/// registry, or already encoded), and the gauge families that more than one job fills (each job sets its own
/// series in them).
pub struct Exposition {
    root: Registry,
    encoded: Vec<Bytes>,
    own: Registry,
    shared: BTreeMap<&'static str, (&'static str, Family<Labels, Gauge>)>,
}

impl Default for Exposition {
    fn default() -> Self {
        Exposition::new()
    }
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition {
            root: Registry::default(),
            encoded: Vec::new(),
            own: Registry::with_prefix("cloudwarden"),
            shared: BTreeMap::new(),
        }
    }

    /// Families named `cloudwarden_<name>`.
    pub fn cloudwarden(&mut self) -> &mut Registry {
        &mut self.own
    }

    /// Families under their own names (the CloudWatch pass-through `aws_*` series).
    pub fn unprefixed(&mut self) -> &mut Registry {
        &mut self.root
    }

    /// Families under their own names, already encoded as OpenMetrics text (segments of whole lines, without
    /// `# EOF`): written after those of [`Exposition::unprefixed`], in the order given, and shared, not copied.
    pub fn encoded(&mut self, families: &Rope) {
        self.encoded.extend(families.clone());
    }

    /// The gauge family `cloudwarden_<name>` that several jobs fill.
    pub fn shared_gauge(&mut self, name: &'static str, help: &'static str) -> &Family<Labels, Gauge> {
        &self.shared.entry(name).or_insert_with(|| (help, Family::default())).1
    }

    /// The finished body in both formats.
    pub fn finish(mut self) -> Rendered {
        for (name, (help, family)) in std::mem::take(&mut self.shared) {
            self.own.register(name, help, family);
        }
        let (mut head, mut tail) = (String::new(), String::new());
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut head, &self.root);
        let _ = encode_registry(&mut tail, &self.own);
        let _ = encode_eof(&mut tail);
        let mut segments = vec![Bytes::from(head)];
        segments.append(&mut self.encoded);
        segments.push(Bytes::from(tail));
        Rendered::of_segments(segments)
    }
}

/// A body as shared byte segments, in order: cloning it, or writing it out, copies none of them.
#[derive(Debug, Clone, Default)]
pub struct Rope {
    segments: Arc<[Bytes]>,
    len: usize,
}

impl Rope {
    /// The body made of `segments` (empty ones left out).
    pub fn new(segments: Vec<Bytes>) -> Rope {
        let segments: Arc<[Bytes]> = segments.into_iter().filter(|s| !s.is_empty()).collect();
        Rope { len: segments.iter().map(Bytes::len).sum(), segments }
    }

    /// Bytes in all.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn segments(&self) -> &[Bytes] {
        &self.segments
    }

    /// A contiguous copy of the body (tests and tools; a scrape writes the segments).
    pub fn to_vec(&self) -> Vec<u8> {
        self.segments.concat()
    }
}

impl From<Bytes> for Rope {
    fn from(body: Bytes) -> Rope {
        Rope::new(vec![body])
    }
}

/// The segments of a [`Rope`], each a shared clone.
pub struct Segments {
    rope: Rope,
    next: usize,
}

impl Iterator for Segments {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let segment = self.rope.segments.get(self.next)?.clone();
        self.next += 1;
        Some(segment)
    }
}

impl IntoIterator for Rope {
    type Item = Bytes;
    type IntoIter = Segments;

    fn into_iter(self) -> Segments {
        Segments { rope: self, next: 0 }
    }
}

/// A rendered `/metrics` body in both formats, each also gzip-compressed, as shared bytes. The two formats
/// share the segments of their sample lines.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub openmetrics: Rope,
    pub openmetrics_gzip: Bytes,
    pub text: Rope,
    pub text_gzip: Bytes,
}

impl Rendered {
    /// The rendering of one contiguous OpenMetrics body.
    pub fn of(openmetrics: String) -> Rendered {
        Rendered::of_segments(vec![Bytes::from(openmetrics)])
    }

    /// The rendering of an OpenMetrics body given as segments of whole lines.
    pub fn of_segments(openmetrics: Vec<Bytes>) -> Rendered {
        let openmetrics = Rope::new(openmetrics);
        let text = Rope::new(text_segments(openmetrics.segments(), SHARED_RUN_MIN));
        Rendered { openmetrics_gzip: gzip(&openmetrics), text_gzip: gzip(&text), openmetrics, text }
    }
}

/// Gzip at the fastest level: a scrape body compresses about tenfold even so, and this runs once per rendering.
fn gzip(body: &Rope) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 8), flate2::Compression::fast());
    for segment in body.segments() {
        // Writing to a Vec cannot fail.
        let _ = enc.write_all(segment);
    }
    Bytes::from(enc.finish().unwrap_or_default())
}

/// Runs of sample lines at least this long are shared between the two formats; shorter ones are copied into
/// the text format's own segments (fewer, larger segments; the copies are small).
const SHARED_RUN_MIN: usize = 16 * 1024;

/// The Prometheus text format of an OpenMetrics body given as segments of whole lines, as segments: the
/// metadata lines written again as [`to_text_format`] writes them, runs of sample lines of at least
/// `shared_min` bytes as slices of the OpenMetrics segments, shorter ones copied.
fn text_segments(openmetrics: &[Bytes], shared_min: usize) -> Vec<Bytes> {
    // Bodies are encoded from Strings; a segment that is not UTF-8 all the same is passed on whole.
    let texts: Vec<Option<&str>> = openmetrics.iter().map(|s| std::str::from_utf8(s).ok()).collect();
    let counters = counter_names(texts.iter().flatten().flat_map(|t| metadata_lines(t).map(|(line, _)| line)));
    let mut out = TextSegments { done: Vec::new(), pending: String::new(), shared_min };
    for (segment, text) in openmetrics.iter().zip(&texts) {
        let Some(text) = text else {
            out.share(segment, 0..segment.len());
            continue;
        };
        let mut samples_from = 0;
        for (line, at) in metadata_lines(text) {
            out.share_or_copy(segment, text, samples_from..at.start);
            if let Some(line) = text_metadata_line(line, &counters) {
                out.pending.push_str(&line);
            }
            samples_from = at.end;
        }
        out.share_or_copy(segment, text, samples_from..text.len());
    }
    out.flush();
    out.done
}

/// The text format's segments as they are made: those done, and the copied bytes of the next one.
struct TextSegments {
    done: Vec<Bytes>,
    pending: String,
    shared_min: usize,
}

impl TextSegments {
    fn share_or_copy(&mut self, segment: &Bytes, text: &str, run: Range<usize>) {
        if run.len() >= self.shared_min {
            self.share(segment, run);
        } else {
            self.pending.push_str(&text[run]);
        }
    }

    fn share(&mut self, segment: &Bytes, run: Range<usize>) {
        self.flush();
        self.done.push(segment.slice(run));
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.done.push(Bytes::from(std::mem::take(&mut self.pending)));
        }
    }
}

/// The lines of `text` that start with `#`, each without its line end (as [`str::lines`] gives it), with the
/// range it takes, line end included.
fn metadata_lines(text: &str) -> impl Iterator<Item = (&str, Range<usize>)> {
    let first = text.starts_with('#').then_some(0);
    first.into_iter().chain(text.match_indices("\n#").map(|(i, _)| i + 1)).map(|start| {
        let end = text[start..].find('\n').map_or(text.len(), |e| start + e + 1);
        let line = &text[start..end];
        let line = line.strip_suffix('\n').unwrap_or(line);
        (line.strip_suffix('\r').unwrap_or(line), start..end)
    })
}

/// The names of the counter families among these lines (`# TYPE <name> counter`).
fn counter_names<'a>(lines: impl Iterator<Item = &'a str>) -> BTreeSet<&'a str> {
    lines.filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect()
}

/// A metadata line of an OpenMetrics body as the text format has it, line end included; `None` for the lines
/// it leaves out (`# UNIT`, `# EOF`).
fn text_metadata_line(line: &str, counters: &BTreeSet<&str>) -> Option<String> {
    if line == "# EOF" || line.starts_with("# UNIT ") {
        return None;
    }
    let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| Some((p, line.strip_prefix(p)?)));
    Some(match meta {
        Some((prefix, rest)) => {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if counters.contains(name) { "_total" } else { "" };
            let tail = if prefix == "# TYPE " && tail == "unknown" { "untyped" } else { tail };
            format!("{prefix}{name}{suffix} {tail}\n")
        }
        None => format!("{line}\n"),
    })
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

/// The labels of a `cloudwarden_cost_usd` or `cloudwarden_billing_cost_usd` series: `scope` (total, service,
/// account, tag), `window`, `cost_type`, then `service`, `account`, or `tag_key` and `tag_value`.
pub fn cost_labels(c: &CostGauge) -> Vec<(String, String)> {
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
struct VersionLabels {
    version: String,
}

/// The price of one answered Cost Explorer request, in USD.
pub const COST_EXPLORER_REQUEST_USD: f64 = 0.01;

/// The price of 1,000 metrics requested through GetMetricData, in USD.
pub const CLOUDWATCH_PER_1000_METRICS_USD: f64 = 0.01;

/// The runtime's own metrics: every job's runs, panics, durations and last success; the AWS calls of all
/// jobs and their estimated cost; the build.
pub fn render_self(
    out: &mut Exposition,
    jobs: &[JobStatus],
    api_calls: &BTreeMap<ApiCallKey, u64>,
    cloudwatch_metrics_requested: u64,
) {
    let reg = out.cloudwarden();
    let duration = Family::<CollectorLabels, FloatGauge>::default();
    let last_success = Family::<CollectorLabels, FloatGauge>::default();
    let runs = Family::<RunLabels, Counter>::default();
    let panics = Family::<CollectorLabels, Counter>::default();
    for st in jobs {
        let l = CollectorLabels { collector: st.name.clone() };
        if let Some(d) = st.last_duration_secs {
            duration.get_or_create(&l).set(d);
        }
        if let Some(t) = st.last_success {
            last_success.get_or_create(&l).set(t.timestamp_millis() as f64 / 1000.0);
        }
        // A job that has run since start shows every outcome, from 0, so a first failure is an increase of an
        // existing series (rates and increase() need the series before the event).
        if !st.runs.is_empty() {
            for outcome in RunOutcome::FINISHED {
                let _ = runs.get_or_create(&RunLabels { collector: st.name.clone(), outcome: outcome.as_str().into() });
            }
        }
        for (outcome, n) in &st.runs {
            runs.get_or_create(&RunLabels { collector: st.name.clone(), outcome: outcome.as_str().into() }).inc_by(*n);
        }
        panics.get_or_create(&l).inc_by(st.panics);
    }
    reg.register("collection_duration_seconds", "Wall time of the collector's newest finished run", duration);
    reg.register(
        "collection_last_success_timestamp_seconds",
        "Unix time at which the collector's newest successful run ended",
        last_success,
    );
    reg.register("collection_runs", "Collector runs by outcome since the daemon started", runs);
    reg.register("job_panics", "Runs of a job that ended in a panic (counted as failed runs) since start", panics);

    let calls = Family::<CallLabels, Counter>::default();
    // Every outcome of an operation that has been called, from 0 (as for runs above).
    for k in &api_calls.keys().map(|k| (&k.service, &k.operation)).collect::<BTreeSet<_>>() {
        for outcome in CallOutcome::ALL {
            let _ = calls.get_or_create(&CallLabels {
                service: k.0.clone(),
                operation: k.1.clone(),
                outcome: outcome.as_str().into(),
            });
        }
    }
    for (k, n) in api_calls {
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
    let ce_requests: u64 = api_calls
        .iter()
        .filter(|(k, _)| k.service == "costexplorer" && k.outcome == CallOutcome::Success)
        .map(|(_, n)| n)
        .sum();
    let ce = Counter::<u64>::default();
    ce.inc_by(ce_requests);
    reg.register("costexplorer_requests", "Cost Explorer requests answered (each billed)", ce);
    let cw = Counter::<u64>::default();
    cw.inc_by(cloudwatch_metrics_requested);
    reg.register("cloudwatch_metrics_requested", "Metrics requested through GetMetricData (the billed unit)", cw);
    let cost = Family::<Labels, Counter<f64, AtomicU64>>::default();
    cost.get_or_create(&labels(&[("service", "costexplorer")])).inc_by(ce_requests as f64 * COST_EXPLORER_REQUEST_USD);
    cost.get_or_create(&labels(&[("service", "cloudwatch")]))
        .inc_by(cloudwatch_metrics_requested as f64 / 1000.0 * CLOUDWATCH_PER_1000_METRICS_USD);
    reg.register("aws_api_cost_usd", "Estimated charges for cloudwarden's own AWS API calls", cost);

    let build = Family::<VersionLabels, Gauge>::default();
    build.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
    reg.register("build_info", "Always 1; the version of the running daemon", build);
}

/// `cloudwarden_findings{kind,severity}`: every kind and severity from 0, with the open counts of the kinds
/// `owns` says the caller evaluates (the rules job and the CloudWatch job each own theirs).
pub fn render_findings(
    out: &mut Exposition,
    counts: &[crate::store::FindingCount],
    owns: impl Fn(rules::finding::FindingKind) -> bool,
) {
    let family = out.shared_gauge("findings", "Open findings by kind and severity");
    for kind in rules::finding::FindingKind::ALL {
        for severity in rules::finding::Severity::ALL {
            let series = family.get_or_create(&labels(&[("kind", kind.as_str()), ("severity", severity.as_str())]));
            if owns(kind) {
                series.set(counts.iter().find(|c| c.kind == kind && c.severity == severity).map_or(0, |c| c.open));
            }
        }
    }
}

/// An OpenMetrics body of [`render`] in the Prometheus text format (0.0.4), for tools and scrapers that do not
/// read OpenMetrics (`promtool check metrics`): a counter's `# HELP` and `# TYPE` name its `_total` series, type
/// `unknown` is `untyped`, and the OpenMetrics-only lines (`# UNIT`, `# EOF`) are left out. Samples are the
/// same in both formats.
///
/// Renderings convert their segments (the same lines, shared sample lines); this converts one contiguous body.
pub fn to_text_format(openmetrics: &str) -> String {
    let counters = counter_names(openmetrics.lines());
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with('#') {
            out.extend(text_metadata_line(line, &counters));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
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

    fn status(name: &str, runs: &[(RunOutcome, u64)], panics: u64) -> JobStatus {
        JobStatus { name: name.into(), runs: runs.iter().copied().collect(), panics, ..JobStatus::default() }
    }

    #[test]
    fn every_outcome_of_a_called_operation_and_of_a_collector_that_ran_starts_at_zero() {
        let mut calls = BTreeMap::new();
        calls.insert(
            ApiCallKey { service: "ec2".into(), operation: "DescribeVolumes".into(), outcome: CallOutcome::Success },
            4,
        );
        // `logs` is known from the database only, not run since start: no run series, but its panics from 0.
        let jobs = [status("inventory", &[(RunOutcome::Success, 2)], 0), status("logs", &[], 0)];
        let mut out = Exposition::new();
        render_self(&mut out, &jobs, &calls, 0);
        let om = String::from_utf8(out.finish().openmetrics.to_vec()).unwrap();
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
        assert!(om.contains("cloudwarden_job_panics_total{collector=\"logs\"} 0\n"), "{om}");
    }

    #[test]
    fn a_family_filled_by_two_jobs_is_one_family() {
        let mut out = Exposition::new();
        out.shared_gauge("findings", "Open findings").get_or_create(&labels(&[("kind", "a")])).set(1);
        out.shared_gauge("findings", "Open findings").get_or_create(&labels(&[("kind", "b")])).set(2);
        let om = String::from_utf8(out.finish().openmetrics.to_vec()).unwrap();
        assert_eq!(om.matches("# TYPE cloudwarden_findings gauge").count(), 1, "{om}");
        // A family's series come in no particular order.
        assert!(om.contains("cloudwarden_findings{kind=\"a\"} 1\n"), "{om}");
        assert!(om.contains("cloudwarden_findings{kind=\"b\"} 2\n"), "{om}");
    }

    #[test]
    fn a_rendering_has_help_and_type_for_every_series_in_both_formats_and_gzips_each() {
        let mut out = Exposition::new();
        render_self(&mut out, &[status("inventory", &[(RunOutcome::Failed, 1)], 1)], &BTreeMap::new(), 7);
        let pass = Family::<Labels, FloatGauge>::default();
        pass.get_or_create(&labels(&[("region", "eu-west-1")])).set(0.5);
        out.unprefixed().register("aws_ec2_cpuutilization_average", "CloudWatch AWS/EC2 CPUUtilization", pass);
        let r = out.finish();
        let om = String::from_utf8(r.openmetrics.to_vec()).unwrap();
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert_eq!(om.matches("# EOF").count(), 1, "{om}");
        let text = String::from_utf8(r.text.to_vec()).unwrap();
        assert_eq!(text, to_text_format(&om));
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
        assert!(text.contains("cloudwarden_job_panics_total{collector=\"inventory\"} 1\n"), "{text}");
        assert!(
            text.contains(
                "# TYPE cloudwarden_costexplorer_requests_total counter\ncloudwarden_costexplorer_requests_total 0\n"
            ),
            "{text}"
        );
        assert!(text.contains("aws_ec2_cpuutilization_average{region=\"eu-west-1\"} 0.5\n"), "{text}");
        for (plain, gz) in [(&r.openmetrics, &r.openmetrics_gzip), (&r.text, &r.text_gzip)] {
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back).unwrap();
            assert_eq!(back, plain.to_vec());
        }
    }

    const BODY: &str = "# HELP a_runs Runs.\n# TYPE a_runs counter\na_runs_total{x=\"1\"} 3\na_runs_total{x=\"2\"} 4\n\
        # HELP b_ratio A share.\n# TYPE b_ratio gauge\n# UNIT b_ratio ratio\nb_ratio 0.5\n\
        # HELP c_odd Something.\n# TYPE c_odd unknown\nc_odd{v=\"# HELP in a value\"} 1\nc_odd{v=\"2\"} 2\n\
        # TYPE d_late counter\n# HELP d_late Help after type.\nd_late_total 1\n# EOF\n";

    /// The body cut into segments of whole lines at the given line numbers.
    fn cut(body: &str, at: &[usize]) -> Vec<Bytes> {
        let lines: Vec<&str> = body.split_inclusive('\n').collect();
        let mut bounds = vec![0];
        bounds.extend(at.iter().copied().filter(|&n| n > 0 && n < lines.len()));
        bounds.push(lines.len());
        bounds.windows(2).map(|w| Bytes::from(lines[w[0]..w[1]].concat())).collect()
    }

    #[test]
    fn the_text_format_of_segments_is_that_of_the_whole_body_wherever_it_is_cut() {
        let lines = BODY.lines().count();
        let want = to_text_format(BODY);
        for shared_min in [0, 1, 20, usize::MAX] {
            for first in 0..=lines {
                for second in first..=lines {
                    let om = cut(BODY, &[first, second]);
                    let text = Rope::new(text_segments(&om, shared_min)).to_vec();
                    assert_eq!(String::from_utf8(text).unwrap(), want, "cut at {first}, {second}, {shared_min}");
                }
            }
        }
        let r = Rendered::of_segments(cut(BODY, &[3, 9]));
        assert_eq!(r.openmetrics.to_vec(), BODY.as_bytes());
        assert_eq!(r.text.to_vec(), want.as_bytes());
    }

    #[test]
    fn long_runs_of_samples_are_shared_between_the_formats() {
        let samples: String = (0..2000).map(|i| format!("aws_x{{i=\"{i}\"}} {i}\n")).collect();
        let body = format!("# HELP aws_x X.\n# TYPE aws_x gauge\n{samples}# EOF\n");
        let r = Rendered::of(body);
        let om = r.openmetrics.segments()[0].as_ptr_range();
        let shared: Vec<&Bytes> = r.text.segments().iter().filter(|s| om.contains(&s.as_ptr())).collect();
        assert_eq!(shared.len(), 1, "{:?}", r.text.segments().len());
        assert_eq!(&shared[0][..], samples.as_bytes());
        assert_eq!(r.text.len(), r.text.to_vec().len());
        assert_eq!(r.text.segments().len(), 2, "the help and type lines, then the shared samples");
    }
}
