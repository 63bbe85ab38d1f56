//! The Cost Explorer job: daily cost by service, linked account and each configured cost-allocation tag,
//! persisted per day. Requests cost money, so a run asks only for the days that can still change, and does
//! nothing at all when the previous fetch is younger than the minimum interval (even across restarts: the
//! fetch log is in the database). Nothing here is ever on the scrape path.

use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use collector::aws::costexplorer::{self, GroupKey};
use serde::Serialize;

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use prometheus_client::metrics::family::Family;

use super::{Job, JobContext, JobOutput, Published, Registration, Render};
use crate::config::check::{collector, item, key, Checker, Shared, MAX_INTERVAL_SECS};
use crate::config::schema::CostExplorerSection;
use crate::config::{Config, Job as Scheduled};
use crate::metrics::{cost_labels, windows_of, CostGauge, Exposition, FloatGauge};
use crate::store::{RunOutcome, Store, StoreError};

pub const NAME: &str = "cost_explorer";

pub fn register(config: &Config) -> Option<Registration> {
    let j = config.cost_explorer.as_ref()?;
    Some(Registration::new(j.schedule.clone(), CostExplorer { settings: j.settings.clone() }))
}

pub struct CostExplorer {
    pub settings: CostExplorerSettings,
}

impl Job for CostExplorer {
    fn name(&self) -> &'static str {
        NAME
    }

    fn restore<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, Result<Option<Published>, String>> {
        Box::pin(async move {
            let costs = cost_windows(&ctx.store, ctx.now).await.map_err(|e| e.to_string())?;
            Ok(Some(std::sync::Arc::new(CostView { costs }) as Published))
        })
    }

    fn run<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, JobOutput> {
        Box::pin(async move {
            let out = run(ctx, &self.settings).await;
            // The windows move with the day even when nothing was fetched.
            match cost_windows(&ctx.store, ctx.now).await {
                Ok(costs) => out.publish(CostView { costs }),
                Err(error) => {
                    tracing::error!(%error, "cannot read costs; /metrics keeps the previous cost windows");
                    out
                }
            }
        })
    }
}

/// What `/metrics` shows of Cost Explorer's costs.
pub struct CostView {
    pub costs: Vec<CostGauge>,
}

impl Render for CostView {
    fn render(&self, out: &mut Exposition) {
        let costs = Family::<Vec<(String, String)>, FloatGauge>::default();
        for c in &self.costs {
            costs.get_or_create(&cost_labels(c)).set(c.usd);
        }
        out.cloudwarden().register(
            "cost_usd",
            "Cost from Cost Explorer per window (yesterday, last_7_days, month_to_date) and scope (total, service, \
             account, tag)",
            costs,
        );
    }
}

/// Sums the stored daily costs into the exported windows, relative to `now` (UTC days): yesterday, the
/// last seven full days, and the month to date (today's partial day included).
pub async fn cost_windows(store: &Store, now: DateTime<Utc>) -> Result<Vec<CostGauge>, StoreError> {
    use chrono::{Datelike, Days};
    use collector::aws::costexplorer::CostMetric;
    use rust_decimal::prelude::ToPrimitive;
    use rust_decimal::Decimal;

    let today = now.date_naive();
    let month_start = today.with_day(1).unwrap_or(today);
    let week_start = today - Days::new(7);
    let from = month_start.min(week_start);
    let mut out = Vec::new();
    for metric in CostMetric::ALL {
        let days = store.cost_days(metric, from, today + Days::new(1)).await?;
        let mut sums: BTreeMap<(&'static str, String, String), Decimal> = BTreeMap::new();
        for d in &days {
            for w in windows_of(d.day, today) {
                collector::money::add_to(sums.entry((w, d.dimension.clone(), d.key.clone())).or_default(), d.amount)?;
                if d.dimension == "service" {
                    collector::money::add_to(sums.entry((w, "total".into(), String::new())).or_default(), d.amount)?;
                }
            }
        }
        for ((window, dimension, key), amount) in sums {
            out.push(CostGauge {
                window,
                cost_type: metric.as_str(),
                dimension,
                key,
                usd: amount.to_f64().unwrap_or(0.0),
            });
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
pub struct CostExplorerSettings {
    /// The configured account whose credentials ask (the organisation's management account).
    pub account: String,
    /// Days fetched the first time.
    pub lookback_days: u32,
    /// Days before today that are fetched again each time (today is always included).
    pub open_days: u32,
    /// Cost-allocation tag keys to group by, each costing its own requests.
    pub tag_keys: Vec<String>,
    /// A fetch younger than this makes the run a no-op.
    pub min_interval: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct CostExplorerDetail {
    /// Why no request was made, when none was.
    pub skipped: Option<String>,
    pub window_start: Option<NaiveDate>,
    /// Exclusive.
    pub window_end: Option<NaiveDate>,
    pub requests: u64,
    pub rows: u64,
}

/// The days to ask for at `now`: from `open_days` before today (or from where the previous fetch left
/// off, if that is earlier, so a daemon that was down catches up; at most `lookback_days` back) through
/// today. The first fetch goes `lookback_days` back.
pub fn window(now: DateTime<Utc>, last_end: Option<NaiveDate>, s: &CostExplorerSettings) -> (NaiveDate, NaiveDate) {
    let today = now.date_naive();
    let end = today + Days::new(1);
    let floor = today - Days::new(s.lookback_days as u64);
    let start = match last_end {
        None => floor,
        Some(last_end) => {
            (today - Days::new(s.open_days as u64)).min(last_end - Days::new(s.open_days as u64)).max(floor)
        }
    };
    (start, end)
}

fn groups(s: &CostExplorerSettings) -> Vec<GroupKey> {
    let mut g = vec![GroupKey::Service, GroupKey::LinkedAccount];
    g.extend(s.tag_keys.iter().cloned().map(GroupKey::Tag));
    g
}

async fn run(ctx: &JobContext, s: &CostExplorerSettings) -> JobOutput {
    let now = ctx.now;
    let mut detail = CostExplorerDetail { skipped: None, window_start: None, window_end: None, requests: 0, rows: 0 };
    let last = match ctx.store.last_cost_fetch().await {
        Ok(l) => l,
        Err(e) => return JobOutput::failed(e.to_string()),
    };
    if let Some(l) = &last {
        let age = (now - l.fetched_at).to_std().unwrap_or_default();
        if age < s.min_interval {
            detail.skipped = Some(format!(
                "the last fetch was {}s ago; the minimum interval is {}s",
                age.as_secs(),
                s.min_interval.as_secs()
            ));
            return JobOutput::new(RunOutcome::Skipped, 0).with_detail(detail);
        }
    }
    let account = match ctx.account(&s.account) {
        Ok(a) => a,
        Err(e) => return JobOutput::failed(e),
    };
    let (start, end) = window(now, last.map(|l| l.window_end), s);
    detail.window_start = Some(start);
    detail.window_end = Some(end);
    let groups = groups(s);
    let fetched = tokio::select! {
        f = costexplorer::fetch(&ctx.aws, account, start, end, &groups) => f,
        _ = ctx.cancel.cancelled() => return JobOutput::cancelled(),
    };
    let fetch = match fetched {
        Ok(f) => f,
        Err(e) => return JobOutput::failed(e.to_string()),
    };
    detail.requests = fetch.requests;
    let dimensions: Vec<String> = groups.iter().map(GroupKey::dimension).collect();
    // Not cancellable: a shutdown waits for this write.
    match ctx.store.record_costs(&fetch, &dimensions, start, end, now).await {
        Ok(n) => {
            detail.rows = n;
            JobOutput::new(RunOutcome::Success, n).with_detail(detail)
        }
        Err(e) => JobOutput::failed(e.to_string()).with_detail(detail),
    }
}

/// Checks `[collectors.cost_explorer]`: its settings when it is enabled and valid.
pub(crate) fn check(
    cx: &mut Checker<'_>,
    s: &CostExplorerSection,
    shared: &Shared<'_>,
) -> Option<Scheduled<CostExplorerSettings>> {
    let base = collector(NAME);
    let account = cx.account(&base, s.account.as_ref(), shared);
    if !(1..=400).contains(&s.lookback_days) {
        cx.error(&key(&base, "lookback_days"), "must be between 1 and 400 (Cost Explorer keeps about 13 months)");
    }
    if s.open_days > 60 {
        cx.error(&key(&base, "open_days"), "must be at most 60");
    }
    for (i, k) in s.tag_keys.iter().enumerate() {
        if k.trim().is_empty() {
            cx.error(&item(&base, "tag_keys", i), "must not be empty");
        }
    }
    if let Some(m) = s.min_interval_secs {
        cx.at_most(&key(&base, "min_interval_secs"), m.into(), MAX_INTERVAL_SECS, false);
    }
    let schedule = cx.schedule(&base, s.interval_secs, s.cron.as_deref(), DEFAULT_INTERVAL_SECS)?;
    let min_interval = Duration::from_secs(s.min_interval_secs.or(s.interval_secs).unwrap_or(DEFAULT_INTERVAL_SECS));
    let settings = CostExplorerSettings {
        account: account?,
        lookback_days: s.lookback_days,
        open_days: s.open_days,
        tag_keys: s.tag_keys.clone(),
        min_interval,
    };
    s.enabled.then_some(Scheduled { schedule, settings })
}

/// How often Cost Explorer is asked by default: every 6 hours (each request is billed).
const DEFAULT_INTERVAL_SECS: u64 = 6 * 3600;

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CostExplorerSettings {
        CostExplorerSettings {
            account: "m".into(),
            lookback_days: 90,
            open_days: 3,
            tag_keys: vec!["team".into()],
            min_interval: Duration::from_secs(6 * 3600),
        }
    }

    fn check(now: &str, last_end: Option<&str>, want: (&str, &str)) {
        let now: DateTime<Utc> = now.parse().unwrap();
        let last_end = last_end.map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap());
        let (s, e) = window(now, last_end, &settings());
        assert_eq!((s.to_string().as_str(), e.to_string().as_str()), want, "now {now}, last end {last_end:?}");
    }

    #[test]
    fn windows() {
        // First fetch: the whole lookback, today included.
        check("2026-11-25T10:00:00Z", None, ("2026-08-27", "2026-11-26"));
        // Steady state: only the open days.
        check("2026-11-25T16:00:00Z", Some("2026-11-26"), ("2026-11-22", "2026-11-26"));
        // The next day.
        check("2026-11-26T01:00:00Z", Some("2026-11-26"), ("2026-11-23", "2026-11-27"));
        // Down for ten days: catch up from where the last fetch left off.
        check("2026-12-05T01:00:00Z", Some("2026-11-26"), ("2026-11-23", "2026-12-06"));
        // Down for a year: never more than the lookback.
        check("2027-12-05T01:00:00Z", Some("2026-11-26"), ("2027-09-06", "2027-12-06"));
        assert_eq!(groups(&settings()), [GroupKey::Service, GroupKey::LinkedAccount, GroupKey::Tag("team".into())]);
    }
}
