//! Crash points for the kill tests: with [`PAUSE_ENV`] naming a point, the process logs
//! `paused at <point>` and waits there until it is killed, so a test can kill it exactly there (in the
//! middle of a write transaction, between a cleanup's action row and its call). Without the variable, a
//! point does nothing.

use tracing::warn;

/// The environment variable naming the point to pause at.
pub const PAUSE_ENV: &str = "CLOUDWARDEN_PAUSE_AT";

/// With [`PAUSE_ENV`] naming `point`, waits here until the process is killed.
pub async fn pause_point(point: &str) {
    if std::env::var(PAUSE_ENV).is_ok_and(|v| v == point) {
        warn!(point, "paused at {point} ({PAUSE_ENV}): waiting to be killed");
        std::future::pending::<()>().await;
    }
}
