//! `/metrics`: rendered once per collection cycle from a snapshot of what the daemon knows, then served from
//! memory. A scrape never calls AWS and never touches the database.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use collector::{ApiCallKey, CallOutcome};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::store::{RunOutcome, ScopeCount};

/// The content type of what [`render`] produces.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

/// Everything `/metrics` shows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub inventory: Vec<ScopeCount>,
    /// (configured name, account id).
    pub accounts: Vec<(String, String)>,
    pub collectors: BTreeMap<String, CollectorStatus>,
    pub api_calls: BTreeMap<ApiCallKey, u64>,
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
    let mut reg = Registry::with_prefix("cloudwarden");

    let resources = Family::<ScopeLabels, Gauge>::default();
    let untagged = Family::<ScopeLabels, Gauge>::default();
    for c in &s.inventory {
        let l = ScopeLabels { account: c.account_id.clone(), region: c.region.clone(), resource_type: c.resource_type.clone() };
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

    let build = Family::<VersionLabels, Gauge>::default();
    build.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
    reg.register("build_info", "Always 1; the version of the running daemon", build);

    let mut out = String::new();
    encode(&mut out, &reg).expect("writing to a String cannot fail");
    out
}

/// Total calls in a snapshot of the API counters that ended with `outcome`, for summaries.
pub fn calls_with(api_calls: &BTreeMap<ApiCallKey, u64>, outcome: CallOutcome) -> u64 {
    api_calls.iter().filter(|(k, _)| k.outcome == outcome).map(|(_, v)| v).sum()
}
