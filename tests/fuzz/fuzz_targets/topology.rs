//! A topology document, JSON or MessagePack: parsed, validated, indexed,
//! and, when valid, given back and loaded again to the same snapshot.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = edgeward::topology::load(bytes::Bytes::copy_from_slice(data), 1) {
        let again =
            edgeward::topology::load(t.source().clone(), 2).expect("its own document loads");
        assert_eq!(again.hash, t.hash, "the same document, the same snapshot");
    }
});
