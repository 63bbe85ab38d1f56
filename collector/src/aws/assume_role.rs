//! Credentials for a member account from STS `AssumeRole`, made with a client of ours so the call is
//! counted like every other. The SDK's identity cache (shared by every client built from the account's
//! configuration) keeps the credentials until shortly before they expire.

use std::time::SystemTime;

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_credential_types::Credentials;

pub struct AssumeRole {
    pub client: aws_sdk_sts::Client,
    pub role_arn: String,
    pub external_id: Option<String>,
}

impl std::fmt::Debug for AssumeRole {
    /// Never shows the external id.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeRole")
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id.as_ref().map(|_| "***"))
            .finish()
    }
}

impl AssumeRole {
    async fn assume(&self) -> Result<Credentials, CredentialsError> {
        let out = self
            .client
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name("cloudwarden")
            .set_external_id(self.external_id.clone())
            .send()
            .await
            .map_err(CredentialsError::provider_error)?;
        let c = out.credentials.ok_or_else(|| {
            CredentialsError::provider_error(format!("AssumeRole {} returned no credentials", self.role_arn))
        })?;
        let expiry = SystemTime::try_from(c.expiration).ok();
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            expiry,
            "cloudwarden-assume-role",
        ))
    }
}

impl ProvideCredentials for AssumeRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.assume())
    }
}
