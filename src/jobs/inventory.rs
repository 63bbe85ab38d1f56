//! The inventory job: every resource of every account and region, stored with its history. It publishes the
//! live inventory per scope, the accounts it reached and the log groups' facts.

use collector::aws::inventory::{self, InventorySettings};
use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;

use super::{Job, JobContext, JobOutput, Published, Registration, Render};
use crate::config::check::{collector, key, Checker};
use crate::config::schema::InventorySection;
use crate::config::{Config, Job as Scheduled};
use crate::metrics::{labels, Exposition};
use crate::store::{InventoryWrite, RunOutcome, ScopeCount, StoreError};

pub const NAME: &str = "inventory";

pub fn register(config: &Config) -> Option<Registration> {
    let j = config.inventory.as_ref()?;
    Some(Registration::new(j.schedule.clone(), Inventory { settings: j.settings.clone() }))
}

pub struct Inventory {
    pub settings: InventorySettings,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct InventoryDetail {
    pub write: InventoryWrite,
    /// Live inventory after the run, per (account, region, type).
    pub inventory: Vec<ScopeCount>,
}

/// (account, region, name, retention days, stored bytes) of a log group.
pub type LogGroupFacts = (String, String, String, Option<i64>, Option<i64>);

/// What `/metrics` shows of the inventory.
#[derive(Debug, Clone, Default)]
pub struct InventoryView {
    pub counts: Vec<ScopeCount>,
    /// (configured name, account id).
    pub accounts: Vec<(String, String)>,
    /// Per live log group.
    pub log_groups: Vec<LogGroupFacts>,
}

impl InventoryView {
    /// The view of what the store holds; `accounts` when the run reached some, else the stored ones of the
    /// configured accounts.
    async fn read(ctx: &JobContext, accounts: Vec<(String, String)>) -> Result<InventoryView, StoreError> {
        let accounts = if accounts.is_empty() {
            let configured = |name: &String| ctx.aws.accounts.iter().any(|a| &a.spec.name == name);
            ctx.store.accounts().await?.into_iter().filter(|(name, _)| configured(name)).collect()
        } else {
            accounts
        };
        Ok(InventoryView {
            counts: ctx.store.inventory_counts().await?,
            accounts,
            log_groups: ctx.store.log_groups().await?,
        })
    }
}

impl Job for Inventory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn restore<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, Result<Option<Published>, String>> {
        Box::pin(async move {
            let view = InventoryView::read(ctx, Vec::new()).await.map_err(|e| e.to_string())?;
            Ok(Some(std::sync::Arc::new(view) as Published))
        })
    }

    fn run<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, JobOutput> {
        Box::pin(run(ctx, &self.settings))
    }
}

async fn run(ctx: &JobContext, settings: &InventorySettings) -> JobOutput {
    let observed_at = ctx.clock.now();
    let report = tokio::select! {
        r = inventory::collect(&ctx.aws, settings) => r,
        _ = ctx.cancel.cancelled() => return JobOutput::cancelled(),
    };
    let outcome = if report.failures.is_empty() {
        RunOutcome::Success
    } else if report.complete_scopes.is_empty() {
        RunOutcome::Failed
    } else {
        RunOutcome::Partial
    };
    let mut out = JobOutput::new(outcome, report.resources.len() as u64);
    out.failures = report.failures.clone();
    let mut detail = InventoryDetail::default();
    if out.outcome != RunOutcome::Failed {
        let roles = ctx.aws.accounts.iter().map(|a| (a.spec.name.clone(), a.spec.role_arn.clone())).collect();
        // Not cancellable: a shutdown waits for this write.
        match ctx.store.record_inventory(&report, &roles, observed_at).await {
            Ok(w) => detail.write = w,
            Err(e) => {
                out.outcome = RunOutcome::Failed;
                out.error = Some(e.to_string());
            }
        }
    }
    match InventoryView::read(ctx, report.accounts.clone()).await {
        Ok(view) => {
            detail.inventory = view.counts.clone();
            out = out.publish(view);
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the inventory back; /metrics keeps the previous inventory");
        }
    }
    out.with_detail(detail)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    account: String,
    region: String,
    resource_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabels {
    account: String,
    name: String,
}

impl Render for InventoryView {
    fn render(&self, out: &mut Exposition) {
        let reg = out.cloudwarden();
        let resources = Family::<ScopeLabels, Gauge>::default();
        let untagged = Family::<ScopeLabels, Gauge>::default();
        for c in &self.counts {
            let l = ScopeLabels {
                account: c.account_id.clone(),
                region: c.region.clone(),
                resource_type: c.resource_type.clone(),
            };
            resources.get_or_create(&l).set(c.total);
            untagged.get_or_create(&l).set(c.untagged);
        }
        reg.register("resources", "Live resources in the inventory", resources);
        reg.register("untagged_resources", "Live resources that carry no tag of their own", untagged);

        let accounts = Family::<AccountLabels, Gauge>::default();
        for (name, id) in &self.accounts {
            accounts.get_or_create(&AccountLabels { account: id.clone(), name: name.clone() }).set(1);
        }
        reg.register("account_info", "Accounts being collected, by id and configured name", accounts);

        let stored = Family::<Vec<(String, String)>, Gauge>::default();
        let retention = Family::<Vec<(String, String)>, Gauge>::default();
        for (account, region, group, days, bytes) in &self.log_groups {
            let l = labels(&[("account", account), ("region", region), ("log_group", group)]);
            stored.get_or_create(&l).set(bytes.unwrap_or(0));
            // 0 means the group never expires its events.
            retention.get_or_create(&l).set(days.unwrap_or(0).saturating_mul(86_400));
        }
        reg.register("log_group_stored_bytes", "Bytes a log group stores, as CloudWatch Logs reports", stored);
        reg.register(
            "log_group_retention_seconds",
            "Retention of a log group in seconds; 0 means never expire",
            retention,
        );
    }
}

/// Checks `[collectors.inventory]`: its settings when it is enabled and valid.
pub(crate) fn check(cx: &mut Checker<'_>, s: &InventorySection) -> Option<Scheduled<InventorySettings>> {
    let base = collector(NAME);
    if s.regions.is_empty() {
        cx.error(&key(&base, "regions"), "must name at least one region");
    }
    cx.regions(&base, "regions", &s.regions);
    if let Some(p) = s.page_size {
        if !(1..=1000).contains(&p) {
            cx.error(&key(&base, "page_size"), "must be between 1 and 1000");
        }
    }
    if !(1..=64).contains(&s.max_concurrency) {
        cx.error(&key(&base, "max_concurrency"), "must be between 1 and 64");
    }
    let schedule = cx.schedule(&base, s.interval_secs, s.cron.as_deref(), 300)?;
    let settings =
        InventorySettings { regions: s.regions.clone(), page_size: s.page_size, max_concurrency: s.max_concurrency };
    s.enabled.then_some(Scheduled { schedule, settings })
}
