//! Budgets: spend of a scope (everything, an account, a service or a tag value) over a calendar period
//! (month or quarter, UTC) against an amount in USD, with thresholds on actual spend and on the forecast.
//!
//! See `docs/budgets-and-anomalies.md` for the methods and an example rule file.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::anomaly::cost::daily::{cents, days_before, days_between, Baseline, Daily};
use crate::check::{Check, Problem, Seg};
use crate::finding::{Finding, FindingKind, Severity};
use crate::input::DailyCost;
use crate::money::{self, Overflow};

/// One budget as it appears under `[[budgets]]` in a rule file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetRule {
    /// Unique name of the budget: the finding's rule and the `budget` label of its metrics.
    pub name: String,
    /// Which spend counts against the budget (default: all of it).
    #[serde(default)]
    pub scope: BudgetScope,
    /// The calendar period the amount is for, in UTC: `month` or `quarter`.
    pub period: BudgetPeriod,
    /// The amount per period, in USD (a TOML integer, float or string: `5000`, `1250.50`, `"1250.50"`).
    #[serde(deserialize_with = "crate::anomaly::cost::daily::deserialize_usd")]
    pub amount_usd: Decimal,
    /// The percentages of the amount that raise findings (default: actual 80 and 100, forecast 100).
    #[serde(default)]
    pub thresholds: BudgetThresholds,
    /// Full weeks of daily history the forecast's weekday profile is taken from (default 4).
    #[serde(default = "default_history_weeks")]
    pub history_weeks: u32,
}

fn default_history_weeks() -> u32 {
    4
}

/// Which daily costs count against a budget. In a rule file: `scope = { type = "tag", key = "team", value =
/// "data" }`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BudgetScope {
    /// All spend.
    #[default]
    Total,
    /// The spend of one account.
    Account {
        /// The 12-digit AWS account id.
        account_id: String,
    },
    /// The spend of one service, named as the billing data names it (e.g. `AmazonEC2`).
    Service {
        /// The service name.
        service: String,
    },
    /// The spend carrying one tag value.
    Tag {
        /// The tag key (e.g. `team`).
        key: String,
        /// The tag value (e.g. `data`).
        value: String,
    },
}

impl BudgetScope {
    /// True when `cost` counts against a budget of this scope.
    pub fn matches(&self, cost: &DailyCost) -> bool {
        match self {
            BudgetScope::Total => true,
            BudgetScope::Account { account_id } => &cost.account_id == account_id,
            BudgetScope::Service { service } => &cost.service == service,
            BudgetScope::Tag { key, value } => cost.tags.get(key) == Some(value),
        }
    }

    /// A short label for people and metrics: `total`, `account:111122223333`, `service:AmazonEC2`,
    /// `tag:team=data`.
    pub fn label(&self) -> String {
        match self {
            BudgetScope::Total => "total".to_string(),
            BudgetScope::Account { account_id } => format!("account:{account_id}"),
            BudgetScope::Service { service } => format!("service:{service}"),
            BudgetScope::Tag { key, value } => format!("tag:{key}={value}"),
        }
    }
}

/// A budget's calendar period, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    /// A calendar month.
    Month,
    /// A calendar quarter: January to March, April to June, July to September, October to December.
    Quarter,
}

impl BudgetPeriod {
    /// `month` or `quarter`.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Month => "month",
            BudgetPeriod::Quarter => "quarter",
        }
    }

    /// The period containing `day`: its first day and the first day of the next period (exclusive end).
    pub fn bounds(self, day: NaiveDate) -> (NaiveDate, NaiveDate) {
        use chrono::Datelike;
        let months = match self {
            BudgetPeriod::Month => 1,
            BudgetPeriod::Quarter => 3,
        };
        let first_month = (day.month0() / months) * months + 1;
        let start = NaiveDate::from_ymd_opt(day.year(), first_month, 1).unwrap_or(day);
        let end = start.checked_add_months(chrono::Months::new(months)).unwrap_or(NaiveDate::MAX);
        (start, end)
    }

    /// Calendar months in the period (1 or 3).
    pub fn months(self) -> u32 {
        match self {
            BudgetPeriod::Month => 1,
            BudgetPeriod::Quarter => 3,
        }
    }
}

/// The percentages of a budget's amount that raise findings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetThresholds {
    /// Percentages of the amount that actual spend to date may reach (default `[80, 100]`).
    pub actual_percent: Vec<f64>,
    /// Percentages of the amount that the forecast to the period's end may reach (default `[100]`).
    pub forecast_percent: Vec<f64>,
}

impl Default for BudgetThresholds {
    fn default() -> Self {
        BudgetThresholds { actual_percent: vec![80.0, 100.0], forecast_percent: vec![100.0] }
    }
}

/// How a forecast was made: how much history it had to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ForecastMethod {
    /// No complete day of history: the forecast is the actual spend to date.
    ActualOnly,
    /// Less than two full weeks of history: a flat level (the median day) for every remaining day.
    Level,
    /// Two full weeks or more: a weekday profile times a robust recent level.
    WeeklySeasonal,
}

/// Spend per day over a recent window and where the period ends at that rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BurnRate {
    /// Complete days the rate is measured over (1 or 7; fewer when history is shorter).
    pub window_days: u32,
    /// Mean spend per day over the window, in USD.
    pub usd_per_day: Decimal,
    /// Spend at the period's end if the rest of it (today included) runs at this rate, in USD.
    pub projected_usd: Decimal,
    /// `projected_usd / amount_usd`.
    pub projected_ratio: f64,
}

/// A budget's state at `now`: what `/metrics` and the API show of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetStatus {
    /// The budget's name.
    pub name: String,
    /// The scope's label (see [`BudgetScope::label`]).
    pub scope: String,
    /// The period kind.
    pub period: BudgetPeriod,
    /// First day of the current period.
    pub period_start: NaiveDate,
    /// Last day of the current period (inclusive).
    pub period_end: NaiveDate,
    /// The budget's amount, in USD.
    pub amount_usd: Decimal,
    /// Spend in the period so far, today's partial spend included, in USD.
    pub actual_usd: Decimal,
    /// `actual_usd / amount_usd`.
    pub used_ratio: f64,
    /// Expected spend at the period's end, in USD, rounded to the cent.
    pub forecast_usd: Decimal,
    /// `forecast_usd / amount_usd`.
    pub forecast_ratio: f64,
    /// How the forecast was made.
    pub forecast_method: ForecastMethod,
    /// Complete days of history the forecast had (at most `history_weeks × 7`).
    pub history_days: u32,
    /// Burn rate over the last complete day.
    pub burn_1d: BurnRate,
    /// Burn rate over the last seven complete days.
    pub burn_7d: BurnRate,
}

/// The result of evaluating the budgets at `now`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct BudgetEvaluation {
    /// One finding per crossed threshold, ordered by budget name, then actual before forecast, then percent.
    pub findings: Vec<Finding>,
    /// One status per budget, in the order of the rules.
    pub budgets: Vec<BudgetStatus>,
}

/// Evaluates `rules` over `costs` at `now`.
///
/// Today (the UTC day of `now`) is partial: its spend counts in the actual spend but the forecast replaces it
/// with the expected spend of a whole day, and the baseline is fitted on the days before it only. Days after
/// today are ignored. A day from the earliest day in `costs` on without a row for the scope cost nothing; days
/// before it are unknown.
///
/// Fails only when a sum of costs (a day's, or the actual spend of a period or window) leaves the decimal
/// range. Forecasts are estimates from those sums and saturate instead.
pub fn evaluate(rules: &[BudgetRule], costs: &[DailyCost], now: DateTime<Utc>) -> Result<BudgetEvaluation, Overflow> {
    let today = now.date_naive();
    let data_start = costs.iter().map(|c| c.day).filter(|d| *d <= today).min();
    let mut evaluation = BudgetEvaluation::default();
    for rule in rules {
        let status = status(rule, costs, today, data_start)?;
        evaluation.findings.extend(findings(rule, &status));
        evaluation.budgets.push(status);
    }
    evaluation.findings.sort_by(|a, b| a.rule.cmp(&b.rule));
    Ok(evaluation)
}

/// The state of one budget at `today`.
fn status(
    rule: &BudgetRule,
    costs: &[DailyCost],
    today: NaiveDate,
    data_start: Option<NaiveDate>,
) -> Result<BudgetStatus, Overflow> {
    let (start, end) = rule.period.bounds(today);
    let history_from = days_before(today, u64::from(rule.history_weeks.max(1)) * 7).min(start);
    let mut daily: BTreeMap<NaiveDate, Decimal> = BTreeMap::new();
    for cost in costs.iter().filter(|c| c.day >= history_from && c.day <= today && rule.scope.matches(c)) {
        money::add_to(daily.entry(cost.day).or_insert(Decimal::ZERO), cost.amount)?;
    }
    let sum = |from: NaiveDate, to: NaiveDate| money::sum(daily.range(from..to).map(|(_, v)| *v));
    let actual = sum(start, today.succ_opt().unwrap_or(today))?;
    let actual_complete = sum(start, today)?;
    let remaining = days_between(today, end);

    let baseline = data_start
        .and_then(|data_start| Baseline::fit(Daily { values: &daily, start: data_start }, today, rule.history_weeks));
    let (forecast, method, history_days) = match &baseline {
        None => (actual, ForecastMethod::ActualOnly, 0),
        Some(b) => {
            let rest =
                today.iter_days().take_while(|d| *d < end).fold(Decimal::ZERO, |a, d| a.saturating_add(b.expected(d)));
            let method = if b.profile.is_some() { ForecastMethod::WeeklySeasonal } else { ForecastMethod::Level };
            (actual_complete.saturating_add(rest).max(actual), method, b.history_days)
        }
    };
    let forecast = cents(forecast);

    let burn = |window: u32| {
        let from = days_before(today, u64::from(window));
        let from = data_start.map_or(today, |d| from.max(d));
        let window_days = days_between(from, today);
        let usd_per_day = if window_days == 0 { Decimal::ZERO } else { sum(from, today)? / Decimal::from(window_days) };
        let projected = cents(actual_complete.saturating_add(usd_per_day.saturating_mul(Decimal::from(remaining))));
        Ok::<_, Overflow>(BurnRate {
            window_days,
            usd_per_day: cents(usd_per_day),
            projected_usd: projected,
            projected_ratio: ratio(projected, rule.amount_usd),
        })
    };

    Ok(BudgetStatus {
        name: rule.name.clone(),
        scope: rule.scope.label(),
        period: rule.period,
        period_start: start,
        period_end: end.pred_opt().unwrap_or(end),
        amount_usd: rule.amount_usd,
        actual_usd: actual,
        used_ratio: ratio(actual, rule.amount_usd),
        forecast_usd: forecast,
        forecast_ratio: ratio(forecast, rule.amount_usd),
        forecast_method: method,
        history_days,
        burn_1d: burn(1)?,
        burn_7d: burn(7)?,
    })
}

/// `value / amount` as a ratio for metrics; 0 for an amount that is not positive (a rule the checks reject).
fn ratio(value: Decimal, amount: Decimal) -> f64 {
    if amount <= Decimal::ZERO {
        return 0.0;
    }
    value.checked_div(amount).and_then(|r| r.to_f64()).unwrap_or(0.0)
}

/// Which figure a threshold is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Basis {
    Actual,
    Forecast,
}

impl Basis {
    fn as_str(self) -> &'static str {
        match self {
            Basis::Actual => "actual",
            Basis::Forecast => "forecast",
        }
    }
}

/// The severity of a crossed threshold: any forecast threshold is a warning; an actual threshold of 100 % or
/// more is critical, of 75 % or more a warning, below that information.
pub fn threshold_severity(forecast: bool, percent: f64) -> Severity {
    if forecast {
        Severity::Warning
    } else if percent >= 100.0 {
        Severity::Critical
    } else if percent >= 75.0 {
        Severity::Warning
    } else {
        Severity::Info
    }
}

/// `2026-03` for a month, `2026-Q1` for a quarter.
fn period_label(period: BudgetPeriod, start: NaiveDate) -> String {
    use chrono::Datelike;
    match period {
        BudgetPeriod::Month => start.format("%Y-%m").to_string(),
        BudgetPeriod::Quarter => format!("{}-Q{}", start.year(), start.month0() / 3 + 1),
    }
}

/// One finding per threshold `status` has crossed: `value × 100 ≥ percent × amount`, in decimals.
fn findings(rule: &BudgetRule, status: &BudgetStatus) -> Vec<Finding> {
    let mut out = Vec::new();
    let sets = [
        (Basis::Actual, &rule.thresholds.actual_percent, status.actual_usd, status.used_ratio),
        (Basis::Forecast, &rule.thresholds.forecast_percent, status.forecast_usd, status.forecast_ratio),
    ];
    for (basis, percents, value, value_ratio) in sets {
        let mut sorted: Vec<f64> = percents.iter().copied().filter(|p| p.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        sorted.dedup();
        for percent in sorted {
            let Some(p) = Decimal::from_f64(percent).filter(|p| *p > Decimal::ZERO) else {
                continue;
            };
            let limit = p.saturating_mul(rule.amount_usd);
            if value.saturating_mul(Decimal::ONE_HUNDRED) < limit {
                continue;
            }
            out.push(finding(rule, status, basis, percent, value, value_ratio));
        }
    }
    out
}

fn finding(
    rule: &BudgetRule,
    status: &BudgetStatus,
    basis: Basis,
    percent: f64,
    value: Decimal,
    value_ratio: f64,
) -> Finding {
    let over = value.saturating_sub(rule.amount_usd);
    let monthly_over = (over > Decimal::ZERO).then(|| cents(over / Decimal::from(rule.period.months())));
    let period = period_label(rule.period, status.period_start);
    let message = format!(
        "budget {}: {} {} USD is {:.0}% of {} USD for {} (threshold {}%)",
        rule.name,
        basis.as_str(),
        cents(value),
        value_ratio * 100.0,
        rule.amount_usd,
        period,
        percent,
    );
    Finding {
        kind: FindingKind::Budget,
        rule: rule.name.as_str().into(),
        subject: format!("{}/{}/{}", rule.name, basis.as_str(), percent).into(),
        account_id: match &rule.scope {
            BudgetScope::Account { account_id } => Some(account_id.as_str().into()),
            _ => None,
        },
        region: None,
        resource_type: None,
        severity: threshold_severity(basis == Basis::Forecast, percent),
        message: message.into(),
        monthly_usd: monthly_over,
        details: json!({
            "basis": basis.as_str(),
            "threshold_percent": percent,
            "scope": status.scope,
            "period": rule.period.as_str(),
            "period_label": period,
            "period_start": status.period_start,
            "period_end": status.period_end,
            "amount_usd": rule.amount_usd,
            "actual_usd": status.actual_usd,
            "used_ratio": status.used_ratio,
            "forecast_usd": status.forecast_usd,
            "forecast_ratio": status.forecast_ratio,
            "forecast_method": status.forecast_method,
            "thresholds": {
                "actual_percent": rule.thresholds.actual_percent,
                "forecast_percent": rule.thresholds.forecast_percent,
            },
            "burn_1d": status.burn_1d,
            "burn_7d": status.burn_7d,
        })
        .into(),
    }
}

impl Check for BudgetRule {
    fn check(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.name.trim().is_empty() {
            problems.push(Problem::at("name", "must not be empty"));
        } else if self.name.chars().any(char::is_control) {
            problems.push(Problem::at("name", "must not contain control characters"));
        }
        if self.amount_usd <= Decimal::ZERO {
            problems.push(Problem::at("amount_usd", "must be greater than 0"));
        }
        if !(1..=52).contains(&self.history_weeks) {
            problems.push(Problem::at("history_weeks", "must be between 1 and 52"));
        }
        match &self.scope {
            BudgetScope::Total => {}
            BudgetScope::Account { account_id } => {
                if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
                    problems.push(Problem::at("scope.account_id", "must be a 12-digit account id"));
                }
            }
            BudgetScope::Service { service } => {
                if service.trim().is_empty() {
                    problems.push(Problem::at("scope.service", "must not be empty"));
                }
            }
            BudgetScope::Tag { key, .. } => {
                if key.trim().is_empty() {
                    problems.push(Problem::at("scope.key", "must not be empty"));
                }
            }
        }
        for (field, percents) in [
            ("thresholds.actual_percent", &self.thresholds.actual_percent),
            ("thresholds.forecast_percent", &self.thresholds.forecast_percent),
        ] {
            for (i, p) in percents.iter().enumerate() {
                if !p.is_finite() || *p <= 0.0 || *p > 1000.0 {
                    problems.push(Problem::at_index(field, i, "must be a percentage above 0 and at most 1000"));
                } else if percents[..i].contains(p) {
                    problems.push(Problem::at_index(field, i, format!("duplicate threshold {p}")));
                }
            }
        }
        problems
    }
}

/// Problems of a whole `[[budgets]]` list that no single budget can see: duplicate names. Paths start with the
/// budget's index (`[3].name`); the rule file parser prefixes `budgets`.
pub fn check_names(rules: &[BudgetRule]) -> Vec<Problem> {
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if let Some(j) = first.get(rule.name.as_str()) {
            problems.push(
                Problem::at("name", format!("duplicate budget name `{}` (also budgets[{j}])", rule.name))
                    .under(&[Seg::Index(i)]),
            );
        } else {
            first.insert(&rule.name, i);
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc};
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    fn noon(s: &str) -> DateTime<Utc> {
        Utc.from_utc_datetime(&day(s).and_hms_opt(12, 0, 0).expect("noon"))
    }

    fn usd(s: &str) -> Decimal {
        s.parse().expect("test amount")
    }

    fn cost(d: NaiveDate, account: &str, service: &str, tags: &[(&str, &str)], amount: Decimal) -> DailyCost {
        DailyCost {
            day: d,
            account_id: account.to_string(),
            service: service.to_string(),
            resource_id: None,
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            amount,
        }
    }

    /// One row a day from `from` to `to` (inclusive), the amount given by `f(day)`.
    fn daily(
        from: &str,
        to: &str,
        account: &str,
        service: &str,
        tags: &[(&str, &str)],
        f: impl Fn(NaiveDate) -> &'static str,
    ) -> Vec<DailyCost> {
        day(from)
            .iter_days()
            .take_while(|d| *d <= day(to))
            .map(|d| cost(d, account, service, tags, usd(f(d))))
            .collect()
    }

    fn ten(_: NaiveDate) -> &'static str {
        "10"
    }

    fn rule(toml_text: &str) -> BudgetRule {
        toml::from_str(toml_text).expect("test rule parses")
    }

    /// Evaluates one budget and renders what matters on one line.
    fn render(rule: &BudgetRule, costs: &[DailyCost], now: &str) -> String {
        let evaluation = evaluate(std::slice::from_ref(rule), costs, noon(now)).unwrap();
        let s = &evaluation.budgets[0];
        let findings: Vec<String> = evaluation
            .findings
            .iter()
            .map(|f| format!("{} {:?}", f.subject.trim_start_matches(&format!("{}/", rule.name)), f.severity))
            .collect();
        format!(
            "{}..{} actual {} forecast {} {:?} [{}]",
            s.period_start,
            s.period_end,
            s.actual_usd,
            s.forecast_usd,
            s.forecast_method,
            findings.join(", ")
        )
    }

    #[track_caller]
    fn check(rule_toml: &str, costs: &[DailyCost], now: &str, expected: &str) {
        let rule = rule(rule_toml);
        assert_eq!(rule.check(), vec![], "rule is valid");
        assert_eq!(render(&rule, costs, now), expected);
    }

    const MONTH_1000: &str = "name = \"b\"\nperiod = \"month\"\namount_usd = 1000";
    const QUARTER_10K: &str = "name = \"b\"\nperiod = \"quarter\"\namount_usd = 10000";

    #[test]
    fn period_boundaries() {
        let history = daily("2025-09-01", "2028-12-31", "111111111111", "AmazonEC2", &[], ten);
        let upto = |to: &str| history.iter().filter(|c| c.day <= day(to)).cloned().collect::<Vec<_>>();
        #[rustfmt::skip]
        let cases = [
            (MONTH_1000, "2026-03-15", "2026-03-01..2026-03-31 actual 150 forecast 310.00 WeeklySeasonal []"),
            (MONTH_1000, "2026-04-01", "2026-04-01..2026-04-30 actual 10 forecast 300.00 WeeklySeasonal []"),
            (MONTH_1000, "2026-02-28", "2026-02-01..2026-02-28 actual 280 forecast 280.00 WeeklySeasonal []"),
            (MONTH_1000, "2028-02-29", "2028-02-01..2028-02-29 actual 290 forecast 290.00 WeeklySeasonal []"),
            (MONTH_1000, "2026-12-31", "2026-12-01..2026-12-31 actual 310 forecast 310.00 WeeklySeasonal []"),
            (QUARTER_10K, "2026-05-10", "2026-04-01..2026-06-30 actual 400 forecast 910.00 WeeklySeasonal []"),
            (QUARTER_10K, "2026-01-01", "2026-01-01..2026-03-31 actual 10 forecast 900.00 WeeklySeasonal []"),
            (QUARTER_10K, "2026-09-30", "2026-07-01..2026-09-30 actual 920 forecast 920.00 WeeklySeasonal []"),
            (QUARTER_10K, "2026-12-31", "2026-10-01..2026-12-31 actual 920 forecast 920.00 WeeklySeasonal []"),
        ];
        for (rule_toml, now, expected) in cases {
            check(rule_toml, &upto(now), now, expected);
        }
    }

    #[test]
    fn thresholds() {
        // 10 USD a day in March 2026 (31 days): 250 to date on the 25th, 310 forecast.
        let costs = daily("2026-01-01", "2026-03-25", "111111111111", "AmazonEC2", &[], ten);
        let base = "name = \"b\"\nperiod = \"month\"\n";
        #[rustfmt::skip]
        let cases = [
            ("amount_usd = 1000", "[]"),
            // 25 % used, 31 % forecast.
            ("amount_usd = 1000\nthresholds = { actual_percent = [20, 25], forecast_percent = [30, 40] }",
             "[actual/20 Info, actual/25 Info, forecast/30 Warning]"),
            // 83 % used, 103 % forecast.
            ("amount_usd = 300", "[actual/80 Warning, forecast/100 Warning]"),
            // exactly 100 % used counts as crossed.
            ("amount_usd = 250", "[actual/80 Warning, actual/100 Critical, forecast/100 Warning]"),
            ("amount_usd = 200", "[actual/80 Warning, actual/100 Critical, forecast/100 Warning]"),
            ("amount_usd = 200\nthresholds = { actual_percent = [50, 75, 120, 125.5], forecast_percent = [] }",
             "[actual/50 Info, actual/75 Warning, actual/120 Critical]"),
            ("amount_usd = 200\nthresholds = { actual_percent = [], forecast_percent = [150, 155, 160] }",
             "[forecast/150 Warning, forecast/155 Warning]"),
            // 310.00 forecast is 100 % of 310.
            ("amount_usd = \"310.00\"\nthresholds = { actual_percent = [], forecast_percent = [100] }",
             "[forecast/100 Warning]"),
            ("amount_usd = 310.01\nthresholds = { actual_percent = [], forecast_percent = [100] }", "[]"),
        ];
        for (extra, expected) in cases {
            let rule = rule(&format!("{base}{extra}"));
            let line = render(&rule, &costs, "2026-03-25");
            let got = &line[line.find('[').expect("findings")..];
            assert_eq!(got, expected, "{extra}");
        }
    }

    #[test]
    fn scopes() {
        let mut costs = daily("2026-02-01", "2026-03-10", "111111111111", "AmazonEC2", &[("team", "data")], ten);
        costs.extend(daily("2026-02-01", "2026-03-10", "111111111111", "AmazonS3", &[("team", "web")], |_| "1.5"));
        costs.extend(daily("2026-02-01", "2026-03-10", "222222222222", "AmazonEC2", &[], |_| "2"));
        costs.extend(daily("2026-02-01", "2026-03-10", "222222222222", "AmazonRDS", &[("team", "Data")], |_| "0.25"));
        let now = "2026-03-10";
        let cases = [
            ("", "actual 137.50 forecast 426.25"),
            ("scope = { type = \"total\" }", "actual 137.50 forecast 426.25"),
            ("scope = { type = \"account\", account_id = \"222222222222\" }", "actual 22.50 forecast 69.75"),
            ("scope = { type = \"service\", service = \"AmazonEC2\" }", "actual 120 forecast 372.00"),
            ("scope = { type = \"tag\", key = \"team\", value = \"data\" }", "actual 100 forecast 310.00"),
            // tag values are case-sensitive, as AWS has them.
            ("scope = { type = \"tag\", key = \"team\", value = \"Data\" }", "actual 2.50 forecast 7.75"),
            ("scope = { type = \"tag\", key = \"owner\", value = \"data\" }", "actual 0 forecast 0.00"),
        ];
        for (scope, expected) in cases {
            let rule = rule(&format!("{MONTH_1000}\n{scope}"));
            let line = render(&rule, &costs, now);
            assert!(line.contains(expected), "{scope}: {line}");
        }
    }

    #[test]
    fn short_history_and_partial_today() {
        let now = "2026-03-13";
        let rule_toml = MONTH_1000;
        // no complete day before today: the forecast is what has been spent.
        check(
            rule_toml,
            &daily("2026-03-13", "2026-03-13", "1", "s", &[], ten),
            now,
            "2026-03-01..2026-03-31 actual 10 forecast 10.00 ActualOnly []",
        );
        // three days: a flat level (their median) for today and the 18 days after it.
        let mut costs = daily("2026-03-10", "2026-03-12", "1", "s", &[], |d| match d.day() {
            10 => "10",
            11 => "40",
            _ => "12",
        });
        check(rule_toml, &costs, now, "2026-03-01..2026-03-31 actual 62 forecast 290.00 Level []");
        // today's partial spend counts in the actual spend; the forecast never goes below it.
        costs.push(cost(day(now), "1", "s", &[], usd("300")));
        check(rule_toml, &costs, now, "2026-03-01..2026-03-31 actual 362 forecast 362.00 Level []");
        // days after today are ignored.
        costs.push(cost(day("2026-03-20"), "1", "s", &[], usd("5000")));
        check(rule_toml, &costs, now, "2026-03-01..2026-03-31 actual 362 forecast 362.00 Level []");
        // no data at all.
        check(rule_toml, &[], now, "2026-03-01..2026-03-31 actual 0 forecast 0.00 ActualOnly []");
    }

    #[test]
    fn forecast_follows_the_weekly_pattern() {
        use chrono::Weekday;
        // 100 USD on weekdays, 20 on weekends; 2026-03-01 is a Sunday. On Thursday the 19th, 18 days are
        // complete (5 weekend days: 13 × 100 + 5 × 20 = 1400) and 13 are left with 4 weekend days among them:
        // 9 × 100 + 4 × 20 = 980 more. A flat level would say 1400 + 13 × 100 = 2700.
        let costs = daily("2026-01-01", "2026-03-18", "1", "s", &[], |d| match d.weekday() {
            Weekday::Sat | Weekday::Sun => "20",
            _ => "100",
        });
        check(
            MONTH_1000,
            &costs,
            "2026-03-19",
            "2026-03-01..2026-03-31 actual 1400 forecast 2380.00 WeeklySeasonal \
            [actual/80 Warning, actual/100 Critical, forecast/100 Warning]",
        );
    }

    #[test]
    fn cost_sums_beyond_the_decimal_range_are_errors() {
        let rule = rule(MONTH_1000);
        let max = Decimal::MAX;
        let check = |now: &str, amounts: &[(&str, Decimal)], overflows: bool| {
            let costs: Vec<DailyCost> = amounts.iter().map(|(d, a)| cost(day(d), "1", "s", &[], *a)).collect();
            let result = evaluate(std::slice::from_ref(&rule), &costs, noon(now));
            assert_eq!(result.is_err(), overflows, "{now} {amounts:?}: {result:?}");
        };
        check("2026-03-20", &[("2026-03-18", max - Decimal::ONE), ("2026-03-18", Decimal::ONE)], false);
        // One day's rows, the period's days, or the burn-rate window's days before the period.
        check("2026-03-20", &[("2026-03-18", max), ("2026-03-18", Decimal::ONE)], true);
        check("2026-03-20", &[("2026-03-02", max), ("2026-03-18", Decimal::ONE)], true);
        check("2026-03-03", &[("2026-02-25", max), ("2026-02-26", Decimal::ONE)], true);
    }

    #[test]
    fn burn_rates() {
        // 10 a day, then 50 yesterday.
        let mut costs = daily("2026-02-01", "2026-03-18", "1", "s", &[], ten);
        costs.push(cost(day("2026-03-19"), "1", "s", &[], usd("50")));
        let rule = rule(MONTH_1000);
        let evaluation = evaluate(std::slice::from_ref(&rule), &costs, noon("2026-03-20")).unwrap();
        let s = &evaluation.budgets[0];
        // 19 complete days: 18 × 10 + 50 = 230; 12 days left, today included.
        assert_eq!(s.burn_1d.window_days, 1);
        assert_eq!(s.burn_1d.usd_per_day, usd("50"));
        assert_eq!(s.burn_1d.projected_usd, usd("830.00"));
        assert_eq!(s.burn_1d.projected_ratio, 0.83);
        assert_eq!(s.burn_7d.window_days, 7);
        assert_eq!(s.burn_7d.usd_per_day, usd("15.71"));
        assert_eq!(s.burn_7d.projected_usd, usd("418.57"));
        // a robust forecast is not thrown by one expensive day.
        assert_eq!(s.forecast_usd, usd("350.00"));
        // short history: the window shrinks to what is known.
        let evaluation = evaluate(std::slice::from_ref(&rule), &costs[costs.len() - 3..], noon("2026-03-20")).unwrap();
        assert_eq!(evaluation.budgets[0].burn_7d.window_days, 3);
        assert_eq!(evaluation.budgets[0].burn_7d.usd_per_day, usd("23.33"));
    }

    #[test]
    fn findings_carry_details() {
        let costs = daily("2026-01-01", "2026-03-25", "111111111111", "AmazonEC2", &[], ten);
        let rule = rule(
            "name = \"platform\"\nperiod = \"quarter\"\namount_usd = 600\n\
             scope = { type = \"account\", account_id = \"111111111111\" }",
        );
        let evaluation = evaluate(std::slice::from_ref(&rule), &costs, noon("2026-03-25")).unwrap();
        let critical =
            evaluation.findings.iter().find(|f| &*f.subject == "platform/actual/100").expect("actual over 100 %");
        assert_eq!(critical.kind, FindingKind::Budget);
        assert_eq!(&*critical.rule, "platform");
        assert_eq!(critical.severity, Severity::Critical);
        assert_eq!(critical.account_id.as_deref(), Some("111111111111"));
        assert_eq!(
            &*critical.message,
            "budget platform: actual 840.00 USD is 140% of 600 USD for 2026-Q1 (threshold 100%)"
        );
        // 240 over in a quarter: 80 a month.
        assert_eq!(critical.monthly_usd, Some(usd("80")));
        let d = &critical.details.to_json();
        assert_eq!(d["period_start"], "2026-01-01");
        assert_eq!(d["period_end"], "2026-03-31");
        assert_eq!(d["actual_usd"], "840");
        assert_eq!(d["forecast_usd"], "900.00");
        assert_eq!(d["thresholds"]["actual_percent"], serde_json::json!([80.0, 100.0]));
        assert_eq!(d["basis"], "actual");
    }

    #[test]
    fn rule_problems() {
        let cases = [
            (MONTH_1000, vec![]),
            ("name = \" \"\nperiod = \"month\"\namount_usd = 0", vec!["name: must not be empty", "amount_usd: must be greater than 0"]),
            (
                "name = \"b\"\nperiod = \"month\"\namount_usd = 5\nhistory_weeks = 0\n\
                 thresholds = { actual_percent = [80, 80, -1], forecast_percent = [inf] }",
                vec![
                    "history_weeks: must be between 1 and 52",
                    "thresholds.actual_percent[1]: duplicate threshold 80",
                    "thresholds.actual_percent[2]: must be a percentage above 0 and at most 1000",
                    "thresholds.forecast_percent[0]: must be a percentage above 0 and at most 1000",
                ],
            ),
            (
                "name = \"b\"\nperiod = \"month\"\namount_usd = 5\nscope = { type = \"account\", account_id = \"12\" }",
                vec!["scope.account_id: must be a 12-digit account id"],
            ),
            (
                "name = \"b\"\nperiod = \"month\"\namount_usd = 5\nscope = { type = \"tag\", key = \"\", value = \"x\" }",
                vec!["scope.key: must not be empty"],
            ),
        ];
        for (text, expected) in cases {
            let got: Vec<String> = rule(text).check().iter().map(ToString::to_string).collect();
            assert_eq!(got, expected, "{text}");
        }
        let rules: Vec<BudgetRule> = ["a", "b", "a"]
            .iter()
            .map(|n| rule(&format!("name = \"{n}\"\nperiod = \"month\"\namount_usd = 1")))
            .collect();
        let got: Vec<String> = check_names(&rules).iter().map(ToString::to_string).collect();
        assert_eq!(got, vec!["[2].name: duplicate budget name `a` (also budgets[0])"]);
    }

    #[test]
    fn rule_file_syntax() {
        for bad in [
            "name = \"b\"\nperiod = \"week\"\namount_usd = 5",
            "name = \"b\"\nperiod = \"month\"\namount_usd = 5\ncolour = \"red\"",
            "name = \"b\"\nperiod = \"month\"\namount_usd = \"lots\"",
            "name = \"b\"\nperiod = \"month\"\namount_usd = 5\nscope = { type = \"tag\", key = \"k\" }",
            "name = \"b\"\nperiod = \"month\"\namount_usd = 5\nscope = { type = \"service\", service = \"s\", key = \"k\" }",
            "name = \"b\"\nperiod = \"month\"\namount_usd = 5\nthresholds = { actual = [1] }",
        ] {
            assert!(toml::from_str::<BudgetRule>(bad).is_err(), "{bad}");
        }
        let r = rule("name = \"b\"\nperiod = \"quarter\"\namount_usd = 1250.1");
        assert_eq!(r.amount_usd, usd("1250.1"));
        assert_eq!(r.thresholds, BudgetThresholds::default());
        assert_eq!(r.scope, BudgetScope::Total);
        assert_eq!(r.history_weeks, 4);
    }

    proptest! {
        /// A constant daily series is forecast exactly: the constant times the days of the period, to the cent.
        #[test]
        fn constant_series_forecast_is_exact(
            cents in 0i64..10_000_000,
            scale in 0u32..4,
            quarter in any::<bool>(),
            day_offset in 0u64..3650,
            lead_days in 1u64..120,
            partial_today in proptest::option::of(0u32..=100),
        ) {
            let c = Decimal::new(cents, scale);
            let today = day("2020-01-01") + Days::new(day_offset);
            let period = if quarter { BudgetPeriod::Quarter } else { BudgetPeriod::Month };
            let (start, end) = period.bounds(today);
            let first = start - Days::new(lead_days);
            let mut costs: Vec<DailyCost> = first
                .iter_days()
                .take_while(|d| *d < today)
                .map(|d| cost(d, "1", "s", &[], c))
                .collect();
            if let Some(p) = partial_today {
                costs.push(cost(today, "1", "s", &[], c * Decimal::new(i64::from(p), 2)));
            }
            let rule = BudgetRule {
                name: "b".into(),
                scope: BudgetScope::Total,
                period,
                amount_usd: Decimal::ONE_HUNDRED,
                thresholds: BudgetThresholds::default(),
                history_weeks: 4,
            };
            let now = Utc.from_utc_datetime(&today.and_hms_opt(23, 59, 59).expect("time"));
            let evaluation = evaluate(&[rule], &costs, now).unwrap();
            let days = Decimal::from((end - start).num_days());
            prop_assert_eq!(evaluation.budgets[0].forecast_usd, (c * days).round_dp(2));
        }

        /// The order of the input rows changes nothing.
        #[test]
        fn row_order_does_not_matter(
            rows in proptest::collection::vec((0u64..70, 0usize..3, 0usize..3, 0i64..100_000), 0..120)
                .prop_flat_map(|rows| (Just(rows.clone()), Just(rows).prop_shuffle())),
            amount in 1i64..5_000,
        ) {
            let to_costs = |rows: &[(u64, usize, usize, i64)]| -> Vec<DailyCost> {
                rows.iter()
                    .map(|(d, a, t, cents)| {
                        let team = ["data", "web", "ops"][*t];
                        cost(day("2026-01-10") + Days::new(*d), ["1", "2", "3"][*a], "s", &[("team", team)],
                            Decimal::new(*cents, 2))
                    })
                    .collect()
            };
            let rules: Vec<BudgetRule> = [
                "scope = { type = \"total\" }",
                "scope = { type = \"account\", account_id = \"2\" }",
                "scope = { type = \"tag\", key = \"team\", value = \"web\" }",
            ]
            .iter()
            .enumerate()
            .map(|(i, scope)| rule(&format!(
                "name = \"b{i}\"\nperiod = \"{}\"\namount_usd = {amount}\n{scope}\n\
                 thresholds = {{ actual_percent = [10, 50, 100], forecast_percent = [50, 100] }}",
                if i % 2 == 0 { "month" } else { "quarter" },
            )))
            .collect();
            let now = noon("2026-03-05");
            let (a, b) = (to_costs(&rows.0), to_costs(&rows.1));
            prop_assert_eq!(evaluate(&rules, &a, now), evaluate(&rules, &b, now));
        }
    }
}
