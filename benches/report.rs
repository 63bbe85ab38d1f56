//! Weekly report benchmark: how long the report of one week takes to build over a year of daily costs.
//!
//! Writes a FOCUS 1.0 file of one year of daily costs (365 days × 50 accounts × 12 services by default, each
//! row with `team` and `env` tags, a tenth of them untagged), loads it into a fresh SQLite store through the
//! billing files collector (timed apart), then builds the report of the year's last complete week several
//! times: reading its input from the store (`gather`: five weeks of costs), `build`, and rendering each
//! format (HTML with its two charts, Markdown, CSV, JSON). Prints each phase's median and the peak resident
//! memory (VmHWM) of the process. Nothing leaves the machine: the file and the database are in a temporary
//! folder.
//!
//! Run with `cargo bench --bench report`; options through the environment: `BENCH_ACCOUNTS` (50),
//! `BENCH_SERVICES` (12), `BENCH_DAYS` (365), `BENCH_RUNS` (5).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate, TimeZone, Utc};
use cloudwarden::billing::load_billing;
use cloudwarden::report::{build, gather, html, text, CostSource, Week};
use cloudwarden::store::Store;
use collector::billing::{BillingSource, ReadOptions};
use collector::{AwsContext, AwsSettings};

const HEADER: &str = "ChargePeriodStart,BilledCost,EffectiveCost,ListCost,ProviderName,BillingAccountId,SubAccountId,\
ServiceName,ChargeCategory,BillingCurrency,ResourceId,RegionId,Tags";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:").and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A small deterministic generator (xorshift), so every run writes the same file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn main() {
    let (accounts, services, days, runs) =
        (env("BENCH_ACCOUNTS", 50), env("BENCH_SERVICES", 12), env("BENCH_DAYS", 365), env("BENCH_RUNS", 5).max(1));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("focus.csv");
    let last = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
    let first = last - Days::new(days - 1);
    let teams = ["web", "data", "platform", "search", "mobile"];
    let envs = ["prod", "staging", "dev"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let mut rows = 0u64;
    {
        let mut w = BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(w, "{HEADER}").unwrap();
        for d in 0..days {
            let day = first + Days::new(d);
            for a in 0..accounts {
                for s in 0..services {
                    let cents = 100 + rng.next() % 50_000 + (s * 1_000);
                    let tags = if rng.next().is_multiple_of(10) {
                        "NULL".to_string()
                    } else {
                        format!(
                            "\"{{\"\"team\"\": \"\"{}\"\", \"\"env\"\": \"\"{}\"\"}}\"",
                            teams[(a as usize + s as usize) % teams.len()],
                            envs[a as usize % envs.len()]
                        )
                    };
                    writeln!(
                        w,
                        "\"{day} 00:00:00\",{}.{:02},{}.{:02},{}.{:02},\"AWS\",\"999999999999\",\"{:012}\",\"Service {s:02}\",\"Usage\",\"USD\",NULL,\"us-east-1\",{tags}",
                        cents / 100,
                        cents % 100,
                        cents / 100,
                        cents % 100,
                        cents / 100,
                        cents % 100,
                        100_000_000_000 + a
                    )
                    .unwrap();
                    rows += 1;
                }
            }
        }
    }
    println!(
        "wrote {rows} rows ({accounts} accounts × {services} services × {days} days, {first} to {last}) in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        common::aws_test_env();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("cw.db").display()), 2).await.unwrap();
        let ctx = AwsContext::new(&AwsSettings::default()).await;
        let source = BillingSource::parse(&path.display().to_string()).unwrap();
        let started = Instant::now();
        let loaded =
            load_billing(&store, &ctx, &ctx.accounts[0], "us-east-1", &[source], &ReadOptions::default()).await;
        assert!(loaded.is_complete(), "{loaded:?}");
        println!("loaded into SQLite in {:.2} s ({} cost rows)", started.elapsed().as_secs_f64(), loaded.cost_rows());

        let week = Week::of(last);
        let now = Utc.from_utc_datetime(&(last + Days::new(1)).and_hms_opt(8, 0, 0).unwrap());
        let tags = vec!["team".to_string(), "env".to_string()];
        let (mut read, mut built, mut rendered, mut total) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut sizes = (0, 0, 0, 0);
        for _ in 0..runs {
            let t0 = Instant::now();
            let input = gather(&store, week, CostSource::BillingFiles, &tags, None, false, now).await.unwrap();
            let t1 = Instant::now();
            let report = build(&input).unwrap();
            let t2 = Instant::now();
            let h = html::html(&report).unwrap();
            let m = text::markdown(&report);
            let c = text::csv(&report).unwrap();
            let j = serde_json::to_string_pretty(&report).unwrap();
            let t3 = Instant::now();
            sizes = (h.len(), m.len(), c.len(), j.len());
            read.push(t1 - t0);
            built.push(t2 - t1);
            rendered.push(t3 - t2);
            total.push(t3 - t0);
        }
        println!("report of {week} ({runs} runs, medians):");
        println!("  read from the store (five weeks of costs): {:>8.1} ms", median(read).as_secs_f64() * 1e3);
        println!("  build:                                     {:>8.1} ms", median(built).as_secs_f64() * 1e3);
        println!("  render HTML, Markdown, CSV and JSON:        {:>8.1} ms", median(rendered).as_secs_f64() * 1e3);
        println!("  total:                                     {:>8.1} ms", median(total).as_secs_f64() * 1e3);
        println!(
            "  sizes: HTML {} KiB, Markdown {} KiB, CSV {} KiB, JSON {} KiB",
            sizes.0 / 1024,
            sizes.1 / 1024,
            sizes.2 / 1024,
            sizes.3 / 1024
        );
        store.close().await;
    });
    println!("peak resident memory: {:.1} MiB", peak_rss_kib() as f64 / 1024.0);
}
