//! Owner notifications of the cleanup: one digest per contact per run, not one message per resource.
//!
//! The cleanup job decides what is due and when; this module decides who is told ([`owner_of`], [`group`]),
//! what the message says ([`render()`]) and delivers it over each of the contact's channels ([`Notifier`]):
//! email through an SMTP relay, a Slack-compatible webhook, an SNS topic. A failing channel never stops the
//! others; the caller decides what counts as notified (at least one channel delivered).

pub(crate) mod render;
mod settings;
pub(crate) mod smtp;
mod sns;
pub(crate) mod webhook;

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use chrono::NaiveDate;
use collector::aws::AwsError;
use collector::AwsContext;
use futures::future::BoxFuture;
use rust_decimal::Decimal;
use serde::Serialize;

pub use render::{
    action_words, escape_html, escape_slack, render, subject_within, usd, Message, SHORT_SUBJECT_CHARS, SLACK_MAX_ITEMS,
};
pub(crate) use settings::{check, check_smtp, webhook_target};
pub use settings::{
    is_email, Contact, ContactSection, NotifySection, NotifySettings, Secret, SmtpSection, SmtpSettings, SmtpTls,
    SnsTarget,
};

/// Which message of a resource's cleanup this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    /// Sent when resources are marked.
    First,
    /// Sent one day before the due date; its subject says so.
    FinalWarning,
}

/// One resource in a digest, as the cleanup job describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestItem {
    pub arn: String,
    pub account_id: String,
    pub account_name: Option<String>,
    pub region: String,
    /// `service:type`, e.g. `ec2:instance`.
    pub resource_type: String,
    pub resource_id: String,
    /// The resource's `Name` tag, when it has one.
    pub name: Option<String>,
    /// The cleanup rule that selected it.
    pub rule: String,
    /// Why, in words.
    pub reason: String,
    /// What will be done: `stop`, `snapshot_delete`, `release`, `delete`, `set_retention` (shown in words).
    pub action: String,
    /// The day the action is due.
    pub due: NaiveDate,
    /// Estimated monthly savings in USD, when the cost is known.
    pub monthly_usd: Option<Decimal>,
    /// How to keep it, in words (written by the cleanup job).
    pub keep: String,
}

/// Everything one contact is told in one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    /// The contact's name, or an email address (an owner tag that names no contact).
    pub contact: String,
    pub notice: Notice,
    pub items: Vec<DigestItem>,
    /// The tag marking a resource for cleanup.
    pub mark_tag_key: String,
    /// The tag exempting a resource from cleanup.
    pub protect_tag_key: String,
}

/// The contact (name) told about a resource with `tags`: the value of the first owner tag key (see
/// [`NotifySettings::owner_tags`]) that names a contact, or that is an email address when an SMTP relay is
/// configured (an ad-hoc contact, written to by email); else the fallback contact. A configured key matches
/// a tag key exactly, else ignoring ASCII case (`Owner` for `owner`); values are trimmed.
pub fn owner_of(tags: &BTreeMap<String, String>, settings: &NotifySettings) -> String {
    for key in &settings.owner_tags {
        let value = tags.get(key).or_else(|| tags.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v));
        let Some(value) = value.map(|v| v.trim()) else { continue };
        if settings.contacts.contains_key(value) || (settings.smtp.is_some() && is_email(value)) {
            return value.to_string();
        }
    }
    settings.fallback.clone()
}

/// One digest per contact ([`owner_of`] each resource's tags), ordered by contact; each digest's items by
/// due date, account, region, type and id.
pub fn group<'a>(
    settings: &NotifySettings,
    notice: Notice,
    mark_tag_key: &str,
    protect_tag_key: &str,
    items: impl IntoIterator<Item = (DigestItem, &'a BTreeMap<String, String>)>,
) -> Vec<Digest> {
    let mut by_contact: BTreeMap<String, Vec<DigestItem>> = BTreeMap::new();
    for (item, tags) in items {
        by_contact.entry(owner_of(tags, settings)).or_default().push(item);
    }
    by_contact
        .into_iter()
        .map(|(contact, mut items)| {
            items.sort_by(|a, b| {
                (a.due, &a.account_id, &a.region, &a.resource_type, &a.resource_id, &a.arn).cmp(&(
                    b.due,
                    &b.account_id,
                    &b.region,
                    &b.resource_type,
                    &b.resource_id,
                    &b.arn,
                ))
            });
            Digest {
                contact,
                notice,
                items,
                mark_tag_key: mark_tag_key.to_string(),
                protect_tag_key: protect_tag_key.to_string(),
            }
        })
        .collect()
}

/// A way of reaching a contact. A bounded set, so it can be a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Webhook,
    Sns,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Webhook, Channel::Sns];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
            Channel::Sns => "sns",
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A digest delivered over one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub channel: Channel,
    pub contact: String,
    /// Where it went, without secrets: the email recipients, the webhook's scheme and host, the topic ARN.
    pub target: String,
    /// The email's `Message-ID`, or the id SNS gave the message; none for a webhook.
    pub message_id: Option<String>,
    /// What the receiver answered: the relay's last reply, the webhook's status and the start of its body.
    pub response: Option<String>,
}

/// Why a digest was not delivered over one channel. Never shows a password or a webhook URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The digest names neither a configured contact nor an email address.
    #[error("{contact}: no contact has this name, and it is not an email address")]
    UnknownContact { contact: String },
    #[error("email to {contact}: {failure}")]
    Email { contact: String, failure: EmailFailure },
    #[error("webhook to {contact} ({target}): {failure}")]
    Webhook {
        contact: String,
        /// The webhook's scheme and host.
        target: String,
        failure: WebhookFailure,
    },
    #[error("sns to {contact}: {failure}")]
    Sns { contact: String, topic_arn: String, failure: SnsFailure },
}

/// Why an email was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailFailure {
    /// The contact has addresses but no relay is configured (an ad-hoc contact without `[smtp]`).
    #[error("no SMTP relay is configured")]
    NoRelay,
    /// The message could not be built: an address or the sender did not parse.
    #[error("cannot build the message: {0}")]
    Message(String),
    /// Setting up TLS failed, or the handshake did (the relay's certificate is not trusted, say).
    #[error("TLS with {relay}: {message}")]
    Tls { relay: String, message: String },
    /// The relay answered a step with an error (4xx or 5xx).
    #[error("{relay} refused: {message}")]
    Refused { relay: String, message: String },
    /// A step took longer than the timeout.
    #[error("{relay} timed out: {message}")]
    Timeout { relay: String, message: String },
    /// The connection failed, or the conversation did.
    #[error("{relay}: {message}")]
    Transport { relay: String, message: String },
}

/// Why a webhook was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookFailure {
    /// The receiver answered with a status other than 2xx.
    #[error("HTTP {status}: {body}")]
    Status {
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// No answer within the timeout.
    #[error("no answer within {secs} s")]
    Timeout { secs: u64 },
    /// The request could not be built or sent: connection refused, TLS, reset.
    #[error("{0}")]
    Transport(String),
}

/// Why a digest was not published to SNS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnsFailure {
    /// The `sns_account` named is not configured.
    #[error("no configured account is named {0:?}")]
    NoAccount(String),
    #[error("{0}")]
    Aws(AwsError),
}

impl NotifyError {
    pub fn contact(&self) -> &str {
        match self {
            NotifyError::UnknownContact { contact }
            | NotifyError::Email { contact, .. }
            | NotifyError::Webhook { contact, .. }
            | NotifyError::Sns { contact, .. } => contact,
        }
    }

    /// The channel that failed; `None` when no channel was tried.
    pub fn channel(&self) -> Option<Channel> {
        match self {
            NotifyError::UnknownContact { .. } => None,
            NotifyError::Email { .. } => Some(Channel::Email),
            NotifyError::Webhook { .. } => Some(Channel::Webhook),
            NotifyError::Sns { .. } => Some(Channel::Sns),
        }
    }

    /// What kind of failure, from a bounded set, for metric labels: `unknown_contact`, `config`, `tls`,
    /// `refused`, `timeout`, `transport`, `status`, or an SNS call's [`collector::aws::AwsErrorKind`].
    pub fn as_kind(&self) -> &'static str {
        match self {
            NotifyError::UnknownContact { .. } => "unknown_contact",
            NotifyError::Email { failure, .. } => match failure {
                EmailFailure::NoRelay | EmailFailure::Message(_) => "config",
                EmailFailure::Tls { .. } => "tls",
                EmailFailure::Refused { .. } => "refused",
                EmailFailure::Timeout { .. } => "timeout",
                EmailFailure::Transport { .. } => "transport",
            },
            NotifyError::Webhook { failure, .. } => match failure {
                WebhookFailure::Status { .. } => "status",
                WebhookFailure::Timeout { .. } => "timeout",
                WebhookFailure::Transport(_) => "transport",
            },
            NotifyError::Sns { failure, .. } => match failure {
                SnsFailure::NoAccount(_) => "config",
                SnsFailure::Aws(e) => e.kind.as_str(),
            },
        }
    }
}

/// Sends digests over their contact's channels.
pub struct Notifier {
    settings: NotifySettings,
    aws: AwsContext,
    /// Account ids by configured account name, as far as known: given, or asked of STS once.
    account_ids: Mutex<BTreeMap<String, String>>,
    /// The webhook client, built at the first webhook (it reads the system's certificates).
    http: OnceLock<webhook::Client>,
}

impl Notifier {
    pub fn new(settings: NotifySettings, aws: AwsContext) -> Notifier {
        Notifier { settings, aws, account_ids: Mutex::new(BTreeMap::new()), http: OnceLock::new() }
    }

    /// The ids of configured accounts, by name (as the store knows them), so finding the account that
    /// publishes to a topic asks STS for none of them.
    pub fn with_account_ids(self, ids: impl IntoIterator<Item = (String, String)>) -> Notifier {
        self.account_ids.lock().unwrap_or_else(|p| p.into_inner()).extend(ids);
        self
    }

    pub fn settings(&self) -> &NotifySettings {
        &self.settings
    }

    /// Sends `digest` over every channel of its contact, at the same time; one result per channel tried,
    /// in the order email, webhook, SNS. Nothing is sent for a digest without items. An ad-hoc contact (an
    /// email address) is written to by email.
    pub async fn send(&self, digest: &Digest) -> Vec<Result<Delivery, NotifyError>> {
        if digest.items.is_empty() {
            return Vec::new();
        }
        let adhoc;
        let contact = match self.settings.contacts.get(&digest.contact) {
            Some(c) => c,
            None if is_email(&digest.contact) => {
                adhoc = Contact { email: vec![digest.contact.clone()], ..Contact::default() };
                &adhoc
            }
            None => return vec![Err(NotifyError::UnknownContact { contact: digest.contact.clone() })],
        };
        let message = render(digest);
        let name = digest.contact.as_str();
        let mut sends: Vec<BoxFuture<'_, Result<Delivery, NotifyError>>> = Vec::new();
        if !contact.email.is_empty() {
            sends.push(Box::pin(async {
                let Some(smtp) = &self.settings.smtp else {
                    return Err(NotifyError::Email { contact: name.to_string(), failure: EmailFailure::NoRelay });
                };
                smtp::send(smtp, name, &contact.email, &message).await
            }));
        }
        if let Some(url) = &contact.webhook_url {
            sends.push(Box::pin(async {
                let client = self.http.get_or_init(|| webhook::Client::new(self.settings.webhook_timeout));
                client.send(url, self.settings.webhook_timeout, name, &message).await
            }));
        }
        if let Some(target) = &contact.sns {
            sends.push(Box::pin(sns::send(self, target, name, &message)));
        }
        let results = futures::future::join_all(sends).await;
        for r in &results {
            match r {
                Ok(d) => tracing::info!(
                    channel = d.channel.as_str(),
                    contact = d.contact,
                    target = d.target,
                    message_id = d.message_id.as_deref().unwrap_or_default(),
                    items = digest.items.len(),
                    "notification delivered"
                ),
                Err(error) => tracing::warn!(
                    %error,
                    channel = error.channel().map(Channel::as_str).unwrap_or_default(),
                    contact = error.contact(),
                    kind = error.as_kind(),
                    "notification failed"
                ),
            }
        }
        results
    }
}

/// An error's text followed by those of its sources that it does not already show, joined by `: `.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use collector::aws::AwsErrorKind;

    use super::*;

    fn settings(smtp: bool) -> NotifySettings {
        let contact = |url: &str| Contact { webhook_url: Some(Secret::new(url)), ..Contact::default() };
        NotifySettings {
            owner_tags: vec!["owner".into(), "team".into()],
            fallback: "platform".into(),
            contacts: [("platform", contact("http://127.0.0.1:9/p")), ("team-a", contact("http://127.0.0.1:9/a"))]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            smtp: smtp.then(|| SmtpSettings {
                host: "127.0.0.1".into(),
                port: 2525,
                tls: SmtpTls::Starttls,
                credentials: None,
                from: "cw@example.com".into(),
                hello_name: "example.com".into(),
                ca_certs: Vec::new(),
                timeout: Duration::from_secs(5),
            }),
            webhook_timeout: Duration::from_secs(5),
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn owners() {
        let check = |pairs: &[(&str, &str)], smtp: bool, want: &str| {
            assert_eq!(owner_of(&tags(pairs), &settings(smtp)), want, "{pairs:?} smtp={smtp}");
        };
        check(&[], true, "platform");
        check(&[("owner", "team-a")], true, "team-a");
        check(&[("Owner", " team-a ")], true, "team-a");
        check(&[("OWNER", "team-a")], true, "team-a");
        // The first key whose value names a contact wins; keys that name nobody are passed over.
        check(&[("owner", "bob"), ("team", "team-a")], true, "team-a");
        check(&[("owner", "team-a"), ("team", "platform")], true, "team-a");
        // An email address that names no contact is an ad-hoc contact, when email can be sent.
        check(&[("owner", "alice@example.com"), ("team", "team-a")], true, "alice@example.com");
        check(&[("owner", "alice@example.com"), ("team", "team-a")], false, "team-a");
        check(&[("owner", "alice@example.com")], false, "platform");
        check(&[("owner", "not an email")], true, "platform");
        // Other tags do not count.
        check(&[("name", "team-a"), ("cost-center", "team-a")], true, "platform");
        // An exact key is preferred to one that differs in case.
        check(&[("Owner", "platform"), ("owner", "team-a")], true, "team-a");
    }

    fn item(id: &str, due: &str) -> DigestItem {
        DigestItem {
            arn: format!("arn:aws:ec2:us-east-1:123456789012:volume/{id}"),
            account_id: "123456789012".into(),
            account_name: None,
            region: "us-east-1".into(),
            resource_type: "ec2:volume".into(),
            resource_id: id.into(),
            name: None,
            rule: "unattached-volume".into(),
            reason: "unattached for 30 days".into(),
            action: "snapshot_delete".into(),
            due: due.parse().unwrap(),
            monthly_usd: None,
            keep: "attach it".into(),
        }
    }

    #[test]
    fn one_digest_per_contact() {
        let s = settings(true);
        let (a, alice, none) = (tags(&[("team", "team-a")]), tags(&[("owner", "alice@example.com")]), tags(&[]));
        let digests = group(
            &s,
            Notice::FinalWarning,
            "cw:cleanup",
            "cw:protect",
            vec![
                (item("vol-3", "2026-04-11"), &a),
                (item("vol-1", "2026-04-10"), &none),
                (item("vol-2", "2026-04-10"), &a),
                (item("vol-4", "2026-04-10"), &alice),
                (item("vol-0", "2026-04-12"), &none),
            ],
        );
        let summary: Vec<(String, Vec<String>)> = digests
            .iter()
            .map(|d| (d.contact.clone(), d.items.iter().map(|i| i.resource_id.clone()).collect()))
            .collect();
        assert_eq!(
            summary,
            [
                ("alice@example.com".to_string(), vec!["vol-4".to_string()]),
                ("platform".to_string(), vec!["vol-1".to_string(), "vol-0".to_string()]),
                ("team-a".to_string(), vec!["vol-2".to_string(), "vol-3".to_string()]),
            ]
        );
        assert!(digests.iter().all(|d| d.notice == Notice::FinalWarning
            && d.mark_tag_key == "cw:cleanup"
            && d.protect_tag_key == "cw:protect"));
        assert!(group(&s, Notice::First, "m", "p", Vec::new()).is_empty());
    }

    #[test]
    fn error_texts_and_kinds() {
        let e = NotifyError::Webhook {
            contact: "team-a".into(),
            target: "https://hooks.example.com".into(),
            failure: WebhookFailure::Status { status: 404, body: "no_service".into() },
        };
        assert_eq!(e.to_string(), "webhook to team-a (https://hooks.example.com): HTTP 404: no_service");
        assert_eq!((e.channel(), e.as_kind(), e.contact()), (Some(Channel::Webhook), "status", "team-a"));
        let e = NotifyError::Email {
            contact: "ops".into(),
            failure: EmailFailure::Refused {
                relay: "smtp.example.com:587".into(),
                message: "permanent error (535): auth".into(),
            },
        };
        assert_eq!(e.to_string(), "email to ops: smtp.example.com:587 refused: permanent error (535): auth");
        assert_eq!(e.as_kind(), "refused");
        let e = NotifyError::Sns {
            contact: "ops".into(),
            topic_arn: "arn:aws:sns:us-east-1:123456789012:t".into(),
            failure: SnsFailure::Aws(
                AwsError::new("sns", "Publish", AwsErrorKind::NotFound, "service error: NotFound")
                    .about("arn:aws:sns:us-east-1:123456789012:t"),
            ),
        };
        assert_eq!(e.to_string(), "sns to ops: Publish arn:aws:sns:us-east-1:123456789012:t: service error: NotFound");
        assert_eq!(e.as_kind(), "not_found");
        let e = NotifyError::UnknownContact { contact: "nobody".into() };
        assert_eq!((e.channel(), e.as_kind()), (None, "unknown_contact"));
        let names: Vec<_> = Channel::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, ["email", "webhook", "sns"]);
    }

    #[tokio::test]
    async fn unknown_contacts_and_empty_digests() {
        let aws = AwsContext::new(&collector::AwsSettings::default()).await;
        let notifier = Notifier::new(settings(false), aws);
        let mut d =
            group(notifier.settings(), Notice::First, "m", "p", vec![(item("vol-1", "2026-04-10"), &tags(&[]))])
                .remove(0);
        d.contact = "nobody".into();
        // The cleanup job runs it inside a job's future, which must be Send.
        fn assert_send<T: Send>(t: T) -> T {
            t
        }
        let results = assert_send(notifier.send(&d)).await;
        assert_eq!(results, [Err(NotifyError::UnknownContact { contact: "nobody".into() })]);
        // An ad-hoc contact without a relay: the email channel says so.
        d.contact = "alice@example.com".into();
        let results = notifier.send(&d).await;
        assert_eq!(
            results,
            [Err(NotifyError::Email { contact: "alice@example.com".into(), failure: EmailFailure::NoRelay })]
        );
        d.items.clear();
        assert!(notifier.send(&d).await.is_empty());
    }
}
