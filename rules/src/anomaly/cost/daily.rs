//! Daily cost series and the robust weekly-seasonal baseline shared by budget forecasts and cost anomalies.

use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Deserializer, Visitor};

/// Deserializes an amount in USD from a TOML/JSON integer, float or string, exactly: a float goes through its
/// shortest decimal representation (`1250.5` becomes `1250.5`, never `1250.4999…`).
pub(crate) fn deserialize_usd<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
    deserializer.deserialize_any(UsdVisitor)
}

struct UsdVisitor;

impl Visitor<'_> for UsdVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an amount in USD (a number or a decimal string)")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
        if !v.is_finite() {
            return Err(E::custom("amount must be a finite number"));
        }
        parse_decimal(&v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
        parse_decimal(v.trim())
    }
}

fn parse_decimal<E: de::Error>(s: &str) -> Result<Decimal, E> {
    s.parse::<Decimal>()
        .or_else(|_| Decimal::from_scientific(s))
        .map_err(|_| E::custom(format!("invalid amount `{s}`")))
}

use std::collections::BTreeMap;

use chrono::{Datelike, Days, NaiveDate};

/// `1.4826 / √2 × 1.25`: a median absolute deviation of day-to-day differences to the standard deviation of one
/// day (1.4826 = `1 / Φ⁻¹(3/4)` for normal data, √2 because a difference has two days' noise), widened by a
/// quarter for the error of the baseline itself.
const SPREAD_FACTOR: Decimal = Decimal::from_parts(13104, 0, 0, false, 4);

/// A daily series: amounts per UTC day. Days from `start` on are known (a day without a row cost nothing);
/// days before `start` are unknown.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Daily<'a> {
    pub values: &'a BTreeMap<NaiveDate, Decimal>,
    pub start: NaiveDate,
}

impl Daily<'_> {
    /// The amount of `day`, `None` before `start`.
    pub fn get(&self, day: NaiveDate) -> Option<Decimal> {
        if day < self.start {
            None
        } else {
            Some(self.values.get(&day).copied().unwrap_or(Decimal::ZERO))
        }
    }
}

/// The median of `values` (the mean of the two middle ones for an even count); `None` when empty.
pub(crate) fn median(values: &mut [Decimal]) -> Option<Decimal> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let n = values.len();
    if n % 2 == 1 {
        Some(values[n / 2])
    } else {
        Some(values[n / 2 - 1].saturating_add(values[n / 2]) / Decimal::TWO)
    }
}

/// `amount` rounded to the cent (half to even), always with two decimals.
pub(crate) fn cents(amount: Decimal) -> Decimal {
    let mut rounded = amount.round_dp(2);
    rounded.rescale(2);
    rounded
}

/// `day - n` days, saturating at the earliest date.
pub(crate) fn days_before(day: NaiveDate, n: u64) -> NaiveDate {
    day.checked_sub_days(Days::new(n)).unwrap_or(NaiveDate::MIN)
}

/// Whole days from `from` to `to` (0 when `to` is not after `from`).
pub(crate) fn days_between(from: NaiveDate, to: NaiveDate) -> u32 {
    u32::try_from((to - from).num_days()).unwrap_or(0)
}

/// The robust weekly-seasonal baseline of a series, fitted on the complete days before a given day:
/// `expected(d) = level × profile[weekday(d)]`.
///
/// * With two full weeks of history or more, `profile[w]` is the median of the days of weekday `w` over the most
///   recent full weeks (at most `weeks`), divided by the mean of those seven medians (a profile whose mean is
///   1); `level` is the median, over the last seven days, of each day's amount divided by its weekday's profile
///   (days whose weekday never costs anything are left out).
/// * With less, there is no profile (every weekday is 1) and `level` is the median of the days there are.
///
/// A constant series gives a profile of exactly 1 and a level of exactly the constant: decimals, no rounding.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Baseline {
    /// Weekday factors, Monday first; `None` for a flat baseline.
    pub profile: Option<[Decimal; 7]>,
    /// The deseasonalised level, in USD per day.
    pub level: Decimal,
    /// Known complete days the baseline was fitted on.
    pub history_days: u32,
    /// Robust spread of a day's amount around its expected amount, relative to the expected amount (see
    /// [`Baseline::spread`]).
    pub relative_spread: Decimal,
}

impl Baseline {
    /// Fits the baseline of `series` on the known days of `[before - 7 × weeks, before)`; `None` when there is
    /// no known day there.
    pub fn fit(series: Daily<'_>, before: NaiveDate, weeks: u32) -> Option<Baseline> {
        let window = u64::from(weeks.max(1)) * 7;
        let first = days_before(before, window).max(series.start);
        let known: Vec<(NaiveDate, Decimal)> =
            first.iter_days().take_while(|d| *d < before).filter_map(|d| series.get(d).map(|v| (d, v))).collect();
        if known.is_empty() {
            return None;
        }
        let history_days = u32::try_from(known.len()).unwrap_or(u32::MAX);
        let full_weeks = known.len() / 7;
        let mut baseline = if full_weeks >= 2 {
            let days = &known[known.len() - full_weeks * 7..];
            Baseline::seasonal(days).unwrap_or_else(|| Baseline::flat(days))
        } else {
            Baseline::flat(&known)
        };
        baseline.history_days = history_days;
        let fitted = if full_weeks >= 2 { &known[known.len() - full_weeks * 7..] } else { &known[..] };
        baseline.relative_spread = baseline.relative_spread_of(fitted);
        Some(baseline)
    }

    fn flat(days: &[(NaiveDate, Decimal)]) -> Baseline {
        let mut values: Vec<Decimal> = days.iter().map(|(_, v)| *v).collect();
        Baseline {
            profile: None,
            level: median(&mut values).unwrap_or(Decimal::ZERO),
            history_days: 0,
            relative_spread: Decimal::ZERO,
        }
    }

    /// The weekday profile and level of whole weeks of days; `None` when the profile's mean is zero.
    fn seasonal(days: &[(NaiveDate, Decimal)]) -> Option<Baseline> {
        let mut by_weekday: [Vec<Decimal>; 7] = Default::default();
        for (d, v) in days {
            by_weekday[weekday(*d)].push(*v);
        }
        let mut medians = [Decimal::ZERO; 7];
        for (w, values) in by_weekday.iter_mut().enumerate() {
            medians[w] = median(values)?;
        }
        let sum = medians.iter().fold(Decimal::ZERO, |a, m| a.saturating_add(*m));
        let mean = sum / Decimal::from(7);
        if mean <= Decimal::ZERO {
            return None;
        }
        let mut profile = [Decimal::ZERO; 7];
        for w in 0..7 {
            profile[w] = medians[w].checked_div(mean).unwrap_or(Decimal::ONE);
        }
        let mut deseasonalised: Vec<Decimal> = days[days.len().saturating_sub(7)..]
            .iter()
            .filter(|(d, _)| profile[weekday(*d)] > Decimal::ZERO)
            .filter_map(|(d, v)| v.checked_div(profile[weekday(*d)]))
            .collect();
        let level = median(&mut deseasonalised)?;
        Some(Baseline { profile: Some(profile), level, history_days: 0, relative_spread: Decimal::ZERO })
    }

    /// The expected amount of `day`, unrounded.
    pub fn expected(&self, day: NaiveDate) -> Decimal {
        match &self.profile {
            Some(profile) => self.level.saturating_mul(profile[weekday(day)]),
            None => self.level,
        }
    }

    /// The robust spread of the amount of `day` around [`Baseline::expected`], in USD.
    ///
    /// Costs vary in proportion to their size (a weekday twice as expensive as a Sunday wobbles twice as much),
    /// so the spread is relative: the differences between each fitted day and the same weekday a week before (a
    /// day before for a flat baseline), each divided by the day's expected amount, give a noise level by their
    /// median absolute deviation (× 1.4826 for a standard deviation, ÷ √2 for a difference of two days).
    /// Differences are out of sample, unlike residuals around a baseline fitted on the same days. The result is
    /// widened by a quarter for the baseline's own error (a median of a few weeks) and scaled by the expected
    /// amount.
    pub fn spread(&self, day: NaiveDate) -> Decimal {
        self.relative_spread.saturating_mul(self.expected(day).abs())
    }

    fn relative_spread_of(&self, days: &[(NaiveDate, Decimal)]) -> Decimal {
        let lag = if self.profile.is_some() { 7 } else { 1 };
        let mut relative: Vec<Decimal> = days
            .iter()
            .zip(days.iter().skip(lag))
            .filter_map(|((_, before), (d, v))| v.saturating_sub(*before).checked_div(self.expected(*d)))
            .collect();
        let Some(center) = median(&mut relative) else {
            return Decimal::ZERO;
        };
        let mut deviations: Vec<Decimal> = relative.iter().map(|r| (*r - center).abs()).collect();
        median(&mut deviations).unwrap_or(Decimal::ZERO).saturating_mul(SPREAD_FACTOR)
    }
}

/// Monday 0 … Sunday 6.
pub(crate) fn weekday(day: NaiveDate) -> usize {
    day.weekday().num_days_from_monday() as usize
}
