//! From the file's sections to [`Config`], collecting every error with its line and field path.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use collector::aws::cloudwatch::label_name;
use collector::aws::inventory::InventorySettings;
use collector::{AccountSpec, AwsSettings};
use rules::anomaly::metric::detector::DEFAULT_THRESHOLD;
use rules::located::{self, Step};
use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use super::schema::*;
use super::{ApiConfig, Config, ConfigError, ConfigErrors, DatabaseConfig, Job, Schedule};
use crate::jobs::cloudwatch::{AnomalySettings, Discovery, Static};
use crate::jobs::logs::Pattern;
use crate::jobs::rules::{read_rule_files, RuleSource, RulesProblem};
use crate::jobs::{
    BillingFilesSettings, CloudWatchSettings, CostExplorerSettings, LogsSettings, RulesSettings, TerraformSettings,
};

/// AWS's commercial, China and GovCloud regions.
pub const KNOWN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

/// One step of a field path.
#[derive(Debug, Clone)]
enum Seg {
    Key(&'static str),
    Index(usize),
}

impl Seg {
    fn step(&self) -> Step<'_> {
        match self {
            Seg::Key(k) => Step::Key(k),
            Seg::Index(i) => Step::Index(*i),
        }
    }
}

fn render(path: &[Seg]) -> String {
    located::render(path.iter().map(Seg::step))
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    doc: &'a DeTable<'a>,
    errors: Vec<ConfigError>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        located::line_of(self.text, offset)
    }

    /// The span of the value at `path`, or of its nearest parent present in the file.
    fn span(&self, path: &[Seg]) -> Option<Range<usize>> {
        located::span_of(self.doc, path.iter().map(Seg::step))
    }

    fn error(&mut self, path: &[Seg], message: impl Into<String>) {
        let line = self.span(path).map(|s| self.line_of(s.start));
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            path: render(path),
            message: message.into(),
        });
    }

    /// Deserializes one top-level section, recording its error (with the path inside the section).
    fn section<T: DeserializeOwned>(&mut self, key: &'static str, value: &Spanned<DeValue<'_>>) -> Option<T> {
        match located::deserialize_section(key, value) {
            Ok(v) => Some(v),
            Err(e) => {
                let line = Some(self.line_of(e.span.start));
                self.errors.push(ConfigError { file: self.file.to_string(), line, path: e.path, message: e.message });
                None
            }
        }
    }

    /// Replaces `${VAR}` with the environment variable VAR; a missing variable is an error at `path`.
    fn expand(&mut self, path: &[Seg], value: &str) -> String {
        let mut out = String::new();
        let mut rest = value;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(len) = rest[start + 2..].find('}') else {
                self.error(path, "unterminated ${ in value");
                return out;
            };
            let name = &rest[start + 2..start + 2 + len];
            match (self.env)(name) {
                Some(v) => out.push_str(&v),
                None => self.error(path, format!("environment variable {name} is not set")),
            }
            rest = &rest[start + 3 + len..];
        }
        out.push_str(rest);
        out
    }
}

/// Validates `text`; relative rule file paths are joined to `base`, and the rule files are read.
pub fn parse(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    base: &Path,
) -> Result<Config, ConfigErrors> {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    let line_of = |o: usize| located::line_of(text, o);
    if !syntax.is_empty() {
        return Err(ConfigErrors(
            syntax
                .iter()
                .map(|e| ConfigError {
                    file: file.to_string(),
                    line: e.span().map(|s| line_of(s.start)),
                    path: String::new(),
                    message: e.message().trim().to_string(),
                })
                .collect(),
        ));
    }
    let doc = doc.into_inner();
    let mut cx = Ctx { file, text, doc: &doc, errors: Vec::new(), env };

    let (mut server, mut database, mut log, mut aws) =
        (ServerSection::default(), DatabaseSection::default(), LogSection::default(), AwsSection::default());
    let mut accounts: Vec<AccountEntry> = Vec::new();
    let mut collectors = CollectorsSection::default();
    let mut rules: Option<RulesSection> = None;
    let mut api = ApiSection::default();
    for (key, value) in doc.iter() {
        match key.get_ref().as_ref() {
            "server" => server = cx.section("server", value).unwrap_or_default(),
            "database" => database = cx.section("database", value).unwrap_or_default(),
            "log" => log = cx.section("log", value).unwrap_or_default(),
            "aws" => aws = cx.section("aws", value).unwrap_or_default(),
            "accounts" => accounts = cx.section("accounts", value).unwrap_or_default(),
            "collectors" => collectors = cx.section("collectors", value).unwrap_or_default(),
            "rules" => rules = cx.section("rules", value),
            "api" => api = cx.section("api", value).unwrap_or_default(),
            other => {
                let line = line_of(key.span().start);
                cx.errors.push(ConfigError {
                    file: file.to_string(),
                    line: Some(line),
                    path: other.to_string(),
                    message: format!(
                        "unknown section `{other}`, expected one of `server`, `database`, `log`, `aws`, `accounts`, `collectors`, `rules`, `api`"
                    ),
                });
            }
        }
    }

    let listen = match SocketAddr::from_str(&server.listen) {
        Ok(a) => Some(a),
        Err(_) => {
            cx.error(&[Seg::Key("server"), Seg::Key("listen")], format!("not an address:port: {:?}", server.listen));
            None
        }
    };

    let db_path = [Seg::Key("database"), Seg::Key("url")];
    let url = cx.expand(&db_path, &database.url);
    if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        cx.error(&db_path, "expected a sqlite://PATH or postgres://... URL");
    }
    if database.max_connections == 0 {
        cx.error(&[Seg::Key("database"), Seg::Key("max_connections")], "must be at least 1");
    }

    let endpoint_url = aws.endpoint_url.as_deref().map(|u| cx.expand(&[Seg::Key("aws"), Seg::Key("endpoint_url")], u));
    if let Some(u) = &endpoint_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            cx.error(
                &[Seg::Key("aws"), Seg::Key("endpoint_url")],
                format!("expected an http:// or https:// URL, got {u:?}"),
            );
        }
    }
    if !(1..=10).contains(&aws.max_attempts) {
        cx.error(&[Seg::Key("aws"), Seg::Key("max_attempts")], "must be between 1 and 10");
    }
    if aws.call_timeout_secs == 0 {
        cx.error(&[Seg::Key("aws"), Seg::Key("call_timeout_secs")], "must be at least 1");
    }
    at_most(
        &mut cx,
        &[Seg::Key("aws"), Seg::Key("call_timeout_secs")],
        aws.call_timeout_secs.into(),
        MAX_CALL_TIMEOUT_SECS,
        false,
    );
    if aws.initial_backoff_ms == 0 || aws.initial_backoff_ms > aws.max_backoff_ms {
        cx.error(&[Seg::Key("aws"), Seg::Key("initial_backoff_ms")], "must be at least 1 and at most max_backoff_ms");
    }
    at_most(&mut cx, &[Seg::Key("aws"), Seg::Key("max_backoff_ms")], aws.max_backoff_ms.into(), MAX_BACKOFF_SECS, true);
    if aws.connect_timeout_secs == 0 {
        cx.error(&[Seg::Key("aws"), Seg::Key("connect_timeout_secs")], "must be at least 1");
    }
    at_most(
        &mut cx,
        &[Seg::Key("aws"), Seg::Key("connect_timeout_secs")],
        aws.connect_timeout_secs.into(),
        MAX_CONNECT_TIMEOUT_SECS,
        false,
    );

    let mut specs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, a) in accounts.iter().enumerate() {
        let at = |k| [Seg::Key("accounts"), Seg::Index(i), Seg::Key(k)];
        if a.name.trim().is_empty() {
            cx.error(&at("name"), "must not be empty");
        } else if !names.insert(a.name.clone()) {
            cx.error(&at("name"), format!("duplicate account name {:?}", a.name));
        }
        if let Some(role) = &a.role_arn {
            if !is_role_arn(role) {
                cx.error(
                    &at("role_arn"),
                    format!("not an IAM role ARN (arn:aws:iam::123456789012:role/Name): {role:?}"),
                );
            }
        }
        let external_id = a.external_id.as_deref().map(|e| cx.expand(&at("external_id"), e));
        specs.push(AccountSpec { name: a.name.clone(), role_arn: a.role_arn.clone(), external_id });
    }
    if specs.is_empty() {
        specs.push(AccountSpec { name: "default".into(), role_arn: None, external_id: None });
    }

    let inventory = collectors.inventory.as_ref().and_then(|inv| {
        let at = |k| [Seg::Key("collectors"), Seg::Key("inventory"), Seg::Key(k)];
        if inv.regions.is_empty() {
            cx.error(&at("regions"), "must name at least one region");
        }
        let mut seen = BTreeSet::new();
        for (i, r) in inv.regions.iter().enumerate() {
            let path = [Seg::Key("collectors"), Seg::Key("inventory"), Seg::Key("regions"), Seg::Index(i)];
            if !KNOWN_REGIONS.contains(&r.as_str()) {
                cx.error(&path, format!("unknown region {r:?}"));
            } else if !seen.insert(r) {
                cx.error(&path, format!("region {r:?} is listed twice"));
            }
        }
        if let Some(p) = inv.page_size {
            if !(1..=1000).contains(&p) {
                cx.error(&at("page_size"), "must be between 1 and 1000");
            }
        }
        if !(1..=64).contains(&inv.max_concurrency) {
            cx.error(&at("max_concurrency"), "must be between 1 and 64");
        }
        let schedule = schedule(&mut cx, "inventory", inv.interval_secs, inv.cron.as_deref());
        let settings = InventorySettings {
            regions: inv.regions.clone(),
            page_size: inv.page_size,
            max_concurrency: inv.max_concurrency,
        };
        match (inv.enabled, schedule) {
            (true, Some(schedule)) => Some(Job { schedule, settings }),
            _ => None,
        }
    });

    let cost_explorer = collectors.cost_explorer.as_ref().and_then(|ce| {
        let at = |k| [Seg::Key("collectors"), Seg::Key("cost_explorer"), Seg::Key(k)];
        let account = match &ce.account {
            Some(name) if !specs.iter().any(|a| &a.name == name) => {
                cx.error(&at("account"), format!("no [[accounts]] entry is named {name:?}"));
                None
            }
            Some(name) => Some(name.clone()),
            None => specs.first().map(|a| a.name.clone()),
        };
        if !(1..=400).contains(&ce.lookback_days) {
            cx.error(&at("lookback_days"), "must be between 1 and 400 (Cost Explorer keeps about 13 months)");
        }
        if ce.open_days > 60 {
            cx.error(&at("open_days"), "must be at most 60");
        }
        for (i, k) in ce.tag_keys.iter().enumerate() {
            if k.trim().is_empty() {
                cx.error(
                    &[Seg::Key("collectors"), Seg::Key("cost_explorer"), Seg::Key("tag_keys"), Seg::Index(i)],
                    "must not be empty",
                );
            }
        }
        if let Some(m) = ce.min_interval_secs {
            at_most(&mut cx, &at("min_interval_secs"), m.into(), MAX_INTERVAL_SECS, false);
        }
        let interval = ce.interval_secs.or(if ce.cron.is_none() { Some(21600) } else { None });
        let schedule = schedule(&mut cx, "cost_explorer", interval, ce.cron.as_deref());
        let min_interval = Duration::from_secs(ce.min_interval_secs.or(ce.interval_secs).unwrap_or(21600));
        match (ce.enabled, schedule, account) {
            (true, Some(schedule), Some(account)) => Some(Job {
                schedule,
                settings: CostExplorerSettings {
                    account,
                    lookback_days: ce.lookback_days,
                    open_days: ce.open_days,
                    tag_keys: ce.tag_keys.clone(),
                    min_interval,
                },
            }),
            _ => None,
        }
    });

    let cloudwatch = collectors.cloudwatch.as_ref().and_then(|cw| {
        let regions = if cw.regions.is_empty() {
            inventory.as_ref().map(|j| j.settings.regions.clone()).unwrap_or_default()
        } else {
            cw.regions.clone()
        };
        if regions.is_empty() {
            cx.error(
                &[Seg::Key("collectors"), Seg::Key("cloudwatch"), Seg::Key("regions")],
                "name at least one region (or configure the inventory's)",
            );
        }
        for (i, r) in cw.regions.iter().enumerate() {
            if !KNOWN_REGIONS.contains(&r.as_str()) {
                cx.error(
                    &[Seg::Key("collectors"), Seg::Key("cloudwatch"), Seg::Key("regions"), Seg::Index(i)],
                    format!("unknown region {r:?}"),
                );
            }
        }
        let mut discovery = Vec::new();
        for (i, j) in cw.discovery.iter().enumerate() {
            let at =
                |k| [Seg::Key("collectors"), Seg::Key("cloudwatch"), Seg::Key("discovery"), Seg::Index(i), Seg::Key(k)];
            metric_job(
                &mut cx,
                &at,
                &j.namespace,
                &j.metrics,
                &j.statistics,
                j.period_secs,
                j.length_secs,
                j.delay_secs,
            );
            if !j.resource_type.contains(':') {
                cx.error(
                    &at("resource_type"),
                    format!("expected service:type, e.g. ec2:instance, got {:?}", j.resource_type),
                );
            }
            if j.dimension.trim().is_empty() {
                cx.error(&at("dimension"), "must name the dimension that carries the resource id");
            }
            // Each exported tag is a `tag_<key>` label: two keys must not become one label.
            let mut labels: BTreeMap<String, &str> = BTreeMap::new();
            for (k, key) in j.export_tags.iter().enumerate() {
                let path = [
                    Seg::Key("collectors"),
                    Seg::Key("cloudwatch"),
                    Seg::Key("discovery"),
                    Seg::Index(i),
                    Seg::Key("export_tags"),
                    Seg::Index(k),
                ];
                let label = label_name("tag_", key);
                match labels.get(&label) {
                    Some(first) if first == key => cx.error(&path, format!("tag key {key:?} is listed twice")),
                    Some(first) => cx.error(
                        &path,
                        format!("tag keys {first:?} and {key:?} both become the label {label}: export one of them"),
                    ),
                    None => {
                        labels.insert(label, key);
                    }
                }
            }
            let anomaly =
                j.anomaly.as_ref().map(|a| anomaly_entry(&mut cx, "discovery", i, a, &j.metrics, &j.statistics));
            discovery.push(Discovery {
                namespace: j.namespace.clone(),
                resource_type: j.resource_type.clone(),
                dimension: j.dimension.clone(),
                metrics: j.metrics.clone(),
                statistics: j.statistics.clone(),
                period_secs: j.period_secs,
                length_secs: j.length_secs.unwrap_or(j.period_secs as i64),
                delay_secs: j.delay_secs,
                tag_selectors: j.tag_selectors.clone(),
                export_tags: j.export_tags.clone(),
                anomaly,
            });
        }
        let mut statics = Vec::new();
        for (i, j) in cw.static_jobs.iter().enumerate() {
            let at =
                |k| [Seg::Key("collectors"), Seg::Key("cloudwatch"), Seg::Key("static"), Seg::Index(i), Seg::Key(k)];
            metric_job(
                &mut cx,
                &at,
                &j.namespace,
                &j.metrics,
                &j.statistics,
                j.period_secs,
                j.length_secs,
                j.delay_secs,
            );
            // Each dimension is a `dimension_<name>` label: two names must not become one label.
            let mut labels: BTreeMap<String, &str> = BTreeMap::new();
            for name in j.dimensions.keys() {
                let label = label_name("dimension_", name);
                match labels.get(&label) {
                    Some(first) => cx.error(
                        &at("dimensions"),
                        format!("dimensions {first:?} and {name:?} both become the label {label}"),
                    ),
                    None => {
                        labels.insert(label, name);
                    }
                }
            }
            let anomaly = j.anomaly.as_ref().map(|a| anomaly_entry(&mut cx, "static", i, a, &j.metrics, &j.statistics));
            statics.push(Static {
                namespace: j.namespace.clone(),
                dimensions: j.dimensions.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                metrics: j.metrics.clone(),
                statistics: j.statistics.clone(),
                period_secs: j.period_secs,
                length_secs: j.length_secs.unwrap_or(j.period_secs as i64),
                delay_secs: j.delay_secs,
                anomaly,
            });
        }
        if cw.max_anomaly_series == 0 {
            cx.error(
                &[Seg::Key("collectors"), Seg::Key("cloudwatch"), Seg::Key("max_anomaly_series")],
                "must be at least 1",
            );
        }
        let interval = cw.interval_secs.or(if cw.cron.is_none() { Some(300) } else { None });
        let schedule = schedule(&mut cx, "cloudwatch", interval, cw.cron.as_deref());
        match (cw.enabled, schedule) {
            (true, Some(schedule)) => Some(Job {
                schedule,
                settings: CloudWatchSettings {
                    regions,
                    discovery,
                    statics,
                    max_concurrency: 4,
                    max_anomaly_series: cw.max_anomaly_series,
                },
            }),
            _ => None,
        }
    });

    let logs = collectors.logs.as_ref().and_then(|l| {
        let mut names = BTreeSet::new();
        let mut patterns = Vec::new();
        for (i, p) in l.patterns.iter().enumerate() {
            let at = |k| [Seg::Key("collectors"), Seg::Key("logs"), Seg::Key("patterns"), Seg::Index(i), Seg::Key(k)];
            if p.log_group.trim().is_empty() {
                cx.error(&at("log_group"), "must not be empty");
            }
            if p.name.trim().is_empty() {
                cx.error(&at("name"), "must not be empty");
            } else if !names.insert((p.log_group.clone(), p.name.clone())) {
                cx.error(&at("name"), format!("log group {:?} already has a pattern named {:?}", p.log_group, p.name));
            }
            if p.pattern.trim().is_empty() {
                cx.error(&at("pattern"), "must not be empty (an empty pattern matches every event)");
            }
            patterns.push(Pattern { log_group: p.log_group.clone(), name: p.name.clone(), filter: p.pattern.clone() });
        }
        let at = |k| [Seg::Key("collectors"), Seg::Key("logs"), Seg::Key(k)];
        at_most(&mut cx, &at("delay_secs"), l.delay_secs.into(), MAX_DELAY_SECS, false);
        at_most(&mut cx, &at("initial_lookback_secs"), l.initial_lookback_secs.into(), MAX_LOOKBACK_SECS, false);
        let interval = l.interval_secs.or(if l.cron.is_none() { Some(300) } else { None });
        let schedule = schedule(&mut cx, "logs", interval, l.cron.as_deref());
        match (l.enabled, schedule) {
            (true, Some(schedule)) => Some(Job {
                schedule,
                settings: LogsSettings {
                    patterns,
                    delay: Duration::from_secs(l.delay_secs),
                    initial_lookback: Duration::from_secs(l.initial_lookback_secs),
                    last_event_time: l.last_event_time,
                },
            }),
            _ => None,
        }
    });

    let home =
        inventory.as_ref().and_then(|j| j.settings.regions.first().cloned()).unwrap_or_else(|| "us-east-1".into());
    let terraform = collectors.terraform.as_ref().and_then(|t| {
        let at = |k| [Seg::Key("collectors"), Seg::Key("terraform"), Seg::Key(k)];
        if t.sources.is_empty() {
            cx.error(&at("sources"), "must name at least one state file, glob or s3:// location");
        }
        let mut sources = Vec::new();
        for (i, src) in t.sources.iter().enumerate() {
            match collector::terraform::StateSource::parse(src) {
                Ok(s) => sources.push(s),
                Err(e) => cx.error(
                    &[Seg::Key("collectors"), Seg::Key("terraform"), Seg::Key("sources"), Seg::Index(i)],
                    e.to_string(),
                ),
            }
        }
        let account = match &t.account {
            Some(name) if !specs.iter().any(|a| &a.name == name) => {
                cx.error(&at("account"), format!("no [[accounts]] entry is named {name:?}"));
                None
            }
            Some(name) => Some(name.clone()),
            None => specs.first().map(|a| a.name.clone()),
        };
        for key in ["region", "default_region"] {
            let v = if key == "region" { &t.region } else { &t.default_region };
            if let Some(r) = v {
                if !KNOWN_REGIONS.contains(&r.as_str()) {
                    cx.error(&at(key), format!("unknown region {r:?}"));
                }
            }
        }
        let region = t.region.clone().unwrap_or_else(|| home.clone());
        let interval = t.interval_secs.or(if t.cron.is_none() { Some(900) } else { None });
        let schedule = schedule(&mut cx, "terraform", interval, t.cron.as_deref());
        match (t.enabled, schedule, account) {
            (true, Some(schedule), Some(account)) => Some(Job {
                schedule,
                settings: TerraformSettings {
                    sources,
                    account,
                    default_region: t.default_region.clone().unwrap_or_else(|| region.clone()),
                    region,
                },
            }),
            _ => None,
        }
    });

    let billing_files = collectors.billing_files.as_ref().and_then(|b| {
        let at = |k| [Seg::Key("collectors"), Seg::Key("billing_files"), Seg::Key(k)];
        if b.sources.is_empty() {
            cx.error(&at("sources"), "must name at least one file, directory, glob or s3:// location");
        }
        let mut sources = Vec::new();
        for (i, src) in b.sources.iter().enumerate() {
            match collector::billing::BillingSource::parse(src) {
                Ok(s) => sources.push(s),
                Err(e) => cx.error(
                    &[Seg::Key("collectors"), Seg::Key("billing_files"), Seg::Key("sources"), Seg::Index(i)],
                    e.to_string(),
                ),
            }
        }
        let account = match &b.account {
            Some(name) if !specs.iter().any(|a| &a.name == name) => {
                cx.error(&at("account"), format!("no [[accounts]] entry is named {name:?}"));
                None
            }
            Some(name) => Some(name.clone()),
            None => specs.first().map(|a| a.name.clone()),
        };
        if let Some(r) = &b.region {
            if !KNOWN_REGIONS.contains(&r.as_str()) {
                cx.error(&at("region"), format!("unknown region {r:?}"));
            }
        }
        let mut seen = BTreeSet::new();
        for (i, key) in b.tag_keys.iter().enumerate() {
            let at = [Seg::Key("collectors"), Seg::Key("billing_files"), Seg::Key("tag_keys"), Seg::Index(i)];
            if key.trim().is_empty() {
                cx.error(&at, "must not be empty");
            } else if !seen.insert(key.as_str()) {
                cx.error(&at, format!("tag key {key:?} is listed twice"));
            }
        }
        if b.resource_costs && b.max_resource_series == 0 {
            cx.error(&at("max_resource_series"), "must be at least 1 when resource_costs is on");
        }
        let region = b.region.clone().unwrap_or_else(|| home.clone());
        let interval = b.interval_secs.or(if b.cron.is_none() { Some(3600) } else { None });
        let schedule = schedule(&mut cx, "billing_files", interval, b.cron.as_deref());
        match (b.enabled, schedule, account) {
            (true, Some(schedule), Some(account)) => Some(Job {
                schedule,
                settings: BillingFilesSettings {
                    sources,
                    account,
                    region,
                    skip_malformed: b.skip_malformed,
                    tag_keys: b.tag_keys.clone(),
                    resource_costs: b.resource_costs.then_some(b.max_resource_series),
                },
            }),
            _ => None,
        }
    });

    let mut tokens = Vec::new();
    for (i, t) in api.tokens.iter().enumerate() {
        let at = [Seg::Key("api"), Seg::Key("tokens"), Seg::Index(i)];
        let token = cx.expand(&at, t);
        // Messages never show the token.
        if token.chars().any(char::is_whitespace) {
            cx.error(&at, "must not contain whitespace");
        } else if token.chars().count() < MIN_TOKEN_CHARS {
            cx.error(&at, format!("must be at least {MIN_TOKEN_CHARS} characters long"));
        }
        tokens.push(token);
    }

    // Rule files are other files: their errors come after this file's, in file order.
    let mut rule_errors = Vec::new();
    let rules = rules.and_then(|r| {
        let at = |k| [Seg::Key("rules"), Seg::Key(k)];
        if r.files.is_empty() {
            cx.error(&at("files"), "must name at least one rule file or glob");
        }
        let mut sources = Vec::new();
        for (i, f) in r.files.iter().enumerate() {
            if f.trim().is_empty() {
                cx.error(&[Seg::Key("rules"), Seg::Key("files"), Seg::Index(i)], "must not be empty");
            }
            let resolved = if Path::new(f).is_absolute() { f.clone() } else { base.join(f).display().to_string() };
            sources.push(RuleSource { written: f.clone(), resolved });
        }
        if !(1..=64).contains(&r.threads) {
            cx.error(&at("threads"), "must be between 1 and 64");
        }
        let interval = r.interval_secs.or(if r.cron.is_none() { Some(300) } else { None });
        let schedule = schedule_at(&mut cx, &[Seg::Key("rules")], interval, r.cron.as_deref());
        if !r.enabled {
            return None;
        }
        if !sources.is_empty() && sources.iter().all(|s| !s.written.trim().is_empty()) {
            if let Err(problems) = read_rule_files(&sources) {
                for p in problems {
                    match p {
                        RulesProblem::Source { index, message } => {
                            cx.error(&[Seg::Key("rules"), Seg::Key("files"), Seg::Index(index)], message)
                        }
                        RulesProblem::File(e) => rule_errors.push(ConfigError {
                            file: e.file,
                            line: e.line,
                            path: e.path,
                            message: e.message,
                        }),
                    }
                }
            }
        }
        schedule.map(|schedule| Job { schedule, settings: RulesSettings { sources, threads: r.threads } })
    });

    if !cx.errors.is_empty() || !rule_errors.is_empty() {
        let mut errors = cx.errors;
        errors.sort_by_key(|e| e.line.unwrap_or(0));
        errors.extend(rule_errors);
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        listen: listen.expect("validated"),
        database: DatabaseConfig { url, max_connections: database.max_connections },
        log_format: log.format,
        aws: AwsSettings {
            endpoint_url,
            accounts: specs,
            home_region: inventory
                .as_ref()
                .and_then(|j| j.settings.regions.first().cloned())
                .unwrap_or_else(|| "us-east-1".into()),
            max_attempts: aws.max_attempts,
            call_timeout: Duration::from_secs(aws.call_timeout_secs),
            connect_timeout: Duration::from_secs(aws.connect_timeout_secs),
            initial_backoff: Duration::from_millis(aws.initial_backoff_ms),
            max_backoff: Duration::from_millis(aws.max_backoff_ms),
        },
        inventory,
        cost_explorer,
        cloudwatch,
        logs,
        terraform,
        billing_files,
        rules,
        api: ApiConfig { tokens },
    })
}

/// Shortest accepted API token.
const MIN_TOKEN_CHARS: usize = 16;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

// Upper bounds of the durations a configuration sets, in seconds: far beyond any sensible value, and small
// enough that no time computed from them can overflow.
/// `interval_secs` of every schedule, and Cost Explorer's `min_interval_secs`.
const MAX_INTERVAL_SECS: u64 = 31 * DAY;
/// How much of the newest data a collector leaves for later (`delay_secs`).
const MAX_DELAY_SECS: u64 = DAY;
/// How far back a new log pattern counter starts (`initial_lookback_secs`).
const MAX_LOOKBACK_SECS: u64 = 3 * 365 * DAY;
/// A CloudWatch datapoint period.
const MAX_PERIOD_SECS: u64 = DAY;
/// A CloudWatch window: CloudWatch keeps datapoints for 15 months.
const MAX_WINDOW_SECS: u64 = 455 * DAY;
/// One AWS call attempt, and opening a connection.
const MAX_CALL_TIMEOUT_SECS: u64 = HOUR;
const MAX_CONNECT_TIMEOUT_SECS: u64 = 5 * MINUTE;
/// The longest retry delay (`max_backoff_ms`).
const MAX_BACKOFF_SECS: u64 = 5 * MINUTE;

/// `secs` as the largest whole unit that divides it: `31 days`, `1 hour`, `90 seconds`.
fn human(secs: u64) -> String {
    let (n, unit) = match secs {
        s if s > 0 && s % DAY == 0 => (s / DAY, "day"),
        s if s > 0 && s % HOUR == 0 => (s / HOUR, "hour"),
        s if s > 0 && s % MINUTE == 0 => (s / MINUTE, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Records an error at `path` when the duration `value` (in seconds, or milliseconds when `millis`) is
/// longer than `max_secs`.
fn at_most(cx: &mut Ctx<'_>, path: &[Seg], value: i128, max_secs: u64, millis: bool) {
    let max = if millis { i128::from(max_secs) * 1000 } else { i128::from(max_secs) };
    if value > max {
        cx.error(path, format!("must be at most {max} ({})", human(max_secs)));
    }
}

/// The statistics GetMetricData accepts that we export: the five basic ones and percentiles.
fn valid_statistic(s: &str) -> bool {
    matches!(s, "Average" | "Sum" | "Minimum" | "Maximum" | "SampleCount")
        || s.strip_prefix('p').is_some_and(|p| p.parse::<f64>().is_ok_and(|v| (0.0..=100.0).contains(&v)))
}

#[allow(clippy::too_many_arguments)]
fn metric_job(
    cx: &mut Ctx<'_>,
    at: &dyn Fn(&'static str) -> [Seg; 5],
    namespace: &str,
    metrics: &[String],
    statistics: &[String],
    period_secs: i32,
    length_secs: Option<i64>,
    delay_secs: i64,
) {
    if namespace.trim().is_empty() {
        cx.error(&at("namespace"), "must not be empty");
    }
    if metrics.is_empty() {
        cx.error(&at("metrics"), "must name at least one metric");
    }
    if statistics.is_empty() {
        cx.error(&at("statistics"), "must name at least one statistic");
    }
    for s in statistics {
        if !valid_statistic(s) {
            cx.error(
                &at("statistics"),
                format!("unknown statistic {s:?}: use Average, Sum, Minimum, Maximum, SampleCount or pNN"),
            );
        }
    }
    if !(matches!(period_secs, 1 | 5 | 10 | 30) || (period_secs >= 60 && period_secs % 60 == 0)) {
        cx.error(&at("period_secs"), "must be 1, 5, 10, 30 or a multiple of 60");
    }
    at_most(cx, &at("period_secs"), period_secs.into(), MAX_PERIOD_SECS, false);
    if let Some(l) = length_secs {
        if l < period_secs as i64 {
            cx.error(&at("length_secs"), "must be at least the period");
        }
        at_most(cx, &at("length_secs"), l.into(), MAX_WINDOW_SECS, false);
    }
    if delay_secs < 0 {
        cx.error(&at("delay_secs"), "must not be negative");
    }
    at_most(cx, &at("delay_secs"), delay_secs.into(), MAX_DELAY_SECS, false);
}

/// The `anomaly` entry of the CloudWatch job `kind[index]` (`discovery` or `static`): its series resolved to
/// (metric, statistic) pairs of the job, and its threshold.
fn anomaly_entry(
    cx: &mut Ctx<'_>,
    kind: &'static str,
    index: usize,
    entry: &AnomalyEntry,
    metrics: &[String],
    statistics: &[String],
) -> AnomalySettings {
    let at = |k: &'static str| {
        vec![
            Seg::Key("collectors"),
            Seg::Key("cloudwatch"),
            Seg::Key(kind),
            Seg::Index(index),
            Seg::Key("anomaly"),
            Seg::Key(k),
        ]
    };
    let mut series = BTreeSet::new();
    match &entry.series {
        None => {
            for m in metrics {
                for st in statistics {
                    series.insert((m.clone(), st.clone()));
                }
            }
        }
        Some(list) => {
            if list.is_empty() {
                cx.error(&at("series"), "must name at least one series (leave it out for every series of the job)");
            }
            for (i, item) in list.iter().enumerate() {
                let mut path = at("series");
                path.push(Seg::Index(i));
                let (metric, stats): (&str, Vec<&String>) = match item.rsplit_once(':') {
                    Some((m, st)) => match statistics.iter().find(|s| s.as_str() == st) {
                        Some(s) => (m, vec![s]),
                        None => {
                            cx.error(&path, format!("statistic {st:?} is not one of the job's statistics"));
                            continue;
                        }
                    },
                    None => (item.as_str(), statistics.iter().collect()),
                };
                if !metrics.iter().any(|m| m == metric) {
                    cx.error(&path, format!("metric {metric:?} is not one of the job's metrics"));
                    continue;
                }
                let before = series.len();
                series.extend(stats.iter().map(|st| (metric.to_string(), st.to_string())));
                if series.len() == before {
                    cx.error(&path, format!("{item:?} is listed twice"));
                }
            }
        }
    }
    let threshold = entry.threshold.unwrap_or(DEFAULT_THRESHOLD);
    if !(threshold > 0.0 && threshold <= 1.0) {
        cx.error(&at("threshold"), "must be greater than 0 and at most 1 (scores are in 0..1)");
    }
    AnomalySettings { series, threshold }
}

fn is_role_arn(s: &str) -> bool {
    let mut p = s.splitn(6, ':');
    matches!(
        (p.next(), p.next(), p.next(), p.next(), p.next(), p.next()),
        (Some("arn"), Some(part), Some("iam"), Some(""), Some(acct), Some(res))
            if part.starts_with("aws") && acct.len() == 12 && acct.bytes().all(|b| b.is_ascii_digit())
                && res.strip_prefix("role/").is_some_and(|n| !n.is_empty())
    )
}

fn schedule(cx: &mut Ctx<'_>, collector: &'static str, interval: Option<u64>, cron: Option<&str>) -> Option<Schedule> {
    schedule_at(cx, &[Seg::Key("collectors"), Seg::Key(collector)], interval, cron)
}

/// The schedule of the section at `section` (its `interval_secs` or `cron`).
fn schedule_at(cx: &mut Ctx<'_>, section: &[Seg], interval: Option<u64>, cron: Option<&str>) -> Option<Schedule> {
    let at = |k| {
        let mut p = section.to_vec();
        p.push(Seg::Key(k));
        p
    };
    match (interval, cron) {
        (Some(_), Some(_)) => {
            cx.error(&at("cron"), "set either interval_secs or cron, not both");
            None
        }
        (Some(0), None) => {
            cx.error(&at("interval_secs"), "must be at least 1");
            None
        }
        (Some(s), None) if s > MAX_INTERVAL_SECS => {
            at_most(cx, &at("interval_secs"), s.into(), MAX_INTERVAL_SECS, false);
            None
        }
        (Some(s), None) => Some(Schedule::Every(Duration::from_secs(s))),
        (None, None) => Some(Schedule::Every(Duration::from_secs(300))),
        (None, Some(expr)) => {
            // The cron crate wants seconds first; accept the usual five fields too.
            let full = if expr.split_whitespace().count() == 5 { format!("0 {expr}") } else { expr.to_string() };
            match cron::Schedule::from_str(&full) {
                Ok(s) => Some(Schedule::Cron(Box::new(s))),
                Err(e) => {
                    // The crate's message repeats the expression with a caret line; keep its last line.
                    let text = e.to_string();
                    let reason = text.lines().last().unwrap_or_default().trim().trim_end_matches('.');
                    cx.error(&at("cron"), format!("invalid cron expression {expr:?}: {reason}"));
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        assert!(is_role_arn("arn:aws:iam::123456789012:role/Reader"));
        assert!(is_role_arn("arn:aws-cn:iam::123456789012:role/path/Reader"));
        assert!(!is_role_arn("arn:aws:iam::12345:role/Reader"));
        assert!(!is_role_arn("arn:aws:iam::123456789012:user/bob"));
        assert!(!is_role_arn("arn:aws:iam::123456789012:role/"));
    }
}
