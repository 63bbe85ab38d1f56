//! The Logs job: pattern counters over each configured log group, counting each time range once (the
//! counted-until mark is stored with the total), and the newest event time of every log group.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use collector::aws::logs;
use collector::ScopeFailure;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Detail, JobOutput};
use crate::daemon::Daemon;
use crate::store::{PatternCount, RunOutcome};

pub const NAME: &str = "logs";

#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    /// Log group name, exactly.
    pub log_group: String,
    /// Label value of the counter.
    pub name: String,
    /// CloudWatch Logs filter pattern.
    pub filter: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogsSettings {
    pub patterns: Vec<Pattern>,
    /// Newest part of the timeline left for a later run (events arrive late).
    pub delay: Duration,
    /// How far back a new counter starts.
    pub initial_lookback: Duration,
    /// Read each log group's newest event time (one DescribeLogStreams call per group).
    pub last_event_time: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LogsDetail {
    pub counters: u64,
    pub matches_added: u64,
    pub log_groups_checked: u64,
}

pub async fn run(d: &Daemon, s: &LogsSettings, now: DateTime<Utc>, cancel: &CancellationToken) -> JobOutput {
    let mut detail = LogsDetail::default();
    let mut failures = Vec::new();
    let groups = match d.store.log_groups().await {
        Ok(g) => g,
        Err(e) => return JobOutput::failed(e.to_string()),
    };
    let counts: BTreeMap<(String, String, String, String), PatternCount> = match d.store.pattern_counts().await {
        Ok(c) => c
            .into_iter()
            .map(|c| ((c.account_id.clone(), c.region.clone(), c.log_group.clone(), c.pattern_name.clone()), c))
            .collect(),
        Err(e) => return JobOutput::failed(e.to_string()),
    };
    let ids: BTreeMap<String, String> = d.accounts().into_iter().map(|(name, id)| (id, name)).collect();
    let account_of = |id: &str| ids.get(id).and_then(|name| d.aws.accounts.iter().find(|a| &a.spec.name == name));
    // Saturating: the configuration bounds both durations, and nothing here may panic on them.
    let end_ms = now.timestamp_millis().saturating_sub(i64::try_from(s.delay.as_millis()).unwrap_or(i64::MAX));
    let lookback_ms = i64::try_from(s.initial_lookback.as_millis()).unwrap_or(i64::MAX);
    let work = async {
        for (account_id, region, group, _, _) in &groups {
            let Some(account) = account_of(account_id) else { continue };
            for p in s.patterns.iter().filter(|p| &p.log_group == group) {
                let key = (account_id.clone(), region.clone(), group.clone(), p.name.clone());
                let existing = counts.get(&key).filter(|c| c.filter_pattern == p.filter);
                let start_ms = existing.map_or(end_ms.saturating_sub(lookback_ms), |c| c.counted_until_ms);
                detail.counters += 1;
                if end_ms <= start_ms {
                    continue;
                }
                match logs::count_matches(&d.aws, account, region, group, &p.filter, start_ms, end_ms).await {
                    Ok((n, _)) => {
                        let counter = PatternCount {
                            account_id: account_id.clone(),
                            region: region.clone(),
                            log_group: group.clone(),
                            pattern_name: p.name.clone(),
                            filter_pattern: p.filter.clone(),
                            matches: 0,
                            counted_until_ms: end_ms,
                        };
                        let from = counts.get(&key).map_or(start_ms, |c| c.counted_until_ms);
                        match d.store.add_pattern_matches(&counter, from, n as i64, end_ms).await {
                            Ok(true) => detail.matches_added += n,
                            Ok(false) => {
                                tracing::warn!(log_group = %group, pattern = %p.name, "counter moved meanwhile; range not added")
                            }
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                    Err(error) => failures.push(ScopeFailure {
                        account: account.spec.name.clone(),
                        account_id: Some(account_id.clone()),
                        region: Some(region.clone()),
                        source: "logs:FilterLogEvents".into(),
                        error,
                    }),
                }
            }
            if s.last_event_time {
                detail.log_groups_checked += 1;
                match logs::last_event_time(&d.aws, account, region, group).await {
                    Ok(t) => d.set_log_group_last_event(account_id, region, group, t),
                    Err(error) => failures.push(ScopeFailure {
                        account: account.spec.name.clone(),
                        account_id: Some(account_id.clone()),
                        region: Some(region.clone()),
                        source: "logs:DescribeLogStreams".into(),
                        error,
                    }),
                }
            }
        }
        Ok(())
    };
    // Each counter's range is stored as soon as it is counted, so a cancelled run loses nothing.
    let result = tokio::select! {
        r = work => r,
        _ = cancel.cancelled() => {
            let mut out = JobOutput::failed("cancelled by shutdown".into());
            out.outcome = RunOutcome::Cancelled;
            return out;
        }
    };
    if let Err(e) = result {
        return JobOutput::failed(e);
    }
    let outcome = if failures.is_empty() { RunOutcome::Success } else { RunOutcome::Partial };
    JobOutput { outcome, items: detail.matches_added, failures, error: None, detail: Detail::Logs(detail) }
}
