use super::*;

/// Parses `text` as `rules.toml` and compares every error, rendered, with `want`.
fn check(text: &str, want: &[&str]) {
    let got: Vec<String> = match parse_rule_file("rules.toml", text) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    };
    assert_eq!(got, want, "errors of\n{text}");
}

#[test]
fn empty_file_has_defaults() {
    let f = parse_rule_file("rules.toml", "").unwrap();
    assert!(f.tagging.is_empty() && f.budgets.is_empty() && f.cost_anomaly.is_none());
    assert!(f.drift.enabled);
    assert_eq!(f.cleanup, crate::cleanup::CleanupSettings::default());
}

#[test]
fn syntax_errors_stop_there() {
    check("[[tagging]]\nname = \"a\"\nrequired_keys = [\"team\"\n", &["rules.toml:3: unclosed array, expected `]`"]);
}

#[test]
fn every_error_at_once_with_lines() {
    let text = r#"
[[tagging]]
name = "team"
required_keys = ["team", "team", "aws:createdBy"]
resource_types = ["ec2"]
exempt_tags = ["=x"]
exempt_arns = ["i-123"]
[tagging.allowed_values]
env = []
[tagging.allowed_patterns]
env = "prod"
tier = "(web"

[[tagging]]
name = "team"
required_keys = ["owner"]

[[tagging]]
name = ""
required_keys = "team"
colour = "blue"

[[tagging]]
name = "nothing"

[[budgets]]
name = "all"
period = "week"
amount_usd = 100

[[budgets]]
name = "ec2"
period = "month"
amount_usd = -1

[cost_anomaly]
baseline_weeks = "four"

[drift]
ignore_arns = ["vol-*"]
ignore_tags = [""]
extra_types = { "transit-gateway" = "tgw" }

[cleanup]
protect_tag = " "
[cleanup.untagged]
min_days = 10000
[cleanup.stopped_instance]
min_days = -1
[cleanup.prices]
eip_hour = "-0.005"
volume_gib_month = { gp3 = "-1" }

[reports]
weekly = true
"#;
    check(
        text,
        &[
            "rules.toml:4: tagging[0].required_keys[1]: key \"team\" is listed twice",
            "rules.toml:4: tagging[0].required_keys[2]: \"aws:createdBy\": aws: tags are set by aws, not by users",
            "rules.toml:5: tagging[0].resource_types[0]: expected service:type (ec2:instance, ec2:*) or *, got \"ec2\"",
            "rules.toml:6: tagging[0].exempt_tags[0]: expected key=value or key, got \"=x\"",
            "rules.toml:7: tagging[0].exempt_arns[0]: expected an ARN glob starting with arn:, got \"i-123\"",
            "rules.toml:9: tagging[0].allowed_values.env: must list at least one value",
            "rules.toml:11: tagging[0].allowed_patterns.env: key has allowed_values too: use one or the other",
            "rules.toml:12: tagging[0].allowed_patterns.tier: invalid regex \"(web\": unclosed group",
            "rules.toml:15: tagging[1].name: duplicate tagging rule name \"team\", first defined at line 3",
            // One shape error per entry: serde stops at the first.
            "rules.toml:21: tagging[2].colour: unknown field `colour`, expected one of `name`, `resource_types`, `required_keys`, `allowed_values`, `allowed_patterns`, `ignore_key_case`, `ignore_value_case`, `exempt_tags`, `exempt_arns`, `severity`",
            "rules.toml:23: tagging[3].required_keys: the rule checks nothing: name required keys or allowed values",
            "rules.toml:28: budgets[0].period: unknown variant `week`, expected `month` or `quarter`",
            "rules.toml:34: budgets[1].amount_usd: must be greater than 0",
            "rules.toml:37: cost_anomaly.baseline_weeks: invalid type: string \"four\", expected u32",
            "rules.toml:40: drift.ignore_arns[0]: expected an ARN glob starting with arn:, got \"vol-*\"",
            "rules.toml:41: drift.ignore_tags[0]: expected key=value or key, got \"\"",
            "rules.toml:42: drift.extra_types.transit-gateway: expected an inventory type as service:type, e.g. ec2:transit-gateway",
            "rules.toml:42: drift.extra_types.transit-gateway: expected a terraform aws type (aws_...), got \"tgw\"",
            "rules.toml:49: cleanup.stopped_instance.min_days: invalid value: integer `-1`, expected u32",
            "rules.toml:54: reports: unknown section `reports`, expected one of `tagging`, `budgets`, `cost_anomaly`, `drift`, `cleanup`",
        ],
    );
}

#[test]
fn cleanup_semantic_errors() {
    // The shape error above hides the section's semantic checks; here they show.
    let text = r#"
[cleanup]
protect_tag = " "
exempt_arns = [""]
[cleanup.untagged]
min_days = 10000
[cleanup.prices]
eip_hour = "-0.005"
volume_gib_month = { gp3 = "-1" }
"#;
    check(
        text,
        &[
            "rules.toml:3: cleanup.protect_tag: must not be empty",
            "rules.toml:4: cleanup.exempt_arns[0]: must not be empty",
            "rules.toml:6: cleanup.untagged.min_days: must be at most 3650 (ten years)",
            "rules.toml:8: cleanup.prices.eip_hour: must not be negative",
            "rules.toml:9: cleanup.prices.volume_gib_month.gp3: must not be negative",
        ],
    );
}

#[test]
fn sections_of_the_wrong_shape() {
    check(
        "tagging = { name = \"x\" }\ndrift = 3\n",
        &[
            "rules.toml:1: tagging: invalid type: map, expected a sequence",
            "rules.toml:2: drift: invalid type: integer `3`, expected struct DriftSection",
        ],
    );
}

#[test]
fn merge_reports_duplicates_across_files() {
    let a = parse_rule_file(
        "a.toml",
        "[[tagging]]\nname = \"team\"\nrequired_keys = [\"team\"]\n\n[cleanup]\nprotect_tag = \"keep\"\n",
    )
    .unwrap();
    let b = parse_rule_file(
        "b.toml",
        "[[budgets]]\nname = \"team\"\nperiod = \"month\"\namount_usd = 10\n\n[[tagging]]\nname = \"team\"\nrequired_keys = [\"x\"]\n\n[cleanup]\n",
    )
    .unwrap();
    let c = parse_rule_file("c.toml", "[drift]\nenabled = false\n").unwrap();
    let errors = RuleFile::merge([a.clone(), b]).unwrap_err();
    let got: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "b.toml:7: duplicate tagging rule name \"team\", first defined at a.toml:2",
            "b.toml:10: cleanup: section already set at a.toml:5: set each of drift, cleanup and cost_anomaly in one file only",
        ]
    );
    let merged = RuleFile::merge([a, c]).unwrap();
    assert_eq!(merged.tagging.len(), 1);
    assert_eq!(merged.cleanup.protect_tag, "keep");
    assert!(!merged.drift.enabled);
}

#[test]
fn every_example_file_parses_and_they_merge() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/rules");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "examples: {names:?}");
    let mut files = Vec::new();
    for path in &names {
        let text = std::fs::read_to_string(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        files.push(parse_rule_file(&name, &text).unwrap_or_else(|e| panic!("{e}")));
    }
    let merged = RuleFile::merge(files).unwrap_or_else(|e| panic!("{e}"));
    assert!(!merged.tagging.is_empty());
    assert!(!merged.budgets.is_empty());
    assert!(merged.cost_anomaly.is_some());
}
