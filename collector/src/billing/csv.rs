//! CSV billing files, plain or gzip, read record by record from any byte stream.

use std::io::{BufReader, Read};

use ::csv::{ByteRecord, ErrorKind, ReaderBuilder};
use flate2::read::MultiGzDecoder;

use super::aggregate::Aggregator;
use super::schema::{Cell, Mapping, RowSource};
use super::{BillingError, FileCosts, Location, ReadOptions, RowError, SKIPPED_EXAMPLES};

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
    fn cell(&self, col: usize) -> Result<Cell<'_>, String> {
        let bytes = self.0.get(col).unwrap_or_default();
        let text = std::str::from_utf8(bytes).map_err(|_| "invalid UTF-8".to_string())?;
        // FOCUS writes NULL as the bare word; CUR leaves the value empty.
        Ok(if text.is_empty() || text == "NULL" { Cell::Null } else { Cell::Text(text) })
    }
}

fn read<R: Read>(input: R, uri: &str, opts: &ReadOptions) -> Result<FileCosts, BillingError> {
    let read_err = |e: ::csv::Error| BillingError::Read { uri: uri.to_string(), message: e.to_string() };
    let mut reader = ReaderBuilder::new().has_headers(true).buffer_capacity(256 * 1024).from_reader(input);
    let header = reader.byte_headers().map_err(read_err)?.clone();
    if header.is_empty() {
        return Err(BillingError::UnknownSchema { uri: uri.to_string(), reason: "the file is empty".into() });
    }
    let names: Vec<String> =
        header.iter().map(|h| String::from_utf8_lossy(h).trim_start_matches('\u{feff}').to_string()).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mapping =
        Mapping::detect(&name_refs).map_err(|reason| BillingError::UnknownSchema { uri: uri.to_string(), reason })?;

    let mut agg = Aggregator::default();
    let (mut rows_read, mut rows_skipped, mut skipped_examples) = (0u64, 0u64, Vec::new());
    let mut malformed = |line: u64, column: Option<usize>, message: String| -> Result<(), BillingError> {
        let err = RowError {
            uri: uri.to_string(),
            location: Location::Line(line),
            column: column.and_then(|c| names.get(c).cloned()),
            message,
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
                        if let Err(message) = agg.add(values) {
                            malformed(line, None, message.to_string())?;
                        }
                    }
                    Err((col, message)) => malformed(line, Some(col), message)?,
                }
            }
            Err(e) => match e.kind() {
                // A row with the wrong number of fields: the reader is past it and can go on.
                ErrorKind::UnequalLengths { pos, expected_len, len } => {
                    rows_read += 1;
                    let line = pos.as_ref().map_or(0, |p| p.line());
                    malformed(line, None, format!("{len} fields where the header has {expected_len}"))?;
                }
                _ => return Err(read_err(e)),
            },
        }
    }
    Ok(FileCosts { schema: mapping.schema, rows_read, rows_skipped, skipped_examples, rolled_up: agg.finish() })
}
