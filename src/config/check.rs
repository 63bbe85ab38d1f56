//! What every section's validation shares: the field path of a value, the checker that collects diagnostics
//! with their lines, and the checks several sections make (regions, account names, schedules, sources,
//! duration bounds), each written once. The checks of a job's section live beside the job's settings type
//! (`src/jobs/<job>.rs`, function `check`); `validate.rs` checks the daemon's own sections and composes them.

use std::fmt::Display;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use collector::AccountSpec;
use rules::located::{self, Diagnostic, Step};
use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use super::Schedule;

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

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
pub const DAY: u64 = 24 * HOUR;

// Upper bounds of the durations a configuration sets, in seconds: far beyond any sensible value, and small
// enough that no time computed from them can overflow.
/// `interval_secs` of every schedule, and Cost Explorer's `min_interval_secs`.
pub const MAX_INTERVAL_SECS: u64 = 31 * DAY;
/// How much of the newest data a collector leaves for later (`delay_secs`).
pub const MAX_DELAY_SECS: u64 = DAY;
/// How far back a new log pattern counter starts (`initial_lookback_secs`).
pub const MAX_LOOKBACK_SECS: u64 = 3 * 365 * DAY;
/// A CloudWatch datapoint period.
pub const MAX_PERIOD_SECS: u64 = DAY;
/// A CloudWatch window: CloudWatch keeps datapoints for 15 months.
pub const MAX_WINDOW_SECS: u64 = 455 * DAY;
/// One AWS call attempt, and opening a connection.
pub const MAX_CALL_TIMEOUT_SECS: u64 = HOUR;
pub const MAX_CONNECT_TIMEOUT_SECS: u64 = 5 * MINUTE;
/// The longest retry delay (`max_backoff_ms`).
pub const MAX_BACKOFF_SECS: u64 = 5 * MINUTE;

/// One step of a field path.
#[derive(Debug, Clone)]
pub enum Seg {
    Key(&'static str),
    Index(usize),
    /// A key the file's author chose, e.g. a contact's name in `contacts.<name>`.
    Name(String),
}

impl Seg {
    fn step(&self) -> Step<'_> {
        match self {
            Seg::Key(k) => Step::Key(k),
            Seg::Index(i) => Step::Index(*i),
            Seg::Name(n) => Step::Key(n),
        }
    }
}

/// The path `base.key`.
pub fn key(base: &[Seg], key: &'static str) -> Vec<Seg> {
    let mut p = base.to_vec();
    p.push(Seg::Key(key));
    p
}

/// The path `base.key[index]`.
pub fn item(base: &[Seg], key: &'static str, index: usize) -> Vec<Seg> {
    let mut p = self::key(base, key);
    p.push(Seg::Index(index));
    p
}

/// The path `base.key.name`, where `name` is a key of the file's author (a table of named entries).
pub fn named(base: &[Seg], key: &'static str, name: &str) -> Vec<Seg> {
    let mut p = self::key(base, key);
    p.push(Seg::Name(name.to_string()));
    p
}

/// The path of a collector's section: `collectors.<name>`.
pub fn collector(name: &'static str) -> Vec<Seg> {
    vec![Seg::Key("collectors"), Seg::Key(name)]
}

/// Validates one file: every problem becomes a [`Diagnostic`] with the file, the line of the value (or of its
/// nearest parent present in the file) and the field path.
pub struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    doc: &'a DeTable<'a>,
    pub errors: Vec<Diagnostic>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Checker<'a> {
    pub fn new(
        file: &'a str,
        text: &'a str,
        doc: &'a DeTable<'a>,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> Checker<'a> {
        Checker { file, text, doc, errors: Vec::new(), env }
    }

    pub fn line_of(&self, offset: usize) -> usize {
        located::line_of(self.text, offset)
    }

    /// The span of the value at `path`, or of its nearest parent present in the file.
    fn span(&self, path: &[Seg]) -> Option<Range<usize>> {
        located::span_of(self.doc, path.iter().map(Seg::step))
    }

    pub fn error(&mut self, path: &[Seg], message: impl Into<String>) {
        let line = self.span(path).map(|s| self.line_of(s.start));
        let path = located::render(path.iter().map(Seg::step));
        self.errors.push(Diagnostic::new(self.file, line, path, message));
    }

    /// An error at a line of its own, outside any field path.
    pub fn error_at_line(&mut self, line: usize, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Diagnostic::new(self.file, Some(line), path, message));
    }

    /// Deserializes one top-level section, recording its error (with the path inside the section).
    pub fn section<T: DeserializeOwned>(&mut self, key: &'static str, value: &Spanned<DeValue<'_>>) -> Option<T> {
        match located::deserialize_section(key, value) {
            Ok(v) => Some(v),
            Err(e) => {
                let line = self.line_of(e.span.start);
                self.error_at_line(line, e.path, e.message);
                None
            }
        }
    }

    /// Replaces `${VAR}` with the environment variable VAR; a missing variable is an error at `path`.
    pub fn expand(&mut self, path: &[Seg], value: &str) -> String {
        self.expand_with(path, value, |_| false)
    }

    /// [`Checker::expand`] for a URL: a variable inside the URL's user information (`user:password@`) or its
    /// query is percent-encoded, so a password holding `@`, `/`, `:` or `%` stays a password
    /// (`postgres://app:${PGPASSWORD}@db/cw`); anywhere else (a whole URL, a host, a file path) it is taken
    /// as it is.
    pub fn expand_url(&mut self, path: &[Seg], value: &str) -> String {
        let scheme_end = value.find("://").map(|i| i + 3);
        let userinfo = scheme_end.and_then(|s| {
            let authority_end = value[s..].find(['/', '?']).map_or(value.len(), |e| s + e);
            value[s..authority_end].rfind('@').map(|at| s..s + at)
        });
        let query = value.find('?');
        self.expand_with(path, value, |offset| {
            userinfo.as_ref().is_some_and(|u| u.contains(&offset)) || query.is_some_and(|q| offset > q)
        })
    }

    /// Replaces each `${NAME}`; `encode(offset)` says whether the reference at byte `offset` of `value` is
    /// percent-encoded.
    fn expand_with(&mut self, path: &[Seg], value: &str, encode: impl Fn(usize) -> bool) -> String {
        let mut out = String::new();
        let mut rest = value;
        while let Some(start) = rest.find("${") {
            let offset = value.len() - rest.len() + start;
            out.push_str(&rest[..start]);
            let Some(len) = rest[start + 2..].find('}') else {
                self.error(path, "unterminated ${ in value");
                return out;
            };
            let name = &rest[start + 2..start + 2 + len];
            match (self.env)(name) {
                Some(v) if encode(offset) => out.push_str(&percent_encode(&v)),
                Some(v) => out.push_str(&v),
                None => self.error(path, format!("environment variable {name} is not set")),
            }
            rest = &rest[start + 3 + len..];
        }
        out.push_str(rest);
        out
    }

    /// Records an error at `path` when the duration `value` (in seconds, or milliseconds when `millis`) is
    /// longer than `max_secs`.
    pub fn at_most(&mut self, path: &[Seg], value: i128, max_secs: u64, millis: bool) {
        let max = if millis { i128::from(max_secs) * 1000 } else { i128::from(max_secs) };
        if value > max {
            self.error(path, format!("must be at most {max} ({})", human(max_secs)));
        }
    }

    /// Records an error when `region` is not an AWS region.
    pub fn region(&mut self, path: &[Seg], region: &str) -> bool {
        let known = KNOWN_REGIONS.contains(&region);
        if !known {
            self.error(path, format!("unknown region {region:?}"));
        }
        known
    }

    /// Checks the list `base.key`: every entry an AWS region, none twice.
    pub fn regions(&mut self, base: &[Seg], key: &'static str, regions: &[String]) {
        for (i, r) in regions.iter().enumerate() {
            let path = item(base, key, i);
            if self.region(&path, r) && regions[..i].contains(r) {
                self.error(&path, format!("region {r:?} is listed twice"));
            }
        }
    }

    /// The account a section names at `base.account`, or the first configured one when it names none;
    /// `None` (with an error) when no `[[accounts]]` entry has that name.
    pub fn account(&mut self, base: &[Seg], named: Option<&String>, shared: &Shared<'_>) -> Option<String> {
        match named {
            Some(name) if !shared.accounts.iter().any(|a| &a.name == name) => {
                self.error(&key(base, "account"), format!("no [[accounts]] entry is named {name:?}"));
                None
            }
            Some(name) => Some(name.clone()),
            None => shared.accounts.first().map(|a| a.name.clone()),
        }
    }

    /// Parses each entry of the list `base.key` with `parse`; an empty list is an error saying `empty`.
    pub fn sources<T, E: Display>(
        &mut self,
        base: &[Seg],
        key: &'static str,
        entries: &[String],
        empty: &str,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Vec<T> {
        if entries.is_empty() {
            self.error(&self::key(base, key), empty);
        }
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match parse(e) {
                Ok(s) => out.push(s),
                Err(error) => self.error(&item(base, key, i), error.to_string()),
            }
        }
        out
    }

    /// The schedule of the section at `base`: its `interval_secs` or `cron`, else every `default_secs`.
    pub fn schedule(
        &mut self,
        base: &[Seg],
        interval: Option<u64>,
        cron: Option<&str>,
        default_secs: u64,
    ) -> Option<Schedule> {
        match (interval, cron) {
            (Some(_), Some(_)) => {
                self.error(&key(base, "cron"), "set either interval_secs or cron, not both");
                None
            }
            (Some(0), None) => {
                self.error(&key(base, "interval_secs"), "must be at least 1");
                None
            }
            (Some(s), None) if s > MAX_INTERVAL_SECS => {
                self.at_most(&key(base, "interval_secs"), s.into(), MAX_INTERVAL_SECS, false);
                None
            }
            (Some(s), None) => Some(Schedule::Every(Duration::from_secs(s))),
            (None, None) => Some(Schedule::Every(Duration::from_secs(default_secs))),
            (None, Some(expr)) => {
                // The cron crate wants seconds first; accept the usual five fields too.
                let full = if expr.split_whitespace().count() == 5 { format!("0 {expr}") } else { expr.to_string() };
                match cron::Schedule::from_str(&full) {
                    Ok(s) => Some(Schedule::Cron(Box::new(s))),
                    Err(e) => {
                        // The crate's message repeats the expression with a caret line; keep its last line.
                        let text = e.to_string();
                        let reason = text.lines().last().unwrap_or_default().trim().trim_end_matches('.');
                        self.error(&key(base, "cron"), format!("invalid cron expression {expr:?}: {reason}"));
                        None
                    }
                }
            }
        }
    }
}

/// What the daemon's sections decide that the jobs' checks need.
pub struct Shared<'a> {
    /// The configured accounts (a `default` one when the file names none).
    pub accounts: &'a [AccountSpec],
    /// The inventory's regions; empty when the inventory is off.
    pub inventory_regions: &'a [String],
    /// The region of the AWS calls that have no region of their own: the inventory's first, or us-east-1.
    pub home_region: &'a str,
    /// The configuration file's directory, for relative paths.
    pub base_dir: &'a Path,
}

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

/// `s` with every byte outside RFC 3986's unreserved characters percent-encoded.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
