//! Where billing files come from: local files, directories and globs, or an S3 prefix; listing them with
//! their fingerprints, and streaming an S3 object into a reader.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use tokio::sync::mpsc;

use super::{read_csv, BillingError, FileCosts, FileFormat, FileRef, ReadOptions};
use crate::aws::{client, error_chain, AccountConfig, AwsContext};

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
        let invalid = |reason: &str| BillingError::InvalidSource { source_text: text.to_string(), reason: reason.into() };
        let s = text.trim();
        if s.is_empty() {
            return Err(invalid("empty"));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            // `s3://bucket/` for a whole bucket: written on purpose, never by leaving out the prefix.
            let Some((bucket, prefix)) = rest.split_once('/') else {
                return Err(invalid("expected s3://bucket/prefix/ (s3://bucket/ for the whole bucket)"));
            };
            if bucket.is_empty() {
                return Err(invalid("no bucket name after s3://"));
            }
            return Ok(BillingSource::S3 { bucket: bucket.to_string(), prefix: prefix.to_string() });
        }
        if s.contains("://") {
            return Err(invalid("only local paths and s3:// URLs are supported"));
        }
        if s.contains(['*', '?', '[']) {
            glob::Pattern::new(s).map_err(|e| invalid(&format!("bad glob pattern: {e}")))?;
            return Ok(BillingSource::Glob(s.to_string()));
        }
        Ok(BillingSource::Path(PathBuf::from(s)))
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
            tokio::task::spawn_blocking(move || list_local(&source))
                .await
                .map_err(|e| BillingError::List { source_text: shown.clone(), message: e.to_string() })??
        }
        BillingSource::S3 { bucket, prefix } => {
            let s3 = client!(aws_sdk_s3, ctx, account, region);
            list_s3(&s3, bucket, prefix)
                .await
                .map_err(|message| BillingError::List { source_text: shown.clone(), message })?
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

fn list_local(source: &BillingSource) -> Result<Vec<FileRef>, BillingError> {
    let shown = source.to_string();
    let list_err = |path: &Path, e: io::Error| BillingError::List {
        source_text: shown.clone(),
        message: format!("{}: {e}", path.display()),
    };
    let mut out = Vec::new();
    match source {
        BillingSource::Path(path) => {
            let meta = std::fs::metadata(path).map_err(|e| list_err(path, e))?;
            if meta.is_dir() {
                walk(path, &mut out).map_err(|e| list_err(path, e))?;
            } else {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let format = FileFormat::from_name(&name).ok_or_else(|| BillingError::InvalidSource {
                    source_text: shown.clone(),
                    reason: "not a .csv, .csv.gz or .parquet file".into(),
                })?;
                out.push(local_ref(path, format).map_err(|e| list_err(path, e))?);
            }
        }
        BillingSource::Glob(pattern) => {
            let paths = glob::glob(pattern).map_err(|e| BillingError::InvalidSource {
                source_text: shown.clone(),
                reason: format!("bad glob pattern: {e}"),
            })?;
            for entry in paths {
                let path = entry.map_err(|e| list_err(e.path(), io::Error::other(e.error().to_string())))?;
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if let Some(format) = FileFormat::from_name(&name) {
                    if path.is_file() {
                        out.push(local_ref(&path, format).map_err(|e| list_err(&path, e))?);
                    }
                }
            }
        }
        BillingSource::S3 { .. } => unreachable!("S3 sources are listed with the SDK"),
    }
    Ok(out)
}

/// Every billing file below a directory.
fn walk(dir: &Path, out: &mut Vec<FileRef>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if let Some(format) = FileFormat::from_name(&entry.file_name().to_string_lossy()) {
            out.push(local_ref(&path, format)?);
        }
    }
    Ok(())
}

/// Every billing file under a prefix, all pages.
async fn list_s3(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Result<Vec<FileRef>, String> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        for obj in page.contents() {
            let Some(key) = obj.key() else { continue };
            let Some(format) = FileFormat::from_name(key) else { continue };
            let etag = obj.e_tag().unwrap_or_default().trim_matches('"');
            let size = obj.size().unwrap_or(0).max(0) as u64;
            let fingerprint = if etag.is_empty() {
                let modified = obj.last_modified().map(|t| t.as_nanos()).unwrap_or(0);
                format!("size:{size},mtime:{modified}")
            } else {
                format!("etag:{etag}")
            };
            out.push(FileRef { uri: format!("s3://{bucket}/{key}"), size, fingerprint, format });
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) && !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

/// Chunks of an S3 body as they arrive, read on a blocking thread. The channel holds a few chunks, so the
/// download waits for the parser and memory stays flat.
struct ChannelReader<B> {
    rx: mpsc::Receiver<io::Result<B>>,
    current: Option<B>,
    pos: usize,
}

impl<B: AsRef<[u8]>> Read for ChannelReader<B> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.current {
                let rest = &chunk.as_ref()[self.pos..];
                if !rest.is_empty() {
                    let n = rest.len().min(out.len());
                    out[..n].copy_from_slice(&rest[..n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.current = Some(chunk);
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
    }
}

/// A temporary file removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new() -> TempFile {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        TempFile(std::env::temp_dir().join(format!("cloudwarden-billing-{}-{n}.parquet", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn s3_location(uri: &str) -> Option<(&str, &str)> {
    uri.strip_prefix("s3://")?.split_once('/')
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
    let read_err = |message: String| BillingError::Read { uri: file.uri.clone(), message };
    let (bucket, key) = s3_location(&file.uri).ok_or_else(|| read_err("not an s3://bucket/key URI".into()))?;
    let s3 = client!(aws_sdk_s3, ctx, account, region);
    let mut request = s3.get_object().bucket(bucket).key(key);
    if let Some(etag) = file.fingerprint.strip_prefix("etag:") {
        request = request.if_match(format!("\"{etag}\""));
    }
    let out = request.send().await.map_err(|e| read_err(error_chain(&e)))?;
    let mut body = out.body;

    let (tx, rx) = mpsc::channel(8);
    let reader = ChannelReader { rx, current: None, pos: 0 };
    let (uri, format, opts) = (file.uri.clone(), file.format, *opts);
    let parse = tokio::task::spawn_blocking(move || match format {
        FileFormat::Csv => read_csv(reader, &uri, false, &opts),
        FileFormat::CsvGz => read_csv(reader, &uri, true, &opts),
        FileFormat::Parquet => {
            let io_err = |e: io::Error| BillingError::Read { uri: uri.clone(), message: e.to_string() };
            let temp = TempFile::new();
            let mut out = std::fs::File::create(&temp.0).map_err(io_err)?;
            let mut reader = reader;
            io::copy(&mut reader, &mut out).map_err(io_err)?;
            out.flush().map_err(io_err)?;
            drop(out);
            let file = std::fs::File::open(&temp.0).map_err(io_err)?;
            super::parquet::read_parquet(file, &uri, &opts)
        }
    });
    loop {
        match body.try_next().await {
            Ok(Some(chunk)) => {
                if tx.send(Ok(chunk)).await.is_err() {
                    // The parser stopped early (a malformed row): its error is the one to report.
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tx.send(Err(io::Error::other(format!("download failed: {}", error_chain(&e))))).await;
                break;
            }
        }
    }
    drop(tx);
    parse.await.map_err(|e| read_err(format!("reader task failed: {e}")))?
}
