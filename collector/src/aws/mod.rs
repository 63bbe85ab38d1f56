//! The AWS side of the collector: one [`AwsContext`] per daemon, holding an SDK configuration per account
//! (default credential chain or an assumed role) and the counters every call feeds.

pub mod actions;
mod assume_role;
pub mod calls;
pub mod cloudwatch;
pub mod costexplorer;
mod error;
pub mod inventory;
pub mod logs;
pub mod s3;
pub mod sns;

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use self::calls::{ApiCallRecorder, ApiCallStats};
pub use self::error::{AwsError, AwsErrorKind};

/// One account cloudwarden reads from.
#[derive(Clone, PartialEq)]
pub struct AccountSpec {
    /// A name for logs and metrics; the account id comes from STS.
    pub name: String,
    /// Role to assume in the account; `None` uses the default credential chain as it is.
    pub role_arn: Option<String>,
    /// External id for the assume-role call, if the role's trust policy asks for one.
    pub external_id: Option<String>,
}

impl std::fmt::Debug for AccountSpec {
    /// Never shows the external id, which a role's trust policy may treat as a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSpec")
            .field("name", &self.name)
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id.as_ref().map(|_| "***"))
            .finish()
    }
}

/// How cloudwarden talks to AWS.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsSettings {
    /// Endpoint override for every service (a local emulator). `None` leaves the SDK's own resolution,
    /// which honours `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    pub accounts: Vec<AccountSpec>,
    /// Region for account-wide calls (STS). Set explicitly so the SDK never asks the instance metadata
    /// service for one.
    pub home_region: String,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Timeout of one attempt of one call.
    pub call_timeout: Duration,
    /// First retry delay (doubles each retry, with jitter).
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Timeout to open a connection.
    pub connect_timeout: Duration,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            endpoint_url: None,
            accounts: vec![AccountSpec { name: "default".into(), role_arn: None, external_id: None }],
            home_region: "us-east-1".into(),
            max_attempts: 3,
            call_timeout: Duration::from_secs(30),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// An account's SDK configuration, before a region is chosen.
#[derive(Clone)]
pub struct AccountConfig {
    pub spec: AccountSpec,
    pub sdk: SdkConfig,
}

/// Shared AWS state: SDK configurations per account and the call counters.
#[derive(Clone)]
pub struct AwsContext {
    pub accounts: Vec<AccountConfig>,
    pub stats: Arc<ApiCallStats>,
    recorder: ApiCallRecorder,
}

impl AwsContext {
    /// Builds the SDK configuration of every account. Makes no AWS call: credentials are resolved lazily.
    pub async fn new(settings: &AwsSettings) -> Self {
        let stats = Arc::new(ApiCallStats::default());
        let http =
            aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(settings.home_region.clone()))
            .http_client(http)
            .retry_config(
                // Adaptive: exponential backoff with jitter, plus a client-side send rate that drops when the
                // service throttles and recovers as calls succeed.
                RetryConfig::adaptive()
                    .with_max_attempts(settings.max_attempts.max(1))
                    .with_initial_backoff(settings.initial_backoff)
                    .with_max_backoff(settings.max_backoff),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(settings.connect_timeout)
                    .operation_attempt_timeout(settings.call_timeout)
                    .build(),
            );
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let base = loader.load().await;
        let recorder = ApiCallRecorder::new(stats.clone());
        let mut accounts = Vec::with_capacity(settings.accounts.len());
        for spec in &settings.accounts {
            let sdk = match &spec.role_arn {
                None => base.clone(),
                Some(role) => {
                    // Our own STS client, so the AssumeRole calls are counted like every other call.
                    let sts_conf = aws_sdk_sts::config::Builder::from(&base)
                        .retry_partition(aws_sdk_sts::config::retry::RetryPartition::new(format!(
                            "aws_sdk_sts/assume-role/{}",
                            spec.name
                        )))
                        .interceptor(recorder.clone())
                        .build();
                    let provider = assume_role::AssumeRole {
                        client: aws_sdk_sts::Client::from_conf(sts_conf),
                        role_arn: role.clone(),
                        external_id: spec.external_id.clone(),
                    };
                    base.to_builder().credentials_provider(SharedCredentialsProvider::new(provider)).build()
                }
            };
            accounts.push(AccountConfig { spec: spec.clone(), sdk });
        }
        AwsContext { accounts, stats, recorder }
    }

    /// The recorder to attach to every client built from this context.
    pub fn recorder(&self) -> ApiCallRecorder {
        self.recorder.clone()
    }
}

/// Builds a service client for one account and region: the call recorder attached, and its own retry
/// partition, so the adaptive rate limiter and the retry quota are kept per (service, account, region) and
/// throttling in one never slows the others.
macro_rules! client {
    ($krate:ident, $ctx:expr, $account:expr, $region:expr) => {{
        let region: String = $region.to_string();
        let partition = format!("{}/{}/{}", stringify!($krate), $account.spec.name, region);
        let conf = $krate::config::Builder::from(&$account.sdk)
            .region(aws_config::Region::new(region))
            .retry_partition($krate::config::retry::RetryPartition::new(partition))
            .interceptor($ctx.recorder())
            .build();
        $krate::Client::from_conf(conf)
    }};
}
pub(crate) use client;

/// The account id behind an account's credentials (STS `GetCallerIdentity`).
pub async fn account_id(ctx: &AwsContext, account: &AccountConfig) -> Result<String, AwsError> {
    let region = account.sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
    let sts = client!(aws_sdk_sts, ctx, account, region);
    let out = sts.get_caller_identity().send().await.map_err(|e| AwsError::sdk("sts", "GetCallerIdentity", &e))?;
    out.account.ok_or_else(|| AwsError::malformed("sts", "GetCallerIdentity", "no account in the answer"))
}

/// Renders an SDK error with its sources, for logs and the CLI (never for metric labels).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    use aws_smithy_types::error::display::DisplayErrorContext;
    DisplayErrorContext(err).to_string()
}
