//! Where collectors read their files from, shared by the billing and Terraform collectors: parsing a
//! configured location ([`parse_location`]), expanding glob patterns and walking directories ([`local`]),
//! listing an S3 prefix and reading S3 objects ([`s3`]).
//!
//! Each collector wraps these in its own public source type and words its own error messages; nothing here
//! knows what a billing file or a Terraform state is.

pub(crate) mod local;
pub(crate) mod s3;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;

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
