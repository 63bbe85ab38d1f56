//! Parquet billing files, read row group by row group through the record API with only the columns the
//! schema needs: memory is bounded by one row group's pages of those columns.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;

use ::parquet::basic::{LogicalType, TimeUnit};
use ::parquet::file::reader::{FileReader, SerializedFileReader};
use ::parquet::record::Field;
use ::parquet::schema::types::Type;
use chrono::{DateTime, NaiveDate};
use rust_decimal::Decimal;

use super::aggregate::Aggregator;
use super::schema::{parse_decimal, Cell, Mapping, RowSource};
use super::{BillingError, FileCosts, LimitBreach, Location, ReadOptions, RowError, ValueError, SKIPPED_EXAMPLES};

/// How an INT64 column holds a timestamp, when it does (nanosecond timestamps reach the record API as plain
/// integers).
#[derive(Debug, Clone, Copy)]
enum Int64Time {
    None,
    Millis,
    Micros,
    Nanos,
}

struct ParquetRow<'a> {
    fields: &'a [(String, Field)],
    int64_time: &'a [Int64Time],
}

fn day_from_millis(ms: i64) -> Result<NaiveDate, ValueError> {
    DateTime::from_timestamp_millis(ms).map(|t| t.date_naive()).ok_or(ValueError::TimestampOutOfRange { ms })
}

/// A Parquet DATE: days since 1970-01-01 (day 719,163 of the common era, as chrono counts).
fn day_from_epoch_days(d: i32) -> Result<NaiveDate, ValueError> {
    d.checked_add(719_163).and_then(NaiveDate::from_num_days_from_ce_opt).ok_or(ValueError::DateOutOfRange { days: d })
}

fn parquet_decimal(d: &::parquet::data_type::Decimal) -> Result<Decimal, ValueError> {
    let bytes = d.data();
    if bytes.is_empty() || bytes.len() > 16 {
        return Err(ValueError::DecimalWidth { bytes: bytes.len() });
    }
    // Big-endian two's complement, sign-extended to 128 bits.
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut buf = [fill; 16];
    buf[16 - bytes.len()..].copy_from_slice(bytes);
    let unscaled = i128::from_be_bytes(buf);
    let scale = u32::try_from(d.scale()).map_err(|_| ValueError::NegativeScale { scale: d.scale() })?;
    Decimal::try_from_i128_with_scale(unscaled, scale).map_err(|_| ValueError::DecimalOutOfRange)
}

impl RowSource for ParquetRow<'_> {
    fn cell(&self, col: usize) -> Result<Cell<'_>, ValueError> {
        let field = &self.fields[col].1;
        Ok(match field {
            Field::Null => Cell::Null,
            Field::Str(s) => {
                if s.is_empty() || s == "NULL" {
                    Cell::Null
                } else {
                    Cell::Text(s)
                }
            }
            Field::Bytes(b) => match std::str::from_utf8(b.data()) {
                Ok("") | Ok("NULL") => Cell::Null,
                Ok(s) => Cell::Text(s),
                Err(_) => return Err(ValueError::InvalidUtf8),
            },
            Field::Decimal(d) => Cell::Decimal(parquet_decimal(d)?),
            // Written as the shortest text that reads back as the same double: the amount as exported.
            Field::Double(v) => Cell::Decimal(float_decimal(*v)?),
            Field::Float(v) => Cell::Decimal(float_decimal(f64::from(*v))?),
            Field::Byte(v) => Cell::Decimal(Decimal::from(*v)),
            Field::Short(v) => Cell::Decimal(Decimal::from(*v)),
            Field::Int(v) => Cell::Decimal(Decimal::from(*v)),
            Field::UByte(v) => Cell::Decimal(Decimal::from(*v)),
            Field::UShort(v) => Cell::Decimal(Decimal::from(*v)),
            Field::UInt(v) => Cell::Decimal(Decimal::from(*v)),
            Field::ULong(v) => Cell::Decimal(Decimal::from(*v)),
            Field::Long(v) => match self.int64_time[col] {
                Int64Time::None => Cell::Decimal(Decimal::from(*v)),
                Int64Time::Millis => Cell::Day(day_from_millis(*v)?),
                Int64Time::Micros => Cell::Day(day_from_millis(v.div_euclid(1_000))?),
                Int64Time::Nanos => Cell::Day(day_from_millis(v.div_euclid(1_000_000))?),
            },
            Field::TimestampMillis(v) => Cell::Day(day_from_millis(*v)?),
            Field::TimestampMicros(v) => Cell::Day(day_from_millis(v.div_euclid(1_000))?),
            Field::Date(d) => Cell::Day(day_from_epoch_days(*d)?),
            Field::MapInternal(map) => {
                let mut tags = BTreeMap::new();
                for (k, v) in map.entries() {
                    let key = match k {
                        Field::Str(s) => s.clone(),
                        other => return Err(ValueError::TagKeyNotText { key: other.to_string() }),
                    };
                    let value = match v {
                        Field::Str(s) => s.clone(),
                        Field::Null => String::new(),
                        other => other.to_string(),
                    };
                    tags.insert(key, value);
                }
                Cell::Tags(tags)
            }
            other => return Err(ValueError::Unsupported { value: other.to_string() }),
        })
    }
}

fn float_decimal(v: f64) -> Result<Decimal, ValueError> {
    if !v.is_finite() {
        return Err(ValueError::NotANumber { value: v.to_string() });
    }
    parse_decimal(&v.to_string())
}

fn int64_time(t: &Type) -> Int64Time {
    if !t.is_primitive() {
        return Int64Time::None;
    }
    match t.get_basic_info().logical_type_ref() {
        Some(LogicalType::Timestamp(ts)) => match ts.unit {
            TimeUnit::MILLIS => Int64Time::Millis,
            TimeUnit::MICROS => Int64Time::Micros,
            TimeUnit::NANOS => Int64Time::Nanos,
        },
        _ => Int64Time::None,
    }
}

/// Reads a Parquet billing file. Blocking: call it from a blocking thread.
///
/// The parquet crate panics on some malformed files instead of returning an error (fuzzing found a page whose
/// run-length header is too long: `Num of bytes exceed MAX_VLQ_BYTE_LEN`). Such a panic is this file's decode
/// error: the file fails, the reader's thread and the daemon go on.
pub(crate) fn read_parquet(file: File, uri: &str, opts: &ReadOptions) -> Result<FileCosts, BillingError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_parquet_file(file, uri, opts))) {
        Ok(result) => result,
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            Err(BillingError::Decode { uri: uri.to_string(), message: format!("the Parquet decoder failed: {text}") })
        }
    }
}

fn read_parquet_file(file: File, uri: &str, opts: &ReadOptions) -> Result<FileCosts, BillingError> {
    let read_err =
        |e: ::parquet::errors::ParquetError| BillingError::Decode { uri: uri.to_string(), message: e.to_string() };
    let reader = SerializedFileReader::new(file).map_err(read_err)?;
    let root = reader.metadata().file_metadata().schema();
    let all: Vec<&str> = root.get_fields().iter().map(|f| f.name()).collect();
    let detected =
        Mapping::detect(&all).map_err(|reason| BillingError::UnknownSchema { uri: uri.to_string(), reason })?;

    // Read only the columns the mapping uses (in file order), and map them again by name.
    let fields: Vec<Arc<Type>> = detected.used_columns().into_iter().map(|i| root.get_fields()[i].clone()).collect();
    let names: Vec<String> = fields.iter().map(|f| f.name().to_string()).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mapping =
        Mapping::detect(&name_refs).map_err(|reason| BillingError::UnknownSchema { uri: uri.to_string(), reason })?;
    let int64_times: Vec<Int64Time> = fields.iter().map(|f| int64_time(f)).collect();
    let projection = Type::group_type_builder(root.name()).with_fields(fields).build().map_err(read_err)?;

    let mut agg = Aggregator::default();
    let (mut rows_read, mut rows_skipped, mut skipped_examples) = (0u64, 0u64, Vec::new());
    for row_group in 0..reader.num_row_groups() {
        let group = reader.get_row_group(row_group).map_err(read_err)?;
        let rows = group.get_row_iter(Some(projection.clone())).map_err(read_err)?;
        for (row, record) in rows.enumerate() {
            // A page that does not decode leaves no way to go on: the whole file fails.
            let record = record.map_err(read_err)?;
            rows_read += 1;
            let columns = record.into_columns();
            let source = ParquetRow { fields: &columns, int64_time: &int64_times };
            let result = match mapping.extract(&source, &mut agg.tag_sets, &mut agg.days) {
                Ok(values) => agg.add(values).map_err(|problem| (None, problem)),
                Err((col, problem)) => Err((Some(col), problem)),
            };
            if agg.keys() > opts.limits.max_keys {
                let what = LimitBreach::Keys { max: opts.limits.max_keys };
                return Err(BillingError::Limit { uri: uri.to_string(), what });
            }
            if let Err((col, problem)) = result {
                let err = RowError {
                    uri: uri.to_string(),
                    location: Location::Row { row_group, row: row as u64 },
                    column: col.map(|c| names[c].clone()),
                    problem,
                };
                if !opts.skip_malformed {
                    return Err(BillingError::Row(err));
                }
                rows_skipped += 1;
                if skipped_examples.len() < SKIPPED_EXAMPLES {
                    skipped_examples.push(err);
                }
            }
        }
    }
    Ok(FileCosts { schema: mapping.schema, rows_read, rows_skipped, skipped_examples, rolled_up: agg.finish() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_out_of_range_are_errors() {
        let check = |days: i32, expected: Result<&str, String>| {
            let got = day_from_epoch_days(days).map(|d| d.to_string()).map_err(|e| e.to_string());
            assert_eq!(got, expected.map(str::to_string), "{days}");
        };
        check(0, Ok("1970-01-01"));
        check(20_000, Ok("2024-10-04"));
        check(-719_162, Ok("0001-01-01"));
        check(i32::MAX, Err("date 2147483647 (days since 1970-01-01) out of range".into()));
        check(i32::MAX - 719_163, Err("date 2146764484 (days since 1970-01-01) out of range".into()));
        check(i32::MIN, Err("date -2147483648 (days since 1970-01-01) out of range".into()));

        // Through a row: the cell is malformed, not a panic.
        let fields = [("ChargePeriodStart".to_string(), Field::Date(i32::MAX))];
        let row = ParquetRow { fields: &fields, int64_time: &[Int64Time::None] };
        let err = row.cell(0).unwrap_err();
        assert_eq!(err, ValueError::DateOutOfRange { days: i32::MAX });
        assert_eq!(err.to_string(), "date 2147483647 (days since 1970-01-01) out of range");
    }
}
