//! The sections of a rule file as serde structs: what the TOML may say, every field documented. The
//! semantic checks ([`Check`]) and the compilation into the families' types live next to them.

use std::collections::BTreeMap;

use regex::RegexBuilder;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::pattern::{Exemptions, Glob, TagMatch};
use crate::check::{Check, Problem, Seg};
use crate::cleanup::{CleanupRule, CleanupSettings, Prices, Threshold};
use crate::drift::DriftSettings;
use crate::finding::Severity;
use crate::tagging::{Allowed, AllowedValues, TaggingRule};

fn yes() -> bool {
    true
}

fn all_types() -> Vec<String> {
    vec!["*".to_string()]
}

fn warning() -> Severity {
    Severity::Warning
}

fn default_protect_tag() -> String {
    crate::cleanup::DEFAULT_PROTECT_TAG.to_string()
}

/// A problem at `key.sub` where `sub` may itself contain dots (a tag key, a type name).
fn at_key(key: &str, sub: &str, message: impl Into<String>) -> Problem {
    Problem { path: vec![Seg::Key(key.to_string()), Seg::Key(sub.to_string())], message: message.into() }
}

/// Tag matchers (`key=value` or `key`) of the list `field`.
fn tag_matches(field: &str, list: &[String], problems: &mut Vec<Problem>) -> Vec<TagMatch> {
    list.iter()
        .enumerate()
        .filter_map(|(i, s)| TagMatch::parse(s).map_err(|e| problems.push(Problem::at_index(field, i, e))).ok())
        .collect()
}

/// Globs of the list `field`, none empty; `what` checks each (an error message when wrong).
fn globs(
    field: &str,
    list: &[String],
    problems: &mut Vec<Problem>,
    what: impl Fn(&str) -> Option<String>,
) -> Vec<Glob> {
    for (i, s) in list.iter().enumerate() {
        if s.trim().is_empty() {
            problems.push(Problem::at_index(field, i, "must not be empty"));
        } else if let Some(m) = what(s) {
            problems.push(Problem::at_index(field, i, m));
        }
    }
    list.iter().map(|s| Glob::new(s)).collect()
}

fn arn_glob(s: &str) -> Option<String> {
    (!s.starts_with("arn:") && s != "*").then(|| format!("expected an ARN glob starting with arn:, got {s:?}"))
}

fn type_glob(s: &str) -> Option<String> {
    (!s.contains(':') && s != "*").then(|| format!("expected service:type (ec2:instance, ec2:*) or *, got {s:?}"))
}

/// One `[[tagging]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaggingEntry {
    /// Unique among the tagging rules of all rule files; the finding's `rule`.
    pub name: String,
    /// Resource types the rule applies to, as globs: `ec2:instance`, `ec2:*`, `*` (the default).
    #[serde(default = "all_types")]
    pub resource_types: Vec<String>,
    /// Keys every resource in scope must carry.
    #[serde(default)]
    pub required_keys: Vec<String>,
    /// Allowed values per key, as a list. A key not in `required_keys` is checked only when present.
    #[serde(default)]
    pub allowed_values: BTreeMap<String, Vec<String>>,
    /// Allowed values per key, as a regex the whole value must match.
    #[serde(default)]
    pub allowed_patterns: BTreeMap<String, String>,
    /// Match keys ignoring case.
    #[serde(default)]
    pub ignore_key_case: bool,
    /// Match values ignoring case (lists and patterns).
    #[serde(default)]
    pub ignore_value_case: bool,
    /// Resources with one of these tags (`key=value`, or `key` for any value) are exempt.
    #[serde(default)]
    pub exempt_tags: Vec<String>,
    /// Resources whose ARN matches one of these globs are exempt.
    #[serde(default)]
    pub exempt_arns: Vec<String>,
    /// `info`, `warning` (default) or `critical`.
    #[serde(default = "warning")]
    pub severity: Severity,
}

impl TaggingEntry {
    /// The compiled rule, or everything wrong with the entry.
    pub fn compile(&self) -> Result<TaggingRule, Vec<Problem>> {
        let mut problems = Vec::new();
        if self.name.trim().is_empty() {
            problems.push(Problem::at("name", "must not be empty"));
        }
        if self.resource_types.is_empty() {
            problems.push(Problem::at("resource_types", "must name at least one resource type (or \"*\")"));
        }
        let resource_types = globs("resource_types", &self.resource_types, &mut problems, type_glob);
        if self.required_keys.is_empty() && self.allowed_values.is_empty() && self.allowed_patterns.is_empty() {
            problems
                .push(Problem::at("required_keys", "the rule checks nothing: name required keys or allowed values"));
        }
        for (i, k) in self.required_keys.iter().enumerate() {
            if k.trim().is_empty() {
                problems.push(Problem::at_index("required_keys", i, "must not be empty"));
            } else if k.starts_with("aws:") {
                problems.push(Problem::at_index(
                    "required_keys",
                    i,
                    format!("{k:?}: aws: tags are set by aws, not by users"),
                ));
            } else if self.required_keys[..i].iter().any(|p| p == k) {
                problems.push(Problem::at_index("required_keys", i, format!("key {k:?} is listed twice")));
            }
        }
        let mut allowed = Vec::new();
        for (key, values) in &self.allowed_values {
            if values.is_empty() {
                problems.push(at_key("allowed_values", key, "must list at least one value"));
            }
            if self.allowed_patterns.contains_key(key) {
                problems.push(at_key("allowed_patterns", key, "key has allowed_values too: use one or the other"));
            }
            allowed.push(AllowedValues { key: key.clone(), allowed: Allowed::OneOf(values.clone()) });
        }
        for (key, pattern) in &self.allowed_patterns {
            match RegexBuilder::new(&format!("^(?:{pattern})$")).case_insensitive(self.ignore_value_case).build() {
                Ok(regex) => allowed.push(AllowedValues {
                    key: key.clone(),
                    allowed: Allowed::Regex { pattern: pattern.clone(), regex },
                }),
                Err(e) => {
                    // The regex crate's message spans several lines with a caret; keep its last line.
                    let text = e.to_string();
                    let reason =
                        text.lines().last().unwrap_or_default().trim().trim_start_matches("error: ").to_string();
                    problems.push(at_key("allowed_patterns", key, format!("invalid regex {pattern:?}: {reason}")));
                }
            }
        }
        let exempt = Exemptions {
            tags: tag_matches("exempt_tags", &self.exempt_tags, &mut problems),
            arns: globs("exempt_arns", &self.exempt_arns, &mut problems, arn_glob),
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(TaggingRule {
            name: self.name.clone(),
            resource_types,
            required_keys: self.required_keys.clone(),
            allowed,
            ignore_key_case: self.ignore_key_case,
            ignore_value_case: self.ignore_value_case,
            exempt,
            severity: self.severity,
        })
    }
}

impl Check for TaggingEntry {
    fn check(&self) -> Vec<Problem> {
        self.compile().err().unwrap_or_default()
    }
}

/// The `[drift]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftSection {
    /// Compare the cloud with Terraform state (default true; drift runs only when states are loaded).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// ARN globs: matching live resources and state resources are ignored.
    #[serde(default)]
    pub ignore_arns: Vec<String>,
    /// Type globs, matched against inventory types (`ec2:snapshot`) and Terraform types (`aws_ebs_*`).
    #[serde(default)]
    pub ignore_types: Vec<String>,
    /// Terraform address globs (`module.legacy.*`).
    #[serde(default)]
    pub ignore_addresses: Vec<String>,
    /// Live resources with one of these tags (`key=value` or `key`) are ignored.
    #[serde(default)]
    pub ignore_tags: Vec<String>,
    /// Tag key globs left out when comparing tags (e.g. the provider's `default_tags` keys).
    #[serde(default)]
    pub ignore_tag_keys: Vec<String>,
    /// More inventory type → Terraform type pairs Terraform can manage, e.g.
    /// `"ec2:transit-gateway" = "aws_ec2_transit_gateway"`.
    #[serde(default)]
    pub extra_types: BTreeMap<String, String>,
}

impl DriftSection {
    /// The compiled settings, or everything wrong with the section.
    pub fn compile(&self) -> Result<DriftSettings, Vec<Problem>> {
        let mut problems = Vec::new();
        let ignore_arns = globs("ignore_arns", &self.ignore_arns, &mut problems, arn_glob);
        let ignore_types = globs("ignore_types", &self.ignore_types, &mut problems, |_| None);
        let ignore_addresses = globs("ignore_addresses", &self.ignore_addresses, &mut problems, |_| None);
        let ignore_tag_keys = globs("ignore_tag_keys", &self.ignore_tag_keys, &mut problems, |_| None);
        let ignore_tags = tag_matches("ignore_tags", &self.ignore_tags, &mut problems);
        for (inv, tf) in &self.extra_types {
            if !inv.contains(':') || inv.contains('*') {
                problems.push(at_key(
                    "extra_types",
                    inv,
                    "expected an inventory type as service:type, e.g. ec2:transit-gateway",
                ));
            }
            if !tf.starts_with("aws_") {
                problems.push(at_key(
                    "extra_types",
                    inv,
                    format!("expected a terraform aws type (aws_...), got {tf:?}"),
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(DriftSettings {
            enabled: self.enabled,
            ignore_arns,
            ignore_types,
            ignore_addresses,
            ignore_tags,
            ignore_tag_keys,
            extra_types: self.extra_types.clone(),
        })
    }
}

impl Check for DriftSection {
    fn check(&self) -> Vec<Problem> {
        self.compile().err().unwrap_or_default()
    }
}

/// One cleanup rule's switch and threshold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdEntry {
    /// Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A resource is a candidate when older than this many days (0: at any age). Defaults per rule.
    pub min_days: Option<u32>,
}

/// `[cleanup.prices]`: the estimate when billing data has no cost for a candidate, in USD.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricesEntry {
    /// Per GiB-month by EBS volume type; merged over the defaults (gp3 0.08, gp2 0.10, io1/io2 0.125,
    /// st1 0.045, sc1 0.015, standard 0.05).
    #[serde(default)]
    pub volume_gib_month: BTreeMap<String, Decimal>,
    /// Per GiB-month of a volume of unknown or unlisted type (default 0.10).
    pub other_volume_gib_month: Option<Decimal>,
    /// Per GiB-month of snapshot storage (default 0.05).
    pub snapshot_gib_month: Option<Decimal>,
    /// Per hour of an Elastic IP (default 0.005).
    pub eip_hour: Option<Decimal>,
    /// Per GiB-month of CloudWatch Logs storage (default 0.03).
    pub log_gib_month: Option<Decimal>,
}

/// The `[cleanup]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupSection {
    /// A resource with this tag key (any value) is never a candidate (default `cloudwarden:protect`).
    #[serde(default = "default_protect_tag")]
    pub protect_tag: String,
    /// Resources with one of these tags (`key=value` or `key`) are never candidates.
    #[serde(default)]
    pub exempt_tags: Vec<String>,
    /// Resources whose ARN matches one of these globs are never candidates.
    #[serde(default)]
    pub exempt_arns: Vec<String>,
    /// No tag of its own for more than `min_days` (default 14) since first seen.
    pub untagged: Option<ThresholdEntry>,
    /// EBS volume attached to nothing, older than `min_days` (default 7).
    pub unattached_volume: Option<ThresholdEntry>,
    /// EC2 instance stopped for more than `min_days` (default 30).
    pub stopped_instance: Option<ThresholdEntry>,
    /// Elastic IP associated with nothing, older than `min_days` (default 0).
    pub unassociated_eip: Option<ThresholdEntry>,
    /// Snapshot of a volume that no longer exists, older than `min_days` (default 30).
    pub orphan_snapshot: Option<ThresholdEntry>,
    /// Log group whose events never expire, older than `min_days` (default 0).
    pub log_group_without_retention: Option<ThresholdEntry>,
    /// Prices for estimated savings.
    #[serde(default)]
    pub prices: PricesEntry,
}

impl CleanupSection {
    fn entry(&self, rule: CleanupRule) -> Option<&ThresholdEntry> {
        match rule {
            CleanupRule::Untagged => self.untagged.as_ref(),
            CleanupRule::UnattachedVolume => self.unattached_volume.as_ref(),
            CleanupRule::StoppedInstance => self.stopped_instance.as_ref(),
            CleanupRule::UnassociatedEip => self.unassociated_eip.as_ref(),
            CleanupRule::OrphanSnapshot => self.orphan_snapshot.as_ref(),
            CleanupRule::LogGroupWithoutRetention => self.log_group_without_retention.as_ref(),
        }
    }

    /// The compiled settings, or everything wrong with the section.
    pub fn compile(&self) -> Result<CleanupSettings, Vec<Problem>> {
        let mut problems = Vec::new();
        if self.protect_tag.trim().is_empty() {
            problems.push(Problem::at("protect_tag", "must not be empty"));
        }
        let exempt = Exemptions {
            tags: tag_matches("exempt_tags", &self.exempt_tags, &mut problems),
            arns: globs("exempt_arns", &self.exempt_arns, &mut problems, arn_glob),
        };
        let thresholds = CleanupRule::ALL.map(|rule| {
            let e = self.entry(rule);
            let min_days = e.and_then(|e| e.min_days).unwrap_or(rule.default_min_days());
            if min_days > 3650 {
                problems.push(Problem::at(&format!("{}.min_days", rule.name()), "must be at most 3650 (ten years)"));
            }
            Threshold { enabled: e.is_none_or(|e| e.enabled), min_days }
        });
        let mut prices = Prices::default();
        let p = &self.prices;
        for (t, v) in &p.volume_gib_month {
            prices.volume_gib_month.insert(t.clone(), *v);
        }
        let overrides = [
            (p.other_volume_gib_month, &mut prices.other_volume_gib_month),
            (p.snapshot_gib_month, &mut prices.snapshot_gib_month),
            (p.eip_hour, &mut prices.eip_hour),
            (p.log_gib_month, &mut prices.log_gib_month),
        ];
        for (value, into) in overrides {
            if let Some(v) = value {
                *into = v;
            }
        }
        let singles = [
            ("other_volume_gib_month", p.other_volume_gib_month),
            ("snapshot_gib_month", p.snapshot_gib_month),
            ("eip_hour", p.eip_hour),
            ("log_gib_month", p.log_gib_month),
        ];
        for (field, v) in singles {
            if v.is_some_and(|v| v.is_sign_negative()) {
                problems.push(Problem::at(&format!("prices.{field}"), "must not be negative"));
            }
        }
        for (t, v) in &p.volume_gib_month {
            if v.is_sign_negative() {
                problems.push(Problem {
                    path: vec![Seg::Key("prices".into()), Seg::Key("volume_gib_month".into()), Seg::Key(t.clone())],
                    message: "must not be negative".into(),
                });
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(CleanupSettings { protect_tag: self.protect_tag.clone(), exempt, thresholds, prices })
    }
}

impl Check for CleanupSection {
    fn check(&self) -> Vec<Problem> {
        self.compile().err().unwrap_or_default()
    }
}
