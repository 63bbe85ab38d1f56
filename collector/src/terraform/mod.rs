//! Terraform state (tfstate v4 JSON) from files, globs and S3 objects, for drift.
//!
//! [`load`] reads every [`StateSource`] it is given and never stops at the first failure: each state that
//! parses becomes a [`StateFile`], each one that does not becomes a [`SourceFailure`] naming its origin.
//! [`parse_state`] is the pure part: bytes in, the managed resources of one state out, one [`TfResource`] per
//! resource instance. Nothing of a resource's attributes is kept but its id, ARN, region, account and tags:
//! state files hold secrets, and none of them leave this module.
//!
//! States are merged by concatenation ([`LoadReport::merged`]): a resource that appears in two states (the
//! same ARN managed by two configurations, or one state kept both as a file and as an S3 object) is kept once
//! per state, each copy with its own origin, so the duplicate stays visible. Only the very same file or object
//! named by two sources is read once.

mod parse;
mod source;
#[cfg(test)]
mod tests;

use tracing::{debug, warn};

use crate::aws::{AccountConfig, AwsContext};
use crate::source::SourceError;

pub use parse::{parse_state, resource_type_of, StateFile, TfResource};
pub use source::StateSource;

/// Why a state source, or one state of it, gave no state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TfStateError {
    #[error("{origin}: invalid state source: {reason}")]
    InvalidSource { origin: String, reason: String },
    #[error("{origin}: matched no file")]
    NoMatch { origin: String },
    #[error("{origin}: no .tfstate object under this prefix")]
    EmptyPrefix { origin: String },
    #[error("{origin}: cannot list objects: {error}")]
    List { origin: String, error: SourceError },
    #[error("{origin}: cannot read: {error}")]
    Read { origin: String, error: SourceError },
    #[error("{origin}: invalid JSON at line {line}, column {column}: {message}")]
    InvalidJson { origin: String, line: usize, column: usize, message: String },
    #[error("{origin}: unsupported state version {version} (only version 4 is read)")]
    UnsupportedVersion { origin: String, version: u64 },
    #[error("{origin}: missing required field {path}")]
    MissingField { origin: String, path: String },
    #[error("{origin}: {path}: expected {expected}")]
    WrongType { origin: String, path: String, expected: &'static str },
    /// Larger than the configured bound on one state; not read.
    #[error("{origin}: larger than {max} bytes (max_state_bytes); not read")]
    TooLarge { origin: String, max: u64 },
}

/// The default bound on one state's size: 256 MiB.
pub const DEFAULT_MAX_STATE_BYTES: u64 = 256 << 20;

impl TfStateError {
    /// The bounded kind of the error, for metric labels.
    pub fn as_kind(&self) -> &'static str {
        match self {
            TfStateError::InvalidSource { .. } => "invalid_source",
            TfStateError::NoMatch { .. } => "no_match",
            TfStateError::EmptyPrefix { .. } => "empty_prefix",
            TfStateError::List { .. } => "list",
            TfStateError::Read { .. } => "read",
            TfStateError::InvalidJson { .. } => "invalid_json",
            TfStateError::UnsupportedVersion { .. } => "unsupported_version",
            TfStateError::MissingField { .. } => "missing_field",
            TfStateError::WrongType { .. } => "wrong_type",
            TfStateError::TooLarge { .. } => "too_large",
        }
    }

    /// The file path, glob pattern or S3 URI the error is about.
    pub fn origin(&self) -> &str {
        match self {
            TfStateError::InvalidSource { origin, .. }
            | TfStateError::NoMatch { origin }
            | TfStateError::EmptyPrefix { origin }
            | TfStateError::List { origin, .. }
            | TfStateError::Read { origin, .. }
            | TfStateError::InvalidJson { origin, .. }
            | TfStateError::UnsupportedVersion { origin, .. }
            | TfStateError::MissingField { origin, .. }
            | TfStateError::WrongType { origin, .. }
            | TfStateError::TooLarge { origin, .. } => origin,
        }
    }
}

/// A source, or one file or object of it, that gave no state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFailure {
    /// The file path, glob pattern or S3 URI that failed.
    pub origin: String,
    /// The whole error message, origin included.
    pub error: String,
}

impl From<TfStateError> for SourceFailure {
    fn from(e: TfStateError) -> Self {
        SourceFailure { origin: e.origin().to_string(), error: e.to_string() }
    }
}

/// What [`load`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Every state that parsed, in the order of the sources (glob matches and S3 keys sorted).
    pub states: Vec<StateFile>,
    /// Every source, file or object that gave no state.
    pub failures: Vec<SourceFailure>,
}

impl LoadReport {
    /// The resources of every state, each with its origin. Nothing is deduplicated: a resource found in
    /// two states appears twice.
    pub fn merged(&self) -> Vec<TfResource> {
        self.states.iter().flat_map(|s| s.resources.iter().cloned()).collect()
    }
}

/// Reads every source: files, glob matches (sorted) and S3 objects, these through one S3 client for
/// `account` in `region` whose calls are counted like every other. A file or object reached through two
/// sources is read once. A state larger than `max_bytes` is not read (nor downloaded past the bound).
pub async fn load(
    ctx: &AwsContext,
    account: &AccountConfig,
    region: &str,
    sources: &[StateSource],
    max_bytes: u64,
) -> LoadReport {
    let report = source::load(ctx, account, region, sources, max_bytes).await;
    for f in &report.failures {
        warn!(origin = %f.origin, error = %f.error, "terraform state not read");
    }
    for s in &report.states {
        debug!(origin = %s.origin, serial = s.serial, resources = s.resources.len(), "terraform state read");
    }
    report
}

/// An S3 client for `account` in `region`, built the way [`load`] builds its own (calls counted, its own retry
/// partition). For tests and tools that prepare state buckets; the daemon reads states through [`load`].
#[doc(hidden)]
pub fn s3_client(ctx: &AwsContext, account: &AccountConfig, region: &str) -> aws_sdk_s3::Client {
    crate::aws::client!(aws_sdk_s3, ctx, account, region)
}
