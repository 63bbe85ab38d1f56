//! Metric anomalies in the daemon: the CloudWatch job feeds the datapoints of the series chosen with
//! `anomaly = { ... }` to the online detector of `rules::anomaly::metric`, one detector per series, kept in
//! memory. The newest score of each series is exported, and a series whose newest score reaches its threshold
//! has an open `metric_anomaly` finding.
//!
//! Each fetch reads a window that overlaps the previous ones, so a series remembers the newest timestamp it
//! fed and the timestamps it handled within its window: a point newer than the newest is fed (in timestamp
//! order), a point handled before is skipped, and a point older than the newest that was never handled
//! arrived late. The detector scores points in order, so a late point is not fed; it is counted once.
//!
//! State is bounded: a series no longer queried is dropped, and at most `max_anomaly_series` series are
//! kept (new series beyond it are left out and counted). A restart starts every detector afresh: the first
//! fetched window warms it up (its points are fed in order; the detector scores 0 during its first
//! `probation` points).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{Exposition, FloatGauge};
use std::collections::{BTreeMap, HashSet, VecDeque};

use chrono::{DateTime, SecondsFormat, Utc};
use rules::anomaly::metric::detector::{Detector, DetectorConfig};
use rules::finding::{Finding, FindingKind, Severity};
use serde_json::json;

/// The built-in rule name of metric anomaly findings.
pub const RULE: &str = "metric_anomaly";

/// A scored series as the CloudWatch job queries it this run.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSpec {
    /// Stable identity, the finding's subject: the resource ARN (discovery) or `account/region/dimensions`
    /// (static), then namespace, metric and statistic.
    pub key: String,
    pub namespace: String,
    pub metric: String,
    pub statistic: String,
    pub account_id: String,
    pub region: String,
    /// The resource's ARN and inventory type (discovery jobs).
    pub arn: Option<String>,
    pub resource_type: Option<String>,
    pub dimensions: Vec<(String, String)>,
    /// The labels of the series' `aws_...` pass-through metric: account, region, `dimension_*`, `tag_*`.
    pub labels: Vec<(String, String)>,
    pub period_secs: i64,
    pub length_secs: i64,
    pub threshold: f64,
}

impl SeriesSpec {
    /// The series key of a discovery job's resource, or of a static job's dimensions.
    pub fn key_of(
        arn: Option<&str>,
        account_id: &str,
        region: &str,
        dimensions: &[(String, String)],
        namespace: &str,
        metric: &str,
        statistic: &str,
    ) -> String {
        let target = match arn {
            Some(arn) => arn.to_string(),
            None => {
                let dims: Vec<String> = dimensions.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{account_id}/{region}/{}", dims.join(","))
            }
        };
        format!("{target} {namespace} {metric} {statistic}")
    }
}

/// A point the detector scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredPoint {
    pub timestamp: DateTime<Utc>,
    pub value: f64,
    pub score: f64,
}

#[derive(Debug, Clone)]
struct SeriesState {
    spec: SeriesSpec,
    detector: Detector,
    /// Timestamps (Unix seconds) fed or counted late within the window, ascending; the last is the newest fed.
    handled: VecDeque<i64>,
    newest: Option<i64>,
    last: Option<ScoredPoint>,
}

/// What feeding one window did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fed {
    /// Points fed to the detector (newer than the newest fed).
    pub scored: u64,
    /// Points older than the newest fed that were never handled: not fed, counted.
    pub late: u64,
    /// Points handled by an earlier fetch.
    pub repeated: u64,
    /// The series is new and the cap is reached: nothing was fed.
    pub left_out: bool,
}

/// The detectors of every scored series and what they did since the daemon started.
#[derive(Debug, Clone, Default)]
pub struct MetricAnomalies {
    series: BTreeMap<String, SeriesState>,
    points_scored: u64,
    late_points: u64,
    /// New series left out by the cap in the newest run.
    left_out: u64,
}

impl MetricAnomalies {
    /// Drops the series whose key is not in `live` (no longer queried).
    pub fn retain(&mut self, live: &HashSet<String>) {
        self.series.retain(|k, _| live.contains(k));
    }

    /// Starts a run: resets the left-out count.
    pub fn begin_run(&mut self) {
        self.left_out = 0;
    }

    /// Feeds a window of one series (points in any order, one per timestamp). A new series with no point
    /// creates nothing; a new series beyond `max_series` is left out.
    pub fn feed(&mut self, spec: SeriesSpec, points: &[(DateTime<Utc>, f64)], max_series: usize) -> Fed {
        let mut fed = Fed::default();
        if !self.series.contains_key(&spec.key) {
            if points.is_empty() {
                return fed;
            }
            if self.series.len() >= max_series {
                self.left_out += 1;
                fed.left_out = true;
                return fed;
            }
            let state = SeriesState {
                spec: spec.clone(),
                detector: Detector::new(DetectorConfig::default()),
                handled: VecDeque::new(),
                newest: None,
                last: None,
            };
            self.series.insert(spec.key.clone(), state);
        }
        let st = self.series.get_mut(&spec.key).expect("inserted above");
        let mut sorted: Vec<(DateTime<Utc>, f64)> = points.to_vec();
        sorted.sort_by_key(|p| p.0);
        for (t, value) in sorted {
            let ts = t.timestamp();
            match st.newest {
                Some(newest) if ts <= newest => {
                    // `handled` is sorted: a binary search tells whether this point was seen.
                    match st.handled.binary_search(&ts) {
                        Ok(_) => fed.repeated += 1,
                        Err(i) => {
                            st.handled.insert(i, ts);
                            fed.late += 1;
                        }
                    }
                }
                _ => {
                    let score = st.detector.update(value);
                    st.last = Some(ScoredPoint { timestamp: t, value, score });
                    st.newest = Some(ts);
                    st.handled.push_back(ts);
                    fed.scored += 1;
                }
            }
        }
        // Only timestamps a later window can still return are kept.
        if let Some(newest) = st.newest {
            let horizon = newest - spec.length_secs.max(spec.period_secs) - spec.period_secs.max(1);
            while st.handled.front().is_some_and(|t| *t < horizon) {
                st.handled.pop_front();
            }
        }
        st.spec = spec;
        self.points_scored += fed.scored;
        self.late_points += fed.late;
        fed
    }

    /// The open findings of the series `decided` accepts: those whose newest score reaches their threshold.
    pub fn findings(&self, decided: impl Fn(&SeriesSpec) -> bool) -> Vec<Finding> {
        self.series
            .values()
            .filter(|s| decided(&s.spec))
            .filter_map(|s| s.last.filter(|p| p.score >= s.spec.threshold).map(|p| finding(&s.spec, &p)))
            .collect()
    }

    /// What `/metrics` shows.
    pub fn view(&self) -> AnomalyView {
        AnomalyView {
            scores: self
                .series
                .values()
                .filter_map(|s| {
                    let p = s.last?;
                    let mut labels = vec![
                        ("namespace".to_string(), s.spec.namespace.clone()),
                        ("metric".to_string(), s.spec.metric.clone()),
                        ("statistic".to_string(), s.spec.statistic.clone()),
                    ];
                    labels.extend(s.spec.labels.iter().cloned());
                    Some((labels, p.score))
                })
                .collect(),
            series: self.series.len() as u64,
            points_scored: self.points_scored,
            late_points: self.late_points,
            left_out: self.left_out,
        }
    }

    /// The newest scored point of a series.
    pub fn last(&self, key: &str) -> Option<ScoredPoint> {
        self.series.get(key).and_then(|s| s.last)
    }
}

/// The metric anomaly series and counters for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnomalyView {
    /// Labels (namespace, metric, statistic, then the pass-through series' labels) and newest score.
    pub scores: Vec<(Vec<(String, String)>, f64)>,
    /// Series with a detector.
    pub series: u64,
    pub points_scored: u64,
    pub late_points: u64,
    /// New series left out by `max_anomaly_series` in the newest run.
    pub left_out: u64,
}

/// The `metric_anomaly` finding of a series whose newest point scored `point.score`.
pub fn finding(spec: &SeriesSpec, point: &ScoredPoint) -> Finding {
    let timestamp = point.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true);
    let target = spec
        .arn
        .clone()
        .unwrap_or_else(|| spec.dimensions.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","));
    let dimensions: serde_json::Map<String, serde_json::Value> =
        spec.dimensions.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    Finding {
        kind: FindingKind::MetricAnomaly,
        rule: RULE.into(),
        subject: spec.key.as_str().into(),
        account_id: Some(spec.account_id.as_str().into()),
        region: Some(spec.region.as_str().into()),
        resource_type: spec.resource_type.as_deref().map(Into::into),
        severity: Severity::Warning,
        message: format!(
            "{} {} {} of {target} scored {:.2} (threshold {}) at {timestamp}, value {}",
            spec.namespace, spec.metric, spec.statistic, point.score, spec.threshold, point.value
        )
        .into(),
        monthly_usd: None,
        details: json!({
            "namespace": spec.namespace,
            "metric": spec.metric,
            "statistic": spec.statistic,
            "dimensions": dimensions,
            "arn": spec.arn,
            "period_secs": spec.period_secs,
            "score": point.score,
            "value": point.value,
            "timestamp": timestamp,
            "threshold": spec.threshold,
        })
        .into(),
    }
}

impl AnomalyView {
    /// The scores and counters on `/metrics`.
    pub fn render(&self, out: &mut Exposition) {
        let v = self;
        let reg = out.cloudwarden();
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
        reg.register(
            "metric_anomaly_points_scored",
            "CloudWatch points fed to the anomaly detectors since start",
            scored,
        );
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(key: &str) -> SeriesSpec {
        SeriesSpec {
            key: key.into(),
            namespace: "AWS/EC2".into(),
            metric: "CPUUtilization".into(),
            statistic: "Average".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            arn: None,
            resource_type: None,
            dimensions: vec![("InstanceId".into(), "i-1".into())],
            labels: vec![],
            period_secs: 60,
            length_secs: 600,
            threshold: 0.6695,
        }
    }

    fn t(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 / 60 * 60 + minute * 60, 0).unwrap()
    }

    /// Windows of `len` minutes ending at `end` over a steady series with a spike at minute 350.
    fn window(end: i64, len: i64, skip: &[i64]) -> Vec<(DateTime<Utc>, f64)> {
        (end - len..end)
            .filter(|m| *m >= 0 && !skip.contains(m))
            .map(|m| (t(m), if m == 350 { 500.0 } else { 10.0 + (m % 5) as f64 }))
            .collect()
    }

    #[test]
    fn overlapping_windows_feed_each_point_once_in_order() {
        let mut a = MetricAnomalies::default();
        let s = spec("s");
        // The first window warms up; later windows overlap it by 10 of 11 minutes.
        let fed = a.feed(s.clone(), &window(300, 300, &[]), 10);
        assert_eq!(fed, Fed { scored: 300, ..Fed::default() });
        let mut reversed = window(301, 11, &[]);
        reversed.reverse();
        assert_eq!(a.feed(s.clone(), &reversed, 10), Fed { scored: 1, repeated: 10, ..Fed::default() });
        assert_eq!(a.feed(s.clone(), &window(301, 11, &[]), 10), Fed { repeated: 11, ..Fed::default() });
        // The same points in one pass get the same scores.
        let mut once = MetricAnomalies::default();
        once.feed(s.clone(), &window(301, 301, &[]), 10);
        assert_eq!(once.last("s"), a.last("s"));
        assert_eq!(a.view().points_scored, 301);
    }

    #[test]
    fn a_late_point_is_counted_once_and_not_fed() {
        let mut a = MetricAnomalies::default();
        let s = spec("s");
        a.feed(s.clone(), &window(300, 300, &[295]), 10);
        let before = a.last("s");
        // Minute 295 shows up now: late, not fed; the next windows repeat it without counting it again.
        assert_eq!(a.feed(s.clone(), &window(300, 10, &[]), 10), Fed { late: 1, repeated: 9, ..Fed::default() });
        assert_eq!(a.last("s"), before);
        assert_eq!(a.feed(s.clone(), &window(301, 10, &[]), 10), Fed { scored: 1, repeated: 9, ..Fed::default() });
        assert_eq!(a.view().late_points, 1);
    }

    #[test]
    fn a_spike_opens_a_finding_and_normal_points_close_it() {
        let mut a = MetricAnomalies::default();
        let s = spec("s");
        a.feed(s.clone(), &window(350, 350, &[]), 10);
        assert!(a.findings(|_| true).is_empty(), "steady");
        a.feed(s.clone(), &window(351, 10, &[]), 10);
        let found = a.findings(|_| true);
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!((f.kind, &*f.rule, &*f.subject), (FindingKind::MetricAnomaly, RULE, "s"));
        assert!(f.details.to_json()["score"].as_f64().unwrap() > 0.9, "{f:?}");
        assert_eq!(f.details.to_json()["value"], json!(500.0));
        assert_eq!(f.details.to_json()["timestamp"], json!(t(350).to_rfc3339_opts(SecondsFormat::Secs, true)));
        // Not decided this run: no finding either way.
        assert!(a.findings(|_| false).is_empty());
        a.feed(s.clone(), &window(352, 10, &[]), 10);
        assert!(a.findings(|_| true).is_empty(), "back to normal");
    }

    #[test]
    fn series_are_capped_and_dropped_when_gone() {
        let mut a = MetricAnomalies::default();
        a.begin_run();
        for key in ["a", "b", "c"] {
            a.feed(spec(key), &window(10, 10, &[]), 2);
        }
        // A new series without points creates nothing.
        a.feed(spec("d"), &[], 2);
        let v = a.view();
        assert_eq!((v.series, v.left_out), (2, 1));
        a.retain(&["b".to_string()].into());
        a.begin_run();
        a.feed(spec("c"), &window(10, 10, &[]), 2);
        let v = a.view();
        assert_eq!((v.series, v.left_out), (2, 0));
        assert!(a.last("a").is_none());
    }

    #[test]
    fn keys_name_the_resource_or_the_dimensions() {
        let dims = vec![("QueueName".to_string(), "orders".to_string())];
        assert_eq!(
            SeriesSpec::key_of(
                Some("arn:aws:ec2:us-east-1:1:instance/i-1"),
                "1",
                "us-east-1",
                &[],
                "AWS/EC2",
                "CPUUtilization",
                "Average"
            ),
            "arn:aws:ec2:us-east-1:1:instance/i-1 AWS/EC2 CPUUtilization Average"
        );
        assert_eq!(
            SeriesSpec::key_of(
                None,
                "1",
                "us-east-1",
                &dims,
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                "Maximum"
            ),
            "1/us-east-1/QueueName=orders AWS/SQS ApproximateNumberOfMessagesVisible Maximum"
        );
    }
}
