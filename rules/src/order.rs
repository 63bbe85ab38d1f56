//! The order of findings: by identity (kind, rule, subject), then by content (message, details as JSON
//! text). [`sort_findings`] sorts any list; the engine orders the findings of the per-resource families
//! from their (resource, rule) pairs with the helpers here, without comparing the findings themselves.

use crate::fast::FastMap;
use crate::finding::Finding;
use crate::input::Resource;

/// Puts `findings` (whose pairs are numbered from `base`) into the order of `order`, their sorted keys, in
/// place (no second list of findings).
pub(crate) fn permute_share(mut findings: Vec<Finding>, order: &[OrderKey], base: u32) -> Vec<Finding> {
    let mut positions: Vec<u32> = order.iter().map(|k| (k.index() - base as usize) as u32).collect();
    permute(&mut findings, &mut positions);
    findings
}

/// Merges sorted runs (keys, findings) into one list in the first run's allocation, then orders the
/// findings of one identity (duplicate input) by content, like [`sort_findings`]. Each further run is
/// merged from the back, so the list only grows by that run (no second list of every finding: fresh
/// memory costs a page fault per page).
pub(crate) fn merge_runs(runs: Vec<(Vec<OrderKey>, Vec<Finding>)>) -> Vec<Finding> {
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

/// Ranks of the ARNs of some resources, in byte order; equal ARNs share a rank.
pub(crate) struct ArnRanks {
    /// Per resource index; only those asked for are meaningful.
    by_resource: Vec<u32>,
}

impl ArnRanks {
    pub(crate) fn rank(&self, resource: u32) -> u32 {
        self.by_resource[resource as usize]
    }
}

/// Ranks the ARNs of the resources at `indices` (any order, repeats allowed).
pub(crate) fn arn_ranks(resources: &[Resource], indices: impl Iterator<Item = u32>) -> ArnRanks {
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
pub(crate) fn name_ranks<'a>(names: impl Iterator<Item = &'a str>) -> Vec<u32> {
    let names: Vec<&str> = names.collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    names.iter().map(|n| sorted.binary_search(n).map_or(0, |i| i as u32)).collect()
}

/// A pair's place in the order: (rule rank, subject rank, index of the pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct OrderKey(u128);

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
pub(crate) fn order_pairs(pairs: impl Iterator<Item = (u32, u32)>, base: u32) -> Vec<OrderKey> {
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
pub(crate) fn compare_findings(x: &Finding, y: &Finding) -> std::cmp::Ordering {
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
