//! Where states come from: files, glob patterns and S3 objects or prefixes, and reading them.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use futures::stream::{self, StreamExt};

use super::parse::{parse_state, StateFile};
use super::{LoadReport, SourceFailure, TfStateError};
use crate::aws::{client, AccountConfig, AwsContext};
use crate::source::s3::{list_objects, read_object};
use crate::source::{is_prefix_key, local, parse_location, Location, LocationError, S3Uri, SourceError};

/// Objects or files read at once.
const READ_CONCURRENCY: usize = 4;

/// One place to read Terraform states from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StateSource {
    /// One state file.
    File(PathBuf),
    /// Every file a glob pattern matches (`*`, `?`, `[...]`, `**` for any depth), read in sorted order.
    Glob(String),
    /// One S3 object, or every `*.tfstate` object under a prefix when `key` is empty or ends with `/`.
    S3 { bucket: String, key: String },
}

impl StateSource {
    /// `s3://bucket/key` (or `s3://bucket/prefix/`), a glob pattern when the text has `*`, `?` or `[`, else a
    /// file path.
    pub fn parse(s: &str) -> Result<Self, TfStateError> {
        let invalid = |reason: String| TfStateError::InvalidSource { origin: s.to_string(), reason };
        match parse_location(s) {
            Ok(Location::S3(S3Uri { bucket, key })) => Ok(StateSource::S3 { bucket, key }),
            Ok(Location::Glob(pattern)) => Ok(StateSource::Glob(pattern)),
            Ok(Location::Path(path)) => Ok(StateSource::File(path)),
            Err(LocationError::NoKey) => {
                Err(invalid("no key after the bucket (end it with / to read every .tfstate object)".into()))
            }
            Err(e) => Err(invalid(e.to_string())),
        }
    }

    /// True for an S3 prefix, whose every `*.tfstate` object is read.
    pub fn is_prefix(&self) -> bool {
        matches!(self, StateSource::S3 { key, .. } if is_prefix_key(key))
    }
}

impl FromStr for StateSource {
    type Err = TfStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StateSource::parse(s)
    }
}

impl fmt::Display for StateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateSource::File(p) => write!(f, "{}", p.display()),
            StateSource::Glob(g) => f.write_str(g),
            StateSource::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// One file or object to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    File(PathBuf),
    Object(S3Uri),
}

impl Target {
    fn origin(&self) -> String {
        match self {
            Target::File(p) => p.display().to_string(),
            Target::Object(object) => object.to_string(),
        }
    }
}

/// The files a pattern matches, sorted (directories are not files), and what went wrong on the way: an
/// unreadable directory, or no match at all. Matches beside an unreadable directory are still read.
fn expand_glob(pattern: &str) -> (Vec<Target>, Vec<TfStateError>) {
    let matches = match local::expand_glob(pattern) {
        Ok(matches) => matches,
        Err(e) => {
            let reason = format!("bad glob pattern: {}", e.msg);
            return (Vec::new(), vec![TfStateError::InvalidSource { origin: pattern.to_string(), reason }]);
        }
    };
    if matches.is_empty() {
        return (Vec::new(), vec![TfStateError::NoMatch { origin: pattern.to_string() }]);
    }
    let errors = matches
        .errors
        .iter()
        .map(|e| TfStateError::Read { origin: e.path().display().to_string(), error: SourceError::io(e.error()) })
        .collect();
    (matches.files.into_iter().map(Target::File).collect(), errors)
}

/// Every `*.tfstate` key under a prefix, sorted, all pages.
async fn list_states(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Result<Vec<String>, SourceError> {
    let objects = list_objects(client, bucket, prefix, &|key| key.ends_with(".tfstate")).await?;
    Ok(objects.into_iter().map(|o| o.key).collect())
}

/// Reads and parses one file or object. Blocking work (file reads, parsing a large state) runs off the async
/// threads.
async fn read_target(
    s3: Option<&aws_sdk_s3::Client>,
    target: Target,
    max_bytes: u64,
) -> Result<StateFile, TfStateError> {
    let origin = target.origin();
    let read_error = |error: SourceError| TfStateError::Read { origin: origin.clone(), error };
    // One byte past the bound tells a state that is too large from one that fits exactly.
    let bytes = match target {
        Target::File(path) => tokio::task::spawn_blocking(move || {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(std::fs::File::open(path)?, max_bytes + 1),
                &mut bytes,
            )?;
            Ok::<_, std::io::Error>(bytes)
        })
        .await
        .map_err(|e| read_error(SourceError::task("reader", &e)))?
        .map_err(|e| read_error(SourceError::io(&e)))?,
        Target::Object(object) => {
            let client = s3.expect("an S3 client when there is an S3 source");
            read_object(client, &object.bucket, &object.key, max_bytes + 1).await.map_err(read_error)?
        }
    };
    if bytes.len() as u64 > max_bytes {
        return Err(TfStateError::TooLarge { origin, max: max_bytes });
    }
    let parse_origin = origin.clone();
    tokio::task::spawn_blocking(move || parse_state(&parse_origin, &bytes))
        .await
        .map_err(|e| read_error(SourceError::task("reader", &e)))?
}

pub(super) async fn load(
    ctx: &AwsContext,
    account: &AccountConfig,
    region: &str,
    sources: &[StateSource],
    max_bytes: u64,
) -> LoadReport {
    let needs_s3 = sources.iter().any(|s| matches!(s, StateSource::S3 { .. }));
    let s3 = needs_s3.then(|| client!(aws_sdk_s3, ctx, account, region));

    // Every source into the files and objects it names, or the error that stopped it, in source order.
    let mut targets: Vec<Result<Target, TfStateError>> = Vec::new();
    for source in sources {
        match source {
            StateSource::File(p) => targets.push(Ok(Target::File(p.clone()))),
            StateSource::Glob(pattern) => {
                let pattern = pattern.clone();
                match tokio::task::spawn_blocking(move || expand_glob(&pattern)).await {
                    Ok((found, errors)) => {
                        targets.extend(found.into_iter().map(Ok));
                        targets.extend(errors.into_iter().map(Err));
                    }
                    Err(e) => targets.push(Err(TfStateError::Read {
                        origin: source.to_string(),
                        error: SourceError::task("listing", &e),
                    })),
                }
            }
            StateSource::S3 { bucket, key } if source.is_prefix() => {
                let client = s3.as_ref().expect("an S3 client when there is an S3 source");
                match list_states(client, bucket, key).await {
                    Ok(keys) if keys.is_empty() => {
                        targets.push(Err(TfStateError::EmptyPrefix { origin: source.to_string() }))
                    }
                    Ok(keys) => {
                        let object = |key| Target::Object(S3Uri { bucket: bucket.clone(), key });
                        targets.extend(keys.into_iter().map(|key| Ok(object(key))))
                    }
                    Err(error) => targets.push(Err(TfStateError::List { origin: source.to_string(), error })),
                }
            }
            StateSource::S3 { bucket, key } => {
                targets.push(Ok(Target::Object(S3Uri { bucket: bucket.clone(), key: key.clone() })))
            }
        }
    }

    // Each file or object once, in order, a few at a time.
    let mut seen = HashSet::new();
    targets.retain(|t| t.as_ref().map_or(true, |t| seen.insert(t.clone())));
    let s3 = s3.as_ref();
    let results: Vec<Result<StateFile, TfStateError>> = stream::iter(targets)
        .map(|t| async move {
            match t {
                Ok(target) => read_target(s3, target, max_bytes).await,
                Err(e) => Err(e),
            }
        })
        .buffered(READ_CONCURRENCY)
        .collect()
        .await;
    let mut report = LoadReport::default();
    for r in results {
        match r {
            Ok(state) => report.states.push(state),
            Err(e) => report.failures.push(SourceFailure::from(e)),
        }
    }
    report
}
