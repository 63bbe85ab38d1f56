//! The inventory job: every resource of every account and region, stored with its history.

use chrono::Utc;
use collector::aws::inventory::{self, InventorySettings};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Detail, JobOutput};
use crate::daemon::Daemon;
use crate::store::{InventoryWrite, RunOutcome, ScopeCount};

pub const NAME: &str = "inventory";

#[derive(Debug, Clone, Default, Serialize)]
pub struct InventoryDetail {
    pub write: InventoryWrite,
    /// Live inventory after the run, per (account, region, type).
    pub inventory: Vec<ScopeCount>,
}

pub async fn run(d: &Daemon, settings: &InventorySettings, cancel: &CancellationToken) -> JobOutput {
    let observed_at = Utc::now();
    let report = tokio::select! {
        r = inventory::collect(&d.aws, settings) => r,
        _ = cancel.cancelled() => {
            let mut out = JobOutput::failed("cancelled by shutdown".into());
            out.outcome = RunOutcome::Cancelled;
            return out;
        }
    };
    let mut out = JobOutput {
        outcome: if report.failures.is_empty() {
            RunOutcome::Success
        } else if report.complete_scopes.is_empty() {
            RunOutcome::Failed
        } else {
            RunOutcome::Partial
        },
        items: report.resources.len() as u64,
        failures: report.failures.clone(),
        error: None,
        detail: Detail::None,
    };
    if !report.accounts.is_empty() {
        d.set_accounts(report.accounts.clone());
    }
    let mut detail = InventoryDetail::default();
    if out.outcome != RunOutcome::Failed {
        let roles = d.config.aws.accounts.iter().map(|a| (a.name.clone(), a.role_arn.clone())).collect();
        // Not cancellable: a shutdown waits for this write.
        match d.store.record_inventory(&report, &roles, observed_at).await {
            Ok(w) => detail.write = w,
            Err(e) => {
                out.outcome = RunOutcome::Failed;
                out.error = Some(e.to_string());
            }
        }
    }
    detail.inventory = d.store.inventory_counts().await.unwrap_or_default();
    out.detail = Detail::Inventory(detail);
    out
}
