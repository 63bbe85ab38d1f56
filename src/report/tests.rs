use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::{NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;

use super::text::{csv, markdown, signed_percent, signed_usd, usd};
use super::*;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn row(date: &str, account: &str, service: &str, tags: &[(&str, &str)], currency: &str, amount: &str) -> CostRow {
    CostRow {
        day: day(date),
        account_id: Some(account.into()),
        service: Some(service.into()),
        tags: Some(tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        currency: currency.into(),
        amount: d(amount),
    }
}

fn input(week: &str, costs: Costs) -> ReportInput {
    ReportInput {
        week: Week::parse(week).unwrap(),
        generated_at: Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap(),
        source: "billing_files",
        costs,
        estimated_days: BTreeSet::new(),
        account_names: BTreeMap::from([("111111111111".into(), "prod".into())]),
        tag_keys: vec!["team".into()],
        anomalies: Vec::new(),
        budgets: Vec::new(),
        compliance: ComplianceWeek::default(),
        cleanup: None,
    }
}

#[test]
fn weeks_parse_and_bound() {
    let w = Week::parse("2026-W49").unwrap();
    assert_eq!((w.start(), w.end()), (day("2026-11-30"), day("2026-12-06")));
    assert_eq!(w.previous().to_string(), "2026-W48");
    assert_eq!(Week::parse("2026-W01").unwrap().start(), day("2025-12-29"));
    assert_eq!(Week::parse("2020-W53").unwrap().end(), day("2021-01-03"));
    assert!(Week::parse("2025-W53").unwrap_err().contains("2025 has no week 53"));
    assert_eq!(Week::parse("2026-W53").unwrap().end(), day("2027-01-03"));
    assert!(Week::parse("2026-49").is_err() && Week::parse("W49").is_err() && Week::parse("2026-Wx").is_err());
    // Monday 2026-12-07 08:00: the last complete week is the one that ended yesterday.
    assert_eq!(Week::last_complete(Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap()).to_string(), "2026-W49");
    assert_eq!(Week::last_complete(Utc.with_ymd_and_hms(2026, 12, 6, 23, 0, 0).unwrap()).to_string(), "2026-W48");
}

#[test]
fn figures_by_hand() {
    // Week 49 (Nov 30 - Dec 6) and the four weeks before; only W47 and W48 have data.
    let rows = vec![
        row("2026-11-16", "111111111111", "EC2", &[("team", "web")], "USD", "10.004"),
        row("2026-11-23", "111111111111", "EC2", &[("team", "web")], "USD", "20"),
        row("2026-11-24", "222222222222", "S3", &[], "USD", "5.5"),
        row("2026-11-30", "111111111111", "EC2", &[("team", "web")], "USD", "12.125"),
        row("2026-12-01", "111111111111", "EC2", &[("team", " ")], "USD", "3"),
        row("2026-12-02", "222222222222", "S3", &[("team", "data")], "USD", "0.5"),
        row("2026-12-03", "222222222222", "RDS", &[], "USD", "40"),
        row("2026-12-03", "333333333333", "Compute", &[], "EUR", "7"),
    ];
    let r = build(&input("2026-W49", Costs::Detailed(rows))).unwrap();
    let t = &r.total;
    assert_eq!((t.this_week, t.previous_week, t.change), (d("55.625"), d("25.5"), d("30.125")));
    assert_eq!(signed_percent(t.change_percent), "+118.1%");
    assert_eq!((t.average, t.average_weeks), (Some(d("17.752")), 2));
    assert_eq!(t.change_vs_average, Some(d("37.873")));
    assert!(r.notes.iter().any(|n| n.contains("2 week(s)")), "{:?}", r.notes);

    let services: Vec<(&str, Decimal, Decimal)> =
        r.by_service.iter().map(|l| (l.key.as_str(), l.this_week, l.previous_week)).collect();
    assert_eq!(services, [("RDS", d("40"), d("0")), ("EC2", d("15.125"), d("20")), ("S3", d("0.5"), d("5.5"))]);
    assert_eq!(r.by_service[0].change_percent, None, "no base");
    let accounts: Vec<(&str, Option<&str>, Decimal)> =
        r.by_account.iter().map(|l| (l.key.as_str(), l.name.as_deref(), l.this_week)).collect();
    assert_eq!(accounts, [("222222222222", None, d("40.5")), ("111111111111", Some("prod"), d("15.125"))]);

    let team = &r.by_tag[0];
    let values: Vec<(&str, Decimal)> = team.lines.iter().map(|l| (l.key.as_str(), l.this_week)).collect();
    assert_eq!(values, [("web", d("12.125")), ("data", d("0.5"))]);
    // A blank value is no value: 3 + 40 untagged of 55.625.
    assert_eq!((team.untagged.this_week, team.untagged.previous_week), (d("43"), d("5.5")));
    assert_eq!(super::text::share(team.untagged_share_percent), "77.3%");

    let up: Vec<(&str, Decimal)> = r.movers_up.iter().map(|m| (m.service.as_str(), m.change)).collect();
    assert_eq!(up, [("RDS", d("40"))]);
    let down: Vec<(&str, Decimal)> = r.movers_down.iter().map(|m| (m.service.as_str(), m.change)).collect();
    assert_eq!(down, [("S3", d("-5")), ("EC2", d("-4.875"))]);
    assert_eq!(r.movers_down[1].account.as_deref(), Some("prod"));

    // EUR is never summed into USD.
    assert_eq!(r.other_currencies.len(), 1);
    assert_eq!((r.other_currencies[0].currency.as_str(), r.other_currencies[0].this_week), ("EUR", d("7")));
    assert!(r.notes.iter().any(|n| n.contains("EUR")));

    // Five weeks of days; the series add up to each day's total.
    assert_eq!(r.daily.len(), 35);
    assert_eq!(r.daily[0].day, day("2026-11-02"));
    assert_eq!(r.daily_series.last().map(String::as_str), Some("Other"));
    for p in &r.daily {
        assert_eq!(p.amounts.iter().copied().sum::<Decimal>(), p.total, "{p:?}");
    }
    assert_eq!(
        r.freshness.missing_days,
        [day("2026-12-04"), day("2026-12-05"), day("2026-12-06")],
        "the EUR row counts as data"
    );
    assert_eq!(r.freshness.newest_day, Some(day("2026-12-03")));

    let md = markdown(&r);
    assert!(md.contains("| this week | $55.63 | |"), "{md}");
    assert!(md.contains("| RDS | $40.00 | $0.00 | +$40.00 | n/a |"), "{md}");
    assert!(md.contains("prod (111111111111)"), "{md}");
    let csv = csv(&r).unwrap();
    assert!(csv.contains("2026-W49,total,,,55.63,25.50,30.13,118.1\n"), "{csv}");
    assert!(csv.contains("2026-W49,untagged:team,,,43.00,5.50,37.50,681.8\n"), "{csv}");
    assert!(csv.contains("2026-W49,currency,EUR,,7.00,0.00,7.00,\n"), "{csv}");
}

#[test]
fn an_empty_week_a_single_account_and_an_unknown_tag_are_stated() {
    let r = build(&input("2026-W49", Costs::Detailed(Vec::new()))).unwrap();
    assert_eq!(r.total.this_week, Decimal::ZERO);
    assert!(r.notes[0].starts_with("No cost data for 2026-W49"), "{:?}", r.notes);
    assert_eq!(r.freshness.missing_days.len(), 7);
    assert!(r.by_service.is_empty() && r.movers_up.is_empty());
    assert_eq!(r.by_tag[0].untagged_share_percent, None);

    let rows = vec![row("2026-12-01", "111111111111", "EC2", &[("env", "prod")], "USD", "1")];
    let r = build(&input("2026-W49", Costs::Detailed(rows))).unwrap();
    assert!(r.notes.iter().any(|n| n.starts_with("One account")), "{:?}", r.notes);
    assert!(r.notes.iter().any(|n| n.contains("No cost carries the tag `team`")), "{:?}", r.notes);
    assert_eq!(r.by_tag[0].untagged.this_week, d("1"));
}

#[test]
fn cost_explorer_groupings_report_each_dimension() {
    let grouped = GroupedCosts {
        by_service: vec![
            (day("2026-11-24"), "EC2".into(), d("10")),
            (day("2026-12-01"), "EC2".into(), d("12")),
            (day("2026-12-01"), "S3".into(), d("1")),
        ],
        by_account: vec![
            (day("2026-11-24"), "111111111111".into(), d("10")),
            (day("2026-12-01"), "111111111111".into(), d("13")),
        ],
        by_tag: BTreeMap::from([(
            "team".to_string(),
            vec![(day("2026-12-01"), "web".into(), d("9")), (day("2026-12-01"), String::new(), d("4"))],
        )]),
    };
    let mut i = input("2026-W49", Costs::Grouped(grouped));
    i.estimated_days = BTreeSet::from([day("2026-12-01"), day("2026-12-08")]);
    let r = build(&i).unwrap();
    assert_eq!((r.total.this_week, r.total.previous_week), (d("13"), d("10")));
    assert_eq!(r.by_account[0].name.as_deref(), Some("prod"));
    assert_eq!(r.by_tag[0].untagged.this_week, d("4"));
    assert_eq!(
        r.movers_up.iter().map(|m| (m.service.as_str(), m.account_id.is_none())).collect::<Vec<_>>(),
        [("EC2", true), ("S3", true)]
    );
    assert_eq!(r.freshness.estimated_days, [day("2026-12-01")], "only the week's days");
    assert!(r.notes.iter().any(|n| n.contains("movers are by service")));
}

#[test]
fn money_prints_to_the_cent() {
    assert_eq!(usd(d("1234567.005")), "$1,234,567.01");
    assert_eq!(usd(d("-0.004")), "$0.00");
    assert_eq!(usd(d("-3.2")), "-$3.20");
    assert_eq!(signed_usd(d("12")), "+$12.00");
    assert_eq!(signed_usd(d("-0.125")), "-$0.13");
    assert_eq!(signed_percent(Some(d("-4"))), "-4.0%");
    assert_eq!(usd(d("999.995")), "$1,000.00");
}

#[test]
fn html_is_mail_safe_and_escapes_everything() {
    let rows = vec![
        row("2026-11-24", "111111111111", "<script>alert(1)</script>", &[("team", "a&b")], "USD", "3"),
        row("2026-12-01", "111111111111", "<script>alert(1)</script>", &[("team", "a&b")], "USD", "1234.5"),
        row("2026-12-02", "222222222222", "S3 \"quoted\"", &[], "USD", "2"),
    ];
    let r = build(&input("2026-W49", Costs::Detailed(rows))).unwrap();
    let html = super::html::html(&r).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.to_lowercase().contains("<script"), "nothing runs");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && html.contains("a&amp;b"));
    assert!(html.contains("S3 &quot;quoted&quot;"));
    // No stylesheet or external resource: every style is inline, nothing is fetched.
    assert!(!html.contains("<style") && !html.contains("<link") && !html.contains("src="), "{html}");
    assert_eq!(html.matches("<svg").count(), 2, "the daily chart and the movers");
    assert!(html.contains("id=\"total-this-week\" style=\"font-size:24px;font-weight:700\">$1,236.50<"));
    // A week without data still draws its (empty) chart and says there are no movers.
    let empty = super::html::html(&build(&input("2026-W49", Costs::Detailed(Vec::new()))).unwrap()).unwrap();
    assert_eq!(empty.matches("<svg").count(), 1);
    assert!(empty.contains("Nothing changed against the week before."));
}

#[test]
fn lines_under_half_a_cent_are_counted_not_listed() {
    let rows = vec![
        row("2026-11-24", "111111111111", "EC2", &[], "USD", "3"),
        row("2026-12-01", "111111111111", "EC2", &[], "USD", "4"),
        // Sub-cent lines, as billing exports have by the hundred.
        row("2026-11-24", "111111111111", "KMS", &[], "USD", "0.0000042"),
        row("2026-12-01", "111111111111", "KMS", &[], "USD", "0.004"),
        row("2026-12-01", "111111111111", "SQS", &[], "USD", "0.001"),
        // A cent against a sub-cent week: the change is shown, a percentage is not.
        row("2026-11-24", "111111111111", "Lambda", &[], "USD", "0.00001"),
        row("2026-12-01", "111111111111", "Lambda", &[], "USD", "-0.01"),
    ];
    let r = build(&input("2026-W49", Costs::Detailed(rows))).unwrap();
    // The JSON keeps every line, exact.
    assert_eq!(r.by_service.len(), 4);
    let lambda = r.by_service.iter().find(|l| l.key == "Lambda").unwrap();
    assert_eq!((lambda.change, lambda.change_percent), (d("-0.01001"), None));
    let (shown, hidden) = super::text::shown_lines(&r.by_service);
    assert_eq!((shown.iter().map(|l| l.key.as_str()).collect::<Vec<_>>(), hidden), (vec!["EC2", "Lambda"], 2));
    let md = markdown(&r);
    assert!(md.contains("| Lambda | -$0.01 | $0.00 | -$0.01 | n/a |"), "{md}");
    assert!(!md.contains("| KMS |") && md.contains("| …and 2 more under half a cent in both weeks | | | | |"), "{md}");
    let html = super::html::html(&r).unwrap();
    assert!(!html.contains(">KMS</td>") && html.contains(">Lambda</td>"), "no table row for KMS");
    assert!(html.contains("…and 2 more under half a cent in both weeks"));
    // The CSV is for machines: every line.
    assert!(csv(&r).unwrap().contains(",service,KMS,"));
}
