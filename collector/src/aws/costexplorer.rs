//! Cost Explorer: daily cost (unblended and amortized) grouped by service, linked account and
//! cost-allocation tag, every page read. Each request costs $0.01, so the daemon decides *which* days to ask
//! for (only the days that can still change) and *how often* (never more than its interval); this module
//! only asks.

use std::collections::BTreeMap;
use std::str::FromStr;

use aws_sdk_costexplorer::operation::get_cost_and_usage::GetCostAndUsageOutput;
use aws_sdk_costexplorer::types::{DateInterval, Granularity, GroupDefinition, GroupDefinitionType};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use super::{client, AccountConfig, AwsContext, AwsError, AwsErrorKind};
use crate::money;

/// Cost Explorer's only endpoint region.
pub const REGION: &str = "us-east-1";

/// The service and the operation, as the call counters spell them.
const SERVICE: &str = "costexplorer";
const OPERATION: &str = "GetCostAndUsage";

/// What a result is grouped by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum GroupKey {
    Service,
    LinkedAccount,
    /// A cost-allocation tag key.
    Tag(String),
}

impl GroupKey {
    /// How the grouping is stored and labelled: `service`, `account`, `tag:<key>`.
    pub fn dimension(&self) -> String {
        match self {
            GroupKey::Service => "service".into(),
            GroupKey::LinkedAccount => "account".into(),
            GroupKey::Tag(k) => format!("tag:{k}"),
        }
    }

    fn definition(&self) -> GroupDefinition {
        let (kind, key) = match self {
            GroupKey::Service => (GroupDefinitionType::Dimension, "SERVICE"),
            GroupKey::LinkedAccount => (GroupDefinitionType::Dimension, "LINKED_ACCOUNT"),
            GroupKey::Tag(k) => (GroupDefinitionType::Tag, k.as_str()),
        };
        GroupDefinition::builder().r#type(kind).key(key).build()
    }
}

/// The cost metrics requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostMetric {
    Unblended,
    Amortized,
}

impl CostMetric {
    pub const ALL: [CostMetric; 2] = [CostMetric::Unblended, CostMetric::Amortized];

    pub fn api_name(self) -> &'static str {
        match self {
            CostMetric::Unblended => "UnblendedCost",
            CostMetric::Amortized => "AmortizedCost",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CostMetric::Unblended => "unblended",
            CostMetric::Amortized => "amortized",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// One day's cost of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostRow {
    pub day: NaiveDate,
    /// `service`, `account` or `tag:<key>`.
    pub dimension: String,
    /// The service name, account id or tag value (empty for resources without the tag).
    pub key: String,
    pub metric: CostMetric,
    pub amount: Decimal,
    pub unit: String,
    /// Cost Explorer's own flag: the day's figures may still change.
    pub estimated: bool,
}

/// Everything one fetch brought back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CostFetch {
    pub rows: Vec<CostRow>,
    /// GetCostAndUsage requests made (each one billed at $0.01).
    pub requests: u64,
    /// Account id → name, where Cost Explorer says.
    pub account_names: BTreeMap<String, String>,
}

/// Parses a Cost Explorer amount exactly (plain or scientific notation).
pub fn parse_amount(s: &str) -> Option<Decimal> {
    Decimal::from_str(s).ok().or_else(|| Decimal::from_scientific(s).ok())
}

/// Adds one GetCostAndUsage page grouped by `group` to `out`: its account names and its rows. An amount
/// that is not a number, or whose magnitude exceeds [`MAX_AMOUNT`](crate::money::MAX_AMOUNT), fails the page
/// with the group and day it belongs to.
fn read_page(page: &GetCostAndUsageOutput, group: &GroupKey, out: &mut CostFetch) -> Result<(), AwsError> {
    let dimension = group.dimension();
    let malformed = |message: String| AwsError::malformed(SERVICE, OPERATION, message).about(format!("by {dimension}"));
    for attr in page.dimension_value_attributes() {
        if let (Some(v), Some(name)) = (attr.value(), attr.attributes().and_then(|a| a.get("description"))) {
            out.account_names.insert(v.to_string(), name.clone());
        }
    }
    for result in page.results_by_time() {
        let Some(day) = result.time_period().and_then(|p| NaiveDate::parse_from_str(p.start(), "%Y-%m-%d").ok()) else {
            return Err(malformed("a result has no valid time period".into()));
        };
        for g in result.groups() {
            let raw = g.keys().first().map(String::as_str).unwrap_or_default();
            // Tag groups come back as `key$value`.
            let key = match group {
                GroupKey::Tag(_) => raw.split_once('$').map_or(raw, |(_, v)| v),
                _ => raw,
            };
            for metric in CostMetric::ALL {
                let Some(value) = g.metrics().and_then(|m| m.get(metric.api_name())) else { continue };
                let text = value.amount().unwrap_or("0");
                let amount = match parse_amount(text) {
                    None => Err(format!("not an amount: {text:?}")),
                    Some(a) => money::bounded(a).map_err(|e| e.to_string()),
                }
                .map_err(|e| malformed(format!("{day} {key:?} {}: {e}", metric.api_name())))?;
                out.rows.push(CostRow {
                    day,
                    dimension: dimension.clone(),
                    key: key.to_string(),
                    metric,
                    amount,
                    unit: value.unit().unwrap_or("USD").to_string(),
                    estimated: result.estimated(),
                });
            }
        }
    }
    Ok(())
}

/// Asks for `[start, end)` by day, one grouping after another in the order given, every page of each.
pub async fn fetch(
    ctx: &AwsContext,
    account: &AccountConfig,
    start: NaiveDate,
    end: NaiveDate,
    groups: &[GroupKey],
) -> Result<CostFetch, AwsError> {
    let ce = client!(aws_sdk_costexplorer, ctx, account, REGION);
    let period = DateInterval::builder()
        .start(start.format("%Y-%m-%d").to_string())
        .end(end.format("%Y-%m-%d").to_string())
        .build()
        .map_err(|e| AwsError::new(SERVICE, OPERATION, AwsErrorKind::Client, e.to_string()))?;
    let mut out = CostFetch::default();
    for group in groups {
        let dimension = group.dimension();
        let mut token: Option<String> = None;
        loop {
            let page = ce
                .get_cost_and_usage()
                .time_period(period.clone())
                .granularity(Granularity::Daily)
                .metrics(CostMetric::Unblended.api_name())
                .metrics(CostMetric::Amortized.api_name())
                .group_by(group.definition())
                .set_next_page_token(token.take())
                .send()
                .await;
            out.requests += 1;
            let page = page.map_err(|e| AwsError::sdk(SERVICE, OPERATION, &e).about(format!("by {dimension}")))?;
            read_page(&page, group, &mut out)?;
            match page.next_page_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact() {
        assert_eq!(parse_amount("12.3456").unwrap().to_string(), "12.3456");
        assert_eq!(parse_amount("0.00000001234").unwrap().to_string(), "0.00000001234");
        assert_eq!(parse_amount("1.5E-7").unwrap().to_string(), "0.00000015");
        assert_eq!(parse_amount("-3").unwrap().to_string(), "-3");
        assert!(parse_amount("abc").is_none());
    }

    fn page(day: &str, groups: &[(&str, &str)]) -> GetCostAndUsageOutput {
        use aws_sdk_costexplorer::types::{Group, MetricValue, ResultByTime};
        let end = (NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap() + chrono::Days::new(1)).to_string();
        let mut result = ResultByTime::builder()
            .time_period(DateInterval::builder().start(day).end(end).build().unwrap())
            .estimated(false);
        for (key, amount) in groups {
            let value = MetricValue::builder().amount(*amount).unit("USD").build();
            result = result.groups(
                Group::builder()
                    .keys(*key)
                    .metrics("UnblendedCost", value.clone())
                    .metrics("AmortizedCost", value)
                    .build(),
            );
        }
        GetCostAndUsageOutput::builder().results_by_time(result.build()).build()
    }

    #[test]
    fn pages_become_rows() {
        let mut out = CostFetch::default();
        read_page(&page("2026-03-01", &[("Amazon EC2", "12.5"), ("Amazon S3", "1E-2")]), &GroupKey::Service, &mut out)
            .unwrap();
        let rows: Vec<_> = out.rows.iter().map(|r| (r.key.as_str(), r.metric, r.amount.to_string())).collect();
        assert_eq!(
            rows,
            [
                ("Amazon EC2", CostMetric::Unblended, "12.5".to_string()),
                ("Amazon EC2", CostMetric::Amortized, "12.5".to_string()),
                ("Amazon S3", CostMetric::Unblended, "0.01".to_string()),
                ("Amazon S3", CostMetric::Amortized, "0.01".to_string()),
            ]
        );
        let mut out = CostFetch::default();
        read_page(&page("2026-03-01", &[("team$web", "1")]), &GroupKey::Tag("team".into()), &mut out).unwrap();
        assert_eq!((out.rows[0].dimension.as_str(), out.rows[0].key.as_str()), ("tag:team", "web"));
    }

    #[test]
    fn amounts_beyond_one_quadrillion_fail_with_group_and_day() {
        // Two groups of 5e28: each alone fits a decimal, their sum in any window does not.
        let huge = page("2026-03-01", &[("Amazon EC2", "5e28"), ("Amazon S3", "5E+28")]);
        let err = read_page(&huge, &GroupKey::Service, &mut CostFetch::default()).unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::MalformedResponse);
        assert_eq!(
            err.to_string(),
            "GetCostAndUsage by service: 2026-03-01 \"Amazon EC2\" UnblendedCost: amount \
             50000000000000000000000000000 is outside the accepted range of ±1000000000000000"
        );
        let check = |amount: &str, ok: bool| {
            let result =
                read_page(&page("2026-03-02", &[("Tax", amount)]), &GroupKey::Service, &mut CostFetch::default());
            assert_eq!(result.is_ok(), ok, "{amount}: {result:?}");
        };
        check("1000000000000000", true);
        check("-1000000000000000", true);
        check("1000000000000000.01", false);
        check("-2e15", false);
        let err = read_page(&page("2026-03-02", &[("Tax", "n/a")]), &GroupKey::Service, &mut CostFetch::default());
        assert_eq!(
            err.unwrap_err().to_string(),
            "GetCostAndUsage by service: 2026-03-02 \"Tax\" UnblendedCost: not an amount: \"n/a\""
        );
    }

    #[test]
    fn dimensions() {
        assert_eq!(GroupKey::Service.dimension(), "service");
        assert_eq!(GroupKey::LinkedAccount.dimension(), "account");
        assert_eq!(GroupKey::Tag("team".into()).dimension(), "tag:team");
        assert_eq!(CostMetric::parse("amortized"), Some(CostMetric::Amortized));
    }
}
