//! `/metrics` scrape benchmark (127.0.0.1 only).
//!
//! Publishes `BENCH_SERIES` CloudWatch-like series (default 270,000) encoded, as the CloudWatch job does, renders
//! them through the same exposition path as the daemon, serves it with the daemon's router, and scrapes it from a second process with
//! `BENCH_SCRAPERS` concurrent scrapers (default 8), `BENCH_SCRAPES` measured scrapes each (default 50, after 2 that warm the connection up), first as
//! Prometheus asks (OpenMetrics, gzip), then uncompressed. Prints the body sizes, the rendering time, scrapes
//! per second, latency percentiles and the serving process' resident memory next to the body size.
//! Run with `cargo bench --bench scrape`.

use std::io::Read;
use std::time::{Duration, Instant};

use axum::body::Body;

use cloudwarden::jobs::cloudwatch::{CloudWatchView, Interner, PassThrough, Series};
use cloudwarden::jobs::Render;
use cloudwarden::metrics::{labels, Exposition};
use cloudwarden::server::{app, AppState};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The daemon's allocator: what stays resident after a rendering depends on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Unmeasured scrapes per scraper before the measured ones.
const WARM_UP: usize = 2;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn status_kib(field: &str) -> u64 {
    let mut s = String::new();
    let _ = std::fs::File::open("/proc/self/status").and_then(|mut f| f.read_to_string(&mut s));
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / 1024.0 / 1024.0)
}

/// The scraping process: `BENCH_SCRAPERS` tasks, each `BENCH_SCRAPES` sequential scrapes of `url`; prints one
/// line of latencies in microseconds.
async fn scrape(url: String, gzip: bool) {
    let scrapers = env("BENCH_SCRAPERS", 8);
    let each = env("BENCH_SCRAPES", 50);
    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..scrapers {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut bytes = 0usize;
            // The first scrapes of a connection open it and grow its buffers (Prometheus keeps its connection):
            // not measured.
            for round in 0..WARM_UP + each {
                let mut req = axum::http::Request::get(&url).header(
                    "accept",
                    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1",
                );
                if gzip {
                    req = req.header("accept-encoding", "gzip");
                }
                let t = Instant::now();
                let res = client.request(req.body(Body::empty()).unwrap()).await.expect("scrape");
                let body = res.into_body().collect().await.expect("body").to_bytes();
                if round >= WARM_UP {
                    latencies.push(t.elapsed().as_micros() as u64);
                }
                bytes = body.len();
            }
            (latencies, bytes)
        }));
    }
    let mut all = Vec::new();
    let mut size = 0;
    for t in tasks {
        let (l, b) = t.await.unwrap();
        all.extend(l);
        size = b;
    }
    let wall = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1];
    println!("{} {} {:.3} {} {} {} {}", all.len(), size, wall, pct(0.5), pct(0.99), all[all.len() - 1], scrapers);
}

/// `n` series as the CloudWatch job builds them: names, help texts and label keys and values shared.
fn build(n: usize) -> Vec<Series> {
    let mut intern = Interner::default();
    let mut all = Vec::with_capacity(n);
    for i in 0..n {
        let instance = format!("i-{:017x}", i);
        let account = format!("{:012}", 100_000_000_000u64 + (i % 20) as u64);
        let region = ["us-east-1", "eu-west-1", "ap-southeast-2"][i % 3];
        let team = ["payments", "search", "platform", "data"][i % 4];
        all.push(Series {
            name: intern.get("aws_ec2_cpuutilization_average"),
            help: intern.get("CloudWatch AWS/EC2 CPUUtilization Average"),
            labels: intern.labels(&labels(&[
                ("account", &account),
                ("region", region),
                ("dimension_instance_id", &instance),
                ("tag_team", team),
                ("tag_environment", "production"),
            ])),
            value: (i % 1000) as f64 / 10.0,
        });
    }
    all
}

fn main() {
    // The daemon's runtime, with its park hook that returns freed pages after a run (src/memory.rs).
    let rt = cloudwarden::memory::runtime().unwrap();
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--scrape") {
        let url = args.next().expect("url");
        let gzip = args.next().as_deref() == Some("gzip");
        rt.block_on(scrape(url, gzip));
        return;
    }
    let series = env("BENCH_SERIES", 270_000);
    let baseline = status_kib("VmRSS:");

    // The series as the CloudWatch job builds them (strings shared through its interner, in its run, a task on
    // the runtime), then publishes them (encoded in a blocking task); rendered the way the daemon renders them.
    // Where the series are built and freed matters to what stays resident: the allocator returns a thread's
    // freed pages to the system as that thread goes on allocating (the runtime's threads do while serving).
    let (series_of, encoded, with_series, encode_secs) = rt.block_on(async move {
        tokio::spawn(async move {
            let all = build(series);
            let with_series = status_kib("VmRSS:");
            let t = Instant::now();
            let encoded = tokio::task::spawn_blocking(move || {
                let encoded = PassThrough::encode(all);
                cloudwarden::memory::collect();
                encoded
            })
            .await
            .unwrap();
            (series, encoded, with_series, t.elapsed().as_secs_f64())
        })
        .await
        .unwrap()
    });
    let view = CloudWatchView { series: encoded, anomaly: None, findings: None };
    let before_render = status_kib("VmRSS:");
    let t = Instant::now();
    let mut out = Exposition::new();
    view.render(&mut out);
    let rendered = out.finish();
    // As the runtime does after each rendering.
    cloudwarden::memory::release_freed();
    let render_secs = t.elapsed().as_secs_f64();
    let body = rendered.openmetrics.len() as f64;
    println!("series: {series_of}");
    println!(
        "body segments: OpenMetrics {}, text {}",
        rendered.openmetrics.segments().len(),
        rendered.text.segments().len()
    );
    println!(
        "body: OpenMetrics {} (gzip {}, {:.1}x smaller), text {} (gzip {})",
        mib(body),
        mib(rendered.openmetrics_gzip.len() as f64),
        body / rendered.openmetrics_gzip.len() as f64,
        mib(rendered.text.len() as f64),
        mib(rendered.text_gzip.len() as f64),
    );
    println!("publishing (encoding the series once): {encode_secs:.2} s");
    println!("rendering (families, both formats, gzip of each): {render_secs:.2} s");

    let state = AppState::default();
    state.set_metrics(rendered);
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app(state)).await });
    let url = format!("http://{addr}/metrics");
    let rss_before = status_kib("VmRSS:");
    for gzip in [true, false] {
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let watcher = {
            let peak = peak.clone();
            rt.spawn(async move {
                loop {
                    peak.fetch_max(status_kib("VmRSS:"), std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--scrape", &url, if gzip { "gzip" } else { "plain" }])
            .output()
            .expect("scraper process");
        watcher.abort();
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<f64> = line.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        assert_eq!(f.len(), 7, "scraper said: {line} {}", String::from_utf8_lossy(&out.stderr));
        let rss = peak.load(std::sync::atomic::Ordering::Relaxed) as f64 * 1024.0;
        println!(
            "{}: {} scrapes by {} scrapers, {:.1} scrapes/s, {} per response, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             server resident peak {} = {:.2}x the body",
            if gzip { "gzip (as Prometheus asks)" } else { "uncompressed" },
            f[0],
            f[6],
            f[0] / f[2],
            mib(f[1]),
            f[3] / 1000.0,
            f[4] / 1000.0,
            f[5] / 1000.0,
            mib(rss),
            rss / body,
        );
    }
    println!(
        "resident: {} at start, {} with the series built, {} with them published (encoded), {} once rendered and \
         serving",
        mib(baseline as f64 * 1024.0),
        mib(with_series as f64 * 1024.0),
        mib(before_render as f64 * 1024.0),
        mib(rss_before as f64 * 1024.0),
    );
}
