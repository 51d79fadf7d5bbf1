//! A batch of entity changes (the body of `POST /topology/batch`, as
//! JSON) applied to the demo topology: refused with a reason or applied,
//! and an applied batch gives a document that loads to the same snapshot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn demo() -> &'static edgeward::topology::Topology {
    static DEMO: OnceLock<edgeward::topology::Topology> = OnceLock::new();
    DEMO.get_or_init(|| {
        edgeward::topology::load(
            bytes::Bytes::from_static(edgeward::builtin::DEMO_TOPOLOGY.as_bytes()),
            1,
        )
        .expect("the demo loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(edits) = serde_json::from_slice::<Vec<edgeward::topology::edit::Edit>>(data) else {
        return;
    };
    let base = demo();
    if let Ok(edited) = edgeward::topology::edit::apply(base, &edits, 2, 2) {
        let rebuilt = edgeward::topology::build(&edited.topology.document(), 3)
            .expect("an edited document is valid");
        assert_eq!(rebuilt.source(), edited.topology.source(), "same document");
    }
});
