//! SNS: the digest's short subject (SNS allows 100 characters) and plain text published to the contact's topic,
//! with the credentials of the account that owns it.

use collector::aws::{self, AccountConfig};

use super::{Channel, Delivery, Message, Notifier, NotifyError, SnsFailure, SnsTarget};

pub(super) async fn send(
    notifier: &Notifier,
    target: &SnsTarget,
    contact: &str,
    message: &Message,
) -> Result<Delivery, NotifyError> {
    let fail =
        |failure| NotifyError::Sns { contact: contact.to_string(), topic_arn: target.topic_arn.clone(), failure };
    let account = publisher(notifier, target).await.map_err(fail)?;
    let id = aws::sns::publish(
        &notifier.aws,
        account,
        &target.region,
        &target.topic_arn,
        &message.short_subject,
        &message.text,
    )
    .await
    .map_err(|e| fail(SnsFailure::Aws(e)))?;
    Ok(Delivery {
        channel: Channel::Sns,
        contact: contact.to_string(),
        target: target.topic_arn.clone(),
        message_id: Some(id),
        response: None,
    })
}

/// The account whose credentials publish: the one named, else the one whose id the topic's ARN names
/// (ids asked of STS once, for the accounts not known yet), else the first.
async fn publisher<'a>(notifier: &'a Notifier, target: &SnsTarget) -> Result<&'a AccountConfig, SnsFailure> {
    let accounts = &notifier.aws.accounts;
    if let Some(name) = &target.account {
        return accounts.iter().find(|a| &a.spec.name == name).ok_or_else(|| SnsFailure::NoAccount(name.clone()));
    }
    let by_id = |ids: &std::collections::BTreeMap<String, String>| {
        accounts.iter().find(|a| ids.get(&a.spec.name) == Some(&target.account_id))
    };
    let known = notifier.account_ids.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(a) = by_id(&known) {
        return Ok(a);
    }
    for a in accounts.iter().filter(|a| !known.contains_key(&a.spec.name)) {
        match aws::account_id(&notifier.aws, a).await {
            Ok(id) => {
                let found = id == target.account_id;
                notifier.account_ids.lock().unwrap_or_else(|p| p.into_inner()).insert(a.spec.name.clone(), id);
                if found {
                    return Ok(a);
                }
            }
            Err(error) => tracing::warn!(%error, account = a.spec.name, "cannot identify the account"),
        }
    }
    accounts.first().ok_or_else(|| SnsFailure::NoAccount(String::new()))
}
