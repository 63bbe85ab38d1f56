//! The engine's entry: a rule set and the inputs in, the findings of every family and the aggregates for
//! `/metrics` out. Pure: `now` is an argument.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::cleanup::RuleSavings;
use crate::drift::{Coverage, DriftKind};
use crate::file::RuleFile;
use crate::finding::{Finding, FindingKind};
use crate::input::{DailyCost, Resource, TfResource};
use crate::money::{self, Overflow};
use crate::tagging::Compliance;

/// A fast non-cryptographic hasher (the multiply-rotate scheme of rustc's FxHasher) for the engine's
/// indexes: their keys are our own inventory, not attacker-chosen, and SipHash would dominate the time.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_usize(&mut self, i: usize) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    /// The state rotated: the multiplications leave the high bits well mixed and the low ones poor, and
    /// the table takes its bucket from the low bits (as rustc-hash 2 does).
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// A `HashSet` with [`FastHasher`].
pub(crate) type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

/// The shared strings of the findings of one resource: its ARN (the subject), account, region and type.
#[derive(Clone)]
pub(crate) struct ResourceStrings {
    pub subject: Arc<str>,
    pub account_id: Arc<str>,
    pub region: Arc<str>,
    pub resource_type: Arc<str>,
}

/// Hands out one `Arc<str>` per distinct string: the accounts, regions and types of the resources with
/// findings, shared by those findings. One per thread, so the reference counts are not contended.
#[derive(Default)]
pub(crate) struct Interner<'a> {
    strings: FastMap<&'a str, Arc<str>>,
}

impl<'a> Interner<'a> {
    pub fn get(&mut self, s: &'a str) -> Arc<str> {
        self.strings.entry(s).or_insert_with(|| Arc::from(s)).clone()
    }

    /// The strings of `r`'s findings (its ARN copied once, the others interned).
    pub fn resource(&mut self, r: &'a Resource) -> ResourceStrings {
        ResourceStrings {
            subject: Arc::from(r.arn.as_str()),
            account_id: self.get(&r.account_id),
            region: self.get(&r.region),
            resource_type: self.get(&r.resource_type),
        }
    }
}

/// What the engine evaluates.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The evaluation time: ages and cost windows are counted back from it.
    pub now: DateTime<Utc>,
    /// The live inventory (resources not gone).
    pub resources: &'a [Resource],
    /// Daily costs; only those with a `resource_id` are used, for per-resource cost.
    pub costs: &'a [DailyCost],
    /// Resources of every loaded Terraform state.
    pub tf_resources: &'a [TfResource],
    /// True when at least one state was loaded: without, drift is not evaluated (everything would look
    /// unmanaged).
    pub tf_loaded: bool,
}

/// Per-resource cost over the cost window: the [`CostIndex::WINDOW_DAYS`] complete UTC days before the
/// day of `now` (today's partial day excluded). The sum over those 30 days is the monthly figure.
#[derive(Debug, Clone, Default)]
pub struct CostIndex<'a> {
    by_id: FastMap<&'a str, Decimal>,
    /// First and last day of the window.
    pub window: Option<(NaiveDate, NaiveDate)>,
}

impl<'a> CostIndex<'a> {
    /// The window's length in days.
    pub const WINDOW_DAYS: i64 = 30;

    /// Sums the costs with a resource id per id over the window; fails when a sum leaves the decimal range.
    pub fn build(costs: &'a [DailyCost], now: DateTime<Utc>) -> Result<CostIndex<'a>, Overflow> {
        let today = now.date_naive();
        let first = today - Duration::days(Self::WINDOW_DAYS);
        let mut by_id: FastMap<&str, Decimal> = FastMap::default();
        for c in costs {
            if c.day < first || c.day >= today {
                continue;
            }
            if let Some(id) = c.resource_id.as_deref() {
                money::add_to(by_id.entry(id).or_default(), c.amount)?;
            }
        }
        Ok(CostIndex { by_id, window: Some((first, today - Duration::days(1))) })
    }

    /// The monthly cost of `r`: billing rows whose resource id is its ARN plus those whose resource id is
    /// its service id; `None` when billing has neither.
    pub fn monthly(&self, r: &Resource) -> Result<Option<Decimal>, Overflow> {
        if self.by_id.is_empty() {
            return Ok(None);
        }
        let by_arn = self.by_id.get(r.arn.as_str());
        let by_id = if r.id != r.arn { self.by_id.get(r.id.as_str()) } else { None };
        match (by_arn, by_id) {
            (None, None) => Ok(None),
            (a, b) => money::sum(a.into_iter().chain(b).copied()).map(Some),
        }
    }

    /// Resource ids with cost in the window.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no resource has cost in the window.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Drift aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftSummary {
    /// Findings per kind, every kind present.
    pub counts: BTreeMap<DriftKind, u64>,
    /// IaC coverage per (account, resource type).
    pub coverage: Vec<Coverage>,
    /// Cost of unmanaged resources over the cost window.
    pub unmanaged_monthly_usd: Decimal,
}

/// Cleanup aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanupSummary {
    /// Candidates and savings per enabled rule.
    pub by_rule: Vec<RuleSavings>,
    /// Resources that are candidates of at least one rule.
    pub candidates: u64,
    /// Savings counting each resource once.
    pub monthly_usd: Decimal,
}

/// The result of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Every family's findings, sorted by (kind, rule, subject): the same inputs in any order give the
    /// same list.
    pub findings: Vec<Finding>,
    /// Tag compliance per (account, resource type).
    pub tag_compliance: Vec<Compliance>,
    /// `None` when drift is disabled or no state was loaded.
    pub drift: Option<DriftSummary>,
    pub cleanup: CleanupSummary,
    /// Every budget's status, in rule order.
    pub budgets: Vec<crate::budget::BudgetStatus>,
    /// The latest score of every cost series; empty when no file sets `[cost_anomaly]`.
    pub cost_anomaly: Vec<crate::anomaly::cost::SeriesScore>,
}

/// Evaluates every family of `file` over `inputs`, on the calling thread. Fails only when a sum of costs
/// leaves the decimal range.
pub fn evaluate(file: &RuleFile, inputs: &Inputs) -> Result<Evaluation, Overflow> {
    evaluate_with_threads(file, inputs, 1)
}

/// [`evaluate`] with the per-resource families (tagging, cleanup) spread over `threads` scoped threads,
/// each taking a contiguous share of the resources. The result is the same for any number of threads;
/// the caller picks the number (the engine does not ask the system).
///
/// The per-resource families record, with each finding, its (resource, rule) pair: the findings are
/// ordered on compact integer keys built from the pairs (rule names and ARNs ranked once each), never by
/// comparing the findings themselves, then each is moved once to its place.
pub fn evaluate_with_threads(file: &RuleFile, inputs: &Inputs, threads: usize) -> Result<Evaluation, Overflow> {
    let costs = CostIndex::build(inputs.costs, inputs.now)?;
    let resources = inputs.resources;
    let live_volumes = crate::cleanup::live_volumes(&file.cleanup, resources);
    let threads = match threads.clamp(1, 64) {
        t if resources.len() < 2 * t => 1,
        t => t,
    };
    // Resource and pair indices are `u32`; an inventory beyond that is evaluated in one plain pass.
    if u32::try_from(resources.len()).map_or(true, |n| n == u32::MAX) {
        let tagging = crate::tagging::evaluate(&file.tagging, resources, &costs)?;
        let mut cleanup = crate::cleanup::evaluate_chunk(&file.cleanup, resources, &live_volumes, &costs, inputs.now)?;
        let mut findings = tagging.findings;
        findings.append(&mut cleanup.findings);
        let mut others = other_families(file, inputs, &costs)?;
        findings.append(&mut others.findings);
        sort_findings(&mut findings);
        return Ok(others.into_evaluation(findings, tagging.compliance, cleanup));
    }

    // One pass per contiguous share of the resources: the findings in resource order, each with its pair.
    let size = resources.len().div_ceil(threads).max(1);
    let shares: Vec<(u32, &[Resource])> = (0u32..).zip(resources.chunks(size)).collect();
    let scans = in_parallel(shares, |(i, chunk)| {
        // In range: the whole inventory's indices fit `u32` (checked above).
        let offset = (i as usize * size) as u32;
        let t = crate::tagging::scan(&file.tagging, chunk, offset, &costs);
        let c = crate::cleanup::scan(&file.cleanup, chunk, offset, &live_volumes, &costs, inputs.now);
        (t, c)
    });
    let mut compliance = crate::tagging::TaggingEvaluation::default();
    let mut cleanup: Option<crate::cleanup::CleanupEvaluation> = None;
    let mut shares = Vec::with_capacity(scans.len());
    for (t, c) in scans {
        let (t, mut c) = (t?, c?);
        compliance =
            compliance.merge(crate::tagging::TaggingEvaluation { findings: Vec::new(), compliance: t.compliance })?;
        let clean_findings = std::mem::take(&mut c.evaluation.findings);
        cleanup = Some(match cleanup {
            Some(all) => all.merge(c.evaluation)?,
            None => c.evaluation,
        });
        shares.push(((t.hits, t.findings), (c.hits, clean_findings)));
    }
    let cleanup = match cleanup {
        Some(c) => c,
        None => crate::cleanup::scan(&file.cleanup, &[], 0, &live_volumes, &costs, inputs.now)?.evaluation,
    };

    // Pairs are numbered in `u32`: beyond that (billions of findings), one plain sort of everything.
    let pairs: usize = shares.iter().map(|((t, _), (c, _))| t.len() + c.len()).sum();
    if u32::try_from(pairs).map_or(true, |n| n == u32::MAX) {
        let mut others = other_families(file, inputs, &costs)?;
        let mut findings = Vec::with_capacity(pairs + others.findings.len());
        for ((_, mut t), (_, mut c)) in shares {
            findings.append(&mut t);
            findings.append(&mut c);
        }
        findings.append(&mut others.findings);
        sort_findings(&mut findings);
        return Ok(others.into_evaluation(findings, compliance.compliance, cleanup));
    }

    // The order, (rule name, subject), from the pairs alone: subjects are ranked once per resource with a
    // finding, rule names once per rule. Each share sorts its own findings on its own thread; the sorted
    // shares are then merged.
    let subject_rank = arn_ranks(
        resources,
        shares.iter().flat_map(|((t, _), (c, _))| {
            t.iter().map(|h| h.0).chain(c.iter().map(|h: &crate::cleanup::Hit| h.resource))
        }),
    );
    let tag_rule_rank = name_ranks(file.tagging.iter().map(|r| r.name.as_str()));
    let clean_rule_rank = name_ranks(crate::cleanup::CleanupRule::ALL.iter().map(|r| r.name()));
    let mut tag_base = 0u32;
    let mut clean_base = 0u32;
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let bases = (tag_base, clean_base);
            // In range: fewer pairs than `u32::MAX` (checked above).
            tag_base += share.0 .0.len() as u32;
            clean_base += share.1 .0.len() as u32;
            (share, bases)
        })
        .collect();
    let sorted = in_parallel(tasks, |(((tag_hits, tag_findings), (clean_hits, clean_findings)), (tb, cb))| {
        let tag_order =
            order_pairs(tag_hits.iter().map(|&(r, rule)| (tag_rule_rank[rule as usize], subject_rank.rank(r))), tb);
        let clean_order = order_pairs(
            clean_hits.iter().map(|h| (clean_rule_rank[h.rule as usize], subject_rank.rank(h.resource))),
            cb,
        );
        let tag = permute_share(tag_findings, &tag_order, tb);
        let clean = permute_share(clean_findings, &clean_order, cb);
        ((tag_order, tag), (clean_order, clean))
    });
    drop(subject_rank);
    let (tag_runs, clean_runs): (Vec<_>, Vec<_>) = sorted.into_iter().unzip();

    // Drift, budgets and anomalies: their kinds sort between tagging and cleanup.
    let mut others = other_families(file, inputs, &costs)?;
    let mut middle = std::mem::take(&mut others.findings);
    sort_findings(&mut middle);
    let between = middle.iter().all(|f| f.kind > FindingKind::Tagging && f.kind < FindingKind::Cleanup);

    let mut findings = merge_runs(tag_runs);
    let mut clean = merge_runs(clean_runs);
    findings.reserve_exact(middle.len() + clean.len());
    findings.append(&mut middle);
    findings.append(&mut clean);
    // The list grew by doubling while the findings were found: give back what is left over.
    findings.shrink_to_fit();
    if !between {
        sort_findings(&mut findings);
    }
    Ok(others.into_evaluation(findings, compliance.compliance, cleanup))
}

/// Puts `findings` (whose pairs are numbered from `base`) into the order of `order`, their sorted keys, in
/// place (no second list of findings).
fn permute_share(mut findings: Vec<Finding>, order: &[OrderKey], base: u32) -> Vec<Finding> {
    let mut positions: Vec<u32> = order.iter().map(|k| (k.index() - base as usize) as u32).collect();
    permute(&mut findings, &mut positions);
    findings
}

/// Merges sorted runs (keys, findings) into one list in the first run's allocation, then orders the
/// findings of one identity (duplicate input) by content, like [`sort_findings`]. Each further run is
/// merged from the back, so the list only grows by that run (no second list of every finding: fresh
/// memory costs a page fault per page).
fn merge_runs(runs: Vec<(Vec<OrderKey>, Vec<Finding>)>) -> Vec<Finding> {
    let mut runs = runs.into_iter();
    let Some((mut keys, first)) = runs.next() else {
        return Vec::new();
    };
    // `Option<Finding>` has the layout of `Finding`: both conversions keep the allocation.
    let mut merged: Vec<Option<Finding>> = first.into_iter().map(Some).collect();
    for (run_keys, run) in runs {
        merge_from_back(&mut keys, &mut merged, run_keys, run);
    }
    // Every slot is filled by now. `filter_map` (unlike `flatten`) collects in place.
    #[allow(clippy::filter_map_identity)]
    let mut findings: Vec<Finding> = merged.into_iter().filter_map(|f| f).collect();
    order_ties(&mut findings, &keys);
    findings
}

/// Merges the sorted run (`run_keys`, `run`) into the sorted (`keys`, `merged`): both grow by the run's
/// length, and the free slots (`None`) travel from the end to the front as the largest keys are placed.
fn merge_from_back(
    keys: &mut Vec<OrderKey>,
    merged: &mut Vec<Option<Finding>>,
    run_keys: Vec<OrderKey>,
    run: Vec<Finding>,
) {
    let n = merged.len();
    let total = n + run.len();
    merged.reserve_exact(run.len());
    merged.resize_with(total, || None);
    keys.resize(total, OrderKey(0));
    // Slots `i..k` are free: `merged[..i]` is still to place, `merged[k..]` is placed.
    let (mut i, mut k) = (n, total);
    for (key, f) in run_keys.into_iter().zip(run).rev() {
        while i > 0 && keys[i - 1] > key {
            i -= 1;
            k -= 1;
            merged.swap(i, k);
            keys[k] = keys[i];
        }
        k -= 1;
        merged[k] = Some(f);
        keys[k] = key;
    }
}

/// The families evaluated over the whole inputs at once (drift, budgets, cost anomalies), with their
/// findings unsorted.
struct Others {
    findings: Vec<Finding>,
    drift: Option<DriftSummary>,
    budgets: Vec<crate::budget::BudgetStatus>,
    cost_anomaly: Vec<crate::anomaly::cost::SeriesScore>,
}

impl Others {
    fn into_evaluation(
        self,
        findings: Vec<Finding>,
        tag_compliance: Vec<Compliance>,
        cleanup: crate::cleanup::CleanupEvaluation,
    ) -> Evaluation {
        Evaluation {
            findings,
            tag_compliance,
            drift: self.drift,
            cleanup: CleanupSummary {
                by_rule: cleanup.by_rule,
                candidates: cleanup.candidates,
                monthly_usd: cleanup.monthly_usd,
            },
            budgets: self.budgets,
            cost_anomaly: self.cost_anomaly,
        }
    }
}

/// Evaluates drift (when enabled and a state is loaded), budgets and cost anomalies.
fn other_families(file: &RuleFile, inputs: &Inputs, costs: &CostIndex) -> Result<Others, Overflow> {
    let mut findings = Vec::new();
    let drift = if file.drift.enabled && inputs.tf_loaded {
        let d = crate::drift::evaluate(&file.drift, inputs.resources, inputs.tf_resources, costs)?;
        let unmanaged_monthly_usd = d.unmanaged_monthly_usd()?;
        findings.extend(d.findings);
        Some(DriftSummary { counts: d.counts, coverage: d.coverage, unmanaged_monthly_usd })
    } else {
        None
    };
    let budgets = crate::budget::evaluate(&file.budgets, inputs.costs, inputs.now)?;
    findings.extend(budgets.findings);
    let cost_anomaly = match &file.cost_anomaly {
        Some(settings) => {
            let a = crate::anomaly::cost::evaluate(settings, inputs.costs, inputs.now)?;
            findings.extend(a.findings);
            a.series
        }
        None => Vec::new(),
    };
    Ok(Others { findings, drift, budgets: budgets.budgets, cost_anomaly })
}

/// Runs `f` on every task, each on its own scoped thread (the first on the calling thread), and returns
/// the results in task order.
fn in_parallel<T: Send, R: Send>(tasks: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let mut tasks = tasks.into_iter();
    let Some(first) = tasks.next() else {
        return Vec::new();
    };
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = tasks.map(|t| scope.spawn(move || f(t))).collect();
        let mut out = vec![f(first)];
        out.extend(handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))));
        out
    })
}

/// Ranks of the ARNs of some resources, in byte order; equal ARNs share a rank.
struct ArnRanks {
    /// Per resource index; only those asked for are meaningful.
    by_resource: Vec<u32>,
}

impl ArnRanks {
    fn rank(&self, resource: u32) -> u32 {
        self.by_resource[resource as usize]
    }
}

/// Ranks the ARNs of the resources at `indices` (any order, repeats allowed).
fn arn_ranks(resources: &[Resource], indices: impl Iterator<Item = u32>) -> ArnRanks {
    let mut distinct: Vec<u32> = Vec::new();
    for i in indices {
        if distinct.last() != Some(&i) {
            distinct.push(i);
        }
    }
    distinct.sort_unstable();
    distinct.dedup();
    let mut by_arn: Vec<(&str, u32)> = distinct.iter().map(|&i| (resources[i as usize].arn.as_str(), i)).collect();
    drop(distinct);
    by_arn.sort_unstable();
    let mut by_resource = vec![0u32; resources.len()];
    let mut rank = 0u32;
    for (k, &(arn, i)) in by_arn.iter().enumerate() {
        if k > 0 && by_arn[k - 1].0 != arn {
            rank += 1;
        }
        by_resource[i as usize] = rank;
    }
    ArnRanks { by_resource }
}

/// The rank of each name among the distinct names, in byte order; equal names share a rank.
fn name_ranks<'a>(names: impl Iterator<Item = &'a str>) -> Vec<u32> {
    let names: Vec<&str> = names.collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    names.iter().map(|n| sorted.binary_search(n).map_or(0, |i| i as u32)).collect()
}

/// A pair's place in the order: (rule rank, subject rank, index of the pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct OrderKey(u128);

impl OrderKey {
    fn identity(self) -> u64 {
        (self.0 >> 32) as u64
    }

    fn index(self) -> usize {
        self.0 as u32 as usize
    }
}

/// Sorts the pairs given as (rule rank, subject rank) in input order, numbered from `base`: ties keep
/// input order.
fn order_pairs(pairs: impl Iterator<Item = (u32, u32)>, base: u32) -> Vec<OrderKey> {
    let mut keys: Vec<OrderKey> = pairs
        .zip(base..)
        .map(|((rule, subject), i)| OrderKey((u128::from(rule) << 64) | (u128::from(subject) << 32) | u128::from(i)))
        .collect();
    keys.sort_unstable();
    keys
}

/// Orders runs of findings of one identity (`order` gives the identities) by content, keeping input
/// order among equal contents.
fn order_ties(findings: &mut [Finding], order: &[OrderKey]) {
    let mut start = 0;
    while start < order.len() {
        let identity = order[start].identity();
        let mut end = start + 1;
        while end < order.len() && order[end].identity() == identity {
            end += 1;
        }
        if end - start > 1 {
            findings[start..end].sort_by(compare_content);
        }
        start = end;
    }
}

/// Sorts by identity; equal identities (only possible with duplicate input) fall back to the content.
///
/// Rule names and subjects are first replaced by their ranks among the distinct values (each distinct
/// string is compared only while sorting the distinct strings, which are far fewer than the findings),
/// so the findings themselves sort on one integer each: (kind, rule rank, subject rank, index). The
/// findings are then permuted in place, without a second list.
// A `Vec` rather than a slice: the public signature stays as callers know it.
#[allow(clippy::ptr_arg)]
pub fn sort_findings(findings: &mut Vec<Finding>) {
    let n = findings.len();
    if n < 2 {
        return;
    }
    if u32::try_from(n).map_or(true, |n| n == u32::MAX) {
        findings.sort_by(compare_findings);
        return;
    }
    let rules = ranks(findings.iter().map(|f| &*f.rule), n);
    let subjects = ranks(findings.iter().map(|f| &*f.subject), n);
    let mut keys: Vec<u128> = findings
        .iter()
        .zip(rules.iter().zip(&subjects))
        .zip(0u32..)
        .map(|((f, (&rule, &subject)), i)| {
            (u128::from(f.kind as u8) << 96) | (u128::from(rule) << 64) | (u128::from(subject) << 32) | u128::from(i)
        })
        .collect();
    drop((rules, subjects));
    keys.sort_unstable();
    // Runs of one identity (duplicate input) order by content, then by input position.
    let mut start = 0;
    while start < n {
        let identity = keys[start] >> 32;
        let mut end = start + 1;
        while end < n && keys[end] >> 32 == identity {
            end += 1;
        }
        if end - start > 1 {
            keys[start..end].sort_by(|a, b| {
                let (x, y) = (&findings[*a as u32 as usize], &findings[*b as u32 as usize]);
                compare_content(x, y).then(a.cmp(b))
            });
        }
        start = end;
    }
    let mut order: Vec<u32> = keys.into_iter().map(|k| k as u32).collect();
    permute(findings, &mut order);
}

/// The full order of [`sort_findings`]: identity, then content.
fn compare_findings(x: &Finding, y: &Finding) -> std::cmp::Ordering {
    x.key().cmp(&y.key()).then_with(|| compare_content(x, y))
}

/// The order of findings of one identity: message, then details as JSON text.
fn compare_content(x: &Finding, y: &Finding) -> std::cmp::Ordering {
    x.message.cmp(&y.message).then_with(|| details_text(x).cmp(&details_text(y)))
}

/// The details of `f` as JSON text.
pub(crate) fn details_text(f: &Finding) -> String {
    serde_json::to_string(&f.details).unwrap_or_default()
}

/// For each of the `n` strings of `items`, the rank of its value among the distinct values in byte
/// order. Consecutive equal strings (the findings of one resource) cost one comparison, not a lookup.
fn ranks<'a>(items: impl Iterator<Item = &'a str>, n: usize) -> Vec<u32> {
    let mut ids: FastMap<&str, u32> = FastMap::default();
    let mut distinct: Vec<&str> = Vec::new();
    let mut out: Vec<u32> = Vec::with_capacity(n);
    let mut prev: Option<(&str, u32)> = None;
    for s in items {
        let id = match prev {
            Some((p, id)) if p == s => id,
            _ => *ids.entry(s).or_insert_with(|| {
                distinct.push(s);
                (distinct.len() - 1) as u32
            }),
        };
        prev = Some((s, id));
        out.push(id);
    }
    drop(ids);
    let mut by_value: Vec<u32> = (0..distinct.len() as u32).collect();
    by_value.sort_unstable_by_key(|&i| distinct[i as usize]);
    let mut rank = vec![0u32; distinct.len()];
    for (r, &i) in (0u32..).zip(&by_value) {
        rank[i as usize] = r;
    }
    for id in &mut out {
        *id = rank[*id as usize];
    }
    out
}

/// Reorders `items` so that position `i` holds the item that was at `order[i]`, following the cycles of
/// the permutation with swaps (`order` is consumed: every entry ends as `u32::MAX`).
fn permute<T>(items: &mut [T], order: &mut [u32]) {
    const DONE: u32 = u32::MAX;
    for i in 0..order.len() {
        if order[i] == DONE {
            continue;
        }
        let mut cur = i;
        loop {
            let src = order[cur] as usize;
            order[cur] = DONE;
            if src == i {
                break;
            }
            items.swap(cur, src);
            cur = src;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;
    use crate::file::parse_rule_file;
    use crate::input::Details;

    /// Noon UTC `day` days after 2026-01-01.
    pub fn at(day: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).single().unwrap() + Duration::days(day)
    }

    /// A resource of `resource_type` (`service:kind`) in account 111111111111, eu-west-1, first seen at
    /// day 0, with ARN `arn:aws:service:eu-west-1:111111111111:kind/id`.
    pub fn res(resource_type: &str, id: &str, tags: &[(&str, &str)]) -> Resource {
        let (service, kind) = resource_type.split_once(':').unwrap_or((resource_type, "x"));
        Resource {
            arn: format!("arn:aws:{service}:eu-west-1:111111111111:{kind}/{id}"),
            resource_type: resource_type.to_string(),
            account_id: "111111111111".into(),
            region: "eu-west-1".into(),
            id: id.to_string(),
            name: None,
            state: None,
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            created_at: None,
            first_seen: at(0),
            details: Details::Other,
        }
    }

    /// Daily costs `(resource id, days before day now_day, amount)`.
    pub fn costs_for(now_day: i64, rows: &[(&str, i64, &str)]) -> Vec<DailyCost> {
        rows.iter()
            .map(|(id, before, amount)| DailyCost {
                day: at(now_day - before).date_naive(),
                account_id: "111111111111".into(),
                service: "AmazonEC2".into(),
                resource_id: Some(id.to_string()),
                tags: BTreeMap::new(),
                amount: amount.parse().unwrap(),
            })
            .collect()
    }

    const RULES: &str = r#"
[[tagging]]
name = "team"
resource_types = ["ec2:*"]
required_keys = ["team"]
exempt_tags = ["exempt"]

[[tagging]]
name = "env"
required_keys = ["env"]
ignore_key_case = true
[tagging.allowed_values]
env = ["prod", "dev"]

[[tagging]]
name = "buckets"
resource_types = ["s3:bucket"]
[tagging.allowed_patterns]
team = "[a-c]"

[drift]
ignore_addresses = ["module.skip.*"]

[cleanup]
exempt_tags = ["exempt"]
[cleanup.untagged]
min_days = 3
[cleanup.unattached_volume]
min_days = 2
"#;

    fn arb_resource() -> impl Strategy<Value = Resource> {
        let types = prop::sample::select(vec![
            "ec2:instance",
            "ec2:volume",
            "ec2:snapshot",
            "ec2:elastic-ip",
            "s3:bucket",
            "logs:log-group",
        ]);
        let tag = (
            prop::sample::select(vec!["team", "env", "Env", "exempt", "cloudwarden:protect", "aws:x"]),
            prop::sample::select(vec!["a", "b", "d", "prod", "dev", ""]),
        );
        (types, prop::collection::vec(tag, 0..4), 0i64..20, any::<bool>(), 0u8..3, prop::option::of(0i64..20)).prop_map(
            |(t, tags, seen, flag, state, since)| {
                let mut r = res(t, "x", &[]);
                r.tags = tags.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                r.first_seen = at(seen);
                r.created_at = since.map(at);
                r.details = match t {
                    "ec2:instance" => {
                        r.state = Some(["running", "stopped", "pending"][state as usize].into());
                        Details::Instance { instance_type: None, stopped_at: since.map(at) }
                    }
                    "ec2:volume" => Details::Volume { size_gib: Some(10), volume_type: None, attached: flag },
                    "ec2:snapshot" => Details::Snapshot { volume_id: Some(format!("r{}", state)), size_gib: Some(5) },
                    "ec2:elastic-ip" => Details::ElasticIp { public_ip: None, associated: flag },
                    "logs:log-group" => {
                        Details::LogGroup { retention_days: flag.then_some(7), stored_bytes: Some(1 << 20) }
                    }
                    _ => Details::Other,
                };
                r
            },
        )
    }

    /// Resources with unique ids and ARNs, state resources for some of them, and costs.
    fn arb_inputs() -> impl Strategy<Value = (Vec<Resource>, Vec<TfResource>, Vec<DailyCost>)> {
        prop::collection::vec((arb_resource(), 0u8..4, prop::option::of(0i64..40)), 0..40).prop_map(|rows| {
            let mut resources = Vec::new();
            let mut tf = Vec::new();
            let mut costs = Vec::new();
            for (i, (mut r, managed, cost_day)) in rows.into_iter().enumerate() {
                let id = format!("r{i}");
                r.arn = r.arn.replace("/x", &format!("/{id}"));
                r.id = id.clone();
                let tf_type = match r.resource_type.as_str() {
                    "ec2:instance" => "aws_instance",
                    "ec2:volume" => "aws_ebs_volume",
                    _ => "aws_s3_bucket",
                };
                if managed > 0 {
                    tf.push(TfResource {
                        origin: "a.tfstate".into(),
                        address: format!("{}.{}", tf_type, id),
                        tf_type: tf_type.into(),
                        arn: (managed == 1).then(|| r.arn.clone()),
                        id: Some(if managed == 3 { format!("gone{i}") } else { id.clone() }),
                        tags: [("team".to_string(), "a".to_string())].into(),
                    });
                }
                if let Some(d) = cost_day {
                    costs.extend(costs_for(20, &[(if i % 2 == 0 { &r.arn } else { &id }, d, "1.5")]));
                }
                resources.push(r);
            }
            (resources, tf, costs)
        })
    }

    fn run(file: &RuleFile, resources: &[Resource], tf: &[TfResource], costs: &[DailyCost]) -> Evaluation {
        evaluate(file, &Inputs { now: at(20), resources, costs, tf_resources: tf, tf_loaded: true }).unwrap()
    }

    proptest! {
        #[test]
        fn order_does_not_change_findings(
            (resources, tf, costs) in arb_inputs(),
            seed in any::<u64>(),
        ) {
            let file = parse_rule_file("rules.toml", RULES).unwrap();
            let first = run(&file, &resources, &tf, &costs);

            // A deterministic shuffle of every input list and of the tagging rules.
            let mut rng = seed | 1;
            let mut shuffle = |n: usize| -> Vec<usize> {
                let mut idx: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    idx.swap(i, (rng % (i as u64 + 1)) as usize);
                }
                idx
            };
            let pick = |idx: Vec<usize>, v: &[Resource]| idx.into_iter().map(|i| v[i].clone()).collect::<Vec<_>>();
            let resources2 = pick(shuffle(resources.len()), &resources);
            let tf2: Vec<TfResource> = shuffle(tf.len()).into_iter().map(|i| tf[i].clone()).collect();
            let costs2: Vec<DailyCost> = shuffle(costs.len()).into_iter().map(|i| costs[i].clone()).collect();
            let mut file2 = file.clone();
            file2.tagging = shuffle(file.tagging.len()).into_iter().map(|i| file.tagging[i].clone()).collect();

            let second = run(&file2, &resources2, &tf2, &costs2);
            prop_assert_eq!(&first, &second);
            let threaded = evaluate_with_threads(
                &file,
                &Inputs { now: at(20), resources: &resources, costs: &costs, tf_resources: &tf, tf_loaded: true },
                3,
            )
            .unwrap();
            prop_assert_eq!(&first, &threaded);

            // The findings are in the documented order: identity, then content.
            let mut sorted = first.findings.clone();
            sorted.sort_by(compare_findings);
            prop_assert_eq!(&first.findings, &sorted);
            // And `sort_findings` restores that order from any arrangement.
            let mut reversed: Vec<Finding> = first.findings.iter().rev().cloned().collect();
            sort_findings(&mut reversed);
            let order = |fs: &[Finding]| {
                fs.iter()
                    .map(|f| (f.key().0, f.rule.clone(), f.subject.clone(), f.message.clone(), details_text(f)))
                    .collect::<Vec<_>>()
            };
            prop_assert_eq!(order(&first.findings), order(&reversed));
        }

        #[test]
        fn protected_or_exempt_never_candidates((resources, tf, costs) in arb_inputs()) {
            let file = parse_rule_file("rules.toml", RULES).unwrap();
            let e = run(&file, &resources, &tf, &costs);
            for f in e.findings.iter().filter(|f| f.kind == FindingKind::Cleanup) {
                let r = resources.iter().find(|r| *r.arn == *f.subject).unwrap();
                prop_assert!(!r.tags.contains_key("cloudwarden:protect"), "protected {}", r.arn);
                prop_assert!(!r.tags.contains_key("exempt"), "exempt {}", r.arn);
            }
        }

        #[test]
        fn ratios_are_ratios((resources, tf, costs) in arb_inputs()) {
            let file = parse_rule_file("rules.toml", RULES).unwrap();
            let e = run(&file, &resources, &tf, &costs);
            for c in &e.tag_compliance {
                prop_assert!(c.compliant <= c.in_scope && c.in_scope <= c.resources);
                prop_assert!(c.ratio().is_none_or(|r| (0.0..=1.0).contains(&r)));
            }
            for c in &e.drift.as_ref().unwrap().coverage {
                prop_assert!(c.ratio().is_none_or(|r| (0.0..=1.0).contains(&r)));
            }
        }
    }

    #[test]
    fn every_family_in_one_sorted_list() {
        let file = parse_rule_file("rules.toml", RULES).unwrap();
        let mut vol = res("ec2:volume", "vol-1", &[("env", "qa")]);
        vol.details = Details::Volume { size_gib: Some(1), volume_type: Some("gp2".into()), attached: false };
        let resources = [vol];
        let e = run(&file, &resources, &[], &[]);
        let got: Vec<(FindingKind, &str)> = e.findings.iter().map(|f| (f.kind, &*f.rule)).collect();
        assert_eq!(
            got,
            [
                (FindingKind::Tagging, "env"),
                (FindingKind::Tagging, "team"),
                (FindingKind::Drift, "unmanaged"),
                (FindingKind::Cleanup, "unattached_volume"),
            ]
        );
        assert_eq!(e.cleanup.monthly_usd, Decimal::new(10, 2));
        let without_state = evaluate(
            &file,
            &Inputs { now: at(20), resources: &resources, costs: &[], tf_resources: &[], tf_loaded: false },
        )
        .unwrap();
        assert!(without_state.drift.is_none());
        assert_eq!(without_state.findings.len(), 3);
    }

    #[test]
    fn cost_sums_beyond_the_decimal_range_are_errors() {
        let file = parse_rule_file("rules.toml", RULES).unwrap();
        let near_max = (Decimal::MAX - Decimal::ONE).to_string();
        let r = res("ec2:volume", "vol-1", &[]);
        let check = |rows: &[(&str, i64, &str)], overflows: bool| {
            let costs = costs_for(20, rows);
            let resources = std::slice::from_ref(&r);
            let inputs = Inputs { now: at(20), resources, costs: &costs, tf_resources: &[], tf_loaded: true };
            for threads in [1, 3] {
                let result = evaluate_with_threads(&file, &inputs, threads);
                assert_eq!(result.is_err(), overflows, "{rows:?} on {threads} threads: {result:?}");
            }
        };
        // Near the maximum: summed exactly, without panic.
        check(&[("vol-1", 1, &near_max), ("vol-1", 2, "1")], false);
        // Beyond it, by resource id, by id and ARN together, or over two days of one budget-less resource.
        check(&[("vol-1", 1, &near_max), ("vol-1", 2, "2")], true);
        check(&[("vol-1", 1, &near_max), (&r.arn, 2, "2")], true);
        check(&[("vol-1", 1, "5e28"), ("vol-1", 2, "5e28")], true);
        let costs = costs_for(20, &[("vol-1", 1, &near_max), (&r.arn, 2, "2")]);
        let index = CostIndex::build(&costs, at(20)).unwrap();
        assert!(index.monthly(&r).is_err());
    }

    #[test]
    fn cost_window_is_the_30_days_before_today() {
        let costs = costs_for(40, &[("a", 0, "100"), ("a", 1, "1"), ("a", 30, "2"), ("a", 31, "100")]);
        let index = CostIndex::build(&costs, at(40)).unwrap();
        let mut r = res("ec2:instance", "a", &[]);
        assert_eq!(index.monthly(&r), Ok(Some(Decimal::new(3, 0))));
        r.id = "b".into();
        assert_eq!(index.monthly(&r), Ok(None));
        assert_eq!(index.window, Some((at(10).date_naive(), at(39).date_naive())));
    }
}
