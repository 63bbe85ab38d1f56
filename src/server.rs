//! The HTTP server: `/metrics`, `/healthz`, `/readyz`. [`app`] builds the router from shared state so tests
//! can call it without a socket; [`serve`] binds it and shuts it down gracefully.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::metrics::CONTENT_TYPE;

/// State shared between the collection loop (writer) and the HTTP handlers (readers).
#[derive(Debug, Clone, Default)]
pub struct AppState {
    /// The latest rendered `/metrics` body.
    metrics: Arc<RwLock<Arc<String>>>,
    /// True once a collection cycle has succeeded.
    ready: Arc<AtomicBool>,
    /// Scrapes served, for logs and tests.
    scrapes: Arc<AtomicU64>,
}

impl AppState {
    pub fn set_metrics(&self, body: String) {
        *self.metrics.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(body);
    }

    pub fn metrics(&self) -> Arc<String> {
        self.metrics.read().unwrap_or_else(|p| p.into_inner()).clone()
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
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    state.scrapes.fetch_add(1, Ordering::Relaxed);
    let body = state.metrics();
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body.as_str().to_owned()).into_response()
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

/// Binds `addr` and serves until `shutdown` is cancelled, then lets requests in flight finish.
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        axum::serve(listener, app(state)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
    });
    Ok((local, handle))
}
