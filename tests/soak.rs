//! A short soak on the paused clock: half a simulated day of inventory and rules cycles every 5 minutes against
//! moto, a volume created and one deleted every cycle (snapshots and Elastic IPs too). Once the churn is in
//! its steady state, nothing the daemon holds grows with it: the same series, the same tasks, no more file
//! descriptors, the store's live resources exactly what moto holds, and every churned resource kept once.
//! (The 30-day run and its memory curve: `cargo bench --bench soak`, docs/benchmarks.md.)

mod common;

use common::soak::{Sample, Soak, CYCLES_PER_DAY};

#[tokio::test(start_paused = true)]
async fn half_a_day_of_churn_grows_nothing_the_daemon_holds() {
    let _hold = common::hold_time();
    let mut soak = Soak::begin().await;
    let mut samples: Vec<Sample> = Vec::new();
    // Every two hours: 24 cycles, a whole number of churn periods, so each sample sees the same mix.
    while soak.cycles() < CYCLES_PER_DAY / 2 {
        soak.cycle().await;
        if soak.cycles().is_multiple_of(24) {
            let s = soak.sample().await;
            assert_eq!(s.live, soak.alive(), "the store's live resources are moto's: {s:?}");
            let (created, _) = soak.churned();
            assert_eq!(s.resource_rows as u64, created, "one row per resource ever seen: {s:?}");
            eprintln!("{s:?}");
            samples.push(s);
        }
    }
    let (created, deleted) = soak.churned();
    assert!(deleted > 100, "the churn deleted {deleted} of {created}");
    // The first sample is the first steady one (the churned resources live 24 cycles).
    let steady = &samples[1..];
    let first = &steady[0];
    for s in steady {
        assert_eq!(s.series, first.series, "series grew with churn: {first:?} -> {s:?}");
        assert_eq!(s.open_findings, first.open_findings, "open findings: {first:?} -> {s:?}");
        // A connection's task may be alive or not at the moment of the sample.
        assert!(s.tasks <= first.tasks + 2, "tasks: {first:?} -> {s:?}");
        assert!(s.fds <= first.fds + 2, "file descriptors: {first:?} -> {s:?}");
    }
    soak.end().await;
}
