//! The rules engine in the daemon: findings kept with their history in the store (SQLite and PostgreSQL),
//! the `[rules]` and `[api]` sections, the `rules` job over resources written through the store's own API,
//! what `/metrics` shows of an evaluation, and `GET /api/v1/findings` with its bearer token.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::{DateTime, Duration, Utc};
use cloudwarden::config::ApiToken;
use cloudwarden::daemon::Daemon;
use cloudwarden::runtime::Clock;
use cloudwarden::server::app;
use cloudwarden::store::{FindingFilter, RunOutcome, Store};
use collector::{Details, InventoryReport, Resource, Scope};
use http_body_util::BodyExt;
use rules::finding::{Finding, FindingKind, Severity};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const A: &str = "111111111111";

fn finding(kind: FindingKind, rule: &str, subject: &str, message: &str) -> Finding {
    Finding {
        kind,
        rule: rule.into(),
        subject: subject.into(),
        account_id: Some(A.into()),
        region: Some("eu-west-1".into()),
        resource_type: Some("ec2:volume".into()),
        severity: Severity::Warning,
        message: message.into(),
        monthly_usd: Some("12.50".parse().unwrap()),
        details: serde_json::json!({ "missing": ["team"] }).into(),
    }
}

/// Opening, refreshing, resolving and re-opening findings; other kinds untouched; counts.
async fn findings_suite(url: &str) {
    let store = Store::connect(url, 2).await.unwrap();
    let t1: DateTime<Utc> = "2026-11-01T10:00:00Z".parse().unwrap();
    let (t2, t3, t4) = (t1 + Duration::minutes(5), t1 + Duration::minutes(10), t1 + Duration::minutes(15));
    let tagging = [FindingKind::Tagging];
    let a = finding(FindingKind::Tagging, "ownership", "arn:a", "missing team");
    let b = finding(FindingKind::Tagging, "ownership", "arn:b", "missing team");
    let c = finding(FindingKind::Cleanup, "unattached_volume", "arn:a", "unattached for 9 days");

    let w = store
        .record_findings(
            &[FindingKind::Tagging, FindingKind::Cleanup],
            &[a.clone(), b.clone(), c.clone(), a.clone()],
            t1,
        )
        .await
        .unwrap();
    assert_eq!((w.opened, w.refreshed, w.resolved), (3, 0, 0));

    // Produced again with a new message: first sighting kept, the rest refreshed. `b` is resolved; the
    // cleanup finding is of a kind not evaluated this time and stays open.
    let mut a2 = a.clone();
    a2.message = "missing team and env".into();
    a2.severity = Severity::Critical;
    a2.monthly_usd = None;
    let w = store.record_findings(&tagging, &[a2.clone()], t2).await.unwrap();
    assert_eq!((w.opened, w.refreshed, w.resolved), (0, 1, 1));
    let open = store.findings(FindingFilter::default()).await.unwrap();
    let got: Vec<_> = open.iter().map(|f| (f.kind, f.subject.as_str(), f.first_seen, f.last_seen)).collect();
    assert_eq!(got, [(FindingKind::Tagging, "arn:a", t1, t2), (FindingKind::Cleanup, "arn:a", t1, t1)]);
    let fa = &open[0];
    assert_eq!((fa.message.as_str(), fa.severity, fa.monthly_usd), ("missing team and env", Severity::Critical, None));
    assert_eq!(fa.details, serde_json::json!({ "missing": ["team"] }));
    assert_eq!(open[1].monthly_usd, Some("12.50".parse().unwrap()));
    assert_eq!(open[1].monthly_usd.unwrap().to_string(), "12.50");

    // `b` comes back: a new row with a new first sighting; the resolved row stays.
    let w = store.record_findings(&tagging, &[a2.clone(), b.clone()], t3).await.unwrap();
    assert_eq!((w.opened, w.refreshed, w.resolved), (1, 1, 0));
    let all = store.findings(FindingFilter { kind: Some(FindingKind::Tagging), include_resolved: true }).await.unwrap();
    let got: Vec<_> = all.iter().map(|f| (f.subject.as_str(), f.first_seen, f.last_seen, f.resolved_at)).collect();
    assert_eq!(got, [("arn:a", t1, t3, None), ("arn:b", t1, t1, Some(t2)), ("arn:b", t3, t3, None)]);
    let only_open =
        store.findings(FindingFilter { kind: Some(FindingKind::Tagging), include_resolved: false }).await.unwrap();
    assert_eq!(only_open.len(), 2);

    let counts: Vec<_> =
        store.finding_counts().await.unwrap().into_iter().map(|c| (c.kind, c.severity, c.open)).collect();
    assert_eq!(
        counts,
        [
            (FindingKind::Tagging, Severity::Warning, 1),
            (FindingKind::Tagging, Severity::Critical, 1),
            (FindingKind::Cleanup, Severity::Warning, 1),
        ]
    );

    // An evaluation producing nothing resolves every open finding of its kinds, in chunks.
    let many: Vec<Finding> = (0..1300)
        .map(|i| finding(FindingKind::Drift, "unmanaged", &format!("arn:{i:04}"), "not in any state"))
        .collect();
    let w = store.record_findings(&[FindingKind::Drift], &many, t3).await.unwrap();
    assert_eq!(w.opened, 1300);
    let w = store.record_findings(&[FindingKind::Drift], &[], t4).await.unwrap();
    assert_eq!(w.resolved, 1300);
    let drift =
        store.findings(FindingFilter { kind: Some(FindingKind::Drift), include_resolved: false }).await.unwrap();
    assert!(drift.is_empty());

    // Scopes left alone (an account and region that could not be read) keep their open findings.
    let mut here = finding(FindingKind::MetricAnomaly, "metric_anomaly", "s1", "spike");
    let mut there = here.clone();
    here.region = Some("us-east-1".into());
    there.subject = "s2".into();
    let metric = [FindingKind::MetricAnomaly];
    let w = store.record_findings(&metric, &[here.clone(), there.clone()], t3).await.unwrap();
    assert_eq!(w.opened, 2);
    let left_alone = [(A.to_string(), "eu-west-1".to_string())];
    let w = store.record_findings_except(&metric, &left_alone, &[], t4).await.unwrap();
    assert_eq!((w.opened, w.refreshed, w.resolved), (0, 0, 1));
    let w = store.record_findings_except(&metric, &left_alone, &[there.clone()], t4).await.unwrap();
    assert_eq!((w.opened, w.refreshed, w.resolved), (0, 1, 0));
    let open: Vec<_> = store
        .findings(FindingFilter { kind: Some(FindingKind::MetricAnomaly), include_resolved: false })
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.subject)
        .collect();
    assert_eq!(open, ["s2"]);
    store.close().await;
}

#[tokio::test]
async fn sqlite_findings() {
    let dir = tempfile::tempdir().unwrap();
    findings_suite(&format!("sqlite://{}", dir.path().join("cw.db").display())).await;
}

#[tokio::test]
async fn postgres_findings() {
    let Some(db) = common::pg::TempDatabase::create("findings").await else { return };
    findings_suite(&db.url).await;
    db.drop().await;
}

const TOKEN: &str = "s3cret-token-0123456789";

fn resource(id: &str, resource_type: &str, tags: &[(&str, &str)], details: Details) -> Resource {
    let kind = resource_type.split_once(':').map_or("x", |(_, k)| k);
    Resource {
        arn: format!("arn:aws:ec2:eu-west-1:{A}:{kind}/{id}"),
        resource_type: resource_type.into(),
        account_id: A.into(),
        region: "eu-west-1".into(),
        id: id.into(),
        name: None,
        state: Some("available".into()),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        created_at: None,
        details,
    }
}

fn volume(tags: &[(&str, &str)], attached: &[&str]) -> Resource {
    let attached_instance_ids = attached.iter().map(|s| s.to_string()).collect();
    resource(
        "vol-1",
        "ec2:volume",
        tags,
        Details::Volume { size_gib: Some(100), volume_type: Some("gp3".into()), attached_instance_ids },
    )
}

fn instance() -> Resource {
    let details = Details::Instance { instance_type: Some("t3.micro".into()), stopped_at: None, volume_ids: vec![] };
    resource("i-1", "ec2:instance", &[("team", "web")], details)
}

async fn record(store: &Store, resources: Vec<Resource>, at: DateTime<Utc>) {
    let scopes = ["ec2:volume", "ec2:instance"]
        .map(|t| Scope { account_id: A.into(), region: Some("eu-west-1".into()), resource_type: t.into() })
        .to_vec();
    let report = InventoryReport {
        resources,
        complete_scopes: scopes,
        failures: vec![],
        accounts: vec![("main".into(), A.into())],
        tagging_complete: vec![],
    };
    store.record_inventory(&report, &BTreeMap::from([("main".to_string(), None)]), at).await.unwrap();
}

const RULES: &str = r#"
[[tagging]]
name = "ownership"
resource_types = ["ec2:*"]
required_keys = ["team"]

[[budgets]]
name = "organisation"
period = "month"
amount_usd = 1000

[cleanup.unattached_volume]
min_days = 0
"#;

fn daemon_config(dir: &Path) -> cloudwarden::config::Config {
    let text = format!(
        "[database]\nurl = \"sqlite://{}\"\ncreate_if_missing = true\n\n[rules]\nfiles = [\"{}/rules/*.toml\"]\ninterval_secs = 60\n\n[api]\ntokens = [\"${{CW_TOKEN}}\"]\n",
        dir.join("cw.db").display(),
        dir.display()
    );
    cloudwarden::config::parse("t.toml", &text, &|v| (v == "CW_TOKEN").then(|| TOKEN.to_string())).unwrap()
}

async fn get(
    state: &cloudwarden::server::AppState,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, Option<String>, String) {
    let mut req = Request::get(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let res = app(state.clone()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let challenge = res.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_string());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, challenge, String::from_utf8(body.to_vec()).unwrap())
}

/// The `/metrics` lines that start with `prefix`, sorted (a family's series come in no fixed order).
async fn samples(daemon: &Daemon, prefix: &str) -> Vec<String> {
    let (status, _, body) = get(&daemon.state, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let mut lines: Vec<String> = body.lines().filter(|l| l.starts_with(prefix)).map(str::to_string).collect();
    lines.sort();
    lines
}

/// (kind, rule, subject, first seen, last seen, resolved at) of every stored finding.
async fn stored(
    store: &Store,
) -> Vec<(FindingKind, String, String, DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>)> {
    let all = store.findings(FindingFilter { kind: None, include_resolved: true }).await.unwrap();
    all.into_iter().map(|f| (f.kind, f.rule, f.subject, f.first_seen, f.last_seen, f.resolved_at)).collect()
}

#[tokio::test]
async fn the_rules_job_keeps_findings_with_their_history_and_feeds_metrics_and_the_api() {
    common::aws_test_env();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/main.toml"), RULES).unwrap();
    let daemon = Daemon::new(daemon_config(dir.path())).await.unwrap();
    assert!(daemon.jobs().contains(&"rules"), "rules job scheduled");
    let cancel = CancellationToken::new();

    let t0: DateTime<Utc> = "2026-01-20T08:00:00Z".parse().unwrap();
    let (t1, t2, t3) = (t0 + Duration::hours(1), t0 + Duration::hours(2), t0 + Duration::hours(3));
    record(&daemon.store, vec![volume(&[], &[]), instance()], t0).await;

    // First evaluation: the untagged, unattached volume is a tagging and a cleanup finding.
    assert!(!daemon.state.is_ready());
    let run = daemon.run_job("rules", t1, &cancel).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.error);
    // No collector is configured: the evaluation makes the daemon ready.
    assert!(daemon.state.is_ready());
    let detail = run.detail::<cloudwarden::jobs::rules::RulesDetail>().unwrap();
    assert_eq!((detail.rule_files, detail.resources, detail.findings, detail.opened), (1, 2, 2, 2));
    let vol = format!("arn:aws:ec2:eu-west-1:{A}:volume/vol-1");
    let want = |last: DateTime<Utc>, resolved: Option<DateTime<Utc>>| {
        vec![
            (FindingKind::Tagging, "ownership".to_string(), vol.clone(), t1, last, resolved),
            (FindingKind::Cleanup, "unattached_volume".to_string(), vol.clone(), t1, last, resolved),
        ]
    };
    assert_eq!(stored(&daemon.store).await, want(t1, None));
    assert_eq!(
        samples(&daemon, "cloudwarden_tag_compliance_ratio").await,
        [
            format!(r#"cloudwarden_tag_compliance_ratio{{account="{A}",resource_type="ec2:instance"}} 1.0"#),
            format!(r#"cloudwarden_tag_compliance_ratio{{account="{A}",resource_type="ec2:volume"}} 0.0"#),
        ]
    );
    let findings = samples(&daemon, "cloudwarden_findings{").await;
    assert_eq!(findings.len(), 18, "{findings:?}");
    assert!(
        findings.contains(&r#"cloudwarden_findings{kind="tagging",severity="warning"} 1"#.to_string()),
        "{findings:?}"
    );
    assert!(
        findings.contains(&r#"cloudwarden_findings{kind="drift",severity="warning"} 0"#.to_string()),
        "{findings:?}"
    );
    assert!(samples(&daemon, "cloudwarden_cleanup_candidates{")
        .await
        .contains(&r#"cloudwarden_cleanup_candidates{rule="unattached_volume"} 1"#.to_string()));
    // 100 GiB of gp3 at the default list price of 0.08 USD per GiB-month.
    assert!(samples(&daemon, "cloudwarden_cleanup_potential_savings_usd{")
        .await
        .contains(&r#"cloudwarden_cleanup_potential_savings_usd{rule="unattached_volume"} 8.0"#.to_string()));
    assert_eq!(
        samples(&daemon, "cloudwarden_budget_used_ratio").await,
        [r#"cloudwarden_budget_used_ratio{budget="organisation"} 0.0"#]
    );
    assert_eq!(samples(&daemon, "cloudwarden_budget_forecast_ratio").await.len(), 1);
    // No Terraform state: drift is not evaluated, and has no series.
    assert!(samples(&daemon, "cloudwarden_drift_resources").await.is_empty());

    // Second evaluation: same findings, first sighting kept.
    let run = daemon.run_job("rules", t2, &cancel).await;
    assert_eq!(
        (run.outcome, run.detail::<cloudwarden::jobs::rules::RulesDetail>().unwrap().refreshed),
        (RunOutcome::Success, 2)
    );
    assert_eq!(stored(&daemon.store).await, want(t2, None));

    // The API: token required, kinds filtered, resolved ones on request.
    let state = &daemon.state;
    let (status, challenge, body) = get(state, "/api/v1/findings", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.unwrap().starts_with("Bearer"));
    assert!(body.contains("\"error\""), "{body}");
    let (status, challenge, body) = get(state, "/api/v1/findings", Some("s3cret-token-0123456788")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.unwrap().starts_with("Bearer"));
    assert!(!body.contains(TOKEN));
    let (status, _, body) = get(state, "/api/v1/findings", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(page["next_cursor"].is_null(), "one page: {body}");
    let mut list: Vec<serde_json::Value> = page["findings"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    // Pages are in id order; this test reads them by kind.
    list.sort_by_key(|f| f["kind"] != "tagging");
    let tagging = &list[0];
    assert_eq!(tagging["kind"], "tagging");
    assert_eq!(tagging["rule"], "ownership");
    assert_eq!(tagging["subject"], vol.as_str());
    assert_eq!(tagging["account"], A);
    assert_eq!(tagging["region"], "eu-west-1");
    assert_eq!(tagging["resource_type"], "ec2:volume");
    assert_eq!(tagging["severity"], "warning");
    assert_eq!(tagging["first_seen"], "2026-01-20T09:00:00Z");
    assert_eq!(tagging["last_seen"], "2026-01-20T10:00:00Z");
    assert!(tagging["resolved_at"].is_null());
    assert!(tagging["age_secs"].as_i64().unwrap() > 0);
    assert!(tagging["message"].as_str().unwrap().contains("team"), "{tagging}");
    assert!(tagging["details"].is_object(), "{tagging}");
    let saving: rust_decimal::Decimal = list[1]["monthly_usd"].as_str().unwrap().parse().unwrap();
    assert_eq!(saving, rust_decimal::Decimal::new(8, 0), "{}", list[1]);
    let (status, _, body) = get(state, "/api/v1/findings?kind=cleanup", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = page["findings"].as_array().unwrap();
    assert_eq!(list.iter().map(|f| f["kind"].as_str().unwrap()).collect::<Vec<_>>(), ["cleanup"]);
    let (status, _, body) = get(state, "/api/v1/findings?kind=tagz", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(error["error"].as_str().unwrap().starts_with("unknown kind \"tagz\": expected one of tagging, "), "{body}");
    let (status, _, body) = get(state, "/api/v1/findings?include_resolved=maybe", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Authentication comes before parameters.
    let (status, _, _) = get(state, "/api/v1/findings?kind=tagz", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The volume is tagged and attached: both findings resolve.
    record(&daemon.store, vec![volume(&[("team", "data")], &["i-1"]), instance()], t2 + Duration::minutes(1)).await;
    let run = daemon.run_job("rules", t3, &cancel).await;
    assert_eq!(
        (run.outcome, run.detail::<cloudwarden::jobs::rules::RulesDetail>().unwrap().resolved),
        (RunOutcome::Success, 2)
    );
    assert_eq!(stored(&daemon.store).await, want(t2, Some(t3)));
    assert!(samples(&daemon, "cloudwarden_findings{").await.iter().all(|l| l.ends_with(" 0")));
    assert!(samples(&daemon, "cloudwarden_tag_compliance_ratio").await.iter().all(|l| l.ends_with(" 1.0")));
    let (_, _, body) = get(state, "/api/v1/findings", Some(TOKEN)).await;
    assert_eq!(body, r#"{"findings":[],"next_cursor":null}"#);
    let (_, _, body) = get(state, "/api/v1/findings?kind=tagging&include_resolved=true", Some(TOKEN)).await;
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = page["findings"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["resolved_at"], "2026-01-20T11:00:00Z");
    assert_eq!(list[0]["age_secs"], 7200);

    // An invalid rule file at run time fails the run and keeps the findings and the metrics.
    let metrics_before = daemon.state.metrics();
    let findings_before = stored(&daemon.store).await;
    std::fs::write(dir.path().join("rules/main.toml"), "[[tagging]]\nname = \"x\"\nrequired_keys = 3\n").unwrap();
    let run = daemon.run_job("rules", t3 + Duration::hours(1), &cancel).await;
    assert_eq!(run.outcome, RunOutcome::Failed);
    let error = run.error.unwrap();
    assert!(error.contains("main.toml:3: tagging[0].required_keys: "), "{error}");
    assert_eq!(stored(&daemon.store).await, findings_before);
    let strip = |m: &str| {
        let mut lines: Vec<&str> = m.lines().filter(|l| !l.starts_with("cloudwarden_collection")).collect();
        lines.sort();
        lines.join("\n")
    };
    assert_eq!(strip(&daemon.state.metrics()), strip(&metrics_before));

    // Metric anomaly findings belong to the CloudWatch job: an evaluation leaves them open.
    let metric =
        finding(FindingKind::MetricAnomaly, "metric_anomaly", "arn:i-1 AWS/EC2 CPUUtilization Average", "spike");
    daemon.store.record_findings(&[FindingKind::MetricAnomaly], &[metric], t3).await.unwrap();
    std::fs::write(dir.path().join("rules/main.toml"), RULES).unwrap();
    let run = daemon.run_job("rules", t3 + Duration::hours(2), &cancel).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.error);
    let open = daemon
        .store
        .findings(FindingFilter { kind: Some(FindingKind::MetricAnomaly), include_resolved: false })
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
}

#[tokio::test]
async fn without_a_token_the_api_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("cw.db").display()), 1).await.unwrap();
    for tokens in [vec![], vec![ApiToken::reader("empty", "")]] {
        let state = cloudwarden::server::AppState::default().with_api(store.clone(), tokens, Clock::system());
        let (status, challenge, body) = get(&state, "/api/v1/findings", Some(TOKEN)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(challenge.is_none());
        let (status, _, _) = get(&state, "/api/v1/findings", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // With one: a request with another scheme is asked for a bearer token.
    let state = cloudwarden::server::AppState::default().with_api(
        store.clone(),
        vec![ApiToken::reader("t", TOKEN)],
        Clock::system(),
    );
    let req = Request::get("/api/v1/findings").header(header::AUTHORIZATION, format!("Basic {TOKEN}"));
    let res = app(state).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

fn config_errors(text: &str) -> Vec<String> {
    match cloudwarden::config::parse("t.toml", text, &|_| None) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn rule_files_are_validated_with_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(dir.path().join("good.toml"), RULES).unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[[tagging]]\nname = \"x\"\n\nrequired_keys = 3\n").unwrap();
    // A bad rule file: its own file, line and path, after the configuration's own errors.
    let errors = config_errors(&format!("[rules]\nfiles = [\"{d}/good.toml\", \"{d}/bad.toml\"]\nthreads = 0\n"));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0], "t.toml:3: rules.threads: must be between 1 and 64");
    assert!(errors[1].starts_with(&format!("{d}/bad.toml:4: tagging[0].required_keys: ")), "{errors:?}");
    // A glob matching nothing and a missing file.
    let errors = config_errors(&format!("[rules]\nfiles = [\n  \"{d}/none/*.toml\",\n  \"{d}/missing.toml\",\n]\n"));
    assert_eq!(
        errors,
        [
            format!("t.toml:3: rules.files[0]: no file matches \"{d}/none/*.toml\""),
            format!("{d}/missing.toml: cannot read: No such file or directory (os error 2)"),
        ]
    );
    // The same rule name in two files.
    std::fs::write(dir.path().join("again.toml"), RULES).unwrap();
    let errors = config_errors(&format!("[rules]\nfiles = [\"{d}/good.toml\", \"{d}/again.toml\"]\n"));
    assert!(errors.iter().any(|e| e.starts_with(&format!("{d}/again.toml:"))), "{errors:?}");
    // Disabled: the files are not read.
    let c = cloudwarden::config::parse(
        "t.toml",
        &format!("[rules]\nenabled = false\nfiles = [\"{d}/bad.toml\"]\n"),
        &|_| None,
    )
    .unwrap();
    assert!(c.rules.is_none());
    // Schedules and tokens.
    let errors =
        config_errors(&format!("[rules]\nfiles = [\"{d}/good.toml\"]\ninterval_secs = 5\ncron = \"* * * * *\"\n"));
    assert_eq!(errors, ["t.toml:4: rules.cron: set either interval_secs or cron, not both"]);
    let errors = config_errors("[api]\ntokens = [\"short\", \"${NOPE}\"]\n");
    assert_eq!(
        errors,
        [
            "t.toml:2: api.tokens[0]: must be at least 16 characters long",
            "t.toml:2: api.tokens[1]: environment variable NOPE is not set",
            "t.toml:2: api.tokens[1]: must be at least 16 characters long",
        ]
    );
    let c = cloudwarden::config::parse("t.toml", "[api]\ntokens = [\"${T}\"]\n", &|_| Some(TOKEN.into())).unwrap();
    assert_eq!(c.api.tokens, [ApiToken::reader("token-1", TOKEN)]);
    assert!(!format!("{c:?}").contains(TOKEN));
}

/// Billing rows first, day by day; Cost Explorer's service rows for the days without any billing row; old
/// rows summed without their resource id; other currencies left out.
#[tokio::test]
async fn costs_come_from_billing_files_and_cost_explorer_fills_missing_days() {
    use chrono::NaiveDate;
    use collector::aws::costexplorer::{CostFetch, CostMetric, CostRow};
    use collector::billing::{BillingSource, ReadOptions};
    use collector::{AwsContext, AwsSettings};
    use rust_decimal::Decimal;

    common::aws_test_env();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("cw.db").display()), 2).await.unwrap();
    let header = "ChargePeriodStart,BilledCost,EffectiveCost,ListCost,ProviderName,BillingAccountId,SubAccountId,\
ServiceName,ChargeCategory,BillingCurrency,ResourceId,RegionId,Tags";
    let row = |day: &str, resource: &str, effective: &str, currency: &str| {
        format!(
            "\"{day} 10:00:00\",9,{effective},9,\"AWS\",\"999999999999\",\"{A}\",\"AmazonEC2\",\"Usage\",\"{currency}\",\"{resource}\",\"us-east-1\",\"{{\"\"team\"\":\"\"web\"\"}}\"\n"
        )
    };
    let csv = [
        format!("{header}\n"),
        row("2026-03-07", "i-1", "1.25", "USD"),
        row("2026-03-07", "i-1", "7", "EUR"),
        row("2026-01-20", "i-1", "2", "USD"),
        row("2026-01-20", "i-2", "0.5", "USD"),
    ]
    .concat();
    std::fs::write(dir.path().join("export.csv"), csv).unwrap();
    let ctx = AwsContext::new(&AwsSettings::default()).await;
    let source = BillingSource::parse(&dir.path().join("export.csv").display().to_string()).unwrap();
    let report = cloudwarden::billing::load_billing(
        &store,
        &ctx,
        &ctx.accounts[0],
        "us-east-1",
        &[source],
        &ReadOptions::default(),
    )
    .await;
    assert!(report.is_complete(), "{report:?}");

    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let ce = |d: &str, dimension: &str, key: &str, amount: i64| CostRow {
        day: day(d),
        dimension: dimension.into(),
        key: key.into(),
        metric: CostMetric::Amortized,
        amount: Decimal::new(amount, 0),
        unit: "USD".into(),
        estimated: false,
    };
    let fetch = CostFetch {
        rows: vec![
            ce("2026-03-07", "service", "Amazon Elastic Compute Cloud - Compute", 100),
            ce("2026-03-09", "service", "Amazon Elastic Compute Cloud - Compute", 3),
            ce("2026-03-09", "account", A, 3),
        ],
        requests: 2,
        account_names: BTreeMap::new(),
    };
    let dims = ["service".to_string(), "account".to_string()];
    store.record_costs(&fetch, &dims, day("2026-03-01"), day("2026-03-10"), Utc::now()).await.unwrap();

    let (costs, billing_days, ce_days) =
        cloudwarden::jobs::rules::daily_costs(&store, day("2026-03-10"), 60, 31).await.unwrap();
    assert_eq!((billing_days, ce_days), (2, 1));
    let got: Vec<_> = costs
        .iter()
        .map(|c| {
            (
                c.day.to_string(),
                c.account_id.as_str(),
                c.service.as_str(),
                c.resource_id.as_deref(),
                c.amount.to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("2026-01-20".to_string(), A, "AmazonEC2", None, "2.5".to_string()),
            ("2026-03-07".to_string(), A, "AmazonEC2", Some("i-1"), "1.25".to_string()),
            ("2026-03-09".to_string(), "", "Amazon Elastic Compute Cloud - Compute", None, "3".to_string()),
        ]
    );
    assert_eq!(costs[0].tags, BTreeMap::from([("team".to_string(), "web".to_string())]));
}

/// With a collector configured, a rules evaluation alone does not make the daemon ready: only a collector's
/// successful run does.
#[tokio::test]
async fn a_rules_run_alone_does_not_make_a_collecting_daemon_ready() {
    common::aws_test_env();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/main.toml"), RULES).unwrap();
    let text = format!(
        "[database]\nurl = \"sqlite://{}\"\ncreate_if_missing = true\n\n[aws]\nendpoint_url = \"http://127.0.0.1:9\"\n\n\
         [collectors.inventory]\nregions = [\"us-east-1\"]\n\n[rules]\nfiles = [\"{}/rules/*.toml\"]\n",
        dir.path().join("cw.db").display(),
        dir.path().display()
    );
    let config = cloudwarden::config::parse("t.toml", &text, &|_| None).unwrap();
    let daemon = Daemon::new(config).await.unwrap();
    let t: DateTime<Utc> = "2026-01-20T09:00:00Z".parse().unwrap();
    record(&daemon.store, vec![volume(&[], &[]), instance()], t - Duration::hours(1)).await;
    let run = daemon.run_job("rules", t, &CancellationToken::new()).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.error);
    assert!(!daemon.state.is_ready());
}
