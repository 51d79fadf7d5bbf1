//! The SDK's decoder of the packed call (`select` and `steer` words): any
//! words decode without a panic, and what they decode to encodes and
//! decodes back to itself (the SDK and the engine share the codec, so a
//! drift between encoder and decoder would show here).
#![no_main]

use edgeward_codec::{Decoded, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte: which headers the policy declared (0 to 3 of them).
    let Some((&declare, rest)) = data.split_first() else {
        return;
    };
    let names = &["x-a", "x-b", "cookie"][..usize::from(declare % 4).min(3)];
    let words: Vec<u32> = rest
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    let mut steer: Decoded<u32> = Decoded::new();
    steer.declare_headers(names);
    steer.decode_steer(&words);

    let mut first: Decoded<u32> = Decoded::new();
    first.declare_headers(names);
    first.decode(&words, Some);
    let mut again = Vec::new();
    encode(&first.request, &first.tiers, &mut again);
    let mut second: Decoded<u32> = Decoded::new();
    second.declare_headers(names);
    second.decode(&again, Some);
    assert_eq!(
        first.request, second.request,
        "the request survives a round trip"
    );
    assert_eq!(first.tiers, second.tiers, "the tiers survive a round trip");
});
