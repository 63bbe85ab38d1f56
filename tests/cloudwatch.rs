//! CloudWatch metrics against moto: discovery over the inventory returns exactly the datapoints the seed
//! put; 1,234 queries of one (period, window) group take exactly three GetMetricData calls and a second
//! group gets its own; the series are exported under their `aws_` names.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use chrono::{DateTime, Utc};
use cloudwarden::config;
use cloudwarden::daemon::Daemon;
use cloudwarden::store::RunOutcome;
use collector::aws::cloudwatch::window;
use common::Moto;
use tokio_util::sync::CancellationToken;

/// `name{labels} value` lines of one metric, as label-text → value.
fn samples(body: &str, name: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter_map(|l| l.strip_prefix(name).filter(|r| r.starts_with('{')))
        .map(|r| {
            let (labels, value) = r.rsplit_once(' ').unwrap();
            (labels.to_string(), value.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_returns_the_datapoints_the_seed_put() {
    common::aws_test_env();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let truth = moto.seed(0.1, dir.path());
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("truth.json")).unwrap()).unwrap();
    let db = format!("sqlite://{}", dir.path().join("cw.db").display());
    let text = format!(
        "{}\n[collectors.cloudwatch]\n\n[[collectors.cloudwatch.discovery]]\nnamespace = \"AWS/EC2\"\nresource_type = \"ec2:instance\"\ndimension = \"InstanceId\"\nmetrics = [\"CPUUtilization\"]\nstatistics = [\"Average\", \"Maximum\"]\nperiod_secs = 300\nlength_secs = 7200\ndelay_secs = 0\nexport_tags = [\"team\"]\n",
        truth.config(&moto.endpoint(), &db, "")
    );
    let daemon = Daemon::new(config::parse("t.toml", &text, &|_| None).unwrap()).await.unwrap();
    let cancel = CancellationToken::new();
    let inv = daemon.run_job("inventory", Utc::now(), &cancel).await;
    assert_eq!(inv.outcome, RunOutcome::Success);

    let now = Utc::now();
    let run = daemon.run_job("cloudwatch", now, &cancel).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.error);

    // Expected: per instance with datapoints, the newest one inside the window.
    let (start, end) = window(now, 300, 7200, 0);
    let mut want = BTreeMap::new();
    // The seed's CPU series, and its one long series with a spike (for the anomaly detector).
    let anomaly = raw["cloudwatch"]["anomaly"].clone();
    for s in raw["cloudwatch"]["series"].as_array().unwrap().iter().chain(anomaly.is_object().then_some(&anomaly)) {
        let newest = s["datapoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().parse::<DateTime<Utc>>().unwrap(), p[1].as_f64().unwrap()))
            .filter(|(t, _)| *t >= start && *t < end)
            .max_by_key(|(t, _)| *t);
        if let Some((_, v)) = newest {
            want.insert(s["instance_id"].as_str().unwrap().to_string(), v);
        }
    }
    assert!(!want.is_empty(), "the seed put datapoints inside the window");
    let body = daemon.state.metrics();
    for stat in ["average", "maximum"] {
        let got: BTreeMap<String, f64> = samples(&body, &format!("aws_ec2_cpuutilization_{stat}"))
            .into_iter()
            .filter_map(|(labels, v)| {
                let id = labels.split("dimension_instance_id=\"").nth(1)?.split('"').next()?.to_string();
                Some((id, v))
            })
            .collect();
        assert_eq!(got, want, "{stat}");
    }
    // Tags as labels, and one info series per selected resource.
    assert!(body.contains("tag_team=\""), "{body}");
    let infos = samples(&body, "aws_resource_info");
    let instances = truth.resources.iter().filter(|r| r.resource_type == "ec2:instance").count();
    assert_eq!(infos.len(), instances);
    // Every instance was queried (2 statistics each); the billed unit is counted.
    assert_eq!(run.detail::<cloudwarden::jobs::cloudwatch::CloudWatchDetail>().unwrap().queries, 2 * instances as u64);
    assert!(body.contains(&format!("cloudwarden_cloudwatch_metrics_requested_total {}", 2 * instances)), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_are_batched_500_per_call_per_group() {
    common::aws_test_env();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    // 617 shards × 1 metric × 2 statistics = 1,234 queries at period 300; 10 more at period 60.
    let script = format!(
        r#"
import boto3, datetime
cw = boto3.client("cloudwatch", endpoint_url="{}", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
now = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
t = now - datetime.timedelta(minutes=20)
data = [dict(MetricName="Load", Dimensions=[dict(Name="Shard", Value=str(i))], Timestamp=t, Value=i * 1.5) for i in range(617)]
for i in range(0, len(data), 500):
    cw.put_metric_data(Namespace="Cloudwarden/Test", MetricData=data[i:i + 500])
"#,
        moto.endpoint()
    );
    let out = Command::new(common::repo_root().join(".venv/bin/python")).arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut text = format!(
        "[database]\nurl = \"sqlite://{}\"\ncreate_if_missing = true\n\n[aws]\nendpoint_url = \"{}\"\n\n[[accounts]]\nname = \"main\"\n\n[collectors.cloudwatch]\nregions = [\"us-east-1\"]\n",
        dir.path().join("cw.db").display(),
        moto.endpoint()
    );
    for shard in 0..617 {
        text.push_str(&format!(
            "\n[[collectors.cloudwatch.static]]\nnamespace = \"Cloudwarden/Test\"\ndimensions = {{ Shard = \"{shard}\" }}\nmetrics = [\"Load\"]\nstatistics = [\"Average\", \"Maximum\"]\nperiod_secs = 300\nlength_secs = 3600\ndelay_secs = 0\n"
        ));
    }
    for shard in 0..10 {
        text.push_str(&format!(
            "\n[[collectors.cloudwatch.static]]\nnamespace = \"Cloudwarden/Test\"\ndimensions = {{ Shard = \"{shard}\" }}\nmetrics = [\"Load\"]\nstatistics = [\"Sum\"]\nperiod_secs = 60\nlength_secs = 3600\ndelay_secs = 0\n"
        ));
    }
    let daemon = Daemon::new(config::parse("t.toml", &text, &|_| None).unwrap()).await.unwrap();
    let run = daemon.run_job("cloudwatch", Utc::now(), &CancellationToken::new()).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.error);
    // ceil(1234 / 500) = 3 calls for the first group, 1 for the second.
    assert_eq!(run.api_calls["cloudwatch:GetMetricData"], 4);
    let d = run.detail::<cloudwarden::jobs::cloudwatch::CloudWatchDetail>().unwrap();
    assert_eq!((d.queries, d.metrics_requested), (1244, 1244));
    let body = daemon.state.metrics();
    let avg = samples(&body, "aws_cloudwarden_test_load_average");
    assert_eq!(avg.len(), 617);
    for shard in [0, 1, 300, 616] {
        let key = format!("{{account=\"123456789012\",region=\"us-east-1\",dimension_shard=\"{shard}\"}}");
        assert_eq!(avg[&key], shard as f64 * 1.5, "shard {shard}");
    }
    assert_eq!(samples(&body, "aws_cloudwarden_test_load_sum").len(), 10);
    assert!(!body.contains("GetMetricStatistics"));
}

/// Puts `points` (Unix seconds, value) of `Cloudwarden/Anomaly` `Load` with dimension `Host`.
fn put_points(moto: &Moto, host: &str, points: &[(i64, f64)]) {
    let data: Vec<String> = points.iter().map(|(t, v)| format!("({t}, {v})")).collect();
    let script = format!(
        r#"
import boto3, datetime
cw = boto3.client("cloudwatch", endpoint_url="{}", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
points = [{}]
data = [dict(MetricName="Load", Dimensions=[dict(Name="Host", Value="{host}")], Timestamp=datetime.datetime.fromtimestamp(t, datetime.timezone.utc), Value=v) for t, v in points]
for i in range(0, len(data), 500):
    cw.put_metric_data(Namespace="Cloudwarden/Anomaly", MetricData=data[i:i + 500])
"#,
        moto.endpoint(),
        data.join(", ")
    );
    let out = Command::new(common::repo_root().join(".venv/bin/python")).arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The score of one host's series in a `/metrics` body.
fn score(body: &str, host: &str) -> f64 {
    let scores = samples(body, "cloudwarden_metric_anomaly_score");
    let (labels, v) = scores.iter().find(|(l, _)| l.contains(&format!("dimension_host=\"{host}\""))).expect(host);
    assert!(labels.contains("namespace=\"Cloudwarden/Anomaly\",metric=\"Load\",statistic=\"Average\",account=\"123456789012\",region=\"us-east-1\""), "{labels}");
    *v
}

async fn open(d: &Daemon, kind: rules::finding::FindingKind) -> Vec<cloudwarden::store::StoredFinding> {
    let filter = cloudwarden::store::FindingFilter { kind: Some(kind), include_resolved: false };
    d.store.findings(filter).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_anomalies_are_scored_once_per_point_and_open_and_resolve_findings() {
    use rules::finding::{Finding, FindingKind, Severity};

    common::aws_test_env();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    // 320 steady minutes (one missing, 100 minutes before the end), then the newest point: a spike on one
    // host, a normal value on the other. More than the detector's 288 points of probation.
    let end = Utc::now().timestamp() / 60 * 60 - 6 * 60;
    let steady = |i: i64| 50.0 + (i % 7) as f64 * 0.5;
    let gap = end - 100 * 60;
    let history: Vec<(i64, f64)> = (1..=320).map(|k| (end - k * 60, steady(k))).filter(|(t, _)| *t != gap).collect();
    put_points(&moto, "spiky", &[history.clone(), vec![(end, 500.0)]].concat());
    put_points(&moto, "steady", &[history.clone(), vec![(end, steady(3))]].concat());

    let db = dir.path().join("cw.db");
    let mut text = format!(
        "[database]\nurl = \"sqlite://{}\"\ncreate_if_missing = true\n\n[aws]\nendpoint_url = \"{}\"\n\n[[accounts]]\nname = \"main\"\n\n[collectors.cloudwatch]\nregions = [\"us-east-1\"]\n",
        db.display(),
        moto.endpoint()
    );
    for (host, anomaly) in [("spiky", "{}"), ("steady", "{ series = [\"Load:Average\"], threshold = 0.6 }")] {
        text.push_str(&format!(
            "\n[[collectors.cloudwatch.static]]\nnamespace = \"Cloudwarden/Anomaly\"\ndimensions = {{ Host = \"{host}\" }}\nmetrics = [\"Load\"]\nstatistics = [\"Average\"]\nperiod_secs = 60\nlength_secs = 30000\ndelay_secs = 0\nanomaly = {anomaly}\n"
        ));
    }
    let daemon = Daemon::new(config::parse("t.toml", &text, &|_| None).unwrap()).await.unwrap();
    let cancel = CancellationToken::new();
    let at = |t: i64| DateTime::from_timestamp(t, 0).unwrap();
    // A finding of another kind, which the CloudWatch job must leave alone.
    let other = Finding {
        kind: FindingKind::Tagging,
        rule: "team".into(),
        subject: "arn:aws:ec2:us-east-1:123456789012:instance/i-1".into(),
        account_id: Some("123456789012".into()),
        region: Some("us-east-1".into()),
        resource_type: Some("ec2:instance".into()),
        severity: Severity::Warning,
        message: "missing tag team".into(),
        monthly_usd: None,
        details: serde_json::json!({}).into(),
    };
    daemon.store.record_findings(&[FindingKind::Tagging], &[other], at(end)).await.unwrap();

    // First run: the window (500 minutes) warms the detectors up with every point, the spike last.
    let run = daemon.run_job("cloudwatch", at(end + 60), &cancel).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.error);
    let d = run.detail::<cloudwarden::jobs::cloudwatch::CloudWatchDetail>().unwrap();
    assert_eq!((d.points_scored, d.late_points, d.anomaly_series), (640, 0, 2));
    let body = daemon.state.metrics();
    assert!(score(&body, "spiky") > 0.95, "{body}");
    assert!(score(&body, "steady") < 0.3, "{body}");
    assert!(body.contains("cloudwarden_metric_anomaly_points_scored_total 640"), "{body}");
    assert!(body.contains("cloudwarden_findings{kind=\"metric_anomaly\",severity=\"warning\"} 1"), "{body}");
    let found = open(&daemon, FindingKind::MetricAnomaly).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(f.subject, "123456789012/us-east-1/Host=spiky Cloudwarden/Anomaly Load Average");
    assert_eq!(
        (f.rule.as_str(), f.account_id.as_deref(), f.region.as_deref()),
        ("metric_anomaly", Some("123456789012"), Some("us-east-1"))
    );
    assert_eq!(f.details["value"], serde_json::json!(500.0));
    assert_eq!(f.details["threshold"], serde_json::json!(0.6695));
    assert_eq!(f.details["timestamp"].as_str().unwrap(), at(end).to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    assert!(f.details["score"].as_f64().unwrap() > 0.95);

    // Second run over the same window: every point was fed already; the finding stays open.
    let run = daemon.run_job("cloudwatch", at(end + 60), &cancel).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.error);
    assert_eq!(run.detail::<cloudwarden::jobs::cloudwatch::CloudWatchDetail>().unwrap().points_scored, 0);
    assert!(daemon.state.metrics().contains("cloudwarden_metric_anomaly_points_scored_total 640"));
    assert_eq!(open(&daemon, FindingKind::MetricAnomaly).await.len(), 1);
    assert_eq!(open(&daemon, FindingKind::MetricAnomaly).await[0].first_seen, f.first_seen);

    // Two normal minutes after the spike, and the missing minute arriving late.
    let after = [(end + 60, steady(1)), (end + 120, steady(2))];
    put_points(&moto, "spiky", &[after.to_vec(), vec![(gap, steady(100))]].concat());
    put_points(&moto, "steady", &after);
    let run = daemon.run_job("cloudwatch", at(end + 180), &cancel).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.error);
    let d = run.detail::<cloudwarden::jobs::cloudwatch::CloudWatchDetail>().unwrap();
    assert_eq!((d.points_scored, d.late_points, d.findings_resolved), (4, 1, 1));
    let body = daemon.state.metrics();
    assert!(score(&body, "spiky") < 0.3, "{body}");
    assert!(body.contains("cloudwarden_metric_anomaly_points_scored_total 644"), "{body}");
    assert!(body.contains("cloudwarden_metric_anomaly_late_points_total 1"), "{body}");
    assert!(open(&daemon, FindingKind::MetricAnomaly).await.is_empty());
    // The late point is counted once, however many windows return it.
    let run = daemon.run_job("cloudwatch", at(end + 180), &cancel).await;
    assert_eq!(
        (
            run.detail::<cloudwarden::jobs::cloudwatch::CloudWatchDetail>().unwrap().points_scored,
            run.detail::<cloudwarden::jobs::cloudwatch::CloudWatchDetail>().unwrap().late_points
        ),
        (0, 0)
    );
    assert_eq!(open(&daemon, FindingKind::Tagging).await.len(), 1, "other kinds are left alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_scores_the_seeded_cpu_spike_and_names_the_instance() {
    use rules::finding::FindingKind;

    common::aws_test_env();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let truth = moto.seed(0.1, dir.path());
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("truth.json")).unwrap()).unwrap();
    let spike = &raw["cloudwatch"]["anomaly"];
    let arn = spike["arn"].as_str().unwrap();
    let spike_at: DateTime<Utc> = spike["spike_at"].as_str().unwrap().parse().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cw.db").display());
    // A window of 30 hours: the whole long series warms its detector up on the first run.
    let text = format!(
        "{}\n[collectors.cloudwatch]\n\n[[collectors.cloudwatch.discovery]]\nnamespace = \"AWS/EC2\"\nresource_type = \"ec2:instance\"\ndimension = \"InstanceId\"\nmetrics = [\"CPUUtilization\"]\nstatistics = [\"Average\", \"Maximum\"]\nperiod_secs = 300\nlength_secs = 108000\ndelay_secs = 0\nanomaly = {{ series = [\"CPUUtilization:Average\"] }}\n",
        truth.config(&moto.endpoint(), &db, "")
    );
    let daemon = Daemon::new(config::parse("t.toml", &text, &|_| None).unwrap()).await.unwrap();
    let cancel = CancellationToken::new();
    let inv = daemon.run_job("inventory", Utc::now(), &cancel).await;
    assert_eq!(inv.outcome, RunOutcome::Success);

    let run = daemon.run_job("cloudwatch", spike_at + chrono::Duration::minutes(5), &cancel).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.error);
    let d = run.detail::<cloudwarden::jobs::cloudwatch::CloudWatchDetail>().unwrap();
    // Average only: one detector per instance with datapoints.
    let seeded = raw["cloudwatch"]["series"].as_array().unwrap();
    let points: usize = seeded.iter().map(|s| s["datapoints"].as_array().unwrap().len()).sum();
    assert_eq!(d.anomaly_series, seeded.len() as u64 + 1);
    assert_eq!(d.points_scored, (points + 320) as u64);
    let body = daemon.state.metrics();
    let scores = samples(&body, "cloudwarden_metric_anomaly_score");
    let id = spike["instance_id"].as_str().unwrap();
    let (labels, score) = scores.iter().find(|(l, _)| l.contains(id)).expect("the spiked series has a score");
    assert!(*score > 0.95, "{labels} {score}");
    assert!(labels.contains("statistic=\"Average\""), "{labels}");
    // The short series are still in their probation: they score 0.
    assert!(scores.iter().filter(|(l, _)| !l.contains(id)).all(|(_, v)| *v == 0.0), "{scores:?}");
    let found = open(&daemon, FindingKind::MetricAnomaly).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].subject, format!("{arn} AWS/EC2 CPUUtilization Average"));
    assert_eq!(found[0].resource_type.as_deref(), Some("ec2:instance"));
    assert_eq!(found[0].details["arn"], serde_json::json!(arn));
    assert_eq!(found[0].details["value"], serde_json::json!(95.0));

    // After a restart the first window warms the new detector up: the same points, the same score; the
    // finding stays open with its first sighting.
    drop(daemon);
    let daemon = Daemon::new(config::parse("t.toml", &text, &|_| None).unwrap()).await.unwrap();
    let run = daemon.run_job("cloudwatch", spike_at + chrono::Duration::minutes(6), &cancel).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.error);
    assert_eq!(
        run.detail::<cloudwarden::jobs::cloudwatch::CloudWatchDetail>().unwrap().points_scored,
        (points + 320) as u64
    );
    let again = samples(&daemon.state.metrics(), "cloudwarden_metric_anomaly_score");
    assert_eq!(again.get(labels), Some(score));
    let reopened = open(&daemon, FindingKind::MetricAnomaly).await;
    assert_eq!((reopened.len(), reopened[0].first_seen), (1, found[0].first_seen));
}
