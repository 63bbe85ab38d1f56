//! What the rules produce: findings, each with a stable identity so the daemon can keep its first and last
//! seen times (a finding has an age, and resolves when a later evaluation no longer produces it).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The family of a finding: the `kind` of `GET /api/v1/findings?kind=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    Tagging,
    Budget,
    CostAnomaly,
    MetricAnomaly,
    Drift,
    Cleanup,
}

impl FindingKind {
    pub const ALL: [FindingKind; 6] = [
        FindingKind::Tagging,
        FindingKind::Budget,
        FindingKind::CostAnomaly,
        FindingKind::MetricAnomaly,
        FindingKind::Drift,
        FindingKind::Cleanup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Tagging => "tagging",
            FindingKind::Budget => "budget",
            FindingKind::CostAnomaly => "cost_anomaly",
            FindingKind::MetricAnomaly => "metric_anomaly",
            FindingKind::Drift => "drift",
            FindingKind::Cleanup => "cleanup",
        }
    }

    pub fn parse(s: &str) -> Option<FindingKind> {
        FindingKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How urgent a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// One thing a rule found. `(kind, rule, subject)` is its identity across evaluations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// The rule's name (from the rule file, or the built-in rule's name, e.g. `unattached_volume`).
    pub rule: String,
    /// What it is about: a resource ARN, a Terraform address, a budget name, a cost series key.
    pub subject: String,
    pub account_id: Option<String>,
    pub region: Option<String>,
    pub resource_type: Option<String>,
    pub severity: Severity,
    /// One line for people: what is wrong.
    pub message: String,
    /// Money at stake per month, in USD, where known (cost of a non-compliant or unmanaged resource,
    /// estimated saving of a cleanup candidate, overspend of a budget, impact of an anomaly).
    pub monthly_usd: Option<Decimal>,
    /// Rule-specific facts (missing tag keys, forecast, score, ...), for the API.
    pub details: serde_json::Value,
}

impl Finding {
    /// The identity of the finding across evaluations.
    pub fn key(&self) -> (FindingKind, &str, &str) {
        (self.kind, &self.rule, &self.subject)
    }
}
