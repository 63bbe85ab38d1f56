//! `cloudwarden cleanup plan` and `cloudwarden cleanup history`: what the cleanup job has planned and what
//! it would do next, and the audit trail. Both read the database only (no AWS call).

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::jobs::cleanup::{next_step, Step};
use crate::store::{AuditRow, Plan, PlanFilter, Store};

/// One plan and its next step.
#[derive(Debug, Serialize)]
pub struct PlanLine {
    #[serde(flatten)]
    pub plan: Plan,
    pub next: Step,
}

/// The plans under way and their next steps at `now`, oldest first.
pub async fn plan(config: &Config, now: DateTime<Utc>) -> anyhow::Result<(String, Vec<PlanLine>)> {
    let Some(cleanup) = &config.cleanup else {
        anyhow::bail!("cleanup is not enabled in the configuration (no [cleanup] section, or enabled = false)");
    };
    let store = Store::open_configured(&config.database, 2).await?;
    let plans = store.plans(&PlanFilter::active()).await?;
    store.close().await;
    let s = &cleanup.settings;
    let lines: Vec<PlanLine> = plans.into_iter().map(|p| PlanLine { next: next_step(&p, s, now), plan: p }).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cleanup mode {} at {}: {} plan(s) under way",
        s.mode.as_str(),
        now.format("%Y-%m-%d %H:%M UTC"),
        lines.len()
    );
    if !lines.is_empty() {
        let _ = writeln!(
            out,
            "\n{:>5} {:<10} {:<16} {:<24} {:<22} {:<11} {:>10}  NEXT",
            "PLAN", "STATE", "ACTION", "RESOURCE", "RULE", "DUE", "USD/MONTH"
        );
    }
    for l in &lines {
        let p = &l.plan;
        let next = match &l.next {
            Step::Recorded => "recorded (dry run: nothing is marked or done)".to_string(),
            Step::Mark => format!("mark: tag {}={}", s.mark_tag, p.mark_value),
            Step::Notify => format!("notify {}", p.owner),
            Step::Warn => format!("final warning to {}", p.owner),
            Step::Wait { until } => format!("wait until {}", until.format("%Y-%m-%d %H:%M")),
            Step::NeedsApproval => format!("due: needs approval (POST /api/v1/cleanup/{}/approve)", p.id),
            Step::Act => format!("due: pre-check, then {} at the next run", p.action),
            Step::Verify => "verify the action".to_string(),
            Step::Finished => p.state.to_string(),
        };
        let _ = writeln!(
            out,
            "{:>5} {:<10} {:<16} {:<24} {:<22} {:<11} {:>10}  {next}",
            p.id,
            p.state.as_str(),
            p.action,
            p.resource_id,
            p.rule,
            p.due.format("%Y-%m-%d"),
            p.monthly_usd.map(|d| d.round_dp(2).to_string()).unwrap_or_else(|| "-".into()),
        );
        let _ = writeln!(out, "      why: {}", p.reason);
    }
    Ok((out, lines))
}

/// The newest `limit` audit rows (of one plan when given), oldest first.
pub async fn history(config: &Config, plan: Option<i64>, limit: i64) -> anyhow::Result<(String, Vec<AuditRow>)> {
    let store = Store::open_configured(&config.database, 2).await?;
    // The newest rows: page through to the end, keeping the last `limit`.
    let mut rows: Vec<AuditRow> = Vec::new();
    let mut after = None;
    loop {
        let page = store.audit(plan, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        rows.extend(page);
        if rows.len() > limit as usize {
            rows.drain(..rows.len() - limit as usize);
        }
    }
    store.close().await;
    let mut out = String::new();
    for r in &rows {
        let _ = writeln!(
            out,
            "{} #{:<5} plan {:<5} {:<9} {:>9} -> {:<9} {} {}{}",
            r.at.format("%Y-%m-%d %H:%M:%S"),
            r.id,
            r.plan_id,
            r.actor,
            r.from_state.as_deref().unwrap_or("-"),
            r.to_state,
            r.action,
            r.detail,
            r.request_id.as_deref().map(|id| format!(" [request {id}]")).unwrap_or_default()
        );
    }
    if rows.is_empty() {
        out.push_str("no cleanup transitions recorded\n");
    }
    Ok((out, rows))
}
