//! The soak: the daemon's own scheduler on tokio's paused clock, with an inventory and a rules cycle every
//! 5 minutes against moto, and volumes, snapshots and Elastic IPs created and deleted all along. Shared by
//! the soak test (a short run that checks nothing grows with churn) and the soak benchmark (30 simulated
//! days, printing the resident memory curve). The caller's runtime must be a current-thread one started
//! paused, with [`super::hold_time`] holding the clock: it moves only when the soak moves it.

use std::collections::VecDeque;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use cloudwarden::daemon::Daemon;
use cloudwarden::runtime::Clock;
use collector::aws::{AwsContext, AwsSettings};
use tokio_util::sync::CancellationToken;

use super::Moto;

/// The minutes between inventory cycles.
pub const INTERVAL_MINUTES: i64 = 5;
/// Cycles per simulated day.
pub const CYCLES_PER_DAY: u64 = (24 * 60 / INTERVAL_MINUTES) as u64;
/// The resources present throughout: volumes and Elastic IPs, half of them tagged as the rules require.
const BASE_VOLUMES: usize = 20;
const BASE_ADDRESSES: usize = 4;
/// How many cycles a churned resource lives before it is deleted.
const LIFETIME: usize = 24;

/// One sample of the daemon's state, taken between cycles.
#[derive(Debug, Clone)]
pub struct Sample {
    pub cycle: u64,
    /// Simulated days since the start.
    pub day: f64,
    /// This process' resident memory (VmRSS), KiB.
    pub rss_kib: u64,
    /// Memory SQLite holds (page caches, prepared statements, its own allocations), KiB.
    pub sqlite_kib: u64,
    /// Series in the rendered `/metrics`.
    pub series: usize,
    /// Size of the rendered `/metrics` body, bytes.
    pub metrics_bytes: usize,
    /// Tasks alive on the runtime.
    pub tasks: usize,
    /// Open file descriptors of this process.
    pub fds: usize,
    /// Resources the store holds as present.
    pub live: usize,
    /// Resource rows in the store, gone ones included.
    pub resource_rows: usize,
    /// Open findings.
    pub open_findings: usize,
    /// Real seconds since the soak started.
    pub elapsed_secs: f64,
}

/// The soak's start: a Monday, midnight UTC.
pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn tags(tagged: bool) -> Option<aws_sdk_ec2::types::TagSpecification> {
    tagged.then(|| {
        let tag = |k: &str, v: String| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
        aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::Volume)
            .tags(tag("team", "platform".into()))
            .tags(tag("env", "dev".into()))
            .tags(tag("owner", "soak@example.com".into()))
            .build()
    })
}

/// What the soak created and has yet to delete.
struct Churn {
    ec2: aws_sdk_ec2::Client,
    volumes: VecDeque<String>,
    snapshots: VecDeque<String>,
    addresses: VecDeque<String>,
    created: u64,
    deleted: u64,
}

impl Churn {
    async fn volume(&mut self, tagged: bool) -> String {
        let mut call = self.ec2.create_volume().availability_zone("us-east-1a").size(1);
        if let Some(spec) = tags(tagged) {
            call = call.tag_specifications(spec);
        }
        let out = call.send().await.expect("moto creates a volume");
        self.created += 1;
        out.volume_id().expect("a volume id").to_string()
    }

    async fn address(&mut self) -> String {
        let out = self.ec2.allocate_address().send().await.expect("moto allocates an address");
        self.created += 1;
        out.allocation_id().expect("an allocation id").to_string()
    }

    /// One cycle's changes: a new volume every cycle (tagged every other one), a snapshot of it every third
    /// cycle, an Elastic IP every fourth; each deleted [`LIFETIME`] cycles after it was created.
    async fn step(&mut self, cycle: u64) {
        let volume = self.volume(cycle.is_multiple_of(2)).await;
        if cycle.is_multiple_of(3) {
            let out = self.ec2.create_snapshot().volume_id(&volume).send().await.expect("moto snapshots");
            self.created += 1;
            self.snapshots.push_back(out.snapshot_id().expect("a snapshot id").to_string());
        }
        self.volumes.push_back(volume);
        if cycle.is_multiple_of(4) {
            let id = self.address().await;
            self.addresses.push_back(id);
        }
        if self.volumes.len() > LIFETIME {
            let id = self.volumes.pop_front().unwrap();
            self.ec2.delete_volume().volume_id(id).send().await.expect("moto deletes a volume");
            self.deleted += 1;
        }
        if self.snapshots.len() > LIFETIME / 3 {
            let id = self.snapshots.pop_front().unwrap();
            self.ec2.delete_snapshot().snapshot_id(id).send().await.expect("moto deletes a snapshot");
            self.deleted += 1;
        }
        if self.addresses.len() > LIFETIME / 4 {
            let id = self.addresses.pop_front().unwrap();
            self.ec2.release_address().allocation_id(id).send().await.expect("moto releases an address");
            self.deleted += 1;
        }
    }
}

/// The running soak.
pub struct Soak {
    pub daemon: Daemon,
    churn: Churn,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    finished: tokio::sync::watch::Receiver<u64>,
    cycle: u64,
    began: Instant,
    _dir: tempfile::TempDir,
    _moto: Moto,
}

impl Soak {
    /// Starts moto, creates the base resources, and starts the daemon's scheduler at [`start`].
    pub async fn begin() -> Soak {
        super::aws_test_env();
        let moto = Moto::start();
        let dir = tempfile::tempdir().unwrap();
        let settings = AwsSettings { endpoint_url: Some(moto.endpoint()), ..AwsSettings::default() };
        let aws = AwsContext::new(&settings).await;
        let ec2 = aws_sdk_ec2::Client::new(&aws.accounts[0].sdk);
        let mut churn = Churn {
            ec2,
            volumes: VecDeque::new(),
            snapshots: VecDeque::new(),
            addresses: VecDeque::new(),
            created: 0,
            deleted: 0,
        };
        for i in 0..BASE_VOLUMES {
            churn.volume(i % 2 == 0).await;
        }
        for _ in 0..BASE_ADDRESSES {
            churn.address().await;
        }
        let text = format!(
            "[database]\nurl = \"sqlite://{}\"\ncreate_if_missing = true\n\n[aws]\nendpoint_url = \"{}\"\n\n\
             [collectors.inventory]\nregions = [\"us-east-1\"]\ninterval_secs = {}\n\n\
             [rules]\nfiles = [\"{}/examples/rules/testbed/*.toml\"]\ninterval_secs = {}\n",
            dir.path().join("soak.db").display(),
            moto.endpoint(),
            INTERVAL_MINUTES * 60,
            super::repo_root().display(),
            INTERVAL_MINUTES * 60,
        );
        let config = cloudwarden::config::parse("soak.toml", &text, &|_| None).expect("the soak's configuration");
        let daemon = Daemon::with_clock(config, Clock::tokio(start())).await.expect("the daemon starts");
        let finished = daemon.runtime.finished_runs();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(daemon.runtime.clone().run(shutdown.clone()));
        let mut soak =
            Soak { daemon, churn, shutdown, task, finished, cycle: 0, began: Instant::now(), _dir: dir, _moto: moto };
        soak.settle().await;
        soak
    }

    /// Waits until no job runs and none is due at the clock's time.
    async fn settle(&mut self) {
        loop {
            let now = self.daemon.runtime.clock().now();
            let idle = self.daemon.runtime.status().iter().all(|s| !s.running && s.next_run.is_some_and(|t| t > now));
            if idle {
                return;
            }
            self.finished.changed().await.expect("the scheduler runs");
        }
    }

    /// One cycle: the churn, then the clock moved to the next inventory run and every job due then run.
    pub async fn cycle(&mut self) {
        self.cycle += 1;
        self.churn.step(self.cycle).await;
        let before = self.inventory();
        let next = before.next_run.expect("the inventory is scheduled");
        assert_eq!(Some(next - Duration::minutes(INTERVAL_MINUTES)), before.last_run, "every 5 minutes");
        super::advance_to(self.daemon.runtime.clock(), next).await;
        self.settle().await;
        let after = self.inventory();
        assert_eq!(after.last_run, Some(next), "the inventory ran when it was due");
        assert_eq!(after.consecutive_failures, 0, "the inventory failed: {:?}", after.last_reason);
    }

    fn inventory(&self) -> cloudwarden::runtime::JobStatus {
        self.daemon.runtime.status().into_iter().find(|s| s.name == "inventory").expect("the inventory job")
    }

    /// The cycles run so far.
    pub fn cycles(&self) -> u64 {
        self.cycle
    }

    /// Resources created and deleted by the churn so far (the base ones included in created).
    pub fn churned(&self) -> (u64, u64) {
        (self.churn.created, self.churn.deleted)
    }

    /// Resources alive in moto now: the base ones and the churn's.
    pub fn alive(&self) -> usize {
        BASE_VOLUMES
            + BASE_ADDRESSES
            + self.churn.volumes.len()
            + self.churn.snapshots.len()
            + self.churn.addresses.len()
    }

    pub async fn sample(&self) -> Sample {
        // Freed memory is returned after each rendering; take the figure after the same step every time.
        cloudwarden::memory::collect();
        let metrics = self.daemon.state.metrics();
        let series = metrics.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count();
        // Counts, not rows: the sample must not itself hold memory that grows with the database.
        let count = |sql: &'static str| async move {
            sqlx::query_scalar::<_, i64>(sql).fetch_one(self.daemon.store.pool()).await.unwrap() as usize
        };
        let live = count("SELECT COUNT(*) FROM resources WHERE gone_at_ms IS NULL").await;
        let resource_rows = count("SELECT COUNT(*) FROM resources").await;
        let open_findings = count("SELECT COUNT(*) FROM findings WHERE resolved_at_ms IS NULL").await;
        let elapsed = self.daemon.runtime.clock().now() - start();
        Sample {
            cycle: self.cycle,
            day: elapsed.num_seconds() as f64 / 86_400.0,
            rss_kib: status_kib("VmRSS:"),
            // SAFETY: a read of SQLite's global counter, valid at any time.
            sqlite_kib: (unsafe { libsqlite3_sys::sqlite3_memory_used() }).max(0) as u64 / 1024,
            series,
            metrics_bytes: metrics.len(),
            tasks: tokio::runtime::Handle::current().metrics().num_alive_tasks(),
            fds: std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
            live,
            resource_rows,
            open_findings,
            elapsed_secs: self.began.elapsed().as_secs_f64(),
        }
    }

    /// Stops the scheduler and the daemon's store.
    pub async fn end(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
        self.daemon.store.close().await;
    }
}
