//! Accepting connections: the limits that keep a careless or hostile client from holding the server, the
//! optional TLS, and the shutdown deadline. Each connection is HTTP/1.1 served by hyper:
//!
//! - at most `max_connections` at once, so the daemon's file descriptors stay bounded. At the cap, a new
//!   connection takes the place of the oldest one that is not serving a request (a client that connected and
//!   sends nothing, or sends its headers a byte at a time, or idles between requests); only when every
//!   connection is serving a request is the new one closed. So idle and slow clients can never lock
//!   Prometheus out;
//! - the TLS handshake and each request's headers must arrive within `header_read_timeout` (a slow or idle
//!   client is disconnected);
//! - a request that takes longer than `request_timeout` is answered `503`;
//! - at shutdown the listener closes, idle connections are closed, and requests in flight get
//!   `shutdown_grace` to finish before the rest are dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::check::{key, Checker, Seg};
use crate::config::schema::ServerSection;

/// The server's limits, token and TLS, validated.
#[derive(Clone)]
pub struct ServerSettings {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    /// The bearer token `/metrics` and `/status` require.
    pub metrics_token: Option<String>,
    /// The TLS configuration, when the server speaks HTTPS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 512,
            shutdown_grace: Duration::from_secs(10),
            metrics_token: None,
            tls: None,
        }
    }
}

impl std::fmt::Debug for ServerSettings {
    /// Never shows the token or the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSettings")
            .field("header_read_timeout", &self.header_read_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_connections", &self.max_connections)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "***"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

const MAX_SECS: u64 = 3600;
const MAX_CONNECTIONS: usize = 100_000;

/// Checks `[server]` beyond its address: the limits, the metrics token (at least 16 characters, no
/// whitespace) and the TLS files (read, parsed and paired with each other here, so a bad file is a
/// configuration error with its line, not a failure at start).
pub(crate) fn check(cx: &mut Checker<'_>, s: &ServerSection, base_dir: &std::path::Path) -> ServerSettings {
    let base = [Seg::Key("server")];
    let secs = |cx: &mut Checker<'_>, name: &'static str, v: u64| {
        if v == 0 {
            cx.error(&key(&base, name), "must be at least 1");
        }
        cx.at_most(&key(&base, name), v.into(), MAX_SECS, false);
        Duration::from_secs(v)
    };
    let header_read_timeout = secs(cx, "header_read_timeout_secs", s.header_read_timeout_secs);
    let request_timeout = secs(cx, "request_timeout_secs", s.request_timeout_secs);
    let shutdown_grace = secs(cx, "shutdown_grace_secs", s.shutdown_grace_secs);
    if !(1..=MAX_CONNECTIONS).contains(&s.max_connections) {
        cx.error(&key(&base, "max_connections"), format!("must be between 1 and {MAX_CONNECTIONS}"));
    }
    let metrics_token = s.metrics_token.as_deref().map(|t| {
        let at = key(&base, "metrics_token");
        let token = cx.expand(&at, t);
        // Messages never show the token.
        if token.chars().any(char::is_whitespace) {
            cx.error(&at, "must not contain whitespace");
        } else if token.chars().count() < 16 {
            cx.error(&at, "must be at least 16 characters long");
        }
        token
    });
    let tls = match (&s.tls_cert, &s.tls_key) {
        (None, None) => None,
        (Some(_), None) => {
            cx.error(&key(&base, "tls_cert"), "tls_cert needs tls_key");
            None
        }
        (None, Some(_)) => {
            cx.error(&key(&base, "tls_key"), "tls_key needs tls_cert");
            None
        }
        (Some(cert), Some(k)) => {
            let (cert_path, key_path) = (base_dir.join(cert), base_dir.join(k));
            let chain = match CertificateDer::pem_file_iter(&cert_path).and_then(|i| i.collect::<Result<Vec<_>, _>>()) {
                Ok(c) if c.is_empty() => {
                    cx.error(&key(&base, "tls_cert"), format!("no PEM certificate in {}", cert_path.display()));
                    None
                }
                Ok(c) => Some(c),
                Err(e) => {
                    cx.error(&key(&base, "tls_cert"), format!("cannot read {}: {e}", cert_path.display()));
                    None
                }
            };
            let private = match PrivateKeyDer::from_pem_file(&key_path) {
                Ok(k) => Some(k),
                Err(e) => {
                    cx.error(
                        &key(&base, "tls_key"),
                        format!("cannot read a PEM private key from {}: {e}", key_path.display()),
                    );
                    None
                }
            };
            match (chain, private) {
                (Some(chain), Some(private)) => {
                    let provider = Arc::new(rustls::crypto::ring::default_provider());
                    let built = rustls::ServerConfig::builder_with_provider(provider)
                        .with_safe_default_protocol_versions()
                        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private));
                    match built {
                        Ok(mut config) => {
                            config.alpn_protocols = vec![b"http/1.1".to_vec()];
                            Some(Arc::new(config))
                        }
                        Err(e) => {
                            cx.error(&key(&base, "tls_key"), format!("the key does not go with the certificate: {e}"));
                            None
                        }
                    }
                }
                _ => None,
            }
        }
    };
    ServerSettings {
        header_read_timeout,
        request_timeout,
        max_connections: s.max_connections.clamp(1, MAX_CONNECTIONS),
        shutdown_grace,
        metrics_token,
        tls,
    }
}

/// The open connections, oldest first: whether each is serving a request, and how to close it.
#[derive(Default)]
struct Connections {
    next: u64,
    open: BTreeMap<u64, (Arc<AtomicUsize>, CancellationToken)>,
}

impl Connections {
    /// Makes room for one more within `cap`: closes the oldest connection serving no request. False when every
    /// connection is serving one.
    fn make_room(&mut self, cap: usize) -> bool {
        if self.open.len() < cap {
            return true;
        }
        let idle = self.open.iter().find(|(_, (busy, _))| busy.load(Ordering::Acquire) == 0).map(|(id, _)| *id);
        match idle.and_then(|id| self.open.remove(&id)) {
            Some((_, close)) => {
                close.cancel();
                true
            }
            None => false,
        }
    }
}

/// Takes a connection out of the registry when its task ends.
struct Registered(Arc<Mutex<Connections>>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.0).open.remove(&self.1);
    }
}

fn lock(m: &Mutex<Connections>) -> std::sync::MutexGuard<'_, Connections> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts a request as being served until its response body has been sent (or dropped).
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn start(count: &Arc<AtomicUsize>) -> Busy {
        count.fetch_add(1, Ordering::AcqRel);
        Busy(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router as one connection's hyper service, counting the requests it is serving.
#[derive(Clone)]
struct Tracked {
    inner: TowerToHyperService<Router>,
    busy: Arc<AtomicUsize>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Tracked {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let busy = Busy::start(&self.busy);
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            // Busy until the body is sent: the guard lives in the body.
            Ok(response.map(|body| {
                axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
                    let _serving = &busy;
                    frame
                }))
            }))
        })
    }
}

/// Serves `router` on `listener` until `shutdown`, within `settings`' limits. Returns when every connection
/// has ended, or when the shutdown grace has passed.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    router: Router,
    settings: ServerSettings,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let connections = Arc::new(Mutex::new(Connections::default()));
    let acceptor = settings.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let (mut refused, mut evicted): (u64, u64) = (0, 0);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, a connection reset before it was accepted: not the end.
                    warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (busy, close, registered) = {
            let mut open = lock(&connections);
            let full = open.open.len() >= settings.max_connections;
            if !open.make_room(settings.max_connections) {
                refused += 1;
                if refused.is_power_of_two() {
                    warn!(
                        refused,
                        max = settings.max_connections,
                        "every connection is serving a request: closing new ones"
                    );
                }
                drop(stream);
                continue;
            }
            if full {
                evicted += 1;
                if evicted.is_power_of_two() {
                    warn!(
                        evicted,
                        max = settings.max_connections,
                        "at the connection cap: closing the oldest idle ones"
                    );
                }
            }
            let id = open.next;
            open.next += 1;
            let (busy, close) = (Arc::new(AtomicUsize::new(0)), CancellationToken::new());
            open.open.insert(id, (busy.clone(), close.clone()));
            (busy, close, Registered(connections.clone(), id))
        };
        let _ = stream.set_nodelay(true);
        let service = Tracked { inner: TowerToHyperService::new(router.clone()), busy };
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(settings.header_read_timeout).keep_alive(true);
        let watcher = graceful.watcher();
        let handshake = settings.header_read_timeout;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _registered = registered;
            let serve = async move {
                match acceptor {
                    None => watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await,
                    Some(acceptor) => match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => watcher.watch(http.serve_connection(TokioIo::new(tls), service)).await,
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            debug!(%peer, "TLS handshake timed out");
                            Ok(())
                        }
                    },
                }
            };
            tokio::select! {
                result = serve => if let Err(e) = result {
                    debug!(%peer, error = %e, "connection ended with an error");
                },
                // Made room for a newer connection: dropping the connection closes it.
                _ = close.cancelled() => debug!(%peer, "idle at the connection cap: closed"),
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(settings.shutdown_grace) => {
            info!(grace_secs = settings.shutdown_grace.as_secs(), "requests still in flight at the end of the shutdown grace: dropped");
        }
    }
    Ok(())
}

/// Binds `addr` and serves `router` on it (see [`serve_on`]).
pub async fn bind(
    addr: SocketAddr,
    router: Router,
    settings: ServerSettings,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((local, tokio::spawn(serve_on(listener, router, settings, shutdown))))
}
