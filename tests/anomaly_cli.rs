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
