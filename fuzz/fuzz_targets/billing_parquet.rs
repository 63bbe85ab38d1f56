//! The Parquet billing reader, on a file holding the input (Parquet needs random access).
#![no_main]

use collector::billing::{read_path, FileFormat, ReadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    // The reader contains the parquet crate's panics (each is the file's decode error); libFuzzer's hook
    // would count a contained panic as a crash, so the default hook is put back. A panic that escapes the
    // reader still aborts the run and is reported.
    init: {
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| {
    let Ok(mut file) = tempfile::NamedTempFile::new() else { return };
    if std::io::Write::write_all(&mut file, data).is_err() {
        return;
    }
    let _ = read_path(file.path(), "fuzz.parquet", FileFormat::Parquet, &ReadOptions::default());
    }
);
