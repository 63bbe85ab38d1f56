//! Tagging rules: required keys and allowed values per resource type, with exemptions.
//!
//! A rule applies to a resource when one of its `resource_types` globs matches the resource's type and no
//! exemption matches. The resource is then *in scope* of the rule; it complies when every required key is
//! present and every key with allowed values that is present has an allowed value. Each non-compliant
//! (resource, rule) pair is one [`Finding`] listing the missing keys and invalid values.
//!
//! Per (account, resource type): resources in scope of at least one rule, those compliant with every rule
//! in scope, the ratio of the two, untagged resources, and the spend of the non-compliant ones over the
//! cost window of [`CostIndex`].

use std::collections::BTreeMap;
use std::sync::Arc;

use regex::Regex;
use rust_decimal::Decimal;

use crate::cost_index::CostIndex;
use crate::fast::FastMap;
use crate::file::{Exemptions, Glob};
use crate::finding::{Details, Expected, Finding, FindingKind, InvalidValue, Severity, TaggingDetails};
use crate::input::Resource;
use crate::intern::{Interner, ResourceStrings};
use crate::money::{self, Overflow};

/// One tagging rule, compiled from a `[[tagging]]` entry.
#[derive(Debug, Clone)]
pub struct TaggingRule {
    /// Unique among all rules of all families.
    pub name: String,
    /// Resource types the rule applies to (`ec2:instance`, `ec2:*`, `*`).
    pub resource_types: Vec<Glob>,
    /// Keys every resource in scope must carry.
    pub required_keys: Vec<String>,
    /// Allowed values per key, in the file's order. A key here and not in `required_keys` is optional,
    /// but checked when present.
    pub allowed: Vec<AllowedValues>,
    /// Match keys ignoring case (`Team` satisfies `team`).
    pub ignore_key_case: bool,
    /// Compare values with the allowed list ignoring case (regexes are compiled case-insensitive).
    pub ignore_value_case: bool,
    /// Resources the rule leaves alone.
    pub exempt: Exemptions,
    pub severity: Severity,
}

/// The values a key may take.
#[derive(Debug, Clone)]
pub struct AllowedValues {
    pub key: String,
    pub allowed: Allowed,
}

/// A list of values, or a regex the whole value must match.
#[derive(Debug, Clone)]
pub enum Allowed {
    OneOf(Vec<String>),
    /// Compiled anchored (`^(?:…)$`); `pattern` is the text as written.
    Regex {
        pattern: String,
        regex: Regex,
    },
}

impl Allowed {
    fn accepts(&self, value: &str, ignore_case: bool) -> bool {
        match self {
            Allowed::OneOf(list) if ignore_case => list.iter().any(|v| caseless_eq(v, value)),
            Allowed::OneOf(list) => list.iter().any(|v| v == value),
            Allowed::Regex { regex, .. } => regex.is_match(value),
        }
    }

    fn expected(&self) -> Expected {
        match self {
            Allowed::OneOf(list) => Expected::OneOf(list.clone()),
            Allowed::Regex { pattern, .. } => Expected::Regex(pattern.clone()),
        }
    }
}

/// Equality under Unicode lower-casing, without allocating.
fn caseless_eq(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase))
}

/// The tag `key` of `tags` (its key as written and its value): exact first, then ignoring case if asked.
fn lookup<'t>(tags: &'t BTreeMap<String, String>, key: &str, ignore_case: bool) -> Option<(&'t str, &'t str)> {
    if let Some((k, v)) = tags.get_key_value(key) {
        return Some((k, v));
    }
    if ignore_case {
        return tags.iter().find(|(k, _)| caseless_eq(k, key)).map(|(k, v)| (k.as_str(), v.as_str()));
    }
    None
}

impl TaggingRule {
    /// True when the rule's types cover `resource_type`.
    pub fn covers(&self, resource_type: &str) -> bool {
        self.resource_types.iter().any(|g| g.matches(resource_type))
    }
}

/// The missing keys and message shared by findings.
type Shared = (Arc<[Arc<str>]>, Arc<str>);

/// Builds the findings of one share of the resources: the rules' names, key lists and expectations made
/// shared once, and the missing-key lists and messages of findings without invalid values shared by every
/// finding of the same (rule, resource type, missing keys) (an untagged resource lacks every required key).
struct Builder<'a> {
    /// Per rule: its name, its required keys, and its allowed values' expectations.
    names: Vec<Arc<str>>,
    required: Vec<Vec<Arc<str>>>,
    expected: Vec<Vec<Arc<Expected>>>,
    /// (rule, resource type id, bit mask of the missing required keys) → (missing keys, message).
    shared: FastMap<(u32, u32, u64), Shared>,
    strings: Interner<'a>,
}

impl<'a> Builder<'a> {
    fn new(rules: &[TaggingRule]) -> Builder<'a> {
        Builder {
            names: rules.iter().map(|r| Arc::from(r.name.as_str())).collect(),
            required: rules.iter().map(|r| r.required_keys.iter().map(|k| Arc::from(k.as_str())).collect()).collect(),
            expected: rules
                .iter()
                .map(|r| r.allowed.iter().map(|a| Arc::new(a.allowed.expected())).collect())
                .collect(),
            shared: FastMap::default(),
            strings: Interner::default(),
        }
    }

    /// The message: `ec2:instance: missing tags team, env; invalid values env="production"` (values as
    /// JSON strings).
    fn message(resource_type: &str, missing: &[Arc<str>], invalid: &[InvalidValue]) -> Arc<str> {
        let mut message = String::with_capacity(resource_type.len() + 16 + 16 * (missing.len() + invalid.len()));
        message.push_str(resource_type);
        message.push_str(": ");
        for (i, k) in missing.iter().enumerate() {
            message.push_str(if i == 0 { "missing tags " } else { ", " });
            message.push_str(k);
        }
        for (i, bad) in invalid.iter().enumerate() {
            message.push_str(match (i, missing.is_empty()) {
                (0, true) => "invalid values ",
                (0, false) => "; invalid values ",
                _ => ", ",
            });
            message.push_str(&bad.key);
            message.push('=');
            message.push_str(&serde_json::to_string(&bad.value).unwrap_or_default());
        }
        Arc::from(message)
    }

    /// The finding of rule `i` (of `rules`, planned as `plan`) for `r`, which does not comply with it.
    #[allow(clippy::too_many_arguments)]
    fn finding(
        &mut self,
        rules: &[TaggingRule],
        plan: &Plan,
        memo: &mut Memo<'a>,
        i: usize,
        r: &'a Resource,
        type_id: u32,
        strings: &ResourceStrings,
        monthly_usd: Option<Decimal>,
    ) -> Finding {
        let rule = &rules[i];
        let (required, checks) = &plan.rules[i];
        let invalid: Vec<InvalidValue> = rule
            .allowed
            .iter()
            .zip(checks)
            .zip(&self.expected[i])
            .filter(|((_, &c), _)| !memo.check(plan, r, c))
            .filter_map(|((a, _), expected)| {
                let (key, value) = lookup(&r.tags, &a.key, rule.ignore_key_case)?;
                Some(InvalidValue { key: key.to_string(), value: value.to_string(), expected: expected.clone() })
            })
            .collect();
        let is_missing = |memo: &mut Memo<'a>, k: usize| memo.value(plan, r, required[k]).is_none();
        let (missing, message) = if invalid.is_empty() && required.len() <= 64 {
            // The common case, shared: no list is built unless this (rule, type, missing keys) is new.
            let mask = (0..required.len()).filter(|&k| is_missing(memo, k)).fold(0u64, |m, k| m | (1 << k));
            let keys = &self.required[i];
            self.shared
                .entry((i as u32, type_id, mask))
                .or_insert_with(|| {
                    let missing: Arc<[Arc<str>]> =
                        (0..keys.len()).filter(|&k| mask & (1 << k) != 0).map(|k| keys[k].clone()).collect();
                    let message = Self::message(&r.resource_type, &missing, &[]);
                    (missing, message)
                })
                .clone()
        } else {
            let missing: Arc<[Arc<str>]> =
                (0..required.len()).filter(|&k| is_missing(memo, k)).map(|k| self.required[i][k].clone()).collect();
            let message = Self::message(&r.resource_type, &missing, &invalid);
            (missing, message)
        };
        Finding {
            kind: FindingKind::Tagging,
            rule: self.names[i].clone(),
            subject: strings.subject.clone(),
            account_id: Some(strings.account_id.clone()),
            region: Some(strings.region.clone()),
            resource_type: Some(strings.resource_type.clone()),
            severity: rule.severity,
            message,
            monthly_usd,
            details: Details::Tagging(TaggingDetails { missing, invalid }),
        }
    }
}

/// Tag compliance of one (account, resource type).
#[derive(Debug, Clone, PartialEq)]
pub struct Compliance {
    pub account_id: String,
    pub resource_type: String,
    /// Resources of this account and type.
    pub resources: u64,
    /// Of those, carrying no tag of their own.
    pub untagged: u64,
    /// Resources in scope of at least one rule (not exempt from it).
    pub in_scope: u64,
    /// Of those, compliant with every rule in scope.
    pub compliant: u64,
    /// Spend of the non-compliant resources over the cost window (a monthly figure), where billing data
    /// has per-resource cost.
    pub non_compliant_monthly_usd: Decimal,
}

impl Compliance {
    /// `compliant / in_scope` in 0..=1; `None` when no resource is in scope.
    pub fn ratio(&self) -> Option<f64> {
        (self.in_scope > 0).then(|| self.compliant as f64 / self.in_scope as f64)
    }
}

/// What the tagging rules found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaggingEvaluation {
    /// One per non-compliant (resource, rule), in input order.
    pub findings: Vec<Finding>,
    /// Per (account, resource type), sorted by both.
    pub compliance: Vec<Compliance>,
}

impl TaggingEvaluation {
    /// Joins the evaluations of two disjoint sets of resources; fails when a sum of costs leaves the decimal
    /// range.
    pub fn merge(mut self, other: TaggingEvaluation) -> Result<TaggingEvaluation, Overflow> {
        self.findings.extend(other.findings);
        let mut groups: BTreeMap<(String, String), Compliance> = BTreeMap::new();
        for c in self.compliance.into_iter().chain(other.compliance) {
            match groups.get_mut(&(c.account_id.clone(), c.resource_type.clone())) {
                Some(g) => {
                    g.resources += c.resources;
                    g.untagged += c.untagged;
                    g.in_scope += c.in_scope;
                    g.compliant += c.compliant;
                    money::add_to(&mut g.non_compliant_monthly_usd, c.non_compliant_monthly_usd)?;
                }
                None => {
                    groups.insert((c.account_id.clone(), c.resource_type.clone()), c);
                }
            }
        }
        self.compliance = groups.into_values().collect();
        Ok(self)
    }
}

#[derive(Default)]
struct Counts {
    resources: u64,
    untagged: u64,
    in_scope: u64,
    compliant: u64,
    cost: Decimal,
}

/// The rules prepared for evaluation: each distinct (key, ignore case) is a slot looked up at most once
/// per resource, each distinct value constraint a check run at most once per resource, however many
/// rules share them.
struct Plan<'r> {
    /// Slot → (key, ignore case).
    keys: Vec<(&'r str, bool)>,
    /// Check → (slot, allowed values, ignore value case).
    checks: Vec<(usize, &'r Allowed, bool)>,
    /// Per rule: slots of its required keys, and its checks.
    rules: Vec<(Vec<usize>, Vec<usize>)>,
    /// Distinct exemptions of the rules.
    exemptions: Vec<&'r Exemptions>,
    /// Per rule: its exemption, when it has one.
    exempt: Vec<Option<usize>>,
    /// Key as written → the slots of that key (with and without ignoring case).
    by_key: FastMap<&'r str, Vec<usize>>,
}

fn same_allowed(a: &Allowed, b: &Allowed) -> bool {
    match (a, b) {
        (Allowed::OneOf(x), Allowed::OneOf(y)) => x == y,
        (Allowed::Regex { pattern: x, .. }, Allowed::Regex { pattern: y, .. }) => x == y,
        _ => false,
    }
}

impl<'r> Plan<'r> {
    fn new(rules: &'r [TaggingRule]) -> Plan<'r> {
        let mut plan = Plan {
            keys: Vec::new(),
            checks: Vec::new(),
            rules: Vec::new(),
            exemptions: Vec::new(),
            exempt: Vec::new(),
            by_key: FastMap::default(),
        };
        for rule in rules {
            let exempt =
                (!rule.exempt.is_empty()).then(|| match plan.exemptions.iter().position(|e| **e == rule.exempt) {
                    Some(i) => i,
                    None => {
                        plan.exemptions.push(&rule.exempt);
                        plan.exemptions.len() - 1
                    }
                });
            plan.exempt.push(exempt);
            let mut slot = |key: &'r str| match plan.keys.iter().position(|k| *k == (key, rule.ignore_key_case)) {
                Some(i) => i,
                None => {
                    plan.keys.push((key, rule.ignore_key_case));
                    plan.keys.len() - 1
                }
            };
            let required: Vec<usize> = rule.required_keys.iter().map(|k| slot(k)).collect();
            let slots: Vec<usize> = rule.allowed.iter().map(|a| slot(&a.key)).collect();
            let checks = rule
                .allowed
                .iter()
                .zip(slots)
                .map(|(a, s)| {
                    let same = |c: &(usize, &Allowed, bool)| {
                        c.0 == s && c.2 == rule.ignore_value_case && same_allowed(c.1, &a.allowed)
                    };
                    match plan.checks.iter().position(same) {
                        Some(i) => i,
                        None => {
                            plan.checks.push((s, &a.allowed, rule.ignore_value_case));
                            plan.checks.len() - 1
                        }
                    }
                })
                .collect();
            plan.rules.push((required, checks));
        }
        for (slot, (key, _)) in plan.keys.iter().enumerate() {
            plan.by_key.entry(*key).or_default().push(slot);
        }
        plan
    }
}

/// A value of at most [`Short::MAX`] bytes, held inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Short {
    len: u8,
    bytes: [u8; Short::MAX],
}

impl Short {
    const MAX: usize = 23;

    fn new(s: &str) -> Option<Short> {
        let mut bytes = [0u8; Short::MAX];
        bytes.get_mut(..s.len())?.copy_from_slice(s.as_bytes());
        Some(Short { len: s.len() as u8, bytes })
    }
}

/// Per-resource memo of slot values, check results and exemptions, reused across resources (no
/// allocation).
struct Memo<'a> {
    values: Vec<Option<Option<&'a str>>>,
    checks: Vec<Option<bool>>,
    exempt: Vec<Option<bool>>,
    /// Results of regex checks by (check, value), kept across resources: tag values repeat across an
    /// inventory far more than they differ, and a regex match costs much more than a lookup. Values are
    /// kept inline ([`Short`]): comparing a key never reads another resource's memory. Cleared when
    /// it reaches [`Memo::REGEX_CACHE`] entries.
    regex: FastMap<(u32, Short), bool>,
}

impl<'a> Memo<'a> {
    /// The most regex results kept.
    const REGEX_CACHE: usize = 1 << 16;

    fn reset(&mut self) {
        self.values.fill(None);
        self.checks.fill(None);
        self.exempt.fill(None);
    }

    /// True when rule `rule` leaves `r` alone.
    fn exempts(&mut self, plan: &Plan, r: &Resource, rule: usize) -> bool {
        let Some(e) = plan.exempt[rule] else {
            return false;
        };
        *self.exempt[e].get_or_insert_with(|| plan.exemptions[e].exempts(&r.arn, &r.tags))
    }

    /// Starts resource `r`: forgets the previous one and records the value of every slot whose key `r`
    /// carries exactly, in one pass over its tags (one hash lookup per tag rather than a tree search per
    /// slot).
    fn start(&mut self, plan: &Plan, r: &'a Resource) {
        self.reset();
        for (k, v) in &r.tags {
            if let Some(slots) = plan.by_key.get(k.as_str()) {
                for &slot in slots {
                    self.values[slot] = Some(Some(v.as_str()));
                }
            }
        }
    }

    /// The value of `slot` for `r`, once [`Memo::start`] has run for `r`: a slot it left unknown has no
    /// exact key, so only a key differing in case can still match.
    fn value(&mut self, plan: &Plan, r: &'a Resource, slot: usize) -> Option<&'a str> {
        *self.values[slot].get_or_insert_with(|| {
            let (key, ignore_case) = plan.keys[slot];
            if !ignore_case {
                return None;
            }
            r.tags.iter().find(|(k, _)| caseless_eq(k, key)).map(|(_, v)| v.as_str())
        })
    }

    /// True when the check passes (an absent key passes: presence is `required_keys`' job).
    fn check(&mut self, plan: &Plan, r: &'a Resource, check: usize) -> bool {
        if let Some(ok) = self.checks[check] {
            return ok;
        }
        let (slot, allowed, ignore_case) = plan.checks[check];
        let ok = match self.value(plan, r, slot) {
            None => true,
            Some(v) if matches!(allowed, Allowed::Regex { .. }) => match Short::new(v) {
                Some(short) => {
                    let key = (check as u32, short);
                    if let Some(&ok) = self.regex.get(&key) {
                        ok
                    } else {
                        if self.regex.len() >= Self::REGEX_CACHE {
                            self.regex.clear();
                        }
                        let ok = allowed.accepts(v, ignore_case);
                        self.regex.insert(key, ok);
                        ok
                    }
                }
                None => allowed.accepts(v, ignore_case),
            },
            Some(v) => allowed.accepts(v, ignore_case),
        };
        self.checks[check] = Some(ok);
        ok
    }
}

/// Evaluates every rule against every resource; fails when a sum of costs leaves the decimal range.
pub fn evaluate(
    rules: &[TaggingRule],
    resources: &[Resource],
    costs: &CostIndex,
) -> Result<TaggingEvaluation, Overflow> {
    let scan = scan(rules, resources, 0, costs)?;
    Ok(TaggingEvaluation { findings: scan.findings, compliance: scan.compliance })
}

/// What [`scan`] found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// (resource index, rule index) of every non-compliant pair, in resource then rule order; the
    /// resource index counts from the start of the whole inventory.
    pub hits: Vec<(u32, u32)>,
    /// The finding of each pair of `hits`.
    pub findings: Vec<Finding>,
    /// Per (account, resource type), sorted by both.
    pub compliance: Vec<Compliance>,
}

/// Evaluates every rule against `resources`, the share of the inventory starting at index `offset`,
/// recording each non-compliant pair with its finding (the pairs let the caller order the findings
/// without reading them).
pub(crate) fn scan(
    rules: &[TaggingRule],
    resources: &[Resource],
    offset: u32,
    costs: &CostIndex,
) -> Result<Scan, Overflow> {
    let plan = Plan::new(rules);
    let mut memo = Memo {
        values: vec![None; plan.keys.len()],
        checks: vec![None; plan.checks.len()],
        exempt: vec![None; plan.exemptions.len()],
        regex: FastMap::default(),
    };
    let mut builder = Builder::new(rules);
    // Rules in scope per resource type, computed once per distinct type, with the type's number.
    let mut by_type: FastMap<&str, (u32, Vec<usize>)> = FastMap::default();
    let mut groups: FastMap<(&str, &str), Counts> = FastMap::default();
    let mut hits = Vec::new();
    let mut findings = Vec::new();
    for (r, index) in resources.iter().zip(offset..) {
        let types = by_type.len() as u32;
        let (type_id, applicable) = by_type.entry(r.resource_type.as_str()).or_insert_with(|| {
            let applicable = (0..rules.len()).filter(|&i| rules[i].covers(&r.resource_type)).collect();
            (types, applicable)
        });
        memo.start(&plan, r);
        let mut in_scope = false;
        let mut compliant = true;
        let mut cost: Option<Option<Decimal>> = None;
        let mut strings: Option<ResourceStrings> = None;
        for &i in applicable.iter() {
            if memo.exempts(&plan, r, i) {
                continue;
            }
            in_scope = true;
            let (required, checks) = &plan.rules[i];
            let complies = required.iter().all(|&s| memo.value(&plan, r, s).is_some())
                && checks.iter().all(|&c| memo.check(&plan, r, c));
            if complies {
                continue;
            }
            compliant = false;
            let monthly = match cost {
                Some(c) => c,
                None => *cost.insert(costs.monthly(r)?),
            };
            let strings = strings.get_or_insert_with(|| builder.strings.resource(r));
            hits.push((index, i as u32));
            findings.push(builder.finding(rules, &plan, &mut memo, i, r, *type_id, strings, monthly));
        }
        let g = groups.entry((r.account_id.as_str(), r.resource_type.as_str())).or_default();
        g.resources += 1;
        g.untagged += u64::from(r.is_untagged());
        if in_scope {
            g.in_scope += 1;
            if compliant {
                g.compliant += 1;
            } else if let Some(Some(c)) = cost {
                money::add_to(&mut g.cost, c)?;
            }
        }
    }
    let mut compliance: Vec<Compliance> = groups
        .into_iter()
        .map(|((account, rtype), c)| Compliance {
            account_id: account.to_string(),
            resource_type: rtype.to_string(),
            resources: c.resources,
            untagged: c.untagged,
            in_scope: c.in_scope,
            compliant: c.compliant,
            non_compliant_monthly_usd: c.cost,
        })
        .collect();
    compliance.sort_by(|a, b| (&a.account_id, &a.resource_type).cmp(&(&b.account_id, &b.resource_type)));
    Ok(Scan { hits, findings, compliance })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::parse_rule_file;
    use crate::test_support::{at, costs_for, res};
    use serde_json::{json, Value};

    /// Parses `rules` (`[[tagging]]` entries), evaluates them and compares `(rule, subject, details)` of
    /// every finding with `want`.
    fn check(rules: &str, resources: &[Resource], want: &[(&str, &str, Value)]) -> TaggingEvaluation {
        let file = parse_rule_file("test.toml", rules).unwrap_or_else(|e| panic!("{e}"));
        let costs = CostIndex::build(&[], at(0)).unwrap();
        let eval = evaluate(&file.tagging, resources, &costs).unwrap();
        let got: Vec<(&str, &str, Value)> =
            eval.findings.iter().map(|f| (&*f.rule, &*f.subject, f.details.to_json())).collect();
        let want: Vec<(&str, &str, Value)> = want.to_vec();
        assert_eq!(got, want, "findings of\n{rules}");
        eval
    }

    const TEAM_ENV: &str = r#"
[[tagging]]
name = "team-env"
resource_types = ["ec2:*"]
required_keys = ["team", "env"]
[tagging.allowed_values]
env = ["prod", "dev"]
[tagging.allowed_patterns]
cost-center = "cc-[0-9]{4}"
"#;

    #[test]
    fn required_and_allowed() {
        let ok = res("ec2:instance", "i-ok", &[("team", "a"), ("env", "prod")]);
        let missing = res("ec2:volume", "vol-1", &[("env", "prod")]);
        let invalid = res("ec2:instance", "i-bad", &[("team", "a"), ("env", "production")]);
        let both = res("ec2:instance", "i-both", &[("env", "qa"), ("cost-center", "cc-12")]);
        let out_of_scope = res("s3:bucket", "logs", &[]);
        let ci_ok = res("ec2:instance", "i-cc", &[("team", "a"), ("env", "dev"), ("cost-center", "cc-1234")]);
        let ci_sub = res("ec2:instance", "i-sub", &[("team", "a"), ("env", "dev"), ("cost-center", "xcc-1234")]);
        let e = check(
            TEAM_ENV,
            &[ok, missing.clone(), invalid.clone(), both.clone(), out_of_scope, ci_ok, ci_sub.clone()],
            &[
                ("team-env", &missing.arn, json!({"missing": ["team"], "invalid": []})),
                (
                    "team-env",
                    &invalid.arn,
                    json!({"missing": [], "invalid": [{"key": "env", "value": "production", "expected": ["prod", "dev"]}]}),
                ),
                (
                    "team-env",
                    &both.arn,
                    json!({"missing": ["team"], "invalid": [
                        {"key": "env", "value": "qa", "expected": ["prod", "dev"]},
                        {"key": "cost-center", "value": "cc-12", "expected": {"regex": "cc-[0-9]{4}"}},
                    ]}),
                ),
                (
                    "team-env",
                    &ci_sub.arn,
                    json!({"missing": [], "invalid": [
                        {"key": "cost-center", "value": "xcc-1234", "expected": {"regex": "cc-[0-9]{4}"}},
                    ]}),
                ),
            ],
        );
        let instances = e.compliance.iter().find(|c| c.resource_type == "ec2:instance").unwrap();
        assert_eq!((instances.in_scope, instances.compliant, instances.resources), (5, 2, 5));
        assert_eq!(instances.ratio(), Some(0.4));
        let buckets = e.compliance.iter().find(|c| c.resource_type == "s3:bucket").unwrap();
        assert_eq!((buckets.in_scope, buckets.untagged, buckets.ratio()), (0, 1, None));
    }

    #[test]
    fn key_and_value_case() {
        let rules = r#"
[[tagging]]
name = "strict"
required_keys = ["team"]
[tagging.allowed_values]
env = ["prod"]

[[tagging]]
name = "relaxed"
required_keys = ["team"]
ignore_key_case = true
ignore_value_case = true
[tagging.allowed_values]
env = ["prod"]
[tagging.allowed_patterns]
tier = "web|db"
"#;
        let r = res("ec2:instance", "i-1", &[("Team", "a"), ("ENV", "PROD"), ("Tier", "WEB")]);
        let unicode = res("ec2:instance", "i-2", &[("TEAM", "a"), ("Env", "Prod")]);
        check(
            rules,
            &[r.clone(), unicode.clone()],
            &[
                ("strict", &r.arn, json!({"missing": ["team"], "invalid": []})),
                ("strict", &unicode.arn, json!({"missing": ["team"], "invalid": []})),
            ],
        );
    }

    #[test]
    fn exemptions_by_tag_and_arn() {
        let rules = r#"
[[tagging]]
name = "team"
required_keys = ["team"]
exempt_tags = ["cloudwarden:exempt", "env=sandbox"]
exempt_arns = ["arn:aws:ec2:*:222222222222:*"]
"#;
        let by_key = res("ec2:instance", "i-1", &[("cloudwarden:exempt", "yes")]);
        let by_value = res("ec2:instance", "i-2", &[("env", "sandbox")]);
        let other_value = res("ec2:instance", "i-3", &[("env", "prod")]);
        let mut by_arn = res("ec2:instance", "i-4", &[]);
        by_arn.arn = "arn:aws:ec2:eu-west-1:222222222222:instance/i-4".into();
        by_arn.account_id = "222222222222".into();
        let e = check(
            rules,
            &[by_key, by_value, other_value.clone(), by_arn],
            &[("team", &other_value.arn, json!({"missing": ["team"], "invalid": []}))],
        );
        // Exempt resources are not in scope: 1 of 3 in the first account, none in the second.
        assert_eq!(e.compliance[0].in_scope, 1);
        assert_eq!(e.compliance[1].in_scope, 0);
    }

    #[test]
    fn cost_of_non_compliant() {
        let file = parse_rule_file("t.toml", TEAM_ENV).unwrap();
        let bad = res("ec2:instance", "i-bad", &[]);
        let good = res("ec2:instance", "i-good", &[("team", "a"), ("env", "dev")]);
        let costs =
            costs_for(0, &[(&bad.arn, 1, "2.50"), ("i-bad", 2, "1.25"), (&good.arn, 1, "9"), (&bad.arn, 31, "100")]);
        let index = CostIndex::build(&costs, at(0)).unwrap();
        let e = evaluate(&file.tagging, &[bad, good], &index).unwrap();
        assert_eq!(e.findings[0].monthly_usd, Some(Decimal::new(375, 2)));
        assert_eq!(e.compliance[0].non_compliant_monthly_usd, Decimal::new(375, 2));
    }
}
