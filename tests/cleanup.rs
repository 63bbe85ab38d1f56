//! Cleanup end to end on the moto test-bed, through the real SDK, with time driven by the injected clock:
//! planted resources go through every path (marked, notified, released when tagged, exempted through the
//! API, protected and deny-listed ones never touched, acted on when due, verified by describing them with an
//! independent client, escalated, refused by AWS), dry run makes no mutating call, `approve` mode acts only
//! on approved plans, and the limits and the share guard hold. Every transition is in the audit exactly once.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::{DateTime, Duration, DurationRound, Utc};
use cloudwarden::daemon::Daemon;
use cloudwarden::jobs::cleanup::CleanupDetail;
use cloudwarden::runtime::{Clock, CycleSummary};
use cloudwarden::server::app;
use cloudwarden::store::{AuditRow, Plan, PlanFilter, PlanState, RunOutcome};
use common::channels::{aiosmtpd_python, certs, parts, queued, topic_with_queue, SmtpSink};
use common::{aws_test_env, free_port, repo_root, Moto};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const ACCOUNT: &str = "123456789012";
const APPROVER: &str = "approver-token-0123456789";
const READER: &str = "reader-token-0123456789ab";
const MARK: &str = "cloudwarden:cleanup";

const RULES: &str = r#"
[cleanup]
protect_tag = "cloudwarden:protect"

[cleanup.untagged]
min_days = 0

[cleanup.unattached_volume]
min_days = 0

[cleanup.orphan_snapshot]
min_days = 0

[cleanup.stopped_instance]
enabled = false
"#;

/// The test-bed script: plant, state, tag.
fn bed(moto: &Moto, args: &[&str]) -> Value {
    let root = repo_root();
    let out = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/fixtures/cleanup_bed.py"))
        .args(["--endpoint", &moto.endpoint()])
        .args(args)
        .output()
        .expect("run cleanup_bed.py");
    assert!(out.status.success(), "cleanup_bed.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).expect("cleanup_bed.py prints JSON")
    }
}

fn id(ids: &Value, name: &str) -> String {
    ids[name].as_str().unwrap_or_else(|| panic!("no {name} in {ids}")).to_string()
}

/// A webhook receiver on 127.0.0.1: every JSON body posted to it.
#[derive(Clone, Default)]
struct Hook(Arc<Mutex<Vec<Value>>>);

impl Hook {
    async fn start() -> (Hook, String) {
        let hook = Hook::default();
        let h = hook.clone();
        let router = axum::Router::new().route(
            "/hook/{who}",
            axum::routing::post(
                move |axum::extract::Path(who): axum::extract::Path<String>, body: axum::body::Bytes| {
                    let h = h.clone();
                    async move {
                        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        h.0.lock().unwrap().push(json!({ "who": who, "body": v }));
                        "ok"
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (hook, url)
    }

    fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Setup<'a> {
    mode: &'a str,
    deny: Vec<String>,
    extra: &'a str,
    /// Email to `platform` through this relay (port, CA file), and SNS to `web` on this topic.
    channels: Option<(u16, PathBuf, String)>,
}

fn config(dir: &Path, moto: &Moto, hook: &str, s: &Setup<'_>) -> cloudwarden::config::Config {
    std::fs::write(dir.join("rules.toml"), RULES).unwrap();
    let deny: Vec<String> = s.deny.iter().map(|d| format!("{d:?}")).collect();
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
call_timeout_secs = 5

[collectors.inventory]
regions = ["us-east-1"]

[rules]
files = ["{dir}/rules.toml"]

[cleanup]
mode = "{mode}"
allowed_accounts = ["{ACCOUNT}"]
deny = [{deny}]
{extra}

[cleanup.rules.untagged]
escalate = true
escalation_grace_days = 3

[cleanup.notify]
fallback = "platform"

[cleanup.notify.contacts.platform]
webhook_url = "{hook}/hook/platform"
{email}

[cleanup.notify.contacts.web]
webhook_url = "{hook}/hook/web"
{channels}

[[api.clients]]
name = "alice"
token = "{APPROVER}"
scopes = ["read", "approve"]

[[api.clients]]
name = "dashboards"
token = "{READER}"
"#,
        port = free_port(),
        db = dir.join("cw.db").display(),
        endpoint = moto.endpoint(),
        dir = dir.display(),
        mode = s.mode,
        deny = deny.join(", "),
        extra =
            if s.extra.contains("max_share") { s.extra.to_string() } else { format!("max_share = 1.0\n{}", s.extra) },
        email = if s.channels.is_some() { "email = [\"platform@example.com\"]" } else { "" },
        channels = s.channels.as_ref().map_or(String::new(), |(port, ca, topic)| format!(
            "sns_topic_arn = \"{topic}\"\n\n[cleanup.notify.smtp]\nhost = \"127.0.0.1\"\nport = {port}\n\
             tls = \"starttls\"\nfrom = \"Cloudwarden <cloudwarden@example.com>\"\nca_file = \"{}\"\n",
            ca.display()
        )),
    );
    cloudwarden::config::parse("cleanup-test.toml", &text, &|_| None)
        .unwrap_or_else(|e| panic!("{e}\n--- config ---\n{text}"))
}

struct Bed {
    moto: Moto,
    ids: Value,
    hook: Hook,
    daemon: Daemon,
    clock: Clock,
    cancel: CancellationToken,
    /// The relay `platform` is written to, when the bed has every channel.
    smtp: Option<SmtpSink>,
    _dir: tempfile::TempDir,
}

impl Bed {
    async fn new(mode: &str, extra: &str, deny_address: bool) -> Bed {
        Bed::with_channels(mode, extra, deny_address, None).await
    }

    /// A bed whose contacts have all three channels: `platform` email through aiosmtpd (STARTTLS, trusting
    /// a CA made here) and the webhook, `web` the webhook and an SNS topic with the queue `notices`.
    async fn with_every_channel(mode: &str, extra: &str, deny_address: bool, python: &Path) -> Bed {
        Bed::with_channels(mode, extra, deny_address, Some(python)).await
    }

    async fn with_channels(mode: &str, extra: &str, deny_address: bool, smtp_python: Option<&Path>) -> Bed {
        aws_test_env();
        let moto = Moto::start();
        let ids = bed(&moto, &["plant"]);
        let (hook, url) = Hook::start().await;
        let dir = tempfile::tempdir().unwrap();
        let (smtp, channels) = match smtp_python {
            Some(python) => {
                let certs = certs();
                let ca = dir.path().join("relay-ca.pem");
                std::fs::write(&ca, &certs.ca_pem).unwrap();
                let sink = SmtpSink::start(python, "starttls", &certs, None);
                let topic = topic_with_queue(&moto, "cleanup-notices", "notices");
                let port = sink.port;
                (Some(sink), Some((port, ca, topic)))
            }
            None => (None, None),
        };
        let deny = if deny_address {
            vec![format!("arn:aws:ec2:us-east-1:{ACCOUNT}:elastic-ip/{}", id(&ids, "address_denied"))]
        } else {
            vec![]
        };
        let cfg = config(dir.path(), &moto, &url, &Setup { mode, deny, extra, channels });
        let start = Utc::now().duration_trunc(Duration::minutes(1)).unwrap();
        let clock = Clock::manual(start);
        let daemon = Daemon::with_clock(cfg, clock.clone()).await.unwrap();
        Bed { moto, ids, hook, daemon, clock, cancel: CancellationToken::new(), smtp, _dir: dir }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    async fn run(&self, job: &str) -> CycleSummary {
        let run = self.daemon.run_job(job, self.now(), &self.cancel).await;
        assert!(
            matches!(run.outcome, RunOutcome::Success),
            "{job} at {}: {:?} {:?} {:?}",
            self.now(),
            run.outcome,
            run.error,
            run.failures
        );
        run
    }

    /// Inventory, rules, cleanup at the clock's time; the cleanup run's facts.
    async fn cycle(&self) -> (CycleSummary, CleanupDetail) {
        self.run("inventory").await;
        self.run("rules").await;
        let run = self.run("cleanup").await;
        let detail = run.detail::<CleanupDetail>().expect("cleanup detail").clone();
        (run, detail)
    }

    fn advance_to(&self, t: DateTime<Utc>) {
        assert!(t >= self.now());
        self.clock.set(t);
    }

    fn state(&self) -> Value {
        bed(&self.moto, &["state"])
    }

    async fn plans(&self) -> Vec<Plan> {
        self.daemon.store.plans(&PlanFilter::default()).await.unwrap()
    }

    async fn plan_of(&self, resource: &str, action: &str) -> Plan {
        let plans = self.plans().await;
        plans
            .into_iter()
            .find(|p| p.resource_id == resource && p.action == action)
            .unwrap_or_else(|| panic!("no {action} plan for {resource}"))
    }

    async fn api(&self, method: &str, uri: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let res = app(self.daemon.state.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// `/metrics` lines starting with `prefix`, sorted.
    fn samples(&self, prefix: &str) -> Vec<String> {
        let mut lines: Vec<String> =
            self.daemon.state.metrics().lines().filter(|l| l.starts_with(prefix)).map(str::to_string).collect();
        lines.sort();
        lines
    }

    async fn audit(&self) -> Vec<AuditRow> {
        self.daemon.store.audit(None, None, 100_000).await.unwrap()
    }
}

/// Operations that change something at AWS.
fn mutating(op: &str) -> bool {
    let name = op.split_once(':').map_or(op, |(_, o)| o);
    !["Describe", "List", "Get"].iter().any(|p| name.starts_with(p))
}

/// Every plan's audit rows form one chain (each row starts where the previous one ended), each state change
/// appears once, and the plan's current state is where the chain ends.
fn check_audit(plans: &[Plan], audit: &[AuditRow]) {
    for p in plans {
        let rows: Vec<&AuditRow> = audit.iter().filter(|r| r.plan_id == p.id).collect();
        assert!(!rows.is_empty(), "plan {} has no audit row", p.id);
        assert_eq!(rows[0].from_state, None, "plan {}: the first row creates it", p.id);
        assert_eq!(rows[0].to_state, "candidate");
        let mut changes = HashSet::new();
        for w in rows.windows(2) {
            assert_eq!(w[1].from_state.as_deref(), Some(w[0].to_state.as_str()), "plan {}: {:?}", p.id, rows);
        }
        for r in &rows {
            if r.from_state.as_deref() != Some(r.to_state.as_str()) {
                assert!(changes.insert((r.from_state.clone(), r.to_state.clone())), "plan {}: twice {r:?}", p.id);
            }
        }
        assert_eq!(rows.last().unwrap().to_state, p.state.as_str(), "plan {}", p.id);
        assert!(rows.iter().all(|r| r.actor == "scheduler" || r.actor == "alice"), "{rows:?}");
    }
}

fn tags_of<'a>(state: &'a Value, kind: &str, id: &str) -> &'a serde_json::Map<String, Value> {
    state[kind][id]["tags"].as_object().unwrap_or_else(|| panic!("no {kind} {id} in {state}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_takes_every_path_and_the_audit_shows_each_transition_once() {
    let Some(python) = aiosmtpd_python() else { return };
    let b = Bed::with_every_channel("auto", "", true, &python).await;
    let ids = b.ids.clone();
    let i = |n: &str| id(&ids, n);

    // First evaluation: candidates are not planned before the second one in a row.
    let (_, d) = b.cycle().await;
    assert_eq!(d.planned, 0, "{d:?}");
    assert!(b.plans().await.is_empty());

    // Second: planned, marked, notified. The deny-listed address is refused; the protected volume is no
    // candidate at all, nor are the instances' attached root volumes (untagged, but not safe to delete).
    b.advance_to(b.now() + Duration::minutes(5));
    let marked_at = b.now();
    let (run, d) = b.cycle().await;
    // instances stop/keep/locked, db, volumes orphan/exempt, snapshot, address idle, log group
    assert_eq!((d.planned, d.marked, d.notified), (9, 9, 9), "{d:?}");
    assert!(!d.refused.contains_key("protected"), "a protected resource is no candidate at all: {d:?}");
    assert_eq!(d.refused.get("deny_list"), Some(&1), "{d:?}");
    assert!(run.api_calls.keys().any(|op| op.ends_with("CreateTags")), "{:?}", run.api_calls);
    let due = marked_at + Duration::days(7);
    let state = b.state();
    let expect_mark = |action: &str| format!("{action}@{}", due.format("%Y-%m-%d"));
    assert_eq!(tags_of(&state, "instances", &i("instance_stop"))[MARK], expect_mark("stop"));
    assert_eq!(tags_of(&state, "volumes", &i("volume_orphan"))[MARK], expect_mark("snapshot_delete"));
    assert_eq!(tags_of(&state, "snapshots", &i("snapshot_orphan"))[MARK], expect_mark("delete_snapshot"));
    assert_eq!(tags_of(&state, "addresses", &i("address_idle"))[MARK], expect_mark("release"));
    assert_eq!(tags_of(&state, "log_groups", "/app/noretention")[MARK], expect_mark("set_retention"));
    assert_eq!(tags_of(&state, "dbs", "idle-db")[MARK], expect_mark("stop_db"));
    assert!(!tags_of(&state, "volumes", &i("volume_protected")).contains_key(MARK));
    assert!(!tags_of(&state, "addresses", &i("address_denied")).contains_key(MARK));
    // One digest per owner: the untagged ones go to the fallback contact, the rest to `web`.
    let sent = b.hook.take();
    let who: Vec<&str> = sent.iter().map(|m| m["who"].as_str().unwrap()).collect();
    assert_eq!(who.len(), 2, "{sent:?}");
    assert!(who.contains(&"platform") && who.contains(&"web"), "{who:?}");
    let web = sent.iter().find(|m| m["who"] == "web").unwrap()["body"].to_string();
    for needle in [i("volume_orphan"), i("snapshot_orphan"), i("address_idle"), "/app/noretention".into()] {
        assert!(web.contains(&needle), "{needle} not in {web}");
    }
    assert!(web.contains(&due.format("%Y-%m-%d").to_string()), "{web}");
    // The same digests by email (platform) and SNS (web), read back from the relay and the queue.
    let smtp = b.smtp.as_ref().unwrap();
    assert_eq!(smtp.count(), 1, "one message to platform");
    let mail = smtp.received(1);
    assert_eq!(mail["rcpt_tos"], json!(["platform@example.com"]));
    assert_eq!(mail["tls"], json!(true), "{mail:#}");
    let (text, html) = parts(&mail);
    for needle in [i("instance_stop"), i("instance_keep"), "stop".into(), due.format("%Y-%m-%d").to_string()] {
        assert!(text.contains(&needle) && html.contains(&needle), "{needle} not in the mail:\n{text}");
    }
    assert!(!text.contains(&i("volume_orphan")), "web's volume went to web:\n{text}");
    let sns = queued(&b.moto, "notices");
    assert_eq!(sns.len(), 1, "one message to web's topic: {sns:?}");
    let subject = sns[0]["Subject"].as_str().unwrap();
    assert!(subject.starts_with("[cloudwarden] ") && !subject.contains("FINAL"), "{subject}");
    let message = sns[0]["Message"].as_str().unwrap();
    for needle in [i("volume_orphan"), i("snapshot_orphan"), i("address_idle"), "/app/noretention".into()] {
        assert!(message.contains(&needle), "{needle} not in the SNS message:\n{message}");
    }

    // A reader cannot approve; nobody can act on a plan that does not exist.
    let exempt_plan = b.plan_of(&i("volume_exempt"), "snapshot_delete").await;
    let (status, _) =
        b.api("POST", &format!("/api/v1/cleanup/{}/exempt", exempt_plan.id), READER, Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = b.api("POST", "/api/v1/cleanup/999999/approve", APPROVER, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // During the grace: the owner tags one instance, and one volume is exempted through the API.
    b.advance_to(b.now() + Duration::hours(1));
    bed(&b.moto, &["tag", &i("instance_keep"), "team", "web"]);
    let expires = (b.now() + Duration::days(90)).format("%Y-%m-%d").to_string();
    let (status, body) = b
        .api(
            "POST",
            &format!("/api/v1/cleanup/{}/exempt", exempt_plan.id),
            APPROVER,
            Some(json!({ "reason": "restore test for the audit", "expires": expires })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["released"], json!([exempt_plan.id]));
    let (_, d) = b.cycle().await;
    assert_eq!(d.released, 1, "the tagged instance: {d:?}");
    let state = b.state();
    assert!(!tags_of(&state, "instances", &i("instance_keep")).contains_key(MARK), "mark taken off when released");
    assert!(!tags_of(&state, "volumes", &i("volume_exempt")).contains_key(MARK), "mark taken off when exempted");
    assert_eq!(b.plan_of(&i("instance_keep"), "stop").await.state, PlanState::Released);
    assert_eq!(b.plan_of(&i("volume_exempt"), "snapshot_delete").await.state, PlanState::Released);

    // A day before the due date: the final warning, nothing done.
    b.advance_to(due - Duration::hours(23));
    let (run, d) = b.cycle().await;
    assert_eq!((d.warned, d.acted), (7, 0), "{d:?}");
    assert!(!run.api_calls.keys().any(|op| op.ends_with("StopInstances")));
    let sent = b.hook.take();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|m| m["body"].to_string().to_lowercase().contains("final")), "{sent:?}");
    assert_eq!(smtp.count(), 2, "the final warning to platform");
    let subject = smtp.received(2)["headers"]["subject"].as_str().unwrap().to_string();
    assert!(subject.starts_with("[cloudwarden] FINAL WARNING: "), "{subject}");
    let sns = queued(&b.moto, "notices");
    assert_eq!(sns.len(), 1, "{sns:?}");
    assert!(sns[0]["Subject"].as_str().unwrap().starts_with("[cloudwarden] FINAL WARNING: "), "{sns:?}");

    // Due (and a full day after the final warning): pre-check, act, verify.
    b.advance_to(due + Duration::hours(1) + Duration::minutes(1));
    let (run, d) = b.cycle().await;
    assert_eq!((d.acted, d.done, d.failed), (7, 7, 0), "{d:?} {:?}", run.api_calls);
    let state = b.state();
    assert_eq!(state["instances"][i("instance_stop")]["state"], "stopped");
    assert_eq!(state["instances"][i("instance_locked")]["state"], "stopped");
    assert_eq!(state["instances"][i("instance_keep")]["state"], "running");
    assert!(state["volumes"].get(i("volume_orphan")).is_none(), "deleted");
    assert!(
        state["volumes"].get(i("volume_exempt")).is_some() && state["volumes"].get(i("volume_protected")).is_some()
    );
    let kept: Vec<&Value> =
        state["snapshots"].as_object().unwrap().values().filter(|s| s["volume"] == json!(i("volume_orphan"))).collect();
    assert_eq!(kept.len(), 1, "exactly one snapshot before the deletion: {kept:?}");
    let plan = b.plan_of(&i("volume_orphan"), "snapshot_delete").await;
    assert_eq!(kept[0]["tags"]["cloudwarden:plan"], json!(plan.token));
    assert!(plan.snapshot_id.is_some());
    assert!(state["snapshots"].get(i("snapshot_orphan")).is_none(), "deleted");
    assert!(state["addresses"].get(i("address_idle")).is_none(), "released");
    assert!(state["addresses"].get(i("address_denied")).is_some(), "deny-listed: never touched");
    assert_eq!(state["log_groups"]["/app/noretention"]["retention"], 30);
    assert_eq!(state["dbs"]["idle-db"]["state"], "stopped");
    // Savings of what was cleaned up, per account.
    let savings = b.samples("cloudwarden_cleanup_savings_realized_usd{");
    assert!(savings.iter().any(|l| l.contains("period=\"monthly\"")), "{savings:?}");

    // The escalations (terminate, delete with a final snapshot) go round the same way, 3 days later.
    b.advance_to(b.now() + Duration::minutes(5));
    let (_, d) = b.cycle().await;
    assert_eq!((d.marked, d.notified), (3, 3), "{d:?}");
    let escalation_due = b.plan_of(&i("instance_stop"), "terminate").await.due;
    assert_eq!(
        tags_of(&b.state(), "instances", &i("instance_stop"))[MARK],
        format!("terminate@{}", escalation_due.format("%Y-%m-%d"))
    );
    b.advance_to(escalation_due - Duration::hours(23));
    let (_, d) = b.cycle().await;
    assert_eq!(d.warned, 3, "{d:?}");
    b.advance_to(escalation_due + Duration::hours(2));
    let (_, d) = b.cycle().await;
    assert_eq!((d.acted, d.done, d.failed), (3, 2, 1), "{d:?}");
    let state = b.state();
    assert!(
        state["instances"].get(i("instance_stop")).is_none_or(|s| s["state"] == "terminated"),
        "{}",
        state["instances"]
    );
    assert_eq!(state["instances"][i("instance_locked")]["state"], "stopped", "termination protection holds");
    assert!(state["dbs"].get("idle-db").is_none_or(|d| d["state"] == "deleting"));
    assert!(state["db_snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s.as_str().unwrap().starts_with("cloudwarden-final-idle-db")));
    let refused = b.plan_of(&i("instance_locked"), "terminate").await;
    assert_eq!(refused.state, PlanState::Failed);
    assert_eq!(refused.error_code.as_deref(), Some("OperationNotPermitted"), "{refused:?}");
    let failed = b.samples("cloudwarden_cleanup_actions_total{");
    assert!(
        failed
            .iter()
            .any(|l| l.contains("action=\"terminate\"") && l.contains("outcome=\"failed\"") && l.ends_with(" 1")),
        "{failed:?}"
    );

    // Lifecycle counts and the audit.
    let plans = b.plans().await;
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &plans {
        *by_state.entry(p.state.as_str()).or_default() += 1;
    }
    eprintln!("lifecycle: {by_state:?}");
    for p in &plans {
        eprintln!("  plan {} {} {} {} {}", p.id, p.state, p.action, p.resource_id, p.reason);
    }
    assert_eq!(by_state.get("done"), Some(&9));
    assert_eq!(by_state.get("failed"), Some(&1));
    assert_eq!(by_state.get("released"), Some(&2));
    // The snapshot taken before the volume's deletion is an orphan now, but cleanup never plans its own
    // backups; nothing else is planned.
    assert_eq!(plans.len(), 12, "{plans:?}");
    check_audit(&plans, &b.audit().await);
    let (status, body) = b.api("GET", "/api/v1/audit?limit=5", READER, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["rows"].as_array().unwrap().len(), 5);
    assert!(body["next_after"].is_number());
    // The database refuses to change the audit trail.
    let pool = b.daemon.store.pool();
    assert!(sqlx::query("UPDATE cleanup_audit SET actor = 'mallory'").execute(pool).await.is_err());
    assert!(sqlx::query("DELETE FROM cleanup_audit").execute(pool).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_records_plans_and_makes_no_mutating_call() {
    let b = Bed::new("dry-run", "", false).await;
    let mut calls: BTreeMap<String, u64> = BTreeMap::new();
    for minutes in [0, 5, 10] {
        b.advance_to(b.now() + Duration::minutes(minutes));
        let (run, _) = b.cycle().await;
        for (op, n) in run.api_calls {
            *calls.entry(op).or_default() += n;
        }
    }
    // Even far past any due date.
    b.advance_to(b.now() + Duration::days(30));
    let (run, _) = b.cycle().await;
    for (op, n) in run.api_calls {
        *calls.entry(op).or_default() += n;
    }
    eprintln!("dry-run cleanup calls: {calls:?}");
    let mutating: Vec<&String> = calls.keys().filter(|op| mutating(op)).collect();
    assert!(mutating.is_empty(), "mutating calls in dry run: {mutating:?}");
    let plans = b.plans().await;
    assert_eq!(plans.len(), 10, "every candidate's plan is recorded: {plans:?}");
    assert!(plans.iter().all(|p| p.state == PlanState::Candidate));
    let state = b.state().to_string();
    assert!(!state.contains(MARK), "nothing marked: {state}");
    assert!(b.hook.take().is_empty(), "nobody told");
    let (text, lines) = cloudwarden::cleanup_cli::plan(&b.daemon.config, b.now()).await.unwrap();
    assert_eq!(lines.len(), 10);
    assert!(text.contains("dry run"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_mode_acts_only_on_approved_plans_within_the_limits() {
    let b = Bed::new("approve", "max_actions_per_run = 1", true).await;
    let ids = b.ids.clone();
    let i = |n: &str| id(&ids, n);
    b.cycle().await;
    b.advance_to(b.now() + Duration::minutes(5));
    b.cycle().await;
    let volume = b.plan_of(&i("volume_orphan"), "snapshot_delete").await;
    let address = b.plan_of(&i("address_idle"), "release").await;
    let snapshot = b.plan_of(&i("snapshot_orphan"), "delete_snapshot").await;
    // Past due and warned, but nothing approved: nothing happens, and the CLI says why.
    b.advance_to(volume.due - Duration::hours(23));
    b.cycle().await;
    b.advance_to(volume.due + Duration::hours(2));
    let (run, d) = b.cycle().await;
    assert_eq!(d.acted, 0, "{d:?}");
    assert!(!run.api_calls.keys().any(|op| op.ends_with("DeleteVolume") || op.ends_with("ReleaseAddress")));
    let (text, _) = cloudwarden::cleanup_cli::plan(&b.daemon.config, b.now()).await.unwrap();
    assert!(text.contains(&format!("/api/v1/cleanup/{}/approve", volume.id)), "{text}");

    // Approve two and reject one; one action per run.
    for p in [&volume, &address] {
        let (status, body) =
            b.api("POST", &format!("/api/v1/cleanup/{}/approve", p.id), APPROVER, Some(json!({"comment": "ok"}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["plan"]["state"], "approved");
        assert_eq!(body["plan"]["approved_by"], "alice");
    }
    let (status, body) = b
        .api(
            "POST",
            &format!("/api/v1/cleanup/{}/reject", snapshot.id),
            APPROVER,
            Some(json!({"reason": "audit hold"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = b.api("POST", &format!("/api/v1/cleanup/{}/approve", snapshot.id), APPROVER, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Shutdown during a run: the run stops between plans, acts on nothing, and says it was cancelled.
    let stop = CancellationToken::new();
    stop.cancel();
    let run = b.daemon.run_job("cleanup", b.now(), &stop).await;
    assert_eq!(run.outcome, RunOutcome::Cancelled, "{run:?}");
    assert!(!run.api_calls.keys().any(|op| mutating(op)), "{:?}", run.api_calls);
    assert_eq!(b.plan_of(&i("volume_orphan"), "snapshot_delete").await.state, PlanState::Approved);

    let (_, d) = b.cycle().await;
    assert_eq!((d.acted, d.done), (1, 1), "{d:?}");
    assert_eq!(d.refused.get("per_run_limit"), Some(&1), "{d:?}");
    b.advance_to(b.now() + Duration::minutes(5));
    let (_, d) = b.cycle().await;
    assert_eq!((d.acted, d.done), (1, 1), "{d:?}");
    let state = b.state();
    assert!(state["volumes"].get(i("volume_orphan")).is_none());
    assert!(state["addresses"].get(i("address_idle")).is_none());
    assert!(state["snapshots"].get(i("snapshot_orphan")).is_some(), "rejected: kept");
    assert!(!tags_of(&state, "snapshots", &i("snapshot_orphan")).contains_key(MARK), "rejected: mark taken off");
    assert!(state["instances"][i("instance_stop")]["state"] == "running", "not approved: untouched");
    let plans = b.plans().await;
    check_audit(&plans, &b.audit().await);
    let (status, body) = b.api("GET", "/api/v1/cleanup?state=done", READER, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["plans"].as_array().unwrap().len(), 2, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_refuses_an_account_where_one_run_would_act_on_too_much() {
    let b = Bed::new("auto", "max_share = 0.25", false).await;
    b.cycle().await;
    b.advance_to(b.now() + Duration::minutes(5));
    b.cycle().await;
    let due = b.plans().await.iter().map(|p| p.due).max().unwrap();
    b.advance_to(due - Duration::hours(23));
    b.cycle().await;
    b.advance_to(due + Duration::hours(2));
    let (run, d) = b.cycle().await;
    // 10 due of 14 live resources: far more than a quarter.
    assert_eq!(d.acted, 0, "{d:?}");
    assert_eq!(d.refused.get("share"), Some(&10), "{d:?}");
    assert!(!run.api_calls.keys().any(|op| mutating(op) && !op.ends_with("Tags")), "{:?}", run.api_calls);
    assert!(b.samples("cloudwarden_cleanup_refused{reason=\"share\"}").iter().any(|l| l.ends_with(" 10")));
}
