//! Reading a week's report input from the store: no AWS call.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use collector::aws::costexplorer::CostMetric;
use rules::file::RuleFile;
use rules::finding::FindingKind;
use rust_decimal::Decimal;

use super::{
    AnomalyLine, BudgetLine, CleanupWeek, ComplianceLine, ComplianceWeek, CostRow, Costs, GroupedCosts, ReportInput,
    Week, AVERAGE_WEEKS,
};
use crate::jobs::rules::{cost_days_needed, daily_costs};
use crate::store::{FindingFilter, PlanFilter, PlanState, Store, StoreError};

/// Where a report's costs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostSource {
    /// The billing export files the billing files collector loaded (FOCUS or CUR): every charge with its
    /// account, service and tags.
    BillingFiles,
    /// Cost Explorer's daily costs by service, account and tag.
    CostExplorer,
}

impl CostSource {
    pub fn parse(s: &str) -> Option<CostSource> {
        match s {
            "billing_files" => Some(CostSource::BillingFiles),
            "cost_explorer" => Some(CostSource::CostExplorer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CostSource::BillingFiles => "billing_files",
            CostSource::CostExplorer => "cost_explorer",
        }
    }
}

/// The first instant after `day`.
fn after(day: NaiveDate) -> DateTime<Utc> {
    (day + Days::new(1)).and_time(NaiveTime::MIN).and_utc()
}

/// What the report of `week` needs, read from `store`: costs of the five weeks ending with it, the
/// anomalies found on its days, the budgets at its end (when `rules` has any), and cleanup's part (when
/// `cleanup` is on).
#[allow(clippy::too_many_arguments)]
pub async fn gather(
    store: &Store,
    week: Week,
    source: CostSource,
    tag_keys: &[String],
    rules: Option<&RuleFile>,
    cleanup: bool,
    generated_at: DateTime<Utc>,
) -> Result<ReportInput, StoreError> {
    let (start, end) = (week.start(), week.end());
    let first = start - Days::new(7 * AVERAGE_WEEKS);
    let mut estimated_days = BTreeSet::new();
    let costs = match source {
        CostSource::BillingFiles => {
            let mut rows = Vec::new();
            store
                .for_each_billing_cost(first, end, |c| {
                    rows.push(CostRow {
                        day: c.day,
                        account_id: Some(c.sub_account_id),
                        service: Some(c.service_name),
                        tags: Some(c.tags),
                        currency: c.currency,
                        amount: c.effective_cost,
                    })
                })
                .await?;
            Costs::Detailed(rows)
        }
        CostSource::CostExplorer => {
            let mut grouped = GroupedCosts::default();
            for d in store.cost_days(CostMetric::Amortized, first, end + Days::new(1)).await? {
                if d.estimated {
                    estimated_days.insert(d.day);
                }
                match d.dimension.as_str() {
                    "service" => grouped.by_service.push((d.day, d.key, d.amount)),
                    "account" => grouped.by_account.push((d.day, d.key, d.amount)),
                    other => {
                        if let Some(key) = other.strip_prefix("tag:") {
                            grouped.by_tag.entry(key.to_string()).or_default().push((d.day, d.key, d.amount));
                        }
                    }
                }
            }
            Costs::Grouped(grouped)
        }
    };

    // The configured names, else the names Cost Explorer gave.
    let mut account_names: BTreeMap<String, String> = store.ce_account_names().await?.into_iter().collect();
    account_names.extend(store.accounts().await?.into_iter().map(|(name, id)| (id, name)));

    let mut anomalies = Vec::new();
    let found = store.findings(FindingFilter { kind: Some(FindingKind::CostAnomaly), include_resolved: true }).await?;
    for f in found {
        let d = &f.details;
        let Some(day) = d["day"].as_str().and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()) else {
            continue;
        };
        if !(start..=end).contains(&day) {
            continue;
        }
        let money = |k: &str| d[k].as_str().and_then(|s| s.parse::<Decimal>().ok());
        let root_cause = d["root_cause"]
            .as_array()
            .map(|causes| {
                causes
                    .iter()
                    .filter_map(|c| {
                        // A contributor without a key (costs that carry no account) names nothing.
                        let (dim, key) = (c["dimension"].as_str()?, c["key"].as_str().filter(|k| !k.is_empty())?);
                        Some(match c["deviation_usd"].as_str().and_then(|s| s.parse::<Decimal>().ok()) {
                            Some(dev) => format!("{dim} {key} ({})", super::text::signed_usd(dev)),
                            None => format!("{dim} {key}"),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        anomalies.push(AnomalyLine {
            day,
            series_kind: d["series_kind"].as_str().unwrap_or_default().to_string(),
            key: d["key"].as_str().unwrap_or_default().to_string(),
            severity: f.severity.as_str().to_string(),
            actual_usd: money("actual_usd"),
            expected_usd: money("expected_usd"),
            impact_usd: money("impact_usd"),
            root_cause,
            message: f.message,
        });
    }

    let mut budgets = Vec::new();
    if let Some(rules) = rules.filter(|r| !r.budgets.is_empty()) {
        let (history, resource_days) = cost_days_needed(rules, end);
        let (costs, _, _) = daily_costs(store, end, history, resource_days).await?;
        // The budgets as they stood at the end of the week's last day.
        let at = after(end) - chrono::Duration::milliseconds(1);
        let evaluation = rules::budget::evaluate(&rules.budgets, &costs, at)
            .map_err(|e| StoreError::Corrupt { what: "budget costs", detail: e.to_string() })?;
        for s in evaluation.budgets {
            let status = if s.actual_usd > s.amount_usd {
                "over"
            } else if s.forecast_usd > s.amount_usd {
                "forecast_over"
            } else {
                "ok"
            };
            budgets.push(BudgetLine {
                name: s.name,
                scope: s.scope,
                period_start: s.period_start,
                period_end: s.period_end,
                amount_usd: s.amount_usd,
                actual_usd: s.actual_usd,
                forecast_usd: s.forecast_usd,
                status: status.into(),
            });
        }
    }

    let cleanup = if cleanup { Some(cleanup_week(store, start, end).await?) } else { None };
    let compliance = compliance_week(store, week, &account_names).await?;

    Ok(ReportInput {
        week,
        generated_at,
        source: source.as_str(),
        costs,
        estimated_days,
        account_names,
        tag_keys: tag_keys.to_vec(),
        anomalies,
        budgets,
        compliance,
        cleanup,
    })
}

/// Per account: resources in scope and compliant, summed over the resource types of a day.
fn per_account(days: &[crate::store::ComplianceDay]) -> BTreeMap<String, (i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for d in days {
        let e = out.entry(d.account_id.clone()).or_default();
        e.0 = e.0.saturating_add(d.in_scope);
        e.1 = e.1.saturating_add(d.compliant);
    }
    out
}

fn percent_of(compliant: i64, in_scope: i64) -> Option<Decimal> {
    (in_scope > 0).then(|| (Decimal::from(compliant) * Decimal::ONE_HUNDRED / Decimal::from(in_scope)).round_dp(2))
}

/// Tag compliance at the end of `week` and of the week before, per account.
async fn compliance_week(
    store: &Store,
    week: Week,
    names: &BTreeMap<String, String>,
) -> Result<ComplianceWeek, StoreError> {
    let now = store.compliance_as_of(week.end()).await?;
    let before = store.compliance_as_of(week.previous().end()).await?;
    let (as_of, previous_as_of) = (now.first().map(|d| d.day), before.first().map(|d| d.day));
    let (now, before) = (per_account(&now), per_account(&before));
    let accounts = now
        .iter()
        .map(|(account, (in_scope, compliant))| {
            let percent = percent_of(*compliant, *in_scope);
            let previous = before.get(account);
            let previous_percent = previous.and_then(|(s, c)| percent_of(*c, *s));
            ComplianceLine {
                account_id: account.clone(),
                account: names.get(account).cloned(),
                in_scope: *in_scope,
                compliant: *compliant,
                percent,
                previous_in_scope: previous.map(|(s, _)| *s),
                previous_percent,
                change_points: percent.zip(previous_percent).map(|(a, b)| a - b),
            }
        })
        .collect();
    Ok(ComplianceWeek { as_of, previous_as_of, accounts })
}

/// Cleanup's actions and savings of the week `start..=end`, and the plans under way at its end.
async fn cleanup_week(store: &Store, start: NaiveDate, end: NaiveDate) -> Result<CleanupWeek, StoreError> {
    let (from, to) = (start.and_time(NaiveTime::MIN).and_utc(), after(end));
    let hours = |a: DateTime<Utc>, b: DateTime<Utc>| Decimal::from((b - a).num_seconds().max(0)) / Decimal::from(3600);
    let per_hour = |monthly: Decimal| monthly / Decimal::from(rules::cleanup::HOURS_PER_MONTH);
    let mut w = CleanupWeek::default();
    let overflow = |e: rules::money::Overflow| StoreError::Corrupt { what: "cleanup savings", detail: e.to_string() };
    for p in store.plans(&PlanFilter::default()).await? {
        match p.state {
            PlanState::Done => {
                let Some(done) = p.done.filter(|d| *d < to) else { continue };
                if done >= from {
                    *w.actions_done.entry(p.action.clone()).or_default() += 1;
                }
                let Some(monthly) = p.monthly_usd else { continue };
                rules::money::add_to(&mut w.monthly_rate_usd, monthly).map_err(overflow)?;
                let rate = per_hour(monthly);
                let week = rate.checked_mul(hours(done.max(from), to)).unwrap_or_default();
                let since = rate.checked_mul(hours(done, to)).unwrap_or_default();
                rules::money::add_to(&mut w.saved_this_week_usd, week).map_err(overflow)?;
                rules::money::add_to(&mut w.saved_since_start_usd, since).map_err(overflow)?;
            }
            PlanState::Failed if p.updated >= from && p.updated < to => w.actions_failed += 1,
            PlanState::Marked | PlanState::Notified | PlanState::Approved if p.created < to => {
                w.pending_plans += 1;
                if let Some(m) = p.monthly_usd {
                    rules::money::add_to(&mut w.pending_monthly_usd, m).map_err(overflow)?;
                }
            }
            _ => {}
        }
    }
    Ok(w)
}
