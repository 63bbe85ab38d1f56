//! Where collectors read their files from, shared by the billing and Terraform collectors: parsing a
//! configured location ([`parse_location`]), expanding glob patterns and walking directories ([`local`]),
//! listing an S3 prefix and reading S3 objects ([`s3`]).
//!
//! Each collector wraps these in its own public source type and its own error, which holds a [`SourceError`]
//! where listing or reading failed; nothing here knows what a billing file or a Terraform state is.

pub(crate) mod local;
pub(crate) mod s3;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use tokio::task::JoinError;

use crate::aws::AwsError;

/// Why a file or object could not be listed or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// An S3 call failed (`ListObjectsV2`, `GetObject`), or an object's body broke off while downloading.
    #[error("{0}")]
    S3(AwsError),
    /// A local file or directory could not be read. `path` is set when it is not the one the caller names.
    #[error("{}{message}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Io { path: Option<PathBuf>, kind: io::ErrorKind, message: String },
    /// The blocking task listing or reading the files failed (it panicked).
    #[error("{task} task failed: {message}")]
    Task { task: &'static str, message: String },
    /// A file that should be an S3 object has no `s3://bucket/key` URI.
    #[error("not an s3://bucket/key URI")]
    NotS3Uri,
}

impl SourceError {
    /// The bounded kind of the error, for metric labels: `s3`, `io`, `task` or `not_s3_uri`.
    pub fn as_kind(&self) -> &'static str {
        match self {
            SourceError::S3(_) => "s3",
            SourceError::Io { .. } => "io",
            SourceError::Task { .. } => "task",
            SourceError::NotS3Uri => "not_s3_uri",
        }
    }

    /// A local read error about the path the caller names.
    pub(crate) fn io(e: &io::Error) -> SourceError {
        SourceError::Io { path: None, kind: e.kind(), message: e.to_string() }
    }

    /// A local read error about `path`, below what the caller names.
    pub(crate) fn io_at(path: &Path, e: &io::Error) -> SourceError {
        SourceError::Io { path: Some(path.to_path_buf()), kind: e.kind(), message: e.to_string() }
    }

    /// A read error from a reader: the download's own error when the reader was one over an S3 object
    /// ([`s3::ObjectReader`]), else a local one.
    pub(crate) fn from_reader(e: io::Error) -> SourceError {
        match e.get_ref().and_then(|inner| inner.downcast_ref::<SourceError>()) {
            Some(inner) => inner.clone(),
            None => SourceError::io(&e),
        }
    }

    /// A failed blocking task: `reader` or `listing`.
    pub(crate) fn task(task: &'static str, e: &JoinError) -> SourceError {
        SourceError::Task { task, message: e.to_string() }
    }
}

/// An S3 location: one object, or a prefix when `key` is empty or ends with `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct S3Uri {
    pub(crate) bucket: String,
    /// The object key or key prefix, without the `/` that follows the bucket name.
    pub(crate) key: String,
}

impl S3Uri {
    /// `s3://bucket/key` into its parts; `None` when the text does not start with `s3://`. The `/` after the
    /// bucket is required (`s3://bucket/` names the whole bucket), so that a whole bucket is never named by
    /// leaving the key out.
    pub(crate) fn parse(text: &str) -> Option<Result<S3Uri, LocationError>> {
        let rest = text.strip_prefix("s3://")?;
        let Some((bucket, key)) = rest.split_once('/') else {
            return Some(Err(LocationError::NoKey));
        };
        if bucket.is_empty() {
            return Some(Err(LocationError::NoBucket));
        }
        Some(Ok(S3Uri { bucket: bucket.to_string(), key: key.to_string() }))
    }
}

/// True for a key that names a prefix: empty, or ending with `/`.
pub(crate) fn is_prefix_key(key: &str) -> bool {
    key.is_empty() || key.ends_with('/')
}

impl fmt::Display for S3Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// A configured location, before a collector decides what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// `s3://bucket/key` or `s3://bucket/prefix/`.
    S3(S3Uri),
    /// A valid glob pattern: the text has `*`, `?` or `[`.
    Glob(String),
    /// Anything else: a file or directory path, taken as written.
    Path(PathBuf),
}

/// Why a configured location cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LocationError {
    #[error("empty")]
    Empty,
    #[error("no key after the bucket")]
    NoKey,
    #[error("no bucket name")]
    NoBucket,
    #[error("bad glob pattern: {}", .0.msg)]
    BadGlob(glob::PatternError),
}

/// `s3://bucket/key`, a glob pattern when the text has `*`, `?` or `[`, else a path. The text is taken as it
/// is (callers trim it if they want to); text that is only white space is [`LocationError::Empty`]. Other
/// URL schemes are not recognised here: `https://...` comes back as a path or a glob.
pub(crate) fn parse_location(text: &str) -> Result<Location, LocationError> {
    if text.trim().is_empty() {
        return Err(LocationError::Empty);
    }
    if let Some(s3) = S3Uri::parse(text) {
        return s3.map(Location::S3);
    }
    if text.contains(['*', '?', '[']) {
        glob::Pattern::new(text).map_err(LocationError::BadGlob)?;
        return Ok(Location::Glob(text.to_string()));
    }
    Ok(Location::Path(PathBuf::from(text)))
}
