//! Rows into daily costs: one entry per distinct key, amounts added as decimals. Memory grows with the
//! number of distinct keys (about resources × days), never with the number of rows.
//!
//! An entry is small and fixed-size (about 90 bytes): its texts (account, service, resource id, ...) are
//! interned, each distinct text stored once for the whole file, and its tags are an id into the file's
//! distinct tag sets. The owned [`DailyCost`](super::DailyCost) values are only built on request.

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

use super::schema::{DayCache, RowValues, TagSets};
use super::{DailyCostRef, ValueError};
use crate::money;

/// Id of an absent optional text.
const NONE: u32 = u32::MAX;

/// Positions of the interned texts in a key.
const PROVIDER: usize = 0;
const BILLING_ACCOUNT: usize = 1;
const SUB_ACCOUNT: usize = 2;
const SERVICE: usize = 3;
const RESOURCE: usize = 4;
const REGION: usize = 5;
const CATEGORY: usize = 6;
const CURRENCY: usize = 7;
const TEXTS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    /// Days from the common era, as chrono counts them.
    day: i32,
    tags: u32,
    texts: [u32; TEXTS],
}

/// Every distinct text, stored once, with a one-entry memory per key position: consecutive rows mostly
/// repeat the provider, account, service and currency, which are then compared rather than hashed.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<Box<str>, u32>,
    values: Vec<Box<str>>,
    last: [u32; TEXTS],
}

impl Interner {
    fn id(&mut self, position: usize, text: Option<&str>) -> u32 {
        let Some(text) = text else { return NONE };
        let last = self.last[position];
        if let Some(v) = self.values.get(last as usize) {
            if &**v == text {
                return last;
            }
        }
        let id = match self.ids.get(text) {
            Some(&id) => id,
            None => {
                let id = self.values.len() as u32;
                self.values.push(text.into());
                self.ids.insert(text.into(), id);
                id
            }
        };
        self.last[position] = id;
        id
    }
}

#[derive(Debug)]
pub(crate) struct Aggregator {
    sums: HashMap<Key, [Decimal; 3]>,
    texts: Interner,
    pub tag_sets: TagSets,
    pub days: DayCache,
}

impl Default for Aggregator {
    fn default() -> Self {
        Aggregator {
            sums: HashMap::new(),
            texts: Interner { last: [NONE; TEXTS], ..Interner::default() },
            tag_sets: TagSets::default(),
            days: DayCache::default(),
        }
    }
}

impl Aggregator {
    /// The distinct keys rolled up so far.
    pub fn keys(&self) -> usize {
        self.sums.len()
    }

    /// Adds one row. Fails only if a sum would leave the decimal range (about 7.9e28), leaving the sums as they
    /// were.
    pub fn add(&mut self, v: RowValues<'_>) -> Result<(), ValueError> {
        let t = &mut self.texts;
        let key = Key {
            day: v.day.num_days_from_ce(),
            tags: v.tags,
            texts: [
                t.id(PROVIDER, Some(v.provider)),
                t.id(BILLING_ACCOUNT, Some(v.billing_account_id)),
                t.id(SUB_ACCOUNT, Some(v.sub_account_id)),
                t.id(SERVICE, Some(v.service_name)),
                t.id(RESOURCE, v.resource_id),
                t.id(REGION, v.region),
                t.id(CATEGORY, Some(v.charge_category)),
                t.id(CURRENCY, Some(v.currency)),
            ],
        };
        let sums = self.sums.entry(key).or_insert([Decimal::ZERO; 3]);
        // All three or none: a row that overflows leaves the sums as they were.
        let mut next = *sums;
        let overflow = |cost: &'static str| move |_: money::Overflow| ValueError::CostSumOverflow { cost };
        money::add_to(&mut next[0], v.billed_cost).map_err(overflow("billed cost"))?;
        money::add_to(&mut next[1], v.effective_cost).map_err(overflow("effective cost"))?;
        money::add_to(&mut next[2], v.list_cost).map_err(overflow("list cost"))?;
        *sums = next;
        Ok(())
    }

    /// The roll-up, sorted by key, amounts normalized (no trailing zeros).
    pub fn finish(self) -> RolledUp {
        let Aggregator { sums, texts, tag_sets, .. } = self;
        let texts = texts.values;
        let mut entries: Vec<(Key, [Decimal; 3])> =
            sums.into_iter().map(|(k, amounts)| (k, amounts.map(|a| a.normalize()))).collect();
        let text = |id: u32| texts.get(id as usize).map(|s| &**s);
        entries.sort_unstable_by(|(a, _), (b, _)| {
            a.day.cmp(&b.day).then_with(|| {
                [PROVIDER, BILLING_ACCOUNT, SUB_ACCOUNT, SERVICE, RESOURCE, REGION, CATEGORY, CURRENCY]
                    .iter()
                    .map(|&p| text(a.texts[p]).cmp(&text(b.texts[p])))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| tag_sets.get(a.tags).cmp(tag_sets.get(b.tags)))
            })
        });
        entries.shrink_to_fit();
        RolledUp { texts, tag_sets: tag_sets.into_sets(), entries }
    }
}

/// A file's daily costs in compact form.
#[derive(Debug, Clone, Default)]
pub(crate) struct RolledUp {
    texts: Vec<Box<str>>,
    tag_sets: Vec<BTreeMap<String, String>>,
    entries: Vec<(Key, [Decimal; 3])>,
}

impl RolledUp {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = DailyCostRef<'_>> + '_ {
        let text = |id: u32| if id == NONE { None } else { Some(&*self.texts[id as usize]) };
        self.entries.iter().map(move |(k, [billed, effective, list])| DailyCostRef {
            day: NaiveDate::from_num_days_from_ce_opt(k.day).expect("a day that was a date"),
            provider: text(k.texts[PROVIDER]).unwrap_or_default(),
            billing_account_id: text(k.texts[BILLING_ACCOUNT]).unwrap_or_default(),
            sub_account_id: text(k.texts[SUB_ACCOUNT]).unwrap_or_default(),
            service_name: text(k.texts[SERVICE]).unwrap_or_default(),
            resource_id: text(k.texts[RESOURCE]),
            region: text(k.texts[REGION]),
            charge_category: text(k.texts[CATEGORY]).unwrap_or_default(),
            currency: text(k.texts[CURRENCY]).unwrap_or_default(),
            billed_cost: *billed,
            effective_cost: *effective,
            list_cost: *list,
            tags: &self.tag_sets[k.tags as usize],
        })
    }
}
