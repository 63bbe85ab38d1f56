//! Loading and validating the configuration file.
//!
//! The file is parsed once into the typed sections of [`schema`], then validated into [`Config`], the
//! daemon's own types. Every problem is collected, not just the first, and each names the file, the line and
//! the field path: `cloudwarden.toml:12: collectors.inventory.regions[1]: unknown region "us-est-1"`.

pub(crate) mod check;
pub mod schema;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use collector::aws::inventory::InventorySettings;
use collector::AwsSettings;

use crate::jobs::{
    BillingFilesSettings, CleanupJobSettings, CloudWatchSettings, CostExplorerSettings, LogsSettings, RulesSettings,
    TerraformSettings,
};

pub use schema::LogFormat;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The HTTP server's limits, token and TLS.
    pub server: crate::server::ServerSettings,
    pub database: DatabaseConfig,
    pub log_format: LogFormat,
    pub aws: AwsSettings,
    /// `None` when the inventory collector is disabled or not configured.
    pub inventory: Option<Job<InventorySettings>>,
    /// `None` when the Cost Explorer collector is disabled or not configured.
    pub cost_explorer: Option<Job<CostExplorerSettings>>,
    /// `None` when the CloudWatch collector is disabled or not configured.
    pub cloudwatch: Option<Job<CloudWatchSettings>>,
    /// `None` when the Logs collector is disabled or not configured.
    pub logs: Option<Job<LogsSettings>>,
    /// `None` when the Terraform collector is disabled or not configured.
    pub terraform: Option<Job<TerraformSettings>>,
    /// `None` when the billing files collector is disabled or not configured.
    pub billing_files: Option<Job<BillingFilesSettings>>,
    /// `None` when rules are disabled or not configured.
    pub rules: Option<Job<RulesSettings>>,
    /// `None` when cleanup is disabled or not configured.
    pub cleanup: Option<Job<CleanupJobSettings>>,
    /// `[reports.weekly]`, when configured.
    pub weekly_report: Option<crate::report::WeeklyReportSettings>,
    pub api: ApiConfig,
}

/// The HTTP API's settings.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// Accepted bearer tokens; empty: the API is off.
    pub tokens: Vec<ApiToken>,
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Read findings, cleanup plans and the audit trail.
    Read,
    /// Approve, reject and exempt cleanup plans.
    Approve,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "approve" => Some(Scope::Approve),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Approve => "approve",
        }
    }
}

/// A bearer token, its holder's name (the actor in the audit trail) and its scopes.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    pub token: String,
    pub scopes: Vec<Scope>,
}

impl ApiToken {
    /// A token with the `read` scope only.
    pub fn reader(name: impl Into<String>, token: impl Into<String>) -> ApiToken {
        ApiToken { name: name.into(), token: token.into(), scopes: vec![Scope::Read] }
    }

    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

impl fmt::Debug for ApiToken {
    /// Never shows the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("token", &"[redacted]")
            .field("scopes", &self.scopes)
            .finish()
    }
}

#[derive(Clone, PartialEq)]
pub struct DatabaseConfig {
    pub url: String,
    /// Create a missing SQLite file (the default path, or when configured so).
    pub create_if_missing: bool,
    pub max_connections: u32,
    /// History older than this many days is pruned.
    pub retention_days: u32,
}

impl fmt::Debug for DatabaseConfig {
    /// Shows the URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &crate::store::redact(&self.url))
            .field("create_if_missing", &self.create_if_missing)
            .field("max_connections", &self.max_connections)
            .field("retention_days", &self.retention_days)
            .finish()
    }
}

/// A collector's settings and when it runs.
#[derive(Debug, Clone)]
pub struct Job<T> {
    pub schedule: Schedule,
    pub settings: T,
}

/// When a collector runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron(Box<cron::Schedule>),
}

impl Schedule {
    /// The first run strictly after `t`; the latest representable time when that is beyond it (an interval
    /// too long to add never panics).
    pub fn next_after(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(d) => chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| t.checked_add_signed(d))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            // The cron crate starts one second after `t`, unchecked.
            Schedule::Cron(_) if t.checked_add_signed(chrono::Duration::seconds(1)).is_none() => {
                DateTime::<Utc>::MAX_UTC
            }
            Schedule::Cron(c) => c.after(&t).next().unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "every {}s", d.as_secs()),
            Schedule::Cron(c) => write!(f, "cron \"{}\"", c.source()),
        }
    }
}

/// One problem in a configuration file, and every problem found in it and the rule files it names: the
/// same diagnostics the rule files report with.
pub use rules::located::{Diagnostic as ConfigError, Diagnostics as ConfigErrors};

/// Reads and validates a configuration file, taking `${VAR}` values from the process environment. Relative
/// rule file paths are taken from the file's directory; the rule files are read and validated too.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: label.clone(),
            line: None,
            path: String::new(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    validate::parse(&label, &text, &|name| std::env::var(name).ok(), base)
}

/// Validates configuration text. `env` resolves `${VAR}` references (injected so tests need not touch the
/// process environment). Relative rule file paths are taken from the working directory; the rule files are
/// read and validated.
pub fn parse(file: &str, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    validate::parse(file, text, env, Path::new(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_after_saturates_instead_of_overflowing() {
        let now: DateTime<Utc> = "2026-03-10T12:00:00Z".parse().unwrap();
        let check = |interval: Duration, t: DateTime<Utc>, expected: DateTime<Utc>| {
            assert_eq!(Schedule::Every(interval).next_after(t), expected, "{interval:?} after {t}");
        };
        check(Duration::from_secs(300), now, "2026-03-10T12:05:00Z".parse().unwrap());
        check(Duration::MAX, now, DateTime::<Utc>::MAX_UTC);
        check(Duration::from_secs(u64::MAX), now, DateTime::<Utc>::MAX_UTC);
        check(Duration::from_secs(i64::MAX as u64 / 1000), now, DateTime::<Utc>::MAX_UTC);
        check(Duration::from_secs(300), DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MAX_UTC);
        // Cron at the end of time, or never firing again.
        let cron = |expr: &str| Schedule::Cron(Box::new(expr.parse().unwrap()));
        assert_eq!(cron("0 0 0 1 1 * *").next_after(DateTime::<Utc>::MAX_UTC), DateTime::<Utc>::MAX_UTC);
        let near_end = DateTime::<Utc>::MAX_UTC - chrono::Duration::days(1);
        assert_eq!(cron("0 0 0 1 1 * *").next_after(near_end), DateTime::<Utc>::MAX_UTC);
        assert_eq!(cron("0 0 0 1 1 * 2020").next_after(now), DateTime::<Utc>::MAX_UTC);
    }
}
