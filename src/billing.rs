//! Loading billing export files into the store: list every source, skip the files already loaded as they
//! are, read the others one at a time and replace each file's rows in one transaction.
//!
//! A failure is kept to its scope: a source that cannot be listed, or a file that cannot be read or stored,
//! is reported and the load goes on with the rest; a file that fails leaves its earlier rows as they were.

use std::collections::BTreeSet;

use chrono::Utc;
use collector::aws::{AccountConfig, AwsContext};
use collector::billing::{self, BillingSource, FileFormat, ReadOptions, RowError};
use serde::Serialize;
use tracing::{info, warn};

use crate::store::Store;

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FileStatus {
    /// Read and stored, replacing any earlier version.
    Loaded {
        rows_read: u64,
        rows_skipped: u64,
        cost_rows: u64,
        /// The first skipped rows, when malformed rows are skipped.
        skipped_examples: Vec<RowError>,
    },
    /// Same fingerprint as the stored version: not read again.
    Unchanged,
    /// Not loaded; any earlier version stays as it was.
    Failed {
        /// Bounded: `read`, `unknown_schema`, `malformed_row`, `store`.
        kind: &'static str,
        error: String,
    },
}

/// One file of a load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileOutcome {
    pub uri: String,
    pub format: FileFormat,
    pub status: FileStatus,
}

/// A source that could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFailure {
    pub source: String,
    /// Bounded: `invalid_source`, `no_match`, `list`, `store`.
    pub kind: &'static str,
    pub error: String,
}

/// Everything one load did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    /// One entry per distinct file, in listing order.
    pub files: Vec<FileOutcome>,
    pub source_failures: Vec<SourceFailure>,
}

impl LoadReport {
    fn count(&self, f: impl Fn(&FileStatus) -> bool) -> usize {
        self.files.iter().filter(|o| f(&o.status)).count()
    }

    pub fn loaded(&self) -> usize {
        self.count(|s| matches!(s, FileStatus::Loaded { .. }))
    }

    pub fn unchanged(&self) -> usize {
        self.count(|s| matches!(s, FileStatus::Unchanged))
    }

    pub fn failed(&self) -> usize {
        self.count(|s| matches!(s, FileStatus::Failed { .. }))
    }

    /// Data rows read by this load (unchanged files are not read).
    pub fn rows_read(&self) -> u64 {
        self.files.iter().map(|o| if let FileStatus::Loaded { rows_read, .. } = o.status { rows_read } else { 0 }).sum()
    }

    /// Malformed rows skipped by this load.
    pub fn rows_skipped(&self) -> u64 {
        self.files.iter().map(|o| if let FileStatus::Loaded { rows_skipped, .. } = o.status { rows_skipped } else { 0 }).sum()
    }

    /// Every source listed and every file loaded or unchanged.
    pub fn is_complete(&self) -> bool {
        self.source_failures.is_empty() && self.failed() == 0
    }
}

/// Loads every billing file of `sources` into the store. S3 sources are read with `account`'s credentials
/// in `region`; local sources need neither. Files are read one at a time, so memory is that of one file's
/// roll-up.
pub async fn load_billing(
    store: &Store,
    ctx: &AwsContext,
    account: &AccountConfig,
    region: &str,
    sources: &[BillingSource],
    opts: &ReadOptions,
) -> LoadReport {
    let mut report = LoadReport::default();
    let mut seen = BTreeSet::new();
    for source in sources {
        let files = match billing::list_files(ctx, account, region, source).await {
            Ok(files) => files,
            Err(error) => {
                warn!(source = %source, %error, "billing source not listed");
                report.source_failures.push(SourceFailure {
                    source: source.to_string(),
                    kind: error.kind(),
                    error: error.to_string(),
                });
                continue;
            }
        };
        for file in files {
            // Two sources may name the same file: it is loaded once.
            if !seen.insert(file.uri.clone()) {
                continue;
            }
            let status = load_file(store, ctx, account, region, &file, opts).await;
            report.files.push(FileOutcome { uri: file.uri, format: file.format, status });
        }
    }
    report
}

async fn load_file(
    store: &Store,
    ctx: &AwsContext,
    account: &AccountConfig,
    region: &str,
    file: &billing::FileRef,
    opts: &ReadOptions,
) -> FileStatus {
    match store.billing_file_unchanged(file).await {
        Ok(true) => return FileStatus::Unchanged,
        Ok(false) => {}
        Err(error) => {
            warn!(uri = %file.uri, %error, "billing file state not read");
            return FileStatus::Failed { kind: "store", error: error.to_string() };
        }
    }
    let read = match billing::read_file(ctx, account, region, file, opts).await {
        Ok(read) => read,
        Err(error) => {
            warn!(uri = %file.uri, %error, "billing file not loaded");
            return FileStatus::Failed { kind: error.kind(), error: error.to_string() };
        }
    };
    for example in &read.skipped_examples {
        warn!(uri = %file.uri, error = %example, "malformed billing row skipped");
    }
    match store.replace_billing_file(file, &read, Utc::now()).await {
        Ok(_) => {
            info!(
                uri = %file.uri,
                schema = read.schema.as_str(),
                rows_read = read.rows_read,
                rows_skipped = read.rows_skipped,
                cost_rows = read.costs.len(),
                "billing file loaded"
            );
            FileStatus::Loaded {
                rows_read: read.rows_read,
                rows_skipped: read.rows_skipped,
                cost_rows: read.costs.len() as u64,
                skipped_examples: read.skipped_examples,
            }
        }
        Err(error) => {
            warn!(uri = %file.uri, %error, "billing file not stored");
            FileStatus::Failed { kind: "store", error: error.to_string() }
        }
    }
}
