//! Cost Explorer against moto: every page read, amounts stored exactly as the seed queued them, a second
//! run inside the interval makes no request, a later run asks only for the open days and replaces just
//! those, and all of it survives a restart. `/metrics` shows the windows.

mod common;

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{Days, NaiveDate, Utc};
use cloudwarden::config;
use cloudwarden::daemon::Daemon;
use cloudwarden::store::RunOutcome;
use collector::aws::costexplorer::CostMetric;
use common::{ce_result, moto_post, Moto};
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

const QUEUE: &str = "/moto-api/static/ce/cost-and-usage-results";

fn dec(v: &serde_json::Value) -> Decimal {
    Decimal::from_str(&v.to_string()).unwrap()
}

/// (day, dimension, key) → amount, from the store.
async fn stored(d: &Daemon, metric: CostMetric) -> BTreeMap<(NaiveDate, String, String), Decimal> {
    let from = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
    let to = NaiveDate::from_ymd_opt(2100, 1, 1).unwrap();
    d.store
        .cost_days(metric, from, to)
        .await
        .unwrap()
        .into_iter()
        .map(|c| ((c.day, c.dimension, c.key), c.amount))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_explorer_fetches_exactly_what_it_must() {
    common::aws_test_env();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let truth_path = dir.path().join("truth.json");
    moto.seed(0.05, dir.path());
    let truth: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(truth_path).unwrap()).unwrap();
    let parsed_truth = moto_truth(dir.path());
    let db = format!("sqlite://{}", dir.path().join("cw.db").display());
    let text = format!(
        "{}\n[collectors.cost_explorer]\naccount = \"management\"\n",
        parsed_truth.config(&moto.endpoint(), &db, "")
    );
    let cfg = config::parse("t.toml", &text, &|_| None).unwrap();
    let daemon = Daemon::new(cfg.clone()).await.unwrap();
    let job = "cost_explorer";
    let cancel = CancellationToken::new();
    let now = Utc::now();

    // First run: the whole lookback, both groupings, every amount exact.
    let first = daemon.run_job(job, now, &cancel).await;
    assert_eq!(first.outcome, RunOutcome::Success, "{:?}", first.error);
    assert_eq!(first.api_calls["costexplorer:GetCostAndUsage"], 2);
    let detail = first.detail::<cloudwarden::jobs::cost_explorer::CostExplorerDetail>().unwrap();
    assert_eq!(detail.window_start, Some(now.date_naive() - Days::new(90)));
    let mut want: BTreeMap<(CostMetric, NaiveDate, String, String), Decimal> = BTreeMap::new();
    for day in truth["billing"]["daily"].as_array().unwrap() {
        let date = NaiveDate::parse_from_str(day["date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
        for (dim, field) in [("service", "by_service"), ("account", "by_account")] {
            for (key, m) in day[field].as_object().unwrap() {
                for metric in CostMetric::ALL {
                    want.insert((metric, date, dim.to_string(), key.clone()), dec(&m[metric.api_name()]));
                }
            }
        }
    }
    for metric in CostMetric::ALL {
        let got = stored(&daemon, metric).await;
        let expected: BTreeMap<_, _> =
            want.iter().filter(|(k, _)| k.0 == metric).map(|(k, v)| ((k.1, k.2.clone(), k.3.clone()), *v)).collect();
        assert_eq!(got, expected, "{metric:?}");
    }

    // /metrics: yesterday's total is the truth's.
    let yesterday = (now.date_naive() - Days::new(1)).to_string();
    let truth_yesterday =
        truth["billing"]["daily"].as_array().unwrap().iter().find(|d| d["date"] == yesterday.as_str()).unwrap();
    let body = daemon.state.metrics();
    let line = body
        .lines()
        .find(|l| l.starts_with("cloudwarden_cost_usd{scope=\"total\",window=\"yesterday\",cost_type=\"unblended\"}"))
        .unwrap_or_else(|| panic!("no total for yesterday in:\n{body}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((value - truth_yesterday["total"]["UnblendedCost"].as_f64().unwrap()).abs() < 1e-6, "{line}");
    assert!(body.contains("cloudwarden_costexplorer_requests_total 2"), "{body}");
    assert!(body.contains("cloudwarden_aws_api_cost_usd_total{service=\"costexplorer\"} 0.02"), "{body}");

    // Inside the interval: a no-op, not a single request.
    let second = daemon.run_job(job, now + chrono::Duration::hours(1), &cancel).await;
    assert_eq!(second.outcome, RunOutcome::Skipped);
    assert_eq!(second.api_call_total(), 0);

    // Later: only the open days are asked for and replaced. moto answers the next new request with the
    // next queued result, so queue corrected figures for those days.
    let later = now + chrono::Duration::hours(7);
    let today = later.date_naive();
    let open: Vec<String> = (0..=3).rev().map(|i| (today - Days::new(i)).to_string()).collect();
    let service_days: Vec<common::CeDay> =
        open.iter().map(|d| (d.clone(), vec![("AmazonCloudWatch".into(), "1.0001".into(), "0.9999".into())])).collect();
    let account_days: Vec<common::CeDay> =
        open.iter().map(|d| (d.clone(), vec![("123456789012".into(), "1.0001".into(), "0.9999".into())])).collect();
    let results = vec![ce_result("SERVICE", &service_days, None), ce_result("LINKED_ACCOUNT", &account_days, None)];
    moto_post(&moto.endpoint(), QUEUE, &serde_json::json!({"account_id": "123456789012", "results": results})).await;
    let before = stored(&daemon, CostMetric::Unblended).await;
    let third = daemon.run_job(job, later, &cancel).await;
    assert_eq!(third.outcome, RunOutcome::Success, "{:?}", third.error);
    assert_eq!(third.api_calls["costexplorer:GetCostAndUsage"], 2);
    let d = third.detail::<cloudwarden::jobs::cost_explorer::CostExplorerDetail>().unwrap();
    assert_eq!((d.window_start, d.window_end), (Some(today - Days::new(3)), Some(today + Days::new(1))));
    let after = stored(&daemon, CostMetric::Unblended).await;
    let window_start = today - Days::new(3);
    let old: BTreeMap<_, _> = before.iter().filter(|(k, _)| k.0 < window_start).map(|(k, v)| (k.clone(), *v)).collect();
    let kept: BTreeMap<_, _> = after.iter().filter(|(k, _)| k.0 < window_start).map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(kept, old, "days before the window are untouched");
    let new: Vec<_> = after.iter().filter(|(k, _)| k.0 >= window_start).collect();
    assert_eq!(new.len(), 8, "the window holds exactly the corrected figures: {new:?}");
    assert!(new.iter().all(|(_, v)| v.to_string() == "1.0001"));
    daemon.store.close().await;

    // A restart keeps the data and the fetch log: still inside the interval, so no request.
    let restarted = Daemon::new(cfg).await.unwrap();
    let again = restarted.run_job(job, later + chrono::Duration::hours(2), &cancel).await;
    assert_eq!(again.outcome, RunOutcome::Skipped);
    assert_eq!(again.api_call_total(), 0);
    assert_eq!(stored(&restarted, CostMetric::Unblended).await, after);
}

fn moto_truth(dir: &std::path::Path) -> common::Truth {
    serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_read() {
    common::aws_test_env();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let today = Utc::now().date_naive();
    let d = |i: u64| (today - Days::new(i)).to_string();
    let page1 = ce_result("SERVICE", &[(d(2), vec![("A".into(), "1.5".into(), "1.5".into())])], Some("page-2"));
    let page2 = ce_result("SERVICE", &[(d(1), vec![("B".into(), "2.25".into(), "2".into())])], None);
    let accounts =
        ce_result("LINKED_ACCOUNT", &[(d(1), vec![("123456789012".into(), "3.75".into(), "3.5".into())])], None);
    moto_post(
        &moto.endpoint(),
        QUEUE,
        &serde_json::json!({"account_id": "123456789012", "results": [page1, page2, accounts]}),
    )
    .await;
    let db = format!("sqlite://{}", dir.path().join("cw.db").display());
    let text = format!(
        "[database]\nurl = \"{db}\"\ncreate_if_missing = true\n\n[aws]\nendpoint_url = \"{}\"\n\n[[accounts]]\nname = \"payer\"\n\n[collectors.cost_explorer]\nlookback_days = 30\n",
        moto.endpoint()
    );
    let daemon = Daemon::new(config::parse("t.toml", &text, &|_| None).unwrap()).await.unwrap();
    let run = daemon.run_job("cost_explorer", Utc::now(), &CancellationToken::new()).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.error);
    assert_eq!(run.api_calls["costexplorer:GetCostAndUsage"], 3);
    let got = stored(&daemon, CostMetric::Amortized).await;
    let want: BTreeMap<_, _> = [
        ((today - Days::new(2), "service".to_string(), "A".to_string()), Decimal::from_str("1.5").unwrap()),
        ((today - Days::new(1), "service".to_string(), "B".to_string()), Decimal::from_str("2").unwrap()),
        ((today - Days::new(1), "account".to_string(), "123456789012".to_string()), Decimal::from_str("3.5").unwrap()),
    ]
    .into();
    assert_eq!(got, want);
}
