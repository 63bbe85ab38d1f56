//! Configuration: the example loads; every kind of problem is reported with file, line and field path, all
//! at once; a bad file makes the CLI exit with code 2 before anything runs.

use std::process::Command;

use cloudwarden::config::{self, Schedule};

fn no_env(_: &str) -> Option<String> {
    None
}

/// Parses `text` and returns its errors rendered one per line.
fn errors(text: &str) -> Vec<String> {
    match config::parse("cw.toml", text, &no_env) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn check(text: &str, expected: &[&str]) {
    assert_eq!(errors(text), expected, "for:\n{text}");
}

#[test]
fn the_example_loads() {
    let path = common_root().join("examples/cloudwarden.toml");
    let c = config::load(&path).expect("example config is valid");
    assert_eq!(c.listen.to_string(), "127.0.0.1:9464");
    assert_eq!(c.aws.accounts.len(), 2);
    assert_eq!(c.aws.accounts[1].role_arn.as_deref(), Some("arn:aws:iam::210987654321:role/CloudwardenReadOnly"));
    let inv = c.inventory.expect("inventory enabled");
    assert_eq!(inv.settings.regions, ["us-east-1", "eu-west-1"]);
    assert!(matches!(inv.schedule, Schedule::Every(d) if d.as_secs() == 300));
    assert_eq!(c.aws.home_region, "us-east-1");
    let billing = c.billing_files.expect("billing files enabled");
    assert_eq!(billing.settings.sources.len(), 2);
    assert_eq!(
        (billing.settings.tag_keys.as_slice(), billing.settings.resource_costs),
        (&["team".to_string()][..], None)
    );
    // The example's rule files were read and validated with it, relative to its directory.
    let rules = c.rules.expect("rules enabled");
    assert!(matches!(rules.schedule, Schedule::Every(d) if d.as_secs() == 300));
    let loaded = cloudwarden::jobs::rules::read_rule_files(&rules.settings.sources).expect("example rules are valid");
    assert!(loaded.files.len() >= 5, "{:?}", loaded.files);
    assert!(c.api.tokens.is_empty());
    let cleanup = c.cleanup.expect("cleanup configured").settings;
    assert_eq!(cleanup.mode, cloudwarden::jobs::cleanup::Mode::DryRun);
    assert_eq!(cleanup.policy("untagged").grace, chrono::Duration::days(14));
    assert_eq!(cleanup.policy("orphan_snapshot").grace, chrono::Duration::days(7));
    assert!(cleanup.notify.is_some());
    let cw = c.cloudwatch.expect("cloudwatch enabled").settings;
    let scored = cw.discovery[0].anomaly.as_ref().expect("the EC2 job scores a series");
    assert_eq!((scored.series.len(), scored.threshold), (1, 0.8));
    assert_eq!(cw.statics[0].anomaly.as_ref().map(|a| a.threshold), Some(0.6695));
}

fn common_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn an_empty_file_gets_defaults() {
    let c = config::parse("cw.toml", "", &no_env).unwrap();
    assert_eq!(c.database.url, "sqlite://cloudwarden.db");
    assert_eq!(c.aws.accounts.len(), 1);
    assert!(c.inventory.is_none());
}

#[test]
fn unknown_region_names_line_and_index() {
    check(
        "[collectors.inventory]\nregions = [\"us-east-1\",\n  \"us-est-1\"]\n",
        &[r#"cw.toml:3: collectors.inventory.regions[1]: unknown region "us-est-1""#],
    );
}

#[test]
fn every_kind_of_error_has_file_line_and_field() {
    // Syntax.
    let e = errors("[server]\nlisten = \n");
    assert!(e[0].starts_with("cw.toml:2: "), "{e:?}");
    // Unknown field, with its path inside the section.
    let e = errors("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("cw.toml:3: server.lisen: unknown field `lisen`"), "{e:?}");
    // Wrong type, inside an array of tables.
    let e = errors("[[accounts]]\nname = \"a\"\n[[accounts]]\nname = 5\n");
    assert!(e[0].starts_with("cw.toml:4: accounts[1].name: invalid type"), "{e:?}");
    // Unknown section.
    check("[sever]\nlisten = 1\n", &["cw.toml:1: sever: unknown section `sever`, expected one of `server`, `database`, `log`, `aws`, `accounts`, `collectors`, `rules`, `cleanup`, `reports`, `api`"]);
    // Bad enum value.
    let e = errors("[log]\nformat = \"xml\"\n");
    assert!(e[0].starts_with("cw.toml:2: log.format: unknown variant `xml`"), "{e:?}");
    // Semantic checks.
    check("[server]\nlisten = \"localhost\"\n", &[r#"cw.toml:2: server.listen: not an address:port: "localhost""#]);
    check(
        "[database]\nurl = \"mysql://x\"\n",
        &["cw.toml:2: database.url: expected a sqlite://PATH or postgres://... URL"],
    );
    check(
        "[collectors.inventory]\nregions = [\"us-east-1\"]\ncron = \"not cron\"\n",
        &[
            r#"cw.toml:3: collectors.inventory.cron: invalid cron expression "not cron": The 'Seconds' field does not support using names. 'not' specified"#,
        ],
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    let text = r#"
[server]
listen = "nowhere"

[aws]
endpoint_url = "ftp://x"
max_attempts = 0

[[accounts]]
name = "a"
role_arn = "arn:aws:iam::1:user/bob"

[[accounts]]
name = "a"
external_id = "${MISSING_SECRET}"

[collectors.inventory]
regions = ["us-east-1", "us-east-1", "mars-1"]
interval_secs = 10
cron = "* * * * *"
page_size = 0
"#;
    check(
        text,
        &[
            r#"cw.toml:3: server.listen: not an address:port: "nowhere""#,
            r#"cw.toml:6: aws.endpoint_url: expected an http:// or https:// URL, got "ftp://x""#,
            "cw.toml:7: aws.max_attempts: must be between 1 and 10",
            r#"cw.toml:11: accounts[0].role_arn: not an IAM role ARN (arn:aws:iam::123456789012:role/Name): "arn:aws:iam::1:user/bob""#,
            r#"cw.toml:14: accounts[1].name: duplicate account name "a""#,
            "cw.toml:15: accounts[1].external_id: environment variable MISSING_SECRET is not set",
            r#"cw.toml:18: collectors.inventory.regions[1]: region "us-east-1" is listed twice"#,
            r#"cw.toml:18: collectors.inventory.regions[2]: unknown region "mars-1""#,
            "cw.toml:20: collectors.inventory.cron: set either interval_secs or cron, not both",
            "cw.toml:21: collectors.inventory.page_size: must be between 1 and 1000",
        ],
    );
}

#[test]
fn secrets_come_from_the_environment() {
    let env = |name: &str| (name == "PGPASS").then(|| "s3cret".to_string());
    let c = config::parse("cw.toml", "[database]\nurl = \"postgres://cw:${PGPASS}@127.0.0.1/cw\"\n", &env).unwrap();
    assert_eq!(c.database.url, "postgres://cw:s3cret@127.0.0.1/cw");
}

#[test]
fn five_field_cron_is_accepted() {
    let c = config::parse(
        "cw.toml",
        "[collectors.inventory]\nregions = [\"eu-west-1\"]\ncron = \"*/10 * * * *\"\n",
        &no_env,
    )
    .unwrap();
    let job = c.inventory.unwrap();
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-23T08:03:00Z").unwrap().to_utc();
    assert_eq!(job.schedule.next_after(t).to_rfc3339(), "2026-11-23T08:10:00+00:00");
    assert_eq!(c.aws.home_region, "eu-west-1");
}

#[test]
fn a_bad_file_exits_2_with_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nlisten = \"x\"\n[collectors.inventory]\nregions = [\"us-est-1\"]\n").unwrap();
    for cmd in ["check-config", "run"] {
        let out = Command::new(env!("CARGO_BIN_EXE_cloudwarden")).args([cmd, "--config"]).arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("bad.toml:2: server.listen"), "{err}");
        assert!(err.contains(r#"bad.toml:4: collectors.inventory.regions[0]: unknown region "us-est-1""#), "{err}");
        assert!(err.contains("2 error(s)"), "{err}");
    }
    let ok = Command::new(env!("CARGO_BIN_EXE_cloudwarden"))
        .args(["check-config", "--config"])
        .arg(common_root().join("examples/cloudwarden.toml"))
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

#[test]
fn check_config_reports_rule_file_errors_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/bad.toml"), "[[tagging]]\nname = \"t\"\nrequired_keys = 3\n").unwrap();
    let path = dir.path().join("cw.toml");
    std::fs::write(&path, "[rules]\nfiles = [\"rules/*.toml\", \"nowhere/*.toml\"]\n").unwrap();
    // Run from elsewhere: relative rule paths are the configuration file's.
    let out = Command::new(env!("CARGO_BIN_EXE_cloudwarden"))
        .args(["check-config", "--config"])
        .arg(&path)
        .current_dir(common_root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r#"cw.toml:2: rules.files[1]: no file matches "nowhere/*.toml""#), "{err}");
    assert!(err.contains("rules/bad.toml:3: tagging[0].required_keys: "), "{err}");
    assert!(err.contains("2 error(s)"), "{err}");
}

#[test]
fn anomaly_options_choose_series_and_are_checked() {
    let job = |anomaly: &str| {
        format!(
            "[collectors.cloudwatch]\nregions = [\"us-east-1\"]\n\n[[collectors.cloudwatch.static]]\nnamespace = \"AWS/SQS\"\nmetrics = [\"Sent\", \"Visible\"]\nstatistics = [\"Sum\", \"Maximum\"]\n{anomaly}\n"
        )
    };
    let settings =
        |anomaly: &str| config::parse("cw.toml", &job(anomaly), &no_env).unwrap().cloudwatch.unwrap().settings;
    let pairs = |s: &cloudwarden::jobs::CloudWatchSettings| {
        let a = s.statics[0].anomaly.as_ref().unwrap();
        (a.series.iter().map(|(m, st)| format!("{m}:{st}")).collect::<Vec<_>>(), a.threshold)
    };
    // Every series of the job, at the detector's global threshold; none without the option.
    let all = settings("anomaly = {}");
    assert_eq!(
        pairs(&all),
        (vec!["Sent:Maximum".into(), "Sent:Sum".into(), "Visible:Maximum".into(), "Visible:Sum".into()], 0.6695)
    );
    assert_eq!(all.max_anomaly_series, 10_000);
    assert!(all.scores_anomalies());
    assert!(!settings("").scores_anomalies());
    // A metric for each statistic, or one statistic; a threshold of its own.
    let some = settings("anomaly = { series = [\"Sent\", \"Visible:Maximum\"], threshold = 0.9 }");
    assert_eq!(pairs(&some), (vec!["Sent:Maximum".into(), "Sent:Sum".into(), "Visible:Maximum".into()], 0.9));
    // The same as a table of its own.
    let table = settings("[collectors.cloudwatch.static.anomaly]\nseries = [\"Visible:Sum\"]\n");
    assert_eq!(pairs(&table).0, ["Visible:Sum"]);

    check(
        &job("anomaly = { series = [\"Sent:p99\", \"Received\", \"Sent\", \"Sent:Sum\"],\n  threshold = 1.5 }"),
        &[
            r#"cw.toml:8: collectors.cloudwatch.static[0].anomaly.series[0]: statistic "p99" is not one of the job's statistics"#,
            r#"cw.toml:8: collectors.cloudwatch.static[0].anomaly.series[1]: metric "Received" is not one of the job's metrics"#,
            r#"cw.toml:8: collectors.cloudwatch.static[0].anomaly.series[3]: "Sent:Sum" is listed twice"#,
            "cw.toml:9: collectors.cloudwatch.static[0].anomaly.threshold: must be greater than 0 and at most 1 (scores are in 0..1)",
        ],
    );
    check(
        &job("anomaly = { series = [], threshold = 0 }"),
        &[
            "cw.toml:8: collectors.cloudwatch.static[0].anomaly.series: must name at least one series (leave it out for every series of the job)",
            "cw.toml:8: collectors.cloudwatch.static[0].anomaly.threshold: must be greater than 0 and at most 1 (scores are in 0..1)",
        ],
    );
    let e = errors(&job("anomaly = { metrics = [\"Sent\"] }"));
    assert!(
        e[0].starts_with("cw.toml:8: collectors.cloudwatch.static[0].anomaly.metrics: unknown field `metrics`"),
        "{e:?}"
    );
    check(
        "[collectors.cloudwatch]\nregions = [\"us-east-1\"]\nmax_anomaly_series = 0\n",
        &["cw.toml:3: collectors.cloudwatch.max_anomaly_series: must be at least 1"],
    );
    // Discovery jobs take the same option.
    let text = "[collectors.cloudwatch]\nregions = [\"us-east-1\"]\n\n[[collectors.cloudwatch.discovery]]\nnamespace = \"AWS/EC2\"\nresource_type = \"ec2:instance\"\ndimension = \"InstanceId\"\nmetrics = [\"CPUUtilization\"]\nstatistics = [\"Average\"]\nanomaly = { series = [\"NetworkIn\"] }\n";
    check(
        text,
        &[
            r#"cw.toml:10: collectors.cloudwatch.discovery[0].anomaly.series[0]: metric "NetworkIn" is not one of the job's metrics"#,
        ],
    );
}

#[test]
fn durations_are_bounded() {
    // (section, the field's line, the error); each field one past its bound, then at it.
    let cw = "[collectors.cloudwatch]\nregions = [\"us-east-1\"]\n[[collectors.cloudwatch.static]]\nnamespace = \"AWS/SQS\"\n\
              metrics = [\"Sent\"]\nstatistics = [\"Sum\"]\n";
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "[collectors.inventory]\nregions = [\"us-east-1\"]\n",
            "interval_secs = {}",
            "2678400",
            "cw.toml:3: collectors.inventory.interval_secs: must be at most 2678400 (31 days)",
        ),
        (
            "[rules]\nfiles = [\"examples/rules/tagging.toml\"]\n",
            "interval_secs = {}",
            "2678400",
            "cw.toml:3: rules.interval_secs: must be at most 2678400 (31 days)",
        ),
        (
            "[collectors.cost_explorer]\n",
            "min_interval_secs = {}",
            "2678400",
            "cw.toml:2: collectors.cost_explorer.min_interval_secs: must be at most 2678400 (31 days)",
        ),
        (
            "[collectors.logs]\n",
            "delay_secs = {}",
            "86400",
            "cw.toml:2: collectors.logs.delay_secs: must be at most 86400 (1 day)",
        ),
        (
            "[collectors.logs]\n",
            "initial_lookback_secs = {}",
            "94608000",
            "cw.toml:2: collectors.logs.initial_lookback_secs: must be at most 94608000 (1095 days)",
        ),
        (
            cw,
            "delay_secs = {}",
            "86400",
            "cw.toml:7: collectors.cloudwatch.static[0].delay_secs: must be at most 86400 (1 day)",
        ),
        (
            cw,
            "length_secs = {}",
            "39312000",
            "cw.toml:7: collectors.cloudwatch.static[0].length_secs: must be at most 39312000 (455 days)",
        ),
        (
            cw,
            "period_secs = {}",
            "86400",
            "cw.toml:7: collectors.cloudwatch.static[0].period_secs: must be at most 86400 (1 day)",
        ),
        (
            "[aws]\n",
            "call_timeout_secs = {}",
            "3600",
            "cw.toml:2: aws.call_timeout_secs: must be at most 3600 (1 hour)",
        ),
        (
            "[aws]\n",
            "connect_timeout_secs = {}",
            "300",
            "cw.toml:2: aws.connect_timeout_secs: must be at most 300 (5 minutes)",
        ),
        (
            "[aws]\n",
            "max_backoff_ms = {}",
            "300000",
            "cw.toml:2: aws.max_backoff_ms: must be at most 300000 (5 minutes)",
        ),
    ];
    for (section, field, max, error) in cases {
        let max: u64 = max.parse().unwrap();
        let with = |value: String| format!("{section}{}\n", field.replace("{}", &value));
        // The bound itself is accepted; a period must also be a multiple of 60, which the bound is.
        assert!(config::parse("cw.toml", &with(max.to_string()), &no_env).is_ok(), "{}", with(max.to_string()));
        check(&with((max + 60).to_string()), &[error]);
        // Far beyond: the largest value the field's type holds.
        let huge = if field.starts_with("period_secs") { i32::MAX.to_string() } else { i64::MAX.to_string() };
        let e = errors(&with(huge.clone()));
        assert!(e.iter().any(|e| e.starts_with(&error[..error.find(" must").unwrap()])), "{huge}: {e:?}");
    }
    // A schedule past the bound never runs: no collector or rules job is configured with it.
    check(
        "[collectors.terraform]\nsources = [\"states/\"]\ninterval_secs = 18446744073709551615\n",
        &["cw.toml:3: collectors.terraform.interval_secs: must be at most 2678400 (31 days)"],
    );
}

#[test]
fn label_names_that_collide_are_rejected() {
    let discovery = |tags: &str| {
        format!(
            "[collectors.cloudwatch]\nregions = [\"us-east-1\"]\n[[collectors.cloudwatch.discovery]]\nnamespace = \"AWS/EC2\"\n\
             resource_type = \"ec2:instance\"\ndimension = \"InstanceId\"\nmetrics = [\"CPUUtilization\"]\n\
             statistics = [\"Average\"]\nexport_tags = {tags}\n"
        )
    };
    let statics = |dimensions: &str| {
        format!(
            "[collectors.cloudwatch]\nregions = [\"us-east-1\"]\n[[collectors.cloudwatch.static]]\nnamespace = \"AWS/EC2\"\n\
             metrics = [\"CPUUtilization\"]\nstatistics = [\"Average\"]\ndimensions = {dimensions}\n"
        )
    };
    let cases: &[(String, &[&str])] = &[
        (discovery(r#"["team", "env", "Name"]"#), &[]),
        (
            discovery(r#"["team", "env", "Team"]"#),
            &[
                r#"cw.toml:9: collectors.cloudwatch.discovery[0].export_tags[2]: tag keys "team" and "Team" both become the label tag_team: export one of them"#,
            ],
        ),
        (
            discovery(r#"["team-name", "env", "TeamName"]"#),
            &[
                r#"cw.toml:9: collectors.cloudwatch.discovery[0].export_tags[2]: tag keys "team-name" and "TeamName" both become the label tag_team_name: export one of them"#,
            ],
        ),
        (
            discovery(r#"["cost.center", "cost_center", "costCenter", "cost center"]"#),
            &[
                r#"cw.toml:9: collectors.cloudwatch.discovery[0].export_tags[1]: tag keys "cost.center" and "cost_center" both become the label tag_cost_center: export one of them"#,
                r#"cw.toml:9: collectors.cloudwatch.discovery[0].export_tags[2]: tag keys "cost.center" and "costCenter" both become the label tag_cost_center: export one of them"#,
                r#"cw.toml:9: collectors.cloudwatch.discovery[0].export_tags[3]: tag keys "cost.center" and "cost center" both become the label tag_cost_center: export one of them"#,
            ],
        ),
        (
            discovery(r#"["team", "team"]"#),
            &[r#"cw.toml:9: collectors.cloudwatch.discovery[0].export_tags[1]: tag key "team" is listed twice"#],
        ),
        (statics(r#"{ InstanceId = "i-1", AutoScalingGroupName = "asg" }"#), &[]),
        (
            statics(r#"{ InstanceId = "i-1", "instance-id" = "i-2" }"#),
            &[
                r#"cw.toml:7: collectors.cloudwatch.static[0].dimensions: dimensions "InstanceId" and "instance-id" both become the label dimension_instance_id"#,
            ],
        ),
    ];
    for (text, expected) in cases {
        if expected.is_empty() {
            config::parse("cw.toml", text, &no_env).unwrap_or_else(|e| panic!("{e}\nin:\n{text}"));
        } else {
            check(text, expected);
        }
    }
}

#[test]
fn cleanup_is_validated_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "").unwrap();
    let head = format!("[rules]\nfiles = [\"{}\"]\n\n", rules.display());
    // Acting without an allow list or a way to tell owners; an unknown rule and a bad glob.
    let text = format!(
        "{head}[cleanup]\nmode = \"auto\"\ndeny = [\"arn:[\"]\nmax_share = 2.0\nretention_days = 31\n\n[cleanup.rules.everything]\nact = true\n"
    );
    check(
        &text,
        &[
            "cw.toml:4: cleanup.allowed_accounts: must name at least one account in `auto` mode",
            "cw.toml:4: cleanup.notify: owners must be told before anything is done: `[cleanup.notify]` is required in `auto` mode",
            "cw.toml:6: cleanup.deny[0]: not a valid pattern: Pattern syntax error near position 4: invalid range pattern",
            "cw.toml:7: cleanup.max_share: must be more than 0 and at most 1",
            "cw.toml:8: cleanup.retention_days: must be one of the retentions CloudWatch Logs allows: [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653]",
            "cw.toml:10: cleanup.rules.everything: unknown cleanup rule \"everything\", expected one of untagged, unattached_volume, stopped_instance, unassociated_eip, orphan_snapshot, log_group_without_retention",
        ],
    );
    check(
        "[cleanup]\nmode = \"later\"\n",
        &[
            "cw.toml:1: cleanup: cleanup acts on the rules' cleanup candidates: `[rules]` must be configured and enabled",
            "cw.toml:2: cleanup.mode: unknown mode \"later\", expected `dry-run`, `approve` or `auto`",
        ],
    );
    // Dry run needs neither an allow list nor notifications; an allowed account must be configured.
    let c = config::parse("cw.toml", &format!("{head}[cleanup]\n"), &no_env).unwrap();
    assert_eq!(c.cleanup.unwrap().settings.mode, cloudwarden::jobs::cleanup::Mode::DryRun);
    check(
        &format!("{head}[cleanup]\nallowed_accounts = [\"prod\"]\n"),
        &["cw.toml:5: cleanup.allowed_accounts[0]: \"prod\" is neither a configured account name nor a 12-digit account id"],
    );
}

#[test]
fn api_clients_have_names_and_scopes() {
    let c = config::parse(
        "cw.toml",
        "[api]\ntokens = [\"plain-token-0123456789\"]\n\n[[api.clients]]\nname = \"alice\"\ntoken = \"alice-token-0123456789\"\nscopes = [\"read\", \"approve\"]\n",
        &no_env,
    )
    .unwrap();
    let t: Vec<(String, Vec<config::Scope>)> =
        c.api.tokens.iter().map(|t| (t.name.clone(), t.scopes.clone())).collect();
    assert_eq!(
        t,
        [
            ("token-1".to_string(), vec![config::Scope::Read]),
            ("alice".to_string(), vec![config::Scope::Read, config::Scope::Approve])
        ]
    );
    assert!(!format!("{:?}", c.api).contains("alice-token"), "tokens never shown");
    check(
        "[[api.clients]]\nname = \"scheduler\"\ntoken = \"short\"\nscopes = [\"admin\"]\n",
        &[
            "cw.toml:2: api.clients[0].name: the name \"scheduler\" is taken",
            "cw.toml:3: api.clients[0].token: must be at least 16 characters long",
            "cw.toml:4: api.clients[0].scopes[0]: unknown scope \"admin\", expected `read` or `approve`",
        ],
    );
}

#[test]
fn the_weekly_report_names_a_configured_cost_source() {
    use cloudwarden::report::{CostSource, WeeklyReportSettings};
    check(
        "[reports.weekly]\ntag_keys = [\"team\", \"\", \"team\"]\n",
        &[
            "cw.toml:1: reports.weekly: needs a cost source: configure [collectors.billing_files] or [collectors.cost_explorer]",
            "cw.toml:2: reports.weekly.tag_keys[1]: must not be empty",
            "cw.toml:2: reports.weekly.tag_keys[2]: \"team\" is listed twice",
        ],
    );
    check(
        "[collectors.cost_explorer]\n\n[reports.weekly]\ncost_source = \"billing_files\"\n",
        &["cw.toml:4: reports.weekly.cost_source: `billing_files` needs [collectors.billing_files]"],
    );
    check(
        "[collectors.cost_explorer]\n\n[reports.weekly]\ncost_source = \"invoices\"\n",
        &["cw.toml:4: reports.weekly.cost_source: unknown cost source \"invoices\", expected `billing_files` or `cost_explorer`"],
    );
    check("[reports.monthly]\n", &["cw.toml:1: reports.monthly: unknown field `monthly`, expected `weekly`"]);
    // The default source is the configured one.
    let c = config::parse("cw.toml", "[collectors.cost_explorer]\n\n[reports.weekly]\ntag_keys = [\"env\"]\n", &no_env)
        .unwrap();
    let w: &WeeklyReportSettings = c.weekly_report.as_ref().unwrap();
    assert_eq!((w.cost_source, w.tag_keys.as_slice()), (CostSource::CostExplorer, ["env".to_string()].as_slice()));
    // Without deliveries nothing is scheduled; the defaults are Monday 08:00 UTC, every format, six hours.
    assert!(w.deliveries.is_empty());
    assert_eq!(w.schedule.to_string(), "cron \"0 0 8 * * Mon\"");
    assert_eq!(w.formats.len(), 4);
    assert_eq!(w.wait_for_data.as_secs(), 21600);
}

#[test]
fn weekly_report_deliveries_are_checked() {
    use cloudwarden::report::deliver::Target;
    check(
        r#"[collectors.cost_explorer]

[reports.weekly]
cron = "0 8 * * Funday"
formats = ["html", "pdf", "html"]
link = "ftp://reports.example.com/{week}"

[reports.weekly.deliveries.Finance]
kind = "email"
to = ["not-an-address"]

[reports.weekly.deliveries.chat]
kind = "webhook"

[reports.weekly.deliveries.archive]
kind = "s3"
bucket = "Bad_Bucket"
account = "nobody"

[reports.weekly.deliveries.files]
kind = "directory"
bucket = "reports"

[reports.weekly.deliveries.fax]
kind = "fax"
"#,
        &[
            "cw.toml:4: reports.weekly.cron: invalid cron expression \"0 8 * * Funday\": 'Funday' is not a valid day of the week",
            "cw.toml:5: reports.weekly.formats[1]: unknown format \"pdf\", expected `html`, `markdown`, `csv` or `json`",
            "cw.toml:5: reports.weekly.formats[2]: \"html\" is listed twice",
            "cw.toml:6: reports.weekly.link: not an http(s) URL: \"ftp://reports.example.com/{week}\"",
            "cw.toml:8: reports.weekly.deliveries.Finance: \"Finance\": a delivery's name is 1 to 64 of a-z, 0-9, - and _",
            "cw.toml:8: reports.weekly.deliveries.Finance: email needs a relay: configure [reports.weekly.smtp] (or [cleanup.notify.smtp])",
            "cw.toml:10: reports.weekly.deliveries.Finance.to[0]: not an email address: \"not-an-address\"",
            "cw.toml:12: reports.weekly.deliveries.chat: a webhook delivery needs `url`",
            "cw.toml:17: reports.weekly.deliveries.archive.bucket: not an S3 bucket name: \"Bad_Bucket\"",
            "cw.toml:18: reports.weekly.deliveries.archive.account: no [[accounts]] entry is named \"nobody\"",
            "cw.toml:20: reports.weekly.deliveries.files: bucket does not apply to a `directory` delivery",
            "cw.toml:25: reports.weekly.deliveries.fax.kind: unknown kind \"fax\", expected `email`, `webhook`, `s3` or `directory`",
        ],
    );
    let c = config::parse(
        "cw.toml",
        r#"[collectors.billing_files]
sources = ["bills/"]

[reports.weekly]
formats = ["html", "csv"]

[reports.weekly.smtp]
host = "127.0.0.1"
port = 2525
tls = "none"
from = "cloudwarden@example.com"

[reports.weekly.deliveries.finance]
kind = "email"
to = ["finance@example.com", "cfo@example.com"]

[reports.weekly.deliveries.chat]
kind = "webhook"
url = "${HOOK}"

[reports.weekly.deliveries.archive]
kind = "s3"
bucket = "reports-bucket"

[reports.weekly.deliveries.files]
kind = "directory"
path = "out"
"#,
        &|v: &str| (v == "HOOK").then(|| "http://127.0.0.1:9/hook".to_string()),
    )
    .unwrap();
    let w = c.weekly_report.unwrap();
    let kinds: Vec<(&str, &str)> = w.deliveries.iter().map(|d| (d.name.as_str(), d.target.kind())).collect();
    assert_eq!(kinds, [("archive", "s3"), ("chat", "webhook"), ("files", "directory"), ("finance", "email")]);
    match &w.deliveries[0].target {
        Target::S3 { bucket, prefix, account, region } => {
            assert_eq!(
                (bucket.as_str(), prefix.as_str(), account.as_str(), region.as_str()),
                ("reports-bucket", "cloudwarden/reports/", "default", "us-east-1")
            );
        }
        other => panic!("{other:?}"),
    }
    match &w.deliveries[3].target {
        Target::Email { to, smtp } => assert_eq!((to.len(), smtp.port), (2, 2525)),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.formats.len(), 2);
}

#[test]
fn server_limits_token_and_tls_are_checked() {
    check(
        "[server]\nheader_read_timeout_secs = 0\nrequest_timeout_secs = 7200\nmax_connections = 0\nmetrics_token = \"short\"\ntls_cert = \"cert.pem\"\n",
        &[
            "cw.toml:2: server.header_read_timeout_secs: must be at least 1",
            "cw.toml:3: server.request_timeout_secs: must be at most 3600 (1 hour)",
            "cw.toml:4: server.max_connections: must be between 1 and 100000",
            "cw.toml:5: server.metrics_token: must be at least 16 characters long",
            "cw.toml:6: server.tls_cert: tls_cert needs tls_key",
        ],
    );
    let errs = errors("[server]\ntls_cert = \"missing-cert.pem\"\ntls_key = \"missing-key.pem\"\n");
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with("cw.toml:2: server.tls_cert: cannot read missing-cert.pem"), "{errs:?}");
    assert!(
        errs[1].starts_with("cw.toml:3: server.tls_key: cannot read a PEM private key from missing-key.pem"),
        "{errs:?}"
    );
    // The token may come from the environment, and is never shown.
    let c = config::parse("cw.toml", "[server]\nmetrics_token = \"${TOKEN}\"\n", &|v: &str| {
        (v == "TOKEN").then(|| "from-the-environment-0123".to_string())
    })
    .unwrap();
    assert_eq!(c.server.metrics_token.as_deref(), Some("from-the-environment-0123"));
    assert!(!format!("{c:?}").contains("from-the-environment-0123"));
    // The defaults.
    let c = config::parse("cw.toml", "", &no_env).unwrap();
    assert_eq!(
        (c.server.header_read_timeout.as_secs(), c.server.request_timeout.as_secs(), c.server.max_connections),
        (10, 30, 512)
    );
    assert!(c.server.tls.is_none() && c.server.metrics_token.is_none());
}

#[test]
fn billing_file_bounds_are_checked() {
    check(
        "[collectors.billing_files]\nsources = [\"bills/\"]\nmax_record_bytes = 10\nmax_decompressed_bytes = 5\nmax_keys = 0\n",
        &[
            "cw.toml:3: collectors.billing_files.max_record_bytes: must be at least 1024",
            "cw.toml:4: collectors.billing_files.max_decompressed_bytes: must be at least 1048576",
            "cw.toml:5: collectors.billing_files.max_keys: must be at least 1",
        ],
    );
    let c = config::parse("cw.toml", "[collectors.billing_files]\nsources = [\"bills/\"]\nmax_keys = 5000\n", &no_env)
        .unwrap();
    let limits = c.billing_files.unwrap().settings.limits;
    assert_eq!((limits.max_record_bytes, limits.max_keys), (1 << 20, 5000));
    assert_eq!(limits.max_decompressed_bytes, 256 << 30);
}
