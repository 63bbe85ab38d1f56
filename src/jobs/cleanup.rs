//! The cleanup job: turns the rules' cleanup candidates into plans and moves each plan through its states,
//! one run at a time: plan → mark (a tag on the resource) → notify the owner → grace period → final warning →
//! pre-check (the resource read again from AWS, its rule evaluated again) → act → verify.
//!
//! Safety, in the order it is checked: dry run (the default) records plans and makes no mutating call; only
//! a plan that was marked and notified with this exact action and due date is ever acted on; a resource that
//! stopped being a candidate (tagged, protected, exempted, gone) is released, never acted on; actions happen
//! only in the allowed accounts, never on a deny-listed ARN, at most `max_actions_per_run` per run and
//! `max_actions_per_account_per_hour` per account, and `auto` mode refuses an account where one run would act
//! on more than `max_share` of its resources. Every transition is an audit row, written with the state in one
//! transaction. The action row (state `acting`) is written before the first mutating call; after a crash the
//! resource is described first and the call made again only if AWS does not show its result yet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ::rules::cleanup::CleanupSettings as RuleCleanup;
use ::rules::engine::CostIndex;
use chrono::{DateTime, Duration, Utc};
use collector::aws::actions::{self, Action, ActionError, Target};
use collector::money;
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rust_decimal::Decimal;
use serde::Serialize;
use tracing::{info, warn};

use super::rules::{read_rule_files, rule_resource, without_tags, RuleSource};
use super::{Job, JobContext, JobOutput, Published, Registration, Render};
use crate::config::check::{item, key, named, Checker, Seg, Shared};
use crate::config::schema::CleanupSection;
use crate::config::{Config, Job as Scheduled};
use crate::metrics::{labels, Exposition, FloatGauge, Labels};
use crate::notify::{self, Digest, DigestItem, Notice, Notifier, NotifySettings};
use crate::store::{
    Audit, CleanupCandidate, NewPlan, Plan, PlanChange, PlanFilter, PlanState, RuleResource, RunOutcome, StoreError,
};

pub const NAME: &str = "cleanup";

/// The actor of what the job does, in the audit trail.
pub const SCHEDULER: &str = "scheduler";

use crate::crash::pause_point;
/// The crash points of the job ([`crate::crash`]): how the crash tests put a `kill -9` exactly between the
/// action row and the call, or between the call and its verification. Points: `after-action-row`,
/// `after-call`.
pub use crate::crash::PAUSE_ENV;

pub fn register(config: &Config) -> Option<Registration> {
    let j = config.cleanup.as_ref()?;
    Some(Registration::new(
        j.schedule.clone(),
        CleanupJob { settings: j.settings.clone(), notifier: None, notifications: BTreeMap::new(), last: None },
    ))
}

/// How far cleanup goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Plans are recorded; nothing is marked, nobody is told, no mutating call.
    DryRun,
    /// Acts only on plans approved through the API.
    Approve,
    /// Acts when due.
    Auto,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::DryRun => "dry-run",
            Mode::Approve => "approve",
            Mode::Auto => "auto",
        }
    }

    fn parse(s: &str) -> Option<Mode> {
        [Mode::DryRun, Mode::Approve, Mode::Auto].into_iter().find(|m| m.as_str() == s)
    }
}

/// One rule's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RulePolicy {
    pub act: bool,
    pub grace: Duration,
    pub escalate: bool,
    pub escalation_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct CleanupJobSettings {
    pub mode: Mode,
    pub min_evaluations: u32,
    pub mark_tag: String,
    pub protect_tags: Vec<String>,
    /// Configured account names or ids.
    pub allowed_accounts: Vec<String>,
    pub deny: Vec<glob::Pattern>,
    pub final_warning: Duration,
    pub max_actions_per_run: u32,
    pub max_actions_per_account_per_hour: u32,
    pub max_monthly_usd_per_run: Option<Decimal>,
    pub max_share: f64,
    pub retention_days: i32,
    /// Per rule name; rules not listed get `default_policy`.
    pub rules: BTreeMap<String, RulePolicy>,
    pub default_policy: RulePolicy,
    /// The rule files, for the pre-check's evaluation and the protection tag and exemptions they set.
    pub rule_sources: Vec<RuleSource>,
    pub notify: Option<NotifySettings>,
}

impl CleanupJobSettings {
    pub fn policy(&self, rule: &str) -> RulePolicy {
        self.rules.get(rule).copied().unwrap_or(self.default_policy)
    }

    fn denied(&self, arn: &str, account_id: &str) -> bool {
        self.deny.iter().any(|p| p.matches(arn) || p.as_str() == account_id)
    }
}

/// What [`Run::go`] returns when shutdown stopped it between plans.
const CANCELLED: &str = "cancelled by shutdown";

pub struct CleanupJob {
    pub settings: CleanupJobSettings,
    /// Built at the first run (it needs the AWS clients of the context).
    notifier: Option<Notifier>,
    /// Messages sent since start, by (channel, outcome).
    notifications: BTreeMap<(String, &'static str), u64>,
    /// The newest run's facts.
    last: Option<CleanupDetail>,
}

impl Job for CleanupJob {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads_inventory(&self) -> bool {
        true
    }

    fn restore<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, Result<Option<Published>, String>> {
        Box::pin(async move { self.view(ctx).await.map(|v| Some(Arc::new(v) as Published)).map_err(|e| e.to_string()) })
    }

    fn run<'a>(&'a mut self, ctx: &'a JobContext) -> BoxFuture<'a, JobOutput> {
        Box::pin(async move {
            if self.notifier.is_none() {
                if let Some(n) = &self.settings.notify {
                    let known = ctx.store.accounts().await.unwrap_or_default();
                    self.notifier = Some(Notifier::new(n.clone(), ctx.aws.clone()).with_account_ids(known));
                }
            }
            let mut run = Run { ctx, s: &self.settings, notifier: self.notifier.as_ref(), d: CleanupDetail::default() };
            let result = run.go().await;
            let detail = run.d;
            for (k, n) in &detail.notifications {
                *self.notifications.entry(k.clone()).or_default() += n;
            }
            let mut out = match result {
                Ok(()) => {
                    let outcome = if detail.errors.is_empty() { RunOutcome::Success } else { RunOutcome::Partial };
                    let mut out = JobOutput::new(outcome, detail.planned + detail.acted);
                    if !detail.errors.is_empty() {
                        out.error = Some(detail.errors.join("; "));
                    }
                    out
                }
                Err(e) if e == CANCELLED => JobOutput::cancelled(),
                Err(e) => JobOutput::failed(e),
            };
            self.last = Some(detail.clone());
            out = out.with_detail(detail);
            match self.view(ctx).await {
                Ok(v) => out.publish(v),
                Err(error) => {
                    tracing::error!(%error, "cannot read the cleanup plans; /metrics keeps the previous cleanup series");
                    out
                }
            }
        })
    }
}

impl CleanupJob {
    async fn view(&self, ctx: &JobContext) -> Result<CleanupView, StoreError> {
        let states = ctx.store.plan_counts().await?;
        let actions = ctx.store.action_counts().await?;
        let done = ctx.store.plans(&PlanFilter { states: vec![PlanState::Done], ..PlanFilter::default() }).await?;
        let known = ctx.store.accounts().await?;
        let allowed: Vec<String> =
            self.settings.allowed_accounts.iter().filter_map(|a| account_id_of(a, &known)).collect();
        let mut savings: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
        for p in &done {
            let (Some(monthly), Some(at)) = (p.monthly_usd, p.done) else { continue };
            let e = savings.entry(p.account_id.clone()).or_default();
            // Cumulative: the monthly rate over the months since the action (730 hours a month).
            let hours = Decimal::from((ctx.now - at).num_seconds().max(0)) / Decimal::from(3600);
            let so_far = monthly.checked_mul(hours / Decimal::from(::rules::cleanup::HOURS_PER_MONTH));
            let (Ok(()), Some(so_far)) = (money::add_to(&mut e.0, monthly), so_far) else { continue };
            if money::add_to(&mut e.1, so_far.round_dp(4)).is_err() {
                continue;
            }
        }
        Ok(CleanupView {
            mode: self.settings.mode,
            states,
            actions: actions.into_iter().map(|a| ((a.account_id, a.action, a.outcome), a.count as u64)).collect(),
            allowed,
            savings,
            refused: self.last.as_ref().map(|d| d.refused.clone()).unwrap_or_default(),
            notifications: self.notifications.clone(),
        })
    }
}

/// An account's id, from a configured name or an id.
fn account_id_of(name_or_id: &str, known: &[(String, String)]) -> Option<String> {
    if name_or_id.len() == 12 && name_or_id.bytes().all(|b| b.is_ascii_digit()) {
        return Some(name_or_id.to_string());
    }
    known.iter().find(|(n, _)| n == name_or_id).map(|(_, id)| id.clone())
}

/// What one run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanupDetail {
    pub mode: Option<Mode>,
    /// New plans.
    pub planned: u64,
    pub marked: u64,
    /// Plans whose owner was told for the first time.
    pub notified: u64,
    pub warned: u64,
    pub released: u64,
    /// Actions begun.
    pub acted: u64,
    pub done: u64,
    pub failed: u64,
    /// Due plans left for a later run by a limit.
    pub deferred: u64,
    /// Plans or candidates refused, by reason: `account_not_allowed`, `deny_list`, `protected`, `share`,
    /// `per_run_limit`, `account_rate`, `money_limit`.
    pub refused: BTreeMap<String, u64>,
    /// Messages by (channel, outcome).
    #[serde(skip)]
    pub notifications: BTreeMap<(String, &'static str), u64>,
    /// Problems that leave a plan for the next run (an AWS call that failed, a channel that failed).
    pub errors: Vec<String>,
}

/// What `/metrics` shows of cleanup, read from the store after each run.
pub struct CleanupView {
    pub mode: Mode,
    pub states: BTreeMap<PlanState, i64>,
    /// (account id, action, outcome) → count.
    pub actions: BTreeMap<(String, String, String), u64>,
    /// Allowed account ids: their action counters and savings exist from 0.
    pub allowed: Vec<String>,
    /// Account id → (monthly rate, cumulative) of the done actions' savings.
    pub savings: BTreeMap<String, (Decimal, Decimal)>,
    pub refused: BTreeMap<String, u64>,
    pub notifications: BTreeMap<(String, &'static str), u64>,
}

impl Render for CleanupView {
    fn render(&self, out: &mut Exposition) {
        use rust_decimal::prelude::ToPrimitive;
        let reg = out.cloudwarden();

        let plans = Family::<Labels, Gauge>::default();
        for s in PlanState::ALL {
            plans.get_or_create(&labels(&[("state", s.as_str())])).set(self.states.get(&s).copied().unwrap_or(0));
        }
        reg.register("cleanup_plans", "Cleanup plans by state", plans);

        let actions = Family::<Labels, Counter>::default();
        for account in &self.allowed {
            for a in Action::ALL {
                for outcome in ["done", "failed"] {
                    let _ = actions.get_or_create(&labels(&[
                        ("account", account),
                        ("action", a.as_str()),
                        ("outcome", outcome),
                    ]));
                }
            }
        }
        for ((account, action, outcome), n) in &self.actions {
            actions
                .get_or_create(&labels(&[("account", account), ("action", action), ("outcome", outcome)]))
                .inc_by(*n);
        }
        reg.register(
            "cleanup_actions",
            "Cleanup actions finished, by account, action and outcome (done or failed)",
            actions,
        );

        let savings = Family::<Labels, FloatGauge>::default();
        for account in &self.allowed {
            for period in ["monthly", "cumulative"] {
                let _ = savings.get_or_create(&labels(&[("account", account), ("period", period)]));
            }
        }
        for (account, (monthly, cumulative)) in &self.savings {
            savings
                .get_or_create(&labels(&[("account", account), ("period", "monthly")]))
                .set(monthly.to_f64().unwrap_or(0.0));
            savings
                .get_or_create(&labels(&[("account", account), ("period", "cumulative")]))
                .set(cumulative.to_f64().unwrap_or(0.0));
        }
        reg.register(
            "cleanup_savings_realized_usd",
            "Estimated savings of the done cleanup actions: the monthly rate (period=monthly), and what it saved \
             since each action (period=cumulative)",
            savings,
        );

        let refused = Family::<Labels, Gauge>::default();
        for reason in
            ["account_not_allowed", "deny_list", "protected", "share", "per_run_limit", "account_rate", "money_limit"]
        {
            refused
                .get_or_create(&labels(&[("reason", reason)]))
                .set(self.refused.get(reason).copied().unwrap_or(0) as i64);
        }
        reg.register(
            "cleanup_refused",
            "Cleanup candidates or due plans the newest run refused or deferred, by reason",
            refused,
        );

        let mode = Family::<Labels, Gauge>::default();
        for m in [Mode::DryRun, Mode::Approve, Mode::Auto] {
            mode.get_or_create(&labels(&[("mode", m.as_str())])).set(i64::from(m == self.mode));
        }
        reg.register("cleanup_mode", "The cleanup mode in force (1) and the others (0)", mode);

        let sent = Family::<Labels, Counter>::default();
        for ((channel, outcome), n) in &self.notifications {
            sent.get_or_create(&labels(&[("channel", channel), ("outcome", outcome)])).inc_by(*n);
        }
        reg.register(
            "cleanup_notifications",
            "Owner notification messages sent since start, by channel and outcome",
            sent,
        );
    }
}

/// One run's working state.
struct Run<'a> {
    ctx: &'a JobContext,
    s: &'a CleanupJobSettings,
    notifier: Option<&'a Notifier>,
    d: CleanupDetail,
}

/// The rule files' cleanup settings, with the configured protection tags, for the pre-check.
struct Rules {
    settings: RuleCleanup,
}

impl<'a> Run<'a> {
    fn now(&self) -> DateTime<Utc> {
        self.ctx.now
    }

    fn error(&mut self, message: String) {
        warn!(job = NAME, "{message}");
        self.d.errors.push(message);
    }

    fn refuse(&mut self, reason: &str) {
        *self.d.refused.entry(reason.to_string()).or_default() += 1;
    }

    /// Shutdown asked the run to stop: checked between plans, never within one (a plan's write or AWS call
    /// that has begun is finished).
    fn stopping(&self) -> Result<(), String> {
        if self.ctx.cancel.is_cancelled() {
            Err(CANCELLED.into())
        } else {
            Ok(())
        }
    }

    async fn go(&mut self) -> Result<(), String> {
        self.d.mode = Some(self.s.mode);
        let sources = self.s.rule_sources.clone();
        let loaded = tokio::task::spawn_blocking(move || read_rule_files(&sources))
            .await
            .map_err(|e| format!("reading the rule files: {e}"))?
            .map_err(|problems| {
                let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                format!("invalid rule files, no cleanup this run: {}", shown.join("; "))
            })?;
        let rules = Rules { settings: loaded.rules.cleanup };
        let store = &self.ctx.store;
        let e = |e: StoreError| e.to_string();
        let known = store.accounts().await.map_err(e)?;
        let exempt: HashSet<String> =
            store.exemptions(self.now()).await.map_err(e)?.into_iter().map(|x| x.arn).collect();
        let candidates = store.cleanup_candidates().await.map_err(e)?;
        let open = store.open_cleanup_findings().await.map_err(e)?;
        let allowed: HashSet<String> =
            self.s.allowed_accounts.iter().filter_map(|a| account_id_of(a, &known)).collect();
        // A configured name whose id is not known yet (the inventory has not resolved it, or its role could
        // not be assumed) may be any plan's account: no plan is released for its account then. Acting still
        // needs the account among the known allowed ones.
        let allowed_all_known = allowed.len() == self.s.allowed_accounts.len();
        let by_arn: HashMap<&str, &CleanupCandidate> = candidates.iter().map(|c| (c.arn.as_str(), c)).collect();

        // 1. Plans under way whose resource stopped being a candidate are released.
        for p in store.plans(&PlanFilter::active()).await.map_err(e)? {
            self.stopping()?;
            if p.state == PlanState::Acting {
                continue;
            }
            let tags = by_arn.get(p.arn.as_str()).map(|c| &c.tags);
            let why = if exempt.contains(&p.arn) {
                Some("exempted through the API".to_string())
            } else if !open.contains(&p.finding_id) {
                Some("no longer a cleanup candidate (tagged, exempted, protected or gone)".to_string())
            } else if let Some(k) = tags.and_then(|t| self.protected_by(t, &rules)) {
                Some(format!("protected by the tag {k:?}"))
            } else if !allowed.contains(&p.account_id) && allowed_all_known && self.s.mode != Mode::DryRun {
                Some(format!("account {} is not among the allowed accounts", p.account_id))
            } else if self.s.denied(&p.arn, &p.account_id) {
                Some("deny-listed".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                self.release(&p, &why, &known).await;
            }
        }
        // Mark tags left on released or rejected plans (an untag that failed, a rejection through the API).
        if self.s.mode != Mode::DryRun {
            self.unmark_leftovers(&known).await.map_err(e)?;
        }

        // 2. New plans.
        let planned = store.planned_findings().await.map_err(e)?;
        for c in &candidates {
            let policy = self.s.policy(&c.rule);
            let Some(action) = Action::first_for(&c.resource_type) else { continue };
            // An attached volume or an associated address: the action would not be safe (an untagged root
            // volume goes with its instance).
            if !action.plannable_in(c.state.as_deref()) {
                continue;
            }
            if !policy.act
                || c.evaluations < i64::from(self.s.min_evaluations)
                || planned.contains(&(c.finding_id, action.as_str().to_string()))
                || exempt.contains(&c.arn)
            {
                continue;
            }
            if self.protected_by(&c.tags, &rules).is_some() {
                self.refuse("protected");
                continue;
            }
            if self.s.denied(&c.arn, &c.account_id) {
                self.refuse("deny_list");
                continue;
            }
            if !allowed.contains(&c.account_id) {
                self.refuse("account_not_allowed");
                continue;
            }
            let due = self.now() + policy.grace;
            let owner = self.owner(&c.tags);
            let plan = NewPlan {
                finding_id: c.finding_id,
                parent_id: None,
                arn: c.arn.clone(),
                account_id: c.account_id.clone(),
                region: c.region.clone(),
                resource_type: c.resource_type.clone(),
                resource_id: c.resource_id.clone(),
                rule: c.rule.clone(),
                action: action.as_str().to_string(),
                reason: c.message.clone(),
                owner,
                monthly_usd: c.monthly_usd,
                due,
                mark_value: mark_value(action, due),
            };
            let why = format!(
                "{}: {} (seen on {} evaluations in a row; mode {})",
                c.rule,
                c.message,
                c.evaluations,
                self.s.mode.as_str()
            );
            if store.insert_plan(&plan, &Audit::new(SCHEDULER, why), self.now()).await.map_err(e)?.is_some() {
                self.d.planned += 1;
            }
        }
        if self.s.mode == Mode::DryRun {
            return Ok(());
        }

        // 3. Mark.
        for p in
            store.plans(&PlanFilter { states: vec![PlanState::Candidate], ..PlanFilter::default() }).await.map_err(e)?
        {
            self.stopping()?;
            if !allowed.contains(&p.account_id) {
                continue;
            }
            self.mark(&p, &known).await;
        }

        // 4. Tell the owners: first notices, then final warnings.
        self.stopping()?;
        self.notify(&known).await.map_err(e)?;

        // 5. Act: actions begun earlier first (a crash, a snapshot still being taken), then what is due.
        let mut acting =
            store.plans(&PlanFilter { states: vec![PlanState::Acting], ..PlanFilter::default() }).await.map_err(e)?;
        for p in acting.drain(..) {
            self.stopping()?;
            self.act(p, &rules, &known, false).await;
        }
        let ready = match self.s.mode {
            Mode::Auto => vec![PlanState::Notified, PlanState::Approved],
            Mode::Approve => vec![PlanState::Approved],
            Mode::DryRun => vec![],
        };
        let due: Vec<Plan> = store
            .plans(&PlanFilter { states: ready, ..PlanFilter::default() })
            .await
            .map_err(e)?
            .into_iter()
            .filter(|p| self.is_due(p))
            .collect();
        let due = self.within_limits(due, &allowed).await.map_err(e)?;
        for p in due {
            self.stopping()?;
            self.act(p, &rules, &known, true).await;
        }
        Ok(())
    }

    /// The protection tag `tags` carry, if any: the rule files' or one configured here, or the tag of a
    /// snapshot cleanup itself took before deleting a volume (kept until your own retention removes it).
    fn protected_by<'t>(&self, tags: &'t BTreeMap<String, String>, rules: &Rules) -> Option<&'t String> {
        tags.keys().find(|k| {
            **k == rules.settings.protect_tag || self.s.protect_tags.contains(k) || k.as_str() == actions::PLAN_TAG
        })
    }

    fn owner(&self, tags: &BTreeMap<String, String>) -> String {
        match &self.s.notify {
            Some(n) => notify::owner_of(tags, n),
            None => "unassigned".to_string(),
        }
    }

    /// Due: the due time has come, the final warning went out, and at least `final_warning` ago.
    fn is_due(&self, p: &Plan) -> bool {
        next_step(p, self.s, self.now()) == Step::Act
    }

    /// The due plans this run may act on, in due order; the rest are counted as refused or deferred.
    async fn within_limits(&mut self, mut due: Vec<Plan>, allowed: &HashSet<String>) -> Result<Vec<Plan>, StoreError> {
        due.sort_by(|a, b| a.due.cmp(&b.due).then(a.id.cmp(&b.id)));
        // The share guard: in auto mode, an account where this run would act on too much is left alone.
        let mut refused_accounts = HashSet::new();
        if self.s.mode == Mode::Auto {
            let live = self.ctx.store.live_resource_counts().await?;
            let mut per_account: BTreeMap<&str, i64> = BTreeMap::new();
            for p in &due {
                *per_account.entry(p.account_id.as_str()).or_default() += 1;
            }
            for (account, n) in per_account {
                let total = live.get(account).copied().unwrap_or(0).max(n);
                if n as f64 > self.s.max_share * total as f64 {
                    warn!(
                        job = NAME,
                        account,
                        due = n,
                        resources = total,
                        max_share = self.s.max_share,
                        "refusing to act in this account this run: too large a share of its resources"
                    );
                    refused_accounts.insert(account.to_string());
                }
            }
        }
        let mut out = Vec::new();
        let mut per_account: HashMap<String, i64> = HashMap::new();
        let mut money_left = self.s.max_monthly_usd_per_run;
        for p in due {
            if !allowed.contains(&p.account_id) {
                self.refuse("account_not_allowed");
                continue;
            }
            if refused_accounts.contains(&p.account_id) {
                self.refuse("share");
                continue;
            }
            if out.len() as u64 >= u64::from(self.s.max_actions_per_run) {
                self.refuse("per_run_limit");
                self.d.deferred += 1;
                continue;
            }
            let recent = match per_account.get(&p.account_id) {
                Some(n) => *n,
                None => self.ctx.store.actions_since(&p.account_id, self.now() - Duration::hours(1)).await?,
            };
            if recent >= i64::from(self.s.max_actions_per_account_per_hour) {
                self.refuse("account_rate");
                self.d.deferred += 1;
                continue;
            }
            if let (Some(left), Some(cost)) = (money_left.as_mut(), p.monthly_usd) {
                if cost > *left {
                    self.refuse("money_limit");
                    self.d.deferred += 1;
                    continue;
                }
                *left -= cost;
            }
            per_account.insert(p.account_id.clone(), recent + 1);
            out.push(p);
        }
        Ok(out)
    }

    /// The account configuration of a plan's account id.
    fn account(
        &self,
        account_id: &str,
        known: &[(String, String)],
    ) -> Result<&'a collector::aws::AccountConfig, String> {
        let ctx: &'a JobContext = self.ctx;
        let name = known
            .iter()
            .find(|(_, id)| id == account_id)
            .map(|(n, _)| n.as_str())
            .ok_or_else(|| format!("account {account_id} is not among the configured accounts"))?;
        ctx.account(name)
    }

    /// Releases a plan (audit row first), then takes its mark tag off the resource.
    async fn release(&mut self, p: &Plan, why: &str, known: &[(String, String)]) {
        match self
            .ctx
            .store
            .transition(
                p.id,
                p.state,
                PlanState::Released,
                &PlanChange::default(),
                &Audit::new(SCHEDULER, why),
                self.now(),
            )
            .await
        {
            Ok(true) => {
                info!(job = NAME, plan = p.id, arn = %p.arn, "released: {why}");
                self.d.released += 1;
            }
            Ok(false) => return,
            Err(e) => return self.error(format!("plan {}: cannot release: {e}", p.id)),
        }
        if p.marked.is_some() && self.s.mode != Mode::DryRun {
            self.unmark(p, known).await;
        }
    }

    /// Takes the mark tag off a released or rejected plan's resource (unless the resource is gone).
    async fn unmark(&mut self, p: &Plan, known: &[(String, String)]) {
        let account = match self.account(&p.account_id, known) {
            Ok(a) => a,
            Err(e) => return self.error(format!("plan {}: cannot take the mark off: {e}", p.id)),
        };
        let t = target(p, account);
        let result = match actions::remove_tag(&self.ctx.aws, &t, &self.s.mark_tag).await {
            Ok(_) => Ok(()),
            // Gone: nothing to take off.
            Err(e) if matches!(actions::describe(&self.ctx.aws, &t).await, Ok(None)) => {
                let _ = e;
                Ok(())
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                let change = PlanChange { unmarked: Some(self.now()), ..PlanChange::default() };
                if let Err(e) = self.ctx.store.update_plan(p.id, &change, self.now()).await {
                    self.error(format!("plan {}: {e}", p.id));
                }
            }
            Err(e) => self.error(format!("plan {}: cannot take the mark tag off {}: {e}", p.id, p.arn)),
        }
    }

    async fn unmark_leftovers(&mut self, known: &[(String, String)]) -> Result<(), StoreError> {
        let ended = PlanFilter { states: vec![PlanState::Released, PlanState::Rejected], ..PlanFilter::default() };
        for p in self.ctx.store.plans(&ended).await? {
            if self.ctx.cancel.is_cancelled() {
                break;
            }
            if p.marked.is_some() && p.unmarked.is_none() {
                self.unmark(&p, known).await;
            }
        }
        Ok(())
    }

    /// Sets the mark tag, due `grace` from now.
    async fn mark(&mut self, p: &Plan, known: &[(String, String)]) {
        let Some(action) = Action::parse(&p.action) else {
            return self.error(format!("plan {}: unknown action {:?}", p.id, p.action));
        };
        let grace =
            if p.parent_id.is_some() { self.s.policy(&p.rule).escalation_grace } else { self.s.policy(&p.rule).grace };
        let due = self.now() + grace;
        let value = mark_value(action, due);
        let account = match self.account(&p.account_id, known) {
            Ok(a) => a,
            Err(e) => return self.error(format!("plan {}: cannot mark: {e}", p.id)),
        };
        match actions::set_tag(&self.ctx.aws, &target(p, account), &self.s.mark_tag, &value).await {
            Ok(request_id) => {
                let change = PlanChange {
                    due: Some(due),
                    mark_value: Some(value.clone()),
                    marked: Some(self.now()),
                    ..PlanChange::default()
                };
                let audit =
                    Audit::new(SCHEDULER, format!("tagged {}={value}", self.s.mark_tag)).with_request(request_id);
                match self
                    .ctx
                    .store
                    .transition(p.id, PlanState::Candidate, PlanState::Marked, &change, &audit, self.now())
                    .await
                {
                    Ok(true) => self.d.marked += 1,
                    Ok(false) => {}
                    Err(e) => self.error(format!("plan {}: {e}", p.id)),
                }
            }
            Err(e) => self.error(format!("plan {}: cannot mark {}: {e}", p.id, p.arn)),
        }
    }

    /// First notices to the owners of the plans marked and not told yet, then final warnings to those of the
    /// plans due within `final_warning`: one digest per owner and kind.
    async fn notify(&mut self, known: &[(String, String)]) -> Result<(), StoreError> {
        let Some(notifier) = self.notifier else { return Ok(()) };
        let plans = self
            .ctx
            .store
            .plans(&PlanFilter {
                states: vec![PlanState::Marked, PlanState::Notified, PlanState::Approved],
                ..PlanFilter::default()
            })
            .await?;
        let now = self.now();
        let first: Vec<&Plan> = plans.iter().filter(|p| p.marked.is_some() && p.notified.is_none()).collect();
        let last: Vec<&Plan> = plans
            .iter()
            .filter(|p| p.notified.is_some() && p.warned.is_none() && now + self.s.final_warning >= p.due)
            .collect();
        for (notice, group) in [(Notice::First, first), (Notice::FinalWarning, last)] {
            let mut by_owner: BTreeMap<&str, Vec<&Plan>> = BTreeMap::new();
            for p in group {
                by_owner.entry(p.owner.as_str()).or_default().push(p);
            }
            for (owner, plans) in by_owner {
                if self.ctx.cancel.is_cancelled() {
                    return Ok(());
                }
                let digest = self.digest(owner, notice, &plans, known);
                let results = notifier.send(&digest).await;
                let mut sent = Vec::new();
                for r in &results {
                    match r {
                        Ok(d) => {
                            *self.d.notifications.entry((d.channel.to_string(), "sent")).or_default() += 1;
                            let id = d.message_id.as_deref().map(|m| format!(" ({m})")).unwrap_or_default();
                            sent.push(format!("{} to {}{id}", d.channel, d.target));
                        }
                        Err(e) => {
                            let channel = e.channel().map_or("none", |c| c.as_str());
                            *self.d.notifications.entry((channel.to_string(), "failed")).or_default() += 1;
                            self.error(format!("notifying {owner}: {e}"));
                        }
                    }
                }
                if sent.is_empty() {
                    continue;
                }
                let what = match notice {
                    Notice::First => "owner notified",
                    Notice::FinalWarning => "final warning sent",
                };
                for p in plans {
                    let detail = format!("{what} ({owner}): {}", sent.join(", "));
                    let (to, change) = match notice {
                        Notice::First if p.state == PlanState::Marked => {
                            (PlanState::Notified, PlanChange { notified: Some(now), ..PlanChange::default() })
                        }
                        Notice::First => (p.state, PlanChange { notified: Some(now), ..PlanChange::default() }),
                        Notice::FinalWarning => (p.state, PlanChange { warned: Some(now), ..PlanChange::default() }),
                    };
                    match self
                        .ctx
                        .store
                        .transition(p.id, p.state, to, &change, &Audit::new(SCHEDULER, detail), now)
                        .await
                    {
                        Ok(true) if notice == Notice::First => self.d.notified += 1,
                        Ok(true) => self.d.warned += 1,
                        Ok(false) => {}
                        Err(e) => self.error(format!("plan {}: {e}", p.id)),
                    }
                }
            }
        }
        Ok(())
    }

    fn digest(&self, owner: &str, notice: Notice, plans: &[&Plan], known: &[(String, String)]) -> Digest {
        let protect =
            self.s.protect_tags.first().cloned().unwrap_or_else(|| ::rules::cleanup::DEFAULT_PROTECT_TAG.to_string());
        let items = plans
            .iter()
            .map(|p| DigestItem {
                arn: p.arn.clone(),
                account_id: p.account_id.clone(),
                account_name: known.iter().find(|(_, id)| *id == p.account_id).map(|(n, _)| n.clone()),
                region: p.region.clone(),
                resource_type: p.resource_type.clone(),
                resource_id: p.resource_id.clone(),
                name: None,
                rule: p.rule.clone(),
                reason: p.reason.clone(),
                action: p.action.clone(),
                due: p.due.date_naive(),
                monthly_usd: p.monthly_usd,
                keep: keep_hint(&p.rule, &protect),
            })
            .collect();
        Digest {
            contact: owner.to_string(),
            notice,
            items,
            mark_tag_key: self.s.mark_tag.clone(),
            protect_tag_key: protect,
        }
    }

    /// Pre-check (for a plan not acting yet), the action row, the call, the verification. `fresh`: the plan
    /// is due now; otherwise it was acting already (an earlier run began it).
    async fn act(&mut self, mut p: Plan, rules: &Rules, known: &[(String, String)], fresh: bool) {
        let Some(action) = Action::parse(&p.action) else {
            return self.error(format!("plan {}: unknown action {:?}", p.id, p.action));
        };
        let account = match self.account(&p.account_id, known) {
            Ok(a) => a,
            Err(e) => return self.error(format!("plan {}: {e}", p.id)),
        };
        let at = p.clone();
        let t = target(&at, account);
        let now_seen = match actions::describe(&self.ctx.aws, &t).await {
            Ok(r) => r,
            // A failed read is never taken for "gone": the plan waits for the next run.
            Err(e) => return self.error(format!("plan {}: cannot read {} again: {e}", p.id, p.arn)),
        };
        if fresh {
            if let Err(why) = self.pre_check(&p, action, now_seen.as_ref(), rules).await {
                return self.release(&p, &format!("pre-check: {why}"), known).await;
            }
            let change = PlanChange { acting: Some(self.now()), ..PlanChange::default() };
            let audit = Audit::new(SCHEDULER, format!("pre-check passed; {action} {}", p.resource_id));
            match self.ctx.store.transition(p.id, p.state, PlanState::Acting, &change, &audit, self.now()).await {
                Ok(true) => {
                    self.d.acted += 1;
                    p.state = PlanState::Acting;
                }
                Ok(false) => return,
                Err(e) => return self.error(format!("plan {}: cannot write the action row: {e}", p.id)),
            }
            pause_point("after-action-row").await;
        } else if action.done_in(now_seen.as_ref(), self.s.retention_days) {
            // The call of an earlier run took effect: verify, do not call again.
            return self.verified(&p, action, now_seen.as_ref(), known).await;
        } else if now_seen.is_none() {
            return self
                .fail(&p, Some("ResourceGone".into()), format!("{} is gone but {action} does not remove it", p.arn))
                .await;
        }

        let acted = actions::act(&self.ctx.aws, &t, action, &p.token, self.s.retention_days).await;
        match acted {
            Ok(a) => {
                let change = PlanChange {
                    called: a.pending.is_none().then(|| self.now()),
                    request_id: a.request_id.clone(),
                    snapshot_id: a.snapshot_id.clone(),
                    ..PlanChange::default()
                };
                if let Err(e) = self.ctx.store.update_plan(p.id, &change, self.now()).await {
                    self.error(format!("plan {}: {e}", p.id));
                }
                p.request_id = a.request_id.or(p.request_id);
                p.snapshot_id = a.snapshot_id.or(p.snapshot_id);
                if let Some(wait) = a.pending {
                    info!(job = NAME, plan = p.id, "{action} under way: {wait}");
                    return;
                }
                pause_point("after-call").await;
            }
            Err(e) if e.is_transient() => {
                return self.error(format!("plan {}: {action} {} will be tried again: {e}", p.id, p.resource_id));
            }
            Err(ActionError::Aws(e)) if e.kind == collector::aws::AwsErrorKind::NotFound => {
                // The resource went away meanwhile: the verification below decides.
                info!(job = NAME, plan = p.id, "{action}: {e}");
            }
            Err(e) => {
                let code = e.code().map(str::to_string);
                return self.fail(&p, code, e.to_string()).await;
            }
        }
        match actions::describe(&self.ctx.aws, &t).await {
            Ok(seen) if action.done_in(seen.as_ref(), self.s.retention_days) => {
                self.verified(&p, action, seen.as_ref(), known).await
            }
            Ok(seen) => info!(
                job = NAME,
                plan = p.id,
                state = seen.as_ref().and_then(|r| r.state.as_deref()).unwrap_or("gone"),
                "{action} not visible yet; verified at the next run"
            ),
            Err(e) => self.error(format!("plan {}: cannot verify {action}: {e}", p.id)),
        }
    }

    /// Why the plan must not be acted on, if it must not.
    async fn pre_check(
        &self,
        p: &Plan,
        action: Action,
        seen: Option<&collector::Resource>,
        rules: &Rules,
    ) -> Result<(), String> {
        let Some(r) = seen else { return Err("the resource is gone".into()) };
        if let Some(k) = self.protected_by(&r.tags, rules) {
            return Err(format!("protected by the tag {k:?}"));
        }
        if rules.settings.exempt.exempts(&r.arn, &r.tags) {
            return Err("exempted by the rule files".into());
        }
        match r.tags.get(&self.s.mark_tag) {
            Some(v) if *v == p.mark_value => {}
            Some(v) => return Err(format!("the mark tag says {v:?}, not {:?}", p.mark_value)),
            None => return Err(format!("the mark tag {} was removed", self.s.mark_tag)),
        }
        if action.done_in(seen, self.s.retention_days) {
            return Err(format!("AWS already shows the result of {action}"));
        }
        if let Some(why) = action.blocked_by(r) {
            return Err(format!("{action} is not safe now: {why}"));
        }
        // The rule again, on what AWS shows now (an escalation re-checks its first rule).
        let first_seen = self.ctx.store.first_seen(&p.arn).await.map_err(|e| e.to_string())?.unwrap_or(p.created);
        let mut resources = vec![without_tags(
            rule_resource(RuleResource { resource: r.clone(), first_seen }),
            std::slice::from_ref(&self.s.mark_tag),
        )];
        if let collector::Details::Snapshot { volume_id: Some(v), .. } = &r.details {
            // An orphan snapshot is one whose volume is gone: read the volume too.
            let account = self.account(&p.account_id, &self.ctx.store.accounts().await.map_err(|e| e.to_string())?)?;
            let vt =
                Target { account, account_id: &p.account_id, region: &p.region, resource_type: "ec2:volume", id: v };
            if let Some(vol) =
                actions::describe(&self.ctx.aws, &vt).await.map_err(|e| format!("cannot read the volume {v}: {e}"))?
            {
                resources.push(rule_resource(RuleResource { resource: vol, first_seen }));
            }
        }
        let costs = CostIndex::build(&[], self.now()).map_err(|e| e.to_string())?;
        let eval =
            ::rules::cleanup::evaluate(&rules.settings, &resources, &costs, self.now()).map_err(|e| e.to_string())?;
        let rule = if p.parent_id.is_some() { None } else { Some(p.rule.as_str()) };
        let still = eval.findings.iter().any(|f| &*f.subject == p.arn.as_str() && rule.is_none_or(|r| &*f.rule == r));
        if !still {
            return Err(format!("the rule {} no longer selects it", p.rule));
        }
        Ok(())
    }

    async fn fail(&mut self, p: &Plan, code: Option<String>, message: String) {
        let change = PlanChange { error: Some((code.clone(), message.clone())), ..PlanChange::default() };
        let detail = format!("refused: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default());
        match self
            .ctx
            .store
            .transition(
                p.id,
                PlanState::Acting,
                PlanState::Failed,
                &change,
                &Audit::new(SCHEDULER, detail).with_request(p.request_id.clone()),
                self.now(),
            )
            .await
        {
            Ok(true) => {
                warn!(job = NAME, plan = p.id, arn = %p.arn, code = code.as_deref().unwrap_or(""), "cleanup action failed: {message}");
                self.d.failed += 1;
            }
            Ok(false) => {}
            Err(e) => self.error(format!("plan {}: {e}", p.id)),
        }
    }

    async fn verified(
        &mut self,
        p: &Plan,
        action: Action,
        seen: Option<&collector::Resource>,
        known: &[(String, String)],
    ) {
        let shown = seen.and_then(|r| r.state.clone()).unwrap_or_else(|| "gone".into());
        let mut detail = format!("verified: {} is {shown}", p.resource_id);
        if let Some(s) = &p.snapshot_id {
            detail.push_str(&format!("; snapshot {s} kept"));
        }
        let change = PlanChange { done: Some(self.now()), ..PlanChange::default() };
        let audit = Audit::new(SCHEDULER, detail).with_request(p.request_id.clone());
        match self.ctx.store.transition(p.id, PlanState::Acting, PlanState::Done, &change, &audit, self.now()).await {
            Ok(true) => self.d.done += 1,
            Ok(false) => return,
            Err(e) => return self.error(format!("plan {}: {e}", p.id)),
        }
        let policy = self.s.policy(&p.rule);
        let Some(next) = action.escalation().filter(|_| policy.escalate && p.parent_id.is_none()) else { return };
        let due = self.now() + policy.escalation_grace;
        let plan = NewPlan {
            finding_id: p.finding_id,
            parent_id: Some(p.id),
            arn: p.arn.clone(),
            account_id: p.account_id.clone(),
            region: p.region.clone(),
            resource_type: p.resource_type.clone(),
            resource_id: p.resource_id.clone(),
            rule: p.rule.clone(),
            action: next.as_str().to_string(),
            reason: format!("{} (stopped {}; escalation)", p.reason, self.now().format("%Y-%m-%d")),
            owner: p.owner.clone(),
            monthly_usd: p.monthly_usd,
            due,
            mark_value: mark_value(next, due),
        };
        let why = format!("escalation of plan {} ({action} done)", p.id);
        match self.ctx.store.insert_plan(&plan, &Audit::new(SCHEDULER, why), self.now()).await {
            Ok(Some(_)) => {
                self.d.planned += 1;
                let _ = known;
            }
            Ok(None) => {}
            Err(e) => self.error(format!("plan {}: cannot plan the escalation: {e}", p.id)),
        }
    }
}

/// What the job would do next with a plan, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum Step {
    /// Dry run: the plan is recorded, nothing more happens.
    Recorded,
    /// Set the mark tag (due date from then on).
    Mark,
    /// Tell the owner.
    Notify,
    /// Send the final warning.
    Warn,
    /// Wait for the due time (or `final_warning` after the final warning).
    Wait { until: DateTime<Utc> },
    /// Due, but `approve` mode acts only on approved plans.
    NeedsApproval,
    /// Pre-check and act at the next run (subject to the limits).
    Act,
    /// An action under way: verify it (or continue a snapshot being taken).
    Verify,
    /// Finished: done, failed, released or rejected.
    Finished,
}

/// What the job does next with plan `p` at `now` (before the pre-check and the limits, which need AWS and the
/// other plans).
pub fn next_step(p: &Plan, s: &CleanupJobSettings, now: DateTime<Utc>) -> Step {
    if !p.state.is_active() {
        return Step::Finished;
    }
    if s.mode == Mode::DryRun && p.state != PlanState::Acting {
        return Step::Recorded;
    }
    match p.state {
        PlanState::Acting => return Step::Verify,
        PlanState::Candidate => return Step::Mark,
        _ if p.notified.is_none() => return Step::Notify,
        _ => {}
    }
    let warn_at = p.due - s.final_warning;
    let Some(warned) = p.warned else {
        return if now >= warn_at { Step::Warn } else { Step::Wait { until: warn_at } };
    };
    let act_at = p.due.max(warned + s.final_warning);
    if now < act_at {
        return Step::Wait { until: act_at };
    }
    if s.mode == Mode::Approve && p.state != PlanState::Approved {
        return Step::NeedsApproval;
    }
    Step::Act
}

fn target<'k>(p: &'k Plan, account: &'k collector::aws::AccountConfig) -> Target<'k> {
    Target {
        account,
        account_id: &p.account_id,
        region: &p.region,
        resource_type: &p.resource_type,
        id: &p.resource_id,
    }
}

/// The mark tag's value: `<action>@<UTC date>`.
pub fn mark_value(action: Action, due: DateTime<Utc>) -> String {
    format!("{action}@{}", due.format("%Y-%m-%d"))
}

/// How an owner keeps a resource, for the notice.
fn keep_hint(rule: &str, protect: &str) -> String {
    match rule {
        "untagged" => format!("add your team's tags, or the tag {protect} to keep it as it is"),
        _ => format!("fix what the rule found, or add the tag {protect} (any value) to keep it as it is"),
    }
}

/// Checks `[cleanup]`: its settings when it is enabled and valid. `rules` are the validated rule sources
/// (cleanup acts on the rules' candidates, so `[rules]` is required).
pub(crate) fn check(
    cx: &mut Checker<'_>,
    c: &CleanupSection,
    shared: &Shared<'_>,
    rules: Option<&[RuleSource]>,
) -> Option<Scheduled<CleanupJobSettings>> {
    let base = vec![Seg::Key("cleanup")];
    let mode = Mode::parse(&c.mode);
    if mode.is_none() {
        cx.error(&key(&base, "mode"), format!("unknown mode {:?}, expected `dry-run`, `approve` or `auto`", c.mode));
    }
    let acting = mode.is_some_and(|m| m != Mode::DryRun);
    if c.min_evaluations == 0 || c.min_evaluations > 1000 {
        cx.error(&key(&base, "min_evaluations"), "must be between 1 and 1000");
    }
    if c.mark_tag.trim().is_empty() || c.mark_tag.starts_with("aws:") || c.mark_tag.len() > 128 {
        cx.error(&key(&base, "mark_tag"), "must be a tag key of 1 to 128 characters, not starting with `aws:`");
    }
    for (i, t) in c.protect_tags.iter().enumerate() {
        if t.trim().is_empty() {
            cx.error(&item(&base, "protect_tags", i), "must not be empty");
        } else if *t == c.mark_tag {
            cx.error(&item(&base, "protect_tags", i), "must not be the mark tag");
        }
    }
    for (i, a) in c.allowed_accounts.iter().enumerate() {
        let is_id = a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit());
        if !is_id && !shared.accounts.iter().any(|s| s.name == *a) {
            cx.error(
                &item(&base, "allowed_accounts", i),
                format!("{a:?} is neither a configured account name nor a 12-digit account id"),
            );
        }
    }
    if acting && c.allowed_accounts.is_empty() {
        cx.error(&key(&base, "allowed_accounts"), format!("must name at least one account in `{}` mode", c.mode));
    }
    let mut deny = Vec::new();
    for (i, d) in c.deny.iter().enumerate() {
        match glob::Pattern::new(d) {
            Ok(p) if !d.trim().is_empty() => deny.push(p),
            Ok(_) => cx.error(&item(&base, "deny", i), "must not be empty"),
            Err(e) => cx.error(&item(&base, "deny", i), format!("not a valid pattern: {e}")),
        }
    }
    let days = |cx: &mut Checker<'_>, path: &[Seg], d: u32| {
        if d > 365 {
            cx.error(path, "must be at most 365 days");
        }
        Duration::days(i64::from(d.min(365)))
    };
    let grace = days(cx, &key(&base, "grace_days"), c.grace_days);
    if c.final_warning_hours == 0 || c.final_warning_hours > 24 * 30 {
        cx.error(&key(&base, "final_warning_hours"), "must be between 1 and 720");
    }
    if c.max_actions_per_run == 0 {
        cx.error(&key(&base, "max_actions_per_run"), "must be at least 1 (use mode = \"dry-run\" to act on nothing)");
    }
    if c.max_actions_per_account_per_hour == 0 {
        cx.error(&key(&base, "max_actions_per_account_per_hour"), "must be at least 1");
    }
    let max_money = c.max_monthly_usd_per_run.as_deref().and_then(|m| match m.parse::<Decimal>() {
        Ok(d) if d > Decimal::ZERO && d < Decimal::from(1_000_000_000_000_000i64) => Some(d),
        _ => {
            cx.error(
                &key(&base, "max_monthly_usd_per_run"),
                format!("expected a positive decimal amount in USD, got {m:?}"),
            );
            None
        }
    });
    if !(c.max_share > 0.0 && c.max_share <= 1.0) {
        cx.error(&key(&base, "max_share"), "must be more than 0 and at most 1");
    }
    const RETENTION: [i32; 22] =
        [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];
    if !RETENTION.contains(&c.retention_days) {
        cx.error(
            &key(&base, "retention_days"),
            format!("must be one of the retentions CloudWatch Logs allows: {RETENTION:?}"),
        );
    }
    let default_policy = RulePolicy { act: true, grace, escalate: false, escalation_grace: Duration::days(7) };
    let mut policies = BTreeMap::new();
    for (name, r) in &c.rules {
        let at = named(&base, "rules", name);
        if !::rules::cleanup::CleanupRule::ALL.iter().any(|x| x.name() == name) {
            let known: Vec<&str> = ::rules::cleanup::CleanupRule::ALL.iter().map(|x| x.name()).collect();
            cx.error(&at, format!("unknown cleanup rule {name:?}, expected one of {}", known.join(", ")));
            continue;
        }
        let grace = r.grace_days.map(|d| days(cx, &key(&at, "grace_days"), d)).unwrap_or(grace);
        let escalation_grace = days(cx, &key(&at, "escalation_grace_days"), r.escalation_grace_days.unwrap_or(7));
        policies.insert(
            name.clone(),
            RulePolicy { act: r.act.unwrap_or(true), grace, escalate: r.escalate.unwrap_or(false), escalation_grace },
        );
    }
    let notify = c.notify.as_ref().map(|n| notify::check(cx, n, shared));
    if acting && c.notify.is_none() {
        cx.error(
            &key(&base, "notify"),
            format!("owners must be told before anything is done: `[cleanup.notify]` is required in `{}` mode", c.mode),
        );
    }
    if rules.is_none() {
        cx.error(&base, "cleanup acts on the rules' cleanup candidates: `[rules]` must be configured and enabled");
    }
    let schedule = cx.schedule(&base, c.interval_secs, c.cron.as_deref(), 300)?;
    if !c.enabled {
        return None;
    }
    let settings = CleanupJobSettings {
        mode: mode?,
        min_evaluations: c.min_evaluations,
        mark_tag: c.mark_tag.clone(),
        protect_tags: c.protect_tags.clone(),
        allowed_accounts: c.allowed_accounts.clone(),
        deny,
        final_warning: Duration::hours(i64::from(c.final_warning_hours.min(720))),
        max_actions_per_run: c.max_actions_per_run,
        max_actions_per_account_per_hour: c.max_actions_per_account_per_hour,
        max_monthly_usd_per_run: max_money,
        max_share: c.max_share,
        retention_days: c.retention_days,
        rules: policies,
        default_policy,
        rule_sources: rules?.to_vec(),
        notify,
    };
    Some(Scheduled { schedule, settings })
}
