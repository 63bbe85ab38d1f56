//! Amazon S3 writes: uploading one object (the scheduled reports). Reading billing exports and Terraform
//! states is the sources' business.

use super::{client, AccountConfig, AwsContext, AwsError};

/// Uploads `body` as `bucket/key` in `region` with `account`'s credentials and the given content type.
/// Uploading the same key again replaces the object (a retry is harmless). Returns the object's ETag.
pub async fn put_object(
    ctx: &AwsContext,
    account: &AccountConfig,
    region: &str,
    bucket: &str,
    key: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<Option<String>, AwsError> {
    let s3 = client!(aws_sdk_s3, ctx, account, region);
    let out = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(body.into())
        .send()
        .await
        .map_err(|e| AwsError::sdk("s3", "PutObject", &e).about(format!("s3://{bucket}/{key}")))?;
    Ok(out.e_tag)
}
