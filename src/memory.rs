//! Giving freed memory back to the system after a run.
//!
//! The daemon's allocator (mimalloc) keeps per-thread heaps. A run builds large short-lived structures (the
//! CloudWatch job's series, the rules engine's findings) on the runtime's threads and often frees them on
//! another (the blocking task that encodes them): such blocks go back to the heap of the thread that allocated
//! them only when that thread next looks, and their pages stay resident until then, for as long as the thread
//! has nothing to allocate. So after each run the runtime calls [`release_freed`], and every runtime thread
//! collects its heap once the next time it goes idle ([`on_park`], the runtime's park hook): the freed pages
//! are returned at once, whichever thread built or freed them. Without mimalloc as the global allocator (the
//! tests) this only tidies mimalloc's own empty heaps.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bumped after each run whose freed memory should be returned.
static GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The generation this thread last collected at.
    static COLLECTED: Cell<u64> = const { Cell::new(0) };
}

/// Asks every runtime thread to return its freed pages when it next goes idle, and returns this thread's now.
pub fn release_freed() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    collect();
}

/// The runtime's park hook: collects this thread's heap once per [`release_freed`].
pub fn on_park() {
    let generation = GENERATION.load(Ordering::Relaxed);
    if COLLECTED.with(|c| c.replace(generation)) != generation {
        collect();
    }
}

/// Returns this thread's freed pages, including blocks other threads freed, and purges empty segments.
pub fn collect() {
    COLLECTED.with(|c| c.set(GENERATION.load(Ordering::Relaxed)));
    // SAFETY: mi_collect has no preconditions; it only walks and trims this thread's heap and the arenas.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Limits glibc's malloc to one arena, unless `MALLOC_ARENA_MAX` says otherwise. Call it first in `main`.
///
/// Rust's allocations go to mimalloc, but SQLite allocates with the C library's malloc, on sqlx's worker
/// thread of each connection, and glibc gives each such thread an arena of its own. Their pages, freed but
/// kept, made the resident memory of a 30-day soak grow 13% after the first day, while the live heap and
/// SQLite's own figure stayed flat; with one arena it stayed within about 5% (docs/benchmarks.md, soak).
/// SQLite's allocations are small and few, so they do not contend on one arena.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a parameter of glibc's allocator; it is called before any other thread
        // exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// The daemon's tokio runtime: multi-threaded, with [`on_park`] as its park hook.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().on_thread_park(on_park).build()
}
