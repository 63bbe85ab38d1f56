//! Inventory cycle benchmark against the seeded moto test-bed (127.0.0.1 only).
//!
//! Prints, per cycle, wall time and resources per second; then the AWS calls of one cycle per operation
//! next to the minimum for the items listed (ceil(items / page size) per account-region, at least one call
//! per account-region), and the peak resident memory of this process (collector + store; moto is another
//! process). Run with `cargo bench --bench inventory`; options through the environment:
//! `BENCH_SCALE` (seed scale, default 1.0), `BENCH_CYCLES` (default 3).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use cloudwarden::config;
use cloudwarden::daemon::Daemon;
use tokio_util::sync::CancellationToken;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

/// (operation, page size used, per-unit item counts) → the fewest calls that can list them.
fn minimum(page: usize, items_per_unit: &[usize]) -> u64 {
    items_per_unit.iter().map(|n| n.div_ceil(page).max(1) as u64).sum()
}

fn main() {
    let scale: f64 = std::env::var("BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let cycles: usize = std::env::var("BENCH_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    common::aws_test_env();
    let moto = common::Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let seeded = Instant::now();
    let truth = moto.seed(scale, dir.path());
    println!("seeded {} resources (scale {scale}) in {:.1}s", truth.resources.len(), seeded.elapsed().as_secs_f64());

    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let text = truth.config(&moto.endpoint(), &db, "max_concurrency = 4");
    let config = config::parse("bench.toml", &text, &|_| None).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let daemon = Daemon::new(config).await.unwrap();
        let mut last = None;
        for i in 1..=cycles {
            let cpu0 = cpu_secs();
            let s = daemon.run_job("inventory", chrono::Utc::now(), &CancellationToken::new()).await;
            let cpu = cpu_secs() - cpu0;
            assert_eq!(s.items as usize, truth.resources.len(), "the cycle saw every seeded resource");
            println!(
                "cycle {i}: {:?}, {} resources in {:.3}s wall ({:.0} resources/s), {:.3}s CPU in this process, {} AWS calls",
                s.outcome,
                s.items as usize,
                s.duration_secs,
                s.items as f64 / s.duration_secs,
                cpu,
                s.api_call_total()
            );
            last = Some(s);
        }
        let s = last.unwrap();

        // Items per (account, region) for each listing, from the truth file.
        let mut per_unit: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
        for r in &truth.resources {
            *per_unit.entry((r.resource_type.as_str(), r.account.as_str(), r.region.as_str())).or_default() += 1;
        }
        let units = truth.accounts.len() * truth.regions.len();
        let items = |t: &str| -> Vec<usize> {
            let mut v: Vec<usize> = Vec::new();
            for a in &truth.accounts {
                for r in &truth.regions {
                    v.push(per_unit.get(&(t, a.id.as_str(), r.as_str())).copied().unwrap_or(0));
                }
            }
            v
        };
        let tagged: Vec<usize> = {
            let mut m: BTreeMap<(&str, &str), usize> = BTreeMap::new();
            for r in truth.resources.iter().filter(|r| !r.untagged && r.resource_type != "ec2:elastic-ip") {
                *m.entry((r.account.as_str(), r.region.as_str())).or_default() += 1;
            }
            m.values().copied().collect()
        };
        let buckets = truth.resources.iter().filter(|r| r.resource_type == "s3:bucket").count() as u64;
        let rows: Vec<(&str, u64)> = vec![
            ("sts:GetCallerIdentity", truth.accounts.len() as u64),
            ("ec2:DescribeInstances", minimum(1000, &items("ec2:instance"))),
            ("ec2:DescribeVolumes", minimum(500, &items("ec2:volume"))),
            ("ec2:DescribeSnapshots", minimum(1000, &items("ec2:snapshot"))),
            ("ec2:DescribeAddresses", units as u64),
            ("rds:DescribeDBInstances", minimum(100, &items("rds:db"))),
            ("cloudwatchlogs:DescribeLogGroups", minimum(50, &items("logs:log-group"))),
            ("resourcegroupstaggingapi:GetResources", minimum(100, &tagged)),
            ("s3:ListBuckets", truth.accounts.len() as u64),
            ("s3:GetBucketLocation", buckets),
            ("s3:GetBucketTagging", buckets),
        ];
        println!("\n{:<40} {:>7} {:>8}", "operation (last cycle)", "calls", "minimum");
        let (mut calls, mut min) = (0, 0);
        for (op, m) in rows {
            let c = s.api_calls.get(op).copied().unwrap_or(0);
            println!("{op:<40} {c:>7} {m:>8}");
            calls += c;
            min += m;
        }
        println!("{:<40} {calls:>7} {min:>8}", "all");
        println!("\npeak resident memory of this process: {:.1} MiB", peak_rss_kib() as f64 / 1024.0);
    });
}

fn cpu_secs() -> f64 {
    // utime + stime of this process from /proc/self/stat, in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
