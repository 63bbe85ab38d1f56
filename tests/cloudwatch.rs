//! CloudWatch metrics against moto: discovery over the inventory returns exactly the datapoints the seed
//! put; 1,234 queries of one (period, window) group take exactly three GetMetricData calls and a second
//! group gets its own; the series are exported under their `aws_` names.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use chrono::{DateTime, Utc};
use cloudwarden::config;
use cloudwarden::daemon::Daemon;
use cloudwarden::jobs::JobKind;
use cloudwarden::store::RunOutcome;
use collector::aws::cloudwatch::window;
use common::Moto;
use tokio_util::sync::CancellationToken;

fn job(d: &Daemon, name: &str) -> JobKind {
    d.jobs().into_iter().map(|j| j.kind).find(|k| k.name() == name).unwrap()
}

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
    let raw: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("truth.json")).unwrap()).unwrap();
    let db = format!("sqlite://{}", dir.path().join("cw.db").display());
    let text = format!(
        "{}\n[collectors.cloudwatch]\n\n[[collectors.cloudwatch.discovery]]\nnamespace = \"AWS/EC2\"\nresource_type = \"ec2:instance\"\ndimension = \"InstanceId\"\nmetrics = [\"CPUUtilization\"]\nstatistics = [\"Average\", \"Maximum\"]\nperiod_secs = 300\nlength_secs = 7200\ndelay_secs = 0\nexport_tags = [\"team\"]\n",
        truth.config(&moto.endpoint(), &db, "")
    );
    let daemon = Daemon::new(config::parse("t.toml", &text, &|_| None).unwrap()).await.unwrap();
    let cancel = CancellationToken::new();
    let inv = daemon.run_job(&job(&daemon, "inventory"), Utc::now(), &cancel).await;
    assert_eq!(inv.outcome, RunOutcome::Success);

    let now = Utc::now();
    let run = daemon.run_job(&job(&daemon, "cloudwatch"), now, &cancel).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.error);

    // Expected: per instance with datapoints, the newest one inside the window.
    let (start, end) = window(now, 300, 7200, 0);
    let mut want = BTreeMap::new();
    for s in raw["cloudwatch"]["series"].as_array().unwrap() {
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
                let id = labels.split("dimension_InstanceId=\"").nth(1)?.split('"').next()?.to_string();
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
    assert_eq!(run.cloudwatch().unwrap().queries, 2 * instances as u64);
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
        "[database]\nurl = \"sqlite://{}\"\n\n[aws]\nendpoint_url = \"{}\"\n\n[[accounts]]\nname = \"main\"\n\n[collectors.cloudwatch]\nregions = [\"us-east-1\"]\n",
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
    let run = daemon.run_job(&job(&daemon, "cloudwatch"), Utc::now(), &CancellationToken::new()).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.error);
    // ceil(1234 / 500) = 3 calls for the first group, 1 for the second.
    assert_eq!(run.api_calls["cloudwatch:GetMetricData"], 4);
    let d = run.cloudwatch().unwrap();
    assert_eq!((d.queries, d.metrics_requested), (1244, 1244));
    let body = daemon.state.metrics();
    let avg = samples(&body, "aws_cloudwarden_test_load_average");
    assert_eq!(avg.len(), 617);
    for shard in [0, 1, 300, 616] {
        let key = format!("{{account=\"123456789012\",region=\"us-east-1\",dimension_Shard=\"{shard}\"}}");
        assert_eq!(avg[&key], shard as f64 * 1.5, "shard {shard}");
    }
    assert_eq!(samples(&body, "aws_cloudwarden_test_load_sum").len(), 10);
    assert!(!body.contains("GetMetricStatistics"));
}
