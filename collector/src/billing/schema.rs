//! The two schemas: which columns a file has, and how one row becomes the values of a [`DailyCost`] key.
//!
//! Readers (CSV, Parquet) only hand out [`Cell`]s by column index; everything about FOCUS and CUR lives here.
//!
//! [`DailyCost`]: super::DailyCost

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;

use super::{Schema, SchemaError, ValueError};
use crate::money;

/// One value of a row, as a reader found it.
#[derive(Debug)]
pub(crate) enum Cell<'a> {
    Null,
    Text(&'a str),
    Decimal(Decimal),
    Day(NaiveDate),
    Tags(BTreeMap<String, String>),
}

/// A row of any reader.
pub(crate) trait RowSource {
    /// The value in column `col` (an index into the names the mapping was detected from).
    fn cell(&self, col: usize) -> Result<Cell<'_>, ValueError>;
}

/// The values of one row, borrowed from it.
#[derive(Debug)]
pub(crate) struct RowValues<'a> {
    pub day: NaiveDate,
    pub provider: &'a str,
    pub billing_account_id: &'a str,
    pub sub_account_id: &'a str,
    pub service_name: &'a str,
    pub resource_id: Option<&'a str>,
    pub region: Option<&'a str>,
    pub charge_category: &'a str,
    pub currency: &'a str,
    pub billed_cost: Decimal,
    pub effective_cost: Decimal,
    pub list_cost: Decimal,
    /// Id of the row's tag set in [`TagSets`].
    pub tags: u32,
}

/// A column error: the column's index and what is wrong.
pub(crate) type CellError = (usize, ValueError);

/// CUR 2.0 columns used to amortize commitments (all optional: an export without savings plans or
/// reservations does not have them).
#[derive(Debug, Clone, Default)]
struct CurAmortization {
    line_item_type: Option<usize>,
    sp_effective_cost: Option<usize>,
    sp_total_commitment: Option<usize>,
    sp_used_commitment: Option<usize>,
    ri_effective_cost: Option<usize>,
    ri_unused_upfront: Option<usize>,
    ri_unused_recurring: Option<usize>,
    ri_arn: Option<usize>,
}

#[derive(Debug, Clone)]
enum Effective {
    Column(usize),
    Cur(CurAmortization),
}

#[derive(Debug, Clone)]
enum Category {
    Column(usize),
    /// From `line_item_line_item_type`, mapped onto FOCUS categories.
    CurLineItemType(Option<usize>),
}

/// Where each value of a [`DailyCost`](super::DailyCost) comes from in one file.
#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    pub schema: Schema,
    day: usize,
    billed: usize,
    effective: Effective,
    /// `None`: zero (CUR without `pricing_public_on_demand_cost`).
    list: Option<usize>,
    /// `None`: the constant `AWS` (CUR).
    provider: Option<usize>,
    billing_account: Option<usize>,
    sub_account: usize,
    service: usize,
    resource: Option<usize>,
    region: Option<usize>,
    category: Category,
    currency: usize,
    tags: Option<usize>,
}

fn find(names: &[&str], wanted: &str) -> Option<usize> {
    names.iter().position(|n| n.trim().eq_ignore_ascii_case(wanted))
}

impl Mapping {
    /// Detects the schema from the column names and finds every column it needs. The error says what is
    /// missing.
    pub fn detect(names: &[&str]) -> Result<Mapping, SchemaError> {
        let has = |n: &str| find(names, n).is_some();
        if has("BilledCost") && has("ChargePeriodStart") {
            Self::focus(names)
        } else if has("line_item_unblended_cost") && has("line_item_usage_start_date") {
            Self::cur(names)
        } else {
            Err(SchemaError::NoKnownColumns)
        }
    }

    fn focus(names: &[&str]) -> Result<Mapping, SchemaError> {
        let mut missing = Vec::new();
        let mut req = |n: &'static str| {
            find(names, n).unwrap_or_else(|| {
                missing.push(n);
                usize::MAX
            })
        };
        let m = Mapping {
            schema: Schema::Focus,
            day: req("ChargePeriodStart"),
            billed: req("BilledCost"),
            effective: Effective::Column(req("EffectiveCost")),
            list: Some(req("ListCost")),
            provider: Some(req("ProviderName")),
            billing_account: Some(req("BillingAccountId")),
            sub_account: req("SubAccountId"),
            service: req("ServiceName"),
            category: Category::Column(req("ChargeCategory")),
            currency: req("BillingCurrency"),
            resource: find(names, "ResourceId"),
            // FOCUS 1.0 says RegionId; the 1.0 previews said Region.
            region: find(names, "RegionId").or_else(|| find(names, "Region")),
            tags: find(names, "Tags"),
        };
        if missing.is_empty() {
            Ok(m)
        } else {
            Err(SchemaError::MissingColumns { schema: Schema::Focus, columns: missing })
        }
    }

    fn cur(names: &[&str]) -> Result<Mapping, SchemaError> {
        let mut missing = Vec::new();
        let mut req = |n: &'static str| {
            find(names, n).unwrap_or_else(|| {
                missing.push(n);
                usize::MAX
            })
        };
        let line_item_type = find(names, "line_item_line_item_type");
        let m = Mapping {
            schema: Schema::Cur,
            day: req("line_item_usage_start_date"),
            billed: req("line_item_unblended_cost"),
            sub_account: req("line_item_usage_account_id"),
            service: req("line_item_product_code"),
            currency: req("line_item_currency_code"),
            effective: Effective::Cur(CurAmortization {
                line_item_type,
                sp_effective_cost: find(names, "savings_plan_savings_plan_effective_cost"),
                sp_total_commitment: find(names, "savings_plan_total_commitment_to_date"),
                sp_used_commitment: find(names, "savings_plan_used_commitment"),
                ri_effective_cost: find(names, "reservation_effective_cost"),
                ri_unused_upfront: find(names, "reservation_unused_amortized_upfront_fee_for_billing_period"),
                ri_unused_recurring: find(names, "reservation_unused_recurring_fee"),
                ri_arn: find(names, "reservation_reservation_a_r_n"),
            }),
            list: find(names, "pricing_public_on_demand_cost"),
            provider: None,
            billing_account: find(names, "bill_payer_account_id"),
            resource: find(names, "line_item_resource_id"),
            region: find(names, "product_region_code"),
            category: Category::CurLineItemType(line_item_type),
            tags: find(names, "resource_tags"),
        };
        if missing.is_empty() {
            Ok(m)
        } else {
            Err(SchemaError::MissingColumns { schema: Schema::Cur, columns: missing })
        }
    }

    /// Every column index the mapping reads, ascending.
    pub fn used_columns(&self) -> Vec<usize> {
        let mut v = vec![self.day, self.billed, self.sub_account, self.service, self.currency];
        v.extend(
            [self.list, self.provider, self.billing_account, self.resource, self.region, self.tags]
                .into_iter()
                .flatten(),
        );
        match &self.effective {
            Effective::Column(c) => v.push(*c),
            Effective::Cur(a) => v.extend(
                [
                    a.line_item_type,
                    a.sp_effective_cost,
                    a.sp_total_commitment,
                    a.sp_used_commitment,
                    a.ri_effective_cost,
                    a.ri_unused_upfront,
                    a.ri_unused_recurring,
                    a.ri_arn,
                ]
                .into_iter()
                .flatten(),
            ),
        }
        if let Category::Column(c) = self.category {
            v.push(c);
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The values of one row.
    pub fn extract<'r, R: RowSource>(
        &self,
        row: &'r R,
        tag_sets: &mut TagSets,
        days: &mut DayCache,
    ) -> Result<RowValues<'r>, CellError> {
        let day = match row.cell(self.day).map_err(|e| (self.day, e))? {
            Cell::Day(d) => d,
            Cell::Text(t) => {
                days.parse(t).ok_or_else(|| (self.day, ValueError::InvalidTimestamp { text: t.to_string() }))?
            }
            Cell::Null => return Err((self.day, ValueError::MissingTimestamp)),
            other => return Err((self.day, wrong_type("a timestamp", &other))),
        };
        let billed_cost = required_decimal(row, self.billed)?;
        let list_cost = match self.list {
            // CUR leaves the on-demand cost empty on lines that have none (tax, credits, fees).
            Some(c) if self.schema == Schema::Cur => optional_decimal(row, c)?.unwrap_or_default(),
            Some(c) => required_decimal(row, c)?,
            None => Decimal::ZERO,
        };
        let (charge_category, line_item_type) = match &self.category {
            Category::Column(c) => (text(row, *c)?.unwrap_or(""), None),
            Category::CurLineItemType(c) => {
                let t = match c {
                    Some(c) => text(row, *c)?,
                    None => None,
                };
                (cur_category(t.unwrap_or("Usage")), t)
            }
        };
        let effective_cost = match &self.effective {
            Effective::Column(c) => required_decimal(row, *c)?,
            Effective::Cur(a) => cur_amortized(row, a, line_item_type, billed_cost)?,
        };
        let currency = text(row, self.currency)?.ok_or((self.currency, ValueError::MissingCurrency))?;
        let tags = match self.tags {
            None => 0,
            Some(c) => match row.cell(c).map_err(|e| (c, e))? {
                Cell::Null => 0,
                Cell::Text(t) => tag_sets.id_for_json(t).map_err(|e| (c, e))?,
                Cell::Tags(map) => tag_sets.id_for_map(map),
                other => return Err((c, wrong_type("tags", &other))),
            },
        };
        Ok(RowValues {
            day,
            provider: match self.provider {
                Some(c) => text(row, c)?.unwrap_or(""),
                None => "AWS",
            },
            billing_account_id: match self.billing_account {
                Some(c) => text(row, c)?.unwrap_or(""),
                None => "",
            },
            sub_account_id: text(row, self.sub_account)?.unwrap_or(""),
            service_name: text(row, self.service)?.unwrap_or(""),
            resource_id: match self.resource {
                Some(c) => text(row, c)?,
                None => None,
            },
            region: match self.region {
                Some(c) => text(row, c)?,
                None => None,
            },
            charge_category,
            currency,
            billed_cost,
            effective_cost,
            list_cost,
            tags,
        })
    }
}

fn kind(cell: &Cell<'_>) -> &'static str {
    match cell {
        Cell::Null => "null",
        Cell::Text(_) => "text",
        Cell::Decimal(_) => "a number",
        Cell::Day(_) => "a timestamp",
        Cell::Tags(_) => "a map",
    }
}

fn wrong_type(expected: &'static str, found: &Cell<'_>) -> ValueError {
    ValueError::WrongType { expected, found: kind(found) }
}

fn text<R: RowSource>(row: &R, col: usize) -> Result<Option<&str>, CellError> {
    match row.cell(col).map_err(|e| (col, e))? {
        Cell::Null => Ok(None),
        Cell::Text(t) => Ok(Some(t)),
        other => Err((col, wrong_type("text", &other))),
    }
}

/// An amount, at most [`MAX_AMOUNT`](crate::money::MAX_AMOUNT) in magnitude: a larger one is malformed, so
/// that no sum of a file's amounts can leave the decimal range.
fn optional_decimal<R: RowSource>(row: &R, col: usize) -> Result<Option<Decimal>, CellError> {
    let amount = match row.cell(col).map_err(|e| (col, e))? {
        Cell::Null => return Ok(None),
        Cell::Decimal(d) => d,
        Cell::Text(t) => parse_decimal(t).map_err(|e| (col, e))?,
        other => return Err((col, wrong_type("a number", &other))),
    };
    money::bounded(amount).map(Some).map_err(|e| (col, ValueError::AmountOutOfRange(e)))
}

fn required_decimal<R: RowSource>(row: &R, col: usize) -> Result<Decimal, CellError> {
    optional_decimal(row, col)?.ok_or((col, ValueError::MissingAmount))
}

/// An exact decimal from its text; scientific notation (`1.5E-7`) is accepted.
pub(crate) fn parse_decimal(s: &str) -> Result<Decimal, ValueError> {
    let t = s.trim();
    let parsed =
        if t.bytes().any(|b| b == b'e' || b == b'E') { Decimal::from_scientific(t) } else { Decimal::from_str(t) };
    parsed.map_err(|_| ValueError::InvalidAmount { text: s.to_string() })
}

/// CUR line item types onto FOCUS charge categories.
fn cur_category(line_item_type: &str) -> &'static str {
    match line_item_type {
        "Usage" | "DiscountedUsage" | "SavingsPlanCoveredUsage" => "Usage",
        "Fee" | "RIFee" | "SavingsPlanRecurringFee" | "SavingsPlanUpfrontFee" => "Purchase",
        "Tax" => "Tax",
        "Credit" | "Refund" => "Credit",
        // SavingsPlanNegation, BundledDiscount, EdpDiscount, PrivateRateDiscount, Discount, ...
        _ => "Adjustment",
    }
}

/// CUR amortized cost: commitments spread over the usage they cover, the AWS way. A column the formula
/// needs but the export lacks leaves the unblended cost.
fn cur_amortized<R: RowSource>(
    row: &R,
    a: &CurAmortization,
    line_item_type: Option<&str>,
    unblended: Decimal,
) -> Result<Decimal, CellError> {
    let col = |c: Option<usize>| -> Result<Option<Decimal>, CellError> {
        match c {
            // Empty on the lines a column does not apply to: zero.
            Some(c) => Ok(Some(optional_decimal(row, c)?.unwrap_or_default())),
            None => Ok(None),
        }
    };
    let amortized = match line_item_type.unwrap_or("") {
        "SavingsPlanCoveredUsage" => col(a.sp_effective_cost)?,
        "SavingsPlanRecurringFee" => match (col(a.sp_total_commitment)?, col(a.sp_used_commitment)?) {
            (Some(total), Some(used)) => Some(
                total
                    .checked_sub(used)
                    .ok_or((a.sp_used_commitment.unwrap_or_default(), ValueError::CommitmentOverflow))?,
            ),
            _ => None,
        },
        // Replaced by the covered usage's effective cost.
        "SavingsPlanNegation" | "SavingsPlanUpfrontFee" => Some(Decimal::ZERO),
        "DiscountedUsage" => col(a.ri_effective_cost)?,
        "RIFee" => match (col(a.ri_unused_upfront)?, col(a.ri_unused_recurring)?) {
            (Some(upfront), Some(recurring)) => {
                let mut fee = upfront;
                money::add_to(&mut fee, recurring)
                    .map_err(|e| (a.ri_unused_recurring.unwrap_or_default(), ValueError::SumOverflow(e)))?;
                Some(fee)
            }
            _ => None,
        },
        // An upfront reservation fee is spread over the reservation's usage.
        "Fee" => match a.ri_arn {
            Some(c) if text(row, c)?.is_some() => Some(Decimal::ZERO),
            _ => None,
        },
        _ => None,
    };
    Ok(amortized.unwrap_or(unblended))
}

/// Tag sets seen in a file, each stored once; id 0 is the empty set. Raw JSON texts are cached, so a text
/// repeated on many rows is parsed once.
#[derive(Debug)]
pub(crate) struct TagSets {
    by_text: HashMap<Box<str>, u32>,
    by_set: HashMap<BTreeMap<String, String>, u32>,
    sets: Vec<BTreeMap<String, String>>,
}

impl Default for TagSets {
    fn default() -> Self {
        TagSets { by_text: HashMap::new(), by_set: HashMap::from([(BTreeMap::new(), 0)]), sets: vec![BTreeMap::new()] }
    }
}

impl TagSets {
    pub fn id_for_json(&mut self, text: &str) -> Result<u32, ValueError> {
        if let Some(&id) = self.by_text.get(text) {
            return Ok(id);
        }
        let map = parse_tags(text)?;
        let id = self.id_for_map(map);
        self.by_text.insert(text.into(), id);
        Ok(id)
    }

    pub fn id_for_map(&mut self, map: BTreeMap<String, String>) -> u32 {
        if let Some(&id) = self.by_set.get(&map) {
            return id;
        }
        let id = self.sets.len() as u32;
        self.sets.push(map.clone());
        self.by_set.insert(map, id);
        id
    }

    pub fn get(&self, id: u32) -> &BTreeMap<String, String> {
        &self.sets[id as usize]
    }

    /// The sets, indexed by id.
    pub fn into_sets(self) -> Vec<BTreeMap<String, String>> {
        self.sets
    }
}

/// A JSON object into tags: string values as they are, `null` as an empty value, other values as JSON text.
pub(crate) fn parse_tags(text: &str) -> Result<BTreeMap<String, String>, ValueError> {
    let t = text.trim();
    if t.is_empty() || t == "NULL" {
        return Ok(BTreeMap::new());
    }
    let obj: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(t).map_err(|e| ValueError::TagsNotJson { message: e.to_string() })?;
    Ok(obj
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// Timestamp texts already parsed: an hourly file has few distinct ones.
#[derive(Debug, Default)]
pub(crate) struct DayCache {
    seen: HashMap<Box<str>, NaiveDate>,
}

impl DayCache {
    const MAX: usize = 10_000;

    pub fn parse(&mut self, text: &str) -> Option<NaiveDate> {
        if let Some(d) = self.seen.get(text) {
            return Some(*d);
        }
        let d = parse_utc_day(text)?;
        if self.seen.len() >= Self::MAX {
            self.seen.clear();
        }
        self.seen.insert(text.into(), d);
        Some(d)
    }
}

/// The UTC day of a timestamp: RFC 3339 with any offset (`2024-09-01T22:00:00-05:00` is on the 2nd), or
/// without offset, taken as UTC (`2024-09-01 22:00:00`, `2024-09-01T22:00:00.000`), or a bare date.
pub(crate) fn parse_utc_day(text: &str) -> Option<NaiveDate> {
    let t = text.trim();
    if t.len() == 10 {
        return NaiveDate::parse_from_str(t, "%Y-%m-%d").ok();
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.naive_utc().date());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M"] {
        if fmt.ends_with('z') {
            if let Ok(dt) = DateTime::parse_from_str(t, fmt) {
                return Some(dt.naive_utc().date());
            }
        } else if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(dt.date());
        }
    }
    None
}
