//! The cost index: per-resource cost over the cost window, from the daily costs that carry a resource id.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::fast::FastMap;
use crate::input::{DailyCost, Resource};
use crate::money::{self, Overflow};

/// Per-resource cost over the cost window: the [`CostIndex::WINDOW_DAYS`] complete UTC days before the
/// day of `now` (today's partial day excluded). The sum over those 30 days is the monthly figure.
#[derive(Debug, Clone, Default)]
pub struct CostIndex<'a> {
    by_id: FastMap<&'a str, Decimal>,
    /// First and last day of the window.
    pub window: Option<(NaiveDate, NaiveDate)>,
}

impl<'a> CostIndex<'a> {
    /// The window's length in days.
    pub const WINDOW_DAYS: i64 = 30;

    /// Sums the costs with a resource id per id over the window; fails when a sum leaves the decimal range.
    pub fn build(costs: &'a [DailyCost], now: DateTime<Utc>) -> Result<CostIndex<'a>, Overflow> {
        let today = now.date_naive();
        let first = today - Duration::days(Self::WINDOW_DAYS);
        let mut by_id: FastMap<&str, Decimal> = FastMap::default();
        for c in costs {
            if c.day < first || c.day >= today {
                continue;
            }
            if let Some(id) = c.resource_id.as_deref() {
                money::add_to(by_id.entry(id).or_default(), c.amount)?;
            }
        }
        Ok(CostIndex { by_id, window: Some((first, today - Duration::days(1))) })
    }

    /// The monthly cost of `r`: billing rows whose resource id is its ARN plus those whose resource id is
    /// its service id; `None` when billing has neither.
    pub fn monthly(&self, r: &Resource) -> Result<Option<Decimal>, Overflow> {
        if self.by_id.is_empty() {
            return Ok(None);
        }
        let by_arn = self.by_id.get(r.arn.as_str());
        let by_id = if r.id != r.arn { self.by_id.get(r.id.as_str()) } else { None };
        match (by_arn, by_id) {
            (None, None) => Ok(None),
            (a, b) => money::sum(a.into_iter().chain(b).copied()).map(Some),
        }
    }

    /// Resource ids with cost in the window.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no resource has cost in the window.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::CostIndex;
    use crate::test_support::{at, costs_for, res};

    #[test]
    fn cost_window_is_the_30_days_before_today() {
        let costs = costs_for(40, &[("a", 0, "100"), ("a", 1, "1"), ("a", 30, "2"), ("a", 31, "100")]);
        let index = CostIndex::build(&costs, at(40)).unwrap();
        let mut r = res("ec2:instance", "a", &[]);
        assert_eq!(index.monthly(&r), Ok(Some(Decimal::new(3, 0))));
        r.id = "b".into();
        assert_eq!(index.monthly(&r), Ok(None));
        assert_eq!(index.window, Some((at(10).date_naive(), at(39).date_naive())));
    }
}
