//! CSV billing files, plain or gzip, read record by record from any byte stream.

use std::cell::Cell as Shared;
use std::io::{BufReader, Read};
use std::rc::Rc;

use ::csv::{ByteRecord, ErrorKind, ReaderBuilder};
use flate2::read::MultiGzDecoder;

use super::aggregate::Aggregator;
use super::schema::{Cell, Mapping, RowSource};
use super::{
    BillingError, FileCosts, LimitBreach, Location, ReadOptions, RowError, SchemaError, ValueError, SKIPPED_EXAMPLES,
};
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

/// The CSV reader's buffer: how far it may read ahead of the record it parses.
const BUFFER: u64 = 256 * 1024;

/// The bytes read through a [`Bounded`] reader and the parser's place, shared with the loop that drives it.
#[derive(Default)]
struct Counts {
    /// Bytes read (decompressed) so far.
    read: Shared<u64>,
    /// Where the record being parsed began, in bytes, and on which line.
    record_start: Shared<(u64, u64)>,
    /// The bound broken, when one was.
    breach: Shared<Option<LimitBreach>>,
}

/// A reader that stops with an error once the file is longer than `max_total` bytes, or once the record being
/// parsed has gone on for more than `max_record` bytes (give or take the parser's buffer).
struct Bounded<R> {
    inner: R,
    counts: Rc<Counts>,
    max_total: u64,
    max_record: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let c = &self.counts;
        let read = c.read.get().saturating_add(n as u64);
        c.read.set(read);
        let (start, line) = c.record_start.get();
        let breach = if read > self.max_total {
            Some(LimitBreach::Decompressed { max: self.max_total })
        } else if read.saturating_sub(start) > self.max_record.saturating_add(BUFFER) {
            Some(LimitBreach::Record { line, max: self.max_record })
        } else {
            None
        };
        if let Some(b) = breach {
            c.breach.set(Some(b));
            return Err(std::io::Error::other("a bound on the file's size was reached"));
        }
        Ok(n)
    }
}

fn read<R: Read>(input: R, uri: &str, opts: &ReadOptions) -> Result<FileCosts, BillingError> {
    let counts = Rc::new(Counts::default());
    counts.record_start.set((0, 1));
    let input = Bounded {
        inner: input,
        counts: counts.clone(),
        max_total: opts.limits.max_decompressed_bytes,
        max_record: opts.limits.max_record_bytes,
    };
    // A read that failed because a bound was reached is that bound's error, not a read error.
    let read_err = |e: ::csv::Error| match counts.breach.take() {
        Some(what) => BillingError::Limit { uri: uri.to_string(), what },
        None => read_error(uri, e),
    };
    let mut reader = ReaderBuilder::new().has_headers(true).buffer_capacity(BUFFER as usize).from_reader(input);
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
        let at = reader.position().clone();
        counts.record_start.set((at.byte(), at.line()));
        let result = reader.read_byte_record(&mut record);
        if reader.position().byte().saturating_sub(at.byte()) > opts.limits.max_record_bytes {
            let what = LimitBreach::Record { line: at.line(), max: opts.limits.max_record_bytes };
            return Err(BillingError::Limit { uri: uri.to_string(), what });
        }
        match result {
            Ok(false) => break,
            Ok(true) => {
                if agg.keys() > opts.limits.max_keys {
                    let what = LimitBreach::Keys { max: opts.limits.max_keys };
                    return Err(BillingError::Limit { uri: uri.to_string(), what });
                }
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
    if agg.keys() > opts.limits.max_keys {
        return Err(BillingError::Limit {
            uri: uri.to_string(),
            what: LimitBreach::Keys { max: opts.limits.max_keys },
        });
    }
    Ok(FileCosts { schema: mapping.schema, rows_read, rows_skipped, skipped_examples, rolled_up: agg.finish() })
}
