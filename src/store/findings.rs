//! Findings of the rules engine, with their history: one row per finding from when an evaluation first
//! produced it until one no longer does. And the reads the rules job builds its inputs from.
//!
//! `(kind, rule, subject)` is a finding's identity; at most one row per identity is open. Recording an
//! evaluation refreshes the open rows it produced again, opens rows for new ones, and resolves the open rows
//! of the kinds it evaluated that it did not produce, all in one transaction. A finding that comes back after
//! being resolved opens a new row with a new first sighting.
//!
//! An evaluation rewrites only the rows that changed. `finding_evaluations` counts each kind's evaluations
//! (`seq`) and keeps the time of the last one; an open row with `seen_seq` set was produced, unchanged, by
//! every evaluation of its kind since it was last written (at evaluation `seen_seq`), so its last sighting is
//! its kind's last evaluation and its count of evaluations in a row grows with its kind's, without a write.
//! A row is written when it is new, changed (severity, message, money, details, scope), resolved, or left
//! open without being produced (a scope the evaluation could not read: it stops following its kind, with its
//! sighting and count as they were). The open rows are read and compared before the write lock is taken, so
//! an evaluation that changes little holds the lock for little.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use collector::Resource;
use futures::TryStreamExt;
use rules::finding::{Finding, FindingKind, Severity};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::Row;

use super::{from_ms, insert_values, ms, q, Backend, Store, StoreError};

/// Parameters per `findings` row.
const COLUMNS: usize = 14;
/// Ids per `IN (...)` list.
const ID_CHUNK: usize = 500;

/// What recording one evaluation changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FindingsWrite {
    /// Findings seen for the first time (or again after being resolved): new rows.
    pub opened: u64,
    /// Open findings produced again: refreshed rows.
    pub refreshed: u64,
    /// Open findings of the evaluated kinds that the evaluation did not produce.
    pub resolved: u64,
}

/// A stored finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredFinding {
    pub id: i64,
    pub kind: FindingKind,
    pub rule: String,
    pub subject: String,
    pub account_id: Option<String>,
    pub region: Option<String>,
    pub resource_type: Option<String>,
    pub severity: Severity,
    pub message: String,
    pub monthly_usd: Option<Decimal>,
    pub details: serde_json::Value,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Which findings [`Store::findings`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FindingFilter {
    /// Only this kind; `None`: every kind.
    pub kind: Option<FindingKind>,
    /// Resolved findings too; open ones only when false.
    pub include_resolved: bool,
}

/// Open findings of one kind and severity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FindingCount {
    pub kind: FindingKind,
    pub severity: Severity,
    pub open: i64,
}

/// A live resource as the rules read it: the inventory's resource and when it was first seen.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleResource {
    pub resource: Resource,
    pub first_seen: DateTime<Utc>,
}

fn corrupt(what: &'static str) -> impl Fn(String) -> StoreError {
    move |detail| StoreError::Corrupt { what, detail }
}

/// A finding row's last sighting as of now, for the row named `row` (a table name or alias): its kind's last
/// evaluation while the row follows its kind (`seen_seq` set), else what the row says.
pub(crate) fn last_seen_now(row: &str) -> String {
    format!(
        "CASE WHEN {row}.seen_seq IS NULL THEN {row}.last_seen_ms ELSE \
         COALESCE((SELECT e.at_ms FROM finding_evaluations e WHERE e.kind = {row}.kind), {row}.last_seen_ms) END"
    )
}

/// A finding row's count of evaluations in a row as of now, for the row named `row`.
pub(crate) fn evaluations_now(row: &str) -> String {
    format!(
        "CASE WHEN {row}.seen_seq IS NULL THEN {row}.evaluations ELSE {row}.evaluations + \
         COALESCE((SELECT e.seq FROM finding_evaluations e WHERE e.kind = {row}.kind), {row}.seen_seq) - {row}.seen_seq END"
    )
}

/// The stored columns of a finding row aliased `f`, `last_seen_ms` as of now.
fn finding_columns_now() -> String {
    format!(
        "f.id AS id, f.kind AS kind, f.rule AS rule, f.subject AS subject, f.account_id AS account_id, \
         f.region AS region, f.resource_type AS resource_type, f.severity AS severity, f.message AS message, \
         f.monthly_usd AS monthly_usd, f.details AS details, f.first_seen_ms AS first_seen_ms, \
         {} AS last_seen_ms, f.resolved_at_ms AS resolved_at_ms",
        last_seen_now("f")
    )
}

/// Freezes the rows listed (ids from parameter `$first` on, or `?`) at their values as of now and stops them
/// following their kind; `resolve` also resolves them at parameter 1.
fn freeze_sql(ids: usize, resolve: bool, backend: Backend) -> String {
    let (first, resolved) = if resolve {
        let at = match backend {
            Backend::Sqlite => "?".to_string(),
            Backend::Postgres => "$1".to_string(),
        };
        (2, format!("resolved_at_ms = {at}, "))
    } else {
        (1, String::new())
    };
    // The expressions read the row's values before the update.
    format!(
        "UPDATE findings SET {resolved}last_seen_ms = {}, evaluations = {}, seen_seq = NULL \
         WHERE resolved_at_ms IS NULL AND id IN ({})",
        last_seen_now("findings"),
        evaluations_now("findings"),
        in_list(ids, first, backend)
    )
}

impl FindingFilter {
    /// The SQL conditions of the filter; the kind, when there is one, is the parameter `$first`.
    fn conditions(&self, first: usize) -> Vec<String> {
        let mut out = Vec::new();
        if !self.include_resolved {
            out.push("resolved_at_ms IS NULL".to_string());
        }
        if self.kind.is_some() {
            out.push(format!("kind = ${first}"));
        }
        out
    }
}

/// A finding row as stored.
fn stored_finding(r: &sqlx::any::AnyRow) -> Result<StoredFinding, StoreError> {
    const WHAT: &str = "list findings";
    let kind: String = r.try_get("kind").map_err(q(WHAT))?;
    let severity: String = r.try_get("severity").map_err(q(WHAT))?;
    let money: Option<String> = r.try_get("monthly_usd").map_err(q(WHAT))?;
    let details: String = r.try_get("details").map_err(q(WHAT))?;
    Ok(StoredFinding {
        id: r.try_get("id").map_err(q(WHAT))?,
        kind: FindingKind::parse(&kind).ok_or_else(|| corrupt("finding kind")(kind.clone()))?,
        rule: r.try_get("rule").map_err(q(WHAT))?,
        subject: r.try_get("subject").map_err(q(WHAT))?,
        account_id: r.try_get("account_id").map_err(q(WHAT))?,
        region: r.try_get("region").map_err(q(WHAT))?,
        resource_type: r.try_get("resource_type").map_err(q(WHAT))?,
        severity: Severity::parse(&severity).ok_or_else(|| corrupt("finding severity")(severity.clone()))?,
        message: r.try_get("message").map_err(q(WHAT))?,
        monthly_usd: money
            .map(|m| Decimal::from_str(&m).map_err(|e| corrupt("finding monthly_usd")(format!("{m:?}: {e}"))))
            .transpose()?,
        details: serde_json::from_str(&details).map_err(|e| corrupt("finding details")(e.to_string()))?,
        first_seen: from_ms(r.try_get("first_seen_ms").map_err(q(WHAT))?),
        last_seen: from_ms(r.try_get("last_seen_ms").map_err(q(WHAT))?),
        resolved_at: r.try_get::<Option<i64>, _>("resolved_at_ms").map_err(q(WHAT))?.map(from_ms),
    })
}

fn insert_sql(rows: usize, backend: Backend) -> String {
    let mut sql = insert_values(
        "INSERT INTO findings (kind, rule, subject, account_id, region, resource_type, severity, message, monthly_usd, \
         details, first_seen_ms, last_seen_ms, resolved_at_ms, seen_seq) VALUES ",
        rows,
        COLUMNS,
        backend,
    );
    // Only open rows are in the partial unique index: a resolved identity never conflicts. A row that followed
    // its kind counts the evaluations since it was written (the kind's count before this one, which is
    // `excluded.seen_seq - 1`), plus this one.
    sql.push_str(
        " ON CONFLICT (kind, rule, subject) WHERE resolved_at_ms IS NULL DO UPDATE SET \
         account_id = excluded.account_id, region = excluded.region, resource_type = excluded.resource_type, \
         severity = excluded.severity, message = excluded.message, monthly_usd = excluded.monthly_usd, \
         details = excluded.details, last_seen_ms = excluded.last_seen_ms, \
         evaluations = CASE WHEN findings.seen_seq IS NULL OR excluded.seen_seq IS NULL THEN findings.evaluations \
         ELSE findings.evaluations + excluded.seen_seq - 1 - findings.seen_seq END + 1, seen_seq = excluded.seen_seq",
    );
    sql
}

fn in_list(n: usize, first: usize, backend: Backend) -> String {
    (0..n)
        .map(|i| match backend {
            Backend::Sqlite => "?".to_string(),
            Backend::Postgres => format!("${}", first + i),
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl Store {
    /// Records one evaluation of `kinds` at `now`, in one transaction: `produced` findings are opened or
    /// refreshed (first sighting kept; last sighting, severity, message, money and details updated), and the
    /// open findings of `kinds` not produced are resolved at `now`. Findings of other kinds are left as they
    /// are. A produced finding whose kind is not in `kinds` is recorded too. Duplicate identities in
    /// `produced` keep the first.
    pub async fn record_findings(
        &self,
        kinds: &[FindingKind],
        produced: &[Finding],
        now: DateTime<Utc>,
    ) -> Result<FindingsWrite, StoreError> {
        self.record_findings_except(kinds, &[], produced, now).await
    }

    /// [`Store::record_findings`], except that the open findings of `kinds` in the `left_alone` scopes
    /// (account id, region) are not resolved: an evaluation that could not read a scope decides nothing there.
    pub async fn record_findings_except(
        &self,
        kinds: &[FindingKind],
        left_alone: &[(String, String)],
        produced: &[Finding],
        now: DateTime<Utc>,
    ) -> Result<FindingsWrite, StoreError> {
        let backend = self.backend();
        let at = ms(now);

        // The produced findings by identity, the first of duplicates kept, with their stored text.
        let mut unique: Vec<(&Finding, String)> = Vec::with_capacity(produced.len());
        let mut by_key: HashMap<(FindingKind, &str, &str), usize> = HashMap::with_capacity(produced.len());
        for f in produced {
            if let std::collections::hash_map::Entry::Vacant(v) = by_key.entry(f.key()) {
                v.insert(unique.len());
                let details =
                    serde_json::to_string(&f.details).map_err(|e| corrupt("finding details")(e.to_string()))?;
                unique.push((f, details));
            }
        }

        // The open rows of the evaluated kinds, compared with what was produced before the write lock is
        // taken: only one job evaluates a kind, and the job runs one evaluation at a time.
        let mut matched = vec![false; unique.len()];
        let mut write_rows: Vec<usize> = Vec::new();
        let (mut resolve, mut freeze) = (Vec::new(), Vec::new());
        let mut write = FindingsWrite::default();
        if !kinds.is_empty() {
            let sql = format!(
                "SELECT id, kind, rule, subject, account_id, region, resource_type, severity, message, monthly_usd, \
                 details, seen_seq FROM findings WHERE resolved_at_ms IS NULL AND kind IN ({})",
                in_list(kinds.len(), 1, backend)
            );
            let mut query = sqlx::query(&sql);
            for k in kinds {
                query = query.bind(k.as_str());
            }
            const WHAT: &str = "open findings";
            let mut rows = query.fetch(self.pool());
            while let Some(r) = rows.try_next().await.map_err(q(WHAT))? {
                let id: i64 = r.try_get("id").map_err(q(WHAT))?;
                let kind: String = r.try_get("kind").map_err(q(WHAT))?;
                let rule: String = r.try_get("rule").map_err(q(WHAT))?;
                let subject: String = r.try_get("subject").map_err(q(WHAT))?;
                let account: Option<String> = r.try_get("account_id").map_err(q(WHAT))?;
                let region: Option<String> = r.try_get("region").map_err(q(WHAT))?;
                let following = r.try_get::<Option<i64>, _>("seen_seq").map_err(q(WHAT))?.is_some();
                let found = FindingKind::parse(&kind).and_then(|k| by_key.get(&(k, rule.as_str(), subject.as_str())));
                match found {
                    Some(&i) => {
                        matched[i] = true;
                        write.refreshed += 1;
                        let (f, details) = &unique[i];
                        let same = following
                            && account.as_deref() == f.account_id.as_deref()
                            && region.as_deref() == f.region.as_deref()
                            && r.try_get::<Option<String>, _>("resource_type").map_err(q(WHAT))?.as_deref()
                                == f.resource_type.as_deref()
                            && r.try_get::<String, _>("severity").map_err(q(WHAT))? == f.severity.as_str()
                            && r.try_get::<String, _>("message").map_err(q(WHAT))? == *f.message
                            && r.try_get::<Option<String>, _>("monthly_usd").map_err(q(WHAT))?
                                == f.monthly_usd.map(|d| d.to_string())
                            && r.try_get::<String, _>("details").map_err(q(WHAT))? == *details;
                        if !same {
                            write_rows.push(i);
                        }
                    }
                    None => {
                        let left = match (&account, &region) {
                            (Some(a), Some(g)) => left_alone.iter().any(|(la, lg)| la == a && lg == g),
                            _ => false,
                        };
                        if !left {
                            resolve.push(id);
                        } else if following {
                            freeze.push(id);
                        }
                    }
                }
            }
        }
        for (i, m) in matched.iter().enumerate() {
            if !m {
                write.opened += 1;
                write_rows.push(i);
            }
        }
        write_rows.sort_unstable();

        let mut tx = self.begin_write("begin findings write").await?;
        // Each evaluated kind's count of evaluations, before this one.
        let mut seq: HashMap<FindingKind, i64> = kinds.iter().map(|k| (*k, 0)).collect();
        if !kinds.is_empty() {
            let sql = format!(
                "SELECT kind, seq FROM finding_evaluations WHERE kind IN ({})",
                in_list(kinds.len(), 1, backend)
            );
            let mut query = sqlx::query(&sql);
            for k in kinds {
                query = query.bind(k.as_str());
            }
            for r in query.fetch_all(&mut *tx).await.map_err(q("finding evaluations"))? {
                let kind: String = r.try_get("kind").map_err(q("finding evaluations"))?;
                if let Some(k) = FindingKind::parse(&kind) {
                    seq.insert(k, r.try_get("seq").map_err(q("finding evaluations"))?);
                }
            }
        }

        // Resolved, and left open without being produced: frozen as of the last evaluation.
        for (ids, resolving) in [(&resolve, true), (&freeze, false)] {
            for chunk in ids.chunks(ID_CHUNK) {
                let sql = freeze_sql(chunk.len(), resolving, backend);
                let mut query = sqlx::query(&sql);
                if resolving {
                    query = query.bind(at);
                }
                for id in chunk {
                    query = query.bind(*id);
                }
                let done = query.execute(&mut *tx).await.map_err(q("resolve findings"))?.rows_affected();
                if resolving {
                    write.resolved += done;
                }
            }
        }

        crate::crash::pause_point("findings-write").await;
        // New and changed rows, written as of this evaluation.
        for rows in write_rows.chunks(backend.insert_chunk()) {
            let sql = insert_sql(rows.len(), backend);
            let mut query = sqlx::query(&sql);
            for &i in rows {
                let (f, details) = &unique[i];
                query = query
                    .bind(f.kind.as_str())
                    .bind(f.rule.to_string())
                    .bind(f.subject.to_string())
                    .bind(f.account_id.as_deref().map(str::to_string))
                    .bind(f.region.as_deref().map(str::to_string))
                    .bind(f.resource_type.as_deref().map(str::to_string))
                    .bind(f.severity.as_str())
                    .bind(f.message.to_string())
                    .bind(f.monthly_usd.map(|d| d.to_string()))
                    .bind(details.clone())
                    .bind(at)
                    .bind(at)
                    .bind(None::<i64>)
                    .bind(seq.get(&f.kind).map(|s| s + 1));
            }
            query.execute(&mut *tx).await.map_err(q("upsert findings"))?;
        }

        // This evaluation, for every row that follows its kind.
        for k in kinds {
            sqlx::query(
                "INSERT INTO finding_evaluations (kind, seq, at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (kind) DO UPDATE SET seq = excluded.seq, at_ms = excluded.at_ms",
            )
            .bind(k.as_str())
            .bind(seq[k] + 1)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(q("count the evaluation"))?;
        }
        tx.commit().await.map_err(q("commit findings write"))?;
        Ok(write)
    }

    /// Stored findings, ordered by kind (in [`FindingKind::ALL`] order), rule, subject and first sighting.
    pub async fn findings(&self, filter: FindingFilter) -> Result<Vec<StoredFinding>, StoreError> {
        const WHAT: &str = "list findings";
        let conditions = filter.conditions(1);
        let sql = format!(
            "SELECT {} FROM findings f{} ORDER BY kind, rule, subject, first_seen_ms, id",
            finding_columns_now(),
            if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) }
        );
        let mut query = sqlx::query(&sql);
        if let Some(kind) = filter.kind {
            query = query.bind(kind.as_str());
        }
        let rows = query.fetch_all(self.pool()).await.map_err(q(WHAT))?;
        let mut out = rows.iter().map(stored_finding).collect::<Result<Vec<_>, StoreError>>()?;
        // The SQL order is by the kind's text; the API's is the engine's.
        out.sort_by(|a, b| {
            (a.kind, &a.rule, &a.subject, a.first_seen, a.id).cmp(&(b.kind, &b.rule, &b.subject, b.first_seen, b.id))
        });
        Ok(out)
    }

    /// One page of findings in id order: those matching `filter` with an id above `after`, at most `limit`.
    /// Ids never change, so paging by id sees every row that existed throughout exactly once, whatever is
    /// written between pages. Reads only the page.
    pub async fn findings_page(
        &self,
        filter: FindingFilter,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredFinding>, StoreError> {
        let mut conditions = vec!["id > $1".to_string()];
        conditions.extend(filter.conditions(2));
        let sql = format!(
            "SELECT {} FROM findings f WHERE {} ORDER BY id LIMIT {}",
            finding_columns_now(),
            conditions.join(" AND "),
            limit
        );
        let mut query = sqlx::query(&sql).bind(after);
        if let Some(kind) = filter.kind {
            query = query.bind(kind.as_str());
        }
        let rows = query.fetch_all(self.pool()).await.map_err(q("list findings"))?;
        rows.iter().map(stored_finding).collect()
    }

    /// Open findings per kind and severity (only the pairs that have some), ordered.
    pub async fn finding_counts(&self) -> Result<Vec<FindingCount>, StoreError> {
        const WHAT: &str = "count findings";
        let rows = sqlx::query(
            "SELECT kind, severity, COUNT(*) AS open_count FROM findings WHERE resolved_at_ms IS NULL GROUP BY kind, severity",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q(WHAT))?;
        let mut out = rows
            .iter()
            .map(|r| {
                let kind: String = r.try_get("kind").map_err(q(WHAT))?;
                let severity: String = r.try_get("severity").map_err(q(WHAT))?;
                Ok(FindingCount {
                    kind: FindingKind::parse(&kind).ok_or_else(|| corrupt("finding kind")(kind.clone()))?,
                    severity: Severity::parse(&severity)
                        .ok_or_else(|| corrupt("finding severity")(severity.clone()))?,
                    open: r.try_get("open_count").map_err(q(WHAT))?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort();
        Ok(out)
    }

    /// Every live resource with its details and first sighting, ordered by ARN: what the rules evaluate.
    pub async fn rule_resources(&self) -> Result<Vec<RuleResource>, StoreError> {
        const WHAT: &str = "rule resources";
        let rows = sqlx::query(
            "SELECT arn, resource_type, account_id, region, resource_id, name, state, tags, details, created_at_ms, \
             first_seen_ms FROM resources WHERE gone_at_ms IS NULL ORDER BY arn",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q(WHAT))?;
        rows.iter()
            .map(|r| {
                let tags: String = r.try_get("tags").map_err(q(WHAT))?;
                let details: String = r.try_get("details").map_err(q(WHAT))?;
                Ok(RuleResource {
                    resource: Resource {
                        arn: r.try_get("arn").map_err(q(WHAT))?,
                        resource_type: r.try_get("resource_type").map_err(q(WHAT))?,
                        account_id: r.try_get("account_id").map_err(q(WHAT))?,
                        region: r.try_get("region").map_err(q(WHAT))?,
                        id: r.try_get("resource_id").map_err(q(WHAT))?,
                        name: r.try_get("name").map_err(q(WHAT))?,
                        state: r.try_get("state").map_err(q(WHAT))?,
                        tags: serde_json::from_str(&tags).map_err(|e| corrupt("resource tags")(e.to_string()))?,
                        created_at: r.try_get::<Option<i64>, _>(9).map_err(q(WHAT))?.map(from_ms),
                        details: serde_json::from_str(&details)
                            .map_err(|e| corrupt("resource details")(e.to_string()))?,
                    },
                    first_seen: from_ms(r.try_get("first_seen_ms").map_err(q(WHAT))?),
                })
            })
            .collect()
    }

    /// Every stored Terraform resource as the rules read it, ordered by origin and address.
    pub async fn rule_tf_resources(&self) -> Result<Vec<rules::input::TfResource>, StoreError> {
        const WHAT: &str = "rule terraform resources";
        let rows = sqlx::query(
            "SELECT origin, address, tf_type, arn, resource_id, tags FROM tf_resources ORDER BY origin, address, deposed",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q(WHAT))?;
        rows.iter()
            .map(|r| {
                let tags: String = r.try_get("tags").map_err(q(WHAT))?;
                let tags: BTreeMap<String, String> =
                    serde_json::from_str(&tags).map_err(|e| corrupt("terraform tags")(e.to_string()))?;
                Ok(rules::input::TfResource {
                    origin: r.try_get("origin").map_err(q(WHAT))?,
                    address: r.try_get("address").map_err(q(WHAT))?,
                    tf_type: r.try_get("tf_type").map_err(q(WHAT))?,
                    arn: r.try_get("arn").map_err(q(WHAT))?,
                    id: r.try_get("resource_id").map_err(q(WHAT))?,
                    tags,
                })
            })
            .collect()
    }
}
