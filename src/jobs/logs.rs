//! The Logs job: pattern counters over each configured log group, counting each time range once (the
//! counted-until mark is stored with the total), and the newest event time of every log group.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use collector::aws::logs;
use collector::ScopeFailure;
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;

use super::{Job, JobContext, JobOutput, Published, Registration, Render};
use crate::config::check::{collector, item, key, Checker, MAX_DELAY_SECS, MAX_LOOKBACK_SECS};
use crate::config::schema::LogsSection;
use crate::config::{Config, Job as Scheduled};
use crate::metrics::{labels, Exposition, FloatGauge};
use crate::store::{PatternCount, RunOutcome};

pub const NAME: &str = "logs";

pub fn register(config: &Config) -> Option<Registration> {
    let j = config.logs.as_ref()?;
    Some(Registration::new(j.schedule.clone(), Logs { settings: j.settings.clone(), last_events: BTreeMap::new() }))
}

/// (account, region, log group).
pub type GroupKey = (String, String, String);

pub struct Logs {
    pub settings: LogsSettings,
    /// The newest event time of each log group, as of its last check.
    last_events: BTreeMap<GroupKey, DateTime<Utc>>,
}

impl Job for Logs {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads_inventory(&self) -> bool {
        true
    }

    fn restore<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, Result<Option<Published>, String>> {
        Box::pin(async move {
            let patterns = ctx.store.pattern_counts().await.map_err(|e| e.to_string())?;
            Ok(Some(std::sync::Arc::new(LogsView { patterns, last_events: self.last_events.clone() }) as Published))
        })
    }

    fn run<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, JobOutput> {
        Box::pin(async move {
            let out = run(ctx, &self.settings, &mut self.last_events).await;
            match ctx.store.pattern_counts().await {
                Ok(patterns) => out.publish(LogsView { patterns, last_events: self.last_events.clone() }),
                Err(error) => {
                    tracing::error!(%error, "cannot read log counters; /metrics keeps the previous ones");
                    out
                }
            }
        })
    }
}

/// What `/metrics` shows of the Logs job.
pub struct LogsView {
    pub patterns: Vec<PatternCount>,
    pub last_events: BTreeMap<GroupKey, DateTime<Utc>>,
}

impl Render for LogsView {
    fn render(&self, out: &mut Exposition) {
        let reg = out.cloudwarden();
        let matches = Family::<Vec<(String, String)>, Counter>::default();
        for p in &self.patterns {
            matches
                .get_or_create(&labels(&[
                    ("account", &p.account_id),
                    ("region", &p.region),
                    ("log_group", &p.log_group),
                    ("pattern", &p.pattern_name),
                ]))
                .inc_by(p.matches.max(0) as u64);
        }
        reg.register(
            "log_pattern_matches",
            "Log events matching a configured filter pattern (kept across restarts)",
            matches,
        );
        let last_event = Family::<Vec<(String, String)>, FloatGauge>::default();
        for ((account, region, group), t) in &self.last_events {
            last_event
                .get_or_create(&labels(&[("account", account), ("region", region), ("log_group", group)]))
                .set(t.timestamp_millis() as f64 / 1000.0);
        }
        reg.register(
            "log_group_last_event_timestamp_seconds",
            "Unix time of the newest event of any stream of the log group",
            last_event,
        );
    }
}

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

async fn run(ctx: &JobContext, s: &LogsSettings, last_events: &mut BTreeMap<GroupKey, DateTime<Utc>>) -> JobOutput {
    let now = ctx.now;
    let mut detail = LogsDetail::default();
    let mut failures = Vec::new();
    let groups = match ctx.store.log_groups().await {
        Ok(g) => g,
        Err(e) => return JobOutput::failed(e.to_string()),
    };
    let counts: BTreeMap<(String, String, String, String), PatternCount> = match ctx.store.pattern_counts().await {
        Ok(c) => c
            .into_iter()
            .map(|c| ((c.account_id.clone(), c.region.clone(), c.log_group.clone(), c.pattern_name.clone()), c))
            .collect(),
        Err(e) => return JobOutput::failed(e.to_string()),
    };
    let ids: BTreeMap<String, String> = match ctx.store.accounts().await {
        Ok(a) => a.into_iter().map(|(name, id)| (id, name)).collect(),
        Err(e) => return JobOutput::failed(e.to_string()),
    };
    let account_of = |id: &str| ids.get(id).and_then(|name| ctx.aws.accounts.iter().find(|a| &a.spec.name == name));
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
                match logs::count_matches(&ctx.aws, account, region, group, &p.filter, start_ms, end_ms).await {
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
                        match ctx.store.add_pattern_matches(&counter, from, n as i64, end_ms).await {
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
                        error: error.to_string(),
                    }),
                }
            }
            if s.last_event_time {
                detail.log_groups_checked += 1;
                match logs::last_event_time(&ctx.aws, account, region, group).await {
                    Ok(t) => {
                        let key = (account_id.clone(), region.clone(), group.clone());
                        match t {
                            Some(t) => last_events.insert(key, t),
                            None => last_events.remove(&key),
                        };
                    }
                    Err(error) => failures.push(ScopeFailure {
                        account: account.spec.name.clone(),
                        account_id: Some(account_id.clone()),
                        region: Some(region.clone()),
                        source: "logs:DescribeLogStreams".into(),
                        error: error.to_string(),
                    }),
                }
            }
        }
        Ok(())
    };
    // Each counter's range is stored as soon as it is counted, so a cancelled run loses nothing.
    let result = tokio::select! {
        r = work => r,
        _ = ctx.cancel.cancelled() => return JobOutput::cancelled(),
    };
    if let Err(e) = result {
        return JobOutput::failed(e);
    }
    let outcome = if failures.is_empty() { RunOutcome::Success } else { RunOutcome::Partial };
    let mut out = JobOutput::new(outcome, detail.matches_added).with_detail(detail);
    out.failures = failures;
    out
}

/// Checks `[collectors.logs]`: its settings when it is enabled and valid.
pub(crate) fn check(cx: &mut Checker<'_>, s: &LogsSection) -> Option<Scheduled<LogsSettings>> {
    let base = collector(NAME);
    let mut names = std::collections::BTreeSet::new();
    let mut patterns = Vec::new();
    for (i, p) in s.patterns.iter().enumerate() {
        let at = |k| key(&item(&base, "patterns", i), k);
        if p.log_group.trim().is_empty() {
            cx.error(&at("log_group"), "must not be empty");
        }
        if p.name.trim().is_empty() {
            cx.error(&at("name"), "must not be empty");
        } else if !names.insert((p.log_group.clone(), p.name.clone())) {
            cx.error(&at("name"), format!("log group {:?} already has a pattern named {:?}", p.log_group, p.name));
        }
        if p.pattern.trim().is_empty() {
            cx.error(&at("pattern"), "must not be empty (an empty pattern matches every event)");
        }
        patterns.push(Pattern { log_group: p.log_group.clone(), name: p.name.clone(), filter: p.pattern.clone() });
    }
    cx.at_most(&key(&base, "delay_secs"), s.delay_secs.into(), MAX_DELAY_SECS, false);
    cx.at_most(&key(&base, "initial_lookback_secs"), s.initial_lookback_secs.into(), MAX_LOOKBACK_SECS, false);
    let schedule = cx.schedule(&base, s.interval_secs, s.cron.as_deref(), 300)?;
    let settings = LogsSettings {
        patterns,
        delay: Duration::from_secs(s.delay_secs),
        initial_lookback: Duration::from_secs(s.initial_lookback_secs),
        last_event_time: s.last_event_time,
    };
    s.enabled.then_some(Scheduled { schedule, settings })
}
