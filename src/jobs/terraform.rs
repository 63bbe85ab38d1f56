//! The Terraform job: reads every configured state (files, globs, S3 objects and prefixes), keeps each
//! managed resource with its origin and canonical ARN, for drift. A state that cannot be read keeps what
//! was stored from it before.

use collector::terraform::{self, StateSource, TfResource};
use collector::ScopeFailure;
use futures::future::BoxFuture;
use serde::Serialize;

use super::{Job, JobContext, JobOutput, Registration};
use crate::config::check::{collector, key, Checker, Shared};
use crate::config::schema::TerraformSection;
use crate::config::{Config, Job as Scheduled};
use crate::store::RunOutcome;

pub const NAME: &str = "terraform";

pub fn register(config: &Config) -> Option<Registration> {
    let j = config.terraform.as_ref()?;
    Some(Registration::new(j.schedule.clone(), Terraform { settings: j.settings.clone() }))
}

pub struct Terraform {
    pub settings: TerraformSettings,
}

impl Job for Terraform {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, JobOutput> {
        Box::pin(run(ctx, &self.settings))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TerraformSettings {
    pub sources: Vec<StateSource>,
    /// The `[[accounts]]` name whose credentials read S3 states.
    pub account: String,
    /// The state bucket's region.
    pub region: String,
    /// Region assumed for resources whose attributes do not say (ARNs are built with it).
    pub default_region: String,
    /// A state larger than this is not read.
    pub max_state_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TerraformDetail {
    pub states: u64,
    pub resources: u64,
}

async fn run(ctx: &JobContext, s: &TerraformSettings) -> JobOutput {
    let account = match ctx.account(&s.account) {
        Ok(a) => a,
        Err(e) => return JobOutput::failed(e),
    };
    let default_account = match ctx.account_id(&s.account).await {
        Ok(id) => id,
        Err(e) => return JobOutput::failed(e),
    };
    let report = tokio::select! {
        r = terraform::load(&ctx.aws, account, &s.region, &s.sources, s.max_state_bytes) => r,
        _ = ctx.cancel.cancelled() => return JobOutput::cancelled(),
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
    if let Err(e) = ctx.store.record_states(&report.states, &arn_of, ctx.clock.now()).await {
        return JobOutput::failed(e.to_string());
    }
    let outcome = if failures.is_empty() {
        RunOutcome::Success
    } else if report.states.is_empty() {
        RunOutcome::Failed
    } else {
        RunOutcome::Partial
    };
    let mut out = JobOutput::new(outcome, detail.resources).with_detail(detail);
    out.failures = failures;
    out
}

/// Checks `[collectors.terraform]`: its settings when it is enabled and valid.
pub(crate) fn check(
    cx: &mut Checker<'_>,
    s: &TerraformSection,
    shared: &Shared<'_>,
) -> Option<Scheduled<TerraformSettings>> {
    let base = collector(NAME);
    let empty = "must name at least one state file, glob or s3:// location";
    let sources = cx.sources(&base, "sources", &s.sources, empty, StateSource::parse);
    let account = cx.account(&base, s.account.as_ref(), shared);
    for (k, v) in [("region", &s.region), ("default_region", &s.default_region)] {
        if let Some(r) = v {
            cx.region(&key(&base, k), r);
        }
    }
    let region = s.region.clone().unwrap_or_else(|| shared.home_region.to_string());
    let schedule = cx.schedule(&base, s.interval_secs, s.cron.as_deref(), 900)?;
    let max_state_bytes = s.max_state_bytes.unwrap_or(terraform::DEFAULT_MAX_STATE_BYTES);
    if max_state_bytes < 1024 {
        cx.error(&key(&base, "max_state_bytes"), "must be at least 1024");
    }
    let settings = TerraformSettings {
        sources,
        account: account?,
        max_state_bytes,
        default_region: s.default_region.clone().unwrap_or_else(|| region.clone()),
        region,
    };
    s.enabled.then_some(Scheduled { schedule, settings })
}
