//! The decision log's record of a decision, written from what the request
//! path had at hand (the format is [`crate::decision_log`]'s).

use super::Outcome;
use super::candidates::Prepared;
use crate::decision_log::{CandidateRecord, Record, TierRecord};
use crate::topology::Topology;
use http::HeaderValue;
use std::net::IpAddr;
use std::time::Instant;

/// The decision-log record of one decision: the request as the policy saw
/// it, its candidates by id, and the answer.
pub fn record(
    topology: &Topology,
    prepared: &Prepared<'_>,
    client: IpAddr,
    outcome: &Outcome,
    decided_by: &HeaderValue,
    started: Instant,
    request_id: String,
) -> Record {
    let r = &prepared.request;
    let tiers = prepared
        .tiers
        .iter()
        .map(|t| TierRecord {
            region: topology.regions[t.region as usize].id.to_string(),
            region_active: t.region_active,
            subnet: t
                .subnet
                .map(|s| topology.subnets[s as usize].net.to_string()),
            candidates: t
                .candidates
                .iter()
                .map(|c| CandidateRecord {
                    server: topology.servers[c.server as usize].id.to_string(),
                    group: topology.groups[c.group as usize].id.to_string(),
                    weight: c.weight,
                    state: c.state.names().collect(),
                })
                .collect(),
        })
        .collect();
    let (status, location, reason) = match outcome {
        Outcome::Redirect(url) => (302, Some(url.clone()), None),
        Outcome::Refuse { status, reason } => (*status, None, Some(reason.to_string())),
    };
    Record {
        request_id,
        time: crate::time::now_rfc3339(),
        client: client.to_string(),
        kind: r.kind.as_str().into(),
        protocol: r.protocol.map(|p| p.as_str().into()),
        encryption: r.encryption.as_str().into(),
        target: r.target.clone(),
        query: r.query.clone().unwrap_or_default(),
        topology_version: r.topology_version,
        tiers,
        policy: decided_by.to_str().unwrap_or("?").to_string(),
        status,
        location,
        reason,
        duration_us: started.elapsed().as_secs_f64() * 1e6,
    }
}
