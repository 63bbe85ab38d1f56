//! What the rules read: the daemon builds these from its database and passes them in with `now`. Our own
//! types, independent of the collector's and of any SDK, so the engine builds and tests on its own.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One live cloud resource from the inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// The canonical ARN: the resource's identity everywhere in the engine.
    pub arn: String,
    /// `service:type` as the Resource Groups Tagging API spells it: `ec2:instance`, `ec2:volume`,
    /// `ec2:snapshot`, `ec2:elastic-ip`, `s3:bucket`, `rds:db`, `logs:log-group`, ...
    pub resource_type: String,
    pub account_id: String,
    pub region: String,
    /// The service's own id (instance id, volume id, bucket name, ...).
    pub id: String,
    pub name: Option<String>,
    /// Lifecycle state as the service reports it (`running`, `stopped`, `available`, `in-use`, ...).
    pub state: Option<String>,
    /// The resource's tags. Keys starting with `aws:` are system tags and never count as tagging.
    pub tags: BTreeMap<String, String>,
    /// When the service says the resource was created, where it says.
    pub created_at: Option<DateTime<Utc>>,
    /// When cloudwarden first saw the resource.
    pub first_seen: DateTime<Utc>,
    pub details: Details,
}

impl Resource {
    /// True when the resource carries no tag of its own (`aws:` system tags do not count).
    pub fn is_untagged(&self) -> bool {
        !self.tags.keys().any(|k| !k.starts_with("aws:"))
    }
}

/// Facts of some resource families that the cleanup rules need.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Details {
    #[default]
    Other,
    Instance {
        instance_type: Option<String>,
        /// When a stopped instance was stopped, where known.
        stopped_at: Option<DateTime<Utc>>,
    },
    Volume {
        size_gib: Option<i32>,
        volume_type: Option<String>,
        /// Attached to at least one instance.
        attached: bool,
    },
    Snapshot {
        volume_id: Option<String>,
        size_gib: Option<i32>,
    },
    ElasticIp {
        public_ip: Option<String>,
        /// Associated with an instance or a network interface.
        associated: bool,
    },
    LogGroup {
        /// `None`: events never expire.
        retention_days: Option<i32>,
        stored_bytes: Option<i64>,
    },
}

/// Cost of one day of one resource (or of a charge without a resource) from the billing files, or of
/// one group from Cost Explorer. Money is exact: decimals, never floats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyCost {
    /// UTC day of the charge.
    pub day: NaiveDate,
    pub account_id: String,
    pub service: String,
    /// The billing files' `ResourceId` (an ARN or a service id), when the charge has one.
    pub resource_id: Option<String>,
    /// The tags the billing data carries for the charge.
    pub tags: BTreeMap<String, String>,
    /// In USD.
    pub amount: Decimal,
}

/// One managed resource of a Terraform state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TfResource {
    /// Where it was read from (file path or `s3://` URI).
    pub origin: String,
    /// The resource address, e.g. `module.app.aws_instance.web[0]`.
    pub address: String,
    /// The Terraform type, e.g. `aws_instance`.
    pub tf_type: String,
    /// The canonical ARN, when it could be known or built.
    pub arn: Option<String>,
    /// The provider's id attribute.
    pub id: Option<String>,
    /// `tags` as the state records them (not `tags_all`).
    pub tags: BTreeMap<String, String>,
}
