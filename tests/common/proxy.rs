//! A faulty proxy on 127.0.0.1 in front of moto: it answers a share of requests with a throttling error or an
//! HTTP 500 in the wire format of the request's protocol, and delays another share. A request that was
//! faulted once is always forwarded the next time, so every call succeeds within three attempts and a
//! cycle's data must come out identical.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Every `throttle_every`-th new request is throttled, every `error_every`-th gets a 500, every
/// `delay_every`-th waits `delay` before being forwarded.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub throttle_every: u64,
    pub error_every: u64,
    pub delay_every: u64,
    pub delay: Duration,
}

#[derive(Default, Debug)]
pub struct Counts {
    pub requests: AtomicU64,
    pub throttled: AtomicU64,
    pub errors: AtomicU64,
    pub delayed: AtomicU64,
}

struct Inner {
    upstream: String,
    faults: Faults,
    client: Client<HttpConnector, Body>,
    faulted: Mutex<HashSet<Vec<u8>>>,
    counts: Arc<Counts>,
}

pub struct FaultyProxy {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyProxy {
    pub async fn start(upstream: &str, faults: Faults) -> FaultyProxy {
        let counts = Arc::new(Counts::default());
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_string(),
            faults,
            client: Client::builder(TokioExecutor::new()).build_http(),
            faulted: Mutex::new(HashSet::new()),
            counts: counts.clone(),
        });
        let app = axum::Router::new().fallback(handle).with_state(inner);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FaultyProxy { addr, counts, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The error body a service of the request's protocol sends when it throttles or fails.
fn error_response(headers: &HeaderMap, body: &[u8], throttle: bool) -> Response {
    let (code, status) = if throttle {
        ("Throttling", StatusCode::BAD_REQUEST)
    } else {
        ("InternalError", StatusCode::INTERNAL_SERVER_ERROR)
    };
    let text = String::from_utf8_lossy(body);
    if headers.contains_key("x-amz-target") {
        // awsJson protocols (Tagging API, CloudWatch Logs, Cost Explorer).
        let kind = if throttle { "ThrottlingException" } else { "InternalFailure" };
        return (
            status,
            [("content-type", "application/x-amz-json-1.1")],
            format!(r#"{{"__type":"{kind}","message":"injected"}}"#),
        )
            .into_response();
    }
    if text.contains("Action=") && text.contains("Version=2016-11-15") {
        // EC2's query protocol.
        let code = if throttle { "RequestLimitExceeded" } else { "InternalError" };
        let xml = format!("<Response><Errors><Error><Code>{code}</Code><Message>injected</Message></Error></Errors><RequestID>x</RequestID></Response>");
        return (status, [("content-type", "text/xml")], xml).into_response();
    }
    if text.contains("Action=") {
        // awsQuery (STS, RDS).
        let xml = format!("<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>injected</Message></Error><RequestId>x</RequestId></ErrorResponse>");
        return (status, [("content-type", "text/xml")], xml).into_response();
    }
    // restXml (S3): throttling is 503 SlowDown.
    let (code, status) =
        if throttle { ("SlowDown", StatusCode::SERVICE_UNAVAILABLE) } else { ("InternalError", status) };
    let xml = format!("<Error><Code>{code}</Code><Message>injected</Message><RequestId>x</RequestId></Error>");
    (status, [("content-type", "application/xml")], xml).into_response()
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let n = inner.counts.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let mut fingerprint =
        format!("{} {} {:?}", parts.method, parts.uri, parts.headers.get("x-amz-target")).into_bytes();
    fingerprint.extend_from_slice(&body);
    let f = inner.faults;
    let first_time = inner.faulted.lock().unwrap().insert(fingerprint.clone());
    if first_time && n % f.throttle_every == 0 {
        inner.counts.throttled.fetch_add(1, Ordering::SeqCst);
        return error_response(&parts.headers, &body, true);
    }
    if first_time && n % f.error_every == 0 {
        inner.counts.errors.fetch_add(1, Ordering::SeqCst);
        return error_response(&parts.headers, &body, false);
    }
    if first_time {
        // Not faulted: forget it, so a later identical request may be faulted in its turn.
        inner.faulted.lock().unwrap().remove(&fingerprint);
    }
    if n % f.delay_every == 0 {
        inner.counts.delayed.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(f.delay).await;
    }
    let uri = format!("{}{}", inner.upstream, parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut out = axum::http::Request::builder().method(parts.method).uri(uri);
    for (k, v) in parts.headers.iter() {
        if k != "host" {
            out = out.header(k, v);
        }
    }
    match inner.client.request(out.body(Body::from(body)).unwrap()).await {
        Ok(res) => res.map(Body::new).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
