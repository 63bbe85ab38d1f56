//! The Terraform state parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = collector::terraform::parse_state("fuzz.tfstate", data);
});
