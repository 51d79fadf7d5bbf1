//! The decision log's record of a decision, written from what the request
//! path had at hand (the format is [`crate::decision_log`]'s).

use super::Outcome;
use super::candidates::Prepared;
use crate::decision_log::{
    Answer, CandidateRecord, HeaderRecord, HealthRecord, Record, SCHEMA, TierRecord,
    is_secret_header,
};
use crate::policy::bindings::CandidateState;
use crate::topology::Topology;
use http::HeaderValue;
use std::sync::Arc;
use std::time::Instant;

/// Who decided and what they chose.
pub struct Decided<'a> {
    /// `name@version` (or `native`) of what answered.
    pub by: &'a HeaderValue,
    /// The server a `choose` answer named.
    pub chosen: Option<u32>,
    /// The version whose call failed, when a fallback answered.
    pub fallback: Option<&'a str>,
}

/// The decision-log record of one decision: the request as the policy saw
/// it, its candidates by id, and the answer.
pub fn record(
    topology: &Arc<Topology>,
    prepared: &Prepared<'_>,
    outcome: &Outcome,
    decided: Decided<'_>,
    started: Instant,
    request_id: String,
) -> Record {
    let Decided {
        by: decided_by,
        chosen,
        fallback,
    } = decided;
    let r = &prepared.request;
    let tiers = prepared
        .tiers
        .iter()
        .map(|t| TierRecord {
            region_index: t.region,
            subnet_index: t.subnet,
            region: topology.regions[t.region as usize].id.to_string(),
            region_active: t.region_active,
            subnet: t
                .subnet
                .map(|s| topology.subnets[s as usize].net.to_string()),
            subnet_name: t
                .subnet
                .and_then(|s| topology.subnet_name(s))
                .map(str::to_string),
            distance_km: t.distance_km,
            candidates: t
                .candidates
                .iter()
                .map(|c| CandidateRecord {
                    server_index: c.server,
                    group_index: c.group,
                    bits: c.state.bits(),
                    health: c.health.as_ref().map(|h| HealthRecord {
                        rtt_us: h.rtt_us,
                        figures: h.figures.clone(),
                    }),
                    server: topology.servers[c.server as usize].id.to_string(),
                    group: topology.groups[c.group as usize].id.to_string(),
                    weight: c.weight,
                    missing: (CandidateState::all() - c.state)
                        .names()
                        .map(str::to_string)
                        .collect(),
                })
                .collect(),
        })
        .collect();
    let (status, location, reason) = match outcome {
        Outcome::Redirect(url) => (302, Some(url.clone()), None),
        Outcome::Refuse { status, reason } => (*status, None, Some(reason.to_string())),
        other => (other.status(), None, None),
    };
    let policy = decided_by.to_str().unwrap_or("?").to_string();
    // What decided answered (with `fallback`, what answered for the
    // policy that failed).
    let answer = match (chosen, outcome) {
        (Some(server), _) => Some(Answer::Choose(server)),
        (None, Outcome::Redirect(url)) => Some(Answer::Redirect(url.clone())),
        (None, Outcome::Refuse { status, .. }) => Some(Answer::Reject(*status)),
        (None, other) => Some(Answer::Reject(other.status())),
    };
    Record {
        schema: SCHEMA,
        topology_hash: topology.hash.clone(),
        seed: r.seed,
        time_ms: crate::time::unix_millis(std::time::SystemTime::now()),
        answer,
        fallback: fallback.map(str::to_string),
        request_id,
        time: crate::time::now_rfc3339(),
        client: r.client.to_std().to_string(),
        kind: r.kind.as_str().into(),
        protocol: r.protocol.map(|p| p.as_str().into()),
        encryption: r.encryption.as_str().into(),
        target: r.target.clone(),
        query: r.query.clone().unwrap_or_default(),
        tls: r.tls,
        geo: crate::decision_log::GeoRecord::of(&r.geo),
        headers: r
            .headers
            .iter()
            .map(|(name, value)| {
                let redacted = value.is_some() && is_secret_header(name);
                HeaderRecord {
                    name: name.to_string(),
                    value: value.filter(|_| !redacted).map(str::to_string),
                    redacted,
                }
            })
            .collect(),
        topology_version: r.topology_version,
        tiers,
        policy,
        status,
        location,
        reason,
        duration_us: started.elapsed().as_secs_f64() * 1e6,
        topology: Some(topology.clone()),
    }
}
