//! The engine's entry: a rule set and the inputs in, the findings of every family and the aggregates for
//! `/metrics` out. Pure: `now` is an argument.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::cleanup::RuleSavings;
use crate::drift::{Coverage, DriftKind};
use crate::file::RuleFile;
use crate::finding::{Finding, FindingKind};
use crate::input::{DailyCost, Resource, TfResource};
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

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// A `HashSet` with [`FastHasher`].
pub(crate) type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

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

    /// Sums the costs with a resource id per id over the window.
    pub fn build(costs: &'a [DailyCost], now: DateTime<Utc>) -> CostIndex<'a> {
        let today = now.date_naive();
        let first = today - Duration::days(Self::WINDOW_DAYS);
        let mut by_id: FastMap<&str, Decimal> = FastMap::default();
        for c in costs {
            if c.day < first || c.day >= today {
                continue;
            }
            if let Some(id) = c.resource_id.as_deref() {
                *by_id.entry(id).or_default() += c.amount;
            }
        }
        CostIndex {
            by_id,
            window: Some((first, today - Duration::days(1))),
        }
    }

    /// The monthly cost of `r`: billing rows whose resource id is its ARN plus those whose resource id is
    /// its service id; `None` when billing has neither.
    pub fn monthly(&self, r: &Resource) -> Option<Decimal> {
        if self.by_id.is_empty() {
            return None;
        }
        let by_arn = self.by_id.get(r.arn.as_str());
        let by_id = if r.id != r.arn {
            self.by_id.get(r.id.as_str())
        } else {
            None
        };
        match (by_arn, by_id) {
            (None, None) => None,
            (a, b) => Some(a.copied().unwrap_or_default() + b.copied().unwrap_or_default()),
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

/// Evaluates every family of `file` over `inputs`, on the calling thread.
pub fn evaluate(file: &RuleFile, inputs: &Inputs) -> Evaluation {
    evaluate_with_threads(file, inputs, 1)
}

/// [`evaluate`] with the per-resource families (tagging, cleanup) spread over `threads` scoped threads,
/// each taking a contiguous share of the resources. The result is the same for any number of threads;
/// the caller picks the number (the engine does not ask the system).
pub fn evaluate_with_threads(file: &RuleFile, inputs: &Inputs, threads: usize) -> Evaluation {
    let costs = CostIndex::build(inputs.costs, inputs.now);
    let mut findings = Vec::new();

    let live_volumes = crate::cleanup::live_volumes(&file.cleanup, inputs.resources);
    let per_chunk = |chunk: &[Resource]| {
        let t = crate::tagging::evaluate(&file.tagging, chunk, &costs);
        let c = crate::cleanup::evaluate_chunk(&file.cleanup, chunk, &live_volumes, &costs, inputs.now);
        (t, c)
    };
    let threads = threads.clamp(1, 64);
    let (tagging, cleanup) = if threads == 1 || inputs.resources.len() < 2 * threads {
        per_chunk(inputs.resources)
    } else {
        let size = inputs.resources.len().div_ceil(threads);
        let parts: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = inputs
                .resources
                .chunks(size)
                .map(|chunk| scope.spawn(move || per_chunk(chunk)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        let mut parts = parts.into_iter();
        let first = parts.next().unwrap_or_else(|| per_chunk(&[]));
        parts.fold(first, |(t, c), (t2, c2)| (t.merge(t2), c.merge(c2)))
    };
    findings.extend(tagging.findings);
    let drift = (file.drift.enabled && inputs.tf_loaded).then(|| {
        let d = crate::drift::evaluate(&file.drift, inputs.resources, inputs.tf_resources, &costs);
        let unmanaged_monthly_usd = d.unmanaged_monthly_usd();
        findings.extend(d.findings);
        DriftSummary {
            counts: d.counts,
            coverage: d.coverage,
            unmanaged_monthly_usd,
        }
    });

    findings.extend(cleanup.findings);

    let budgets = crate::budget::evaluate(&file.budgets, inputs.costs, inputs.now);
    findings.extend(budgets.findings);

    let cost_anomaly = match &file.cost_anomaly {
        Some(settings) => {
            let a = crate::anomaly::cost::evaluate(settings, inputs.costs, inputs.now);
            findings.extend(a.findings);
            a.series
        }
        None => Vec::new(),
    };

    sort_findings(&mut findings);
    Evaluation {
        findings,
        tag_compliance: tagging.compliance,
        drift,
        cleanup: CleanupSummary {
            by_rule: cleanup.by_rule,
            candidates: cleanup.candidates,
            monthly_usd: cleanup.monthly_usd,
        },
        budgets: budgets.budgets,
        cost_anomaly,
    }
}

/// Sorts by identity; equal identities (only possible with duplicate input) fall back to the content.
///
/// Sorts compact keys (kind, rank of the rule name, subject, index) rather than the large findings, then
/// moves each finding once.
pub fn sort_findings(findings: &mut Vec<Finding>) {
    let names: BTreeMap<&str, u32> = {
        let distinct: std::collections::BTreeSet<&str> = findings.iter().map(|f| f.rule.as_str()).collect();
        distinct.into_iter().zip(0..).collect()
    };
    let mut keys: Vec<(FindingKind, u32, &str, u32)> = findings
        .iter()
        .zip(0..)
        .map(|(f, i)| {
            (
                f.kind,
                names.get(f.rule.as_str()).copied().unwrap_or_default(),
                f.subject.as_str(),
                i,
            )
        })
        .collect();
    keys.sort_unstable_by(|a, b| {
        (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)).then_with(|| {
            let (x, y) = (&findings[a.3 as usize], &findings[b.3 as usize]);
            x.message
                .cmp(&y.message)
                .then_with(|| x.details.to_string().cmp(&y.details.to_string()))
        })
    });
    let order: Vec<u32> = keys.into_iter().map(|k| k.3).collect();
    let mut slots: Vec<Option<Finding>> = std::mem::take(findings).into_iter().map(Some).collect();
    findings.extend(order.into_iter().filter_map(|i| slots[i as usize].take()));
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
        (
            types,
            prop::collection::vec(tag, 0..4),
            0i64..20,
            any::<bool>(),
            0u8..3,
            prop::option::of(0i64..20),
        )
            .prop_map(|(t, tags, seen, flag, state, since)| {
                let mut r = res(t, "x", &[]);
                r.tags = tags.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                r.first_seen = at(seen);
                r.created_at = since.map(at);
                r.details = match t {
                    "ec2:instance" => {
                        r.state = Some(["running", "stopped", "pending"][state as usize].into());
                        Details::Instance {
                            instance_type: None,
                            stopped_at: since.map(at),
                        }
                    }
                    "ec2:volume" => Details::Volume {
                        size_gib: Some(10),
                        volume_type: None,
                        attached: flag,
                    },
                    "ec2:snapshot" => Details::Snapshot {
                        volume_id: Some(format!("r{}", state)),
                        size_gib: Some(5),
                    },
                    "ec2:elastic-ip" => Details::ElasticIp {
                        public_ip: None,
                        associated: flag,
                    },
                    "logs:log-group" => Details::LogGroup {
                        retention_days: flag.then_some(7),
                        stored_bytes: Some(1 << 20),
                    },
                    _ => Details::Other,
                };
                r
            })
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
        evaluate(
            file,
            &Inputs {
                now: at(20),
                resources,
                costs,
                tf_resources: tf,
                tf_loaded: true,
            },
        )
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
            );
            prop_assert_eq!(&first, &threaded);
        }

        #[test]
        fn protected_or_exempt_never_candidates((resources, tf, costs) in arb_inputs()) {
            let file = parse_rule_file("rules.toml", RULES).unwrap();
            let e = run(&file, &resources, &tf, &costs);
            for f in e.findings.iter().filter(|f| f.kind == FindingKind::Cleanup) {
                let r = resources.iter().find(|r| r.arn == f.subject).unwrap();
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
        vol.details = Details::Volume {
            size_gib: Some(1),
            volume_type: Some("gp2".into()),
            attached: false,
        };
        let resources = [vol];
        let e = run(&file, &resources, &[], &[]);
        let got: Vec<(FindingKind, &str)> = e.findings.iter().map(|f| (f.kind, f.rule.as_str())).collect();
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
            &Inputs {
                now: at(20),
                resources: &resources,
                costs: &[],
                tf_resources: &[],
                tf_loaded: false,
            },
        );
        assert!(without_state.drift.is_none());
        assert_eq!(without_state.findings.len(), 3);
    }

    #[test]
    fn cost_window_is_the_30_days_before_today() {
        let costs = costs_for(40, &[("a", 0, "100"), ("a", 1, "1"), ("a", 30, "2"), ("a", 31, "100")]);
        let index = CostIndex::build(&costs, at(40));
        let mut r = res("ec2:instance", "a", &[]);
        assert_eq!(index.monthly(&r), Some(Decimal::new(3, 0)));
        r.id = "b".into();
        assert_eq!(index.monthly(&r), None);
        assert_eq!(index.window, Some((at(10).date_naive(), at(39).date_naive())));
    }
}
