//! The Grafana dashboards of `dashboards/grafana/`, checked offline: their structure (datasource on every
//! panel and target, unique panel ids and UIDs, the required dashboards and template variables, the grid,
//! the provisioning files), that every metric and label their PromQL names is one the daemon exports, and
//! (when the TypeScript tools are installed) that each dashboard satisfies Grafana's published types.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use chrono::NaiveDate;
use cloudwarden::billing::BillingView;
use cloudwarden::jobs::billing_files::{BillingCounters, BillingPublished};
use cloudwarden::jobs::cleanup::{CleanupView, Mode};
use cloudwarden::jobs::cloudwatch::{PassThrough, Series};
use cloudwarden::jobs::rules::{RulesAggregates, RulesView};
use cloudwarden::jobs::Render;
use cloudwarden::metrics::{render_self, Exposition};
use cloudwarden::runtime::JobStatus;
use cloudwarden::store::PlanState;
use collector::aws::cloudwatch::exposition_name;
use rust_decimal::Decimal;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The dashboards the bundle promises, by UID.
const REQUIRED: [&str; 8] = [
    "cloudwarden-cost-overview",
    "cloudwarden-budgets",
    "cloudwarden-anomalies",
    "cloudwarden-tagging",
    "cloudwarden-drift",
    "cloudwarden-cleanup",
    "cloudwarden-cloudwatch",
    "cloudwarden-health",
];

/// Template variables every dashboard has.
const VARIABLES: [&str; 4] = ["datasource", "account", "region", "team"];

/// Every dashboard file with its parsed JSON, sorted by file name.
fn dashboards() -> Vec<(String, Value)> {
    let dir = Path::new(ROOT).join("dashboards/grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: invalid JSON: {e}"));
            (name, json)
        })
        .collect()
}

/// Every panel of a dashboard, panels nested in rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// The metric names `/metrics` can show, with the label names each carries, taken from the daemon's own
/// rendering code rather than from a list kept by hand: a snapshot in which every part holds at least one
/// series (inventory, costs, collectors, AWS calls, logs, billing view and counters, rules aggregates with
/// drift, findings, and the CloudWatch series of the example configuration) is rendered through each job's
/// published view and the runtime's self metrics, and names and labels are read from the sample lines of the
/// OpenMetrics text, the way Prometheus reads them (a counter family `x` is sampled as `x_total`). A family
/// without samples is not rendered at all, so every family that `src/metrics.rs` or a job in `src/jobs/`
/// registers (`register("name", ...)`) must show up with samples: a new family fails this test until the
/// views here fill it. A dashboard that names a metric
/// or a label that the daemon does not export, or a counter without `_total`, fails.
///
/// CloudWatch pass-through names depend on the configuration: those of `examples/cloudwarden.toml` are
/// built with the exporter's own naming functions (`exposition_name`, `label_name`), plus
/// `aws_resource_info`, the one name the CloudWatch job sets itself (checked against its source).
fn exported() -> BTreeMap<String, BTreeSet<String>> {
    use chrono::{TimeZone, Utc};
    use cloudwarden::billing::ResourceCost;
    use cloudwarden::metrics::CostGauge;
    use cloudwarden::store::{FindingCount, PatternCount, RunOutcome, ScopeCount};
    use collector::aws::cloudwatch::label_name;
    use collector::{ApiCallKey, CallOutcome};
    use rules::finding::{FindingKind, Severity};

    let cloudwatch_source = include_str!("../src/jobs/cloudwatch.rs");
    assert!(
        cloudwatch_source.contains("name: intern.get(\"aws_resource_info\"),"),
        "the CloudWatch job no longer names aws_resource_info"
    );
    let config = cloudwarden::config::load(&Path::new(ROOT).join("examples/cloudwarden.toml"))
        .unwrap_or_else(|e| panic!("examples/cloudwarden.toml: {e:?}"));
    let cw = config.cloudwatch.expect("the example configuration has a CloudWatch collector").settings;
    let base = || vec![("account".to_string(), A.to_string()), ("region".to_string(), "eu-west-1".to_string())];
    let mut series: Vec<Series> = Vec::new();
    let mut push = |name: String, labels: Vec<(String, String)>| {
        let labels = labels.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        series.push(Series { name: name.into(), help: "x".into(), labels, value: 1.0 })
    };
    for d in &cw.discovery {
        let mut labels = base();
        labels.push((label_name("dimension_", &d.dimension), "i-1".into()));
        labels.extend(d.export_tags.iter().map(|t| (label_name("tag_", t), "x".to_string())));
        for m in &d.metrics {
            for s in &d.statistics {
                push(exposition_name(&d.namespace, m, s), labels.clone());
            }
        }
        let mut info = vec![("arn".to_string(), "arn:x".to_string())];
        info.extend(base());
        info.push(("resource_type".into(), d.resource_type.clone()));
        info.extend(d.export_tags.iter().map(|t| (label_name("tag_", t), "x".to_string())));
        push("aws_resource_info".into(), info);
    }
    for st in &cw.statics {
        let mut labels = base();
        labels.extend(st.dimensions.iter().map(|(k, v)| (label_name("dimension_", k), v.clone())));
        for m in &st.metrics {
            for s in &st.statistics {
                push(exposition_name(&st.namespace, m, s), labels.clone());
            }
        }
    }

    let day = NaiveDate::from_ymd_opt(2026, 11, 19).unwrap();
    let t = Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap();
    let cost = |dimension: &str, key: &str| CostGauge {
        window: "month_to_date",
        cost_type: "unblended",
        dimension: dimension.into(),
        key: key.into(),
        usd: 1.0,
    };
    let costs = vec![cost("total", ""), cost("service", "Amazon EC2"), cost("account", A), cost("tag:team", "data")];
    let one = Decimal::ONE;
    let burn = rules::budget::BurnRate { window_days: 7, usd_per_day: one, projected_usd: one, projected_ratio: 0.5 };
    let mut out = Exposition::new();
    let status = JobStatus {
        name: "inventory".into(),
        last_duration_secs: Some(1.5),
        last_success: Some(t),
        runs: BTreeMap::from([(RunOutcome::Success, 1)]),
        ..JobStatus::default()
    };
    let calls = BTreeMap::from([(
        ApiCallKey { service: "ec2".into(), operation: "DescribeVolumes".into(), outcome: CallOutcome::Throttled },
        1,
    )]);
    render_self(&mut out, &[status], &calls, 1);
    cloudwarden::jobs::logs::LogsView {
        patterns: vec![PatternCount {
            account_id: A.into(),
            region: "eu-west-1".into(),
            log_group: "/app".into(),
            pattern_name: "errors".into(),
            filter_pattern: "ERROR".into(),
            matches: 3,
            counted_until_ms: 0,
        }],
        last_events: BTreeMap::from([((A.to_string(), "eu-west-1".to_string(), "/app".to_string()), t)]),
    }
    .render(&mut out);
    cloudwarden::jobs::inventory::InventoryView {
        log_groups: vec![(A.into(), "eu-west-1".into(), "/app".into(), None, Some(10))],
        counts: vec![ScopeCount {
            account_id: A.into(),
            region: "eu-west-1".into(),
            resource_type: "ec2:volume".into(),
            total: 2,
            untagged: 1,
        }],
        accounts: vec![("management".into(), A.into())],
    }
    .render(&mut out);
    cloudwarden::jobs::cost_explorer::CostView { costs: costs.clone() }.render(&mut out);
    BillingPublished {
        view: Some(Arc::new(BillingView {
            today: NaiveDate::from_ymd_opt(2026, 11, 20),
            costs,
            resources: vec![ResourceCost {
                window: "month_to_date",
                cost_type: "effective",
                account: A.into(),
                service: "Amazon EC2".into(),
                resource_id: "i-1".into(),
                usd: 1.0,
            }],
            resources_left_out: 1,
            newest_day: Some(day),
            other_currency_rows: 0,
        })),
        counters: BillingCounters {
            rows_read: 1,
            files: Some([("loaded", 1), ("unchanged", 0), ("failed", 0)]),
            ..Default::default()
        },
    }
    .render(&mut out);
    let findings = vec![FindingCount { kind: FindingKind::Tagging, severity: Severity::Warning, open: 1 }];
    cloudwarden::jobs::cloudwatch::CloudWatchView {
        series: PassThrough::encode(series),
        findings: Some(findings.clone()),
        anomaly: Some(Arc::new(cloudwarden::jobs::metric_anomaly::AnomalyView {
            scores: vec![(
                [
                    ("namespace", "AWS/EC2"),
                    ("metric", "CPUUtilization"),
                    ("statistic", "Average"),
                    ("account", A),
                    ("region", "eu-west-1"),
                    ("dimension_instance_id", "i-1"),
                    ("tag_team", "payments"),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
                0.9,
            )],
            series: 1,
            points_scored: 10,
            late_points: 1,
            left_out: 0,
        })),
    }
    .render(&mut out);
    RulesView {
        findings,
        aggregates: Some(Arc::new(RulesAggregates {
            tag_compliance: vec![rules::tagging::Compliance {
                account_id: A.into(),
                resource_type: "ec2:volume".into(),
                resources: 2,
                untagged: 1,
                in_scope: 2,
                compliant: 1,
                non_compliant_monthly_usd: one,
            }],
            budgets: vec![rules::budget::BudgetStatus {
                name: "platform".into(),
                scope: "all".into(),
                period: rules::budget::BudgetPeriod::Month,
                period_start: day,
                period_end: day,
                amount_usd: one,
                actual_usd: one,
                used_ratio: 0.5,
                forecast_usd: one,
                forecast_ratio: 0.9,
                forecast_method: rules::budget::ForecastMethod::Level,
                history_days: 10,
                burn_1d: burn.clone(),
                burn_7d: burn,
            }],
            cost_anomaly: vec![rules::anomaly::cost::SeriesScore {
                series_kind: rules::anomaly::cost::SeriesKind::Total,
                key: "total".into(),
                day,
                score: 0.2,
                actual_usd: one,
                expected_usd: one,
                impact_usd: Decimal::ZERO,
                impact_percent: None,
                severity: None,
            }],
            drift: Some(rules::engine::DriftSummary {
                counts: BTreeMap::from([(rules::drift::DriftKind::Unmanaged, 1)]),
                coverage: vec![rules::drift::Coverage {
                    account_id: A.into(),
                    resource_type: "ec2:volume".into(),
                    live: 2,
                    managed: 1,
                    unmanaged_monthly_usd: one,
                }],
                unmanaged_monthly_usd: one,
            }),
            cleanup: rules::engine::CleanupSummary {
                by_rule: vec![rules::cleanup::RuleSavings {
                    rule: rules::cleanup::CleanupRule::UnattachedVolume,
                    candidates: 1,
                    monthly_usd: one,
                }],
                candidates: 1,
                monthly_usd: one,
            },
        })),
    }
    .render(&mut out);
    CleanupView {
        mode: Mode::Approve,
        states: BTreeMap::from([(PlanState::Done, 2), (PlanState::Failed, 1)]),
        actions: BTreeMap::from([((A.to_string(), "terminate".to_string(), "failed".to_string()), 1)]),
        allowed: vec![A.into()],
        savings: BTreeMap::from([(A.to_string(), (one, one))]),
        refused: BTreeMap::from([("share".to_string(), 3)]),
        notifications: BTreeMap::from([(("webhook".to_string(), "sent"), 2)]),
    }
    .render(&mut out);
    cloudwarden::jobs::weekly_report::ReportView {
        deliveries: vec!["finance".into()],
        counts: BTreeMap::from([(("finance".to_string(), "success"), 1)]),
        last_success: Some(t),
    }
    .render(&mut out);
    cloudwarden::jobs::retention::RetentionView(BTreeMap::from([("findings", 3)])).render(&mut out);
    let rendered = out.finish();
    let text = String::from_utf8(rendered.openmetrics.to_vec()).unwrap();
    let mut families = BTreeMap::<String, BTreeSet<String>>::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = families.entry(line[..end].to_string()).or_default();
        if line[end..].starts_with('{') {
            labels.extend(label_names(&line[end..]));
        }
    }
    // Every family the renderers register must have come with samples.
    let sources = [
        include_str!("../src/metrics.rs"),
        include_str!("../src/jobs/inventory.rs"),
        include_str!("../src/jobs/cost_explorer.rs"),
        include_str!("../src/jobs/cloudwatch.rs"),
        include_str!("../src/jobs/metric_anomaly.rs"),
        include_str!("../src/jobs/logs.rs"),
        include_str!("../src/jobs/terraform.rs"),
        include_str!("../src/jobs/billing_files.rs"),
        include_str!("../src/jobs/rules.rs"),
        include_str!("../src/jobs/cleanup.rs"),
        include_str!("../src/jobs/weekly_report.rs"),
        include_str!("../src/jobs/retention.rs"),
    ];
    let registered: Vec<&str> = sources
        .iter()
        // The code, not its tests.
        .filter_map(|source| source.split("#[cfg(test)]").next())
        .flat_map(|source| source.split(".register(").skip(1))
        .filter_map(|rest| rest.trim_start().strip_prefix('"')?.split('"').next())
        .collect();
    assert!(registered.len() > 30, "registered families: {registered:?}");
    for name in registered {
        let family = format!("cloudwarden_{name}");
        assert!(
            families.contains_key(&family) || families.contains_key(&format!("{family}_total")),
            "{family} is registered but has no sample: populate it in the views rendered here"
        );
    }
    // And every family the text announces.
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut parts = line.split_whitespace();
        let (family, kind) = (parts.next().unwrap(), parts.next().unwrap());
        let sample = if kind == "counter" { format!("{family}_total") } else { family.to_string() };
        assert!(families.contains_key(&sample), "{family} ({kind}) has no sample: populate it in the snapshot");
    }
    families
}

/// The label names of a matcher list or sample label set `{a="x", b!~"y"}`.
fn label_names(braces: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = braces.trim_start_matches('{').chars().peekable();
    let mut name = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                // The value: skip to its closing quote.
                while let Some(d) = chars.next() {
                    if d == '\\' && c != '`' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
            }
            '=' | '!' | '~' => {
                if !name.is_empty() {
                    out.push(std::mem::take(&mut name));
                }
            }
            '}' => break,
            c if c.is_ascii_alphanumeric() || c == '_' => name.push(c),
            c if c.is_whitespace() => {}
            _ => name.clear(),
        }
    }
    out
}

const A: &str = "111111111111";

/// Names of the recording rules (`level:metric:operations`) in `dashboards/prometheus/*.yml`, if any: a
/// dashboard may use them as well.
fn recording_rules() -> BTreeSet<String> {
    let dir = Path::new(ROOT).join("dashboards/prometheus");
    let mut out = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    for e in entries {
        let path = e.unwrap().path();
        if !path.extension().is_some_and(|x| x == "yml" || x == "yaml") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let line = line.trim_start().trim_start_matches("- ");
            if let Some(name) = line.strip_prefix("record:") {
                let name = name.trim().trim_matches(['"', '\'']);
                if name.contains(':') {
                    out.insert(name.to_string());
                }
            }
        }
    }
    out
}

/// Grafana's built-in interval variables and what stands in for them.
const BUILTINS: [(&str, &str); 5] = [
    ("__rate_interval", "5m"),
    ("__interval_ms", "60000"),
    ("__interval", "1m"),
    ("__range_s", "3600"),
    ("__range", "1h"),
];

/// Replaces `$name`, `${name}`, `${name:format}` and `[[name]]`: Grafana's interval variables by a
/// duration, every other variable by `__var__`. A variable in a metric name's place thus shows up as the
/// unknown metric `__var__`; in a label value it stays inside its quotes.
fn substitute(expr: &str) -> String {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < chars.len() {
        let (name, next) = if chars[i] == '$' && chars.get(i + 1) == Some(&'{') {
            let end = chars[i..].iter().position(|&c| c == '}').map(|p| i + p).expect("unclosed ${");
            let inner: String = chars[i + 2..end].iter().collect();
            (inner.split(':').next().unwrap().to_string(), end + 1)
        } else if chars[i] == '$' && chars.get(i + 1).is_some_and(|&c| ident(c)) {
            let len = chars[i + 1..].iter().take_while(|&&c| ident(c)).count();
            (chars[i + 1..i + 1 + len].iter().collect(), i + 1 + len)
        } else if chars[i] == '[' && chars.get(i + 1) == Some(&'[') {
            let end = chars[i..].windows(2).position(|w| w == [']', ']']).map(|p| i + p).expect("unclosed [[");
            (chars[i + 2..end].iter().collect(), end + 2)
        } else {
            out.push(chars[i]);
            i += 1;
            continue;
        };
        match BUILTINS.iter().find(|(b, _)| *b == name) {
            Some((_, v)) => out.push_str(v),
            None => out.push_str("__var__"),
        }
        i = next;
    }
    out
}

/// PromQL words that are not metric names when not followed by `(`: keywords, and aggregation operators
/// (followed by `by` or `without`).
const KEYWORDS: [&str; 27] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "atan2",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
];

/// The metric selectors of a PromQL expression: each metric name with the label names of its matchers.
/// Names are identifiers outside strings, label matchers `{...}` and ranges `[...]`, not followed by `(`
/// (functions and aggregations), not keywords or aggregation operators, and not in the label lists after
/// `by`, `without`, `on`, `ignoring`, `group_left` and `group_right`. Variables are substituted first.
fn selectors(expr: &str) -> Vec<(String, Vec<String>)> {
    let expr = substitute(expr);
    let c: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // Skips a quoted string starting at `i`; returns the index after it.
    let skip_string = |i: usize| -> usize {
        let q = c[i];
        let mut j = i + 1;
        while j < c.len() && c[j] != q {
            if c[j] == '\\' && q != '`' {
                j += 1;
            }
            j += 1;
        }
        j + 1
    };
    // Skips a bracketed group (strings inside honoured); returns the index after its closing bracket.
    let skip_group = |i: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        let mut j = i;
        while j < c.len() {
            match c[j] {
                '"' | '\'' | '`' => {
                    j = skip_string(j);
                    continue;
                }
                x if x == open => depth += 1,
                x if x == close => {
                    depth -= 1;
                    if depth == 0 {
                        return j + 1;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        panic!("unbalanced {open} in {expr}");
    };
    let next_non_space = |j: usize| c[j..].iter().position(|x| !x.is_whitespace()).map(|p| (j + p, c[j + p]));
    while i < c.len() {
        let x = c[i];
        if x == '"' || x == '\'' || x == '`' {
            i = skip_string(i);
        } else if x == '{' {
            i = skip_group(i, '{', '}');
        } else if x == '[' {
            i = skip_group(i, '[', ']');
        } else if x == '#' {
            i = c[i..].iter().position(|&x| x == '\n').map_or(c.len(), |p| i + p);
        } else if x.is_ascii_digit() || (x == '.' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            // Numbers and durations (1e3, 0x1f, 5m, 1h30m).
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.' || c[i] == '_') {
                i += 1;
            }
        } else if x.is_ascii_alphabetic() || x == '_' || x == ':' {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            let next = next_non_space(i);
            // The first six keywords take a label list: `by (...)`, `on (...)`, `group_left (...)`.
            if KEYWORDS[..6].contains(&lower.as_str()) {
                if let Some((open, '(')) = next {
                    i = skip_group(open, '(', ')');
                }
            } else if KEYWORDS.contains(&lower.as_str()) || matches!(next, Some((_, '('))) {
                // A keyword, an aggregation, or a function name.
            } else if let Some((open, '{')) = next {
                let close = skip_group(open, '{', '}');
                let inner: String = c[open..close].iter().collect();
                out.push((word, label_names(&inner)));
                i = close;
            } else {
                out.push((word, Vec::new()));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The metric names of a PromQL expression (see [`selectors`]).
fn metric_names(expr: &str) -> Vec<String> {
    selectors(expr).into_iter().map(|(name, _)| name).collect()
}

/// The PromQL inside a template variable's query: `label_values(EXPR, label)` and `query_result(EXPR)` give
/// EXPR; `label_values(label)`, `label_names()` and custom values give none.
fn variable_promql(query: &str) -> Option<String> {
    let q = query.trim();
    if let Some(inner) = q.strip_prefix("query_result(").and_then(|r| r.strip_suffix(')')) {
        return Some(inner.to_string());
    }
    let inner = q.strip_prefix("label_values(")?.strip_suffix(')')?;
    // The last top-level comma separates the selector from the label.
    let mut depth = 0i32;
    let mut in_string = false;
    let mut split = None;
    for (i, ch) in inner.char_indices() {
        match ch {
            '"' => in_string = !in_string,
            '{' | '(' | '[' if !in_string => depth += 1,
            '}' | ')' | ']' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => split = Some(i),
            _ => {}
        }
    }
    split.map(|i| inner[..i].to_string())
}

/// The query text of a template variable (a string, or an object with `query`).
fn variable_query(v: &Value) -> Option<&str> {
    v["query"].as_str().or_else(|| v["query"]["query"].as_str())
}

fn datasource_uid(v: &Value) -> Option<&str> {
    v["datasource"]["uid"].as_str()
}

#[test]
fn promql_metric_names() {
    fn check(expr: &str, want: &[&str]) {
        assert_eq!(metric_names(expr), want, "{expr}");
    }
    check("cloudwarden_resources", &["cloudwarden_resources"]);
    check(
        r#"sum by (account, region) (cloudwarden_resources{account=~"$account", region=~"$region"})"#,
        &["cloudwarden_resources"],
    );
    check(
        r#"sum without (outcome) (rate(cloudwarden_aws_api_calls_total{outcome="throttled"}[$__rate_interval])) / on() group_left sum(rate(x_total[5m]))"#,
        &["cloudwarden_aws_api_calls_total", "x_total"],
    );
    check(r#"topk(10, cloudwarden_cost_usd{scope="service"}) > bool 0.5e1 or vector(0)"#, &["cloudwarden_cost_usd"]);
    check(r#"label_replace(up, "dst", "$1", "src", "(.*)") offset 1h"#, &["up"]);
    check(
        r#"time() - cloudwarden_build_info unless level:metric:rate5m"#,
        &["cloudwarden_build_info", "level:metric:rate5m"],
    );
    check(r#"{__name__=~"$metric", account=~"$account"}"#, &[]);
    check("$metric", &["__var__"]);
    check(
        r#"max(aws_ec2_cpuutilization_average{tag_team=~"${team:regex}"}) # a comment naming_no_metric"#,
        &["aws_ec2_cpuutilization_average"],
    );
    assert_eq!(
        selectors(r#"sum(x{a="1", b!~"q}\"z", c=~'${c}'}) / y{ d = "" }"#),
        [("x".to_string(), vec!["a".to_string(), "b".into(), "c".into()]), ("y".to_string(), vec!["d".to_string()])]
    );
    assert_eq!(
        variable_promql("label_values(cloudwarden_cost_usd{scope=\"tag\", tag_key=\"team\"}, tag_value)").as_deref(),
        Some("cloudwarden_cost_usd{scope=\"tag\", tag_key=\"team\"}")
    );
    assert_eq!(variable_promql("label_values(account)"), None);
}

#[test]
fn the_required_dashboards_exist_with_unique_uids() {
    let mut uids = BTreeMap::new();
    for (name, d) in dashboards() {
        let uid = d["uid"].as_str().unwrap_or_else(|| panic!("{name}: no uid"));
        assert!(uid.len() <= 40 && uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{name}: uid {uid:?}");
        if let Some(other) = uids.insert(uid.to_string(), name.clone()) {
            panic!("{name} and {other} share uid {uid}");
        }
        assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "{name}: no title");
        assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 39), "{name}: schemaVersion below 39");
        assert!(
            d["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == "cloudwarden")),
            "{name}: no cloudwarden tag"
        );
    }
    for uid in REQUIRED {
        assert!(uids.contains_key(uid), "no dashboard with uid {uid}");
    }
}

#[test]
fn every_panel_and_target_has_a_datasource_and_a_query() {
    for (name, d) in dashboards() {
        let mut ids = BTreeSet::new();
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or("");
            let id = p["id"].as_u64().unwrap_or_else(|| panic!("{name}: panel {title:?} has no id"));
            assert!(ids.insert(id), "{name}: panel id {id} used twice");
            assert!(p["gridPos"].is_object(), "{name}: panel {id} has no gridPos");
            let kind = p["type"].as_str().unwrap_or_else(|| panic!("{name}: panel {id} has no type"));
            if kind == "row" || kind == "text" {
                continue;
            }
            assert!(!title.is_empty(), "{name}: panel {id} has no title");
            assert!(
                p["description"].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: panel {title:?} has no description"
            );
            assert_eq!(
                datasource_uid(p),
                Some("${datasource}"),
                "{name}: panel {title:?} does not use the datasource variable"
            );
            let targets = p["targets"].as_array().filter(|t| !t.is_empty());
            let targets = targets.unwrap_or_else(|| panic!("{name}: panel {title:?} has no target"));
            let mut refs = BTreeSet::new();
            for t in targets {
                assert!(
                    t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                    "{name}: panel {title:?} has a target without expr"
                );
                assert_eq!(
                    datasource_uid(t),
                    Some("${datasource}"),
                    "{name}: a target of {title:?} does not use the datasource variable"
                );
                let r = t["refId"].as_str().unwrap_or_else(|| panic!("{name}: a target of {title:?} has no refId"));
                assert!(refs.insert(r), "{name}: panel {title:?} uses refId {r} twice");
            }
        }
    }
}

/// Panels fit the 24 columns of the grid and do not overlap (rows included, each over its own line).
#[test]
fn panels_do_not_overlap() {
    for (name, d) in dashboards() {
        let mut taken = BTreeMap::new();
        for p in panels(&d) {
            let g = &p["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"]
                .map(|k| g[k].as_u64().unwrap_or_else(|| panic!("{name}: panel {}: gridPos.{k}", p["id"])));
            assert!(w > 0 && h > 0 && x + w <= 24, "{name}: panel {} does not fit the grid", p["id"]);
            for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
                if let Some(other) = taken.insert(cell, p["id"].clone()) {
                    panic!("{name}: panels {other} and {} overlap at {cell:?}", p["id"]);
                }
            }
        }
    }
}

#[test]
fn every_dashboard_has_the_shared_variables() {
    for (name, d) in dashboards() {
        let list = d["templating"]["list"].as_array().unwrap_or_else(|| panic!("{name}: no templating.list"));
        let by_name: BTreeMap<&str, &Value> = list.iter().map(|v| (v["name"].as_str().unwrap(), v)).collect();
        for v in VARIABLES {
            assert!(by_name.contains_key(v), "{name}: no variable {v}");
        }
        let ds = by_name["datasource"];
        assert_eq!(ds["type"], "datasource", "{name}: datasource variable");
        assert_eq!(ds["query"], "prometheus", "{name}: datasource variable");
        for v in list.iter().filter(|v| v["type"] == "query") {
            let vname = v["name"].as_str().unwrap();
            assert_eq!(
                datasource_uid(v),
                Some("${datasource}"),
                "{name}: variable {vname} does not use the datasource variable"
            );
            let query = variable_query(v).unwrap_or_else(|| panic!("{name}: variable {vname} has no query"));
            assert!(
                query.starts_with("label_values(") || query.starts_with("query_result("),
                "{name}: variable {vname}: {query}"
            );
        }
        for v in ["account", "region", "team"] {
            let var = by_name[v];
            assert_eq!(var["type"], "query", "{name}: {v} is not a query variable");
            assert_eq!(var["includeAll"], true, "{name}: {v} has no All option");
            assert_eq!(var["allValue"], ".*", "{name}: {v}'s All must match every value, the empty one included");
        }
    }
}

#[test]
fn every_metric_a_dashboard_names_is_exported_with_its_labels() {
    let exported = exported();
    // Sanity: the set really comes from the renderer, optional parts included.
    for name in [
        "cloudwarden_resources",
        "cloudwarden_aws_api_calls_total",
        "cloudwarden_findings",
        "cloudwarden_drift_resources",
        "cloudwarden_billing_files",
        "aws_resource_info",
    ] {
        assert!(exported.contains_key(name), "{name} missing from the rendered names: {:?}", exported.keys());
    }
    assert!(!exported.contains_key("cloudwarden_aws_api_calls"), "counters are exported with _total only");
    assert!(exported["cloudwarden_cost_usd"].contains("tag_value"));
    let recorded = recording_rules();
    let mut unknown = Vec::new();
    let mut used = BTreeSet::new();
    for (name, d) in dashboards() {
        let mut exprs: Vec<(String, String)> = Vec::new();
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    exprs.push((format!("panel {:?}", p["title"].as_str().unwrap_or("")), e.to_string()));
                }
            }
        }
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            if let Some(e) = variable_query(v).and_then(variable_promql) {
                exprs.push((format!("variable {}", v["name"]), e));
            }
        }
        for (place, e) in exprs {
            let found = selectors(&e);
            assert!(!found.is_empty() || e.contains("__name__"), "{name}: {place}: no metric in {e}");
            for (m, labels) in found {
                if let Some(known) = exported.get(&m) {
                    for l in labels.iter().filter(|l| !known.contains(*l) && l.as_str() != "__name__") {
                        unknown.push(format!("{name}: {place}: {m} has no label {l}"));
                    }
                    used.insert(m);
                } else if m.contains(':') && recorded.contains(&m) {
                    used.insert(m);
                } else {
                    unknown.push(format!("{name}: {place}: {m} is not exported"));
                }
            }
        }
    }
    assert!(unknown.is_empty(), "metrics or labels cloudwarden does not export:\n{}", unknown.join("\n"));
    assert!(used.len() > 20, "the dashboards use only {used:?}");
}

/// The provisioning files point Grafana at the dashboards and at a data source the `datasource` variable
/// defaults to.
#[test]
fn provisioning_matches_the_dashboards() {
    let read = |p: &str| std::fs::read_to_string(Path::new(ROOT).join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let datasources = read("dashboards/grafana/provisioning/datasources/cloudwarden.yml");
    let uid = datasources
        .lines()
        .find_map(|l| l.trim().strip_prefix("uid:"))
        .map(str::trim)
        .expect("the provisioned data source has a fixed uid");
    assert!(datasources.contains("type: prometheus"), "the provisioned data source is not Prometheus");
    let providers = read("dashboards/grafana/provisioning/dashboards/cloudwarden.yml");
    for want in ["type: file", "folder: cloudwarden", "path: /var/lib/grafana/dashboards/cloudwarden"] {
        assert!(providers.contains(want), "dashboard provider: no {want:?}");
    }
    for (name, d) in dashboards() {
        let ds = d["templating"]["list"].as_array().unwrap().iter().find(|v| v["name"] == "datasource").unwrap();
        assert_eq!(
            ds["current"]["value"], uid,
            "{name}: the datasource variable does not default to the provisioned one"
        );
    }
}

/// `dashboards/typecheck`: each dashboard must satisfy `Dashboard` of `@grafana/schema` under
/// `tsc --strict`. Needs `npm ci` there (scripts/test.sh runs it); without it the check is skipped, except
/// under CI where it fails.
#[test]
fn dashboards_satisfy_grafana_schema_types() {
    let dir = Path::new(ROOT).join("dashboards/typecheck");
    if !dir.join("node_modules").is_dir() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("dashboards/typecheck/node_modules is missing: run `npm ci` there (scripts/test.sh does)");
        }
        eprintln!("skipped: dashboards/typecheck/node_modules is missing (run `npm ci --no-audit --no-fund` there)");
        return;
    }
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run("node", &["generate.mjs"]);
    run("node_modules/.bin/tsc", &["--project", "tsconfig.json", "--noEmit", "--strict"]);
}
