//! The old system's programme rules, as one batch of entity changes:
//!
//! 1. a channel the topology does not have is reported, and nothing of it
//!    changes;
//! 2. only programmes starting more than `protect` (30 minutes) from now
//!    are kept: a programme about to start or on air is never replaced;
//! 3. the window from the first kept programme's start to the last one's
//!    end replaces the channel's programmes starting in it (their
//!    recordings deleted first), and the kept ones are created.
//!
//! Each channel's changes are one batch ([`plan_channel`]), checked and
//! applied whole by the one door like any other: a channel's window is
//! replaced entirely or not at all, and a guide of many channels never
//! holds more than one channel's changes in memory at a time.

use super::parse::{Guide, Programme};
use crate::topology::Topology;
use crate::topology::edit::{Edit, Op};
use crate::topology::entity::{Kind, records_of};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

/// The rules' settings.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Programmes starting sooner than this are not replaced (30 min).
    pub protect: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            protect: Duration::minutes(30),
        }
    }
}

/// What an import does to one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChannelReport {
    /// Programmes of the channel in the file.
    pub in_file: usize,
    /// Left out: starting within the protected time (or already started).
    pub too_soon: usize,
    /// The window replaced (RFC 3339), when any programme was kept.
    pub window: Option<(String, String)>,
    /// Programmes deleted from the window (they are replaced).
    pub replaced: usize,
    /// Recordings deleted with them.
    pub records_deleted: usize,
    /// Programmes created.
    pub created: usize,
    /// Why the channel's changes were refused (nothing of it changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The recordings deleted that a DVR may still make (server, path):
    /// to cancel there once the change is written.
    #[serde(skip)]
    pub in_flight: Vec<(String, String)>,
}

/// What an import does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The file's dialect.
    pub dialect: &'static str,
    /// By channel `epg_id`.
    pub channels: BTreeMap<String, ChannelReport>,
    /// Channels of the file the topology does not have (nothing of them
    /// changed).
    pub unknown_channels: Vec<String>,
}

/// Why a guide cannot be imported at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The same programme id twice in the file.
    #[error("programme {0:?} appears twice in the file")]
    Twice(String),
    /// A programme that stops before it starts.
    #[error("programme {epg_id:?}: `stop` {stop} is not after `start` {start}")]
    Backwards {
        /// The programme.
        epg_id: String,
        /// Its start.
        start: String,
        /// Its stop.
        stop: String,
    },
}

/// As the engine writes every time (UTC).
fn rfc3339(t: OffsetDateTime) -> String {
    crate::time::rfc3339(t.into())
}

/// The file's programmes by channel, checked: no id twice, none that
/// stops before it starts.
pub fn group(guide: &Guide) -> Result<BTreeMap<&str, Vec<&Programme>>, PlanError> {
    let mut by_channel: BTreeMap<&str, Vec<&Programme>> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for p in &guide.programmes {
        if !seen.insert(p.epg_id.as_str()) {
            return Err(PlanError::Twice(p.epg_id.clone()));
        }
        if p.stop <= p.start {
            return Err(PlanError::Backwards {
                epg_id: p.epg_id.clone(),
                start: rfc3339(p.start),
                stop: rfc3339(p.stop),
            });
        }
        by_channel.entry(p.channel.as_str()).or_default().push(p);
    }
    Ok(by_channel)
}

/// The changes the file's `programmes` of `channel` (one the topology
/// has) make to `topology` at `now`; `r` says what they are.
pub fn plan_channel(
    topology: &Topology,
    channel: &str,
    programmes: &[&Programme],
    now: OffsetDateTime,
    rules: Rules,
    r: &mut ChannelReport,
) -> Vec<Edit> {
    let mut edits = Vec::new();
    let cutoff = now + rules.protect;
    r.in_file = programmes.len();
    let kept: Vec<&Programme> = programmes
        .iter()
        .copied()
        .filter(|p| p.start > cutoff)
        .collect();
    r.too_soon = r.in_file - kept.len();
    let (Some(first), Some(last)) = (
        kept.iter().map(|p| p.start).min(),
        kept.iter().map(|p| p.stop).max(),
    ) else {
        return edits;
    };
    r.window = Some((rfc3339(first), rfc3339(last)));
    // The channel's programmes starting in the window go, and so do
    // those the file moves there (same id, another time).
    let ids: std::collections::HashSet<&str> = kept.iter().map(|p| p.epg_id.as_str()).collect();
    for existing in topology.programs.iter() {
        if *existing.channel != *channel {
            continue;
        }
        let in_window = existing.start.is_some_and(|s| s >= first && s <= last);
        if !in_window && !ids.contains(&*existing.epg_id) {
            continue;
        }
        for (key, record) in records_of(existing) {
            edits.push(Edit {
                op: Op::Delete,
                kind: Kind::Records,
                key: Some(key),
                value: None,
                if_match: None,
            });
            r.records_deleted += 1;
            if !record.path.is_empty() && crate::dvr::plan::unfinished(record.status) {
                r.in_flight.push((record.server, record.path));
            }
        }
        edits.push(Edit {
            op: Op::Delete,
            kind: Kind::Programs,
            key: Some(existing.epg_id.to_string()),
            value: None,
            if_match: None,
        });
        r.replaced += 1;
    }
    for p in kept {
        edits.push(Edit {
            op: Op::Create,
            kind: Kind::Programs,
            key: None,
            value: Some(json!({
                "epg_id": p.epg_id,
                "channel": p.channel,
                "start": rfc3339(p.start),
                "end": rfc3339(p.stop),
            })),
            if_match: None,
        });
        r.created += 1;
    }
    edits
}

/// The changes `guide` makes to `topology` at `now`, all channels'
/// together, and what they are (for tools and tests: an import writes
/// [`plan_channel`]'s batches one by one).
pub fn plan(
    topology: &Topology,
    guide: &Guide,
    now: OffsetDateTime,
    rules: Rules,
) -> Result<(Vec<Edit>, Report), PlanError> {
    let mut report = Report {
        dialect: guide.dialect.name(),
        ..Report::default()
    };
    let mut edits = Vec::new();
    for (channel, programmes) in group(guide)? {
        if topology.channel(channel).is_none() {
            report.unknown_channels.push(channel.to_string());
            continue;
        }
        let r = report.channels.entry(channel.to_string()).or_default();
        edits.extend(plan_channel(topology, channel, &programmes, now, rules, r));
    }
    Ok((edits, report))
}
