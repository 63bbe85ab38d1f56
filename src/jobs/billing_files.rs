//! The billing files job: loads FOCUS 1.0 and CUR 2.0 exports from every configured source into the
//! database. Files already loaded as they are are not read again; a changed file replaces its rows in one
//! transaction; a file that fails keeps what was stored from it before.

use collector::billing::{BillingSource, ReadOptions};
use collector::ScopeFailure;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Detail, JobOutput};
use crate::billing::{load_billing_until, FileStatus, LoadReport};
use crate::daemon::Daemon;
use crate::store::RunOutcome;

pub const NAME: &str = "billing_files";

/// Every failure kind a load reports (a bounded label set).
pub const FAILURE_KINDS: [&str; 7] =
    ["invalid_source", "no_match", "list", "read", "unknown_schema", "malformed_row", "store"];

#[derive(Debug, Clone, PartialEq)]
pub struct BillingFilesSettings {
    pub sources: Vec<BillingSource>,
    /// The `[[accounts]]` name whose credentials read S3 sources.
    pub account: String,
    /// The export bucket's region.
    pub region: String,
    pub skip_malformed: bool,
    /// Tag keys exported as `scope="tag"` cost series.
    pub tag_keys: Vec<String>,
    /// Per-resource cost series for at most this many resources; `None`: off.
    pub resource_costs: Option<usize>,
}

/// What one load did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BillingFilesDetail {
    pub files_loaded: u64,
    pub files_unchanged: u64,
    pub files_failed: u64,
    pub rows_read: u64,
    pub rows_skipped: u64,
    pub cost_rows: u64,
}

impl BillingFilesDetail {
    fn of(report: &LoadReport) -> BillingFilesDetail {
        BillingFilesDetail {
            files_loaded: report.loaded() as u64,
            files_unchanged: report.unchanged() as u64,
            files_failed: report.failed() as u64,
            rows_read: report.rows_read(),
            rows_skipped: report.rows_skipped(),
            cost_rows: report.cost_rows(),
        }
    }
}

/// The failures of a load, one per source not listed and per file not loaded, with their kind.
fn failures(account: &str, report: &LoadReport) -> Vec<(&'static str, ScopeFailure)> {
    let failure = |source: &str, error: &str| ScopeFailure {
        account: account.to_string(),
        account_id: None,
        region: None,
        source: source.to_string(),
        error: error.to_string(),
    };
    let mut out: Vec<_> = report.source_failures.iter().map(|f| (f.kind, failure(&f.source, &f.error))).collect();
    for file in &report.files {
        if let FileStatus::Failed { kind, error } = &file.status {
            out.push((*kind, failure(&file.uri, error)));
        }
    }
    out
}

pub async fn run(d: &Daemon, s: &BillingFilesSettings, cancel: &CancellationToken) -> JobOutput {
    let Some(account) = d.aws.accounts.iter().find(|a| a.spec.name == s.account) else {
        return JobOutput::failed(format!("no configured account is named {:?}", s.account));
    };
    let opts = ReadOptions { skip_malformed: s.skip_malformed };
    let report = load_billing_until(&d.store, &d.aws, account, &s.region, &s.sources, &opts, cancel).await;
    let failures = failures(&s.account, &report);
    let detail = BillingFilesDetail::of(&report);
    d.note_billing_load(&detail, failures.iter().map(|(kind, _)| *kind));
    let outcome = if report.cancelled {
        RunOutcome::Cancelled
    } else if report.is_complete() {
        RunOutcome::Success
    } else if report.loaded() + report.unchanged() == 0 {
        RunOutcome::Failed
    } else {
        RunOutcome::Partial
    };
    let error = report.cancelled.then(|| "cancelled by shutdown".to_string());
    JobOutput {
        outcome,
        items: detail.rows_read,
        failures: failures.into_iter().map(|(_, f)| f).collect(),
        error,
        detail: Detail::BillingFiles(detail),
    }
}
