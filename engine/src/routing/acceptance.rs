//! The acceptance check a policy passes before it may serve: run it on
//! sample requests against the current topology. The samples cover every
//! request kind and a spread of client addresses (several matched subnets,
//! IPv4 and IPv6, and an address that matches none). A policy that traps,
//! runs out of time or gives an answer the engine would refuse on any of
//! them is refused.

use super::Outcome;
use super::answer;
use super::candidates::prepare;
use super::url::{self, Route};
use crate::health::ServersHealth;
use crate::policy::{LoadedPolicy, PolicyError, PolicyHost};
use crate::topology::{Encryption, Protocol, RecordStatus, Topology};
use std::net::IpAddr;
use std::sync::Arc;

/// At most this many subnets are sampled.
const SUBNETS: usize = 6;

/// One sample request and what the policy answered.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SampleResult {
    /// Client address.
    pub client: String,
    /// Request path (and query).
    pub path: String,
    /// Status the engine would answer.
    pub status: u16,
    /// `Location`, or the rejection reason.
    pub answer: String,
}

/// Why a policy failed the acceptance check.
#[derive(Debug, thiserror::Error)]
#[error("policy failed sample request {path} from {client}: {reason}")]
pub struct AcceptanceError {
    /// The sample's client.
    pub client: String,
    /// The sample's path.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

/// The sample requests for a topology: `(client, path)` pairs.
pub fn samples(topology: &Topology) -> Vec<(IpAddr, String)> {
    let mut clients: Vec<IpAddr> = topology
        .subnets
        .iter()
        .take(SUBNETS)
        .map(|(_, s)| s.net.hosts().next().unwrap_or(s.net.addr()))
        .collect();
    if let Some((_, v6)) = topology
        .subnets
        .iter()
        .find(|(_, s)| s.net.addr().is_ipv6())
    {
        clients.push(v6.net.hosts().next().unwrap_or(v6.net.addr()));
    }
    clients.push("198.51.100.77".parse().unwrap());
    clients.push("2001:db8:ffff::77".parse().unwrap());

    let mut paths = Vec::new();
    if let Some(ch) = topology
        .channels
        .iter()
        .find(|c| c.active && c.streams.iter().any(|s| s.active))
    {
        for s in ch.streams.iter().filter(|s| s.active).take(2) {
            paths.push(format!(
                "/btv/live/{}/{}",
                spec(s.protocol, s.encryption),
                ch.epg_id
            ));
        }
    }
    if let Some((p, r)) = topology.programs.iter().find_map(|p| {
        p.records
            .iter()
            .find(|r| r.status == RecordStatus::Completed)
            .map(|r| (p, r))
    }) {
        paths.push(format!(
            "/btv/catchup/{}/{}",
            spec(r.protocol, r.encryption),
            p.epg_id
        ));
    }
    paths.push("/vod/acceptance/sample.mp4?token=t".into());
    paths.push("/static/acceptance.png".into());

    clients
        .iter()
        .flat_map(|c| paths.iter().map(move |p| (*c, p.clone())))
        .collect()
}

fn spec(p: Protocol, e: Encryption) -> String {
    let proto = match p {
        Protocol::Hls => "hls",
        Protocol::Mpd => "mpd",
    };
    let suffix = match e {
        Encryption::None => "",
        Encryption::Widevine => "_wv",
        Encryption::Playready => "_pr",
        Encryption::Cenc => "_cenc",
    };
    format!("{proto}{suffix}")
}

/// Runs `policy` on every sample of `topology` in a fresh instance.
pub fn check(
    host: &PolicyHost,
    policy: &Arc<LoadedPolicy>,
    topology: &Arc<Topology>,
    health: &ServersHealth,
) -> Result<Vec<SampleResult>, AcceptanceError> {
    let mut instance = host.instantiate(policy).map_err(|e| AcceptanceError {
        client: "-".into(),
        path: "-".into(),
        reason: e.to_string(),
    })?;
    let mut results = Vec::new();
    for (i, (client, full_path)) in samples(topology).into_iter().enumerate() {
        let (path, query) = match full_path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (full_path.as_str(), None),
        };
        let route: Route<'_> = url::parse(path).expect("samples are well-formed");
        let fail = |reason: String| AcceptanceError {
            client: client.to_string(),
            path: full_path.clone(),
            reason,
        };
        let outcome = match prepare(topology, health, &route, query, client, Default::default()) {
            Err(outcome) => outcome,
            Ok(mut prepared) => {
                prepared.request.seed = i as u64;
                let decision = instance
                    .select(topology, &prepared.request, &prepared.tiers)
                    .map_err(|e| fail(e.to_string()))?;
                answer::check(topology, &prepared, decision).map_err(|why| fail(why.to_string()))?
            }
        };
        let (status, answer) = match outcome {
            Outcome::Redirect(url) => (302, url),
            Outcome::Refuse { status, reason } => (status, reason.into_owned()),
            other => (other.status(), String::new()),
        };
        results.push(SampleResult {
            client: client.to_string(),
            path: full_path.clone(),
            status,
            answer,
        });
    }
    Ok(results)
}

/// [`check`], its failure as the policy's refusal.
pub fn accept(
    host: &PolicyHost,
    policy: &Arc<LoadedPolicy>,
    topology: &Arc<Topology>,
    health: &ServersHealth,
) -> Result<Vec<SampleResult>, PolicyError> {
    check(host, policy, topology, health).map_err(|e| PolicyError::Samples {
        name: policy.name.clone(),
        message: e.to_string(),
    })
}
