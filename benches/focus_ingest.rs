//! FOCUS ingest benchmark: rows per second and peak memory reading a generated FOCUS 1.0 file (1,000,000 rows
//! by default, 44 columns like a real export, written to a temporary folder and removed afterwards).
//!
//! Phases, each timed, each in a process of its own whose peak resident memory (VmHWM from /proc/self/status)
//! is printed:
//! 1. read a file of a tenth of the rows with the same keys (CSV), then the full file (CSV): the two peaks
//!    show that memory follows the number of distinct keys, not the number of rows;
//! 2. the full file gzip-compressed, and as Parquet;
//! 3. the full CSV loaded into a fresh SQLite store (`load_billing`: list, read, roll up, one transaction),
//!    then loaded again (unchanged: not read); and the SQLite write alone.
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
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "Id",
    "ServiceName",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
];

const SERVICES: [&str; 8] = [
    "Amazon Elastic Compute Cloud",
    "Amazon Simple Storage Service",
    "Amazon Relational Database Service",
    "Elastic Load Balancing",
    "AWS Lambda",
    "Amazon CloudWatch",
    "Amazon DynamoDB",
    "Amazon Simple Queue Service",
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
    Row {
        resource: k % resources,
        day: k / resources + 1,
        hour: (i / keys) % 24,
        billed: list,
        effective: list * 7 / 10,
        list,
    }
}

fn amount(unscaled: i64) -> String {
    format!("{}.{:010}", unscaled / 10_000_000_000, unscaled % 10_000_000_000)
}

fn tags(resource: usize) -> String {
    format!(
        r#"{{"team": "{}", "environment": "{}", "cost_center": "cc-{}"}}"#,
        TEAMS[resource % TEAMS.len()],
        if resource.is_multiple_of(3) { "prod" } else { "dev" },
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
        let batch: Vec<(usize, Row)> =
            (first..(first + group_rows).min(rows)).map(|i| (i, row(i, resources))).collect();
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

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn report(what: &str, rows: u64, secs: f64, extra: &str) {
    println!(
        "{what:<28} {rows:>9} rows in {secs:>6.2}s = {:>7.0} rows/s, peak RSS {:>6.1} MiB{extra}",
        rows as f64 / secs,
        mib(status_kib("VmHWM:")),
    );
}

/// One phase, in a process of its own so that its peak memory is its own.
fn phase(name: &str, path: &Path) {
    let format = match name {
        "gzip" => FileFormat::CsvGz,
        "parquet" => FileFormat::Parquet,
        _ => FileFormat::Csv,
    };
    let uri = path.display().to_string();
    match name {
        "load" | "write" => {
            common::aws_test_env();
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let db = path.with_extension(format!("{name}.db"));
                let store = Store::connect(&format!("sqlite://{}", db.display()), 2).await.unwrap();
                if name == "load" {
                    let ctx = AwsContext::new(&AwsSettings::default()).await;
                    let source = [BillingSource::parse(&uri).unwrap()];
                    let started = Instant::now();
                    let loaded =
                        load_billing(&store, &ctx, &ctx.accounts[0], "us-east-1", &source, &ReadOptions::default())
                            .await;
                    let secs = started.elapsed().as_secs_f64();
                    assert!(loaded.is_complete() && loaded.loaded() == 1, "{loaded:?}");
                    report("load CSV into SQLite", loaded.rows_read(), secs, "");
                    let started = Instant::now();
                    let again =
                        load_billing(&store, &ctx, &ctx.accounts[0], "us-east-1", &source, &ReadOptions::default())
                            .await;
                    assert_eq!(again.unchanged(), 1);
                    println!(
                        "{:<28} unchanged, not read: {:.4}s",
                        "load the same file again",
                        started.elapsed().as_secs_f64()
                    );
                } else {
                    let read = read_path(path, &uri, format, &ReadOptions::default()).unwrap();
                    let file = collector::billing::FileRef { uri, size: 0, fingerprint: "bench".into(), format };
                    let started = Instant::now();
                    store.replace_billing_file(&file, &read, chrono::Utc::now()).await.unwrap();
                    let secs = started.elapsed().as_secs_f64();
                    println!(
                        "{:<28} {:>9} daily rows in {secs:>6.2}s = {:>7.0} rows/s",
                        "of which SQLite write",
                        read.cost_rows(),
                        read.cost_rows() as f64 / secs
                    );
                }
                store.close().await;
            });
        }
        _ => {
            let started = Instant::now();
            let out = read_path(path, &uri, format, &ReadOptions::default()).unwrap();
            let secs = started.elapsed().as_secs_f64();
            let size = std::fs::metadata(path).unwrap().len();
            let what = match name {
                "small" => "read CSV, a tenth of the rows",
                "csv" => "read CSV",
                "gzip" => "read CSV gzip",
                _ => "read Parquet",
            };
            report(
                what,
                out.rows_read,
                secs,
                &format!(", {:.0} MiB/s of file, {} daily rows", mib(size / 1024) / secs, out.cost_rows()),
            );
        }
    }
}

fn main() {
    if let (Ok(name), Ok(path)) = (std::env::var("BENCH_PHASE"), std::env::var("BENCH_FILE")) {
        phase(&name, Path::new(&path));
        return;
    }
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
        "generated {rows} rows, 44 columns ({resources} resources x 30 days = {} keys) in {:.1}s: CSV {:.0} MiB, gzip {:.0} MiB, Parquet {:.0} MiB",
        resources * 30,
        started.elapsed().as_secs_f64(),
        size(&big),
        size(&gz),
        size(&pq)
    );
    println!(
        "{} cores; each phase runs in a process of its own",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let exe = std::env::current_exe().unwrap();
    for (name, path) in
        [("small", &small), ("csv", &big), ("gzip", &gz), ("parquet", &pq), ("load", &big), ("write", &big)]
    {
        let status = Command::new(&exe).env("BENCH_PHASE", name).env("BENCH_FILE", path).status().expect("run a phase");
        assert!(status.success(), "phase {name} failed");
    }
}
