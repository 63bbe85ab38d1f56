//! Slack-compatible incoming webhooks: the digest's JSON POSTed to the contact's URL, over the same HTTP
//! stack as the AWS clients (hyper, rustls with ring, the system's certificate authorities).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::settings::webhook_target;
use super::{chain, Channel, Delivery, Message, NotifyError, Secret, WebhookFailure};

/// How much of an answer's body is read, and how much of it an error or a delivery shows.
const MAX_BODY_BYTES: usize = 64 * 1024;
const SHOWN_BODY_CHARS: usize = 200;

pub(crate) struct Client {
    http: hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Client {
    /// A client for `http://` and `https://` URLs; connecting times out after `connect_timeout`.
    pub(crate) fn new(connect_timeout: Duration) -> Client {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(b) => b,
            Err(error) => {
                // Plain http still works; https fails at the handshake, saying the certificate is unknown.
                tracing::warn!(%error, "no system certificate authorities: https webhooks will fail");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("ring supports rustls' default protocol versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_connect_timeout(Some(connect_timeout));
        let https = builder.https_or_http().enable_http1().wrap_connector(connector);
        Client { http: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https) }
    }

    /// POSTs the digest's Slack JSON to `url`; the whole exchange times out after `timeout`.
    pub(super) async fn send(
        &self,
        url: &Secret,
        timeout: Duration,
        contact: &str,
        message: &Message,
    ) -> Result<Delivery, NotifyError> {
        match self.post_json(url, timeout, &message.slack).await {
            Ok(posted) => Ok(Delivery {
                channel: Channel::Webhook,
                contact: contact.to_string(),
                target: posted.target,
                message_id: None,
                response: Some(posted.response),
            }),
            Err((target, failure)) => Err(NotifyError::Webhook { contact: contact.to_string(), target, failure }),
        }
    }

    /// POSTs `body` as JSON to `url`; the whole exchange times out after `timeout`. A failure comes with
    /// what may be shown of the URL.
    pub(crate) async fn post_json(
        &self,
        url: &Secret,
        timeout: Duration,
        body: &serde_json::Value,
    ) -> Result<Posted, (String, WebhookFailure)> {
        // Checked when the configuration was loaded; what may be shown of the URL.
        let target = webhook_target(url.expose()).unwrap_or_else(|_| "invalid URL".into());
        let fail = |failure| (target.clone(), failure);
        // Error texts never show the URL, which is a secret.
        let redact = |text: String| text.replace(url.expose(), &target);
        let request = http::Request::post(url.expose())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("cloudwarden/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| fail(WebhookFailure::Transport(redact(format!("cannot build the request: {}", chain(&e))))))?;
        let exchange = async {
            let response =
                self.http.request(request).await.map_err(|e| WebhookFailure::Transport(redact(chain(&e))))?;
            let status = response.status();
            // A body that cannot be read (or is too long) is shown as what could be read: nothing.
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, WebhookFailure>((status, shown(&body)))
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| fail(WebhookFailure::Timeout { secs: timeout.as_secs() }))?
            .map_err(fail)?;
        if !status.is_success() {
            return Err(fail(WebhookFailure::Status { status: status.as_u16(), body }));
        }
        Ok(Posted { response: format!("{} {body}", status.as_u16()).trim().to_string(), target })
    }
}

/// A webhook that answered 2xx.
pub(crate) struct Posted {
    /// The URL's scheme and host.
    pub target: String,
    /// The status and the start of the body.
    pub response: String,
}

/// The start of a body, on one line.
fn shown(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let trimmed = one_line.trim();
    if trimmed.chars().count() <= SHOWN_BODY_CHARS {
        return trimmed.to_string();
    }
    let mut cut: String = trimmed.chars().take(SHOWN_BODY_CHARS).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_shown_short_and_on_one_line() {
        assert_eq!(shown(b"ok"), "ok");
        assert_eq!(shown(b" invalid_payload\n"), "invalid_payload");
        assert_eq!(shown(b"a\r\nb"), "a  b");
        let long = shown("x".repeat(500).as_bytes());
        assert_eq!(long.chars().count(), SHOWN_BODY_CHARS + 1);
        assert_eq!(shown(&[0xff, b'a']), "\u{fffd}a");
    }
}
