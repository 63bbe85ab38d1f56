//! Findings write benchmark: how long one evaluation's findings write holds SQLite's write lock.
//!
//! A fresh SQLite store (a temporary folder) gets `BENCH_FINDINGS` tagging findings (default 1,000,000), then
//! three more evaluations: the same findings again (nothing changed), then one with 1% changed (message and
//! details), 1% gone and 1% new, then the same again. During each write a probe connection (its own, with a
//! long busy timeout) writes a one-row table in a loop, each write its own `BEGIN IMMEDIATE` transaction, as
//! any other job's write would: the longest time a probe write waited is the longest time the findings write
//! held the lock against other writers. Prints, per evaluation, the wall time of `record_findings`, the
//! probe's longest wait, the number of probe writes that got through during the write, and the process' peak
//! resident memory. Run with `cargo bench --bench findings_write`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cloudwarden::store::Store;
use rules::finding::{Details, Finding, FindingKind, Severity};
use sqlx::{Connection, Executor};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn finding(i: usize, generation: u32) -> Finding {
    let account = format!("{:012}", 100_000_000_000u64 + (i % 50) as u64);
    Finding {
        kind: FindingKind::Tagging,
        rule: "required_tags".into(),
        subject: format!("arn:aws:ec2:eu-west-1:{account}:volume/vol-{i:017x}").into(),
        account_id: Some(account.into()),
        region: Some("eu-west-1".into()),
        resource_type: Some("ec2:volume".into()),
        severity: Severity::Warning,
        message: format!("missing tags: owner, cost-center (generation {generation})").into(),
        monthly_usd: Some(rust_decimal::Decimal::new(1234 + (i % 100) as i64, 2)),
        details: Details::Json(
            serde_json::json!({"missing": ["owner", "cost-center"], "invalid": [], "g": generation}),
        ),
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Writes the probe row in a loop until `stop`; returns (longest wait, writes).
async fn probe(url: String, stop: Arc<AtomicBool>) -> (Duration, u64) {
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    conn.execute("PRAGMA busy_timeout = 3600000").await.unwrap();
    let (mut longest, mut writes) = (Duration::ZERO, 0);
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        conn.execute("BEGIN IMMEDIATE").await.unwrap();
        conn.execute("UPDATE bench_probe SET n = n + 1").await.unwrap();
        conn.execute("COMMIT").await.unwrap();
        longest = longest.max(t.elapsed());
        writes += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (longest, writes)
}

fn main() {
    let n: usize = std::env::var("BENCH_FINDINGS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let rt = cloudwarden::memory::runtime().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let url = format!("sqlite://{}", path.display());
    rt.block_on(async {
        let store = Store::connect(&url, 2).await.unwrap();
        sqlx::query("CREATE TABLE bench_probe (n BIGINT NOT NULL)").execute(store.pool()).await.unwrap();
        sqlx::query("INSERT INTO bench_probe (n) VALUES (0)").execute(store.pool()).await.unwrap();
        let start: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let first: Vec<Finding> = (0..n).map(|i| finding(i, 0)).collect();
        // 1% changed (every 100th), 1% gone (every 100th + 1), 1% new (beyond n).
        let changed: Vec<Finding> = (0..n)
            .filter(|i| i % 100 != 1)
            .map(|i| finding(i, u32::from(i % 100 == 0)))
            .chain((n..n + n / 100).map(|i| finding(i, 0)))
            .collect();
        let evaluations: [(&str, &[Finding]); 4] = [
            ("first evaluation (all new)", &first),
            ("the same findings again", &first),
            ("1% changed, 1% gone, 1% new", &changed),
            ("the same findings again", &changed),
        ];
        println!("findings: {n}, SQLite in a temporary folder");
        for (round, (what, produced)) in evaluations.iter().enumerate() {
            let stop = Arc::new(AtomicBool::new(false));
            let prober = tokio::spawn(probe(format!("sqlite://{}", path.display()), stop.clone()));
            // Let the probe start writing.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let at = start + chrono::Duration::minutes(5 * round as i64);
            let t = Instant::now();
            let w = store.record_findings(&[FindingKind::Tagging], produced, at).await.unwrap();
            let secs = t.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            let (longest, writes) = prober.await.unwrap();
            println!(
                "{what}: write {secs:.2} s (opened {}, refreshed {}, resolved {}); longest probe wait {:.3} s, \
                 {writes} probe writes during it; peak resident {:.0} MiB",
                w.opened,
                w.refreshed,
                w.resolved,
                longest.as_secs_f64(),
                peak_rss_mib(),
            );
        }
        store.close().await;
    });
}
