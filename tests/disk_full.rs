//! SQLite on a full disk: a small tmpfs mounted by the test (as root; without root the test says why it cannot
//! run, and fails under `CI=true`). A write that does not fit fails its run with an error that says so, the data
//! written before is intact and readable, and the next run after space returns succeeds.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Utc};
use cloudwarden::daemon::Daemon;
use cloudwarden::runtime::Clock;
use cloudwarden::store::RunOutcome;
use tokio_util::sync::CancellationToken;

/// A tmpfs of `size` mounted on a new temporary folder, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        // SAFETY: no arguments, no state.
        if !common::is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but the disk-full test needs root to mount a tmpfs"
            );
            eprintln!("SKIPPED: the disk-full test mounts a tmpfs, which needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "mount a tmpfs: {}", String::from_utf8_lossy(&out.stderr));
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fills the file system of `dir` with a file until a write fails for want of space; returns the file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        match f.write_all(&chunk).and_then(|_| f.sync_all()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_write_keeps_earlier_data_and_recovers() {
    let Some(disk) = Tmpfs::mount("16m") else { return };
    common::aws_test_env();
    let sources = tempfile::tempdir().unwrap();
    let sample = common::repo_root().join("tests/data/focus/focus_sample_1000.csv");
    std::fs::copy(&sample, sources.path().join("a.csv")).unwrap();
    let text = format!(
        "[database]\nurl = \"sqlite://{}\"\ncreate_if_missing = true\n\n[collectors.billing_files]\nsources = [\"{}/*.csv\"]\n",
        disk.path().join("cw.db").display(),
        sources.path().display()
    );
    let config = cloudwarden::config::parse("cw.toml", &text, &|_| None).unwrap();
    let t0: DateTime<Utc> = "2024-10-15T08:00:00Z".parse().unwrap();
    let daemon = Daemon::with_clock(config, Clock::manual(t0)).await.unwrap();
    let cancel = CancellationToken::new();
    let first = daemon.run_job("billing_files", t0, &cancel).await;
    assert_eq!(first.outcome, RunOutcome::Success, "{first:?}");
    let loaded = daemon.store.billing_files().await.unwrap();
    assert_eq!(loaded.len(), 1);
    let totals_before =
        daemon.store.billing_daily_costs("2024-01-01".parse().unwrap(), "2025-01-01".parse().unwrap()).await.unwrap();
    assert!(!totals_before.is_empty());

    // The disk fills up; a second file arrives: its load fails, saying why.
    let filler = fill(disk.path());
    std::fs::copy(&sample, sources.path().join("b.csv")).unwrap();
    let t1 = t0 + chrono::Duration::minutes(5);
    let full = daemon.run_job("billing_files", t1, &cancel).await;
    assert_ne!(full.outcome, RunOutcome::Success, "{full:?}");
    let said = format!("{:?} {:?}", full.error, full.failures);
    assert!(said.contains("full"), "the failure says the disk is full: {said}");
    eprintln!("the run on a full disk said: {said}");

    // What was there before is intact.
    assert_eq!(daemon.store.billing_files().await.unwrap(), loaded);
    let totals_during =
        daemon.store.billing_daily_costs("2024-01-01".parse().unwrap(), "2025-01-01".parse().unwrap()).await.unwrap();
    assert_eq!(totals_during, totals_before);

    // Space returns: the next run loads the file.
    std::fs::remove_file(filler).unwrap();
    let t2 = t1 + chrono::Duration::minutes(5);
    let again = daemon.run_job("billing_files", t2, &cancel).await;
    assert_eq!(again.outcome, RunOutcome::Success, "{again:?}");
    assert_eq!(daemon.store.billing_files().await.unwrap().len(), 2);
    let runs = daemon.store.runs("billing_files", 10).await.unwrap();
    assert!(runs.iter().all(|r| r.outcome != RunOutcome::Running), "{runs:?}");
    daemon.store.close().await;
    drop(daemon);
}
