//! `cloudwarden anomaly score` and `cloudwarden anomaly evaluate`: the I/O around the metric anomaly detector
//! and the NAB evaluation of the `rules` crate.
//!
//! Reads a `timestamp,value` CSV file (NAB's format: a header line, then one point per line, in time order),
//! scores every point with [`rules::anomaly::metric::detector::Detector`] and writes
//! `timestamp,value,anomaly_score`: the same rows in the same order, timestamp and value kept as their original
//! text. The output is deterministic. Values may be `NaN` or `inf` (they score 0, see the detector); anything
//! else that is not a number is an error naming the file and line.
//!
//! The format is plain: two comma-separated fields per line, optionally in double quotes, no commas inside a
//! field. Blank lines are skipped; a UTF-8 byte-order mark is allowed.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use rules::anomaly::metric::detector::{score_series, Detector, DetectorConfig};
use rules::anomaly::metric::evaluate::{evaluate, Candidate, Evaluation, LabelledSeries};
use rules::anomaly::metric::nab::{windows_by_time, NabScorer};
use rules::anomaly::metric::novelty;

/// What can go wrong reading, scoring or writing a series file.
#[derive(Debug, thiserror::Error)]
pub enum AnomalyCliError {
    /// The input file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The input file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The input is not a `timestamp,value` CSV.
    #[error("{}: line {line}: {message}", path.display())]
    Parse {
        /// The input file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// The labels file is not NAB's windows JSON, or does not fit the data.
    #[error("{}: {message}", path.display())]
    Labels {
        /// The labels file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The output cannot be written.
    #[error("cannot write {target}: {source}")]
    Write {
        /// The output file, or `standard output`.
        target: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// One point of a series file, with the original text of its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The timestamp as written in the file (not interpreted).
    pub timestamp: String,
    /// The value as written in the file.
    pub value_text: String,
    /// The value as a number.
    pub value: f64,
}

fn unquote(field: &str) -> &str {
    let f = field.trim();
    f.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(f)
}

/// Parses the text of a `timestamp,value` file; `path` only names the file in errors.
pub fn parse_series(path: &Path, text: &str) -> Result<Vec<Row>, AnomalyCliError> {
    let err = |line: usize, message: String| AnomalyCliError::Parse { path: path.to_path_buf(), line, message };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.trim().is_empty());
    let Some((header_line, header)) = lines.next() else {
        return Err(err(1, "empty file: expected a `timestamp,value` header".to_string()));
    };
    let names: Vec<String> = header.split(',').map(|f| unquote(f).to_ascii_lowercase()).collect();
    if names != ["timestamp", "value"] {
        return Err(err(header_line, format!("expected the header `timestamp,value`, found {:?}", header.trim())));
    }
    let mut rows = Vec::new();
    for (line, content) in lines {
        let fields: Vec<&str> = content.split(',').collect();
        if fields.len() != 2 {
            return Err(err(line, format!("expected 2 fields (timestamp,value), found {}", fields.len())));
        }
        let timestamp = unquote(fields[0]);
        if timestamp.is_empty() {
            return Err(err(line, "empty timestamp".to_string()));
        }
        let value_text = unquote(fields[1]);
        let value: f64 = value_text.parse().map_err(|_| err(line, format!("value {value_text:?} is not a number")))?;
        rows.push(Row { timestamp: timestamp.to_string(), value_text: value_text.to_string(), value });
    }
    Ok(rows)
}

/// Reads and parses a `timestamp,value` file.
pub fn read_series(path: &Path) -> Result<Vec<Row>, AnomalyCliError> {
    let bytes = std::fs::read(path).map_err(|source| AnomalyCliError::Read { path: path.to_path_buf(), source })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()].iter().filter(|b| **b == b'\n').count();
        AnomalyCliError::Parse { path: path.to_path_buf(), line, message: "not valid UTF-8".to_string() }
    })?;
    parse_series(path, &text)
}

/// Scores the rows in order with a fresh detector.
pub fn score_rows(rows: &[Row], config: &DetectorConfig) -> Vec<f64> {
    let mut detector = Detector::new(config.clone());
    rows.iter().map(|r| detector.update(r.value)).collect()
}

/// The output CSV: `timestamp,value,anomaly_score`, one line per row. Scores are written in Rust's shortest
/// round-trip form, so they read back bit for bit.
pub fn render_scores(rows: &[Row], scores: &[f64]) -> String {
    let mut out = String::with_capacity(rows.len() * 40 + 32);
    out.push_str("timestamp,value,anomaly_score\n");
    for (row, score) in rows.iter().zip(scores) {
        let _ = writeln!(out, "{},{},{}", row.timestamp, row.value_text, score);
    }
    out
}

/// `cloudwarden anomaly score`: scores `input` with the default detector and writes the result to `output`,
/// or to standard output. Returns the number of rows.
pub fn run(input: &Path, output: Option<&Path>) -> Result<usize, AnomalyCliError> {
    let rows = read_series(input)?;
    let scores = score_rows(&rows, &DetectorConfig::default());
    let text = render_scores(&rows, &scores);
    match output {
        Some(path) => std::fs::write(path, text.as_bytes())
            .map_err(|source| AnomalyCliError::Write { target: path.display().to_string(), source })?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|source| AnomalyCliError::Write { target: "standard output".to_string(), source })?
        }
    }
    Ok(rows.len())
}

/// A series of a labelled corpus: its name, category and windows, and its points (seconds since the epoch,
/// value).
#[derive(Debug, Clone)]
pub struct LoadedSeries {
    pub labelled: LabelledSeries,
    pub points: Vec<(i64, f64)>,
}

/// The detectors `cloudwarden anomaly evaluate` can judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DetectorChoice {
    /// The daemon's detector: range novelty and robust deviation (`rules::anomaly::metric::detector`).
    Range,
    /// The candidate: range novelty over two weeks, context novelty and deviation, summed
    /// (`rules::anomaly::metric::novelty`).
    Novelty,
}

impl DetectorChoice {
    /// The scores of one series with the default configuration of this detector.
    pub fn score(self, points: &[(i64, f64)]) -> Vec<f64> {
        match self {
            DetectorChoice::Range => {
                let values: Vec<f64> = points.iter().map(|p| p.1).collect();
                score_series(&DetectorConfig::default(), &values)
            }
            DetectorChoice::Novelty => novelty::score_series(&novelty::NoveltyConfig::default(), points),
        }
    }

    fn name(self) -> &'static str {
        match self {
            DetectorChoice::Range => "range",
            DetectorChoice::Novelty => "novelty",
        }
    }
}

/// One file's labelled windows as NAB writes them: `[start, end]` timestamps, inclusive.
type LabelFile = std::collections::BTreeMap<String, Vec<(String, String)>>;

fn parse_time(text: &str) -> Option<chrono::NaiveDateTime> {
    chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f").ok()
}

/// The corpus named by a NAB labels file (`category/file.csv` → windows) under `data`: every file's values and
/// windows as point indices. A label key that leaves `data`, a file that is missing or malformed, a timestamp
/// that is not `YYYY-MM-DD HH:MM:SS[.f]` and a window that covers no point are errors naming file and place.
pub fn load_corpus(data: &Path, labels: &Path) -> Result<Vec<LoadedSeries>, AnomalyCliError> {
    let text = std::fs::read_to_string(labels)
        .map_err(|source| AnomalyCliError::Read { path: labels.to_path_buf(), source })?;
    let bad = |message: String| AnomalyCliError::Labels { path: labels.to_path_buf(), message };
    let entries: LabelFile = serde_json::from_str(&text).map_err(|e| {
        bad(format!(
            "line {}: not a NAB windows file (`{{\"category/file.csv\": [[start, end], ...]}}`): {e}",
            e.line()
        ))
    })?;
    if entries.is_empty() {
        return Err(bad("no files are labelled".to_string()));
    }
    let mut corpus = Vec::with_capacity(entries.len());
    for (name, limits) in entries {
        let relative = Path::new(&name);
        let inside = relative.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        let category = match name.split_once('/') {
            Some((c, f)) if inside && !c.is_empty() && !f.is_empty() => c.to_string(),
            _ => return Err(bad(format!("{name:?}: a key must be `category/file.csv` inside the data folder"))),
        };
        let path = data.join(relative);
        let rows = read_series(&path)?;
        let mut times = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let t = parse_time(&row.timestamp).ok_or_else(|| AnomalyCliError::Parse {
                path: path.clone(),
                line: i + 2,
                message: format!("timestamp {:?} is not `YYYY-MM-DD HH:MM:SS`", row.timestamp),
            })?;
            times.push(t);
        }
        let mut windows = Vec::with_capacity(limits.len());
        for (start, end) in &limits {
            let (Some(a), Some(b)) = (parse_time(start), parse_time(end)) else {
                return Err(bad(format!(
                    "{name}: window [{start:?}, {end:?}]: a timestamp is not `YYYY-MM-DD HH:MM:SS`"
                )));
            };
            match windows_by_time(&times, &[(a, b)]).first() {
                Some(w) => windows.push(*w),
                None => {
                    return Err(bad(format!("{name}: window [{start}, {end}] covers no point of {}", path.display())))
                }
            }
        }
        let points = times.iter().zip(&rows).map(|(t, r)| (t.and_utc().timestamp(), r.value)).collect();
        corpus.push(LoadedSeries { labelled: LabelledSeries { name, category, windows }, points });
    }
    Ok(corpus)
}

fn figure(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}"))
}

/// The evaluation as Markdown tables: the whole-set score, each category at the whole-set threshold, and the
/// leave-one-category-out folds with their pooled, mean and worst held-out scores.
pub fn render_evaluation(e: &Evaluation, files: usize, points: usize) -> String {
    let mut out = String::new();
    let windows: usize = e.categories.iter().map(|c| c.windows).sum();
    let _ = writeln!(
        out,
        "NAB 1.1, standard profile: {files} files, {} categories, {windows} windows, {points} points\n",
        e.categories.len()
    );
    let _ = writeln!(
        out,
        "Whole set (configuration `{}` and threshold chosen on every file): {:.2} at threshold {}\n",
        e.whole_candidate, e.whole, e.whole_threshold
    );
    out.push_str(
        "| category | files | windows | detected | missed | false positives | score at the whole-set threshold |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|\n");
    for c in &e.categories {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.category,
            c.files,
            c.windows,
            c.detected,
            c.missed,
            c.false_positives,
            figure(c.normalized)
        );
    }
    if e.folds.is_empty() {
        out.push_str("\nLeave one category out: needs at least two categories.\n");
        return out;
    }
    out.push_str("\nLeave one category out (configuration and threshold chosen on the other categories):\n\n");
    out.push_str("| held out | configuration | threshold | score on the others | held-out score | detected | missed | false positives |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for f in &e.folds {
        let h = &f.held_out;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {} | {} | {} | {} |",
            h.category,
            f.candidate,
            f.threshold,
            f.training,
            figure(h.normalized),
            h.detected,
            h.missed,
            h.false_positives
        );
    }
    let worst = e.worst.as_ref().map_or_else(|| "n/a".to_string(), |(c, s)| format!("{s:.2} ({c})"));
    let _ = writeln!(
        out,
        "\nHeld-out score, pooled over every file: {}; mean of the categories with windows: {}; worst: {worst}",
        figure(e.pooled),
        figure(e.mean)
    );
    out
}

/// `cloudwarden anomaly evaluate`: scores every labelled file under `data` with the default configuration of
/// `detector` and evaluates it (whole set, per category, leave one category out). Returns the report.
pub fn evaluate_command(data: &Path, labels: &Path, detector: DetectorChoice) -> Result<String, AnomalyCliError> {
    let corpus = load_corpus(data, labels)?;
    let points = corpus.iter().map(|s| s.points.len()).sum();
    let scores: Vec<Vec<f64>> = corpus.iter().map(|s| detector.score(&s.points)).collect();
    let series: Vec<LabelledSeries> = corpus.into_iter().map(|s| s.labelled).collect();
    let candidates = [Candidate { name: detector.name().to_string(), scores }];
    let evaluation = evaluate(&NabScorer::default(), &series, &candidates);
    Ok(render_evaluation(&evaluation, series.len(), points))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Row>, String> {
        parse_series(Path::new("in.csv"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_nab_format() {
        let rows = parse("timestamp,value\n2014-01-16 00:00:00,33.5573\r\n\n\"2014-01-16 00:05:00\",NaN\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].timestamp, "2014-01-16 00:00:00");
        assert_eq!(rows[0].value_text, "33.5573");
        assert!(rows[1].value.is_nan());
        assert_eq!(parse("\u{feff}Timestamp,Value\n").unwrap(), vec![]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases = [
            ("", "in.csv: line 1: empty file: expected a `timestamp,value` header"),
            (
                "2014-01-16 00:00:00,1\n",
                "in.csv: line 1: expected the header `timestamp,value`, found \"2014-01-16 00:00:00,1\"",
            ),
            ("timestamp,value\nt1,1\nt2,abc\n", "in.csv: line 3: value \"abc\" is not a number"),
            ("timestamp,value\nt1,1,2\n", "in.csv: line 2: expected 2 fields (timestamp,value), found 3"),
            ("timestamp,value\nt1\n", "in.csv: line 2: expected 2 fields (timestamp,value), found 1"),
            ("timestamp,value\n\n,1\n", "in.csv: line 3: empty timestamp"),
            ("timestamp,value\nt1,\n", "in.csv: line 2: value \"\" is not a number"),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).unwrap_err(), expected, "input {text:?}");
        }
    }

    #[test]
    fn renders_same_rows_in_order() {
        let rows = parse("timestamp,value\nb,2\na,1.50\n").unwrap();
        assert_eq!(render_scores(&rows, &[0.0, 0.25]), "timestamp,value,anomaly_score\nb,2,0\na,1.50,0.25\n");
    }
}
