//! The database: SQLite by default (one file, WAL mode), PostgreSQL for HA. One code path serves both through
//! sqlx's `Any` driver; the schema lives in `migrations/<db>/`, embedded and applied at start-up.
//!
//! What it keeps: accounts, every resource ever seen with its first/last sighting (a resource that
//! disappears is marked gone, never deleted), one row per collection run, and the rules' findings with
//! their history.

mod billing;
mod cleanup;
mod compliance;
mod costs;
mod findings;
mod inventory;
mod logs;
mod reports;
mod retention;
mod runs;
mod terraform;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Transaction};

pub use billing::{BillingFile, BillingGroup, BillingTotal};
pub use cleanup::{
    ActionCount, Audit, AuditRow, CleanupCandidate, Exemption, NewPlan, Plan, PlanChange, PlanFilter, PlanState,
};
pub use compliance::ComplianceDay;
pub use costs::{CostDay, CostFetchRow};
pub use findings::{FindingCount, FindingFilter, FindingsWrite, RuleResource, StoredFinding};
pub use inventory::{InventoryWrite, LiveResource, ScopeCount, StoredResource};
pub use logs::PatternCount;
pub use reports::{DeliveryRecord, DeliveryState};
pub use retention::Pruned;
pub use runs::{RunOutcome, RunRow, ABANDONED_AFTER, HEARTBEAT};
pub use terraform::StoredTfResource;

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Rows per multi-row INSERT statement ([`insert_values`]). PostgreSQL: 500 (at 14 parameters a row,
    /// 7,000 parameters, well under its limit). SQLite: 128, smaller statements: it binds anonymous `?`
    /// parameters in order, and would look each `$N` up in a list as long as the statement's parameters,
    /// which makes big statements quadratic.
    pub(crate) fn insert_chunk(self) -> usize {
        match self {
            Backend::Sqlite => 128,
            Backend::Postgres => 500,
        }
    }
}

/// A multi-row INSERT: `head` (the statement up to and including `VALUES `) followed by `rows` tuples of
/// `columns` parameters each: `(?,?),(?,?)` on SQLite (anonymous parameters, bound in order), `($1,$2),($3,$4)`
/// on PostgreSQL. Bind the values row by row, column by column.
pub(crate) fn insert_values(head: &str, rows: usize, columns: usize, backend: Backend) -> String {
    let mut sql = String::with_capacity(head.len() + rows * columns * 5);
    sql.push_str(head);
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ",(" });
        for c in 0..columns {
            if c > 0 {
                sql.push(',');
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&(r * columns + c + 1).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: expected sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("cannot open database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error(
        "the SQLite database {path} does not exist: a configured database file is never created silently (it may \
         have been deleted, moved or mistyped); for a new deployment at this path set `[database] create_if_missing = true`"
    )]
    Missing { path: String },
    #[error("cannot apply migrations to {url}: {source}")]
    Migrate { url: String, source: sqlx::migrate::MigrateError },
    #[error("cannot lock the SQLite database {path} to apply its migrations: {source}")]
    MigrationLock { path: String, source: std::io::Error },
    #[error("database query failed ({what}): {source}")]
    Query { what: &'static str, source: sqlx::Error },
    #[error("stored value is invalid ({what}): {detail}")]
    Corrupt { what: &'static str, detail: String },
}

/// Stored amounts whose sum leaves the decimal range: amounts that large are rejected when read, so they
/// can only be rows stored before that check.
impl From<collector::money::Overflow> for StoreError {
    fn from(e: collector::money::Overflow) -> StoreError {
        StoreError::Corrupt { what: "cost sum", detail: e.to_string() }
    }
}

pub(crate) fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// A handle on the database, cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// This handle's name on the run rows it opens (see [`Store::heartbeat`]); each `connect` has its own.
    instance: std::sync::Arc<str>,
}

/// A name for this connection of this process, unique among the processes sharing a database: the process
/// id, the time and a count of the connections it made.
fn instance_name() -> std::sync::Arc<str> {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{:x}-{n}", std::process::id(), nanos).into()
}

/// Removes the password from a URL before it is shown anywhere: the one after `user:` and before the last
/// `@`, and the value of every `password` query parameter (`?password=...`, `&password=...`, any case).
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &base[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &base[..s + 3], &creds[..c], &base[at..]),
                None => base.to_string(),
            }
        }
        _ => base.to_string(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword") => {
                    format!("{k}=***")
                }
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// Takes an exclusive lock on the file at `path`, waiting for it; released when the returned file is dropped.
async fn lock_file(path: String) -> Result<std::fs::File, StoreError> {
    tokio::task::spawn_blocking(move || {
        let locked = std::fs::File::open(&path).and_then(|f| f.lock().map(|()| f));
        locked.map_err(|source| StoreError::MigrationLock { path, source })
    })
    .await
    .map_err(|e| StoreError::MigrationLock { path: String::new(), source: std::io::Error::other(e.to_string()) })?
}

impl Store {
    /// Opens (and for SQLite creates when missing) the database, then applies pending migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        Store::open(url, max_connections, true).await
    }

    /// Opens the database of the configuration: a missing SQLite file is created only when
    /// `create_if_missing` (the default path, or configured so), else it is [`StoreError::Missing`].
    pub async fn open_configured(
        db: &crate::config::DatabaseConfig,
        max_connections: u32,
    ) -> Result<Store, StoreError> {
        Store::open(&db.url, max_connections, db.create_if_missing).await
    }

    /// Opens the database, creating a missing SQLite file when `create`, then applies pending migrations.
    pub async fn open(url: &str, max_connections: u32, create: bool) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let shown = redact(url);
        let mut file = None;
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            let in_memory = path.is_empty() || path.starts_with(":memory:") || rest.contains("mode=memory");
            if !in_memory {
                file = Some(path.to_string());
            }
            if !create && !in_memory && !rest.contains("mode=") && !std::path::Path::new(path).exists() {
                return Err(StoreError::Missing { path: path.to_string() });
            }
            // Create the file (when allowed) unless the URL chose a mode itself.
            let mode = if create { "rwc" } else { "rw" };
            let url = if rest.contains("mode=") {
                url.to_string()
            } else if rest.contains('?') {
                format!("{url}&mode={mode}")
            } else {
                format!("{url}?mode={mode}")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::UnsupportedUrl(shown));
        };
        let options =
            AnyConnectOptions::from_str(&url).map_err(|source| StoreError::Connect { url: shown.clone(), source })?;
        let mut pool =
            AnyPoolOptions::new().max_connections(max_connections.max(1)).acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            // A local file: nothing to test before handing a connection out, nothing to recycle. (This also
            // keeps the pool from arming timers around connections it already has.)
            pool = pool.test_before_acquire(false).idle_timeout(None).max_lifetime(None);
        }
        let pool = pool
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect { url: shown.clone(), source })?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        // sqlx takes no lock around SQLite migrations: two processes opening a new file at once (the daemon
        // and a CLI command, say) would both apply the first migration, and the second would fail on "table
        // already exists". An exclusive OS lock on the database file (flock, which SQLite's own byte-range
        // locks do not see) makes the second wait, then find every migration applied.
        let _lock = match file {
            Some(path) => Some(lock_file(path).await?),
            None => None,
        };
        migrator.run(&pool).await.map_err(|source| StoreError::Migrate { url: shown, source })?;
        Ok(Store { pool, backend, instance: instance_name() })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a transaction that writes; `what` names it in errors. Every writer transaction starts here.
    ///
    /// SQLite: `BEGIN IMMEDIATE`, which takes the write lock at once, waiting for it up to the busy timeout.
    /// A plain (deferred) transaction that reads before it writes cannot take the write lock while another
    /// connection holds it: in WAL mode its upgrade fails at once with "database is locked", whatever the
    /// busy timeout. PostgreSQL: a plain `BEGIN`.
    pub(crate) async fn begin_write(&self, what: &'static str) -> Result<Transaction<'static, Any>, StoreError> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        };
        tx.map_err(q(what))
    }

    /// Closes every connection, waiting for the ones in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://app:s3cret@db:5432/cw"), "postgres://app:***@db:5432/cw");
        assert_eq!(redact("postgres://app@db/cw"), "postgres://app@db/cw");
        assert_eq!(redact("sqlite://cloudwarden.db"), "sqlite://cloudwarden.db");
        // A password holding `@` or `:`, and passwords in the query.
        assert_eq!(redact("postgres://app:p@ss:w0rd@db/cw"), "postgres://app:***@db/cw");
        assert_eq!(
            redact("postgres://db/cw?user=app&password=s3cret&sslmode=require"),
            "postgres://db/cw?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact("postgres://a:b@db/cw?PASSWORD=x&sslpassword=y"),
            "postgres://a:***@db/cw?PASSWORD=***&sslpassword=***"
        );
        assert_eq!(redact("postgres://db/cw?passwordless=1"), "postgres://db/cw?passwordless=1");
    }

    #[test]
    fn multi_row_inserts() {
        let head = "INSERT INTO t (a, b, c) VALUES ";
        assert_eq!(insert_values(head, 2, 3, Backend::Sqlite), format!("{head}(?,?,?),(?,?,?)"));
        assert_eq!(insert_values(head, 2, 3, Backend::Postgres), format!("{head}($1,$2,$3),($4,$5,$6)"));
        assert_eq!(insert_values(head, 1, 1, Backend::Postgres), format!("{head}($1)"));
    }
}
