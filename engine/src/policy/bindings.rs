//! Host bindings generated from `wit/` (the single source of truth), and the
//! host's view of the candidates ([`Tier`], [`Candidate`]) with the packing
//! of a request and its candidates into the words `policy.select` takes.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "router",
});

pub use edgeward::policy::host::LogLevel;
pub use edgeward::policy::types::{
    CandidateState, Decision, Encryption, Figure, GroupInfo, Health, Protocol, RegionInfo,
    Rejection, RequestKind, ServerHealth, ServerInfo, SubnetInfo,
};

/// A client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpAddress {
    /// IPv4, as its four bytes.
    V4((u8, u8, u8, u8)),
    /// IPv6, as its eight 16-bit groups.
    V6((u16, u16, u16, u16, u16, u16, u16, u16)),
}

/// One player request, as the engine parsed it. (`policy.select` carries
/// it packed in its words; see the WIT.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Live, catch-up, VOD or static file.
    pub kind: RequestKind,
    /// Set for live and catch-up requests; none for VOD and static files.
    pub protocol: Option<Protocol>,
    /// The encryption asked for in the URL (`none` for VOD and static).
    pub encryption: Encryption,
    /// The channel `epg_id` (live), the program `epg_id` (catch-up) or the
    /// path below `/vod/` or `/static/`.
    pub target: String,
    /// The raw query string without the leading `?`; none when absent or
    /// empty.
    pub query: Option<String>,
    /// The client address (from `X-Real-IP` when the peer is a trusted
    /// proxy).
    pub client: IpAddress,
    /// Version of the topology the indices in this call refer to.
    pub topology_version: u64,
    /// This request's random seed (a shadow's call gets the primary's).
    pub seed: u64,
}

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

/// `request-flags` bit: the client address is IPv6.
pub const REQUEST_CLIENT_V6: u32 = 1 << 24;
/// `request-flags` bit: the request has a query.
pub const REQUEST_HAS_QUERY: u32 = 1 << 25;
/// Words before the target's bytes.
pub const REQUEST_HEADER_WORDS: usize = 11;

/// `tier-flags` bit: the region is active.
pub const TIER_REGION_ACTIVE: u32 = 1;
/// `tier-flags` bit: the tier has a matched subnet.
pub const TIER_HAS_SUBNET: u32 = 2;

/// The `candidate-state` bits as the packed layout carries them.
#[inline]
pub fn state_bits(state: CandidateState) -> u32 {
    u32::from(state.contains(CandidateState::SERVER_ACTIVE))
        | u32::from(state.contains(CandidateState::GROUP_ACTIVE)) << 1
        | u32::from(state.contains(CandidateState::SERVES_RESOURCE)) << 2
        | u32::from(state.contains(CandidateState::AVAILABLE)) << 3
}

/// `request-flags` of a request (see the WIT).
pub fn request_flags(request: &Request) -> u32 {
    let kind = match request.kind {
        RequestKind::Live => 0,
        RequestKind::Catchup => 1,
        RequestKind::Vod => 2,
        RequestKind::StaticFile => 3,
    };
    let protocol = match request.protocol {
        None => 0,
        Some(Protocol::Hls) => 1,
        Some(Protocol::Mpd) => 2,
    };
    let encryption = match request.encryption {
        Encryption::None => 0,
        Encryption::Widevine => 1,
        Encryption::Playready => 2,
        Encryption::Cenc => 3,
    };
    let v6 = if matches!(request.client, IpAddress::V6(_)) {
        REQUEST_CLIENT_V6
    } else {
        0
    };
    let query = if request.query.is_some() {
        REQUEST_HAS_QUERY
    } else {
        0
    };
    kind | protocol << 8 | encryption << 16 | v6 | query
}

/// Appends `bytes` four to a word, little-endian, the last word padded.
fn push_bytes(words: &mut Vec<u32>, bytes: &[u8]) {
    let mut chunks = bytes.chunks_exact(4);
    words.extend(
        chunks
            .by_ref()
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 4];
        last[..rest.len()].copy_from_slice(rest);
        words.push(u32::from_le_bytes(last));
    }
}

/// Packs a request and its `tiers` into the words of `policy.select` (see
/// the WIT), and the health figures of the servers that have any, reusing
/// both buffers.
pub fn pack(
    request: &Request,
    tiers: &[Tier],
    words: &mut Vec<u32>,
    health: &mut Vec<ServerHealth>,
) {
    words.clear();
    health.clear();
    let client = match request.client {
        IpAddress::V4((a, b, c, d)) => [u32::from_be_bytes([a, b, c, d]), 0, 0, 0],
        IpAddress::V6(s) => [
            u32::from(s.0) << 16 | u32::from(s.1),
            u32::from(s.2) << 16 | u32::from(s.3),
            u32::from(s.4) << 16 | u32::from(s.5),
            u32::from(s.6) << 16 | u32::from(s.7),
        ],
    };
    let query = request.query.as_deref().unwrap_or_default();
    words.push(request_flags(request));
    words.extend_from_slice(&client);
    words.extend_from_slice(&[
        request.topology_version as u32,
        (request.topology_version >> 32) as u32,
        request.seed as u32,
        (request.seed >> 32) as u32,
        request.target.len() as u32,
        query.len() as u32,
    ]);
    push_bytes(words, request.target.as_bytes());
    push_bytes(words, query.as_bytes());
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
        let request = Request {
            kind: RequestKind::Catchup,
            protocol: Some(Protocol::Mpd),
            encryption: Encryption::Playready,
            target: "abcde".into(),
            query: Some("q=1".into()),
            client: IpAddress::V6((0x2001, 0xdb8, 0, 0, 0, 0, 0xa, 0xb)),
            topology_version: 0x1_0000_0002,
            seed: 0x3_0000_0004,
        };
        let (mut words, mut health) = (vec![99], vec![]);
        pack(&request, &tiers, &mut words, &mut health);
        assert_eq!(
            words,
            vec![
                1 | 2 << 8 | 2 << 16 | REQUEST_CLIENT_V6 | REQUEST_HAS_QUERY,
                0x2001_0db8,
                0,
                0,
                0x000a_000b,
                2,
                1,
                4,
                3,
                5,
                3,
                u32::from_le_bytes(*b"abcd"),
                u32::from_le_bytes(*b"e\0\0\0"),
                u32::from_le_bytes(*b"q=1\0"),
                2, //
                4,
                3,
                9,
                1, //
                5,
                0,
                0,
                2, //
                1,
                2,
                3,
                0b1001, //
                7,
                8,
                0,
                0b1111, //
                1,
                6,
                3,
                0,
            ]
        );
        assert_eq!(health.len(), 1, "one entry per server");
        assert_eq!(health[0].server, 1);

        // IPv4, no protocol, no query, a target of whole words.
        let request = Request {
            kind: RequestKind::Vod,
            protocol: None,
            encryption: Encryption::None,
            target: "abcd".into(),
            query: None,
            client: IpAddress::V4((10, 1, 2, 3)),
            topology_version: 7,
            seed: 9,
        };
        pack(&request, &[], &mut words, &mut health);
        assert_eq!(
            words,
            vec![
                2,
                0x0a01_0203,
                0,
                0,
                0,
                7,
                0,
                9,
                0,
                4,
                0,
                u32::from_le_bytes(*b"abcd"),
                0
            ]
        );
        assert_eq!(words.len(), REQUEST_HEADER_WORDS + 2);
    }
}
