//! The rules engine end to end on the moto test-bed: the seed plants resources against the test-bed rule set
//! (`examples/rules/testbed/` and the budgets file it writes) and says in its truth file what must be found.
//! After inventory, Cost Explorer and the rules job, the open findings equal the truth's exactly, and so do
//! the tag compliance ratios, budget ratios, the anomaly score of the injected series and the cleanup counts
//! on `/metrics`, and the findings API. A violation fixed in moto resolves its finding at the next run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::{DateTime, Duration, Utc};
use cloudwarden::config;
use cloudwarden::daemon::Daemon;
use cloudwarden::server::app;
use cloudwarden::store::{FindingFilter, RunOutcome};
use common::Moto;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const TOKEN: &str = "testbed-token-0123456789";

type Key = (String, String, String);

async fn run(d: &Daemon, name: &str, now: DateTime<Utc>) {
    let run = d.run_job(name, now, &CancellationToken::new()).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{name}: {:?} {:?}", run.error, run.failures);
}

/// (kind, rule, subject) of the open findings in the store.
async fn open_findings(d: &Daemon) -> BTreeSet<Key> {
    let open = d.store.findings(FindingFilter { kind: None, include_resolved: false }).await.unwrap();
    open.into_iter().map(|f| (f.kind.as_str().to_string(), f.rule, f.subject)).collect()
}

fn truth_findings(expected: &Value) -> BTreeSet<Key> {
    expected["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap().to_string();
            (s("kind"), s("rule"), s("subject"))
        })
        .collect()
}

/// Every sample of `metric` as (sorted labels, value), through a Prometheus text parser.
fn samples(body: &str, metric: &str) -> BTreeMap<Vec<(String, String)>, f64> {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("metrics parse");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .map(|s| {
            let mut labels: Vec<(String, String)> = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            labels.sort();
            let v = match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{metric}: unexpected value {other:?}"),
            };
            (labels, v)
        })
        .collect()
}

fn label(labels: &[(String, String)], name: &str) -> String {
    labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
}

async fn api(d: &Daemon, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::get(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let res = app(d.state.clone()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Tag compliance per (account, type) on `/metrics` equals `want` (account, type → ratio), no more, no less.
fn assert_compliance(body: &str, want: &BTreeMap<(String, String), f64>) {
    let got: BTreeMap<(String, String), f64> = samples(body, "cloudwarden_tag_compliance_ratio")
        .into_iter()
        .map(|(l, v)| ((label(&l, "account"), label(&l, "resource_type")), v))
        .collect();
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (k, v) in want {
        assert!((got[k] - v).abs() < 1e-9, "compliance {k:?}: {} != {v}", got[k]);
    }
}

/// Adds tags to a resource through the Resource Groups Tagging API of the test-bed.
fn tag_resource(moto: &Moto, arn: &str, tags: &[(&str, &str)]) {
    let tags: BTreeMap<&str, &str> = tags.iter().copied().collect();
    let region = arn.split(':').nth(3).unwrap();
    let script = format!(
        r#"
import boto3, json, sys
c = boto3.client("resourcegroupstaggingapi", endpoint_url="{}", region_name="{region}",
                 aws_access_key_id="testing", aws_secret_access_key="testing")
r = c.tag_resources(ResourceARNList=["{arn}"], Tags=json.loads(sys.argv[1]))
assert not r["FailedResourcesMap"], r
"#,
        moto.endpoint()
    );
    let out = Command::new(common::repo_root().join(".venv/bin/python"))
        .args(["-c", &script, &serde_json::to_string(&tags).unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_and_metrics_equal_the_seed_truth() {
    common::aws_test_env();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).unwrap();
    let budgets = rules_dir.join("budgets.toml");
    let truth = moto.seed_with(0.1, dir.path(), &["--budget-rules", budgets.to_str().unwrap()]);
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("truth.json")).unwrap()).unwrap();
    let expected = &raw["expected_findings"];

    let db = format!("sqlite://{}", dir.path().join("cw.db").display());
    let text = format!(
        r#"{}
[collectors.cost_explorer]
account = "management"

[rules]
files = ["{}/examples/rules/testbed/*.toml", "{}"]

[api]
tokens = ["${{CW_TOKEN}}"]
"#,
        truth.config(&moto.endpoint(), &db, ""),
        common::repo_root().display(),
        budgets.display()
    );
    let cfg = config::parse("t.toml", &text, &|v| (v == "CW_TOKEN").then(|| TOKEN.to_string())).unwrap();
    let daemon = Daemon::new(cfg).await.unwrap();

    // The jobs run at the seed's time (whole seconds, as the API shows times): the truth's budgets and anomaly
    // are of the seed's day, even when the test crosses midnight.
    let t1: DateTime<Utc> = raw["generated_at"].as_str().unwrap().parse().unwrap();
    for name in ["inventory", "cost_explorer", "rules"] {
        run(&daemon, name, t1).await;
    }

    // The open findings are exactly the truth's: none missing, none extra.
    let want = truth_findings(expected);
    let got = open_findings(&daemon).await;
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing: {missing:#?}\nextra: {extra:#?}");
    // Every kind but drift (no Terraform state in the scenario) is exercised.
    let kinds: BTreeSet<&str> = want.iter().map(|k| k.0.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["budget", "cleanup", "cost_anomaly", "tagging"]));

    let body = daemon.state.metrics();

    // Tag compliance per (account, type).
    let mut compliance: BTreeMap<(String, String), f64> = expected["tag_compliance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let key = (r["account"].as_str().unwrap().to_string(), r["resource_type"].as_str().unwrap().to_string());
            (key, r["ratio"].as_f64().unwrap())
        })
        .collect();
    assert_compliance(&body, &compliance);

    // Budgets: the used ratio exactly (month-to-date / amount), the forecast on the truth's side of 1.
    let used = samples(&body, "cloudwarden_budget_used_ratio");
    let forecast = samples(&body, "cloudwarden_budget_forecast_ratio");
    assert_eq!(used.len(), 2, "{used:?}");
    assert_eq!(forecast.len(), 2, "{forecast:?}");
    for b in expected["budgets"].as_array().unwrap() {
        let key = vec![("budget".to_string(), b["name"].as_str().unwrap().to_string())];
        let want = b["used_ratio"].as_f64().unwrap();
        assert!((used[&key] - want).abs() < 1e-12, "{key:?}: used {} != {want}", used[&key]);
        assert_eq!(
            forecast[&key] > 1.0,
            b["forecast_exceeds"].as_bool().unwrap(),
            "{key:?}: forecast {}",
            forecast[&key]
        );
    }

    // The injected service scores high; no other service comes near detection.
    let anomaly = &expected["cost_anomaly"];
    let scores = samples(&body, "cloudwarden_cost_anomaly_score");
    assert_eq!(scores.len(), truth_services(&raw), "{scores:?}");
    for (labels, score) in &scores {
        assert_eq!(label(labels, "series_kind"), "service");
        if label(labels, "key") == anomaly["key"].as_str().unwrap() {
            assert!(*score > 0.9, "injected series {labels:?} scores {score}");
        } else {
            assert!(*score < 0.5, "{labels:?} scores {score}");
        }
    }

    // Cleanup candidates per rule.
    let cleanup = samples(&body, "cloudwarden_cleanup_candidates");
    let got: BTreeMap<String, f64> = cleanup.into_iter().map(|(l, v)| (label(&l, "rule"), v)).collect();
    let want_cleanup: BTreeMap<String, f64> = expected["cleanup_candidates"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .collect();
    assert_eq!(got, want_cleanup);

    // The API, per kind, with the token; without it, nothing.
    let (status, _) = api(&daemon, "/api/v1/findings?kind=cleanup", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for kind in ["tagging", "budget", "cost_anomaly", "cleanup", "drift"] {
        let (status, list) = api(&daemon, &format!("/api/v1/findings?kind={kind}"), Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        assert!(list["next_cursor"].is_null(), "one page");
        let got: BTreeSet<Key> = list["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                assert_eq!(f["kind"], kind);
                let s = |k: &str| f[k].as_str().unwrap().to_string();
                (s("kind"), s("rule"), s("subject"))
            })
            .collect();
        let want_kind: BTreeSet<Key> = want.iter().filter(|k| k.0 == kind).cloned().collect();
        assert_eq!(got, want_kind, "{kind}");
    }

    // Fix one planted violation in the cloud: the instance without an owner gets one.
    let fixed = raw["planted"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "planted-missing-owner")
        .map(|p| p["arn"].as_str().unwrap().to_string())
        .unwrap();
    let fixed_key = ("tagging".to_string(), "ownership".to_string(), fixed.clone());
    assert!(want.contains(&fixed_key));
    tag_resource(&moto, &fixed, &[("owner", "bob@example.com")]);
    let t2 = t1 + Duration::seconds(1);
    for name in ["inventory", "rules"] {
        run(&daemon, name, t2).await;
    }
    let mut want_after = want.clone();
    want_after.remove(&fixed_key);
    assert_eq!(open_findings(&daemon).await, want_after);
    // Resolved at the second run, first sighting (and so its age) kept.
    let (_, list) = api(&daemon, "/api/v1/findings?kind=tagging&include_resolved=true", Some(TOKEN)).await;
    let rows: Vec<&Value> =
        list["findings"].as_array().unwrap().iter().filter(|f| f["subject"] == fixed.as_str()).collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let secs = |v: &Value| v.as_str().unwrap().parse::<DateTime<Utc>>().unwrap().timestamp();
    assert_eq!(secs(&rows[0]["first_seen"]), t1.timestamp());
    assert_eq!(secs(&rows[0]["resolved_at"]), t2.timestamp());
    assert_eq!(rows[0]["age_secs"].as_i64().unwrap(), (t2 - t1).num_seconds());
    // The instance's (account, type) is one compliant resource better.
    let account = fixed.split(':').nth(4).unwrap().to_string();
    let row = expected["tag_compliance"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["account"] == account.as_str() && r["resource_type"] == "ec2:instance")
        .unwrap();
    let (in_scope, compliant) = (row["in_scope"].as_f64().unwrap(), row["compliant"].as_f64().unwrap());
    compliance.insert((account, "ec2:instance".into()), (compliant + 1.0) / in_scope);
    assert_compliance(&daemon.state.metrics(), &compliance);
}

fn truth_services(raw: &Value) -> usize {
    raw["billing"]["services"].as_array().unwrap().len()
}

/// The test-bed rule set passes the configuration's checks (what `cloudwarden check-config` runs).
#[test]
fn the_testbed_rule_set_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let budgets = dir.path().join("budgets.toml");
    std::fs::write(
        &budgets,
        r#"
[[budgets]]
name = "demo-monthly-tight"
scope = { type = "total" }
period = "month"
amount_usd = "9000"

[budgets.thresholds]
actual_percent = [50, 80, 100]
forecast_percent = [100]
"#,
    )
    .unwrap();
    let text = format!(
        "[rules]\nfiles = [\"{}/examples/rules/testbed/*.toml\", \"{}\"]\n",
        common::repo_root().display(),
        budgets.display()
    );
    let cfg = config::parse("t.toml", &text, &|_| None).unwrap_or_else(|e| panic!("{e:?}"));
    let loaded = cloudwarden::jobs::rules::read_rule_files(&cfg.rules.unwrap().settings.sources).unwrap();
    assert_eq!(loaded.files.len(), 4);
    assert_eq!(loaded.rules.tagging.len(), 1);
    assert_eq!(loaded.rules.budgets.len(), 1);
    assert!(loaded.rules.cost_anomaly.is_some());
}
