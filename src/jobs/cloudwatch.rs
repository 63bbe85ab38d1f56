//! The CloudWatch job: builds the queries of every discovery and static job for every account and region,
//! runs them in batches of 500 per (period, window) group, and keeps the newest datapoint of each as a
//! series for `/metrics`. Discovery selects resources from the stored inventory by type and tags, so
//! untagged resources are queried too.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use collector::aws::cloudwatch::{self, exposition_name, label_name, MetricQuery};
use collector::aws::account_id;
use collector::ScopeFailure;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Detail, JobOutput};
use crate::daemon::Daemon;
use crate::store::RunOutcome;

pub const NAME: &str = "cloudwatch";

/// Price of 1,000 metrics requested through GetMetricData, in USD.
pub const PRICE_PER_1000_METRICS_USD: f64 = 0.01;

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
}

#[derive(Debug, Clone, PartialEq)]
pub struct CloudWatchSettings {
    pub regions: Vec<String>,
    pub discovery: Vec<Discovery>,
    pub statics: Vec<Static>,
    /// Account-regions queried at once.
    pub max_concurrency: usize,
}

/// One exported series: its name, labels and newest value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub name: String,
    pub help: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CloudWatchDetail {
    pub queries: u64,
    pub calls: u64,
    pub metrics_requested: u64,
    pub series: u64,
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
}

fn base_labels(account_id: &str, region: &str, q: &MetricQuery) -> Vec<(String, String)> {
    let mut labels = vec![("account".to_string(), account_id.to_string()), ("region".to_string(), region.to_string())];
    labels.extend(q.dimensions.iter().map(|(k, v)| (label_name("dimension_", k), v.clone())));
    labels.extend(q.extra_labels.iter().cloned());
    labels
}

pub async fn run(d: &Daemon, s: &CloudWatchSettings, now: DateTime<Utc>, cancel: &CancellationToken) -> JobOutput {
    let mut failures = Vec::new();
    let mut info = Vec::new();
    let known: BTreeMap<String, String> = d.accounts().into_iter().collect();
    let mut targets = Vec::new();
    for (ai, account) in d.aws.accounts.iter().enumerate() {
        let id = match known.get(&account.spec.name) {
            Some(id) => id.clone(),
            None => match account_id(&d.aws, account).await {
                Ok(id) => id,
                Err(error) => {
                    failures.push(ScopeFailure {
                        account: account.spec.name.clone(),
                        account_id: None,
                        region: None,
                        source: "sts:GetCallerIdentity".into(),
                        error,
                    });
                    continue;
                }
            },
        };
        for region in &s.regions {
            let mut queries = Vec::new();
            for job in &s.discovery {
                let resources = match d.store.live_resources(&id, region, &job.resource_type).await {
                    Ok(r) => r,
                    Err(e) => return JobOutput::failed(e.to_string()),
                };
                for r in resources.iter().filter(|r| selected(&r.tags, &job.tag_selectors)) {
                    let tags: Vec<(String, String)> = job
                        .export_tags
                        .iter()
                        .map(|k| (label_name("tag_", k), r.tags.get(k).cloned().unwrap_or_default()))
                        .collect();
                    let mut labels = vec![
                        ("arn".to_string(), r.arn.clone()),
                        ("account".to_string(), id.clone()),
                        ("region".to_string(), region.clone()),
                        ("resource_type".to_string(), job.resource_type.clone()),
                    ];
                    labels.extend(tags.iter().cloned());
                    info.push(Series { name: "aws_resource_info".into(), help: "Resources selected by CloudWatch discovery jobs, with their exported tags".into(), labels, value: 1.0 });
                    for m in &job.metrics {
                        for stat in &job.statistics {
                            queries.push(MetricQuery {
                                namespace: job.namespace.clone(),
                                metric_name: m.clone(),
                                dimensions: vec![(job.dimension.clone(), r.id.clone())],
                                statistic: stat.clone(),
                                period_secs: job.period_secs,
                                length_secs: job.length_secs,
                                delay_secs: job.delay_secs,
                                extra_labels: tags.clone(),
                            });
                        }
                    }
                }
            }
            for job in &s.statics {
                for m in &job.metrics {
                    for stat in &job.statistics {
                        queries.push(MetricQuery {
                            namespace: job.namespace.clone(),
                            metric_name: m.clone(),
                            dimensions: job.dimensions.clone(),
                            statistic: stat.clone(),
                            period_secs: job.period_secs,
                            length_secs: job.length_secs,
                            delay_secs: job.delay_secs,
                            extra_labels: vec![],
                        });
                    }
                }
            }
            if !queries.is_empty() {
                targets.push(Target { account: ai, account_id: id.clone(), region: region.clone(), queries });
            }
        }
    }

    let mut detail = CloudWatchDetail { queries: targets.iter().map(|t| t.queries.len() as u64).sum(), ..Default::default() };
    let mut units: Vec<futures::future::BoxFuture<'_, (usize, Result<cloudwatch::CloudWatchFetch, String>)>> = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let account = &d.aws.accounts[t.account];
        units.push(Box::pin(async move {
            let batches = cloudwatch::plan(&t.queries, now);
            (i, cloudwatch::fetch(&d.aws, account, &t.region, &t.queries, &batches).await)
        }));
    }
    let fetches = stream::iter(units).buffer_unordered(s.max_concurrency.max(1)).collect::<Vec<_>>();
    let results = tokio::select! {
        r = fetches => r,
        _ = cancel.cancelled() => {
            let mut out = JobOutput::failed("cancelled by shutdown".into());
            out.outcome = RunOutcome::Cancelled;
            return out;
        }
    };
    let mut series = Vec::new();
    let mut ok = 0;
    for (i, r) in results {
        let t = &targets[i];
        match r {
            Ok(f) => {
                ok += 1;
                detail.calls += f.calls;
                detail.metrics_requested += f.metrics_requested;
                for sample in f.samples {
                    let q = &t.queries[sample.query];
                    series.push(Series {
                        name: exposition_name(&q.namespace, &q.metric_name, &q.statistic),
                        help: format!("CloudWatch {} {} {}", q.namespace, q.metric_name, q.statistic),
                        labels: base_labels(&t.account_id, &t.region, q),
                        value: sample.value,
                    });
                }
            }
            Err(error) => failures.push(ScopeFailure {
                account: d.aws.accounts[t.account].spec.name.clone(),
                account_id: Some(t.account_id.clone()),
                region: Some(t.region.clone()),
                source: "cloudwatch:GetMetricData".into(),
                error,
            }),
        }
    }
    d.add_cloudwatch_metrics_requested(detail.metrics_requested);
    detail.series = series.len() as u64;
    let outcome = if failures.is_empty() {
        RunOutcome::Success
    } else if ok == 0 && !targets.is_empty() {
        RunOutcome::Failed
    } else {
        RunOutcome::Partial
    };
    if outcome != RunOutcome::Failed {
        series.extend(info);
        d.set_cloudwatch_series(series);
    }
    JobOutput { outcome, items: detail.series, failures, error: None, detail: Detail::CloudWatch(detail) }
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
}
