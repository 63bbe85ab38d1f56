//! The HTTP server: `/metrics`, `/healthz`, `/readyz`, `/status` and the API (`/api/v1/findings`, the
//! cleanup plans and audit trail of [`cleanup`]; bearer tokens with scopes). [`app`] builds the router from shared state so tests can call it without a socket; [`serve`] binds
//! it and shuts it down gracefully. `/metrics` and `/status` are served from memory; the API reads the
//! database.

mod cleanup;
pub mod listen;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rules::finding::FindingKind;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::config::{ApiToken, Scope};
use crate::metrics::{Rendered, Rope, CONTENT_TYPE, TEXT_CONTENT_TYPE};
use crate::runtime::{Clock, Runtime};
use crate::store::{FindingFilter, Store, StoredFinding};

pub use listen::ServerSettings;

/// State shared between the collection loop (writer) and the HTTP handlers (readers).
#[derive(Debug, Clone, Default)]
pub struct AppState {
    /// The latest rendered `/metrics` body, in both formats, plain and gzip.
    metrics: Arc<RwLock<Arc<Rendered>>>,
    /// True once the daemon has data to serve: a collector has succeeded, now or before a restart.
    ready: Arc<AtomicBool>,
    /// Scrapes served, for logs and tests.
    scrapes: Arc<AtomicU64>,
    /// What the API reads, and who may; `None`: the API is off.
    api: Option<Arc<Api>>,
    /// The jobs `/status` lists; `None` before the runtime exists.
    status: Option<Arc<Runtime>>,
    /// The bearer token `/metrics` and `/status` require; `None`: open.
    metrics_token: Option<Arc<str>>,
}

/// The API's database, accepted tokens and clock.
struct Api {
    store: Store,
    tokens: Vec<ApiToken>,
    clock: Clock,
}

impl std::fmt::Debug for Api {
    /// Never shows the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("store", &self.store).field("tokens", &self.tokens.len()).finish()
    }
}

impl AppState {
    /// Serves the API from `store` to callers presenting one of `tokens`, with the time of `clock`. Without
    /// tokens the API stays off (its routes answer 404).
    pub fn with_api(mut self, store: Store, tokens: Vec<ApiToken>, clock: Clock) -> AppState {
        let tokens: Vec<ApiToken> = tokens.into_iter().filter(|t| !t.token.is_empty()).collect();
        self.api = (!tokens.is_empty()).then(|| Arc::new(Api { store, tokens, clock }));
        self
    }

    /// Requires `token` (as `Authorization: Bearer ...`) on `/metrics` and `/status`.
    pub fn with_metrics_token(mut self, token: Option<String>) -> AppState {
        self.metrics_token = token.filter(|t| !t.is_empty()).map(Arc::from);
        self
    }

    /// Whether the request may read `/metrics` and `/status`.
    fn metrics_allowed(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(token) = &self.metrics_token else { return Ok(()) };
        let value = headers.get(header::AUTHORIZATION).ok_or(ApiError::MissingToken)?;
        let value = value.to_str().map_err(|_| ApiError::InvalidToken)?;
        match value.trim().split_once(' ') {
            Some((scheme, given)) if scheme.eq_ignore_ascii_case("bearer") => {
                if constant_time_eq(token.as_bytes(), given.trim().as_bytes()) {
                    Ok(())
                } else {
                    Err(ApiError::InvalidToken)
                }
            }
            _ => Err(ApiError::MissingToken),
        }
    }

    /// Lists the jobs of `runtime` on `/status`.
    pub fn with_status(mut self, runtime: Arc<Runtime>) -> AppState {
        self.status = Some(runtime);
        self
    }

    pub fn set_metrics(&self, body: Rendered) {
        *self.metrics.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(body);
    }

    /// The latest rendering, shared.
    pub fn rendered(&self) -> Arc<Rendered> {
        self.metrics.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A copy of the latest OpenMetrics body, as text (for tests and tools; scrapes share the bytes).
    pub fn metrics(&self) -> String {
        String::from_utf8_lossy(&self.rendered().openmetrics.to_vec()).into_owned()
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn scrapes(&self) -> u64 {
        self.scrapes.load(Ordering::Relaxed)
    }
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/api/v1/findings", get(list_findings))
        .route("/api/v1/cleanup", get(cleanup::list))
        .route("/api/v1/cleanup/{id}", get(cleanup::show))
        .route("/api/v1/cleanup/{id}/approve", post(cleanup::approve))
        .route("/api/v1/cleanup/{id}/reject", post(cleanup::reject))
        .route("/api/v1/cleanup/{id}/exempt", post(cleanup::exempt))
        .route("/api/v1/audit", get(cleanup::audit))
        .with_state(state)
}

/// OpenMetrics, unless the request accepts the Prometheus text format and not OpenMetrics
/// (`curl -H 'Accept: text/plain' ... | promtool check metrics`); gzip when the request accepts it. Both are
/// already rendered: the response shares the bytes (the segments of a plain body are written in turn).
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = state.metrics_allowed(&headers) {
        return e.into_response();
    }
    state.scrapes.fetch_add(1, Ordering::Relaxed);
    let rendered = state.rendered();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let text = accept.contains("text/plain") && !accept.contains("application/openmetrics-text");
    let gzip = accepts_gzip(headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or(""));
    let content_type = if text { TEXT_CONTENT_TYPE } else { CONTENT_TYPE };
    let (length, body) = match (text, gzip) {
        (false, false) => rope_body(&rendered.openmetrics),
        (false, true) => (rendered.openmetrics_gzip.len(), Body::from(rendered.openmetrics_gzip.clone())),
        (true, false) => rope_body(&rendered.text),
        (true, true) => (rendered.text_gzip.len(), Body::from(rendered.text_gzip.clone())),
    };
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let h = response.headers_mut();
    // A body of several segments has no length of its own: without the header it would go out chunked.
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::VARY, HeaderValue::from_static("accept, accept-encoding"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// A response body writing the segments of `rope` in turn, and its length.
fn rope_body(rope: &Rope) -> (usize, Body) {
    let segments = rope.clone().into_iter().map(Ok::<_, Infallible>);
    (rope.len(), Body::from_stream(futures::stream::iter(segments)))
}

/// Whether an `Accept-Encoding` value accepts gzip (`gzip` or `*`, without `q=0`).
fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let refused = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0)));
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

/// Every job: its schedule, last outcome and reason, last success, next run and panics (JSON).
async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = state.metrics_allowed(&headers) {
        return e.into_response();
    }
    let jobs = state.status.as_ref().map(|rt| rt.status()).unwrap_or_default();
    Json(StatusBody { ready: state.is_ready(), jobs }).into_response()
}

#[derive(Serialize)]
struct StatusBody {
    ready: bool,
    jobs: Vec<crate::runtime::JobStatus>,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "waiting for the first successful collection\n").into_response()
    }
}

/// Every error the API answers with: one JSON body `{"error": "..."}`. Internal errors are logged here and
/// answered without detail.
#[derive(Debug)]
pub enum ApiError {
    /// No token is configured: the API is off.
    Disabled,
    /// No bearer token in the request.
    MissingToken,
    /// A bearer token that is not one of the configured ones.
    InvalidToken,
    /// A valid token without the scope the route needs.
    Forbidden(Scope),
    /// A parameter the API does not accept.
    BadRequest(String),
    /// No such object.
    NotFound(String),
    /// The object is in a state that does not allow the request.
    Conflict(String),
    /// Anything else; the message is logged, never sent.
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message, challenge) = match &self {
            ApiError::Disabled => {
                (StatusCode::NOT_FOUND, "not found: the API is off (no [api] token configured)", None)
            }
            ApiError::MissingToken => {
                (StatusCode::UNAUTHORIZED, "a bearer token is required", Some(r#"Bearer realm="cloudwarden""#))
            }
            ApiError::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "invalid bearer token",
                Some(r#"Bearer realm="cloudwarden", error="invalid_token""#),
            ),
            ApiError::Forbidden(scope) => (
                StatusCode::FORBIDDEN,
                match scope {
                    Scope::Read => "this token lacks the `read` scope",
                    Scope::Approve => "this token lacks the `approve` scope",
                },
                Some(r#"Bearer realm="cloudwarden", error="insufficient_scope""#),
            ),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.as_str(), None),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m.as_str(), None),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m.as_str(), None),
            ApiError::Internal(detail) => {
                error!(error = %detail, "api request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error", None)
            }
        };
        let mut response = (status, Json(ErrorBody { error: message })).into_response();
        if let Some(c) = challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        response
    }
}

/// Compares in time that depends only on the lengths, not on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// The API of `state` and the caller's token, if the request carries one of its tokens and that token has
/// `scope`.
fn authorize<'a>(state: &'a AppState, headers: &HeaderMap, scope: Scope) -> Result<(&'a Api, &'a ApiToken), ApiError> {
    let api = state.api.as_deref().ok_or(ApiError::Disabled)?;
    let value = headers.get(header::AUTHORIZATION).ok_or(ApiError::MissingToken)?;
    let value = value.to_str().map_err(|_| ApiError::InvalidToken)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(ApiError::InvalidToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::MissingToken);
    }
    let token = token.trim().as_bytes();
    // Every configured token is compared, whichever matches.
    let found = api.tokens.iter().fold(None, |found, t| {
        let same = constant_time_eq(t.token.as_bytes(), token);
        found.or(same.then_some(t))
    });
    let token = found.ok_or(ApiError::InvalidToken)?;
    if token.allows(scope) {
        Ok((api, token))
    } else {
        Err(ApiError::Forbidden(scope))
    }
}

/// `GET /api/v1/findings` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingsParams {
    /// One kind only.
    kind: Option<String>,
    /// Resolved findings too (default false).
    #[serde(default)]
    include_resolved: bool,
    /// Findings per page (default [`DEFAULT_PAGE`], at most [`MAX_PAGE`]).
    limit: Option<usize>,
    /// Where the previous page ended, as its `next_cursor` said.
    cursor: Option<String>,
}

/// Findings per page unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 500;
/// The most findings one page holds.
pub const MAX_PAGE: usize = 5000;

/// A cursor as clients see it: opaque, and checked when it comes back.
fn encode_cursor(id: i64) -> String {
    format!("f1.{id:x}")
}

fn decode_cursor(cursor: &str) -> Option<i64> {
    let hex = cursor.strip_prefix("f1.")?;
    if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return None;
    }
    i64::from_str_radix(hex, 16).ok().filter(|id| *id >= 0)
}

/// One page of findings and where the next one starts.
#[derive(Debug, Serialize)]
struct FindingsPage {
    findings: Vec<FindingOut>,
    /// `null` on the last page.
    next_cursor: Option<String>,
}

/// One finding as the API shows it.
#[derive(Debug, Serialize)]
struct FindingOut {
    id: i64,
    kind: &'static str,
    rule: String,
    subject: String,
    account: Option<String>,
    region: Option<String>,
    resource_type: Option<String>,
    severity: &'static str,
    message: String,
    /// Exact decimal, as a string.
    monthly_usd: Option<String>,
    details: serde_json::Value,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    /// Seconds from the first sighting to now, or to the resolution of a resolved finding.
    age_secs: i64,
}

impl FindingOut {
    fn of(f: StoredFinding, now: DateTime<Utc>) -> FindingOut {
        let until = f.resolved_at.unwrap_or(now);
        FindingOut {
            id: f.id,
            kind: f.kind.as_str(),
            rule: f.rule,
            subject: f.subject,
            account: f.account_id,
            region: f.region,
            resource_type: f.resource_type,
            severity: f.severity.as_str(),
            message: f.message,
            monthly_usd: f.monthly_usd.map(|d| d.to_string()),
            details: f.details,
            first_seen: f.first_seen,
            last_seen: f.last_seen,
            resolved_at: f.resolved_at,
            age_secs: (until - f.first_seen).num_seconds().max(0),
        }
    }
}

async fn list_findings(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<FindingsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (api, _) = authorize(&state, &headers, Scope::Read)?;
    let Query(params) = query.map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))?;
    let kind = match params.kind.as_deref() {
        None => None,
        Some(k) => Some(FindingKind::parse(k).ok_or_else(|| {
            let known: Vec<&str> = FindingKind::ALL.iter().map(|k| k.as_str()).collect();
            ApiError::BadRequest(format!("unknown kind {k:?}: expected one of {}", known.join(", ")))
        })?),
    };
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let after = match params.cursor.as_deref() {
        None => 0,
        Some(c) => decode_cursor(c)
            .ok_or_else(|| ApiError::BadRequest("invalid cursor: pass the next_cursor of the previous page".into()))?,
    };
    let filter = FindingFilter { kind, include_resolved: params.include_resolved };
    // One more than the page: whether there is a next page, without counting.
    let mut found =
        api.store.findings_page(filter, after, limit + 1).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let more = found.len() > limit;
    found.truncate(limit);
    let next_cursor = if more { found.last().map(|f| encode_cursor(f.id)) } else { None };
    let now = api.clock.now();
    let page = FindingsPage { findings: found.into_iter().map(|f| FindingOut::of(f, now)).collect(), next_cursor };
    let link = page.next_cursor.as_ref().map(|c| {
        let mut query = vec![format!("limit={limit}"), format!("cursor={c}")];
        if let Some(k) = kind {
            query.insert(0, format!("kind={}", k.as_str()));
        }
        if params.include_resolved {
            query.push("include_resolved=true".into());
        }
        format!("</api/v1/findings?{}>; rel=\"next\"", query.join("&"))
    });
    let mut response = Json(page).into_response();
    if let Some(link) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

/// Binds `addr` and serves [`app`] until `shutdown` is cancelled, within `settings` (connection cap,
/// header-read and request timeouts, TLS; see [`listen`]), then lets requests in flight finish within the
/// shutdown grace.
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    settings: ServerSettings,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let router = with_request_timeout(app(state), settings.request_timeout);
    listen::bind(addr, router, settings, shutdown).await
}

/// `router` answering `503` to a request that takes longer than `timeout`.
pub fn with_request_timeout(router: Router, timeout: std::time::Duration) -> Router {
    router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(response) => response,
                Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Json(ErrorBody { error: "the request took too long" }))
                    .into_response(),
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        for id in [0, 1, 255, i64::MAX] {
            assert_eq!(decode_cursor(&encode_cursor(id)), Some(id));
        }
        for bad in ["", "f1.", "f1.-1", "f1.FF", "f2.10", "10", "f1.10000000000000000", "f1.zz", "f1.8000000000000000"]
        {
            assert_eq!(decode_cursor(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_unless_only_the_text_format_is_accepted() {
        let state = AppState::default();
        state.set_metrics(Rendered::of("# HELP x_runs Runs.\n# TYPE x_runs counter\nx_runs_total 1\n# EOF\n".into()));
        let openmetrics = (CONTENT_TYPE, "# HELP x_runs Runs.\n# TYPE x_runs counter\nx_runs_total 1\n# EOF\n");
        let text = (TEXT_CONTENT_TYPE, "# HELP x_runs_total Runs.\n# TYPE x_runs_total counter\nx_runs_total 1\n");
        let prometheus =
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                          text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        for (accept, want) in [
            (None, openmetrics),
            (Some("*/*"), openmetrics),
            (Some(prometheus), openmetrics),
            (Some("text/plain"), text),
            (Some("text/plain; version=0.0.4"), text),
        ] {
            let mut req = Request::get("/metrics");
            if let Some(a) = accept {
                req = req.header(header::ACCEPT, a);
            }
            let res = app(state.clone()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let content_type = res.headers()[header::CONTENT_TYPE].to_str().unwrap().to_string();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!((content_type.as_str(), std::str::from_utf8(&body).unwrap()), want, "Accept: {accept:?}");
        }
    }

    #[tokio::test]
    async fn a_body_of_several_segments_is_served_whole_with_its_length_plain_or_gzip() {
        let parts = [
            "# HELP x_ratio A share.\n# TYPE x_ratio gauge\n",
            "x_ratio{a=\"1\"} 0.5\n",
            "x_ratio{a=\"2\"} 1\n# EOF\n",
        ];
        let rendered =
            Rendered::of_segments(parts.iter().map(|p| axum::body::Bytes::from_static(p.as_bytes())).collect());
        assert_eq!(rendered.openmetrics.segments().len(), 3);
        let state = AppState::default();
        state.set_metrics(rendered);
        let openmetrics = parts.concat();
        let text = crate::metrics::to_text_format(&openmetrics);
        for (accept, gzip, want) in [
            ("application/openmetrics-text", false, &openmetrics),
            ("application/openmetrics-text", true, &openmetrics),
            ("text/plain", false, &text),
            ("text/plain", true, &text),
        ] {
            let mut req = Request::get("/metrics").header(header::ACCEPT, accept);
            if gzip {
                req = req.header(header::ACCEPT_ENCODING, "gzip");
            }
            let res = app(state.clone()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(res.headers().get(header::CONTENT_ENCODING).is_some(), gzip, "{accept} {gzip}");
            let length: usize = res.headers()[header::CONTENT_LENGTH].to_str().unwrap().parse().unwrap();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(length, body.len(), "{accept} {gzip}");
            let body = match gzip {
                true => {
                    let mut plain = Vec::new();
                    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain).unwrap();
                    plain
                }
                false => body.to_vec(),
            };
            assert_eq!(String::from_utf8(body).unwrap(), *want, "{accept} {gzip}");
        }
    }
}
