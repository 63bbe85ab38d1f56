//! Our own model of what was collected. Built from SDK types at the edge, consumed by everything else.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One cloud resource, keyed by its ARN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// The ARN, in the form AWS documents for the resource type (see [`crate::arn`]).
    pub arn: String,
    /// `service:type` as the Resource Groups Tagging API spells it, e.g. `ec2:instance`, `s3:bucket`.
    pub resource_type: String,
    /// The account that owns the resource.
    pub account_id: String,
    /// The region the resource lives in (for S3, the bucket's region).
    pub region: String,
    /// The service's own identifier (instance id, volume id, bucket name, ...).
    pub id: String,
    /// A human name where the service has one (the `Name` tag for EC2, the identifier elsewhere).
    pub name: Option<String>,
    /// Lifecycle state as the service reports it (`running`, `stopped`, `available`, `in-use`, ...).
    pub state: Option<String>,
    /// The resource's tags. Keys starting with `aws:` are kept but never count as tagging.
    pub tags: BTreeMap<String, String>,
    /// When the resource was created or launched, where the service says.
    pub created_at: Option<DateTime<Utc>>,
    /// Service-specific facts the rules need.
    pub details: Details,
}

impl Resource {
    /// True when the resource carries no tag of its own (system `aws:` tags do not count).
    pub fn is_untagged(&self) -> bool {
        !self.tags.keys().any(|k| !k.starts_with("aws:"))
    }
}

/// Service-specific details, one variant per resource family we describe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Details {
    /// Only known through the Resource Groups Tagging API.
    #[default]
    Tagged,
    Instance {
        instance_type: Option<String>,
        /// When a stopped instance was stopped, parsed from its state transition reason.
        stopped_at: Option<DateTime<Utc>>,
        volume_ids: Vec<String>,
    },
    Volume {
        size_gib: Option<i32>,
        volume_type: Option<String>,
        attached_instance_ids: Vec<String>,
    },
    Snapshot {
        volume_id: Option<String>,
        size_gib: Option<i32>,
    },
    ElasticIp {
        public_ip: Option<String>,
        association_id: Option<String>,
        instance_id: Option<String>,
    },
    Bucket,
    DbInstance {
        instance_class: Option<String>,
        engine: Option<String>,
        allocated_storage_gib: Option<i32>,
    },
    LogGroup {
        retention_days: Option<i32>,
        stored_bytes: Option<i64>,
    },
}

/// A slice of the inventory that one collection covered completely: every resource of `resource_type` in
/// `account_id` (and `region`, unless the type is global to the account, like S3 buckets) was listed.
/// Only complete scopes may mark resources as gone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    pub account_id: String,
    /// `None` for types listed once per account (S3 buckets).
    pub region: Option<String>,
    pub resource_type: String,
}

/// A part of the inventory that could not be collected this cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeFailure {
    /// The configured account name.
    pub account: String,
    pub account_id: Option<String>,
    pub region: Option<String>,
    /// `service:operation` that failed, e.g. `ec2:DescribeVolumes`.
    pub source: String,
    /// The error, rendered for operators (logs, CLI); never used as a metric label.
    pub error: String,
}

/// What one inventory cycle produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InventoryReport {
    pub resources: Vec<Resource>,
    pub complete_scopes: Vec<Scope>,
    pub failures: Vec<ScopeFailure>,
    /// (configured name, account id) of every account that could be reached.
    pub accounts: Vec<(String, String)>,
    /// (account id, region) where the Tagging API answered every page: there, every type no describe call
    /// covers ([`crate::aws::inventory::DESCRIBED`]) was listed completely, so such a resource not listed is
    /// gone, even the last of its type.
    #[serde(default)]
    pub tagging_complete: Vec<(String, String)>,
}
