//! The weekly report of real billing data: the FOCUS 1.0 sample (`tests/data/focus/`, or the file
//! `CLOUDWARDEN_FOCUS_SAMPLE` names) is loaded through the billing files collector into SQLite, the report is
//! built from the store through `cloudwarden report weekly`, and every line of its JSON is compared, to the
//! cent, with figures this test computes itself from the CSV file, row by row, without the collector.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use chrono::{Days, NaiveDate};
use cloudwarden::billing::load_billing;
use cloudwarden::report::Week;
use cloudwarden::store::Store;
use collector::billing::{BillingSource, ReadOptions};
use collector::{AwsContext, AwsSettings};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

const TAG_KEYS: [&str; 3] = ["environment", "business_unit", "team"];

fn sample() -> PathBuf {
    std::env::var_os("CLOUDWARDEN_FOCUS_SAMPLE")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join("tests/data/focus/focus_sample_1000.csv"))
}

/// One row of the file as this test reads it: (day, account, service, currency, effective cost, tags).
struct Charge {
    day: NaiveDate,
    account: String,
    service: String,
    currency: String,
    cost: Decimal,
    tags: BTreeMap<String, String>,
}

fn charges(path: &Path) -> Vec<Charge> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    let (day, account, service, currency, cost, tags) = (
        col("ChargePeriodStart"),
        col("SubAccountId"),
        col("ServiceName"),
        col("BillingCurrency"),
        col("EffectiveCost"),
        col("Tags"),
    );
    let mut out = Vec::new();
    for record in reader.records() {
        let r = record.unwrap();
        let tags: BTreeMap<String, String> = match &r[tags] {
            "NULL" | "" => BTreeMap::new(),
            json => serde_json::from_str::<BTreeMap<String, Value>>(json)
                .unwrap()
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
                .collect(),
        };
        out.push(Charge {
            day: NaiveDate::parse_from_str(&r[day][..10], "%Y-%m-%d").unwrap(),
            account: r[account].to_string(),
            service: r[service].to_string(),
            currency: r[currency].to_string(),
            cost: Decimal::from_str(&r[cost]).or_else(|_| Decimal::from_scientific(&r[cost])).unwrap(),
            tags,
        });
    }
    out
}

fn cents(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// A JSON amount (an exact decimal string) to the cent.
fn money(v: &Value) -> Decimal {
    cents(Decimal::from_str(v.as_str().unwrap_or_else(|| panic!("not an amount: {v}"))).unwrap())
}

/// (this week, previous week) of the charges `f` picks, in USD.
fn weeks(charges: &[Charge], week: Week, f: impl Fn(&Charge) -> bool) -> (Decimal, Decimal) {
    let sum = |w: Week| -> Decimal {
        charges
            .iter()
            .filter(|c| c.currency == "USD" && (w.start()..=w.end()).contains(&c.day) && f(c))
            .map(|c| c.cost)
            .sum()
    };
    (sum(week), sum(week.previous()))
}

fn config(dir: &Path, file: &Path) -> PathBuf {
    let path = dir.join("cloudwarden.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"sqlite://{}\"\ncreate_if_missing = true\n\n[collectors.billing_files]\nsources = [\"{}\"]\n\n\
             [reports.weekly]\ncost_source = \"billing_files\"\ntag_keys = [{}]\n",
            dir.join("cw.db").display(),
            file.display(),
            TAG_KEYS.map(|k| format!("\"{k}\"")).join(", ")
        ),
    )
    .unwrap();
    path
}

fn cloudwarden(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cloudwarden")).args(args).output().unwrap();
    assert!(out.status.success(), "cloudwarden {args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Every line of one grouping: the keys are those with a cost in either week, and each amount is right.
fn check_lines(what: &str, lines: &Value, want: &BTreeMap<String, (Decimal, Decimal)>) {
    let lines = lines.as_array().unwrap();
    let got: BTreeMap<String, (Decimal, Decimal, Decimal)> = lines
        .iter()
        .map(|l| {
            (
                l["key"].as_str().unwrap().to_string(),
                (money(&l["this_week"]), money(&l["previous_week"]), money(&l["change"])),
            )
        })
        .collect();
    let want: BTreeMap<String, (Decimal, Decimal, Decimal)> =
        want.iter().map(|(k, (t, p))| (k.clone(), (cents(*t), cents(*p), cents(*t - *p)))).collect();
    assert_eq!(got, want, "{what}");
    // Largest this week first.
    let order: Vec<Decimal> =
        lines.iter().map(|l| Decimal::from_str(l["this_week"].as_str().unwrap()).unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] >= w[1]), "{what}: {order:?}");
}

/// Loads `file` into the database at `dir/cw.db` through the billing files collector (a local file: no AWS
/// call).
async fn load(dir: &Path, file: &Path) {
    common::aws_test_env();
    let store = Store::connect(&format!("sqlite://{}", dir.join("cw.db").display()), 2).await.unwrap();
    let ctx = AwsContext::new(&AwsSettings::default()).await;
    let source = BillingSource::parse(&file.display().to_string()).unwrap();
    let report = load_billing(&store, &ctx, &ctx.accounts[0], "us-east-1", &[source], &ReadOptions::default()).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.rows_skipped(), 0, "{report:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weekly_report_of_the_focus_sample_matches_the_file_to_the_cent() {
    let file = sample();
    let all = charges(&file);
    let dir = tempfile::tempdir().unwrap();
    load(dir.path(), &file).await;
    let config = config(dir.path(), &file);
    let config = config.to_str().unwrap();

    let newest = all.iter().map(|c| c.day).max().unwrap();
    // The last complete week of the file, and the week it ends in.
    let mut checked = 0;
    for week in [Week::of(newest - Days::new(7)), Week::of(newest)] {
        let json =
            cloudwarden(&["report", "weekly", "--config", config, "--week", &week.to_string(), "--format", "json"]);
        let r: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(r["week"], week.to_string());
        assert_eq!(r["source"], "billing_files");

        // The total, against the previous week and the mean of the weeks before with data.
        let (t, p) = weeks(&all, week, |_| true);
        assert_eq!((money(&r["total"]["this_week"]), money(&r["total"]["previous_week"])), (cents(t), cents(p)));
        assert_eq!(money(&r["total"]["change"]), cents(t - p));
        let mut before = Vec::new();
        for n in 1..=4u64 {
            let start = week.start() - Days::new(7 * n);
            if all.iter().any(|c| (start..=start + Days::new(6)).contains(&c.day)) {
                before.push(weeks(&all, Week::of(start), |_| true).0);
            }
        }
        let average = before.iter().copied().sum::<Decimal>() / Decimal::from(before.len());
        assert_eq!(money(&r["total"]["average"]), cents(average), "{} week(s)", before.len());
        assert_eq!(r["total"]["average_weeks"], before.len());

        // By service, account and tag value: every key with a cost in either week.
        let group = |key: &dyn Fn(&Charge) -> Option<String>| {
            let mut out: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
            for (w, slot) in [(week, 0), (week.previous(), 1)] {
                for c in all.iter().filter(|c| c.currency == "USD" && (w.start()..=w.end()).contains(&c.day)) {
                    if let Some(k) = key(c) {
                        let e = out.entry(k).or_default();
                        if slot == 0 {
                            e.0 += c.cost;
                        } else {
                            e.1 += c.cost;
                        }
                    }
                }
            }
            out
        };
        check_lines("by service", &r["by_service"], &group(&|c| Some(c.service.clone())));
        check_lines("by account", &r["by_account"], &group(&|c| Some(c.account.clone())));
        let tag = |c: &Charge, k: &str| c.tags.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        for (i, key) in TAG_KEYS.iter().enumerate() {
            let b = &r["by_tag"][i];
            assert_eq!(b["key"], *key);
            check_lines(&format!("tag {key}"), &b["lines"], &group(&|c| tag(c, key)));
            let (ut, up) = weeks(&all, week, |c| tag(c, key).is_none());
            assert_eq!(
                (money(&b["untagged"]["this_week"]), money(&b["untagged"]["previous_week"])),
                (cents(ut), cents(up))
            );
        }
        let notes = r["notes"].to_string();
        assert!(notes.contains("No cost carries the tag `team`"), "{notes}");

        // Movers: (service, account) pairs by their change, ten each way.
        let pairs = group(&|c| Some(format!("{}|{}", c.service, c.account)));
        let mut changes: Vec<(Decimal, String)> =
            pairs.iter().map(|(k, (t, p))| (*t - *p, k.clone())).filter(|(c, _)| !c.is_zero()).collect();
        changes.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let up: Vec<(String, Decimal)> = changes
            .iter()
            .filter(|(c, _)| c.is_sign_positive())
            .take(10)
            .map(|(c, k)| (k.clone(), cents(*c)))
            .collect();
        let mut down: Vec<(Decimal, String)> = changes.iter().filter(|(c, _)| c.is_sign_negative()).cloned().collect();
        down.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let down: Vec<(String, Decimal)> = down.into_iter().take(10).map(|(c, k)| (k, cents(c))).collect();
        let movers = |v: &Value| -> Vec<(String, Decimal)> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        format!("{}|{}", m["service"].as_str().unwrap(), m["account_id"].as_str().unwrap()),
                        money(&m["change"]),
                    )
                })
                .collect()
        };
        assert_eq!(movers(&r["movers_up"]), up);
        assert_eq!(movers(&r["movers_down"]), down);

        // The daily series over five weeks: each day's total, and the parts add up to it.
        for d in r["daily"].as_array().unwrap() {
            let day = NaiveDate::parse_from_str(d["day"].as_str().unwrap(), "%Y-%m-%d").unwrap();
            let want: Decimal = all.iter().filter(|c| c.currency == "USD" && c.day == day).map(|c| c.cost).sum();
            assert_eq!(money(&d["total"]), cents(want), "{day}");
            let parts: Decimal =
                d["amounts"].as_array().unwrap().iter().map(|a| Decimal::from_str(a.as_str().unwrap()).unwrap()).sum();
            assert_eq!(cents(parts), cents(want), "{day}");
        }
        // Days without data are named.
        let missing: Vec<String> = week
            .start()
            .iter_days()
            .take(7)
            .filter(|d| !all.iter().any(|c| c.day == *d))
            .map(|d| d.to_string())
            .collect();
        let got: Vec<String> = r["freshness"]["missing_days"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, missing);
        eprintln!(
            "{week}: total {} (previous {}, {} service lines, {} account lines, {} movers up, {} down, {} missing days)",
            cents(t),
            cents(p),
            r["by_service"].as_array().unwrap().len(),
            r["by_account"].as_array().unwrap().len(),
            up.len(),
            down.len(),
            missing.len()
        );
        checked += 1;

        // The other formats say the same total.
        let html =
            cloudwarden(&["report", "weekly", "--config", config, "--week", &week.to_string(), "--format", "html"]);
        let total = format!(">{}</div>", cloudwarden::report::text::usd(t));
        assert!(
            html.contains(&format!("id=\"total-this-week\" style=\"font-size:24px;font-weight:700\"{total}")),
            "{html}"
        );
        let md = cloudwarden(&["report", "weekly", "--config", config, "--week", &week.to_string()]);
        assert!(md.contains(&format!("| this week | {} |", cloudwarden::report::text::usd(t))), "{md}");
        let csv =
            cloudwarden(&["report", "weekly", "--config", config, "--week", &week.to_string(), "--format", "csv"]);
        assert!(
            csv.lines().nth(1).unwrap().starts_with(&format!("{week},total,,,{:.2},{:.2},", cents(t), cents(p))),
            "{csv}"
        );
    }
    assert_eq!(checked, 2);

    // A week without data: a report that says so.
    let json = cloudwarden(&["report", "weekly", "--config", config, "--week", "2020-W10", "--format", "json"]);
    let r: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r["total"]["this_week"], "0");
    assert!(r["notes"][0].as_str().unwrap().starts_with("No cost data for 2020-W10"), "{}", r["notes"]);

    // Bad input: a clear error, not a report.
    let out = Command::new(env!("CARGO_BIN_EXE_cloudwarden"))
        .args(["report", "weekly", "--config", config, "--week", "2025-W53"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2025 has no week 53"));
}

/// An amount of the seed's truth (a JSON number with four decimals) as the exact decimal it was written as.
fn truth_amount(v: &Value) -> Decimal {
    Decimal::from_str(&v.to_string()).unwrap_or_else(|e| panic!("{v}: {e}"))
}

/// The report of the last complete week from Cost Explorer on the moto test-bed (collected by the daemon's
/// job through the real SDK), against the seed's own record of each day's cost by service and account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weekly_report_of_the_test_beds_cost_explorer_matches_the_seed() {
    common::aws_test_env();
    let dir = tempfile::tempdir().unwrap();
    let moto = common::Moto::start();
    let parsed = moto.seed(0.1, dir.path());
    let truth: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("truth.json")).unwrap()).unwrap();
    let management = &parsed.accounts.iter().find(|a| a.role_arn.is_none()).unwrap().name;
    let db = format!("sqlite://{}", dir.path().join("cw.db").display());
    let config = format!(
        "{}\n[collectors.cost_explorer]\naccount = \"{management}\"\n\n[reports.weekly]\ncost_source = \"cost_explorer\"\n",
        parsed.config(&moto.endpoint(), &db, "")
    );
    let path = dir.path().join("cloudwarden.toml");
    std::fs::write(&path, config).unwrap();
    let path = path.to_str().unwrap();
    // Inventory too: it learns the configured accounts' ids, which name the report's account lines.
    cloudwarden(&["collect", "--config", path, "--collector", "cost_explorer"]);
    cloudwarden(&["collect", "--config", path, "--collector", "inventory"]);

    let week = Week::last_complete(chrono::Utc::now());
    let r: Value = serde_json::from_str(&cloudwarden(&[
        "report",
        "weekly",
        "--config",
        path,
        "--week",
        &week.to_string(),
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(r["source"], "cost_explorer");
    let days = truth["billing"]["daily"].as_array().unwrap();
    let in_week = |w: Week| {
        days.iter().filter(move |d| {
            let day = NaiveDate::parse_from_str(d["date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
            (w.start()..=w.end()).contains(&day)
        })
    };
    let sum = |w: Week, pick: &dyn Fn(&Value) -> Option<Decimal>| -> Decimal { in_week(w).filter_map(pick).sum() };
    let total = |d: &Value| Some(truth_amount(&d["total"]["AmortizedCost"]));
    assert_eq!(money(&r["total"]["this_week"]), cents(sum(week, &total)));
    assert_eq!(money(&r["total"]["previous_week"]), cents(sum(week.previous(), &total)));

    for (field, grouping) in [("by_service", "by_service"), ("by_account", "by_account")] {
        let mut want: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
        for (w, slot) in [(week, 0), (week.previous(), 1)] {
            for d in in_week(w) {
                for (key, amounts) in d[grouping].as_object().unwrap() {
                    let e = want.entry(key.clone()).or_default();
                    let a = truth_amount(&amounts["AmortizedCost"]);
                    if slot == 0 {
                        e.0 += a;
                    } else {
                        e.1 += a;
                    }
                }
            }
        }
        check_lines(field, &r[field], &want);
    }
    // Account lines carry the configured names.
    for line in r["by_account"].as_array().unwrap() {
        let id = line["key"].as_str().unwrap();
        let name = parsed.accounts.iter().find(|a| a.id == id).map(|a| a.name.as_str());
        assert_eq!(line["name"].as_str(), name, "{line}");
    }
    let estimated: Vec<String> =
        in_week(week).filter(|d| d["estimated"] == true).map(|d| d["date"].as_str().unwrap().to_string()).collect();
    let got: Vec<String> =
        r["freshness"]["estimated_days"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect();
    assert_eq!(got, estimated);
    eprintln!(
        "{week} from Cost Explorer: total {} (previous {}), {} services, {} accounts, {} estimated days",
        money(&r["total"]["this_week"]),
        money(&r["total"]["previous_week"]),
        r["by_service"].as_array().unwrap().len(),
        r["by_account"].as_array().unwrap().len(),
        estimated.len()
    );
}

/// Tag compliance week over week: what the rules recorded on the weeks' last evaluated days, per account.
#[tokio::test]
async fn tag_compliance_is_compared_with_the_week_before() {
    use rules::tagging::Compliance;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("cw.db").display()), 2).await.unwrap();
    let c = |account: &str, resource_type: &str, in_scope: u64, compliant: u64| Compliance {
        account_id: account.into(),
        resource_type: resource_type.into(),
        resources: in_scope + 1,
        untagged: 0,
        in_scope,
        compliant,
        non_compliant_monthly_usd: Decimal::ZERO,
    };
    let week = Week::parse("2026-W49").unwrap();
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    // The week before: evaluated on Friday, then Saturday (the newer one counts); this week on Wednesday and
    // after the week's end (not counted).
    store.record_compliance(day("2026-11-27"), &[c("111111111111", "ec2:instance", 10, 1)]).await.unwrap();
    store
        .record_compliance(
            day("2026-11-28"),
            &[c("111111111111", "ec2:instance", 10, 5), c("111111111111", "s3:bucket", 10, 5)],
        )
        .await
        .unwrap();
    store.record_compliance(day("2026-12-02"), &[c("333333333333", "ec2:instance", 10, 0)]).await.unwrap();
    store.record_compliance(day("2026-12-08"), &[c("111111111111", "ec2:instance", 10, 10)]).await.unwrap();
    // A later evaluation of the same day replaces what the earlier one recorded.
    let wednesday = [
        c("111111111111", "ec2:instance", 10, 8),
        c("111111111111", "s3:bucket", 20, 10),
        c("222222222222", "rds:db", 3, 3),
    ];
    store.record_compliance(day("2026-12-02"), &wednesday).await.unwrap();

    let input = cloudwarden::report::gather(
        &store,
        week,
        cloudwarden::report::CostSource::BillingFiles,
        &[],
        None,
        false,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let r = cloudwarden::report::build(&input).unwrap();
    let c = &r.compliance;
    assert_eq!((c.as_of, c.previous_as_of), (Some(day("2026-12-02")), Some(day("2026-11-28"))));
    let shown = |p: Option<Decimal>| p.map_or("-".to_string(), |p| p.to_string());
    let got: Vec<String> = c
        .accounts
        .iter()
        .map(|a| {
            format!(
                "{} {}/{} {} {} {}",
                a.account_id,
                a.compliant,
                a.in_scope,
                shown(a.percent),
                shown(a.previous_percent),
                shown(a.change_points)
            )
        })
        .collect();
    assert_eq!(got, ["111111111111 18/30 60 50 10", "222222222222 3/3 100 - -"]);
    let md = cloudwarden::report::text::markdown(&r);
    assert!(md.contains("| 111111111111 | 30 | 60.0% | 50.0% | +10.0 pts |"), "{md}");
    assert!(cloudwarden::report::html::html(&r).unwrap().contains("+10.0 pts"));
}

/// The browser for the HTML checks: Debian's `chromium` (scripts/deps.sh installs it). Without it: a skip,
/// or under `CI=true` a failure.
fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("which").arg(name).output() {
            if out.status.success() {
                return Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
            }
        }
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but chromium is missing: run scripts/deps.sh as root (scripts/test.sh does it)"
    );
    eprintln!("SKIPPED: the HTML report's browser checks (no chromium; install it with scripts/deps.sh)");
    None
}

/// The report's HTML in a real headless browser, 600 and 1200 px wide: no horizontal overflow, each chart's
/// SVG laid out with a non-empty box, and the total shown equal to the JSON's; a screenshot at each width.
#[test]
fn the_html_report_fits_600_and_1200_pixels_in_a_headless_browser() {
    let Some(chromium) = chromium() else { return };
    use cloudwarden::report::{build, html, text, CostRow, Costs, ReportInput};
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let services = [
        "Amazon Elastic Compute Cloud - Compute",
        "Amazon Relational Database Service",
        "Amazon Simple Storage Service",
        "AmazonCloudWatch",
        "EC2 - Other",
        "Amazon Elastic Container Service for Kubernetes",
        "AWS Key Management Service",
    ];
    let mut rows = Vec::new();
    for d in 0..35u64 {
        for (i, s) in services.iter().enumerate() {
            for account in ["111111111111", "222222222222"] {
                rows.push(CostRow {
                    day: day("2026-10-27") + Days::new(d),
                    account_id: Some(account.into()),
                    service: Some(s.to_string()),
                    tags: Some(BTreeMap::from([("team".to_string(), format!("team-{}", i % 3))])),
                    currency: "USD".into(),
                    amount: Decimal::from((i as u64 + 1) * 10 + d % 7) / Decimal::from(3),
                });
            }
        }
    }
    let input = ReportInput {
        week: Week::parse("2026-W49").unwrap(),
        generated_at: chrono::Utc::now(),
        source: "billing_files",
        costs: Costs::Detailed(rows),
        estimated_days: Default::default(),
        account_names: BTreeMap::from([("111111111111".into(), "production-workloads-with-a-long-name".into())]),
        tag_keys: vec!["team".into()],
        anomalies: Vec::new(),
        budgets: Vec::new(),
        compliance: Default::default(),
        cleanup: None,
    };
    let report = build(&input).unwrap();
    let page = html::html(&report).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("report.html");
    std::fs::write(&plain, &page).unwrap();
    // The same page with a measuring script at its end (the report itself has none).
    let measure = r#"<script>
(function () {
  var d = document.documentElement;
  var svgs = Array.prototype.map.call(document.querySelectorAll('svg'), function (s) {
    var r = s.getBoundingClientRect(), b = s.getBBox();
    return [r.width, r.height, b.width, b.height];
  });
  var pre = document.createElement('pre');
  pre.id = 'measured';
  pre.textContent = JSON.stringify({ scroll: d.scrollWidth, inner: window.innerWidth, svgs: svgs,
    total: document.getElementById('total-this-week').textContent });
  document.body.appendChild(pre);
})();
</script></body>"#;
    let measured = dir.path().join("measured.html");
    std::fs::write(&measured, page.replace("</body>", measure)).unwrap();
    let total = text::usd(report.total.this_week);
    for width in [600, 1200] {
        let out = Command::new(&chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=2000"])
            .arg(format!("--window-size={width},2000"))
            .arg("--dump-dom")
            .arg(format!("file://{}", measured.display()))
            .output()
            .unwrap();
        let dom = String::from_utf8_lossy(&out.stdout);
        let start = dom.find("<pre id=\"measured\">").unwrap_or_else(|| panic!("no measurement at {width} px:\n{dom}"));
        let json = &dom[start + "<pre id=\"measured\">".len()..];
        let json = json[..json.find("</pre>").unwrap()]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        let m: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert_eq!(m["inner"], width, "{m}");
        assert!(m["scroll"].as_i64().unwrap() <= width, "horizontal overflow at {width} px: {m}");
        let svgs = m["svgs"].as_array().unwrap();
        assert_eq!(svgs.len(), 2, "{m}");
        for b in svgs {
            assert!(
                b.as_array().unwrap().iter().all(|v| v.as_f64().unwrap() > 0.0),
                "an empty chart at {width} px: {m}"
            );
        }
        assert_eq!(m["total"], total.as_str(), "the total shown at {width} px");

        let png = dir.path().join(format!("report-{width}.png"));
        let status = Command::new(&chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
            .arg(format!("--window-size={width},2400"))
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("file://{}", plain.display()))
            .output()
            .unwrap();
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {width} px ({e}): {status:?}"));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "screenshot at {width} px: {} bytes",
            bytes.len()
        );
        eprintln!(
            "{width} px: page {} px wide, charts {:?}, total {total}, screenshot {} KiB",
            m["scroll"],
            svgs,
            bytes.len() / 1024
        );
    }
}
