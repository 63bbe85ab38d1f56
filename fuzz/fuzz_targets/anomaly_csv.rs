//! `cloudwarden anomaly score`'s input: the `timestamp,value` CSV, then the detector over what parsed.
#![no_main]

use std::path::Path;

use cloudwarden::anomaly_cli::{parse_series, render_scores, score_rows};
use libfuzzer_sys::fuzz_target;
use rules::anomaly::metric::detector::DetectorConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(rows) = parse_series(Path::new("fuzz.csv"), text) {
        let scores = score_rows(&rows, &DetectorConfig::default());
        assert_eq!(scores.len(), rows.len());
        let _ = render_scores(&rows, &scores);
    }
});
