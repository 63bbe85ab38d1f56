//! The daemon: the store, the AWS clients, the HTTP server and the job runtime, started and stopped together.
//! It holds no job's state: jobs live in the [`Runtime`], each in its own slot.

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use collector::AwsContext;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::jobs;
use crate::runtime::{Clock, CycleSummary, Runtime};
use crate::server::{self, AppState};
use crate::store::Store;

/// The long-lived parts of the daemon.
#[derive(Clone)]
pub struct Daemon {
    pub config: Arc<Config>,
    pub store: Store,
    pub aws: AwsContext,
    pub state: AppState,
    pub runtime: Arc<Runtime>,
}

/// Database connections the HTTP API may hold at once, apart from the jobs' pool.
pub const API_CONNECTIONS: u32 = 2;

impl Daemon {
    /// Opens the database (applying migrations), prepares the AWS clients and the jobs the configuration
    /// enables, and renders `/metrics` from what the database holds. Makes no AWS call.
    pub async fn new(config: Config) -> anyhow::Result<Daemon> {
        Daemon::with_clock(config, Clock::system()).await
    }

    /// [`Daemon::new`] on another clock (tests run schedules on tokio's paused time).
    pub async fn with_clock(config: Config, clock: Clock) -> anyhow::Result<Daemon> {
        let store = Store::open_configured(&config.database, config.database.max_connections).await?;
        let closed = store.close_abandoned_runs(clock.now()).await?;
        if closed > 0 {
            warn!(runs = closed, "closed runs left open by an earlier process as failed");
        }
        let aws = AwsContext::new(&config.aws).await;
        // The API has a pool of its own: slow API clients wait for each other, never for the jobs' queries.
        let api_store = if config.api.tokens.is_empty() {
            store.clone()
        } else {
            Store::open_configured(&config.database, API_CONNECTIONS).await?
        };
        let state = AppState::default().with_api(api_store, config.api.tokens.clone(), clock.clone());
        Daemon::assemble(config, store, aws, state, jobs::registered, clock).await
    }

    /// A daemon over the jobs `register` builds from the configuration (tests register jobs of their own).
    pub async fn assemble(
        config: Config,
        store: Store,
        aws: AwsContext,
        state: AppState,
        register: impl FnOnce(&Config) -> Vec<jobs::Registration>,
        clock: Clock,
    ) -> anyhow::Result<Daemon> {
        let jobs = register(&config);
        let runtime = Runtime::new(store.clone(), aws.clone(), clock, state.clone(), jobs).await?;
        let runtime = Arc::new(runtime);
        let state = state.with_status(runtime.clone()).with_metrics_token(config.server.metrics_token.clone());
        Ok(Daemon { config: Arc::new(config), store, aws, state, runtime })
    }

    /// The enabled jobs' names, in registration order.
    pub fn jobs(&self) -> Vec<&'static str> {
        self.runtime.names()
    }

    /// One run of the job `name` for time `now`, with its run row, counters and a new `/metrics`.
    ///
    /// # Panics
    /// When no enabled job has that name (a caller's mistake, not an input's).
    pub async fn run_job(&self, name: &str, now: DateTime<Utc>, cancel: &CancellationToken) -> CycleSummary {
        match self.runtime.run_job(name, now, cancel).await {
            Some(summary) => summary,
            None => panic!("no enabled job is named {name:?} (enabled: {:?})", self.jobs()),
        }
    }

    /// Serves HTTP and runs every enabled job until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let (addr, server) =
            server::serve(self.config.listen, self.state.clone(), self.config.server.clone(), shutdown.clone())
                .await
                .with_context(|| format!("cannot listen on {}", self.config.listen))?;
        info!(%addr, "serving /metrics, /healthz, /readyz, /status and /api/v1/findings");
        let jobs = tokio::spawn(self.runtime.clone().run(shutdown.clone()));
        shutdown.cancelled().await;
        info!("shutting down: waiting for writes in flight");
        if let Err(e) = jobs.await {
            error!(error = %e, "the job runtime ended abnormally");
        }
        server.await.context("server task")?.context("server")?;
        self.store.close().await;
        info!("stopped");
        Ok(())
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(error) => {
                    error!(%error, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => info!("SIGINT received"),
                _ = term.recv() => info!("SIGTERM received"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        token.cancel();
    });
}
