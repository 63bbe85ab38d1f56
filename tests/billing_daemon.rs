//! Billing files as a daemon job: the `[collectors.billing_files]` section, the job's run rows and
//! summaries, and what `/metrics` shows of the loaded files (window costs by total, service, account and
//! tag; per-resource series only when enabled, capped; load counters by failure kind).
//!
//! The cost windows are checked exactly against hand-computed sums on a fixed day; the daemon part checks
//! the job's bookkeeping and that its series reach `/metrics`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use cloudwarden::billing::{billing_view, BillingView};
use cloudwarden::store::{RunOutcome, Store};
use collector::billing::{BillingSource, ReadOptions};
use collector::{AwsContext, AwsSettings};

const HEADER: &str = "ChargePeriodStart,BilledCost,EffectiveCost,ListCost,ProviderName,BillingAccountId,SubAccountId,\
ServiceName,ChargeCategory,BillingCurrency,ResourceId,RegionId,Tags";

/// One FOCUS row: day, sub-account, service, resource, billed, effective, list, currency, tags (JSON).
type Row<'a> = (NaiveDate, &'a str, &'a str, &'a str, &'a str, &'a str, &'a str, &'a str, &'a str);

fn focus_csv(rows: &[Row<'_>]) -> String {
    let mut out = format!("{HEADER}\n");
    for (day, account, service, resource, billed, effective, list, currency, tags) in rows {
        let resource = if resource.is_empty() { "NULL".to_string() } else { format!("\"{resource}\"") };
        let tags = if tags.is_empty() { "NULL".to_string() } else { format!("\"{}\"", tags.replace('"', "\"\"")) };
        out.push_str(&format!(
            "\"{day} 10:00:00\",{billed},{effective},{list},\"AWS\",\"999999999999\",\"{account}\",\"{service}\",\"Usage\",\"{currency}\",{resource},\"us-east-1\",{tags}\n"
        ));
    }
    out
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// The view's series as (window, cost_type, dimension, key) → USD.
fn series(view: &BillingView) -> BTreeMap<(String, String, String, String), f64> {
    view.costs
        .iter()
        .map(|c| ((c.window.to_string(), c.cost_type.to_string(), c.dimension.clone(), c.key.clone()), c.usd))
        .collect()
}

fn check(got: &BTreeMap<(String, String, String, String), f64>, want: &[(&str, &str, &str, &str, &str)]) {
    for (window, cost_type, dimension, key, usd) in want {
        let k = (window.to_string(), cost_type.to_string(), dimension.to_string(), key.to_string());
        let expected: f64 = usd.parse().unwrap();
        assert_eq!(got.get(&k), Some(&expected), "{k:?} in {got:#?}");
    }
}

async fn store_with(dir: &Path, csv: &str) -> Store {
    std::fs::write(dir.join("export.csv"), csv).unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.join("cw.db").display()), 2).await.unwrap();
    common::aws_test_env();
    let ctx = AwsContext::new(&AwsSettings::default()).await;
    let source = BillingSource::parse(&dir.join("export.csv").display().to_string()).unwrap();
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
    store
}

/// Today is 2026-03-10: yesterday is 03-09, the last seven days 03-03..=03-09, the month to date
/// 03-01..=03-10.
#[tokio::test]
async fn windows_sum_exactly_by_scope_and_cost_type() {
    let dir = tempfile::tempdir().unwrap();
    let red = r#"{"team": "red"}"#;
    let blue = r#"{"team": "blue", "env": "prod"}"#;
    let rows: Vec<Row<'_>> = vec![
        (day("2026-03-09"), "111", "Amazon EC2", "i-1", "1.10", "1.00", "1.20", "USD", red),
        (day("2026-03-05"), "111", "Amazon S3", "bkt", "0.30", "0.30", "0.35", "USD", blue),
        (day("2026-03-01"), "222", "Amazon EC2", "i-2", "2.00", "1.50", "2.50", "USD", ""),
        (day("2026-03-04"), "222", "Amazon EC2", "i-2", "0.50", "0.50", "0.50", "USD", ""),
        (day("2026-03-10"), "111", "Amazon EC2", "i-1", "0.10", "0.10", "0.10", "USD", red),
        (day("2026-03-09"), "111", "Tax", "", "0.05", "0.05", "0.05", "USD", ""),
        // Not dollars: left out of the USD series, counted.
        (day("2026-03-09"), "111", "Amazon EC2", "i-1", "9.99", "9.99", "9.99", "EUR", red),
        // Before every window.
        (day("2026-02-20"), "111", "Amazon EC2", "i-1", "7.00", "7.00", "7.00", "USD", red),
    ];
    let store = store_with(dir.path(), &focus_csv(&rows)).await;
    let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
    let tags = vec!["team".to_string()];

    let view = billing_view(&store, now, &tags, None).await.unwrap();
    assert_eq!(view.today, Some(day("2026-03-10")));
    assert_eq!(view.newest_day, Some(day("2026-03-10")));
    assert_eq!(view.other_currency_rows, 1);
    assert!(view.resources.is_empty(), "per-resource series are opt-in");
    let got = series(&view);
    check(
        &got,
        &[
            ("yesterday", "effective", "total", "", "1.05"),
            ("yesterday", "billed", "total", "", "1.15"),
            ("yesterday", "list", "total", "", "1.25"),
            ("yesterday", "effective", "service", "Amazon EC2", "1.00"),
            ("yesterday", "effective", "service", "Tax", "0.05"),
            ("yesterday", "effective", "account", "111", "1.05"),
            ("yesterday", "effective", "tag:team", "red", "1.00"),
            ("last_7_days", "effective", "total", "", "1.85"),
            ("last_7_days", "effective", "service", "Amazon EC2", "1.50"),
            ("last_7_days", "effective", "service", "Amazon S3", "0.30"),
            ("last_7_days", "effective", "account", "111", "1.35"),
            ("last_7_days", "effective", "account", "222", "0.50"),
            ("last_7_days", "effective", "tag:team", "blue", "0.30"),
            ("month_to_date", "effective", "total", "", "3.45"),
            ("month_to_date", "billed", "total", "", "4.05"),
            ("month_to_date", "effective", "account", "222", "2.00"),
            ("month_to_date", "effective", "tag:team", "red", "1.10"),
        ],
    );
    // No series for a window without cost, and none for tag keys that were not asked for.
    assert!(!got.keys().any(|k| k.0 == "yesterday" && k.3 == "222"), "{got:#?}");
    assert!(!got.keys().any(|k| k.2 == "tag:env"), "{got:#?}");

    // Per resource, capped at the two most expensive of the month to date: i-2 (2.00), then i-1 (1.10).
    let view = billing_view(&store, now, &tags, Some(2)).await.unwrap();
    assert_eq!(view.resources_left_out, 1);
    let resources: BTreeMap<(String, &str, &str), f64> = view
        .resources
        .iter()
        .filter(|r| r.cost_type == "effective")
        .map(|r| ((r.resource_id.clone(), r.window, r.account.as_str()), r.usd))
        .collect();
    let want: BTreeMap<(String, &str, &str), f64> = [
        (("i-1".to_string(), "yesterday", "111"), 1.0),
        (("i-1".to_string(), "last_7_days", "111"), 1.0),
        (("i-1".to_string(), "month_to_date", "111"), 1.1),
        (("i-2".to_string(), "last_7_days", "222"), 0.5),
        (("i-2".to_string(), "month_to_date", "222"), 2.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(resources, want);
}

/// Two rows of 5e28 for different services: each fits a decimal, their sum in a window does not. They are
/// malformed rows when read; rows that big stored before that check make the windows an error, not a panic.
#[tokio::test]
async fn amounts_beyond_one_quadrillion_are_malformed_and_never_crash_the_windows() {
    use cloudwarden::billing::{load_billing, FileStatus};
    use cloudwarden::store::StoreError;
    use collector::aws::costexplorer::{CostFetch, CostMetric, CostRow};
    use collector::billing::Decimal;

    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Row<'_>> = vec![
        (day("2026-03-09"), "111", "Amazon EC2", "i-1", "5e28", "5e28", "5e28", "USD", ""),
        (day("2026-03-09"), "111", "Amazon S3", "bkt", "5e28", "5e28", "5e28", "USD", ""),
        (day("2026-03-09"), "111", "Amazon EC2", "i-1", "1.25", "1.25", "1.25", "USD", ""),
    ];
    let path = dir.path().join("export.csv");
    std::fs::write(&path, focus_csv(&rows)).unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("cw.db").display()), 1).await.unwrap();
    common::aws_test_env();
    let ctx = AwsContext::new(&AwsSettings::default()).await;
    let source = BillingSource::parse(&path.display().to_string()).unwrap();
    let [fail, skip] = [false, true].map(|skip_malformed| ReadOptions { skip_malformed, ..ReadOptions::default() });
    let load = |opts| load_billing(&store, &ctx, &ctx.accounts[0], "us-east-1", std::slice::from_ref(&source), opts);
    let uri = std::fs::canonicalize(&path).unwrap().display().to_string();

    let report = load(&fail).await;
    let FileStatus::Failed { kind, error } = &report.files[0].status else { panic!("{report:?}") };
    assert_eq!(
        (*kind, error.as_str()),
        (
            "malformed_row",
            format!(
                "{uri}: line 2, column BilledCost: amount 50000000000000000000000000000 is outside the accepted \
                 range of ±1000000000000000"
            )
            .as_str()
        )
    );

    let report = load(&skip).await;
    assert_eq!((report.loaded(), report.rows_read(), report.rows_skipped()), (1, 3, 2), "{report:?}");
    let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
    let view = billing_view(&store, now, &[], Some(10)).await.unwrap();
    check(&series(&view), &[("yesterday", "effective", "total", "", "1.25")]);

    // Rows stored before amounts were bounded: every sum of them is an error naming the overflow.
    let huge = "50000000000000000000000000000";
    for service in ["Amazon EC2", "Amazon S3"] {
        let copied = sqlx::query(
            "INSERT INTO billing_costs (file_id, day, provider, billing_account_id, account_id, service, \
             resource_id, region, charge_category, currency, billed_cost, effective_cost, list_cost, tags) \
             SELECT file_id, day, provider, billing_account_id, account_id, $1, NULL, region, charge_category, \
             currency, $2, $2, $2, tags FROM billing_costs WHERE billed_cost = '1.25'",
        )
        .bind(service)
        .bind(huge)
        .execute(store.pool())
        .await
        .unwrap();
        assert_eq!(copied.rows_affected(), 1);
    }
    let overflows = |e: StoreError| {
        let text = e.to_string();
        assert!(text.contains("money sum overflows the decimal range"), "{text}");
    };
    overflows(billing_view(&store, now, &[], Some(10)).await.unwrap_err());
    overflows(store.billing_totals(cloudwarden::store::BillingGroup::Day, None).await.unwrap_err());
    // The rules' older days are summed per (day, account, service, tags): one service, two huge rows.
    sqlx::query("UPDATE billing_costs SET service = 'Same', resource_id = NULL").execute(store.pool()).await.unwrap();
    overflows(cloudwarden::jobs::rules::daily_costs(&store, day("2026-03-10"), 30, 0).await.unwrap_err());

    // The same from Cost Explorer days stored before the bound: the windows are an error.
    let ce_row = |key: &str| CostRow {
        day: day("2026-03-09"),
        dimension: "service".into(),
        key: key.into(),
        metric: CostMetric::Amortized,
        amount: huge.parse::<Decimal>().unwrap(),
        unit: "USD".into(),
        estimated: false,
    };
    let fetch = CostFetch { rows: vec![ce_row("Amazon EC2"), ce_row("Amazon S3")], ..CostFetch::default() };
    store.record_costs(&fetch, &["service".into()], day("2026-03-09"), day("2026-03-10"), now).await.unwrap();
    overflows(cloudwarden::jobs::cost_explorer::cost_windows(&store, now).await.unwrap_err());
}

fn config(dir: &Path, extra: &str) -> cloudwarden::config::Config {
    let text = format!(
        "[database]\nurl = \"sqlite://{}\"\ncreate_if_missing = true\n\n[[accounts]]\nname = \"main\"\n\n[collectors.billing_files]\nsources = [\"{}/*.csv\"]\ntag_keys = [\"team\"]\n{extra}",
        dir.join("cw.db").display(),
        dir.join("exports").display()
    );
    cloudwarden::config::parse("t.toml", &text, &|_| None).unwrap()
}

/// `name{labels} value` lines of one metric, as label-text → value.
fn samples(body: &str, name: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter_map(|l| l.strip_prefix(name).filter(|r| r.starts_with('{') || r.starts_with(' ')))
        .map(|r| {
            let (labels, value) = r.rsplit_once(' ').unwrap();
            (labels.trim().to_string(), value.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_loads_new_files_counts_failures_and_exports_costs() {
    common::aws_test_env();
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    std::fs::create_dir(&exports).unwrap();
    let before: DateTime<Utc> = Utc::now();
    let yesterday = before.date_naive() - Days::new(1);
    let red = r#"{"team": "red"}"#;
    std::fs::write(
        exports.join("a.csv"),
        focus_csv(&[
            (yesterday, "111", "Amazon EC2", "i-1", "1.25", "1.20", "1.30", "USD", red),
            (yesterday, "111", "Amazon S3", "bkt", "0.75", "0.70", "0.80", "USD", ""),
        ]),
    )
    .unwrap();

    let daemon = cloudwarden::daemon::Daemon::new(config(dir.path(), "resource_costs = true\n")).await.unwrap();
    let job = "billing_files";
    let cancel = tokio_util::sync::CancellationToken::new();

    let first = daemon.run_job(job, Utc::now(), &cancel).await;
    assert_eq!(first.outcome, RunOutcome::Success, "{:?}", first.error);
    assert_eq!(first.items, 2);
    let detail = first.detail::<cloudwarden::jobs::billing_files::BillingFilesDetail>().unwrap();
    assert_eq!((detail.files_loaded, detail.files_unchanged, detail.files_failed, detail.cost_rows), (1, 0, 0, 2));
    let body = daemon.state.metrics();
    if Utc::now().date_naive() == before.date_naive() {
        let costs = samples(&body, "cloudwarden_billing_cost_usd");
        assert_eq!(costs.get(r#"{scope="total",window="yesterday",cost_type="billed"}"#), Some(&2.0), "{body}");
        assert_eq!(
            costs.get(r#"{scope="tag",window="yesterday",cost_type="effective",tag_key="team",tag_value="red"}"#),
            Some(&1.2),
            "{body}"
        );
        let resources = samples(&body, "cloudwarden_resource_cost_usd");
        assert_eq!(
            resources
                .get(r#"{account="111",service="Amazon S3",resource_id="bkt",window="yesterday",cost_type="list"}"#),
            Some(&0.8),
            "{body}"
        );
    }
    assert_eq!(samples(&body, "cloudwarden_billing_rows_read_total").get(""), Some(&2.0), "{body}");
    assert_eq!(samples(&body, "cloudwarden_billing_files").get(r#"{status="loaded"}"#), Some(&1.0), "{body}");
    assert_eq!(
        samples(&body, "cloudwarden_billing_failures_total").get(r#"{kind="malformed_row"}"#),
        Some(&0.0),
        "{body}"
    );

    // Nothing new: not read again. A new malformed file fails alone, named with its line; the run is partial.
    std::fs::write(
        exports.join("b.csv"),
        format!("{HEADER}\n\"not a date\",1,1,1,AWS,9,111,S,Usage,USD,NULL,NULL,NULL\n"),
    )
    .unwrap();
    let second = daemon.run_job(job, Utc::now(), &cancel).await;
    assert_eq!(second.outcome, RunOutcome::Partial);
    assert_eq!(second.items, 0, "a failed file counts no row");
    let detail = second.detail::<cloudwarden::jobs::billing_files::BillingFilesDetail>().unwrap();
    assert_eq!((detail.files_loaded, detail.files_unchanged, detail.files_failed), (0, 1, 1));
    assert_eq!(second.failures.len(), 1);
    assert!(second.failures[0].source.ends_with("b.csv"), "{:?}", second.failures);
    assert!(second.failures[0].error.contains("line 2"), "{:?}", second.failures);
    let body = daemon.state.metrics();
    assert_eq!(
        samples(&body, "cloudwarden_billing_failures_total").get(r#"{kind="malformed_row"}"#),
        Some(&1.0),
        "{body}"
    );
    assert_eq!(samples(&body, "cloudwarden_billing_files").get(r#"{status="failed"}"#), Some(&1.0), "{body}");
    assert_eq!(samples(&body, "cloudwarden_billing_rows_read_total").get(""), Some(&2.0), "{body}");
    let runs = daemon.store.runs("billing_files", 10).await.unwrap();
    assert_eq!(runs.len(), 2);

    // A restart keeps what was loaded: the files are unchanged, and the costs are served at once.
    drop(daemon);
    std::fs::remove_file(exports.join("b.csv")).unwrap();
    let restarted = cloudwarden::daemon::Daemon::new(config(dir.path(), "")).await.unwrap();
    let body = restarted.state.metrics();
    assert!(body.contains("cloudwarden_billing_cost_usd{"), "{body}");
    assert!(!body.contains("cloudwarden_resource_cost_usd"), "per-resource series are off now:\n{body}");
    let third = restarted.run_job(job, Utc::now(), &cancel).await;
    assert_eq!(third.outcome, RunOutcome::Success, "{:?}", third.error);
    assert_eq!(third.detail::<cloudwarden::jobs::billing_files::BillingFilesDetail>().unwrap().files_unchanged, 1);
    assert_eq!(third.items, 0);
}

#[test]
fn config_errors_name_the_field() {
    let text = "[[accounts]]\nname = \"main\"\n\n[collectors.billing_files]\nsources = [\"s3://\", \"exports/*.csv\"]\naccount = \"nobody\"\nregion = \"mars-1\"\ntag_keys = [\"team\", \"team\"]\nresource_costs = true\nmax_resource_series = 0\n";
    let errors = cloudwarden::config::parse("t.toml", text, &|_| None).unwrap_err().to_string();
    for want in [
        "collectors.billing_files.sources[0]",
        "collectors.billing_files.account: no [[accounts]] entry is named \"nobody\"",
        "collectors.billing_files.region: unknown region \"mars-1\"",
        "collectors.billing_files.tag_keys[1]: tag key \"team\" is listed twice",
        "collectors.billing_files.max_resource_series: must be at least 1",
    ] {
        assert!(errors.contains(want), "{want:?} not in:\n{errors}");
    }
}
