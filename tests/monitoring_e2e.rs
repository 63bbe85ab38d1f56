//! The monitoring bundle end to end: the seeded moto test-bed, the daemon binary (`run`) with inventory, Cost
//! Explorer, CloudWatch, Logs, Terraform and rules, a second daemon loading billing exports (billing rows would
//! replace Cost Explorer's in the rules), a real Prometheus scraping both and loading
//! `dashboards/prometheus/alerts.yml` and `recording.yml` unchanged, and a real Alertmanager delivering to a
//! webhook served by this test. Before the daemons start, the test adds what the seed does not write:
//! `NetworkOut` datapoints, log events, and the billing export files.
//!
//! * every PromQL expression of every panel of the Grafana dashboards in `dashboards/grafana/dashboards/`
//!   (variables substituted) runs through Prometheus' HTTP API and returns at least one series;
//! * the seeded scenario (a budget whose forecast exceeds it, a cost spike, resources that break the tagging
//!   scheme) makes `CloudwardenBudgetForecastExceeded`, `CloudwardenCostAnomaly` and
//!   `CloudwardenTagComplianceLow` fire, with the expected labels, and reach the webhook through
//!   Alertmanager; `CloudwardenBudgetExceeded` stays silent (the spend so far is below the amount);
//! * `promtool check metrics` finds no problem in either daemon's `/metrics`.
//!
//! The alerts have `for: 5m`, so the test takes about six minutes. `prometheus`, `promtool` and
//! `prometheus-alertmanager` come with the Debian packages `prometheus` and `prometheus-alertmanager`
//! (`scripts/deps.sh`); without them the test fails when `CI=true` and says it is skipped otherwise.
//! `CLOUDWARDEN_E2E_DASHBOARDS` names another directory of dashboards to check instead.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, repo_root, Moto};
use http_body_util::BodyExt;
use serde_json::Value;

/// How long the alerts may take to fire: `for: 5m` after the first rules run, plus generous slack.
const ALERT_DEADLINE: Duration = Duration::from_secs(12 * 60);

/// Whether every external program can be run. When one cannot: panics under `CI=true`, otherwise prints why
/// the test is skipped.
fn tools_available(test: &str) -> bool {
    for tool in ["prometheus", "promtool", "prometheus-alertmanager"] {
        if let Err(e) = Command::new(tool).arg("--version").output() {
            let hint = "install the Debian packages prometheus and prometheus-alertmanager (scripts/deps.sh)";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{tool} cannot be run ({e}) and CI=true: {hint}");
            }
            eprintln!("skipped {test}: {tool} cannot be run ({e}); {hint}");
            return false;
        }
    }
    true
}

/// A child process of the test, killed when dropped (a failed assertion included), its output in a file.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name, child, log }
    }

    /// The last lines it printed, for failure messages.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("--- last lines of {} ---\n{}", self.name, lines[lines.len().saturating_sub(30)..].join("\n"))
    }

    /// Fails with its output if it has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited ({status})\n{}", self.name, self.tail());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// GET `url`: status and body, or None when nothing answers.
async fn get(url: &str) -> Option<(u16, String)> {
    get_accepting(url, "*/*").await
}

async fn get_accepting(url: &str, accept: &str) -> Option<(u16, String)> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = axum::http::Request::get(url).header("accept", accept).body(axum::body::Body::empty()).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req)).await.ok()?.ok()?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Calls `probe` every `every` until it returns `Ok`, checking that `proc_` keeps running; after `secs`
/// seconds fails with `what`, what the probe saw last (its `Err`) and the process's output.
async fn poll<T>(
    what: &str,
    proc_: &mut Proc,
    secs: u64,
    every: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let seen = match probe().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        proc_.assert_running();
        assert!(Instant::now() < deadline, "{what} within {secs} s\n{seen}\n{}", proc_.tail());
        tokio::time::sleep(every).await;
    }
}

/// Waits until `url` answers 200, failing with the process's output after `secs` seconds.
async fn wait_ready(url: &str, proc_: &mut Proc, secs: u64) {
    let probe = async || match get(url).await {
        Some((200, _)) => Ok(()),
        other => Err(format!("last answer: {other:?}")),
    };
    poll(&format!("{url} did not answer 200"), proc_, secs, Duration::from_millis(200), probe).await
}

/// `/api/v1/<path>` of Prometheus: its `data`, or the error it reported.
async fn prom_api(base: &str, path: &str) -> Result<Value, String> {
    let (status, body) = get(&format!("{base}/api/v1/{path}")).await.ok_or("Prometheus does not answer")?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
    if v["status"] != "success" {
        return Err(format!("HTTP {status}: {} {}", v["errorType"], v["error"]));
    }
    Ok(v["data"].clone())
}

/// The strings a Prometheus API call answers with (label values, metric names); none when it fails.
async fn strings(base: &str, path: &str) -> Vec<String> {
    prom_api(base, path)
        .await
        .ok()
        .and_then(|d| d.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Instant query: the number of series (a scalar or string counts as one).
async fn query_count(base: &str, expr: &str) -> Result<usize, String> {
    let data = prom_api(base, &format!("query?query={}", encode(expr))).await?;
    Ok(match data["resultType"].as_str() {
        Some("vector") | Some("matrix") => data["result"].as_array().map_or(0, Vec::len),
        _ => 1,
    })
}

// ---------------------------------------------------------------------------------------------------------
// Grafana dashboards: the PromQL of every panel, variables substituted.

/// One panel query of a dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PanelQuery {
    dashboard: String,
    panel: String,
    ref_id: String,
    expr: String,
}

/// Durations for Grafana's interval variables; a range long enough for any rate over the test's samples.
const BUILTINS: [(&str, &str); 8] = [
    ("__rate_interval", "1m"),
    ("__interval", "1m"),
    ("__interval_ms", "60000"),
    ("__range", "1h"),
    ("__range_s", "3600"),
    ("__range_ms", "3600000"),
    ("__auto_interval", "1m"),
    ("interval", "1m"),
];

/// The value each templating variable of a dashboard stands for in the test: `.*` for a variable with "All"
/// (or a query variable: every value), the current value of a custom, constant or interval variable (`|`-joined
/// when several), the first option otherwise.
fn dashboard_variables(dashboard: &Value) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> = BUILTINS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for v in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        let Some(name) = v["name"].as_str() else { continue };
        let kind = v["type"].as_str().unwrap_or("");
        let current: Vec<String> = match &v["current"]["value"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
            _ => vec![],
        };
        let all = current.iter().any(|c| c == "$__all") || current.is_empty();
        let value = match kind {
            "datasource" => "cloudwarden".to_string(),
            "interval" => {
                let c = current.first().cloned().unwrap_or_default();
                if c.is_empty() || c.starts_with('$') {
                    "5m".to_string()
                } else {
                    c
                }
            }
            "query" if all || v["includeAll"] == true => {
                v["allValue"].as_str().filter(|s| !s.is_empty()).unwrap_or(".*").to_string()
            }
            // A single choice among the query's values: resolved through Prometheus (`resolve_choices`).
            "query" => format!("{CHOICE}{}", variable_query(v)),
            _ if all => {
                if v["includeAll"] == true {
                    v["allValue"].as_str().filter(|s| !s.is_empty()).unwrap_or(".*").to_string()
                } else {
                    v["options"][0]["value"]
                        .as_str()
                        .or(v["query"].as_str().and_then(|q| q.split(',').next()))
                        .unwrap_or("")
                        .trim()
                        .to_string()
                }
            }
            _ => current.join("|"),
        };
        vars.insert(name.to_string(), value);
    }
    vars
}

/// Marks a variable whose value is one of its query's results, to be asked of Prometheus.
const CHOICE: &str = "\u{0}choice:";

/// The query of a query variable (`label_values(up, job)`), as Grafana stores it (a string or an object).
fn variable_query(v: &Value) -> String {
    v["query"].as_str().or(v["query"]["query"].as_str()).or(v["definition"].as_str()).unwrap_or("").to_string()
}

/// Gives each single-choice query variable the first value its query finds in Prometheus
/// (`label_values(selector, label)`, `label_values(label)`, `metrics(regex)`), so that a panel showing one
/// chosen series (`{__name__="$metric"}`) queries a real one. A query without values leaves `.*`.
async fn resolve_choices(prom: &str, vars: &mut BTreeMap<String, String>) {
    let pending: Vec<(String, String)> =
        vars.iter().filter_map(|(k, v)| Some((k.clone(), v.strip_prefix(CHOICE)?.to_string()))).collect();
    for (name, query) in pending {
        let q = substitute(query.trim(), vars);
        let values: Vec<String> = if let Some(args) = q.strip_prefix("label_values(").and_then(|a| a.strip_suffix(')'))
        {
            let (selector, label) = match args.rsplit_once(',') {
                Some((sel, label)) => (Some(sel.trim().to_string()), label.trim().to_string()),
                None => (None, args.trim().to_string()),
            };
            let path = match &selector {
                Some(sel) => format!("label/{label}/values?match[]={}", encode(sel)),
                None => format!("label/{label}/values"),
            };
            strings(prom, &path).await
        } else if let Some(re) = q.strip_prefix("metrics(").and_then(|a| a.strip_suffix(')')) {
            let names = strings(prom, "label/__name__/values").await;
            // A prefix regex (`aws_.*`) is what dashboards use; anything else keeps every name.
            let prefix = re.trim().trim_end_matches(".*").trim_start_matches('^');
            names
                .into_iter()
                .filter(|n| prefix.chars().any(|c| "*+?[(|\\".contains(c)) || n.starts_with(prefix))
                .collect()
        } else {
            vec![]
        };
        vars.insert(name, values.into_iter().next().unwrap_or_else(|| ".*".to_string()));
    }
}

/// Replaces `$name`, `${name}`, `${name:format}` and `[[name]]` by the variables' values; unknown names stay.
fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(i) = rest.find(['$', '[']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (name, len) = if let Some(t) = tail.strip_prefix("${") {
            match t.find('}') {
                Some(end) => (t[..end].split(':').next().unwrap_or(""), end + 3),
                None => ("", 0),
            }
        } else if let Some(t) = tail.strip_prefix("[[") {
            match t.find("]]") {
                Some(end) if t[..end].chars().all(|c| ident(c) || c == ':') => {
                    (t[..end].split(':').next().unwrap_or(""), end + 4)
                }
                _ => ("", 0),
            }
        } else if let Some(t) = tail.strip_prefix('$') {
            let end = t.find(|c: char| !ident(c)).unwrap_or(t.len());
            (&t[..end], end + 1)
        } else {
            ("", 0)
        };
        match vars.get(name) {
            Some(value) if len > 0 => {
                out.push_str(value);
                rest = &tail[len..];
            }
            _ => {
                out.push_str(&tail[..1]);
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every panel target with an `expr`, rows (collapsed or not) and nested panels included.
fn collect_targets(panel: &Value, dashboard: &str, vars: &BTreeMap<String, String>, out: &mut Vec<PanelQuery>) {
    let title = panel["title"].as_str().unwrap_or("(untitled)");
    for t in panel["targets"].as_array().into_iter().flatten() {
        let Some(expr) = t["expr"].as_str().filter(|e| !e.trim().is_empty()) else {
            continue;
        };
        // Server-side expressions (math over other targets) and other data sources are not PromQL.
        if t["datasource"]["type"].as_str().is_some_and(|ty| ty != "prometheus") {
            continue;
        }
        out.push(PanelQuery {
            dashboard: dashboard.to_string(),
            panel: title.to_string(),
            ref_id: t["refId"].as_str().unwrap_or("").to_string(),
            expr: substitute(expr, vars),
        });
    }
    for p in panel["panels"].as_array().into_iter().flatten() {
        collect_targets(p, dashboard, vars, out);
    }
}

/// Every `*.json` dashboard in `dir` (none when it does not exist), by file name, sorted.
fn dashboards(dir: &Path) -> Vec<(String, Value)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut files: Vec<PathBuf> =
        entries.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let dashboard: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            (file.file_name().unwrap().to_string_lossy().into_owned(), dashboard)
        })
        .collect()
}

/// The panel queries of the dashboards in `dir`, single-choice query variables resolved through Prometheus
/// when `prom` is given.
async fn dashboard_queries(dir: &Path, prom: Option<&str>) -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for (name, dashboard) in dashboards(dir) {
        let mut vars = dashboard_variables(&dashboard);
        if let Some(prom) = prom {
            resolve_choices(prom, &mut vars).await;
        }
        collect_targets(&dashboard, &name, &vars, &mut out);
    }
    out
}

fn dashboards_dir() -> PathBuf {
    match std::env::var_os("CLOUDWARDEN_E2E_DASHBOARDS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => repo_root().join("dashboards/grafana/dashboards"),
    }
}

#[tokio::test]
async fn panel_queries_are_found_in_rows_and_have_their_variables_substituted() {
    let sample = serde_json::json!({
        "uid": "sample",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus"},
            {"name": "account", "type": "query", "includeAll": true, "allValue": ".*", "multi": true,
             "current": {"text": ["All"], "value": ["$__all"]}},
            {"name": "region", "type": "query", "includeAll": true, "current": {"value": "$__all"}},
            {"name": "cost_type", "type": "custom", "query": "amortized,unblended",
             "current": {"text": "amortized", "value": "amortized"}},
            {"name": "window", "type": "interval", "query": "1h,6h", "current": {"value": "6h"}},
            {"name": "metric", "type": "query", "query": {"query": "metrics(aws_.*)"}, "current": {"value": "aws_x"}}
        ]},
        "panels": [
            {"type": "stat", "title": "Resources", "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "targets": [{"refId": "A", "expr": "sum(cloudwarden_resources{account=~\"$account\", region=~\"${region:regex}\"})"}]},
            {"type": "row", "title": "Costs", "collapsed": true, "panels": [
                {"type": "timeseries", "title": "Spend",
                 "targets": [
                     {"refId": "A", "expr": "sum(rate(cloudwarden_aws_api_calls_total[$__rate_interval])) * $__range_s"},
                     {"refId": "B", "expr": "max_over_time(cloudwarden_cost_usd{cost_type=\"[[cost_type]]\"}[$window])"},
                     {"refId": "C", "datasource": {"type": "__expr__"}, "expr": "$A + $B"},
                     {"refId": "D", "expr": ""},
                     {"refId": "E", "expr": "{__name__=\"$metric\"}"}
                 ]}
            ]},
            {"type": "row", "title": "Open row", "panels": []},
            {"type": "text", "title": "Notes"}
        ]
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sample.json"), serde_json::to_string_pretty(&sample).unwrap()).unwrap();
    std::fs::write(dir.path().join("README.md"), "not a dashboard").unwrap();
    let got = dashboard_queries(dir.path(), None).await;
    let q = |panel: &str, ref_id: &str, expr: &str| PanelQuery {
        dashboard: "sample.json".into(),
        panel: panel.into(),
        ref_id: ref_id.into(),
        expr: expr.into(),
    };
    assert_eq!(
        got,
        [
            q("Resources", "A", "sum(cloudwarden_resources{account=~\".*\", region=~\".*\"})"),
            q("Spend", "A", "sum(rate(cloudwarden_aws_api_calls_total[1m])) * 3600"),
            q("Spend", "B", "max_over_time(cloudwarden_cost_usd{cost_type=\"amortized\"}[6h])"),
            q("Spend", "E", "{__name__=\"\u{0}choice:metrics(aws_.*)\"}"),
        ]
    );
    assert!(dashboard_queries(&dir.path().join("none"), None).await.is_empty());
    // Unknown names and lone dollars stay as they are.
    let vars = dashboard_variables(&sample);
    assert_eq!(substitute("x{a=\"$nope\"} [5m] $ ${x", &vars), "x{a=\"$nope\"} [5m] $ ${x");
}

// ---------------------------------------------------------------------------------------------------------
// The scenario the seed creates, as the test's rule file and its expectations.

/// The tagging scheme of the seed as a rule, and the (account, resource type) pairs whose compliance must be
/// below 0.9 (the alert's threshold), from the truth file.
fn tagging_rule(truth: &Value) -> (String, BTreeSet<(String, String)>) {
    let scheme = &truth["tag_scheme"];
    let list = |k: &str| -> Vec<String> {
        scheme[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    let (teams, envs) = (list("team"), list("env"));
    let domain = scheme["owner"].as_str().unwrap().strip_prefix("<name>@").expect("owner is <name>@domain");
    let quoted = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let rule = format!(
        "[[tagging]]\nname = \"team-env-owner\"\nrequired_keys = [\"team\", \"env\", \"owner\"]\n\n\
         [tagging.allowed_values]\nteam = [{}]\nenv = [{}]\n\n[tagging.allowed_patterns]\nowner = \"[a-z]+@{}\"\n",
        quoted(&teams),
        quoted(&envs),
        domain.replace('.', "\\\\.")
    );
    let owner_ok = |o: &str| {
        o.strip_suffix(&format!("@{domain}"))
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase()))
    };
    let mut groups: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for r in truth["resources"].as_array().unwrap() {
        let tag = |k: &str| r["tags"][k].as_str();
        let compliant = tag("team").is_some_and(|t| teams.iter().any(|x| x == t))
            && tag("env").is_some_and(|e| envs.iter().any(|x| x == e))
            && tag("owner").is_some_and(owner_ok);
        // The rule encodes the seed's scheme: compliant exactly when the seed planned the tags as valid.
        assert_eq!(compliant, r["tag_case"] == "valid", "{r}");
        let key = (r["account"].as_str().unwrap().to_string(), r["resource_type"].as_str().unwrap().to_string());
        let g = groups.entry(key).or_default();
        g.0 += 1;
        g.1 += usize::from(compliant);
    }
    let low = groups.into_iter().filter(|(_, (n, ok))| (*ok as f64) < 0.9 * *n as f64).map(|(k, _)| k).collect();
    (rule, low)
}

/// The amount of the budget whose forecast must exceed it while its spend so far does not: the seed's
/// `demo-monthly-tight` when that holds with a margin in the daemon's view, else an amount between the two.
///
/// The daemon reads Cost Explorer's amortized cost and forecasts with a weekday profile; the seed's figures
/// are unblended and its forecast is month to date plus the mean of the last seven days (the seed's spike
/// included). Late in a month the seed's amount is below the spend so far, early in one barely below the
/// daemon's forecast: then the amount is the amortized month to date plus a third of the median recent day
/// for each day left (today included), below any forecast (a weekend day costs at least 0.66 of a weekday).
fn tight_budget_amount(truth: &Value, seed_amount: f64) -> f64 {
    use chrono::Datelike;
    let today = chrono::Utc::now().date_naive();
    let month_start = today.with_day(1).unwrap();
    let days: Vec<(chrono::NaiveDate, f64)> = truth["billing"]["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let day = chrono::NaiveDate::parse_from_str(d["date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
            (day, d["total"]["AmortizedCost"].as_f64().unwrap())
        })
        .collect();
    let spent: f64 = days.iter().filter(|(d, _)| *d >= month_start).map(|(_, v)| v).sum();
    let mut recent: Vec<f64> = days.iter().rev().take(7).map(|(_, v)| *v).collect();
    recent.sort_by(f64::total_cmp);
    let median = recent[recent.len() / 2];
    let next_month = if today.month() == 12 {
        chrono::NaiveDate::from_ymd_opt(today.year() + 1, 1, 1)
    } else {
        chrono::NaiveDate::from_ymd_opt(today.year(), today.month() + 1, 1)
    }
    .unwrap();
    let left = (next_month - today).num_days() as f64;
    if spent <= 0.95 * seed_amount && spent + 0.7 * median * left >= 1.03 * seed_amount {
        return seed_amount;
    }
    let amount = (spent + median * left / 3.0).floor();
    eprintln!(
        "the seed's demo-monthly-tight ({seed_amount}) is too close to the amortized spend so far ({spent:.2}) or to \
         the forecast ({left} days left at about {median:.2}): the budget is {amount} instead"
    );
    amount
}

/// An alert in Prometheus' `/api/v1/alerts` or Alertmanager's webhook payload: its labels and state.
fn labels(alert: &Value) -> BTreeMap<String, String> {
    alert["labels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default()
}

fn describe(alerts: &[Value]) -> String {
    let mut lines: Vec<String> = alerts
        .iter()
        .map(|a| {
            let l = labels(a);
            let rest: Vec<String> =
                l.iter().filter(|(k, _)| *k != "alertname").map(|(k, v)| format!("{k}={v:?}")).collect();
            format!(
                "  {} {} {{{}}}",
                a["state"].as_str().or(a["status"].as_str()).unwrap_or("?"),
                l["alertname"],
                rest.join(", ")
            )
        })
        .collect();
    lines.sort();
    if lines.is_empty() {
        "  (none)".to_string()
    } else {
        lines.join("\n")
    }
}

/// What one expected alert must carry.
#[derive(Debug)]
struct Expected {
    alertname: &'static str,
    labels: BTreeMap<&'static str, String>,
}

impl Expected {
    fn matches(&self, alert: &Value) -> bool {
        let l = labels(alert);
        l.get("alertname").map(String::as_str) == Some(self.alertname)
            && self.labels.iter().all(|(k, v)| l.get(*k) == Some(v))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Data the seed does not write, added by this test: CloudWatch `NetworkOut`, log events, billing exports.

/// Puts into moto what the dashboards show beyond the seed: `AWS/EC2` `NetworkOut` for every instance the seed
/// wrote CPU for (a point every 5 minutes over the last hour, inside the discovery window), and a log stream
/// of `log_group` in (`account`, `region`) with events from the last minutes, some matching `ERROR`.
fn put_testbed_data(moto: &Moto, truth_path: &Path, (account, region, log_group): (&str, &str, &str)) {
    let script = r#"
import boto3, datetime, json, sys
endpoint, truth_path, account, region, log_group = sys.argv[1:6]
truth = json.load(open(truth_path))
keys = dict(aws_access_key_id="testing", aws_secret_access_key="testing")
sts = boto3.client("sts", region_name="us-east-1", endpoint_url=endpoint, **keys)
creds = {}
for a in truth["accounts"]:
    c = keys
    if a["role_arn"]:
        r = sts.assume_role(RoleArn=a["role_arn"], RoleSessionName="cloudwarden-e2e")["Credentials"]
        c = dict(aws_access_key_id=r["AccessKeyId"], aws_secret_access_key=r["SecretAccessKey"],
                 aws_session_token=r["SessionToken"])
    creds[a["id"]] = creds[a["name"]] = c
def client(service, account, region):
    return boto3.client(service, region_name=region, endpoint_url=endpoint, **creds[account])
now = datetime.datetime.now(datetime.timezone.utc)
end = now.replace(second=0, microsecond=0)
end -= datetime.timedelta(minutes=end.minute % 5)
for i, s in enumerate(truth["cloudwatch"]["series"]):
    data = [dict(MetricName="NetworkOut", Dimensions=[dict(Name="InstanceId", Value=s["instance_id"])],
                 Timestamp=end - datetime.timedelta(minutes=5 * k), Value=250000.0 * (i + 1) + 1000 * k,
                 Unit="Bytes")
            for k in range(1, 12)]
    client("cloudwatch", s["account"], s["region"]).put_metric_data(Namespace="AWS/EC2", MetricData=data)
logs = client("logs", account, region)
logs.create_log_stream(logGroupName=log_group, logStreamName="app-1")
ms = lambda minutes: int((now - datetime.timedelta(minutes=minutes)).timestamp() * 1000)
events = [(10, "ERROR disk full on /var"), (9, "INFO request ok"), (8, "ERROR upstream timeout"),
          (5, "INFO request ok")]
logs.put_log_events(logGroupName=log_group, logStreamName="app-1",
                    logEvents=[dict(timestamp=ms(m), message=text) for m, text in events])
"#;
    let out = Command::new(repo_root().join(".venv/bin/python"))
        .arg("-c")
        .arg(script)
        .arg(moto.endpoint())
        .arg(truth_path)
        .args([account, region, log_group])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "putting NetworkOut and log events into moto failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// FOCUS 1.0 columns the billing collector reads.
const FOCUS_HEADER: &str = "ChargePeriodStart,BilledCost,EffectiveCost,ListCost,ProviderName,BillingAccountId,\
SubAccountId,ServiceName,ChargeCategory,BillingCurrency,ResourceId,RegionId,Tags";

/// A FOCUS 1.0 export of the last seven days and today: for each account of the truth file, its first EC2
/// instance and S3 bucket, with the resource's `team` tag when it has one.
fn focus_export(truth: &Value) -> String {
    let payer = truth["accounts"].as_array().unwrap().iter().find(|a| a["role_arn"].is_null()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resources = truth["resources"].as_array().unwrap();
    let mut rows = Vec::new();
    for account in truth["accounts"].as_array().unwrap() {
        let id = account["id"].as_str().unwrap();
        for (resource_type, service, daily) in [
            ("ec2:instance", "Amazon Elastic Compute Cloud", 2.4),
            ("s3:bucket", "Amazon Simple Storage Service", 0.35),
        ] {
            let Some(r) = resources.iter().find(|r| r["resource_type"] == resource_type && r["account"] == id) else {
                continue;
            };
            let tags = match r["tags"]["team"].as_str() {
                Some(team) => format!("\"{{\"\"team\"\": \"\"{team}\"\"}}\""),
                None => "NULL".to_string(),
            };
            let text = |v: &Value| v.as_str().unwrap().to_string();
            rows.push((id.to_string(), service, text(&r["id"]), text(&r["region"]), daily, tags));
        }
    }
    assert!(rows.len() >= 2, "the truth file has instances and buckets");
    let today = chrono::Utc::now().date_naive();
    let mut out = format!("{FOCUS_HEADER}\n");
    for back in 0..8u64 {
        let day = today - chrono::Days::new(back);
        for (account, service, resource, region, daily, tags) in &rows {
            out.push_str(&format!(
                "\"{day} 00:00:00\",{:.4},{:.4},{:.4},\"AWS\",\"{payer}\",\"{account}\",\"{service}\",\
                 \"Usage\",\"USD\",\"{resource}\",\"{region}\",{tags}\n",
                daily,
                daily * 0.9,
                daily * 1.2
            ));
        }
    }
    out
}

/// `cloudwarden run --config PATH` with test credentials and no AWS profile.
fn daemon_command(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloudwarden"));
    cmd.args(["run", "--config"])
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_turns_the_seeded_scenario_into_alerts_at_the_webhook() {
    if !tools_available("the_bundle_turns_the_seeded_scenario_into_alerts_at_the_webhook") {
        return;
    }
    let started = Instant::now();
    // Dropped last: every process below is killed before its files go.
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    moto.seed(0.1, dir.path());
    let truth: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("truth.json")).unwrap()).unwrap();
    let parsed: common::Truth = serde_json::from_value(truth.clone()).unwrap();

    // The seed's scenario, checked before anything relies on it.
    let budget = |name: &str| truth["budgets"].as_array().unwrap().iter().find(|b| b["name"] == name).unwrap().clone();
    let (tight, roomy) = (budget("demo-monthly-tight"), budget("demo-monthly-roomy"));
    assert_eq!((&tight["forecast_exceeds"], &roomy["forecast_exceeds"]), (&Value::Bool(true), &Value::Bool(false)));
    let tight_amount = tight_budget_amount(&truth, tight["amount"].as_f64().unwrap());
    let spike = &truth["billing"]["anomaly"];
    let spike_service = spike["service"].as_str().unwrap().to_string();
    let spike_day = chrono::NaiveDate::parse_from_str(spike["date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    let lookback_days = (chrono::Utc::now().date_naive() - spike_day).num_days() + 1;
    assert!((2..=90).contains(&lookback_days), "the spike of {spike_day} is not within a lookback");
    let (tagging, low_compliance) = tagging_rule(&truth);
    assert!(!low_compliance.is_empty());

    let rules = format!(
        "{tagging}\n[[budgets]]\nname = \"demo-monthly-tight\"\nperiod = \"month\"\namount_usd = {}\n\n\
         [[budgets]]\nname = \"demo-monthly-roomy\"\nperiod = \"month\"\namount_usd = {}\n\n\
         [cost_anomaly]\nseries = [\"total\", \"account\", \"service\"]\ntag_keys = [\"team\"]\nlookback_days = {lookback_days}\n",
        tight_amount, roomy["amount"],
    );
    let rules_path = dir.path().join("rules.toml");
    std::fs::write(&rules_path, &rules).unwrap();
    let db = format!("sqlite://{}", dir.path().join("cw.db").display());
    let base = parsed.config(&moto.endpoint(), &db, "interval_secs = 60");
    let listen = base.lines().find_map(|l| l.strip_prefix("listen = \"")).unwrap().trim_end_matches('"').to_string();
    let management = &parsed.accounts.iter().find(|a| a.role_arn.is_none()).unwrap().name;
    let tfstate = repo_root().join("tests/fixtures/tfstate/prod/*.tfstate");
    let log_group =
        truth["resources"].as_array().unwrap().iter().find(|r| r["resource_type"] == "logs:log-group").unwrap();
    let text = |v: &Value| v.as_str().unwrap().to_string();
    let (log_account, log_region, log_group) =
        (text(&log_group["account"]), text(&log_group["region"]), text(&log_group["id"]));
    put_testbed_data(&moto, &dir.path().join("truth.json"), (&log_account, &log_region, &log_group));
    let config = format!(
        "{base}\n[collectors.cost_explorer]\naccount = \"{management}\"\ninterval_secs = 3600\ntag_keys = [\"team\"]\n\n\
         [collectors.cloudwatch]\ninterval_secs = 60\n\n[[collectors.cloudwatch.discovery]]\nnamespace = \"AWS/EC2\"\n\
         resource_type = \"ec2:instance\"\ndimension = \"InstanceId\"\nmetrics = [\"CPUUtilization\", \"NetworkOut\"]\n\
         statistics = [\"Average\", \"Maximum\"]\nperiod_secs = 300\nlength_secs = 3600\ndelay_secs = 0\n\
         export_tags = [\"team\", \"env\"]\n\n\
         [collectors.logs]\ninterval_secs = 60\nlast_event_time = true\n\n[[collectors.logs.patterns]]\n\
         log_group = \"{log_group}\"\nname = \"errors\"\npattern = \"ERROR\"\n\n\
         [collectors.terraform]\nsources = [\"{}\"]\ninterval_secs = 600\n\n\
         [rules]\nfiles = [\"{}\"]\ninterval_secs = 30\n\n\
         [cleanup]\nmode = \"dry-run\"\ninterval_secs = 30\nallowed_accounts = [{}]\n\n\
         [reports.weekly]\n\n[reports.weekly.deliveries.archive]\nkind = \"directory\"\npath = \"{}\"\n",
        tfstate.display(),
        rules_path.display(),
        parsed.accounts.iter().map(|a| format!("\"{}\"", a.name)).collect::<Vec<_>>().join(", "),
        dir.path().join("reports").display()
    );
    // The seed queues Cost Explorer's answers by service and by account; the third request, by the `team`
    // tag, gets each day's total split over two team values and spend without the tag (`team$`).
    let tag_days: Vec<_> = truth["billing"]["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let (u, a) = (d["total"]["UnblendedCost"].as_f64().unwrap(), d["total"]["AmortizedCost"].as_f64().unwrap());
            let part =
                |key: &str, share: f64| (key.to_string(), format!("{:.4}", u * share), format!("{:.4}", a * share));
            (
                d["date"].as_str().unwrap().to_string(),
                vec![part("team$web", 0.5), part("team$data", 0.3), part("team$", 0.2)],
            )
        })
        .collect();
    common::moto_post(
        &moto.endpoint(),
        "/moto-api/static/ce/cost-and-usage-results",
        &serde_json::json!({"account_id": truth["billing"]["ce_queue"]["account"], "results": [common::ce_result("TAG", &tag_days, None)]}),
    )
    .await;
    let config_path = dir.path().join("cloudwarden.toml");
    std::fs::write(&config_path, &config).unwrap();

    // The webhook Alertmanager delivers to: every POST body, in order.
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let hook = {
        let received = received.clone();
        axum::Router::new().route(
            "/alerts",
            axum::routing::post(move |body: String| async move {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
                received.lock().unwrap().push(v);
                axum::http::StatusCode::OK
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_port = listener.local_addr().unwrap().port();
    let hook_task = tokio::spawn(async move { axum::serve(listener, hook).await });

    // Alertmanager: the repository's inhibition rules, everything routed to the webhook at once.
    let mut am_config: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join("dashboards/alertmanager/alertmanager.yml")).unwrap(),
    )
    .unwrap();
    am_config["route"] = serde_yaml::from_str(
        "{receiver: webhook, group_by: ['...'], group_wait: 1s, group_interval: 1s, repeat_interval: 1h}",
    )
    .unwrap();
    am_config["receivers"] = serde_yaml::from_str(&format!(
        "[{{name: webhook, webhook_configs: [{{url: 'http://127.0.0.1:{hook_port}/alerts', send_resolved: true}}]}}]"
    ))
    .unwrap();
    let am_config_path = dir.path().join("alertmanager.yml");
    std::fs::write(&am_config_path, serde_yaml::to_string(&am_config).unwrap()).unwrap();
    let am_port = free_port();
    std::fs::create_dir(dir.path().join("am")).unwrap();
    let mut alertmanager = Proc::spawn(
        "alertmanager",
        Command::new("prometheus-alertmanager")
            .arg("--cluster.listen-address=")
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg(format!("--storage.path={}", dir.path().join("am").display()))
            .arg(format!("--config.file={}", am_config_path.display())),
        dir.path(),
    );
    let am = format!("http://127.0.0.1:{am_port}");

    // The daemon.
    let mut daemon = Proc::spawn("cloudwarden", &mut daemon_command(&config_path), dir.path());
    let cw = format!("http://{listen}");

    // A second deployment for billing exports: billing rows of a day replace Cost Explorer's in the rules, so
    // they are loaded by a daemon of their own (its own database, no rules) that Prometheus scrapes in the
    // same job. Its exports: a FOCUS file of the last days, and one with a malformed row, which fails every
    // load (the billing failures panel).
    let exports = dir.path().join("billing");
    std::fs::create_dir(&exports).unwrap();
    std::fs::write(exports.join("focus.csv"), focus_export(&truth)).unwrap();
    std::fs::write(
        exports.join("malformed.csv"),
        format!("{FOCUS_HEADER}\n\"not a date\",1,1,1,\"AWS\",\"1\",\"1\",\"S\",\"Usage\",\"USD\",NULL,NULL,NULL\n"),
    )
    .unwrap();
    let billing_listen = format!("127.0.0.1:{}", free_port());
    let billing_config = format!(
        "[server]\nlisten = \"{billing_listen}\"\n\n[database]\nurl = \"sqlite://{}\"\ncreate_if_missing = true\n\n\
         [aws]\nendpoint_url = \"{}\"\n\n[[accounts]]\nname = \"{management}\"\n\n\
         [collectors.billing_files]\nsources = [\"{}\"]\ntag_keys = [\"team\"]\nresource_costs = true\ninterval_secs = 20\n",
        dir.path().join("billing.db").display(),
        moto.endpoint(),
        exports.join("*.csv").display()
    );
    let billing_config_path = dir.path().join("cloudwarden-billing.toml");
    std::fs::write(&billing_config_path, &billing_config).unwrap();
    let mut billing = Proc::spawn("cloudwarden-billing", &mut daemon_command(&billing_config_path), dir.path());
    let cwb = format!("http://{billing_listen}");

    // Prometheus: the example configuration with this test's addresses, short intervals and the repository's
    // rule files, unchanged.
    let prom_dir = repo_root().join("dashboards/prometheus");
    let mut prom_config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(prom_dir.join("prometheus.yml")).unwrap()).unwrap();
    for key in ["scrape_interval", "scrape_timeout", "evaluation_interval"] {
        prom_config["global"][key] = "2s".into();
    }
    let rule_files: Vec<serde_yaml::Value> = prom_config["rule_files"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| prom_dir.join(f.as_str().unwrap()).display().to_string().into())
        .collect();
    assert_eq!(rule_files.len(), 2, "the example loads alerts.yml and recording.yml");
    prom_config["rule_files"] = rule_files.into();
    prom_config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] =
        vec![format!("127.0.0.1:{am_port}")].into();
    let job = &mut prom_config["scrape_configs"][0];
    assert_eq!(job["job_name"], "cloudwarden", "the rules expect the job name cloudwarden");
    job["static_configs"][0]["targets"] = vec![listen.clone(), billing_listen.clone()].into();
    let prom_config_path = dir.path().join("prometheus.yml");
    std::fs::write(&prom_config_path, serde_yaml::to_string(&prom_config).unwrap()).unwrap();
    let prom_port = free_port();
    let mut prometheus = Proc::spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
        dir.path(),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");

    wait_ready(&format!("{am}/-/ready"), &mut alertmanager, 60).await;
    wait_ready(&format!("{prom}/-/ready"), &mut prometheus, 60).await;
    wait_ready(&format!("{cw}/readyz"), &mut daemon, 120).await;

    // The billing deployment has loaded its export (its runs are partial: the malformed file fails).
    let probe = async || {
        let body = get(&format!("{cwb}/metrics")).await.map(|(_, b)| b).unwrap_or_default();
        if body.contains("cloudwarden_billing_cost_usd{") && body.contains("cloudwarden_resource_cost_usd{") {
            Ok(())
        } else {
            Err(body)
        }
    };
    poll("the billing deployment exports no billing costs", &mut billing, 60, Duration::from_millis(500), probe).await;

    // The first evaluation with costs: every rules metric the alerts select is on /metrics.
    let probe = async || {
        let body = get(&format!("{cw}/metrics")).await.map(|(_, b)| b).unwrap_or_default();
        let has = |p: &str| body.lines().any(|l| l.starts_with(p));
        if has("cloudwarden_budget_forecast_ratio{budget=\"demo-monthly-tight\"}")
            && has("cloudwarden_cost_anomaly_score{")
            && has("cloudwarden_tag_compliance_ratio{")
            && has("aws_ec2_cpuutilization_average{")
            && has("aws_ec2_networkout_average{")
            && has("cloudwarden_log_pattern_matches_total{")
            && has("cloudwarden_log_group_last_event_timestamp_seconds{")
            && has("cloudwarden_drift_resources{")
        {
            Ok(body)
        } else {
            Err(body)
        }
    };
    let metrics =
        poll("the rules metrics never appeared on /metrics", &mut daemon, 180, Duration::from_millis(500), probe).await;
    eprintln!("[{:>4}s] daemon ready, rules evaluated", started.elapsed().as_secs());

    // (c) promtool check metrics, which reads the Prometheus text format, on both deployments' bodies in that
    // format.
    for base in [&cw, &cwb] {
        let (status, text) = get_accepting(&format!("{base}/metrics"), "text/plain; version=0.0.4").await.unwrap();
        assert_eq!(status, 200);
        let mut check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = check.wait_with_output().unwrap();
        let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let problems: Vec<&str> = report.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            out.status.success() && problems.is_empty(),
            "promtool check metrics on {base}/metrics ({}):\n{report}",
            out.status
        );
    }

    // The anomaly score the daemon exports for the spiking service: the alert needs it at 0.75 or more.
    let spike_score = metrics
        .lines()
        .find(|l| {
            l.starts_with(&format!("cloudwarden_cost_anomaly_score{{series_kind=\"service\",key=\"{spike_service}\"}}"))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());

    // Prometheus has scraped the evaluation and evaluated the recording rules on it.
    let probe = async || {
        let up = query_count(&prom, "up{job=\"cloudwarden\"} == 1").await.unwrap_or(0);
        let recorded = query_count(&prom, "budget:cloudwarden_budget_forecast_ratio:max").await.unwrap_or(0);
        let scraped = query_count(&prom, "cloudwarden_tag_compliance_ratio").await.unwrap_or(0);
        if up == 2 && recorded > 0 && scraped > 0 {
            Ok(())
        } else {
            Err(format!("targets up: {up}, recorded series: {recorded}, scraped compliance series: {scraped}"))
        }
    };
    poll("Prometheus does not scrape both deployments", &mut prometheus, 60, Duration::from_millis(500), probe).await;

    // (b) the alerts fire in Prometheus and reach the webhook.
    let mut expected = vec![Expected {
        alertname: "CloudwardenBudgetForecastExceeded",
        labels: BTreeMap::from([("budget", "demo-monthly-tight".to_string()), ("severity", "warning".to_string())]),
    }];
    for (account, resource_type) in &low_compliance {
        expected.push(Expected {
            alertname: "CloudwardenTagComplianceLow",
            labels: BTreeMap::from([
                ("account", account.clone()),
                ("resource_type", resource_type.clone()),
                ("severity", "warning".to_string()),
            ]),
        });
    }
    // The score metric shows a series' highest score over the lookback, so the spike (days back) is on it.
    assert!(
        spike_score.is_some_and(|s| s >= 0.75),
        "the spike of {spike_day} ({spike_service}) scores {spike_score:?} on cloudwarden_cost_anomaly_score:\n{metrics}"
    );
    expected.push(Expected {
        alertname: "CloudwardenCostAnomaly",
        labels: BTreeMap::from([
            ("series_kind", "service".to_string()),
            ("key", spike_service.clone()),
            ("severity", "warning".to_string()),
        ]),
    });

    let deadline = Instant::now() + ALERT_DEADLINE;
    let mut last_report = Instant::now();
    let (firing, delivered) = loop {
        let alerts: Vec<Value> = prom_api(&prom, "alerts")
            .await
            .map(|d| d["alerts"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default();
        let firing: Vec<Value> = alerts.iter().filter(|a| a["state"] == "firing").cloned().collect();
        let delivered: Vec<Value> = received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|p| p["alerts"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["status"] == "firing")
            .collect();
        let missing: Vec<&Expected> = expected
            .iter()
            .filter(|e| !firing.iter().any(|a| e.matches(a)) || !delivered.iter().any(|a| e.matches(a)))
            .collect();
        if missing.is_empty() {
            break (firing, delivered);
        }
        daemon.assert_running();
        billing.assert_running();
        prometheus.assert_running();
        alertmanager.assert_running();
        if last_report.elapsed() > Duration::from_secs(60) {
            last_report = Instant::now();
            eprintln!(
                "[{:>4}s] waiting for {} alert(s); in Prometheus:\n{}",
                started.elapsed().as_secs(),
                missing.len(),
                describe(&alerts)
            );
        }
        assert!(
            Instant::now() < deadline,
            "alerts not firing and delivered after {} s: {missing:#?}\nin Prometheus:\n{}\nat the webhook:\n{}\n{}\n{}",
            ALERT_DEADLINE.as_secs(),
            describe(&alerts),
            describe(&delivered),
            daemon.tail(),
            prometheus.tail()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    eprintln!("[{:>4}s] alerts firing and delivered:\n{}", started.elapsed().as_secs(), describe(&firing));

    // Exactly the expected tag compliance alerts, the forecast alert for the tight budget only, no alert
    // about spend so far (pending included), and what reached the webhook carries Prometheus' labels.
    let alerts: Vec<Value> = prom_api(&prom, "alerts").await.unwrap()["alerts"].as_array().cloned().unwrap();
    let named = |name: &str| -> Vec<BTreeMap<String, String>> {
        alerts.iter().filter(|a| a["labels"]["alertname"] == name).map(labels).collect()
    };
    let compliance: BTreeSet<(String, String)> = named("CloudwardenTagComplianceLow")
        .iter()
        .map(|l| (l["account"].clone(), l["resource_type"].clone()))
        .collect();
    assert_eq!(compliance, low_compliance, "tag compliance alerts vs the truth's groups below 90 %");
    let forecast: Vec<String> =
        named("CloudwardenBudgetForecastExceeded").iter().map(|l| l["budget"].clone()).collect();
    assert_eq!(forecast, ["demo-monthly-tight"], "{}", describe(&alerts));
    assert!(
        named("CloudwardenBudgetExceeded").is_empty(),
        "spend so far is below both budgets:\n{}",
        describe(&alerts)
    );
    for a in firing.iter().filter(|a| expected.iter().any(|e| e.matches(a))) {
        let want = labels(a);
        let at_hook = delivered.iter().find(|d| want.iter().all(|(k, v)| labels(d).get(k) == Some(v)));
        let at_hook =
            at_hook.unwrap_or_else(|| panic!("{want:?} firing but not at the webhook:\n{}", describe(&delivered)));
        for key in ["summary", "description", "runbook_url"] {
            assert!(at_hook["annotations"][key].as_str().is_some_and(|s| !s.is_empty()), "{key} of {at_hook}");
        }
    }

    // (a) every dashboard query, now that Prometheus holds minutes of samples (rates and increases over
    // them have values): each succeeds and returns at least one series.
    let dir = dashboards_dir();
    let queries = dashboard_queries(&dir, Some(&prom)).await;
    let mut failures = Vec::new();
    for q in &queries {
        let where_ = format!("{} / {} / {}", q.dashboard, q.panel, q.ref_id);
        match query_count(&prom, &q.expr).await {
            Ok(0) => failures.push(format!("{where_}: no series: {}", q.expr)),
            Ok(_) => {}
            Err(e) => failures.push(format!("{where_}: {e}: {}", q.expr)),
        }
    }
    if queries.is_empty() {
        eprintln!("no dashboard in {}: no panel query checked", dir.display());
    } else {
        eprintln!(
            "[{:>4}s] {} panel queries of {} checked, {} failed",
            started.elapsed().as_secs(),
            queries.len(),
            dir.display(),
            failures.len()
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} panel queries failed:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );

    hook_task.abort();
    eprintln!("[{:>4}s] done", started.elapsed().as_secs());
    drop((daemon, billing, prometheus, alertmanager, moto));
}
