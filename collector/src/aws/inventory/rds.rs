//! RDS database instances.

use aws_sdk_rds::types::DbInstance;
use aws_sdk_rds::Client;

use super::{tag_map, to_chrono, Unit};
use crate::aws::AwsError;
use crate::model::{Details, Resource};

pub async fn db_instances(client: &Client, unit: &Unit) -> Result<Vec<Resource>, AwsError> {
    let mut out = Vec::new();
    let mut pages = client.describe_db_instances().set_max_records(unit.page_size(20, 100)).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::sdk("rds", "DescribeDBInstances", &e))?;
        out.extend(page.db_instances().iter().filter_map(|db| db_instance(db, unit)));
    }
    Ok(out)
}

pub(crate) fn db_instance(db: &DbInstance, unit: &Unit) -> Option<Resource> {
    let id = db.db_instance_identifier()?;
    Some(Resource {
        arn: unit.arn("rds:db", id),
        resource_type: "rds:db".into(),
        account_id: unit.account_id.clone(),
        region: unit.region.clone(),
        id: id.to_string(),
        name: Some(id.to_string()),
        state: db.db_instance_status().map(str::to_string),
        created_at: db.instance_create_time().and_then(to_chrono),
        details: Details::DbInstance {
            instance_class: db.db_instance_class().map(str::to_string),
            engine: db.engine().map(str::to_string),
            allocated_storage_gib: db.allocated_storage(),
        },
        tags: tag_map(db.tag_list().iter().map(|t| (t.key(), t.value()))),
    })
}
