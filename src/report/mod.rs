//! The weekly cost report: what one ISO week cost against the week before and the four weeks before it, by
//! service, account and grouping tag, the movers, the week's anomalies, budgets, cleanup and how fresh the
//! data is.
//!
//! [`build`] is pure: it turns what [`gather`] read from the store into a [`WeeklyReport`], which every
//! format renders ([`text`]: Markdown and CSV; JSON is its serialization). Money stays an exact decimal
//! until a format prints it.

pub mod deliver;
mod gather;
pub mod html;
pub mod text;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Days, IsoWeek, NaiveDate, Utc, Weekday};
use rules::money::{self, Overflow};
use rust_decimal::Decimal;
use serde::Serialize;

pub use gather::{gather, CostSource};

use crate::config::check::{key, Checker, Seg};
use crate::config::schema::WeeklyReportSection;

/// The version of the JSON report's shape.
pub const SCHEMA: u32 = 1;
/// Movers listed each way.
pub const MOVERS: usize = 10;
/// Services drawn on their own in the daily series; the rest is `Other`.
pub const TOP_SERVICES: usize = 5;
/// Weeks before the report's week that its average is taken over.
pub const AVERAGE_WEEKS: u64 = 4;

/// An ISO week: `2026-W49`, Monday to Sunday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Week {
    pub year: i32,
    pub week: u32,
}

impl Week {
    /// Parses `YYYY-Www`.
    pub fn parse(s: &str) -> Result<Week, String> {
        let bad = || format!("{s:?}: not an ISO week such as 2026-W49");
        let (y, w) = s.split_once(['-']).ok_or_else(bad)?;
        let w = w.strip_prefix('W').or_else(|| w.strip_prefix('w')).ok_or_else(bad)?;
        let (year, week): (i32, u32) = (y.parse().map_err(|_| bad())?, w.parse().map_err(|_| bad())?);
        NaiveDate::from_isoywd_opt(year, week, Weekday::Mon)
            .map(|_| Week { year, week })
            .ok_or_else(|| format!("{s:?}: {year} has no week {week}"))
    }

    pub fn of(day: NaiveDate) -> Week {
        let w: IsoWeek = day.iso_week();
        Week { year: w.year(), week: w.week() }
    }

    /// The last complete week before `now` (UTC).
    pub fn last_complete(now: DateTime<Utc>) -> Week {
        Week::of(now.date_naive() - Days::new(7))
    }

    /// Monday.
    pub fn start(self) -> NaiveDate {
        // A Week is only made from a valid date or checked by `parse`.
        NaiveDate::from_isoywd_opt(self.year, self.week, Weekday::Mon).unwrap_or(NaiveDate::MIN)
    }

    /// Sunday.
    pub fn end(self) -> NaiveDate {
        self.start() + Days::new(6)
    }

    pub fn previous(self) -> Week {
        Week::of(self.start() - Days::new(7))
    }
}

impl std::fmt::Display for Week {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-W{:02}", self.year, self.week)
    }
}

/// `[reports.weekly]`, validated.
#[derive(Debug, Clone)]
pub struct WeeklyReportSettings {
    pub cost_source: CostSource,
    pub tag_keys: Vec<String>,
    /// When the report job runs (default Monday 08:00 UTC).
    pub schedule: crate::config::Schedule,
    /// The formats the `s3` and `directory` deliveries write.
    pub formats: Vec<Format>,
    /// How long a due report waits for its cost source to have run since the week ended.
    pub wait_for_data: std::time::Duration,
    /// The link webhook messages show; `{week}` becomes the week.
    pub link: Option<String>,
    /// Where the report goes; none: the report is only built on demand (`cloudwarden report weekly`).
    pub deliveries: Vec<deliver::Delivery>,
}

impl WeeklyReportSettings {
    /// The settings of a report built on demand from `cost_source`, without a schedule or deliveries.
    pub fn on_demand(cost_source: CostSource, tag_keys: Vec<String>) -> WeeklyReportSettings {
        WeeklyReportSettings {
            cost_source,
            tag_keys,
            schedule: crate::config::Schedule::Every(std::time::Duration::from_secs(7 * 86400)),
            formats: vec![Format::Html, Format::Markdown, Format::Csv, Format::Json],
            wait_for_data: std::time::Duration::ZERO,
            link: None,
            deliveries: Vec::new(),
        }
    }
}

/// Checks `[reports.weekly]`: the cost source is one of the configured collectors', the tag keys are
/// distinct and not empty, the schedule, formats and deliveries are sound. Email deliveries without a relay
/// of their own use `fallback_smtp`.
pub(crate) fn check(
    cx: &mut Checker<'_>,
    s: &WeeklyReportSection,
    shared: &crate::config::check::Shared<'_>,
    sources: (bool, bool),
    fallback_smtp: Option<&crate::notify::SmtpSettings>,
) -> Option<WeeklyReportSettings> {
    let (billing_files, cost_explorer) = sources;
    let base = [Seg::Key("reports"), Seg::Key("weekly")];
    let at = key(&base, "cost_source");
    let cost_source = match s.cost_source.as_deref() {
        None if billing_files => Some(CostSource::BillingFiles),
        None if cost_explorer => Some(CostSource::CostExplorer),
        None => {
            cx.error(&base, "needs a cost source: configure [collectors.billing_files] or [collectors.cost_explorer]");
            None
        }
        Some(name) => match CostSource::parse(name) {
            None => {
                cx.error(&at, format!("unknown cost source {name:?}, expected `billing_files` or `cost_explorer`"));
                None
            }
            Some(CostSource::BillingFiles) if !billing_files => {
                cx.error(&at, "`billing_files` needs [collectors.billing_files]");
                None
            }
            Some(CostSource::CostExplorer) if !cost_explorer => {
                cx.error(&at, "`cost_explorer` needs [collectors.cost_explorer]");
                None
            }
            found => found,
        },
    };
    let mut seen = BTreeSet::new();
    for (i, k) in s.tag_keys.iter().enumerate() {
        let at = crate::config::check::item(&base, "tag_keys", i);
        if k.trim().is_empty() {
            cx.error(&at, "must not be empty");
        } else if !seen.insert(k.as_str()) {
            cx.error(&at, format!("{k:?} is listed twice"));
        }
    }
    let schedule = cx.schedule(&base, None, Some(s.cron.as_deref().unwrap_or(deliver::DEFAULT_CRON)), 0);
    let wait_at = key(&base, "wait_for_data_secs");
    cx.at_most(&wait_at, s.wait_for_data_secs.into(), 7 * 86400, false);
    if let Some(link) = &s.link {
        if !(link.starts_with("https://") || link.starts_with("http://")) {
            cx.error(&key(&base, "link"), format!("not an http(s) URL: {link:?}"));
        }
    }
    let (formats, deliveries) = deliver::check(cx, s, shared, fallback_smtp);
    Some(WeeklyReportSettings {
        cost_source: cost_source?,
        tag_keys: s.tag_keys.clone(),
        schedule: schedule?,
        formats,
        wait_for_data: std::time::Duration::from_secs(s.wait_for_data_secs),
        link: s.link.clone(),
        deliveries,
    })
}

/// A format the report is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Markdown,
    Csv,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "html" => Some(Format::Html),
            "markdown" | "md" => Some(Format::Markdown),
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// `report` in `format`.
pub fn render(report: &WeeklyReport, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Html => html::html(report).map_err(|e| anyhow::anyhow!("drawing the report's charts: {e}"))?,
        Format::Markdown => text::markdown(report),
        Format::Csv => text::csv(report)?,
        Format::Json => serde_json::to_string_pretty(report)? + "\n",
    })
}

/// The weekly report of `week` as `config` sets it up (`[reports.weekly]`, or the defaults: the billing
/// files when that collector is configured, else Cost Explorer, and no grouping tag), read from its
/// database.
pub async fn weekly(config: &crate::config::Config, week: Week, now: DateTime<Utc>) -> anyhow::Result<WeeklyReport> {
    let settings = match &config.weekly_report {
        Some(s) => s.clone(),
        None if config.billing_files.is_some() => WeeklyReportSettings::on_demand(CostSource::BillingFiles, Vec::new()),
        None if config.cost_explorer.is_some() => WeeklyReportSettings::on_demand(CostSource::CostExplorer, Vec::new()),
        None => anyhow::bail!(
            "no cost source: configure [collectors.billing_files] or [collectors.cost_explorer] (and [reports.weekly])"
        ),
    };
    let rules = match &config.rules {
        Some(r) => Some(read_rules(r.settings.sources.clone()).await?),
        None => None,
    };
    let store = crate::store::Store::open_configured(&config.database, 2).await?;
    let report = from_store(&store, week, &settings, rules.as_ref(), config.cleanup.is_some(), now).await;
    store.close().await;
    report
}

/// The rules the report finds budgets in, read from the rule files.
pub async fn read_rules(sources: Vec<crate::jobs::rules::RuleSource>) -> anyhow::Result<rules::file::RuleFile> {
    let loaded = tokio::task::spawn_blocking(move || crate::jobs::rules::read_rule_files(&sources)).await?.map_err(
        |problems| {
            anyhow::anyhow!("the rule files: {}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))
        },
    )?;
    Ok(loaded.rules)
}

/// The weekly report of `week` from `store`.
pub async fn from_store(
    store: &crate::store::Store,
    week: Week,
    settings: &WeeklyReportSettings,
    rules: Option<&rules::file::RuleFile>,
    cleanup_enabled: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<WeeklyReport> {
    let input = gather(store, week, settings.cost_source, &settings.tag_keys, rules, cleanup_enabled, now).await?;
    Ok(build(&input)?)
}

/// One cost as the store holds it: billing files give every field; Cost Explorer gives one grouping per
/// row (the others `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct CostRow {
    pub day: NaiveDate,
    pub account_id: Option<String>,
    pub service: Option<String>,
    /// `Some` when the row carries the resource's tags (billing files).
    pub tags: Option<BTreeMap<String, String>>,
    pub currency: String,
    pub amount: Decimal,
}

/// Cost Explorer's rows, one grouping per list; every amount in USD.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupedCosts {
    /// (day, service, amount).
    pub by_service: Vec<(NaiveDate, String, Decimal)>,
    /// (day, account id, amount).
    pub by_account: Vec<(NaiveDate, String, Decimal)>,
    /// Tag key → (day, value, amount); an empty value is spend without the tag.
    pub by_tag: BTreeMap<String, Vec<(NaiveDate, String, Decimal)>>,
}

/// The costs a report is built from.
#[derive(Debug, Clone, PartialEq)]
pub enum Costs {
    /// Billing export files: one row per charge (or per day and key).
    Detailed(Vec<CostRow>),
    /// Cost Explorer: per grouping.
    Grouped(GroupedCosts),
}

/// A cost anomaly the rules found on a day of the week.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnomalyLine {
    pub day: NaiveDate,
    /// `total`, `service`, `account` or `tag`.
    pub series_kind: String,
    pub key: String,
    pub severity: String,
    pub actual_usd: Option<Decimal>,
    pub expected_usd: Option<Decimal>,
    pub impact_usd: Option<Decimal>,
    /// The largest contributors, as the rules named them: `dimension key (+$deviation)`.
    pub root_cause: Vec<String>,
    pub message: String,
}

/// A budget at the week's end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetLine {
    pub name: String,
    pub scope: String,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub amount_usd: Decimal,
    /// Spend from the period's start to the week's end.
    pub actual_usd: Decimal,
    pub forecast_usd: Decimal,
    /// `ok`, `forecast_over` or `over`.
    pub status: String,
}

/// Tag compliance of one account at the end of the week and of the week before: the share of its resources
/// in scope of a tagging rule that comply with every rule in scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComplianceLine {
    pub account_id: String,
    pub account: Option<String>,
    pub in_scope: i64,
    pub compliant: i64,
    /// `None` when no resource of the account is in scope.
    pub percent: Option<Decimal>,
    pub previous_in_scope: Option<i64>,
    pub previous_percent: Option<Decimal>,
    /// The change in percentage points.
    pub change_points: Option<Decimal>,
}

/// Tag compliance at the week's end against the week before's.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ComplianceWeek {
    /// The day the figures are of (the newest evaluated day on or before the week's end); `None`: none yet.
    pub as_of: Option<NaiveDate>,
    pub previous_as_of: Option<NaiveDate>,
    pub accounts: Vec<ComplianceLine>,
}

/// Cleanup's part of the week.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CleanupWeek {
    /// Actions done in the week, by action.
    pub actions_done: BTreeMap<String, u64>,
    pub actions_failed: u64,
    /// What the done actions saved within the week (their monthly rate over the hours since each action).
    pub saved_this_week_usd: Decimal,
    /// What every done action saved from its action to the week's end.
    pub saved_since_start_usd: Decimal,
    /// The monthly rate of everything done so far.
    pub monthly_rate_usd: Decimal,
    /// Plans under way (marked, notified, approved) and their estimated monthly savings.
    pub pending_plans: u64,
    pub pending_monthly_usd: Decimal,
}

/// What [`gather`] read: everything [`build`] needs.
#[derive(Debug, Clone)]
pub struct ReportInput {
    pub week: Week,
    pub generated_at: DateTime<Utc>,
    /// `billing_files` or `cost_explorer`.
    pub source: &'static str,
    pub costs: Costs,
    /// Days Cost Explorer still marks as estimated.
    pub estimated_days: BTreeSet<NaiveDate>,
    /// Account id → configured name.
    pub account_names: BTreeMap<String, String>,
    pub tag_keys: Vec<String>,
    pub anomalies: Vec<AnomalyLine>,
    pub budgets: Vec<BudgetLine>,
    pub compliance: ComplianceWeek,
    pub cleanup: Option<CleanupWeek>,
}

/// An amount this week against the week before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub key: String,
    /// A display name (an account's configured name), when there is one.
    pub name: Option<String>,
    pub this_week: Decimal,
    pub previous_week: Decimal,
    pub change: Decimal,
    /// `None` when the previous week is zero.
    pub change_percent: Option<Decimal>,
}

impl Line {
    fn new(key: String, name: Option<String>, this_week: Decimal, previous_week: Decimal) -> Result<Line, Overflow> {
        let change = sub(this_week, previous_week)?;
        Ok(Line { key, name, this_week, previous_week, change, change_percent: percent(change, previous_week) })
    }
}

/// The week's total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Total {
    pub this_week: Decimal,
    pub previous_week: Decimal,
    pub change: Decimal,
    pub change_percent: Option<Decimal>,
    /// The mean of the weeks before (up to four) that have data; `None` when none has.
    pub average: Option<Decimal>,
    pub average_weeks: u64,
    pub change_vs_average: Option<Decimal>,
    pub change_vs_average_percent: Option<Decimal>,
}

/// Spend by one grouping tag's values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagBreakdown {
    pub key: String,
    /// By value, the untagged spend excluded.
    pub lines: Vec<Line>,
    /// Spend without the tag (or with an empty value).
    pub untagged: Line,
    /// The untagged share of this week's total, in percent; `None` when the week cost nothing.
    pub untagged_share_percent: Option<Decimal>,
}

/// A (service, account) pair's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mover {
    pub service: String,
    /// `None` with Cost Explorer, whose rows have one grouping each.
    pub account_id: Option<String>,
    pub account: Option<String>,
    pub this_week: Decimal,
    pub previous_week: Decimal,
    pub change: Decimal,
    pub change_percent: Option<Decimal>,
}

/// One day of the daily series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Day {
    pub day: NaiveDate,
    pub total: Decimal,
    /// The top services' amounts, then `Other`, in [`WeeklyReport::daily_series`] order.
    pub amounts: Vec<Decimal>,
}

/// Spend in a currency other than USD, never summed into the USD figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurrencyTotal {
    pub currency: String,
    pub this_week: Decimal,
    pub previous_week: Decimal,
}

/// Which days the figures rest on.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Freshness {
    /// The newest day with any cost.
    pub newest_day: Option<NaiveDate>,
    /// Days of the week with no cost at all.
    pub missing_days: Vec<NaiveDate>,
    /// Days of the week AWS still estimates (they may change).
    pub estimated_days: Vec<NaiveDate>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeeklyReport {
    pub schema: u32,
    pub week: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub generated_at: DateTime<Utc>,
    pub source: &'static str,
    /// Amortized (effective) cost: commitments spread over the days they cover.
    pub cost_metric: &'static str,
    pub currency: &'static str,
    pub total: Total,
    pub by_service: Vec<Line>,
    pub by_account: Vec<Line>,
    pub by_tag: Vec<TagBreakdown>,
    pub movers_up: Vec<Mover>,
    pub movers_down: Vec<Mover>,
    /// The series of [`Day::amounts`]: the top services over the five weeks, then `Other`.
    pub daily_series: Vec<String>,
    /// The five weeks ending with this one, day by day.
    pub daily: Vec<Day>,
    pub other_currencies: Vec<CurrencyTotal>,
    pub anomalies: Vec<AnomalyLine>,
    pub budgets: Vec<BudgetLine>,
    pub compliance: ComplianceWeek,
    pub cleanup: Option<CleanupWeek>,
    pub freshness: Freshness,
    /// What a reader must know to read the figures right (no data, one account, a tag nobody carries...).
    pub notes: Vec<String>,
}

/// `change / base` in percent, when `base` is at least half a cent.
fn percent(change: Decimal, base: Decimal) -> Option<Decimal> {
    // Against less than half a cent a percentage is noise (a change of a cent shown as +100000%).
    if text::cents(base).is_zero() {
        return None;
    }
    change.checked_div(base).and_then(|r| r.checked_mul(Decimal::ONE_HUNDRED))
}

/// `a - b`, or the overflow.
fn sub(a: Decimal, b: Decimal) -> Result<Decimal, Overflow> {
    a.checked_sub(b).ok_or(Overflow { sum: a, amount: -b })
}

type DayMap = BTreeMap<NaiveDate, Decimal>;

fn add(map: &mut DayMap, day: NaiveDate, amount: Decimal) -> Result<(), Overflow> {
    money::add_to(map.entry(day).or_default(), amount)
}

fn sum_days(map: &DayMap, from: NaiveDate, to: NaiveDate) -> Result<Decimal, Overflow> {
    money::sum(map.range(from..=to).map(|(_, a)| *a))
}

/// The USD costs by grouping, day by day.
#[derive(Default)]
struct Grouped {
    total: DayMap,
    service: BTreeMap<String, DayMap>,
    account: BTreeMap<String, DayMap>,
    /// Tag key → value ("" untagged) → days.
    tag: BTreeMap<String, BTreeMap<String, DayMap>>,
    /// (service, account) → days.
    pair: BTreeMap<(String, Option<String>), DayMap>,
    other: BTreeMap<String, DayMap>,
    /// Days with any row, in any currency.
    days: BTreeSet<NaiveDate>,
    /// Tag keys some USD row carries.
    keys_seen: BTreeSet<String>,
}

fn group(costs: &Costs, tag_keys: &[String]) -> Result<Grouped, Overflow> {
    let mut g = Grouped::default();
    match costs {
        Costs::Detailed(rows) => {
            for r in rows {
                g.days.insert(r.day);
                if r.currency != "USD" {
                    add(g.other.entry(r.currency.clone()).or_default(), r.day, r.amount)?;
                    continue;
                }
                add(&mut g.total, r.day, r.amount)?;
                let service = r.service.clone().unwrap_or_default();
                let account = r.account_id.clone().unwrap_or_default();
                add(g.service.entry(service.clone()).or_default(), r.day, r.amount)?;
                add(g.account.entry(account.clone()).or_default(), r.day, r.amount)?;
                add(g.pair.entry((service, Some(account))).or_default(), r.day, r.amount)?;
                for key in tag_keys {
                    let value = r.tags.as_ref().and_then(|t| t.get(key)).map(|v| v.trim()).unwrap_or("");
                    if !value.is_empty() {
                        g.keys_seen.insert(key.clone());
                    }
                    let by_value = g.tag.entry(key.clone()).or_default();
                    add(by_value.entry(value.to_string()).or_default(), r.day, r.amount)?;
                }
            }
        }
        Costs::Grouped(c) => {
            for (day, service, amount) in &c.by_service {
                g.days.insert(*day);
                add(&mut g.total, *day, *amount)?;
                add(g.service.entry(service.clone()).or_default(), *day, *amount)?;
                add(g.pair.entry((service.clone(), None)).or_default(), *day, *amount)?;
            }
            for (day, account, amount) in &c.by_account {
                g.days.insert(*day);
                add(g.account.entry(account.clone()).or_default(), *day, *amount)?;
            }
            for key in tag_keys {
                let by_value = g.tag.entry(key.clone()).or_default();
                for (day, value, amount) in c.by_tag.get(key).map(Vec::as_slice).unwrap_or_default() {
                    let value = value.trim();
                    if !value.is_empty() {
                        g.keys_seen.insert(key.clone());
                    }
                    g.days.insert(*day);
                    add(by_value.entry(value.to_string()).or_default(), *day, *amount)?;
                }
            }
        }
    }
    Ok(g)
}

/// Lines of `groups` for the week, largest this week first (then by key); groups with nothing in either
/// week are left out.
fn lines(
    groups: &BTreeMap<String, DayMap>,
    week: Week,
    name: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Line>, Overflow> {
    let (prev, this) = (week.previous(), week);
    let mut out = Vec::new();
    for (key, days) in groups {
        let t = sum_days(days, this.start(), this.end())?;
        let p = sum_days(days, prev.start(), prev.end())?;
        if t.is_zero() && p.is_zero() && !days.range(prev.start()..=this.end()).any(|_| true) {
            continue;
        }
        out.push(Line::new(key.clone(), name(key), t, p)?);
    }
    out.sort_by(|a, b| b.this_week.cmp(&a.this_week).then_with(|| a.key.cmp(&b.key)));
    Ok(out)
}

/// Builds the report of `input.week`.
pub fn build(input: &ReportInput) -> Result<WeeklyReport, Overflow> {
    let week = input.week;
    let (start, end) = (week.start(), week.end());
    let prev = week.previous();
    let g = group(&input.costs, &input.tag_keys)?;
    let name = |id: &str| input.account_names.get(id).cloned();
    let mut notes = Vec::new();

    // The total, against the week before and the average of the weeks before that have data.
    let this_week = sum_days(&g.total, start, end)?;
    let previous_week = sum_days(&g.total, prev.start(), prev.end())?;
    let change = sub(this_week, previous_week)?;
    let mut average_sum = Decimal::ZERO;
    let mut average_weeks = 0u64;
    for n in 1..=AVERAGE_WEEKS {
        let w_start = start - Days::new(7 * n);
        let w_end = w_start + Days::new(6);
        if g.days.range(w_start..=w_end).next().is_some() {
            money::add_to(&mut average_sum, sum_days(&g.total, w_start, w_end)?)?;
            average_weeks += 1;
        }
    }
    let average = (average_weeks > 0).then(|| average_sum / Decimal::from(average_weeks));
    let change_vs_average = average.map(|a| sub(this_week, a)).transpose()?;
    if average_weeks < AVERAGE_WEEKS {
        notes.push(format!(
            "The average is of {average_weeks} week(s): {} of the {AVERAGE_WEEKS} weeks before this one have no cost data.",
            AVERAGE_WEEKS - average_weeks
        ));
    }
    let total = Total {
        this_week,
        previous_week,
        change,
        change_percent: percent(change, previous_week),
        average,
        average_weeks,
        change_vs_average,
        change_vs_average_percent: match (change_vs_average, average) {
            (Some(c), Some(a)) => percent(c, a),
            _ => None,
        },
    };

    let by_service = lines(&g.service, week, |_| None)?;
    let by_account = lines(&g.account, week, name)?;
    let accounts_this_week = by_account.iter().filter(|l| !l.this_week.is_zero()).count();
    if accounts_this_week == 1 {
        notes.push("One account had costs this week: the report by account has a single line.".into());
    }

    let mut by_tag = Vec::new();
    for key in &input.tag_keys {
        let empty = BTreeMap::new();
        let values = g.tag.get(key).unwrap_or(&empty);
        let mut tagged: BTreeMap<String, DayMap> = values.clone();
        let untagged_days = tagged.remove("").unwrap_or_default();
        let t = sum_days(&untagged_days, start, end)?;
        let p = sum_days(&untagged_days, prev.start(), prev.end())?;
        let untagged = Line::new(String::new(), None, t, p)?;
        if !g.keys_seen.contains(key) {
            notes.push(format!("No cost carries the tag `{key}`: all of its spend is untagged."));
        }
        by_tag.push(TagBreakdown {
            key: key.clone(),
            lines: lines(&tagged, week, |_| None)?,
            untagged_share_percent: percent(t, this_week),
            untagged,
        });
    }

    // Movers: (service, account) pairs by their change.
    let mut movers = Vec::new();
    for ((service, account), days) in &g.pair {
        let t = sum_days(days, start, end)?;
        let p = sum_days(days, prev.start(), prev.end())?;
        let change = sub(t, p)?;
        if change.is_zero() {
            continue;
        }
        movers.push(Mover {
            service: service.clone(),
            account_id: account.clone(),
            account: account.as_deref().and_then(name),
            this_week: t,
            previous_week: p,
            change,
            change_percent: percent(change, p),
        });
    }
    let key = |m: &Mover| (m.service.clone(), m.account_id.clone());
    let mut movers_up: Vec<Mover> = movers.iter().filter(|m| m.change > Decimal::ZERO).cloned().collect();
    movers_up.sort_by(|a, b| b.change.cmp(&a.change).then_with(|| key(a).cmp(&key(b))));
    movers_up.truncate(MOVERS);
    let mut movers_down: Vec<Mover> = movers.into_iter().filter(|m| m.change < Decimal::ZERO).collect();
    movers_down.sort_by(|a, b| a.change.cmp(&b.change).then_with(|| key(a).cmp(&key(b))));
    movers_down.truncate(MOVERS);
    if matches!(input.costs, Costs::Grouped(_)) {
        notes.push(
            "Cost Explorer's costs come grouped one way at a time: the movers are by service, over every account."
                .into(),
        );
    }

    // The daily series over five weeks: the top services of those weeks, then the rest.
    let first = start - Days::new(7 * AVERAGE_WEEKS);
    let mut ranked: Vec<(Decimal, &String)> = Vec::new();
    for (service, days) in &g.service {
        let s = sum_days(days, first, end)?;
        if !s.is_zero() {
            ranked.push((s, service));
        }
    }
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let top: Vec<&String> = ranked.iter().take(TOP_SERVICES).map(|(_, s)| *s).collect();
    let mut daily_series: Vec<String> = top.iter().map(|s| (*s).clone()).collect();
    daily_series.push("Other".into());
    let mut daily = Vec::new();
    let mut day = first;
    while day <= end {
        let total = g.total.get(&day).copied().unwrap_or_default();
        let mut amounts = Vec::with_capacity(daily_series.len());
        let mut rest = total;
        for s in &top {
            let a = g.service.get(*s).and_then(|d| d.get(&day)).copied().unwrap_or_default();
            rest = sub(rest, a)?;
            amounts.push(a);
        }
        amounts.push(rest);
        daily.push(Day { day, total, amounts });
        day = day + Days::new(1);
    }

    let mut other_currencies = Vec::new();
    for (currency, days) in &g.other {
        let t = sum_days(days, start, end)?;
        let p = sum_days(days, prev.start(), prev.end())?;
        if t.is_zero() && p.is_zero() {
            continue;
        }
        other_currencies.push(CurrencyTotal { currency: currency.clone(), this_week: t, previous_week: p });
    }
    if !other_currencies.is_empty() {
        let names: Vec<&str> = other_currencies.iter().map(|c| c.currency.as_str()).collect();
        notes.push(format!("Costs in {} are shown on their own and never added to the USD figures.", names.join(", ")));
    }

    let freshness = Freshness {
        newest_day: g.days.iter().next_back().copied(),
        missing_days: start.iter_days().take(7).filter(|d| !g.days.contains(d)).collect(),
        estimated_days: input.estimated_days.range(start..=end).copied().collect(),
    };
    if freshness.missing_days.len() == 7 {
        notes.insert(0, format!("No cost data for {week} ({start} to {end}): every figure of the week is zero."));
    } else if !freshness.missing_days.is_empty() {
        notes.push(format!(
            "{} day(s) of the week have no cost data yet: {}.",
            freshness.missing_days.len(),
            freshness.missing_days.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
        ));
    }
    if !freshness.estimated_days.is_empty() {
        notes.push(format!(
            "AWS still estimates {} day(s) of the week: their costs may change.",
            freshness.estimated_days.len()
        ));
    }

    let mut anomalies: Vec<AnomalyLine> =
        input.anomalies.iter().filter(|a| (start..=end).contains(&a.day)).cloned().collect();
    anomalies.sort_by(|a, b| {
        b.impact_usd.unwrap_or_default().abs().cmp(&a.impact_usd.unwrap_or_default().abs()).then(a.day.cmp(&b.day))
    });

    Ok(WeeklyReport {
        schema: SCHEMA,
        week: week.to_string(),
        start,
        end,
        generated_at: input.generated_at,
        source: input.source,
        cost_metric: "amortized",
        currency: "USD",
        total,
        by_service,
        by_account,
        by_tag,
        movers_up,
        movers_down,
        daily_series,
        daily,
        other_currencies,
        anomalies,
        budgets: input.budgets.clone(),
        compliance: input.compliance.clone(),
        cleanup: input.cleanup.clone(),
        freshness,
        notes,
    })
}

#[cfg(test)]
mod tests;
