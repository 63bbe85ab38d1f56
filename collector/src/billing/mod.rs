//! Billing export files (FOCUS 1.0, CUR 2.0) from local paths, globs or S3.
//!
//! Three steps, each usable on its own:
//!
//! 1. [`BillingSource::parse`] turns a configured string into a source: a local file, a directory (every
//!    billing file below it), a glob, or `s3://bucket/prefix/`.
//! 2. [`list_files`] lists a source into [`FileRef`]s, each with the fingerprint that tells whether it
//!    changed (the S3 ETag, or size and modification time for a local file) and its [`FileFormat`], taken
//!    from the name: `.csv`, `.csv.gz` or `.parquet`.
//! 3. [`read_file`] (or [`read_path`] / [`read_csv`] for bytes already at hand) streams one file and returns
//!    its cost rolled up per UTC day and per resource: [`FileCosts`].
//!
//! The schema (FOCUS or CUR 2.0) is detected from the column names. Rows are never kept: each one is added
//! into a [`DailyCost`] keyed by (day, provider, billing account, sub-account, service, resource, region,
//! charge category, currency, tag set), so memory grows with the number of distinct keys, not with the
//! size of the file. Amounts are [`Decimal`]s from start to end; no `f64` is ever summed.
//!
//! A row that cannot be read fails the whole file with its location ([`BillingError::Row`]: file, 1-based
//! line for CSV or row group and row for Parquet, column), unless [`ReadOptions::skip_malformed`] is set,
//! in which case it is skipped and counted in [`FileCosts::rows_skipped`].

mod aggregate;
mod csv;
mod error;
mod parquet;
mod schema;
mod source;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use chrono::NaiveDate;
pub use rust_decimal::Decimal;
use serde::Serialize;

use crate::aws::{AccountConfig, AwsContext};
use crate::source::SourceError;

pub use self::csv::read_csv;
pub use self::error::{BillingError, LimitBreach, Location, RowError, SchemaError, ValueError};
pub use self::source::{list_files, BillingSource};

/// How a billing file is encoded, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    Csv,
    CsvGz,
    Parquet,
}

impl FileFormat {
    /// The format a file name announces, or `None` for a file that is not a billing file (a manifest,
    /// a checksum...).
    pub fn from_name(name: &str) -> Option<FileFormat> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Some(FileFormat::Csv)
        } else if lower.ends_with(".csv.gz") {
            Some(FileFormat::CsvGz)
        } else if lower.ends_with(".parquet") {
            Some(FileFormat::Parquet)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::CsvGz => "csv.gz",
            FileFormat::Parquet => "parquet",
        }
    }
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which billing schema a file follows, detected from its column names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Schema {
    /// FinOps FOCUS 1.0 (`BilledCost`, `ChargePeriodStart`, ...).
    Focus,
    /// AWS Cost and Usage Report 2.0 (`line_item_unblended_cost`, `line_item_usage_start_date`, ...).
    Cur,
}

impl Schema {
    pub fn as_str(self) -> &'static str {
        match self {
            Schema::Focus => "focus",
            Schema::Cur => "cur",
        }
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One billing file found by listing a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRef {
    /// The file's identity: an absolute local path, or `s3://bucket/key`.
    pub uri: String,
    pub size: u64,
    /// Changes whenever the content may have changed: `etag:<ETag>` for S3, `size:<bytes>,mtime:<ns>` for a
    /// local file.
    pub fingerprint: String,
    pub format: FileFormat,
}

/// How files are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// `false` (the default): one malformed row fails the whole file. `true`: malformed rows are skipped and
    /// counted, and the rest of the file is kept.
    pub skip_malformed: bool,
    /// The bounds on one file's work.
    pub limits: Limits,
}

/// Bounds on the work one file may cause, so that a broken or hostile export file fails alone, with a clear
/// error, instead of taking the daemon's memory. The defaults pass a real 1 GiB CUR export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest CSV record, in bytes: a record over it (an unterminated quote swallowing the rest of the
    /// file) fails the file with its line.
    pub max_record_bytes: u64,
    /// The most bytes one CSV file may decompress to (or hold, uncompressed).
    pub max_decompressed_bytes: u64,
    /// The most distinct (day, account, service, resource, tags, ...) keys one file may roll up to.
    pub max_keys: usize,
}

impl Limits {
    pub const DEFAULT_MAX_RECORD_BYTES: u64 = 1 << 20;
    pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 256 << 30;
    pub const DEFAULT_MAX_KEYS: usize = 20_000_000;
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_record_bytes: Limits::DEFAULT_MAX_RECORD_BYTES,
            max_decompressed_bytes: Limits::DEFAULT_MAX_DECOMPRESSED_BYTES,
            max_keys: Limits::DEFAULT_MAX_KEYS,
        }
    }
}

/// Cost of one day, rolled up from every row with the same key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DailyCost {
    /// The UTC day of the charge period start.
    pub day: NaiveDate,
    /// `ProviderName` (FOCUS); `AWS` for CUR.
    pub provider: String,
    /// `BillingAccountId` (FOCUS), `bill_payer_account_id` (CUR); empty when absent.
    pub billing_account_id: String,
    /// `SubAccountId` (FOCUS), `line_item_usage_account_id` (CUR); empty when absent.
    pub sub_account_id: String,
    /// `ServiceName` (FOCUS), `line_item_product_code` (CUR); empty when absent.
    pub service_name: String,
    /// `ResourceId` (FOCUS), `line_item_resource_id` (CUR).
    pub resource_id: Option<String>,
    /// `RegionId` (FOCUS), `product_region_code` (CUR).
    pub region: Option<String>,
    /// FOCUS `ChargeCategory` (Usage, Purchase, Tax, Credit, Adjustment); CUR line item types are mapped onto
    /// it.
    pub charge_category: String,
    /// `BillingCurrency` (FOCUS), `line_item_currency_code` (CUR).
    pub currency: String,
    /// What is invoiced: `BilledCost` (FOCUS), `line_item_unblended_cost` (CUR).
    pub billed_cost: Decimal,
    /// Amortized cost: `EffectiveCost` (FOCUS); for CUR, commitments spread over the usage they cover.
    pub effective_cost: Decimal,
    /// Cost at public prices: `ListCost` (FOCUS), `pricing_public_on_demand_cost` (CUR, zero when absent).
    pub list_cost: Decimal,
    /// The resource's tags (`Tags` / `resource_tags`); rows whose tags differ are kept apart.
    pub tags: BTreeMap<String, String>,
}

/// A [`DailyCost`] borrowed from a [`FileCosts`]: what the store writes, without an owned copy of every
/// text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyCostRef<'a> {
    pub day: NaiveDate,
    pub provider: &'a str,
    pub billing_account_id: &'a str,
    pub sub_account_id: &'a str,
    pub service_name: &'a str,
    pub resource_id: Option<&'a str>,
    pub region: Option<&'a str>,
    pub charge_category: &'a str,
    pub currency: &'a str,
    pub billed_cost: Decimal,
    pub effective_cost: Decimal,
    pub list_cost: Decimal,
    pub tags: &'a BTreeMap<String, String>,
}

impl DailyCostRef<'_> {
    pub fn to_owned(&self) -> DailyCost {
        DailyCost {
            day: self.day,
            provider: self.provider.to_string(),
            billing_account_id: self.billing_account_id.to_string(),
            sub_account_id: self.sub_account_id.to_string(),
            service_name: self.service_name.to_string(),
            resource_id: self.resource_id.map(str::to_string),
            region: self.region.map(str::to_string),
            charge_category: self.charge_category.to_string(),
            currency: self.currency.to_string(),
            billed_cost: self.billed_cost,
            effective_cost: self.effective_cost,
            list_cost: self.list_cost,
            tags: self.tags.clone(),
        }
    }
}

/// What was read from one file: counts, and the daily costs in a compact form (each distinct text stored
/// once), read through [`FileCosts::costs`].
#[derive(Debug, Clone)]
pub struct FileCosts {
    pub schema: Schema,
    /// Data rows read, skipped ones included.
    pub rows_read: u64,
    /// Malformed rows skipped (only with [`ReadOptions::skip_malformed`]).
    pub rows_skipped: u64,
    /// The first few skipped rows, for the log.
    pub skipped_examples: Vec<RowError>,
    rolled_up: aggregate::RolledUp,
}

impl FileCosts {
    /// Number of daily cost rows.
    pub fn cost_rows(&self) -> usize {
        self.rolled_up.len()
    }

    /// The daily costs, sorted by day, then provider, billing account, sub-account, service, resource,
    /// region, charge category, currency and tags.
    pub fn costs(&self) -> impl ExactSizeIterator<Item = DailyCostRef<'_>> + '_ {
        self.rolled_up.iter()
    }

    /// The daily costs as owned values.
    pub fn to_vec(&self) -> Vec<DailyCost> {
        self.costs().map(|c| c.to_owned()).collect()
    }
}

/// How many skipped rows are kept as examples.
pub const SKIPPED_EXAMPLES: usize = 5;

/// Reads one local file of a known format. Blocking: call it from a blocking thread.
pub fn read_path(path: &Path, uri: &str, format: FileFormat, opts: &ReadOptions) -> Result<FileCosts, BillingError> {
    let file = std::fs::File::open(path)
        .map_err(|e| BillingError::Read { uri: uri.to_string(), error: SourceError::io(&e) })?;
    match format {
        FileFormat::Csv => read_csv(file, uri, false, opts),
        FileFormat::CsvGz => read_csv(file, uri, true, opts),
        FileFormat::Parquet => parquet::read_parquet(file, uri, opts),
    }
}

/// Reads one listed file, local or on S3, without holding it in memory: a local file is read where it is, a
/// CSV object is streamed as it downloads, a Parquet object (which needs random access) is downloaded to a
/// temporary file first. The parsing runs on a blocking thread.
pub async fn read_file(
    ctx: &AwsContext,
    account: &AccountConfig,
    region: &str,
    file: &FileRef,
    opts: &ReadOptions,
) -> Result<FileCosts, BillingError> {
    if file.uri.starts_with("s3://") {
        return source::read_s3(ctx, account, region, file, opts).await;
    }
    let (uri, format, opts) = (file.uri.clone(), file.format, *opts);
    tokio::task::spawn_blocking(move || read_path(Path::new(&uri), &uri, format, &opts))
        .await
        .map_err(|e| BillingError::Read { uri: file.uri.clone(), error: SourceError::task("reader", &e) })?
}
