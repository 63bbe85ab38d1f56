//! kill -9 of the daemon at 50 points on each database (SQLite and PostgreSQL): in the middle of the
//! inventory, findings and billing write transactions (the daemon paused there through `CLOUDWARDEN_PAUSE_AT`,
//! then killed) and at random moments of its first seconds. After a restart: no duplicate rows, no lost
//! resource, every run row closed (a killed process' runs are closed as abandoned once it has been silent for
//! 90 s), and the next cycles' results equal those of a clean run on a database that was never killed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use cloudwarden::store::{FindingFilter, RunOutcome, Store};
use common::process::start;
use common::Moto;

const KILLS: usize = 50;
const JOBS: [&str; 3] = ["inventory", "rules", "billing_files"];

/// A small deterministic generator, so a failing campaign can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What a run leaves in the store, compared between the killed database and the clean one.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// Live resources: ARN → (type, tags).
    resources: BTreeMap<String, (String, BTreeMap<String, String>)>,
    /// Open findings: (kind, rule, subject).
    findings: BTreeSet<(String, String, String)>,
    /// Billing files: URI → daily cost rows.
    billing: BTreeMap<String, i64>,
}

async fn outcome(store: &Store) -> Outcome {
    let all = store.resources().await.unwrap();
    let arns: BTreeSet<&str> = all.iter().map(|r| r.arn.as_str()).collect();
    assert_eq!(arns.len(), all.len(), "one row per resource");
    let resources =
        all.into_iter().filter(|r| r.gone_at.is_none()).map(|r| (r.arn, (r.resource_type, r.tags))).collect();
    let open = store.findings(FindingFilter { kind: None, include_resolved: false }).await.unwrap();
    let findings: BTreeSet<_> =
        open.iter().map(|f| (f.kind.as_str().to_string(), f.rule.clone(), f.subject.clone())).collect();
    assert_eq!(findings.len(), open.len(), "one open row per finding");
    let files = store.billing_files().await.unwrap();
    let billing: BTreeMap<String, i64> = files.iter().map(|f| (f.uri.clone(), f.cost_rows)).collect();
    assert_eq!(billing.len(), files.len(), "one row per billing file");
    // Every file's cost rows are there once: the stored rows sum to what the files say.
    let stored: i64 =
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM billing_costs").fetch_one(store.pool()).await.unwrap();
    assert_eq!(stored, billing.values().sum::<i64>(), "no billing cost row twice, none lost");
    Outcome { resources, findings, billing }
}

/// Waits until, in runs started at or after `since`, the inventory and the billing files job have succeeded,
/// and the rules have succeeded in a run started after the inventory's first success ended (so they read it).
async fn settled(store: &Store, daemon: &common::process::Running, since: chrono::DateTime<Utc>, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let ok = |runs: Vec<cloudwarden::store::RunRow>| -> Vec<cloudwarden::store::RunRow> {
            runs.into_iter().filter(|r| r.outcome == RunOutcome::Success && r.started_at >= since).collect()
        };
        let inventory = ok(store.runs("inventory", 100).await.unwrap());
        let billing = ok(store.runs("billing_files", 100).await.unwrap());
        let rules = ok(store.runs("rules", 100).await.unwrap());
        if let Some(read) = inventory.iter().filter_map(|r| r.ended_at).min() {
            if !billing.is_empty() && rules.iter().any(|r| r.started_at > read) {
                return;
            }
        }
        if Instant::now() >= deadline {
            let mut said = String::new();
            for job in JOBS {
                for r in store.runs(job, 5).await.unwrap() {
                    said.push_str(&format!("{job}: {} {:?} {:?}\n", r.started_at, r.outcome, r.error));
                }
            }
            panic!("the jobs did not all succeed within {secs}s; newest runs:\n{said}{}", daemon.log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The configuration with `[server] listen` on port 0.
fn any_port(text: &str) -> String {
    text.lines()
        .map(|l| if l.starts_with("listen = \"127.0.0.1:") { "listen = \"127.0.0.1:0\"" } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

struct Bed {
    moto: Moto,
    truth: common::Truth,
    billing: PathBuf,
    dir: tempfile::TempDir,
}

fn bed() -> Bed {
    common::aws_test_env();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let truth = moto.seed(0.1, dir.path());
    let billing = dir.path().join("billing");
    std::fs::create_dir(&billing).unwrap();
    let sample = common::repo_root().join("tests/data/focus/focus_sample_1000.csv");
    std::fs::copy(&sample, billing.join("a.csv")).unwrap();
    std::fs::copy(&sample, billing.join("b.csv")).unwrap();
    Bed { moto, truth, billing, dir }
}

impl Bed {
    fn config(&self, name: &str, db_url: &str) -> PathBuf {
        let text = format!(
            "{}\n[collectors.billing_files]\nsources = [\"{}/*.csv\"]\ninterval_secs = 1\n\n[rules]\nfiles = [\"{}/examples/rules/testbed/*.toml\"]\ninterval_secs = 1\n",
            self.truth.config(&self.moto.endpoint(), db_url, "interval_secs = 1"),
            self.billing.display(),
            common::repo_root().display()
        );
        // Any free port: the daemon is restarted 50 times, and a port chosen once could be taken meanwhile by
        // an outgoing connection of the other campaign.
        let text = any_port(&text);
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// The campaign on one database kind: a clean run on `clean_url`, 50 kills then a recovery on `killed_url`.
async fn campaign(bed: &Bed, clean_url: &str, killed_url: &str, seed: u64) {
    // The clean run: every job twice (the rules after an inventory), then a graceful stop.
    let clean_config = bed.config("clean", clean_url);
    let since = Utc::now();
    let daemon = start(&clean_config, None);
    let store = Store::connect(clean_url, 1).await.unwrap();
    settled(&store, &daemon, since, 120).await;
    daemon.stop();
    let clean = outcome(&store).await;
    store.close().await;
    assert!(!clean.resources.is_empty() && !clean.findings.is_empty() && clean.billing.len() == 2, "{clean:?}");

    // Fifty kills: in the middle of each write transaction, and at random moments of the first seconds.
    let config = bed.config("killed", killed_url);
    let mut rng = Rng(seed);
    let mut at = BTreeMap::<String, usize>::new();
    for i in 0..KILLS {
        let point = match i % 5 {
            0 => Some("inventory-write"),
            1 => Some("findings-write"),
            2 => Some("billing-write"),
            _ => None,
        };
        if point == Some("billing-write") {
            // A file the job has loaded is read again only when it changes.
            let b = bed.billing.join("b.csv");
            let text = std::fs::read(&b).unwrap();
            std::fs::write(&b, text).unwrap();
        }
        let daemon = start(&config, point);
        match point {
            Some(p) => {
                daemon.wait_for(&format!("paused at {p}"), 60);
                *at.entry(p.to_string()).or_default() += 1;
            }
            None => {
                let ms = 100 + rng.below(2400);
                std::thread::sleep(Duration::from_millis(ms));
                *at.entry("a random moment".to_string()).or_default() += 1;
            }
        }
        daemon.kill9();
    }
    eprintln!("{killed_url}: {KILLS} kills (seed {seed}): {at:?}");

    // Restarted: the next cycles succeed and equal the clean run's.
    let since = Utc::now();
    let daemon = start(&config, None);
    let store = Store::connect(killed_url, 1).await.unwrap();
    settled(&store, &daemon, since, 120).await;
    daemon.stop();
    let recovered = outcome(&store).await;
    assert_eq!(recovered, clean, "after {KILLS} kills the results differ from a clean run's");
    // Every run row is closed: the runs of the killed processes once they have been silent for 90 s.
    store.close_abandoned_runs(Utc::now() + chrono::Duration::seconds(91)).await.unwrap();
    for job in JOBS {
        let runs = store.runs(job, 10_000).await.unwrap();
        let open: Vec<_> = runs.iter().filter(|r| r.outcome == RunOutcome::Running).collect();
        assert!(open.is_empty(), "{job}: runs left open: {open:?}");
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_kills_on_sqlite_leave_what_a_clean_run_leaves() {
    let bed = bed();
    let clean = format!("sqlite://{}", bed.dir.path().join("clean.db").display());
    let killed = format!("sqlite://{}", bed.dir.path().join("killed.db").display());
    campaign(&bed, &clean, &killed, 0x5eed_0001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_kills_on_postgres_leave_what_a_clean_run_leaves() {
    let Some(base) = common::postgres_url() else { return };
    let clean = common::pg::TempDatabase::on(&base, "clean").await;
    let killed = common::pg::TempDatabase::on(&base, "killed").await;
    let bed = bed();
    campaign(&bed, &clean.url, &killed.url, 0x5eed_0002).await;
    clean.drop().await;
    killed.drop().await;
}
