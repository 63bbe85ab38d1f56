//! A PostgreSQL server of the test's own: `initdb` in a temporary folder, its own port on 127.0.0.1, stopped
//! and started by the test, never the machine's shared server. As root, the server runs as the `postgres`
//! user (PostgreSQL refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sqlx::{Connection, Executor};

/// A database of its own for one test on the shared test server (`CLOUDWARDEN_TEST_POSTGRES_URL`), named
/// after `label`, the process and the time; dropped (connections and all) by [`TempDatabase::drop`].
pub struct TempDatabase {
    admin: sqlx::PgConnection,
    name: String,
    /// The new database's URL: the server's URL with its database name replaced, its options kept.
    pub url: String,
}

impl TempDatabase {
    /// `None` when no test server is configured (see [`super::postgres_url`]).
    pub async fn create(label: &str) -> Option<TempDatabase> {
        let base = super::postgres_url()?;
        Some(TempDatabase::on(&base, label).await)
    }

    /// A new database on the server of `base`.
    pub async fn on(base: &str, label: &str) -> TempDatabase {
        let (prefix, query) = base.split_once('?').unwrap_or((base, ""));
        let server = &prefix[..prefix.rfind('/').expect("postgres URL with a database")];
        let stamp = chrono::Utc::now().timestamp_micros();
        let name = format!("cloudwarden_{label}_{}_{stamp}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(base).await.expect("connect to CLOUDWARDEN_TEST_POSTGRES_URL");
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        let url = if query.is_empty() { format!("{server}/{name}") } else { format!("{server}/{name}?{query}") };
        TempDatabase { admin, name, url }
    }

    pub async fn drop(mut self) {
        self.admin.execute(format!("DROP DATABASE {} WITH (FORCE)", self.name).as_str()).await.unwrap();
    }
}

/// Where `initdb` and `pg_ctl` are: on the PATH, or in the newest `/usr/lib/postgresql/<version>/bin`.
fn pg_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|d| d.join("initdb").is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// Initialises and starts a server; `None` (with the reason printed) when PostgreSQL's server programs are
    /// not installed, which fails under `CI=true`.
    pub fn start() -> Option<PrivatePostgres> {
        let Some(bin) = pg_bin() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but PostgreSQL's server programs (initdb, pg_ctl) are not installed"
            );
            eprintln!("SKIPPED: PostgreSQL's server programs (initdb, pg_ctl) are not installed");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        if super::is_root() {
            // The server's user must own its folder and be able to reach it.
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(status.success(), "chown the temporary folder to postgres");
            std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        let pg = PrivatePostgres { bin, data, port: super::free_port(), _dir: dir };
        let out = pg.command("initdb").args(["-A", "trust", "-U", "postgres", "-D"]).arg(&pg.data).output().unwrap();
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        pg.resume();
        Some(pg)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if super::is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> &Path {
        &self.data
    }

    /// Starts the server and waits until it accepts connections.
    pub fn resume(&self) {
        let options = format!("-p {} -c listen_addresses=127.0.0.1 -k {}", self.port, self.data().display());
        let log = self.data().join("server.log");
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-l"])
            .arg(&log)
            .args(["-o", &options, "-w", "start"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stops the server at once (`-m fast`: open connections are closed).
    pub fn stop(&self) {
        let out =
            self.command("pg_ctl").arg("-D").arg(self.data()).args(["-m", "fast", "-w", "stop"]).output().unwrap();
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").arg("-D").arg(self.data()).args(["-m", "immediate", "-w", "stop"]).output();
    }
}
