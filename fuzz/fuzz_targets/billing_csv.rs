//! The FOCUS/CUR CSV reader, plain and gzip: the first byte picks plain text, text gzipped here (the
//! reader's decompression path with a valid stream), or the bytes as a gzip stream as they are.
#![no_main]

use std::io::{Cursor, Write};

use collector::billing::{read_csv, ReadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let opts = ReadOptions::default();
    match mode % 3 {
        0 => {
            let _ = read_csv(Cursor::new(body), "fuzz.csv", false, &opts);
        }
        1 => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = gz.write_all(body);
            let packed = gz.finish().unwrap_or_default();
            let _ = read_csv(Cursor::new(packed), "fuzz.csv.gz", true, &opts);
        }
        _ => {
            let _ = read_csv(Cursor::new(body), "fuzz.csv.gz", true, &opts);
        }
    }
});
