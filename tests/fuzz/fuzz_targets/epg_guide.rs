//! A programme guide file (Kaltura EPG XML or XMLTV): parsed, checked and
//! planned against the demo topology by the import's rules.
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
    let Ok(guide) = edgeward::epg::parse::parse(data) else {
        return;
    };
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let _ = edgeward::epg::rules::plan(demo(), &guide, now, Default::default());
});
