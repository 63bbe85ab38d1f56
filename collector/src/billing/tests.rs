//! Reader tests on small inline files: schema detection, the roll-up key, amounts, timestamps, tags, CUR
//! mapping, and malformed rows with their locations.

use std::collections::BTreeMap;
use std::io::Write;
use std::str::FromStr;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::schema::{parse_decimal, parse_tags, parse_utc_day};
use super::*;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn read(text: &str, skip_malformed: bool) -> Result<FileCosts, BillingError> {
    read_csv(text.as_bytes(), "mem.csv", false, &ReadOptions { skip_malformed, ..ReadOptions::default() })
}

const FOCUS_HEADER: &str = "BilledCost,EffectiveCost,ListCost,ChargePeriodStart,ProviderName,BillingAccountId,\
SubAccountId,ServiceName,ResourceId,RegionId,ChargeCategory,BillingCurrency,Tags";

fn focus(rows: &[&str]) -> String {
    let mut s = format!("{FOCUS_HEADER}\n");
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s
}

#[test]
fn sources_parse() {
    let check =
        |text: &str, expected: BillingSource| assert_eq!(BillingSource::parse(text).unwrap(), expected, "{text}");
    check("s3://bucket/exports/focus/", BillingSource::S3 { bucket: "bucket".into(), prefix: "exports/focus/".into() });
    check("s3://bucket/", BillingSource::S3 { bucket: "bucket".into(), prefix: "".into() });
    check("exports/**/*.csv.gz", BillingSource::Glob("exports/**/*.csv.gz".into()));
    check("exports/2024-09.csv", BillingSource::Path("exports/2024-09.csv".into()));
    for bad in ["", "s3://bucket", "s3:///prefix", "https://example.com/x.csv", "exports/[.csv"] {
        assert!(matches!(BillingSource::parse(bad), Err(BillingError::InvalidSource { .. })), "{bad:?}");
    }
    assert_eq!(BillingSource::parse("s3://b/p/").unwrap().to_string(), "s3://b/p/");
}

#[test]
fn formats_from_names() {
    let check = |name: &str, f: Option<FileFormat>| assert_eq!(FileFormat::from_name(name), f, "{name}");
    check("a.csv", Some(FileFormat::Csv));
    check("A.CSV.GZ", Some(FileFormat::CsvGz));
    check("part-00001.snappy.parquet", Some(FileFormat::Parquet));
    check("manifest.json", None);
    check("a.csv.zip", None);
}

#[test]
fn timestamps_to_utc_days() {
    let check = |text: &str, expected: Option<&str>| assert_eq!(parse_utc_day(text), expected.map(day), "{text}");
    check("2024-09-18 22:00:00", Some("2024-09-18"));
    check("2024-09-18T23:00:00Z", Some("2024-09-18"));
    check("2024-09-18T23:00:00.000Z", Some("2024-09-18"));
    check("2024-09-18T22:00:00-05:00", Some("2024-09-19"));
    check("2024-09-18T01:00:00+02:00", Some("2024-09-17"));
    check("2024-09-18T23:59:59.999", Some("2024-09-18"));
    check("2024-09-18", Some("2024-09-18"));
    check("2024-09-31 00:00:00", None);
    check("yesterday", None);
}

#[test]
fn amounts_are_exact() {
    assert_eq!(parse_decimal("0.00000080000").unwrap(), d("0.0000008"));
    assert_eq!(parse_decimal("-0.00000000603").unwrap(), d("-0.00000000603"));
    assert_eq!(parse_decimal("1.5E-7").unwrap(), d("0.00000015"));
    assert_eq!(parse_decimal("12").unwrap(), d("12"));
    assert!(parse_decimal("12,5").is_err());
    assert!(parse_decimal("abc").is_err());
    // A sum of many small amounts stays exact where f64 drifts.
    let mut sum = Decimal::ZERO;
    for _ in 0..10 {
        sum += parse_decimal("0.1").unwrap();
    }
    assert_eq!(sum, d("1"));
}

#[test]
fn tags_parse() {
    let tags = parse_tags(r#"{"team": "web", "count": 3, "flag": true, "none": null, " org": "x"}"#).unwrap();
    let expected: BTreeMap<String, String> =
        [("team", "web"), ("count", "3"), ("flag", "true"), ("none", ""), (" org", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(tags, expected);
    assert!(parse_tags("NULL").unwrap().is_empty());
    assert!(parse_tags("").unwrap().is_empty());
    assert!(parse_tags("[1, 2]").is_err());
    assert!(parse_tags("{\"a\":").is_err());
}

#[test]
fn focus_rows_roll_up_per_day_and_key() {
    let text = focus(&[
        r#"1.10,1.00,1.20,2024-09-01 00:00:00,AWS,B1,A1,Amazon EC2,i-1,us-east-1,Usage,USD,"{""team"": ""web""}""#,
        r#"2.20,2.00,2.40,2024-09-01 23:00:00,AWS,B1,A1,Amazon EC2,i-1,us-east-1,Usage,USD,"{""team"":""web""}""#,
        // Next day: another entry.
        r#"0.5,0.5,0.5,2024-09-02 00:00:00,AWS,B1,A1,Amazon EC2,i-1,us-east-1,Usage,USD,"{""team"": ""web""}""#,
        // Same day and resource, other tags: kept apart.
        r#"0.25,0.25,0.25,2024-09-01 05:00:00,AWS,B1,A1,Amazon EC2,i-1,us-east-1,Usage,USD,"{""team"": ""data""}""#,
        // No resource, no region, no tags.
        r#"-0.01,-0.01,0,2024-09-01 00:00:00,AWS,B1,A1,Tax,NULL,NULL,Tax,USD,NULL"#,
        r#"3,3,3,2024-09-01 00:00:00,Microsoft,B9,S9,Virtual Machines,vm-1,eastus,Usage,USD,"#,
    ]);
    let out = read(&text, false).unwrap();
    assert_eq!((out.schema, out.rows_read, out.rows_skipped), (Schema::Focus, 6, 0));
    let costs = out.to_vec();
    let flat: Vec<_> = costs
        .iter()
        .map(|c| {
            (
                c.day.to_string(),
                c.provider.as_str(),
                c.service_name.as_str(),
                c.resource_id.as_deref(),
                c.region.as_deref(),
                c.tags.get("team").map(String::as_str),
                c.billed_cost.to_string(),
                c.effective_cost.to_string(),
                c.list_cost.to_string(),
            )
        })
        .collect();
    assert_eq!(
        flat,
        [
            (
                "2024-09-01".into(),
                "AWS",
                "Amazon EC2",
                Some("i-1"),
                Some("us-east-1"),
                Some("data"),
                "0.25".into(),
                "0.25".into(),
                "0.25".into()
            ),
            (
                "2024-09-01".into(),
                "AWS",
                "Amazon EC2",
                Some("i-1"),
                Some("us-east-1"),
                Some("web"),
                "3.3".into(),
                "3".into(),
                "3.6".into()
            ),
            ("2024-09-01".into(), "AWS", "Tax", None, None, None, "-0.01".into(), "-0.01".into(), "0".into()),
            (
                "2024-09-01".into(),
                "Microsoft",
                "Virtual Machines",
                Some("vm-1"),
                Some("eastus"),
                None,
                "3".into(),
                "3".into(),
                "3".into()
            ),
            (
                "2024-09-02".into(),
                "AWS",
                "Amazon EC2",
                Some("i-1"),
                Some("us-east-1"),
                Some("web"),
                "0.5".into(),
                "0.5".into(),
                "0.5".into()
            ),
        ]
    );
    assert_eq!(costs[2].charge_category, "Tax");
    assert_eq!((costs[0].billing_account_id.as_str(), costs[0].sub_account_id.as_str()), ("B1", "A1"));
}

#[test]
fn header_decides_the_schema() {
    let err = read("a,b,c\n1,2,3\n", false).unwrap_err();
    assert!(matches!(&err, BillingError::UnknownSchema { uri, .. } if uri == "mem.csv"), "{err}");
    let err = read("BilledCost,ChargePeriodStart,ServiceName\n1,2024-09-01,x\n", false).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("EffectiveCost") && text.contains("SubAccountId"), "{text}");
    assert!(matches!(read("", false), Err(BillingError::UnknownSchema { .. })));
    // A header alone is an empty month, not an error.
    let out = read(&focus(&[]), false).unwrap();
    assert_eq!((out.rows_read, out.cost_rows()), (0, 0));
    // Columns are matched whatever their order and case, and a byte-order mark is ignored.
    let text = "\u{feff}billingcurrency,chargeperiodstart,billedcost,effectivecost,listcost,providername,\
                billingaccountid,subaccountid,servicename,chargecategory\nEUR,2024-09-01T10:00:00Z,1,1,1,AWS,B,A,S,Usage\n";
    let out = read(text, false).unwrap();
    let c = out.costs().next().unwrap();
    assert_eq!((c.currency, c.resource_id), ("EUR", None));
}

#[test]
fn a_malformed_row_fails_the_file_with_its_line_and_column() {
    let good = r#"1,1,1,2024-09-01 00:00:00,AWS,B1,A1,S,r,us-east-1,Usage,USD,NULL"#;
    // Line 3 spans two lines (a quoted newline), so the bad row starts on line 5.
    let multi = "1,1,1,2024-09-01 00:00:00,AWS,B1,A1,\"Service\nwith newline\",r,us-east-1,Usage,USD,NULL";
    let text = focus(&[good, multi, "1,1,oops,2024-09-01 00:00:00,AWS,B1,A1,S,r,us-east-1,Usage,USD,NULL", good]);
    let err = read(&text, false).unwrap_err();
    let BillingError::Row(row) = &err else { panic!("{err}") };
    assert_eq!((row.location.clone(), row.column.as_deref()), (Location::Line(5), Some("ListCost")));
    assert_eq!(err.to_string(), "mem.csv: line 5, column ListCost: invalid amount \"oops\"");

    let check = |row: &str, column: Option<&str>, message: &str| {
        let err = read(&focus(&[good, row]), false).unwrap_err();
        let BillingError::Row(e) = &err else { panic!("{err}") };
        assert_eq!((e.location.clone(), e.column.as_deref()), (Location::Line(3), column), "{row}");
        assert!(e.problem.to_string().contains(message), "{row}: {}", e.problem);
    };
    check(
        "1,1,1,2024-13-01 00:00:00,AWS,B1,A1,S,r,us-east-1,Usage,USD,NULL",
        Some("ChargePeriodStart"),
        "invalid timestamp",
    );
    check("1,1,1,NULL,AWS,B1,A1,S,r,us-east-1,Usage,USD,NULL", Some("ChargePeriodStart"), "missing timestamp");
    check("NULL,1,1,2024-09-01 00:00:00,AWS,B1,A1,S,r,us-east-1,Usage,USD,NULL", Some("BilledCost"), "missing amount");
    check(
        "1,1,1,2024-09-01 00:00:00,AWS,B1,A1,S,r,us-east-1,Usage,NULL,NULL",
        Some("BillingCurrency"),
        "missing currency",
    );
    check("1,1,1,2024-09-01 00:00:00,AWS,B1,A1,S,r,us-east-1,Usage,USD,{not json", Some("Tags"), "JSON object");
    check("1,1,1,2024-09-01 00:00:00,AWS,B1,A1,S,r,us-east-1,Usage", None, "11 fields where the header has 13");
}

#[test]
fn malformed_rows_can_be_skipped_and_counted() {
    let good = r#"1.5,1,1,2024-09-01 00:00:00,AWS,B1,A1,S,r,us-east-1,Usage,USD,NULL"#;
    let bad_rows: Vec<String> =
        (0..7).map(|i| format!("x{i},1,1,2024-09-01 00:00:00,AWS,B1,A1,S,r,us-east-1,Usage,USD,NULL")).collect();
    let mut rows = vec![good, "too,few"];
    rows.extend(bad_rows.iter().map(String::as_str));
    rows.push(good);
    let out = read(&focus(&rows), true).unwrap();
    assert_eq!((out.rows_read, out.rows_skipped), (10, 8));
    assert_eq!(out.cost_rows(), 1);
    assert_eq!(out.costs().next().unwrap().billed_cost, d("3"));
    assert_eq!(out.skipped_examples.len(), SKIPPED_EXAMPLES);
    assert_eq!(out.skipped_examples[0].location, Location::Line(3));
    assert_eq!(out.skipped_examples[1].column.as_deref(), Some("BilledCost"));
}

#[test]
fn amounts_beyond_one_quadrillion_are_malformed() {
    // Two rows of 5e28 for different services: each alone fits a decimal, their sum in any window does not.
    let huge = [
        "5e28,5e28,5e28,2024-09-01 00:00:00,AWS,B1,A1,Amazon EC2,i-1,us-east-1,Usage,USD,NULL",
        "5e28,5e28,5e28,2024-09-01 00:00:00,AWS,B1,A1,Amazon S3,b-1,us-east-1,Usage,USD,NULL",
    ];
    let good = "2,2,2,2024-09-01 00:00:00,AWS,B1,A1,Amazon EC2,i-1,us-east-1,Usage,USD,NULL";
    let mut rows = huge.to_vec();
    rows.push(good);
    let text = focus(&rows);

    let err = read(&text, false).unwrap_err();
    assert_eq!(err.as_kind(), "malformed_row");
    assert_eq!(
        err.to_string(),
        "mem.csv: line 2, column BilledCost: amount 50000000000000000000000000000 is outside the accepted range \
         of ±1000000000000000"
    );

    let out = read(&text, true).unwrap();
    assert_eq!((out.rows_read, out.rows_skipped, out.cost_rows()), (3, 2, 1));
    assert_eq!(out.costs().next().unwrap().billed_cost, d("2"));
    let skipped: Vec<_> = out.skipped_examples.iter().map(|e| (e.location.clone(), e.column.as_deref())).collect();
    assert_eq!(skipped, [(Location::Line(2), Some("BilledCost")), (Location::Line(3), Some("BilledCost"))]);

    // The bound is inclusive, for every amount column and for negative amounts too.
    let check = |row: &str, column: Option<&str>| {
        let result = read(&focus(&[row]), false);
        match column {
            None => assert!(result.is_ok(), "{row}: {:?}", result.err()),
            Some(c) => {
                let err = result.unwrap_err();
                let BillingError::Row(e) = &err else { panic!("{err}") };
                assert_eq!(e.column.as_deref(), Some(c), "{row}");
            }
        }
    };
    check("1e15,-1e15,1e15,2024-09-01 00:00:00,AWS,B1,A1,S,r,us-east-1,Usage,USD,NULL", None);
    check("1,-1000000000000000.5,1,2024-09-01 00:00:00,AWS,B1,A1,S,r,us-east-1,Usage,USD,NULL", Some("EffectiveCost"));
    check("1,1,2e15,2024-09-01 00:00:00,AWS,B1,A1,S,r,us-east-1,Usage,USD,NULL", Some("ListCost"));
}

#[test]
fn gzip_reads_like_plain() {
    let text = focus(&[
        r#"1.10,1.00,1.20,2024-09-01 00:00:00,AWS,B1,A1,Amazon EC2,i-1,us-east-1,Usage,USD,NULL"#,
        r#"2.20,2.00,2.40,2024-09-02 00:00:00,AWS,B1,A1,Amazon EC2,i-1,us-east-1,Usage,USD,NULL"#,
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    let bytes = gz.finish().unwrap();
    let opts = ReadOptions::default();
    let plain = read_csv(text.as_bytes(), "a.csv", false, &opts).unwrap();
    let zipped = read_csv(bytes.as_slice(), "a.csv.gz", true, &opts).unwrap();
    assert_eq!((plain.rows_read, plain.to_vec()), (zipped.rows_read, zipped.to_vec()));
    // A truncated archive is an error, never a shorter month.
    let err = read_csv(
        &bytes[..bytes.len() - 12],
        "a.csv.gz",
        true,
        &ReadOptions { skip_malformed: true, ..ReadOptions::default() },
    )
    .unwrap_err();
    assert!(matches!(err, BillingError::Read { .. }), "{err}");
}

const CUR_HEADER: &str = "bill_payer_account_id,line_item_usage_account_id,line_item_line_item_type,\
line_item_usage_start_date,line_item_product_code,line_item_resource_id,product_region_code,\
line_item_unblended_cost,line_item_currency_code,pricing_public_on_demand_cost,\
savings_plan_savings_plan_effective_cost,savings_plan_total_commitment_to_date,savings_plan_used_commitment,\
reservation_effective_cost,reservation_unused_amortized_upfront_fee_for_billing_period,\
reservation_unused_recurring_fee,reservation_reservation_a_r_n,resource_tags";

#[test]
fn cur_rows_map_onto_the_same_model() {
    let rows = [
        r#"P,U1,Usage,2024-09-01T00:00:00.000Z,AmazonEC2,i-1,us-east-1,0.50,USD,0.50,,,,,,,,"{""user_team"":""web""}""#,
        r#"P,U1,SavingsPlanCoveredUsage,2024-09-01T01:00:00.000Z,AmazonEC2,i-1,us-east-1,0.50,USD,0.50,0.30,,,,,,,"{""user_team"":""web""}""#,
        r#"P,U1,SavingsPlanNegation,2024-09-01T01:00:00.000Z,AmazonEC2,i-1,us-east-1,-0.50,USD,,,,,,,,,"{""user_team"":""web""}""#,
        r#"P,U1,SavingsPlanRecurringFee,2024-09-01T00:00:00.000Z,ComputeSavingsPlans,arn:sp,,10,USD,,,10,9.5,,,,,"#,
        r#"P,U1,DiscountedUsage,2024-09-01T00:00:00.000Z,AmazonRDS,db-1,eu-west-1,0,USD,0.20,,,,0.12,,,,"#,
        r#"P,U1,RIFee,2024-09-01T00:00:00.000Z,AmazonRDS,arn:ri,eu-west-1,3,USD,,,,,,1.5,0.25,arn:ri,"#,
        r#"P,U1,Fee,2024-09-01T00:00:00.000Z,AmazonRDS,,eu-west-1,100,USD,,,,,,,,arn:ri,"#,
        r#"P,U1,Tax,2024-09-01T00:00:00.000Z,AmazonEC2,,,0.07,USD,,,,,,,,,"#,
        r#"P,U1,EdpDiscount,2024-09-01T00:00:00.000Z,AmazonEC2,i-1,us-east-1,-0.05,USD,,,,,,,,,"{""user_team"":""web""}""#,
    ];
    let text = format!("{CUR_HEADER}\n{}\n", rows.join("\n"));
    let out = read(&text, false).unwrap();
    assert_eq!((out.schema, out.rows_read), (Schema::Cur, 9));
    let costs = out.to_vec();
    let find = |service: &str, category: &str| {
        costs
            .iter()
            .find(|c| c.service_name == service && c.charge_category == category)
            .unwrap_or_else(|| panic!("{service} {category}"))
    };
    let ec2 = find("AmazonEC2", "Usage");
    assert_eq!((ec2.billed_cost, ec2.effective_cost, ec2.list_cost), (d("1.00"), d("0.80"), d("1.00")));
    assert_eq!(
        (ec2.provider.as_str(), ec2.billing_account_id.as_str(), ec2.sub_account_id.as_str()),
        ("AWS", "P", "U1")
    );
    assert_eq!(ec2.tags.get("user_team").map(String::as_str), Some("web"));
    let negation = find("AmazonEC2", "Adjustment");
    // The negation (billed -0.50, effective 0) and the EDP discount (-0.05 both) share the key.
    assert_eq!((negation.billed_cost, negation.effective_cost), (d("-0.55"), d("-0.05")));
    let sp_fee = find("ComputeSavingsPlans", "Purchase");
    assert_eq!((sp_fee.billed_cost, sp_fee.effective_cost), (d("10"), d("0.5")));
    let rds_usage = find("AmazonRDS", "Usage");
    assert_eq!((rds_usage.billed_cost, rds_usage.effective_cost, rds_usage.list_cost), (d("0"), d("0.12"), d("0.20")));
    let rds_fees: Vec<_> =
        costs.iter().filter(|c| c.service_name == "AmazonRDS" && c.charge_category == "Purchase").collect();
    let fee_effective: Decimal = rds_fees.iter().map(|c| c.effective_cost).sum();
    let fee_billed: Decimal = rds_fees.iter().map(|c| c.billed_cost).sum();
    assert_eq!((fee_billed, fee_effective), (d("103"), d("1.75")));
    let tax = find("AmazonEC2", "Tax");
    assert_eq!((tax.billed_cost, tax.list_cost, tax.resource_id.as_deref()), (d("0.07"), d("0"), None));
}

#[test]
fn cur_without_amortization_columns_keeps_unblended() {
    let text = "line_item_usage_start_date,line_item_unblended_cost,line_item_usage_account_id,line_item_product_code,\
                line_item_currency_code\n2024-09-01T00:00:00Z,1.25,U1,AmazonS3,USD\n";
    let out = read(text, false).unwrap();
    let c = out.costs().next().unwrap();
    assert_eq!((c.billed_cost, c.effective_cost, c.list_cost), (d("1.25"), d("1.25"), d("0")));
    assert_eq!((c.charge_category, c.billing_account_id), ("Usage", ""));
}

#[test]
fn a_broken_download_is_a_read_error_naming_the_call() {
    use crate::aws::{AwsError, AwsErrorKind};
    use crate::source::SourceError;

    let broke =
        SourceError::S3(AwsError::new("s3", "GetObject", AwsErrorKind::Transport, "download failed: connection reset"));
    let text = focus(&["1,1,1,2024-09-01 00:00:00,AWS,B1,A1,S,r,us-east-1,Usage,USD,NULL"]);
    let chunks = vec![Ok(text.as_bytes()[..40].to_vec()), Err(std::io::Error::other(broke.clone()))];
    let reader = crate::source::s3::reader_for_test(chunks);
    let err = read_csv(reader, "s3://b/a.csv", false, &ReadOptions::default()).unwrap_err();
    assert_eq!(err, BillingError::Read { uri: "s3://b/a.csv".into(), error: broke });
    assert_eq!(err.to_string(), "s3://b/a.csv: cannot read: GetObject: download failed: connection reset");
    assert_eq!(err.as_kind(), "read");
}

fn with_limits(limits: Limits) -> ReadOptions {
    ReadOptions { skip_malformed: true, limits }
}

fn row_of(i: usize) -> String {
    format!("1.00,1.00,1.00,2024-09-01 00:00:00,AWS,B1,A1,Amazon EC2,i-{i},us-east-1,Usage,USD,NULL")
}

#[test]
fn an_unterminated_quote_fails_its_file_with_the_line_where_it_began() {
    let limits = Limits { max_record_bytes: 4096, ..Limits::default() };
    // A short file: the record runs to the end of the file.
    let mut rows: Vec<String> = (0..3).map(row_of).collect();
    rows.push(r#"1.00,1.00,1.00,2024-09-01 00:00:00,AWS,B1,A1,"Amazon EC2,i-x,us-east-1,Usage,USD,NULL"#.into());
    rows.extend((0..200).map(row_of));
    let text = focus(&rows.iter().map(String::as_str).collect::<Vec<_>>());
    let err = read_csv(text.as_bytes(), "mem.csv", false, &with_limits(limits)).unwrap_err();
    assert_eq!(
        err,
        BillingError::Limit { uri: "mem.csv".into(), what: LimitBreach::Record { line: 5, max: 4096 } },
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "mem.csv: line 5: a record longer than 4096 bytes (an unterminated quote?); the file is not loaded"
    );
    assert_eq!(err.as_kind(), "limit");
    // A long one: reading stops soon after the bound, long before the end of the file (skip_malformed or not).
    rows.extend((0..20_000).map(row_of));
    let text = focus(&rows.iter().map(String::as_str).collect::<Vec<_>>());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    let packed = gz.finish().unwrap();
    for skip in [false, true] {
        let opts = ReadOptions { skip_malformed: skip, limits };
        let err = read_csv(&packed[..], "big.csv.gz", true, &opts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "big.csv.gz: line 5: a record longer than 4096 bytes (an unterminated quote?); the file is not loaded"
        );
    }
    // Under a bound the record fits in, the file reads: one malformed row, the one the quote swallowed.
    let roomy = ReadOptions { skip_malformed: true, limits: Limits { max_record_bytes: 8 << 20, ..limits } };
    let read = read_csv(&packed[..], "big.csv.gz", true, &roomy).unwrap();
    assert_eq!((read.rows_read, read.rows_skipped), (4, 1));
}

#[test]
fn a_file_that_decompresses_past_its_bound_fails() {
    let rows: Vec<String> = (0..20_000).map(|i| row_of(i % 10)).collect();
    let text = focus(&rows.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(text.len() > 1 << 20);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(text.as_bytes()).unwrap();
    let packed = gz.finish().unwrap();
    let limits = Limits { max_decompressed_bytes: 1 << 20, ..Limits::default() };
    let err = read_csv(&packed[..], "bomb.csv.gz", true, &with_limits(limits)).unwrap_err();
    assert_eq!(err.to_string(), "bomb.csv.gz: more than 1048576 bytes once decompressed; the file is not loaded");
    // Plain files count too; within the bound, the file reads.
    assert!(read_csv(text.as_bytes(), "plain.csv", false, &with_limits(limits)).is_err());
    let ok = read_csv(&packed[..], "bomb.csv.gz", true, &with_limits(Limits::default())).unwrap();
    assert_eq!((ok.rows_read, ok.rolled_up.len()), (20_000, 10));
}

#[test]
fn a_file_with_too_many_keys_fails() {
    let rows: Vec<String> = (0..50).map(row_of).collect();
    let text = focus(&rows.iter().map(String::as_str).collect::<Vec<_>>());
    let err = read_csv(text.as_bytes(), "keys.csv", false, &with_limits(Limits { max_keys: 20, ..Limits::default() }))
        .unwrap_err();
    assert_eq!(err.to_string(), "keys.csv: more than 20 distinct daily cost keys; the file is not loaded");
    let ok = read_csv(text.as_bytes(), "keys.csv", false, &with_limits(Limits { max_keys: 50, ..Limits::default() }));
    assert_eq!(ok.unwrap().rolled_up.len(), 50);
}

/// Fuzzing found a Parquet file on which the parquet crate panics (a run-length header longer than 10
/// bytes: `MAX_VLQ_BYTE_LEN` in release builds, a shift overflow in debug ones); reading it is a decode error
/// of that file, not a panic.
#[test]
fn a_parquet_file_the_decoder_panics_on_fails_alone() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/billing/testdata/fuzz-parquet-vlq-panic.parquet");
    let err = read_path(&path, "fuzz.parquet", FileFormat::Parquet, &ReadOptions::default()).unwrap_err();
    assert_eq!(err.as_kind(), "read");
    let text = err.to_string();
    assert!(text.starts_with("fuzz.parquet: cannot read: the Parquet decoder failed: "), "{text}");
}
