//! The Resource Groups Tagging API: tags of every tagged resource in a region, of any type. It never lists a
//! resource that was never tagged, so the describe calls are what make untagged resources visible.

use std::collections::BTreeMap;

use aws_sdk_resourcegroupstagging::Client;

use super::{tag_map, Unit};
use crate::arn::canonical;
use crate::aws::AwsError;

/// (canonical ARN, tags) of every resource the API returns for the region.
pub async fn tagged(client: &Client, unit: &Unit) -> Result<Vec<(String, BTreeMap<String, String>)>, AwsError> {
    let mut out = Vec::new();
    let mut pages = client.get_resources().set_resources_per_page(unit.page_size(1, 100)).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::sdk("resourcegroupstaggingapi", "GetResources", &e))?;
        for m in page.resource_tag_mapping_list() {
            let Some(arn) = m.resource_arn() else { continue };
            out.push((canonical(arn), tag_map(m.tags().iter().map(|t| (Some(t.key()), Some(t.value()))))));
        }
    }
    Ok(out)
}
