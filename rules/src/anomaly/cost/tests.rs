use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc, Weekday};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;

const A: &str = "111111111111";
const B: &str = "222222222222";
const C: &str = "333333333333";

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
}

fn noon(s: &str) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day(s).and_hms_opt(12, 0, 0).expect("noon"))
}

fn usd(s: &str) -> Decimal {
    s.parse().expect("test amount")
}

fn settings(toml_text: &str) -> CostAnomalySettings {
    toml::from_str(toml_text).expect("test settings parse")
}

/// A charge line: account, service, resource and tags.
#[derive(Clone, Copy)]
struct Line<'a> {
    account: &'a str,
    service: &'a str,
    resource: Option<&'a str>,
    tags: &'a [(&'a str, &'a str)],
}

impl Line<'_> {
    fn on(&self, d: NaiveDate, amount: Decimal) -> DailyCost {
        DailyCost {
            day: d,
            account_id: self.account.to_string(),
            service: self.service.to_string(),
            resource_id: self.resource.map(str::to_string),
            tags: self.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            amount,
        }
    }

    /// One row a day from `from` to `to` inclusive, `base` give or take up to 5 % of deterministic noise.
    fn daily(&self, from: &str, to: &str, base: impl Fn(NaiveDate) -> i64, salt: i64) -> Vec<DailyCost> {
        day(from)
            .iter_days()
            .take_while(|d| *d <= day(to))
            .map(|d| {
                let h = (i64::from(d.num_days_from_ce()) * 7919 + salt * 104_729) % 11 - 5;
                self.on(d, Decimal::new(base(d) * (100 + h), 2))
            })
            .collect()
    }
}

fn line<'a>(account: &'a str, service: &'a str, resource: Option<&'a str>) -> Line<'a> {
    Line { account, service, resource, tags: &[] }
}

/// Two accounts, three services, steady spend with a little noise, from 2026-01-01 to `to`.
fn fleet(to: &str) -> Vec<DailyCost> {
    let mut rows = Vec::new();
    rows.extend(line(A, "AmazonEC2", Some("i-a1")).daily("2026-01-01", to, |_| 120, 1));
    rows.extend(line(A, "AmazonS3", Some("bucket-a")).daily("2026-01-01", to, |_| 40, 2));
    rows.extend(line(A, "AWSSupport", None).daily("2026-01-01", to, |_| 30, 3));
    rows.extend(line(B, "AmazonEC2", Some("i-b1")).daily("2026-01-01", to, |_| 200, 4));
    rows.extend(line(B, "AmazonRDS", Some("db-b1")).daily("2026-01-01", to, |_| 90, 5));
    rows
}

/// Findings on one line each: subject, severity, and the top contributor of each dimension with its share.
fn render(evaluation: &CostAnomalyEvaluation) -> Vec<String> {
    evaluation
        .findings
        .iter()
        .map(|f| {
            let mut s = format!("{} {:?}", f.subject, f.severity);
            let mut seen = Vec::new();
            for c in f.details.to_json()["root_cause"].as_array().into_iter().flatten() {
                let dim = c["dimension"].as_str().unwrap_or_default();
                if !seen.contains(&dim) {
                    seen.push(dim);
                    let share = c["share"].as_f64().unwrap_or_default();
                    s.push_str(&format!(" {dim}:{}~{:.1}", c["key"].as_str().unwrap_or_default(), share));
                }
            }
            s
        })
        .collect()
}

#[track_caller]
fn check(settings_toml: &str, rows: &[DailyCost], now: &str, expected: &[&str]) {
    let settings = settings(settings_toml);
    assert_eq!(settings.check(), vec![], "settings are valid");
    let evaluation = evaluate(&settings, rows, noon(now)).unwrap();
    assert_eq!(render(&evaluation), expected);
    for s in &evaluation.series {
        assert!((0.0..=1.0).contains(&s.score), "{s:?}");
    }
}

#[test]
fn a_spike_is_found_with_its_root_cause() {
    let mut rows = fleet("2026-03-14");
    // a new instance in account A costs 600 on the 14th.
    rows.push(line(A, "AmazonEC2", Some("i-new")).on(day("2026-03-14"), usd("600")));
    check(
        "",
        &rows,
        "2026-03-15",
        &[
            "total:total@2026-03-14 Critical account:111111111111~1.0 service:AmazonEC2~1.0 resource:i-new~1.0",
            "account:111111111111@2026-03-14 Critical service:AmazonEC2~1.0 resource:i-new~1.0",
            "service:AmazonEC2@2026-03-14 Critical account:111111111111~1.0 resource:i-new~1.0",
        ],
    );
    // the day after, with a lookback of one day, nothing: the baseline is robust to the spike.
    check("", &rows, "2026-03-16", &[]);
    // without the spike nothing is found, however far back one looks.
    check("lookback_days = 30", &fleet("2026-03-14"), "2026-03-15", &[]);
}

#[test]
fn root_cause_names_the_main_movers() {
    let mut rows = fleet("2026-03-14");
    // on the 14th, account B's database costs 300 more and account A's S3 bucket 100 more.
    rows.push(line(B, "AmazonRDS", Some("db-b1")).on(day("2026-03-14"), usd("300")));
    rows.push(line(A, "AmazonS3", Some("bucket-a")).on(day("2026-03-14"), usd("100")));
    let settings = CostAnomalySettings { series: vec![SeriesKind::Total], ..CostAnomalySettings::default() };
    let evaluation = evaluate(&settings, &rows, noon("2026-03-15")).unwrap();
    assert_eq!(evaluation.findings.len(), 1);
    let causes: Vec<(String, String)> = evaluation.findings[0].details.to_json()["root_cause"]
        .as_array()
        .expect("root cause")
        .iter()
        .filter(|c| c["share"].as_f64().unwrap_or_default() > 0.1)
        .map(|c| {
            (c["dimension"].as_str().unwrap_or_default().to_string(), c["key"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    let pairs: Vec<(&str, &str)> = causes.iter().map(|(d, k)| (d.as_str(), k.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("account", B),
            ("account", A),
            ("service", "AmazonRDS"),
            ("service", "AmazonS3"),
            ("resource", "db-b1"),
            ("resource", "bucket-a"),
        ]
    );
    let total_share: f64 = evaluation.findings[0].details.to_json()["root_cause"]
        .as_array()
        .expect("root cause")
        .iter()
        .filter(|c| c["dimension"] == "account")
        .map(|c| c["share"].as_f64().unwrap_or_default())
        .sum();
    assert!((0.9..=1.1).contains(&total_share), "{total_share}");
}

#[test]
fn a_weekly_pattern_is_not_an_anomaly() {
    // weekdays 300, weekends 30, with noise; and a service that runs on weekends only.
    let weekend = |d: NaiveDate| matches!(d.weekday(), Weekday::Sat | Weekday::Sun);
    let mut rows =
        line(A, "AmazonEC2", Some("i-a1")).daily("2026-01-01", "2026-03-31", |d| if weekend(d) { 30 } else { 300 }, 1);
    rows.extend(line(A, "AWSGlue", None).daily("2026-01-01", "2026-03-31", |d| if weekend(d) { 80 } else { 0 }, 2));
    check("lookback_days = 60", &rows, "2026-04-01", &[]);
    // the same data with the weekday profile gone: weekdays look like spikes against a flat level.
    let flat = "baseline_weeks = 1\nlookback_days = 7";
    let evaluation = evaluate(&settings(flat), &rows, noon("2026-04-01")).unwrap();
    assert!(!evaluation.findings.is_empty());
}

#[test]
fn minimum_history() {
    let mut rows = fleet("2026-03-14");
    // account C appears on 2026-03-05 and spikes on the 14th: 9 days of history.
    rows.extend(line(C, "AmazonEC2", Some("i-c1")).daily("2026-03-05", "2026-03-13", |_| 50, 9));
    rows.push(line(C, "AmazonEC2", Some("i-c1")).on(day("2026-03-14"), usd("900")));
    let only_accounts = "series = [\"account\"]";
    check(only_accounts, &rows, "2026-03-15", &[]);
    check(&format!("{only_accounts}\nmin_history_days = 10"), &rows, "2026-03-15", &[]);
    check(
        &format!("{only_accounts}\nmin_history_days = 9"),
        &rows,
        "2026-03-15",
        &["account:333333333333@2026-03-14 Critical service:AmazonEC2~1.0 resource:i-c1~1.0"],
    );
    // the total has its history: it sees the spike, new account and all.
    check(
        "series = [\"total\"]",
        &rows,
        "2026-03-15",
        &["total:total@2026-03-14 Critical account:333333333333~1.0 service:AmazonEC2~1.0 resource:i-c1~1.0"],
    );
    // too little history for anything: no finding, no score.
    let young = line(A, "AmazonEC2", None).daily("2026-03-01", "2026-03-14", |_| 10, 1);
    let evaluation = evaluate(&CostAnomalySettings::default(), &young, noon("2026-03-15")).unwrap();
    assert_eq!(evaluation.series.len(), 0);
    let evaluation = evaluate(&CostAnomalySettings::default(), &young, noon("2026-03-16")).unwrap();
    assert_eq!(evaluation.series.len(), 3);
}

#[test]
fn detection_and_alert_thresholds() {
    // a steady 100 a day (spread floored at 5 % = 5 USD), then `extra` on the 14th: z = extra / 5.
    let steady = |extra: &str, base: i64| {
        let mut rows = line(A, "AmazonEC2", None).daily("2026-01-01", "2026-03-14", |_| base, 0);
        for r in &mut rows {
            r.amount = Decimal::from(base);
        }
        if let Some(last) = rows.last_mut() {
            last.amount += usd(extra);
        }
        rows
    };
    let total = "series = [\"total\"]\nroot_cause_top = 0";
    #[rustfmt::skip]
    let cases: [(&str, &str, i64, &[&str]); 11] = [
        ("", "4", 100, &[]),
        // z = 3: score 0.53, detection only.
        ("", "15", 100, &["total:total@2026-03-14 Info"]),
        // z = 5: score 0.71, below the alert score.
        ("", "25", 100, &["total:total@2026-03-14 Info"]),
        // z = 6: score 0.78, but 30 USD is under the alert's minimum impact.
        ("", "30", 100, &["total:total@2026-03-14 Info"]),
        ("alert_min_impact_usd = 25", "30", 100, &["total:total@2026-03-14 Warning"]),
        // z = 12: score 0.95.
        ("", "60", 100, &["total:total@2026-03-14 Critical"]),
        ("critical_score = 0.99", "60", 100, &["total:total@2026-03-14 Warning"]),
        ("detection_score = 0.6", "15", 100, &[]),
        // a 1 USD series quadrupling: a high score but 3 USD of impact, under `min_impact_usd`.
        ("", "3", 1, &[]),
        ("min_impact_usd = 2", "3", 1, &["total:total@2026-03-14 Info"]),
        // 60 USD more on 1000 is 6 %, under the alert's minimum percentage; z = 60 / 50 = 1.2.
        ("", "60", 1000, &[]),
    ];
    for (extra_settings, extra, base, expected) in cases {
        check(&format!("{total}\n{extra_settings}"), &steady(extra, base), "2026-03-15", expected);
    }
    let evaluation = evaluate(&settings(total), &steady("60", 100), noon("2026-03-15")).unwrap();
    let f = &evaluation.findings[0];
    assert_eq!(
        &*f.message,
        "total spent 160.00 USD on 2026-03-14, 60.00 USD (60%) above the expected 100.00 USD (score 0.95)"
    );
    assert_eq!(f.details.to_json()["alert"], true);
    assert_eq!(f.details.to_json()["impact_usd"], "60.00");
    assert_eq!(f.monthly_usd, Some(usd("60.00")));
    assert_eq!(f.kind, FindingKind::CostAnomaly);
    assert_eq!(&*f.rule, "cost_anomaly");
    let s = &evaluation.series[0];
    assert_eq!((s.series_kind, s.key.as_str()), (SeriesKind::Total, "total"));
    assert_eq!((s.expected_usd, s.impact_usd, s.impact_percent), (usd("100.00"), usd("60.00"), Some(60.0)));
    assert!((s.score - (1.0 - (-3.0f64).exp())).abs() < 1e-12, "{}", s.score);
    assert_eq!(s.severity, Some(Severity::Critical));
}

#[test]
fn decreases_only_when_asked() {
    let mut rows = line(A, "AmazonEC2", Some("i-a1")).daily("2026-01-01", "2026-03-14", |_| 300, 1);
    if let Some(last) = rows.last_mut() {
        last.amount = usd("20");
    }
    check("series = [\"service\"]", &rows, "2026-03-15", &[]);
    check(
        "series = [\"service\"]\ninclude_decreases = true",
        &rows,
        "2026-03-15",
        &["service:AmazonEC2@2026-03-14 Critical account:111111111111~1.0 resource:i-a1~1.0"],
    );
}

#[test]
fn lookback_days() {
    let mut rows = fleet("2026-03-14");
    rows.push(line(B, "AmazonEC2", Some("i-b9")).on(day("2026-03-12"), usd("800")));
    let services = "series = [\"service\"]";
    check(services, &rows, "2026-03-15", &[]);
    check(&format!("{services}\nlookback_days = 2"), &rows, "2026-03-15", &[]);
    check(
        &format!("{services}\nlookback_days = 3"),
        &rows,
        "2026-03-15",
        &["service:AmazonEC2@2026-03-12 Critical account:222222222222~1.0 resource:i-b9~1.0"],
    );
    // The metric shows the highest score of the days looked at: the spike's, not yesterday's, so an alert on
    // it agrees with the finding; with a lookback of one day, yesterday's.
    let shown = |lookback: u32| {
        let evaluation =
            evaluate(&settings(&format!("{services}\nlookback_days = {lookback}")), &rows, noon("2026-03-15")).unwrap();
        let ec2 = evaluation.series.iter().find(|s| s.key == "AmazonEC2").unwrap().clone();
        (ec2.day.to_string(), ec2.score > 0.9, ec2.severity)
    };
    assert_eq!(shown(1), ("2026-03-14".to_string(), false, None));
    assert_eq!(shown(3), ("2026-03-12".to_string(), true, Some(Severity::Critical)));
    assert_eq!(shown(30), ("2026-03-12".to_string(), true, Some(Severity::Critical)));
}

#[test]
fn tag_series() {
    let data = Line { tags: &[("team", "data")], ..line(A, "AmazonEMR", Some("j-1")) };
    let web = Line { tags: &[("team", "web"), ("env", "prod")], ..line(B, "AmazonEC2", Some("i-w")) };
    let mut rows = data.daily("2026-01-01", "2026-03-14", |_| 100, 1);
    rows.extend(web.daily("2026-01-01", "2026-03-14", |_| 100, 2));
    rows.extend(line(A, "AmazonS3", None).daily("2026-01-01", "2026-03-14", |_| 100, 3));
    // spend without the tag jumps.
    rows.push(line(A, "AWSLambda", Some("fn-x")).on(day("2026-03-14"), usd("250")));
    check(
        "series = []\ntag_keys = [\"team\"]",
        &rows,
        "2026-03-15",
        &["tag:team=@2026-03-14 Critical account:111111111111~1.0 service:AWSLambda~1.0 resource:fn-x~1.0"],
    );
    let evaluation =
        evaluate(&settings("series = []\ntag_keys = [\"team\", \"env\"]"), &rows, noon("2026-03-15")).unwrap();
    let keys: Vec<&str> = evaluation.series.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, ["env=", "env=prod", "team=", "team=data", "team=web"]);
}

#[test]
fn cost_sums_beyond_the_decimal_range_are_errors() {
    let mut rows = fleet("2026-03-14");
    rows.push(line(A, "AmazonEC2", Some("i-a1")).on(day("2026-03-14"), Decimal::MAX));
    assert!(evaluate(&CostAnomalySettings::default(), &rows, noon("2026-03-15")).is_err());
    // Near the maximum, the day is summed exactly and scored.
    let mut rows = fleet("2026-03-14");
    rows.push(line(A, "AmazonEC2", Some("i-a1")).on(day("2026-03-14"), Decimal::MAX - usd("1000")));
    let evaluation = evaluate(&CostAnomalySettings::default(), &rows, noon("2026-03-15")).unwrap();
    let total = evaluation.series.iter().find(|s| s.key == "total").unwrap();
    assert!(total.actual_usd > Decimal::MAX - usd("1000") && total.score > 0.9, "{total:?}");
}

#[test]
fn disabled_and_empty() {
    let rows = fleet("2026-03-14");
    assert_eq!(evaluate(&settings("enabled = false"), &rows, noon("2026-03-15")), Ok(CostAnomalyEvaluation::default()));
    assert_eq!(
        evaluate(&CostAnomalySettings::default(), &[], noon("2026-03-15")),
        Ok(CostAnomalyEvaluation::default())
    );
    // today's partial rows and later ones are ignored.
    let mut later = rows.clone();
    later.push(line(A, "AmazonEC2", None).on(day("2026-03-15"), usd("9999")));
    later.push(line(A, "AmazonEC2", None).on(day("2026-03-20"), usd("9999")));
    assert_eq!(
        evaluate(&CostAnomalySettings::default(), &later, noon("2026-03-15")),
        evaluate(&CostAnomalySettings::default(), &rows, noon("2026-03-15"))
    );
}

#[test]
fn settings_problems() {
    let cases: [(&str, &[&str]); 5] = [
        ("", &[]),
        (
            "min_history_days = 0\nbaseline_weeks = 60\nlookback_days = 0",
            &[
                "min_history_days: must be between 1 and 366",
                "baseline_weeks: must be between 1 and 52",
                "lookback_days: must be between 1 and 90",
            ],
        ),
        (
            "detection_score = 0.8\nalert_score = 0.7\ncritical_score = 1.5",
            &[
                "alert_score: must be at most 1 and at least detection_score",
                "critical_score: must be at most 1 and at least alert_score",
            ],
        ),
        (
            "min_impact_usd = -1\nalert_min_impact_percent = -3\nmin_spread_usd = \"-0.5\"",
            &[
                "min_impact_usd: must not be negative",
                "alert_min_impact_percent: must be a percentage of 0 or more",
                "min_spread_usd: must not be negative",
            ],
        ),
        (
            "series = [\"total\", \"tag\", \"total\"]\ntag_keys = [\"team\", \"\", \"team\"]",
            &[
                "series[1]: tag series come from `tag_keys`, not from `series`",
                "series[2]: duplicate series kind `total`",
                "tag_keys[1]: must not be empty",
                "tag_keys[2]: duplicate tag key `team`",
            ],
        ),
    ];
    for (text, expected) in cases {
        let got: Vec<String> = settings(text).check().iter().map(ToString::to_string).collect();
        assert_eq!(got, expected, "{text}");
    }
    for bad in ["colour = 1", "series = [\"region\"]", "min_impact_usd = \"ten\"", "lookback_days = -1"] {
        assert!(toml::from_str::<CostAnomalySettings>(bad).is_err(), "{bad}");
    }
    assert_eq!(settings(""), CostAnomalySettings::default());
    assert_eq!(settings("min_impact_usd = 2.5").min_impact_usd, usd("2.5"));
}

/// Rows of up to three accounts, services and resources over ten weeks, with spikes and drops.
fn arbitrary_rows() -> impl Strategy<Value = Vec<DailyCost>> {
    proptest::collection::vec((0u64..70, 0usize..3, 0usize..3, 0usize..4, 0i64..100_000_000), 0..200).prop_map(|rows| {
        rows.into_iter()
            .map(|(d, a, s, r, cents)| DailyCost {
                day: day("2026-01-01") + Days::new(d),
                account_id: [A, B, C][a].to_string(),
                service: ["AmazonEC2", "AmazonS3", "AmazonRDS"][s].to_string(),
                resource_id: ["i-1", "i-2", "vol-3"].get(r).map(|x| x.to_string()),
                tags: [("team".to_string(), ["data", "web", "ops"][s].to_string())].into_iter().collect(),
                amount: Decimal::new(cents, 2),
            })
            .collect()
    })
}

fn lenient() -> CostAnomalySettings {
    CostAnomalySettings {
        tag_keys: vec!["team".into()],
        min_history_days: 3,
        lookback_days: 10,
        detection_score: 0.1,
        alert_score: 0.2,
        critical_score: 0.3,
        min_impact_usd: Decimal::ZERO,
        alert_min_impact_usd: Decimal::ZERO,
        include_decreases: true,
        min_spread_usd: Decimal::ZERO,
        min_spread_percent: 0.0,
        ..CostAnomalySettings::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Scores stay in [0, 1], whatever the data.
    #[test]
    fn scores_stay_in_unit_interval(rows in arbitrary_rows(), strict in any::<bool>()) {
        let settings = if strict { CostAnomalySettings::default() } else { lenient() };
        let evaluation = evaluate(&settings, &rows, noon("2026-03-12")).unwrap();
        for s in &evaluation.series {
            prop_assert!(s.score.is_finite() && (0.0..=1.0).contains(&s.score), "{:?}", s);
        }
        for f in &evaluation.findings {
            let score = f.details.to_json()["score"].as_f64().unwrap_or(-1.0);
            prop_assert!((0.0..=1.0).contains(&score), "{:?}", f);
        }
    }

    /// The order of the input rows changes nothing.
    #[test]
    fn row_order_does_not_matter(
        (rows, shuffled) in arbitrary_rows().prop_flat_map(|rows| (Just(rows.clone()), Just(rows).prop_shuffle())),
    ) {
        let settings = lenient();
        let now = noon("2026-03-12");
        prop_assert_eq!(evaluate(&settings, &rows, now), evaluate(&settings, &shuffled, now));
    }
}

/// The examples in the documentation parse and pass the checks.
#[test]
fn documented_examples() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RuleFile {
        #[serde(default)]
        budgets: Vec<crate::budget::BudgetRule>,
        cost_anomaly: Option<CostAnomalySettings>,
    }
    let doc = include_str!("../../../../docs/budgets-and-anomalies.md");
    let blocks: Vec<&str> = doc.split("```toml\n").skip(1).filter_map(|b| b.split("```").next()).collect();
    assert_eq!(blocks.len(), 2);
    let mut budgets = 0;
    for block in blocks {
        let file: RuleFile = toml::from_str(block).expect("documented example parses");
        for b in &file.budgets {
            assert_eq!(crate::check::Check::check(b), vec![]);
        }
        assert_eq!(crate::budget::check_names(&file.budgets), vec![]);
        budgets += file.budgets.len();
        if let Some(settings) = file.cost_anomaly {
            assert_eq!(settings.check(), vec![]);
            assert_eq!(settings.tag_keys, ["team"]);
        }
    }
    assert_eq!(budgets, 3);
}
