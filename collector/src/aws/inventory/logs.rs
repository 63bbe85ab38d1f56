//! CloudWatch Logs log groups. Their tags come from the Tagging API (DescribeLogGroups has none), which
//! saves one ListTagsForResource call per group.

use aws_sdk_cloudwatchlogs::types::LogGroup;
use aws_sdk_cloudwatchlogs::Client;
use chrono::DateTime;

use super::Unit;
use crate::aws::AwsError;
use crate::model::{Details, Resource};

pub async fn log_groups(client: &Client, unit: &Unit) -> Result<Vec<Resource>, AwsError> {
    let mut out = Vec::new();
    let mut pages = client.describe_log_groups().set_limit(unit.page_size(1, 50)).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::sdk("cloudwatchlogs", "DescribeLogGroups", &e))?;
        out.extend(page.log_groups().iter().filter_map(|g| log_group(g, unit)));
    }
    Ok(out)
}

/// A log group without its tags (DescribeLogGroups has none).
pub(crate) fn log_group(g: &LogGroup, unit: &Unit) -> Option<Resource> {
    let name = g.log_group_name()?;
    Some(Resource {
        arn: unit.arn("logs:log-group", name),
        resource_type: "logs:log-group".into(),
        account_id: unit.account_id.clone(),
        region: unit.region.clone(),
        id: name.to_string(),
        name: Some(name.to_string()),
        state: None,
        created_at: g.creation_time().and_then(DateTime::from_timestamp_millis),
        details: Details::LogGroup { retention_days: g.retention_in_days(), stored_bytes: g.stored_bytes() },
        tags: Default::default(),
    })
}
