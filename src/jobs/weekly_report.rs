//! The scheduled weekly cost report: on its cron schedule (default Monday 08:00 UTC) the report of the last
//! complete week is built from the store and delivered to each configured delivery that does not have it yet.
//!
//! Each (week, delivery) is a row in the store: opened when the week's report is first due, marked
//! delivered by the attempt that succeeds, never sent again after that. A failed delivery is retried with
//! backoff (10 s, doubling, at most 10 minutes) while its week is the last complete one; the deliveries that
//! succeeded are not repeated. A due report first waits, at most `wait_for_data_secs`, for its cost source to
//! have run since the week ended, so it is not built from a stale store.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Days, Utc};
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tracing::{info, warn};

use super::rules::RuleSource;
use super::{Job, JobContext, JobOutput, Published, Registration, Render};
use crate::config::Config;
use crate::metrics::{labels, Exposition, Labels};
use crate::notify::webhook;
use crate::report::deliver::{Deliverer, Rendered};
use crate::report::{self, CostSource, Week, WeeklyReportSettings};
use crate::runtime::backoff;
use crate::store::{DeliveryRecord, DeliveryState, RunOutcome};

pub const NAME: &str = "weekly_report";
/// The `report` label of the metrics and the store's key.
pub const REPORT: &str = "weekly";
/// How soon a report that waits for its cost data looks again.
pub const DATA_RETRY: std::time::Duration = std::time::Duration::from_secs(60);
/// The outcomes `cloudwarden_reports_total` counts.
pub const OUTCOMES: [&str; 2] = ["success", "failure"];

/// Registered when `[reports.weekly]` names at least one delivery.
pub fn register(config: &Config) -> Option<Registration> {
    let settings = config.weekly_report.as_ref().filter(|s| !s.deliveries.is_empty())?;
    Some(Registration::new(
        settings.schedule.clone(),
        WeeklyReportJob {
            settings: settings.clone(),
            rule_sources: config.rules.as_ref().map(|r| r.settings.sources.clone()),
            cleanup: config.cleanup.is_some(),
            counts: BTreeMap::new(),
            last_success: None,
            http: OnceLock::new(),
        },
    ))
}

pub struct WeeklyReportJob {
    settings: WeeklyReportSettings,
    /// The rule files, for the budgets and anomalies the report shows.
    rule_sources: Option<Vec<RuleSource>>,
    cleanup: bool,
    /// Attempts since start by (delivery, outcome).
    counts: BTreeMap<(String, &'static str), u64>,
    /// When a week's report was last delivered to every delivery.
    last_success: Option<DateTime<Utc>>,
    /// The webhook client, built at the first webhook (it reads the system's certificates).
    http: OnceLock<webhook::Client>,
}

/// What one run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReportRun {
    pub week: String,
    /// The cost source has not run since the week ended: nothing was built yet.
    pub waiting_for_data: bool,
    /// Deliveries made by this run.
    pub delivered: Vec<String>,
    /// Deliveries that failed in this run, with why.
    pub failed: Vec<(String, String)>,
    /// Deliveries that had this week's report before the run.
    pub already_delivered: Vec<String>,
}

/// The job's metrics: what it published.
pub struct ReportView {
    /// The configured deliveries' names.
    pub deliveries: Vec<String>,
    /// Attempts since start by (delivery, outcome).
    pub counts: BTreeMap<(String, &'static str), u64>,
    /// When a week's report last reached every delivery.
    pub last_success: Option<DateTime<Utc>>,
}

impl Render for ReportView {
    fn render(&self, out: &mut Exposition) {
        let reg = out.cloudwarden();
        let total = Family::<Labels, Counter>::default();
        for d in &self.deliveries {
            for outcome in OUTCOMES {
                let _ = total.get_or_create(&labels(&[("report", REPORT), ("delivery", d), ("outcome", outcome)]));
            }
        }
        for ((d, outcome), n) in &self.counts {
            total.get_or_create(&labels(&[("report", REPORT), ("delivery", d), ("outcome", outcome)])).inc_by(*n);
        }
        reg.register(
            "reports",
            "Report delivery attempts since start, by report, delivery and outcome (success or failure)",
            total,
        );
        if let Some(t) = self.last_success {
            let last = Family::<Labels, Gauge>::default();
            last.get_or_create(&labels(&[("report", REPORT)])).set(t.timestamp());
            reg.register(
                "report_last_success_timestamp_seconds",
                "When a report was last delivered to every one of its deliveries (Unix seconds)",
                last,
            );
        }
    }
}

/// The newest time one period's report had been delivered to every one of `deliveries`.
fn last_complete_delivery(rows: &[DeliveryRecord], deliveries: &[&str]) -> Option<DateTime<Utc>> {
    let mut by_period: BTreeMap<&str, Vec<&DeliveryRecord>> = BTreeMap::new();
    for r in rows {
        by_period.entry(r.period.as_str()).or_default().push(r);
    }
    by_period
        .values()
        .filter_map(|rows| {
            let times: Option<Vec<DateTime<Utc>>> = deliveries
                .iter()
                .map(|d| {
                    rows.iter()
                        .find(|r| r.delivery == *d && r.state == DeliveryState::Delivered)
                        .and_then(|r| r.delivered)
                })
                .collect();
            times.and_then(|t| t.into_iter().max())
        })
        .max()
}

impl WeeklyReportJob {
    fn names(&self) -> Vec<&str> {
        self.settings.deliveries.iter().map(|d| d.name.as_str()).collect()
    }

    fn view(&self) -> ReportView {
        ReportView {
            deliveries: self.names().into_iter().map(String::from).collect(),
            counts: self.counts.clone(),
            last_success: self.last_success,
        }
    }

    /// Whether the cost source has had a successful run that started after the week ended.
    async fn data_is_fresh(&self, ctx: &JobContext, week: Week) -> Result<bool, String> {
        let source = match self.settings.cost_source {
            CostSource::BillingFiles => super::billing_files::NAME,
            CostSource::CostExplorer => super::cost_explorer::NAME,
        };
        let week_over = (week.end() + Days::new(1)).and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        let successes = ctx.store.last_successes().await.map_err(|e| e.to_string())?;
        Ok(successes.iter().any(|(name, ended, secs)| {
            let started = *ended - chrono::Duration::milliseconds((secs * 1000.0) as i64);
            name == source && week_over.is_some_and(|w| started >= w)
        }))
    }

    async fn go(&mut self, ctx: &JobContext, run: &mut ReportRun) -> Result<JobOutput, String> {
        let week = Week::last_complete(ctx.now);
        let period = week.to_string();
        run.week = period.clone();
        let pairs: Vec<(&str, &str)> =
            self.settings.deliveries.iter().map(|d| (d.name.as_str(), d.target.kind())).collect();
        let rows = ctx
            .store
            .open_report_deliveries(REPORT, &period, &pairs, ctx.now)
            .await
            .map_err(|e| format!("cannot read the deliveries of {period}: {e}"))?;
        let delivered = |name: &str| rows.iter().any(|r| r.delivery == name && r.state == DeliveryState::Delivered);
        run.already_delivered = self.names().into_iter().filter(|n| delivered(n)).map(String::from).collect();
        let due: Vec<_> = self.settings.deliveries.iter().filter(|d| !delivered(&d.name)).cloned().collect();
        if due.is_empty() {
            return Ok(JobOutput::new(RunOutcome::Skipped, 0));
        }
        let first_seen = rows.iter().map(|r| r.first_seen).min().unwrap_or(ctx.now);
        let wait = chrono::Duration::from_std(self.settings.wait_for_data).unwrap_or(chrono::Duration::zero());
        if ctx.now < first_seen + wait && !self.data_is_fresh(ctx, week).await? {
            run.waiting_for_data = true;
            let retry = ctx.now + chrono::Duration::from_std(DATA_RETRY).unwrap_or(chrono::Duration::zero());
            let mut out = JobOutput::new(RunOutcome::Skipped, 0).retry_at(retry.min(first_seen + wait));
            out.error = Some(format!(
                "the report of {period} waits for its cost source to run after the week's end (at most until {})",
                (first_seen + wait).to_rfc3339()
            ));
            return Ok(out);
        }
        let rules = match &self.rule_sources {
            Some(sources) => Some(report::read_rules(sources.clone()).await.map_err(|e| format!("{e:#}"))?),
            None => None,
        };
        let built = report::from_store(&ctx.store, week, &self.settings, rules.as_ref(), self.cleanup, ctx.now)
            .await
            .map_err(|e| format!("cannot build the report of {period}: {e:#}"))?;
        let built = Arc::new(built);
        let for_render = built.clone();
        let files = tokio::task::spawn_blocking(move || Rendered::new(&for_render, week))
            .await
            .map_err(|e| format!("rendering the report of {period}: {e}"))?
            .map_err(|e| format!("rendering the report of {period}: {e:#}"))?;
        let http = self.http.get_or_init(|| webhook::Client::new(std::time::Duration::from_secs(10)));
        let deliverer =
            Deliverer { aws: &ctx.aws, http, formats: &self.settings.formats, link: self.settings.link.as_deref() };
        let mut most_attempts = 0;
        for d in &due {
            if ctx.cancel.is_cancelled() {
                break;
            }
            let result = deliverer.deliver(d, &built, &files).await;
            let at = ctx.clock.now();
            let recorded = match &result {
                Ok(done) => {
                    info!(report = REPORT, week = %period, delivery = %d.name, target = %done.target, "report delivered");
                    ctx.store
                        .record_report_attempt(
                            REPORT,
                            &period,
                            &d.name,
                            at,
                            Ok((&done.target, done.response.as_deref())),
                        )
                        .await
                }
                Err(error) => {
                    warn!(report = REPORT, week = %period, delivery = %d.name, %error, "report delivery failed");
                    ctx.store.record_report_attempt(REPORT, &period, &d.name, at, Err(error)).await
                }
            };
            let outcome = if result.is_ok() { "success" } else { "failure" };
            *self.counts.entry((d.name.clone(), outcome)).or_default() += 1;
            match result {
                Ok(_) => run.delivered.push(d.name.clone()),
                Err(e) => {
                    let attempts =
                        rows.iter().find(|r| r.delivery == d.name).map_or(0, |r| r.attempts).saturating_add(1);
                    most_attempts = most_attempts.max(attempts);
                    run.failed.push((d.name.clone(), e));
                }
            }
            if let Err(e) = recorded {
                // The delivery happened (or not) but is not on record: the run fails, so it is looked at again.
                return Err(format!("cannot record the delivery {} of {period}: {e}", d.name));
            }
        }
        if run.delivered.len() + run.failed.len() < due.len() {
            // Shutdown came between deliveries: the others are made at the next start.
            return Ok(JobOutput::cancelled());
        }
        let out = if run.failed.is_empty() {
            JobOutput::new(RunOutcome::Success, run.delivered.len() as u64)
        } else {
            let outcome = if run.delivered.is_empty() { RunOutcome::Failed } else { RunOutcome::Partial };
            let error = run.failed.iter().map(|(d, e)| format!("{d}: {e}")).collect::<Vec<_>>().join("; ");
            let retry = chrono::Duration::from_std(backoff(u32::try_from(most_attempts).unwrap_or(u32::MAX)))
                .unwrap_or(chrono::Duration::zero());
            let mut out = JobOutput::new(outcome, run.delivered.len() as u64).retry_at(ctx.clock.now() + retry);
            out.error = Some(error);
            out
        };
        if run.failed.is_empty() {
            self.last_success = Some(ctx.clock.now());
        }
        Ok(out)
    }
}

impl Job for WeeklyReportJob {
    fn name(&self) -> &'static str {
        NAME
    }

    fn collects(&self) -> bool {
        false
    }

    fn restore<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, Result<Option<Published>, String>> {
        Box::pin(async move {
            let rows = ctx.store.report_deliveries(REPORT, None).await.map_err(|e| e.to_string())?;
            self.last_success = last_complete_delivery(&rows, &self.names());
            Ok(Some(Arc::new(self.view()) as Published))
        })
    }

    fn run<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, JobOutput> {
        Box::pin(async move {
            let mut run = ReportRun::default();
            let out = match self.go(ctx, &mut run).await {
                Ok(out) => out,
                Err(e) => JobOutput::failed(e),
            };
            out.with_detail(run).publish(self.view())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(period: &str, delivery: &str, delivered: Option<i64>) -> DeliveryRecord {
        DeliveryRecord {
            report: REPORT.into(),
            period: period.into(),
            delivery: delivery.into(),
            kind: "directory".into(),
            state: if delivered.is_some() { DeliveryState::Delivered } else { DeliveryState::Failed },
            attempts: 1,
            first_seen: DateTime::from_timestamp(0, 0).unwrap(),
            last_attempt: None,
            delivered: delivered.and_then(|s| DateTime::from_timestamp(s, 0)),
            last_error: None,
            target: None,
            response: None,
        }
    }

    #[test]
    fn last_success_needs_every_delivery() {
        let rows = [
            row("2026-W48", "a", Some(100)),
            row("2026-W48", "b", Some(300)),
            row("2026-W49", "a", Some(1000)),
            row("2026-W49", "b", None),
        ];
        let t = |s| DateTime::from_timestamp(s, 0);
        assert_eq!(last_complete_delivery(&rows, &["a", "b"]), t(300));
        assert_eq!(last_complete_delivery(&rows, &["a"]), t(1000));
        // A delivery added since has no row in the old weeks: they are not complete for it.
        assert_eq!(last_complete_delivery(&rows, &["a", "b", "c"]), None);
        assert_eq!(last_complete_delivery(&[], &["a"]), None);
    }
}
