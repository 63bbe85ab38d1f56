//! The monitoring bundle in `dashboards/`: the Prometheus rule files pass `promtool check rules` and their
//! unit tests (`promtool test rules`), the example Prometheus and Alertmanager configurations are valid, and
//! every alert has its severity, annotations, a runbook section and a unit test, built on metrics the daemon
//! really exports.
//!
//! `promtool` and `amtool` come with the Debian packages `prometheus` and `prometheus-alertmanager`
//! (`scripts/deps.sh` installs them). Without them the tests that run them fail when `CI=true` and say they
//! are skipped otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

/// Every alert the monitoring bundle promises (product spec and issue).
const REQUIRED_ALERTS: [&str; 10] = [
    "CloudwardenBudgetForecastExceeded",
    "CloudwardenBudgetExceeded",
    "CloudwardenCostAnomaly",
    "CloudwardenTagComplianceLow",
    "CloudwardenUntaggedResourcesGrowing",
    "CloudwardenDriftDetected",
    "CloudwardenCleanupFailed",
    "CloudwardenCollectorStale",
    "CloudwardenAwsThrottling",
    "CloudwardenDown",
];

/// Alerts an end-to-end test must be able to see fire within a few minutes: their `for:` stays at most 5m.
const QUICK_ALERTS: [&str; 3] =
    ["CloudwardenBudgetForecastExceeded", "CloudwardenCostAnomaly", "CloudwardenTagComplianceLow"];

#[derive(Debug, Deserialize)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
struct Group {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn prometheus_dir() -> PathBuf {
    repo().join("dashboards/prometheus")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn rule_file(name: &str) -> RuleFile {
    let path = prometheus_dir().join(name);
    serde_yaml::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The promtool unit test files, sorted.
fn test_files() -> Vec<PathBuf> {
    let dir = prometheus_dir().join("tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no promtool test file in {}", dir.display());
    files
}

/// Whether `tool` can be run. When it cannot: panics under `CI=true` (CI installs it), otherwise prints why
/// the test is skipped.
fn tool_available(tool: &str, test: &str) -> bool {
    match Command::new(tool).arg("--version").output() {
        Ok(_) => true,
        Err(e) => {
            let hint = "install the Debian packages prometheus and prometheus-alertmanager (scripts/deps.sh)";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{tool} cannot be run ({e}) and CI=true: {hint}");
            }
            eprintln!("skipped {test}: {tool} cannot be run ({e}); {hint}");
            false
        }
    }
}

/// Runs `tool args` in `dashboards/prometheus` and fails with everything it printed unless it succeeds.
fn run_ok(tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .current_dir(prometheus_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    assert!(
        out.status.success(),
        "`{tool} {}` failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

#[test]
fn rule_files_pass_promtool_check() {
    if !tool_available("promtool", "rule_files_pass_promtool_check") {
        return;
    }
    run_ok("promtool", &["check", "rules", "alerts.yml", "recording.yml"]);
}

#[test]
fn rule_unit_tests_pass() {
    if !tool_available("promtool", "rule_unit_tests_pass") {
        return;
    }
    for file in test_files() {
        run_ok("promtool", &["test", "rules", file.to_str().expect("UTF-8 path")]);
    }
}

#[test]
fn example_prometheus_config_is_valid() {
    if !tool_available("promtool", "example_prometheus_config_is_valid") {
        return;
    }
    run_ok("promtool", &["check", "config", "prometheus.yml"]);
}

#[test]
fn example_alertmanager_config_is_valid() {
    if !tool_available("amtool", "example_alertmanager_config_is_valid") {
        return;
    }
    let config = repo().join("dashboards/alertmanager/alertmanager.yml");
    run_ok("amtool", &["check-config", config.to_str().expect("UTF-8 path")]);
}

/// GitHub's anchor of a Markdown heading: lowercase, spaces to dashes, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn runbook_anchors() -> BTreeSet<String> {
    read(&repo().join("docs/runbooks.md")).lines().filter_map(|l| l.strip_prefix("## ")).map(anchor).collect()
}

/// The `alertname:` values of every promtool test file.
fn tested_alerts() -> BTreeSet<String> {
    test_files()
        .iter()
        .flat_map(|f| {
            read(f)
                .lines()
                .filter_map(|l| l.trim().strip_prefix("alertname:"))
                .map(|n| n.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Parses a Prometheus duration made of whole units (`90s`, `5m`, `1h30m`, `1d`) into seconds.
fn seconds(duration: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for c in duration.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => panic!("unexpected unit {c:?} in duration {duration:?}"),
        };
        total += number.parse::<u64>().unwrap_or_else(|_| panic!("bad duration {duration:?}")) * unit;
        number.clear();
    }
    assert!(number.is_empty(), "duration {duration:?} ends without a unit");
    total
}

#[test]
fn every_alert_is_labelled_documented_and_tested() {
    let alerts = rule_file("alerts.yml");
    let anchors = runbook_anchors();
    let tested = tested_alerts();
    let mut names = BTreeSet::new();
    let mut problems = Vec::new();
    for group in &alerts.groups {
        for rule in &group.rules {
            let Some(name) = &rule.alert else {
                problems.push(format!("group {}: a recording rule in alerts.yml ({:?})", group.name, rule.record));
                continue;
            };
            names.insert(name.clone());
            if !name.starts_with("Cloudwarden") || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                problems.push(format!("{name}: not a CamelCase name starting with Cloudwarden"));
            }
            match rule.labels.get("severity").map(String::as_str) {
                Some("critical" | "warning" | "info") => {}
                other => problems.push(format!("{name}: severity {other:?}, expected critical, warning or info")),
            }
            for key in ["summary", "description", "runbook_url"] {
                if rule.annotations.get(key).is_none_or(|v| v.trim().is_empty()) {
                    problems.push(format!("{name}: no {key} annotation"));
                }
            }
            if rule.annotations.get("description").is_some_and(|d| !d.contains("{{")) {
                problems.push(format!("{name}: the description is not templated"));
            }
            if rule.annotations.get("summary").is_some_and(|s| s.contains("{{")) {
                problems.push(format!("{name}: the summary should be a static sentence"));
            }
            let url = format!("docs/runbooks.md#{}", name.to_lowercase());
            if rule.annotations.get("runbook_url") != Some(&url) {
                problems
                    .push(format!("{name}: runbook_url {:?}, expected {url:?}", rule.annotations.get("runbook_url")));
            }
            if !anchors.contains(&name.to_lowercase()) {
                problems.push(format!("{name}: no section `## {name}` in docs/runbooks.md"));
            }
            match rule.for_.as_deref().map(seconds) {
                None | Some(0) => problems.push(format!("{name}: no `for:` duration")),
                Some(s) if QUICK_ALERTS.contains(&name.as_str()) && s > 300 => {
                    problems.push(format!("{name}: `for:` {s}s is longer than 5m (end-to-end tests wait for it)"))
                }
                Some(_) => {}
            }
            if !tested.contains(name) {
                problems.push(format!("{name}: no promtool test in dashboards/prometheus/tests names it"));
            }
        }
    }
    for required in REQUIRED_ALERTS {
        if !names.contains(required) {
            problems.push(format!("{required}: missing from alerts.yml"));
        }
    }
    assert!(problems.is_empty(), "alerts.yml:\n  {}", problems.join("\n  "));
}

#[test]
fn recording_rules_are_named_by_level_metric_operations_and_tested() {
    let recording = rule_file("recording.yml");
    let tests: String = test_files().iter().map(|f| read(f)).collect();
    let mut problems = Vec::new();
    let mut count = 0;
    for rule in recording.groups.iter().flat_map(|g| &g.rules) {
        let Some(name) = &rule.record else {
            problems.push(format!("an alert in recording.yml: {:?}", rule.alert));
            continue;
        };
        count += 1;
        let parts: Vec<&str> = name.split(':').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) || !parts[1].starts_with("cloudwarden_") {
            problems.push(format!("{name}: not level:cloudwarden_metric:operations"));
        }
        if !tests.contains(&format!("expr: {name}\n")) {
            problems.push(format!("{name}: no promql_expr_test evaluates it"));
        }
    }
    assert!(count > 0, "recording.yml has no rule");
    assert!(problems.is_empty(), "recording.yml:\n  {}", problems.join("\n  "));
}

/// The `cloudwarden_*` metric names an expression selects (recording rule names, which contain `:`, left out).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("cloudwarden_") {
        let before = rest[..i].chars().next_back();
        let name: String =
            rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
        rest = &rest[i + name.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') || name.contains(':') {
            continue;
        }
        names.insert(name);
    }
    names
}

/// Every metric the rules select is one `src/metrics.rs` or a job in `src/jobs/` registers (counters get `_total` on the wire).
#[test]
fn rules_select_only_exported_metrics() {
    // The self metrics in src/metrics.rs, and each job's own families in src/jobs/.
    let mut files = vec![repo().join("src/metrics.rs")];
    let mut jobs: Vec<_> = std::fs::read_dir(repo().join("src/jobs")).unwrap().map(|e| e.unwrap().path()).collect();
    jobs.sort();
    files.extend(jobs);
    let source: String =
        files.iter().flat_map(|f| read(f).chars().collect::<Vec<_>>()).filter(|c| !c.is_whitespace()).collect();
    let mut problems = Vec::new();
    for file in ["alerts.yml", "recording.yml"] {
        for rule in rule_file(file).groups.iter().flat_map(|g| &g.rules) {
            for metric in metric_names(&rule.expr) {
                let base = metric.strip_prefix("cloudwarden_").expect("selected by prefix");
                let registered = [base, base.strip_suffix("_total").unwrap_or(base)].iter().any(|n| {
                    source.contains(&format!("register(\"{n}\",")) || source.contains(&format!("shared_gauge(\"{n}\","))
                });
                if !registered {
                    problems.push(format!(
                        "{file}: {} selects {metric}, which neither src/metrics.rs nor a job registers",
                        rule.alert.as_ref().or(rule.record.as_ref()).map_or("?", |s| s.as_str())
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn metric_names_reads_selectors_only() {
    let names = metric_names(
        "sum by (a) (cloudwarden_resources{x=\"y\"}) / account:cloudwarden_untagged_resources:sum + rate(cloudwarden_aws_api_calls_total[5m])",
    );
    assert_eq!(
        names,
        BTreeSet::from(["cloudwarden_resources".to_string(), "cloudwarden_aws_api_calls_total".to_string()])
    );
    assert_eq!(seconds("1h30m"), 5400);
    assert_eq!(anchor("CloudwardenDown"), "cloudwardendown");
    assert_eq!(anchor("A b, c"), "a-b-c");
}
