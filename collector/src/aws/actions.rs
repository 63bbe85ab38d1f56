//! Cleanup on AWS: reading one resource again, marking it with a tag, and the cleanup actions, each in its
//! safe form. What to do and when is the daemon's cleanup job; this module only makes the calls.
//!
//! Every action is safe to repeat after a crash: before acting, the caller describes the resource and skips
//! the call when AWS already shows the action's result ([`Action::done_in`]); a volume's snapshot is found
//! again by the plan's token (a tag on the snapshot) instead of being taken twice; an RDS final snapshot is
//! named after the plan, so a second request for it is refused by name, never duplicated.

use std::fmt;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use serde::{Deserialize, Serialize};

use super::inventory::{ec2, logs, rds, Unit};
use super::{client, AccountConfig, AwsContext, AwsError, AwsErrorKind};
use crate::arn;
use crate::model::{Details, Resource};

/// The tag a snapshot taken before a volume's deletion carries: the plan's token.
pub const PLAN_TAG: &str = "cloudwarden:plan";

/// The resource a cleanup call is about.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub account: &'a AccountConfig,
    pub account_id: &'a str,
    pub region: &'a str,
    /// `ec2:instance`, `ec2:volume`, `ec2:snapshot`, `ec2:elastic-ip`, `rds:db` or `logs:log-group`.
    pub resource_type: &'a str,
    /// The service's id (instance id, volume id, allocation id, DB identifier, log group name).
    pub id: &'a str,
}

impl Target<'_> {
    fn unit(&self) -> Unit {
        Unit::single(self.account_id, self.region)
    }

    fn arn(&self) -> String {
        arn::build(self.resource_type, self.region, self.account_id, self.id)
    }

    fn unsupported(&self, operation: &'static str) -> AwsError {
        AwsError::new(
            "cleanup",
            operation,
            AwsErrorKind::Client,
            format!("{} is not a cleanup type", self.resource_type),
        )
        .about(self.id.to_string())
    }
}

/// A cleanup action. Each is the safe form of its kind: a stop before a terminate, a snapshot before a
/// volume's deletion, a final snapshot before a database's deletion, a snapshot kept while an AMI uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// EC2 instance: StopInstances.
    Stop,
    /// EC2 instance: TerminateInstances (an escalation after a stop).
    Terminate,
    /// EBS volume: CreateSnapshot (tagged with the plan), then DeleteVolume once the snapshot is complete.
    SnapshotDelete,
    /// EBS snapshot: DeleteSnapshot, refused while an AMI of the account uses it.
    DeleteSnapshot,
    /// Elastic IP: ReleaseAddress.
    Release,
    /// RDS instance: StopDBInstance.
    StopDb,
    /// RDS instance: DeleteDBInstance with a final snapshot (an escalation after a stop).
    DeleteDb,
    /// Log group: PutRetentionPolicy (nothing is deleted; old events expire).
    SetRetention,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::Stop,
        Action::Terminate,
        Action::SnapshotDelete,
        Action::DeleteSnapshot,
        Action::Release,
        Action::StopDb,
        Action::DeleteDb,
        Action::SetRetention,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Terminate => "terminate",
            Action::SnapshotDelete => "snapshot_delete",
            Action::DeleteSnapshot => "delete_snapshot",
            Action::Release => "release",
            Action::StopDb => "stop_db",
            Action::DeleteDb => "delete_db",
            Action::SetRetention => "set_retention",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The resource type the action applies to.
    pub fn resource_type(self) -> &'static str {
        match self {
            Action::Stop | Action::Terminate => "ec2:instance",
            Action::SnapshotDelete => "ec2:volume",
            Action::DeleteSnapshot => "ec2:snapshot",
            Action::Release => "ec2:elastic-ip",
            Action::StopDb | Action::DeleteDb => "rds:db",
            Action::SetRetention => "logs:log-group",
        }
    }

    /// The first action for a resource type, if cleanup can act on it.
    pub fn first_for(resource_type: &str) -> Option<Action> {
        Some(match resource_type {
            "ec2:instance" => Action::Stop,
            "ec2:volume" => Action::SnapshotDelete,
            "ec2:snapshot" => Action::DeleteSnapshot,
            "ec2:elastic-ip" => Action::Release,
            "rds:db" => Action::StopDb,
            "logs:log-group" => Action::SetRetention,
            _ => return None,
        })
    }

    /// Why the action must not be made on `r` as it is, whatever rule selected it: a volume still attached
    /// (an untagged root volume belongs with its instance), an address still associated.
    pub fn blocked_by(self, r: &Resource) -> Option<String> {
        match (self, &r.details) {
            (Action::SnapshotDelete, Details::Volume { attached_instance_ids, .. })
                if !attached_instance_ids.is_empty() =>
            {
                Some(format!("attached to {}", attached_instance_ids.join(", ")))
            }
            (Action::Release, Details::ElasticIp { association_id, instance_id, .. })
                if association_id.is_some() || instance_id.is_some() =>
            {
                Some("associated".to_string())
            }
            _ => None,
        }
    }

    /// Whether a resource in `state` (as the inventory stored it) can be planned for this action at all.
    pub fn plannable_in(self, state: Option<&str>) -> bool {
        !matches!((self, state), (Action::SnapshotDelete, Some("in-use")) | (Action::Release, Some("associated")))
    }

    /// The action that may follow this one after a second grace period.
    pub fn escalation(self) -> Option<Action> {
        match self {
            Action::Stop => Some(Action::Terminate),
            Action::StopDb => Some(Action::DeleteDb),
            _ => None,
        }
    }

    /// Whether the action removes the resource (so "gone" is its success).
    pub fn removes(self) -> bool {
        matches!(
            self,
            Action::Terminate | Action::SnapshotDelete | Action::DeleteSnapshot | Action::Release | Action::DeleteDb
        )
    }

    /// True when AWS shows the action's result: `now` is the resource as described again (`None`: AWS says
    /// it does not exist). `retention_days` is the retention a `set_retention` sets.
    pub fn done_in(self, now: Option<&Resource>, retention_days: i32) -> bool {
        let state = now.and_then(|r| r.state.as_deref());
        match self {
            Action::Stop => state == Some("stopped"),
            Action::StopDb => state == Some("stopped"),
            Action::Terminate => now.is_none() || state == Some("terminated"),
            Action::DeleteDb => now.is_none() || state == Some("deleting"),
            Action::SnapshotDelete | Action::DeleteSnapshot | Action::Release => now.is_none(),
            Action::SetRetention => matches!(
                now.map(|r| &r.details),
                Some(Details::LogGroup { retention_days: Some(d), .. }) if *d == retention_days
            ),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an action call did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Acted {
    /// The request id of the mutating call, for the audit trail.
    pub request_id: Option<String>,
    /// The snapshot taken before a volume's deletion, or a database's final snapshot.
    pub snapshot_id: Option<String>,
    /// The action has begun but is not finished: a volume's snapshot is still being taken. Call again later.
    pub pending: Option<String>,
}

/// Why an action was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionError {
    /// The call failed.
    Aws(AwsError),
    /// A precondition of the safe form does not hold (a snapshot an AMI uses): nothing was changed.
    Refused { code: &'static str, message: String },
}

impl ActionError {
    /// The AWS error code, or our own code for a refusal.
    pub fn code(&self) -> Option<&str> {
        match self {
            ActionError::Aws(e) => e.code.as_deref(),
            ActionError::Refused { code, .. } => Some(code),
        }
    }

    /// True when trying again later may succeed (throttling, a server error, no answer); false when AWS or
    /// the safe form refused the action, which a retry would not change.
    pub fn is_transient(&self) -> bool {
        match self {
            ActionError::Aws(e) => matches!(
                e.kind,
                AwsErrorKind::Throttled
                    | AwsErrorKind::Server
                    | AwsErrorKind::Transport
                    | AwsErrorKind::MalformedResponse
            ),
            ActionError::Refused { .. } => false,
        }
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionError::Aws(e) => e.fmt(f),
            ActionError::Refused { code, message } => write!(f, "{code}: {message}"),
        }
    }
}

impl std::error::Error for ActionError {}

impl From<AwsError> for ActionError {
    fn from(e: AwsError) -> ActionError {
        ActionError::Aws(e)
    }
}

/// The error codes with which each service says a resource does not exist.
const GONE_CODES: [&str; 7] = [
    "InvalidInstanceID.NotFound",
    "InvalidVolume.NotFound",
    "InvalidSnapshot.NotFound",
    "InvalidAllocationID.NotFound",
    "DBInstanceNotFound",
    "DBInstanceNotFoundFault",
    "ResourceNotFoundException",
];

fn gone_or<T>(r: Result<T, AwsError>) -> Result<Option<T>, AwsError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.has_code(&GONE_CODES) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The resource as AWS shows it now. `Ok(None)` only when AWS says it does not exist (or an instance is
/// terminated); any failure to ask is an error, never "gone".
pub async fn describe(ctx: &AwsContext, t: &Target<'_>) -> Result<Option<Resource>, AwsError> {
    let unit = t.unit();
    match t.resource_type {
        "ec2:instance" => {
            let c = client!(aws_sdk_ec2, ctx, t.account, t.region);
            let out = c.describe_instances().instance_ids(t.id).send().await;
            let out = gone_or(out.map_err(|e| AwsError::sdk("ec2", "DescribeInstances", &e).about(t.id)))?;
            Ok(out.and_then(|o| {
                o.reservations().iter().flat_map(|r| r.instances()).find_map(|i| ec2::instance(i, &unit))
            }))
        }
        "ec2:volume" => {
            let c = client!(aws_sdk_ec2, ctx, t.account, t.region);
            let out = c.describe_volumes().volume_ids(t.id).send().await;
            let out = gone_or(out.map_err(|e| AwsError::sdk("ec2", "DescribeVolumes", &e).about(t.id)))?;
            Ok(out.and_then(|o| o.volumes().iter().find_map(|v| ec2::volume(v, &unit))))
        }
        "ec2:snapshot" => {
            let c = client!(aws_sdk_ec2, ctx, t.account, t.region);
            let out = c.describe_snapshots().snapshot_ids(t.id).send().await;
            let out = gone_or(out.map_err(|e| AwsError::sdk("ec2", "DescribeSnapshots", &e).about(t.id)))?;
            Ok(out.and_then(|o| o.snapshots().iter().find_map(|s| ec2::snapshot(s, &unit))))
        }
        "ec2:elastic-ip" => {
            let c = client!(aws_sdk_ec2, ctx, t.account, t.region);
            let out = c.describe_addresses().allocation_ids(t.id).send().await;
            let out = gone_or(out.map_err(|e| AwsError::sdk("ec2", "DescribeAddresses", &e).about(t.id)))?;
            Ok(out.and_then(|o| o.addresses().iter().find_map(|a| ec2::address(a, &unit))))
        }
        "rds:db" => {
            let c = client!(aws_sdk_rds, ctx, t.account, t.region);
            let out = c.describe_db_instances().db_instance_identifier(t.id).send().await;
            let out = gone_or(out.map_err(|e| AwsError::sdk("rds", "DescribeDBInstances", &e).about(t.id)))?;
            Ok(out.and_then(|o| o.db_instances().iter().find_map(|d| rds::db_instance(d, &unit))))
        }
        "logs:log-group" => {
            let c = client!(aws_sdk_cloudwatchlogs, ctx, t.account, t.region);
            let out = c
                .describe_log_groups()
                .log_group_name_prefix(t.id)
                .send()
                .await
                .map_err(|e| AwsError::sdk("cloudwatchlogs", "DescribeLogGroups", &e).about(t.id))?;
            let Some(mut group) = out
                .log_groups()
                .iter()
                .filter(|g| g.log_group_name() == Some(t.id))
                .find_map(|g| logs::log_group(g, &unit))
            else {
                return Ok(None);
            };
            let tags = c
                .list_tags_for_resource()
                .resource_arn(t.arn())
                .send()
                .await
                .map_err(|e| AwsError::sdk("cloudwatchlogs", "ListTagsForResource", &e).about(t.id))?;
            group.tags = tags.tags().map(|m| m.clone().into_iter().collect()).unwrap_or_default();
            Ok(Some(group))
        }
        _ => Err(t.unsupported("Describe")),
    }
}

fn request_id(id: Option<&str>) -> Option<String> {
    id.filter(|s| !s.is_empty()).map(str::to_string)
}

/// Sets the tag `key` = `value` on the resource. Returns the request id.
pub async fn set_tag(ctx: &AwsContext, t: &Target<'_>, key: &str, value: &str) -> Result<Option<String>, AwsError> {
    use aws_sdk_ec2::operation::RequestId as _;
    match t.resource_type {
        "ec2:instance" | "ec2:volume" | "ec2:snapshot" | "ec2:elastic-ip" => {
            let c = client!(aws_sdk_ec2, ctx, t.account, t.region);
            let out = c
                .create_tags()
                .resources(t.id)
                .tags(Tag::builder().key(key).value(value).build())
                .send()
                .await
                .map_err(|e| AwsError::sdk("ec2", "CreateTags", &e).about(t.id))?;
            Ok(request_id(out.request_id()))
        }
        "rds:db" => {
            let c = client!(aws_sdk_rds, ctx, t.account, t.region);
            let out = c
                .add_tags_to_resource()
                .resource_name(t.arn())
                .tags(aws_sdk_rds::types::Tag::builder().key(key).value(value).build())
                .send()
                .await
                .map_err(|e| AwsError::sdk("rds", "AddTagsToResource", &e).about(t.id))?;
            Ok(request_id(out.request_id()))
        }
        "logs:log-group" => {
            let c = client!(aws_sdk_cloudwatchlogs, ctx, t.account, t.region);
            let out = c
                .tag_resource()
                .resource_arn(t.arn())
                .tags(key, value)
                .send()
                .await
                .map_err(|e| AwsError::sdk("cloudwatchlogs", "TagResource", &e).about(t.id))?;
            Ok(request_id(out.request_id()))
        }
        _ => Err(t.unsupported("TagResource")),
    }
}

/// Removes the tag `key` from the resource. Returns the request id.
pub async fn remove_tag(ctx: &AwsContext, t: &Target<'_>, key: &str) -> Result<Option<String>, AwsError> {
    use aws_sdk_ec2::operation::RequestId as _;
    match t.resource_type {
        "ec2:instance" | "ec2:volume" | "ec2:snapshot" | "ec2:elastic-ip" => {
            let c = client!(aws_sdk_ec2, ctx, t.account, t.region);
            let out = c
                .delete_tags()
                .resources(t.id)
                .tags(Tag::builder().key(key).build())
                .send()
                .await
                .map_err(|e| AwsError::sdk("ec2", "DeleteTags", &e).about(t.id))?;
            Ok(request_id(out.request_id()))
        }
        "rds:db" => {
            let c = client!(aws_sdk_rds, ctx, t.account, t.region);
            let out = c
                .remove_tags_from_resource()
                .resource_name(t.arn())
                .tag_keys(key)
                .send()
                .await
                .map_err(|e| AwsError::sdk("rds", "RemoveTagsFromResource", &e).about(t.id))?;
            Ok(request_id(out.request_id()))
        }
        "logs:log-group" => {
            let c = client!(aws_sdk_cloudwatchlogs, ctx, t.account, t.region);
            let out = c
                .untag_resource()
                .resource_arn(t.arn())
                .tag_keys(key)
                .send()
                .await
                .map_err(|e| AwsError::sdk("cloudwatchlogs", "UntagResource", &e).about(t.id))?;
            Ok(request_id(out.request_id()))
        }
        _ => Err(t.unsupported("UntagResource")),
    }
}

/// The name of an RDS final snapshot for a plan's token: letters, digits and single hyphens, starting with a
/// letter, at most 255 characters.
pub fn final_snapshot_name(db: &str, token: &str) -> String {
    let mut name = String::from("cloudwarden-final-");
    for c in db.chars().chain(['-']).chain(token.chars()) {
        let c = if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' };
        if !(c == '-' && name.ends_with('-')) {
            name.push(c);
        }
    }
    name.truncate(255);
    name.trim_end_matches('-').to_string()
}

/// Makes the action's mutating calls. `token` identifies the plan (tags the snapshot taken before a volume is
/// deleted, names an RDS final snapshot); `retention_days` is what `set_retention` sets. The caller has
/// described the resource and checked that the action is still to be done.
pub async fn act(
    ctx: &AwsContext,
    t: &Target<'_>,
    action: Action,
    token: &str,
    retention_days: i32,
) -> Result<Acted, ActionError> {
    use aws_sdk_ec2::operation::RequestId as _;
    if t.resource_type != action.resource_type() {
        return Err(ActionError::Refused {
            code: "WrongResourceType",
            message: format!("{action} applies to {}, not {}", action.resource_type(), t.resource_type),
        });
    }
    let ec2 = || client!(aws_sdk_ec2, ctx, t.account, t.region);
    let rds = || client!(aws_sdk_rds, ctx, t.account, t.region);
    match action {
        Action::Stop => {
            let out = ec2()
                .stop_instances()
                .instance_ids(t.id)
                .send()
                .await
                .map_err(|e| AwsError::sdk("ec2", "StopInstances", &e).about(t.id))?;
            Ok(Acted { request_id: request_id(out.request_id()), ..Acted::default() })
        }
        Action::Terminate => {
            let out = ec2()
                .terminate_instances()
                .instance_ids(t.id)
                .send()
                .await
                .map_err(|e| AwsError::sdk("ec2", "TerminateInstances", &e).about(t.id))?;
            Ok(Acted { request_id: request_id(out.request_id()), ..Acted::default() })
        }
        Action::SnapshotDelete => snapshot_then_delete(&ec2(), t, token).await,
        Action::DeleteSnapshot => {
            let c = ec2();
            let images = c
                .describe_images()
                .owners("self")
                .filters(Filter::builder().name("block-device-mapping.snapshot-id").values(t.id).build())
                .send()
                .await
                .map_err(|e| AwsError::sdk("ec2", "DescribeImages", &e).about(t.id))?;
            let amis: Vec<&str> = images.images().iter().filter_map(|i| i.image_id()).collect();
            if !amis.is_empty() {
                return Err(ActionError::Refused {
                    code: "SnapshotInUseByAmi",
                    message: format!("snapshot {} backs {}", t.id, amis.join(", ")),
                });
            }
            let out = c
                .delete_snapshot()
                .snapshot_id(t.id)
                .send()
                .await
                .map_err(|e| AwsError::sdk("ec2", "DeleteSnapshot", &e).about(t.id))?;
            Ok(Acted { request_id: request_id(out.request_id()), ..Acted::default() })
        }
        Action::Release => {
            let out = ec2()
                .release_address()
                .allocation_id(t.id)
                .send()
                .await
                .map_err(|e| AwsError::sdk("ec2", "ReleaseAddress", &e).about(t.id))?;
            Ok(Acted { request_id: request_id(out.request_id()), ..Acted::default() })
        }
        Action::StopDb => {
            let out = rds()
                .stop_db_instance()
                .db_instance_identifier(t.id)
                .send()
                .await
                .map_err(|e| AwsError::sdk("rds", "StopDBInstance", &e).about(t.id))?;
            Ok(Acted { request_id: request_id(out.request_id()), ..Acted::default() })
        }
        Action::DeleteDb => {
            let snapshot = final_snapshot_name(t.id, token);
            let out = rds()
                .delete_db_instance()
                .db_instance_identifier(t.id)
                .skip_final_snapshot(false)
                .final_db_snapshot_identifier(&snapshot)
                .send()
                .await
                .map_err(|e| AwsError::sdk("rds", "DeleteDBInstance", &e).about(t.id))?;
            Ok(Acted { request_id: request_id(out.request_id()), snapshot_id: Some(snapshot), pending: None })
        }
        Action::SetRetention => {
            let c = client!(aws_sdk_cloudwatchlogs, ctx, t.account, t.region);
            let out = c
                .put_retention_policy()
                .log_group_name(t.id)
                .retention_in_days(retention_days)
                .send()
                .await
                .map_err(|e| AwsError::sdk("cloudwatchlogs", "PutRetentionPolicy", &e).about(t.id))?;
            Ok(Acted { request_id: request_id(out.request_id()), ..Acted::default() })
        }
    }
}

/// A volume's deletion: its snapshot first (found again by the plan's tag if an earlier attempt took it),
/// the deletion only once that snapshot is complete.
async fn snapshot_then_delete(c: &aws_sdk_ec2::Client, t: &Target<'_>, token: &str) -> Result<Acted, ActionError> {
    use aws_sdk_ec2::operation::RequestId as _;
    let found = c
        .describe_snapshots()
        .owner_ids("self")
        .filters(Filter::builder().name(format!("tag:{PLAN_TAG}")).values(token).build())
        .send()
        .await
        .map_err(|e| AwsError::sdk("ec2", "DescribeSnapshots", &e).about(t.id))?;
    let existing = found.snapshots().iter().find(|s| s.volume_id() == Some(t.id));
    let (snapshot_id, state) = match existing {
        Some(s) => (
            s.snapshot_id().unwrap_or_default().to_string(),
            s.state().map(|x| x.as_str().to_string()).unwrap_or_default(),
        ),
        None => {
            let tags = TagSpecification::builder()
                .resource_type(ResourceType::Snapshot)
                .tags(Tag::builder().key(PLAN_TAG).value(token).build())
                .tags(Tag::builder().key("Name").value(format!("cloudwarden: {} before deletion", t.id)).build())
                .build();
            let out = c
                .create_snapshot()
                .volume_id(t.id)
                .description(format!("Taken by cloudwarden before deleting {} (plan {token})", t.id))
                .tag_specifications(tags)
                .send()
                .await
                .map_err(|e| AwsError::sdk("ec2", "CreateSnapshot", &e).about(t.id))?;
            let id = out.snapshot_id().unwrap_or_default().to_string();
            if id.is_empty() {
                return Err(AwsError::malformed("ec2", "CreateSnapshot", "no snapshot id in the answer")
                    .about(t.id)
                    .into());
            }
            (id, out.state().map(|x| x.as_str().to_string()).unwrap_or_default())
        }
    };
    match state.as_str() {
        "completed" => {}
        "error" => {
            return Err(ActionError::Refused {
                code: "SnapshotFailed",
                message: format!("the snapshot {snapshot_id} of {} failed; the volume is kept", t.id),
            })
        }
        other => {
            return Ok(Acted {
                request_id: None,
                snapshot_id: Some(snapshot_id.clone()),
                pending: Some(format!("snapshot {snapshot_id} is {other}")),
            })
        }
    }
    let out = c
        .delete_volume()
        .volume_id(t.id)
        .send()
        .await
        .map_err(|e| AwsError::sdk("ec2", "DeleteVolume", &e).about(t.id))?;
    Ok(Acted { request_id: request_id(out.request_id()), snapshot_id: Some(snapshot_id), pending: None })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn action_names_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
            assert_eq!(Action::first_for(a.resource_type()).map(|f| f.resource_type()), Some(a.resource_type()));
        }
        assert_eq!(Action::parse("nuke"), None);
        assert_eq!(Action::first_for("s3:bucket"), None);
        assert_eq!(Action::Stop.escalation(), Some(Action::Terminate));
        assert_eq!(Action::Release.escalation(), None);
    }

    #[test]
    fn final_snapshot_names_are_valid_identifiers() {
        assert_eq!(final_snapshot_name("Orders_DB", "cw-12-1"), "cloudwarden-final-orders-db-cw-12-1");
        assert_eq!(final_snapshot_name("db--x-", "p-"), "cloudwarden-final-db-x-p");
        assert!(final_snapshot_name(&"a".repeat(400), "t").len() <= 255);
    }

    fn resource(state: Option<&str>, details: Details) -> Resource {
        Resource {
            arn: "arn".into(),
            resource_type: "ec2:instance".into(),
            account_id: "1".into(),
            region: "us-east-1".into(),
            id: "i-1".into(),
            name: None,
            state: state.map(str::to_string),
            tags: BTreeMap::new(),
            created_at: None,
            details,
        }
    }

    #[test]
    fn done_means_aws_shows_the_result() {
        let stopped = resource(Some("stopped"), Details::Tagged);
        let stopping = resource(Some("stopping"), Details::Tagged);
        assert!(Action::Stop.done_in(Some(&stopped), 0));
        assert!(!Action::Stop.done_in(Some(&stopping), 0));
        assert!(!Action::Stop.done_in(None, 0), "a stop is not done by the instance disappearing");
        assert!(Action::Terminate.done_in(None, 0));
        assert!(!Action::Release.done_in(Some(&stopped), 0));
        let logs = |d| resource(None, Details::LogGroup { retention_days: d, stored_bytes: None });
        assert!(Action::SetRetention.done_in(Some(&logs(Some(30))), 30));
        assert!(!Action::SetRetention.done_in(Some(&logs(None)), 30));
        assert!(!Action::SetRetention.done_in(None, 30));
    }
}
