//! Owner notifications end to end, every receiver on 127.0.0.1: email through a real SMTP server (aiosmtpd,
//! `tests/smtp_sink.py`) over STARTTLS and implicit TLS with a certificate authority made here and trusted
//! through the CA setting; a Slack-compatible webhook to an HTTP receiver started here; an SNS topic on the
//! moto test-bed, read back from an SQS queue subscribed to it.
//!
//! aiosmtpd, moto and boto3 come from the test-bed's `.venv` (`scripts/testbed.sh install`). Without
//! aiosmtpd the email tests say they are skipped, except under `CI=true`, where they fail. The SQS queue
//! is read with boto3 from that venv (as the other moto tests seed with it): no SQS client in the crate.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::NaiveDate;
use cloudwarden::notify::{
    group, Channel, Contact, Digest, DigestItem, EmailFailure, Notice, Notifier, NotifyError, NotifySettings, Secret,
    SmtpSettings, SmtpTls, WebhookFailure,
};
use collector::{AwsContext, AwsSettings};
use common::channels::{aiosmtpd_python, certs, parts, queued, topic_with_queue, SmtpSink};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------------------
// What the tests send

fn item(id: &str, kind: &str, name: Option<&str>, action: &str, due: &str, monthly: Option<&str>) -> DigestItem {
    DigestItem {
        arn: format!("arn:aws:ec2:us-east-1:123456789012:{kind}/{id}"),
        account_id: "123456789012".into(),
        account_name: Some("prod".into()),
        region: "us-east-1".into(),
        resource_type: format!("ec2:{kind}"),
        resource_id: id.into(),
        name: name.map(str::to_string),
        rule: format!("idle-{kind}"),
        reason: format!("{kind} idle for 14 days"),
        action: action.into(),
        due: NaiveDate::parse_from_str(due, "%Y-%m-%d").unwrap(),
        monthly_usd: monthly.map(|m| m.parse().unwrap()),
        keep: format!("add the tag keep-{id}=yes, or remove cloudwarden:cleanup"),
    }
}

/// Three resources of team-a, one named with accents and one with HTML in its name.
fn items() -> Vec<DigestItem> {
    vec![
        item("i-0aaa", "instance", Some("café-web"), "stop", "2026-04-10", Some("61.32")),
        item("vol-0bbb", "volume", Some("<b>scratch</b> & tmp"), "snapshot_delete", "2026-04-11", Some("8.005")),
        item("eipalloc-0ccc", "elastic-ip", None, "release", "2026-04-10", None),
    ]
}

fn digest(notice: Notice, contact: &str, items: Vec<DigestItem>) -> Digest {
    let tags = BTreeMap::from([("team".to_string(), contact.to_string())]);
    let settings = NotifySettings {
        owner_tags: vec!["owner".into(), "team".into()],
        fallback: contact.into(),
        contacts: BTreeMap::from([(contact.to_string(), Contact::default())]),
        smtp: None,
        webhook_timeout: Duration::from_secs(5),
    };
    let mut digests =
        group(&settings, notice, "cloudwarden:cleanup", "cloudwarden:protect", items.into_iter().map(|i| (i, &tags)));
    assert_eq!(digests.len(), 1);
    digests.remove(0)
}

fn settings(contacts: Vec<(&str, Contact)>, smtp: Option<SmtpSettings>) -> NotifySettings {
    NotifySettings {
        owner_tags: vec!["owner".into(), "team".into()],
        fallback: contacts[0].0.to_string(),
        contacts: contacts.into_iter().map(|(n, c)| (n.to_string(), c)).collect(),
        smtp,
        webhook_timeout: Duration::from_secs(5),
    }
}

async fn notifier(settings: NotifySettings) -> Notifier {
    Notifier::new(settings, AwsContext::new(&AwsSettings::default()).await)
}

// ---------------------------------------------------------------------------------------------------------
// The SMTP server

/// Settings for the relay `sink`, trusting `ca_der`.
fn smtp_settings(sink: &SmtpSink, tls: SmtpTls, ca_der: &[u8], credentials: Option<(&str, &str)>) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".into(),
        port: sink.port,
        tls,
        credentials: credentials.map(|(u, p)| (u.to_string(), Secret::new(p))),
        from: "Cloudwarden <cloudwarden@example.com>".into(),
        hello_name: "example.com".into(),
        ca_certs: vec![ca_der.to_vec()],
        timeout: Duration::from_secs(10),
    }
}

fn email_contact(addresses: &[&str]) -> Contact {
    Contact { email: addresses.iter().map(|a| a.to_string()).collect(), ..Contact::default() }
}

#[tokio::test]
async fn digest_mail_through_a_starttls_relay() {
    let Some(python) = aiosmtpd_python() else { return };
    let certs = certs();
    let sink = SmtpSink::start(&python, "starttls", &certs, Some("mailer:s3cret-pw"));
    let smtp = smtp_settings(&sink, SmtpTls::Starttls, &certs.ca_der, Some(("mailer", "s3cret-pw")));
    let n =
        notifier(settings(vec![("team-a", email_contact(&["a1@example.com", "a2@example.com"]))], Some(smtp))).await;

    let d = digest(Notice::FinalWarning, "team-a", items());
    let results = n.send(&d).await;
    assert_eq!(results.len(), 1);
    let delivery = results[0].as_ref().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((delivery.channel, delivery.contact.as_str()), (Channel::Email, "team-a"));
    assert_eq!(delivery.target, "a1@example.com, a2@example.com");
    assert_eq!(delivery.response.as_deref(), Some("250 OK queued as 0001"));

    let got = sink.received(1);
    assert_eq!(got["tls"], true, "STARTTLS before the message");
    assert_eq!(got["login"], "mailer");
    assert_eq!(got["mail_from"], "cloudwarden@example.com");
    assert_eq!(got["rcpt_tos"], serde_json::json!(["a1@example.com", "a2@example.com"]));
    let h = &got["headers"];
    assert_eq!(h["from"], "Cloudwarden <cloudwarden@example.com>");
    assert_eq!(h["to"], "a1@example.com, a2@example.com");
    assert_eq!(
        h["subject"],
        "[cloudwarden] FINAL WARNING: 3 resources will be cleaned up from 2026-04-10 (saves $69.33/month or more)"
    );
    assert_eq!(h["message-id"].as_str(), delivery.message_id.as_deref());
    assert!(h["date"].is_string());

    let (text, html) = parts(&got);
    for body in [&text, &html] {
        for id in ["i-0aaa", "vol-0bbb", "eipalloc-0ccc"] {
            assert!(body.contains(id), "{id} missing:\n{body}");
            assert!(body.contains(&format!("keep-{id}=yes")), "keep line of {id} missing:\n{body}");
        }
        for fact in [
            "2026-04-10",
            "2026-04-11",
            "$61.32",
            "$8.01",
            "$69.33",
            "snapshot, then delete",
            "release",
            "prod (123456789012)",
            "idle-volume",
            "cloudwarden:protect",
            "café-web",
        ] {
            assert!(body.contains(fact), "{fact} missing:\n{body}");
        }
    }
    assert!(text.starts_with("Hello team-a,\n"), "{text}");
    assert!(text.contains("This is the final warning: the first action is due on 2026-04-10."), "{text}");
    assert!(text.contains("i-0aaa \"café-web\""), "{text}");
    assert!(text.contains("  Savings:  unknown\n"), "{text}");
    assert!(html.contains("Final warning") && html.contains("<table"), "{html}");
    assert!(html.contains("&lt;b&gt;scratch&lt;/b&gt; &amp; tmp") && !html.contains("<b>scratch</b>"), "{html}");

    // A wrong password is refused, and the error names the relay and the contact, never the password.
    let wrong = smtp_settings(&sink, SmtpTls::Starttls, &certs.ca_der, Some(("mailer", "not-the-pw")));
    let n = notifier(settings(vec![("team-a", email_contact(&["a1@example.com"]))], Some(wrong))).await;
    let results = n.send(&d).await;
    let error = results[0].as_ref().unwrap_err();
    let NotifyError::Email { contact, failure: EmailFailure::Refused { relay, message } } = error else {
        panic!("{error:?}")
    };
    assert_eq!((contact.as_str(), relay.as_str()), ("team-a", format!("127.0.0.1:{}", sink.port).as_str()));
    assert!(message.contains("535"), "{message}");
    assert!(!format!("{error} {error:?}").contains("not-the-pw"), "{error:?}");
    assert_eq!(error.as_kind(), "refused");
    assert_eq!(sink.count(), 1, "nothing more was delivered");
}

#[tokio::test]
async fn digest_mail_over_implicit_tls_and_untrusted_relays() {
    let Some(python) = aiosmtpd_python() else { return };
    let certs = certs();
    let sink = SmtpSink::start(&python, "tls", &certs, None);

    let smtp = smtp_settings(&sink, SmtpTls::Tls, &certs.ca_der, None);
    let n = notifier(settings(vec![("alice@example.com", email_contact(&["alice@example.com"]))], Some(smtp.clone())))
        .await;
    let d = digest(Notice::First, "alice@example.com", items());
    let delivery = n.send(&d).await.remove(0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(delivery.target, "alice@example.com");
    let got = sink.received(1);
    assert_eq!((got["tls"].as_bool(), got["login"].is_null()), (Some(true), true));
    assert_eq!(
        got["headers"]["subject"],
        "[cloudwarden] 3 resources will be cleaned up from 2026-04-10 (saves $69.33/month or more)"
    );
    let (text, html) = parts(&got);
    assert!(!text.contains("final warning") && !html.contains("Final warning"));

    // An ad-hoc contact (an owner tag holding an email address) is written to by email.
    let n = notifier(settings(vec![("team-a", email_contact(&["a@example.com"]))], Some(smtp.clone()))).await;
    let adhoc = digest(Notice::First, "bob@example.com", items());
    let delivery = n.send(&adhoc).await.remove(0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((delivery.contact.as_str(), delivery.target.as_str()), ("bob@example.com", "bob@example.com"));
    assert_eq!(sink.received(2)["rcpt_tos"], serde_json::json!(["bob@example.com"]));

    // A certificate from another authority is not trusted: a TLS failure, and nothing is delivered.
    let another_ca = common::channels::certs().ca_der;
    let untrusted = SmtpSettings { ca_certs: vec![another_ca], ..smtp };
    let n = notifier(settings(vec![("team-a", email_contact(&["a@example.com"]))], Some(untrusted))).await;
    let error = n.send(&digest(Notice::First, "team-a", items())).await.remove(0).unwrap_err();
    assert!(matches!(&error, NotifyError::Email { failure: EmailFailure::Tls { .. }, .. }), "{error:?}");
    assert!(error.to_string().starts_with("email to team-a: TLS with 127.0.0.1:"), "{error}");
    assert_eq!(error.as_kind(), "tls");
    assert_eq!(sink.count(), 2);
}

// ---------------------------------------------------------------------------------------------------------
// The webhook receiver

type Received = Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>;

async fn receiver() -> (SocketAddr, Received) {
    let received: Received = Arc::default();
    async fn record(State(r): State<Received>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> &'static str {
        r.lock().unwrap().push((uri.path().to_string(), headers, body));
        "ok"
    }
    async fn fail() -> (StatusCode, String) {
        (StatusCode::NOT_FOUND, format!("no_service\n{}", "x".repeat(400)))
    }
    async fn hang() -> &'static str {
        std::future::pending::<()>().await;
        "never"
    }
    let app = Router::new()
        .route("/services/T000/B000/secret-token", post(record))
        .route("/gone/secret-token", post(fail))
        .route("/slow/secret-token", post(hang))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, received)
}

fn webhook_contact(url: &str) -> Contact {
    Contact { webhook_url: Some(Secret::new(url)), ..Contact::default() }
}

#[tokio::test]
async fn webhook_digest_reaches_the_receiver() {
    let (addr, received) = receiver().await;
    let url = format!("http://{addr}/services/T000/B000/secret-token");
    let n = notifier(settings(vec![("team-a", webhook_contact(&url))], None)).await;
    let mut many = items();
    for k in 0..9 {
        many.push(item(&format!("i-1{k:03}"), "instance", None, "stop", "2026-04-12", Some("1.50")));
    }
    let d = digest(Notice::FinalWarning, "team-a", many);
    let delivery = n.send(&d).await.remove(0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(delivery.channel, Channel::Webhook);
    assert_eq!(delivery.target, format!("http://{addr}"), "the URL's path is a secret");
    assert_eq!(delivery.response.as_deref(), Some("200 ok"));

    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (path, headers, body) = &got[0];
    assert_eq!(path, "/services/T000/B000/secret-token");
    assert_eq!(headers["content-type"], "application/json");
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        v["text"],
        "[cloudwarden] FINAL WARNING: 12 resources will be cleaned up from 2026-04-10 (saves $82.83/month or more)"
    );
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 14, "header, intro, 10 resources, and N more, footer");
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[12]["text"]["text"], "…and 2 more (the email digest lists them all).");
    let first = blocks[2]["text"]["text"].as_str().unwrap();
    assert_eq!(
        first,
        "*eipalloc-0ccc* `ec2:elastic-ip` · prod (123456789012) · us-east-1\nelastic-ip idle for 14 days (rule idle-elastic-ip)\n*release* on *2026-04-10*\nTo keep: add the tag keep-eipalloc-0ccc=yes, or remove cloudwarden:cleanup"
    );
    let second = blocks[3]["text"]["text"].as_str().unwrap();
    assert!(second.contains("*i-0aaa \"café-web\"*") && second.contains("saves $61.32/month"), "{second}");
    let third = blocks[4]["text"]["text"].as_str().unwrap();
    assert!(third.contains("&lt;b&gt;scratch&lt;/b&gt; &amp; tmp"), "{third}");
    assert!(body.len() < 40_000);
}

#[tokio::test]
async fn webhook_failures_name_the_status_and_hide_the_url() {
    let (addr, received) = receiver().await;
    let d = digest(Notice::First, "team-a", items());

    let n =
        notifier(settings(vec![("team-a", webhook_contact(&format!("http://{addr}/gone/secret-token")))], None)).await;
    let error = n.send(&d).await.remove(0).unwrap_err();
    let NotifyError::Webhook { failure: WebhookFailure::Status { status, body }, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(*status, 404);
    assert!(body.starts_with("no_service xxx") && body.chars().count() == 201, "{body}");
    assert!(
        error.to_string().starts_with(&format!("webhook to team-a (http://{addr}): HTTP 404: no_service")),
        "{error}"
    );
    assert_eq!(error.as_kind(), "status");

    // No answer within the timeout.
    let mut s = settings(vec![("team-a", webhook_contact(&format!("http://{addr}/slow/secret-token")))], None);
    s.webhook_timeout = Duration::from_secs(1);
    let error = notifier(s).await.send(&d).await.remove(0).unwrap_err();
    assert_eq!(error.to_string(), format!("webhook to team-a (http://{addr}): no answer within 1 s"));
    assert_eq!(error.as_kind(), "timeout");

    // Nobody listening.
    let closed = common::free_port();
    let url = format!("http://127.0.0.1:{closed}/services/secret-token");
    let error =
        notifier(settings(vec![("team-a", webhook_contact(&url))], None)).await.send(&d).await.remove(0).unwrap_err();
    assert_eq!(error.as_kind(), "transport");
    let text = format!("{error} {error:?}");
    assert!(text.contains(&format!("http://127.0.0.1:{closed}")), "{text}");
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains("secret-token"), "{shown}");
    }
    assert!(received.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------------------
// SNS on the moto test-bed

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_published_to_an_sns_topic_reaches_its_queue() {
    common::aws_test_env();
    let moto = common::Moto::start();
    let topic_arn = topic_with_queue(&moto, "cleanup-notices", "notices");
    assert_eq!(topic_arn, "arn:aws:sns:us-east-1:123456789012:cleanup-notices");

    // The contact has a webhook nobody answers, too: its failure does not stop the SNS message.
    let dead = format!("http://127.0.0.1:{}/hook", common::free_port());
    let contact = Contact {
        webhook_url: Some(Secret::new(dead)),
        sns: Some(cloudwarden::notify::SnsTarget {
            topic_arn: topic_arn.clone(),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            account: None,
        }),
        ..Contact::default()
    };
    let aws = AwsContext::new(&AwsSettings { endpoint_url: Some(moto.endpoint()), ..AwsSettings::default() }).await;
    let n = Notifier::new(settings(vec![("team-a", contact)], None), aws.clone());
    let d = digest(Notice::FinalWarning, "team-a", items());
    let results = n.send(&d).await;
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].as_ref().unwrap_err().channel(), Some(Channel::Webhook));
    let delivery = results[1].as_ref().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((delivery.channel, delivery.target.as_str()), (Channel::Sns, topic_arn.as_str()));
    let message_id = delivery.message_id.clone().unwrap();
    // The publishing account was found by asking STS which account the default credentials are.
    let calls = aws.stats.snapshot();
    let count = |op: &str| calls.iter().filter(|(k, _)| k.operation == op).map(|(_, v)| v).sum::<u64>();
    assert_eq!((count("GetCallerIdentity"), count("Publish")), (1, 1), "{calls:?}");

    let envelopes = queued(&moto, "notices");
    assert_eq!(envelopes.len(), 1, "{envelopes:?}");
    let e = &envelopes[0];
    assert_eq!(e["Type"], "Notification");
    assert_eq!(e["TopicArn"], topic_arn.as_str());
    assert_eq!(e["MessageId"], message_id.as_str());
    let subject = e["Subject"].as_str().unwrap();
    assert!(subject.chars().count() <= 100, "{subject}");
    assert_eq!(
        subject, "[cloudwarden] FINAL WARNING: 3 resources will be cleaned up from 2026-04-10",
        "the savings do not fit"
    );
    let text = e["Message"].as_str().unwrap();
    assert!(text.starts_with("Hello team-a,\n"), "{text}");
    for fact in
        ["i-0aaa", "vol-0bbb", "eipalloc-0ccc", "2026-04-11", "$61.32", "keep-vol-0bbb=yes", "cloudwarden:protect"]
    {
        assert!(text.contains(fact), "{fact} missing:\n{text}");
    }

    // A topic that does not exist: the error names the contact and the call.
    let missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic";
    let contact = Contact {
        sns: Some(cloudwarden::notify::SnsTarget {
            topic_arn: missing.into(),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            account: Some("default".into()),
        }),
        ..Contact::default()
    };
    let n = Notifier::new(settings(vec![("team-b", contact)], None), aws);
    let error = n.send(&digest(Notice::First, "team-b", items())).await.remove(0).unwrap_err();
    assert!(error.to_string().starts_with(&format!("sns to team-b: Publish {missing}: ")), "{error}");
    assert_eq!(error.as_kind(), "not_found", "{error}");
}
