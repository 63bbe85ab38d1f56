//! CloudWatch Logs against moto: pattern counters count each event once, across runs and a restart; log
//! group facts (stored bytes, retention, newest event) are exported.

mod common;

use std::process::Command;

use chrono::{Duration, Utc};
use cloudwarden::config;
use cloudwarden::daemon::Daemon;
use cloudwarden::store::RunOutcome;
use common::Moto;
use tokio_util::sync::CancellationToken;

fn put_events(moto: &Moto, events: &[(i64, &str)]) {
    let list: Vec<String> = events.iter().map(|(t, m)| format!("dict(timestamp={t}, message={m:?})")).collect();
    let script = format!(
        r#"
import boto3
logs = boto3.client("logs", endpoint_url="{}", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
if not logs.describe_log_groups(logGroupNamePrefix="/app/api")["logGroups"]:
    logs.create_log_group(logGroupName="/app/api")
    logs.put_retention_policy(logGroupName="/app/api", retentionInDays=14)
    logs.create_log_stream(logGroupName="/app/api", logStreamName="web-1")
logs.put_log_events(logGroupName="/app/api", logStreamName="web-1", logEvents=[{}])
"#,
        moto.endpoint(),
        list.join(", ")
    );
    let out = Command::new(common::repo_root().join(".venv/bin/python")).arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn counter(body: &str, pattern: &str) -> Option<f64> {
    body.lines()
        .find(|l| {
            l.starts_with("cloudwarden_log_pattern_matches_total{") && l.contains(&format!("pattern=\"{pattern}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_counters_count_each_event_once() {
    common::aws_test_env();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let ms = |d: Duration| (now + d).timestamp_millis();
    put_events(
        &moto,
        &[
            (ms(Duration::minutes(-10)), "ERROR disk full on /var"),
            (ms(Duration::minutes(-9)), "INFO request ok"),
            (ms(Duration::minutes(-8)), "ERROR disk full on /tmp"),
            (ms(Duration::minutes(-7)), "ERROR upstream timeout"),
            (ms(Duration::minutes(-6)), "INFO request ok"),
            (ms(Duration::seconds(-30)), "ERROR disk full again"),
        ],
    );
    let text = format!(
        "[database]\nurl = \"sqlite://{}\"\ncreate_if_missing = true\n\n[aws]\nendpoint_url = \"{}\"\n\n[[accounts]]\nname = \"main\"\n\n[collectors.inventory]\nregions = [\"us-east-1\"]\n\n[collectors.logs]\ndelay_secs = 60\ninitial_lookback_secs = 3600\n\n[[collectors.logs.patterns]]\nlog_group = \"/app/api\"\nname = \"errors\"\npattern = \"ERROR\"\n\n[[collectors.logs.patterns]]\nlog_group = \"/app/api\"\nname = \"disk_full\"\npattern = \"\\\"disk full\\\"\"\n\n[[collectors.logs.patterns]]\nlog_group = \"/not/there\"\nname = \"errors\"\npattern = \"ERROR\"\n",
        dir.path().join("cw.db").display(),
        moto.endpoint()
    );
    let cfg = config::parse("t.toml", &text, &|_| None).unwrap();
    let daemon = Daemon::new(cfg.clone()).await.unwrap();
    let cancel = CancellationToken::new();
    assert_eq!(daemon.run_job("inventory", Utc::now(), &cancel).await.outcome, RunOutcome::Success);

    // First run: up to a minute ago. The event of 30 s ago is left for the next run.
    let first = daemon.run_job("logs", now, &cancel).await;
    assert_eq!(first.outcome, RunOutcome::Success, "{:?}", first.error);
    let body = daemon.state.metrics();
    assert_eq!(counter(&body, "errors"), Some(3.0), "{body}");
    assert_eq!(counter(&body, "disk_full"), Some(2.0));
    assert!(body.contains("cloudwarden_log_group_retention_seconds{account=\"123456789012\",region=\"us-east-1\",log_group=\"/app/api\"} 1209600"), "{body}");
    assert!(body.contains("cloudwarden_log_group_last_event_timestamp_seconds{"), "{body}");

    // Two minutes later: only what is new is added.
    put_events(&moto, &[(ms(Duration::seconds(20)), "ERROR later")]);
    let second = daemon.run_job("logs", now + Duration::minutes(2), &cancel).await;
    assert_eq!(second.outcome, RunOutcome::Success);
    assert_eq!(second.detail::<cloudwarden::jobs::logs::LogsDetail>().unwrap().matches_added, 3);
    let body = daemon.state.metrics();
    assert_eq!(counter(&body, "errors"), Some(5.0));
    assert_eq!(counter(&body, "disk_full"), Some(3.0));
    daemon.store.close().await;

    // After a restart the totals are kept, and counting goes on from where it stopped: only the event
    // after the last counted range is added.
    put_events(&moto, &[(ms(Duration::seconds(150)), "ERROR after the restart")]);
    let restarted = Daemon::new(cfg).await.unwrap();
    let third = restarted.run_job("logs", now + Duration::minutes(4), &cancel).await;
    assert_eq!(third.outcome, RunOutcome::Success);
    assert_eq!(third.detail::<cloudwarden::jobs::logs::LogsDetail>().unwrap().matches_added, 1);
    let body = restarted.state.metrics();
    assert_eq!(counter(&body, "errors"), Some(6.0));
    assert_eq!(counter(&body, "disk_full"), Some(3.0));
}
