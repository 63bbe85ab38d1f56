//! Drift between the cloud and Terraform state.
//!
//! * **unmanaged**: a live resource in no loaded state;
//! * **missing**: a state resource that is not among the live resources;
//! * **changed**: a state resource whose user tags (keys not starting with `aws:`) differ from the live
//!   resource's.
//!
//! A state resource matches a live one by ARN; without an ARN match, by id among live resources of the
//! type its Terraform type maps to.
//!
//! **What counts.** Only live resources Terraform could manage count (for unmanaged findings and for IaC
//! coverage): their type has a Terraform resource type in [`MANAGEABLE_TYPES`] (or the `[drift]
//! extra_types` table), and no AWS service created them on someone's behalf, recognised by the tags those
//! services set ([`OTHER_MANAGERS`]: CloudFormation stacks, Auto Scaling groups, AWS Backup, Data Lifecycle
//! Manager). Only state resources of a mapped Terraform type can be missing, and only when the inventory
//! lists resources of their ARN's account and region at all (otherwise that scope is not collected and
//! absence proves nothing). Coverage of an (account, type) is managed / counted live resources.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::cost_index::CostIndex;
use crate::fast::{FastMap, FastSet};
use crate::file::{Glob, TagMatch};
use crate::finding::{Finding, FindingKind, Severity};
use crate::input::{Resource, TfResource};
use crate::money::{self, Overflow};

/// Inventory resource types (`service:type`) and the Terraform resource type that creates them.
pub const MANAGEABLE_TYPES: &[(&str, &str)] = &[
    ("ec2:instance", "aws_instance"),
    ("ec2:volume", "aws_ebs_volume"),
    ("ec2:snapshot", "aws_ebs_snapshot"),
    ("ec2:elastic-ip", "aws_eip"),
    ("ec2:vpc", "aws_vpc"),
    ("ec2:subnet", "aws_subnet"),
    ("ec2:security-group", "aws_security_group"),
    ("ec2:internet-gateway", "aws_internet_gateway"),
    ("ec2:natgateway", "aws_nat_gateway"),
    ("ec2:route-table", "aws_route_table"),
    ("ec2:launch-template", "aws_launch_template"),
    ("s3:bucket", "aws_s3_bucket"),
    ("rds:db", "aws_db_instance"),
    ("rds:cluster", "aws_rds_cluster"),
    ("logs:log-group", "aws_cloudwatch_log_group"),
    ("lambda:function", "aws_lambda_function"),
    ("dynamodb:table", "aws_dynamodb_table"),
    ("sqs:queue", "aws_sqs_queue"),
    ("sns:topic", "aws_sns_topic"),
    ("elasticloadbalancing:loadbalancer", "aws_lb"),
    ("elasticloadbalancing:targetgroup", "aws_lb_target_group"),
    ("kms:key", "aws_kms_key"),
    ("ecr:repository", "aws_ecr_repository"),
    ("ecs:cluster", "aws_ecs_cluster"),
    ("eks:cluster", "aws_eks_cluster"),
    ("secretsmanager:secret", "aws_secretsmanager_secret"),
    ("elasticache:cluster", "aws_elasticache_cluster"),
    ("cloudwatch:alarm", "aws_cloudwatch_metric_alarm"),
];

/// Tag keys AWS services set on resources they create on someone's behalf: such resources are managed
/// through their creator (a stack, an Auto Scaling group, a backup plan, a lifecycle policy), not one by
/// one, so they are neither unmanaged nor part of coverage.
pub const OTHER_MANAGERS: &[&str] = &[
    "aws:cloudformation:stack-id",
    "aws:autoscaling:groupName",
    "aws:backup:source-resource",
    "aws:dlm:lifecycle-policy-id",
];

/// The `[drift]` section, compiled.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DriftSettings {
    /// `false`: no drift evaluation at all.
    pub enabled: bool,
    /// Live resources and state resources with a matching ARN are ignored.
    pub ignore_arns: Vec<Glob>,
    /// Matched against live resource types (`ec2:snapshot`) and Terraform types (`aws_ebs_snapshot`).
    pub ignore_types: Vec<Glob>,
    /// State resources with a matching address (`module.legacy.*`) are ignored.
    pub ignore_addresses: Vec<Glob>,
    /// Live resources carrying one of these tags (`key` or `key=value`) are ignored.
    pub ignore_tags: Vec<TagMatch>,
    /// Tag keys left out of the `changed` comparison (for example the provider's `default_tags`, which
    /// the state's `tags` do not record).
    pub ignore_tag_keys: Vec<Glob>,
    /// More inventory type → Terraform type pairs, on top of [`MANAGEABLE_TYPES`].
    pub extra_types: BTreeMap<String, String>,
}

impl DriftSettings {
    /// Enabled, nothing ignored, no extra types.
    pub fn enabled() -> DriftSettings {
        DriftSettings { enabled: true, ..DriftSettings::default() }
    }
}

/// Drift findings of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DriftKind {
    Unmanaged,
    Missing,
    Changed,
}

impl DriftKind {
    pub const ALL: [DriftKind; 3] = [DriftKind::Unmanaged, DriftKind::Missing, DriftKind::Changed];

    /// The finding's rule name and the `kind` label of `cloudwarden_drift_resources`.
    pub fn name(self) -> &'static str {
        match self {
            DriftKind::Unmanaged => "unmanaged",
            DriftKind::Missing => "missing",
            DriftKind::Changed => "changed",
        }
    }
}

/// IaC coverage of one (account, resource type).
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    pub account_id: String,
    pub resource_type: String,
    /// Live resources that count (see the module documentation).
    pub live: u64,
    /// Of those, in a loaded state.
    pub managed: u64,
    /// Cost of the unmanaged ones over the cost window, where billing data has it.
    pub unmanaged_monthly_usd: Decimal,
}

impl Coverage {
    /// `managed / live` in 0..=1; `None` without live resources.
    pub fn ratio(&self) -> Option<f64> {
        (self.live > 0).then(|| self.managed as f64 / self.live as f64)
    }
}

/// What the drift check found.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftEvaluation {
    pub findings: Vec<Finding>,
    /// Findings per kind, every kind present.
    pub counts: BTreeMap<DriftKind, u64>,
    /// Per (account, resource type), sorted.
    pub coverage: Vec<Coverage>,
}

impl DriftEvaluation {
    /// Total cost of unmanaged resources over the cost window; fails when it leaves the decimal range.
    pub fn unmanaged_monthly_usd(&self) -> Result<Decimal, Overflow> {
        money::sum(self.coverage.iter().map(|c| c.unmanaged_monthly_usd))
    }
}

/// `(partition-free) account and region` of an ARN, when it names both.
fn arn_scope(arn: &str) -> Option<(&str, &str)> {
    let mut p = arn.splitn(6, ':');
    let (_, _, _, region, account) = (p.next()?, p.next()?, p.next()?, p.next()?, p.next()?);
    (!region.is_empty() && !account.is_empty()).then_some((account, region))
}

fn user_tags<'t>(
    tags: &'t BTreeMap<String, String>,
    ignore: &'t [Glob],
) -> impl Iterator<Item = (&'t String, &'t String)> + 't {
    tags.iter().filter(move |(k, _)| !k.starts_with("aws:") && !ignore.iter().any(|g| g.matches(k)))
}

/// The difference of user tags, `None` when equal.
fn tag_diff(state: &BTreeMap<String, String>, live: &BTreeMap<String, String>, ignore: &[Glob]) -> Option<Value> {
    let live_user: BTreeMap<&String, &String> = user_tags(live, ignore).collect();
    let state_user: BTreeMap<&String, &String> = user_tags(state, ignore).collect();
    if live_user == state_user {
        return None;
    }
    let (mut added, mut removed, mut changed) = (Map::new(), Map::new(), Map::new());
    for (k, v) in &live_user {
        match state_user.get(k) {
            None => {
                added.insert(k.to_string(), json!(v));
            }
            Some(s) if s != v => {
                changed.insert(k.to_string(), json!({ "state": s, "cloud": v }));
            }
            Some(_) => {}
        }
    }
    for (k, v) in &state_user {
        if !live_user.contains_key(k) {
            removed.insert(k.to_string(), json!(v));
        }
    }
    Some(json!({ "added_in_cloud": added, "removed_in_cloud": removed, "changed": changed }))
}

/// Compares live resources with the loaded state resources; fails when a sum of costs leaves the decimal
/// range.
pub fn evaluate(
    settings: &DriftSettings,
    resources: &[Resource],
    tf: &[TfResource],
    costs: &CostIndex,
) -> Result<DriftEvaluation, Overflow> {
    let mut to_tf: HashMap<&str, &str> = MANAGEABLE_TYPES.iter().copied().collect();
    for (inv, tft) in &settings.extra_types {
        to_tf.insert(inv, tft);
    }
    let from_tf: HashMap<&str, &str> = to_tf.iter().map(|(i, t)| (*t, *i)).collect();

    // Live indexes: by ARN, and by (type, id) keeping the smallest ARN when ids repeat, so the result never
    // depends on input order.
    let mut by_arn: FastMap<&str, usize> = FastMap::default();
    by_arn.reserve(resources.len());
    let mut by_id: FastMap<(&str, &str), usize> = FastMap::default();
    let mut scopes: FastSet<(&str, &str)> = FastSet::default();
    for (i, r) in resources.iter().enumerate() {
        by_arn.insert(&r.arn, i);
        scopes.insert((&r.account_id, &r.region));
        if to_tf.contains_key(r.resource_type.as_str()) {
            by_id
                .entry((&r.resource_type, &r.id))
                .and_modify(|j| {
                    if resources[*j].arn > r.arn {
                        *j = i
                    }
                })
                .or_insert(i);
        }
    }

    let ignored_type = |t: &str| settings.ignore_types.iter().any(|g| g.matches(t));
    let ignored_arn = |a: &str| settings.ignore_arns.iter().any(|g| g.matches(a));

    let mut managed = vec![false; resources.len()];
    let mut findings = Vec::new();
    let mut counts: BTreeMap<DriftKind, u64> = DriftKind::ALL.iter().map(|k| (*k, 0)).collect();
    for t in tf {
        let inv_type = from_tf.get(t.tf_type.as_str()).copied();
        let hit =
            t.arn.as_deref().and_then(|a| by_arn.get(a)).or_else(|| by_id.get(&(inv_type?, t.id.as_deref()?))).copied();
        if let Some(i) = hit {
            managed[i] = true;
        }
        let ignored = settings.ignore_addresses.iter().any(|g| g.matches(&t.address))
            || ignored_type(&t.tf_type)
            || inv_type.is_some_and(ignored_type)
            || t.arn.as_deref().is_some_and(ignored_arn);
        if ignored {
            continue;
        }
        let subject = format!("{}#{}", t.origin, t.address);
        match hit {
            Some(i) => {
                let r = &resources[i];
                if ignored_arn(&r.arn) || settings.ignore_tags.iter().any(|m| m.matches(&r.tags)) {
                    continue;
                }
                let Some(diff) = tag_diff(&t.tags, &r.tags, &settings.ignore_tag_keys) else {
                    continue;
                };
                *counts.entry(DriftKind::Changed).or_default() += 1;
                let mut details = diff;
                details["arn"] = json!(r.arn);
                details["address"] = json!(t.address);
                details["origin"] = json!(t.origin);
                findings.push(Finding {
                    kind: FindingKind::Drift,
                    rule: DriftKind::Changed.name().into(),
                    subject: subject.into(),
                    account_id: Some(r.account_id.as_str().into()),
                    region: Some(r.region.as_str().into()),
                    resource_type: Some(r.resource_type.as_str().into()),
                    severity: Severity::Info,
                    message: format!("tags of {} differ from its state {}", t.address, t.origin).into(),
                    monthly_usd: None,
                    details: details.into(),
                });
            }
            None => {
                let Some(inv_type) = inv_type else { continue };
                let scope = t.arn.as_deref().and_then(arn_scope);
                if scope.is_some_and(|s| !scopes.contains(&s)) {
                    continue;
                }
                *counts.entry(DriftKind::Missing).or_default() += 1;
                findings.push(Finding {
                    kind: FindingKind::Drift,
                    rule: DriftKind::Missing.name().into(),
                    subject: subject.into(),
                    account_id: scope.map(|s| s.0.into()),
                    region: scope.map(|s| s.1.into()),
                    resource_type: Some(inv_type.into()),
                    severity: Severity::Warning,
                    message: format!("{} of state {} is gone from the cloud", t.address, t.origin).into(),
                    monthly_usd: None,
                    details: json!({
                        "address": t.address,
                        "origin": t.origin,
                        "tf_type": t.tf_type,
                        "arn": t.arn,
                        "id": t.id,
                    })
                    .into(),
                });
            }
        }
    }

    let mut coverage: FastMap<(&str, &str), Coverage> = FastMap::default();
    for (i, r) in resources.iter().enumerate() {
        if !to_tf.contains_key(r.resource_type.as_str())
            || OTHER_MANAGERS.iter().any(|k| r.tags.contains_key(*k))
            || ignored_type(&r.resource_type)
            || ignored_arn(&r.arn)
            || settings.ignore_tags.iter().any(|m| m.matches(&r.tags))
        {
            continue;
        }
        let c = coverage.entry((&r.account_id, &r.resource_type)).or_insert_with(|| Coverage {
            account_id: r.account_id.clone(),
            resource_type: r.resource_type.clone(),
            live: 0,
            managed: 0,
            unmanaged_monthly_usd: Decimal::ZERO,
        });
        c.live += 1;
        if managed[i] {
            c.managed += 1;
            continue;
        }
        let cost = costs.monthly(r)?;
        money::add_to(&mut c.unmanaged_monthly_usd, cost.unwrap_or_default())?;
        *counts.entry(DriftKind::Unmanaged).or_default() += 1;
        findings.push(Finding {
            kind: FindingKind::Drift,
            rule: DriftKind::Unmanaged.name().into(),
            subject: r.arn.as_str().into(),
            account_id: Some(r.account_id.as_str().into()),
            region: Some(r.region.as_str().into()),
            resource_type: Some(r.resource_type.as_str().into()),
            severity: Severity::Warning,
            message: format!("{} {} is in no terraform state", r.resource_type, r.id).into(),
            monthly_usd: cost,
            details: json!({ "id": r.id, "name": r.name }).into(),
        });
    }
    let mut coverage: Vec<Coverage> = coverage.into_values().collect();
    coverage.sort_by(|a, b| (&a.account_id, &a.resource_type).cmp(&(&b.account_id, &b.resource_type)));
    Ok(DriftEvaluation { findings, counts, coverage })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::parse_rule_file;
    use crate::test_support::{at, costs_for, res};

    fn tf(address: &str, tf_type: &str, arn: Option<&str>, id: Option<&str>, tags: &[(&str, &str)]) -> TfResource {
        TfResource {
            origin: "s3://states/app.tfstate".into(),
            address: address.into(),
            tf_type: tf_type.into(),
            arn: arn.map(str::to_string),
            id: id.map(str::to_string),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    /// Evaluates the `[drift]` section `rules` and compares `(rule, subject)` of every finding with `want`.
    fn check(rules: &str, live: &[Resource], state: &[TfResource], want: &[(&str, &str)]) -> DriftEvaluation {
        let file = parse_rule_file("test.toml", rules).unwrap_or_else(|e| panic!("{e}"));
        let eval = evaluate(&file.drift, live, state, &CostIndex::build(&[], at(0)).unwrap()).unwrap();
        let got: Vec<(&str, &str)> = eval.findings.iter().map(|f| (&*f.rule, &*f.subject)).collect();
        assert_eq!(got, want.to_vec(), "with\n{rules}");
        eval
    }

    #[test]
    fn unmanaged_missing_changed() {
        let web = res("ec2:instance", "i-web", &[("team", "a"), ("aws:cloudformation:logical-id", "x")]);
        let db = res("ec2:instance", "i-db", &[("team", "a")]);
        let stray = res("ec2:instance", "i-stray", &[]);
        let bucket = res("s3:bucket", "data", &[("team", "b")]);
        let vpc_like = res("ec2:something-new", "x-1", &[]);
        let state = [
            tf("aws_instance.web", "aws_instance", Some(&web.arn), Some("i-web"), &[("team", "a")]),
            tf("aws_instance.db", "aws_instance", None, Some("i-db"), &[("team", "b"), ("env", "prod")]),
            tf("aws_s3_bucket.data", "aws_s3_bucket", None, Some("data"), &[("team", "b")]),
            tf(
                "aws_instance.gone",
                "aws_instance",
                Some("arn:aws:ec2:eu-west-1:111111111111:instance/i-gone"),
                Some("i-gone"),
                &[],
            ),
            tf(
                "aws_instance.other_region",
                "aws_instance",
                Some("arn:aws:ec2:ap-south-1:111111111111:instance/i-far"),
                None,
                &[],
            ),
            tf("aws_iam_role_policy_attachment.x", "aws_iam_role_policy_attachment", None, Some("x"), &[]),
        ];
        let e = check(
            "[drift]",
            &[web, db, stray.clone(), bucket, vpc_like],
            &state,
            &[
                ("changed", "s3://states/app.tfstate#aws_instance.db"),
                ("missing", "s3://states/app.tfstate#aws_instance.gone"),
                ("unmanaged", &stray.arn),
            ],
        );
        let changed = &e.findings[0].details.to_json();
        assert_eq!(changed["changed"], json!({"team": {"state": "b", "cloud": "a"}}));
        assert_eq!(changed["removed_in_cloud"], json!({"env": "prod"}));
        let instances = e.coverage.iter().find(|c| c.resource_type == "ec2:instance").unwrap();
        assert_eq!((instances.live, instances.managed), (3, 2));
        assert!(e.coverage.iter().all(|c| c.resource_type != "ec2:something-new"));
        assert_eq!(e.counts[&DriftKind::Unmanaged], 1);
    }

    #[test]
    fn ignore_lists_and_other_managers() {
        let rules = r#"
[drift]
ignore_arns = ["arn:aws:ec2:*:*:instance/i-legacy*"]
ignore_types = ["ec2:snapshot"]
ignore_addresses = ["module.old.*"]
ignore_tags = ["unmanaged=ok"]
ignore_tag_keys = ["owner"]
"#;
        let legacy = res("ec2:instance", "i-legacy-1", &[]);
        let snap = res("ec2:snapshot", "snap-1", &[]);
        let asg = res("ec2:instance", "i-asg", &[("aws:autoscaling:groupName", "web")]);
        let ok = res("ec2:instance", "i-ok", &[("unmanaged", "ok")]);
        let owned = res("ec2:instance", "i-owned", &[("owner", "x")]);
        let state = [
            tf("module.old.aws_instance.a", "aws_instance", None, Some("i-old"), &[]),
            tf("aws_instance.owned", "aws_instance", Some(&owned.arn), None, &[("owner", "y")]),
        ];
        let e = check(rules, &[legacy, snap, asg, ok, owned], &state, &[]);
        assert_eq!(e.coverage.len(), 1);
        assert_eq!((e.coverage[0].live, e.coverage[0].managed), (1, 1));
    }

    #[test]
    fn extra_types_and_unmanaged_cost() {
        let rules = r#"
[drift]
extra_types = { "ec2:transit-gateway" = "aws_ec2_transit_gateway" }
"#;
        let tgw = res("ec2:transit-gateway", "tgw-1", &[]);
        let file = parse_rule_file("t.toml", rules).unwrap();
        let costs = costs_for(0, &[("tgw-1", 3, "36.50")]);
        let e = evaluate(&file.drift, &[tgw], &[], &CostIndex::build(&costs, at(0)).unwrap()).unwrap();
        assert_eq!(e.findings.len(), 1);
        assert_eq!(e.findings[0].monthly_usd, Some(Decimal::new(3650, 2)));
        assert_eq!(e.unmanaged_monthly_usd(), Ok(Decimal::new(3650, 2)));
        assert_eq!(e.coverage[0].ratio(), Some(0.0));
    }
}
