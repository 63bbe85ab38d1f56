//! Cleanup plans, their audit trail and exemptions.
//!
//! A plan is one resource and one action, moving through the states of [`PlanState`]. Every change of state
//! is a conditional update (`WHERE state = <expected>`) and its audit row, in one transaction: two writers
//! (the cleanup job and an API call) can never both move a plan, and no transition goes unrecorded. The
//! audit table is append-only: the schema refuses updates and deletes.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{from_ms, ms, q, Store, StoreError};

/// Where a plan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    /// Planned; not marked yet (dry run keeps plans here).
    Candidate,
    /// The mark tag is on the resource.
    Marked,
    /// The owner was told.
    Notified,
    /// Approved through the API (`approve` mode).
    Approved,
    /// The action row: written before the first mutating call.
    Acting,
    /// AWS shows the action's result.
    Done,
    /// AWS or the safe form refused the action.
    Failed,
    /// No longer a candidate (tagged, protected, exempted, gone) before it was acted on.
    Released,
    /// Rejected through the API.
    Rejected,
}

impl PlanState {
    pub const ALL: [PlanState; 9] = [
        PlanState::Candidate,
        PlanState::Marked,
        PlanState::Notified,
        PlanState::Approved,
        PlanState::Acting,
        PlanState::Done,
        PlanState::Failed,
        PlanState::Released,
        PlanState::Rejected,
    ];

    /// The states a plan is under way in (at most one such plan per resource and action).
    pub const ACTIVE: [PlanState; 5] =
        [PlanState::Candidate, PlanState::Marked, PlanState::Notified, PlanState::Approved, PlanState::Acting];

    pub fn as_str(self) -> &'static str {
        match self {
            PlanState::Candidate => "candidate",
            PlanState::Marked => "marked",
            PlanState::Notified => "notified",
            PlanState::Approved => "approved",
            PlanState::Acting => "acting",
            PlanState::Done => "done",
            PlanState::Failed => "failed",
            PlanState::Released => "released",
            PlanState::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<PlanState> {
        PlanState::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn is_active(self) -> bool {
        PlanState::ACTIVE.contains(&self)
    }
}

impl fmt::Display for PlanState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub id: i64,
    pub finding_id: i64,
    pub parent_id: Option<i64>,
    pub arn: String,
    pub account_id: String,
    pub region: String,
    pub resource_type: String,
    pub resource_id: String,
    pub rule: String,
    pub action: String,
    pub state: PlanState,
    pub reason: String,
    pub owner: String,
    pub monthly_usd: Option<Decimal>,
    pub due: DateTime<Utc>,
    pub mark_value: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub marked: Option<DateTime<Utc>>,
    pub unmarked: Option<DateTime<Utc>>,
    pub notified: Option<DateTime<Utc>>,
    pub warned: Option<DateTime<Utc>>,
    pub approved: Option<DateTime<Utc>>,
    pub approved_by: Option<String>,
    pub acting: Option<DateTime<Utc>>,
    pub called: Option<DateTime<Utc>>,
    pub done: Option<DateTime<Utc>>,
    pub token: String,
    pub request_id: Option<String>,
    pub snapshot_id: Option<String>,
    pub error_code: Option<String>,
    pub error: Option<String>,
}

/// A plan to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPlan {
    pub finding_id: i64,
    pub parent_id: Option<i64>,
    pub arn: String,
    pub account_id: String,
    pub region: String,
    pub resource_type: String,
    pub resource_id: String,
    pub rule: String,
    pub action: String,
    pub reason: String,
    pub owner: String,
    pub monthly_usd: Option<Decimal>,
    pub due: DateTime<Utc>,
    pub mark_value: String,
}

/// Fields a transition sets besides the state (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanChange {
    pub due: Option<DateTime<Utc>>,
    pub mark_value: Option<String>,
    pub marked: Option<DateTime<Utc>>,
    pub unmarked: Option<DateTime<Utc>>,
    pub notified: Option<DateTime<Utc>>,
    pub warned: Option<DateTime<Utc>>,
    pub approved: Option<(DateTime<Utc>, String)>,
    pub acting: Option<DateTime<Utc>>,
    pub called: Option<DateTime<Utc>>,
    pub done: Option<DateTime<Utc>>,
    pub request_id: Option<String>,
    pub snapshot_id: Option<String>,
    pub error: Option<(Option<String>, String)>,
}

/// One audit row: a transition (or an event of a plan, like the final warning), who made it and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub plan_id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub arn: String,
    pub action: String,
    pub detail: String,
    pub request_id: Option<String>,
}

/// What an audit row records, besides the plan and the states.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit<'a> {
    pub actor: &'a str,
    pub detail: String,
    pub request_id: Option<String>,
}

impl<'a> Audit<'a> {
    pub fn new(actor: &'a str, detail: impl Into<String>) -> Audit<'a> {
        Audit { actor, detail: detail.into(), request_id: None }
    }

    pub fn with_request(mut self, request_id: Option<String>) -> Audit<'a> {
        self.request_id = request_id;
        self
    }
}

/// An open cleanup finding of a live resource, with what a plan needs of it.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanupCandidate {
    pub finding_id: i64,
    pub rule: String,
    pub arn: String,
    pub account_id: String,
    pub region: String,
    pub resource_type: String,
    pub resource_id: String,
    pub name: Option<String>,
    /// The resource's state as the inventory stored it (`in-use`, `associated`, `running`, ...).
    pub state: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub monthly_usd: Option<Decimal>,
    pub message: String,
    /// Consecutive evaluations that produced the finding.
    pub evaluations: i64,
    pub first_seen: DateTime<Utc>,
}

/// An exemption granted through the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exemption {
    pub id: i64,
    pub arn: String,
    pub reason: String,
    pub actor: String,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

/// Done and failed actions of one account and action.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ActionCount {
    pub account_id: String,
    pub action: String,
    /// `done` or `failed`.
    pub outcome: String,
    pub count: i64,
}

const PLAN_COLUMNS: &str = "id, finding_id, parent_id, arn, account_id, region, resource_type, resource_id, rule, \
     action, state, reason, owner, monthly_usd, due_ms, mark_value, created_ms, updated_ms, marked_ms, unmarked_ms, \
     notified_ms, warned_ms, approved_ms, approved_by, acting_ms, called_ms, done_ms, token, request_id, snapshot_id, \
     error_code, error";

fn corrupt(what: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt { what, detail: detail.into() }
}

fn opt_ms(row: &AnyRow, col: &str, what: &'static str) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(col).map_err(q(what))?.map(from_ms))
}

fn decimal(v: Option<String>, what: &'static str) -> Result<Option<Decimal>, StoreError> {
    v.map(|s| Decimal::from_str(&s).map_err(|e| corrupt(what, format!("{s:?}: {e}")))).transpose()
}

fn plan_of(row: &AnyRow) -> Result<Plan, StoreError> {
    const W: &str = "cleanup plan";
    let state: String = row.try_get("state").map_err(q(W))?;
    Ok(Plan {
        id: row.try_get("id").map_err(q(W))?,
        finding_id: row.try_get("finding_id").map_err(q(W))?,
        parent_id: row.try_get("parent_id").map_err(q(W))?,
        arn: row.try_get("arn").map_err(q(W))?,
        account_id: row.try_get("account_id").map_err(q(W))?,
        region: row.try_get("region").map_err(q(W))?,
        resource_type: row.try_get("resource_type").map_err(q(W))?,
        resource_id: row.try_get("resource_id").map_err(q(W))?,
        rule: row.try_get("rule").map_err(q(W))?,
        action: row.try_get("action").map_err(q(W))?,
        state: PlanState::parse(&state).ok_or_else(|| corrupt(W, format!("unknown state {state:?}")))?,
        reason: row.try_get("reason").map_err(q(W))?,
        owner: row.try_get("owner").map_err(q(W))?,
        monthly_usd: decimal(row.try_get("monthly_usd").map_err(q(W))?, W)?,
        due: from_ms(row.try_get("due_ms").map_err(q(W))?),
        mark_value: row.try_get("mark_value").map_err(q(W))?,
        created: from_ms(row.try_get("created_ms").map_err(q(W))?),
        updated: from_ms(row.try_get("updated_ms").map_err(q(W))?),
        marked: opt_ms(row, "marked_ms", W)?,
        unmarked: opt_ms(row, "unmarked_ms", W)?,
        notified: opt_ms(row, "notified_ms", W)?,
        warned: opt_ms(row, "warned_ms", W)?,
        approved: opt_ms(row, "approved_ms", W)?,
        approved_by: row.try_get("approved_by").map_err(q(W))?,
        acting: opt_ms(row, "acting_ms", W)?,
        called: opt_ms(row, "called_ms", W)?,
        done: opt_ms(row, "done_ms", W)?,
        token: row.try_get("token").map_err(q(W))?,
        request_id: row.try_get("request_id").map_err(q(W))?,
        snapshot_id: row.try_get("snapshot_id").map_err(q(W))?,
        error_code: row.try_get("error_code").map_err(q(W))?,
        error: row.try_get("error").map_err(q(W))?,
    })
}

fn audit_of(row: &AnyRow) -> Result<AuditRow, StoreError> {
    const W: &str = "cleanup audit";
    Ok(AuditRow {
        id: row.try_get("id").map_err(q(W))?,
        plan_id: row.try_get("plan_id").map_err(q(W))?,
        at: from_ms(row.try_get("at_ms").map_err(q(W))?),
        actor: row.try_get("actor").map_err(q(W))?,
        from_state: row.try_get("from_state").map_err(q(W))?,
        to_state: row.try_get("to_state").map_err(q(W))?,
        arn: row.try_get("arn").map_err(q(W))?,
        action: row.try_get("action").map_err(q(W))?,
        detail: row.try_get("detail").map_err(q(W))?,
        request_id: row.try_get("request_id").map_err(q(W))?,
    })
}

/// Which plans [`Store::plans`] returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanFilter {
    /// Only these states; empty: every state.
    pub states: Vec<PlanState>,
    /// Only plans with an id above this (paging).
    pub after_id: Option<i64>,
    pub limit: Option<i64>,
}

impl PlanFilter {
    pub fn active() -> PlanFilter {
        PlanFilter { states: PlanState::ACTIVE.to_vec(), ..PlanFilter::default() }
    }
}

async fn append_audit(
    tx: &mut Transaction<'static, Any>,
    plan: (i64, &str, &str),
    from: Option<PlanState>,
    to: PlanState,
    audit: &Audit<'_>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (plan_id, arn, action) = plan;
    sqlx::query(
        "INSERT INTO cleanup_audit (plan_id, at_ms, actor, from_state, to_state, arn, action, detail, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(plan_id)
    .bind(ms(at))
    .bind(audit.actor.to_string())
    .bind(from.map(|s| s.as_str()))
    .bind(to.as_str())
    .bind(arn.to_string())
    .bind(action.to_string())
    .bind(audit.detail.clone())
    .bind(audit.request_id.clone())
    .execute(&mut **tx)
    .await
    .map_err(q("append cleanup audit"))?;
    Ok(())
}

impl Store {
    /// Open cleanup findings of live resources, oldest first, with the resource's id, name and tags.
    pub async fn cleanup_candidates(&self) -> Result<Vec<CleanupCandidate>, StoreError> {
        const W: &str = "cleanup candidates";
        let sql = format!(
            "SELECT f.id AS finding_id, f.rule AS rule, f.subject AS arn, r.account_id AS account_id, \
             r.region AS region, r.resource_type AS resource_type, r.resource_id AS resource_id, r.name AS name, \
             r.state AS state, r.tags AS tags, f.monthly_usd AS monthly_usd, f.message AS message, \
             {} AS evaluations, f.first_seen_ms AS first_seen_ms \
             FROM findings f JOIN resources r ON r.arn = f.subject \
             WHERE f.kind = 'cleanup' AND f.resolved_at_ms IS NULL AND r.gone_at_ms IS NULL \
             ORDER BY f.id",
            super::findings::evaluations_now("f")
        );
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await.map_err(q(W))?;
        rows.iter()
            .map(|r| {
                let tags: String = r.try_get("tags").map_err(q(W))?;
                Ok(CleanupCandidate {
                    finding_id: r.try_get("finding_id").map_err(q(W))?,
                    rule: r.try_get("rule").map_err(q(W))?,
                    arn: r.try_get("arn").map_err(q(W))?,
                    account_id: r.try_get("account_id").map_err(q(W))?,
                    region: r.try_get("region").map_err(q(W))?,
                    resource_type: r.try_get("resource_type").map_err(q(W))?,
                    resource_id: r.try_get("resource_id").map_err(q(W))?,
                    name: r.try_get("name").map_err(q(W))?,
                    state: r.try_get("state").map_err(q(W))?,
                    tags: serde_json::from_str(&tags).map_err(|e| corrupt("resource tags", e.to_string()))?,
                    monthly_usd: decimal(r.try_get("monthly_usd").map_err(q(W))?, W)?,
                    message: r.try_get("message").map_err(q(W))?,
                    evaluations: r.try_get("evaluations").map_err(q(W))?,
                    first_seen: from_ms(r.try_get("first_seen_ms").map_err(q(W))?),
                })
            })
            .collect()
    }

    /// Ids of the open cleanup findings.
    pub async fn open_cleanup_findings(&self) -> Result<HashSet<i64>, StoreError> {
        let rows = sqlx::query("SELECT id FROM findings WHERE kind = 'cleanup' AND resolved_at_ms IS NULL")
            .fetch_all(self.pool())
            .await
            .map_err(q("open cleanup findings"))?;
        rows.iter().map(|r| r.try_get::<i64, _>("id").map_err(q("open cleanup findings"))).collect()
    }

    /// The findings a plan came from, with the plan's action: a finding is planned once for an action,
    /// unless its plan was released (an exemption that expired, an account allowed again, a mark an owner
    /// removed: the resource is a candidate again, and is planned again, marked and notified again).
    pub async fn planned_findings(&self) -> Result<HashSet<(i64, String)>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT finding_id, action FROM cleanup_plans WHERE state <> 'released'")
            .fetch_all(self.pool())
            .await
            .map_err(q("planned findings"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>("finding_id").map_err(q("planned findings"))?,
                    r.try_get::<String, _>("action").map_err(q("planned findings"))?,
                ))
            })
            .collect()
    }

    /// Inserts a plan in state `candidate` and its first audit row; returns its id. `None` when a plan for the
    /// same resource and action is already under way.
    pub async fn insert_plan(
        &self,
        p: &NewPlan,
        audit: &Audit<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin_write("begin insert plan").await?;
        let busy = sqlx::query(
            "SELECT id FROM cleanup_plans WHERE arn = $1 AND action = $2 AND state IN ($3, $4, $5, $6, $7)",
        )
        .bind(p.arn.clone())
        .bind(p.action.clone());
        let busy = PlanState::ACTIVE.iter().fold(busy, |query, s| query.bind(s.as_str()));
        if busy.fetch_optional(&mut *tx).await.map_err(q("active plan"))?.is_some() {
            return Ok(None);
        }
        let row = sqlx::query(
            "INSERT INTO cleanup_plans (finding_id, parent_id, arn, account_id, region, resource_type, resource_id, \
             rule, action, state, reason, owner, monthly_usd, due_ms, mark_value, created_ms, updated_ms, token) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, '') RETURNING id",
        )
        .bind(p.finding_id)
        .bind(p.parent_id)
        .bind(p.arn.clone())
        .bind(p.account_id.clone())
        .bind(p.region.clone())
        .bind(p.resource_type.clone())
        .bind(p.resource_id.clone())
        .bind(p.rule.clone())
        .bind(p.action.clone())
        .bind(PlanState::Candidate.as_str())
        .bind(p.reason.clone())
        .bind(p.owner.clone())
        .bind(p.monthly_usd.map(|d| d.to_string()))
        .bind(ms(p.due))
        .bind(p.mark_value.clone())
        .bind(ms(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(q("insert plan"))?;
        let id: i64 = row.try_get("id").map_err(q("insert plan"))?;
        // The token names the plan at AWS; it is only known once the row has its id.
        sqlx::query("UPDATE cleanup_plans SET token = $1 WHERE id = $2")
            .bind(format!("cloudwarden-plan-{id}"))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(q("plan token"))?;
        append_audit(&mut tx, (id, &p.arn, &p.action), None, PlanState::Candidate, audit, now).await?;
        tx.commit().await.map_err(q("commit insert plan"))?;
        Ok(Some(id))
    }

    /// Moves plan `id` from state `from` to `to`, setting `change`, and appends the audit row, in one
    /// transaction. `Ok(false)` (and nothing written) when the plan is no longer in state `from`. `from == to`
    /// records an event of the plan (a final warning, a call's result) without a change of state.
    pub async fn transition(
        &self,
        id: i64,
        from: PlanState,
        to: PlanState,
        change: &PlanChange,
        audit: &Audit<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write("begin plan transition").await?;
        let moved = update_plan(&mut tx, id, Some(from), to, change, now).await?;
        if let Some((arn, action)) = moved {
            append_audit(&mut tx, (id, &arn, &action), Some(from), to, audit, now).await?;
            tx.commit().await.map_err(q("commit plan transition"))?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Sets fields of plan `id` that are no transition (the mark tag taken off a released plan); no audit row.
    pub async fn update_plan(&self, id: i64, change: &PlanChange, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.begin_write("begin plan update").await?;
        let plan = self.plan_in(&mut tx, id).await?;
        if let Some(plan) = plan {
            update_plan(&mut tx, id, None, plan.state, change, now).await?;
        }
        tx.commit().await.map_err(q("commit plan update"))
    }

    async fn plan_in(&self, tx: &mut Transaction<'static, Any>, id: i64) -> Result<Option<Plan>, StoreError> {
        let row = sqlx::query(&format!("SELECT {PLAN_COLUMNS} FROM cleanup_plans WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(q("plan"))?;
        row.as_ref().map(plan_of).transpose()
    }

    /// One plan.
    pub async fn plan(&self, id: i64) -> Result<Option<Plan>, StoreError> {
        let row = sqlx::query(&format!("SELECT {PLAN_COLUMNS} FROM cleanup_plans WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(q("plan"))?;
        row.as_ref().map(plan_of).transpose()
    }

    /// Plans by id.
    pub async fn plans(&self, filter: &PlanFilter) -> Result<Vec<Plan>, StoreError> {
        let mut sql = format!("SELECT {PLAN_COLUMNS} FROM cleanup_plans WHERE id > $1");
        if !filter.states.is_empty() {
            let list: Vec<String> = (0..filter.states.len()).map(|i| format!("${}", i + 2)).collect();
            sql.push_str(&format!(" AND state IN ({})", list.join(", ")));
        }
        sql.push_str(" ORDER BY id");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {}", limit.max(0)));
        }
        let mut query = sqlx::query(&sql).bind(filter.after_id.unwrap_or(0));
        for s in &filter.states {
            query = query.bind(s.as_str());
        }
        let rows = query.fetch_all(self.pool()).await.map_err(q("plans"))?;
        rows.iter().map(plan_of).collect()
    }

    /// Audit rows, oldest first: of one plan, or all; after an id (paging).
    pub async fn audit(
        &self,
        plan_id: Option<i64>,
        after_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let mut sql = String::from(
            "SELECT id, plan_id, at_ms, actor, from_state, to_state, arn, action, detail, request_id \
             FROM cleanup_audit WHERE id > $1",
        );
        if plan_id.is_some() {
            sql.push_str(" AND plan_id = $2");
        }
        sql.push_str(&format!(" ORDER BY id LIMIT {}", limit.max(0)));
        let mut query = sqlx::query(&sql).bind(after_id.unwrap_or(0));
        if let Some(p) = plan_id {
            query = query.bind(p);
        }
        let rows = query.fetch_all(self.pool()).await.map_err(q("cleanup audit"))?;
        rows.iter().map(audit_of).collect()
    }

    /// Records an exemption of `arn` until `expires` and releases its plans under way (their mark tags are
    /// taken off by the cleanup job's next run), with their audit rows, in one transaction. Returns the
    /// exemption's id and the ids of the released plans.
    pub async fn exempt(
        &self,
        arn: &str,
        reason: &str,
        actor: &str,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(i64, Vec<i64>), StoreError> {
        let mut tx = self.begin_write("begin exemption").await?;
        let row = sqlx::query(
            "INSERT INTO cleanup_exemptions (arn, reason, actor, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id",
        )
        .bind(arn.to_string())
        .bind(reason.to_string())
        .bind(actor.to_string())
        .bind(ms(now))
        .bind(ms(expires))
        .fetch_one(&mut *tx)
        .await
        .map_err(q("insert exemption"))?;
        let exemption: i64 = row.try_get("id").map_err(q("insert exemption"))?;
        let sql = format!(
            "SELECT {PLAN_COLUMNS} FROM cleanup_plans WHERE arn = $1 AND state IN ($2, $3, $4, $5) ORDER BY id"
        );
        let mut query = sqlx::query(&sql).bind(arn.to_string());
        // A plan already acting is not stopped by an exemption: its call may be under way.
        for s in [PlanState::Candidate, PlanState::Marked, PlanState::Notified, PlanState::Approved] {
            query = query.bind(s.as_str());
        }
        let plans: Vec<Plan> = query
            .fetch_all(&mut *tx)
            .await
            .map_err(q("plans to exempt"))?
            .iter()
            .map(plan_of)
            .collect::<Result<_, _>>()?;
        let audit = Audit::new(actor, format!("exempted until {}: {reason}", expires.format("%Y-%m-%d")));
        let mut released = Vec::new();
        for p in plans {
            if update_plan(&mut tx, p.id, Some(p.state), PlanState::Released, &PlanChange::default(), now)
                .await?
                .is_some()
            {
                append_audit(&mut tx, (p.id, &p.arn, &p.action), Some(p.state), PlanState::Released, &audit, now)
                    .await?;
                released.push(p.id);
            }
        }
        tx.commit().await.map_err(q("commit exemption"))?;
        Ok((exemption, released))
    }

    /// The exemptions in force at `now`.
    pub async fn exemptions(&self, now: DateTime<Utc>) -> Result<Vec<Exemption>, StoreError> {
        const W: &str = "cleanup exemptions";
        let rows = sqlx::query(
            "SELECT id, arn, reason, actor, created_ms, expires_ms FROM cleanup_exemptions WHERE expires_ms > $1 \
             ORDER BY id",
        )
        .bind(ms(now))
        .fetch_all(self.pool())
        .await
        .map_err(q(W))?;
        rows.iter()
            .map(|r| {
                Ok(Exemption {
                    id: r.try_get("id").map_err(q(W))?,
                    arn: r.try_get("arn").map_err(q(W))?,
                    reason: r.try_get("reason").map_err(q(W))?,
                    actor: r.try_get("actor").map_err(q(W))?,
                    created: from_ms(r.try_get("created_ms").map_err(q(W))?),
                    expires: from_ms(r.try_get("expires_ms").map_err(q(W))?),
                })
            })
            .collect()
    }

    /// Plans per state.
    pub async fn plan_counts(&self) -> Result<BTreeMap<PlanState, i64>, StoreError> {
        const W: &str = "plan counts";
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM cleanup_plans GROUP BY state")
            .fetch_all(self.pool())
            .await
            .map_err(q(W))?;
        let mut out = BTreeMap::new();
        for r in rows {
            let state: String = r.try_get("state").map_err(q(W))?;
            let state = PlanState::parse(&state).ok_or_else(|| corrupt(W, format!("unknown state {state:?}")))?;
            out.insert(state, r.try_get::<i64, _>("n").map_err(q(W))?);
        }
        Ok(out)
    }

    /// Finished actions (done or failed) per account and action.
    pub async fn action_counts(&self) -> Result<Vec<ActionCount>, StoreError> {
        const W: &str = "action counts";
        let rows = sqlx::query(
            "SELECT account_id, action, state, COUNT(*) AS n FROM cleanup_plans WHERE state IN ('done', 'failed') \
             GROUP BY account_id, action, state ORDER BY account_id, action, state",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q(W))?;
        rows.iter()
            .map(|r| {
                Ok(ActionCount {
                    account_id: r.try_get("account_id").map_err(q(W))?,
                    action: r.try_get("action").map_err(q(W))?,
                    outcome: r.try_get("state").map_err(q(W))?,
                    count: r.try_get("n").map_err(q(W))?,
                })
            })
            .collect()
    }

    /// Actions begun in `account_id` since `since` (the per-account rate).
    pub async fn actions_since(&self, account_id: &str, since: DateTime<Utc>) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM cleanup_plans WHERE account_id = $1 AND acting_ms >= $2")
            .bind(account_id.to_string())
            .bind(ms(since))
            .fetch_one(self.pool())
            .await
            .map_err(q("actions since"))?;
        row.try_get::<i64, _>("n").map_err(q("actions since"))
    }

    /// When the inventory first saw `arn`.
    pub async fn first_seen(&self, arn: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query("SELECT first_seen_ms FROM resources WHERE arn = $1")
            .bind(arn.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(q("first seen"))?;
        row.map(|r| r.try_get::<i64, _>("first_seen_ms").map(from_ms).map_err(q("first seen"))).transpose()
    }

    /// Live resources per account id (the share guard's denominator).
    pub async fn live_resource_counts(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let rows =
            sqlx::query("SELECT account_id, COUNT(*) AS n FROM resources WHERE gone_at_ms IS NULL GROUP BY account_id")
                .fetch_all(self.pool())
                .await
                .map_err(q("live resource counts"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("account_id").map_err(q("live resource counts"))?,
                    r.try_get::<i64, _>("n").map_err(q("live resource counts"))?,
                ))
            })
            .collect()
    }
}

/// The conditional update behind every transition: `Some((arn, action))` when the plan was in state `from`
/// (any state when `None`) and is now `to`.
async fn update_plan(
    tx: &mut Transaction<'static, Any>,
    id: i64,
    from: Option<PlanState>,
    to: PlanState,
    c: &PlanChange,
    now: DateTime<Utc>,
) -> Result<Option<(String, String)>, StoreError> {
    enum V {
        I(Option<i64>),
        S(Option<String>),
    }
    let mut sets: Vec<(&str, V)> = vec![("state", V::S(Some(to.as_str().into()))), ("updated_ms", V::I(Some(ms(now))))];
    let mut t = |col: &'static str, v: Option<DateTime<Utc>>| {
        if let Some(v) = v {
            sets.push((col, V::I(Some(ms(v)))));
        }
    };
    t("due_ms", c.due);
    t("marked_ms", c.marked);
    t("unmarked_ms", c.unmarked);
    t("notified_ms", c.notified);
    t("warned_ms", c.warned);
    t("acting_ms", c.acting);
    t("called_ms", c.called);
    t("done_ms", c.done);
    if let Some((at, by)) = &c.approved {
        sets.push(("approved_ms", V::I(Some(ms(*at)))));
        sets.push(("approved_by", V::S(Some(by.clone()))));
    }
    for (col, v) in [("mark_value", &c.mark_value), ("request_id", &c.request_id), ("snapshot_id", &c.snapshot_id)] {
        if let Some(v) = v {
            sets.push((col, V::S(Some(v.clone()))));
        }
    }
    if let Some((code, message)) = &c.error {
        sets.push(("error_code", V::S(code.clone())));
        sets.push(("error", V::S(Some(message.clone()))));
    }
    let assignments: Vec<String> = sets.iter().enumerate().map(|(i, (col, _))| format!("{col} = ${}", i + 1)).collect();
    let n = sets.len();
    let mut sql = format!("UPDATE cleanup_plans SET {} WHERE id = ${}", assignments.join(", "), n + 1);
    if from.is_some() {
        sql.push_str(&format!(" AND state = ${}", n + 2));
    }
    sql.push_str(" RETURNING arn, action");
    let mut query = sqlx::query(&sql);
    for (_, v) in sets {
        query = match v {
            V::I(v) => query.bind(v),
            V::S(v) => query.bind(v),
        };
    }
    query = query.bind(id);
    if let Some(f) = from {
        query = query.bind(f.as_str());
    }
    let row = query.fetch_optional(&mut **tx).await.map_err(q("update plan"))?;
    row.map(|r| {
        Ok((r.try_get::<String, _>("arn").map_err(q("update plan"))?, r.try_get("action").map_err(q("update plan"))?))
    })
    .transpose()
}
