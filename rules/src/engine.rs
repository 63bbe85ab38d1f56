//! The engine's entry: a rule set and the inputs in, the findings of every family and the aggregates for
//! `/metrics` out. Pure: `now` is an argument.
//!
//! The engine only composes the families (tagging, cleanup, drift, budgets, cost anomalies); what they share
//! lives in modules of its own: [`crate::cost_index`], [`crate::order`], and the crate's fast maps and
//! string interning.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::cleanup::RuleSavings;
pub use crate::cost_index::CostIndex;
use crate::drift::{Coverage, DriftKind};
use crate::file::RuleFile;
use crate::finding::{Finding, FindingKind};
use crate::input::{DailyCost, Resource, TfResource};
use crate::money::Overflow;
pub use crate::order::sort_findings;
use crate::order::{arn_ranks, merge_runs, name_ranks, order_pairs, permute_share};
use crate::tagging::Compliance;

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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::file::parse_rule_file;
    use crate::input::Details;
    use crate::order::{compare_findings, details_text};
    use crate::test_support::{at, costs_for, res};

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
}
