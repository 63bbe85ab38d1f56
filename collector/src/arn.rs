//! ARN parsing and the canonical ARN forms cloudwarden keys resources by.
//!
//! The forms follow AWS's documentation, which is also what the Resource Groups Tagging API returns, so a
//! resource seen by a service's describe call and by `GetResources` merges into one:
//!
//! | type | ARN |
//! |---|---|
//! | `ec2:instance` | `arn:aws:ec2:{region}:{account}:instance/{id}` |
//! | `ec2:volume` | `arn:aws:ec2:{region}:{account}:volume/{id}` |
//! | `ec2:snapshot` | `arn:aws:ec2:{region}::snapshot/{id}` (no account) |
//! | `ec2:elastic-ip` | `arn:aws:ec2:{region}:{account}:elastic-ip/{allocation id}` |
//! | `s3:bucket` | `arn:aws:s3:::{name}` |
//! | `rds:db` | `arn:aws:rds:{region}:{account}:db:{identifier}` |
//! | `logs:log-group` | `arn:aws:logs:{region}:{account}:log-group:{name}` |

use std::fmt;

/// The parts of an ARN: `arn:{partition}:{service}:{region}:{account}:{resource}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed ARN {0:?}")]
pub struct ArnError(pub String);

impl<'a> Arn<'a> {
    pub fn parse(s: &'a str) -> Result<Self, ArnError> {
        let mut parts = s.splitn(6, ':');
        let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(resource)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ArnError(s.to_string()));
        };
        if partition.is_empty() || service.is_empty() || resource.is_empty() {
            return Err(ArnError(s.to_string()));
        }
        Ok(Arn { partition, service, region, account, resource })
    }

    /// The `service:type` form of the Tagging API: `ec2:instance`, `rds:db`, `s3:bucket`.
    pub fn resource_type(&self) -> String {
        let kind =
            self.resource.split(['/', ':']).next().filter(|k| *k != self.resource).unwrap_or(match self.service {
                "s3" => "bucket",
                _ => "",
            });
        if kind.is_empty() {
            self.service.to_string()
        } else {
            format!("{}:{}", self.service, kind)
        }
    }

    /// The resource's own id: what follows the type and its separator.
    pub fn resource_id(&self) -> &'a str {
        match self.resource.find(['/', ':']) {
            Some(i) if self.service != "s3" => &self.resource[i + 1..],
            _ => self.resource,
        }
    }
}

impl fmt::Display for Arn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "arn:{}:{}:{}:{}:{}", self.partition, self.service, self.region, self.account, self.resource)
    }
}

/// The partition a region belongs to.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// Builds the canonical ARN of a resource we learnt about from a describe call.
pub fn build(resource_type: &str, region: &str, account: &str, id: &str) -> String {
    let p = partition(region);
    match resource_type {
        "ec2:snapshot" => format!("arn:{p}:ec2:{region}::snapshot/{id}"),
        "s3:bucket" => format!("arn:{p}:s3:::{id}"),
        "rds:db" => format!("arn:{p}:rds:{region}:{account}:db:{id}"),
        "logs:log-group" => format!("arn:{p}:logs:{region}:{account}:log-group:{id}"),
        other => {
            let (service, kind) = other.split_once(':').unwrap_or((other, ""));
            format!("arn:{p}:{service}:{region}:{account}:{kind}/{id}")
        }
    }
}

/// Rewrites an ARN from the Tagging API into the canonical form (log groups lose a trailing `:*`, snapshots
/// lose the account), so it merges with the describe call's view of the same resource.
pub fn canonical(arn: &str) -> String {
    let trimmed = arn.strip_suffix(":*").unwrap_or(arn);
    match Arn::parse(trimmed) {
        Ok(a) if a.service == "ec2" && a.resource.starts_with("snapshot/") && !a.account.is_empty() => {
            Arn { account: "", ..a }.to_string()
        }
        _ => trimmed.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(arn: &str, resource_type: &str, id: &str) {
        let a = Arn::parse(arn).unwrap();
        assert_eq!(a.resource_type(), resource_type, "{arn}");
        assert_eq!(a.resource_id(), id, "{arn}");
        assert_eq!(a.to_string(), arn);
    }

    #[test]
    fn parses_the_forms_we_key_by() {
        check("arn:aws:ec2:us-east-1:123456789012:instance/i-0abc", "ec2:instance", "i-0abc");
        check("arn:aws:ec2:us-east-1::snapshot/snap-1", "ec2:snapshot", "snap-1");
        check("arn:aws:s3:::my-bucket", "s3:bucket", "my-bucket");
        check("arn:aws:rds:eu-west-1:123456789012:db:orders", "rds:db", "orders");
        check("arn:aws:logs:eu-west-1:1:log-group:/aws/lambda/x", "logs:log-group", "/aws/lambda/x");
        check("arn:aws:sns:us-east-1:1:topic", "sns", "topic");
    }

    #[test]
    fn rejects_garbage() {
        assert!(Arn::parse("not-an-arn").is_err());
        assert!(Arn::parse("arn:aws:ec2").is_err());
        assert!(Arn::parse("arn::ec2:r:a:x").is_err());
    }

    #[test]
    fn build_and_canonical_agree() {
        for (t, id) in [
            ("ec2:instance", "i-1"),
            ("ec2:volume", "vol-1"),
            ("ec2:snapshot", "snap-1"),
            ("ec2:elastic-ip", "eipalloc-1"),
            ("s3:bucket", "b"),
            ("rds:db", "db1"),
            ("logs:log-group", "/g/1"),
        ] {
            let arn = build(t, "us-east-1", "123456789012", id);
            assert_eq!(canonical(&arn), arn);
            let parsed = Arn::parse(&arn).unwrap();
            assert_eq!(parsed.resource_type(), t);
            assert_eq!(parsed.resource_id(), id);
        }
        assert_eq!(canonical("arn:aws:logs:us-east-1:1:log-group:g:*"), "arn:aws:logs:us-east-1:1:log-group:g");
        assert_eq!(canonical("arn:aws:ec2:us-east-1:1:snapshot/snap-1"), "arn:aws:ec2:us-east-1::snapshot/snap-1");
        assert_eq!(build("ec2:instance", "cn-north-1", "1", "i-1"), "arn:aws-cn:ec2:cn-north-1:1:instance/i-1");
    }
}
