//! Secrets never leave: a configuration holding every kind of secret cloudwarden takes (database password,
//! AssumeRole external id, API and metrics tokens, webhook URLs, the SMTP password) is loaded, printed with
//! `Debug`, checked by `check-config` and run by `collect --once` against the moto test-bed and against a
//! database that refuses the connection; no log line, error or output shows any of them.
//!
//! moto comes from the test-bed's `.venv` (`scripts/testbed.sh install`).

mod common;

use std::process::Command;

use common::{aws_test_env, repo_root, Moto};

const PG_PASSWORD: &str = "pg-p@ss/w:rd%secret";
const EXTERNAL_ID: &str = "external-id-secret-4242";
const API_TOKEN: &str = "api-token-secret-0123456789";
const METRICS_TOKEN: &str = "metrics-token-secret-0123456789";
const HOOK_PATH: &str = "hook-path-secret-7777";
const SMTP_PASSWORD: &str = "smtp-password-secret-9999";

fn env(name: &str) -> Option<String> {
    match name {
        "PGPASSWORD" => Some(PG_PASSWORD.into()),
        "EXTERNAL_ID" => Some(EXTERNAL_ID.into()),
        "API_TOKEN" => Some(API_TOKEN.into()),
        "METRICS_TOKEN" => Some(METRICS_TOKEN.into()),
        "HOOK" => Some(format!("http://127.0.0.1:9/{HOOK_PATH}")),
        "SMTP_PASSWORD" => Some(SMTP_PASSWORD.into()),
        _ => None,
    }
}

fn secrets() -> Vec<String> {
    let mut all: Vec<String> =
        [PG_PASSWORD, EXTERNAL_ID, API_TOKEN, METRICS_TOKEN, HOOK_PATH, SMTP_PASSWORD].map(String::from).to_vec();
    // The password as it lands in the URL, too.
    all.push("pg-p%40ss%2Fw%3Ard%25secret".into());
    all
}

fn config(database: &str, endpoint: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
metrics_token = "${{METRICS_TOKEN}}"

[database]
url = "{database}"
create_if_missing = true

[aws]
endpoint_url = "{endpoint}"
max_attempts = 1
call_timeout_secs = 5

[[accounts]]
name = "management"

[[accounts]]
name = "workloads"
role_arn = "arn:aws:iam::123456789012:role/CloudwardenReadOnly"
external_id = "${{EXTERNAL_ID}}"

[collectors.inventory]
regions = ["us-east-1"]

[rules]
files = ["{rules}"]

[cleanup]
mode = "dry-run"

[cleanup.notify]
fallback = "platform"

[cleanup.notify.smtp]
host = "127.0.0.1"
port = 9
tls = "starttls"
username = "cloudwarden"
password = "${{SMTP_PASSWORD}}"
from = "cloudwarden@example.com"

[cleanup.notify.contacts.platform]
webhook_url = "${{HOOK}}"
email = ["platform@example.com"]

[api]
tokens = ["${{API_TOKEN}}"]
"#,
        rules = repo_root().join("examples/rules/testbed/*.toml").display()
    )
}

fn assert_clean(what: &str, text: &str) {
    for s in secrets() {
        assert!(!text.contains(&s), "{what} shows the secret {s:?}:\n{text}");
    }
}

#[test]
fn debug_never_shows_a_secret_and_url_passwords_are_encoded() {
    let text = config("postgres://app:${PGPASSWORD}@127.0.0.1:1/cw?sslpassword=${PGPASSWORD}", "http://127.0.0.1:9");
    let c = cloudwarden::config::parse("cw.toml", &text, &env).unwrap_or_else(|e| panic!("{e}"));
    // The password is percent-encoded where it lands in the URL, so the URL still parses as meant.
    assert_eq!(
        c.database.url,
        "postgres://app:pg-p%40ss%2Fw%3Ard%25secret@127.0.0.1:1/cw?sslpassword=pg-p%40ss%2Fw%3Ard%25secret"
    );
    assert_clean("Debug of the configuration", &format!("{c:?}"));
    assert_clean("Debug of the configuration", &format!("{c:#?}"));
    // A whole URL from the environment, or a file path, is taken as it is.
    let c = cloudwarden::config::parse("cw.toml", "[database]\nurl = \"${URL}\"\n", &|n: &str| {
        (n == "URL").then(|| "sqlite://state/cw.db".to_string())
    })
    .unwrap();
    assert_eq!(c.database.url, "sqlite://state/cw.db");
}

#[test]
fn no_log_line_or_error_of_a_run_shows_a_secret() {
    aws_test_env();
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, database: &str, args: &[&str]| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, config(database, &moto.endpoint())).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloudwarden"));
        cmd.args(args).arg("--config").arg(&path).current_dir(repo_root());
        for name in ["PGPASSWORD", "EXTERNAL_ID", "API_TOKEN", "METRICS_TOKEN", "HOOK", "SMTP_PASSWORD"] {
            cmd.env(name, env(name).unwrap());
        }
        cmd.env("RUST_LOG", "debug,aws_smithy_runtime=info,aws_config=info,hyper=info,h2=info,rustls=info");
        let out = cmd.output().unwrap();
        let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let sqlite = format!("sqlite://{}", dir.path().join("cw.db").display());

    let (ok, text) = run("check", &sqlite, &["check-config"]);
    assert!(ok, "{text}");
    assert_clean("check-config", &text);

    // A run against the test-bed: STS with the external id, the inventory, the cleanup job in dry-run.
    let (ok, text) = run("collect", &sqlite, &["collect", "--once"]);
    assert!(ok, "{text}");
    assert!(text.contains("inventory"), "{text}");
    assert_clean("collect --once", &text);

    // A database that refuses the connection: the error names the database without its password.
    let (ok, text) =
        run("refused", "postgres://app:${PGPASSWORD}@127.0.0.1:1/cw?sslpassword=${PGPASSWORD}", &["collect", "--once"]);
    assert!(!ok, "{text}");
    assert!(text.contains("postgres://app:***@127.0.0.1:1/cw?sslpassword=***"), "{text}");
    assert_clean("a refused database", &text);
}
