//! One AWS call path under faults: a proxy in front of moto throttles some requests, fails others with
//! HTTP 500 and delays more; the inventory cycle still completes with exactly the data of a clean run, and
//! every retried attempt is counted by outcome.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cloudwarden::config;
use cloudwarden::daemon::Daemon;
use cloudwarden::store::{RunOutcome, StoredResource};
use collector::CallOutcome;
use common::proxy::{Faults, FaultyProxy};
use common::Moto;
use tokio_util::sync::CancellationToken;

/// (ARN, type, name, tags) of a stored resource.
type Comparable = (String, String, Option<String>, BTreeMap<String, String>);

fn comparable(rs: Vec<StoredResource>) -> Vec<Comparable> {
    rs.into_iter().map(|r| (r.arn, r.resource_type, r.state, r.tags)).collect()
}

/// Attempts per (service, operation) with the given outcome.
fn by_op(daemon: &Daemon, outcome: CallOutcome) -> BTreeMap<(String, String), u64> {
    daemon
        .aws
        .stats
        .snapshot()
        .into_iter()
        .filter(|(k, _)| k.outcome == outcome)
        .map(|(k, n)| ((k.service, k.operation), n))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_errors_and_delays_change_nothing_but_the_retry_counts() {
    common::aws_test_env();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let truth = moto.seed(0.1, dir.path());

    let daemon_for = |endpoint: String, db: &str| {
        let text = truth
            .config(&endpoint, &format!("sqlite://{}", dir.path().join(db).display()), "page_size = 5")
            .replace("max_attempts = 2", "max_attempts = 3\ninitial_backoff_ms = 20\nmax_backoff_ms = 200");
        config::parse("t.toml", &text, &|_| None).unwrap()
    };

    let clean = Daemon::new(daemon_for(moto.endpoint(), "clean.db")).await.unwrap();
    let s = clean.run_job("inventory", chrono::Utc::now(), &CancellationToken::new()).await;
    assert_eq!(s.outcome, RunOutcome::Success);

    let proxy = FaultyProxy::start(
        &moto.endpoint(),
        Faults { throttle_every: 4, error_every: 7, delay_every: 5, delay: Duration::from_millis(150) },
    )
    .await;
    let faulty = Daemon::new(daemon_for(proxy.endpoint(), "faulty.db")).await.unwrap();
    let s = faulty.run_job("inventory", chrono::Utc::now(), &CancellationToken::new()).await;
    assert_eq!(s.outcome, RunOutcome::Success, "{:?}", s.failures);

    // Identical data.
    assert_eq!(comparable(faulty.store.resources().await.unwrap()), comparable(clean.store.resources().await.unwrap()));

    // Faults really happened, and every faulted attempt was retried and counted.
    let throttled = proxy.counts.throttled.load(Ordering::SeqCst);
    let errors = proxy.counts.errors.load(Ordering::SeqCst);
    assert!(throttled > 0 && errors > 0 && proxy.counts.delayed.load(Ordering::SeqCst) > 0);
    let counted = |o| by_op(&faulty, o).values().sum::<u64>();
    assert_eq!(counted(CallOutcome::Throttled), throttled);
    assert_eq!(counted(CallOutcome::ServerError), errors);
    // The successful attempts are exactly the calls of the clean run.
    assert_eq!(by_op(&faulty, CallOutcome::Success), by_op(&clean, CallOutcome::Success));
    let attempts: u64 = faulty.aws.stats.total();
    assert_eq!(attempts, proxy.counts.requests.load(Ordering::SeqCst));
}
