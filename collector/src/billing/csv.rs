//! CSV billing files, plain or gzip, read record by record from any byte stream.

use std::io::{BufReader, Read};

use ::csv::{ByteRecord, ErrorKind, ReaderBuilder};
use flate2::read::MultiGzDecoder;

use super::aggregate::Aggregator;
use super::schema::{Cell, Mapping, RowSource};
use super::{BillingError, FileCosts, Location, ReadOptions, RowError, SchemaError, ValueError, SKIPPED_EXAMPLES};
use crate::source::SourceError;

/// Reads a CSV billing file (gzip-compressed when `gzip`) from a byte stream, in one pass, keeping only the
/// daily roll-up. `uri` names the file in errors. Blocking: call it from a blocking thread.
pub fn read_csv<R: Read>(input: R, uri: &str, gzip: bool, opts: &ReadOptions) -> Result<FileCosts, BillingError> {
    if gzip {
        read(MultiGzDecoder::new(BufReader::with_capacity(64 * 1024, input)), uri, opts)
    } else {
        read(input, uri, opts)
    }
}

struct CsvRow<'a>(&'a ByteRecord);

impl RowSource for CsvRow<'_> {
    fn cell(&self, col: usize) -> Result<Cell<'_>, ValueError> {
        let bytes = self.0.get(col).unwrap_or_default();
        let text = std::str::from_utf8(bytes).map_err(|_| ValueError::InvalidUtf8)?;
        // FOCUS writes NULL as the bare word; CUR leaves the value empty.
        Ok(if text.is_empty() || text == "NULL" { Cell::Null } else { Cell::Text(text) })
    }
}

/// A CSV error that stops the file: the input failing (a local read, an S3 download, a broken gzip stream) or
/// the CSV itself.
fn read_error(uri: &str, e: ::csv::Error) -> BillingError {
    let (uri, message) = (uri.to_string(), e.to_string());
    match e.into_kind() {
        ErrorKind::Io(io) => BillingError::Read { uri, error: SourceError::from_reader(io) },
        _ => BillingError::Decode { uri, message },
    }
}

fn read<R: Read>(input: R, uri: &str, opts: &ReadOptions) -> Result<FileCosts, BillingError> {
    let read_err = |e: ::csv::Error| read_error(uri, e);
    let mut reader = ReaderBuilder::new().has_headers(true).buffer_capacity(256 * 1024).from_reader(input);
    let header = reader.byte_headers().map_err(read_err)?.clone();
    if header.is_empty() {
        return Err(BillingError::UnknownSchema { uri: uri.to_string(), reason: SchemaError::Empty });
    }
    let names: Vec<String> =
        header.iter().map(|h| String::from_utf8_lossy(h).trim_start_matches('\u{feff}').to_string()).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mapping =
        Mapping::detect(&name_refs).map_err(|reason| BillingError::UnknownSchema { uri: uri.to_string(), reason })?;

    let mut agg = Aggregator::default();
    let (mut rows_read, mut rows_skipped, mut skipped_examples) = (0u64, 0u64, Vec::new());
    let mut malformed = |line: u64, column: Option<usize>, problem: ValueError| -> Result<(), BillingError> {
        let err = RowError {
            uri: uri.to_string(),
            location: Location::Line(line),
            column: column.and_then(|c| names.get(c).cloned()),
            problem,
        };
        if !opts.skip_malformed {
            return Err(BillingError::Row(err));
        }
        rows_skipped += 1;
        if skipped_examples.len() < SKIPPED_EXAMPLES {
            skipped_examples.push(err);
        }
        Ok(())
    };
    let mut record = ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                rows_read += 1;
                let line = record.position().map_or(0, |p| p.line());
                let row = CsvRow(&record);
                match mapping.extract(&row, &mut agg.tag_sets, &mut agg.days) {
                    Ok(values) => {
                        if let Err(problem) = agg.add(values) {
                            malformed(line, None, problem)?;
                        }
                    }
                    Err((col, problem)) => malformed(line, Some(col), problem)?,
                }
            }
            Err(e) => match e.kind() {
                // A row with the wrong number of fields: the reader is past it and can go on.
                ErrorKind::UnequalLengths { pos, expected_len, len } => {
                    rows_read += 1;
                    let line = pos.as_ref().map_or(0, |p| p.line());
                    malformed(line, None, ValueError::FieldCount { found: *len, expected: *expected_len })?;
                }
                _ => return Err(read_err(e)),
            },
        }
    }
    Ok(FileCosts { schema: mapping.schema, rows_read, rows_skipped, skipped_examples, rolled_up: agg.finish() })
}
