//! The job runtime: schedules, run rows, supervision and `/metrics` rendering for every registered job.
//!
//! Each job has a slot: the job itself (locked while it runs), its schedule, the value it published last and
//! its status. A run is: open a run row, run the job under a panic guard with its own API call counter, close
//! the run row, keep the published value, render `/metrics` once from every slot's published value and the
//! runtime's own self metrics. A job that fails or panics is recorded and retried with backoff; it never
//! stops being scheduled. The runtime knows no job by name.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use collector::aws::calls::{by_operation, counting_calls};
use collector::{AwsContext, ScopeFailure};
use futures::FutureExt;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};

use crate::config::Schedule;
use crate::jobs::{Detail, Job, JobContext, JobOutput, Published, Registration};
use crate::metrics::{self, Exposition};
use crate::server::AppState;
use crate::store::{RunOutcome, Store};

/// The source of the current time: the system clock in production. In tests, either tokio's clock, which a
/// scheduler test pauses (`#[tokio::test(start_paused = true)]`) so that it moves only when the test advances
/// it: hours of schedules, retries and restarts take milliseconds and every time is exact; or a manual clock
/// for tests that place single runs at chosen times on a multi-threaded runtime (moto, child processes), where
/// tokio's clock cannot be paused.
#[derive(Clone)]
pub struct Clock(Source);

#[derive(Clone)]
enum Source {
    System,
    /// `start` at tokio's instant `origin`, moving as tokio's clock moves.
    Tokio {
        start: DateTime<Utc>,
        origin: tokio::time::Instant,
    },
    /// Standing where the test last set it.
    Manual(Arc<watch::Sender<DateTime<Utc>>>),
}

impl Clock {
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// A clock that reads `start` now and then moves with tokio's clock: in real time on a normal runtime, only
    /// through `tokio::time::advance` (or tokio's auto-advance) on a paused one. Made inside a tokio runtime.
    pub fn tokio(start: DateTime<Utc>) -> Clock {
        Clock(Source::Tokio { start, origin: tokio::time::Instant::now() })
    }

    /// A clock standing at `start` until [`Clock::set`] or [`Clock::advance`] moves it.
    pub fn manual(start: DateTime<Utc>) -> Clock {
        Clock(Source::Manual(Arc::new(watch::channel(start).0)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            Source::System => Utc::now(),
            Source::Tokio { start, origin } => chrono::Duration::from_std(origin.elapsed())
                .ok()
                .and_then(|d| start.checked_add_signed(d))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            Source::Manual(t) => *t.borrow(),
        }
    }

    /// Sleeps until `t` on this clock (returns at once for a time already past; never for one beyond tokio's
    /// range).
    pub async fn sleep_until(&self, t: DateTime<Utc>) {
        match &self.0 {
            Source::System => tokio::time::sleep((t - Utc::now()).to_std().unwrap_or_default()).await,
            Source::Tokio { start, origin } => {
                let after = (t - *start).to_std().unwrap_or_default();
                match origin.checked_add(after) {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            }
            Source::Manual(clock) => {
                let mut rx = clock.subscribe();
                // The sender lives as long as this clock.
                let _ = rx.wait_for(|now| *now >= t).await;
            }
        }
    }

    /// Moves a manual clock to `t` (never backwards); the other clocks ignore it.
    pub fn set(&self, t: DateTime<Utc>) {
        if let Source::Manual(clock) = &self.0 {
            clock.send_modify(|now| *now = (*now).max(t));
        }
    }

    /// Moves a manual clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        self.set(self.now().checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC));
    }
}

/// The delay before retrying a job after `failures` failed runs in a row: 10 s, doubling, at most 10 min.
pub fn backoff(failures: u32) -> Duration {
    const FIRST: u64 = 10;
    const MAX: u64 = 600;
    Duration::from_secs(FIRST.saturating_mul(1u64 << failures.saturating_sub(1).min(16)).min(MAX))
}

/// When a job runs next after a run that ended at `now`: at its next scheduled time, or sooner, after its
/// backoff, when it has failed `failures` times in a row.
pub fn next_run(schedule: &Schedule, now: DateTime<Utc>, failures: u32) -> DateTime<Utc> {
    let scheduled = schedule.next_after(now);
    if failures == 0 {
        return scheduled;
    }
    let retry = chrono::Duration::from_std(backoff(failures))
        .map_or(scheduled, |d| now.checked_add_signed(d).unwrap_or(scheduled));
    retry.min(scheduled)
}

/// What one run of a job did, for logs, the CLI summary and tests.
#[derive(Debug, Clone, Serialize)]
pub struct CycleSummary {
    pub collector: String,
    pub run_id: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub duration_secs: f64,
    pub outcome: RunOutcome,
    /// Items collected: resources, cost rows, ...
    pub items: u64,
    /// AWS call attempts this run made, by `service:operation`.
    pub api_calls: BTreeMap<String, u64>,
    pub failures: Vec<ScopeFailure>,
    /// What went wrong, when something did.
    pub error: Option<String>,
    pub detail: Detail,
}

impl CycleSummary {
    pub fn api_call_total(&self) -> u64 {
        self.api_calls.values().sum()
    }

    /// The job's own facts of the run, when they are of type `T`.
    pub fn detail<T: 'static>(&self) -> Option<&T> {
        self.detail.get()
    }
}

/// A job's state as `/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobStatus {
    pub name: String,
    pub schedule: String,
    pub running: bool,
    pub last_outcome: Option<RunOutcome>,
    /// The newest run's error, `panic: ...` for a panic.
    pub last_reason: Option<String>,
    pub last_run: Option<DateTime<Utc>>,
    /// End of the newest successful run (kept across restarts in the database).
    pub last_success: Option<DateTime<Utc>>,
    /// Wall time of the newest finished run, in seconds.
    pub last_duration_secs: Option<f64>,
    pub next_run: Option<DateTime<Utc>>,
    /// Failed runs in a row (retries back off while this is above 0).
    pub consecutive_failures: u32,
    /// Panics since the daemon started.
    pub panics: u64,
    /// Runs by outcome since the daemon started.
    #[serde(skip)]
    pub runs: BTreeMap<RunOutcome, u64>,
}

struct Slot {
    name: &'static str,
    schedule: Schedule,
    reads_inventory: bool,
    collects: bool,
    job: tokio::sync::Mutex<Box<dyn Job>>,
    published: Mutex<Option<Published>>,
    status: Mutex<JobStatus>,
}

/// The registered jobs and everything the runtime keeps of them.
pub struct Runtime {
    store: Store,
    aws: AwsContext,
    clock: Clock,
    state: AppState,
    slots: Vec<Slot>,
    /// One rendering at a time, so an older one never replaces a newer one.
    render_lock: tokio::sync::Mutex<()>,
    /// Runs finished since start (each followed by its rendering), for whoever waits on them.
    finished: watch::Sender<u64>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("jobs", &self.names()).finish()
    }
}

impl Runtime {
    /// The runtime over `jobs`, with each job's last success from the store, and what each job publishes
    /// from the store before its first run. `/metrics` is rendered once before this returns.
    pub async fn new(
        store: Store,
        aws: AwsContext,
        clock: Clock,
        state: AppState,
        jobs: Vec<Registration>,
    ) -> anyhow::Result<Runtime> {
        let successes = store.last_successes().await?;
        let slots = jobs
            .into_iter()
            .map(|r| {
                let name = r.job.name();
                let (last_success, last_duration_secs) =
                    successes.iter().find(|(n, _, _)| n == name).map_or((None, None), |(_, t, d)| (Some(*t), Some(*d)));
                Slot {
                    name,
                    reads_inventory: r.job.reads_inventory(),
                    collects: r.job.collects(),
                    status: Mutex::new(JobStatus {
                        name: name.to_string(),
                        schedule: r.schedule.to_string(),
                        last_success,
                        last_duration_secs,
                        ..JobStatus::default()
                    }),
                    schedule: r.schedule,
                    job: tokio::sync::Mutex::new(r.job),
                    published: Mutex::new(None),
                }
            })
            .collect();
        let rt = Runtime {
            store,
            aws,
            clock,
            state,
            slots,
            render_lock: tokio::sync::Mutex::new(()),
            finished: watch::channel(0).0,
        };
        let ctx = rt.context(rt.clock.now(), CancellationToken::new());
        for slot in &rt.slots {
            let restored = AssertUnwindSafe(async { slot.job.lock().await.restore(&ctx).await }).catch_unwind().await;
            match restored {
                Ok(Ok(Some(p))) => *lock(&slot.published) = Some(p),
                Ok(Ok(None)) => {}
                Ok(Err(error)) => warn!(collector = slot.name, %error, "cannot read what the job published before"),
                Err(panic) => {
                    warn!(collector = slot.name, error = %panic_message(&panic), "restoring the job panicked")
                }
            }
        }
        rt.render().await;
        if rt.has_served_data() {
            rt.state.set_ready();
        }
        Ok(rt)
    }

    fn context(&self, now: DateTime<Utc>, cancel: CancellationToken) -> JobContext {
        JobContext { store: self.store.clone(), aws: self.aws.clone(), clock: self.clock.clone(), now, cancel }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The registered jobs' names, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.slots.iter().map(|s| s.name).collect()
    }

    /// Counts the runs finished since start; it changes once a run's row is closed and `/metrics` rendered.
    pub fn finished_runs(&self) -> watch::Receiver<u64> {
        self.finished.subscribe()
    }

    /// Every job's status, in registration order.
    pub fn status(&self) -> Vec<JobStatus> {
        self.slots.iter().map(|s| lock(&s.status).clone()).collect()
    }

    fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.name == name)
    }

    /// Whether a success of the job makes the daemon ready: a collector's, or the rules' when nothing else
    /// collects.
    fn counts_for_readiness(&self, slot: &Slot) -> bool {
        slot.collects || !self.slots.iter().any(|s| s.collects)
    }

    /// Whether some job that counts for readiness has ever succeeded (its data is in the store).
    fn has_served_data(&self) -> bool {
        self.slots.iter().any(|s| self.counts_for_readiness(s) && lock(&s.status).last_success.is_some())
    }

    /// One run of the job `name` for time `now`: its run row, call counts, supervision and a new `/metrics`.
    pub async fn run_job(&self, name: &str, now: DateTime<Utc>, cancel: &CancellationToken) -> Option<CycleSummary> {
        let slot = self.slot(name)?;
        Some(self.run_slot(slot, now, cancel).await)
    }

    async fn run_slot(&self, slot: &Slot, now: DateTime<Utc>, cancel: &CancellationToken) -> CycleSummary {
        let name = slot.name;
        let clock = Instant::now();
        let run_id = match self.store.begin_run(name, now).await {
            Ok(id) => Some(id),
            Err(e) => {
                error!(collector = name, error = %e, "cannot record the start of the run");
                None
            }
        };
        lock(&slot.status).running = true;
        let ctx = self.context(now, cancel.clone());
        let mut job = slot.job.lock().await;
        // A panic is a failed run: recorded, counted, retried; never the end of the job's schedule.
        let guarded = AssertUnwindSafe(job.run(&ctx)).catch_unwind();
        // This run's own calls, even while other jobs call AWS at the same time.
        let (result, calls) = counting_calls(guarded).await;
        drop(job);
        let (out, panicked) = match result {
            Ok(out) => (out, false),
            Err(panic) => (JobOutput::failed(format!("panic: {}", panic_message(&panic))), true),
        };
        let JobOutput { outcome, items, failures, mut error, mut detail, published, retry_at } = out;
        if error.is_none() && !failures.is_empty() {
            let shown: Vec<String> = failures
                .iter()
                .take(5)
                .map(|f| format!("{} {} {}: {}", f.account, f.region.as_deref().unwrap_or("-"), f.source, f.error))
                .collect();
            error = Some(shown.join("; "));
        }
        detail.tag(name);
        let summary = CycleSummary {
            collector: name.to_string(),
            run_id,
            started_at: now,
            duration_secs: clock.elapsed().as_secs_f64(),
            outcome,
            items,
            api_calls: by_operation(&calls).into_iter().map(|((s, o), n)| (format!("{s}:{o}"), n)).collect(),
            failures,
            error,
            detail,
        };
        let ended = self.clock.now();
        if let Some(id) = run_id {
            if let Err(e) = self
                .store
                .finish_run(
                    id,
                    ended,
                    summary.outcome,
                    summary.api_call_total(),
                    summary.items,
                    summary.error.as_deref(),
                )
                .await
            {
                error!(collector = name, error = %e, "cannot record the end of the run");
            }
        }
        if let Some(p) = published {
            *lock(&slot.published) = Some(p);
        }
        {
            let mut st = lock(&slot.status);
            st.running = false;
            st.last_outcome = Some(summary.outcome);
            st.last_reason = summary.error.clone();
            st.last_run = Some(now);
            st.last_duration_secs = Some(summary.duration_secs);
            *st.runs.entry(summary.outcome).or_default() += 1;
            match summary.outcome {
                RunOutcome::Success => {
                    st.last_success = Some(ended);
                    st.consecutive_failures = 0;
                }
                RunOutcome::Partial | RunOutcome::Skipped => st.consecutive_failures = 0,
                RunOutcome::Failed => st.consecutive_failures = st.consecutive_failures.saturating_add(1),
                RunOutcome::Cancelled | RunOutcome::Running => {}
            }
            let mut next = next_run(&slot.schedule, ended, st.consecutive_failures);
            if let Some(retry) = retry_at {
                // Never sooner than a second from now: a job asking for "at once" cannot spin.
                let soonest = ended.checked_add_signed(chrono::Duration::seconds(1)).unwrap_or(ended);
                next = next.min(retry.max(soonest));
            }
            st.next_run = Some(next);
            if panicked {
                st.panics += 1;
            }
        }
        // Rendered before readiness: a client told "ready" finds this run's data on /metrics.
        self.render().await;
        if self.counts_for_readiness(slot) && matches!(summary.outcome, RunOutcome::Success | RunOutcome::Partial) {
            self.state.set_ready();
        }
        self.finished.send_modify(|n| *n += 1);
        match summary.outcome {
            RunOutcome::Failed => warn!(
                collector = name,
                error = summary.error.as_deref().unwrap_or(""),
                panicked,
                duration_secs = summary.duration_secs,
                "run failed"
            ),
            outcome => info!(
                collector = name,
                outcome = outcome.as_str(),
                items = summary.items,
                api_calls = summary.api_call_total(),
                failures = summary.failures.len(),
                duration_secs = summary.duration_secs,
                "run finished"
            ),
        }
        summary
    }

    /// Renders `/metrics` from every job's published value and the runtime's own metrics, once.
    pub async fn render(&self) {
        let _one_at_a_time = self.render_lock.lock().await;
        let published: Vec<Published> = self.slots.iter().filter_map(|s| lock(&s.published).clone()).collect();
        let status = self.status();
        let calls = self.aws.stats.snapshot();
        let metrics_requested = self.aws.stats.metrics_requested();
        let rendered = tokio::task::spawn_blocking(move || {
            let mut out = Exposition::new();
            metrics::render_self(&mut out, &status, &calls, metrics_requested);
            for p in &published {
                p.render(&mut out);
            }
            let rendered = out.finish();
            // What the run and the rendering freed goes back to the system now, on every thread.
            crate::memory::release_freed();
            rendered
        })
        .await;
        match rendered {
            Ok(r) => self.state.set_metrics(r),
            Err(e) => error!(error = %e, "rendering /metrics failed; keeping the previous body"),
        }
    }

    /// When the job in `slot` first runs after a start: at once when it never ran or a scheduled time passed
    /// while the daemon was down (nothing is missed), else at its next scheduled time after its last run (a
    /// restart repeats nothing).
    async fn first_run(&self, slot: &Slot) -> DateTime<Utc> {
        let now = self.clock.now();
        match self.store.last_run_started(slot.name).await {
            Ok(Some(last)) => slot.schedule.next_after(last).max(now),
            Ok(None) => now,
            Err(error) => {
                warn!(collector = slot.name, %error, "cannot read the job's last run; running it now");
                now
            }
        }
    }

    /// Runs the job in `slot` on its schedule until `cancel`. `after`: wait for it first (the inventory's
    /// first run on an empty database); `done` is told when the first run has ended.
    async fn schedule_loop(
        &self,
        slot: &Slot,
        cancel: CancellationToken,
        after: Option<watch::Receiver<bool>>,
        done: Option<watch::Sender<bool>>,
    ) {
        let name = slot.name;
        let mut next = self.first_run(slot).await;
        if let Some(mut after) = after {
            info!(collector = name, "first run waits for the first inventory run");
            tokio::select! {
                // An error means the inventory task has ended: go on without it.
                _ = after.wait_for(|ready| *ready) => {}
                _ = cancel.cancelled() => return,
            }
            next = self.clock.now();
        }
        loop {
            lock(&slot.status).next_run = Some(next);
            if next > self.clock.now() {
                info!(collector = name, next = %next.to_rfc3339(), "next run scheduled");
                tokio::select! {
                    _ = self.clock.sleep_until(next) => {}
                    _ = cancel.cancelled() => return,
                }
            }
            let span = info_span!("collection_cycle", collector = name);
            self.run_slot(slot, self.clock.now(), &cancel).instrument(span).await;
            if let Some(done) = &done {
                done.send_replace(true);
            }
            if cancel.is_cancelled() {
                return;
            }
            let now = self.clock.now();
            next = lock(&slot.status).next_run.unwrap_or_else(|| slot.schedule.next_after(now));
        }
    }

    /// Runs every job on its schedule until `shutdown`; returns when every job has stopped (a write in
    /// flight completes first).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        // On a database without any resource yet, the jobs that read the inventory would find nothing: their
        // first run waits for the inventory's first run.
        let inventory = self.slots.iter().position(|s| s.name == crate::jobs::inventory::NAME);
        let empty = match self.store.inventory_counts().await {
            Ok(counts) => counts.is_empty(),
            Err(error) => {
                warn!(%error, "cannot read the inventory counts; assuming an empty inventory");
                true
            }
        };
        let (inventory_done, inventory_ready) = watch::channel(false);
        let mut tasks = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            info!(collector = slot.name, schedule = %slot.schedule, "job enabled");
            let after = (inventory.is_some() && empty && slot.reads_inventory).then(|| inventory_ready.clone());
            let done = (Some(i) == inventory).then(|| inventory_done.clone());
            let rt = self.clone();
            let cancel = shutdown.clone();
            tasks.push(tokio::spawn(async move { rt.schedule_loop(&rt.slots[i], cancel, after, done).await }));
        }
        drop(inventory_done);
        if tasks.is_empty() {
            warn!("no job is enabled; serving what the database holds");
        }
        tasks.push(tokio::spawn(Self::beat(self.store.clone(), self.clock.clone(), shutdown.clone())));
        for t in tasks {
            if let Err(e) = t.await {
                error!(error = %e, "a job's schedule task ended abnormally");
            }
        }
    }
}

impl Runtime {
    /// Until `shutdown`: every [`crate::store::HEARTBEAT`], marks this process's open runs alive, and closes
    /// the runs of processes that stopped beating (a daemon killed while another one shares the database).
    async fn beat(store: Store, clock: Clock, shutdown: CancellationToken) {
        let period = chrono::Duration::from_std(crate::store::HEARTBEAT).unwrap_or_default();
        let mut next = clock.now() + period;
        loop {
            tokio::select! {
                _ = clock.sleep_until(next) => {}
                _ = shutdown.cancelled() => return,
            }
            let now = clock.now();
            if let Err(error) = store.heartbeat(now).await {
                warn!(%error, "cannot mark the open runs alive");
            }
            match store.close_abandoned_runs(now).await {
                Ok(0) => {}
                Ok(closed) => warn!(runs = closed, "closed runs whose process stopped as failed"),
                Err(error) => warn!(%error, "cannot close abandoned runs"),
            }
            // At a fixed rate, so beats do not drift by the time their writes take; after a stall (a suspended
            // machine) the next beat is a period from now, not a burst catching up.
            next += period;
            if next < clock.now() {
                next = clock.now() + period;
            }
        }
    }
}

/// The text of a caught panic.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_up_to_ten_minutes() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(backoff(u32::MAX).as_secs(), 600);
    }

    #[test]
    fn a_failed_job_is_retried_after_its_backoff_but_never_later_than_its_schedule() {
        let every5 = Schedule::Every(Duration::from_secs(300));
        let t = at("2026-12-07T10:00:00Z");
        assert_eq!(next_run(&every5, t, 0), at("2026-12-07T10:05:00Z"));
        assert_eq!(next_run(&every5, t, 1), at("2026-12-07T10:00:10Z"));
        assert_eq!(next_run(&every5, t, 3), at("2026-12-07T10:00:40Z"));
        assert_eq!(next_run(&every5, t, 6), at("2026-12-07T10:05:00Z"));
    }
}
