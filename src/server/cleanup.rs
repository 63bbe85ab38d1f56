//! The cleanup API: plans with their state and due date, approval, rejection and exemption (scope
//! `approve`), and the append-only audit trail (scope `read`). What the API changes it changes in the
//! database, with the token's name as the actor; the cleanup job carries it out at its next run (taking a
//! mark tag off, acting on an approved plan when it is due).

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{authorize, ApiError, AppState};
use crate::config::Scope;
use crate::store::{Audit, AuditRow, Plan, PlanChange, PlanFilter, PlanState};

/// Longest page.
const MAX_LIMIT: i64 = 1000;
/// Longest exemption.
const MAX_EXEMPTION_DAYS: i64 = 400;

fn internal(e: impl ToString) -> ApiError {
    ApiError::Internal(e.to_string())
}

fn limit_of(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(100),
        Some(l) if (1..=MAX_LIMIT).contains(&l) => Ok(l),
        Some(l) => Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_LIMIT}, got {l}"))),
    }
}

/// `GET /api/v1/cleanup` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    /// One state only (`candidate`, `marked`, `notified`, `approved`, `acting`, `done`, `failed`, `released`,
    /// `rejected`); `active` for the plans under way. Default: every state.
    state: Option<String>,
    /// Plans with an id above this one (the previous page's `next_after`).
    after: Option<i64>,
    limit: Option<i64>,
}

#[derive(Debug, Serialize)]
pub(super) struct PlanPage {
    plans: Vec<Plan>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<i64>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<PlanPage>, ApiError> {
    let (api, _) = authorize(&state, &headers, Scope::Read)?;
    let Query(p) = query.map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))?;
    let states = match p.state.as_deref() {
        None => Vec::new(),
        Some("active") => PlanState::ACTIVE.to_vec(),
        Some(s) => vec![PlanState::parse(s).ok_or_else(|| {
            let known: Vec<&str> = PlanState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::BadRequest(format!("unknown state {s:?}: expected `active` or one of {}", known.join(", ")))
        })?],
    };
    let limit = limit_of(p.limit)?;
    let plans =
        api.store.plans(&PlanFilter { states, after_id: p.after, limit: Some(limit + 1) }).await.map_err(internal)?;
    Ok(Json(page(plans, limit)))
}

fn page(mut plans: Vec<Plan>, limit: i64) -> PlanPage {
    let more = plans.len() as i64 > limit;
    plans.truncate(limit as usize);
    PlanPage { next_after: if more { plans.last().map(|p| p.id) } else { None }, plans }
}

#[derive(Debug, Serialize)]
pub(super) struct PlanWithAudit {
    #[serde(flatten)]
    plan: Plan,
    audit: Vec<AuditRow>,
}

async fn plan_or_404(api: &super::Api, id: i64) -> Result<Plan, ApiError> {
    api.store.plan(id).await.map_err(internal)?.ok_or_else(|| ApiError::NotFound(format!("no cleanup plan {id}")))
}

pub(super) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<PlanWithAudit>, ApiError> {
    let (api, _) = authorize(&state, &headers, Scope::Read)?;
    let plan = plan_or_404(api, id).await?;
    let audit = api.store.audit(Some(id), None, MAX_LIMIT).await.map_err(internal)?;
    Ok(Json(PlanWithAudit { plan, audit }))
}

/// The body of approve and reject: a comment (approve, optional) or a reason (reject, required).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    comment: Option<String>,
    reason: Option<String>,
}

fn body<T: Default + for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

fn text(field: &str, v: Option<String>, required: bool) -> Result<Option<String>, ApiError> {
    match v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
        Some(s) if s.chars().count() > 1000 => {
            Err(ApiError::BadRequest(format!("{field} is longer than 1000 characters")))
        }
        None if required => Err(ApiError::BadRequest(format!("{field} is required"))),
        v => Ok(v),
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Changed {
    plan: Plan,
}

/// Moves a plan from one of `from` to `to` as `actor`; 409 when it is in another state.
async fn decide(
    api: &super::Api,
    id: i64,
    from: &[PlanState],
    to: PlanState,
    change: &PlanChange,
    audit: &Audit<'_>,
) -> Result<Json<Changed>, ApiError> {
    let plan = plan_or_404(api, id).await?;
    if !from.contains(&plan.state) {
        let allowed: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        return Err(ApiError::Conflict(format!(
            "plan {id} is {}; it can become {to} only from {}",
            plan.state,
            allowed.join(", ")
        )));
    }
    let now = api.clock.now();
    if !api.store.transition(id, plan.state, to, change, audit, now).await.map_err(internal)? {
        return Err(ApiError::Conflict(format!("plan {id} changed state meanwhile; read it again")));
    }
    Ok(Json(Changed { plan: plan_or_404(api, id).await? }))
}

pub(super) async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    bytes: Bytes,
) -> Result<Json<Changed>, ApiError> {
    let (api, token) = authorize(&state, &headers, Scope::Approve)?;
    let d: Decision = body(&bytes)?;
    let comment = text("comment", d.comment, false)?;
    let now = api.clock.now();
    let change = PlanChange { approved: Some((now, token.name.clone())), ..PlanChange::default() };
    let detail = match comment {
        Some(c) => format!("approved: {c}"),
        None => "approved".to_string(),
    };
    decide(
        api,
        id,
        &[PlanState::Marked, PlanState::Notified],
        PlanState::Approved,
        &change,
        &Audit::new(&token.name, detail),
    )
    .await
}

pub(super) async fn reject(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    bytes: Bytes,
) -> Result<Json<Changed>, ApiError> {
    let (api, token) = authorize(&state, &headers, Scope::Approve)?;
    let d: Decision = body(&bytes)?;
    let reason = text("reason", d.reason, true)?.unwrap_or_default();
    let from = [PlanState::Candidate, PlanState::Marked, PlanState::Notified, PlanState::Approved];
    let audit = Audit::new(&token.name, format!("rejected: {reason}"));
    decide(api, id, &from, PlanState::Rejected, &PlanChange::default(), &audit).await
}

/// The body of exempt.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExemptBody {
    reason: Option<String>,
    /// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time.
    expires: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct Exempted {
    exemption_id: i64,
    arn: String,
    expires: DateTime<Utc>,
    /// Plans under way that the exemption released.
    released: Vec<i64>,
}

pub(super) async fn exempt(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    bytes: Bytes,
) -> Result<Json<Exempted>, ApiError> {
    let (api, token) = authorize(&state, &headers, Scope::Approve)?;
    let b: ExemptBody = body(&bytes)?;
    let reason = text("reason", b.reason, true)?.unwrap_or_default();
    let expires = text("expires", b.expires, true)?.unwrap_or_default();
    let expires = parse_time(&expires).ok_or_else(|| {
        ApiError::BadRequest(format!("expires: expected YYYY-MM-DD or an RFC 3339 time, got {expires:?}"))
    })?;
    let now = api.clock.now();
    if expires <= now || expires > now + chrono::Duration::days(MAX_EXEMPTION_DAYS) {
        return Err(ApiError::BadRequest(format!(
            "expires must be in the future and at most {MAX_EXEMPTION_DAYS} days away"
        )));
    }
    let plan = plan_or_404(api, id).await?;
    if plan.state == PlanState::Acting {
        return Err(ApiError::Conflict(format!("plan {id} is acting; an exemption can no longer stop it")));
    }
    let (exemption_id, released) =
        api.store.exempt(&plan.arn, &reason, &token.name, expires, now).await.map_err(internal)?;
    Ok(Json(Exempted { exemption_id, arn: plan.arn, expires, released }))
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

/// `GET /api/v1/audit` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditParams {
    /// One plan's rows only.
    plan: Option<i64>,
    /// Rows with an id above this one (the previous page's `next_after`).
    after: Option<i64>,
    limit: Option<i64>,
}

#[derive(Debug, Serialize)]
pub(super) struct AuditPage {
    rows: Vec<AuditRow>,
    next_after: Option<i64>,
}

pub(super) async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let (api, _) = authorize(&state, &headers, Scope::Read)?;
    let Query(p) = query.map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))?;
    let limit = limit_of(p.limit)?;
    let mut rows = api.store.audit(p.plan, p.after, limit + 1).await.map_err(internal)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok(Json(AuditPage { next_after: if more { rows.last().map(|r| r.id) } else { None }, rows }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exemption_expiry_forms() {
        assert_eq!(parse_time("2027-01-31"), Some("2027-01-31T00:00:00Z".parse().unwrap()));
        assert_eq!(parse_time("2027-01-31T12:00:00+02:00"), Some("2027-01-31T10:00:00Z".parse().unwrap()));
        assert_eq!(parse_time("next week"), None);
        assert_eq!(parse_time("2027-02-30"), None);
    }
}
