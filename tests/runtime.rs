//! The job runtime on tokio's paused clock: schedules, supervision of a job that panics, `/status`, the panic
//! counter and the run rows in a real SQLite database, and a restart that neither repeats nor misses a
//! scheduled run. Each test takes milliseconds although it covers hours of schedule: time moves only when the
//! test moves it, to the next run the job's status announces.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use chrono::{DateTime, Utc};
use cloudwarden::config::{Config, Schedule};
use cloudwarden::daemon::Daemon;
use cloudwarden::jobs::{Job, JobContext, JobOutput, Registration, Render};
use cloudwarden::metrics::{labels, Exposition};
use cloudwarden::runtime::Clock;
use cloudwarden::server::{app, AppState};
use cloudwarden::store::{RunOutcome, Store};
use collector::AwsContext;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A job that panics on its first `panics` runs, then succeeds, publishing how many runs it has seen.
struct Flaky {
    panics: u32,
    runs: Arc<AtomicU32>,
}

struct Seen(u32);

impl Render for Seen {
    fn render(&self, out: &mut Exposition) {
        let g = prometheus_client::metrics::family::Family::<Vec<(String, String)>, Gauge>::default();
        g.get_or_create(&labels(&[("job", "flaky")])).set(i64::from(self.0));
        out.cloudwarden().register("test_runs_seen", "Runs the test job has seen", g);
    }
}

impl Job for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }

    fn run<'a>(&'a mut self, _ctx: &'a JobContext) -> BoxFuture<'a, JobOutput> {
        Box::pin(async move {
            let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= self.panics {
                panic!("flaky run {n} broke");
            }
            JobOutput::new(RunOutcome::Success, u64::from(n)).publish(Seen(n))
        })
    }
}

fn config(db: &str) -> Config {
    let text = format!(
        "[database]\nurl = \"sqlite://{db}\"\ncreate_if_missing = true\nmax_connections = 1\n[aws]\nendpoint_url = \"http://127.0.0.1:9\"\n"
    );
    cloudwarden::config::parse("test.toml", &text, &|_| None).expect("valid configuration")
}

fn t0() -> DateTime<Utc> {
    "2026-12-07T10:00:00Z".parse().unwrap()
}

/// A daemon whose only job is `job`, every 5 minutes, on tokio's clock reading `start` now.
async fn daemon(db: &str, job: Flaky, start: DateTime<Utc>) -> Daemon {
    let config = config(db);
    let store = Store::connect(&config.database.url, 1).await.unwrap();
    let aws = AwsContext::new(&config.aws).await;
    let every5 = Schedule::Every(Duration::from_secs(300));
    let register = move |_: &Config| vec![Registration::new(every5, job)];
    Daemon::assemble(config, store, aws, AppState::default(), register, Clock::tokio(start)).await.unwrap()
}

/// The next run the job's status announces.
fn next_run(d: &Daemon) -> DateTime<Utc> {
    d.runtime.status()[0].next_run.expect("a next run")
}

/// Moves the clock to the job's next run and waits until `n` runs have finished since start.
async fn run_until(d: &Daemon, finished: &mut tokio::sync::watch::Receiver<u64>, n: u64) {
    while *finished.borrow_and_update() < n {
        // Before its first run a job on a fresh database has no next run: it runs at once.
        if let Some(t) = d.runtime.status()[0].next_run {
            common::advance_to(d.runtime.clock(), t).await;
        }
        finished.changed().await.unwrap();
    }
}

async fn get(state: &AppState, path: &str) -> (u16, String) {
    let res = app(state.clone()).oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    (status, String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_job_that_panics_twice_is_recorded_counted_retried_with_backoff_and_recovers() {
    let _hold = common::hold_time();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cw.db").display().to_string();
    let runs = Arc::new(AtomicU32::new(0));
    let d = daemon(&db, Flaky { panics: 2, runs: runs.clone() }, t0()).await;
    let mut finished = d.runtime.finished_runs();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(d.runtime.clone().run(shutdown.clone()));

    // Two panics: each a failed run row with its reason, counted, and the job scheduled again.
    finished.wait_for(|n| *n >= 1).await.unwrap();
    // Retried after 10 s of backoff, not after the 5-minute interval.
    assert_eq!(next_run(&d), t0() + chrono::Duration::seconds(10));
    run_until(&d, &mut finished, 2).await;
    let rows = d.store.runs("flaky", 10).await.unwrap();
    let mut rows: Vec<_> = rows.into_iter().map(|r| (r.started_at, r.outcome, r.error)).collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            (t0(), RunOutcome::Failed, Some("panic: flaky run 1 broke".to_string())),
            // Retried after 10 s of backoff, not after the 5-minute interval.
            (t0() + chrono::Duration::seconds(10), RunOutcome::Failed, Some("panic: flaky run 2 broke".to_string())),
        ]
    );
    let metrics = d.state.metrics();
    assert!(metrics.contains("cloudwarden_job_panics_total{collector=\"flaky\"} 2\n"), "{metrics}");
    assert!(metrics.contains("cloudwarden_collection_runs_total{collector=\"flaky\",outcome=\"failed\"} 2\n"));
    let (code, status) = get(&d.state, "/status").await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let job = &status["jobs"][0];
    assert_eq!(job["name"], "flaky");
    assert_eq!(job["last_outcome"], "failed");
    assert_eq!(job["last_reason"], "panic: flaky run 2 broke");
    assert_eq!(job["panics"], 2);
    assert_eq!(job["consecutive_failures"], 2);
    assert!(job["last_success"].is_null());
    // The second retry waits twice as long: 20 s after the second failure.
    let next: DateTime<Utc> = job["next_run"].as_str().unwrap().parse().unwrap();
    assert_eq!(next, t0() + chrono::Duration::seconds(30));
    // A failing job does not take the daemon out of Prometheus' targets... it was never ready, though:
    // nothing has succeeded yet.
    assert_eq!(get(&d.state, "/readyz").await.0, 503);

    // The third run succeeds; the schedule goes back to every 5 minutes.
    run_until(&d, &mut finished, 3).await;
    assert_eq!(next_run(&d), t0() + chrono::Duration::seconds(330));
    run_until(&d, &mut finished, 4).await;
    let rows = d.store.runs("flaky", 10).await.unwrap();
    let mut rows: Vec<_> = rows.into_iter().map(|r| (r.started_at, r.outcome)).collect();
    rows.sort();
    assert_eq!(
        rows[2..],
        [
            (t0() + chrono::Duration::seconds(30), RunOutcome::Success),
            (t0() + chrono::Duration::seconds(330), RunOutcome::Success),
        ]
    );
    let metrics = d.state.metrics();
    assert!(metrics.contains("cloudwarden_job_panics_total{collector=\"flaky\"} 2\n"), "{metrics}");
    assert!(metrics.contains("cloudwarden_test_runs_seen{job=\"flaky\"} 4\n"), "{metrics}");
    let status: serde_json::Value = serde_json::from_str(&get(&d.state, "/status").await.1).unwrap();
    assert_eq!(status["jobs"][0]["last_outcome"], "success");
    assert_eq!(status["jobs"][0]["consecutive_failures"], 0);
    assert_eq!(status["ready"], true);
    assert_eq!(get(&d.state, "/readyz").await.0, 200);

    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_restart_repeats_no_run_and_misses_none() {
    let _hold = common::hold_time();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cw.db").display().to_string();
    let runs = Arc::new(AtomicU32::new(0));

    // First life: runs at t0 and t0 + 5 min, stopped at t0 + 6 min.
    let d = daemon(&db, Flaky { panics: 0, runs: runs.clone() }, t0()).await;
    let mut finished = d.runtime.finished_runs();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(d.runtime.clone().run(shutdown.clone()));
    run_until(&d, &mut finished, 2).await;
    tokio::time::advance(Duration::from_secs(60)).await;
    shutdown.cancel();
    task.await.unwrap();
    d.store.close().await;

    // Restarted at t0 + 7 min: the next run is the one due at t0 + 10 min, not an immediate repeat.
    let d = daemon(&db, Flaky { panics: 0, runs: runs.clone() }, t0() + chrono::Duration::minutes(7)).await;
    // What the last life published is served before any run: the daemon is ready at once.
    assert_eq!(get(&d.state, "/readyz").await.0, 200);
    let mut finished = d.runtime.finished_runs();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(d.runtime.clone().run(shutdown.clone()));
    // Nothing runs before the clock reaches t0 + 10 min.
    wait_until_scheduled(&d).await;
    assert_eq!(next_run(&d), t0() + chrono::Duration::minutes(10));
    assert_eq!(*finished.borrow(), 0);
    run_until(&d, &mut finished, 1).await;
    shutdown.cancel();
    task.await.unwrap();
    d.store.close().await;
    let starts: Vec<_> = {
        let store = Store::connect(&format!("sqlite://{db}"), 1).await.unwrap();
        let mut s: Vec<_> = store.runs("flaky", 10).await.unwrap().into_iter().map(|r| r.started_at).collect();
        s.sort();
        s
    };
    assert_eq!(starts, [t0(), t0() + chrono::Duration::minutes(5), t0() + chrono::Duration::minutes(10)]);

    // Restarted at t0 + 1 h: the runs due while it was down are not lost; one catches up at once.
    let d = daemon(&db, Flaky { panics: 0, runs }, t0() + chrono::Duration::hours(1)).await;
    let mut finished = d.runtime.finished_runs();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(d.runtime.clone().run(shutdown.clone()));
    finished.wait_for(|n| *n >= 1).await.unwrap();
    shutdown.cancel();
    task.await.unwrap();
    let rows = d.store.runs("flaky", 10).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.started_at).max(), Some(t0() + chrono::Duration::hours(1)));
}

/// A run the process died in did not happen: after a restart the job runs at once (its scheduled time has
/// come), not an interval after the dead run started.
#[tokio::test(start_paused = true)]
async fn a_run_the_process_died_in_is_run_again_at_the_restart() {
    let _hold = common::hold_time();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cw.db").display().to_string();
    let runs = Arc::new(AtomicU32::new(0));
    // A finished run at t0, and one begun at t0 + 5 min by a process that died in it.
    let store = Store::connect(&format!("sqlite://{db}"), 1).await.unwrap();
    let done = store.begin_run("flaky", t0()).await.unwrap();
    store.finish_run(done, t0(), RunOutcome::Success, 0, 1, None).await.unwrap();
    store.begin_run("flaky", t0() + chrono::Duration::minutes(5)).await.unwrap();
    store.close().await;

    // Restarted at t0 + 7 min (the dead process has not beaten for two minutes): the dead run is closed as
    // failed, and the job runs at once.
    let start = t0() + chrono::Duration::minutes(7);
    let store = Store::connect(&format!("sqlite://{db}"), 1).await.unwrap();
    assert_eq!(store.close_abandoned_runs(start).await.unwrap(), 1);
    store.close().await;
    let d = daemon(&db, Flaky { panics: 0, runs }, start).await;
    let mut finished = d.runtime.finished_runs();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(d.runtime.clone().run(shutdown.clone()));
    // The clock stands still: due now, not at t0 + 10 min.
    wait_until_scheduled(&d).await;
    let next = next_run(&d);
    // Due now, or, if that run has already finished, five minutes after it; never at t0 + 10 min.
    assert!(next == start || next == start + chrono::Duration::minutes(5), "the job is not run at the restart: {next}");
    finished.wait_for(|n| *n >= 1).await.unwrap();
    shutdown.cancel();
    task.await.unwrap();
    let rows = d.store.runs("flaky", 10).await.unwrap();
    let started: Vec<_> = rows.iter().filter(|r| r.outcome == RunOutcome::Success).map(|r| r.started_at).collect();
    assert!(started.contains(&start), "not t0 + 10 min: the run at t0 + 5 min never finished: {rows:?}");
}

/// Waits until the schedule loop has announced its first next run (it reads the last run row first).
async fn wait_until_scheduled(d: &Daemon) {
    while d.runtime.status()[0].next_run.is_none() {
        tokio::task::yield_now().await;
    }
}

/// A job that stays in its run until released.
struct Stuck {
    started: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl Job for Stuck {
    fn name(&self) -> &'static str {
        "stuck"
    }

    fn run<'a>(&'a mut self, _ctx: &'a JobContext) -> BoxFuture<'a, JobOutput> {
        Box::pin(async move {
            self.started.notify_one();
            self.release.notified().await;
            JobOutput::new(RunOutcome::Success, 1)
        })
    }
}

/// A second process started against the database of a live daemon (`collect --once`, a second instance)
/// leaves the live daemon's open run alone, however long it takes, because the daemon keeps it beating; the
/// run of a daemon that stopped beating is closed as abandoned, by the next process or the live one.
#[tokio::test(start_paused = true)]
async fn a_second_process_never_closes_a_live_daemons_run() {
    let _hold = common::hold_time();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cw.db").display().to_string();
    let (started, release) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    let config = config(&db);
    let store = Store::connect(&config.database.url, 2).await.unwrap();
    let aws = AwsContext::new(&config.aws).await;
    let job = Stuck { started: started.clone(), release: release.clone() };
    let register = move |_: &Config| vec![Registration::new(Schedule::Every(Duration::from_secs(300)), job)];
    let clock = Clock::tokio(t0());
    let live = Daemon::assemble(config, store, aws, AppState::default(), register, clock.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(live.runtime.clone().run(shutdown.clone()));
    started.notified().await;
    let open = || async {
        live.store.runs("stuck", 10).await.unwrap().into_iter().filter(|r| r.outcome == RunOutcome::Running).count()
    };
    assert_eq!(open().await, 1);

    // Ten minutes into the run, in 30-second steps: the live daemon beats all along.
    for _ in 0..20 {
        tokio::time::advance(Duration::from_secs(30)).await;
        let now = clock.now();
        while live.store.runs("stuck", 1).await.unwrap()[0].heartbeat != Some(now) {
            tokio::task::yield_now().await;
        }
    }
    // A second process starts now: the daemon's run is alive.
    let other = Store::connect(&format!("sqlite://{db}"), 1).await.unwrap();
    assert_eq!(other.close_abandoned_runs(clock.now()).await.unwrap(), 0, "a live run is never closed");
    assert_eq!(open().await, 1);

    // The daemon stops beating (its process is gone, the run never ends): 90 s later the run is abandoned.
    shutdown.cancel();
    assert_eq!(other.close_abandoned_runs(clock.now() + chrono::Duration::seconds(60)).await.unwrap(), 0);
    assert_eq!(other.close_abandoned_runs(clock.now() + chrono::Duration::seconds(100)).await.unwrap(), 1);
    let rows = other.runs("stuck", 10).await.unwrap();
    assert_eq!(rows[0].outcome, RunOutcome::Failed);
    assert!(rows[0].error.as_deref().unwrap().starts_with("abandoned"), "{rows:?}");
    release.notify_one();
    task.await.unwrap();
}
