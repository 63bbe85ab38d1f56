//! Terraform states from files, globs and S3 objects (the moto server, through the real S3 client): managed
//! resources with addresses, ids, ARNs and tags; every origin kept when states are merged; old versions,
//! garbage and broken states reported by origin while the rest is read.

mod common;

use collector::terraform::{self, LoadReport, StateSource, TfResource};
use collector::{AwsContext, AwsSettings};
use futures::StreamExt;

const FIXTURES: &str = "tests/fixtures/tfstate";

fn source(s: &str) -> StateSource {
    StateSource::parse(s).unwrap()
}

fn fixture(rel: &str) -> String {
    format!("{FIXTURES}/{rel}")
}

/// Loads local sources only: the context has an account but no S3 call is made.
async fn load_local(sources: &[&str]) -> LoadReport {
    common::aws_test_env();
    let ctx = AwsContext::new(&AwsSettings::default()).await;
    let sources: Vec<StateSource> = sources.iter().map(|s| source(s)).collect();
    let report =
        terraform::load(&ctx, &ctx.accounts[0], "eu-west-1", &sources, terraform::DEFAULT_MAX_STATE_BYTES).await;
    assert_eq!(ctx.stats.total(), 0, "local sources make no AWS call");
    report
}

#[tokio::test]
async fn a_state_over_the_size_bound_is_not_read() {
    common::aws_test_env();
    let ctx = AwsContext::new(&AwsSettings::default()).await;
    let prod = fixture("prod/app.tfstate");
    let size = std::fs::metadata(&prod).unwrap().len();
    let sources = vec![source(&prod), source(&fixture("staging/app.tfstate"))];
    // Exactly its size: read. One byte less: refused, the other state still read.
    let report = terraform::load(&ctx, &ctx.accounts[0], "eu-west-1", &sources, size.max(1024)).await;
    assert!(report.states.iter().any(|s| s.origin == prod), "{:?}", failures(&report));
    let staging = std::fs::metadata(fixture("staging/app.tfstate")).unwrap().len();
    let bound = size - 1;
    assert!(staging <= bound, "the staging fixture is the smaller one");
    let report = terraform::load(&ctx, &ctx.accounts[0], "eu-west-1", &sources, bound).await;
    assert_eq!(
        failures(&report),
        [(prod.clone(), format!("{prod}: larger than {bound} bytes (max_state_bytes); not read"))]
    );
    assert_eq!(report.states.len(), 1);
}

fn failures(report: &LoadReport) -> Vec<(String, String)> {
    report.failures.iter().map(|f| (f.origin.clone(), f.error.clone())).collect()
}

fn find<'a>(resources: &'a [TfResource], address: &str) -> &'a TfResource {
    resources.iter().find(|r| r.address == address).unwrap_or_else(|| panic!("no resource {address}"))
}

#[tokio::test]
async fn files_and_globs() {
    // The prod state is named twice (file and glob match): it is read once.
    let report = load_local(&[&fixture("prod/app.tfstate"), &fixture("*/app.tfstate")]).await;
    assert_eq!(failures(&report), []);
    let origins: Vec<&str> = report.states.iter().map(|s| s.origin.as_str()).collect();
    assert_eq!(origins, [fixture("prod/app.tfstate"), fixture("staging/app.tfstate")]);

    let prod = &report.states[0];
    assert_eq!((prod.serial, prod.terraform_version.as_str()), (184, "1.9.8"));
    assert_eq!(prod.lineage, "9b2d4e61-7f3a-4c8e-a0d5-2e61c7f08b3a");
    let addresses: Vec<(&str, Option<&str>)> =
        prod.resources.iter().map(|r| (r.address.as_str(), r.resource_type.as_deref())).collect();
    assert_eq!(
        addresses,
        [
            ("aws_cloudwatch_log_group.app", Some("logs:log-group")),
            ("aws_s3_bucket.artifacts", Some("s3:bucket")),
            ("module.db.aws_db_instance.main", Some("rds:db")),
            ("module.network.aws_eip.nat[\"eu-west-1a\"]", Some("ec2:elastic-ip")),
            ("module.network.aws_eip.nat[\"eu-west-1b\"]", Some("ec2:elastic-ip")),
            ("module.web.aws_ebs_volume.data[\"cache\"]", Some("ec2:volume")),
            ("module.web.aws_ebs_volume.data[\"logs\"]", Some("ec2:volume")),
            ("module.web.aws_instance.web[0]", Some("ec2:instance")),
            ("module.web.aws_instance.web[1]", Some("ec2:instance")),
            ("random_password.db", None),
        ],
        "data sources are skipped, every instance is its own resource"
    );

    let web = find(&prod.resources, "module.web.aws_instance.web[1]");
    assert_eq!(web.tf_type, "aws_instance");
    assert_eq!(web.provider, r#"provider["registry.terraform.io/hashicorp/aws"]"#);
    assert_eq!(web.id.as_deref(), Some("i-0b4e6d8f0a2c35791"));
    assert_eq!(web.arn.as_deref(), Some("arn:aws:ec2:eu-west-1:123456789012:instance/i-0b4e6d8f0a2c35791"));
    let tags: Vec<(&str, &str)> = web.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(tags, [("Name", "web-1"), ("team", "web")], "tags, not tags_all");

    let db = find(&prod.resources, "module.db.aws_db_instance.main");
    assert_eq!(db.id.as_deref(), Some("acme-prod-orders"), "the identifier, not the DBI resource id");
    assert_eq!(
        db.canonical_arn("us-east-1", "999999999999").as_deref(),
        Some("arn:aws:rds:eu-west-1:123456789012:db:acme-prod-orders")
    );
    let eip = find(&prod.resources, "module.network.aws_eip.nat[\"eu-west-1b\"]");
    assert!(eip.arn.is_none() && eip.tags.is_empty());
    assert_eq!(
        eip.canonical_arn("us-east-1", "123456789012").as_deref(),
        Some("arn:aws:ec2:eu-west-1:123456789012:elastic-ip/eipalloc-0d2e3f4a5b6c7d8e9"),
        "region from the network border group, account from the caller"
    );
    let secret = find(&prod.resources, "random_password.db");
    assert_eq!(secret.canonical_arn("eu-west-1", "123456789012"), None);
    assert!(!format!("{:?}", report).contains("fixture-not-a-secret"), "attribute values are not kept");

    let staging = &report.states[1];
    let log_group = find(&staging.resources, "aws_cloudwatch_log_group.app");
    assert_eq!(log_group.arn.as_deref(), Some("arn:aws:logs:eu-west-1:210987654321:log-group:/acme/staging/app"));
    let snapshot = find(&staging.resources, "aws_ebs_snapshot.seed");
    assert_eq!(snapshot.provider, r#"provider["registry.terraform.io/hashicorp/aws"].us_east"#);
    assert_eq!(
        snapshot.canonical_arn("eu-west-1", "210987654321").as_deref(),
        Some("arn:aws:ec2:us-east-1::snapshot/snap-0123456789abcdef0")
    );

    // Merged: everything, each with its origin; a bucket both states manage appears twice.
    let merged = report.merged();
    assert_eq!(merged.len(), prod.resources.len() + staging.resources.len());
    let bucket: Vec<(&str, &str)> = merged
        .iter()
        .filter(|r| r.arn.as_deref() == Some("arn:aws:s3:::acme-prod-artifacts"))
        .map(|r| (r.address.as_str(), r.origin.as_str()))
        .collect();
    assert_eq!(
        bucket,
        [
            ("aws_s3_bucket.artifacts", fixture("prod/app.tfstate").as_str()),
            ("aws_s3_bucket.shared_artifacts", fixture("staging/app.tfstate").as_str()),
        ]
    );
}

#[tokio::test]
async fn unreadable_states_are_reported_by_origin_and_the_rest_is_read() {
    let report = load_local(&[
        &fixture("invalid/*.tfstate"),
        &fixture("nowhere/*.tfstate"),
        &fixture("prod/absent.tfstate"),
        &fixture("staging/app.tfstate"),
    ])
    .await;
    let want: Vec<(String, String)> = [
        ("invalid/garbage.tfstate", "invalid JSON at line 1, column 1: expected value"),
        ("invalid/missing-type.tfstate", "missing required field resources[1].type"),
        ("invalid/truncated.tfstate", "invalid JSON at line 56, column 6: EOF while parsing a value"),
        ("invalid/v3.tfstate", "unsupported state version 3 (only version 4 is read)"),
        ("nowhere/*.tfstate", "matched no file"),
        ("prod/absent.tfstate", "cannot read: No such file or directory (os error 2)"),
    ]
    .iter()
    .map(|(o, e)| (fixture(o), format!("{}: {e}", fixture(o))))
    .collect();
    assert_eq!(failures(&report), want);
    let origins: Vec<&str> = report.states.iter().map(|s| s.origin.as_str()).collect();
    assert_eq!(origins, [fixture("staging/app.tfstate")]);
}

#[tokio::test]
async fn s3_objects_and_prefixes() {
    common::aws_test_env();
    let moto = common::Moto::start();
    let ctx = AwsContext::new(&AwsSettings { endpoint_url: Some(moto.endpoint()), ..Default::default() }).await;
    let account = &ctx.accounts[0];
    let s3 = terraform::s3_client(&ctx, account, "us-east-1");
    s3.create_bucket().bucket("acme-terraform-state").send().await.unwrap();
    let put = |key: &'static str, fixture_path: &str| {
        let body = std::fs::read(fixture(fixture_path)).unwrap();
        let s3 = s3.clone();
        async move { s3.put_object().bucket("acme-terraform-state").key(key).body(body.into()).send().await.unwrap() }
    };
    put("prod/app.tfstate", "prod/app.tfstate").await;
    put("prod/app.tfstate.backup", "invalid/garbage.tfstate").await;
    put("env:/staging/app.tfstate", "staging/app.tfstate").await;
    put("legacy/terraform.tfstate", "invalid/v3.tfstate").await;
    put("legacy/notes.txt", "invalid/garbage.tfstate").await;

    let sources: Vec<StateSource> = [
        "s3://acme-terraform-state/prod/",
        "s3://acme-terraform-state/env:/staging/app.tfstate",
        "s3://acme-terraform-state/legacy/",
        "s3://acme-terraform-state/empty/",
        "s3://acme-terraform-state/prod/missing.tfstate",
        &fixture("staging/app.tfstate"),
    ]
    .iter()
    .map(|s| source(s))
    .collect();
    // An object over the bound is not downloaded past it.
    let prod_size = std::fs::metadata(fixture("prod/app.tfstate")).unwrap().len();
    let small = terraform::load(
        &ctx,
        account,
        "us-east-1",
        &[source("s3://acme-terraform-state/prod/app.tfstate")],
        prod_size - 1,
    )
    .await;
    assert_eq!(
        failures(&small),
        [(
            "s3://acme-terraform-state/prod/app.tfstate".to_string(),
            format!(
                "s3://acme-terraform-state/prod/app.tfstate: larger than {} bytes (max_state_bytes); not read",
                prod_size - 1
            )
        )]
    );
    let before = ctx.stats.snapshot();
    let report = terraform::load(&ctx, account, "us-east-1", &sources, terraform::DEFAULT_MAX_STATE_BYTES).await;
    let calls = collector::aws::calls::calls_between(&before, &ctx.stats.snapshot());

    let origins: Vec<&str> = report.states.iter().map(|s| s.origin.as_str()).collect();
    let staging_file = fixture("staging/app.tfstate");
    assert_eq!(
        origins,
        [
            "s3://acme-terraform-state/prod/app.tfstate",
            "s3://acme-terraform-state/env:/staging/app.tfstate",
            &staging_file
        ],
        "only *.tfstate objects under a prefix"
    );
    assert_eq!(report.states[0].resources.len(), 10);
    assert!(report.states[0].resources.iter().all(|r| r.origin == "s3://acme-terraform-state/prod/app.tfstate"));
    // The same state through S3 and through a file: both kept, each with its origin.
    assert_eq!(report.states[1].resources.len(), report.states[2].resources.len());

    let got = failures(&report);
    let origins: Vec<&str> = got.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        origins,
        [
            "s3://acme-terraform-state/legacy/terraform.tfstate",
            "s3://acme-terraform-state/empty/",
            "s3://acme-terraform-state/prod/missing.tfstate",
        ],
        "failures in source order"
    );
    assert_eq!(
        got[0].1,
        "s3://acme-terraform-state/legacy/terraform.tfstate: unsupported state version 3 (only version 4 is read)"
    );
    assert_eq!(got[1].1, "s3://acme-terraform-state/empty/: no .tfstate object under this prefix");
    assert!(got[2].1.starts_with("s3://acme-terraform-state/prod/missing.tfstate: cannot read: "), "{}", got[2].1);
    assert!(got[2].1.contains("NoSuchKey"), "{}", got[2].1);

    // Every call went through the counted client: three listings, four object reads.
    let count = |op: &str| calls.iter().filter(|((_, o), _)| o == op).map(|(_, n)| n).sum::<u64>();
    assert_eq!((count("ListObjectsV2"), count("GetObject")), (3, 4), "{calls:?}");

    // A bucket that does not exist fails its source alone.
    let report = terraform::load(
        &ctx,
        account,
        "us-east-1",
        &[source("s3://acme-missing-bucket/prod/")],
        terraform::DEFAULT_MAX_STATE_BYTES,
    )
    .await;
    assert!(report.states.is_empty());
    let got = failures(&report);
    assert_eq!(got.len(), 1);
    assert!(got[0].1.starts_with("s3://acme-missing-bucket/prod/: cannot list objects: "), "{}", got[0].1);
    assert!(got[0].1.contains("NoSuchBucket"), "{}", got[0].1);

    // A prefix longer than one page (ListObjectsV2 returns at most 1000 keys): the state after the first page
    // is found.
    let keys: Vec<String> = (0..1000).map(|i| format!("many/plan-{i:04}.json")).collect();
    futures::stream::iter(&keys)
        .map(|key| s3.put_object().bucket("acme-terraform-state").key(key).body(b"{}".to_vec().into()).send())
        .buffer_unordered(16)
        .for_each(|r| async move { r.map(drop).unwrap() })
        .await;
    put("many/zz/app.tfstate", "staging/app.tfstate").await;
    let before = ctx.stats.snapshot();
    let report = terraform::load(
        &ctx,
        account,
        "us-east-1",
        &[source("s3://acme-terraform-state/many/")],
        terraform::DEFAULT_MAX_STATE_BYTES,
    )
    .await;
    let calls = collector::aws::calls::calls_between(&before, &ctx.stats.snapshot());
    assert_eq!(failures(&report), []);
    let origins: Vec<&str> = report.states.iter().map(|s| s.origin.as_str()).collect();
    assert_eq!(origins, ["s3://acme-terraform-state/many/zz/app.tfstate"]);
    let count = |op: &str| calls.iter().filter(|((_, o), _)| o == op).map(|(_, n)| n).sum::<u64>();
    assert_eq!((count("ListObjectsV2"), count("GetObject")), (2, 1), "{calls:?}");
}

/// The daemon's terraform job: states stored per origin with canonical ARNs; a state that later cannot
/// be read keeps what was stored from it, and the run is partial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_keeps_each_origin_until_it_reads_it_again() {
    common::aws_test_env();
    let moto = common::Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let states = dir.path().join("states");
    std::fs::create_dir(&states).unwrap();
    std::fs::copy(fixture("prod/app.tfstate"), states.join("prod.tfstate")).unwrap();
    std::fs::copy(fixture("staging/app.tfstate"), states.join("staging.tfstate")).unwrap();
    let text = format!(
        "[database]\nurl = \"sqlite://{}\"\ncreate_if_missing = true\n\n[aws]\nendpoint_url = \"{}\"\n\n[[accounts]]\nname = \"main\"\n\n[collectors.terraform]\nsources = [\"{}/*.tfstate\"]\nregion = \"eu-west-1\"\n",
        dir.path().join("cw.db").display(),
        moto.endpoint(),
        states.display()
    );
    let config = cloudwarden::config::parse("t.toml", &text, &|_| None).unwrap();
    let daemon = cloudwarden::daemon::Daemon::new(config).await.unwrap();
    let job = "terraform";
    let cancel = tokio_util::sync::CancellationToken::new();

    let first = daemon.run_job(job, chrono::Utc::now(), &cancel).await;
    assert_eq!(first.outcome, cloudwarden::store::RunOutcome::Success, "{:?}", first.error);
    let stored = daemon.store.tf_resources().await.unwrap();
    let origins: std::collections::BTreeSet<&str> = stored.iter().map(|r| r.origin.as_str()).collect();
    assert_eq!(origins.len(), 2);
    assert_eq!(stored.len() as u64, first.items);
    assert!(stored.iter().any(|r| r.arn.as_deref().is_some_and(|a| a.starts_with("arn:aws:ec2:"))));

    // The staging state is broken now: its rows stay as they were, the prod rows are refreshed.
    std::fs::write(states.join("staging.tfstate"), "{ not json").unwrap();
    let second = daemon.run_job(job, chrono::Utc::now(), &cancel).await;
    assert_eq!(second.outcome, cloudwarden::store::RunOutcome::Partial);
    assert!(second.failures[0].error.contains("staging.tfstate"), "{:?}", second.failures);
    assert_eq!(daemon.store.tf_resources().await.unwrap(), stored);
}
