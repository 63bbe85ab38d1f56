//! EC2 instances, EBS volumes and snapshots, Elastic IPs.

use aws_sdk_ec2::types::{Address, Filter, Instance, Snapshot, Tag, Volume};
use aws_sdk_ec2::Client;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::{tag_map, to_chrono, Unit};
use crate::aws::AwsError;
use crate::model::{Details, Resource};

fn tags(list: Option<&[Tag]>) -> std::collections::BTreeMap<String, String> {
    tag_map(list.unwrap_or_default().iter().map(|t| (t.key(), t.value())))
}

/// `User initiated (2024-05-01 12:00:00 GMT)` → the time, when the reason has one (emulators write `UTC`).
pub fn parse_transition_time(reason: &str) -> Option<DateTime<Utc>> {
    let start = reason.find('(')? + 1;
    let end = reason[start..].find(" GMT)").or_else(|| reason[start..].find(" UTC)"))? + start;
    NaiveDateTime::parse_from_str(&reason[start..end], "%Y-%m-%d %H:%M:%S").ok().map(|t| t.and_utc())
}

pub async fn instances(client: &Client, unit: &Unit) -> Result<Vec<Resource>, AwsError> {
    let mut out = Vec::new();
    let mut pages = client.describe_instances().set_max_results(unit.page_size(5, 1000)).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::sdk("ec2", "DescribeInstances", &e))?;
        out.extend(page.reservations().iter().flat_map(|r| r.instances()).filter_map(|i| instance(i, unit)));
    }
    Ok(out)
}

/// An instance as the inventory keeps it; `None` for a terminated one (or one without an id).
pub(crate) fn instance(inst: &Instance, unit: &Unit) -> Option<Resource> {
    let id = inst.instance_id()?;
    let state = inst.state().and_then(|s| s.name()).map(|n| n.as_str().to_string());
    if state.as_deref() == Some("terminated") {
        return None;
    }
    let tags = tags(Some(inst.tags()));
    let stopped_at = match state.as_deref() {
        Some("stopped") | Some("stopping") => inst.state_transition_reason().and_then(parse_transition_time),
        _ => None,
    };
    Some(Resource {
        arn: unit.arn("ec2:instance", id),
        resource_type: "ec2:instance".into(),
        account_id: unit.account_id.clone(),
        region: unit.region.clone(),
        id: id.to_string(),
        name: tags.get("Name").cloned(),
        state,
        created_at: inst.launch_time().and_then(to_chrono),
        details: Details::Instance {
            instance_type: inst.instance_type().map(|t| t.as_str().to_string()),
            stopped_at,
            volume_ids: inst
                .block_device_mappings()
                .iter()
                .filter_map(|m| m.ebs().and_then(|e| e.volume_id()).map(str::to_string))
                .collect(),
        },
        tags,
    })
}

pub async fn volumes(client: &Client, unit: &Unit) -> Result<Vec<Resource>, AwsError> {
    let mut out = Vec::new();
    let mut pages = client.describe_volumes().set_max_results(unit.page_size(5, 500)).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::sdk("ec2", "DescribeVolumes", &e))?;
        out.extend(page.volumes().iter().filter_map(|v| volume(v, unit)));
    }
    Ok(out)
}

pub(crate) fn volume(v: &Volume, unit: &Unit) -> Option<Resource> {
    let id = v.volume_id()?;
    let tags = tags(Some(v.tags()));
    Some(Resource {
        arn: unit.arn("ec2:volume", id),
        resource_type: "ec2:volume".into(),
        account_id: unit.account_id.clone(),
        region: unit.region.clone(),
        id: id.to_string(),
        name: tags.get("Name").cloned(),
        state: v.state().map(|s| s.as_str().to_string()),
        created_at: v.create_time().and_then(to_chrono),
        details: Details::Volume {
            size_gib: v.size(),
            volume_type: v.volume_type().map(|t| t.as_str().to_string()),
            attached_instance_ids: v.attachments().iter().filter_map(|a| a.instance_id().map(str::to_string)).collect(),
        },
        tags,
    })
}

pub async fn snapshots(client: &Client, unit: &Unit) -> Result<Vec<Resource>, AwsError> {
    let mut out = Vec::new();
    let mut pages =
        client.describe_snapshots().owner_ids("self").set_max_results(unit.page_size(5, 1000)).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::sdk("ec2", "DescribeSnapshots", &e))?;
        out.extend(page.snapshots().iter().filter_map(|s| snapshot(s, unit)));
    }
    Ok(out)
}

pub(crate) fn snapshot(s: &Snapshot, unit: &Unit) -> Option<Resource> {
    let id = s.snapshot_id()?;
    let tags = tags(Some(s.tags()));
    Some(Resource {
        arn: unit.arn("ec2:snapshot", id),
        resource_type: "ec2:snapshot".into(),
        account_id: unit.account_id.clone(),
        region: unit.region.clone(),
        id: id.to_string(),
        name: tags.get("Name").cloned(),
        state: s.state().map(|x| x.as_str().to_string()),
        created_at: s.start_time().and_then(to_chrono),
        details: Details::Snapshot { volume_id: s.volume_id().map(str::to_string), size_gib: s.volume_size() },
        tags,
    })
}

pub async fn addresses(client: &Client, unit: &Unit) -> Result<Vec<Resource>, AwsError> {
    // DescribeAddresses has no pagination: one call returns every address of the region.
    let out = client
        .describe_addresses()
        .filters(Filter::builder().name("domain").values("vpc").build())
        .send()
        .await
        .map_err(|e| AwsError::sdk("ec2", "DescribeAddresses", &e))?;
    Ok(out.addresses().iter().filter_map(|a| address(a, unit)).collect())
}

pub(crate) fn address(a: &Address, unit: &Unit) -> Option<Resource> {
    let id = a.allocation_id()?;
    let tags = tags(Some(a.tags()));
    // Some endpoints send empty elements for an unassociated address.
    let association_id = a.association_id().filter(|s| !s.is_empty());
    let instance_id = a.instance_id().filter(|s| !s.is_empty());
    Some(Resource {
        arn: unit.arn("ec2:elastic-ip", id),
        resource_type: "ec2:elastic-ip".into(),
        account_id: unit.account_id.clone(),
        region: unit.region.clone(),
        id: id.to_string(),
        name: tags.get("Name").cloned(),
        state: Some(if association_id.is_some() { "associated" } else { "unassociated" }.into()),
        created_at: None,
        details: Details::ElasticIp {
            public_ip: a.public_ip().map(str::to_string),
            association_id: association_id.map(str::to_string),
            instance_id: instance_id.map(str::to_string),
        },
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_state_transition_times() {
        let t = parse_transition_time("User initiated (2024-05-01 12:30:00 GMT)").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-01T12:30:00+00:00");
        assert_eq!(parse_transition_time("User initiated (2024-05-01 12:30:00 UTC)"), Some(t));
        assert_eq!(parse_transition_time("User initiated"), None);
        assert_eq!(parse_transition_time("(garbage GMT)"), None);
    }
}
