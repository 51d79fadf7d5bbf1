//! The packed call of `policy.select` (WIT `edgeward:policy@0.3.0`),
//! written once for both sides of the contract: the engine [`encode`]s a
//! request and its candidate tiers into 32-bit words, a policy (through
//! the SDK) decodes them with [`Decoded`]. The WIT documents the layout;
//! this crate is its only implementation, so the two sides cannot drift.
//!
//! Why words and not WIT records: a record per candidate costs the host a
//! store per field and a call into the guest's allocator per list; one
//! `list<u32>` is copied into the guest's memory in one go (see the WIT).
//!
//! Also here, because both sides must agree on them bit for bit: the
//! numbering of the enums ([`RequestKind`], [`Protocol`], [`Encryption`])
//! and of the [`CandidateState`] bits, and the [`SplitMix64`] generator
//! that `host.random` and the SDK's in-guest `random` both draw from.
//!
//! Candidates carry health figures of a type chosen by each side (`H`):
//! the engine's own, the SDK's WIT record. They do not travel in the words
//! (`select` takes them as a separate list), so the codec only carries
//! them through.

use std::net::IpAddr;

/// What kind of stream the player asked for (the WIT's `request-kind`;
/// its number in the words is its case number in declaration order).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `/btv/live/...`: a live channel.
    Live,
    /// `/btv/catchup/...`: a recorded program.
    Catchup,
    /// `/vod/...`: a video-on-demand asset.
    Vod,
    /// `/static/...`: a static file.
    StaticFile,
}

/// Streaming protocol of a live or catch-up request.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP Live Streaming (`.m3u8`).
    Hls,
    /// MPEG-DASH (`.mpd`).
    Mpd,
}

/// Encryption the player asked for.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encryption {
    /// Clear stream.
    None,
    /// Widevine (`_wv`).
    Widevine,
    /// PlayReady (`_pr`).
    Playready,
    /// Common encryption (`_cenc`).
    Cenc,
}

bitflags::bitflags! {
    /// Facts about one candidate (the WIT's `candidate-state`; the bits
    /// in declaration order).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct CandidateState: u8 {
        /// The server's `active` flag.
        const SERVER_ACTIVE = 1;
        /// The `active` flag of the server group the candidate comes from.
        const GROUP_ACTIVE = 1 << 1;
        /// The group serves the requested channel (always set for
        /// VOD/static, and for groups that list no channels).
        const SERVES_RESOURCE = 1 << 2;
        /// Health checking considers the server available (set when the
        /// host has no health data for it).
        const AVAILABLE = 1 << 3;
    }
}

/// `Type::Case`, as the WIT bindings print them (policies that log or
/// echo these with `{:?}` keep their output).
macro_rules! debug_as_bindings {
    ($t:ident { $($case:ident),* }) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    $($t::$case => f.write_str(concat!(stringify!($t), "::", stringify!($case))),)*
                }
            }
        }
    };
}
debug_as_bindings!(RequestKind {
    Live,
    Catchup,
    Vod,
    StaticFile
});
debug_as_bindings!(Protocol { Hls, Mpd });
debug_as_bindings!(Encryption {
    None,
    Widevine,
    Playready,
    Cenc
});

impl RequestKind {
    /// Every kind, in declaration (wire) order.
    pub const ALL: [RequestKind; 4] = [
        RequestKind::Live,
        RequestKind::Catchup,
        RequestKind::Vod,
        RequestKind::StaticFile,
    ];

    /// The WIT name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RequestKind::Live => "live",
            RequestKind::Catchup => "catchup",
            RequestKind::Vod => "vod",
            RequestKind::StaticFile => "static-file",
        }
    }
}

impl Protocol {
    /// Every protocol, in declaration (wire) order.
    pub const ALL: [Protocol; 2] = [Protocol::Hls, Protocol::Mpd];

    /// The WIT name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Hls => "hls",
            Protocol::Mpd => "mpd",
        }
    }
}

impl Encryption {
    /// Every encryption, in declaration (wire) order.
    pub const ALL: [Encryption; 4] = [
        Encryption::None,
        Encryption::Widevine,
        Encryption::Playready,
        Encryption::Cenc,
    ];

    /// The WIT name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Encryption::None => "none",
            Encryption::Widevine => "widevine",
            Encryption::Playready => "playready",
            Encryption::Cenc => "cenc",
        }
    }
}

impl CandidateState {
    /// Each flag with its WIT name, in declaration order.
    pub const NAMED: [(CandidateState, &'static str); 4] = [
        (CandidateState::SERVER_ACTIVE, "server-active"),
        (CandidateState::GROUP_ACTIVE, "group-active"),
        (CandidateState::SERVES_RESOURCE, "serves-resource"),
        (CandidateState::AVAILABLE, "available"),
    ];

    /// The WIT names of the flags that are set.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMED
            .into_iter()
            .filter(move |(flag, _)| self.contains(*flag))
            .map(|(_, name)| name)
    }
}

/// A client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpAddress {
    /// IPv4, as its four bytes.
    V4((u8, u8, u8, u8)),
    /// IPv6, as its eight 16-bit groups.
    V6((u16, u16, u16, u16, u16, u16, u16, u16)),
}

impl IpAddress {
    /// The address as a standard library value.
    pub fn to_std(&self) -> IpAddr {
        match *self {
            IpAddress::V4((a, b, c, d)) => std::net::Ipv4Addr::new(a, b, c, d).into(),
            IpAddress::V6((a, b, c, d, e, f, g, h)) => {
                std::net::Ipv6Addr::new(a, b, c, d, e, f, g, h).into()
            }
        }
    }
}

impl From<IpAddr> for IpAddress {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => {
                let [a, b, c, d] = a.octets();
                IpAddress::V4((a, b, c, d))
            }
            IpAddr::V6(a) => {
                let [a, b, c, d, e, f, g, h] = a.segments();
                IpAddress::V6((a, b, c, d, e, f, g, h))
            }
        }
    }
}

/// One player request, as the engine parsed it.
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
    /// This request's random seed: `host.random` (and the SDK's `random`)
    /// draw from a [`SplitMix64`] seeded with it. The engine seeds a
    /// shadow's call like the primary's.
    pub seed: u64,
}

impl Request {
    /// An empty request (a live request for no target from `0.0.0.0`):
    /// what decoding buffers start as.
    pub const fn empty() -> Self {
        Request {
            kind: RequestKind::Live,
            protocol: None,
            encryption: Encryption::None,
            target: String::new(),
            query: None,
            client: IpAddress::V4((0, 0, 0, 0)),
            topology_version: 0,
            seed: 0,
        }
    }
}

/// An edge server that could serve a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<H> {
    /// Index of the server.
    pub server: u32,
    /// Index of the server group it was reached through.
    pub group: u32,
    /// The server's `weight` (0 means "never draw at random").
    pub weight: u32,
    /// Active, group active, serves the resource, available.
    pub state: CandidateState,
    /// Live health figures, when the engine has any.
    pub health: Option<H>,
}

/// The candidates of one region, in the order of preference the topology
/// implies: one tier per matched subnet (longest prefix first), then the
/// `default_region` tier. A region already offered by an earlier tier is
/// not repeated.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier<H> {
    /// Index of the region.
    pub region: u32,
    /// The region's `active` flag.
    pub region_active: bool,
    /// Index of the matched subnet; none for the `default_region` tier.
    pub subnet: Option<u32>,
    /// Its candidates.
    pub candidates: Vec<Candidate<H>>,
}

impl<H> Candidate<H> {
    /// Active, in an active group that serves the resource, and available
    /// according to health checking. (The region's own `active` flag is on
    /// the [`Tier`].)
    #[inline]
    pub fn is_eligible(&self) -> bool {
        self.state.contains(CandidateState::all())
    }
}

impl<H> Tier<H> {
    /// The eligible candidates of this tier: none when the region is
    /// inactive, else those for which [`Candidate::is_eligible`] holds.
    pub fn eligible(&self) -> impl Iterator<Item = &Candidate<H>> + Clone {
        let candidates = if self.region_active {
            &self.candidates[..]
        } else {
            &[]
        };
        candidates.iter().filter(|c| c.is_eligible())
    }
}

/// `request-flags`: bits 0-7 the kind.
const KIND_SHIFT: u32 = 0;
/// `request-flags`: bits 8-15 the protocol plus one (0: none).
const PROTOCOL_SHIFT: u32 = 8;
/// `request-flags`: bits 16-23 the encryption.
const ENCRYPTION_SHIFT: u32 = 16;
/// `request-flags` bit: the client address is IPv6.
pub const REQUEST_CLIENT_V6: u32 = 1 << 24;
/// `request-flags` bit: the request has a query.
pub const REQUEST_HAS_QUERY: u32 = 1 << 25;
/// Words before the target's bytes.
pub const REQUEST_HEADER_WORDS: usize = 11;
/// Words of a tier header: region, tier-flags, subnet, candidate count.
pub const TIER_WORDS: usize = 4;
/// Words of a candidate: server, group, weight, state.
pub const CANDIDATE_WORDS: usize = 4;
/// `tier-flags` bit: the region is active.
pub const TIER_REGION_ACTIVE: u32 = 1;
/// `tier-flags` bit: the tier has a matched subnet.
pub const TIER_HAS_SUBNET: u32 = 2;

/// `request-flags` of a request (see the WIT).
#[inline]
pub fn request_flags(request: &Request) -> u32 {
    let protocol = request.protocol.map_or(0, |p| p as u32 + 1);
    let mut flags = (request.kind as u32) << KIND_SHIFT
        | protocol << PROTOCOL_SHIFT
        | (request.encryption as u32) << ENCRYPTION_SHIFT;
    if matches!(request.client, IpAddress::V6(_)) {
        flags |= REQUEST_CLIENT_V6;
    }
    if request.query.is_some() {
        flags |= REQUEST_HAS_QUERY;
    }
    flags
}

/// Packs a request and its `tiers` into the words of `policy.select` (see
/// the WIT), replacing what `words` held and keeping its capacity.
pub fn encode<H>(request: &Request, tiers: &[Tier<H>], words: &mut Vec<u32>) {
    encode_with(request, tiers, words, |_| {});
}

/// [`encode`], showing each candidate to `each` as it is packed (the
/// engine gathers the health list in the same pass).
#[inline]
pub fn encode_with<H>(
    request: &Request,
    tiers: &[Tier<H>],
    words: &mut Vec<u32>,
    mut each: impl FnMut(&Candidate<H>),
) {
    words.clear();
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
        let mut flags = 0;
        if t.region_active {
            flags |= TIER_REGION_ACTIVE;
        }
        if t.subnet.is_some() {
            flags |= TIER_HAS_SUBNET;
        }
        words.extend_from_slice(&[
            t.region,
            flags,
            t.subnet.unwrap_or(0),
            t.candidates.len() as u32,
        ]);
    }
    for t in tiers {
        for c in &t.candidates {
            words.extend_from_slice(&[c.server, c.group, c.weight, u32::from(c.state.bits())]);
            each(c);
        }
    }
}

/// Appends `bytes` four to a word, little-endian, the last word padded.
#[inline]
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

/// What a `select` call decodes into, reused call after call: the strings
/// and vectors keep their capacity, so a warm policy allocates nothing to
/// read its input.
#[derive(Debug)]
pub struct Decoded<H> {
    /// The request.
    pub request: Request,
    /// The tiers.
    pub tiers: Vec<Tier<H>>,
    /// The query's buffer while the request has none.
    spare_query: String,
}

impl<H> Default for Decoded<H> {
    fn default() -> Self {
        Decoded::new()
    }
}

impl<H> Decoded<H> {
    /// Empty buffers.
    pub const fn new() -> Self {
        Decoded {
            request: Request::empty(),
            tiers: Vec::new(),
            spare_query: String::new(),
        }
    }

    /// Decodes the words of a `select` call; `health_of(server)` gives the
    /// health figures of an offered server (from `select`'s second
    /// argument). Malformed input (it comes from the engine, so this is
    /// defence only) decodes what fits.
    pub fn decode(&mut self, words: &[u32], health_of: impl FnMut(u32) -> Option<H>) {
        let rest = self.decode_request(words);
        decode_tiers(rest, &mut self.tiers, health_of);
    }

    /// Decodes the request part of `words`; returns the words after it.
    fn decode_request<'w>(&mut self, words: &'w [u32]) -> &'w [u32] {
        let Some((header, rest)) = words.split_first_chunk::<REQUEST_HEADER_WORDS>() else {
            self.request.target.clear();
            if let Some(q) = self.request.query.take() {
                self.spare_query = q;
            }
            return &[];
        };
        let r = &mut self.request;
        let flags = header[0];
        let byte = |shift: u32| ((flags >> shift) & 0xff) as usize;
        r.kind = RequestKind::ALL
            .get(byte(KIND_SHIFT))
            .copied()
            .unwrap_or(RequestKind::Live);
        r.protocol = byte(PROTOCOL_SHIFT)
            .checked_sub(1)
            .and_then(|p| Protocol::ALL.get(p).copied());
        r.encryption = Encryption::ALL
            .get(byte(ENCRYPTION_SHIFT))
            .copied()
            .unwrap_or(Encryption::None);
        r.client = if flags & REQUEST_CLIENT_V6 != 0 {
            let h = |w: u32| (w >> 16) as u16;
            let l = |w: u32| w as u16;
            let [a, b, c, d] = [header[1], header[2], header[3], header[4]];
            IpAddress::V6((h(a), l(a), h(b), l(b), h(c), l(c), h(d), l(d)))
        } else {
            let [a, b, c, d] = header[1].to_be_bytes();
            IpAddress::V4((a, b, c, d))
        };
        r.topology_version = u64::from(header[5]) | u64::from(header[6]) << 32;
        r.seed = u64::from(header[7]) | u64::from(header[8]) << 32;
        let rest = read_string(rest, header[9] as usize, &mut r.target);
        let mut query = r
            .query
            .take()
            .unwrap_or_else(|| std::mem::take(&mut self.spare_query));
        let rest = read_string(rest, header[10] as usize, &mut query);
        if flags & REQUEST_HAS_QUERY != 0 {
            r.query = Some(query);
        } else {
            self.spare_query = query;
        }
        rest
    }
}

/// Reads `len` bytes packed four to a word into `out` (replacing its
/// text, keeping its buffer); returns the words after them. Bytes that are
/// not UTF-8 (they cannot be: the engine sends Rust strings) are replaced.
#[inline]
fn read_string<'w>(words: &'w [u32], len: usize, out: &mut String) -> &'w [u32] {
    if len == 0 {
        out.clear();
        return words;
    }
    let count = len.div_ceil(4).min(words.len());
    let mut bytes = std::mem::take(out).into_bytes();
    bytes.clear();
    bytes.extend(words[..count].iter().flat_map(|w| w.to_le_bytes()));
    bytes.truncate(len);
    *out = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    &words[count..]
}

/// Decodes the tier part of the words into `tiers` (reusing its vectors).
/// Malformed input stops decoding at the first word that does not fit.
pub fn decode_tiers<H>(
    words: &[u32],
    tiers: &mut Vec<Tier<H>>,
    mut health_of: impl FnMut(u32) -> Option<H>,
) {
    let count = words.first().copied().unwrap_or(0) as usize;
    let headers = words.get(1..).unwrap_or_default();
    let count = count.min(headers.len() / TIER_WORDS);
    tiers.truncate(count);
    while tiers.len() < count {
        tiers.push(Tier {
            region: 0,
            region_active: false,
            subnet: None,
            candidates: Vec::new(),
        });
    }
    let mut rest = &headers[count * TIER_WORDS..];
    for (tier, h) in tiers.iter_mut().zip(headers.chunks_exact(TIER_WORDS)) {
        tier.region = h[0];
        tier.region_active = h[1] & TIER_REGION_ACTIVE != 0;
        tier.subnet = (h[1] & TIER_HAS_SUBNET != 0).then_some(h[2]);
        let n = (h[3] as usize).min(rest.len() / CANDIDATE_WORDS);
        tier.candidates.clear();
        for c in rest[..n * CANDIDATE_WORDS].chunks_exact(CANDIDATE_WORDS) {
            tier.candidates.push(Candidate {
                server: c[0],
                group: c[1],
                weight: c[2],
                state: CandidateState::from_bits_truncate(c[3] as u8),
                health: health_of(c[0]),
            });
        }
        rest = &rest[n * CANDIDATE_WORDS..];
    }
}

/// The generator behind `host.random`, seeded with each request's seed:
/// SplitMix64 (Steele, Lea and Flood), small, fast and the same on both
/// sides, so a policy draws the host's numbers without calling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub const fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            kind: RequestKind::Catchup,
            protocol: Some(Protocol::Mpd),
            encryption: Encryption::Playready,
            target: "abcde".into(),
            query: Some("q=1".into()),
            client: IpAddress::V6((0x2001, 0xdb8, 0, 0, 0, 0, 0xa, 0xb)),
            topology_version: 0x1_0000_0002,
            seed: 0x3_0000_0004,
        }
    }

    fn candidate(server: u32, group: u32, weight: u32, state: CandidateState) -> Candidate<u8> {
        Candidate {
            server,
            group,
            weight,
            state,
            health: None,
        }
    }

    /// The words of the WIT's documented example, written out by hand:
    /// the one place the layout is spelled as numbers.
    #[test]
    fn the_packed_layout_is_the_documented_one() {
        let tiers = vec![
            Tier {
                region: 4,
                region_active: true,
                subnet: Some(9),
                candidates: vec![candidate(
                    1,
                    2,
                    3,
                    CandidateState::SERVER_ACTIVE | CandidateState::AVAILABLE,
                )],
            },
            Tier {
                region: 5,
                region_active: false,
                subnet: None,
                candidates: vec![
                    candidate(7, 8, 0, CandidateState::all()),
                    candidate(1, 6, 3, CandidateState::empty()),
                ],
            },
        ];
        let mut words = vec![99];
        encode(&request(), &tiers, &mut words);
        #[rustfmt::skip]
        let expected = vec![
            1 | 2 << 8 | 2 << 16 | REQUEST_CLIENT_V6 | REQUEST_HAS_QUERY,
            0x2001_0db8, 0, 0, 0x000a_000b,
            2, 1, 4, 3,
            5, 3,
            u32::from_le_bytes(*b"abcd"), u32::from_le_bytes(*b"e\0\0\0"),
            u32::from_le_bytes(*b"q=1\0"),
            2,
            4, 3, 9, 1,
            5, 0, 0, 2,
            1, 2, 3, 0b1001,
            7, 8, 0, 0b1111,
            1, 6, 3, 0,
        ];
        assert_eq!(words, expected);

        let mut d = Decoded::<u8>::new();
        d.decode(&words, |s| (s == 1).then_some(42));
        assert_eq!(d.request, request());
        let mut expected_tiers = tiers;
        expected_tiers[0].candidates[0].health = Some(42);
        expected_tiers[1].candidates[1].health = Some(42);
        assert_eq!(d.tiers, expected_tiers);

        // IPv4, no protocol, no query, a target of whole words.
        let vod = Request {
            kind: RequestKind::Vod,
            protocol: None,
            encryption: Encryption::None,
            target: "abcd".into(),
            query: None,
            client: IpAddress::V4((10, 1, 2, 3)),
            topology_version: 7,
            seed: 9,
        };
        encode::<u8>(&vod, &[], &mut words);
        #[rustfmt::skip]
        let expected = vec![2, 0x0a01_0203, 0, 0, 0, 7, 0, 9, 0, 4, 0, u32::from_le_bytes(*b"abcd"), 0];
        assert_eq!(words, expected);
        assert_eq!(words.len(), REQUEST_HEADER_WORDS + 2);
    }

    #[test]
    fn decoding_reuses_its_buffers_and_survives_garbage() {
        let mut d = Decoded::<u8>::new();
        let mut words = Vec::new();
        encode::<u8>(&request(), &[], &mut words);
        d.decode(&words, |_| None);
        let vod = Request {
            kind: RequestKind::Vod,
            protocol: None,
            encryption: Encryption::None,
            target: "wxyz".into(),
            query: None,
            client: IpAddress::V4((10, 1, 2, 3)),
            topology_version: 7,
            seed: 9,
        };
        encode::<u8>(&vod, &[], &mut words);
        let target = d.request.target.as_ptr();
        d.decode(&words, |_| None);
        assert_eq!(d.request, vod);
        assert_eq!(d.request.target.as_ptr(), target, "the buffer is reused");

        // Truncated input decodes what fits.
        d.decode(&words[..12], |_| None);
        assert_eq!(d.request.target, "wxyz");
        d.decode(&words[..3], |_| None);
        assert_eq!(d.request.target, "");
        let bad = [0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0xffff];
        d.decode(&bad, |_| None);
        assert_eq!(d.request.target, "\u{fffd}\u{fffd}");

        let mut tiers = Vec::new();
        decode_tiers::<u8>(&[1, 0, 1, 0, 0], &mut tiers, |_| None);
        assert_eq!(tiers.len(), 1);
        assert!(tiers[0].candidates.is_empty());
        decode_tiers::<u8>(&[5, 1, 1, 0, 9, 3], &mut tiers, |_| None);
        assert_eq!(tiers.len(), 1, "one whole tier header");
        decode_tiers::<u8>(&[1, 1, 1, 0, 9, 3, 4, 5], &mut tiers, |_| None);
        assert!(
            tiers[0].candidates.is_empty(),
            "a partial candidate is dropped"
        );
        decode_tiers::<u8>(&[], &mut tiers, |_| None);
        assert!(tiers.is_empty());
    }

    #[test]
    fn splitmix64_gives_the_reference_sequence() {
        // The first outputs for seed 0 of the reference implementation
        // (Vigna's splitmix64.c).
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(g.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(g.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn names_follow_the_wit() {
        assert_eq!(RequestKind::StaticFile.as_str(), "static-file");
        assert_eq!(format!("{:?}", Some(Protocol::Mpd)), "Some(Protocol::Mpd)");
        let s = CandidateState::SERVER_ACTIVE | CandidateState::AVAILABLE;
        assert_eq!(
            s.names().collect::<Vec<_>>(),
            ["server-active", "available"]
        );
        assert_eq!(
            IpAddress::from("2001:db8::a:b".parse::<IpAddr>().unwrap()).to_std(),
            "2001:db8::a:b".parse::<IpAddr>().unwrap()
        );
    }
}
