//! The Cost Explorer job: daily cost by service, linked account and each configured cost-allocation tag,
//! persisted per day. Requests cost money, so a run asks only for the days that can still change, and does
//! nothing at all when the previous fetch is younger than the minimum interval (even across restarts: the
//! fetch log is in the database). Nothing here is ever on the scrape path.

use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use collector::aws::costexplorer::{self, GroupKey};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Detail, JobOutput};
use crate::daemon::Daemon;
use crate::store::RunOutcome;

pub const NAME: &str = "cost_explorer";

/// Price of one GetCostAndUsage request, in USD.
pub const REQUEST_PRICE_USD: f64 = 0.01;

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

pub async fn run(d: &Daemon, s: &CostExplorerSettings, now: DateTime<Utc>, cancel: &CancellationToken) -> JobOutput {
    let mut detail = CostExplorerDetail { skipped: None, window_start: None, window_end: None, requests: 0, rows: 0 };
    let last = match d.store.last_cost_fetch().await {
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
            return JobOutput {
                outcome: RunOutcome::Skipped,
                items: 0,
                failures: vec![],
                error: None,
                detail: Detail::CostExplorer(detail),
            };
        }
    }
    let Some(account) = d.aws.accounts.iter().find(|a| a.spec.name == s.account) else {
        return JobOutput::failed(format!("no configured account is named {:?}", s.account));
    };
    let (start, end) = window(now, last.map(|l| l.window_end), s);
    detail.window_start = Some(start);
    detail.window_end = Some(end);
    let groups = groups(s);
    let fetched = tokio::select! {
        f = costexplorer::fetch(&d.aws, account, start, end, &groups) => f,
        _ = cancel.cancelled() => {
            let mut out = JobOutput::failed("cancelled by shutdown".into());
            out.outcome = RunOutcome::Cancelled;
            return out;
        }
    };
    let fetch = match fetched {
        Ok(f) => f,
        Err(e) => return JobOutput::failed(e),
    };
    detail.requests = fetch.requests;
    let dimensions: Vec<String> = groups.iter().map(GroupKey::dimension).collect();
    // Not cancellable: a shutdown waits for this write.
    match d.store.record_costs(&fetch, &dimensions, start, end, now).await {
        Ok(n) => {
            detail.rows = n;
            JobOutput {
                outcome: RunOutcome::Success,
                items: n,
                failures: vec![],
                error: None,
                detail: Detail::CostExplorer(detail),
            }
        }
        Err(e) => {
            let mut out = JobOutput::failed(e.to_string());
            out.detail = Detail::CostExplorer(detail);
            out
        }
    }
}

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
