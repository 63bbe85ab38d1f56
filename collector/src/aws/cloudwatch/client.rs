//! The GetMetricData calls of one account and region.

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Batch, MetricQuery};
use crate::aws::{client, error_chain, AccountConfig, AwsContext};

/// The newest datapoint of one query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Index into the queries given to [`fetch`].
    pub query: usize,
    pub timestamp: DateTime<Utc>,
    pub value: f64,
}

/// Every datapoint of one query's window, oldest first, one per timestamp: only for queries with
/// [`MetricQuery::all_points`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Points {
    /// Index into the queries given to [`fetch`].
    pub query: usize,
    pub points: Vec<(DateTime<Utc>, f64)>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CloudWatchFetch {
    pub samples: Vec<Sample>,
    /// Every datapoint of the queries that asked for them, one entry per such query.
    pub points: Vec<Points>,
    /// GetMetricData calls made (pages included).
    pub calls: u64,
    /// Queries sent, summed over calls: the unit CloudWatch bills ($0.01 per 1,000).
    pub metrics_requested: u64,
    /// Queries CloudWatch answered with a status other than Complete.
    pub incomplete: u64,
}

fn to_smithy(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_secs(t.timestamp())
}

fn to_query(i: usize, q: &MetricQuery) -> MetricDataQuery {
    let metric = Metric::builder()
        .namespace(&q.namespace)
        .metric_name(&q.metric_name)
        .set_dimensions(Some(q.dimensions.iter().map(|(n, v)| Dimension::builder().name(n).value(v).build()).collect()))
        .build();
    MetricDataQuery::builder()
        .id(format!("q{i}"))
        .metric_stat(MetricStat::builder().metric(metric).period(q.period_secs).stat(&q.statistic).build())
        .return_data(true)
        .build()
}

/// Runs the planned batches against one account and region; every page of every call is read.
pub async fn fetch(
    ctx: &AwsContext,
    account: &AccountConfig,
    region: &str,
    queries: &[MetricQuery],
    batches: &[Batch],
) -> Result<CloudWatchFetch, String> {
    let cw = client!(aws_sdk_cloudwatch, ctx, account, region);
    let mut out = CloudWatchFetch::default();
    for batch in batches {
        let data: Vec<MetricDataQuery> = batch.queries.iter().map(|&i| to_query(i, &queries[i])).collect();
        let mut newest: std::collections::HashMap<usize, (DateTime<Utc>, f64)> = Default::default();
        let mut all: std::collections::BTreeMap<usize, Vec<(DateTime<Utc>, f64)>> = Default::default();
        let mut token: Option<String> = None;
        loop {
            out.calls += 1;
            out.metrics_requested += data.len() as u64;
            let page = cw
                .get_metric_data()
                .set_metric_data_queries(Some(data.clone()))
                .start_time(to_smithy(batch.start))
                .end_time(to_smithy(batch.end))
                .scan_by(ScanBy::TimestampDescending)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| format!("GetMetricData: {}", error_chain(&e)))?;
            for r in page.metric_data_results() {
                let Some(i) = r.id().and_then(|id| id.strip_prefix('q')).and_then(|n| n.parse::<usize>().ok()) else {
                    continue;
                };
                if r.status_code().is_some_and(|s| s.as_str() != "Complete") {
                    out.incomplete += 1;
                }
                for (t, v) in r.timestamps().iter().zip(r.values()) {
                    let Some(t) = DateTime::from_timestamp(t.secs(), t.subsec_nanos()) else { continue };
                    let e = newest.entry(i).or_insert((t, *v));
                    if t > e.0 {
                        *e = (t, *v);
                    }
                    if queries.get(i).is_some_and(|q| q.all_points) {
                        all.entry(i).or_default().push((t, *v));
                    }
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        let mut samples: Vec<Sample> =
            newest.into_iter().map(|(query, (timestamp, value))| Sample { query, timestamp, value }).collect();
        samples.sort_by_key(|s| s.query);
        out.samples.extend(samples);
        for (query, mut points) in all {
            // Pages come newest first; a timestamp answered twice keeps its first value.
            points.sort_by_key(|p| p.0);
            points.dedup_by_key(|p| p.0);
            out.points.push(Points { query, points });
        }
    }
    Ok(out)
}
