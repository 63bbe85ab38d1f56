//! CloudWatch cycle benchmark against a moto server of its own (127.0.0.1 only).
//!
//! One account and region, static jobs over explicit `Shard` dimensions (2 metrics × 2 statistics each),
//! run through the daemon's CloudWatch job exactly as a scheduled cycle runs it: queries built from the
//! configuration, planned into (period, window) groups, fetched with GetMetricData, exported as series, the
//! run recorded in the SQLite store. Two configurations: every query in one group (period 300), and the same
//! number split across two groups (periods 300 and 60, alternate shards).
//!
//! Printed per cycle: queries, GetMetricData calls as the collector's call statistics counted them next to
//! the fewest possible (ceil(queries / 500) per group), series exported, wall time, this process's CPU time
//! (user + system) and its peak resident memory during the cycle (VmHWM, reset before each cycle where the
//! kernel allows it), and the CPU time moto spent answering.
//!
//! Datapoints are seeded for the first `BENCH_SEEDED` shards only: the number of calls does not depend on
//! whether a query finds data, and moto scans every stored datapoint for every query. Every cycle is run at
//! the same `now`, so the seeded datapoints stay inside the windows however long the run takes.
//!
//! `cargo bench --bench cloudwatch` (release build). Options through the environment: `BENCH_QUERIES`
//! (default 10000), `BENCH_CYCLES` (default 3), `BENCH_SEEDED` (default 200), `BENCH_CONFIGS` (default
//! `one,two`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Instant;

use chrono::{DateTime, Utc};
use cloudwarden::config;
use cloudwarden::daemon::Daemon;
use cloudwarden::runtime::CycleSummary;
use cloudwarden::store::RunOutcome;
use collector::aws::cloudwatch::MAX_QUERIES_PER_CALL;
use tokio_util::sync::CancellationToken;

const NAMESPACE: &str = "Cloudwarden/Bench";
const METRICS: [&str; 2] = ["Load", "Latency"];
const STATISTICS: [&str; 2] = ["Average", "Maximum"];
/// Queries per static job: every metric with every statistic.
const PER_SHARD: usize = METRICS.len() * STATISTICS.len();
/// Every group reads ten minutes.
const LENGTH_SECS: i64 = 600;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One (period, window) group: the shards whose static jobs read at this period.
struct Group {
    period_secs: i32,
    shards: Vec<usize>,
}

impl Group {
    fn queries(&self) -> usize {
        self.shards.len() * PER_SHARD
    }

    fn min_calls(&self) -> u64 {
        self.queries().div_ceil(MAX_QUERIES_PER_CALL) as u64
    }
}

fn shard_name(i: usize) -> String {
    format!("s{i:05}")
}

fn groups_for(config: &str, shards: usize) -> Vec<Group> {
    match config {
        "one" => vec![Group { period_secs: 300, shards: (0..shards).collect() }],
        "two" => vec![
            Group { period_secs: 300, shards: (0..shards).step_by(2).collect() },
            Group { period_secs: 60, shards: (1..shards).step_by(2).collect() },
        ],
        other => panic!("BENCH_CONFIGS: unknown configuration {other:?} (one, two)"),
    }
}

fn config_text(endpoint: &str, db_url: &str, groups: &[Group]) -> String {
    let list = |items: &[&str]| items.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:{}\"\n\n[database]\nurl = \"{db_url}\"\ncreate_if_missing = true\n\n[aws]\nendpoint_url = \"{endpoint}\"\n\
         call_timeout_secs = 300\n\n[[accounts]]\nname = \"main\"\n\n[collectors.cloudwatch]\nregions = [\"us-east-1\"]\n",
        common::free_port()
    );
    for g in groups {
        for &shard in &g.shards {
            text.push_str(&format!(
                "\n[[collectors.cloudwatch.static]]\nnamespace = \"{NAMESPACE}\"\ndimensions = {{ Shard = \"{}\" }}\n\
                 metrics = [{}]\nstatistics = [{}]\nperiod_secs = {}\nlength_secs = {LENGTH_SECS}\ndelay_secs = 0\n",
                shard_name(shard),
                list(&METRICS),
                list(&STATISTICS),
                g.period_secs
            ));
        }
    }
    text
}

/// One datapoint per metric for each of the first `shards` shards, two minutes before the last 5-minute
/// boundary before `now`: inside the window of both periods.
fn seed_datapoints(endpoint: &str, shards: usize, now: DateTime<Utc>) {
    let at = now.timestamp().div_euclid(300) * 300 - 120;
    let script = format!(
        r#"
import boto3, datetime
cw = boto3.client("cloudwatch", endpoint_url="{endpoint}", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
at = datetime.datetime.fromtimestamp({at}, datetime.timezone.utc)
data = [dict(MetricName=m, Dimensions=[dict(Name="Shard", Value="s%05d" % i)], Timestamp=at, Value=i + k * 0.5)
        for i in range({shards}) for k, m in enumerate({metrics:?})]
for i in range(0, len(data), 500):
    cw.put_metric_data(Namespace="{NAMESPACE}", MetricData=data[i:i + 500])
"#,
        metrics = METRICS,
    );
    let out = Command::new(common::repo_root().join(".venv/bin/python"))
        .arg("-c")
        .arg(script)
        .output()
        .expect("run the test-bed's python");
    assert!(out.status.success(), "seeding datapoints failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Resets this process's peak resident memory (VmHWM) to the current one; false where the kernel refuses.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// User + system CPU seconds of a process, from `/proc/<pid>/stat` (fields 14 and 15, in clock ticks of
/// 1/100 s).
fn cpu_secs_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: count fields after its closing parenthesis (field 3 is first).
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: f64 = fields.iter().skip(11).take(2).filter_map(|v| v.parse::<f64>().ok()).sum();
    ticks / 100.0
}

fn print_cycle(config: &str, cycle: usize, s: &CycleSummary, groups: &[Group], cpu: f64, moto_cpu: f64, rss: String) {
    let d = s.detail::<cloudwarden::jobs::cloudwatch::CloudWatchDetail>().expect("a cloudwatch run");
    let calls = s.api_calls.get("cloudwatch:GetMetricData").copied().unwrap_or(0);
    let per_group: Vec<String> = groups.iter().map(|g| g.min_calls().to_string()).collect();
    let minimum: u64 = groups.iter().map(Group::min_calls).sum();
    println!(
        "{config} cycle {cycle}: {} queries, {calls} GetMetricData calls (minimum {minimum} = {}; {} AWS calls in \
         all), {} series, {:.2}s wall, {cpu:.2}s CPU in this process, {moto_cpu:.2}s CPU in moto, peak RSS {rss}",
        d.queries,
        per_group.join(" + "),
        s.api_call_total(),
        d.series,
        s.duration_secs,
    );
    if d.calls != calls {
        println!("  (the job counted {} calls; the call statistics count every attempt, retries included)", d.calls);
    }
}

fn main() {
    let queries: usize = env_or("BENCH_QUERIES", 10_000);
    let cycles: usize = env_or("BENCH_CYCLES", 3);
    let configs: String = env_or("BENCH_CONFIGS", "one,two".to_string());
    let shards = queries.div_ceil(PER_SHARD).max(1);
    let seeded: usize = env_or("BENCH_SEEDED", 200).min(shards);

    common::aws_test_env();
    let moto = common::Moto::start();
    let moto_pid = moto.pid().to_string();
    let dir = tempfile::tempdir().expect("a temporary directory");
    // Every cycle reads the windows of this instant.
    let now = Utc::now();
    let seeding = Instant::now();
    seed_datapoints(&moto.endpoint(), seeded, now);
    println!(
        "seeded {} datapoints ({seeded} shards × {} metrics) in {:.1}s; {shards} shards × {PER_SHARD} = {} queries",
        seeded * METRICS.len(),
        METRICS.len(),
        seeding.elapsed().as_secs_f64(),
        shards * PER_SHARD
    );

    let mut max_rss: f64 = 0.0;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    for config in configs.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let groups = groups_for(config, shards);
        let described: Vec<String> = groups
            .iter()
            .map(|g| {
                format!(
                    "period {}s: {} queries, ceil(/{MAX_QUERIES_PER_CALL}) = {}",
                    g.period_secs,
                    g.queries(),
                    g.min_calls()
                )
            })
            .collect();
        println!("\nconfiguration {config}: {} group(s): {}", groups.len(), described.join("; "));
        let db = format!("sqlite://{}", dir.path().join(format!("{config}.db")).display());
        let text = config_text(&moto.endpoint(), &db, &groups);
        let parsed = config::parse("bench.toml", &text, &|_| None).expect("the benchmark configuration parses");
        rt.block_on(async {
            let daemon = Daemon::new(parsed).await.expect("the daemon starts");
            let job = "cloudwatch";
            for cycle in 1..=cycles {
                let reset = reset_peak_rss();
                let (cpu0, moto0) = (cpu_secs_of("self"), cpu_secs_of(&moto_pid));
                let s = daemon.run_job(job, now, &CancellationToken::new()).await;
                let (cpu, moto_cpu) = (cpu_secs_of("self") - cpu0, cpu_secs_of(&moto_pid) - moto0);
                assert_eq!(s.outcome, RunOutcome::Success, "{:?}", s.error);
                let series = s.detail::<cloudwarden::jobs::cloudwatch::CloudWatchDetail>().map_or(0, |d| d.series);
                assert_eq!(series as usize, seeded * PER_SHARD, "every seeded shard gives one series per query");
                let peak = peak_rss_mib();
                max_rss = max_rss.max(peak);
                let rss = format!("{peak:.1} MiB{}", if reset { "" } else { " (since start)" });
                print_cycle(config, cycle, &s, &groups, cpu, moto_cpu, rss);
            }
        });
    }
    println!("\nlargest peak resident memory of a cycle: {max_rss:.1} MiB");
}
