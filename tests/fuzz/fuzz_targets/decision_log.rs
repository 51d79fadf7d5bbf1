//! One line of a decision log as `policy replay` reads it (logs are files
//! an operator may copy around, cut or edit): a decision record turned
//! back into the request, tiers and subnets the engine passed, a topology
//! record, or a clear refusal, never a panic.
#![no_main]

use edgeward::policy::bindings::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let mut request = Request::empty();
    let mut tiers = Vec::new();
    let mut subnets = Vec::new();
    let _ =
        edgeward::cmd::policy::replay::decode_line(line, &mut request, &mut tiers, &mut subnets);
});
