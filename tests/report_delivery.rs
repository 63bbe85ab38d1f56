//! The scheduled weekly report, end to end, every receiver on 127.0.0.1: the FOCUS sample loaded by the
//! billing files job, then the report job on a manual clock delivering the week's report by email through a
//! real SMTP server (aiosmtpd over STARTTLS, `tests/smtp_sink.py`), to a Slack-compatible webhook started
//! here, to an S3 bucket on the moto test-bed and to a local directory.
//!
//! What it shows: a due report waits for its cost source; each delivery is recorded in the store and made
//! once; a failed delivery is retried (with backoff) without repeating the ones that succeeded; nothing is
//! sent again once every delivery has it; the metrics count from 0 and the last success survives a restart.
//!
//! moto, boto3 and aiosmtpd come from the test-bed's `.venv` (`scripts/testbed.sh install`). Without them the
//! test says it is skipped, except under `CI=true`, where it fails.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use chrono::{DateTime, TimeZone, Utc};
use cloudwarden::daemon::Daemon;
use cloudwarden::jobs::weekly_report::ReportRun;
use cloudwarden::runtime::{Clock, CycleSummary};
use cloudwarden::store::{DeliveryState, RunOutcome};
use common::channels::{aiosmtpd_python, certs, SmtpSink};
use common::{aws_test_env, free_port, repo_root, Moto};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const BUCKET: &str = "finance-reports";

/// A webhook receiver that answers 500 to its first `fail` requests, then 200; it keeps every body.
#[derive(Clone, Default)]
struct Hook {
    bodies: Arc<Mutex<Vec<Value>>>,
    fail: Arc<AtomicUsize>,
}

impl Hook {
    async fn start(fail: usize) -> (Hook, String) {
        let hook = Hook { fail: Arc::new(AtomicUsize::new(fail)), ..Hook::default() };
        let h = hook.clone();
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let h = h.clone();
                async move {
                    h.bodies.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    let failing = h.fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                    if failing {
                        (StatusCode::INTERNAL_SERVER_ERROR, "try later")
                    } else {
                        (StatusCode::OK, "ok")
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (hook, url)
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// Runs Python with boto3 against moto, an `s3` client defined; returns its standard output.
fn s3_py(moto: &Moto, body: &str) -> String {
    let script = format!(
        "import boto3, json\ns3 = boto3.client(\"s3\", endpoint_url={:?}, region_name=\"us-east-1\", \
         aws_access_key_id=\"testing\", aws_secret_access_key=\"testing\")\n{body}",
        moto.endpoint()
    );
    let out = Command::new(repo_root().join(".venv/bin/python")).arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn config(dir: &Path, moto: &Moto, smtp_port: u16, hook: &str) -> cloudwarden::config::Config {
    let certs_ca = dir.join("relay-ca.pem");
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
call_timeout_secs = 10

[collectors.billing_files]
sources = ["{sample}"]

[reports.weekly]
tag_keys = ["team"]
formats = ["html", "csv", "json"]
link = "https://reports.example.com/weekly/{{week}}.html"

[reports.weekly.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "starttls"
from = "Cloudwarden <cloudwarden@example.com>"
ca_file = "{ca}"

[reports.weekly.deliveries.finance]
kind = "email"
to = ["finance@example.com", "cfo@example.com"]

[reports.weekly.deliveries.chat]
kind = "webhook"
url = "{hook}"

[reports.weekly.deliveries.archive]
kind = "s3"
bucket = "{BUCKET}"
prefix = "cloudwarden/"

[reports.weekly.deliveries.files]
kind = "directory"
path = "{out}"
"#,
        port = free_port(),
        db = dir.join("cw.db").display(),
        endpoint = moto.endpoint(),
        sample = repo_root().join("tests/data/focus/focus_sample_1000.csv").display(),
        ca = certs_ca.display(),
        out = dir.join("reports").display(),
    );
    cloudwarden::config::parse("report-test.toml", &text, &|_| None)
        .unwrap_or_else(|e| panic!("{e}\n--- config ---\n{text}"))
}

/// `/metrics` lines of the report metrics, sorted.
fn report_samples(daemon: &Daemon) -> Vec<String> {
    let mut lines: Vec<String> =
        daemon.state.metrics().lines().filter(|l| l.starts_with("cloudwarden_report")).map(str::to_string).collect();
    lines.sort();
    lines
}

async fn run(daemon: &Daemon, clock: &Clock, job: &str) -> CycleSummary {
    daemon.run_job(job, clock.now(), &CancellationToken::new()).await
}

fn detail(run: &CycleSummary) -> ReportRun {
    run.detail::<ReportRun>().expect("the report job's facts").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weekly_report_is_delivered_once_to_every_delivery() {
    let Some(python) = aiosmtpd_python() else { return };
    aws_test_env();
    let moto = Moto::start();
    s3_py(&moto, &format!("s3.create_bucket(Bucket={BUCKET:?})"));
    let dir = tempfile::tempdir().unwrap();
    let certs = certs();
    std::fs::write(dir.path().join("relay-ca.pem"), &certs.ca_pem).unwrap();
    let sink = SmtpSink::start(&python, "starttls", &certs, None);
    // The webhook refuses the first message.
    let (hook, hook_url) = Hook::start(1).await;
    let cfg = config(dir.path(), &moto, sink.port, &hook_url);

    // Monday 2024-09-23 08:00 UTC: the report of 2024-W38 (September 16 to 22) is due.
    let t0: DateTime<Utc> = Utc.with_ymd_and_hms(2024, 9, 23, 8, 0, 0).unwrap();
    let clock = Clock::manual(t0);
    let daemon = Daemon::with_clock(cfg, clock.clone()).await.unwrap();
    assert!(daemon.runtime.names().contains(&"weekly_report"), "{:?}", daemon.runtime.names());
    // Every delivery and outcome from 0; no success yet.
    let zero: Vec<String> = ["archive", "chat", "files", "finance"]
        .iter()
        .flat_map(|d| {
            ["failure", "success"]
                .map(|o| format!("cloudwarden_reports_total{{report=\"weekly\",delivery=\"{d}\",outcome=\"{o}\"}} 0"))
        })
        .collect();
    let mut want = zero.clone();
    want.sort();
    assert_eq!(report_samples(&daemon), want);

    // The billing files have not been loaded since the week ended: the report waits, a minute at a time.
    let waiting = run(&daemon, &clock, "weekly_report").await;
    assert_eq!(waiting.outcome, RunOutcome::Skipped, "{waiting:?}");
    assert!(detail(&waiting).waiting_for_data, "{waiting:?}");
    assert!(waiting.error.as_deref().unwrap_or_default().contains("waits for its cost source"), "{waiting:?}");
    let status = daemon.runtime.status().into_iter().find(|s| s.name == "weekly_report").unwrap();
    assert_eq!(status.next_run, Some(t0 + chrono::Duration::seconds(60)), "{status:?}");
    assert_eq!((sink.count(), hook.bodies().len()), (0, 0));

    // The billing files job runs; a minute later the report is built and delivered, but the webhook fails.
    clock.advance(std::time::Duration::from_secs(10));
    let billing = run(&daemon, &clock, "billing_files").await;
    assert_eq!(billing.outcome, RunOutcome::Success, "{billing:?}");
    clock.advance(std::time::Duration::from_secs(50));
    let first = run(&daemon, &clock, "weekly_report").await;
    let d = detail(&first);
    assert_eq!(first.outcome, RunOutcome::Partial, "{first:?}");
    assert_eq!((d.week.as_str(), d.waiting_for_data), ("2024-W38", false));
    assert_eq!(d.delivered, ["archive", "files", "finance"]);
    assert_eq!(d.failed.len(), 1, "{d:?}");
    assert_eq!(d.failed[0].0, "chat");
    assert!(d.failed[0].1.contains("HTTP 500: try later"), "{d:?}");
    assert!(!d.failed[0].1.contains("/hook"), "the webhook URL is a secret: {d:?}");
    // Retried after the first backoff (10 s), long before next Monday.
    let status = daemon.runtime.status().into_iter().find(|s| s.name == "weekly_report").unwrap();
    assert_eq!(status.next_run, Some(clock.now() + chrono::Duration::seconds(10)), "{status:?}");
    // Three objects uploaded, one PutObject each.
    assert_eq!(first.api_calls.get("s3:PutObject"), Some(&3), "{:?}", first.api_calls);

    // The email: HTML with a plain-text alternative, the CSV attached.
    assert_eq!(sink.count(), 1);
    let mail = sink.received(1);
    assert_eq!(mail["tls"], true, "STARTTLS was used");
    assert_eq!(mail["rcpt_tos"], serde_json::json!(["finance@example.com", "cfo@example.com"]));
    let subject = mail["headers"]["subject"].as_str().unwrap();
    assert!(subject.starts_with("Weekly cost report 2024-W38: $"), "{subject}");
    assert!(
        mail["headers"]["message-id"].as_str().unwrap().contains("cloudwarden.report.weekly.2024-W38.finance@"),
        "{mail:#}"
    );
    assert_eq!(mail["content_type"], "multipart/mixed", "{mail:#}");
    let parts = mail["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{mail:#}");
    assert_eq!(parts[0]["content_type"], "multipart/alternative");
    let alternative = parts[0]["parts"].as_array().unwrap();
    let types: Vec<&str> = alternative.iter().map(|p| p["content_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["text/plain", "text/html"]);
    let (text, body) = (alternative[0]["content"].as_str().unwrap(), alternative[1]["content"].as_str().unwrap());
    assert!(text.starts_with("# Weekly cost report 2024-W38"), "{text}");
    assert!(body.contains("<svg") && !body.contains("<script"), "the HTML report with its charts");
    assert_eq!(
        (parts[1]["content_type"].as_str(), parts[1]["filename"].as_str()),
        (Some("text/csv"), Some("weekly-2024-W38.csv"))
    );
    let attached = parts[1]["content"].as_str().unwrap().replace("\r\n", "\n");

    // The files in the directory and in the bucket are the same rendering.
    let files = dir.path().join("reports");
    let html = std::fs::read_to_string(files.join("weekly-2024-W38.html")).unwrap();
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(files.join("weekly-2024-W38.json")).unwrap()).unwrap();
    assert_eq!(attached, std::fs::read_to_string(files.join("weekly-2024-W38.csv")).unwrap().replace("\r\n", "\n"));
    assert!(!files.join("weekly-2024-W38.md").exists(), "markdown is not among the formats");
    assert_eq!(json["week"], "2024-W38");
    let total = json["total"]["this_week"].as_str().unwrap().to_string();
    assert!(html.contains("2024-W38"));
    let keys = s3_py(
        &moto,
        &format!(
            "print(json.dumps(sorted(o['Key'] for o in s3.list_objects_v2(Bucket={BUCKET:?})['Contents'])))\n\
             print(s3.get_object(Bucket={BUCKET:?}, Key='cloudwarden/weekly/2024-W38/weekly-2024-W38.html')['Body'].read().decode())"
        ),
    );
    let (listing, s3_html) = keys.split_once('\n').unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(listing).unwrap(),
        serde_json::json!([
            "cloudwarden/weekly/2024-W38/weekly-2024-W38.csv",
            "cloudwarden/weekly/2024-W38/weekly-2024-W38.html",
            "cloudwarden/weekly/2024-W38/weekly-2024-W38.json"
        ])
    );
    assert_eq!(s3_html.trim_end(), html.trim_end());

    // The retry: only the webhook is tried again; the mail, the upload and the files are not repeated.
    clock.advance(std::time::Duration::from_secs(10));
    let second = run(&daemon, &clock, "weekly_report").await;
    assert_eq!(second.outcome, RunOutcome::Success, "{second:?}");
    assert_eq!(detail(&second).delivered, ["chat"]);
    assert_eq!(detail(&second).already_delivered, ["archive", "files", "finance"]);
    assert_eq!(second.api_calls.get("s3:PutObject"), None, "{:?}", second.api_calls);
    assert_eq!(sink.count(), 1);
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 2);
    let slack = &bodies[1];
    assert!(slack["text"].as_str().unwrap().starts_with("Weekly cost report 2024-W38: $"), "{slack:#}");
    let blocks = slack["blocks"].to_string();
    assert!(blocks.contains("Top movers up") && blocks.contains("Top movers down"), "{slack:#}");
    assert!(blocks.contains("<https://reports.example.com/weekly/2024-W38.html|The full report>"), "{slack:#}");
    let delivered_at = clock.now();
    // Done for the week: the next run is the next scheduled time, Monday 08:00 UTC.
    let status = daemon.runtime.status().into_iter().find(|s| s.name == "weekly_report").unwrap();
    assert_eq!(status.next_run, Some(Utc.with_ymd_and_hms(2024, 9, 30, 8, 0, 0).unwrap()), "{status:?}");

    // Nothing left: later runs send nothing.
    clock.advance(std::time::Duration::from_secs(3600));
    let third = run(&daemon, &clock, "weekly_report").await;
    assert_eq!(third.outcome, RunOutcome::Skipped, "{third:?}");
    assert_eq!((sink.count(), hook.bodies().len()), (1, 2));

    // The store: each delivery once, the webhook after two attempts.
    let rows = daemon.store.report_deliveries("weekly", Some("2024-W38")).await.unwrap();
    let summary: Vec<(&str, &str, DeliveryState, i64)> =
        rows.iter().map(|r| (r.delivery.as_str(), r.kind.as_str(), r.state, r.attempts)).collect();
    assert_eq!(
        summary,
        [
            ("archive", "s3", DeliveryState::Delivered, 1),
            ("chat", "webhook", DeliveryState::Delivered, 2),
            ("files", "directory", DeliveryState::Delivered, 1),
            ("finance", "email", DeliveryState::Delivered, 1),
        ]
    );
    assert_eq!(rows[0].target.as_deref(), Some("s3://finance-reports/cloudwarden/weekly/2024-W38/"));
    assert!(rows.iter().all(|r| r.last_error.is_none()));

    // The metrics: one failure, four successes, and the time every delivery had the report.
    let samples = report_samples(&daemon);
    let has = |line: &str| samples.iter().any(|l| l == line);
    assert!(
        has("cloudwarden_reports_total{report=\"weekly\",delivery=\"chat\",outcome=\"failure\"} 1"),
        "{samples:#?}"
    );
    assert!(
        has("cloudwarden_reports_total{report=\"weekly\",delivery=\"chat\",outcome=\"success\"} 1"),
        "{samples:#?}"
    );
    assert!(has("cloudwarden_reports_total{report=\"weekly\",delivery=\"finance\",outcome=\"success\"} 1"));
    assert!(has("cloudwarden_reports_total{report=\"weekly\",delivery=\"finance\",outcome=\"failure\"} 0"));
    let last =
        format!("cloudwarden_report_last_success_timestamp_seconds{{report=\"weekly\"}} {}", delivered_at.timestamp());
    assert!(has(&last), "{samples:#?}");

    // A restart: the counters start again from 0, the last success is read back, nothing is sent again.
    let cfg = config(dir.path(), &moto, sink.port, &hook_url);
    drop(daemon);
    let daemon = Daemon::with_clock(cfg, clock.clone()).await.unwrap();
    let mut want = zero;
    want.push(last);
    want.sort();
    assert_eq!(report_samples(&daemon), want);
    let again = run(&daemon, &clock, "weekly_report").await;
    assert_eq!(again.outcome, RunOutcome::Skipped, "{again:?}");
    assert_eq!((sink.count(), hook.bodies().len()), (1, 2));
    // The JSON's total is what the email's subject says, to the cent.
    let cents: rust_decimal::Decimal = total.parse().unwrap();
    assert!(subject.contains(&cloudwarden::report::text::usd(cents)), "{subject} vs {total}");
}

/// A cost source that never runs does not hold the report back for ever: after `wait_for_data_secs` it is
/// built from what the store has, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_waits_for_its_data_only_so_long() {
    aws_test_env();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[database]
url = "sqlite://{db}"
create_if_missing = true

[collectors.billing_files]
sources = ["{sample}"]

[reports.weekly]
wait_for_data_secs = 3600

[reports.weekly.deliveries.files]
kind = "directory"
path = "out"
"#,
        port = free_port(),
        db = dir.path().join("cw.db").display(),
        sample = repo_root().join("tests/data/focus/focus_sample_1000.csv").display(),
    );
    std::fs::write(dir.path().join("cw.toml"), text).unwrap();
    let cfg = cloudwarden::config::load(&dir.path().join("cw.toml")).unwrap();
    let t0: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap();
    let clock = Clock::manual(t0);
    let daemon = Daemon::with_clock(cfg, clock.clone()).await.unwrap();
    let first = run(&daemon, &clock, "weekly_report").await;
    assert!(detail(&first).waiting_for_data, "{first:?}");
    // Each look is a minute apart; the last one is at the deadline.
    clock.advance(std::time::Duration::from_secs(3599));
    assert!(detail(&run(&daemon, &clock, "weekly_report").await).waiting_for_data);
    let status = daemon.runtime.status().into_iter().find(|s| s.name == "weekly_report").unwrap();
    assert_eq!(status.next_run, Some(t0 + chrono::Duration::seconds(3600)), "{status:?}");
    clock.advance(std::time::Duration::from_secs(1));
    let built = run(&daemon, &clock, "weekly_report").await;
    assert_eq!(built.outcome, RunOutcome::Success, "{built:?}");
    assert_eq!(detail(&built).delivered, ["files"]);
    // The relative path is taken from the configuration file's directory.
    let out = dir.path().join("out");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("weekly-2026-W49.json")).unwrap()).unwrap();
    assert_eq!(json["week"], "2026-W49");
    assert_eq!(json["freshness"]["missing_days"].as_array().unwrap().len(), 7, "{:#}", json["freshness"]);
    assert!(!json["notes"].as_array().unwrap().is_empty(), "a week without data says so");
    for ext in ["html", "md", "csv"] {
        assert!(out.join(format!("weekly-2026-W49.{ext}")).exists(), "{ext}");
    }
    // No temporary file is left behind.
    let names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}
