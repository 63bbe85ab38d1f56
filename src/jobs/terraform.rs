//! The Terraform job: reads every configured state (files, globs, S3 objects and prefixes), keeps each
//! managed resource with its origin and canonical ARN, for drift. A state that cannot be read keeps what
//! was stored from it before.

use collector::aws::account_id;
use collector::terraform::{self, StateSource, TfResource};
use collector::ScopeFailure;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Detail, JobOutput};
use crate::daemon::Daemon;
use crate::store::RunOutcome;

pub const NAME: &str = "terraform";

#[derive(Debug, Clone, PartialEq)]
pub struct TerraformSettings {
    pub sources: Vec<StateSource>,
    /// The `[[accounts]]` name whose credentials read S3 states.
    pub account: String,
    /// The state bucket's region.
    pub region: String,
    /// Region assumed for resources whose attributes do not say (ARNs are built with it).
    pub default_region: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TerraformDetail {
    pub states: u64,
    pub resources: u64,
}

pub async fn run(d: &Daemon, s: &TerraformSettings, cancel: &CancellationToken) -> JobOutput {
    let Some(account) = d.aws.accounts.iter().find(|a| a.spec.name == s.account) else {
        return JobOutput::failed(format!("no configured account is named {:?}", s.account));
    };
    let known = d.accounts().into_iter().find(|(n, _)| n == &s.account).map(|(_, id)| id);
    let default_account = match known {
        Some(id) => id,
        None => match account_id(&d.aws, account).await {
            Ok(id) => id,
            Err(e) => return JobOutput::failed(format!("cannot identify account {:?}: {e}", s.account)),
        },
    };
    let report = tokio::select! {
        r = terraform::load(&d.aws, account, &s.region, &s.sources) => r,
        _ = cancel.cancelled() => {
            let mut out = JobOutput::failed("cancelled by shutdown".into());
            out.outcome = RunOutcome::Cancelled;
            return out;
        }
    };
    let failures: Vec<ScopeFailure> = report
        .failures
        .iter()
        .map(|f| ScopeFailure {
            account: s.account.clone(),
            account_id: Some(default_account.clone()),
            region: None,
            source: f.origin.clone(),
            error: f.error.clone(),
        })
        .collect();
    let default_region = s.default_region.clone();
    let arn_of = move |r: &TfResource| r.canonical_arn(&default_region, &default_account);
    let detail = TerraformDetail {
        states: report.states.len() as u64,
        resources: report.states.iter().map(|s| s.resources.len() as u64).sum(),
    };
    // Not cancellable: a shutdown waits for this write.
    if let Err(e) = d.store.record_states(&report.states, &arn_of, chrono::Utc::now()).await {
        return JobOutput::failed(e.to_string());
    }
    let outcome = if failures.is_empty() {
        RunOutcome::Success
    } else if report.states.is_empty() {
        RunOutcome::Failed
    } else {
        RunOutcome::Partial
    };
    JobOutput { outcome, items: detail.resources, failures, error: None, detail: Detail::Terraform(detail) }
}
