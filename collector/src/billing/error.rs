//! Why a billing source could not be listed or a file could not be read, down to the malformed value of one
//! row.

use std::fmt;

use serde::{Serialize, Serializer};

use super::Schema;
use crate::money;
use crate::source::SourceError;

/// Why a source could not be listed or a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillingError {
    #[error("invalid billing source {source_text:?}: {reason}")]
    InvalidSource { source_text: String, reason: String },
    #[error("{source_text}: matched no billing file")]
    NoMatch { source_text: String },
    #[error("{source_text}: cannot list: {error}")]
    List { source_text: String, error: SourceError },
    /// The file or object could not be opened or fetched.
    #[error("{uri}: cannot read: {error}")]
    Read { uri: String, error: SourceError },
    /// The bytes are not what the format says: broken CSV, a Parquet file that does not decode. The message
    /// is the format library's.
    #[error("{uri}: cannot read: {message}")]
    Decode { uri: String, message: String },
    #[error("{uri}: not a FOCUS 1.0 or CUR 2.0 file: {reason}")]
    UnknownSchema { uri: String, reason: SchemaError },
    #[error("{0}")]
    Row(RowError),
    /// The file breaks a bound on one file's work ([`super::Limits`]); nothing of it is stored.
    #[error("{uri}: {what}; the file is not loaded")]
    Limit { uri: String, what: LimitBreach },
}

/// Which bound a file broke, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitBreach {
    #[error("line {line}: a record longer than {max} bytes (an unterminated quote?)")]
    Record { line: u64, max: u64 },
    #[error("more than {max} bytes once decompressed")]
    Decompressed { max: u64 },
    #[error("more than {max} distinct daily cost keys")]
    Keys { max: usize },
}

impl BillingError {
    /// The bounded kind of the error, for metric labels: `invalid_source`, `no_match`, `list`, `read`,
    /// `unknown_schema`, `malformed_row` or `limit`.
    pub fn as_kind(&self) -> &'static str {
        match self {
            BillingError::InvalidSource { .. } => "invalid_source",
            BillingError::NoMatch { .. } => "no_match",
            BillingError::List { .. } => "list",
            BillingError::Read { .. } | BillingError::Decode { .. } => "read",
            BillingError::UnknownSchema { .. } => "unknown_schema",
            BillingError::Row(_) => "malformed_row",
            BillingError::Limit { .. } => "limit",
        }
    }
}

/// Why the columns of a file fit neither schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("the file is empty")]
    Empty,
    #[error(
        "found neither FOCUS columns (BilledCost, ChargePeriodStart) nor CUR 2.0 columns \
         (line_item_unblended_cost, line_item_usage_start_date)"
    )]
    NoKnownColumns,
    /// The schema's marker columns are there, some it requires are not.
    #[error("{} file without column(s) {}", schema_name(.schema), .columns.join(", "))]
    MissingColumns { schema: Schema, columns: Vec<&'static str> },
}

fn schema_name(schema: &Schema) -> &'static str {
    match schema {
        Schema::Focus => "FOCUS",
        Schema::Cur => "CUR 2.0",
    }
}

/// Where a malformed value is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// 1-based line of a CSV file (the header is line 1); for a quoted value spanning lines, the line the
    /// row starts on.
    Line(u64),
    /// Row group (0-based) and row within it (0-based) of a Parquet file.
    Row { row_group: usize, row: u64 },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(l) => write!(f, "line {l}"),
            Location::Row { row_group, row } => write!(f, "row group {row_group}, row {row}"),
        }
    }
}

/// One malformed row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub uri: String,
    pub location: Location,
    /// The column at fault, when one is.
    pub column: Option<String>,
    /// What is wrong (serialized as its text, under `message`).
    #[serde(rename = "message")]
    pub problem: ValueError,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.uri, self.location)?;
        if let Some(c) = &self.column {
            write!(f, ", column {c}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// What is wrong with one value of a row, or with the row as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("invalid UTF-8")]
    InvalidUtf8,
    #[error("missing timestamp")]
    MissingTimestamp,
    #[error("invalid timestamp {text:?}")]
    InvalidTimestamp { text: String },
    /// A Parquet timestamp (in milliseconds once converted) beyond the dates we can hold.
    #[error("timestamp {ms} ms out of range")]
    TimestampOutOfRange { ms: i64 },
    /// A Parquet DATE beyond the dates we can hold.
    #[error("date {days} (days since 1970-01-01) out of range")]
    DateOutOfRange { days: i32 },
    #[error("missing amount")]
    MissingAmount,
    #[error("invalid amount {text:?}")]
    InvalidAmount { text: String },
    /// A floating-point amount that is infinite or NaN (as Rust prints it).
    #[error("amount {value} is not a number")]
    NotANumber { value: String },
    #[error(transparent)]
    AmountOutOfRange(money::OutOfRange),
    /// A Parquet DECIMAL wider than 128 bits (or of no bytes).
    #[error("decimal of {bytes} bytes is out of range")]
    DecimalWidth { bytes: usize },
    #[error("negative decimal scale {scale}")]
    NegativeScale { scale: i32 },
    #[error("decimal out of range")]
    DecimalOutOfRange,
    #[error("missing currency")]
    MissingCurrency,
    #[error("tags are not a JSON object: {message}")]
    TagsNotJson { message: String },
    /// A Parquet map key that is not a string (as the Parquet library prints it).
    #[error("tag key {key} is not text")]
    TagKeyNotText { key: String },
    /// A Parquet value of a type no column uses (as the Parquet library prints it).
    #[error("unsupported value {value}")]
    Unsupported { value: String },
    /// A value of the wrong type for its column: `expected a number, found text`.
    #[error("expected {expected}, found {found}")]
    WrongType { expected: &'static str, found: &'static str },
    /// CUR's unused savings plan commitment (total minus used) leaves the decimal range.
    #[error("unused commitment overflows")]
    CommitmentOverflow,
    /// A sum within the row (CUR's unused reservation fees) leaves the decimal range.
    #[error(transparent)]
    SumOverflow(money::Overflow),
    /// Adding the row to its day's `cost` (`billed cost`, `effective cost`, `list cost`) leaves the decimal
    /// range.
    #[error("{cost} sum overflows")]
    CostSumOverflow { cost: &'static str },
    /// A CSV row with another number of fields than the header.
    #[error("{found} fields where the header has {expected}")]
    FieldCount { found: u64, expected: u64 },
}

impl Serialize for ValueError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    fn check(err: BillingError, display: &str, kind: &str) {
        assert_eq!(err.to_string(), display);
        assert_eq!(err.as_kind(), kind, "{display}");
    }

    fn row(location: Location, column: Option<&str>, problem: ValueError) -> BillingError {
        BillingError::Row(RowError { uri: "a.csv".into(), location, column: column.map(str::to_string), problem })
    }

    #[test]
    fn display_and_kind() {
        let not_found =
            || SourceError::Io { path: None, kind: std::io::ErrorKind::NotFound, message: "no such file".into() };
        check(
            BillingError::InvalidSource { source_text: "s3://b".into(), reason: "no prefix".into() },
            "invalid billing source \"s3://b\": no prefix",
            "invalid_source",
        );
        check(BillingError::NoMatch { source_text: "x/*.csv".into() }, "x/*.csv: matched no billing file", "no_match");
        check(
            BillingError::List {
                source_text: "exports".into(),
                error: SourceError::Io {
                    path: Some("exports/a".into()),
                    kind: std::io::ErrorKind::PermissionDenied,
                    message: "permission denied".into(),
                },
            },
            "exports: cannot list: exports/a: permission denied",
            "list",
        );
        check(
            BillingError::Read { uri: "a.csv".into(), error: not_found() },
            "a.csv: cannot read: no such file",
            "read",
        );
        check(
            BillingError::Decode { uri: "a.parquet".into(), message: "invalid footer".into() },
            "a.parquet: cannot read: invalid footer",
            "read",
        );
        check(
            BillingError::UnknownSchema { uri: "a.csv".into(), reason: SchemaError::Empty },
            "a.csv: not a FOCUS 1.0 or CUR 2.0 file: the file is empty",
            "unknown_schema",
        );
        check(
            BillingError::UnknownSchema {
                uri: "a.csv".into(),
                reason: SchemaError::MissingColumns { schema: Schema::Cur, columns: vec!["a", "b"] },
            },
            "a.csv: not a FOCUS 1.0 or CUR 2.0 file: CUR 2.0 file without column(s) a, b",
            "unknown_schema",
        );
        check(
            row(Location::Line(5), Some("ListCost"), ValueError::InvalidAmount { text: "oops".into() }),
            "a.csv: line 5, column ListCost: invalid amount \"oops\"",
            "malformed_row",
        );
        check(
            row(Location::Row { row_group: 1, row: 7 }, None, ValueError::CostSumOverflow { cost: "billed cost" }),
            "a.csv: row group 1, row 7: billed cost sum overflows",
            "malformed_row",
        );
    }

    #[test]
    fn value_errors_read_as_before() {
        let cases: [(ValueError, &str); 8] = [
            (ValueError::InvalidUtf8, "invalid UTF-8"),
            (ValueError::InvalidTimestamp { text: "2024-13-01".into() }, "invalid timestamp \"2024-13-01\""),
            (ValueError::DateOutOfRange { days: i32::MAX }, "date 2147483647 (days since 1970-01-01) out of range"),
            (
                ValueError::AmountOutOfRange(money::OutOfRange { amount: Decimal::from(2_000_000_000_000_000i64) }),
                "amount 2000000000000000 is outside the accepted range of ±1000000000000000",
            ),
            (ValueError::NotANumber { value: f64::NAN.to_string() }, "amount NaN is not a number"),
            (ValueError::WrongType { expected: "a number", found: "text" }, "expected a number, found text"),
            (ValueError::FieldCount { found: 11, expected: 13 }, "11 fields where the header has 13"),
            (ValueError::TagsNotJson { message: "EOF".into() }, "tags are not a JSON object: EOF"),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
        // Serialized as its text, where the message used to be.
        let e = RowError {
            uri: "a.csv".into(),
            location: Location::Line(2),
            column: None,
            problem: ValueError::MissingAmount,
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["message"], "missing amount");
    }
}
