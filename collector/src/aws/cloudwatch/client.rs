//! The GetMetricData calls of one account and region.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricDataResult, MetricStat, ScanBy};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Batch, MetricQuery};
use crate::aws::{client, AccountConfig, AwsContext, AwsError};

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
    /// Why each failed batch failed: an answer that does not fit the batch (a malformed response). A failed
    /// batch gives no sample and no points; the other batches are kept.
    pub failed_batches: Vec<AwsError>,
}

fn to_smithy(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_secs(t.timestamp())
}

/// A query's `Id`: `q` and its position in its batch (the API wants a lower-case letter first).
fn to_query(position: usize, q: &MetricQuery) -> MetricDataQuery {
    let metric = Metric::builder()
        .namespace(&q.namespace)
        .metric_name(&q.metric_name)
        .set_dimensions(Some(q.dimensions.iter().map(|(n, v)| Dimension::builder().name(n).value(v).build()).collect()))
        .build();
    MetricDataQuery::builder()
        .id(format!("q{position}"))
        .metric_stat(MetricStat::builder().metric(metric).period(q.period_secs).stat(&q.statistic).build())
        .return_data(true)
        .build()
}

/// What the pages of one batch answered so far, by query index.
#[derive(Debug, Default)]
struct BatchData {
    newest: HashMap<usize, (DateTime<Utc>, f64)>,
    all: BTreeMap<usize, Vec<(DateTime<Utc>, f64)>>,
    incomplete: u64,
}

impl BatchData {
    /// Adds the results of one page of `batch`. Fails, naming the id, when a result's `Id` is not one this
    /// batch sent (`q0` up to `q{len - 1}`): its datapoints cannot be told apart from another series'.
    fn add(&mut self, results: &[MetricDataResult], batch: &Batch, queries: &[MetricQuery]) -> Result<(), AwsError> {
        for r in results {
            let id = r.id().unwrap_or_default();
            let i = id
                .strip_prefix('q')
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|position| batch.queries.get(position).copied())
                .filter(|&i| i < queries.len())
                .ok_or_else(|| {
                    let message = format!(
                        "result id {id:?} is not one of the batch's {} queries (q0 to q{})",
                        batch.queries.len(),
                        batch.queries.len().saturating_sub(1)
                    );
                    AwsError::malformed("cloudwatch", "GetMetricData", message)
                })?;
            if r.status_code().is_some_and(|s| s.as_str() != "Complete") {
                self.incomplete += 1;
            }
            for (t, v) in r.timestamps().iter().zip(r.values()) {
                let Some(t) = DateTime::from_timestamp(t.secs(), t.subsec_nanos()) else { continue };
                let e = self.newest.entry(i).or_insert((t, *v));
                if t > e.0 {
                    *e = (t, *v);
                }
                if queries[i].all_points {
                    self.all.entry(i).or_default().push((t, *v));
                }
            }
        }
        Ok(())
    }

    /// The newest sample of every query answered, by query index, and every point of those that asked.
    fn finish(self, out: &mut CloudWatchFetch) {
        let mut samples: Vec<Sample> =
            self.newest.into_iter().map(|(query, (timestamp, value))| Sample { query, timestamp, value }).collect();
        samples.sort_by_key(|s| s.query);
        out.samples.extend(samples);
        for (query, mut points) in self.all {
            // Pages come newest first; a timestamp answered twice keeps its first value.
            points.sort_by_key(|p| p.0);
            points.dedup_by_key(|p| p.0);
            out.points.push(Points { query, points });
        }
        out.incomplete += self.incomplete;
    }
}

/// Runs the planned batches against one account and region; every page of every call is read. A call that
/// fails fails the whole fetch; a batch whose answer does not fit it is counted in
/// [`CloudWatchFetch::failed_batches`] and the other batches go on.
pub async fn fetch(
    ctx: &AwsContext,
    account: &AccountConfig,
    region: &str,
    queries: &[MetricQuery],
    batches: &[Batch],
) -> Result<CloudWatchFetch, AwsError> {
    let cw = client!(aws_sdk_cloudwatch, ctx, account, region);
    let mut out = CloudWatchFetch::default();
    for batch in batches {
        let data: Vec<MetricDataQuery> =
            batch.queries.iter().enumerate().map(|(position, &i)| to_query(position, &queries[i])).collect();
        let mut answered = BatchData::default();
        let mut failed = None;
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
                .map_err(|e| AwsError::sdk("cloudwatch", "GetMetricData", &e))?;
            if let Err(e) = answered.add(page.metric_data_results(), batch, queries) {
                failed = Some(e);
                break;
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        match failed {
            Some(e) => out.failed_batches.push(e),
            None => answered.finish(&mut out),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use aws_sdk_cloudwatch::types::StatusCode;

    use super::*;

    fn query(all_points: bool) -> MetricQuery {
        MetricQuery {
            namespace: "AWS/EC2".into(),
            metric_name: "CPUUtilization".into(),
            dimensions: vec![],
            statistic: "Average".into(),
            period_secs: 60,
            length_secs: 300,
            delay_secs: 0,
            extra_labels: vec![],
            all_points,
        }
    }

    fn result(id: &str, points: &[(i64, f64)]) -> MetricDataResult {
        let mut r = MetricDataResult::builder().id(id).status_code(StatusCode::Complete);
        for (t, v) in points {
            r = r.timestamps(aws_smithy_types::DateTime::from_secs(*t)).values(*v);
        }
        r.build()
    }

    /// Queries 0..5; the batch holds queries 3 and 1, in that order.
    fn batch() -> Batch {
        Batch {
            period_secs: 60,
            start: DateTime::from_timestamp(0, 0).unwrap(),
            end: DateTime::from_timestamp(600, 0).unwrap(),
            queries: vec![3, 1],
        }
    }

    #[test]
    fn results_map_to_the_batch_queries_by_position() {
        let queries: Vec<MetricQuery> = (0..5).map(|i| query(i == 3)).collect();
        let mut data = BatchData::default();
        data.add(&[result("q0", &[(120, 1.0), (60, 2.0)]), result("q1", &[(60, 5.0)])], &batch(), &queries).unwrap();
        // A second page, newest first.
        data.add(&[result("q0", &[(60, 9.0), (0, 3.0)])], &batch(), &queries).unwrap();
        let mut out = CloudWatchFetch::default();
        data.finish(&mut out);
        let samples: Vec<_> = out.samples.iter().map(|s| (s.query, s.timestamp.timestamp(), s.value)).collect();
        assert_eq!(samples, [(1, 60, 5.0), (3, 120, 1.0)]);
        let points: Vec<_> = out.points[0].points.iter().map(|(t, v)| (t.timestamp(), *v)).collect();
        assert_eq!((out.points.len(), out.points[0].query), (1, 3));
        assert_eq!(points, [(0, 3.0), (60, 2.0), (120, 1.0)]);
    }

    #[test]
    fn a_result_id_outside_the_batch_fails_the_batch() {
        let queries: Vec<MetricQuery> = (0..5).map(|_| query(true)).collect();
        let check = |id: &str| {
            let mut data = BatchData::default();
            let err = data.add(&[result("q0", &[(60, 1.0)]), result(id, &[(60, 2.0)])], &batch(), &queries);
            let err = err.unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("GetMetricData: result id {id:?} is not one of the batch's 2 queries (q0 to q1)"),
                "{id}"
            );
            assert_eq!(err.as_kind(), "malformed_response", "{id}");
        };
        // Past the batch (though a query of the job), far past everything, and ids we never send.
        check("q2");
        check("q4");
        check(&format!("q{}", usize::MAX));
        check("q99999999999999999999999");
        check("x1");
        check("");
        // A batch of queries beyond the list given is refused as well.
        let mut data = BatchData::default();
        let short = &queries[..2];
        assert!(data.add(&[result("q0", &[(60, 1.0)])], &batch(), short).is_err());
    }
}
