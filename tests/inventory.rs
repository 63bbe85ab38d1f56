//! The inventory against the seeded moto test-bed, through the real SDK clients: counts per account, region
//! and type equal the seed's truth file; untagged resources are the ones the seed left untagged; small pages
//! force pagination; `/metrics` parses back to the same numbers and scrapes never call AWS; a vanished
//! resource is marked gone; history survives a restart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cloudwarden::config;
use cloudwarden::daemon::Daemon;
use cloudwarden::server::app;
use cloudwarden::store::RunOutcome;
use common::{Moto, Truth};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

async fn scrape(daemon: &Daemon) -> String {
    let res = app(daemon.state.clone()).oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// (account, region, type) → (total, untagged) from a `/metrics` body, through a Prometheus text parser.
fn parse_inventory(body: &str) -> BTreeMap<(String, String, String), (i64, i64)> {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("metrics parse");
    let mut out: BTreeMap<(String, String, String), (i64, i64)> = BTreeMap::new();
    for s in &scrape.samples {
        let key = || {
            (
                s.labels.get("account").unwrap().to_string(),
                s.labels.get("region").unwrap().to_string(),
                s.labels.get("resource_type").unwrap().to_string(),
            )
        };
        let v = match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v as i64,
            _ => continue,
        };
        match s.metric.as_str() {
            "cloudwarden_resources" => out.entry(key()).or_default().0 = v,
            "cloudwarden_untagged_resources" => out.entry(key()).or_default().1 = v,
            _ => {}
        }
    }
    out
}

fn truth_counts(truth: &Truth) -> BTreeMap<(String, String, String), (i64, i64)> {
    truth
        .counts
        .iter()
        .map(|c| ((c.account.clone(), c.region.clone(), c.resource_type.clone()), (c.total, c.untagged)))
        .collect()
}

fn delete_volume(moto: &Moto, truth: &Truth) -> String {
    // An unattached volume of the management account, deleted behind the daemon's back.
    let script = format!(
        "import boto3\nc = boto3.client('ec2', endpoint_url='{}', region_name='{}', aws_access_key_id='testing', aws_secret_access_key='testing')\nv = [v for v in c.describe_volumes()['Volumes'] if not v['Attachments']][0]\nc.delete_volume(VolumeId=v['VolumeId'])\nprint(v['VolumeId'])\n",
        moto.endpoint(),
        truth.regions[0]
    );
    let out = Command::new(common::repo_root().join(".venv/bin/python")).arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    format!("arn:aws:ec2:{}:123456789012:volume/{id}", truth.regions[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_matches_the_seed_truth() {
    common::aws_test_env();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let truth = moto.seed(0.25, dir.path());
    assert!(truth.accounts.len() == 2 && truth.regions.len() == 2, "seed makes two accounts and two regions");
    let db = format!("sqlite://{}", dir.path().join("cw.db").display());
    let text = truth.config(&moto.endpoint(), &db, "page_size = 5\nmax_concurrency = 3");
    let config = config::parse("test.toml", &text, &|_| None).unwrap();

    let daemon = Daemon::new(config.clone()).await.unwrap();
    let summary = daemon.run_job("inventory", chrono::Utc::now(), &CancellationToken::new()).await;
    assert_eq!(summary.outcome, RunOutcome::Success, "{:?}", summary.failures);

    // Counts per (account, region, type) equal the truth file's, untagged included.
    let stored: BTreeMap<_, _> = summary
        .detail::<cloudwarden::jobs::inventory::InventoryDetail>()
        .unwrap()
        .inventory
        .iter()
        .map(|c| ((c.account_id.clone(), c.region.clone(), c.resource_type.clone()), (c.total, c.untagged)))
        .collect();
    assert_eq!(stored, truth_counts(&truth));
    assert_eq!(summary.items as usize, truth.resources.len());

    // The very resources the seed left untagged, and the tags of the others.
    let resources = daemon.store.resources().await.unwrap();
    let untagged: BTreeSet<&str> = resources.iter().filter(|r| r.untagged).map(|r| r.arn.as_str()).collect();
    let want: BTreeSet<&str> = truth.resources.iter().filter(|r| r.untagged).map(|r| r.arn.as_str()).collect();
    assert_eq!(untagged, want);
    let by_arn: BTreeMap<&str, _> = resources.iter().map(|r| (r.arn.as_str(), r)).collect();
    for t in &truth.resources {
        assert_eq!(by_arn[t.arn.as_str()].tags, t.tags, "{}", t.arn);
    }

    // Small pages force pagination where moto paginates.
    for op in ["ec2:DescribeInstances", "resourcegroupstaggingapi:GetResources"] {
        assert!(summary.api_calls[op] > 2 * 2, "{op} made {} calls", summary.api_calls[op]);
    }

    // /metrics says the same, and a hundred scrapes make no AWS call.
    let calls_before = daemon.aws.stats.total();
    let body = scrape(&daemon).await;
    assert_eq!(parse_inventory(&body), truth_counts(&truth));
    assert!(body.contains("cloudwarden_build_info{version=\""));
    assert!(body.contains("cloudwarden_collection_last_success_timestamp_seconds{collector=\"inventory\"}"));
    assert!(body.contains(
        "cloudwarden_aws_api_calls_total{service=\"ec2\",operation=\"DescribeInstances\",outcome=\"success\"}"
    ));
    for _ in 0..100 {
        scrape(&daemon).await;
    }
    assert_eq!(daemon.aws.stats.total(), calls_before, "scrapes must not call AWS");

    // A resource deleted in the cloud is marked gone, not deleted; the rest is untouched.
    let gone_arn = delete_volume(&moto, &truth);
    let second = daemon.run_job("inventory", chrono::Utc::now(), &CancellationToken::new()).await;
    assert_eq!(second.outcome, RunOutcome::Success);
    assert_eq!(second.detail::<cloudwarden::jobs::inventory::InventoryDetail>().unwrap().write.gone, 1);
    let after = daemon.store.resources().await.unwrap();
    let gone: Vec<_> = after.iter().filter(|r| r.gone_at.is_some()).map(|r| r.arn.clone()).collect();
    assert_eq!(gone, vec![gone_arn]);
    assert_eq!(after.len(), resources.len());
    daemon.store.close().await;

    // A restart keeps the history: the new process serves the stored inventory before its first cycle,
    // and first sightings stay as they were.
    let restarted = Daemon::new(config).await.unwrap();
    let body = scrape(&restarted).await;
    let mut expected = truth_counts(&truth);
    let key = ("123456789012".to_string(), truth.regions[0].clone(), "ec2:volume".to_string());
    expected.get_mut(&key).unwrap().0 -= 1;
    let gone_was_untagged = truth.resources.iter().any(|r| r.arn == gone[0] && r.untagged);
    if gone_was_untagged {
        expected.get_mut(&key).unwrap().1 -= 1;
    }
    assert_eq!(parse_inventory(&body), expected);
    let reread = restarted.store.resources().await.unwrap();
    for (a, b) in resources.iter().zip(&reread) {
        assert_eq!((&a.arn, a.first_seen), (&b.arn, b.first_seen));
    }
    let runs = restarted.store.runs("inventory", 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.outcome == RunOutcome::Success && r.api_calls > 0));
}
