//! Loading billing export files into the store: list every source, skip the files already loaded as they
//! are, read the others one at a time and replace each file's rows in one transaction.
//!
//! A failure is kept to its scope: a source that cannot be listed, or a file that cannot be read or stored,
//! is reported and the load goes on with the rest; a file that fails leaves its earlier rows as they were.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use collector::aws::{AccountConfig, AwsContext};
use collector::billing::{self, BillingSource, FileFormat, ReadOptions, RowError};
use collector::money::{self, Overflow};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::{windows_of, CostGauge};
use crate::store::{Store, StoreError};

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
        /// Bounded: `read`, `unknown_schema`, `malformed_row`, `limit`, `store`.
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
    /// Stopped by a shutdown before every file was seen.
    pub cancelled: bool,
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
        self.files
            .iter()
            .map(|o| if let FileStatus::Loaded { rows_skipped, .. } = o.status { rows_skipped } else { 0 })
            .sum()
    }

    /// Daily cost rows written by this load.
    pub fn cost_rows(&self) -> u64 {
        self.files.iter().map(|o| if let FileStatus::Loaded { cost_rows, .. } = o.status { cost_rows } else { 0 }).sum()
    }

    /// Every source listed and every file loaded or unchanged.
    pub fn is_complete(&self) -> bool {
        self.source_failures.is_empty() && self.failed() == 0 && !self.cancelled
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
    load_billing_until(store, ctx, account, region, sources, opts, &CancellationToken::new()).await
}

/// [`load_billing`] that stops at `cancel`: listing and reading stop at once, a file being stored is
/// finished (each file's write is one transaction, never cut), and the files not reached are left for the
/// next load.
pub async fn load_billing_until(
    store: &Store,
    ctx: &AwsContext,
    account: &AccountConfig,
    region: &str,
    sources: &[BillingSource],
    opts: &ReadOptions,
    cancel: &CancellationToken,
) -> LoadReport {
    let mut report = LoadReport::default();
    let mut seen = BTreeSet::new();
    for source in sources {
        let listed = tokio::select! {
            listed = billing::list_files(ctx, account, region, source) => listed,
            _ = cancel.cancelled() => {
                report.cancelled = true;
                return report;
            }
        };
        let files = match listed {
            Ok(files) => files,
            Err(error) => {
                warn!(source = %source, %error, "billing source not listed");
                report.source_failures.push(SourceFailure {
                    source: source.to_string(),
                    kind: error.as_kind(),
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
            let Some(status) = load_file(store, ctx, account, region, &file, opts, cancel).await else {
                report.cancelled = true;
                return report;
            };
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
    cancel: &CancellationToken,
) -> Option<FileStatus> {
    match store.billing_file_unchanged(file).await {
        Ok(true) => return Some(FileStatus::Unchanged),
        Ok(false) => {}
        Err(error) => {
            warn!(uri = %file.uri, %error, "billing file state not read");
            return Some(FileStatus::Failed { kind: "store", error: error.to_string() });
        }
    }
    let read = tokio::select! {
        read = billing::read_file(ctx, account, region, file, opts) => read,
        _ = cancel.cancelled() => return None,
    };
    let read = match read {
        Ok(read) => read,
        Err(error) => {
            warn!(uri = %file.uri, %error, "billing file not loaded");
            return Some(FileStatus::Failed { kind: error.as_kind(), error: error.to_string() });
        }
    };
    for example in &read.skipped_examples {
        warn!(uri = %file.uri, error = %example, "malformed billing row skipped");
    }
    let stored = match store.replace_billing_file(file, &read, Utc::now()).await {
        Ok(_) => {
            info!(
                uri = %file.uri,
                schema = read.schema.as_str(),
                rows_read = read.rows_read,
                rows_skipped = read.rows_skipped,
                cost_rows = read.cost_rows(),
                "billing file loaded"
            );
            FileStatus::Loaded {
                rows_read: read.rows_read,
                rows_skipped: read.rows_skipped,
                cost_rows: read.cost_rows() as u64,
                skipped_examples: read.skipped_examples,
            }
        }
        Err(error) => {
            warn!(uri = %file.uri, %error, "billing file not stored");
            FileStatus::Failed { kind: "store", error: error.to_string() }
        }
    };
    Some(stored)
}

/// One `cloudwarden_resource_cost_usd` series: a window's cost of one resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceCost {
    pub window: &'static str,
    /// `billed`, `effective` or `list`.
    pub cost_type: &'static str,
    pub account: String,
    pub service: String,
    pub resource_id: String,
    pub usd: f64,
}

/// What `/metrics` shows of the loaded billing files, relative to one day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BillingView {
    /// The UTC day the windows are relative to.
    pub today: Option<NaiveDate>,
    /// Window costs by total, service, account and configured tag keys (`cost_type`: billed, effective, list).
    pub costs: Vec<CostGauge>,
    /// Per-resource window costs, when enabled: the most expensive resources first.
    pub resources: Vec<ResourceCost>,
    /// Resources left out of `resources` by the series cap.
    pub resources_left_out: usize,
    /// The newest day with any stored cost.
    pub newest_day: Option<NaiveDate>,
    /// Rows in the windows in a currency other than USD, left out of the USD series.
    pub other_currency_rows: u64,
}

/// The billing cost types, in the order of [`BillingView`]'s sums.
const COST_TYPES: [&str; 3] = ["billed", "effective", "list"];

/// Sums the stored billing costs into the exported windows relative to `now` (yesterday, the last seven
/// full days, the month to date), exactly, as decimals, one row at a time. USD rows only: the series are in
/// dollars. Per-resource series for at most `resource_series` resources, when given. A sum that would leave
/// the decimal range is an error (only rows stored before amounts were bounded can be that big).
pub async fn billing_view(
    store: &Store,
    now: DateTime<Utc>,
    tag_keys: &[String],
    resource_series: Option<usize>,
) -> Result<BillingView, StoreError> {
    use chrono::{Datelike, Days};

    let today = now.date_naive();
    let month_start = today.with_day(1).unwrap_or(today);
    let from = month_start.min(today - Days::new(7));
    type Sums = [Decimal; 3];
    let add = |sum: &mut Sums, c: &billing::DailyCost| -> Result<(), Overflow> {
        money::add_to(&mut sum[0], c.billed_cost)?;
        money::add_to(&mut sum[1], c.effective_cost)?;
        money::add_to(&mut sum[2], c.list_cost)
    };
    let mut groups: BTreeMap<(&'static str, String, String), Sums> = BTreeMap::new();
    let mut resources: BTreeMap<(String, String, String), BTreeMap<&'static str, Sums>> = BTreeMap::new();
    let mut other_currency_rows = 0u64;
    let mut overflow: Option<Overflow> = None;
    store
        .for_each_billing_cost(from, today, |c| {
            if overflow.is_some() {
                return;
            }
            if !c.currency.eq_ignore_ascii_case("USD") {
                other_currency_rows += 1;
                return;
            }
            let mut add_row = || -> Result<(), Overflow> {
                for window in windows_of(c.day, today) {
                    add(groups.entry((window, "total".into(), String::new())).or_default(), &c)?;
                    add(groups.entry((window, "service".into(), c.service_name.clone())).or_default(), &c)?;
                    add(groups.entry((window, "account".into(), c.sub_account_id.clone())).or_default(), &c)?;
                    for key in tag_keys {
                        if let Some(value) = c.tags.get(key) {
                            add(groups.entry((window, format!("tag:{key}"), value.clone())).or_default(), &c)?;
                        }
                    }
                    if resource_series.is_some() {
                        if let Some(id) = c.resource_id.as_deref().filter(|id| !id.is_empty()) {
                            let key = (c.sub_account_id.clone(), c.service_name.clone(), id.to_string());
                            add(resources.entry(key).or_default().entry(window).or_default(), &c)?;
                        }
                    }
                }
                Ok(())
            };
            overflow = add_row().err();
        })
        .await?;
    if let Some(e) = overflow {
        return Err(StoreError::from(e));
    }
    if other_currency_rows > 0 {
        warn!(rows = other_currency_rows, "billing rows in a currency other than USD are left out of the USD series");
    }
    let usd = |d: Decimal| d.to_f64().unwrap_or(0.0);
    let mut costs = Vec::new();
    for ((window, dimension, key), sums) in groups {
        for (cost_type, amount) in COST_TYPES.iter().zip(sums) {
            costs.push(CostGauge {
                window,
                cost_type,
                dimension: dimension.clone(),
                key: key.clone(),
                usd: usd(amount),
            });
        }
    }
    let mut view = BillingView {
        today: Some(today),
        costs,
        newest_day: store.billing_newest_day().await?,
        other_currency_rows,
        ..BillingView::default()
    };
    if let Some(cap) = resource_series {
        let mut ranked: Vec<_> = resources.into_iter().collect();
        let mtd = |w: &BTreeMap<&'static str, Sums>| w.get("month_to_date").map(|s| s[1]).unwrap_or_default();
        // Most expensive first; ties in key order, so the cut is deterministic.
        ranked.sort_by(|a, b| mtd(&b.1).cmp(&mtd(&a.1)).then_with(|| a.0.cmp(&b.0)));
        view.resources_left_out = ranked.len().saturating_sub(cap);
        for ((account, service, resource_id), windows) in ranked.into_iter().take(cap) {
            for (window, sums) in windows {
                for (cost_type, amount) in COST_TYPES.iter().zip(sums) {
                    view.resources.push(ResourceCost {
                        window,
                        cost_type,
                        account: account.clone(),
                        service: service.clone(),
                        resource_id: resource_id.clone(),
                        usd: usd(amount),
                    });
                }
            }
        }
    }
    Ok(view)
}
