//! `consistent`: the nearest tier, then weighted rendezvous hashing.
//!
//! Tiers are walked as in `nearest`, but within the winning tier the edge is
//! chosen by hashing a key instead of drawing at random: by default the
//! requested channel, program or asset, so each edge caches a stable share
//! of the catalogue (Traffic Router's consistent-hash routing); with
//! `key = "client"` the client address, so a player sticks to one edge.
//! When an edge leaves, only its own keys move.
//!
//! Configuration: `key = "target" | "client"` (default `"target"`).

use edgeward_sdk::{Decision, IpAddress, Policy, Request, Tier, choose, export_policy};
use serde::Deserialize;

/// What the hash is keyed on.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Key {
    /// The channel, program or asset asked for.
    #[default]
    Target,
    /// The client address.
    Client,
}

/// Configuration of the `consistent` policy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// What the hash is keyed on.
    pub key: Key,
}

/// The policy itself.
pub struct Consistent {
    key: Key,
}

impl Policy for Consistent {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(Consistent { key: config.key })
    }

    fn select(&mut self, request: &Request, tiers: &[Tier]) -> Decision {
        let client;
        let key: &[u8] = match self.key {
            Key::Target => request.target.as_bytes(),
            Key::Client => {
                client = match request.client {
                    IpAddress::V4((a, b, c, d)) => vec![a, b, c, d],
                    IpAddress::V6(_) => request.client.to_std().to_string().into_bytes(),
                };
                &client
            }
        };
        for tier in tiers {
            // Server indices change between topology versions; weights and
            // membership rarely do. Hash on the index for speed.
            let pick =
                choose::rendezvous(key, tier.eligible(), |c| u64::from(c.server), |c| c.weight);
            if let Some(candidate) = pick {
                return Decision::Choose(candidate.server);
            }
        }
        Decision::reject(503, "no available edge server for this client")
    }
}

export_policy!(Consistent);

#[cfg(test)]
mod tests {
    use super::*;
    use edgeward_sdk::{Candidate, CandidateState, Encryption, RequestKind};

    fn request(target: &str) -> Request {
        Request {
            kind: RequestKind::Vod,
            protocol: None,
            encryption: Encryption::None,
            target: target.into(),
            query: None,
            client: IpAddress::V4((10, 0, 0, 1)),
            topology_version: 1,
            seed: 0,
            ..Request::empty()
        }
    }

    fn tier(servers: &[u32]) -> Tier {
        Tier {
            region: 0,
            region_active: true,
            subnet: None,
            distance_km: None,
            candidates: servers
                .iter()
                .map(|&server| Candidate {
                    server,
                    group: 0,
                    weight: 1,
                    state: CandidateState::all(),
                    health: None,
                })
                .collect(),
        }
    }

    fn chosen(p: &mut Consistent, target: &str, tiers: &[Tier]) -> u32 {
        match p.select(&request(target), tiers) {
            Decision::Choose(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn same_target_same_edge_and_spread_over_edges() {
        let mut p = Consistent::new(Config::default()).unwrap();
        let tiers = [tier(&[1, 2, 3])];
        let mut seen = std::collections::HashSet::new();
        for i in 0..60 {
            let t = format!("asset-{i}");
            let first = chosen(&mut p, &t, &tiers);
            assert_eq!(first, chosen(&mut p, &t, &tiers));
            seen.insert(first);
        }
        assert_eq!(seen.len(), 3);
    }
}
