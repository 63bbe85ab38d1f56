//! CloudWatch Logs signals: how many events of a log group match a filter pattern in a time range, and when
//! a log group last received an event.
//!
//! Filter patterns are CloudWatch Logs' own syntax: terms (`ERROR`), quoted phrases (`"connection reset"`),
//! `?term` alternatives, `-term` exclusions, and JSON or space-delimited selectors (`{ $.level = "error" }`,
//! `[ip, user, status=5*]`). Local emulators may support only terms and quoted phrases.

use chrono::{DateTime, Utc};

use super::{client, AccountConfig, AwsContext, AwsError};

/// Events of `log_group` matching `pattern` with a timestamp in `[start_ms, end_ms)`, every page read.
/// Returns (matches, calls made).
pub async fn count_matches(
    ctx: &AwsContext,
    account: &AccountConfig,
    region: &str,
    log_group: &str,
    pattern: &str,
    start_ms: i64,
    end_ms: i64,
) -> Result<(u64, u64), AwsError> {
    if end_ms <= start_ms {
        return Ok((0, 0));
    }
    let logs = client!(aws_sdk_cloudwatchlogs, ctx, account, region);
    let (mut matches, mut calls) = (0u64, 0u64);
    let mut token: Option<String> = None;
    loop {
        calls += 1;
        // The API's end time is inclusive; ours is exclusive, so consecutive ranges never count twice.
        let page = logs
            .filter_log_events()
            .log_group_name(log_group)
            .filter_pattern(pattern)
            .start_time(start_ms)
            .end_time(end_ms - 1)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| AwsError::sdk("cloudwatchlogs", "FilterLogEvents", &e).about(log_group))?;
        matches += page.events().len() as u64;
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok((matches, calls))
}

/// The newest event time of any stream of the log group, if it has any.
pub async fn last_event_time(
    ctx: &AwsContext,
    account: &AccountConfig,
    region: &str,
    log_group: &str,
) -> Result<Option<DateTime<Utc>>, AwsError> {
    let logs = client!(aws_sdk_cloudwatchlogs, ctx, account, region);
    let out = logs
        .describe_log_streams()
        .log_group_name(log_group)
        .order_by(aws_sdk_cloudwatchlogs::types::OrderBy::LastEventTime)
        .descending(true)
        .limit(1)
        .send()
        .await
        .map_err(|e| AwsError::sdk("cloudwatchlogs", "DescribeLogStreams", &e).about(log_group))?;
    Ok(out.log_streams().first().and_then(|s| s.last_event_timestamp()).and_then(DateTime::from_timestamp_millis))
}
