//! `[cleanup.notify]`: the section as written ([`NotifySection`]), its checks ([`check`]) and what they
//! produce ([`NotifySettings`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use collector::arn::Arn;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;

use crate::config::check::{item, key, named, Checker, Seg, Shared, MAX_CALL_TIMEOUT_SECS};

/// `[cleanup.notify]`: who is told about resources marked for cleanup, and how. Each run sends one digest per
/// contact over each of its channels: a first notice when resources are marked, a final warning one day
/// before they are due.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// Tag keys naming a resource's owner, tried in order (default `["owner", "team"]`); a key matches a tag
    /// key exactly, else ignoring ASCII case. The first value that names a contact wins; a value that is an
    /// email address and names no contact is an owner of its own, written to by email (needs `[smtp]`).
    #[serde(default = "default_owner_tags")]
    pub owner_tags: Vec<String>,
    /// Who is told about resources whose owner tags name nobody: a contact's name, or an email address
    /// (needs `[smtp]`). Required.
    pub fallback: Option<String>,
    /// Timeout of one webhook request, connecting included, in seconds (default 10).
    #[serde(default = "default_webhook_timeout_secs")]
    pub webhook_timeout_secs: u64,
    /// The relay every email goes through; required when a contact has `email` or an owner tag may hold an
    /// email address.
    pub smtp: Option<SmtpSection>,
    /// The contacts, by name: `[cleanup.notify.contacts.<name>]`. A name is what owner tags hold, e.g. a team.
    #[serde(default)]
    pub contacts: BTreeMap<String, ContactSection>,
}

fn default_owner_tags() -> Vec<String> {
    vec!["owner".into(), "team".into()]
}

fn default_webhook_timeout_secs() -> u64 {
    10
}

/// `[cleanup.notify.smtp]`: the SMTP relay (your own), one connection per digest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    /// The relay's host name (or address); with TLS, the name its certificate must carry.
    pub host: String,
    /// The relay's port. Default: 587 with `starttls`, 465 with `tls`, 25 with `none`.
    pub port: Option<u16>,
    /// `starttls` (default: plain connection upgraded with STARTTLS, which the relay must offer), `tls`
    /// (TLS from the first byte, "SMTPS") or `none` (plain text: only for a relay on the same host).
    #[serde(default)]
    pub tls: SmtpTls,
    /// User name for SMTP AUTH; `${VAR}` reads it from the environment. Needs `password` and TLS.
    pub username: Option<String>,
    /// Password for SMTP AUTH; `${VAR}` reads it from the environment, so it need not be in the file.
    pub password: Option<String>,
    /// The sender: `cloudwarden@example.com` or `Cloudwarden <cloudwarden@example.com>`.
    pub from: String,
    /// A PEM file of the certificate authorities to trust for the relay's certificate (a private relay's
    /// own CA), instead of the system's; relative paths are taken from the configuration file's directory.
    pub ca_file: Option<String>,
    /// The name cloudwarden greets the relay with (EHLO). Default: the domain of `from`.
    pub hello_name: Option<String>,
    /// Timeout of each step of the conversation (connecting, each command), in seconds (default 30).
    #[serde(default = "default_smtp_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_smtp_timeout_secs() -> u64 {
    30
}

/// How the connection to the SMTP relay is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection, then STARTTLS before anything else is sent; a relay that does not offer it fails.
    #[default]
    Starttls,
    /// TLS from the first byte (implicit TLS, usually port 465).
    Tls,
    /// No encryption: a relay on the same host only.
    None,
}

impl SmtpTls {
    fn default_port(self) -> u16 {
        match self {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

/// `[cleanup.notify.contacts.<name>]`: one contact and its channels; at least one is required.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactSection {
    /// Email addresses, all on one message (needs `[smtp]`).
    #[serde(default)]
    pub email: Vec<String>,
    /// A Slack-compatible incoming webhook (`http://` or `https://`): the digest is POSTed as JSON with
    /// `text` and `blocks`. The URL is a secret: `${VAR}` reads it from the environment, and it is never
    /// logged or shown in errors beyond its scheme and host.
    pub webhook_url: Option<String>,
    /// An SNS topic (`arn:aws:sns:REGION:ACCOUNT:NAME`) the digest is published to, in the topic's region.
    pub sns_topic_arn: Option<String>,
    /// The `[[accounts]]` name whose credentials publish to the topic. Default: the configured account
    /// whose id the topic's ARN names, else the first one (the topic's policy must then allow it).
    pub sns_account: Option<String>,
}

/// The validated `[cleanup.notify]`.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifySettings {
    /// Tag keys naming an owner, in order.
    pub owner_tags: Vec<String>,
    /// The contact of resources whose owner tags name nobody: a contact's name or an email address.
    pub fallback: String,
    pub contacts: BTreeMap<String, Contact>,
    /// The relay every email goes through.
    pub smtp: Option<SmtpSettings>,
    /// Timeout of one webhook request, connecting included.
    pub webhook_timeout: Duration,
}

/// A contact's channels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contact {
    /// Email addresses, all on one message; empty: no email.
    pub email: Vec<String>,
    /// A Slack-compatible incoming webhook.
    pub webhook_url: Option<Secret>,
    pub sns: Option<SnsTarget>,
}

/// An SNS topic to publish to.
#[derive(Debug, Clone, PartialEq)]
pub struct SnsTarget {
    pub topic_arn: String,
    /// The topic's region, from its ARN.
    pub region: String,
    /// The topic's account id, from its ARN.
    pub account_id: String,
    /// The `[[accounts]]` name whose credentials publish; `None`: the account whose id is `account_id`,
    /// else the first one.
    pub account: Option<String>,
}

/// The SMTP relay.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// User name and password for SMTP AUTH.
    pub credentials: Option<(String, Secret)>,
    /// The sender's mailbox, as written (`Name <address>` or an address).
    pub from: String,
    /// The EHLO name.
    pub hello_name: String,
    /// The certificate authorities trusted for the relay's certificate (DER); empty: the system's.
    pub ca_certs: Vec<Vec<u8>>,
    /// Timeout of each step of the conversation.
    pub timeout: Duration,
}

/// A value never shown: `Debug` prints `"***"`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Whether `s` looks like an email address: one `@` between a local part and a domain with a dot, nothing
/// a mailbox could not hold (no spaces, no angle brackets, no commas).
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    let plain = |p: &str| {
        !p.is_empty() && p.chars().all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[],;:\"@\\".contains(c))
    };
    plain(local)
        && plain(domain)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && s.parse::<lettre::Address>().is_ok()
}

/// The path of the section.
fn base() -> Vec<Seg> {
    vec![Seg::Key("cleanup"), Seg::Key("notify")]
}

/// Checks `[cleanup.notify]` into [`NotifySettings`]. Every problem is recorded in `cx`, with its line and
/// field path; the settings returned are meaningful only when `cx` recorded none.
pub(crate) fn check(cx: &mut Checker<'_>, s: &NotifySection, shared: &Shared<'_>) -> NotifySettings {
    let base = base();
    let mut owner_tags = Vec::new();
    for (i, t) in s.owner_tags.iter().enumerate() {
        let at = item(&base, "owner_tags", i);
        if t.trim().is_empty() {
            cx.error(&at, "must not be empty");
        } else if owner_tags.contains(t) {
            cx.error(&at, format!("tag key {t:?} is listed twice"));
        } else {
            owner_tags.push(t.clone());
        }
    }
    let webhook_timeout = timeout(cx, &key(&base, "webhook_timeout_secs"), s.webhook_timeout_secs);
    let smtp = s.smtp.as_ref().and_then(|m| check_smtp(cx, &key(&base, "smtp"), m, shared));

    let mut contacts = BTreeMap::new();
    for (name, c) in &s.contacts {
        let at = named(&base, "contacts", name);
        if name.trim().is_empty() || name.trim() != name {
            cx.error(&at, format!("contact name {name:?} must be non-empty, without leading or trailing spaces"));
        }
        let mut email = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, e) in c.email.iter().enumerate() {
            let at = item(&at, "email", i);
            if !is_email(e) {
                cx.error(&at, format!("not an email address: {e:?}"));
            } else if !seen.insert(e.to_ascii_lowercase()) {
                cx.error(&at, format!("{e:?} is listed twice"));
            } else {
                email.push(e.clone());
            }
        }
        if !c.email.is_empty() && s.smtp.is_none() {
            cx.error(&key(&at, "email"), "email needs a relay: configure [cleanup.notify.smtp]");
        }
        let webhook_url = c.webhook_url.as_deref().and_then(|u| {
            let path = key(&at, "webhook_url");
            let url = cx.expand(&path, u);
            // Messages never show the URL: it is a secret.
            match webhook_target(&url) {
                Ok(_) => Some(Secret::new(url)),
                Err(why) => {
                    cx.error(&path, why);
                    None
                }
            }
        });
        let sns = c.sns_topic_arn.as_deref().and_then(|arn| {
            let path = key(&at, "sns_topic_arn");
            let target = sns_target(arn);
            match &target {
                Err(why) => cx.error(&path, why.clone()),
                Ok(t) => {
                    cx.region(&path, &t.region);
                }
            }
            target.ok()
        });
        let sns_account = c.sns_account.as_ref().filter(|name| {
            let known = shared.accounts.iter().any(|a| &a.name == *name);
            if !known {
                cx.error(&key(&at, "sns_account"), format!("no [[accounts]] entry is named {name:?}"));
            }
            known
        });
        if c.sns_account.is_some() && c.sns_topic_arn.is_none() {
            cx.error(&key(&at, "sns_account"), "sns_account needs sns_topic_arn");
        }
        if c.email.is_empty() && c.webhook_url.is_none() && c.sns_topic_arn.is_none() {
            cx.error(&at, "a contact needs at least one channel: email, webhook_url or sns_topic_arn");
        }
        let sns = sns.map(|t| SnsTarget { account: sns_account.cloned(), ..t });
        contacts.insert(name.clone(), Contact { email, webhook_url, sns });
    }

    let fallback = match &s.fallback {
        None => {
            cx.error(
                &base,
                "fallback is required: the contact (or email address) told about resources whose owner tags name nobody",
            );
            String::new()
        }
        Some(f) if contacts.contains_key(f) => f.clone(),
        Some(f) if is_email(f) => {
            if s.smtp.is_none() {
                cx.error(&key(&base, "fallback"), "an email address needs a relay: configure [cleanup.notify.smtp]");
            }
            f.clone()
        }
        Some(f) => {
            let known: Vec<&str> = contacts.keys().map(String::as_str).collect();
            let message = if known.is_empty() {
                format!("{f:?} is neither a contact (none is configured) nor an email address")
            } else {
                format!("{f:?} is neither a contact ({}) nor an email address", known.join(", "))
            };
            cx.error(&key(&base, "fallback"), message);
            f.clone()
        }
    };
    NotifySettings { owner_tags, fallback, contacts, smtp, webhook_timeout }
}

fn timeout(cx: &mut Checker<'_>, path: &[Seg], secs: u64) -> Duration {
    if secs == 0 {
        cx.error(path, "must be at least 1");
    }
    cx.at_most(path, secs.into(), MAX_CALL_TIMEOUT_SECS, false);
    Duration::from_secs(secs)
}

pub(crate) fn check_smtp(
    cx: &mut Checker<'_>,
    base: &[Seg],
    s: &SmtpSection,
    shared: &Shared<'_>,
) -> Option<SmtpSettings> {
    let errors = cx.errors.len();
    if s.host.trim().is_empty() || s.host.chars().any(|c| c.is_whitespace() || c == '/') {
        cx.error(&key(base, "host"), format!("not a host name or address: {:?}", s.host));
    }
    if s.port == Some(0) {
        cx.error(&key(base, "port"), "must be between 1 and 65535");
    }
    let from = match s.from.parse::<lettre::message::Mailbox>() {
        Ok(m) if is_email(m.email.as_ref()) => Some(m),
        _ => {
            cx.error(&key(base, "from"), format!("not an email address or `Name <address>`: {:?}", s.from));
            None
        }
    };
    let username = s.username.as_deref().map(|u| cx.expand(&key(base, "username"), u));
    let password = s.password.as_deref().map(|p| cx.expand(&key(base, "password"), p));
    let credentials = match (username, password) {
        (Some(u), Some(p)) => Some((u, Secret::new(p))),
        (None, None) => None,
        (Some(_), None) => {
            cx.error(&key(base, "password"), "username needs a password");
            None
        }
        (None, Some(_)) => {
            cx.error(&key(base, "username"), "password needs a username");
            None
        }
    };
    if credentials.is_some() && s.tls == SmtpTls::None {
        cx.error(&key(base, "tls"), "username and password are never sent in plain text: use starttls or tls");
    }
    let mut ca_certs = Vec::new();
    if let Some(file) = &s.ca_file {
        let path = key(base, "ca_file");
        if s.tls == SmtpTls::None {
            cx.error(&path, "ca_file needs tls = \"starttls\" or \"tls\"");
        }
        let full = shared.base_dir.join(file);
        match std::fs::read(&full) {
            Err(e) => cx.error(&path, format!("cannot read {}: {e}", full.display())),
            Ok(pem) => match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
                Ok(certs) if certs.is_empty() => cx.error(&path, format!("no PEM certificate in {}", full.display())),
                Ok(certs) => ca_certs = certs.into_iter().map(|c| c.as_ref().to_vec()).collect(),
                Err(e) => cx.error(&path, format!("not a PEM certificate file: {}: {e}", full.display())),
            },
        }
    }
    let hello_name = match (&s.hello_name, &from) {
        (Some(h), _) if h.trim().is_empty() || h.chars().any(char::is_whitespace) => {
            cx.error(&key(base, "hello_name"), format!("not a host name: {h:?}"));
            None
        }
        (Some(h), _) => Some(h.clone()),
        (None, Some(m)) => Some(m.email.domain().to_string()),
        (None, None) => None,
    };
    let timeout = timeout(cx, &key(base, "timeout_secs"), s.timeout_secs);
    if cx.errors.len() > errors {
        return None;
    }
    Some(SmtpSettings {
        host: s.host.clone(),
        port: s.port.unwrap_or(s.tls.default_port()),
        tls: s.tls,
        credentials,
        from: s.from.clone(),
        hello_name: hello_name?,
        ca_certs,
        timeout,
    })
}

/// What may be shown of a webhook URL: its scheme, host and port. An error when it is no http(s) URL.
pub(crate) fn webhook_target(url: &str) -> Result<String, String> {
    let uri: http::Uri =
        url.parse().map_err(|_| "not a URL (the URL itself is not shown: it is a secret)".to_string())?;
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme @ ("http" | "https")), Some(authority)) if !authority.host().is_empty() => {
            if authority.as_str().contains('@') {
                return Err("credentials in a webhook URL are not supported".into());
            }
            Ok(format!("{scheme}://{authority}"))
        }
        _ => {
            Err("expected an http:// or https:// URL with a host (the URL itself is not shown: it is a secret)".into())
        }
    }
}

/// The topic an SNS ARN names, or why it names none.
fn sns_target(arn: &str) -> Result<SnsTarget, String> {
    let expected = "not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)";
    let parsed = Arn::parse(arn).map_err(|_| format!("{expected}: {arn:?}"))?;
    let name_ok = !parsed.resource.is_empty()
        && parsed.resource.len() <= 256
        && parsed.resource.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    let account_ok = parsed.account.len() == 12 && parsed.account.bytes().all(|b| b.is_ascii_digit());
    if !parsed.partition.starts_with("aws")
        || parsed.service != "sns"
        || parsed.region.is_empty()
        || !account_ok
        || !name_ok
    {
        return Err(format!("{expected}: {arn:?}"));
    }
    Ok(SnsTarget {
        topic_arn: arn.to_string(),
        region: parsed.region.to_string(),
        account_id: parsed.account.to_string(),
        account: None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use collector::AccountSpec;
    use toml::de::DeTable;

    use super::*;

    /// Stands in for the `[cleanup]` section until it exists: only its `notify` table.
    #[derive(Debug, Deserialize)]
    struct CleanupStub {
        notify: Option<NotifySection>,
    }

    /// Checks the `[cleanup.notify]` of `text`: the settings, or every diagnostic as `file:line: path: message`.
    fn check_text(text: &str, env: &[(&str, &str)], base_dir: &Path) -> Result<NotifySettings, Vec<String>> {
        let doc = DeTable::parse(text).expect("valid TOML");
        let doc = doc.into_inner();
        let lookup = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
        let mut cx = Checker::new("t.toml", text, &doc, &lookup);
        let accounts = [
            AccountSpec { name: "main".into(), role_arn: None, external_id: None },
            AccountSpec {
                name: "member".into(),
                role_arn: Some("arn:aws:iam::210987654321:role/Reader".into()),
                external_id: None,
            },
        ];
        let shared = Shared { accounts: &accounts, inventory_regions: &[], home_region: "us-east-1", base_dir };
        let section: Option<CleanupStub> = cx.section("cleanup", doc.get("cleanup").expect("a [cleanup] section"));
        let settings = section.and_then(|s| s.notify).map(|n| check(&mut cx, &n, &shared));
        if cx.errors.is_empty() {
            Ok(settings.expect("a [cleanup.notify] section"))
        } else {
            Err(cx.errors.iter().map(|e| e.to_string()).collect())
        }
    }

    fn ok(text: &str) -> NotifySettings {
        check_text(text, &[], Path::new("")).unwrap_or_else(|e| panic!("{}", e.join("\n")))
    }

    fn errors(text: &str) -> Vec<String> {
        check_text(text, &[], Path::new("")).expect_err("errors")
    }

    #[test]
    fn a_full_section() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().self_signed(&key).unwrap();
        std::fs::write(dir.path().join("relay-ca.pem"), ca.pem()).unwrap();
        let text = r#"
[cleanup.notify]
owner_tags = ["Owner", "team", "cost-center"]
fallback = "platform"
webhook_timeout_secs = 5

[cleanup.notify.smtp]
host = "smtp.internal.example.com"
username = "${SMTP_USER}"
password = "${SMTP_PASSWORD}"
from = "Cloudwarden <cloudwarden@example.com>"
ca_file = "relay-ca.pem"

[cleanup.notify.contacts.platform]
email = ["platform@example.com", "oncall@example.com"]
webhook_url = "${PLATFORM_HOOK}"

[cleanup.notify.contacts.data]
sns_topic_arn = "arn:aws:sns:eu-west-1:210987654321:data-alerts"
sns_account = "member"

[cleanup.notify.contacts.web]
sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:web"
"#;
        let env = [
            ("SMTP_USER", "mailer"),
            ("SMTP_PASSWORD", "hunter2"),
            ("PLATFORM_HOOK", "https://hooks.example.com/services/T0/B0/secret"),
        ];
        let s = check_text(text, &env, dir.path()).unwrap_or_else(|e| panic!("{}", e.join("\n")));
        assert_eq!(s.owner_tags, ["Owner", "team", "cost-center"]);
        assert_eq!(s.fallback, "platform");
        assert_eq!(s.webhook_timeout, Duration::from_secs(5));
        let smtp = s.smtp.as_ref().unwrap();
        assert_eq!((smtp.host.as_str(), smtp.port, smtp.tls), ("smtp.internal.example.com", 587, SmtpTls::Starttls));
        assert_eq!(smtp.credentials, Some(("mailer".into(), Secret::new("hunter2"))));
        assert_eq!(smtp.hello_name, "example.com");
        assert_eq!(smtp.ca_certs, [ca.der().to_vec()]);
        assert_eq!(smtp.timeout, Duration::from_secs(30));
        let platform = &s.contacts["platform"];
        assert_eq!(platform.email, ["platform@example.com", "oncall@example.com"]);
        assert_eq!(platform.webhook_url.as_ref().unwrap().expose(), "https://hooks.example.com/services/T0/B0/secret");
        assert_eq!(
            s.contacts["data"].sns,
            Some(SnsTarget {
                topic_arn: "arn:aws:sns:eu-west-1:210987654321:data-alerts".into(),
                region: "eu-west-1".into(),
                account_id: "210987654321".into(),
                account: Some("member".into()),
            })
        );
        assert_eq!(s.contacts["web"].sns.as_ref().unwrap().account, None);
        // Secrets never show in the settings' Debug.
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2") && !debug.contains("secret"), "{debug}");
    }

    #[test]
    fn defaults() {
        let s = ok("[cleanup.notify]\nfallback = \"ops\"\n[cleanup.notify.contacts.ops]\nwebhook_url = \"http://127.0.0.1:9/hook\"\n");
        assert_eq!(s.owner_tags, ["owner", "team"]);
        assert_eq!(s.webhook_timeout, Duration::from_secs(10));
        assert_eq!(s.smtp, None);
        let s = ok("[cleanup.notify]\nfallback = \"ops@example.com\"\n[cleanup.notify.smtp]\nhost = \"localhost\"\ntls = \"tls\"\nfrom = \"cw@example.com\"\n");
        assert_eq!(s.fallback, "ops@example.com");
        assert_eq!(s.smtp.as_ref().map(|m| m.port), Some(465));
        let s = ok("[cleanup.notify]\nfallback = \"ops@example.com\"\n[cleanup.notify.smtp]\nhost = \"localhost\"\ntls = \"none\"\nfrom = \"cw@example.com\"\nhello_name = \"cw.example.com\"\n");
        assert_eq!(s.smtp.as_ref().map(|m| (m.port, m.hello_name.as_str())), Some((25, "cw.example.com")));
    }

    #[test]
    fn every_problem_is_reported_with_its_line_and_path() {
        let text = r#"[cleanup.notify]
owner_tags = ["owner", "", "owner"]
fallback = "nobody"
webhook_timeout_secs = 0

[cleanup.notify.contacts.a]
email = ["not-an-address", "a@example.com", "A@example.com"]

[cleanup.notify.contacts.b]
webhook_url = "ftp://files.example.com/x"

[cleanup.notify.contacts.c]
sns_topic_arn = "arn:aws:sqs:us-east-1:123456789012:q"
sns_account = "nope"

[cleanup.notify.contacts.d]

[cleanup.notify.contacts.e]
sns_topic_arn = "arn:aws:sns:mars-1:123456789012:t"

[cleanup.notify.contacts.f]
webhook_url = "https://hooks.example.com/secret-path?token=abc"
sns_account = "main"
"#;
        assert_eq!(
            errors(text),
            [
                "t.toml:2: cleanup.notify.owner_tags[1]: must not be empty",
                "t.toml:2: cleanup.notify.owner_tags[2]: tag key \"owner\" is listed twice",
                "t.toml:4: cleanup.notify.webhook_timeout_secs: must be at least 1",
                "t.toml:7: cleanup.notify.contacts.a.email[0]: not an email address: \"not-an-address\"",
                "t.toml:7: cleanup.notify.contacts.a.email[2]: \"A@example.com\" is listed twice",
                "t.toml:7: cleanup.notify.contacts.a.email: email needs a relay: configure [cleanup.notify.smtp]",
                "t.toml:10: cleanup.notify.contacts.b.webhook_url: expected an http:// or https:// URL with a host (the URL itself is not shown: it is a secret)",
                "t.toml:13: cleanup.notify.contacts.c.sns_topic_arn: not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME): \"arn:aws:sqs:us-east-1:123456789012:q\"",
                "t.toml:14: cleanup.notify.contacts.c.sns_account: no [[accounts]] entry is named \"nope\"",
                "t.toml:16: cleanup.notify.contacts.d: a contact needs at least one channel: email, webhook_url or sns_topic_arn",
                "t.toml:19: cleanup.notify.contacts.e.sns_topic_arn: unknown region \"mars-1\"",
                "t.toml:23: cleanup.notify.contacts.f.sns_account: sns_account needs sns_topic_arn",
                "t.toml:3: cleanup.notify.fallback: \"nobody\" is neither a contact (a, b, c, d, e, f) nor an email address",
            ]
        );
    }

    #[test]
    fn smtp_problems() {
        let text = r#"[cleanup.notify]
fallback = "ops"

[cleanup.notify.smtp]
host = "relay example"
port = 0
tls = "none"
username = "${SMTP_USER}"
password = "pw"
from = "Cloudwarden"
ca_file = "missing.pem"
timeout_secs = 7200

[cleanup.notify.contacts.ops]
email = ["ops@example.com"]
"#;
        let errs = errors(text);
        assert_eq!(errs.len(), 8, "{errs:#?}");
        let expected = [
            "t.toml:5: cleanup.notify.smtp.host: not a host name or address: \"relay example\"",
            "t.toml:6: cleanup.notify.smtp.port: must be between 1 and 65535",
            "t.toml:10: cleanup.notify.smtp.from: not an email address or `Name <address>`: \"Cloudwarden\"",
            "t.toml:8: cleanup.notify.smtp.username: environment variable SMTP_USER is not set",
            "t.toml:7: cleanup.notify.smtp.tls: username and password are never sent in plain text: use starttls or tls",
            "t.toml:11: cleanup.notify.smtp.ca_file: ca_file needs tls = \"starttls\" or \"tls\"",
        ];
        for e in expected {
            assert!(errs.iter().any(|x| x == e), "missing {e:?} in {errs:#?}");
        }
        assert!(
            errs.iter().any(|x| x.starts_with("t.toml:11: cleanup.notify.smtp.ca_file: cannot read missing.pem")),
            "{errs:#?}"
        );
        assert!(
            errs.iter().any(|x| x == "t.toml:12: cleanup.notify.smtp.timeout_secs: must be at most 3600 (1 hour)"),
            "{errs:#?}"
        );
    }

    #[test]
    fn missing_fallback_and_unknown_fields() {
        assert_eq!(
            errors("[cleanup.notify]\n[cleanup.notify.contacts.ops]\nwebhook_url = \"http://127.0.0.1:9/\"\n"),
            ["t.toml:1: cleanup.notify: fallback is required: the contact (or email address) told about resources whose owner tags name nobody"]
        );
        assert_eq!(
            errors("[cleanup.notify]\nfallback = \"ops@example.com\"\n"),
            ["t.toml:2: cleanup.notify.fallback: an email address needs a relay: configure [cleanup.notify.smtp]"]
        );
        let errs = errors("[cleanup.notify]\nfallback = \"ops\"\n[cleanup.notify.contacts.ops]\nslack = \"x\"\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("t.toml:4: cleanup.notify.contacts.ops.slack: unknown field `slack`"), "{errs:?}");
        let errs = errors("[cleanup.notify]\nfallback = \"ops@example.com\"\n[cleanup.notify.smtp]\nhost = \"h\"\nfrom = \"a@example.com\"\ntls = \"ssl\"\n");
        assert!(errs[0].starts_with("t.toml:6: cleanup.notify.smtp.tls: unknown variant `ssl`"), "{errs:?}");
    }

    #[test]
    fn bad_ca_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty.pem"), "no certificate here\n").unwrap();
        let text = "[cleanup.notify]\nfallback = \"ops@example.com\"\n[cleanup.notify.smtp]\nhost = \"h\"\nfrom = \"a@example.com\"\nca_file = \"empty.pem\"\n";
        let errs = check_text(text, &[], dir.path()).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("t.toml:6: cleanup.notify.smtp.ca_file: no PEM certificate in "), "{errs:?}");
    }

    #[test]
    fn webhook_urls_are_never_shown() {
        let env = [("HOOK", "https://user:pw@hooks.example.com/very-secret")];
        let text = "[cleanup.notify]\nfallback = \"ops\"\n[cleanup.notify.contacts.ops]\nwebhook_url = \"${HOOK}\"\n";
        let errs = check_text(text, &env, Path::new("")).unwrap_err();
        assert_eq!(
            errs,
            ["t.toml:4: cleanup.notify.contacts.ops.webhook_url: credentials in a webhook URL are not supported"]
        );
        assert_eq!(webhook_target("https://hooks.example.com/services/a/b").unwrap(), "https://hooks.example.com");
        assert_eq!(webhook_target("http://127.0.0.1:8080/hook?k=v").unwrap(), "http://127.0.0.1:8080");
        for bad in ["hooks.example.com/x", "/relative", "mailto:a@example.com", "https://", "not a url"] {
            let e = webhook_target(bad).unwrap_err();
            assert!(!e.contains(bad), "{e}");
        }
    }

    #[test]
    fn email_addresses() {
        for good in ["a@example.com", "first.last+tag@sub.example.co.uk", "o'neil@example.com"] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "@example.com",
            "a@",
            "a@localhost",
            "a@@example.com",
            "a b@example.com",
            "<a@example.com>",
            "a@example..com",
            "a@.example.com",
            "a,b@example.com",
            "team-a",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn topic_arns() {
        assert!(sns_target("arn:aws:sns:us-east-1:123456789012:cleanup-notices").is_ok());
        assert!(sns_target("arn:aws-cn:sns:cn-north-1:123456789012:t.fifo").is_ok());
        for bad in [
            "arn:aws:sns:us-east-1:123456789012",
            "arn:aws:sns:us-east-1:1234:t",
            "arn:aws:sns::123456789012:t",
            "arn:aws:sns:us-east-1:123456789012:a:b",
            "arn:aws:sns:us-east-1:123456789012:has space",
            "sns:us-east-1:123456789012:t",
        ] {
            assert!(sns_target(bad).is_err(), "{bad}");
        }
    }
}
