//! Grouping and batching of queries, and the exported names. Pure: no I/O.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::MetricQuery;

/// GetMetricData's limit on queries per call.
pub const MAX_QUERIES_PER_CALL: usize = 500;

/// One GetMetricData call: a time range and the indices of its queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub period_secs: i32,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub queries: Vec<usize>,
}

/// The window a query reads at `now`: it ends `delay` before now, on a period boundary, and spans `length`
/// (at least one period).
pub fn window(
    now: DateTime<Utc>,
    period_secs: i32,
    length_secs: i64,
    delay_secs: i64,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let period = period_secs.max(1) as i64;
    let end_ts = now.timestamp().saturating_sub(delay_secs.max(0)).div_euclid(period).saturating_mul(period);
    let end = Utc.timestamp_opt(end_ts, 0).single().unwrap_or(now);
    let length = length_secs.max(period);
    // Saturating: the configuration bounds the durations, and nothing here may panic on them.
    let start =
        Duration::try_seconds(length).and_then(|l| end.checked_sub_signed(l)).unwrap_or(DateTime::<Utc>::MIN_UTC);
    (start, end)
}

/// Groups queries by (period, window) and cuts each group into calls of at most 500, in a stable order.
pub fn plan(queries: &[MetricQuery], now: DateTime<Utc>) -> Vec<Batch> {
    let mut groups: BTreeMap<(i32, DateTime<Utc>, DateTime<Utc>), Vec<usize>> = BTreeMap::new();
    for (i, q) in queries.iter().enumerate() {
        let (start, end) = window(now, q.period_secs, q.length_secs, q.delay_secs);
        groups.entry((q.period_secs, start, end)).or_default().push(i);
    }
    let mut out = Vec::new();
    for ((period_secs, start, end), idx) in groups {
        for chunk in idx.chunks(MAX_QUERIES_PER_CALL) {
            out.push(Batch { period_secs, start, end, queries: chunk.to_vec() });
        }
    }
    out
}

fn snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// `aws_<namespace>_<metric>_<statistic>`, e.g. `AWS/EC2`, `CPUUtilization`, `Average` →
/// `aws_ec2_cpuutilization_average`.
pub fn exposition_name(namespace: &str, metric: &str, statistic: &str) -> String {
    let ns = namespace.strip_prefix("AWS/").unwrap_or(namespace);
    format!("aws_{}_{}_{}", snake(ns), snake(metric), snake(statistic))
}

/// A Prometheus label name from a prefix and a CloudWatch dimension or tag key, in snake case as Prometheus
/// names labels: a lower-case letter or digit followed by an upper-case letter gets a `_` between them,
/// letters are lower-cased, other characters outside `[a-zA-Z0-9_]` become `_`; e.g. (`dimension_`,
/// `InstanceId`) → `dimension_instance_id`, (`tag_`, `cost-center`) → `tag_cost_center`, (`dimension_`,
/// `DBInstanceIdentifier`) → `dimension_dbinstance_identifier`.
pub fn label_name(prefix: &str, key: &str) -> String {
    let mut s = String::from(prefix);
    let mut previous: Option<char> = None;
    for c in key.chars() {
        if c.is_ascii_uppercase() && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit()) {
            s.push('_');
        }
        s.push(if c.is_ascii_alphanumeric() || c == '_' { c.to_ascii_lowercase() } else { '_' });
        previous = Some(c);
    }
    s
}

/// `labels` without a repeated name: the first label of each name is kept, in order, and the later ones are
/// dropped (two labels of one name make an invalid series). Keys that differ only in case or punctuation
/// collide once snake-cased (`team-name` and `TeamName` both give `tag_team_name`). Returns how many were
/// dropped.
pub fn dedup_labels(labels: &mut Vec<(String, String)>) -> usize {
    let before = labels.len();
    let mut seen = std::collections::HashSet::with_capacity(before);
    labels.retain(|(name, _)| seen.insert(name.clone()));
    before - labels.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(period: i32, length: i64, delay: i64) -> MetricQuery {
        MetricQuery {
            namespace: "AWS/EC2".into(),
            metric_name: "CPUUtilization".into(),
            dimensions: vec![],
            statistic: "Average".into(),
            period_secs: period,
            length_secs: length,
            delay_secs: delay,
            extra_labels: vec![],
            all_points: false,
        }
    }

    #[test]
    fn batches_hold_at_most_500_queries_per_group() {
        let now: DateTime<Utc> = "2026-11-25T10:07:31Z".parse().unwrap();
        let mut queries = vec![q(300, 600, 300); 1234];
        assert_eq!(plan(&queries, now).iter().map(|b| b.queries.len()).collect::<Vec<_>>(), [500, 500, 234]);
        queries.extend(vec![q(60, 300, 120); 10]);
        let batches = plan(&queries, now);
        assert_eq!(batches.len(), 4);
        assert_eq!(batches.iter().map(|b| b.queries.len()).sum::<usize>(), 1244);
        // Every query exactly once.
        let mut all: Vec<usize> = batches.iter().flat_map(|b| b.queries.clone()).collect();
        all.sort();
        assert_eq!(all, (0..1244).collect::<Vec<_>>());
        assert!(plan(&[], now).is_empty());
    }

    #[test]
    fn windows_end_on_period_boundaries_before_the_delay() {
        let now: DateTime<Utc> = "2026-11-25T10:07:31Z".parse().unwrap();
        let (s, e) = window(now, 300, 600, 300);
        assert_eq!(
            (s.to_rfc3339(), e.to_rfc3339()),
            ("2026-11-25T09:50:00+00:00".into(), "2026-11-25T10:00:00+00:00".into())
        );
        let (s, e) = window(now, 60, 10, 0);
        assert_eq!(
            (s.to_rfc3339(), e.to_rfc3339()),
            ("2026-11-25T10:06:00+00:00".into(), "2026-11-25T10:07:00+00:00".into())
        );
        // Durations beyond any date saturate instead of panicking.
        assert_eq!(window(now, 60, i64::MAX, 0).0, DateTime::<Utc>::MIN_UTC);
        assert_eq!(window(now, i32::MAX, 60, i64::MAX).1, now);
    }

    #[test]
    fn names() {
        assert_eq!(exposition_name("AWS/EC2", "CPUUtilization", "Average"), "aws_ec2_cpuutilization_average");
        assert_eq!(
            exposition_name("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum"),
            "aws_applicationelb_httpcode_target_5xx_count_sum"
        );
        assert_eq!(exposition_name("Custom/App", "queue.depth", "Maximum"), "aws_custom_app_queue_depth_maximum");
        assert_eq!(label_name("tag_", "cost-center"), "tag_cost_center");
        assert_eq!(label_name("dimension_", "InstanceId"), "dimension_instance_id");
        assert_eq!(label_name("dimension_", "DBInstanceIdentifier"), "dimension_dbinstance_identifier");
        assert_eq!(label_name("dimension_", "AutoScalingGroupName"), "dimension_auto_scaling_group_name");
        assert_eq!(label_name("tag_", "Name"), "tag_name");
        assert_eq!(label_name("tag_", "team"), "tag_team");
        assert_eq!(label_name("tag_", "team-name"), label_name("tag_", "TeamName"));
    }

    #[test]
    fn repeated_label_names_keep_the_first() {
        let check = |labels: &[(&str, &str)], kept: &[(&str, &str)]| {
            let mut v: Vec<(String, String)> = labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            let dropped = dedup_labels(&mut v);
            let got: Vec<(&str, &str)> = v.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            assert_eq!((got.as_slice(), dropped), (kept, labels.len() - kept.len()), "{labels:?}");
        };
        check(&[], &[]);
        check(&[("account", "1"), ("region", "r")], &[("account", "1"), ("region", "r")]);
        check(
            &[
                ("account", "1"),
                ("tag_team_name", "a"),
                ("region", "r"),
                ("tag_team_name", "b"),
                ("tag_team_name", "c"),
            ],
            &[("account", "1"), ("tag_team_name", "a"), ("region", "r")],
        );
    }
}
