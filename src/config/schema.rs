//! The configuration file as written: typed serde structs, one per TOML table. Every field is documented
//! here and in `examples/cloudwarden.toml`. [`super::validate`] turns these into the daemon's own types.

use serde::Deserialize;

/// `[server]`: the HTTP server serving `/metrics`, `/healthz`, `/readyz`, `/status` and the API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address and port to listen on, e.g. `127.0.0.1:9464` or `[::]:9464`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// A connection must send a request's headers (and finish the TLS handshake) within this many seconds
    /// of connecting or of its previous response (default 10).
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// A request is answered `503` when it takes longer than this many seconds (default 30).
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Connections served at once; more are closed as soon as they are accepted (default 512).
    #[serde(default = "default_server_max_connections")]
    pub max_connections: usize,
    /// At shutdown, requests in flight get this many seconds to finish (default 10).
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// A bearer token `/metrics` and `/status` require (Prometheus' `authorization` setting); `${VAR}` reads
    /// it from the environment. Unset: they are open. `/healthz` and `/readyz` are always open.
    pub metrics_token: Option<String>,
    /// TLS: a PEM certificate chain and its PEM private key, both or neither; relative to the configuration
    /// file's directory. Unset: plain HTTP.
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            header_read_timeout_secs: default_header_read_timeout_secs(),
            request_timeout_secs: default_request_timeout_secs(),
            max_connections: default_server_max_connections(),
            shutdown_grace_secs: default_shutdown_grace_secs(),
            metrics_token: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

fn default_header_read_timeout_secs() -> u64 {
    10
}

fn default_request_timeout_secs() -> u64 {
    30
}

fn default_server_max_connections() -> usize {
    512
}

fn default_shutdown_grace_secs() -> u64 {
    10
}

fn default_listen() -> String {
    "127.0.0.1:9464".into()
}

/// `[database]`: where cloudwarden keeps its history.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// `sqlite://PATH` or `postgres://user:pass@host/db` (default `sqlite://cloudwarden.db`). `${VAR}` is
    /// replaced by the environment variable VAR, so passwords need not be written in the file.
    pub url: Option<String>,
    /// Create the SQLite file when it does not exist. Default: true for the default path
    /// `sqlite://cloudwarden.db` (a new deployment), false for any other, so a database file that vanished is an error rather than a silent empty
    /// database; set it for a new deployment at a path of its own. PostgreSQL databases are never created.
    pub create_if_missing: Option<bool>,
    /// Connections in the pool.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// History older than this many days is deleted (default 400): resolved findings, finished runs,
    /// billing and Cost Explorer cost days, tag compliance days. At least 35.
    #[serde(default = "default_database_retention_days")]
    pub retention_days: u32,
}

fn default_database_retention_days() -> u32 {
    400
}

impl Default for DatabaseSection {
    fn default() -> Self {
        DatabaseSection {
            url: None,
            create_if_missing: None,
            max_connections: default_max_connections(),
            retention_days: default_database_retention_days(),
        }
    }
}

pub(crate) fn default_database_url() -> String {
    "sqlite://cloudwarden.db".into()
}

fn default_max_connections() -> u32 {
    5
}

/// `[rules]`: the rule files (tagging, budgets, cost anomalies, drift, cleanup) and when they are evaluated.
/// The files are read and validated when the configuration is loaded, and read again at every evaluation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSection {
    /// Turn evaluation off without deleting the stored findings.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Rule files: paths or globs (`rules/*.toml`), relative ones to the configuration file's directory.
    /// Several files merge into one rule set.
    pub files: Vec<String>,
    /// Evaluate every this many seconds (default 300). Exclusive with `cron`.
    pub interval_secs: Option<u64>,
    /// Evaluate on a cron schedule instead, in UTC.
    pub cron: Option<String>,
    /// Threads the per-resource rules (tagging, cleanup) are spread over (default 2).
    #[serde(default = "default_rule_threads")]
    pub threads: usize,
}

fn default_rule_threads() -> usize {
    2
}

/// `[api]`: the HTTP API (`/api/v1/...`), served beside `/metrics`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Bearer tokens with the `read` scope, at least 16 characters each; `${VAR}` reads one from the
    /// environment. Named `token-1`, `token-2`, ... in the audit trail. With no token and no client, every API
    /// route answers 404.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// `[[api.clients]]`: named tokens with chosen scopes.
    #[serde(default)]
    pub clients: Vec<ApiClientEntry>,
}

/// `[[api.clients]]`: one named bearer token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiClientEntry {
    /// Who holds the token: shown in the audit trail as the actor of what it approves.
    pub name: String,
    /// The token, at least 16 characters; `${VAR}` reads it from the environment.
    pub token: String,
    /// `read` (list findings, plans and the audit trail) and `approve` (approve, reject and exempt cleanup
    /// plans). Default: `["read"]`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    vec!["read".into()]
}

/// `[reports]`: the reports cloudwarden builds from what it stored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsSection {
    pub weekly: Option<WeeklyReportSection>,
}

/// `[reports.weekly]`: the weekly cost report.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeeklyReportSection {
    /// `billing_files` or `cost_explorer`; default: the billing files when that collector is configured,
    /// else Cost Explorer.
    pub cost_source: Option<String>,
    /// Tag keys the report groups spend by, e.g. `["team", "env"]`.
    #[serde(default)]
    pub tag_keys: Vec<String>,
    /// When the daemon builds and delivers the report of the last complete week, in UTC (default
    /// `0 8 * * Mon`, Monday 08:00). Used only when deliveries are configured.
    pub cron: Option<String>,
    /// The formats written by the `s3` and `directory` deliveries: `html`, `markdown`, `csv`, `json`
    /// (default all four).
    pub formats: Option<Vec<String>>,
    /// How long a due report waits for its cost source to have run since the week ended, in seconds
    /// (default 21600, six hours); after that it is built from what is stored, its freshness stated.
    #[serde(default = "default_wait_for_data_secs")]
    pub wait_for_data_secs: u64,
    /// A link to the report shown by webhook deliveries; `{week}` becomes the week, e.g.
    /// `https://reports.example.com/weekly/{week}.html`.
    pub link: Option<String>,
    /// The relay email deliveries use; default `[cleanup.notify.smtp]`.
    pub smtp: Option<crate::notify::SmtpSection>,
    /// The deliveries, by name: `[reports.weekly.deliveries.<name>]`.
    #[serde(default)]
    pub deliveries: std::collections::BTreeMap<String, DeliverySection>,
}

fn default_wait_for_data_secs() -> u64 {
    21600
}

/// `[reports.weekly.deliveries.<name>]`: one place the report goes to. `kind` says which, and which of the
/// other keys apply.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySection {
    /// `email`, `webhook`, `s3` or `directory`.
    pub kind: String,
    /// email: the recipients, all on one message.
    #[serde(default)]
    pub to: Vec<String>,
    /// webhook: a Slack-compatible incoming webhook URL (a secret: `${VAR}` reads it from the environment).
    pub url: Option<String>,
    /// webhook: timeout of the request, connecting included, in seconds (default 10).
    pub timeout_secs: Option<u64>,
    /// s3: the bucket.
    pub bucket: Option<String>,
    /// s3: the key prefix (default `cloudwarden/reports/`).
    pub prefix: Option<String>,
    /// s3: the `[[accounts]]` entry whose credentials upload (default the first).
    pub account: Option<String>,
    /// s3: the bucket's region (default the first inventory region, else us-east-1).
    pub region: Option<String>,
    /// directory: where the files are written, relative to the configuration file's directory.
    pub path: Option<String>,
}

/// `[cleanup]`: acting on the rules' cleanup candidates: mark, notify, wait, re-check, act, verify.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupSection {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `dry-run` (default: plans are recorded, nothing is marked, no mutating call), `approve` (acts only on
    /// plans approved through the API) or `auto` (acts when due).
    #[serde(default = "default_cleanup_mode")]
    pub mode: String,
    /// Run every this many seconds (default 300). Exclusive with `cron`.
    pub interval_secs: Option<u64>,
    /// Run on a cron schedule instead, in UTC.
    pub cron: Option<String>,
    /// A candidate is planned once this many evaluations in a row produced it (default 2).
    #[serde(default = "default_min_evaluations")]
    pub min_evaluations: u32,
    /// The tag that marks a resource: `<action>@<due date>` (default `cloudwarden:cleanup`).
    #[serde(default = "default_mark_tag")]
    pub mark_tag: String,
    /// Tag keys that protect a resource (any value), besides the rule files' protection tag.
    #[serde(default)]
    pub protect_tags: Vec<String>,
    /// Accounts (configured names or 12-digit ids) where actions are allowed. Actions anywhere else are
    /// refused. Required in `approve` and `auto` mode.
    #[serde(default)]
    pub allowed_accounts: Vec<String>,
    /// ARN globs (`*` any run of characters) never acted on, whatever else says; also account ids.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Days from marking to the due date (default 7); per rule in `[cleanup.rules.<rule>]`.
    #[serde(default = "default_grace_days")]
    pub grace_days: u32,
    /// Hours before the due date the final warning goes out (default 24); never acted on sooner after it.
    #[serde(default = "default_final_warning_hours")]
    pub final_warning_hours: u32,
    /// Actions per run at most (default 10).
    #[serde(default = "default_max_actions_per_run")]
    pub max_actions_per_run: u32,
    /// Actions per account per hour at most (default 20).
    #[serde(default = "default_max_actions_per_account_hour")]
    pub max_actions_per_account_per_hour: u32,
    /// Estimated monthly savings acted on per run at most, in USD (a decimal string); none: no limit.
    pub max_monthly_usd_per_run: Option<String>,
    /// `auto` mode refuses to act in an account in a run where more than this share of its live resources
    /// would be acted on (default 0.1).
    #[serde(default = "default_max_share")]
    pub max_share: f64,
    /// Retention a `set_retention` action gives a log group, in days (default 30; one CloudWatch Logs allows).
    #[serde(default = "default_retention_days")]
    pub retention_days: i32,
    /// Per rule (`untagged`, `unattached_volume`, ...): whether it is acted on, its grace, its escalation.
    #[serde(default)]
    pub rules: std::collections::BTreeMap<String, CleanupRuleEntry>,
    /// `[cleanup.notify]`: who is told, and how. Required in `approve` and `auto` mode.
    pub notify: Option<crate::notify::NotifySection>,
}

/// `[cleanup.rules.<rule>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupRuleEntry {
    /// Act on this rule's candidates (default true); false leaves them as findings.
    pub act: Option<bool>,
    /// Days from marking to the due date; default `[cleanup] grace_days`.
    pub grace_days: Option<u32>,
    /// After a stop, terminate (instances) or delete with a final snapshot (databases) after a second grace
    /// period (default false).
    pub escalate: Option<bool>,
    /// Days from the stop to the escalation's due date (default 7).
    pub escalation_grace_days: Option<u32>,
}

fn default_cleanup_mode() -> String {
    "dry-run".into()
}

fn default_min_evaluations() -> u32 {
    2
}

fn default_mark_tag() -> String {
    "cloudwarden:cleanup".into()
}

fn default_grace_days() -> u32 {
    7
}

fn default_final_warning_hours() -> u32 {
    24
}

fn default_max_actions_per_run() -> u32 {
    10
}

fn default_max_actions_per_account_hour() -> u32 {
    20
}

fn default_max_share() -> f64 {
    0.1
}

fn default_retention_days() -> i32 {
    30
}

/// `[log]`: structured logs on standard error. The level comes from `RUST_LOG` (default `info`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `text` (human-readable) or `json` (one object per line).
    #[serde(default)]
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[aws]`: how every AWS call is made.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    /// Endpoint override for every service, e.g. a local emulator. Unset, the SDK resolves endpoints itself
    /// and honours `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// Attempts per call, the first included (retries back off with jitter).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Timeout of one attempt, in seconds.
    #[serde(default = "default_call_timeout_secs")]
    pub call_timeout_secs: u64,
    /// Timeout to open a connection, in seconds.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// First retry delay in milliseconds; it doubles on each retry, with jitter.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest retry delay in milliseconds.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

impl Default for AwsSection {
    fn default() -> Self {
        AwsSection {
            endpoint_url: None,
            max_attempts: default_max_attempts(),
            call_timeout_secs: default_call_timeout_secs(),
            connect_timeout_secs: default_connect_timeout_secs(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }
}

fn default_max_attempts() -> u32 {
    3
}

fn default_call_timeout_secs() -> u64 {
    30
}

fn default_connect_timeout_secs() -> u64 {
    5
}

fn default_initial_backoff_ms() -> u64 {
    1000
}

fn default_max_backoff_ms() -> u64 {
    20_000
}

/// `[[accounts]]`: one entry per account. No entry means one account, read with the default credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountEntry {
    /// A unique name, used in logs and the CLI summary.
    pub name: String,
    /// IAM role to assume in the account (`arn:aws:iam::123456789012:role/Name`). Unset: the default
    /// credential chain is used as it is.
    pub role_arn: Option<String>,
    /// External id the role's trust policy asks for; `${VAR}` reads it from the environment.
    pub external_id: Option<String>,
}

/// `[collectors]`: one table per collector.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorsSection {
    /// The resource inventory.
    #[serde(default)]
    pub inventory: Option<InventorySection>,
    /// Daily cost from Cost Explorer.
    #[serde(default)]
    pub cost_explorer: Option<CostExplorerSection>,
    /// CloudWatch metrics, exported as `aws_<namespace>_<metric>_<statistic>`.
    #[serde(default)]
    pub cloudwatch: Option<CloudWatchSection>,
    /// CloudWatch Logs pattern counters and log group activity.
    #[serde(default)]
    pub logs: Option<LogsSection>,
    /// Terraform state files, for drift.
    #[serde(default)]
    pub terraform: Option<TerraformSection>,
    /// FOCUS 1.0 and CUR 2.0 billing export files.
    #[serde(default)]
    pub billing_files: Option<BillingFilesSection>,
}

/// `[collectors.billing_files]`: FOCUS 1.0 and CUR 2.0 exports (CSV, gzip CSV, Parquet) from paths, globs,
/// directories and S3 prefixes, loaded incrementally into the database.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingFilesSection {
    /// Turn the collector off without deleting what it loaded.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Where the exports are: a file, a directory (every export file under it), a glob
    /// (`exports/**/*.csv.gz`), `s3://bucket/key` or `s3://bucket/prefix/`.
    pub sources: Vec<String>,
    /// The `[[accounts]]` name whose credentials read S3 sources. Default: the first account.
    pub account: Option<String>,
    /// The export bucket's region. Default: the inventory's first region.
    pub region: Option<String>,
    /// `false` (default): one malformed row fails its whole file, which keeps its earlier rows. `true`:
    /// malformed rows are skipped and counted, and the rest of the file is loaded.
    #[serde(default)]
    pub skip_malformed: bool,
    /// The longest CSV record, in bytes (default 1 MiB): a longer one (an unterminated quote) fails its file
    /// with its line.
    pub max_record_bytes: Option<u64>,
    /// The most bytes one file may decompress to (default 256 GiB).
    pub max_decompressed_bytes: Option<u64>,
    /// The most distinct daily cost keys one file may roll up to (default 20,000,000).
    pub max_keys: Option<usize>,
    /// Tag keys whose values become `cloudwarden_billing_cost_usd{scope="tag"}` series.
    #[serde(default)]
    pub tag_keys: Vec<String>,
    /// Export `cloudwarden_resource_cost_usd` per resource (one series per resource, window and cost type:
    /// mind the cardinality). Default false.
    #[serde(default)]
    pub resource_costs: bool,
    /// At most this many resources get per-resource series: the most expensive by month-to-date effective
    /// cost (default 1000).
    #[serde(default = "default_max_resource_series")]
    pub max_resource_series: usize,
    /// Run every this many seconds (default 3600). Exclusive with `cron`.
    pub interval_secs: Option<u64>,
    /// Run on a cron schedule instead, in UTC.
    pub cron: Option<String>,
}

fn default_max_resource_series() -> usize {
    1000
}

/// `[collectors.terraform]`: tfstate v4 JSON from files, globs and S3 objects or prefixes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerraformSection {
    /// Turn the collector off without deleting its table.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Where states are: a path, a glob (`states/**/*.tfstate`), `s3://bucket/key.tfstate`, or
    /// `s3://bucket/prefix/` for every `*.tfstate` object under the prefix.
    pub sources: Vec<String>,
    /// The `[[accounts]]` name whose credentials read S3 states. Default: the first account.
    pub account: Option<String>,
    /// The state bucket's region. Default: the inventory's first region.
    pub region: Option<String>,
    /// Region assumed for resources whose attributes do not say. Default: `region`.
    pub default_region: Option<String>,
    /// A state larger than this many bytes is not read (default 256 MiB).
    pub max_state_bytes: Option<u64>,
    /// Run every this many seconds (default 900). Exclusive with `cron`.
    pub interval_secs: Option<u64>,
    /// Run on a cron schedule instead, in UTC.
    pub cron: Option<String>,
}

/// `[collectors.logs]`: counters of log events matching filter patterns, and each log group's newest event.
/// Stored bytes and retention come from the inventory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsSection {
    /// Turn the collector off without deleting its table.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Run every this many seconds (default 300). Exclusive with `cron`.
    pub interval_secs: Option<u64>,
    /// Run on a cron schedule instead, in UTC.
    pub cron: Option<String>,
    /// Newest seconds left for the next run, because events arrive late (default 60).
    #[serde(default = "default_logs_delay_secs")]
    pub delay_secs: u64,
    /// How far back a new counter starts counting, in seconds (default 3600).
    #[serde(default = "default_initial_lookback_secs")]
    pub initial_lookback_secs: u64,
    /// Read each log group's newest event time: one DescribeLogStreams call per group and run.
    #[serde(default = "yes")]
    pub last_event_time: bool,
    /// The counters.
    #[serde(default)]
    pub patterns: Vec<PatternEntry>,
}

/// `[[collectors.logs.patterns]]`: one counter, in every account and region where the log group exists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternEntry {
    /// Log group name, exactly.
    pub log_group: String,
    /// Name of the counter (the `pattern` label).
    pub name: String,
    /// CloudWatch Logs filter pattern, e.g. `ERROR` or `"connection reset"`.
    pub pattern: String,
}

fn default_logs_delay_secs() -> u64 {
    60
}

fn default_initial_lookback_secs() -> u64 {
    3600
}

/// `[collectors.cloudwatch]`: CloudWatch metrics through batched GetMetricData calls.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchSection {
    /// Turn the collector off without deleting its table.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Regions to query in every account. Default: the inventory's regions.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Run every this many seconds (default 300). Exclusive with `cron`.
    pub interval_secs: Option<u64>,
    /// Run on a cron schedule instead, in UTC.
    pub cron: Option<String>,
    /// Jobs over resources of the inventory: one query per resource, metric and statistic.
    #[serde(default)]
    pub discovery: Vec<DiscoveryJob>,
    /// Jobs over explicit dimensions.
    #[serde(default, rename = "static")]
    pub static_jobs: Vec<StaticJob>,
    /// Most series scored for anomalies at once (default 10000, about 8 KB of memory each with a day's window); series beyond
    /// it are left out and counted.
    #[serde(default = "default_max_anomaly_series")]
    pub max_anomaly_series: usize,
}

fn default_max_anomaly_series() -> usize {
    10_000
}

/// `anomaly = { ... }` on a CloudWatch job: which of its series the online detector scores, and when a
/// score opens a `metric_anomaly` finding.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyEntry {
    /// `"Metric:Statistic"`, or `"Metric"` for each of the job's statistics. Default: every metric and
    /// statistic of the job.
    pub series: Option<Vec<String>>,
    /// Score (0..1] at or above which a series' newest point opens a finding (default 0.6695, the detector's
    /// one global threshold on the NAB CloudWatch files).
    pub threshold: Option<f64>,
}

/// `[[collectors.cloudwatch.discovery]]`: resources are taken from the inventory (tagged or not), selected
/// by type and tags.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryJob {
    /// Namespace, e.g. `AWS/EC2`.
    pub namespace: String,
    /// Inventory type whose resources are queried, e.g. `ec2:instance`.
    pub resource_type: String,
    /// The dimension that carries the resource's id, e.g. `InstanceId`.
    pub dimension: String,
    /// Metric names, e.g. `["CPUUtilization"]`.
    pub metrics: Vec<String>,
    /// Statistics: `Average`, `Sum`, `Minimum`, `Maximum`, `SampleCount`.
    pub statistics: Vec<String>,
    /// Datapoint period in seconds (a multiple of 60, or 1, 5, 10, 30 for high resolution).
    #[serde(default = "default_period_secs")]
    pub period_secs: i32,
    /// Window length in seconds (default: the period).
    pub length_secs: Option<i64>,
    /// Newest seconds left out because CloudWatch may still change them (default 300).
    #[serde(default = "default_delay_secs")]
    pub delay_secs: i64,
    /// Only resources carrying these tags; a value of `*` accepts any value.
    #[serde(default)]
    pub tag_selectors: std::collections::BTreeMap<String, String>,
    /// Tag keys exported as `tag_<key>` labels on every series (and on `aws_resource_info`).
    #[serde(default)]
    pub export_tags: Vec<String>,
    /// Score these series for anomalies (see [`AnomalyEntry`]).
    pub anomaly: Option<AnomalyEntry>,
}

/// `[[collectors.cloudwatch.static]]`: one explicit set of dimensions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticJob {
    pub namespace: String,
    /// Dimension name → value.
    #[serde(default)]
    pub dimensions: std::collections::BTreeMap<String, String>,
    pub metrics: Vec<String>,
    pub statistics: Vec<String>,
    #[serde(default = "default_period_secs")]
    pub period_secs: i32,
    pub length_secs: Option<i64>,
    #[serde(default = "default_delay_secs")]
    pub delay_secs: i64,
    /// Score these series for anomalies (see [`AnomalyEntry`]).
    pub anomaly: Option<AnomalyEntry>,
}

fn default_period_secs() -> i32 {
    300
}

fn default_delay_secs() -> i64 {
    300
}

/// `[collectors.cost_explorer]`: daily cost by service, linked account and cost-allocation tags. Each
/// GetCostAndUsage request costs $0.01: only the days that can still change are fetched again.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostExplorerSection {
    /// Turn the collector off without deleting its table.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The `[[accounts]]` name whose credentials ask (the organisation's management account). Default: the
    /// first account.
    pub account: Option<String>,
    /// Run every this many seconds (default 21600, six hours). Exclusive with `cron`.
    pub interval_secs: Option<u64>,
    /// Run on a cron schedule instead, in UTC.
    pub cron: Option<String>,
    /// A fetch younger than this many seconds makes a run a no-op, also across restarts. Default: the
    /// interval (21600 with a cron schedule).
    pub min_interval_secs: Option<u64>,
    /// Days fetched the first time.
    #[serde(default = "default_lookback_days")]
    pub lookback_days: u32,
    /// Days before today fetched again on every run (their figures can still change); today is always
    /// included.
    #[serde(default = "default_open_days")]
    pub open_days: u32,
    /// Cost-allocation tag keys to group by (each adds its own requests), e.g. `["team", "env"]`.
    #[serde(default)]
    pub tag_keys: Vec<String>,
}

fn default_lookback_days() -> u32 {
    90
}

fn default_open_days() -> u32 {
    3
}

/// `[collectors.inventory]`: EC2, EBS, snapshots, Elastic IPs, S3, RDS, log groups and everything tagged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventorySection {
    /// Turn the collector off without deleting its table.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Regions to collect, e.g. `["us-east-1", "eu-west-1"]`.
    pub regions: Vec<String>,
    /// Run every this many seconds (default 300). Exclusive with `cron`.
    pub interval_secs: Option<u64>,
    /// Run on a cron schedule instead, in UTC: five fields (`*/10 * * * *`) or six with seconds first.
    pub cron: Option<String>,
    /// Page size of every paginated call, clamped to each API's range. Unset: each API's maximum (fewest
    /// calls).
    pub page_size: Option<i32>,
    /// Account-regions collected at once.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
}

fn yes() -> bool {
    true
}

fn default_max_concurrency() -> usize {
    4
}
