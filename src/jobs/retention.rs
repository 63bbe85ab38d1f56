//! Retention: every hour, history older than `[database] retention_days` is deleted from the store, a small
//! batch per transaction with a pause between batches, so the prune never holds the database for the other
//! jobs (see [`crate::store::Pruned`] for what goes and what stays).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;

use super::{Job, JobContext, JobOutput, Registration, Render};
use crate::config::{Config, Schedule};
use crate::metrics::{labels, Exposition, Labels};
use crate::store::{Pruned, RunOutcome};

pub const NAME: &str = "retention";
/// Rows deleted per transaction.
pub const BATCH: u32 = 1000;
/// The pause between two batches, so writers waiting for the database get their turn.
pub const PAUSE: Duration = Duration::from_millis(20);
/// How often the prune runs.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Always registered: every deployment keeps `retention_days` of history.
pub fn register(config: &Config) -> Option<Registration> {
    Some(Registration::new(
        Schedule::Every(EVERY),
        RetentionJob { days: config.database.retention_days, pruned: BTreeMap::new() },
    ))
}

pub struct RetentionJob {
    days: u32,
    /// Rows deleted since start, by table.
    pruned: BTreeMap<&'static str, u64>,
}

/// What one prune deleted, by table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionRun {
    pub cutoff: Option<chrono::DateTime<chrono::Utc>>,
    pub deleted: BTreeMap<&'static str, u64>,
}

/// Rows deleted since start, by table.
pub struct RetentionView(pub BTreeMap<&'static str, u64>);

impl Render for RetentionView {
    fn render(&self, out: &mut Exposition) {
        let family = Family::<Labels, Counter>::default();
        for p in Pruned::ALL {
            let n = self.0.get(p.table()).copied().unwrap_or(0);
            family.get_or_create(&labels(&[("table", p.table())])).inc_by(n);
        }
        out.cloudwarden().register(
            "retention_deleted_rows",
            "Rows deleted for being older than retention_days, since start, by table",
            family,
        );
    }
}

impl Job for RetentionJob {
    fn name(&self) -> &'static str {
        NAME
    }

    fn collects(&self) -> bool {
        false
    }

    fn restore<'a>(&'a mut self, _ctx: &'a JobContext) -> BoxFuture<'a, Result<Option<super::Published>, String>> {
        Box::pin(async move { Ok(Some(std::sync::Arc::new(RetentionView(self.pruned.clone())) as super::Published)) })
    }

    fn run<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, JobOutput> {
        Box::pin(async move {
            let cutoff = ctx.now - chrono::Duration::days(i64::from(self.days));
            let mut run = RetentionRun { cutoff: Some(cutoff), deleted: BTreeMap::new() };
            let mut error = None;
            'tables: for what in Pruned::ALL {
                loop {
                    if ctx.cancel.is_cancelled() {
                        break 'tables;
                    }
                    match ctx.store.prune_batch(what, cutoff, BATCH).await {
                        Ok(n) => {
                            *run.deleted.entry(what.table()).or_default() += n;
                            *self.pruned.entry(what.table()).or_default() += n;
                            if n < u64::from(BATCH) {
                                break;
                            }
                            tokio::time::sleep(PAUSE).await;
                        }
                        Err(e) => {
                            error = Some(format!("pruning {}: {e}", what.table()));
                            break 'tables;
                        }
                    }
                }
            }
            let items = run.deleted.values().sum();
            let mut out = match (&error, ctx.cancel.is_cancelled()) {
                (Some(e), _) => JobOutput::failed(e.clone()),
                (None, true) => JobOutput::cancelled(),
                (None, false) => JobOutput::new(RunOutcome::Success, items),
            };
            out.items = items;
            out.with_detail(run).publish(RetentionView(self.pruned.clone()))
        })
    }
}
