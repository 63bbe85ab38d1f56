//! Counting every AWS call: one interceptor attached to every client records each attempt by service,
//! operation and outcome. The daemon exports the counts as `cloudwarden_aws_api_calls_total`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde::Serialize;

/// How one attempt ended. A bounded set, so it can be a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    Success,
    /// The service asked us to slow down (HTTP 429/503 or a throttling error code).
    Throttled,
    /// Any other 4xx: permissions, validation, missing resource.
    ClientError,
    /// 5xx other than 503.
    ServerError,
    /// No response: connection refused, reset, timed out.
    TransportError,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 5] = [
        CallOutcome::Success,
        CallOutcome::Throttled,
        CallOutcome::ClientError,
        CallOutcome::ServerError,
        CallOutcome::TransportError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Success => "success",
            CallOutcome::Throttled => "throttled",
            CallOutcome::ClientError => "client_error",
            CallOutcome::ServerError => "server_error",
            CallOutcome::TransportError => "transport_error",
        }
    }
}

impl fmt::Display for CallOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// (service, operation, outcome) of a counted call, e.g. (`ec2`, `DescribeInstances`, success).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ApiCallKey {
    pub service: String,
    pub operation: String,
    pub outcome: CallOutcome,
}

/// Running totals of AWS call attempts since the process started.
#[derive(Debug, Default)]
pub struct ApiCallStats {
    counts: Mutex<BTreeMap<ApiCallKey, u64>>,
    /// Metrics requested through GetMetricData (CloudWatch's billed unit, not a call count).
    metrics_requested: std::sync::atomic::AtomicU64,
}

impl ApiCallStats {
    pub fn record(&self, service: &str, operation: &str, outcome: CallOutcome) {
        let key = ApiCallKey { service: service.to_string(), operation: operation.to_string(), outcome };
        *self.counts.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_default() += 1;
    }

    /// A copy of all counters.
    pub fn snapshot(&self) -> BTreeMap<ApiCallKey, u64> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Counts `n` metrics requested through GetMetricData.
    pub fn add_metrics_requested(&self, n: u64) {
        self.metrics_requested.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Metrics requested through GetMetricData since start.
    pub fn metrics_requested(&self) -> u64 {
        self.metrics_requested.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// All attempts, whatever their outcome.
    pub fn total(&self) -> u64 {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }
}

tokio::task_local! {
    /// The calls of the run this task is working for, apart from every other task's.
    static RUN_CALLS: Arc<ApiCallStats>;
}

/// Runs `fut` and returns, next to its output, the AWS call attempts made while polling it, by service,
/// operation and outcome. Runs that go on at the same time in other tasks are not counted: the counts are
/// this future's own, unlike a difference of two process-wide snapshots. Calls made by tasks that `fut`
/// spawns are not counted either (the collectors make their calls in the future that runs them).
pub async fn counting_calls<F: std::future::Future>(fut: F) -> (F::Output, BTreeMap<ApiCallKey, u64>) {
    let run = Arc::new(ApiCallStats::default());
    let out = RUN_CALLS.scope(run.clone(), fut).await;
    (out, run.snapshot())
}

/// Attempts per (service, operation), whatever their outcome.
pub fn by_operation(calls: &BTreeMap<ApiCallKey, u64>) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for (k, v) in calls {
        *out.entry((k.service.clone(), k.operation.clone())).or_default() += v;
    }
    out
}

/// Per-(service, operation) difference between two snapshots: the calls one cycle made.
pub fn calls_between(
    before: &BTreeMap<ApiCallKey, u64>,
    after: &BTreeMap<ApiCallKey, u64>,
) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for (k, v) in after {
        let d = v - before.get(k).copied().unwrap_or(0);
        if d > 0 {
            *out.entry((k.service.clone(), k.operation.clone())).or_default() += d;
        }
    }
    out
}

/// The interceptor that feeds [`ApiCallStats`]; it counts every attempt, retries included.
#[derive(Debug, Clone)]
pub struct ApiCallRecorder {
    stats: Arc<ApiCallStats>,
}

impl ApiCallRecorder {
    pub fn new(stats: Arc<ApiCallStats>) -> Self {
        ApiCallRecorder { stats }
    }
}

/// Error codes of a service asking us to slow down.
pub(crate) const THROTTLING_CODES: [&str; 7] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "SlowDown",
];

/// Classifies an attempt from the HTTP status and, for 400s, the error code in the body.
pub fn classify(status: Option<u16>, body: Option<&[u8]>) -> CallOutcome {
    match status {
        None => CallOutcome::TransportError,
        Some(200..=399) => CallOutcome::Success,
        Some(429) | Some(503) => CallOutcome::Throttled,
        Some(400..=499) => {
            let text = body.map(|b| String::from_utf8_lossy(&b[..b.len().min(4096)]).into_owned()).unwrap_or_default();
            if THROTTLING_CODES.iter().any(|c| text.contains(c)) {
                CallOutcome::Throttled
            } else {
                CallOutcome::ClientError
            }
        }
        Some(_) => CallOutcome::ServerError,
    }
}

/// Service names as our metrics spell them: the SDK's, lowercased, without spaces.
fn service_label(name: &str) -> String {
    name.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

impl Intercept for ApiCallRecorder {
    fn name(&self) -> &'static str {
        "cloudwarden_api_call_recorder"
    }

    fn read_after_attempt(
        &self,
        ctx: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (service_label(m.service()), m.name().to_string()))
            .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        let response = ctx.response();
        let outcome = classify(response.map(|r| r.status().as_u16()), response.and_then(|r| r.body().bytes()));
        self.stats.record(&service, &operation, outcome);
        // Outside a counted run (no task-local set) there is nothing more to do.
        let _ = RUN_CALLS.try_with(|run| run.record(&service, &operation, outcome));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_attempts() {
        let cases: [(Option<u16>, &str, CallOutcome); 8] = [
            (Some(200), "", CallOutcome::Success),
            (Some(429), "", CallOutcome::Throttled),
            (Some(503), "", CallOutcome::Throttled),
            (Some(400), "<Code>RequestLimitExceeded</Code>", CallOutcome::Throttled),
            (Some(400), r#"{"__type":"ThrottlingException"}"#, CallOutcome::Throttled),
            (Some(403), "<Code>AccessDenied</Code>", CallOutcome::ClientError),
            (Some(500), "", CallOutcome::ServerError),
            (None, "", CallOutcome::TransportError),
        ];
        for (status, body, want) in cases {
            assert_eq!(classify(status, Some(body.as_bytes())), want, "{status:?} {body}");
        }
    }

    #[test]
    fn counts_and_differences() {
        let s = ApiCallStats::default();
        s.record("ec2", "DescribeInstances", CallOutcome::Success);
        let before = s.snapshot();
        s.record("ec2", "DescribeInstances", CallOutcome::Success);
        s.record("ec2", "DescribeInstances", CallOutcome::Throttled);
        s.record("s3", "ListBuckets", CallOutcome::Success);
        let d = calls_between(&before, &s.snapshot());
        assert_eq!(d[&("ec2".to_string(), "DescribeInstances".to_string())], 2);
        assert_eq!(d[&("s3".to_string(), "ListBuckets".to_string())], 1);
        assert_eq!(s.total(), 4);
        assert_eq!(service_label("Resource Groups Tagging API"), "resourcegroupstaggingapi");
    }

    /// Two runs at once each count only their own calls.
    #[tokio::test]
    async fn concurrent_runs_count_apart() {
        let record = |service: &'static str, n: usize| async move {
            for _ in 0..n {
                RUN_CALLS.with(|run| run.record(service, "Op", CallOutcome::Success));
                tokio::task::yield_now().await;
            }
        };
        let ((_, a), (_, b)) = tokio::join!(counting_calls(record("ec2", 3)), counting_calls(record("s3", 5)));
        assert_eq!(by_operation(&a), BTreeMap::from([(("ec2".to_string(), "Op".to_string()), 3)]));
        assert_eq!(by_operation(&b), BTreeMap::from([(("s3".to_string(), "Op".to_string()), 5)]));
    }
}
