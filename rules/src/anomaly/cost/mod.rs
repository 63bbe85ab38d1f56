//! Cost anomalies: unusual daily spend of a series (everything, a service, an account, a tag value) against a
//! robust weekly-seasonal baseline, with impact in USD and percent, and a root cause for the series made of
//! others. See `docs/budgets-and-anomalies.md`.

pub(crate) mod daily;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::check::{Check, Problem};
use crate::finding::{Finding, FindingKind, Severity};
use crate::input::DailyCost;
use crate::money::{self, Overflow};
use daily::{cents, days_before, days_between, Baseline, Daily};

/// The `[cost_anomaly]` section of a rule file. Every field has a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostAnomalySettings {
    /// Detect cost anomalies at all (default true).
    pub enabled: bool,
    /// Which series to watch besides tag values: any of `total`, `account`, `service` (default all three).
    pub series: Vec<SeriesKind>,
    /// Tag keys whose values each get a series (`team=data`, `team=web`, and `team=` for spend without the tag);
    /// default none.
    pub tag_keys: Vec<String>,
    /// Days a series must have existed before the day evaluated for it to be scored (default 14).
    pub min_history_days: u32,
    /// Weeks of history the baseline's weekday profile and spread are taken from (default 4).
    pub baseline_weeks: u32,
    /// How many complete days to evaluate, ending yesterday (default 1: yesterday only).
    pub lookback_days: u32,
    /// Score from which an anomaly is stored as an `info` finding (default 0.5).
    pub detection_score: f64,
    /// Score from which an anomaly is a `warning` finding for alerting (default 0.75).
    pub alert_score: f64,
    /// Score from which an alerting anomaly is `critical` (default 0.9).
    pub critical_score: f64,
    /// Smallest excess over the expected spend, in USD, for any finding (default 5).
    #[serde(deserialize_with = "daily::deserialize_usd")]
    pub min_impact_usd: Decimal,
    /// Smallest excess over the expected spend, in USD, for an alerting finding (default 50).
    #[serde(deserialize_with = "daily::deserialize_usd")]
    pub alert_min_impact_usd: Decimal,
    /// Smallest excess over the expected spend, in percent of it, for an alerting finding (default 20).
    pub alert_min_impact_percent: f64,
    /// Floor of the spread, in percent of the expected spend, so that a very steady series does not make a
    /// tiny change look huge (default 5).
    pub min_spread_percent: f64,
    /// Floor of the spread, in USD, so that a tiny series does not make cents look huge (default 1).
    #[serde(deserialize_with = "daily::deserialize_usd")]
    pub min_spread_usd: Decimal,
    /// Score drops as well as rises (default false: only spend above the baseline is an anomaly).
    pub include_decreases: bool,
    /// Sub-series named per dimension in an anomaly's root cause (default 3).
    pub root_cause_top: u32,
}

impl Default for CostAnomalySettings {
    fn default() -> Self {
        CostAnomalySettings {
            enabled: true,
            series: vec![SeriesKind::Total, SeriesKind::Account, SeriesKind::Service],
            tag_keys: Vec::new(),
            min_history_days: 14,
            baseline_weeks: 4,
            lookback_days: 1,
            detection_score: 0.5,
            alert_score: 0.75,
            critical_score: 0.9,
            min_impact_usd: Decimal::from(5),
            alert_min_impact_usd: Decimal::from(50),
            alert_min_impact_percent: 20.0,
            min_spread_percent: 5.0,
            min_spread_usd: Decimal::ONE,
            include_decreases: false,
            root_cause_top: 3,
        }
    }
}

/// The kind of a cost series: the `series_kind` label of `cloudwarden_cost_anomaly_score`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// All spend; its key is `total`.
    Total,
    /// One account; its key is the account id.
    Account,
    /// One service; its key is the service name.
    Service,
    /// One value of a configured tag key; its key is `key=value` (`key=` for spend without the tag).
    Tag,
}

impl SeriesKind {
    /// `total`, `account`, `service` or `tag`.
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesKind::Total => "total",
            SeriesKind::Account => "account",
            SeriesKind::Service => "service",
            SeriesKind::Tag => "tag",
        }
    }
}

/// One cost series' score on one day: the `/metrics` view of the detector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesScore {
    /// The series' kind.
    pub series_kind: SeriesKind,
    /// The series' key (see [`SeriesKind`]).
    pub key: String,
    /// The day scored.
    pub day: NaiveDate,
    /// Anomaly score in `[0, 1]`.
    pub score: f64,
    /// The day's spend, in USD.
    pub actual_usd: Decimal,
    /// The baseline's expected spend, in USD (rounded to the cent).
    pub expected_usd: Decimal,
    /// `actual_usd - expected_usd`, in USD.
    pub impact_usd: Decimal,
    /// `impact_usd` in percent of `expected_usd`; `None` when nothing was expected.
    pub impact_percent: Option<f64>,
    /// The severity of the day's finding; `None` when the day is not an anomaly.
    pub severity: Option<Severity>,
}

/// A sub-series carrying part of an anomaly's deviation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contributor {
    /// `account`, `service` or `resource`.
    pub dimension: String,
    /// The account id, service name or resource id.
    pub key: String,
    /// Its spend on the day, in USD.
    pub actual_usd: Decimal,
    /// Its expected spend on the day, in USD.
    pub expected_usd: Decimal,
    /// `actual_usd - expected_usd`, in USD.
    pub deviation_usd: Decimal,
    /// Its deviation as a share of the anomalous series' deviation (can exceed 1 when others moved the other
    /// way).
    pub share: f64,
}

/// The result of evaluating cost anomalies at `now`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CostAnomalyEvaluation {
    /// One finding per anomalous series and day, ordered by series kind, key and day.
    pub findings: Vec<Finding>,
    /// Per series with enough history, the day with the highest score among the days evaluated (the
    /// latest on ties; with `lookback_days = 1`, yesterday), ordered by series kind and key:
    /// `cloudwarden_cost_anomaly_score{series_kind, key}` and its impact.
    pub series: Vec<SeriesScore>,
}

/// The robust z-score at which the score reaches `1 - 1/e ≈ 0.63`: `score = 1 - exp(-z / Z_SCALE)`.
pub const Z_SCALE: f64 = 4.0;

/// The rule name of cost anomaly findings.
pub const RULE: &str = "cost_anomaly";

/// Which rows make up a series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Member {
    Total,
    Account(String),
    Service(String),
    Tag(String, String),
}

impl Member {
    fn contains(&self, row: &DailyCost) -> bool {
        match self {
            Member::Total => true,
            Member::Account(a) => &row.account_id == a,
            Member::Service(s) => &row.service == s,
            Member::Tag(k, v) => row.tags.get(k).map_or("", String::as_str) == v,
        }
    }

    fn kind(&self) -> SeriesKind {
        match self {
            Member::Total => SeriesKind::Total,
            Member::Account(_) => SeriesKind::Account,
            Member::Service(_) => SeriesKind::Service,
            Member::Tag(..) => SeriesKind::Tag,
        }
    }

    fn key(&self) -> String {
        match self {
            Member::Total => "total".to_string(),
            Member::Account(a) => a.clone(),
            Member::Service(s) => s.clone(),
            Member::Tag(k, v) => format!("{k}={v}"),
        }
    }

    /// The dimensions an anomaly of this series is broken down into.
    fn sub_dimensions(&self) -> &'static [Dimension] {
        match self {
            Member::Total | Member::Tag(..) => &[Dimension::Account, Dimension::Service, Dimension::Resource],
            Member::Account(_) => &[Dimension::Service, Dimension::Resource],
            Member::Service(_) => &[Dimension::Account, Dimension::Resource],
        }
    }
}

/// A dimension of a root cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dimension {
    Account,
    Service,
    Resource,
}

impl Dimension {
    fn as_str(self) -> &'static str {
        match self {
            Dimension::Account => "account",
            Dimension::Service => "service",
            Dimension::Resource => "resource",
        }
    }

    fn key_of(self, row: &DailyCost) -> Option<&str> {
        match self {
            Dimension::Account => Some(&row.account_id),
            Dimension::Service => Some(&row.service),
            Dimension::Resource => row.resource_id.as_deref(),
        }
    }
}

/// A series' first day ever and its amounts over the evaluation window.
#[derive(Debug, Default)]
struct SeriesData {
    first: Option<NaiveDate>,
    values: BTreeMap<NaiveDate, Decimal>,
}

fn add(map: &mut BTreeMap<NaiveDate, Decimal>, day: NaiveDate, amount: Decimal) -> Result<(), Overflow> {
    money::add_to(map.entry(day).or_insert(Decimal::ZERO), amount)
}

/// Evaluates cost anomalies over `costs` at `now`: the complete days ending yesterday (see
/// [`CostAnomalySettings::lookback_days`]), each against a baseline fitted on the days before it only.
///
/// Rows of today (partial) and later are ignored. A series exists from its first row on; a day without a row
/// after that cost nothing. The result does not depend on the order of `costs`. Fails only when a day's sum
/// of costs in a series leaves the decimal range.
pub fn evaluate(
    settings: &CostAnomalySettings,
    costs: &[DailyCost],
    now: DateTime<Utc>,
) -> Result<CostAnomalyEvaluation, Overflow> {
    let mut evaluation = CostAnomalyEvaluation::default();
    let today = now.date_naive();
    let (true, Some(last)) = (settings.enabled, today.pred_opt()) else {
        return Ok(evaluation);
    };
    let lookback = settings.lookback_days.max(1);
    let weeks = settings.baseline_weeks.max(1);
    let first_eval = days_before(last, u64::from(lookback - 1));
    let window_from = days_before(first_eval, u64::from(weeks) * 7);
    let rows: Vec<&DailyCost> = costs.iter().filter(|c| c.day <= last).collect();
    if rows.is_empty() {
        return Ok(evaluation);
    }

    let mut series: BTreeMap<Member, SeriesData> = BTreeMap::new();
    for row in &rows {
        for member in members(settings, row) {
            let data = series.entry(member).or_default();
            data.first = Some(data.first.map_or(row.day, |f| f.min(row.day)));
            if row.day >= window_from {
                add(&mut data.values, row.day, row.amount)?;
            }
        }
    }

    let window_rows: Vec<&DailyCost> = rows.iter().copied().filter(|c| c.day >= window_from).collect();
    for (member, data) in &series {
        let Some(first) = data.first else { continue };
        if data.values.is_empty() {
            continue;
        }
        let daily = Daily { values: &data.values, start: first };
        let mut shown: Option<SeriesScore> = None;
        for day in first_eval.iter_days().take_while(|d| *d <= last) {
            if days_between(first, day) < settings.min_history_days {
                continue;
            }
            let Some(baseline) = Baseline::fit(daily, day, weeks) else {
                continue;
            };
            let point = Point::new(settings, &baseline, daily.get(day).unwrap_or(Decimal::ZERO), day);
            if point.severity.is_some() {
                let causes = root_cause(settings, member, &window_rows, first, day, point.impact, weeks)?;
                evaluation.findings.push(anomaly_finding(settings, member, &point, &baseline, causes));
            }
            // The metric shows the highest score of the days evaluated (the latest on ties): an anomaly
            // found within the lookback keeps its score until it falls out of the window, so an alert on
            // the metric agrees with the findings.
            if shown.as_ref().is_none_or(|s| point.score >= s.score) {
                shown = Some(SeriesScore {
                    series_kind: member.kind(),
                    key: member.key(),
                    day,
                    score: point.score,
                    actual_usd: point.actual,
                    expected_usd: point.expected,
                    impact_usd: point.impact,
                    impact_percent: point.impact_percent,
                    severity: point.severity,
                });
            }
        }
        evaluation.series.extend(shown);
    }
    Ok(evaluation)
}

/// The series a row belongs to under `settings`.
fn members(settings: &CostAnomalySettings, row: &DailyCost) -> Vec<Member> {
    let mut out = Vec::with_capacity(settings.series.len() + settings.tag_keys.len());
    for kind in &settings.series {
        match kind {
            SeriesKind::Total => out.push(Member::Total),
            SeriesKind::Account => out.push(Member::Account(row.account_id.clone())),
            SeriesKind::Service => out.push(Member::Service(row.service.clone())),
            SeriesKind::Tag => {}
        }
    }
    for key in &settings.tag_keys {
        let value = row.tags.get(key).cloned().unwrap_or_default();
        out.push(Member::Tag(key.clone(), value));
    }
    out.sort();
    out.dedup();
    out
}

/// One scored day of one series.
#[derive(Debug, Clone)]
struct Point {
    day: NaiveDate,
    actual: Decimal,
    /// Rounded to the cent.
    expected: Decimal,
    /// `actual - expected`, rounded to the cent.
    impact: Decimal,
    impact_percent: Option<f64>,
    /// The spread the score used (after the floors), in USD.
    spread: Decimal,
    score: f64,
    severity: Option<Severity>,
}

impl Point {
    fn new(settings: &CostAnomalySettings, baseline: &Baseline, actual: Decimal, day: NaiveDate) -> Point {
        let expected = baseline.expected(day);
        let deviation = actual.saturating_sub(expected);
        let relative_floor = Decimal::from_f64(settings.min_spread_percent / 100.0)
            .unwrap_or(Decimal::ZERO)
            .saturating_mul(expected.abs());
        let spread = baseline.spread(day).max(relative_floor).max(settings.min_spread_usd).max(Decimal::ZERO);
        let score = score(deviation, spread, settings.include_decreases);
        let expected = cents(expected);
        let impact = cents(actual.saturating_sub(expected));
        let impact_percent = if expected > Decimal::ZERO {
            impact.checked_div(expected).and_then(|r| r.to_f64()).map(|r| r * 100.0)
        } else {
            None
        };
        let mut point =
            Point { day, actual, expected, impact, impact_percent, spread: cents(spread), score, severity: None };
        point.severity = point.classify(settings);
        point
    }

    /// Detection → `info`; alert → `warning`, or `critical` from `critical_score`; both need the score and
    /// the impact (in the scored direction).
    fn classify(&self, settings: &CostAnomalySettings) -> Option<Severity> {
        let size = self.impact.abs();
        if self.score <= 0.0 || self.score < settings.detection_score || size < settings.min_impact_usd {
            return None;
        }
        let percent_ok = self.impact_percent.is_none_or(|p| p.abs() >= settings.alert_min_impact_percent);
        let alert = self.score >= settings.alert_score && size >= settings.alert_min_impact_usd && percent_ok;
        Some(match alert {
            false => Severity::Info,
            true if self.score >= settings.critical_score => Severity::Critical,
            true => Severity::Warning,
        })
    }
}

/// `1 - exp(-z / Z_SCALE)` of the robust z-score `deviation / spread` (only rises count unless
/// `include_decreases`), in `[0, 1]`.
fn score(deviation: Decimal, spread: Decimal, include_decreases: bool) -> f64 {
    let deviation = if include_decreases { deviation.abs() } else { deviation.max(Decimal::ZERO) };
    if deviation <= Decimal::ZERO {
        return 0.0;
    }
    let z = match deviation.checked_div(spread) {
        Some(z) => z.to_f64().unwrap_or(f64::INFINITY),
        None => f64::INFINITY,
    };
    let s = 1.0 - (-z / Z_SCALE).exp();
    if s.is_nan() {
        0.0
    } else {
        s.clamp(0.0, 1.0)
    }
}

/// The sub-series of `member` that carry most of a deviation of `impact` on `day`: per dimension, the
/// `root_cause_top` whose own deviation (against their own baseline, known from the series' `start` on and zero
/// before they first cost anything) goes the same way, largest first.
fn root_cause(
    settings: &CostAnomalySettings,
    member: &Member,
    rows: &[&DailyCost],
    start: NaiveDate,
    day: NaiveDate,
    impact: Decimal,
    weeks: u32,
) -> Result<Vec<Contributor>, Overflow> {
    let top = usize::try_from(settings.root_cause_top).unwrap_or(usize::MAX);
    if top == 0 || impact.is_zero() {
        return Ok(Vec::new());
    }
    let from = days_before(day, u64::from(weeks) * 7);
    let mut out = Vec::new();
    for &dimension in member.sub_dimensions() {
        let mut subs: BTreeMap<&str, BTreeMap<NaiveDate, Decimal>> = BTreeMap::new();
        for row in rows.iter().filter(|r| r.day >= from && r.day <= day && member.contains(r)) {
            if let Some(key) = dimension.key_of(row) {
                add(subs.entry(key).or_default(), row.day, row.amount)?;
            }
        }
        let mut contributors: Vec<Contributor> = subs
            .iter()
            .filter_map(|(key, values)| {
                let daily = Daily { values, start };
                let actual = daily.get(day).unwrap_or(Decimal::ZERO);
                let expected = cents(Baseline::fit(daily, day, weeks).map_or(Decimal::ZERO, |b| b.expected(day)));
                let deviation = actual.saturating_sub(expected);
                let same_way = deviation.is_sign_positive() == impact.is_sign_positive() && !deviation.is_zero();
                same_way.then(|| Contributor {
                    dimension: dimension.as_str().to_string(),
                    key: key.to_string(),
                    actual_usd: actual,
                    expected_usd: expected,
                    deviation_usd: deviation,
                    share: deviation.checked_div(impact).and_then(|r| r.to_f64()).unwrap_or(0.0),
                })
            })
            .collect();
        contributors.sort_by(|a, b| b.deviation_usd.abs().cmp(&a.deviation_usd.abs()).then_with(|| a.key.cmp(&b.key)));
        contributors.truncate(top);
        out.extend(contributors);
    }
    Ok(out)
}

fn anomaly_finding(
    settings: &CostAnomalySettings,
    member: &Member,
    point: &Point,
    baseline: &Baseline,
    causes: Vec<Contributor>,
) -> Finding {
    let kind = member.kind();
    let key = member.key();
    let label = match member {
        Member::Total => "total".to_string(),
        _ => format!("{} {}", kind.as_str(), key),
    };
    let direction = if point.impact.is_sign_negative() { "below" } else { "above" };
    let percent = point.impact_percent.map_or_else(|| "nothing expected".to_string(), |p| format!("{:.0}%", p.abs()));
    let message = format!(
        "{label} spent {} USD on {}, {} USD ({percent}) {direction} the expected {} USD (score {:.2})",
        cents(point.actual),
        point.day,
        point.impact.abs(),
        point.expected,
        point.score,
    );
    let severity = point.severity.unwrap_or(Severity::Info);
    Finding {
        kind: FindingKind::CostAnomaly,
        rule: RULE.into(),
        subject: format!("{}:{}@{}", kind.as_str(), key, point.day).into(),
        account_id: match member {
            Member::Account(a) => Some(a.as_str().into()),
            _ => None,
        },
        region: None,
        resource_type: None,
        severity,
        message: message.into(),
        monthly_usd: (point.impact > Decimal::ZERO).then_some(point.impact),
        details: json!({
            "series_kind": kind.as_str(),
            "key": key,
            "day": point.day,
            "score": point.score,
            "alert": severity > Severity::Info,
            "actual_usd": point.actual,
            "expected_usd": point.expected,
            "impact_usd": point.impact,
            "impact_percent": point.impact_percent,
            "spread_usd": point.spread,
            "history_days": baseline.history_days,
            "baseline": if baseline.profile.is_some() { "weekly_seasonal" } else { "level" },
            "detection_score": settings.detection_score,
            "alert_score": settings.alert_score,
            "root_cause": causes,
        })
        .into(),
    }
}

impl Check for CostAnomalySettings {
    fn check(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut range = |field: &str, ok: bool, message: &str| {
            if !ok {
                problems.push(Problem::at(field, message));
            }
        };
        range("min_history_days", (1..=366).contains(&self.min_history_days), "must be between 1 and 366");
        range("baseline_weeks", (1..=52).contains(&self.baseline_weeks), "must be between 1 and 52");
        range("lookback_days", (1..=90).contains(&self.lookback_days), "must be between 1 and 90");
        let unit = |s: f64| s.is_finite() && s > 0.0 && s <= 1.0;
        range("detection_score", unit(self.detection_score), "must be above 0 and at most 1");
        range(
            "alert_score",
            unit(self.alert_score) && self.alert_score >= self.detection_score,
            "must be at most 1 and at least detection_score",
        );
        range(
            "critical_score",
            unit(self.critical_score) && self.critical_score >= self.alert_score,
            "must be at most 1 and at least alert_score",
        );
        range("min_impact_usd", self.min_impact_usd >= Decimal::ZERO, "must not be negative");
        range("alert_min_impact_usd", self.alert_min_impact_usd >= Decimal::ZERO, "must not be negative");
        let percent = |p: f64| p.is_finite() && p >= 0.0;
        range("alert_min_impact_percent", percent(self.alert_min_impact_percent), "must be a percentage of 0 or more");
        range("min_spread_percent", percent(self.min_spread_percent), "must be a percentage of 0 or more");
        range("min_spread_usd", self.min_spread_usd >= Decimal::ZERO, "must not be negative");
        range("root_cause_top", self.root_cause_top <= 100, "must be at most 100");
        for (i, kind) in self.series.iter().enumerate() {
            if *kind == SeriesKind::Tag {
                problems.push(Problem::at_index("series", i, "tag series come from `tag_keys`, not from `series`"));
            } else if self.series[..i].contains(kind) {
                problems.push(Problem::at_index("series", i, format!("duplicate series kind `{}`", kind.as_str())));
            }
        }
        for (i, key) in self.tag_keys.iter().enumerate() {
            if key.trim().is_empty() {
                problems.push(Problem::at_index("tag_keys", i, "must not be empty"));
            } else if self.tag_keys[..i].contains(key) {
                problems.push(Problem::at_index("tag_keys", i, format!("duplicate tag key `{key}`")));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests;
