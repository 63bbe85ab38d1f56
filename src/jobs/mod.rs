//! The collectors the daemon schedules. Each job collects (cancellable) and stores (never cancelled); the
//! bookkeeping around it — run rows, API call counts, metrics refresh, readiness — is the same for all and
//! lives in [`crate::daemon`].

pub mod billing_files;
pub mod cloudwatch;
pub mod cost_explorer;
pub mod inventory;
pub mod logs;
pub mod metric_anomaly;
pub mod rules;
pub mod terraform;

use collector::aws::inventory::InventorySettings;
use collector::ScopeFailure;
use serde::Serialize;

use crate::store::RunOutcome;

pub use self::rules::RulesSettings;
pub use billing_files::BillingFilesSettings;
pub use cloudwatch::CloudWatchSettings;
pub use cost_explorer::CostExplorerSettings;
pub use logs::LogsSettings;
pub use terraform::TerraformSettings;

/// What a job does and with which settings.
#[derive(Debug, Clone)]
pub enum JobKind {
    Inventory(InventorySettings),
    CostExplorer(CostExplorerSettings),
    CloudWatch(CloudWatchSettings),
    Logs(LogsSettings),
    Terraform(TerraformSettings),
    BillingFiles(BillingFilesSettings),
    /// Not a collector: evaluates the rule files over the store.
    Rules(RulesSettings),
}

impl JobKind {
    /// Whether the job works from what the inventory stored (CloudWatch discovery, Logs, rules), so its
    /// first run on an empty database waits for the inventory's.
    pub fn reads_inventory(&self) -> bool {
        match self {
            JobKind::CloudWatch(s) => !s.discovery.is_empty(),
            JobKind::Logs(_) | JobKind::Rules(_) => true,
            _ => false,
        }
    }

    /// The collector's name in run rows, metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Inventory(_) => inventory::NAME,
            JobKind::CostExplorer(_) => cost_explorer::NAME,
            JobKind::CloudWatch(_) => cloudwatch::NAME,
            JobKind::Logs(_) => logs::NAME,
            JobKind::Terraform(_) => terraform::NAME,
            JobKind::BillingFiles(_) => billing_files::NAME,
            JobKind::Rules(_) => rules::NAME,
        }
    }
}

/// What one run of a job produced.
#[derive(Debug, Clone, Serialize)]
pub struct JobOutput {
    pub outcome: RunOutcome,
    /// Items collected (resources, cost rows, ...).
    pub items: u64,
    pub failures: Vec<ScopeFailure>,
    pub error: Option<String>,
    pub detail: Detail,
}

impl JobOutput {
    pub fn failed(error: String) -> JobOutput {
        JobOutput {
            outcome: RunOutcome::Failed,
            items: 0,
            failures: Vec::new(),
            error: Some(error),
            detail: Detail::None,
        }
    }
}

/// Job-specific facts of a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Detail {
    None,
    Inventory(inventory::InventoryDetail),
    CostExplorer(cost_explorer::CostExplorerDetail),
    CloudWatch(cloudwatch::CloudWatchDetail),
    Logs(logs::LogsDetail),
    Terraform(terraform::TerraformDetail),
    BillingFiles(billing_files::BillingFilesDetail),
    Rules(rules::RulesDetail),
}
