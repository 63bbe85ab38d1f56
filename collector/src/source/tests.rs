//! The shared location helpers: S3 URI and location parsing, glob expansion, directory walks, and the
//! blocking reader over a downloading body.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::primitives::ByteStream;

use super::local::{expand_glob, walk_files};
use super::s3::{reader_for_test, stream_to_blocking};
use super::*;

fn s3(bucket: &str, key: &str) -> S3Uri {
    S3Uri { bucket: bucket.into(), key: key.into() }
}

/// A directory of its own under the system's temporary directory, removed when dropped.
struct TestDir(PathBuf);

impl TestDir {
    fn new(files: &[&str]) -> TestDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("cloudwarden-source-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        for rel in files {
            let path = root.join(rel);
            if rel.ends_with('/') {
                std::fs::create_dir_all(&path).unwrap();
            } else {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, rel.as_bytes()).unwrap();
            }
        }
        TestDir(root)
    }

    fn pattern(&self, rel: &str) -> String {
        format!("{}/{rel}", self.0.display())
    }

    fn relative(&self, paths: &[PathBuf]) -> Vec<String> {
        paths.iter().map(|p| p.strip_prefix(&self.0).unwrap().to_string_lossy().replace('\\', "/")).collect()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn s3_uris() {
    let ok = |text: &str| S3Uri::parse(text).expect("an s3:// text").expect("a valid S3 URI");
    assert_eq!(ok("s3://bucket/exports/focus/"), s3("bucket", "exports/focus/"));
    assert_eq!(ok("s3://bucket/"), s3("bucket", ""), "the whole bucket");
    assert_eq!(ok("s3://bucket//"), s3("bucket", "/"), "a key may start with a slash");
    assert_eq!(ok("s3://acme-tf/env:/staging/app.tfstate"), s3("acme-tf", "env:/staging/app.tfstate"));
    assert_eq!(ok("s3://b/a b/ü.csv"), s3("b", "a b/ü.csv"), "keys are taken as written");

    for (text, prefix) in [("s3://b/", true), ("s3://b/p/", true), ("s3://b/p", false), ("s3://b/p/x.csv", false)] {
        assert_eq!(is_prefix_key(&ok(text).key), prefix, "{text}");
        assert_eq!(ok(text).to_string(), text, "round trip");
    }

    let err = |text: &str| S3Uri::parse(text).expect("an s3:// text").expect_err(text);
    assert!(matches!(err("s3://bucket"), LocationError::NoKey));
    assert!(matches!(err("s3://"), LocationError::NoKey));
    assert!(matches!(err("s3:///prefix/"), LocationError::NoBucket));
    assert!(matches!(err("s3:///"), LocationError::NoBucket));

    for not_s3 in ["bucket/key", "S3://bucket/key", "s3:/bucket/key", " s3://bucket/key", "https://b/k"] {
        assert!(S3Uri::parse(not_s3).is_none(), "{not_s3}");
    }
}

#[test]
fn locations() {
    let ok = |text: &str| parse_location(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(ok("s3://bucket/prefix/"), Location::S3(s3("bucket", "prefix/")));
    assert_eq!(ok("s3://bucket/"), Location::S3(s3("bucket", "")));
    assert_eq!(ok("s3://bucket/*.csv"), Location::S3(s3("bucket", "*.csv")), "no globs in S3 keys");
    assert_eq!(ok("exports/**/*.csv.gz"), Location::Glob("exports/**/*.csv.gz".into()));
    assert_eq!(ok("env-?/[ab].tfstate"), Location::Glob("env-?/[ab].tfstate".into()));
    assert_eq!(ok("exports/2024-09.csv"), Location::Path("exports/2024-09.csv".into()));
    assert_eq!(ok("exports/"), Location::Path("exports/".into()), "a trailing slash stays");
    assert_eq!(ok("https://example.com/x.csv"), Location::Path("https://example.com/x.csv".into()));
    assert_eq!(ok(" a.csv "), Location::Path(" a.csv ".into()), "not trimmed here");

    let err = |text: &str| parse_location(text).expect_err(text).to_string();
    assert_eq!(err(""), "empty");
    assert_eq!(err(" \t"), "empty");
    assert_eq!(err("s3://bucket"), "no key after the bucket");
    assert_eq!(err("s3:///prefix/"), "no bucket name");
    assert_eq!(err("exports/[.csv"), "bad glob pattern: invalid range pattern");
    assert_eq!(err("a/***/b"), "bad glob pattern: wildcards are either regular `*` or recursive `**`");
}

#[test]
fn glob_matches_files_sorted() {
    let dir = TestDir::new(&["b/2.csv", "a/1.csv", "a/3.csv.gz", "a/x.json", "c.csv/", "a/deep/4.csv"]);
    let matches = expand_glob(&dir.pattern("*/*.csv")).unwrap();
    assert_eq!(dir.relative(&matches.files), ["a/1.csv", "b/2.csv"]);
    assert!(matches.errors.is_empty());

    let matches = expand_glob(&dir.pattern("**/*.csv")).unwrap();
    assert_eq!(dir.relative(&matches.files), ["a/1.csv", "a/deep/4.csv", "b/2.csv"], "c.csv is a directory");

    let matches = expand_glob(&dir.pattern("*")).unwrap();
    assert_eq!(dir.relative(&matches.files), Vec::<String>::new(), "only directories at the top");
    assert!(matches.is_empty());
}

#[test]
fn glob_without_match_is_empty_not_an_error() {
    let dir = TestDir::new(&["a.csv"]);
    for pattern in [dir.pattern("*.parquet"), dir.pattern("missing/**/*.csv")] {
        let matches = expand_glob(&pattern).unwrap();
        assert!(matches.is_empty(), "{pattern}: {matches:?}");
    }
    assert_eq!(expand_glob("[").unwrap_err().msg, "invalid range pattern");
}

#[test]
fn walks_directories() {
    let dir = TestDir::new(&["z.csv", "2024/09/b.csv", "2024/09/a.CSV", "2024/manifest.json", "empty/"]);
    let csv = |name: &str| name.to_ascii_lowercase().ends_with(".csv");
    assert_eq!(dir.relative(&walk_files(&dir.0, &csv).unwrap()), ["2024/09/a.CSV", "2024/09/b.csv", "z.csv"]);
    assert_eq!(dir.relative(&walk_files(&dir.0.join("empty"), &csv).unwrap()), Vec::<String>::new());
    assert_eq!(walk_files(&dir.0.join("absent"), &csv).unwrap_err().kind(), io::ErrorKind::NotFound);
    assert!(walk_files(&dir.0.join("z.csv"), &csv).is_err(), "a file is not a directory");
}

fn read_all(mut reader: impl Read, buffer: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0; buffer];
    loop {
        match reader.read(&mut buf)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn reader_joins_chunks() {
    let chunks = || vec![Ok(b"hello ".to_vec()), Ok(Vec::new()), Ok(b"streamed".to_vec()), Ok(b" world".to_vec())];
    for buffer in [1, 3, 64] {
        assert_eq!(read_all(reader_for_test(chunks()), buffer).unwrap(), b"hello streamed world", "{buffer}");
    }
    assert_eq!(read_all(reader_for_test(Vec::new()), 8).unwrap(), b"");
}

#[test]
fn reader_reports_a_failed_download() {
    let failed = io::Error::other("download failed: connection reset");
    let mut reader = reader_for_test(vec![Ok(b"abc".to_vec()), Err(failed)]);
    let mut buf = [0; 8];
    assert_eq!(reader.read(&mut buf).unwrap(), 3);
    assert_eq!(reader.read(&mut buf).unwrap_err().to_string(), "download failed: connection reset");
}

#[tokio::test]
async fn streams_a_body_to_a_blocking_reader() {
    let body: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let got = stream_to_blocking(ByteStream::from(body.clone()), |r| read_all(r, 4096)).await.unwrap().unwrap();
    assert_eq!(got, body);

    // A reader that stops early ends the download; its own result comes back.
    let first = stream_to_blocking(ByteStream::from(body), |mut r| {
        let mut buf = [0; 4];
        r.read_exact(&mut buf).map(|_| buf)
    });
    assert_eq!(first.await.unwrap().unwrap(), [0, 0, 0, 0]);
}

#[test]
fn prefix_keys() {
    for (key, prefix) in [("", true), ("/", true), ("a/", true), ("a", false), ("a/b.tfstate", false)] {
        assert_eq!(is_prefix_key(key), prefix, "{key:?}");
    }
}

#[test]
fn source_errors_display_and_kind() {
    use crate::aws::{AwsError, AwsErrorKind};

    let check = |err: SourceError, display: &str, kind: &str| {
        assert_eq!(err.to_string(), display);
        assert_eq!(err.as_kind(), kind, "{display}");
    };
    let denied = AwsError::new("s3", "ListObjectsV2", AwsErrorKind::AccessDenied, "service error: AccessDenied");
    check(SourceError::S3(denied), "ListObjectsV2: service error: AccessDenied", "s3");
    let missing = io::Error::new(io::ErrorKind::NotFound, "no such file");
    check(SourceError::io(&missing), "no such file", "io");
    check(SourceError::io_at("exports/2024".as_ref(), &missing), "exports/2024: no such file", "io");
    check(
        SourceError::Task { task: "reader", message: "task 3 panicked".into() },
        "reader task failed: task 3 panicked",
        "task",
    );
    check(SourceError::NotS3Uri, "not an s3://bucket/key URI", "not_s3_uri");
}

#[test]
fn a_failed_download_comes_back_typed_from_the_reader() {
    use crate::aws::{AwsError, AwsErrorKind};

    let broke = SourceError::S3(AwsError::new("s3", "GetObject", AwsErrorKind::Transport, "download failed: reset"));
    let mut reader = reader_for_test(vec![Ok(b"abc".to_vec()), Err(io::Error::other(broke.clone()))]);
    let err = read_all(&mut reader, 8).unwrap_err();
    assert_eq!(err.to_string(), "GetObject: download failed: reset");
    assert_eq!(SourceError::from_reader(err), broke);
    // Any other read error is a local one.
    let local = SourceError::from_reader(io::Error::new(io::ErrorKind::UnexpectedEof, "early end"));
    assert_eq!(local, SourceError::Io { path: None, kind: io::ErrorKind::UnexpectedEof, message: "early end".into() });
}
