//! What the rules produce: findings, each with a stable identity so the daemon can keep its first and last
//! seen times (a finding has an age, and resolves when a later evaluation no longer produces it).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

impl Severity {
    /// Every severity, least urgent first.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    /// `info`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One thing a rule found. `(kind, rule, subject)` is its identity across evaluations.
///
/// The strings are shared (`Arc<str>`): the findings of one resource share its ARN, account, region and
/// type, and those of one rule its name, so an evaluation with a million findings does not copy them a
/// million times. Build them from owned or borrowed strings with `.into()`:
///
/// ```
/// use rules::finding::{Finding, FindingKind, Severity};
///
/// let f = Finding {
///     kind: FindingKind::MetricAnomaly,
///     rule: "latency".into(),
///     subject: format!("{}/{}", "api", "p99").into(),
///     account_id: Some("111111111111".into()),
///     region: None,
///     resource_type: None,
///     severity: Severity::Warning,
///     message: "p99 latency above its usual level".into(),
///     monthly_usd: None,
///     // Free-form details: any JSON value.
///     details: serde_json::json!({ "score": 0.93 }).into(),
/// };
/// assert_eq!(f.details.to_json()["score"], 0.93);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// The rule's name (from the rule file, or the built-in rule's name, e.g. `unattached_volume`).
    #[serde(with = "shared")]
    pub rule: Arc<str>,
    /// What it is about: a resource ARN, a Terraform address, a budget name, a cost series key.
    #[serde(with = "shared")]
    pub subject: Arc<str>,
    #[serde(with = "shared_opt")]
    pub account_id: Option<Arc<str>>,
    #[serde(with = "shared_opt")]
    pub region: Option<Arc<str>>,
    #[serde(with = "shared_opt")]
    pub resource_type: Option<Arc<str>>,
    pub severity: Severity,
    /// One line for people: what is wrong.
    #[serde(with = "shared")]
    pub message: Arc<str>,
    /// Money at stake per month, in USD, where known (cost of a non-compliant or unmanaged resource,
    /// estimated saving of a cleanup candidate, overspend of a budget, impact of an anomaly).
    pub monthly_usd: Option<Decimal>,
    /// Rule-specific facts (missing tag keys, forecast, score, ...), for the API.
    pub details: Details,
}

impl Finding {
    /// The identity of the finding across evaluations.
    pub fn key(&self) -> (FindingKind, &str, &str) {
        (self.kind, &self.rule, &self.subject)
    }
}

/// `Arc<str>` as a JSON string (serde's own impls need its `rc` feature).
mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(d).map(Arc::from)
    }
}

/// `Option<Arc<str>>` as a JSON string or null.
mod shared_opt {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&**v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
        Option::<String>::deserialize(d).map(|v| v.map(Arc::from))
    }
}

/// The details of a finding: typed for the families that produce findings by the million (tagging,
/// cleanup), free-form JSON for the others. Either way they serialize to one JSON object, which is what
/// the store keeps and the API returns; [`Details::to_json`] gives it as a value.
///
/// Free-form details: `Details::Json(json!({...}))`, or `json!({...}).into()`.
///
/// Equality is equality of the JSON: typed details equal the `Json` details of the same object.
/// Deserializing always gives `Json`.
#[derive(Debug, Clone)]
pub enum Details {
    /// `{"missing": [...], "invalid": [...]}` of a tagging finding.
    Tagging(TaggingDetails),
    /// `{"reason", "since", "age_days", "min_days", "saving_source"}` of a cleanup finding.
    Cleanup(CleanupDetails),
    /// Any JSON value.
    Json(serde_json::Value),
}

impl Details {
    /// The details as a JSON value (what they serialize to).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Details::Json(v) => v.clone(),
            // Serializing our own types into a value cannot fail (string keys, no non-finite floats).
            typed => serde_json::to_value(typed).unwrap_or(serde_json::Value::Null),
        }
    }
}

impl Default for Details {
    /// `null`.
    fn default() -> Details {
        Details::Json(serde_json::Value::Null)
    }
}

impl From<serde_json::Value> for Details {
    fn from(v: serde_json::Value) -> Details {
        Details::Json(v)
    }
}

impl PartialEq for Details {
    fn eq(&self, other: &Details) -> bool {
        match (self, other) {
            (Details::Tagging(a), Details::Tagging(b)) => a == b,
            (Details::Cleanup(a), Details::Cleanup(b)) => a == b,
            (Details::Json(a), Details::Json(b)) => a == b,
            (a, b) => a.to_json() == b.to_json(),
        }
    }
}

impl PartialEq<serde_json::Value> for Details {
    fn eq(&self, other: &serde_json::Value) -> bool {
        match self {
            Details::Json(v) => v == other,
            typed => typed.to_json() == *other,
        }
    }
}

impl Serialize for Details {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Details::Tagging(d) => d.serialize(s),
            Details::Cleanup(d) => d.serialize(s),
            Details::Json(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Details {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Details, D::Error> {
        serde_json::Value::deserialize(d).map(Details::Json)
    }
}

/// What a tagging finding found wrong. Serializes as `{"invalid": [...], "missing": [...]}` (keys in
/// byte order, as a JSON map is stored).
#[derive(Debug, Clone, PartialEq)]
pub struct TaggingDetails {
    /// Required keys the resource lacks, in the rule's order (shared by the findings that lack the same
    /// keys).
    pub missing: Arc<[Arc<str>]>,
    /// Present keys whose values are not allowed, in the rule's order.
    pub invalid: Vec<InvalidValue>,
}

impl Serialize for TaggingDetails {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("invalid", &self.invalid)?;
        m.serialize_entry("missing", &Strs(&self.missing))?;
        m.end()
    }
}

/// A list of shared strings as a JSON array.
struct Strs<'a>(&'a [Arc<str>]);

impl Serialize for Strs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|v| &**v))
    }
}

/// A tag whose value a rule does not allow: `{"expected": ..., "key": ..., "value": ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidValue {
    /// The key as the resource spells it.
    pub key: String,
    pub value: String,
    pub expected: Arc<Expected>,
}

impl Serialize for InvalidValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("expected", &*self.expected)?;
        m.serialize_entry("key", &self.key)?;
        m.serialize_entry("value", &self.value)?;
        m.end()
    }
}

/// What a key's value should be: the list of allowed values (`[...]`), or a pattern (`{"regex": "..."}`).
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    OneOf(Vec<String>),
    Regex(String),
}

impl Serialize for Expected {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Expected::OneOf(list) => list.serialize(s),
            Expected::Regex(pattern) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("regex", pattern)?;
                m.end()
            }
        }
    }
}

/// Why a resource is a cleanup candidate. Serializes as
/// `{"age_days", "min_days", "reason", "saving_source", "since"}` (keys in byte order, `since` in RFC 3339).
#[derive(Debug, Clone, PartialEq)]
pub struct CleanupDetails {
    /// For people: `unattached gp3 volume of 100 GiB`.
    pub reason: Arc<str>,
    /// Where the age is counted from.
    pub since: DateTime<Utc>,
    pub age_days: i64,
    /// The rule's threshold.
    pub min_days: u32,
    /// Where the saving comes from: `billing`, `price_table` or `unknown`.
    pub saving_source: &'static str,
}

impl Serialize for CleanupDetails {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("age_days", &self.age_days)?;
        m.serialize_entry("min_days", &self.min_days)?;
        m.serialize_entry("reason", &*self.reason)?;
        m.serialize_entry("saving_source", self.saving_source)?;
        m.serialize_entry("since", &self.since.to_rfc3339())?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    #[test]
    fn severities_and_kinds_round_trip() {
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for k in FindingKind::ALL {
            assert_eq!(FindingKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert_eq!(Severity::parse("fatal"), None);
    }

    /// Typed details serialize to the same JSON text as the value they stand for (keys in byte order).
    #[test]
    fn typed_details_are_their_json() {
        let tagging = Details::Tagging(TaggingDetails {
            missing: vec![Arc::from("team"), Arc::from("env")].into(),
            invalid: vec![
                InvalidValue {
                    key: "env".into(),
                    value: "qa \"x\"".into(),
                    expected: Arc::new(Expected::OneOf(vec!["prod".into(), "dev".into()])),
                },
                InvalidValue {
                    key: "cost-center".into(),
                    value: "cc-12".into(),
                    expected: Arc::new(Expected::Regex("cc-[0-9]{4}".into())),
                },
            ],
        });
        let tagging_json = json!({"missing": ["team", "env"], "invalid": [
            {"key": "env", "value": "qa \"x\"", "expected": ["prod", "dev"]},
            {"key": "cost-center", "value": "cc-12", "expected": {"regex": "cc-[0-9]{4}"}},
        ]});
        let since = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().unwrap();
        let cleanup = Details::Cleanup(CleanupDetails {
            reason: "unattached gp3 volume of 100 GiB".into(),
            since,
            age_days: 40,
            min_days: 7,
            saving_source: "price_table",
        });
        let cleanup_json = json!({
            "reason": "unattached gp3 volume of 100 GiB",
            "since": since.to_rfc3339(),
            "age_days": 40,
            "min_days": 7,
            "saving_source": "price_table",
        });
        for (typed, value) in [(tagging, tagging_json), (cleanup, cleanup_json)] {
            assert_eq!(serde_json::to_string(&typed).unwrap(), value.to_string());
            assert_eq!(typed.to_json(), value);
            assert_eq!(typed, Details::from(value.clone()));
            assert_eq!(typed, value);
        }
        assert_ne!(Details::from(json!({"missing": []})), Details::default());
    }
}
