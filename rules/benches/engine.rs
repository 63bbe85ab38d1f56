//! The rule engine at scale: 1,000,000 synthetic resources × 50 rules (44 tagging rules and the 6 cleanup
//! rules), plus 30 days of per-resource cost for 1% of them. Prints the wall time of `engine::evaluate`
//! and the bytes it allocates per resource, counted by a global allocator that tracks live and peak bytes.
//!
//! `cargo bench -p rules --bench engine`; `BENCH_RESOURCES=100000` for a smaller run,
//! `BENCH_UNTAGGED_PERMILLE=5` for 0.5% untagged resources instead of 5% (far fewer findings), `BENCH_DRIFT=1` to
//! add a Terraform state covering 60% of the resources (drift is off by default: the target is tagging
//! and cleanup), `BENCH_THREADS=1` to evaluate on one thread (default 2, the machine's cores), `BENCH_RUNS=5`
//! for more timed runs (default 3). Each timed run prints its wall time and the CPU time of the process
//! (user + system, all threads) during it.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rules::engine::{evaluate_with_threads, Inputs};
use rules::file::parse_rule_file;
use rules::input::{DailyCost, Details, Resource, TfResource};
use rust_decimal::Decimal;

/// The allocator the daemon uses (mimalloc), under the counting wrapper.
static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The daemon's allocator, counting live bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Counting costs two contended atomics per allocation: timed runs switch it off.
static COUNTING: AtomicBool = AtomicBool::new(false);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { INNER.alloc(layout) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { INNER.dealloc(ptr, layout) };
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { INNER.realloc(ptr, layout, new_size) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            if new_size > layout.size() {
                let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// xorshift64*: deterministic synthetic data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const TYPES: &[(&str, u64)] = &[
    ("ec2:instance", 35),
    ("ec2:volume", 20),
    ("ec2:snapshot", 15),
    ("s3:bucket", 8),
    ("ec2:elastic-ip", 4),
    ("logs:log-group", 8),
    ("rds:db", 5),
    ("lambda:function", 5),
];

const TEAMS: &[&str] = &["payments", "search", "data", "web", "platform", "ml"];
const ENVS: &[&str] = &["prod", "staging", "dev"];

fn rules_toml() -> String {
    let scopes = ["ec2:*", "ec2:instance", "ec2:volume", "s3:bucket", "*", "rds:*", "lambda:function", "logs:*"];
    let keys = ["team", "env", "cost-center", "app", "owner", "service", "tier", "data-class"];
    let mut s = String::new();
    for i in 0..44 {
        let scope = scopes[i % scopes.len()];
        let k1 = keys[i % keys.len()];
        let k2 = keys[(i / 3 + 1) % keys.len()];
        let _ = writeln!(s, "[[tagging]]\nname = \"rule-{i:02}\"\nresource_types = [\"{scope}\"]");
        if k1 == k2 {
            let _ = writeln!(s, "required_keys = [\"{k1}\"]");
        } else {
            let _ = writeln!(s, "required_keys = [\"{k1}\", \"{k2}\"]");
        }
        let _ = writeln!(s, "ignore_key_case = {}", i % 4 == 0);
        if i % 5 == 0 {
            let _ = writeln!(s, "exempt_tags = [\"env=sandbox\"]\nexempt_arns = [\"arn:aws:ec2:*:999999999999:*\"]");
        }
        match i % 3 {
            0 => {
                let _ = writeln!(s, "[tagging.allowed_values]\nenv = [\"prod\", \"staging\", \"dev\"]");
            }
            1 => {
                let _ = writeln!(s, "[tagging.allowed_patterns]\ncost-center = \"cc-[0-9]{{4}}\"");
            }
            _ => {}
        }
        s.push('\n');
    }
    s.push_str("[cleanup]\nexempt_tags = [\"env=prod\"]\n");
    s
}

fn resources(n: usize, untagged_permille: u64, now: DateTime<Utc>, rng: &mut Rng) -> Vec<Resource> {
    let total: u64 = TYPES.iter().map(|t| t.1).sum();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut pick = rng.below(total);
        let mut rtype = TYPES[0].0;
        for (t, w) in TYPES {
            if pick < *w {
                rtype = t;
                break;
            }
            pick -= w;
        }
        let account = format!("{:012}", 100_000_000_000u64 + rng.below(20));
        let region = ["us-east-1", "eu-west-1", "ap-south-1"][rng.below(3) as usize];
        let (service, kind) = rtype.split_once(':').unwrap_or((rtype, "x"));
        let id = format!("{kind}-{i:08x}");
        let mut tags = BTreeMap::new();
        // `untagged_permille` untagged (5% by default); the rest carry every key the rules ask for, and
        // 5% of those break one rule or more (a key missing, or a value not allowed).
        if rng.below(1000) >= untagged_permille {
            tags.insert("team".to_string(), TEAMS[rng.below(TEAMS.len() as u64) as usize].to_string());
            tags.insert("env".to_string(), ENVS[rng.below(3) as usize].to_string());
            tags.insert("cost-center".to_string(), format!("cc-{:04}", rng.below(10_000)));
            for key in ["app", "owner", "service", "tier", "data-class"] {
                tags.insert(key.to_string(), "x".to_string());
            }
            if rng.below(20) == 0 {
                match rng.below(3) {
                    0 => {
                        tags.insert("env".to_string(), "production".to_string());
                    }
                    1 => {
                        tags.insert("cost-center".to_string(), "cc-12".to_string());
                    }
                    _ => {
                        let key = ["team", "env", "cost-center", "app", "owner", "service", "tier", "data-class"]
                            [rng.below(8) as usize];
                        tags.remove(key);
                    }
                }
            }
        }
        let age = rng.below(400) as i64;
        let details = match rtype {
            "ec2:instance" => Details::Instance {
                instance_type: Some("m6i.large".into()),
                stopped_at: (rng.below(10) == 0).then(|| now - Duration::days(rng.below(90) as i64)),
            },
            "ec2:volume" => Details::Volume {
                size_gib: Some(8 + rng.below(500) as i32),
                volume_type: Some(["gp3", "gp2", "io2"][rng.below(3) as usize].into()),
                attached: rng.below(10) != 0,
            },
            "ec2:snapshot" => Details::Snapshot {
                volume_id: Some(format!("volume-{:08x}", rng.below(n as u64 * 2))),
                size_gib: Some(8 + rng.below(500) as i32),
            },
            "ec2:elastic-ip" => Details::ElasticIp { public_ip: None, associated: rng.below(8) != 0 },
            "logs:log-group" => Details::LogGroup {
                retention_days: (rng.below(3) != 0).then_some(30),
                stored_bytes: Some(rng.below(50 << 30) as i64),
            },
            _ => Details::Other,
        };
        let state = match &details {
            Details::Instance { stopped_at: Some(_), .. } => Some("stopped".to_string()),
            Details::Instance { .. } => Some("running".to_string()),
            _ => None,
        };
        out.push(Resource {
            arn: format!("arn:aws:{service}:{region}:{account}:{kind}/{id}"),
            resource_type: rtype.to_string(),
            account_id: account,
            region: region.to_string(),
            id,
            name: None,
            state,
            tags,
            created_at: Some(now - Duration::days(age)),
            first_seen: now - Duration::days(age.min(200)),
            details,
        });
    }
    out
}

fn costs(resources: &[Resource], now: DateTime<Utc>) -> Vec<DailyCost> {
    let mut out = Vec::new();
    for r in resources.iter().step_by(100) {
        for d in 1..=30 {
            out.push(DailyCost {
                day: (now - Duration::days(d)).date_naive(),
                account_id: r.account_id.clone(),
                service: "AmazonEC2".into(),
                resource_id: Some(if d % 2 == 0 { r.arn.clone() } else { r.id.clone() }),
                tags: BTreeMap::new(),
                amount: Decimal::new(123, 2),
            });
        }
    }
    out
}

fn state(resources: &[Resource], rng: &mut Rng) -> Vec<TfResource> {
    resources
        .iter()
        .filter(|_| rng.below(10) < 6)
        .map(|r| TfResource {
            origin: "s3://states/prod.tfstate".into(),
            address: format!("aws_thing.{}", r.id),
            tf_type: match r.resource_type.as_str() {
                "ec2:instance" => "aws_instance",
                "ec2:volume" => "aws_ebs_volume",
                "s3:bucket" => "aws_s3_bucket",
                _ => "aws_lambda_function",
            }
            .into(),
            arn: Some(r.arn.clone()),
            id: Some(r.id.clone()),
            tags: r.tags.clone(),
        })
        .collect()
}

/// CPU time (user + system, every thread) of this process so far, from `/proc/self/stat`; `None` where
/// there is no such file. Ticks of 10 ms.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses: utime and stime are the
    // 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / 100.0)
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    let n: usize = std::env::var("BENCH_RESOURCES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let with_drift = std::env::var("BENCH_DRIFT").is_ok_and(|v| v == "1");
    let untagged: u64 = std::env::var("BENCH_UNTAGGED_PERMILLE").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let threads: usize = std::env::var("BENCH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().expect("valid date");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    let file = parse_rule_file("bench.toml", &rules_toml()).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let resources = resources(n, untagged, now, &mut rng);
    let costs = costs(&resources, now);
    let tf = if with_drift { state(&resources, &mut rng) } else { Vec::new() };
    println!("threads: {threads}");
    println!(
        "inputs: {} resources, {} tagging rules + 6 cleanup rules, {} cost rows, {} state resources (built in {:.2?})",
        resources.len(),
        file.tagging.len(),
        costs.len(),
        tf.len(),
        started.elapsed()
    );
    let inputs = Inputs { now, resources: &resources, costs: &costs, tf_resources: &tf, tf_loaded: with_drift };

    // Timed runs, allocation counting off.
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        drop(last.take());
        let cpu = cpu_seconds();
        let t = Instant::now();
        let eval = evaluate_with_threads(&file, &inputs, threads).expect("costs sum within range");
        walls.push(t.elapsed());
        let cpu = cpu.zip(cpu_seconds()).map(|(a, b)| b - a).unwrap_or_default();
        cpus.push(cpu);
        println!(
            "evaluate: {:.3} s wall, {cpu:.2} s CPU, {} findings",
            walls.last().map(|d| d.as_secs_f64()).unwrap_or_default(),
            eval.findings.len()
        );
        last = Some(eval);
    }
    drop(last.take());

    // One counted run: bytes allocated by the engine while it runs. Frees of memory allocated before
    // counting started are not seen, so only the engine's own allocations count.
    LIVE.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let eval = evaluate_with_threads(&file, &inputs, threads).expect("costs sum within range");
    COUNTING.store(false, Ordering::Relaxed);
    let (peak, retained) = (PEAK.load(Ordering::Relaxed), LIVE.load(Ordering::Relaxed));
    let result_per_finding = retained as f64 / eval.findings.len().max(1) as f64;
    println!(
        "memory: peak {:.1} MiB ({:.0} B/resource); result {:.1} MiB ({:.0} B/finding); working state (peak - result) {:.0} B/resource",
        mib(peak),
        peak as f64 / n as f64,
        mib(retained),
        result_per_finding,
        peak.saturating_sub(retained) as f64 / n as f64,
    );
    let last = Some(eval);

    // Where the time goes: each phase on its own.
    let t = Instant::now();
    let index = rules::engine::CostIndex::build(&costs, now).expect("costs sum within range");
    let t_costs = t.elapsed();
    let t = Instant::now();
    let tagging = rules::tagging::evaluate(&file.tagging, &resources, &index).expect("costs sum within range");
    let t_tagging = t.elapsed();
    let t = Instant::now();
    let cleanup = rules::cleanup::evaluate(&file.cleanup, &resources, &index, now).expect("costs sum within range");
    let t_cleanup = t.elapsed();
    let mut all: Vec<_> = tagging.findings.into_iter().chain(cleanup.findings).collect();
    let t = Instant::now();
    rules::engine::sort_findings(&mut all);
    let t_sort = t.elapsed();
    println!("phases: cost index {t_costs:.2?}, tagging {t_tagging:.2?}, cleanup {t_cleanup:.2?}, sort {t_sort:.2?}");
    drop(all);
    walls.sort();
    cpus.sort_by(f64::total_cmp);
    println!(
        "median evaluate wall: {:.3} s; median CPU {:.2} s",
        walls[walls.len() / 2].as_secs_f64(),
        cpus[cpus.len() / 2]
    );
    if let Some(eval) = last {
        for r in &eval.cleanup.by_rule {
            println!("  cleanup {:<28} {:>7} candidates, {:>14} USD/month", r.rule.name(), r.candidates, r.monthly_usd);
        }
    }
}
