//! An answer of a DVR's SOAP API: read into its fields and faults.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = edgeward::dvr::soap::read_answer(data);
});
