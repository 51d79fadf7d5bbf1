//! What a round of the DVR worker does, decided from one snapshot of the
//! topology at one time, with no I/O (so that each rule is tested here):
//!
//! - [`intents`]: the recordings to ask for now: each programme starting
//!   within the horizon (20 minutes) on a channel with `dvr_enabled`, a
//!   recording group and a code name, once per active stream that has no
//!   record yet, on an active DVR of the group that has a management
//!   address. Each is written as a `new` record without a path before the
//!   DVR is called: the intent.
//! - [`pending`]: the intents not yet answered (just written, or left by
//!   a node that stopped between writing and asking) with what to send;
//!   the placement makes asking again safe.
//! - [`polls`]: the recordings whose state to ask: `new` or `planned`
//!   ones of a programme on air, and any not finished of one that ended.
//! - [`expired`]: the programmes past retention, with the recordings to
//!   remove from the DVRs first.

use super::Schedule;
use crate::topology::entity::{RecordEntity, encryption_name, protocol_name, records_of};
use crate::topology::model::{RecordStatus, ServerKind};
use crate::topology::{Program, Record, Topology};
use time::{Duration, OffsetDateTime};

/// The worker's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Programmes starting this soon are scheduled (20 minutes).
    pub horizon: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            horizon: Duration::minutes(20),
        }
    }
}

/// A record, with the key that names it in the API.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyed {
    /// `program/server/protocol/encryption`.
    pub key: String,
    /// The record.
    pub record: RecordEntity,
}

/// The records of `p` that `wanted` picks, with their keys (as the API
/// names them: a second record of one key is `…/2`).
fn keyed(p: &Program, wanted: impl Fn(&Record) -> bool) -> Vec<(Keyed, &Record)> {
    if !p.records.iter().any(&wanted) {
        return Vec::new();
    }
    records_of(p)
        .into_iter()
        .zip(p.records.iter())
        .filter(|(_, r)| wanted(r))
        .map(|((key, record), r)| (Keyed { key, record }, r))
        .collect()
}

/// Why a programme that could be recorded is not scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its channel.
    pub channel: String,
    /// Why.
    pub reason: String,
}

/// The records to create now (status `new`, no path), and the channels
/// with `dvr_enabled` that cannot be recorded, with the reason. `pick`
/// chooses one of `n` DVRs (at random in the worker).
pub fn intents(
    t: &Topology,
    now: OffsetDateTime,
    settings: Settings,
    pick: &mut dyn FnMut(usize) -> usize,
) -> (Vec<RecordEntity>, Vec<Skipped>) {
    let mut out = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    let until = now + settings.horizon;
    for p in t.programs.iter() {
        let Some(start) = p.start else { continue };
        if start <= now || start > until {
            continue;
        }
        let Some((c, _)) = t.channel(&p.channel) else {
            continue;
        };
        let doc = &t.channel_docs[c as usize];
        if !doc.dvr_enabled {
            continue;
        }
        let mut skip = |reason: String| {
            if !skipped.iter().any(|s| s.channel == doc.epg_id) {
                skipped.push(Skipped {
                    channel: doc.epg_id.clone(),
                    reason,
                });
            }
        };
        let (Some(group), Some(code)) = (&doc.recording_group, &doc.code_name) else {
            skip("it has no `recording_group` and `code_name`".into());
            continue;
        };
        let dvrs = members(t, group, ServerKind::Dvr, true);
        if dvrs.is_empty() {
            skip(format!(
                "its recording group {group:?} has no active dvr server with a `management` address"
            ));
            continue;
        }
        if members(t, group, ServerKind::Edge, false).is_empty() {
            skip(format!(
                "its recording group {group:?} has no active edge to record from"
            ));
            continue;
        }
        for s in doc.streams.iter().filter(|s| s.active) {
            let has = p
                .records
                .iter()
                .any(|r| r.protocol == s.protocol && r.encryption == s.encryption);
            if has {
                continue;
            }
            let dvr = dvrs[pick(dvrs.len()) % dvrs.len()];
            out.push(RecordEntity {
                program: p.epg_id.to_string(),
                server: t.servers[dvr].id.to_string(),
                protocol: s.protocol,
                encryption: s.encryption,
                path: String::new(),
                status: RecordStatus::New,
                placement: Some(placement(code, s.protocol, s.encryption, &p.epg_id)),
                error: None,
            });
        }
    }
    (out, skipped)
}

/// `{code name}/{protocol}/{encryption}/{programme}`.
pub fn placement(
    code: &str,
    protocol: crate::topology::model::Protocol,
    encryption: crate::topology::model::Encryption,
    program: &str,
) -> String {
    format!(
        "{code}/{}/{}/{program}",
        protocol_name(protocol),
        encryption_name(encryption)
    )
}

/// The indices of the active servers of `kind` in group `id` (DVRs: with
/// a management address when `managed`).
fn members(t: &Topology, id: &str, kind: ServerKind, managed: bool) -> Vec<usize> {
    let Some(g) = t.network.server_groups.iter().find(|g| g.id == id) else {
        return Vec::new();
    };
    g.servers
        .iter()
        .filter_map(|s| t.server_index(s).map(|i| i as usize))
        .filter(|&i| {
            let s = &t.servers[i];
            s.active && s.kind == kind && (!managed || t.network.servers[i].management.is_some())
        })
        .collect()
}

/// An intent to send, or one that can no longer be.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    /// Ask the record's DVR for this.
    Send(Keyed, Schedule),
    /// Its programme ended, or what it was asked from is gone: in error.
    Fail(Keyed, String),
}

/// The intents (records `new` without a path) to send now. `pick`
/// chooses one of `n` edges to record from.
pub fn pending(
    t: &Topology,
    now: OffsetDateTime,
    pick: &mut dyn FnMut(usize) -> usize,
) -> Vec<Pending> {
    let mut out = Vec::new();
    for p in t.programs.iter() {
        let waiting = |r: &Record| r.status == RecordStatus::New && r.written_path.is_empty();
        for (keyed, r) in keyed(p, waiting) {
            match schedule_of(t, p, r, now, pick) {
                Ok(s) => out.push(Pending::Send(keyed, s)),
                Err(why) => out.push(Pending::Fail(keyed, why)),
            }
        }
    }
    out
}

fn schedule_of(
    t: &Topology,
    p: &Program,
    r: &Record,
    now: OffsetDateTime,
    pick: &mut dyn FnMut(usize) -> usize,
) -> Result<Schedule, String> {
    let (Some(start), Some(end)) = (p.start, p.end) else {
        return Err("the programme has no start or end time".into());
    };
    if end <= now {
        return Err("the programme ended before the DVR took the recording".into());
    }
    let Some((c, _)) = t.channel(&p.channel) else {
        return Err(format!("channel {:?} is gone", p.channel));
    };
    let doc = &t.channel_docs[c as usize];
    let Some(stream) = doc
        .streams
        .iter()
        .find(|s| s.active && s.protocol == r.protocol && s.encryption == r.encryption)
    else {
        return Err(format!(
            "channel {:?} has no active {}/{} stream any more",
            doc.epg_id,
            protocol_name(r.protocol),
            encryption_name(r.encryption)
        ));
    };
    let Some(group) = &doc.recording_group else {
        return Err(format!("channel {:?} has no recording group", doc.epg_id));
    };
    let edges = members(t, group, ServerKind::Edge, false);
    if edges.is_empty() {
        return Err(format!(
            "recording group {group:?} has no active edge to record from"
        ));
    }
    let edge = &t.servers[edges[pick(edges.len()) % edges.len()]];
    let code = doc.code_name.as_deref().unwrap_or(&doc.epg_id);
    let mut params = format!(
        "format={};encryption={};channel={code}",
        protocol_name(r.protocol),
        encryption_name(r.encryption)
    );
    if let Some(id) = doc.storage_id {
        params.push_str(&format!(";storageID={id}"));
    }
    Ok(Schedule {
        start,
        end,
        asset: format!("{}/{}", edge.base_url, stream.path.trim_start_matches('/')),
        placement: r
            .placement
            .as_deref()
            .map(Into::into)
            .unwrap_or_else(|| placement(code, r.protocol, r.encryption, &p.epg_id)),
        params,
    })
}

/// Whether a record's state may still change on the DVR.
pub fn unfinished(s: RecordStatus) -> bool {
    matches!(
        s,
        RecordStatus::New | RecordStatus::Planned | RecordStatus::Running
    )
}

/// The recordings whose state to ask the DVR now.
pub fn polls(t: &Topology, now: OffsetDateTime) -> Vec<Keyed> {
    let mut out = Vec::new();
    for p in t.programs.iter() {
        let on_air = p.start.is_some_and(|s| s <= now) && p.end.is_some_and(|e| e > now);
        let ended = p.end.is_some_and(|e| e <= now);
        let ask = |r: &Record| {
            !r.written_path.is_empty()
                && ((on_air && matches!(r.status, RecordStatus::New | RecordStatus::Planned))
                    || (ended && unfinished(r.status)))
        };
        out.extend(keyed(p, ask).into_iter().map(|(k, _)| k));
    }
    out
}

/// A programme past retention and its records.
#[derive(Debug, Clone, PartialEq)]
pub struct Expired {
    /// The programme.
    pub program: String,
    /// Its records.
    pub records: Vec<Keyed>,
}

/// The programmes that started more than `keep` before `now`.
pub fn expired(t: &Topology, now: OffsetDateTime, keep: Duration) -> Vec<Expired> {
    let cutoff = now - keep;
    t.programs
        .iter()
        .filter(|p| p.start.is_some_and(|s| s < cutoff))
        .map(|p| Expired {
            program: p.epg_id.to_string(),
            records: keyed(p, |_| true).into_iter().map(|(k, _)| k).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(programs: &str) -> Topology {
        let doc = format!(
            r#"{{"schema": 3,
            "regions": [{{"id": "r", "server_groups": ["rec"]}}],
            "server_groups": [{{"id": "rec", "servers": ["e1", "d1", "d2", "d3"]}}],
            "servers": [
                {{"id": "e1", "kind": "edge", "host": "e1.test", "port": 443}},
                {{"id": "d1", "kind": "dvr", "host": "d1.test", "port": 80, "prefix": "d1", "management": {{"host": "10.0.0.1", "port": 8080}}}},
                {{"id": "d2", "kind": "dvr", "host": "d2.test", "port": 80, "prefix": "d2"}},
                {{"id": "d3", "kind": "dvr", "host": "d3.test", "port": 80, "prefix": "d3", "active": false, "management": {{"host": "10.0.0.3", "port": 8080}}}}
            ],
            "channels": [
                {{"epg_id": "ch1", "dvr_enabled": true, "recording_group": "rec", "code_name": "one", "storage_id": 2, "streams": [
                    {{"protocol": "hls", "encryption": "none", "path": "live/ch1.m3u8"}},
                    {{"protocol": "mpd", "encryption": "cenc", "path": "live/ch1.mpd"}},
                    {{"protocol": "mpd", "encryption": "none", "path": "live/off.mpd", "active": false}}]}},
                {{"epg_id": "ch2", "dvr_enabled": true, "streams": [{{"protocol": "hls", "encryption": "none", "path": "live/ch2.m3u8"}}]}},
                {{"epg_id": "ch3", "streams": [{{"protocol": "hls", "encryption": "none", "path": "live/ch3.m3u8"}}]}}
            ],
            "programs": [{programs}],
            "subnets": []}}"#
        );
        crate::topology::load(bytes::Bytes::from(doc), 1).unwrap()
    }

    const NOW: i64 = 1_796_400_000;

    fn at(offset_s: i64) -> String {
        crate::time::rfc3339((OffsetDateTime::from_unix_timestamp(NOW + offset_s).unwrap()).into())
    }

    fn program(id: &str, channel: &str, start: i64, end: i64, records: &str) -> String {
        format!(
            r#"{{"epg_id": "{id}", "channel": "{channel}", "start": "{}", "end": "{}", "records": [{records}]}}"#,
            at(start),
            at(end)
        )
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW).unwrap()
    }

    #[test]
    fn programmes_about_to_start_are_scheduled_once_per_active_stream() {
        let t = topology(
            &[
                program("soon", "ch1", 600, 4200, ""),
                program("later", "ch1", 1300, 4200, ""),
                program("started", "ch1", -60, 4200, ""),
                program(
                    "half",
                    "ch1",
                    300,
                    900,
                    r#"{"server": "d1", "protocol": "hls", "encryption": "none", "path": "x", "status": "planned"}"#,
                ),
                program("unset", "ch2", 600, 900, ""),
                program("off", "ch3", 600, 900, ""),
            ]
            .join(","),
        );
        let (intents, skipped) = intents(&t, now(), Settings::default(), &mut |_| 0);
        let got: Vec<(&str, &str, Option<&str>)> = intents
            .iter()
            .map(|r| {
                (
                    r.program.as_str(),
                    r.server.as_str(),
                    r.placement.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("soon", "d1", Some("one/hls/none/soon")),
                ("soon", "d1", Some("one/mpd/cenc/soon")),
                ("half", "d1", Some("one/mpd/cenc/half")),
            ],
            "only the managed, active DVR; each missing active stream once"
        );
        assert!(
            intents
                .iter()
                .all(|r| r.status == RecordStatus::New && r.path.is_empty())
        );
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].channel, "ch2");
        assert!(skipped[0].reason.contains("recording_group"), "{skipped:?}");
    }

    #[test]
    fn an_intent_is_sent_with_what_the_dvr_needs_until_its_programme_ends() {
        let intent = r#"{"server": "d1", "protocol": "mpd", "encryption": "cenc", "status": "new", "placement": "one/mpd/cenc/p"}"#;
        let t = topology(
            &[
                program("p", "ch1", 600, 4200, intent),
                program("gone", "ch1", -4000, -10, intent),
            ]
            .join(","),
        );
        let pending = pending(&t, now(), &mut |_| 0);
        assert_eq!(pending.len(), 2);
        let Pending::Send(keyed, s) = &pending[0] else {
            panic!("{pending:?}")
        };
        assert_eq!(keyed.key, "p/d1/mpd/cenc");
        assert_eq!(
            s.asset, "https://e1.test/live/ch1.mpd",
            "https: the edge is on 443"
        );
        assert_eq!(s.placement, "one/mpd/cenc/p");
        assert_eq!(
            s.params,
            "format=mpd;encryption=cenc;channel=one;storageID=2"
        );
        assert_eq!(
            super::super::soap::soap_time(s.start),
            at(600).replace('Z', "+00:00")
        );
        assert!(
            matches!(&pending[1], Pending::Fail(k, why) if k.key == "gone/d1/mpd/cenc" && why.contains("ended"))
        );
    }

    #[test]
    fn recordings_are_asked_about_on_air_and_after_the_end_until_finished() {
        let rec = |status: &str, path: &str| {
            format!(
                r#"{{"server": "d1", "protocol": "hls", "encryption": "none", "path": "{path}", "status": "{status}"}}"#
            )
        };
        let t = topology(
            &[
                program("onair-planned", "ch1", -60, 600, &rec("planned", "a")),
                program("onair-running", "ch1", -60, 600, &rec("running", "b")),
                program("ended-running", "ch1", -600, -60, &rec("running", "c")),
                program("ended-done", "ch1", -600, -60, &rec("completed", "d")),
                program("ended-new", "ch1", -600, -60, &rec("new", "")),
                program("future", "ch1", 60, 600, &rec("planned", "e")),
            ]
            .join(","),
        );
        let asked: Vec<String> = polls(&t, now())
            .into_iter()
            .map(|k| k.record.program)
            .collect();
        assert_eq!(asked, ["onair-planned", "ended-running"]);
    }

    #[test]
    fn retention_lists_old_programmes_with_their_records() {
        let rec = r#"{"server": "d1", "protocol": "hls", "encryption": "none", "path": "a", "status": "completed"}"#;
        let t = topology(
            &[
                program("old", "ch1", -49 * 3600, -48 * 3600, rec),
                program("young", "ch1", -47 * 3600, 0, rec),
            ]
            .join(","),
        );
        let e = expired(&t, now(), Duration::hours(48));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].program, "old");
        assert_eq!(e[0].records[0].record.path, "a");
    }
}
