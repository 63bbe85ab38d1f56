//! S3 buckets: listed once per account (the list is global), placed in their region, tags read per bucket.

use std::collections::BTreeMap;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::Client;

use super::{tag_map, to_chrono};
use crate::arn;
use crate::aws::AwsError;
use crate::model::{Details, Resource};

/// `GetBucketLocation`'s answer as a region name (empty means us-east-1, `EU` is the old eu-west-1).
pub fn location_region(constraint: Option<&str>) -> String {
    match constraint {
        None | Some("") => "us-east-1".into(),
        Some("EU") => "eu-west-1".into(),
        Some(r) => r.to_string(),
    }
}

/// Buckets of the account that live in one of `regions`. `clients` has one client per region; the first
/// is used for account-wide calls.
pub async fn buckets(
    clients: &BTreeMap<String, Client>,
    account_id: &str,
    regions: &[String],
) -> Result<Vec<Resource>, AwsError> {
    let Some(any) = clients.values().next() else { return Ok(Vec::new()) };
    let mut listed = Vec::new();
    let mut token = None;
    loop {
        let page = any
            .list_buckets()
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| AwsError::sdk("s3", "ListBuckets", &e))?;
        for b in page.buckets() {
            if let Some(name) = b.name() {
                listed.push((
                    name.to_string(),
                    b.creation_date().and_then(to_chrono),
                    b.bucket_region().map(str::to_string),
                ));
            }
        }
        match page.continuation_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    let mut out = Vec::new();
    for (name, created_at, region) in listed {
        let region = match region {
            Some(r) => r,
            None => {
                let loc = any
                    .get_bucket_location()
                    .bucket(&name)
                    .send()
                    .await
                    .map_err(|e| AwsError::sdk("s3", "GetBucketLocation", &e))?;
                location_region(loc.location_constraint().map(|c| c.as_str()))
            }
        };
        if !regions.contains(&region) {
            continue;
        }
        let client = clients.get(&region).unwrap_or(any);
        let tags = match client.get_bucket_tagging().bucket(&name).send().await {
            Ok(t) => tag_map(t.tag_set().iter().map(|t| (Some(t.key()), Some(t.value())))),
            Err(e) if e.code() == Some("NoSuchTagSet") => BTreeMap::new(),
            Err(e) => return Err(AwsError::sdk("s3", "GetBucketTagging", &e)),
        };
        out.push(Resource {
            arn: arn::build("s3:bucket", &region, account_id, &name),
            resource_type: "s3:bucket".into(),
            account_id: account_id.to_string(),
            region,
            id: name.clone(),
            name: Some(name),
            state: None,
            created_at,
            details: Details::Bucket,
            tags,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_locations() {
        assert_eq!(location_region(None), "us-east-1");
        assert_eq!(location_region(Some("")), "us-east-1");
        assert_eq!(location_region(Some("EU")), "eu-west-1");
        assert_eq!(location_region(Some("ap-south-1")), "ap-south-1");
    }
}
