//! Cleanup candidates: resources that cost money and look abandoned, each with a reason and an estimated
//! monthly saving.
//!
//! | rule | candidate when | age counted from |
//! |---|---|---|
//! | `untagged` | no tag of its own (`aws:` tags do not count) | `first_seen` |
//! | `unattached_volume` | an EBS volume attached to nothing | `created_at`, else `first_seen` |
//! | `stopped_instance` | an EC2 instance in state `stopped` | `stopped_at`, else `first_seen` |
//! | `unassociated_eip` | an Elastic IP associated with nothing | `created_at`, else `first_seen` |
//! | `orphan_snapshot` | an EBS snapshot whose source volume is not among the live resources | `created_at`, else `first_seen` |
//! | `log_group_without_retention` | a log group whose events never expire | `created_at`, else `first_seen` |
//!
//! A rule fires when the age is more than its `min_days` (0: at any age). Protected resources (the
//! protection tag, with any value) and exempt ones (by tag or ARN glob) are never candidates.
//!
//! The saving is the resource's billed cost over the cost window of [`CostIndex`] where billing data has
//! it, else an estimate from [`Prices`] (see [`estimate`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

use crate::cost_index::CostIndex;
use crate::fast::FastSet;
use crate::file::Exemptions;
use crate::finding::{CleanupDetails, Details as FindingDetails, Finding, FindingKind, Severity};
use crate::input::{Details, Resource};
use crate::intern::{Interner, ResourceStrings};
use crate::money::{self, Overflow};

/// The default protection tag key: a resource carrying it (any value) is never a candidate.
pub const DEFAULT_PROTECT_TAG: &str = "cloudwarden:protect";

/// Hours in a month, as AWS prices hourly charges per month (365 × 24 / 12).
pub const HOURS_PER_MONTH: i64 = 730;

/// The volume id AWS reports for snapshots copied from other snapshots or registered with AMIs: there
/// never was such a volume, so such snapshots are never orphans.
const NO_VOLUME: &str = "vol-ffffffff";

/// The cleanup rules, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CleanupRule {
    Untagged,
    UnattachedVolume,
    StoppedInstance,
    UnassociatedEip,
    OrphanSnapshot,
    LogGroupWithoutRetention,
}

impl CleanupRule {
    pub const ALL: [CleanupRule; 6] = [
        CleanupRule::Untagged,
        CleanupRule::UnattachedVolume,
        CleanupRule::StoppedInstance,
        CleanupRule::UnassociatedEip,
        CleanupRule::OrphanSnapshot,
        CleanupRule::LogGroupWithoutRetention,
    ];

    /// The rule's name in findings, metrics and the `[cleanup]` section.
    pub fn name(self) -> &'static str {
        match self {
            CleanupRule::Untagged => "untagged",
            CleanupRule::UnattachedVolume => "unattached_volume",
            CleanupRule::StoppedInstance => "stopped_instance",
            CleanupRule::UnassociatedEip => "unassociated_eip",
            CleanupRule::OrphanSnapshot => "orphan_snapshot",
            CleanupRule::LogGroupWithoutRetention => "log_group_without_retention",
        }
    }

    /// The default `min_days`.
    pub fn default_min_days(self) -> u32 {
        match self {
            CleanupRule::Untagged => 14,
            CleanupRule::UnattachedVolume => 7,
            CleanupRule::StoppedInstance => 30,
            CleanupRule::UnassociatedEip => 0,
            CleanupRule::OrphanSnapshot => 30,
            CleanupRule::LogGroupWithoutRetention => 0,
        }
    }
}

/// One rule's switch and threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub enabled: bool,
    /// Candidate when older than this many days; 0: at any age.
    pub min_days: u32,
}

/// Prices for the estimate when billing data has no cost for a candidate, in USD. Defaults: AWS's public
/// us-east-1 list prices.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    /// Per GiB-month of an EBS volume, by volume type (`gp3`, `gp2`, `io1`, ...).
    pub volume_gib_month: BTreeMap<String, Decimal>,
    /// Per GiB-month of a volume whose type is unknown or not in `volume_gib_month`.
    pub other_volume_gib_month: Decimal,
    /// Per GiB-month of an EBS snapshot (standard tier).
    pub snapshot_gib_month: Decimal,
    /// Per hour of a public IPv4 address (Elastic IPs are charged whether associated or not).
    pub eip_hour: Decimal,
    /// Per GiB-month of CloudWatch Logs storage.
    pub log_gib_month: Decimal,
}

impl Default for Prices {
    fn default() -> Prices {
        let d = |cents_milli: i64| Decimal::new(cents_milli, 3);
        Prices {
            volume_gib_month: [
                ("gp3", d(80)),
                ("gp2", d(100)),
                ("io1", d(125)),
                ("io2", d(125)),
                ("st1", d(45)),
                ("sc1", d(15)),
                ("standard", d(50)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            other_volume_gib_month: d(100),
            snapshot_gib_month: d(50),
            eip_hour: d(5),
            log_gib_month: d(30),
        }
    }
}

/// The `[cleanup]` section, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanupSettings {
    /// A resource with this tag key (any value) is never a candidate.
    pub protect_tag: String,
    /// Resources never candidates for any rule.
    pub exempt: Exemptions,
    /// Per rule, indexed like [`CleanupRule::ALL`].
    pub thresholds: [Threshold; 6],
    pub prices: Prices,
}

impl Default for CleanupSettings {
    fn default() -> CleanupSettings {
        CleanupSettings {
            protect_tag: DEFAULT_PROTECT_TAG.to_string(),
            exempt: Exemptions::default(),
            thresholds: CleanupRule::ALL.map(|r| Threshold { enabled: true, min_days: r.default_min_days() }),
            prices: Prices::default(),
        }
    }
}

impl CleanupSettings {
    /// The threshold of `rule`.
    pub fn threshold(&self, rule: CleanupRule) -> Threshold {
        self.thresholds[rule as usize]
    }

    /// True when `r` may never be a candidate.
    pub fn protects(&self, r: &Resource) -> bool {
        r.tags.contains_key(&self.protect_tag) || self.exempt.exempts(&r.arn, &r.tags)
    }
}

/// The estimated monthly cost of `r` from the price table, where its details allow one:
/// volumes size × price of their type; snapshots their source volume's size × snapshot price (an upper
/// bound: snapshots are incremental); Elastic IPs 730 hours × hourly price; log groups stored bytes in GiB ×
/// storage price. Instances and other resources: none (a stopped instance's cost is its volumes, which
/// are candidates of their own). `None` as well when a product leaves the decimal range (an absurd price).
pub fn estimate(r: &Resource, prices: &Prices) -> Option<Decimal> {
    match &r.details {
        Details::Volume { size_gib: Some(size), volume_type, .. } => {
            let price = volume_type
                .as_deref()
                .and_then(|t| prices.volume_gib_month.get(t))
                .unwrap_or(&prices.other_volume_gib_month);
            Decimal::from(*size).checked_mul(*price)
        }
        Details::Snapshot { size_gib: Some(size), .. } => Decimal::from(*size).checked_mul(prices.snapshot_gib_month),
        Details::ElasticIp { .. } => Decimal::from(HOURS_PER_MONTH).checked_mul(prices.eip_hour),
        Details::LogGroup { stored_bytes: Some(bytes), .. } => {
            (Decimal::from(*bytes) / Decimal::from(1i64 << 30)).checked_mul(prices.log_gib_month)
        }
        _ => None,
    }
    .map(|d| d.round_dp(4))
}

/// Candidates and savings of one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSavings {
    pub rule: CleanupRule,
    pub candidates: u64,
    /// Sum of the candidates' known savings per month.
    pub monthly_usd: Decimal,
}

/// What the cleanup rules found.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanupEvaluation {
    /// One per (candidate, rule), in input order.
    pub findings: Vec<Finding>,
    /// Every enabled rule, in [`CleanupRule::ALL`] order.
    pub by_rule: Vec<RuleSavings>,
    /// Resources that are candidates of at least one rule.
    pub candidates: u64,
    /// Known savings per month counting each resource once (a resource both untagged and unattached is
    /// saved once), unlike the sum over `by_rule`.
    pub monthly_usd: Decimal,
}

impl CleanupEvaluation {
    /// Joins the evaluations of two disjoint sets of resources; fails when a sum of savings leaves the
    /// decimal range.
    pub fn merge(mut self, other: CleanupEvaluation) -> Result<CleanupEvaluation, Overflow> {
        self.findings.extend(other.findings);
        for (mine, theirs) in self.by_rule.iter_mut().zip(other.by_rule) {
            mine.candidates += theirs.candidates;
            money::add_to(&mut mine.monthly_usd, theirs.monthly_usd)?;
        }
        self.candidates += other.candidates;
        money::add_to(&mut self.monthly_usd, other.monthly_usd)?;
        Ok(self)
    }
}

/// Whole days from `since` to `now` (negative when `since` is in the future).
fn age_days(now: DateTime<Utc>, since: DateTime<Utc>) -> i64 {
    (now - since).num_days()
}

/// True when `since` is more than `min_days` days before `now` (0: always).
fn older_than(now: DateTime<Utc>, since: DateTime<Utc>, min_days: u32) -> bool {
    min_days == 0 || now - since > Duration::days(i64::from(min_days))
}

/// Ids of the live EBS volumes, for `orphan_snapshot` (empty when that rule is off).
pub(crate) fn live_volumes<'a>(settings: &CleanupSettings, resources: &'a [Resource]) -> FastSet<&'a str> {
    if !settings.threshold(CleanupRule::OrphanSnapshot).enabled {
        return FastSet::default();
    }
    resources.iter().filter(|r| matches!(r.details, Details::Volume { .. })).map(|r| r.id.as_str()).collect()
}

/// Finds every candidate among `resources`; fails when a sum of savings leaves the decimal range.
pub fn evaluate(
    settings: &CleanupSettings,
    resources: &[Resource],
    costs: &CostIndex,
    now: DateTime<Utc>,
) -> Result<CleanupEvaluation, Overflow> {
    evaluate_chunk(settings, resources, &live_volumes(settings, resources), costs, now)
}

/// Finds the candidates among `resources`, a share of all live resources whose volume ids are
/// `live_volumes`.
pub(crate) fn evaluate_chunk(
    settings: &CleanupSettings,
    resources: &[Resource],
    live_volumes: &FastSet<&str>,
    costs: &CostIndex,
    now: DateTime<Utc>,
) -> Result<CleanupEvaluation, Overflow> {
    Ok(scan(settings, resources, 0, live_volumes, costs, now)?.evaluation)
}

/// One (candidate, rule) pair of [`scan`], without its finding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit {
    /// Index of the resource, counting from the start of the whole inventory.
    pub resource: u32,
    pub rule: CleanupRule,
    /// Where the age is counted from.
    pub since: DateTime<Utc>,
}

/// What [`scan`] found: the pairs, and the aggregates with the pairs' findings in the same order.
#[derive(Debug)]
pub(crate) struct Scan {
    /// In resource then rule order.
    pub hits: Vec<Hit>,
    pub evaluation: CleanupEvaluation,
}

/// Where the age of `r` as a candidate of `rule` counts from, when `r` is one (thresholds, protection
/// and exemptions aside).
fn candidate_since(r: &Resource, rule: CleanupRule, live_volumes: &FastSet<&str>) -> Option<DateTime<Utc>> {
    let created = r.created_at.unwrap_or(r.first_seen);
    match (&r.details, rule) {
        (_, CleanupRule::Untagged) => r.is_untagged().then_some(r.first_seen),
        (Details::Volume { attached: false, .. }, CleanupRule::UnattachedVolume) => Some(created),
        (Details::Instance { stopped_at, .. }, CleanupRule::StoppedInstance)
            if r.state.as_deref() == Some("stopped") =>
        {
            Some(stopped_at.unwrap_or(r.first_seen))
        }
        (Details::ElasticIp { associated: false, .. }, CleanupRule::UnassociatedEip) => Some(created),
        (Details::Snapshot { volume_id: Some(v), .. }, CleanupRule::OrphanSnapshot)
            if v != NO_VOLUME && !live_volumes.contains(v.as_str()) =>
        {
            Some(created)
        }
        (Details::LogGroup { retention_days: None, .. }, CleanupRule::LogGroupWithoutRetention) => Some(created),
        _ => None,
    }
}

/// Why `r` is a candidate of `rule`, for people: `unattached gp3 volume of 100 GiB`; written to `out`.
fn reason(out: &mut String, r: &Resource, rule: CleanupRule) {
    use std::fmt::Write as _;
    // Writing to a `String` cannot fail.
    let _ = match (&r.details, rule) {
        (Details::Volume { size_gib, volume_type, .. }, CleanupRule::UnattachedVolume) => match (volume_type, size_gib)
        {
            (Some(t), Some(s)) => write!(out, "unattached {t} volume of {s} GiB"),
            (None, Some(s)) => write!(out, "unattached volume of {s} GiB"),
            _ => write!(out, "unattached volume"),
        },
        (Details::Snapshot { volume_id: Some(v), .. }, CleanupRule::OrphanSnapshot) => {
            write!(out, "snapshot of deleted volume {v}")
        }
        (_, CleanupRule::Untagged) => write!(out, "untagged"),
        (_, CleanupRule::UnattachedVolume) => write!(out, "unattached volume"),
        (_, CleanupRule::StoppedInstance) => write!(out, "stopped instance"),
        (_, CleanupRule::UnassociatedEip) => write!(out, "unassociated elastic ip"),
        (_, CleanupRule::OrphanSnapshot) => write!(out, "snapshot of deleted volume"),
        (_, CleanupRule::LogGroupWithoutRetention) => write!(out, "log group without retention"),
    };
}

/// The saving of candidate `r` and where it comes from: billing, else the price table.
fn saving(
    settings: &CleanupSettings,
    r: &Resource,
    costs: &CostIndex,
) -> Result<(Option<Decimal>, &'static str), Overflow> {
    Ok(match costs.monthly(r)? {
        Some(c) => (Some(c), "billing"),
        None => match estimate(r, &settings.prices) {
            Some(e) => (Some(e), "price_table"),
            None => (None, "unknown"),
        },
    })
}

/// Builds the findings of one share of the resources, sharing the rule names and each resource's strings.
struct Builder<'a> {
    /// Per rule, in [`CleanupRule::ALL`] order.
    names: Vec<Arc<str>>,
    strings: Interner<'a>,
    /// Reused for each reason and message.
    text: String,
}

impl<'a> Builder<'a> {
    fn new() -> Builder<'a> {
        Builder {
            names: CleanupRule::ALL.iter().map(|r| Arc::from(r.name())).collect(),
            strings: Interner::default(),
            text: String::new(),
        }
    }

    /// The finding of `hit`, whose resource is `r` (with the shared `strings`) and saving `saving` (from
    /// `source`).
    fn finding(
        &mut self,
        settings: &CleanupSettings,
        r: &Resource,
        strings: &ResourceStrings,
        hit: &Hit,
        (saving, source): (Option<Decimal>, &'static str),
        now: DateTime<Utc>,
    ) -> Finding {
        use std::fmt::Write as _;
        self.text.clear();
        reason(&mut self.text, r, hit.rule);
        let what: Arc<str> = Arc::from(self.text.as_str());
        let age = age_days(now, hit.since);
        // Writing to a `String` cannot fail.
        let _ = write!(self.text, " for {age} days");
        Finding {
            kind: FindingKind::Cleanup,
            rule: self.names[hit.rule as usize].clone(),
            subject: strings.subject.clone(),
            account_id: Some(strings.account_id.clone()),
            region: Some(strings.region.clone()),
            resource_type: Some(strings.resource_type.clone()),
            severity: Severity::Info,
            message: Arc::from(self.text.as_str()),
            monthly_usd: saving,
            details: FindingDetails::Cleanup(CleanupDetails {
                reason: what,
                since: hit.since,
                age_days: age,
                min_days: settings.threshold(hit.rule).min_days,
                saving_source: source,
            }),
        }
    }
}

/// Finds the candidates among `resources`, the share of the inventory starting at index `offset` (all of
/// whose volume ids are `live_volumes`), recording each pair with its finding.
pub(crate) fn scan(
    settings: &CleanupSettings,
    resources: &[Resource],
    offset: u32,
    live_volumes: &FastSet<&str>,
    costs: &CostIndex,
    now: DateTime<Utc>,
) -> Result<Scan, Overflow> {
    let mut by_rule = [(0u64, Decimal::ZERO); 6];
    let mut hits = Vec::new();
    let mut findings = Vec::new();
    let (mut candidates, mut total) = (0u64, Decimal::ZERO);
    let mut builder = Builder::new();
    for (r, index) in resources.iter().zip(offset..) {
        let mut found: [Option<DateTime<Utc>>; 6] = [None; 6];
        let mut any = false;
        for rule in CleanupRule::ALL {
            let t = settings.threshold(rule);
            if !t.enabled {
                continue;
            }
            if let Some(since) = candidate_since(r, rule, live_volumes) {
                if older_than(now, since, t.min_days) {
                    found[rule as usize] = Some(since);
                    any = true;
                }
            }
        }
        // Protection is checked only for would-be candidates: most resources never get this far.
        if !any || settings.protects(r) {
            continue;
        }
        let (saving, source) = saving(settings, r, costs)?;
        let strings = builder.strings.resource(r);
        candidates += 1;
        money::add_to(&mut total, saving.unwrap_or_default())?;
        for (rule, since) in CleanupRule::ALL.into_iter().zip(found) {
            let Some(since) = since else { continue };
            let e = &mut by_rule[rule as usize];
            e.0 += 1;
            money::add_to(&mut e.1, saving.unwrap_or_default())?;
            let hit = Hit { resource: index, rule, since };
            findings.push(builder.finding(settings, r, &strings, &hit, (saving, source), now));
            hits.push(hit);
        }
    }
    let by_rule = CleanupRule::ALL
        .into_iter()
        .filter(|r| settings.threshold(*r).enabled)
        .map(|rule| {
            let (candidates, monthly_usd) = by_rule[rule as usize];
            RuleSavings { rule, candidates, monthly_usd }
        })
        .collect();
    Ok(Scan { hits, evaluation: CleanupEvaluation { findings, by_rule, candidates, monthly_usd: total } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::parse_rule_file;
    use crate::test_support::{at, costs_for, res};

    /// Evaluates the `[cleanup]` section `rules` (empty: defaults) at day 100 and compares
    /// `(rule, id, monthly saving)` of every finding with `want`.
    fn check(rules: &str, resources: &[Resource], costs: &[(&str, i64, &str)], want: &[(&str, &str, Option<&str>)]) {
        let file = parse_rule_file("test.toml", rules).unwrap_or_else(|e| panic!("{e}"));
        let rows = costs_for(100, costs);
        let index = CostIndex::build(&rows, at(100)).unwrap();
        let eval = evaluate(&file.cleanup, resources, &index, at(100)).unwrap();
        let got: Vec<(String, String, Option<Decimal>)> = eval
            .findings
            .iter()
            .map(|f| (f.rule.to_string(), f.subject.rsplit('/').next().unwrap_or_default().to_string(), f.monthly_usd))
            .collect();
        let want: Vec<(String, String, Option<Decimal>)> =
            want.iter().map(|(r, id, m)| (r.to_string(), id.to_string(), m.map(|m| m.parse().unwrap()))).collect();
        assert_eq!(got, want, "with\n{rules}");
    }

    fn seen(mut r: Resource, day: i64) -> Resource {
        r.first_seen = at(day);
        r
    }

    fn volume(id: &str, created_day: i64, attached: bool) -> Resource {
        let mut r = res("ec2:volume", id, &[("team", "a")]);
        r.created_at = Some(at(created_day));
        r.details = Details::Volume { size_gib: Some(100), volume_type: Some("gp3".into()), attached };
        r
    }

    #[test]
    fn each_rule_with_defaults() {
        let old_untagged = seen(res("s3:bucket", "old", &[]), 50);
        let new_untagged = seen(res("s3:bucket", "new", &[]), 90);
        let aws_only = seen(res("s3:bucket", "awsonly", &[("aws:cloudformation:stack-name", "x")]), 50);
        let mut stopped = res("ec2:instance", "i-stopped", &[("team", "a")]);
        stopped.state = Some("stopped".into());
        stopped.details = Details::Instance { instance_type: None, stopped_at: Some(at(60)) };
        let mut stopped_recent = stopped.clone();
        stopped_recent.id = "i-recent".into();
        stopped_recent.arn = "arn:aws:ec2:eu-west-1:111111111111:instance/i-recent".into();
        stopped_recent.details = Details::Instance { instance_type: None, stopped_at: Some(at(80)) };
        let mut running = stopped.clone();
        running.arn = "arn:aws:ec2:eu-west-1:111111111111:instance/i-running".into();
        running.state = Some("running".into());
        let mut eip = res("ec2:elastic-ip", "eipalloc-1", &[("team", "a")]);
        eip.details = Details::ElasticIp { public_ip: None, associated: false };
        let mut eip_used = res("ec2:elastic-ip", "eipalloc-2", &[("team", "a")]);
        eip_used.details = Details::ElasticIp { public_ip: None, associated: true };
        let mut orphan = res("ec2:snapshot", "snap-orphan", &[("team", "a")]);
        orphan.created_at = Some(at(10));
        orphan.details = Details::Snapshot { volume_id: Some("vol-gone".into()), size_gib: Some(8) };
        let mut kept = orphan.clone();
        kept.arn = "arn:aws:ec2:eu-west-1:111111111111:snapshot/snap-kept".into();
        kept.details = Details::Snapshot { volume_id: Some("vol-attached".into()), size_gib: Some(8) };
        let mut copied = orphan.clone();
        copied.arn = "arn:aws:ec2:eu-west-1:111111111111:snapshot/snap-copy".into();
        copied.details = Details::Snapshot { volume_id: Some("vol-ffffffff".into()), size_gib: Some(8) };
        let mut logs = res("logs:log-group", "app", &[("team", "a")]);
        logs.details = Details::LogGroup { retention_days: None, stored_bytes: Some(10 << 30) };
        let mut logs_kept = logs.clone();
        logs_kept.arn = "arn:aws:logs:eu-west-1:111111111111:log-group/kept".into();
        logs_kept.details = Details::LogGroup { retention_days: Some(30), stored_bytes: Some(1 << 30) };
        check(
            "",
            &[
                old_untagged,
                new_untagged,
                aws_only,
                volume("vol-old", 80, false),
                volume("vol-new", 95, false),
                volume("vol-attached", 10, true),
                stopped,
                stopped_recent,
                running,
                eip,
                eip_used,
                orphan,
                kept,
                copied,
                logs,
                logs_kept,
            ],
            &[],
            &[
                ("untagged", "old", None),
                ("untagged", "awsonly", None),
                ("unattached_volume", "vol-old", Some("8.00")),
                ("stopped_instance", "i-stopped", None),
                ("unassociated_eip", "eipalloc-1", Some("3.65")),
                ("orphan_snapshot", "snap-orphan", Some("0.40")),
                ("log_group_without_retention", "app", Some("0.30")),
            ],
        );
    }

    #[test]
    fn thresholds_switches_and_prices() {
        let rules = r#"
[cleanup.unattached_volume]
min_days = 1
[cleanup.untagged]
enabled = false
[cleanup.prices]
volume_gib_month = { gp3 = "0.05" }
"#;
        let mut untyped = volume("vol-untyped", 10, false);
        untyped.details = Details::Volume { size_gib: Some(10), volume_type: None, attached: false };
        check(
            rules,
            &[volume("vol-new", 95, false), seen(res("s3:bucket", "old", &[]), 1), untyped],
            &[],
            &[("unattached_volume", "vol-new", Some("5.00")), ("unattached_volume", "vol-untyped", Some("1.00"))],
        );
    }

    #[test]
    fn billing_cost_wins_over_price_table() {
        let v = volume("vol-billed", 10, false);
        check(
            "",
            std::slice::from_ref(&v),
            &[(&v.arn, 1, "3.10"), ("vol-billed", 30, "1"), ("vol-billed", 31, "50")],
            &[("unattached_volume", "vol-billed", Some("4.10"))],
        );
    }

    #[test]
    fn protected_and_exempt_are_never_candidates() {
        let rules = r#"
[cleanup]
protect_tag = "keep"
exempt_tags = ["env=prod"]
exempt_arns = ["arn:aws:ec2:*:*:volume/vol-x*"]
"#;
        let mut protected = volume("vol-p", 10, false);
        protected.tags.insert("keep".into(), "".into());
        let mut default_tag_only = volume("vol-d", 10, false);
        default_tag_only.tags.insert(DEFAULT_PROTECT_TAG.into(), "yes".into());
        let mut prod = volume("vol-prod", 10, false);
        prod.tags.insert("env".into(), "prod".into());
        check(
            rules,
            &[protected, default_tag_only, prod, volume("vol-x1", 10, false)],
            &[],
            // The default tag no longer protects once another key is configured.
            &[("unattached_volume", "vol-d", Some("8.00"))],
        );
    }

    #[test]
    fn totals_count_each_resource_once() {
        let mut v = volume("vol-1", 10, false);
        v.tags.clear();
        v.first_seen = at(10);
        let file = parse_rule_file("t.toml", "").unwrap();
        let e = evaluate(&file.cleanup, &[v], &CostIndex::build(&[], at(100)).unwrap(), at(100)).unwrap();
        assert_eq!(e.findings.len(), 2);
        assert_eq!(e.candidates, 1);
        assert_eq!(e.monthly_usd, Decimal::new(8, 0));
        let sum: Decimal = e.by_rule.iter().map(|r| r.monthly_usd).sum();
        assert_eq!(sum, Decimal::new(16, 0));
    }
}
