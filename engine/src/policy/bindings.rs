//! Host bindings generated from `wit/` (the single source of truth), and the
//! host's view of the candidates ([`Tier`], [`Candidate`]) with their packing
//! into the words `policy.select` takes.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "router",
});

pub use edgeward::policy::host::LogLevel;
pub use edgeward::policy::types::{
    CandidateState, Decision, Encryption, Figure, GroupInfo, Health, IpAddress, Protocol,
    RegionInfo, Rejection, Request, RequestKind, ServerHealth, ServerInfo, SubnetInfo,
};

/// An edge server that could serve a request.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Index of the server.
    pub server: u32,
    /// Index of the server group it was reached through.
    pub group: u32,
    /// The server's `weight`.
    pub weight: u32,
    /// Active, group active, serves the resource, available.
    pub state: CandidateState,
    /// Live health figures, when the host has any.
    pub health: Option<Health>,
}

/// The candidates of one region, in order of preference.
#[derive(Debug, Clone)]
pub struct Tier {
    /// Index of the region.
    pub region: u32,
    /// The region's `active` flag.
    pub region_active: bool,
    /// Index of the matched subnet; none for the `default_region` tier.
    pub subnet: Option<u32>,
    /// Its candidates.
    pub candidates: Vec<Candidate>,
}

/// `tier-flags` bit: the region is active.
pub const TIER_REGION_ACTIVE: u32 = 1;
/// `tier-flags` bit: the tier has a matched subnet.
pub const TIER_HAS_SUBNET: u32 = 2;

/// The `candidate-state` bits as the packed layout carries them.
pub fn state_bits(state: CandidateState) -> u32 {
    [
        CandidateState::SERVER_ACTIVE,
        CandidateState::GROUP_ACTIVE,
        CandidateState::SERVES_RESOURCE,
        CandidateState::AVAILABLE,
    ]
    .iter()
    .enumerate()
    .filter(|(_, f)| state.contains(**f))
    .fold(0, |bits, (i, _)| bits | 1 << i)
}

/// Packs `tiers` into the words of `policy.select` (see the WIT), and the
/// health figures of the servers that have any, reusing both buffers.
pub fn pack(tiers: &[Tier], words: &mut Vec<u32>, health: &mut Vec<ServerHealth>) {
    words.clear();
    health.clear();
    words.push(tiers.len() as u32);
    for t in tiers {
        let flags = if t.region_active {
            TIER_REGION_ACTIVE
        } else {
            0
        } | if t.subnet.is_some() {
            TIER_HAS_SUBNET
        } else {
            0
        };
        words.extend_from_slice(&[
            t.region,
            flags,
            t.subnet.unwrap_or(0),
            t.candidates.len() as u32,
        ]);
    }
    for t in tiers {
        for c in &t.candidates {
            words.extend_from_slice(&[c.server, c.group, c.weight, state_bits(c.state)]);
            if let Some(h) = &c.health
                && !health.iter().any(|s| s.server == c.server)
            {
                health.push(ServerHealth {
                    server: c.server,
                    health: h.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packed_layout_is_the_documented_one() {
        let all = CandidateState::all();
        let tiers = vec![
            Tier {
                region: 4,
                region_active: true,
                subnet: Some(9),
                candidates: vec![Candidate {
                    server: 1,
                    group: 2,
                    weight: 3,
                    state: CandidateState::SERVER_ACTIVE | CandidateState::AVAILABLE,
                    health: Some(Health {
                        rtt_us: Some(100),
                        figures: vec![],
                    }),
                }],
            },
            Tier {
                region: 5,
                region_active: false,
                subnet: None,
                candidates: vec![
                    Candidate {
                        server: 7,
                        group: 8,
                        weight: 0,
                        state: all,
                        health: None,
                    },
                    Candidate {
                        server: 1,
                        group: 6,
                        weight: 3,
                        state: CandidateState::empty(),
                        health: Some(Health {
                            rtt_us: Some(100),
                            figures: vec![],
                        }),
                    },
                ],
            },
        ];
        let (mut words, mut health) = (vec![99], vec![]);
        pack(&tiers, &mut words, &mut health);
        assert_eq!(
            words,
            vec![
                2, //
                4, 3, 9, 1, //
                5, 0, 0, 2, //
                1, 2, 3, 0b1001, //
                7, 8, 0, 0b1111, //
                1, 6, 3, 0,
            ]
        );
        assert_eq!(health.len(), 1, "one entry per server");
        assert_eq!(health[0].server, 1);
    }
}
