//! `cloudwarden anomaly score` end to end, through the built binary: a NAB file (from `tests/data/nab`), a
//! generated series, and malformed input, which must fail with the file and line named and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cloudwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloudwarden")).args(args).output().expect("the binary runs")
}

fn nab_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/nab/realAWSCloudwatch").join(name)
}

/// Checks that `output` has the rows of `input` in the same order with a score in [0, 1], and returns the
/// scores.
fn check_scored(input: &str, output: &str) -> Vec<f64> {
    let mut out = output.lines();
    assert_eq!(out.next(), Some("timestamp,value,anomaly_score"));
    let mut scores = Vec::new();
    for (i, (inp, out)) in input.lines().skip(1).zip(out.by_ref()).enumerate() {
        let (prefix, score) = out.rsplit_once(',').unwrap_or_else(|| panic!("output row {i}: {out:?}"));
        assert_eq!(prefix, inp, "row {i} keeps its timestamp and value");
        let score: f64 = score.parse().unwrap_or_else(|e| panic!("output row {i}: score {score:?}: {e}"));
        assert!((0.0..=1.0).contains(&score), "row {i}: score {score}");
        scores.push(score);
    }
    assert_eq!(out.next(), None, "no extra output rows");
    assert_eq!(scores.len(), input.lines().count() - 1, "one output row per input row");
    scores
}

fn score_file(input: &Path, dir: &Path) -> (String, Vec<f64>) {
    let output = dir.join("scores.csv");
    let run =
        cloudwarden(&["anomaly", "score", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()]);
    assert!(run.status.success(), "stderr: {}", String::from_utf8_lossy(&run.stderr));
    let written = std::fs::read_to_string(&output).unwrap();
    // Without --output the same bytes go to standard output.
    let stdout = cloudwarden(&["anomaly", "score", "--input", input.to_str().unwrap()]);
    assert!(stdout.status.success());
    assert_eq!(String::from_utf8(stdout.stdout).unwrap(), written, "stdout and --output agree, runs are deterministic");
    let input_text = std::fs::read_to_string(input).unwrap();
    let scores = check_scored(&input_text, &written);
    (written, scores)
}

#[test]
fn scores_a_nab_file() {
    let input = nab_file("ec2_network_in_257a54.csv");
    let dir = tempfile::tempdir().unwrap();
    let (_, scores) = score_file(&input, dir.path());
    assert_eq!(scores.len(), 4032);
    // The file's one labelled anomaly is a traffic spike at 2014-04-15 16:44 (row 1638), in the window of rows
    // 1437 to 1839: it scores high, and so does the highest score of the file.
    assert!(scores[1638] > 0.9, "labelled spike scored {}", scores[1638]);
    let top = scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap();
    assert!((1437..=1839).contains(&top), "highest score at row {top}");
}

#[test]
fn scores_a_generated_series() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("series.csv");
    let mut text = String::from("timestamp,value\n");
    for i in 0..600 {
        let value = if i == 500 { 90.0 } else { 40.0 + (i % 7) as f64 };
        text.push_str(&format!("2024-05-01T{:02}:{:02}:00Z,{value}\n", i / 60 % 24, i % 60));
    }
    text.push_str("2024-05-02T00:00:00Z,NaN\n");
    std::fs::write(&input, &text).unwrap();
    let (_, scores) = score_file(&input, dir.path());
    assert!(scores[..288].iter().all(|s| *s == 0.0), "probation scores 0");
    assert!(scores[500] > 0.9, "the spike scores {}", scores[500]);
    assert_eq!(scores[600], 0.0, "NaN scores 0");
}

#[test]
fn malformed_input_fails_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "bad_value.csv",
            "timestamp,value\n2024-05-01 00:00:00,1.5\n2024-05-01 00:05:00,oops\n",
            "line 3: value \"oops\" is not a number",
        ),
        ("no_header.csv", "2024-05-01 00:00:00,1.5\n", "line 1: expected the header `timestamp,value`"),
        ("extra_field.csv", "timestamp,value\n2024-05-01 00:00:00,1.5,7\n", "line 2: expected 2 fields"),
        ("empty.csv", "", "line 1: empty file"),
    ];
    for (name, content, message) in cases {
        let input = dir.path().join(name);
        std::fs::write(&input, content).unwrap();
        let output = dir.path().join(format!("{name}.out"));
        let run = cloudwarden(&[
            "anomaly",
            "score",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{name}: should fail");
        assert!(stderr.contains(name) && stderr.contains(message), "{name}: stderr {stderr:?}");
        assert!(!output.exists(), "{name}: no output written");
    }
    let missing = dir.path().join("missing.csv");
    let run = cloudwarden(&["anomaly", "score", "--input", missing.to_str().unwrap()]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("cannot read") && stderr.contains("missing.csv"), "{stderr:?}");
}

/// The repository's nine CloudWatch files laid out as a corpus of two categories (`ec2/` and `other/`) under
/// `dir`, with their labels rewritten to the new keys; returns the labels file.
fn two_category_corpus(dir: &Path) -> PathBuf {
    let nab = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/nab");
    let labels: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(nab.join("labels_windows.json")).unwrap()).unwrap();
    let mut rewritten = serde_json::Map::new();
    for (key, windows) in labels {
        let file = key.strip_prefix("realAWSCloudwatch/").unwrap();
        let category = if file.starts_with("ec2_") { "ec2" } else { "other" };
        std::fs::create_dir_all(dir.join(category)).unwrap();
        std::fs::copy(nab.join(&key), dir.join(category).join(file)).unwrap();
        rewritten.insert(format!("{category}/{file}"), windows);
    }
    let path = dir.join("labels.json");
    std::fs::write(&path, serde_json::to_string_pretty(&rewritten).unwrap()).unwrap();
    path
}

/// `cloudwarden anomaly evaluate` on the corpus in `dir` with `labels`, and more arguments.
fn evaluate(dir: &Path, labels: &Path, more: &[&str]) -> Output {
    let args = ["anomaly", "evaluate", "--data", dir.to_str().unwrap(), "--labels", labels.to_str().unwrap()];
    cloudwarden(&[&args[..], more].concat())
}

/// The cells of the leave-one-category-out table's row that starts with `| first |`.
fn row<'a>(report: &'a str, first: &str) -> Vec<&'a str> {
    let line = report
        .lines()
        .skip_while(|l| !l.starts_with("Leave one category out"))
        .find(|l| l.starts_with(&format!("| {first} |")))
        .unwrap_or_else(|| panic!("no row {first}: {report}"));
    line.trim_matches('|').split('|').map(str::trim).collect()
}

#[test]
fn evaluates_a_corpus_whole_per_category_and_leaving_each_category_out() {
    let dir = tempfile::tempdir().unwrap();
    let labels = two_category_corpus(dir.path());
    let run = evaluate(dir.path(), &labels, &[]);
    assert!(run.status.success(), "stderr: {}", String::from_utf8_lossy(&run.stderr));
    let report = String::from_utf8(run.stdout).unwrap();
    println!("{report}");
    assert!(report.starts_with("NAB 1.1, standard profile: 9 files, 2 categories, 14 windows, 37575 points"));
    // The whole set is the nine files the detector's own test scores (72.7 at its best threshold).
    let whole = report.lines().find(|l| l.starts_with("Whole set")).unwrap();
    assert!(whole.contains(": 72.66 at threshold"), "{whole}");

    // Each fold, recomputed from the series with the library: the held-out category scored at the threshold
    // the report says was chosen on the other one, and that threshold the other category's best.
    let corpus = cloudwarden::anomaly_cli::load_corpus(dir.path(), &labels).unwrap();
    let config = rules::anomaly::metric::detector::DetectorConfig::default();
    let scores: Vec<Vec<f64>> = corpus
        .iter()
        .map(|s| {
            let values: Vec<f64> = s.points.iter().map(|p| p.1).collect();
            rules::anomaly::metric::detector::score_series(&config, &values)
        })
        .collect();
    let scorer = rules::anomaly::metric::nab::NabScorer::default();
    let category = |c: &str| -> Vec<rules::anomaly::metric::nab::ScoredFile<'_>> {
        corpus
            .iter()
            .zip(&scores)
            .filter(|(s, _)| s.labelled.category == c)
            .map(|(s, sc)| rules::anomaly::metric::nab::ScoredFile {
                name: &s.labelled.name,
                scores: sc,
                windows: &s.labelled.windows,
            })
            .collect()
    };
    let mut pooled_raw = 0.0;
    for (held, other) in [("ec2", "other"), ("other", "ec2")] {
        let cells = row(&report, held);
        // held out | configuration | threshold | score on the others | held-out score | detected | missed | fp
        let threshold: f64 = cells[2].parse().unwrap();
        let chosen = scorer.optimize(&category(other));
        assert_eq!(threshold, chosen.threshold, "{held}: the threshold is the other category's best");
        assert_eq!(cells[3], format!("{:.2}", chosen.normalized));
        let held_out = scorer.score(&category(held), threshold);
        assert_eq!(cells[4], format!("{:.2}", held_out.normalized), "{held}");
        let detected: usize = held_out.files.iter().map(|f| f.true_positives).sum();
        assert_eq!(cells[5], detected.to_string());
        pooled_raw += held_out.raw;
    }
    let pooled = 100.0 * (pooled_raw + 14.0) / 28.0;
    assert!(report.contains(&format!("Held-out score, pooled over every file: {pooled:.2};")), "{pooled:.2}");
}

#[test]
fn evaluate_names_the_bad_file_and_place() {
    let dir = tempfile::tempdir().unwrap();
    let labels = two_category_corpus(dir.path());
    let text = std::fs::read_to_string(&labels).unwrap();
    let failing = |labels: &Path| {
        let run = evaluate(dir.path(), labels, &[]);
        assert!(!run.status.success());
        String::from_utf8_lossy(&run.stderr).into_owned()
    };
    let cases = [
        (
            "escape.json",
            text.replace("\"ec2/ec2_network_in_257a54.csv\"", "\"../ec2_network_in_257a54.csv\""),
            "a key must be `category/file.csv`",
        ),
        ("missing.json", text.replace("ec2_network_in_257a54.csv", "ec2_network_in_000000.csv"), "cannot read"),
        ("not_json.json", "{\"a/b.csv\": [[\"2014-01-01 00:00:00\"".to_string(), "line 1: not a NAB windows file"),
        ("nowhere.json", text.replacen("2014-", "1999-", 2), "covers no point"),
        ("bad_time.json", text.replacen("2014-", "yesterday ", 1), "a timestamp is not"),
    ];
    for (name, content, message) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let stderr = failing(&path);
        assert!(stderr.contains(message), "{name}: {stderr}");
        assert!(stderr.contains(name) || stderr.contains("000000"), "{name} names the file: {stderr}");
    }
    // A data file with a bad timestamp: the file and line.
    let data = dir.path().join("other/grok_asg_anomaly.csv");
    let mut lines: Vec<String> = std::fs::read_to_string(&data).unwrap().lines().map(String::from).collect();
    lines[5] = "05/01/2014 10:00,1.0".to_string();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let stderr = failing(&labels);
    assert!(stderr.contains("grok_asg_anomaly.csv: line 6: timestamp \"05/01/2014 10:00\""), "{stderr}");
}

#[test]
fn evaluates_the_candidate_detector_with_the_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let labels = two_category_corpus(dir.path());
    let run = evaluate(dir.path(), &labels, &["--detector", "novelty"]);
    assert!(run.status.success(), "stderr: {}", String::from_utf8_lossy(&run.stderr));
    let report = String::from_utf8(run.stdout).unwrap();
    // The whole-set figure, recomputed from the series and their timestamps with the library.
    let corpus = cloudwarden::anomaly_cli::load_corpus(dir.path(), &labels).unwrap();
    let config = rules::anomaly::metric::novelty::NoveltyConfig::default();
    let scores: Vec<Vec<f64>> =
        corpus.iter().map(|s| rules::anomaly::metric::novelty::score_series(&config, &s.points)).collect();
    let files: Vec<_> = corpus
        .iter()
        .zip(&scores)
        .map(|(s, sc)| rules::anomaly::metric::nab::ScoredFile {
            name: &s.labelled.name,
            scores: sc,
            windows: &s.labelled.windows,
        })
        .collect();
    let best = rules::anomaly::metric::nab::NabScorer::default().optimize(&files);
    let expected =
        format!("Whole set (configuration `novelty` and threshold chosen on every file): {:.2}", best.normalized);
    assert!(report.contains(&expected), "{expected}\n{report}");
    let unknown = evaluate(dir.path(), &labels, &["--detector", "oracle"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("invalid value 'oracle'"));
}
