//! Cleanup survives `kill -9` at its two dangerous points: between the action row and the AWS call, and
//! between the call and its verification. The daemon binary is stopped there (`CLOUDWARDEN_PAUSE_AT`)
//! and killed; after each restart no action happens twice and the plan converges to `done`.

mod common;

use std::process::Command;
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, DurationRound, Utc};
use cloudwarden::daemon::Daemon;
use cloudwarden::runtime::Clock;
use cloudwarden::store::{Audit, PlanChange, PlanFilter, PlanState, Store};
use common::process::start;
use common::{aws_test_env, free_port, repo_root, Moto};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const RULES: &str = "[cleanup.unattached_volume]\nmin_days = 0\n\n[cleanup.untagged]\nmin_days = 0\n";

fn bed(moto: &Moto, args: &[&str]) -> Value {
    let root = repo_root();
    let out = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/fixtures/cleanup_bed.py"))
        .args(["--endpoint", &moto.endpoint()])
        .args(args)
        .output()
        .expect("run cleanup_bed.py");
    assert!(out.status.success(), "cleanup_bed.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn snapshots_of(state: &Value, volume: &str) -> usize {
    state["snapshots"].as_object().unwrap().values().filter(|s| s["volume"] == volume).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_row_call_and_verification_never_acts_twice() {
    aws_test_env();
    let moto = Moto::start();
    let ids = bed(&moto, &["plant"]);
    let volume = ids["volume_orphan"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[database]
url = "sqlite://{db}"
create_if_missing = true

[aws]
endpoint_url = "{endpoint}"
max_attempts = 2
call_timeout_secs = 5

[collectors.inventory]
regions = ["us-east-1"]
interval_secs = 3600

[rules]
files = ["{dir}/rules.toml"]
interval_secs = 3600

[cleanup]
mode = "auto"
allowed_accounts = ["123456789012"]
max_share = 1.0
interval_secs = 3600

[cleanup.notify]
fallback = "ops"

[cleanup.notify.contacts.ops]
webhook_url = "http://127.0.0.1:{hook}/hook"
"#,
        port = free_port(),
        db = dir.path().join("cw.db").display(),
        endpoint = moto.endpoint(),
        dir = dir.path().display(),
        hook = hook_port().await,
    );
    let path = dir.path().join("cw.toml");
    std::fs::write(&path, &text).unwrap();

    // Ten days ago, on an injected clock: planned, marked, notified, warned; due three days ago. Only the
    // volume's plan is kept, so it is the one the restarted daemon acts on.
    let config = cloudwarden::config::load(&path).unwrap();
    let t0 = (Utc::now() - Duration::days(10)).duration_trunc(Duration::minutes(1)).unwrap();
    let clock = Clock::manual(t0);
    let daemon = Daemon::with_clock(config, clock.clone()).await.unwrap();
    let cancel = CancellationToken::new();
    let run = |t| {
        clock.set(t);
        let daemon = daemon.clone();
        let cancel = cancel.clone();
        async move {
            for job in ["inventory", "rules", "cleanup"] {
                let r = daemon.run_job(job, t, &cancel).await;
                assert!(matches!(r.outcome, cloudwarden::store::RunOutcome::Success), "{job}: {:?}", r.error);
            }
        }
    };
    run(t0).await;
    run(t0 + Duration::minutes(5)).await;
    let plans = daemon.store.plans(&PlanFilter::active()).await.unwrap();
    let plan = plans.iter().find(|p| p.resource_id == volume).expect("the volume is planned").clone();
    for p in plans.iter().filter(|p| p.id != plan.id) {
        let audit = Audit::new("scheduler", "kept out of the crash test");
        assert!(daemon
            .store
            .transition(p.id, p.state, PlanState::Rejected, &PlanChange::default(), &audit, t0)
            .await
            .unwrap());
    }
    run(plan.due - Duration::hours(23)).await;
    let warned = daemon.store.plan(plan.id).await.unwrap().unwrap();
    assert!(warned.warned.is_some() && warned.state == PlanState::Notified, "{warned:?}");
    daemon.store.close().await;
    drop(daemon);

    // 1. Killed after the action row, before the call: nothing happened at AWS.
    let a = start(&path, Some("after-action-row"));
    a.wait_for("paused at after-action-row", 120);
    a.kill9();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("cw.db").display()), 1).await.unwrap();
    let p = store.plan(plan.id).await.unwrap().unwrap();
    assert_eq!((p.state, p.called), (PlanState::Acting, None), "{p:?}");
    let state = bed(&moto, &["state"]);
    assert!(state["volumes"].get(&volume).is_some(), "the volume is still there");
    assert_eq!(snapshots_of(&state, &volume), 0, "no snapshot taken yet");

    // 2. Restarted, killed after the call, before its verification: the call happened once.
    let b = start(&path, Some("after-call"));
    b.wait_for("paused at after-call", 120);
    b.kill9();
    let state = bed(&moto, &["state"]);
    assert!(state["volumes"].get(&volume).is_none(), "deleted by the second process");
    assert_eq!(snapshots_of(&state, &volume), 1);
    let p = store.plan(plan.id).await.unwrap().unwrap();
    assert_eq!(p.state, PlanState::Acting, "not verified yet: {p:?}");

    // 3. Restarted without a pause: verified from what AWS shows, no second call.
    let c = start(&path, None);
    let deadline = Instant::now() + StdDuration::from_secs(120);
    let p = loop {
        let p = store.plan(plan.id).await.unwrap().unwrap();
        if p.state == PlanState::Done || Instant::now() > deadline {
            break p;
        }
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    };
    c.kill9();
    assert_eq!(p.state, PlanState::Done, "{p:?}");
    let state = bed(&moto, &["state"]);
    assert_eq!(snapshots_of(&state, &volume), 1, "still exactly one snapshot");
    let audit = store.audit(Some(plan.id), None, 1000).await.unwrap();
    let to = |s: &str| audit.iter().filter(|r| r.to_state == s && r.from_state.as_deref() != Some(s)).count();
    assert_eq!((to("acting"), to("done")), (1, 1), "{audit:?}");
    store.close().await;
}

/// A webhook receiver that accepts every message (the notices of the first phase), on 127.0.0.1.
async fn hook_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    port
}
