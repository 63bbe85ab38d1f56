//! The 30-day soak: the daemon's scheduler on tokio's paused clock, an inventory and a rules cycle every
//! 5 minutes against a local moto (127.0.0.1), a volume created and one deleted every cycle, snapshots and
//! Elastic IPs too (tests/common/soak.rs). Prints, every 6 simulated hours, this process's resident memory
//! (mimalloc, the daemon's allocator) next to the bytes live on the heap and the memory SQLite holds, the
//! series of `/metrics`, the runtime's tasks, open file descriptors
//! and the store's rows; then how far resident memory moved after the first day. Run with
//! `cargo bench --bench soak`; `SOAK_DAYS` (default 30) shortens it.

#[path = "../tests/common/mod.rs"]
mod common;

/// mimalloc (the daemon's allocator), counting the bytes live on the heap: resident memory that grows while
/// the live heap does not is the allocator's keeping, not the daemon's.
struct Counting;

static LIVE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

// SAFETY: every call is passed on to mimalloc unchanged; only a counter is updated besides.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, std::sync::atomic::Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size() as i64, std::sync::atomic::Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, std::sync::atomic::Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

use common::soak::{Soak, CYCLES_PER_DAY};

fn main() {
    // As the daemon's `main` does.
    cloudwarden::memory::limit_malloc_arenas();
    let days: u64 = std::env::var("SOAK_DAYS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    rt.block_on(async {
        let _hold = common::hold_time();
        let mut soak = Soak::begin().await;
        println!("| day | cycles | resident | live heap | SQLite | series | /metrics bytes | tasks | fds | live | rows | open findings | real s |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let mut after_day1 = Vec::new();
        while soak.cycles() < days * CYCLES_PER_DAY {
            soak.cycle().await;
            if soak.cycles().is_multiple_of(CYCLES_PER_DAY / 4) {
                let s = soak.sample().await;
                println!(
                    "| {:.2} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
                    s.day,
                    s.cycle,
                    s.rss_kib as f64 / 1024.0,
                    LIVE.load(std::sync::atomic::Ordering::Relaxed) as f64 / (1024.0 * 1024.0),
                    s.sqlite_kib as f64 / 1024.0,
                    s.series,
                    s.metrics_bytes,
                    s.tasks,
                    s.fds,
                    s.live,
                    s.resource_rows,
                    s.open_findings,
                    s.elapsed_secs
                );
                assert_eq!(s.live, soak.alive(), "the store's live resources are moto's");
                if s.day >= 1.0 {
                    after_day1.push(s);
                }
            }
        }
        let (created, deleted) = soak.churned();
        println!("churn: {created} resources created, {deleted} deleted");
        if let (Some(lo), Some(hi)) =
            (after_day1.iter().map(|s| s.rss_kib).min(), after_day1.iter().map(|s| s.rss_kib).max())
        {
            let first = after_day1[0].rss_kib;
            println!(
                "resident memory after day 1: {:.1} to {:.1} MiB, {:.1}% of the day-1 figure ({:.1} MiB) at most",
                lo as f64 / 1024.0,
                hi as f64 / 1024.0,
                100.0 * (hi.abs_diff(first).max(lo.abs_diff(first))) as f64 / first as f64,
                first as f64 / 1024.0
            );
            let series: std::collections::BTreeSet<usize> = after_day1.iter().map(|s| s.series).collect();
            println!("series after day 1: {series:?}");
        }
        soak.end().await;
    });
}
