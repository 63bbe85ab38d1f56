//! The daemon as a whole against the moto test-bed: it survives AWS going silent in the middle of a cycle
//! (failed run row, previous metrics still served, recovery on the next cycle); the binary's `collect
//! --once --json` and `run` with a graceful SIGTERM shutdown.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use cloudwarden::config;
use cloudwarden::daemon::Daemon;
use cloudwarden::server::app;
use cloudwarden::store::{RunOutcome, Store};
use common::{eventually, Moto};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

async fn scrape(daemon: &Daemon) -> String {
    let res = app(daemon.state.clone()).oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// The inventory samples of a `/metrics` body, sorted (a family's series come in no fixed order).
fn resource_lines(body: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("cloudwarden_resources{") || l.starts_with("cloudwarden_untagged_resources{"))
        .collect();
    lines.sort_unstable();
    lines
}

async fn newest_run(store: &Store) -> Option<(i64, RunOutcome)> {
    store.runs("inventory", 1).await.unwrap().first().map(|r| (r.id, r.outcome))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_stopping_mid_cycle_fails_the_run_and_the_daemon_recovers() {
    common::aws_test_env();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let truth = moto.seed(0.1, dir.path());
    let db = format!("sqlite://{}", dir.path().join("cw.db").display());
    let text = truth.config(&moto.endpoint(), &db, "interval_secs = 1");
    let daemon = Daemon::new(config::parse("t.toml", &text, &|_| None).unwrap()).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(daemon.clone().run(shutdown.clone()));

    eventually(60, "the first successful cycle", || async { daemon.state.is_ready() }).await;
    let before = scrape(&daemon).await;
    let expected: i64 = truth.counts.iter().map(|c| c.total).sum();
    let served: i64 = before
        .lines()
        .filter(|l| l.starts_with("cloudwarden_resources{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(served, expected);

    // Freeze moto while a cycle is in flight: its calls time out.
    eventually(30, "a cycle in flight", || async {
        matches!(newest_run(&daemon.store).await, Some((_, RunOutcome::Running)))
    })
    .await;
    moto.pause();
    eventually(120, "a failed run", || async {
        daemon.store.runs("inventory", 5).await.unwrap().iter().any(|r| r.outcome == RunOutcome::Failed)
    })
    .await;
    let failed = daemon
        .store
        .runs("inventory", 50)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.outcome == RunOutcome::Failed)
        .unwrap();
    let failed_id = failed.id;
    assert!(failed.ended_at.is_some() && failed.error.as_deref().is_some_and(|e| !e.is_empty()), "{failed:?}");

    // The daemon still runs and still serves the last good inventory.
    assert!(!task.is_finished());
    let during = scrape(&daemon).await;
    assert_eq!(resource_lines(&during), resource_lines(&before));
    assert!(
        during.contains("cloudwarden_collection_runs_total{collector=\"inventory\",outcome=\"failed\"}"),
        "{during}"
    );
    assert!(during.contains("outcome=\"transport_error\""), "failed attempts are counted");

    // AWS comes back: the next cycle succeeds.
    moto.resume();
    eventually(120, "a successful run after the failure", || async {
        matches!(newest_run(&daemon.store).await, Some((id, RunOutcome::Success)) if id > failed_id)
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let runs = Store::connect(&db, 1).await.unwrap().runs("inventory", 1000).await.unwrap();
    assert!(runs.iter().all(|r| r.outcome != RunOutcome::Running), "shutdown leaves no run open");
}

/// On a fresh database the CloudWatch discovery job's first run waits for the inventory's first run (it
/// would find no resource before), and each run counts only its own AWS calls while the two jobs run at
/// the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_waits_for_the_first_inventory_and_runs_count_their_own_calls() {
    common::aws_test_env();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let truth = moto.seed(0.1, dir.path());
    let db = format!("sqlite://{}", dir.path().join("cw.db").display());
    let text = format!(
        "{}\n[collectors.cloudwatch]\ninterval_secs = 1\n\n[[collectors.cloudwatch.discovery]]\nnamespace = \"AWS/EC2\"\nresource_type = \"ec2:instance\"\ndimension = \"InstanceId\"\nmetrics = [\"CPUUtilization\"]\nstatistics = [\"Average\"]\nperiod_secs = 300\nlength_secs = 3600\ndelay_secs = 0\n",
        truth.config(&moto.endpoint(), &db, "interval_secs = 1")
    );
    let daemon = Daemon::new(config::parse("t.toml", &text, &|_| None).unwrap()).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(daemon.clone().run(shutdown.clone()));
    eventually(120, "three finished CloudWatch runs", || async {
        daemon.store.runs("cloudwatch", 10).await.unwrap().iter().filter(|r| r.ended_at.is_some()).count() >= 3
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();

    let store = Store::connect(&db, 1).await.unwrap();
    let inventory = store.runs("inventory", 1000).await.unwrap();
    let cloudwatch = store.runs("cloudwatch", 1000).await.unwrap();
    let first_inventory = inventory.iter().min_by_key(|r| r.id).unwrap();
    let first_cloudwatch = cloudwatch.iter().min_by_key(|r| r.id).unwrap();
    assert!(
        first_cloudwatch.started_at >= first_inventory.ended_at.unwrap(),
        "{first_cloudwatch:?} started before {first_inventory:?} ended"
    );
    assert!(first_cloudwatch.items > 0, "the first discovery found the inventory's instances: {first_cloudwatch:?}");
    // Every finished CloudWatch run made the same GetMetricData calls, however the inventory's calls fell.
    let calls: std::collections::BTreeSet<i64> =
        cloudwatch.iter().filter(|r| r.outcome == RunOutcome::Success).map(|r| r.api_calls).collect();
    assert_eq!(calls.len(), 1, "{cloudwatch:#?}");
    let inventory_calls =
        inventory.iter().filter(|r| r.outcome == RunOutcome::Success).map(|r| r.api_calls).min().unwrap();
    assert!(calls.iter().all(|c| *c > 0 && *c < inventory_calls), "{calls:?} vs {inventory_calls}");
}

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, buf))
}

#[test]
fn the_binary_collects_once_and_shuts_down_gracefully() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let truth = moto.seed(0.1, dir.path());
    let db = format!("sqlite://{}", dir.path().join("cw.db").display());
    let text = truth.config(&moto.endpoint(), &db, "interval_secs = 3600");
    let cfg = dir.path().join("cw.toml");
    std::fs::write(&cfg, &text).unwrap();
    let bin = env!("CARGO_BIN_EXE_cloudwarden");
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
    ];

    let version = Command::new(bin).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("cloudwarden {}", env!("CARGO_PKG_VERSION")));

    let out = Command::new(bin).args(["collect", "--once", "--json", "--config"]).arg(&cfg).envs(env).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summaries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let summary = &summaries[0];
    assert_eq!(summary["collector"], "inventory");
    assert_eq!(summary["outcome"], "success");
    assert_eq!(summary["items"].as_u64().unwrap() as usize, truth.resources.len());
    assert_eq!(summary["detail"]["kind"], "inventory");
    assert!(summary["api_calls"]["ec2:DescribeInstances"].as_u64().unwrap() >= 4);

    let human = Command::new(bin).args(["collect", "--once", "--config"]).arg(&cfg).envs(env).output().unwrap();
    let summary = String::from_utf8_lossy(&human.stdout);
    assert!(summary.starts_with("inventory run 2: success"), "{summary}");
    assert!(summary.contains("ec2:instance"), "{summary}");

    // The daemon itself, logging JSON this time, on a database of its own (on the one `collect` wrote, its first
    // inventory run would wait for the next scheduled time, an hour after the last run).
    let listen = text_listen(&text);
    let json_cfg = dir.path().join("cw-json.toml");
    let text = text.replace("cw.db", "cw-run.db");
    std::fs::write(&json_cfg, format!("[log]\nformat = \"json\"\n\n{text}")).unwrap();
    let mut child =
        Command::new(bin).args(["run", "--config"]).arg(&json_cfg).envs(env).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, _)) = http_get(&listen, "/readyz") {
            break;
        }
        assert!(Instant::now() < deadline, "daemon never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = http_get(&listen, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("application/openmetrics-text"), "{body}");
    assert!(body.contains("cloudwarden_resources{"), "{body}");
    assert_eq!(http_get(&listen, "/healthz").unwrap().0, 200);

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "daemon did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{err}");
    let events: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let messages: Vec<&str> = events.iter().filter_map(|e| e["message"].as_str()).collect();
    for want in ["run finished", "SIGTERM received", "stopped"] {
        assert!(messages.contains(&want), "{want:?} not in {messages:?}");
    }
    let cycle = events.iter().find(|e| e["message"] == "run finished" && e["collector"] == "inventory").unwrap();
    assert_eq!(cycle["collector"], "inventory");
    assert_eq!(cycle["outcome"], "success");
    assert_eq!(cycle["level"], "INFO");
}

fn text_listen(cfg: &str) -> String {
    cfg.lines().find_map(|l| l.strip_prefix("listen = \"")).unwrap().trim_end_matches('"').to_string()
}

/// Restarts of a daemon with the inventory, Terraform states and rules: their start-up runs write at the
/// same time (on a database that already has resources, none waits for the inventory), and none fails. On
/// SQLite a writer that read before writing used to fail at once with "database is locked" while another
/// held the write lock (the rules' findings against the Terraform job's states, most of the time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_with_terraform_and_rules_never_fail_a_run() {
    const RESTARTS: usize = 20;
    const JOBS: [&str; 3] = ["inventory", "terraform", "rules"];
    common::aws_test_env();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let truth = moto.seed(0.1, dir.path());
    let db = format!("sqlite://{}", dir.path().join("cw.db").display());
    let root = common::repo_root();
    let text = format!(
        "{}\n[collectors.terraform]\nsources = [\"{}\"]\ninterval_secs = 1\n\n[rules]\nfiles = [\"{}\", \"{}\"]\ninterval_secs = 1\n",
        truth.config(&moto.endpoint(), &db, "interval_secs = 1"),
        root.join("tests/fixtures/tfstate/*/app.tfstate").display(),
        root.join("examples/rules/tagging.toml").display(),
        root.join("examples/rules/drift.toml").display(),
    );
    let store = Store::connect(&db, 1).await.unwrap();
    // The newest run id of each job, once every job's newest run has ended.
    let newest_ended = || async {
        let mut ids = Vec::new();
        for job in JOBS {
            match store.runs(job, 1).await.unwrap().first() {
                Some(r) if r.ended_at.is_some() => ids.push(r.id),
                _ => return None,
            }
        }
        Some(ids)
    };
    let mut before: Vec<i64> = vec![0; JOBS.len()];
    // The first start fills the database; every later one is a restart. Every job runs each second, so each
    // restart finds all of them due at once (the runtime runs a job due while the daemon was down at start),
    // and their writes meet.
    for start in 0..=RESTARTS {
        let daemon = Daemon::new(config::parse("t.toml", &text, &|_| None).unwrap()).await.unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(daemon.run(shutdown.clone()));
        let newer =
            |ids: &Option<Vec<i64>>| ids.as_ref().is_some_and(|ids| ids.iter().zip(&before).all(|(a, b)| a > b));
        eventually(120, &format!("the start-up runs of start {start}"), || async { newer(&newest_ended().await) })
            .await;
        shutdown.cancel();
        task.await.unwrap().unwrap();
        before = newest_ended().await.unwrap();
    }
    for job in JOBS {
        let runs = store.runs(job, 1000).await.unwrap();
        assert!(runs.len() > RESTARTS, "{job}: {runs:#?}");
        // A run under way at a shutdown ends cancelled; none may fail.
        let failed: Vec<_> =
            runs.iter().filter(|r| matches!(r.outcome, RunOutcome::Failed | RunOutcome::Partial)).collect();
        assert!(failed.is_empty(), "{job}: {failed:#?}");
    }
}
