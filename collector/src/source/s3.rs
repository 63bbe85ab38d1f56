//! S3 objects: listing every object under a prefix, reading one whole, or streaming one into a blocking
//! reader. Errors are [`SourceError::S3`]; the caller words the message around them.

use std::io::{self, Read};

use aws_sdk_s3::primitives::ByteStream;
use tokio::sync::mpsc;
use tokio::task::JoinError;

use super::SourceError;
use crate::aws::{error_chain, AwsError, AwsErrorKind};

/// Chunks buffered between the download and the reader: the download waits when the reader falls behind.
const STREAM_CHUNKS: usize = 8;

/// One object found under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Object {
    pub(crate) key: String,
    pub(crate) size: u64,
    /// The ETag without its quotes; `None` when S3 gave none (or an empty one).
    pub(crate) etag: Option<String>,
    /// Last modification, nanoseconds since the Unix epoch; `None` when S3 gave none.
    pub(crate) last_modified_ns: Option<i128>,
}

/// Every object under `prefix` whose key `keep` accepts, following ListObjectsV2 pages to the end, sorted by
/// key.
pub(crate) async fn list_objects(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    keep: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Vec<S3Object>, SourceError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| SourceError::S3(AwsError::sdk("s3", "ListObjectsV2", &e)))?;
        for obj in page.contents() {
            let Some(key) = obj.key().filter(|k| keep(k)) else { continue };
            let etag = obj.e_tag().map(|t| t.trim_matches('"')).filter(|t| !t.is_empty());
            out.push(S3Object {
                key: key.to_string(),
                size: obj.size().unwrap_or(0).max(0) as u64,
                etag: etag.map(str::to_string),
                last_modified_ns: obj.last_modified().map(|t| t.as_nanos()),
            });
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) && !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Starts downloading one object. With `if_match`, S3 refuses the read when the object's ETag (given without
/// quotes) is no longer that one.
pub(crate) async fn get_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    if_match: Option<&str>,
) -> Result<ByteStream, SourceError> {
    let mut request = client.get_object().bucket(bucket).key(key);
    if let Some(etag) = if_match {
        request = request.if_match(format!("\"{etag}\""));
    }
    let out = request.send().await.map_err(|e| SourceError::S3(AwsError::sdk("s3", "GetObject", &e)))?;
    Ok(out.body)
}

/// One whole object in memory, for objects that are read whole anyway: at most `max` bytes of it (the
/// download stops there).
pub(crate) async fn read_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    max: u64,
) -> Result<Vec<u8>, SourceError> {
    let mut body = get_object(client, bucket, key, None).await?;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| download_failed(&e))?;
        let room = usize::try_from(max.saturating_sub(out.len() as u64)).unwrap_or(usize::MAX);
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() as u64 >= max {
            break;
        }
    }
    Ok(out)
}

/// An object's body that broke off while downloading.
fn download_failed(e: &(dyn std::error::Error + 'static)) -> SourceError {
    let message = format!("download failed: {}", error_chain(e));
    SourceError::S3(AwsError::new("s3", "GetObject", AwsErrorKind::Transport, message))
}

/// One downloaded chunk, as the SDK handed it over.
type Chunk = Box<dyn AsRef<[u8]> + Send>;

/// A blocking [`Read`] over an object body that is still downloading: chunks arrive through a small channel,
/// so memory stays flat whatever the size of the object. A failed download is a read error; the end of the
/// body is the end of the reader. A download error is an [`io::Error`] holding the [`SourceError`], which
/// [`SourceError::from_reader`] takes out again.
pub(crate) struct ObjectReader {
    rx: mpsc::Receiver<io::Result<Chunk>>,
    current: Option<Chunk>,
    pos: usize,
}

impl ObjectReader {
    fn new(rx: mpsc::Receiver<io::Result<Chunk>>) -> ObjectReader {
        ObjectReader { rx, current: None, pos: 0 }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.current {
                let rest = &(**chunk).as_ref()[self.pos..];
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

/// Streams `body` into `consume`, which runs on a blocking thread with an [`ObjectReader`] while the download
/// goes on here. If `consume` returns before the end (it stopped at an error), the download stops too. The
/// error is only that of the blocking task itself (a panic).
pub(crate) async fn stream_to_blocking<T, F>(mut body: ByteStream, consume: F) -> Result<T, JoinError>
where
    T: Send + 'static,
    F: FnOnce(ObjectReader) -> T + Send + 'static,
{
    let (tx, rx) = mpsc::channel(STREAM_CHUNKS);
    let task = tokio::task::spawn_blocking(move || consume(ObjectReader::new(rx)));
    loop {
        let next = match body.try_next().await {
            Ok(Some(chunk)) => Ok(Box::new(chunk) as Chunk),
            Ok(None) => break,
            Err(e) => Err(io::Error::other(download_failed(&e))),
        };
        let failed = next.is_err();
        // A closed channel means the reader is done: its result is the one to report.
        if tx.send(next).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    task.await
}

#[cfg(test)]
pub(crate) fn reader_for_test(chunks: Vec<io::Result<Vec<u8>>>) -> ObjectReader {
    let (tx, rx) = mpsc::channel(chunks.len().max(1));
    for chunk in chunks {
        let chunk = chunk.map(|c| Box::new(c) as Chunk);
        tx.try_send(chunk).expect("the channel holds every test chunk");
    }
    ObjectReader::new(rx)
}
