//! Amazon SNS: publishing one message to a topic (the cleanup job's owner notifications).

use super::{client, AccountConfig, AwsContext, AwsError};

/// SNS's limit on a subject: at most 100 characters.
pub const MAX_SUBJECT_CHARS: usize = 100;

/// Publishes `message` with `subject` to the topic `topic_arn` in `region`, with `account`'s credentials.
/// Returns the message id SNS assigned. The subject is cut to [`MAX_SUBJECT_CHARS`] and its line breaks
/// become spaces (SNS refuses both); an empty subject is left out.
pub async fn publish(
    ctx: &AwsContext,
    account: &AccountConfig,
    region: &str,
    topic_arn: &str,
    subject: &str,
    message: &str,
) -> Result<String, AwsError> {
    let sns = client!(aws_sdk_sns, ctx, account, region);
    let subject = sns_subject(subject);
    let out = sns
        .publish()
        .topic_arn(topic_arn)
        .set_subject((!subject.is_empty()).then_some(subject))
        .message(message)
        .send()
        .await
        .map_err(|e| AwsError::sdk("sns", "Publish", &e).about(topic_arn))?;
    out.message_id.filter(|id| !id.is_empty()).ok_or_else(|| {
        AwsError::malformed("sns", "Publish", "no message id in the answer").about(topic_arn.to_string())
    })
}

/// A subject SNS accepts: printable, on one line, at most [`MAX_SUBJECT_CHARS`] characters.
pub fn sns_subject(subject: &str) -> String {
    let one_line: String =
        subject.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_string();
    if one_line.chars().count() <= MAX_SUBJECT_CHARS {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(MAX_SUBJECT_CHARS - 3).collect();
    cut.truncate(cut.trim_end().len());
    cut.push_str("...");
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_fit_sns() {
        assert_eq!(sns_subject("cleanup: 3 resources"), "cleanup: 3 resources");
        assert_eq!(sns_subject(" two\nlines\r\t "), "two lines");
        let long = "x".repeat(150);
        let s = sns_subject(&long);
        assert_eq!(s.chars().count(), MAX_SUBJECT_CHARS);
        assert!(s.ends_with("..."));
        let accented = "é".repeat(120);
        assert_eq!(sns_subject(&accented).chars().count(), MAX_SUBJECT_CHARS);
        let spaced = format!("{} {}", "x".repeat(96), "y".repeat(10));
        assert_eq!(sns_subject(&spaced), format!("{}...", "x".repeat(96)), "no space before the ellipsis");
    }
}
