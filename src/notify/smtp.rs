//! Email: one multipart/alternative message (text and HTML) to all of a contact's addresses, through the
//! configured relay, over STARTTLS, implicit TLS or (for a relay on the same host) plain text.

use std::sync::atomic::{AtomicU64, Ordering};

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{chain, Channel, Delivery, EmailFailure, Message, NotifyError, SmtpSettings, SmtpTls};

pub(super) async fn send(
    smtp: &SmtpSettings,
    contact: &str,
    to: &[String],
    message: &Message,
) -> Result<Delivery, NotifyError> {
    let mail = Mail { subject: &message.subject, text: &message.text, html: &message.html, ..Mail::default() };
    let sent = send_mail(smtp, to, &mail)
        .await
        .map_err(|failure| NotifyError::Email { contact: contact.to_string(), failure })?;
    Ok(Delivery {
        channel: Channel::Email,
        contact: contact.to_string(),
        target: to.join(", "),
        message_id: Some(sent.message_id),
        response: Some(sent.response),
    })
}

/// One email: a text and an HTML alternative, and attachments.
#[derive(Debug, Default)]
pub(crate) struct Mail<'a> {
    pub subject: &'a str,
    pub text: &'a str,
    pub html: &'a str,
    /// (file name, content type, content).
    pub attachments: Vec<(String, &'static str, Vec<u8>)>,
    /// The `Message-ID`'s left part, when the same message may be sent again (a retry after a crash): a
    /// receiver can then tell the copies apart. Default: unique to this process and time.
    pub id: Option<String>,
}

/// What the relay said to a sent email.
#[derive(Debug)]
pub(crate) struct Sent {
    pub message_id: String,
    /// The relay's last reply.
    pub response: String,
}

/// Sends `mail` to `to` through the relay.
pub(crate) async fn send_mail(smtp: &SmtpSettings, to: &[String], mail: &Mail<'_>) -> Result<Sent, EmailFailure> {
    let relay = format!("{}:{}", smtp.host, smtp.port);
    let from: Mailbox = smtp.from.parse().map_err(|e| EmailFailure::Message(format!("sender: {e}")))?;
    let message_id = match &mail.id {
        Some(id) => format!("<{id}@{}>", from.email.domain()),
        None => message_id(from.email.domain()),
    };
    let mut builder = lettre::Message::builder().from(from).subject(mail.subject).message_id(Some(message_id.clone()));
    for address in to {
        let mailbox: Mailbox =
            address.parse().map_err(|e| EmailFailure::Message(format!("recipient {address:?}: {e}")))?;
        builder = builder.to(mailbox);
    }
    let body = MultiPart::alternative_plain_html(mail.text.to_string(), mail.html.to_string());
    let email = if mail.attachments.is_empty() {
        builder.multipart(body)
    } else {
        let mut mixed = MultiPart::mixed().multipart(body);
        for (name, content_type, content) in &mail.attachments {
            let content_type = ContentType::parse(content_type)
                .map_err(|e| EmailFailure::Message(format!("attachment {name:?}: {e}")))?;
            mixed = mixed.singlepart(Attachment::new(name.clone()).body(content.clone(), content_type));
        }
        builder.multipart(mixed)
    }
    .map_err(|e| EmailFailure::Message(e.to_string()))?;

    let tls = match smtp.tls {
        SmtpTls::None => Tls::None,
        mode => {
            let params =
                tls_parameters(smtp).map_err(|e| EmailFailure::Tls { relay: relay.clone(), message: chain(&e) })?;
            if mode == SmtpTls::Tls {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            }
        }
    };
    // lettre's "dangerous" builder only means the TLS set-up is ours: it is required (or refused) above.
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str())
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(smtp.timeout))
        .hello_name(ClientId::Domain(smtp.hello_name.clone()));
    if let Some((user, password)) = &smtp.credentials {
        transport = transport.credentials(Credentials::new(user.clone(), password.expose().to_string()));
    }
    let response = transport.build().send(email).await.map_err(|e| {
        let message = chain(&e);
        let relay = relay.clone();
        if e.is_timeout() {
            EmailFailure::Timeout { relay, message }
        } else if is_tls(&e) {
            EmailFailure::Tls { relay, message }
        } else if e.is_permanent() || e.is_transient() {
            EmailFailure::Refused { relay, message }
        } else {
            EmailFailure::Transport { relay, message }
        }
    })?;
    let reply: Vec<&str> = response.message().collect();
    Ok(Sent { message_id, response: format!("{} {}", response.code(), reply.join(" ")).trim().to_string() })
}

/// Whether a failure was TLS's: lettre says so, or a rustls error is among its sources (a certificate that
/// is not trusted surfaces as a connection error).
fn is_tls(err: &lettre::transport::smtp::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn std::error::Error + 'static));
        if e.is::<rustls::Error>() || inner.is_some_and(|i| i.is::<rustls::Error>()) {
            return true;
        }
        source = e.source();
    }
    err.is_tls()
}

/// Trusts the configured CA certificates only, or the system's when none is configured.
fn tls_parameters(smtp: &SmtpSettings) -> Result<TlsParameters, lettre::transport::smtp::Error> {
    let mut builder = TlsParameters::builder(smtp.host.clone());
    if !smtp.ca_certs.is_empty() {
        builder = builder.certificate_store(CertificateStore::None);
        for der in &smtp.ca_certs {
            builder = builder.add_root_certificate(Certificate::from_der(der.clone())?);
        }
    }
    builder.build_rustls()
}

/// A message id unique to this process and time: `<cloudwarden.{time}.{pid}.{n}@{domain}>`.
fn message_id(domain: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("<cloudwarden.{nanos}.{}.{n}@{domain}>", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_unique() {
        let (a, b) = (message_id("example.com"), message_id("example.com"));
        assert_ne!(a, b);
        assert!(a.starts_with("<cloudwarden.") && a.ends_with("@example.com>"), "{a}");
    }
}
