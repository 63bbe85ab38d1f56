//! The configuration parser and validator (no environment variable is set).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cloudwarden::config::parse("fuzz.toml", text, &|_| None);
    }
});
