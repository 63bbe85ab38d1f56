//! Where billing files come from: local files, directories and globs, or an S3 prefix; listing them with
//! their fingerprints, and streaming an S3 object into a reader.

use std::fmt;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::{read_csv, BillingError, FileCosts, FileFormat, FileRef, ReadOptions};
use crate::aws::{client, AccountConfig, AwsContext};
use crate::source::s3::{get_object, list_objects, stream_to_blocking, ObjectReader};
use crate::source::{local, parse_location, Location, LocationError, S3Uri, SourceError};

/// Where to find billing files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillingSource {
    /// A file, or a directory: every `.csv`, `.csv.gz` and `.parquet` file below it.
    Path(PathBuf),
    /// A glob pattern (`exports/**/*.csv.gz`); matches that are not billing files are ignored.
    Glob(String),
    /// Every billing file whose key starts with `prefix` (`s3://bucket/prefix/`).
    S3 { bucket: String, prefix: String },
}

impl BillingSource {
    /// `s3://bucket/prefix/` (`s3://bucket/` for the whole bucket), a glob when the text has `*`, `?` or `[`, else a
    /// path.
    pub fn parse(text: &str) -> Result<BillingSource, BillingError> {
        let invalid =
            |reason: &str| BillingError::InvalidSource { source_text: text.to_string(), reason: reason.into() };
        let s = text.trim();
        if s.contains("://") && !s.starts_with("s3://") {
            return Err(invalid("only local paths and s3:// URLs are supported"));
        }
        let location = parse_location(s).map_err(|e| match e {
            // `s3://bucket/` for a whole bucket: written on purpose, never by leaving out the prefix.
            LocationError::NoKey => invalid("expected s3://bucket/prefix/ (s3://bucket/ for the whole bucket)"),
            LocationError::NoBucket => invalid("no bucket name after s3://"),
            LocationError::BadGlob(e) => invalid(&format!("bad glob pattern: {e}")),
            LocationError::Empty => invalid(&e.to_string()),
        })?;
        match location {
            Location::S3(S3Uri { bucket, key }) => Ok(BillingSource::S3 { bucket, prefix: key }),
            Location::Glob(pattern) => Ok(BillingSource::Glob(pattern)),
            Location::Path(path) => Ok(BillingSource::Path(path)),
        }
    }
}

impl fmt::Display for BillingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BillingSource::Path(p) => write!(f, "{}", p.display()),
            BillingSource::Glob(g) => f.write_str(g),
            BillingSource::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// The billing files of a source, sorted by URI. A source that matches no billing file is an error
/// ([`BillingError::NoMatch`]): a typo must not look like an empty month.
pub async fn list_files(
    ctx: &AwsContext,
    account: &AccountConfig,
    region: &str,
    source: &BillingSource,
) -> Result<Vec<FileRef>, BillingError> {
    let shown = source.to_string();
    let mut files = match source {
        BillingSource::Path(_) | BillingSource::Glob(_) => {
            let source = source.clone();
            tokio::task::spawn_blocking(move || list_local(&source)).await.map_err(|e| BillingError::List {
                source_text: shown.clone(),
                error: SourceError::task("listing", &e),
            })??
        }
        BillingSource::S3 { bucket, prefix } => {
            let s3 = client!(aws_sdk_s3, ctx, account, region);
            list_s3(&s3, bucket, prefix)
                .await
                .map_err(|error| BillingError::List { source_text: shown.clone(), error })?
        }
    };
    if files.is_empty() {
        return Err(BillingError::NoMatch { source_text: shown });
    }
    files.sort_by(|a, b| a.uri.cmp(&b.uri));
    Ok(files)
}

fn local_ref(path: &Path, format: FileFormat) -> io::Result<FileRef> {
    let abs = std::fs::canonicalize(path)?;
    let meta = std::fs::metadata(&abs)?;
    let mtime_ns = meta.modified()?.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    Ok(FileRef {
        uri: abs.to_string_lossy().into_owned(),
        size: meta.len(),
        fingerprint: format!("size:{},mtime:{mtime_ns}", meta.len()),
        format,
    })
}

fn format_of(path: &Path) -> Option<FileFormat> {
    FileFormat::from_name(&path.file_name()?.to_string_lossy())
}

fn is_billing_file(name: &str) -> bool {
    FileFormat::from_name(name).is_some()
}

fn list_local(source: &BillingSource) -> Result<Vec<FileRef>, BillingError> {
    let shown = source.to_string();
    let list_err = |path: &Path, e: io::Error| BillingError::List {
        source_text: shown.clone(),
        error: SourceError::io_at(path, &e),
    };
    let found = match source {
        BillingSource::Path(path) => {
            let meta = std::fs::metadata(path).map_err(|e| list_err(path, e))?;
            if meta.is_dir() {
                local::walk_files(path, &is_billing_file).map_err(|e| list_err(path, e))?
            } else if format_of(path).is_some() {
                vec![path.clone()]
            } else {
                return Err(BillingError::InvalidSource {
                    source_text: shown.clone(),
                    reason: "not a .csv, .csv.gz or .parquet file".into(),
                });
            }
        }
        BillingSource::Glob(pattern) => {
            let matches = local::expand_glob(pattern).map_err(|e| BillingError::InvalidSource {
                source_text: shown.clone(),
                reason: format!("bad glob pattern: {e}"),
            })?;
            if let Some(e) = matches.errors.first() {
                return Err(BillingError::List {
                    source_text: shown.clone(),
                    error: SourceError::io_at(e.path(), e.error()),
                });
            }
            matches.files.into_iter().filter(|p| format_of(p).is_some() && p.is_file()).collect()
        }
        BillingSource::S3 { .. } => unreachable!("S3 sources are listed with the SDK"),
    };
    let mut out = Vec::with_capacity(found.len());
    for path in found {
        let Some(format) = format_of(&path) else { continue };
        out.push(local_ref(&path, format).map_err(|e| list_err(&path, e))?);
    }
    Ok(out)
}

/// Every billing file under a prefix, all pages.
async fn list_s3(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Result<Vec<FileRef>, SourceError> {
    let objects = list_objects(s3, bucket, prefix, &is_billing_file).await?;
    Ok(objects
        .into_iter()
        .filter_map(|obj| {
            let format = FileFormat::from_name(&obj.key)?;
            let fingerprint = match obj.etag {
                Some(etag) => format!("etag:{etag}"),
                None => format!("size:{},mtime:{}", obj.size, obj.last_modified_ns.unwrap_or(0)),
            };
            let uri = S3Uri { bucket: bucket.to_string(), key: obj.key }.to_string();
            Some(FileRef { uri, size: obj.size, fingerprint, format })
        })
        .collect())
}

/// Reads one S3 object: CSV streamed straight into the parser, Parquet through a temporary file. The
/// object must still have the ETag it was listed with; if it changed meanwhile, the read fails and the next
/// run picks up the new version.
pub(super) async fn read_s3(
    ctx: &AwsContext,
    account: &AccountConfig,
    region: &str,
    file: &FileRef,
    opts: &ReadOptions,
) -> Result<FileCosts, BillingError> {
    let read_err = |error: SourceError| BillingError::Read { uri: file.uri.clone(), error };
    let Some(Ok(location)) = S3Uri::parse(&file.uri) else {
        return Err(read_err(SourceError::NotS3Uri));
    };
    let s3 = client!(aws_sdk_s3, ctx, account, region);
    let etag = file.fingerprint.strip_prefix("etag:");
    let body = get_object(&s3, &location.bucket, &location.key, etag).await.map_err(read_err)?;

    let (uri, format, opts) = (file.uri.clone(), file.format, *opts);
    let parse = move |reader: ObjectReader| match format {
        FileFormat::Csv => read_csv(reader, &uri, false, &opts),
        FileFormat::CsvGz => read_csv(reader, &uri, true, &opts),
        FileFormat::Parquet => {
            let io_err = |e: io::Error| BillingError::Read { uri: uri.clone(), error: SourceError::from_reader(e) };
            // An unnamed file in the temporary folder (created with O_TMPFILE or unlinked at once): no name to
            // guess or to plant a symlink at, and gone on every path, a panic or a kill included.
            let mut out = tempfile::tempfile().map_err(io_err)?;
            let max = opts.limits.max_decompressed_bytes;
            let copied = io::copy(&mut reader.take(max.saturating_add(1)), &mut out).map_err(io_err)?;
            if copied > max {
                let what = super::LimitBreach::Decompressed { max };
                return Err(BillingError::Limit { uri: uri.clone(), what });
            }
            out.flush().map_err(io_err)?;
            out.seek(io::SeekFrom::Start(0)).map_err(io_err)?;
            super::parquet::read_parquet(out, &uri, &opts)
        }
    };
    stream_to_blocking(body, parse).await.map_err(|e| read_err(SourceError::task("reader", &e)))?
}
