//! Billing export files end to end: the FOCUS sample (`tests/data/focus/focus_sample_1000.csv`, read where
//! it is) loaded into the store gives totals by service, account and day equal to sums this test
//! computes from the CSV with its own parser; the same data as gzip and as Parquet (written here) gives the
//! same daily costs; an S3 prefix on the moto test-bed loads the same way; loading twice changes nothing;
//! a malformed row fails the file atomically with file, line or row, and column, or is skipped and counted.
//! The store part runs on SQLite, and on PostgreSQL when `CLOUDWARDEN_TEST_POSTGRES_URL` is set.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;

use chrono::NaiveDateTime;
use cloudwarden::billing::{load_billing, FileStatus, LoadReport};
use cloudwarden::store::{BillingGroup, Store};
use collector::billing::{BillingSource, Decimal, ReadOptions};
use collector::{AwsContext, AwsSettings};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

// ---------------------------------------------------------------------------------------------------------
// The sample, read independently of the code under test.

/// The sample, relative to the package root (the working directory of integration tests).
const SAMPLE: &str = "tests/data/focus/focus_sample_1000.csv";

fn sample_path() -> PathBuf {
    common::repo_root().join(SAMPLE)
}

/// A minimal RFC 4180 parser: commas, double quotes, doubled quotes inside quotes, newlines inside quotes.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field, mut quoted, mut chars) = (Vec::new(), String::new(), false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// The sample as header and records (NULL kept as the text it is).
struct Sample {
    header: Vec<String>,
    records: Vec<Vec<String>>,
}

impl Sample {
    fn load() -> Sample {
        let text = std::fs::read_to_string(sample_path()).expect("the FOCUS sample is at tests/data/focus/");
        let mut rows = parse_csv(&text);
        let header = rows.remove(0);
        assert_eq!(rows.len(), 1000);
        Sample { header, records: rows }
    }

    fn col(&self, name: &str) -> usize {
        self.header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"))
    }

    /// Billed, effective and list cost summed per (group value, currency), the group value taken from a
    /// column (or the first 10 characters of ChargePeriodStart for the day).
    fn totals(&self, group: BillingGroup, skip: &[usize]) -> BTreeMap<(String, String), [Decimal; 3]> {
        let key_col = match group {
            BillingGroup::Service => self.col("ServiceName"),
            BillingGroup::Account => self.col("SubAccountId"),
            BillingGroup::Day => self.col("ChargePeriodStart"),
            other => panic!("no independent total for {other:?}"),
        };
        let (cur, amounts) =
            (self.col("BillingCurrency"), [self.col("BilledCost"), self.col("EffectiveCost"), self.col("ListCost")]);
        let mut out: BTreeMap<(String, String), [Decimal; 3]> = BTreeMap::new();
        for (i, r) in self.records.iter().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            let mut key = r[key_col].clone();
            if group == BillingGroup::Day {
                key.truncate(10);
            }
            let sums = out.entry((key, r[cur].clone())).or_insert([Decimal::ZERO; 3]);
            for (s, c) in sums.iter_mut().zip(amounts) {
                *s += Decimal::from_str(&r[c]).unwrap();
            }
        }
        out
    }
}

async fn store_totals(store: &Store, group: BillingGroup) -> BTreeMap<(String, String), [Decimal; 3]> {
    store
        .billing_totals(group, None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| ((t.group, t.currency), [t.billed_cost, t.effective_cost, t.list_cost]))
        .collect()
}

/// Totals by service, account and day equal the independent sums, every amount to the last decimal.
async fn assert_totals(store: &Store, sample: &Sample, skip: &[usize], times: u32) {
    for group in [BillingGroup::Service, BillingGroup::Account, BillingGroup::Day] {
        let mut expected = sample.totals(group, skip);
        for sums in expected.values_mut() {
            for s in sums.iter_mut() {
                *s = (*s * Decimal::from(times)).normalize();
            }
        }
        assert_eq!(store_totals(store, group).await, expected, "totals by {group:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Other encodings of the sample.

/// The sample gzip-compressed by the system's gzip.
fn write_gzip(src: &Path, dest: &Path) {
    let out = Command::new("gzip").arg("-c").arg(src).output().expect("run gzip");
    assert!(out.status.success(), "gzip failed");
    std::fs::write(dest, out.stdout).unwrap();
}

const PARQUET_SCHEMA: &str = "
message focus {
  optional int64 BilledCost (DECIMAL(18,11));
  optional double EffectiveCost;
  optional binary ListCost (STRING);
  optional int64 ChargePeriodStart (TIMESTAMP(MICROS,true));
  optional binary ProviderName (STRING);
  optional binary BillingAccountId (STRING);
  optional binary SubAccountId (STRING);
  optional binary ServiceName (STRING);
  optional binary ResourceId (STRING);
  optional binary RegionId (STRING);
  optional binary ChargeCategory (STRING);
  optional binary BillingCurrency (STRING);
  optional binary ChargeDescription (STRING);
  optional group Tags (MAP) {
    repeated group key_value {
      required binary key (STRING);
      optional binary value (STRING);
    }
  }
}";

/// The sample as Parquet, the way exports type their columns: BilledCost as a decimal, EffectiveCost as a
/// double, ListCost as text, ChargePeriodStart as a timestamp, Tags as a map; `rows_per_group` rows per
/// row group. `null_billed` rows get a null BilledCost (malformed).
fn write_parquet(sample: &Sample, dest: &Path, rows_per_group: usize, null_billed: &[usize]) {
    let schema = Arc::new(parse_message_type(PARQUET_SCHEMA).unwrap());
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let mut writer = SerializedFileWriter::new(File::create(dest).unwrap(), schema, props).unwrap();
    let text_cols = [
        "ProviderName",
        "BillingAccountId",
        "SubAccountId",
        "ServiceName",
        "ResourceId",
        "RegionId",
        "ChargeCategory",
        "BillingCurrency",
        "ChargeDescription",
    ];
    let null = |v: &str| v == "NULL" || v.is_empty();
    for (g, group) in sample.records.chunks(rows_per_group).enumerate() {
        let first = g * rows_per_group;
        let mut rg = writer.next_row_group().unwrap();
        let mut column = 0;
        while let Some(mut col) = rg.next_column().unwrap() {
            match column {
                0 => {
                    let (mut values, mut defs) = (Vec::new(), Vec::new());
                    for (i, r) in group.iter().enumerate() {
                        if null_billed.contains(&(first + i)) {
                            defs.push(0);
                            continue;
                        }
                        let d = Decimal::from_str(&r[sample.col("BilledCost")]).unwrap();
                        assert!(d.scale() <= 11, "the sample has at most 11 decimals");
                        let mut d = d;
                        d.rescale(11);
                        values.push(i64::try_from(d.mantissa()).unwrap());
                        defs.push(1);
                    }
                    col.typed::<Int64Type>().write_batch(&values, Some(&defs), None).unwrap();
                }
                1 => {
                    let values: Vec<f64> =
                        group.iter().map(|r| r[sample.col("EffectiveCost")].parse().unwrap()).collect();
                    col.typed::<DoubleType>().write_batch(&values, Some(&vec![1; values.len()]), None).unwrap();
                }
                2 => {
                    let values: Vec<ByteArray> =
                        group.iter().map(|r| ByteArray::from(r[sample.col("ListCost")].as_str())).collect();
                    col.typed::<ByteArrayType>().write_batch(&values, Some(&vec![1; values.len()]), None).unwrap();
                }
                3 => {
                    let values: Vec<i64> = group
                        .iter()
                        .map(|r| {
                            NaiveDateTime::parse_from_str(&r[sample.col("ChargePeriodStart")], "%Y-%m-%d %H:%M:%S")
                                .unwrap()
                                .and_utc()
                                .timestamp_micros()
                        })
                        .collect();
                    col.typed::<Int64Type>().write_batch(&values, Some(&vec![1; values.len()]), None).unwrap();
                }
                4..=12 => {
                    let c = sample.col(text_cols[column - 4]);
                    let values: Vec<ByteArray> =
                        group.iter().filter(|r| !null(&r[c])).map(|r| ByteArray::from(r[c].as_str())).collect();
                    let defs: Vec<i16> = group.iter().map(|r| if null(&r[c]) { 0 } else { 1 }).collect();
                    col.typed::<ByteArrayType>().write_batch(&values, Some(&defs), None).unwrap();
                }
                // Tags.key_value.key (13) and .value (14): definition 0 = no map, 1 = empty map, 2 = an entry
                // (3 for a present value); repetition 0 starts a row's map, 1 continues it.
                13 | 14 => {
                    let c = sample.col("Tags");
                    let (mut values, mut defs, mut reps) = (Vec::new(), Vec::new(), Vec::new());
                    for r in group {
                        if null(&r[c]) {
                            defs.push(0);
                            reps.push(0);
                            continue;
                        }
                        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&r[c]).unwrap();
                        if map.is_empty() {
                            defs.push(1);
                            reps.push(0);
                        }
                        for (n, (k, v)) in map.iter().enumerate() {
                            reps.push(if n == 0 { 0 } else { 1 });
                            if column == 13 {
                                values.push(ByteArray::from(k.as_str()));
                                defs.push(2);
                            } else {
                                values.push(ByteArray::from(v.as_str().unwrap()));
                                defs.push(3);
                            }
                        }
                    }
                    col.typed::<ByteArrayType>().write_batch(&values, Some(&defs), Some(&reps)).unwrap();
                }
                _ => unreachable!(),
            }
            col.close().unwrap();
            column += 1;
        }
        rg.close().unwrap();
    }
    writer.close().unwrap();
}

// ---------------------------------------------------------------------------------------------------------
// Set-up.

async fn local_context() -> AwsContext {
    common::aws_test_env();
    AwsContext::new(&AwsSettings::default()).await
}

async fn load(store: &Store, ctx: &AwsContext, sources: &[&str], skip_malformed: bool) -> LoadReport {
    let sources: Vec<BillingSource> = sources.iter().map(|s| BillingSource::parse(s).unwrap()).collect();
    load_billing(
        store,
        ctx,
        &ctx.accounts[0],
        "us-east-1",
        &sources,
        &ReadOptions { skip_malformed, ..ReadOptions::default() },
    )
    .await
}

fn sqlite_url(dir: &Path, name: &str) -> String {
    format!("sqlite://{}", dir.join(name).display())
}

// ---------------------------------------------------------------------------------------------------------
// The store suite: totals, idempotence, replacement, atomic failure, skipping.

async fn suite(url: &str) {
    let sample = Sample::load();
    let ctx = local_context().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(url, 2).await.unwrap();

    // The sample where it is.
    let report = load(&store, &ctx, &[SAMPLE], false).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!((report.loaded(), report.rows_read(), report.rows_skipped()), (1, 1000, 0));
    assert_totals(&store, &sample, &[], 1).await;
    let providers = store_totals(&store, BillingGroup::Provider).await;
    assert_eq!(providers.keys().map(|k| k.0.as_str()).collect::<Vec<_>>(), ["AWS", "Microsoft", "Oracle"]);
    let files = store.billing_files().await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!((files[0].schema.as_str(), files[0].format.as_str(), files[0].rows_read), ("focus", "csv", 1000));
    assert!(files[0].uri.ends_with("focus/focus_sample_1000.csv") && Path::new(&files[0].uri).is_absolute());
    assert!(files[0].cost_rows > 0 && files[0].cost_rows < 1000, "rows roll up per day: {}", files[0].cost_rows);

    // Per-resource daily rows with tags parsed.
    let days = store.billing_daily_costs("2024-09-01".parse().unwrap(), "2024-09-30".parse().unwrap()).await.unwrap();
    assert_eq!(days.len() as i64, files[0].cost_rows);
    let tagged = days.iter().find(|c| c.tags.get("business_unit").map(String::as_str) == Some("ViennaAI")).unwrap();
    assert_eq!(tagged.tags.get("application").map(String::as_str), Some("BrightLensMatrix"));
    assert!(days.iter().any(|c| c.resource_id.is_none()) && days.iter().any(|c| c.region.is_none()));

    // Loading the same file again reads nothing and changes nothing.
    let again = load(&store, &ctx, &[SAMPLE], false).await;
    assert_eq!((again.unchanged(), again.loaded(), again.rows_read()), (1, 0, 0));
    assert_eq!(store.billing_files().await.unwrap(), files);
    assert_totals(&store, &sample, &[], 1).await;

    // A copy in a folder of its own: a second file, so totals double.
    let copy = dir.path().join("exports/2024-09/focus.csv");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(sample_path(), &copy).unwrap();
    std::fs::write(dir.path().join("exports/2024-09/manifest.json"), "{}").unwrap();
    let folder = dir.path().join("exports").display().to_string();
    let report = load(&store, &ctx, &[SAMPLE, &folder], false).await;
    assert_eq!((report.unchanged(), report.loaded()), (1, 1), "{report:?}");
    assert_totals(&store, &sample, &[], 2).await;

    // The copy changes, with a malformed amount at line 501 (record 499): the load fails, naming the file,
    // the line and the column, and the earlier version of the file stays whole.
    let before = store.billing_files().await.unwrap();
    let bad_record = 499;
    let c = sample.col("BilledCost");
    let text = std::fs::read_to_string(sample_path()).unwrap();
    let original = &sample.records[bad_record][c];
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let line = &mut lines[bad_record + 1];
    assert!(line.contains(original.as_str()));
    *line = line.replacen(original.as_str(), "12.3.4", 1);
    std::fs::write(&copy, lines.join("\n") + "\n").unwrap();
    let report = load(&store, &ctx, &[&folder], false).await;
    let FileStatus::Failed { kind, error } = &report.files[0].status else { panic!("{report:?}") };
    let copy_uri = std::fs::canonicalize(&copy).unwrap().display().to_string();
    assert_eq!(*kind, "malformed_row");
    assert_eq!(error, &format!("{copy_uri}: line 501, column BilledCost: invalid amount \"12.3.4\""));
    assert_eq!(store.billing_files().await.unwrap(), before);
    assert_totals(&store, &sample, &[], 2).await;

    // With skipping allowed, the file loads without the bad row, which is counted and named; its earlier
    // rows are replaced, not added to.
    let report = load(&store, &ctx, &[&folder], true).await;
    let FileStatus::Loaded { rows_read, rows_skipped, skipped_examples, .. } = &report.files[0].status else {
        panic!("{report:?}")
    };
    assert_eq!((*rows_read, *rows_skipped), (1000, 1));
    assert_eq!(
        skipped_examples[0].to_string(),
        format!("{copy_uri}: line 501, column BilledCost: invalid amount \"12.3.4\"")
    );
    let stored = store.billing_file(&copy_uri).await.unwrap().unwrap();
    assert_eq!((stored.rows_read, stored.rows_skipped), (1000, 1));
    // Totals: the sample whole, plus the copy without record 499.
    for group in [BillingGroup::Service, BillingGroup::Account, BillingGroup::Day] {
        let mut expected = sample.totals(group, &[]);
        for (k, v) in sample.totals(group, &[bad_record]) {
            let e = expected.get_mut(&k).unwrap();
            for (a, b) in e.iter_mut().zip(v) {
                *a = (*a + b).normalize();
            }
        }
        assert_eq!(store_totals(&store, group).await, expected, "totals by {group:?}");
    }

    // The copy goes back to the sample: its rows are replaced once more, and totals are twice the sample.
    std::fs::copy(sample_path(), &copy).unwrap();
    let report = load(&store, &ctx, &[&folder], false).await;
    assert_eq!(report.loaded(), 1, "{report:?}");
    assert_totals(&store, &sample, &[], 2).await;
    assert_eq!(store.billing_files().await.unwrap().len(), 2);

    // A source with no billing file is reported, not taken for an empty month.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let report = load(&store, &ctx, &[&empty.display().to_string(), &format!("{folder}/*.parquet")], false).await;
    assert_eq!(report.source_failures.iter().map(|f| f.kind).collect::<Vec<_>>(), ["no_match", "no_match"]);
    store.close().await;
}

#[tokio::test]
async fn sqlite_billing_files() {
    let dir = tempfile::tempdir().unwrap();
    suite(&sqlite_url(dir.path(), "cw.db")).await;
}

#[tokio::test]
async fn postgres_billing_files() {
    let Some(db) = common::pg::TempDatabase::create("billing").await else { return };
    suite(&db.url).await;
    db.drop().await;
}

// ---------------------------------------------------------------------------------------------------------
// Encodings: gzip and Parquet give the same daily costs as the CSV.

#[tokio::test]
async fn gzip_and_parquet_give_identical_costs() {
    let sample = Sample::load();
    let ctx = local_context().await;
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("focus.csv.gz");
    write_gzip(&sample_path(), &gz);
    let pq = dir.path().join("focus.parquet");
    write_parquet(&sample, &pq, 300, &[]);

    let mut loaded = Vec::new();
    for (name, source) in [("csv", sample_path()), ("gz", gz), ("parquet", pq)] {
        let store = Store::connect(&sqlite_url(dir.path(), &format!("{name}.db")), 1).await.unwrap();
        let report = load(&store, &ctx, &[&source.display().to_string()], false).await;
        assert_eq!((report.loaded(), report.rows_read()), (1, 1000), "{name}: {report:?}");
        assert_totals(&store, &sample, &[], 1).await;
        let costs =
            store.billing_daily_costs("2024-01-01".parse().unwrap(), "2024-12-31".parse().unwrap()).await.unwrap();
        loaded.push((name, costs));
    }
    let (_, csv) = &loaded[0];
    for (name, costs) in &loaded[1..] {
        assert_eq!(costs.len(), csv.len(), "{name}");
        for (a, b) in csv.iter().zip(costs) {
            assert_eq!(a, b, "{name}");
        }
    }
}

#[tokio::test]
async fn malformed_parquet_row_names_its_row_group_and_row() {
    let sample = Sample::load();
    let ctx = local_context().await;
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("bad.parquet");
    // Record 650 is row 50 of row group 2 (300 rows per group).
    write_parquet(&sample, &pq, 300, &[650]);
    let store = Store::connect(&sqlite_url(dir.path(), "cw.db"), 1).await.unwrap();
    let source = pq.display().to_string();
    let report = load(&store, &ctx, &[&source], false).await;
    let FileStatus::Failed { kind, error } = &report.files[0].status else { panic!("{report:?}") };
    let uri = std::fs::canonicalize(&pq).unwrap().display().to_string();
    assert_eq!(
        (*kind, error.as_str()),
        ("malformed_row", format!("{uri}: row group 2, row 50, column BilledCost: missing amount").as_str())
    );
    assert!(store.billing_files().await.unwrap().is_empty());
    assert!(store_totals(&store, BillingGroup::Day).await.is_empty());

    let report = load(&store, &ctx, &[&source], true).await;
    assert_eq!((report.loaded(), report.rows_read(), report.rows_skipped()), (1, 1000, 1), "{report:?}");
    assert_totals(&store, &sample, &[650], 1).await;
}

// ---------------------------------------------------------------------------------------------------------
// S3 through the moto test-bed.

/// Puts local files into a bucket with boto3 from the test-bed's virtualenv.
fn s3_put(endpoint: &str, bucket: &str, objects: &[(&str, &Path)]) {
    let mut script = format!(
        "import boto3\ns3 = boto3.client('s3', endpoint_url='{endpoint}', region_name='us-east-1', \
         aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         if '{bucket}' not in [b['Name'] for b in s3.list_buckets()['Buckets']]:\n    s3.create_bucket(Bucket='{bucket}')\n"
    );
    for (key, path) in objects {
        script.push_str(&format!("s3.upload_file('{}', '{bucket}', '{key}')\n", path.display()));
    }
    let python = common::repo_root().join(".venv/bin/python");
    let status = Command::new(python).arg("-c").arg(&script).status().expect("run the test-bed's python");
    assert!(status.success(), "uploading to moto failed");
}

#[tokio::test]
async fn s3_prefix_through_moto() {
    common::aws_test_env();
    let sample = Sample::load();
    let moto = common::Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("focus.csv.gz");
    write_gzip(&sample_path(), &gz);
    let pq = dir.path().join("focus.parquet");
    write_parquet(&sample, &pq, 400, &[]);
    let manifest = dir.path().join("manifest.json");
    std::fs::write(&manifest, "{}").unwrap();
    s3_put(
        &moto.endpoint(),
        "billing",
        &[
            ("exports/focus/2024-09/part-1.csv", &sample_path()),
            ("exports/focus/2024-09/part-2.csv.gz", &gz),
            ("exports/focus/2024-09/part-3.parquet", &pq),
            ("exports/focus/2024-09/manifest.json", &manifest),
            ("elsewhere/other.csv", &sample_path()),
        ],
    );

    let settings = AwsSettings { endpoint_url: Some(moto.endpoint()), ..AwsSettings::default() };
    let ctx = AwsContext::new(&settings).await;
    let store = Store::connect(&sqlite_url(dir.path(), "cw.db"), 2).await.unwrap();
    let source = "s3://billing/exports/focus/";
    let report = load(&store, &ctx, &[source], false).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!((report.loaded(), report.rows_read()), (3, 3000), "{report:?}");
    assert_eq!(
        report.files.iter().map(|f| f.uri.as_str()).collect::<Vec<_>>(),
        [
            "s3://billing/exports/focus/2024-09/part-1.csv",
            "s3://billing/exports/focus/2024-09/part-2.csv.gz",
            "s3://billing/exports/focus/2024-09/part-3.parquet"
        ]
    );
    assert_totals(&store, &sample, &[], 3).await;
    let files = store.billing_files().await.unwrap();
    assert!(files.iter().all(|f| f.fingerprint.starts_with("etag:")), "{files:?}");

    // Unchanged ETags: nothing is downloaded again.
    let calls_before = ctx.stats.snapshot();
    let again = load(&store, &ctx, &[source], false).await;
    assert_eq!((again.unchanged(), again.loaded()), (3, 0));
    let calls_after = ctx.stats.snapshot();
    let get_objects = |s: &BTreeMap<collector::ApiCallKey, u64>| {
        s.iter().filter(|(k, _)| k.operation == "GetObject").map(|(_, n)| *n).sum::<u64>()
    };
    assert_eq!(get_objects(&calls_after), get_objects(&calls_before));
    assert_eq!(store.billing_files().await.unwrap(), files);

    // One object replaced by a malformed version: that file fails, the others and its old rows stay.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, format!("{}\n{}\n", sample.header.join(","), "oops")).unwrap();
    s3_put(&moto.endpoint(), "billing", &[("exports/focus/2024-09/part-1.csv", &bad)]);
    let report = load(&store, &ctx, &[source], false).await;
    assert_eq!((report.unchanged(), report.failed()), (2, 1), "{report:?}");
    let FileStatus::Failed { error, .. } = &report.files[0].status else { panic!("{report:?}") };
    assert!(error.starts_with("s3://billing/exports/focus/2024-09/part-1.csv: line 2"), "{error}");
    assert_totals(&store, &sample, &[], 3).await;
}
