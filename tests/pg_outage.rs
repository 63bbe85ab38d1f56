//! PostgreSQL stopped for 60 seconds under a running daemon (a server of the test's own, never the machine's
//! shared one): the jobs fail while it is down and recover by themselves when it is back, `/metrics` keeps
//! serving the last good data all along, and nothing is written twice.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use cloudwarden::config;
use cloudwarden::daemon::Daemon;
use cloudwarden::store::{RunOutcome, Store};
use common::pg::PrivatePostgres;
use common::Moto;
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

async fn scrape(daemon: &Daemon) -> (u16, String) {
    let res = cloudwarden::server::app(daemon.state.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
}

/// The inventory's series, in order (a rendering's order of series is not fixed).
fn resource_lines(metrics: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = metrics.lines().filter(|l| l.starts_with("cloudwarden_resources{")).collect();
    lines.sort_unstable();
    lines
}

fn status_of(daemon: &Daemon, job: &str) -> cloudwarden::runtime::JobStatus {
    daemon.runtime.status().into_iter().find(|s| s.name == job).expect("the job is registered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_for_a_minute_fails_the_jobs_which_recover_and_metrics_keep_serving() {
    let Some(pg) = PrivatePostgres::start() else { return };
    common::aws_test_env();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let truth = moto.seed(0.1, dir.path());
    let text = truth.config(&moto.endpoint(), &pg.url(), "interval_secs = 2");
    let daemon = Daemon::new(config::parse("t.toml", &text, &|_| None).unwrap()).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(daemon.clone().run(shutdown.clone()));

    let deadline = Instant::now() + Duration::from_secs(60);
    while !daemon.state.is_ready() {
        assert!(Instant::now() < deadline, "no successful cycle within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, before) = scrape(&daemon).await;
    let expected: i64 = truth.counts.iter().map(|c| c.total).sum();
    let served: i64 =
        resource_lines(&before).iter().map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap()).sum();
    assert_eq!(served, expected);
    let succeeded_before = status_of(&daemon, "inventory").last_success;

    // Down for 60 s: every scrape meanwhile is answered with the last good inventory.
    pg.stop();
    let down = Instant::now();
    let mut scrapes = 0;
    while down.elapsed() < Duration::from_secs(60) {
        let (code, body) = scrape(&daemon).await;
        assert_eq!(code, 200, "/metrics while the database is down");
        assert_eq!(resource_lines(&body), resource_lines(&before));
        assert!(!task.is_finished(), "the daemon keeps running");
        scrapes += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let during = status_of(&daemon, "inventory");
    assert_eq!(during.last_outcome, Some(RunOutcome::Failed), "{during:?}");
    // Each query waits up to the pool's 10 s for a connection before the run gives up.
    assert!(during.consecutive_failures >= 1, "runs were tried while it was down: {during:?}");
    assert!(during.last_reason.as_deref().is_some_and(|r| !r.is_empty()), "{during:?}");
    let (_, metrics) = scrape(&daemon).await;
    assert!(
        metrics.contains("cloudwarden_collection_runs_total{collector=\"inventory\",outcome=\"failed\"}"),
        "failed runs are counted"
    );
    eprintln!(
        "{scrapes} scrapes answered while PostgreSQL was down; inventory failed {} times",
        during.consecutive_failures
    );

    // Back: the jobs recover by themselves, with no restart.
    pg.resume();
    let back = Instant::now();
    loop {
        let now = status_of(&daemon, "inventory");
        if now.last_outcome == Some(RunOutcome::Success) && now.last_success > succeeded_before {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(60), "no recovery within 60 s: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("inventory recovered {:.1} s after PostgreSQL came back", back.elapsed().as_secs_f64());
    shutdown.cancel();
    task.await.unwrap().unwrap();

    // Nothing written twice: one row per resource, as many as the truth, all alive; every run row closed; no run
    // row for the runs that could not reach the database.
    let store = Store::connect(&pg.url(), 1).await.unwrap();
    let resources = store.resources().await.unwrap();
    let mut arns: Vec<&str> = resources.iter().map(|r| r.arn.as_str()).collect();
    arns.dedup();
    assert_eq!(arns.len(), resources.len());
    assert_eq!(resources.iter().filter(|r| r.gone_at.is_none()).count() as i64, expected);
    let runs = store.runs("inventory", 10_000).await.unwrap();
    assert!(runs.iter().all(|r| r.outcome != RunOutcome::Running), "every run row is closed");
    assert!(runs.iter().any(|r| r.outcome == RunOutcome::Success && r.started_at > succeeded_before.unwrap()));
    store.close().await;
}
