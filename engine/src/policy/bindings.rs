//! Host bindings generated from `wit/` (the single source of truth), and
//! the host's side of the packed call: the request and candidate types
//! come from the contract's codec (`edgeward-codec`, the crate the SDK
//! decodes with), carrying the health module's own [`Figures`], which
//! [`pack`] turns into the contract's `health` records.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "router",
});

use crate::health::Figures;
use std::sync::Arc;

pub use edgeward::policy::host::LogLevel;
pub use edgeward::policy::types::{
    Decision, Figure, GroupInfo, Health, RegionInfo, Rejection, ServerHealth, ServerInfo,
    SubnetInfo,
};
pub use edgeward_codec::{CandidateState, Encryption, IpAddress, Protocol, Request, RequestKind};

/// An edge server that could serve a request, with its health figures.
pub type Candidate = edgeward_codec::Candidate<Arc<Figures>>;
/// The candidates of one region, in order of preference.
pub type Tier = edgeward_codec::Tier<Arc<Figures>>;

/// Packs a request and its `tiers` into the words of `policy.select`
/// (the codec's [`edgeward_codec::encode_with`]), and lists the health figures
/// of the offered servers that have any, once per server, reusing both
/// buffers.
pub fn pack(
    request: &Request,
    tiers: &[Tier],
    words: &mut Vec<u32>,
    health: &mut Vec<ServerHealth>,
) {
    health.clear();
    edgeward_codec::encode_with(request, tiers, words, |c| {
        if let Some(h) = &c.health
            && !health.iter().any(|s| s.server == c.server)
        {
            health.push(ServerHealth {
                server: c.server,
                health: Health {
                    rtt_us: h.rtt_us,
                    figures: h
                        .figures
                        .iter()
                        .map(|(name, value)| Figure {
                            name: name.clone(),
                            value: *value,
                        })
                        .collect(),
                },
            });
        }
    });
}

/// The host encodes, the SDK decodes: the two halves of the contract meet
/// here on random requests, through the real `pack` and the SDK's real
/// `select` bridge (only the canonical ABI's copy of the health list is
/// done by hand).
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Health figures as plain values, to compare both sides' types.
    type Plain = (Option<u32>, Vec<(String, f64)>);

    fn request() -> impl Strategy<Value = Request> {
        (
            0..RequestKind::ALL.len(),
            proptest::option::of(0..Protocol::ALL.len()),
            0..Encryption::ALL.len(),
            any::<String>(),
            proptest::option::of(any::<String>()),
            any::<std::net::IpAddr>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(k, p, e, target, query, ip, version, seed)| Request {
                kind: RequestKind::ALL[k],
                protocol: p.map(|p| Protocol::ALL[p]),
                encryption: Encryption::ALL[e],
                target,
                query,
                client: ip.into(),
                topology_version: version,
                seed,
            })
    }

    /// Tiers whose candidates name servers 0..8; a server's health is the
    /// same wherever it is offered (as on the engine, where it is the
    /// server's).
    fn tiers() -> impl Strategy<Value = Vec<Tier>> {
        let figures = proptest::option::of((
            proptest::option::of(any::<u32>()),
            proptest::collection::vec((any::<String>(), -1e9..1e9f64), 0..3),
        ));
        let candidate = (0..8u32, any::<u32>(), any::<u32>(), 0..16u8);
        let tier = (
            any::<u32>(),
            any::<bool>(),
            proptest::option::of(any::<u32>()),
            proptest::collection::vec(candidate, 0..6),
        );
        (
            proptest::collection::vec(figures, 8),
            proptest::collection::vec(tier, 0..5),
        )
            .prop_map(|(health, tiers)| {
                let health: Vec<Option<Arc<Figures>>> = health
                    .into_iter()
                    .map(|h| h.map(|(rtt_us, figures)| Arc::new(Figures { rtt_us, figures })))
                    .collect();
                tiers
                    .into_iter()
                    .map(|(region, region_active, subnet, candidates)| Tier {
                        region,
                        region_active,
                        subnet,
                        candidates: candidates
                            .into_iter()
                            .map(|(server, group, weight, bits)| Candidate {
                                server,
                                group,
                                weight,
                                state: CandidateState::from_bits_truncate(bits),
                                health: health[server as usize].clone(),
                            })
                            .collect(),
                    })
                    .collect()
            })
    }

    fn plain<H>(
        tiers: &[edgeward_codec::Tier<H>],
        f: impl Fn(&H) -> Plain,
    ) -> Vec<edgeward_codec::Tier<Plain>> {
        tiers
            .iter()
            .map(|t| edgeward_codec::Tier {
                region: t.region,
                region_active: t.region_active,
                subnet: t.subnet,
                candidates: t
                    .candidates
                    .iter()
                    .map(|c| edgeward_codec::Candidate {
                        server: c.server,
                        group: c.group,
                        weight: c.weight,
                        state: c.state,
                        health: c.health.as_ref().map(&f),
                    })
                    .collect(),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn what_the_host_packs_the_sdk_decodes(request in request(), tiers in tiers()) {
            let (mut words, mut health) = (Vec::new(), Vec::new());
            pack(&request, &tiers, &mut words, &mut health);
            // What the canonical ABI does with the list: the same values
            // in the guest's types.
            let guest_health: Vec<edgeward_sdk::ServerHealth> = health
                .iter()
                .map(|s| edgeward_sdk::ServerHealth {
                    server: s.server,
                    health: edgeward_sdk::Health {
                        rtt_us: s.health.rtt_us,
                        figures: s
                            .health
                            .figures
                            .iter()
                            .map(|f| edgeward_sdk::Figure { name: f.name.clone(), value: f.value })
                            .collect(),
                    },
                })
                .collect();
            let servers: Vec<u32> = health.iter().map(|s| s.server).collect();
            let mut unique = servers.clone();
            unique.dedup();
            prop_assert_eq!(servers.len(), unique.len(), "one health entry per server");

            let expected = plain(&tiers, |h| (h.rtt_us, h.figures.clone()));
            let guest_health = (!guest_health.is_empty()).then_some(guest_health);
            edgeward_sdk::abi::with_call(&words, guest_health.as_deref(), |decoded, decoded_tiers| {
                assert_eq!(decoded, &request);
                let got = plain(decoded_tiers, |h: &edgeward_sdk::Health| {
                    (h.rtt_us, h.figures.iter().map(|f| (f.name.clone(), f.value)).collect())
                });
                assert_eq!(got, expected);
                // The guest's generator is seeded with the request's seed.
                assert_eq!(
                    edgeward_sdk::host::random(),
                    edgeward_codec::SplitMix64::new(request.seed).next_u64()
                );
            });
        }
    }
}
