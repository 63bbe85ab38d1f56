//! FOCUS ingest benchmark: rows per second and peak memory reading a generated FOCUS 1.0 file (1,000,000 rows
//! by default, 44 columns like a real export, written to a temporary folder and removed afterwards).
//!
//! Phases, each timed and with its own peak resident memory (VmHWM from /proc/self/status, reset between
//! phases through /proc/self/clear_refs):
//! 1. read a file of a tenth of the rows with the same keys (CSV), then the full file (CSV): the two peaks
//!    show that memory follows the number of distinct keys, not the number of rows;
//! 2. the full file gzip-compressed, and as Parquet;
//! 3. the full CSV loaded into a fresh SQLite store (`load_billing`: read, roll up, one transaction).
//!
//! Run with `cargo bench --bench focus_ingest`; options through the environment: `BENCH_ROWS` (default
//! 1000000), `BENCH_RESOURCES` (distinct resources, default 1400; keys = resources × 30 days).

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use cloudwarden::billing::load_billing;
use cloudwarden::store::Store;
use collector::billing::{read_path, BillingSource, FileFormat, ReadOptions};
use collector::{AwsContext, AwsSettings};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

const HEADER: [&str; 44] = [
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodEnd",
    "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargeFrequency", "ChargePeriodEnd",
    "ChargePeriodStart", "CommitmentDiscountCategory", "CommitmentDiscountId", "CommitmentDiscountName",
    "CommitmentDiscountStatus", "CommitmentDiscountType", "ConsumedQuantity", "ConsumedUnit", "ContractedCost",
    "ContractedUnitPrice", "EffectiveCost", "InvoiceIssuerName", "ListCost", "ListUnitPrice", "PricingCategory",
    "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName", "RegionId", "RegionName", "ResourceId",
    "ResourceName", "ResourceType", "ServiceCategory", "Id", "ServiceName", "SkuId", "SkuPriceId", "SubAccountId",
    "SubAccountName", "Tags",
];

const SERVICES: [&str; 8] = [
    "Amazon Elastic Compute Cloud", "Amazon Simple Storage Service", "Amazon Relational Database Service",
    "Elastic Load Balancing", "AWS Lambda", "Amazon CloudWatch", "Amazon DynamoDB", "Amazon Simple Queue Service",
];
const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1"];
const TEAMS: [&str; 10] = ["web", "data", "ml", "payments", "search", "infra", "mobile", "growth", "ads", "core"];

/// One generated row: the values the reader uses, derived from the row number.
struct Row {
    resource: usize,
    day: usize,
    hour: usize,
    /// Unscaled amounts with 10 decimals.
    billed: i64,
    effective: i64,
    list: i64,
}

fn row(i: usize, resources: usize) -> Row {
    let keys = resources * 30;
    let k = i % keys;
    // A cheap deterministic spread of amounts (xorshift of the row number).
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let list = (x % 5_000_000_000) as i64; // up to 0.5 in currency units
    Row { resource: k % resources, day: k / resources + 1, hour: (i / keys) % 24, billed: list, effective: list * 7 / 10, list }
}

fn amount(unscaled: i64) -> String {
    format!("{}.{:010}", unscaled / 10_000_000_000, unscaled % 10_000_000_000)
}

fn tags(resource: usize) -> String {
    format!(
        r#"{{"team": "{}", "environment": "{}", "cost_center": "cc-{}"}}"#,
        TEAMS[resource % TEAMS.len()],
        if resource % 3 == 0 { "prod" } else { "dev" },
        resource % 7
    )
}

fn resource_id(r: usize) -> String {
    format!("arn:aws:ec2:{}:{:012}:instance/i-{:017x}", REGIONS[r % 4], 100_000_000_000 + r % 20, r)
}

fn csv_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn write_csv(path: &Path, rows: usize, resources: usize) {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let header: Vec<String> = HEADER.iter().map(|h| csv_quote(h)).collect();
    writeln!(out, "{}", header.join(",")).unwrap();
    for i in 0..rows {
        let r = row(i, resources);
        let start = format!("2024-09-{:02} {:02}:00:00", r.day, r.hour);
        let end = format!("2024-09-{:02} {:02}:59:59", r.day, r.hour);
        writeln!(
            out,
            "NULL,{billed},\"123456789012\",\"Example\",\"USD\",\"2024-10-01 00:00:00\",\"2024-09-01 00:00:00\",\
             \"Usage\",NULL,\"$0.0116 per On Demand Linux t3.micro Instance Hour\",\"Usage-Based\",\"{end}\",\"{start}\",\
             NULL,NULL,NULL,NULL,NULL,1.000000000000000,\"Hours\",{list},0.0116,{effective},\
             \"Amazon Web Services, Inc.\",{list},\"0.0116\",\"Standard\",1.00000000000,\"Hours\",\"AWS\",\
             \"Amazon Web Services, Inc.\",\"{region}\",\"{region}\",\"{resource}\",NULL,NULL,\"Compute\",{i},\
             \"{service}\",\"9DEJHBACUYEYMVN8\",\"9DEJHBACUYEYMVN8.JRTCKXETXF.6YS6EN2CT7\",\"{account:012}\",\
             \"account-{account}\",{tags}",
            billed = amount(r.billed),
            list = amount(r.list),
            effective = amount(r.effective),
            region = REGIONS[r.resource % 4],
            resource = resource_id(r.resource),
            service = SERVICES[r.resource % SERVICES.len()],
            account = 100_000_000_000 + r.resource % 20,
            tags = csv_quote(&tags(r.resource)),
        )
        .unwrap();
    }
    out.flush().unwrap();
}

const PARQUET_SCHEMA: &str = "
message focus {
  required int64 BilledCost (DECIMAL(18,10));
  required int64 EffectiveCost (DECIMAL(18,10));
  required int64 ListCost (DECIMAL(18,10));
  required int64 ChargePeriodStart (TIMESTAMP(MICROS,true));
  required binary ProviderName (STRING);
  required binary BillingAccountId (STRING);
  required binary SubAccountId (STRING);
  required binary ServiceName (STRING);
  optional binary ResourceId (STRING);
  optional binary RegionId (STRING);
  required binary ChargeCategory (STRING);
  required binary BillingCurrency (STRING);
  optional binary ChargeDescription (STRING);
  optional binary Tags (STRING);
}";

/// The same rows as Parquet (the reader's columns and one it skips), snappy, 65,536 rows per row group.
fn write_parquet(path: &Path, rows: usize, resources: usize) {
    let schema = Arc::new(parse_message_type(PARQUET_SCHEMA).unwrap());
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let mut writer = SerializedFileWriter::new(File::create(path).unwrap(), schema, props).unwrap();
    let group_rows = 65_536;
    for first in (0..rows).step_by(group_rows) {
        let batch: Vec<(usize, Row)> = (first..(first + group_rows).min(rows)).map(|i| (i, row(i, resources))).collect();
        let mut rg = writer.next_row_group().unwrap();
        let mut column = 0;
        while let Some(mut col) = rg.next_column().unwrap() {
            let n = batch.len();
            let ones = vec![1i16; n];
            match column {
                0..=3 => {
                    let values: Vec<i64> = batch
                        .iter()
                        .map(|(_, r)| match column {
                            0 => r.billed,
                            1 => r.effective,
                            2 => r.list,
                            _ => (1_725_148_800 + ((r.day - 1) * 24 + r.hour) as i64 * 3600) * 1_000_000,
                        })
                        .collect();
                    col.typed::<Int64Type>().write_batch(&values, None, None).unwrap();
                }
                _ => {
                    let values: Vec<ByteArray> = batch
                        .iter()
                        .map(|(_, r)| {
                            ByteArray::from(Vec::from(match column {
                                4 => "AWS".to_string(),
                                5 => "123456789012".to_string(),
                                6 => format!("{:012}", 100_000_000_000 + r.resource % 20),
                                7 => SERVICES[r.resource % SERVICES.len()].to_string(),
                                8 => resource_id(r.resource),
                                9 => REGIONS[r.resource % 4].to_string(),
                                10 => "Usage".to_string(),
                                11 => "USD".to_string(),
                                12 => "$0.0116 per On Demand Linux t3.micro Instance Hour".to_string(),
                                _ => tags(r.resource),
                            }))
                        })
                        .collect();
                    let defs = matches!(column, 8 | 9 | 12 | 13).then_some(ones.as_slice());
                    col.typed::<ByteArrayType>().write_batch(&values, defs, None).unwrap();
                }
            }
            col.close().unwrap();
            column += 1;
        }
        rg.close().unwrap();
    }
    writer.close().unwrap();
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux 4.0+); false where the kernel does not allow it.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn report(what: &str, rows: u64, secs: f64, size: u64, extra: &str) {
    println!(
        "{what:<34} {rows:>9} rows in {secs:>6.2}s = {:>8.0} rows/s, {:>6.1} MiB/s of file, peak RSS {:>6.1} MiB (now {:.1} MiB){extra}",
        rows as f64 / secs,
        mib(size / 1024) / secs,
        mib(status_kib("VmHWM:")),
        mib(status_kib("VmRSS:")),
    );
}

fn read_phase(what: &str, path: &Path, format: FileFormat) {
    reset_peak();
    let size = std::fs::metadata(path).unwrap().len();
    let started = Instant::now();
    let out = read_path(path, &path.display().to_string(), format, &ReadOptions::default()).unwrap();
    let secs = started.elapsed().as_secs_f64();
    report(what, out.rows_read, secs, size, &format!(", {} daily cost rows", out.costs.len()));
}

fn main() {
    let rows: usize = std::env::var("BENCH_ROWS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let resources: usize = std::env::var("BENCH_RESOURCES").ok().and_then(|s| s.parse().ok()).unwrap_or(1400);
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("focus-small.csv");
    let big = dir.path().join("focus.csv");
    let gz = dir.path().join("focus.csv.gz");
    let pq = dir.path().join("focus.parquet");

    let started = Instant::now();
    write_csv(&small, rows / 10, resources);
    write_csv(&big, rows, resources);
    let out = Command::new("gzip").args(["-k", "-6"]).arg(&big).status().expect("run gzip");
    assert!(out.success() && gz.exists(), "gzip failed");
    write_parquet(&pq, rows, resources);
    let size = |p: &Path| mib(std::fs::metadata(p).unwrap().len() / 1024);
    println!(
        "generated {rows} rows ({resources} resources x 30 days = {} keys) in {:.1}s: CSV {:.0} MiB, gzip {:.0} MiB, Parquet {:.0} MiB",
        resources * 30,
        started.elapsed().as_secs_f64(),
        size(&big),
        size(&gz),
        size(&pq)
    );
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("{cores} cores; peak reset between phases: {}", if reset_peak() { "yes" } else { "no (peaks are cumulative)" });

    read_phase("read CSV (a tenth of the rows)", &small, FileFormat::Csv);
    read_phase("read CSV", &big, FileFormat::Csv);
    read_phase("read CSV gzip", &gz, FileFormat::CsvGz);
    read_phase("read Parquet", &pq, FileFormat::Parquet);

    // The whole path into a fresh SQLite store.
    common::aws_test_env();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ctx = AwsContext::new(&AwsSettings::default()).await;
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("bench.db").display()), 2).await.unwrap();
        let source = BillingSource::parse(&big.display().to_string()).unwrap();
        reset_peak();
        let started = Instant::now();
        let loaded = load_billing(&store, &ctx, &ctx.accounts[0], "us-east-1", &[source.clone()], &ReadOptions::default()).await;
        let secs = started.elapsed().as_secs_f64();
        assert!(loaded.is_complete() && loaded.loaded() == 1, "{loaded:?}");
        report("load CSV into SQLite", loaded.rows_read(), secs, std::fs::metadata(&big).unwrap().len(), "");
        let started = Instant::now();
        let again = load_billing(&store, &ctx, &ctx.accounts[0], "us-east-1", &[source], &ReadOptions::default()).await;
        assert_eq!(again.unchanged(), 1);
        println!("second load of the unchanged file: {:.3}s (not read again)", started.elapsed().as_secs_f64());
        store.close().await;
    });
}
