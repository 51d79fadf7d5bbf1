//! The old system's retention: programmes that started more than `keep`
//! (48 hours) ago are deleted, their recordings first, as one batch.
//! (Telling the DVR to remove the recordings comes with the DVR driver.)

use crate::topology::Topology;
use crate::topology::edit::{Edit, Op};
use crate::topology::entity::{Kind, records_of};
use time::{Duration, OffsetDateTime};

/// The changes that remove what is older than `keep` at `now`.
pub fn plan(topology: &Topology, now: OffsetDateTime, keep: Duration) -> Vec<Edit> {
    let cutoff = now - keep;
    let delete = |kind, key: String| Edit {
        op: Op::Delete,
        kind,
        key: Some(key),
        value: None,
        if_match: None,
    };
    let mut edits = Vec::new();
    for p in topology.programs.iter() {
        if p.start.is_none_or(|s| s >= cutoff) {
            continue;
        }
        for (key, _) in records_of(p) {
            edits.push(delete(Kind::Records, key));
        }
        edits.push(delete(Kind::Programs, p.epg_id.to_string()));
    }
    edits
}
