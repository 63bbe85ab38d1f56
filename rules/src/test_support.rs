//! Test helpers shared by the rule families' tests: a fixed clock, resources and daily costs.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::input::{DailyCost, Details, Resource};

/// Noon UTC `day` days after 2026-01-01.
pub fn at(day: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).single().unwrap() + Duration::days(day)
}

/// A resource of `resource_type` (`service:kind`) in account 111111111111, eu-west-1, first seen at
/// day 0, with ARN `arn:aws:service:eu-west-1:111111111111:kind/id`.
pub fn res(resource_type: &str, id: &str, tags: &[(&str, &str)]) -> Resource {
    let (service, kind) = resource_type.split_once(':').unwrap_or((resource_type, "x"));
    Resource {
        arn: format!("arn:aws:{service}:eu-west-1:111111111111:{kind}/{id}"),
        resource_type: resource_type.to_string(),
        account_id: "111111111111".into(),
        region: "eu-west-1".into(),
        id: id.to_string(),
        name: None,
        state: None,
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        created_at: None,
        first_seen: at(0),
        details: Details::Other,
    }
}

/// Daily costs `(resource id, days before day now_day, amount)`.
pub fn costs_for(now_day: i64, rows: &[(&str, i64, &str)]) -> Vec<DailyCost> {
    rows.iter()
        .map(|(id, before, amount)| DailyCost {
            day: at(now_day - before).date_naive(),
            account_id: "111111111111".into(),
            service: "AmazonEC2".into(),
            resource_id: Some(id.to_string()),
            tags: BTreeMap::new(),
            amount: amount.parse().unwrap(),
        })
        .collect()
}
