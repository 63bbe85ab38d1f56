//! The HTTP server under careless and hostile clients, over real sockets on 127.0.0.1: the connection cap,
//! the header-read and request timeouts, the shutdown deadline, the `/metrics` token and TLS; and the
//! findings API paged while findings change between requests.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::{DateTime, Utc};
use cloudwarden::config::ApiToken;
use cloudwarden::runtime::Clock;
use cloudwarden::server::{app, serve, with_request_timeout, AppState, ServerSettings};
use cloudwarden::store::Store;
use http_body_util::BodyExt;
use rules::finding::{Finding, FindingKind};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const TOKEN: &str = "metrics-token-0123456789";

fn state() -> AppState {
    let state = AppState::default().with_metrics_token(Some(TOKEN.into()));
    state.set_metrics(cloudwarden::metrics::Rendered::of("# TYPE x gauge\nx 1\n# EOF\n".into()));
    state.set_ready();
    state
}

/// Sends `request` on a new connection and reads until the server closes it or `wait` passes.
async fn exchange(addr: std::net::SocketAddr, request: &str, wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the server closed `s` (a read of 0 bytes, or a reset) within `wait`.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 256];
    matches!(tokio::time::timeout(wait, s.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
}

fn get(path: &str, token: Option<&str>) -> String {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_timeouts_and_the_connection_cap() {
    let settings = ServerSettings {
        header_read_timeout: Duration::from_secs(1),
        max_connections: 3,
        shutdown_grace: Duration::from_secs(1),
        ..ServerSettings::default()
    };
    let shutdown = CancellationToken::new();
    let (addr, server) = serve("127.0.0.1:0".parse().unwrap(), state(), settings, shutdown.clone()).await.unwrap();
    let wait = Duration::from_secs(5);

    // /metrics and /status need the token; the probes do not.
    let answer = exchange(addr, &get("/metrics", None), wait).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("www-authenticate: Bearer"), "{answer}");
    let answer = exchange(addr, &get("/metrics", Some("not-the-token-0123456789")), wait).await;
    assert!(answer.starts_with("HTTP/1.1 401") && !answer.contains(TOKEN), "{answer}");
    let answer = exchange(addr, &get("/metrics", Some(TOKEN)), wait).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("x 1\n# EOF\n"), "{answer}");
    assert!(exchange(addr, &get("/status", None), wait).await.starts_with("HTTP/1.1 401"));
    assert!(exchange(addr, &get("/status", Some(TOKEN)), wait).await.starts_with("HTTP/1.1 200"));
    assert!(exchange(addr, &get("/healthz", None), wait).await.starts_with("HTTP/1.1 200"));
    assert!(exchange(addr, &get("/readyz", None), wait).await.starts_with("HTTP/1.1 200"));

    // A client that never finishes its headers is disconnected after the header-read timeout.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
    assert!(closed_within(&mut slow, Duration::from_secs(5)).await, "a slow client is disconnected");
    // So is one that sends nothing at all.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(5)).await, "an idle client is disconnected");

    // Three idle connections fill the cap: a fourth takes the place of the oldest, which is closed, and is
    // answered.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = exchange(addr, &get("/healthz", None), Duration::from_millis(900)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "at the cap, a new request is answered: {answer:?}");
    assert!(closed_within(&mut held[0], Duration::from_millis(500)).await, "the oldest idle one made room");
    drop(held);

    // Three connections each receiving a large body they do not read are serving requests: a fourth is closed
    // at once, without an answer, and none of the three is cut off.
    let big = AppState::default();
    big.set_metrics(cloudwarden::metrics::Rendered::of(format!("# TYPE x gauge\n{}# EOF\n", "x 1\n".repeat(4 << 20))));
    let settings = ServerSettings { max_connections: 3, ..ServerSettings::default() };
    let (big_addr, big_server) = serve("127.0.0.1:0".parse().unwrap(), big, settings, shutdown.clone()).await.unwrap();
    let mut readers = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(big_addr).await.unwrap();
        s.write_all(get("/metrics", None).as_bytes()).await.unwrap();
        readers.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut over = TcpStream::connect(big_addr).await.unwrap();
    let _ = over.write_all(get("/healthz", None).as_bytes()).await;
    assert!(closed_within(&mut over, Duration::from_millis(900)).await, "over the cap: closed before the timeout");
    for s in &mut readers {
        let mut first = [0u8; 12];
        s.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
    }
    drop(readers);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(exchange(big_addr, &get("/healthz", None), wait).await.starts_with("HTTP/1.1 200"));

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(5), big_server).await.unwrap().unwrap().unwrap();
}

/// The file descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Raises this process' soft limit on open files to its hard limit (the test holds thousands of sockets).
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// 2,000 hostile clients at once, half of them idle and half sending their headers a byte at a time
/// (slowloris), against a server capped at 64 connections: every scrape of `/metrics` meanwhile is answered
/// within a second, the attackers are closed as scrapes need their places, and the server never holds more
/// than its cap of sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_and_slow_clients_never_lock_out_a_scrape() {
    const ATTACKERS: usize = 2000;
    const CAP: usize = 64;
    let limit = raise_fd_limit();
    assert!(limit >= 2 * ATTACKERS as u64 + 256, "the test needs about 4,300 open files; the hard limit is {limit}");
    let settings = ServerSettings { max_connections: CAP, ..ServerSettings::default() };
    let shutdown = CancellationToken::new();
    let (addr, server) = serve("127.0.0.1:0".parse().unwrap(), state(), settings, shutdown.clone()).await.unwrap();
    let baseline = open_fds();

    let mut attackers = Vec::with_capacity(ATTACKERS);
    for i in 0..ATTACKERS {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 1 {
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await;
        }
        attackers.push(s);
    }
    // The slow half goes on dripping a byte of its header every 200 ms.
    let (slow, idle): (Vec<_>, Vec<_>) = attackers.into_iter().enumerate().partition(|(i, _)| i % 2 == 1);
    let mut slow: Vec<TcpStream> = slow.into_iter().map(|(_, s)| s).collect();
    let mut idle: Vec<TcpStream> = idle.into_iter().map(|(_, s)| s).collect();
    let stop = CancellationToken::new();
    let drip = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                for s in &mut slow {
                    let _ = s.write_all(b"a").await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            slow
        })
    };

    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = std::time::Instant::now();
        let answer = exchange(addr, &get("/metrics", Some(TOKEN)), Duration::from_secs(5)).await;
        let took = t.elapsed();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("x 1\n# EOF\n"), "{answer:?}");
        assert!(took < Duration::from_secs(1), "a scrape took {took:?} under 2,000 hostile connections");
        slowest = slowest.max(took);
        // The server's sockets: the process' descriptors less the attackers' own and this scrape's.
        let server_side = open_fds().saturating_sub(baseline + ATTACKERS);
        assert!(server_side <= CAP + 8, "{server_side} server sockets for a cap of {CAP}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("slowest scrape under {ATTACKERS} hostile connections: {slowest:?}");
    stop.cancel();
    let slow = drip.await.unwrap();

    // Most attackers were closed by the server (a read sees the end), the rest still hold their places.
    let mut closed = 0;
    idle.extend(slow);
    for s in &mut idle {
        if closed_within(s, Duration::from_millis(1)).await {
            closed += 1;
        }
    }
    assert!(closed >= ATTACKERS - CAP, "only {closed} of {ATTACKERS} hostile connections were closed");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), server).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn a_slow_request_is_answered_503_and_shutdown_does_not_wait_for_it_for_ever() {
    let slow = axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "done"
        }),
    );
    let router = with_request_timeout(slow.clone(), Duration::from_millis(200));
    let res = router.oneshot(Request::get("/slow").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"error":"the request took too long"}"#);

    // A request in flight at shutdown gets the grace, then the server stops anyway.
    let settings = ServerSettings { shutdown_grace: Duration::from_millis(500), ..ServerSettings::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(cloudwarden::server::listen::serve_on(listener, slow, settings, shutdown.clone()));
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(get("/slow", None).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the grace bounds the shutdown")
        .unwrap()
        .unwrap();
    // The listener is gone.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_from_the_configuration() {
    let certs = common::channels::certs();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.pem"), &certs.cert_pem).unwrap();
    std::fs::write(dir.path().join("server.key"), &certs.key_pem).unwrap();
    std::fs::write(
        dir.path().join("cw.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"server.pem\"\ntls_key = \"server.key\"\nmetrics_token = \"{TOKEN}\"\n"
        ),
    )
    .unwrap();
    let config = cloudwarden::config::load(&dir.path().join("cw.toml")).unwrap();
    assert!(config.server.tls.is_some());
    assert!(!format!("{:?}", config.server).contains(TOKEN), "Debug never shows the token");
    let shutdown = CancellationToken::new();
    let state = state();
    let (addr, server) = serve(config.listen, state, config.server.clone(), shutdown.clone()).await.unwrap();

    // A client trusting the CA gets /metrics over TLS.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(certs.ca_der.clone())).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(get("/metrics", Some(TOKEN)).as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("x 1"), "{answer}");

    // Plain HTTP on the TLS port gets no answer.
    let answer = exchange(addr, &get("/healthz", None), Duration::from_secs(5)).await;
    assert!(!answer.contains("200"), "{answer}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
}

fn finding(kind: FindingKind, i: usize) -> Finding {
    common::volume_finding(kind, &format!("{i:05}"))
}

async fn page(state: &AppState, uri: &str) -> (StatusCode, Option<String>, Value) {
    let req = Request::get(uri).header(header::AUTHORIZATION, "Bearer reader-token-0123456789");
    let res = app(state.clone()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let link = res.headers().get(header::LINK).map(|v| v.to_str().unwrap().to_string());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, link, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn findings_are_paged_without_duplicates_or_gaps_while_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("cw.db").display()), 2).await.unwrap();
    let t: DateTime<Utc> = "2026-12-01T08:00:00Z".parse().unwrap();
    let kinds = [FindingKind::Tagging, FindingKind::Cleanup];
    // 60 tagging and 40 cleanup findings.
    let mut produced: Vec<Finding> = (0..60).map(|i| finding(FindingKind::Tagging, i)).collect();
    produced.extend((0..40).map(|i| finding(FindingKind::Cleanup, i)));
    store.record_findings(&kinds, &produced, t).await.unwrap();
    let throughout: BTreeSet<String> = produced
        .iter()
        .filter(|f| f.kind == FindingKind::Tagging && !f.subject.ends_with('7'))
        .map(|f| f.subject.to_string())
        .collect();
    let tokens = vec![ApiToken::reader("reader", "reader-token-0123456789")];
    let state = AppState::default().with_api(store.clone(), tokens, Clock::manual(t));

    // Walk the tagging findings 7 at a time; between pages, findings ending in 7 resolve and new ones open.
    let mut seen: Vec<String> = Vec::new();
    let mut ids: Vec<i64> = Vec::new();
    let mut uri = "/api/v1/findings?kind=tagging&limit=7".to_string();
    let mut pages = 0;
    loop {
        let (status, link, body) = page(&state, &uri).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let list = body["findings"].as_array().unwrap();
        assert!(list.len() <= 7);
        for f in list {
            assert_eq!(f["kind"], "tagging");
            seen.push(f["subject"].as_str().unwrap().to_string());
            ids.push(f["id"].as_i64().unwrap());
        }
        pages += 1;
        let next = body["next_cursor"].as_str().map(str::to_string);
        match (&next, &link) {
            (Some(c), Some(l)) => {
                assert_eq!(l, &format!("</api/v1/findings?kind=tagging&limit=7&cursor={c}>; rel=\"next\""))
            }
            (None, None) => break,
            other => panic!("next_cursor and Link disagree: {other:?}"),
        }
        uri = format!("/api/v1/findings?kind=tagging&limit=7&cursor={}", next.unwrap());
        // The next evaluation: a churn of new findings and resolutions.
        let now = t + chrono::Duration::minutes(pages);
        let mut again: Vec<Finding> =
            produced.iter().filter(|f| f.kind == FindingKind::Cleanup || !f.subject.ends_with('7')).cloned().collect();
        again.extend((0..3).map(|i| finding(FindingKind::Tagging, 1000 + pages as usize * 10 + i)));
        produced = again.clone();
        store.record_findings(&kinds, &again, now).await.unwrap();
    }
    assert!(pages > 8, "{pages} pages");
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no finding twice");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "id order");
    let missing: Vec<&String> = throughout.iter().filter(|s| !unique.contains(s)).collect();
    assert!(missing.is_empty(), "every finding open throughout is listed: {missing:?}");

    // Bad paging parameters are refused, saying why.
    for (uri, want) in [
        ("/api/v1/findings?limit=0", "limit must be between 1 and 5000"),
        ("/api/v1/findings?limit=5001", "limit must be between 1 and 5000"),
        ("/api/v1/findings?cursor=abc", "invalid cursor"),
        ("/api/v1/findings?limit=x", "invalid query"),
    ] {
        let (status, _, body) = page(&state, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(body["error"].as_str().unwrap().starts_with(want), "{uri}: {body}");
    }
    // The default page is 500, and the last page has no Link.
    let (_, link, body) = page(&state, "/api/v1/findings?include_resolved=true").await;
    assert!(link.is_none() && body["next_cursor"].is_null());
    assert!(body["findings"].as_array().unwrap().len() > 100);
}
