//! Metric anomaly detector benchmark: throughput in points per second, bytes of state per series, and the NAB
//! score (standard profile) over the `realAWSCloudwatch` files of a NAB folder with the single best threshold.
//! Run with `cargo bench --bench anomaly`; options through the environment: `BENCH_POINTS` sets the length of
//! the synthetic series (default 2,000,000), `BENCH_NAB_DIR` the NAB folder (`labels_windows.json` and the
//! series it names; default `tests/data/nab`, the 9 files in the repository).

use rules::anomaly::metric::novelty::{NoveltyConfig, NoveltyDetector};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use chrono::NaiveDateTime;
use cloudwarden::anomaly_cli::read_series;
use rules::anomaly::metric::detector::{Detector, DetectorConfig};
use rules::anomaly::metric::nab::{windows_by_time, NabScorer, ScoredFile, Window};

/// A deterministic synthetic metric: a daily cycle, noise, occasional spikes and level shifts.
fn synthetic(n: usize) -> Vec<f64> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut level = 50.0;
    (0..n)
        .map(|i| {
            if i % 10_000 == 9_999 {
                level += (next() - 0.5) * 40.0;
            }
            let daily = 10.0 * (i as f64 * std::f64::consts::TAU / 288.0).sin();
            let spike = if next() < 0.001 { 100.0 * next() } else { 0.0 };
            level + daily + 5.0 * next() + spike
        })
        .collect()
}

fn parse_time(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f").ok()
}

fn nab() {
    let dir = std::env::var_os("BENCH_NAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/nab"));
    let path = dir.join("labels_windows.json");
    let labels = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let labels: BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_str(&labels).expect("labels_windows.json parses");
    let config = DetectorConfig::default();
    let mut files: Vec<(String, Vec<f64>, Vec<Window>)> = Vec::new();
    let mut points = 0usize;
    let mut seconds = 0.0;
    for (name, limits) in labels.iter().filter(|(k, _)| k.starts_with("realAWSCloudwatch/")) {
        let rows = read_series(&dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
        let times: Vec<NaiveDateTime> = rows
            .iter()
            .map(|r| parse_time(&r.timestamp).unwrap_or_else(|| panic!("{name}: timestamp {:?}", r.timestamp)))
            .collect();
        let limits: Vec<(NaiveDateTime, NaiveDateTime)> = limits
            .iter()
            .map(|(a, b)| (parse_time(a).expect("window start"), parse_time(b).expect("window end")))
            .collect();
        let started = Instant::now();
        let mut detector = Detector::new(config.clone());
        let scores: Vec<f64> = rows.iter().map(|r| detector.update(r.value)).collect();
        seconds += started.elapsed().as_secs_f64();
        points += rows.len();
        files.push((name.clone(), scores, windows_by_time(&times, &limits)));
    }
    let scored: Vec<ScoredFile> =
        files.iter().map(|(name, scores, windows)| ScoredFile { name, scores, windows }).collect();
    let started = Instant::now();
    let result = NabScorer::default().optimize(&scored);
    let sweep = started.elapsed().as_secs_f64();
    println!(
        "\nNAB standard profile, {} realAWSCloudwatch files of {} ({points} points, scored at {:.0} points/s):",
        files.len(),
        dir.display(),
        points as f64 / seconds
    );
    println!("{:<50} {:>7} {:>7} {:>4} {:>6} {:>4}", "file", "raw", "windows", "hit", "missed", "FP");
    for f in &result.files {
        println!(
            "{:<50} {:>7.3} {:>7} {:>4} {:>6} {:>4}",
            f.name, f.raw, f.windows, f.true_positives, f.false_negatives, f.false_positives
        );
    }
    println!(
        "score {:.2} with the single best threshold {:.4} (raw {:.3}, null {}, perfect {}); threshold sweep {:.3}s",
        result.normalized, result.threshold, result.raw, result.null, result.perfect, sweep
    );
}

fn main() {
    let n: usize = std::env::var("BENCH_POINTS").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let values = synthetic(n);
    let config = DetectorConfig::default();
    let mut best = f64::INFINITY;
    let mut checksum = 0.0;
    for _ in 0..3 {
        let mut detector = Detector::new(config.clone());
        let started = Instant::now();
        for v in &values {
            checksum += detector.update(*v);
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    let mut detector = Detector::new(config.clone());
    for v in &values {
        detector.update(*v);
    }
    println!("metric anomaly detector, default configuration");
    println!(
        "throughput: {n} points in {best:.3}s (best of 3) = {:.0} points/s ({:.0} ns/point); checksum {checksum:.3}",
        n as f64 / best,
        best * 1e9 / n as f64
    );
    println!("state per series: {} bytes (windows full)", detector.state_bytes());

    // The candidate detector (`novelty`): the same points at a 5-minute step.
    let points: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, v)| (i as i64 * 300, *v)).collect();
    let novelty_config = NoveltyConfig::default();
    let mut best = f64::INFINITY;
    let mut checksum = 0.0;
    let mut state = 0;
    for _ in 0..3 {
        let mut detector = NoveltyDetector::new(novelty_config.clone());
        let started = Instant::now();
        for (t, v) in &points {
            checksum += detector.update(*t, *v);
        }
        best = best.min(started.elapsed().as_secs_f64());
        state = detector.state_bytes();
    }
    println!("candidate detector (novelty), default configuration");
    println!(
        "throughput: {n} points in {best:.3}s (best of 3) = {:.0} points/s ({:.0} ns/point); checksum {checksum:.3}",
        n as f64 / best,
        best * 1e9 / n as f64
    );
    println!("state per series: {state} bytes");
    nab();
}
