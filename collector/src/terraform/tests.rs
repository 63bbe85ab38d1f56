use std::path::PathBuf;

use super::parse::region_of_zone;
use super::*;

/// A v4 state around a `resources` list.
fn v4(resources: &str) -> String {
    format!(
        r#"{{"version": 4, "terraform_version": "1.9.8", "serial": 7, "lineage": "3f1c", "outputs": {{}},
            "resources": [{resources}], "check_results": null}}"#
    )
}

/// One resource as a line: address, inventory type, id, ARN, region, account, deposed key, tags.
fn render(r: &TfResource) -> String {
    let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let tags: Vec<String> = r.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{} {} id={} arn={} region={} account={} deposed={} tags={}",
        r.address,
        o(&r.resource_type),
        o(&r.id),
        o(&r.arn),
        o(&r.region),
        o(&r.account_id),
        o(&r.deposed),
        tags.join(",")
    )
}

/// Parses `text` and compares its resources, rendered, with `want`; or its error message with `want[0]`
/// when `want` starts with `error: `.
fn check(text: &str, want: &[&str]) {
    let got: Vec<String> = match parse_state("prod.tfstate", text.as_bytes()) {
        Ok(s) => {
            assert!(s.resources.iter().all(|r| r.origin == "prod.tfstate"));
            s.resources.iter().map(render).collect()
        }
        Err(e) => vec![format!("error: {e}")],
    };
    assert_eq!(got, want, "{text}");
}

#[test]
fn managed_resources_one_per_instance() {
    check(
        &v4(r#"
        {"mode": "managed", "type": "aws_instance", "name": "web", "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
         "instances": [{"schema_version": 1, "attributes": {"id": "i-0a1", "arn": "arn:aws:ec2:eu-west-1:123456789012:instance/i-0a1",
            "availability_zone": "eu-west-1b", "tags": {"Name": "web", "team": "core"}, "tags_all": {"Name": "web", "team": "core", "env": "prod"}}}]},
        {"mode": "data", "type": "aws_ami", "name": "base", "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
         "instances": [{"attributes": {"id": "ami-1", "arn": "arn:aws:ec2:eu-west-1::image/ami-1"}}]},
        {"module": "module.net", "mode": "managed", "type": "aws_eip", "name": "nat", "each": "list",
         "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
         "instances": [
            {"index_key": 0, "attributes": {"id": "eipalloc-0", "allocation_id": "eipalloc-0", "network_border_group": "eu-west-1", "tags": null}},
            {"index_key": 1, "attributes": {"id": "eipalloc-1", "allocation_id": "eipalloc-1", "tags": {}}}]},
        {"module": "module.app[\"blue\"].module.db", "mode": "managed", "type": "aws_db_instance", "name": "main", "each": "map",
         "provider": "provider[\"registry.terraform.io/hashicorp/aws\"].west",
         "instances": [{"index_key": "a \"quoted\" key", "attributes": {"id": "db-ABCDEFG", "identifier": "orders",
            "arn": "arn:aws:rds:us-west-2:123456789012:db:orders", "tags": {"env": "prod"}}}]},
        {"mode": "managed", "type": "aws_cloudwatch_log_group", "name": "app", "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
         "instances": [{"attributes": {"id": "/app/web", "name": "/app/web", "arn": "arn:aws:logs:eu-west-1:123456789012:log-group:/app/web:*"}}]},
        {"mode": "managed", "type": "random_id", "name": "suffix", "provider": "provider[\"registry.terraform.io/hashicorp/random\"]",
         "instances": [{"attributes": {"id": "q2Fz", "hex": "ab73"}}]}
        "#),
        &[
            "aws_instance.web ec2:instance id=i-0a1 arn=arn:aws:ec2:eu-west-1:123456789012:instance/i-0a1 region=eu-west-1 account=123456789012 deposed=- tags=Name=web,team=core",
            "module.net.aws_eip.nat[0] ec2:elastic-ip id=eipalloc-0 arn=- region=eu-west-1 account=- deposed=- tags=",
            "module.net.aws_eip.nat[1] ec2:elastic-ip id=eipalloc-1 arn=- region=- account=- deposed=- tags=",
            r#"module.app["blue"].module.db.aws_db_instance.main["a \"quoted\" key"] rds:db id=orders arn=arn:aws:rds:us-west-2:123456789012:db:orders region=us-west-2 account=123456789012 deposed=- tags=env=prod"#,
            "aws_cloudwatch_log_group.app logs:log-group id=/app/web arn=arn:aws:logs:eu-west-1:123456789012:log-group:/app/web region=eu-west-1 account=123456789012 deposed=- tags=",
            "random_id.suffix - id=q2Fz arn=- region=- account=- deposed=- tags=",
        ],
    );
}

#[test]
fn older_attribute_forms_and_deposed_objects() {
    check(
        &v4(r#"
        {"mode": "managed", "type": "aws_ebs_snapshot", "name": "s", "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
         "instances": [{"attributes": {"id": "snap-1", "arn": "arn:aws:ec2:us-east-1::snapshot/snap-1", "owner_id": "123456789012"}}]},
        {"mode": "managed", "type": "aws_s3_bucket", "name": "logs", "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
         "instances": [{"attributes_flat": {"id": "acme-logs", "bucket": "acme-logs", "region": "eu-central-1", "tags.%": "1", "tags.cost.centre": "42"}}]},
        {"mode": "managed", "type": "aws_ebs_volume", "name": "data", "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
         "instances": [
            {"attributes": {"id": "vol-2", "availability_zone": "us-west-2-lax-1a", "tags": {"n": 1, "ok": "yes"}}},
            {"deposed": "00d5c2e7", "status": "tainted", "attributes": {"id": "vol-1", "arn": "", "availability_zone": "us-west-2a"}}]},
        {"mode": "managed", "type": "aws_instance", "name": "bare", "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
         "instances": [{"status": "tainted"}]}
        "#),
        &[
            "aws_ebs_snapshot.s ec2:snapshot id=snap-1 arn=arn:aws:ec2:us-east-1::snapshot/snap-1 region=us-east-1 account=123456789012 deposed=- tags=",
            "aws_s3_bucket.logs s3:bucket id=acme-logs arn=- region=eu-central-1 account=- deposed=- tags=cost.centre=42",
            "aws_ebs_volume.data ec2:volume id=vol-2 arn=- region=us-west-2 account=- deposed=- tags=ok=yes",
            "aws_ebs_volume.data ec2:volume id=vol-1 arn=- region=us-west-2 account=- deposed=00d5c2e7 tags=",
            "aws_instance.bare ec2:instance id=- arn=- region=- account=- deposed=- tags=",
        ],
    );
}

#[test]
fn header_and_empty_states() {
    let s = parse_state("a.tfstate", v4("").as_bytes()).unwrap();
    assert_eq!((s.serial, s.lineage.as_str(), s.terraform_version.as_str()), (7, "3f1c", "1.9.8"));
    assert!(s.resources.is_empty());
    check(r#"{"version": 4, "terraform_version": "1.6.0", "serial": 0, "lineage": "x"}"#, &[]);
    check(r#"{"version": 4, "terraform_version": "1.6.0", "serial": 0, "lineage": "x", "resources": null}"#, &[]);
    check(&format!("\u{feff}{}", v4("")), &[]);
}

#[test]
fn rejects_what_it_cannot_read() {
    let cases = [
        ("", "error: prod.tfstate: invalid JSON at line 1, column 0: EOF while parsing a value"),
        ("<html>", "error: prod.tfstate: invalid JSON at line 1, column 1: expected value"),
        (
            "{\"version\": 4,\n  \"serial\": 1,,}",
            "error: prod.tfstate: invalid JSON at line 2, column 15: key must be a string",
        ),
        ("[4]", "error: prod.tfstate: top level: expected an object"),
        (
            r#"{"version": 3, "serial": 1, "modules": []}"#,
            "error: prod.tfstate: unsupported state version 3 (only version 4 is read)",
        ),
        (r#"{"version": 5}"#, "error: prod.tfstate: unsupported state version 5 (only version 4 is read)"),
        (r#"{"serial": 1}"#, "error: prod.tfstate: missing required field version"),
        (r#"{"version": "4"}"#, "error: prod.tfstate: version: expected a non-negative integer"),
        (
            r#"{"version": 4, "serial": 1, "terraform_version": "1.5.0"}"#,
            "error: prod.tfstate: missing required field lineage",
        ),
        (r#"{"version": 4, "serial": -1}"#, "error: prod.tfstate: serial: expected a non-negative integer"),
        (
            r#"{"version": 4, "serial": 1, "lineage": "l", "terraform_version": "1", "resources": {}}"#,
            "error: prod.tfstate: resources: expected an array",
        ),
    ];
    for (text, want) in cases {
        check(text, &[want]);
    }
    let resource_cases = [
        (
            r#"{"mode": "managed", "name": "x", "provider": "p", "instances": []}"#,
            "missing required field resources[1].type",
        ),
        (
            r#"{"mode": "managed", "type": null, "name": "x", "provider": "p", "instances": []}"#,
            "missing required field resources[1].type",
        ),
        (
            r#"{"mode": "managed", "type": "aws_instance", "name": "x", "instances": []}"#,
            "missing required field resources[1].provider",
        ),
        (
            r#"{"mode": "managed", "type": "aws_instance", "name": "x", "provider": "p"}"#,
            "missing required field resources[1].instances",
        ),
        (
            r#"{"mode": "managed", "type": 7, "name": "x", "provider": "p", "instances": []}"#,
            "resources[1].type: expected a string",
        ),
        (
            r#"{"mode": "managed", "type": "t", "name": "x", "provider": "p", "instances": [[]]}"#,
            "resources[1].instances[0]: expected an object",
        ),
        (
            r#"{"mode": "managed", "type": "t", "name": "x", "provider": "p", "instances": [{}, {"index_key": 1.5}]}"#,
            "resources[1].instances[1].index_key: expected a string or a non-negative integer",
        ),
        (
            r#"{"mode": "managed", "type": "t", "name": "x", "provider": "p", "module": 1, "instances": []}"#,
            "resources[1].module: expected a string",
        ),
        (r#""data""#, "resources[1]: expected an object"),
    ];
    let ok = r#"{"mode": "data", "type": "aws_ami", "name": "a", "provider": "p", "instances": []}"#;
    for (resource, want) in resource_cases {
        check(&v4(&format!("{ok}, {resource}")), &[&format!("error: prod.tfstate: {want}")]);
    }
}

#[test]
fn canonical_arns() {
    fn check(tf_type: &str, attributes: &str, want: Option<&str>) {
        let text = v4(&format!(
            r#"{{"mode": "managed", "type": "{tf_type}", "name": "x", "provider": "p", "instances": [{{"attributes": {attributes}}}]}}"#
        ));
        let state = parse_state("s", text.as_bytes()).unwrap();
        let got = state.resources[0].canonical_arn("eu-west-1", "111111111111");
        assert_eq!(got.as_deref(), want, "{tf_type} {attributes}");
        // What we build is what the inventory builds: its type reads back from the ARN.
        if let (Some(arn), Some(t)) = (&got, &state.resources[0].resource_type) {
            assert_eq!(&crate::arn::Arn::parse(arn).unwrap().resource_type(), t, "{arn}");
        }
    }
    check(
        "aws_eip",
        r#"{"id": "eipalloc-9", "allocation_id": "eipalloc-9"}"#,
        Some("arn:aws:ec2:eu-west-1:111111111111:elastic-ip/eipalloc-9"),
    );
    check(
        "aws_eip",
        r#"{"id": "eipalloc-9", "network_border_group": "us-gov-west-1"}"#,
        Some("arn:aws-us-gov:ec2:us-gov-west-1:111111111111:elastic-ip/eipalloc-9"),
    );
    check(
        "aws_eip",
        r#"{"id": "eipalloc-9", "region": "ap-south-1", "arn": "arn:aws:ec2:ap-south-1:222222222222:elastic-ip/eipalloc-9"}"#,
        Some("arn:aws:ec2:ap-south-1:222222222222:elastic-ip/eipalloc-9"),
    );
    check(
        "aws_instance",
        r#"{"id": "i-1", "availability_zone": "us-east-2c"}"#,
        Some("arn:aws:ec2:us-east-2:111111111111:instance/i-1"),
    );
    check("aws_ebs_volume", r#"{"id": "vol-1"}"#, Some("arn:aws:ec2:eu-west-1:111111111111:volume/vol-1"));
    check(
        "aws_ebs_snapshot",
        r#"{"id": "snap-1", "owner_id": "333333333333"}"#,
        Some("arn:aws:ec2:eu-west-1::snapshot/snap-1"),
    );
    check(
        "aws_ebs_snapshot",
        r#"{"id": "snap-1", "arn": "arn:aws:ec2:eu-west-1:333333333333:snapshot/snap-1"}"#,
        Some("arn:aws:ec2:eu-west-1::snapshot/snap-1"),
    );
    check("aws_s3_bucket", r#"{"id": "b", "bucket": "b", "region": "cn-north-1"}"#, Some("arn:aws-cn:s3:::b"));
    check(
        "aws_db_instance",
        r#"{"id": "db-XYZ", "identifier": "orders"}"#,
        Some("arn:aws:rds:eu-west-1:111111111111:db:orders"),
    );
    check("aws_db_instance", r#"{"id": "orders"}"#, Some("arn:aws:rds:eu-west-1:111111111111:db:orders"));
    check(
        "aws_cloudwatch_log_group",
        r#"{"id": "/g", "name": "/g", "arn": "arn:aws:logs:eu-west-1:1:log-group:/g:*"}"#,
        Some("arn:aws:logs:eu-west-1:1:log-group:/g"),
    );
    check("aws_cloudwatch_log_group", r#"{"id": "/g"}"#, Some("arn:aws:logs:eu-west-1:111111111111:log-group:/g"));
    check(
        "aws_sqs_queue",
        r#"{"id": "https://sqs/q", "arn": "arn:aws:sqs:eu-west-1:1:q"}"#,
        Some("arn:aws:sqs:eu-west-1:1:q"),
    );
    check("aws_sqs_queue", r#"{"id": "https://sqs/q", "arn": "not an arn"}"#, None);
    check("aws_instance", r#"{"ami": "ami-1"}"#, None);
}

#[test]
fn zones_to_regions() {
    for (zone, want) in [
        ("us-east-1a", Some("us-east-1")),
        ("us-east-1", Some("us-east-1")),
        ("eu-central-2b", Some("eu-central-2")),
        ("us-gov-west-1a", Some("us-gov-west-1")),
        ("us-west-2-lax-1a", Some("us-west-2")),
        ("cn-northwest-1b", Some("cn-northwest-1")),
        ("use1-az1", None),
        ("", None),
        ("east-1", None),
    ] {
        assert_eq!(region_of_zone(zone).as_deref(), want, "{zone}");
    }
}

#[test]
fn state_sources() {
    let s3 = |bucket: &str, key: &str| Ok(StateSource::S3 { bucket: bucket.into(), key: key.into() });
    let cases: [(&str, Result<StateSource, &str>); 11] = [
        ("states/prod.tfstate", Ok(StateSource::File(PathBuf::from("states/prod.tfstate")))),
        ("states/*.tfstate", Ok(StateSource::Glob("states/*.tfstate".into()))),
        ("envs/**/terraform.tfstate", Ok(StateSource::Glob("envs/**/terraform.tfstate".into()))),
        ("env-?/[ab].tfstate", Ok(StateSource::Glob("env-?/[ab].tfstate".into()))),
        ("s3://acme-tf/prod/network.tfstate", s3("acme-tf", "prod/network.tfstate")),
        ("s3://acme-tf/env:/staging/app.tfstate", s3("acme-tf", "env:/staging/app.tfstate")),
        ("s3://acme-tf/prod/", s3("acme-tf", "prod/")),
        ("s3://acme-tf/", s3("acme-tf", "")),
        ("s3://acme-tf", Err("s3://acme-tf: invalid state source: no key after the bucket (end it with / to read every .tfstate object)")),
        ("s3:///k", Err("s3:///k: invalid state source: no bucket name")),
        ("states/[x.tfstate", Err("states/[x.tfstate: invalid state source: bad glob pattern: invalid range pattern")),
    ];
    for (text, want) in cases {
        let got = StateSource::parse(text).map_err(|e| e.to_string());
        assert_eq!(got, want.map_err(str::to_string), "{text}");
        if let Ok(source) = got {
            assert_eq!(source.to_string(), text);
            assert_eq!(source.is_prefix(), text.starts_with("s3://") && text.ends_with('/'), "{text}");
        }
    }
    assert_eq!(StateSource::parse("  ").unwrap_err().to_string(), "  : invalid state source: empty");
}

#[test]
fn merging_keeps_every_origin() {
    let one = |origin: &str| {
        parse_state(
            origin,
            v4(r#"{"mode": "managed", "type": "aws_s3_bucket", "name": "b", "provider": "p",
        "instances": [{"attributes": {"id": "shared", "bucket": "shared", "arn": "arn:aws:s3:::shared"}}]}"#)
            .as_bytes(),
        )
        .unwrap()
    };
    let report = LoadReport { states: vec![one("a.tfstate"), one("s3://tf/b.tfstate")], failures: Vec::new() };
    let merged: Vec<(String, Option<String>)> = report.merged().into_iter().map(|r| (r.origin, r.arn)).collect();
    let arn = Some("arn:aws:s3:::shared".to_string());
    assert_eq!(merged, [("a.tfstate".to_string(), arn.clone()), ("s3://tf/b.tfstate".to_string(), arn)]);
}

#[test]
fn state_errors_display_and_kind() {
    use crate::aws::{AwsError, AwsErrorKind};
    use crate::source::SourceError;

    let check = |err: TfStateError, display: &str, kind: &str| {
        assert_eq!(err.to_string(), display);
        assert_eq!(err.as_kind(), kind, "{display}");
        assert_eq!(
            SourceFailure::from(err.clone()),
            SourceFailure { origin: err.origin().into(), error: display.into() }
        );
    };
    let origin = || "s3://tf/prod/".to_string();
    let missing = SourceError::Io { path: None, kind: std::io::ErrorKind::NotFound, message: "no such file".into() };
    let no_bucket = AwsError::new("s3", "ListObjectsV2", AwsErrorKind::NotFound, "service error: NoSuchBucket");
    check(
        TfStateError::InvalidSource { origin: "s3://tf".into(), reason: "no key after the bucket".into() },
        "s3://tf: invalid state source: no key after the bucket",
        "invalid_source",
    );
    check(TfStateError::NoMatch { origin: "*.tfstate".into() }, "*.tfstate: matched no file", "no_match");
    check(
        TfStateError::EmptyPrefix { origin: origin() },
        "s3://tf/prod/: no .tfstate object under this prefix",
        "empty_prefix",
    );
    check(
        TfStateError::List { origin: origin(), error: SourceError::S3(no_bucket) },
        "s3://tf/prod/: cannot list objects: ListObjectsV2: service error: NoSuchBucket",
        "list",
    );
    check(
        TfStateError::Read { origin: "a.tfstate".into(), error: missing },
        "a.tfstate: cannot read: no such file",
        "read",
    );
    check(
        TfStateError::InvalidJson {
            origin: "a.tfstate".into(),
            line: 2,
            column: 15,
            message: "key must be a string".into(),
        },
        "a.tfstate: invalid JSON at line 2, column 15: key must be a string",
        "invalid_json",
    );
    check(
        TfStateError::UnsupportedVersion { origin: "a.tfstate".into(), version: 3 },
        "a.tfstate: unsupported state version 3 (only version 4 is read)",
        "unsupported_version",
    );
    check(
        TfStateError::MissingField { origin: "a.tfstate".into(), path: "lineage".into() },
        "a.tfstate: missing required field lineage",
        "missing_field",
    );
    check(
        TfStateError::WrongType {
            origin: "a.tfstate".into(),
            path: "serial".into(),
            expected: "a non-negative integer",
        },
        "a.tfstate: serial: expected a non-negative integer",
        "wrong_type",
    );
    check(
        TfStateError::TooLarge { origin: "a.tfstate".into(), max: 1024 },
        "a.tfstate: larger than 1024 bytes (max_state_bytes); not read",
        "too_large",
    );
}
