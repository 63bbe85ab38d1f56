//! Shared test harness: the moto test-bed (started per test binary on its own port, seeded once), the
//! seed's truth file, configuration files, and the PostgreSQL URL for store tests.
#![allow(dead_code)]

pub mod channels;
pub mod pg;
pub mod process;
pub mod proxy;
pub mod soak;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A moto server of our own, killed when dropped.
pub struct Moto {
    pub port: u16,
    child: Child,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub fn start() -> Moto {
        let root = repo_root();
        let bin = root.join(".venv/bin/moto_server");
        assert!(
            bin.exists(),
            "the moto test-bed is not installed: run `scripts/testbed.sh install` (scripts/test.sh does it for you)"
        );
        let port = free_port();
        let log = std::fs::File::create(std::env::temp_dir().join(format!("cloudwarden-moto-{port}.log"))).unwrap();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start moto_server");
        let moto = Moto { port, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel but never answered.
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    /// Runs the seed script against this server and returns its truth file.
    pub fn seed(&self, scale: f64, dir: &Path) -> Truth {
        self.seed_with(scale, dir, &[])
    }

    /// [`Moto::seed`] with more arguments for the seed script (e.g. `--budget-rules PATH`).
    pub fn seed_with(&self, scale: f64, dir: &Path, extra: &[&str]) -> Truth {
        let truth_path = dir.join("truth.json");
        let root = repo_root();
        let status = Command::new(root.join(".venv/bin/python"))
            .arg(root.join("scripts/seed.py"))
            .args(["--endpoint", &self.endpoint(), "--truth"])
            .arg(&truth_path)
            .args(["--scale", &scale.to_string()])
            .args(extra)
            .status()
            .expect("run the seed script");
        assert!(status.success(), "seeding moto failed");
        let text = std::fs::read_to_string(&truth_path).unwrap();
        serde_json::from_str(&text).expect("truth file parses")
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill -{sig} {pid}");
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TruthAccount {
    pub id: String,
    pub name: String,
    pub role_arn: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TruthResource {
    pub arn: String,
    pub account: String,
    pub region: String,
    pub resource_type: String,
    pub tags: BTreeMap<String, String>,
    pub untagged: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct TruthCount {
    pub account: String,
    pub region: String,
    pub resource_type: String,
    pub total: i64,
    pub untagged: i64,
}

/// What the seed script created, as it wrote it down.
#[derive(Debug, Clone, Deserialize)]
pub struct Truth {
    pub accounts: Vec<TruthAccount>,
    pub regions: Vec<String>,
    pub resources: Vec<TruthResource>,
    pub counts: Vec<TruthCount>,
}

impl Truth {
    /// A configuration for the daemon against this test-bed, every account and region of the truth.
    pub fn config(&self, endpoint: &str, db_url: &str, extra_inventory: &str) -> String {
        let mut s = format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n\n[database]\nurl = \"{db_url}\"\ncreate_if_missing = true\n\n[aws]\nendpoint_url = \"{endpoint}\"\nmax_attempts = 2\ncall_timeout_secs = 3\nconnect_timeout_secs = 2\n\n",
            free_port()
        );
        for a in &self.accounts {
            s.push_str(&format!("[[accounts]]\nname = \"{}\"\n", a.name));
            if let Some(r) = &a.role_arn {
                s.push_str(&format!("role_arn = \"{r}\"\n"));
            }
            s.push('\n');
        }
        let regions: Vec<String> = self.regions.iter().map(|r| format!("\"{r}\"")).collect();
        s.push_str(&format!("[collectors.inventory]\nregions = [{}]\n{extra_inventory}\n", regions.join(", ")));
        s
    }
}

/// The environment the SDK reads: fake credentials (moto accepts any) and no profile files.
pub fn aws_test_env() {
    // Set once per process before any client is built; every test in a binary sets the same values.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_CONFIG_FILE", "/dev/null");
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    std::env::remove_var("AWS_PROFILE");
    std::env::remove_var("AWS_ENDPOINT_URL");
}

/// The PostgreSQL server for store tests: `CLOUDWARDEN_TEST_POSTGRES_URL`. Outside CI the tests say they
/// are skipped when it is unset; in CI (`CI=true`) it must be set.
pub fn postgres_url() -> Option<String> {
    match std::env::var("CLOUDWARDEN_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but CLOUDWARDEN_TEST_POSTGRES_URL is unset: PostgreSQL tests must run in CI"
            );
            eprintln!("SKIPPED: PostgreSQL store tests (set CLOUDWARDEN_TEST_POSTGRES_URL to run them)");
            None
        }
    }
}

/// Whether the tests run as root (a tmpfs can be mounted; PostgreSQL must be run as another user).
pub fn is_root() -> bool {
    // SAFETY: no arguments, no state.
    unsafe { libc::geteuid() == 0 }
}

/// Waits for `cond` to hold, checking every 50 ms, failing after `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs JSON to the moto server (its `/moto-api/...` control endpoints).
pub async fn moto_post(endpoint: &str, path: &str, body: &serde_json::Value) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = axum::http::Request::post(format!("{endpoint}{path}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let res = client.request(req).await.expect("moto answers");
    let status = res.status();
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert!(status.is_success(), "POST {path}: {status} {}", String::from_utf8_lossy(&text));
}

/// One day of a Cost Explorer answer: the day and its (key, unblended, amortized) amounts.
pub type CeDay = (String, Vec<(String, String, String)>);

/// A DAILY GetCostAndUsage response grouped by `group` (`SERVICE`, `LINKED_ACCOUNT`): for each day, the
/// (key, unblended, amortized) amounts as decimal strings.
pub fn ce_result(group: &str, days: &[CeDay], next_page: Option<&str>) -> serde_json::Value {
    let results: Vec<serde_json::Value> = days
        .iter()
        .map(|(day, groups)| {
            let end = (chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap() + chrono::Days::new(1)).to_string();
            serde_json::json!({
                "TimePeriod": {"Start": day, "End": end},
                "Total": {},
                "Groups": groups.iter().map(|(k, u, a)| serde_json::json!({
                    "Keys": [k],
                    "Metrics": {"UnblendedCost": {"Amount": u, "Unit": "USD"}, "AmortizedCost": {"Amount": a, "Unit": "USD"}}
                })).collect::<Vec<_>>(),
                "Estimated": false
            })
        })
        .collect();
    let mut v = serde_json::json!({
        "GroupDefinitions": [{"Type": "DIMENSION", "Key": group}],
        "ResultsByTime": results,
        "DimensionValueAttributes": []
    });
    if let Some(t) = next_page {
        v["NextPageToken"] = serde_json::json!(t);
    }
    v
}

/// A warning finding of `kind` about the EBS volume `vol-{id}` of account 111111111111 in eu-west-1.
pub fn volume_finding(kind: rules::finding::FindingKind, id: &str) -> rules::finding::Finding {
    rules::finding::Finding {
        kind,
        rule: "rule".into(),
        subject: format!("arn:aws:ec2:eu-west-1:111111111111:volume/vol-{id}").into(),
        account_id: Some("111111111111".into()),
        region: Some("eu-west-1".into()),
        resource_type: Some("ec2:volume".into()),
        severity: rules::finding::Severity::Warning,
        message: "a finding".into(),
        monthly_usd: None,
        details: serde_json::json!({}).into(),
    }
}

/// Holds tokio's paused clock still while it lives. Tokio moves a paused clock by itself to the next timer
/// whenever the runtime waits for nothing else, but not while a blocking task runs; a SQLite query or an HTTP
/// call is such a wait, and the jump would fire schedules and timeouts early. This guard keeps one blocking
/// task parked, so the clock moves only when the test calls [`advance_to`] (or `tokio::time::advance`).
pub struct TimeHold(Option<std::sync::mpsc::Sender<()>>);

/// Starts holding tokio's clock still; call it first in a `#[tokio::test(start_paused = true)]`.
pub fn hold_time() -> TimeHold {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = rx.recv();
    });
    TimeHold(Some(tx))
}

impl Drop for TimeHold {
    fn drop(&mut self) {
        // Ends the parked task, so the runtime can shut down.
        self.0.take();
    }
}

/// Moves tokio's paused clock, and so `clock`, forward to `t` (never backwards).
pub async fn advance_to(clock: &cloudwarden::runtime::Clock, t: chrono::DateTime<chrono::Utc>) {
    if let Ok(d) = (t - clock.now()).to_std() {
        tokio::time::advance(d).await;
    }
}
