//! CloudWatch metrics through `GetMetricData`, batched at 500 queries per call.
//!
//! Queries are grouped by (period, window) — the requests' time range — and each group is cut into calls
//! of at most 500 queries, the API's limit (enforced here: local emulators do not enforce it). Each job
//! skips its newest `delay` so only converged datapoints are read. The latest datapoint of each query is
//! exported as `aws_<namespace>_<metric>_<statistic>`; queries that ask for it also get every datapoint of
//! the window, oldest first (for anomaly scoring). There is never a fallback to one
//! GetMetricStatistics call per metric.

mod client;
mod plan;

pub use client::{fetch, CloudWatchFetch, Points, Sample};
pub use plan::{dedup_labels, exposition_name, label_name, plan, window, Batch, MAX_QUERIES_PER_CALL};

use serde::Serialize;

/// One metric statistic of one set of dimensions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricQuery {
    pub namespace: String,
    pub metric_name: String,
    /// (name, value) pairs, as CloudWatch has them.
    pub dimensions: Vec<(String, String)>,
    /// `Average`, `Sum`, `Minimum`, `Maximum`, `SampleCount` (percentiles like `p99` are passed through).
    pub statistic: String,
    pub period_secs: i32,
    /// How far back the window reaches from its end.
    pub length_secs: i64,
    /// How much of the newest data to leave out (not yet converged).
    pub delay_secs: i64,
    /// Labels added to the exported series besides account, region and dimensions (selected tags).
    pub extra_labels: Vec<(String, String)>,
    /// Return every datapoint of the window (for anomaly scoring), not only the newest.
    pub all_points: bool,
}
