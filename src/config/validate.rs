//! From the file's sections to [`Config`]: the daemon's own sections are checked here, each job's section by
//! the `check` function beside its settings type, with the helpers of [`super::check`]. Every error is
//! collected with its line and field path.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use collector::{AccountSpec, AwsSettings};
use rules::located;
use toml::de::DeTable;

use super::check::{
    item, key, Checker, Seg, Shared, MAX_BACKOFF_SECS, MAX_CALL_TIMEOUT_SECS, MAX_CONNECT_TIMEOUT_SECS,
};
use super::schema::*;
use super::{ApiConfig, ApiToken, Config, ConfigError, ConfigErrors, DatabaseConfig, Scope};
use crate::jobs;

/// Validates `text`; relative rule file paths are joined to `base`, and the rule files are read.
pub fn parse(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    base: &Path,
) -> Result<Config, ConfigErrors> {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    let line_of = |o: usize| located::line_of(text, o);
    if !syntax.is_empty() {
        return Err(ConfigErrors(
            syntax
                .iter()
                .map(|e| ConfigError::new(file, e.span().map(|s| line_of(s.start)), "", e.message().trim()))
                .collect(),
        ));
    }
    let doc = doc.into_inner();
    let mut cx = Checker::new(file, text, &doc, env);

    let (mut server, mut database, mut log, mut aws) =
        (ServerSection::default(), DatabaseSection::default(), LogSection::default(), AwsSection::default());
    let mut accounts: Vec<AccountEntry> = Vec::new();
    let mut collectors = CollectorsSection::default();
    let mut rules: Option<RulesSection> = None;
    let mut api = ApiSection::default();
    let mut cleanup: Option<CleanupSection> = None;
    let mut reports = ReportsSection::default();
    for (name, value) in doc.iter() {
        match name.get_ref().as_ref() {
            "server" => server = cx.section("server", value).unwrap_or_default(),
            "database" => database = cx.section("database", value).unwrap_or_default(),
            "log" => log = cx.section("log", value).unwrap_or_default(),
            "aws" => aws = cx.section("aws", value).unwrap_or_default(),
            "accounts" => accounts = cx.section("accounts", value).unwrap_or_default(),
            "collectors" => collectors = cx.section("collectors", value).unwrap_or_default(),
            "rules" => rules = cx.section("rules", value),
            "api" => api = cx.section("api", value).unwrap_or_default(),
            "cleanup" => cleanup = cx.section("cleanup", value),
            "reports" => reports = cx.section("reports", value).unwrap_or_default(),
            other => cx.error_at_line(
                line_of(name.span().start),
                other,
                format!(
                    "unknown section `{other}`, expected one of `server`, `database`, `log`, `aws`, `accounts`, `collectors`, `rules`, `cleanup`, `reports`, `api`"
                ),
            ),
        }
    }

    let listen = match SocketAddr::from_str(&server.listen) {
        Ok(a) => Some(a),
        Err(_) => {
            cx.error(&[Seg::Key("server"), Seg::Key("listen")], format!("not an address:port: {:?}", server.listen));
            None
        }
    };

    let server_settings = crate::server::listen::check(&mut cx, &server, base);

    let db_path = [Seg::Key("database"), Seg::Key("url")];
    let url = match &database.url {
        Some(url) => cx.expand_url(&db_path, url),
        None => super::schema::default_database_url(),
    };
    // A new deployment's default path is created (whether or not the file names it); another file only when
    // told.
    let default_url = super::schema::default_database_url();
    let create_if_missing = database.create_if_missing.unwrap_or(url == default_url);
    if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        cx.error(&db_path, "expected a sqlite://PATH or postgres://... URL");
    }
    if database.retention_days < 35 {
        cx.error(
            &[Seg::Key("database"), Seg::Key("retention_days")],
            "must be at least 35 (reports and budgets read the month and the five weeks before)",
        );
    }
    if database.max_connections == 0 {
        cx.error(&[Seg::Key("database"), Seg::Key("max_connections")], "must be at least 1");
    }

    let endpoint_url =
        aws.endpoint_url.as_deref().map(|u| cx.expand_url(&[Seg::Key("aws"), Seg::Key("endpoint_url")], u));
    if let Some(u) = &endpoint_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            cx.error(
                &[Seg::Key("aws"), Seg::Key("endpoint_url")],
                format!("expected an http:// or https:// URL, got {u:?}"),
            );
        }
    }
    if !(1..=10).contains(&aws.max_attempts) {
        cx.error(&[Seg::Key("aws"), Seg::Key("max_attempts")], "must be between 1 and 10");
    }
    if aws.call_timeout_secs == 0 {
        cx.error(&[Seg::Key("aws"), Seg::Key("call_timeout_secs")], "must be at least 1");
    }
    cx.at_most(
        &[Seg::Key("aws"), Seg::Key("call_timeout_secs")],
        aws.call_timeout_secs.into(),
        MAX_CALL_TIMEOUT_SECS,
        false,
    );
    if aws.initial_backoff_ms == 0 || aws.initial_backoff_ms > aws.max_backoff_ms {
        cx.error(&[Seg::Key("aws"), Seg::Key("initial_backoff_ms")], "must be at least 1 and at most max_backoff_ms");
    }
    cx.at_most(&[Seg::Key("aws"), Seg::Key("max_backoff_ms")], aws.max_backoff_ms.into(), MAX_BACKOFF_SECS, true);
    if aws.connect_timeout_secs == 0 {
        cx.error(&[Seg::Key("aws"), Seg::Key("connect_timeout_secs")], "must be at least 1");
    }
    cx.at_most(
        &[Seg::Key("aws"), Seg::Key("connect_timeout_secs")],
        aws.connect_timeout_secs.into(),
        MAX_CONNECT_TIMEOUT_SECS,
        false,
    );

    let mut specs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, a) in accounts.iter().enumerate() {
        let at = |k| key(&item(&[], "accounts", i), k);
        if a.name.trim().is_empty() {
            cx.error(&at("name"), "must not be empty");
        } else if !names.insert(a.name.clone()) {
            cx.error(&at("name"), format!("duplicate account name {:?}", a.name));
        }
        if let Some(role) = &a.role_arn {
            if !is_role_arn(role) {
                cx.error(
                    &at("role_arn"),
                    format!("not an IAM role ARN (arn:aws:iam::123456789012:role/Name): {role:?}"),
                );
            }
        }
        let external_id = a.external_id.as_deref().map(|e| cx.expand(&at("external_id"), e));
        specs.push(AccountSpec { name: a.name.clone(), role_arn: a.role_arn.clone(), external_id });
    }
    if specs.is_empty() {
        specs.push(AccountSpec { name: "default".into(), role_arn: None, external_id: None });
    }

    let inventory_regions: Vec<String> =
        collectors.inventory.as_ref().map(|inv| inv.regions.clone()).unwrap_or_default();
    let home_region = inventory_regions.first().cloned().unwrap_or_else(|| "us-east-1".into());
    let shared =
        Shared { accounts: &specs, inventory_regions: &inventory_regions, home_region: &home_region, base_dir: base };
    let c = &collectors;
    let inventory = c.inventory.as_ref().and_then(|s| jobs::inventory::check(&mut cx, s));
    let cost_explorer = c.cost_explorer.as_ref().and_then(|s| jobs::cost_explorer::check(&mut cx, s, &shared));
    let cloudwatch = c.cloudwatch.as_ref().and_then(|s| jobs::cloudwatch::check(&mut cx, s, &shared));
    let logs = c.logs.as_ref().and_then(|s| jobs::logs::check(&mut cx, s));
    let terraform = c.terraform.as_ref().and_then(|s| jobs::terraform::check(&mut cx, s, &shared));
    let billing_files = c.billing_files.as_ref().and_then(|s| jobs::billing_files::check(&mut cx, s, &shared));
    // Rule files are other files: their errors come after this file's, in file order.
    let mut rule_errors = Vec::new();
    let mut rules = rules.as_ref().and_then(|r| jobs::rules::check(&mut cx, r, &shared, &mut rule_errors));
    let cleanup = cleanup
        .as_ref()
        .and_then(|c| jobs::cleanup::check(&mut cx, c, &shared, rules.as_ref().map(|r| r.settings.sources.as_slice())));
    if let (Some(r), Some(c)) = (rules.as_mut(), cleanup.as_ref()) {
        // The mark tag is cloudwarden's own: the rules never count it as a resource's tag.
        r.settings.ignored_tags.push(c.settings.mark_tag.clone());
    }

    let weekly_report = reports.weekly.as_ref().and_then(|w| {
        let smtp = cleanup.as_ref().and_then(|c| c.settings.notify.as_ref()).and_then(|n| n.smtp.as_ref());
        crate::report::check(&mut cx, w, &shared, (billing_files.is_some(), cost_explorer.is_some()), smtp)
    });

    let mut tokens = Vec::new();
    let check_token = |cx: &mut Checker<'_>, at: &[Seg], t: &str| {
        let token = cx.expand(at, t);
        // Messages never show the token.
        if token.chars().any(char::is_whitespace) {
            cx.error(at, "must not contain whitespace");
        } else if token.chars().count() < MIN_TOKEN_CHARS {
            cx.error(at, format!("must be at least {MIN_TOKEN_CHARS} characters long"));
        }
        token
    };
    for (i, t) in api.tokens.iter().enumerate() {
        let token = check_token(&mut cx, &[Seg::Key("api"), Seg::Key("tokens"), Seg::Index(i)], t);
        tokens.push(ApiToken::reader(format!("token-{}", i + 1), token));
    }
    for (i, c) in api.clients.iter().enumerate() {
        let at = item(&[Seg::Key("api")], "clients", i);
        let token = check_token(&mut cx, &key(&at, "token"), &c.token);
        if c.name.trim().is_empty() || c.name.len() > 64 {
            cx.error(&key(&at, "name"), "must be 1 to 64 characters");
        } else if c.name == jobs::cleanup::SCHEDULER || tokens.iter().any(|t: &ApiToken| t.name == c.name) {
            cx.error(&key(&at, "name"), format!("the name {:?} is taken", c.name));
        }
        let mut scopes = Vec::new();
        for (j, s) in c.scopes.iter().enumerate() {
            match Scope::parse(s) {
                Some(s) => scopes.push(s),
                None => cx.error(&item(&at, "scopes", j), format!("unknown scope {s:?}, expected `read` or `approve`")),
            }
        }
        if c.scopes.is_empty() {
            cx.error(&key(&at, "scopes"), "must name at least one scope");
        }
        if tokens.iter().any(|t: &ApiToken| t.token == token) {
            cx.error(&key(&at, "token"), "the same token is configured twice");
        }
        tokens.push(ApiToken { name: c.name.clone(), token, scopes });
    }

    if !cx.errors.is_empty() || !rule_errors.is_empty() {
        let mut errors = cx.errors;
        errors.sort_by_key(|e| e.line.unwrap_or(0));
        errors.extend(rule_errors);
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        listen: listen.expect("validated"),
        server: server_settings,
        database: DatabaseConfig {
            url,
            create_if_missing,
            max_connections: database.max_connections,
            retention_days: database.retention_days,
        },
        log_format: log.format,
        aws: AwsSettings {
            endpoint_url,
            accounts: specs,
            home_region,
            max_attempts: aws.max_attempts,
            call_timeout: Duration::from_secs(aws.call_timeout_secs),
            connect_timeout: Duration::from_secs(aws.connect_timeout_secs),
            initial_backoff: Duration::from_millis(aws.initial_backoff_ms),
            max_backoff: Duration::from_millis(aws.max_backoff_ms),
        },
        inventory,
        cost_explorer,
        cloudwatch,
        logs,
        terraform,
        billing_files,
        rules,
        cleanup,
        weekly_report,
        api: ApiConfig { tokens },
    })
}

/// Shortest accepted API token.
const MIN_TOKEN_CHARS: usize = 16;

fn is_role_arn(s: &str) -> bool {
    let mut p = s.splitn(6, ':');
    matches!(
        (p.next(), p.next(), p.next(), p.next(), p.next(), p.next()),
        (Some("arn"), Some(part), Some("iam"), Some(""), Some(acct), Some(res))
            if part.starts_with("aws") && acct.len() == 12 && acct.bytes().all(|b| b.is_ascii_digit())
                && res.strip_prefix("role/").is_some_and(|n| !n.is_empty())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        assert!(is_role_arn("arn:aws:iam::123456789012:role/Reader"));
        assert!(is_role_arn("arn:aws-cn:iam::123456789012:role/path/Reader"));
        assert!(!is_role_arn("arn:aws:iam::12345:role/Reader"));
        assert!(!is_role_arn("arn:aws:iam::123456789012:user/bob"));
        assert!(!is_role_arn("arn:aws:iam::123456789012:role/"));
    }
}
