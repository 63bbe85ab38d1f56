//! Rows into daily costs: one entry per distinct key, amounts added as decimals. Memory grows with the
//! number of distinct keys (about resources × days), never with the number of rows.

use std::collections::HashMap;

use rust_decimal::Decimal;

use super::schema::{DayCache, RowValues, TagSets};
use super::DailyCost;

#[derive(Debug, Default)]
pub(crate) struct Aggregator {
    /// Encoded key → index into `entries`.
    index: HashMap<Box<[u8]>, usize>,
    /// The entries with their tag set id (tags are filled in at the end).
    entries: Vec<(DailyCost, u32)>,
    /// Reused buffer for the key of the current row.
    key: Vec<u8>,
    pub tag_sets: TagSets,
    pub days: DayCache,
}

fn push_str(key: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => key.extend_from_slice(&u32::MAX.to_le_bytes()),
        Some(s) => {
            key.extend_from_slice(&(s.len() as u32).to_le_bytes());
            key.extend_from_slice(s.as_bytes());
        }
    }
}

impl Aggregator {
    /// Adds one row. Fails only if a sum overflows the decimal range (about 7.9e28), naming the amount.
    pub fn add(&mut self, v: RowValues<'_>) -> Result<(), &'static str> {
        let key = &mut self.key;
        key.clear();
        key.extend_from_slice(&chrono::Datelike::num_days_from_ce(&v.day).to_le_bytes());
        key.extend_from_slice(&v.tags.to_le_bytes());
        for s in [
            Some(v.provider),
            Some(v.billing_account_id),
            Some(v.sub_account_id),
            Some(v.service_name),
            v.resource_id,
            v.region,
            Some(v.charge_category),
            Some(v.currency),
        ] {
            push_str(key, s);
        }
        let at = match self.index.get(key.as_slice()) {
            Some(&at) => at,
            None => {
                let at = self.entries.len();
                self.entries.push((
                    DailyCost {
                        day: v.day,
                        provider: v.provider.to_string(),
                        billing_account_id: v.billing_account_id.to_string(),
                        sub_account_id: v.sub_account_id.to_string(),
                        service_name: v.service_name.to_string(),
                        resource_id: v.resource_id.map(str::to_string),
                        region: v.region.map(str::to_string),
                        charge_category: v.charge_category.to_string(),
                        currency: v.currency.to_string(),
                        billed_cost: Decimal::ZERO,
                        effective_cost: Decimal::ZERO,
                        list_cost: Decimal::ZERO,
                        tags: Default::default(),
                    },
                    v.tags,
                ));
                self.index.insert(key.as_slice().into(), at);
                at
            }
        };
        let e = &mut self.entries[at].0;
        let billed = e.billed_cost.checked_add(v.billed_cost).ok_or("billed cost sum overflows")?;
        let effective = e.effective_cost.checked_add(v.effective_cost).ok_or("effective cost sum overflows")?;
        let list = e.list_cost.checked_add(v.list_cost).ok_or("list cost sum overflows")?;
        (e.billed_cost, e.effective_cost, e.list_cost) = (billed, effective, list);
        Ok(())
    }

    /// The daily costs, tags filled in, sorted by key; amounts normalized (no trailing zeros).
    pub fn finish(self) -> Vec<DailyCost> {
        let Aggregator { index, entries, tag_sets, .. } = self;
        drop(index);
        let mut out: Vec<DailyCost> = entries
            .into_iter()
            .map(|(mut c, tags)| {
                c.tags = tag_sets.get(tags).clone();
                c.billed_cost = c.billed_cost.normalize();
                c.effective_cost = c.effective_cost.normalize();
                c.list_cost = c.list_cost.normalize();
                c
            })
            .collect();
        out.sort_by(|a, b| {
            (a.day, &a.provider, &a.billing_account_id, &a.sub_account_id, &a.service_name, &a.resource_id, &a.region)
                .cmp(&(b.day, &b.provider, &b.billing_account_id, &b.sub_account_id, &b.service_name, &b.resource_id, &b.region))
                .then_with(|| (&a.charge_category, &a.currency, &a.tags).cmp(&(&b.charge_category, &b.currency, &b.tags)))
        });
        out
    }
}
