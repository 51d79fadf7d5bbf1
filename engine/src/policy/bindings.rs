//! Host bindings generated from `wit/` (the single source of truth), for
//! the contract the SDK builds (0.4.0) and the one before it (0.3.0,
//! `wit/0.3.0/`, which the engine keeps loading), and the host's side of
//! the packed call: the request and candidate types come from the
//! contract's codec (`edgeward-codec`, the crate the SDK decodes with),
//! carrying the health module's own [`Figures`], which [`pack`] turns into
//! the contract's `health` records.
#![allow(missing_docs)]

/// `edgeward:policy@0.4.0`, the current contract.
pub mod v0_4 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "router",
    });
}

/// `edgeward:policy@0.3.0`: policies built before 0.4.0. Its types are
/// turned into 0.4.0's at the boundary ([`from_v0_3`], and the host
/// functions in [`super::state`]).
pub mod v0_3 {
    wasmtime::component::bindgen!({
        path: "../wit/0.3.0",
        world: "router",
    });
}

use crate::health::Figures;
use std::sync::Arc;

pub use edgeward_codec::{
    AnonymousIp, CandidateState, Contract, Coordinates, Country, Encryption, Geo, Headers,
    IpAddress, PathwayOffer, Protocol, Request, RequestKind,
};
pub use v0_4::edgeward::policy::host::LogLevel;
pub use v0_4::edgeward::policy::types::{
    Decision, Figure, GroupInfo, Health, Manifest, PathwayInfo, RegionInfo, Rejection,
    ServerHealth, ServerInfo, SteerDecision, Steering, SubnetInfo,
};

/// An edge server that could serve a request, with its health figures.
pub type Candidate = edgeward_codec::Candidate<Arc<Figures>>;
/// The candidates of one region, in order of preference.
pub type Tier = edgeward_codec::Tier<Arc<Figures>>;

/// What 0.3.0 types become in 0.4.0's terms.
pub mod from_v0_3 {
    use super::v0_3::edgeward::policy::{host as old_host, types as old};
    use super::{Decision, LogLevel, Rejection};

    /// A 0.3.0 log level (the same cases).
    pub fn level(l: old_host::LogLevel) -> LogLevel {
        match l {
            old_host::LogLevel::Trace => LogLevel::Trace,
            old_host::LogLevel::Debug => LogLevel::Debug,
            old_host::LogLevel::Info => LogLevel::Info,
            old_host::LogLevel::Warn => LogLevel::Warn,
            old_host::LogLevel::Error => LogLevel::Error,
        }
    }

    /// A 0.3.0 decision as a 0.4.0 one (the same cases).
    pub fn decision(d: old::Decision) -> Decision {
        match d {
            old::Decision::Choose(s) => Decision::Choose(s),
            old::Decision::Reject(r) => Decision::Reject(Rejection {
                status: r.status,
                reason: r.reason,
            }),
            old::Decision::Redirect(url) => Decision::Redirect(url),
        }
    }
}

/// What 0.4.0 host answers become for a 0.3.0 policy (the fields it
/// knows).
pub mod to_v0_3 {
    use super::v0_3::edgeward::policy::types as old;
    use super::{GroupInfo, RegionInfo, ServerInfo, SubnetInfo};

    pub fn server(s: ServerInfo) -> old::ServerInfo {
        old::ServerInfo {
            id: s.id,
            host: s.host,
            port: s.port,
            weight: s.weight,
            active: s.active,
        }
    }

    pub fn region(r: RegionInfo) -> old::RegionInfo {
        old::RegionInfo {
            id: r.id,
            name: r.name,
            active: r.active,
        }
    }

    pub fn group(g: GroupInfo) -> old::GroupInfo {
        old::GroupInfo {
            id: g.id,
            active: g.active,
        }
    }

    pub fn subnet(s: SubnetInfo) -> old::SubnetInfo {
        old::SubnetInfo {
            cidr: s.cidr,
            name: s.name,
            region: s.region,
        }
    }
}

/// Packs a request and its `tiers` into the words of `policy.select` for
/// a policy of `contract` (the codec's [`edgeward_codec::encode_with`]),
/// and lists the health figures of the offered servers that have any,
/// once per server, reusing both buffers.
pub fn pack(
    contract: Contract,
    request: &Request,
    tiers: &[Tier],
    words: &mut Vec<u32>,
    health: &mut Vec<ServerHealth>,
) {
    health.clear();
    edgeward_codec::encode_with(contract, request, tiers, words, |c| {
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
            (any::<bool>(), geo(), headers()),
        )
            .prop_map(
                |(k, p, e, target, query, ip, version, seed, (tls, geo, headers))| Request {
                    kind: RequestKind::ALL[k],
                    protocol: p.map(|p| Protocol::ALL[p]),
                    encryption: Encryption::ALL[e],
                    target,
                    query,
                    client: ip.into(),
                    topology_version: version,
                    seed,
                    tls,
                    geo,
                    headers,
                },
            )
    }

    /// The names every generated request's headers are declared under.
    const HEADER_NAMES: [&str; 3] = ["user-agent", "x-token", "accept"];

    fn headers() -> impl Strategy<Value = Headers> {
        proptest::collection::vec(proptest::option::of(any::<String>()), 3).prop_map(|values| {
            let mut h = Headers::declared(HEADER_NAMES);
            for (i, v) in values.iter().enumerate() {
                h.set(i, v.as_deref());
            }
            h
        })
    }

    fn geo() -> impl Strategy<Value = Geo> {
        (
            proptest::option::of("[A-Z]{2}"),
            proptest::option::of(1..u32::MAX),
            proptest::option::of((-90.0..90.0f32, -180.0..180.0f32)),
            0..64u8,
        )
            .prop_map(|(country, asn, location, anonymous)| Geo {
                country: country.and_then(|c| Country::new(&c)),
                asn,
                location: location.map(|(la, lo)| Coordinates {
                    latitude: f64::from(la),
                    longitude: f64::from(lo),
                }),
                anonymous: AnonymousIp::from_bits_truncate(anonymous),
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
                        distance_km: None,
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
                distance_km: t.distance_km,
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
            pack(Contract::V0_4, &request, &tiers, &mut words, &mut health);
            edgeward_sdk::abi::declare_headers(HEADER_NAMES.map(String::from).to_vec());
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

    /// A steering poll the host packs is what the SDK's `steer` bridge
    /// hands the policy.
    #[test]
    fn what_the_host_packs_for_steer_the_sdk_decodes() {
        let request = Request {
            kind: RequestKind::Live,
            protocol: Some(Protocol::Hls),
            target: "ch1".into(),
            query: Some("_HLS_pathway=a&_HLS_throughput=5000000".into()),
            tls: true,
            ..Request::empty()
        };
        let tiers: Vec<Tier> = vec![edgeward_codec::Tier {
            region: 2,
            region_active: true,
            subnet: None,
            distance_km: Some(300),
            candidates: Vec::new(),
        }];
        let pathways = [PathwayOffer {
            pathway: 1,
            current: true,
            clone: false,
            tier: Some(0),
            edges_up: 3,
            edges_total: 4,
            throughput_kbps: Some(5_000),
        }];
        let mut words = Vec::new();
        edgeward_codec::encode_steer(&request, &tiers, &pathways, &mut words);
        edgeward_sdk::abi::declare_headers(Vec::new());
        edgeward_sdk::abi::with_steer(&words, b"state", |poll| {
            assert_eq!(poll.request, &request);
            assert_eq!(poll.pathways, &pathways);
            assert_eq!(poll.state, b"state");
            assert_eq!(poll.tiers.len(), 1);
            assert_eq!(poll.tiers[0].distance_km, Some(300));
        });
    }
}
