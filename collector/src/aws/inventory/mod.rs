//! The inventory collector: every resource of every configured account and region, tagged or not.
//!
//! Per account and region it lists EC2 instances, volumes, snapshots and Elastic IPs, RDS instances and log
//! groups with their services' describe calls, and the tags of everything tagged with the Tagging API's
//! `GetResources`; per account it lists S3 buckets. All of it merges into one [`Resource`] per ARN. Accounts
//! and regions are collected in parallel, at most `max_concurrency` units at a time.

pub(crate) mod ec2;
pub(crate) mod logs;
pub(crate) mod rds;
mod s3;
mod tagging;

use std::collections::{BTreeMap, HashMap};

use futures::stream::{self, StreamExt};
use tracing::{debug, warn};

use super::{account_id, client, AccountConfig, AwsContext, AwsError};
use crate::arn::{self, Arn};
use crate::model::{InventoryReport, Resource, Scope, ScopeFailure};

pub use ec2::parse_transition_time;
pub use s3::location_region;

/// What to collect.
#[derive(Debug, Clone, PartialEq)]
pub struct InventorySettings {
    pub regions: Vec<String>,
    /// Page size for every paginated call, clamped to each API's allowed range. `None` uses each API's
    /// maximum, which makes the fewest calls.
    pub page_size: Option<i32>,
    /// Units (an account's region, or an account's S3 listing) collected at once.
    pub max_concurrency: usize,
}

/// One account and region being collected.
pub struct Unit {
    pub account_id: String,
    pub region: String,
    page_size: Option<i32>,
}

impl Unit {
    /// A unit for one resource's describe call.
    pub(crate) fn single(account_id: &str, region: &str) -> Unit {
        Unit { account_id: account_id.to_string(), region: region.to_string(), page_size: None }
    }

    fn arn(&self, resource_type: &str, id: &str) -> String {
        arn::build(resource_type, &self.region, &self.account_id, id)
    }

    /// The configured page size clamped into an API's range, or the API's maximum.
    fn page_size(&self, min: i32, max: i32) -> Option<i32> {
        Some(self.page_size.map_or(max, |p| p.clamp(min, max)))
    }
}

/// Tags as a sorted map, skipping entries with no key.
fn tag_map<'a>(pairs: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>) -> BTreeMap<String, String> {
    pairs.filter_map(|(k, v)| Some((k?.to_string(), v.unwrap_or_default().to_string()))).collect()
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// The types the describe calls list completely; the Tagging API only adds tags to these.
/// The types a describe call lists; every other type is known only through the Tagging API.
pub const DESCRIBED: [&str; 7] =
    ["ec2:instance", "ec2:volume", "ec2:snapshot", "ec2:elastic-ip", "rds:db", "logs:log-group", "s3:bucket"];

/// What one unit produced.
#[derive(Default)]
struct Partial {
    described: Vec<Resource>,
    tagged: Vec<(String, BTreeMap<String, String>)>,
    complete: Vec<Scope>,
    /// (account id, region) when the Tagging API answered fully.
    tagging_complete: Option<(String, String)>,
    failures: Vec<ScopeFailure>,
}

/// A failed call as a scope failure shows it: the source (`ec2:DescribeVolumes`) names the call already, so
/// only the message, unless another call of the same listing failed (an S3 bucket's location or tags).
fn shown(source: &str, error: &AwsError) -> String {
    if source.rsplit(':').next() == Some(error.operation) {
        error.message.clone()
    } else {
        error.to_string()
    }
}

impl Partial {
    fn take(&mut self, scope: Scope, account: &str, source: &str, result: Result<Vec<Resource>, AwsError>) {
        match result {
            Ok(list) => {
                debug!(account, resource_type = %scope.resource_type, region = ?scope.region, count = list.len(), "listed");
                self.described.extend(list);
                self.complete.push(scope);
            }
            Err(error) => {
                warn!(account, source, region = ?scope.region, %error, kind = error.as_kind(), "listing failed");
                self.failures.push(ScopeFailure {
                    account: account.to_string(),
                    account_id: Some(scope.account_id.clone()),
                    region: scope.region.clone(),
                    source: source.to_string(),
                    error: shown(source, &error),
                });
            }
        }
    }
}

async fn collect_region(ctx: &AwsContext, account: &AccountConfig, unit: Unit) -> Partial {
    let name = account.spec.name.as_str();
    let ec2 = client!(aws_sdk_ec2, ctx, account, unit.region);
    let rds = client!(aws_sdk_rds, ctx, account, unit.region);
    let logs = client!(aws_sdk_cloudwatchlogs, ctx, account, unit.region);
    let tagging = client!(aws_sdk_resourcegroupstagging, ctx, account, unit.region);
    let (instances, volumes, snapshots, addresses, dbs, groups, tagged) = tokio::join!(
        ec2::instances(&ec2, &unit),
        ec2::volumes(&ec2, &unit),
        ec2::snapshots(&ec2, &unit),
        ec2::addresses(&ec2, &unit),
        rds::db_instances(&rds, &unit),
        logs::log_groups(&logs, &unit),
        tagging::tagged(&tagging, &unit),
    );
    let scope = |t: &str| Scope {
        account_id: unit.account_id.clone(),
        region: Some(unit.region.clone()),
        resource_type: t.to_string(),
    };
    let mut p = Partial::default();
    p.take(scope("ec2:instance"), name, "ec2:DescribeInstances", instances);
    p.take(scope("ec2:volume"), name, "ec2:DescribeVolumes", volumes);
    p.take(scope("ec2:snapshot"), name, "ec2:DescribeSnapshots", snapshots);
    p.take(scope("ec2:elastic-ip"), name, "ec2:DescribeAddresses", addresses);
    p.take(scope("rds:db"), name, "rds:DescribeDBInstances", dbs);
    p.take(scope("logs:log-group"), name, "logs:DescribeLogGroups", groups);
    match tagged {
        Ok(t) => {
            // Types only the Tagging API knows are complete for this region when it answered fully.
            let mut types: Vec<String> = t
                .iter()
                .filter_map(|(a, _)| Arn::parse(a).ok().map(|a| a.resource_type()))
                .filter(|t| !DESCRIBED.contains(&t.as_str()))
                .collect();
            types.sort();
            types.dedup();
            p.complete.extend(types.iter().map(|t| scope(t)));
            p.tagging_complete = Some((unit.account_id.clone(), unit.region.clone()));
            p.tagged = t;
        }
        Err(error) => {
            warn!(account = name, region = %unit.region, %error, kind = error.as_kind(), "GetResources failed");
            p.failures.push(ScopeFailure {
                account: name.to_string(),
                account_id: Some(unit.account_id.clone()),
                region: Some(unit.region.clone()),
                source: "tagging:GetResources".into(),
                error: shown("tagging:GetResources", &error),
            });
        }
    }
    p
}

async fn collect_buckets(ctx: &AwsContext, account: &AccountConfig, account_id: String, regions: &[String]) -> Partial {
    let clients: BTreeMap<String, aws_sdk_s3::Client> =
        regions.iter().map(|r| (r.clone(), client!(aws_sdk_s3, ctx, account, r))).collect();
    let mut p = Partial::default();
    let scope = Scope { account_id: account_id.clone(), region: None, resource_type: "s3:bucket".into() };
    p.take(scope, &account.spec.name, "s3:ListBuckets", s3::buckets(&clients, &account_id, regions).await);
    p
}

/// Runs one inventory cycle over every account and region.
pub async fn collect(ctx: &AwsContext, settings: &InventorySettings) -> InventoryReport {
    let mut report = InventoryReport::default();

    // Who are we in each account? Also proves the credentials (or the assumed role) work.
    let ids = futures::future::join_all(ctx.accounts.iter().map(|a| account_id(ctx, a))).await;
    let mut reachable = Vec::new();
    for (account, id) in ctx.accounts.iter().zip(ids) {
        match id {
            Ok(id) => {
                report.accounts.push((account.spec.name.clone(), id.clone()));
                reachable.push((account, id));
            }
            Err(error) => {
                warn!(account = %account.spec.name, %error, kind = error.as_kind(), "cannot identify account");
                report.failures.push(ScopeFailure {
                    account: account.spec.name.clone(),
                    account_id: None,
                    region: None,
                    source: "sts:GetCallerIdentity".into(),
                    error: shown("sts:GetCallerIdentity", &error),
                });
            }
        }
    }

    let mut units: Vec<futures::future::BoxFuture<'_, Partial>> = Vec::new();
    for (account, id) in &reachable {
        for region in &settings.regions {
            let unit = Unit { account_id: id.clone(), region: region.clone(), page_size: settings.page_size };
            units.push(Box::pin(collect_region(ctx, account, unit)));
        }
        units.push(Box::pin(collect_buckets(ctx, account, id.clone(), &settings.regions)));
    }
    let partials: Vec<Partial> = stream::iter(units).buffer_unordered(settings.max_concurrency.max(1)).collect().await;

    let mut by_arn: HashMap<String, Resource> = HashMap::new();
    let mut tagged = Vec::new();
    for p in partials {
        for r in p.described {
            by_arn.insert(r.arn.clone(), r);
        }
        tagged.extend(p.tagged);
        report.complete_scopes.extend(p.complete);
        report.tagging_complete.extend(p.tagging_complete);
        report.failures.extend(p.failures);
    }
    merge_tagged(&mut by_arn, tagged);
    report.resources = by_arn.into_values().collect();
    report.resources.sort_by(|a, b| a.arn.cmp(&b.arn));
    report.complete_scopes.sort();
    report.complete_scopes.dedup();
    report.tagging_complete.sort();
    report
}

/// Folds the Tagging API's view into the described resources: tags are added to what the describe calls
/// found; resources of types no describe call covers are added as they are; a described type the describe
/// call did not return (a stale tag index entry, e.g. a just-terminated instance) is left out.
fn merge_tagged(by_arn: &mut HashMap<String, Resource>, tagged: Vec<(String, BTreeMap<String, String>)>) {
    for (arn_str, tags) in tagged {
        if let Some(r) = by_arn.get_mut(&arn_str) {
            for (k, v) in tags {
                r.tags.entry(k).or_insert(v);
            }
            continue;
        }
        let Ok(a) = Arn::parse(&arn_str) else {
            warn!(arn = %arn_str, "GetResources returned a malformed ARN; skipped");
            continue;
        };
        let resource_type = a.resource_type();
        if DESCRIBED.contains(&resource_type.as_str()) {
            continue;
        }
        by_arn.insert(
            arn_str.clone(),
            Resource {
                id: a.resource_id().to_string(),
                account_id: a.account.to_string(),
                region: a.region.to_string(),
                name: tags.get("Name").cloned(),
                resource_type,
                arn: arn_str,
                state: None,
                created_at: None,
                details: Default::default(),
                tags,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(arn: &str, tags: &[(&str, &str)]) -> Resource {
        let a = Arn::parse(arn).unwrap();
        Resource {
            arn: arn.into(),
            resource_type: a.resource_type(),
            account_id: a.account.into(),
            region: a.region.into(),
            id: a.resource_id().into(),
            name: None,
            state: None,
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            created_at: None,
            details: Default::default(),
        }
    }

    /// A scope failure's source names its call: the message alone, unless another call of the listing failed.
    #[test]
    fn scope_failures_show_the_call_once() {
        use crate::aws::AwsErrorKind;

        let check = |source: &str, operation: &'static str, want: &str| {
            let error = AwsError::new("s3", operation, AwsErrorKind::AccessDenied, "service error: AccessDenied");
            assert_eq!(shown(source, &error), want, "{source} {operation}");
        };
        check("s3:ListBuckets", "ListBuckets", "service error: AccessDenied");
        check("s3:ListBuckets", "GetBucketTagging", "GetBucketTagging: service error: AccessDenied");
        check("sts:GetCallerIdentity", "GetCallerIdentity", "service error: AccessDenied");
    }

    #[test]
    fn tagging_view_merges_into_described_resources() {
        let mut m = HashMap::new();
        let g = "arn:aws:logs:us-east-1:1:log-group:app";
        let i = "arn:aws:ec2:us-east-1:1:instance/i-1";
        m.insert(g.to_string(), described(g, &[]));
        m.insert(i.to_string(), described(i, &[("team", "web")]));
        let t = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        merge_tagged(
            &mut m,
            vec![
                (g.into(), t(&[("team", "data")])),
                (i.into(), t(&[("team", "ignored"), ("env", "prod")])),
                ("arn:aws:ec2:us-east-1:1:instance/i-gone".into(), t(&[("team", "x")])),
                ("arn:aws:sns:us-east-1:1:alerts".into(), t(&[("team", "x")])),
                ("garbage".into(), t(&[])),
            ],
        );
        assert_eq!(m[g].tags["team"], "data");
        assert_eq!(m[i].tags["team"], "web");
        assert_eq!(m[i].tags["env"], "prod");
        assert!(!m.contains_key("arn:aws:ec2:us-east-1:1:instance/i-gone"));
        assert_eq!(m["arn:aws:sns:us-east-1:1:alerts"].resource_type, "sns");
        assert_eq!(m.len(), 3);
    }
}
