//! One tfstate v4 document into our types: its managed resources, one per instance, with what identifies them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::TfStateError;
use crate::arn::{self, Arn};

/// One Terraform state, as read from one file or object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateFile {
    /// Where it was read: a file path or an `s3://bucket/key` URI.
    pub origin: String,
    /// Terraform's counter of writes to this state.
    pub serial: u64,
    /// The id Terraform gave the state when it was created; kept across writes.
    pub lineage: String,
    /// The Terraform version that last wrote the state.
    pub terraform_version: String,
    /// Its managed resources, one per instance, in the state's order.
    pub resources: Vec<TfResource>,
}

/// One instance of a managed resource in a state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TfResource {
    /// The full address with module path and instance key: `module.net.aws_instance.web["a"]`.
    pub address: String,
    /// The Terraform resource type: `aws_instance`.
    pub tf_type: String,
    /// The provider configuration as the state writes it: `provider["registry.terraform.io/hashicorp/aws"]`,
    /// followed by `.alias` for an aliased provider.
    pub provider: String,
    /// The inventory's type (`ec2:instance`, `s3:bucket`, ...) for the types we map; `None` otherwise.
    pub resource_type: Option<String>,
    /// The id the inventory knows the resource by (instance id, bucket name, DB identifier, log group name,
    /// EIP allocation id); `attributes.id` for unmapped types.
    pub id: Option<String>,
    /// The `arn` attribute in canonical form ([`arn::canonical`]), when the state has one.
    pub arn: Option<String>,
    /// The region the attributes show (ARN, `region`, availability zone, network border group).
    pub region: Option<String>,
    /// The account the attributes show (ARN, `owner_id`).
    pub account_id: Option<String>,
    /// Set for a deposed object (left by `create_before_destroy`, still to be destroyed): its deposed key.
    pub deposed: Option<String>,
    /// `attributes.tags`: the tags set on the resource itself, without the provider's default tags.
    pub tags: BTreeMap<String, String>,
    /// Where the state was read: a file path or an `s3://bucket/key` URI.
    pub origin: String,
}

impl TfResource {
    /// The canonical ARN the inventory keys this resource by: the `arn` attribute when there is one, else built
    /// from the mapped type and id, the region and account the attributes show or, failing those, the
    /// defaults. `None` for an unmapped type without an `arn` attribute, or a mapped one without an id.
    pub fn canonical_arn(&self, default_region: &str, default_account: &str) -> Option<String> {
        if let Some(a) = &self.arn {
            return Some(a.clone());
        }
        let resource_type = self.resource_type.as_deref()?;
        let id = self.id.as_deref()?;
        let region = self.region.as_deref().unwrap_or(default_region);
        let account = self.account_id.as_deref().unwrap_or(default_account);
        Some(arn::canonical(&arn::build(resource_type, region, account, id)))
    }
}

/// The Terraform types we map to inventory types, and the attributes holding the inventory's id, first
/// present wins.
const MAPPED: [(&str, &str, &[&str]); 9] = [
    ("aws_instance", "ec2:instance", &["id"]),
    ("aws_ebs_volume", "ec2:volume", &["id"]),
    ("aws_ebs_snapshot", "ec2:snapshot", &["id"]),
    ("aws_ebs_snapshot_copy", "ec2:snapshot", &["id"]),
    ("aws_ebs_snapshot_import", "ec2:snapshot", &["id"]),
    // `id` is the allocation id for VPC addresses; the public IP for the retired EC2-Classic ones.
    ("aws_eip", "ec2:elastic-ip", &["allocation_id", "id"]),
    ("aws_s3_bucket", "s3:bucket", &["bucket", "id"]),
    // Since AWS provider 5, `id` is the DBI resource id (`db-...`); the ARN uses the identifier.
    ("aws_db_instance", "rds:db", &["identifier", "id"]),
    ("aws_cloudwatch_log_group", "logs:log-group", &["name", "id"]),
];

/// The inventory type a Terraform resource type maps to: `aws_instance` → `ec2:instance`.
pub fn resource_type_of(tf_type: &str) -> Option<&'static str> {
    MAPPED.iter().find(|(t, _, _)| *t == tf_type).map(|(_, r, _)| *r)
}

fn id_attributes(tf_type: &str) -> &'static [&'static str] {
    MAPPED.iter().find(|(t, _, _)| *t == tf_type).map_or(&["id"], |(_, _, a)| a)
}

/// Parses one state. Only version 4 is read; data sources are skipped.
pub fn parse_state(origin: &str, bytes: &[u8]) -> Result<StateFile, TfStateError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| invalid_json(origin, &e))?;
    let w = Walk { origin };
    let top = w.object(&doc, "top level")?;
    let version = w.u64(top, "", "version")?;
    if version != 4 {
        return Err(TfStateError::UnsupportedVersion { origin: origin.to_string(), version });
    }
    let serial = w.u64(top, "", "serial")?;
    let lineage = w.str(top, "", "lineage")?.to_string();
    let terraform_version = w.str(top, "", "terraform_version")?.to_string();
    let mut resources = Vec::new();
    // Terraform writes `"resources": []` for an empty state; a missing list reads as empty, like Terraform does.
    if let Some(list) = top.get("resources").filter(|v| !v.is_null()) {
        for (i, r) in w.array(list, "resources")?.iter().enumerate() {
            w.resource(r, &format!("resources[{i}]"), &mut resources)?;
        }
    }
    Ok(StateFile { origin: origin.to_string(), serial, lineage, terraform_version, resources })
}

fn invalid_json(origin: &str, e: &serde_json::Error) -> TfStateError {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    TfStateError::InvalidJson { origin: origin.to_string(), line: e.line(), column: e.column(), message }
}

/// Reads the JSON tree, turning every absence or wrong type into an error naming the field path.
struct Walk<'o> {
    origin: &'o str,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Walk<'_> {
    fn missing(&self, path: String) -> TfStateError {
        TfStateError::MissingField { origin: self.origin.to_string(), path }
    }

    fn wrong(&self, path: &str, expected: &'static str) -> TfStateError {
        TfStateError::WrongType { origin: self.origin.to_string(), path: path.to_string(), expected }
    }

    /// A required field: absent and `null` are both missing.
    fn field<'v>(&self, obj: &'v Map<String, Value>, parent: &str, key: &str) -> Result<&'v Value, TfStateError> {
        obj.get(key).filter(|v| !v.is_null()).ok_or_else(|| self.missing(join(parent, key)))
    }

    fn str<'v>(&self, obj: &'v Map<String, Value>, parent: &str, key: &str) -> Result<&'v str, TfStateError> {
        self.field(obj, parent, key)?.as_str().ok_or_else(|| self.wrong(&join(parent, key), "a string"))
    }

    fn u64(&self, obj: &Map<String, Value>, parent: &str, key: &str) -> Result<u64, TfStateError> {
        self.field(obj, parent, key)?.as_u64().ok_or_else(|| self.wrong(&join(parent, key), "a non-negative integer"))
    }

    fn object<'v>(&self, v: &'v Value, path: &str) -> Result<&'v Map<String, Value>, TfStateError> {
        v.as_object().ok_or_else(|| self.wrong(path, "an object"))
    }

    fn array<'v>(&self, v: &'v Value, path: &str) -> Result<&'v Vec<Value>, TfStateError> {
        v.as_array().ok_or_else(|| self.wrong(path, "an array"))
    }

    /// One entry of `resources`: every instance of a managed resource, nothing of a data source.
    fn resource(&self, v: &Value, path: &str, out: &mut Vec<TfResource>) -> Result<(), TfStateError> {
        let r = self.object(v, path)?;
        let mode = self.str(r, path, "mode")?;
        let tf_type = self.str(r, path, "type")?;
        let name = self.str(r, path, "name")?;
        if mode != "managed" {
            return Ok(());
        }
        let provider = self.str(r, path, "provider")?;
        let module = match r.get("module") {
            None | Some(Value::Null) => "",
            Some(m) => m.as_str().ok_or_else(|| self.wrong(&join(path, "module"), "a string"))?,
        };
        let instances_path = join(path, "instances");
        let instances = self.array(self.field(r, path, "instances")?, &instances_path)?;
        for (j, inst) in instances.iter().enumerate() {
            let ipath = format!("{instances_path}[{j}]");
            let inst = self.object(inst, &ipath)?;
            let key = match inst.get("index_key") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => format!("[{}]", Value::String(s.clone())),
                Some(Value::Number(n)) if n.is_u64() => format!("[{n}]"),
                Some(_) => return Err(self.wrong(&join(&ipath, "index_key"), "a string or a non-negative integer")),
            };
            let deposed = match inst.get("deposed") {
                None | Some(Value::Null) => None,
                Some(d) => {
                    Some(d.as_str().ok_or_else(|| self.wrong(&join(&ipath, "deposed"), "a string"))?.to_string())
                }
            };
            let prefix = if module.is_empty() { String::new() } else { format!("{module}.") };
            out.push(instance(
                Attrs::of(inst),
                format!("{prefix}{tf_type}.{name}{key}"),
                tf_type,
                provider,
                deposed,
                self.origin,
            ));
        }
        Ok(())
    }
}

/// An instance's attributes: the JSON object Terraform writes today, or the flat string map (`tags.%`,
/// `tags.Name`) of states first written before Terraform 0.12 and not refreshed since. Provider data, so read
/// leniently: a value of an unexpected type counts as absent.
enum Attrs<'a> {
    Json(&'a Map<String, Value>),
    Flat(&'a Map<String, Value>),
    None,
}

impl<'a> Attrs<'a> {
    fn of(inst: &'a Map<String, Value>) -> Self {
        match (inst.get("attributes"), inst.get("attributes_flat")) {
            (Some(Value::Object(m)), _) => Attrs::Json(m),
            (_, Some(Value::Object(m))) => Attrs::Flat(m),
            _ => Attrs::None,
        }
    }

    /// A non-empty string attribute.
    fn str(&self, key: &str) -> Option<&'a str> {
        match self {
            Attrs::Json(m) | Attrs::Flat(m) => m.get(key)?.as_str().filter(|s| !s.is_empty()),
            Attrs::None => None,
        }
    }

    fn tags(&self) -> BTreeMap<String, String> {
        let pair = |k: &str, v: &Value| Some((k.to_string(), v.as_str()?.to_string()));
        match self {
            Attrs::Json(m) => match m.get("tags") {
                Some(Value::Object(t)) => t.iter().filter_map(|(k, v)| pair(k, v)).collect(),
                _ => BTreeMap::new(),
            },
            Attrs::Flat(m) => {
                m.iter().filter_map(|(k, v)| pair(k.strip_prefix("tags.").filter(|k| *k != "%")?, v)).collect()
            }
            Attrs::None => BTreeMap::new(),
        }
    }
}

/// The region part of an availability zone, local zone or network border group name:
/// `us-east-1a` → `us-east-1`, `us-west-2-lax-1a` → `us-west-2`, `us-gov-west-1` → `us-gov-west-1`.
pub(crate) fn region_of_zone(zone: &str) -> Option<String> {
    let mut out = Vec::new();
    for part in zone.split('-') {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            if part.is_empty() || !part.chars().all(|c| c.is_ascii_lowercase()) {
                return None;
            }
            out.push(part.to_string());
        } else {
            out.push(digits);
            return (out.len() >= 3).then(|| out.join("-"));
        }
    }
    None
}

fn instance(
    attrs: Attrs<'_>,
    address: String,
    tf_type: &str,
    provider: &str,
    deposed: Option<String>,
    origin: &str,
) -> TfResource {
    let resource_type = resource_type_of(tf_type).map(str::to_string);
    let id = id_attributes(tf_type).iter().find_map(|k| attrs.str(k)).map(str::to_string);
    let parsed = attrs.str("arn").and_then(|a| Arn::parse(a).ok());
    let region = parsed
        .as_ref()
        .map(|a| a.region)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .or_else(|| attrs.str("region").map(str::to_string))
        .or_else(|| attrs.str("availability_zone").and_then(region_of_zone))
        .or_else(|| attrs.str("network_border_group").and_then(region_of_zone));
    let account_id = parsed
        .as_ref()
        .map(|a| a.account)
        .filter(|a| !a.is_empty())
        .or_else(|| attrs.str("owner_id").filter(|o| o.len() == 12 && o.bytes().all(|b| b.is_ascii_digit())))
        .map(str::to_string);
    TfResource {
        address,
        tf_type: tf_type.to_string(),
        provider: provider.to_string(),
        resource_type,
        id,
        arn: parsed.as_ref().map(|a| arn::canonical(&a.to_string())),
        region,
        account_id,
        deposed,
        tags: attrs.tags(),
        origin: origin.to_string(),
    }
}
