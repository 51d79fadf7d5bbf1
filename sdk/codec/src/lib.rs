//! The packed calls of `policy.select` and `policy.steer` (WIT
//! `edgeward:policy@0.4.0`, and the words of 0.3.0, which are a subset),
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

/// `NAMED` (each flag with its WIT name, in declaration order) and
/// `names()` (the WIT names of the flags that are set) for a WIT `flags`.
macro_rules! wit_flag_names {
    ($t:ident [$n:literal] { $($flag:ident => $name:literal),* $(,)? }) => {
        impl $t {
            /// Each flag with its WIT name, in declaration order.
            pub const NAMED: [($t, &'static str); $n] = [$(($t::$flag, $name)),*];

            /// The WIT names of the flags that are set.
            pub fn names(self) -> impl Iterator<Item = &'static str> {
                Self::NAMED
                    .into_iter()
                    .filter(move |(flag, _)| self.contains(*flag))
                    .map(|(_, name)| name)
            }
        }
    };
}

wit_flag_names!(CandidateState [4] {
    SERVER_ACTIVE => "server-active",
    GROUP_ACTIVE => "group-active",
    SERVES_RESOURCE => "serves-resource",
    AVAILABLE => "available",
});

bitflags::bitflags! {
    /// What a GeoIP anonymous-IP database says of the client (the WIT's
    /// `anonymous-ip`; the bits in declaration order).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct AnonymousIp: u8 {
        /// Any of the below.
        const ANONYMOUS = 1;
        /// A VPN provider's address.
        const VPN = 1 << 1;
        /// A hosting or cloud provider's address.
        const HOSTING_PROVIDER = 1 << 2;
        /// A public proxy.
        const PUBLIC_PROXY = 1 << 3;
        /// A Tor exit node.
        const TOR_EXIT_NODE = 1 << 4;
        /// A residential proxy.
        const RESIDENTIAL_PROXY = 1 << 5;
    }
}

wit_flag_names!(AnonymousIp [6] {
    ANONYMOUS => "anonymous",
    VPN => "vpn",
    HOSTING_PROVIDER => "hosting-provider",
    PUBLIC_PROXY => "public-proxy",
    TOR_EXIT_NODE => "tor-exit-node",
    RESIDENTIAL_PROXY => "residential-proxy",
});

/// An ISO 3166-1 alpha-2 country code (two upper-case ASCII letters).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

impl Country {
    /// The code, if `code` is two ASCII letters (either case).
    pub fn new(code: &str) -> Option<Country> {
        match *code.as_bytes() {
            [a, b] => Country::of_bytes(a, b),
            _ => None,
        }
    }

    #[inline]
    fn of_bytes(a: u8, b: u8) -> Option<Country> {
        (a.is_ascii_alphabetic() && b.is_ascii_alphabetic())
            .then(|| Country([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
    }

    /// The code, e.g. `"NL"`.
    pub fn as_str(&self) -> &str {
        // Two ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    fn word(self) -> u32 {
        u32::from(self.0[0]) | u32::from(self.0[1]) << 8
    }

    #[inline]
    fn from_word(w: u32) -> Option<Country> {
        if w == 0 {
            return None;
        }
        let [a, b, ..] = w.to_le_bytes();
        Country::of_bytes(a, b)
    }
}

impl std::fmt::Debug for Country {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl std::fmt::Display for Country {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point on the earth in degrees, WGS 84. (The words carry a client's
/// location in single precision, about a metre.)
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Coordinates {
    /// Degrees north (negative: south).
    pub latitude: f64,
    /// Degrees east (negative: west).
    pub longitude: f64,
}

impl Coordinates {
    /// Great-circle distance to `other` in kilometres (haversine on a
    /// sphere of the earth's mean radius).
    pub fn distance_km(&self, other: &Coordinates) -> f64 {
        const EARTH_RADIUS_KM: f64 = 6371.0088;
        let (lat1, lat2) = (self.latitude.to_radians(), other.latitude.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.longitude - self.longitude).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

/// What GeoIP databases say of the client's address (all empty when the
/// engine has none, or they know nothing of it; always empty for 0.3.0
/// policies, whose words do not carry it).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Geo {
    /// The country.
    pub country: Option<Country>,
    /// The autonomous system number.
    pub asn: Option<u32>,
    /// The location (a city's, usually: treat it as approximate).
    pub location: Option<Coordinates>,
    /// Anonymous-IP flags.
    pub anonymous: AnonymousIp,
}

/// The request headers a policy declared in its manifest, with this
/// request's values, in the declared order (only these cross the
/// boundary).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    names: Vec<String>,
    values: Vec<Option<String>>,
}

impl Headers {
    /// No headers.
    pub const fn new() -> Self {
        Headers {
            names: Vec::new(),
            values: Vec::new(),
        }
    }

    /// These header names (lower-cased), no values yet.
    pub fn declared<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        let names: Vec<String> = names
            .into_iter()
            .map(|n| n.as_ref().to_ascii_lowercase())
            .collect();
        Headers {
            values: vec![None; names.len()],
            names,
        }
    }

    /// The value of header `name` (any case), if it was declared and sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self
            .names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))?;
        self.values.get(i)?.as_deref()
    }

    /// The declared names, lower-case, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Each declared name with this request's value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.names
            .iter()
            .zip(self.values.iter().chain(std::iter::repeat(&None)))
            .map(|(n, v)| (n.as_str(), v.as_deref()))
    }

    /// How many values the request carries (one per declared name).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no header was declared.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Sets the `i`-th declared header's value (reusing its buffer).
    pub fn set(&mut self, i: usize, value: Option<&str>) {
        if self.values.len() <= i {
            self.values.resize(i + 1, None);
        }
        match (value, &mut self.values[i]) {
            (Some(v), Some(old)) => {
                old.clear();
                old.push_str(v);
            }
            (v, slot) => *slot = v.map(str::to_string),
        }
    }

    /// The `i`-th value's buffer, emptied, to write a value into (the
    /// header is then present); reuses its buffer.
    pub fn slot(&mut self, i: usize) -> &mut String {
        if self.values.len() <= i {
            self.values.resize(i + 1, None);
        }
        let slot = self.values[i].get_or_insert_with(String::new);
        slot.clear();
        slot
    }

    /// Sets each declared header's value with `value_of(name, buffer)`,
    /// which writes the value into the emptied buffer and says whether the
    /// request had the header (buffers are reused from the last request).
    pub fn fill(&mut self, mut value_of: impl FnMut(&str, &mut String) -> bool) {
        self.values.resize(self.names.len(), None);
        for (name, slot) in self.names.iter().zip(&mut self.values) {
            let mut buffer = slot.take().unwrap_or_default();
            buffer.clear();
            if value_of(name, &mut buffer) {
                *slot = Some(buffer);
            }
        }
    }

    /// Marks every value absent, keeping the names.
    pub fn clear_values(&mut self) {
        self.values.iter_mut().for_each(|v| *v = None);
        self.values.resize(self.names.len(), None);
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
#[derive(Debug, Clone, PartialEq)]
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
    /// The player came over TLS (directly, or through a trusted proxy
    /// that said so): only servers with a TLS port are offered, and the
    /// engine redirects to `https://`.
    pub tls: bool,
    /// What GeoIP databases say of the client.
    pub geo: Geo,
    /// The headers the policy declared, with this request's values.
    pub headers: Headers,
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
            tls: false,
            geo: Geo {
                country: None,
                asn: None,
                location: None,
                anonymous: AnonymousIp::empty(),
            },
            headers: Headers::new(),
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
/// implies: one tier per matched subnet (longest prefix first), then, for
/// a client in no subnet, the regions nearest to its GeoIP location, then
/// the `default_region` tier. A region already offered by an earlier tier
/// is not repeated.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier<H> {
    /// Index of the region.
    pub region: u32,
    /// The region's `active` flag.
    pub region_active: bool,
    /// Index of the matched subnet; none for the nearest-region and
    /// `default_region` tiers.
    pub subnet: Option<u32>,
    /// For a tier found by distance from the client's GeoIP location: the
    /// distance to the region in kilometres.
    pub distance_km: Option<u32>,
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
/// `request-flags` bit (0.4.0): the player came over TLS.
pub const REQUEST_TLS: u32 = 1 << 26;
/// Words of the GeoIP block (0.4.0): country, asn, latitude, longitude,
/// geo-flags.
pub const GEO_WORDS: usize = 5;
/// `geo-flags` bit: latitude and longitude are known.
pub const GEO_HAS_LOCATION: u32 = 1;
/// `geo-flags`: the anonymous-IP flags start at this bit.
const GEO_ANONYMOUS_SHIFT: u32 = 8;
/// A header length that says the request had no such header.
pub const HEADER_ABSENT: u32 = u32::MAX;
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
/// `tier-flags` bit (0.4.0): the tier was found by distance; its
/// `subnet` word holds the distance in kilometres.
pub const TIER_BY_DISTANCE: u32 = 4;
/// Words of a pathway offered to `steer`: pathway, pathway-flags, tier,
/// edges-up, edges-total, throughput-kbps.
pub const PATHWAY_WORDS: usize = 6;
/// `pathway-flags` bit: the player's current pathway.
pub const PATHWAY_CURRENT: u32 = 1;
/// `pathway-flags` bit: the player reported a throughput on it.
pub const PATHWAY_HAS_THROUGHPUT: u32 = 2;
/// `pathway-flags` bit: a clone of another pathway.
pub const PATHWAY_CLONE: u32 = 4;
/// The `tier` word of a pathway no tier of the client may use.
pub const PATHWAY_NO_TIER: u32 = u32::MAX;

/// The contract versions whose words this codec writes. Policies built
/// for 0.3.0 get the words they know: no TLS bit, no GeoIP block, no
/// headers, no distance tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Contract {
    /// `edgeward:policy@0.3.0`.
    V0_3,
    /// `edgeward:policy@0.4.0` (this SDK's).
    V0_4,
}

impl Contract {
    /// The newest contract, the one the SDK is built for.
    pub const CURRENT: Contract = Contract::V0_4;

    /// `edgeward:policy@0.4.0`.
    pub const fn name(self) -> &'static str {
        match self {
            Contract::V0_3 => "edgeward:policy@0.3.0",
            Contract::V0_4 => "edgeward:policy@0.4.0",
        }
    }

    /// The contract of a WIT package version (`0.4.0`).
    pub fn from_version(version: &str) -> Option<Contract> {
        match version {
            "0.3.0" => Some(Contract::V0_3),
            "0.4.0" => Some(Contract::V0_4),
            _ => None,
        }
    }
}

/// A pathway offered to `policy.steer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathwayOffer {
    /// Index of the pathway (see `host.lookup-pathway`).
    pub pathway: u32,
    /// The player's current pathway.
    pub current: bool,
    /// A clone of another pathway.
    pub clone: bool,
    /// The position of the first of the client's tiers whose region may
    /// use it; none when no tier may.
    pub tier: Option<u32>,
    /// Edges of its server group that health checking considers
    /// available (0 for a pathway that is not one of ours).
    pub edges_up: u32,
    /// All edges of its server group.
    pub edges_total: u32,
    /// The player's reported throughput on it, in kbit/s.
    pub throughput_kbps: Option<u32>,
}

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
    if request.tls {
        flags |= REQUEST_TLS;
    }
    flags
}

/// Packs a request and its `tiers` into the words of `policy.select` (see
/// the WIT), replacing what `words` held and keeping its capacity.
pub fn encode<H>(request: &Request, tiers: &[Tier<H>], words: &mut Vec<u32>) {
    encode_with(Contract::CURRENT, request, tiers, words, |_| {});
}

/// [`encode`] for the `contract` a policy was built for, showing each
/// candidate to `each` as it is packed (the engine gathers the health list
/// in the same pass).
#[inline]
pub fn encode_with<H>(
    contract: Contract,
    request: &Request,
    tiers: &[Tier<H>],
    words: &mut Vec<u32>,
    mut each: impl FnMut(&Candidate<H>),
) {
    encode_request(contract, request, words);
    encode_tier_headers(contract, tiers, words, true);
    for t in tiers {
        for c in &t.candidates {
            words.extend_from_slice(&[c.server, c.group, c.weight, u32::from(c.state.bits())]);
            each(c);
        }
    }
}

/// Packs a steering poll into the words of `policy.steer` (0.4.0): the
/// request, the client's tiers without candidates, the pathways.
pub fn encode_steer<H>(
    request: &Request,
    tiers: &[Tier<H>],
    pathways: &[PathwayOffer],
    words: &mut Vec<u32>,
) {
    encode_request(Contract::V0_4, request, words);
    encode_tier_headers(Contract::V0_4, tiers, words, false);
    words.push(pathways.len() as u32);
    for p in pathways {
        let mut flags = 0;
        if p.current {
            flags |= PATHWAY_CURRENT;
        }
        if p.throughput_kbps.is_some() {
            flags |= PATHWAY_HAS_THROUGHPUT;
        }
        if p.clone {
            flags |= PATHWAY_CLONE;
        }
        words.extend_from_slice(&[
            p.pathway,
            flags,
            p.tier.unwrap_or(PATHWAY_NO_TIER),
            p.edges_up,
            p.edges_total,
            p.throughput_kbps.unwrap_or(0),
        ]);
    }
}

fn encode_tier_headers<H>(
    contract: Contract,
    tiers: &[Tier<H>],
    words: &mut Vec<u32>,
    with_candidates: bool,
) {
    words.push(tiers.len() as u32);
    for t in tiers {
        let mut flags = 0;
        if t.region_active {
            flags |= TIER_REGION_ACTIVE;
        }
        let mut subnet = 0;
        if let Some(s) = t.subnet {
            flags |= TIER_HAS_SUBNET;
            subnet = s;
        } else if let Some(d) = t.distance_km
            && contract >= Contract::V0_4
        {
            flags |= TIER_BY_DISTANCE;
            subnet = d;
        }
        let count = if with_candidates {
            t.candidates.len() as u32
        } else {
            0
        };
        words.extend_from_slice(&[t.region, flags, subnet, count]);
    }
}

fn encode_request(contract: Contract, request: &Request, words: &mut Vec<u32>) {
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
    let mut flags = request_flags(request);
    if contract < Contract::V0_4 {
        flags &= !REQUEST_TLS;
    }
    words.push(flags);
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
    if contract < Contract::V0_4 {
        return;
    }
    let geo = &request.geo;
    let (latitude, longitude) = geo.location.map_or((0, 0), |l| {
        (
            (l.latitude as f32).to_bits(),
            (l.longitude as f32).to_bits(),
        )
    });
    let mut geo_flags = u32::from(geo.anonymous.bits()) << GEO_ANONYMOUS_SHIFT;
    if geo.location.is_some() {
        geo_flags |= GEO_HAS_LOCATION;
    }
    words.extend_from_slice(&[
        geo.country.map_or(0, Country::word),
        geo.asn.unwrap_or(0),
        latitude,
        longitude,
        geo_flags,
    ]);
    words.push(request.headers.values.len() as u32);
    for value in &request.headers.values {
        match value {
            Some(v) => {
                words.push(v.len() as u32);
                push_bytes(words, v.as_bytes());
            }
            None => words.push(HEADER_ABSENT),
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
    /// The pathways of a steering poll.
    pub pathways: Vec<PathwayOffer>,
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
            pathways: Vec::new(),
            spare_query: String::new(),
        }
    }

    /// Decodes the words of a (0.4.0) `select` call; `health_of(server)`
    /// gives the health figures of an offered server (from `select`'s
    /// second argument). Malformed input (it comes from the engine, so
    /// this is defence only) decodes what fits. Header values fill the
    /// request's [`Headers`] in order; their names are the ones the
    /// policy declared ([`Decoded::declare_headers`]).
    pub fn decode(&mut self, words: &[u32], health_of: impl FnMut(u32) -> Option<H>) {
        let rest = self.decode_request(words);
        decode_tiers(rest, &mut self.tiers, health_of);
    }

    /// Decodes the words of a `steer` call into the request, the client's
    /// tiers (with no candidates) and [`Decoded::pathways`].
    pub fn decode_steer(&mut self, words: &[u32]) {
        let rest = self.decode_request(words);
        let rest = decode_tiers(rest, &mut self.tiers, |_| None);
        let count = rest.first().copied().unwrap_or(0) as usize;
        let rest = rest.get(1..).unwrap_or_default();
        self.pathways.clear();
        self.pathways.extend(
            rest.chunks_exact(PATHWAY_WORDS)
                .take(count)
                .map(|p| PathwayOffer {
                    pathway: p[0],
                    current: p[1] & PATHWAY_CURRENT != 0,
                    clone: p[1] & PATHWAY_CLONE != 0,
                    tier: (p[2] != PATHWAY_NO_TIER).then_some(p[2]),
                    edges_up: p[3],
                    edges_total: p[4],
                    throughput_kbps: (p[1] & PATHWAY_HAS_THROUGHPUT != 0).then_some(p[5]),
                }),
        );
    }

    /// Names the headers the policy declared (what its calls' header
    /// values are).
    pub fn declare_headers<S: AsRef<str>>(&mut self, names: impl IntoIterator<Item = S>) {
        self.request.headers = Headers::declared(names);
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
        r.tls = flags & REQUEST_TLS != 0;
        let Some((geo, mut rest)) = rest.split_first_chunk::<GEO_WORDS>() else {
            r.geo = Geo::default();
            r.headers.clear_values();
            return &[];
        };
        let [country, asn, latitude, longitude, geo_flags] = *geo;
        if country | asn | geo_flags == 0 {
            // Nothing known (no GeoIP database: every call, today).
            r.geo = Geo::default();
        } else {
            r.geo = Geo {
                country: Country::from_word(country),
                asn: (asn != 0).then_some(asn),
                // A location that is no place on Earth (NaN, or out of
                // range: never sent by the engine) is unknown, so that a
                // policy's arithmetic on it cannot go wrong.
                location: (geo_flags & GEO_HAS_LOCATION != 0)
                    .then(|| Coordinates {
                        latitude: f64::from(f32::from_bits(latitude)),
                        longitude: f64::from(f32::from_bits(longitude)),
                    })
                    .filter(|c| c.latitude.abs() <= 90.0 && c.longitude.abs() <= 180.0),
                anonymous: AnonymousIp::from_bits_truncate(
                    (geo_flags >> GEO_ANONYMOUS_SHIFT) as u8,
                ),
            };
        }
        let count = rest.first().copied().unwrap_or(0) as usize;
        rest = rest.get(1..).unwrap_or_default();
        if count == 0 && r.headers.values.is_empty() {
            // No header declared: the usual case, and nothing to do.
            return rest;
        }
        // No more values than words: garbage cannot make this allocate.
        let count = count.min(rest.len());
        r.headers
            .values
            .resize(count.max(r.headers.names.len()), None);
        for i in 0..count {
            let Some((&len, after)) = rest.split_first() else {
                break;
            };
            rest = after;
            if len == HEADER_ABSENT {
                r.headers.values[i] = None;
                continue;
            }
            rest = read_string(rest, len as usize, r.headers.slot(i));
        }
        for v in r.headers.values.iter_mut().skip(count) {
            *v = None;
        }
        // Values past the declared names (never sent by the engine) have
        // no name to be read by: dropped, once their words are skipped.
        r.headers.values.truncate(r.headers.names.len());
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

/// Decodes the tier part of the words into `tiers` (reusing its vectors);
/// returns the words after it. Malformed input stops decoding at the
/// first word that does not fit.
pub fn decode_tiers<'w, H>(
    words: &'w [u32],
    tiers: &mut Vec<Tier<H>>,
    mut health_of: impl FnMut(u32) -> Option<H>,
) -> &'w [u32] {
    let count = words.first().copied().unwrap_or(0) as usize;
    let headers = words.get(1..).unwrap_or_default();
    let count = count.min(headers.len() / TIER_WORDS);
    tiers.truncate(count);
    while tiers.len() < count {
        tiers.push(Tier {
            region: 0,
            region_active: false,
            subnet: None,
            distance_km: None,
            candidates: Vec::new(),
        });
    }
    let mut rest = &headers[count * TIER_WORDS..];
    for (tier, h) in tiers.iter_mut().zip(headers.chunks_exact(TIER_WORDS)) {
        tier.region = h[0];
        tier.region_active = h[1] & TIER_REGION_ACTIVE != 0;
        tier.subnet = (h[1] & TIER_HAS_SUBNET != 0).then_some(h[2]);
        tier.distance_km =
            (h[1] & (TIER_HAS_SUBNET | TIER_BY_DISTANCE) == TIER_BY_DISTANCE).then_some(h[2]);
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
    rest
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
            tls: false,
            geo: Geo::default(),
            headers: Headers::new(),
        }
    }

    /// [`request`] as a 0.4.0 policy declaring two headers sees it: over
    /// TLS, from a known place, one header sent.
    fn request_v4() -> Request {
        let mut headers = Headers::declared(["User-Agent", "x-token"]);
        headers.set(0, Some("TV/1.0"));
        Request {
            tls: true,
            geo: Geo {
                country: Country::new("nl"),
                asn: Some(1136),
                location: Some(Coordinates {
                    latitude: 52.5,
                    longitude: -4.25,
                }),
                anonymous: AnonymousIp::ANONYMOUS | AnonymousIp::VPN,
            },
            headers,
            ..request()
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

    /// What the engine never sends decodes to something a policy can use:
    /// a location that is no place is unknown, and values past the
    /// declared header names are dropped (found by the `packed_call` fuzz
    /// target).
    #[test]
    fn impossible_locations_and_undeclared_values_are_dropped() {
        for (latitude, longitude) in [(f64::NAN, 1.0), (91.0, 0.0), (0.0, -181.0)] {
            let mut r = request_v4();
            r.geo.location = Some(Coordinates {
                latitude,
                longitude,
            });
            let mut words = Vec::new();
            encode::<u8>(&r, &[], &mut words);
            let mut d: Decoded<u8> = Decoded::new();
            d.declare_headers(["user-agent", "x-token"]);
            d.decode(&words, |_| None);
            assert_eq!(d.request.geo.location, None, "{latitude} {longitude}");
            assert_eq!(d.request.geo.country, r.geo.country);
        }
        let mut words = Vec::new();
        encode::<u8>(&request_v4(), &[], &mut words);
        let mut d: Decoded<u8> = Decoded::new();
        d.declare_headers(["user-agent"]);
        d.decode(&words, |_| None);
        assert_eq!(d.request.headers.len(), 1);
        assert_eq!(d.request.headers.get("user-agent"), Some("TV/1.0"));
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
                distance_km: None,
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
                distance_km: None,
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
            0, 0, 0, 0, 0,
            0,
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
            ..Request::empty()
        };
        encode::<u8>(&vod, &[], &mut words);
        #[rustfmt::skip]
        let expected = vec![
            2, 0x0a01_0203, 0, 0, 0, 7, 0, 9, 0, 4, 0, u32::from_le_bytes(*b"abcd"),
            0, 0, 0, 0, 0, 0,
            0,
        ];
        assert_eq!(words, expected);
        assert_eq!(words.len(), REQUEST_HEADER_WORDS + 1 + GEO_WORDS + 2);
    }

    /// 0.4.0's additions, spelled as numbers: the TLS bit, the GeoIP
    /// block, the declared headers, a tier found by distance.
    #[test]
    fn the_0_4_additions_are_the_documented_ones() {
        let tiers = vec![Tier {
            region: 6,
            region_active: true,
            subnet: None,
            distance_km: Some(420),
            candidates: vec![candidate(1, 2, 3, CandidateState::all())],
        }];
        let mut words = Vec::new();
        encode(&request_v4(), &tiers, &mut words);
        #[rustfmt::skip]
        let expected = vec![
            1 | 2 << 8 | 2 << 16 | REQUEST_CLIENT_V6 | REQUEST_HAS_QUERY | REQUEST_TLS,
            0x2001_0db8, 0, 0, 0x000a_000b,
            2, 1, 4, 3,
            5, 3,
            u32::from_le_bytes(*b"abcd"), u32::from_le_bytes(*b"e\0\0\0"),
            u32::from_le_bytes(*b"q=1\0"),
            u32::from_le_bytes(*b"NL\0\0"), 1136, 52.5f32.to_bits(), (-4.25f32).to_bits(),
            GEO_HAS_LOCATION | 0b11 << 8,
            2,
            6, u32::from_le_bytes(*b"TV/1"), u32::from_le_bytes(*b".0\0\0"),
            HEADER_ABSENT,
            1,
            6, TIER_REGION_ACTIVE | TIER_BY_DISTANCE, 420, 1,
            1, 2, 3, 0b1111,
        ];
        assert_eq!(words, expected);

        let mut d = Decoded::<u8>::new();
        d.declare_headers(["user-agent", "x-token"]);
        d.decode(&words, |_| None);
        assert_eq!(d.request, request_v4());
        assert_eq!(d.request.headers.get("User-Agent"), Some("TV/1.0"));
        assert_eq!(d.request.headers.get("x-token"), None);
        assert_eq!(d.request.geo.country.unwrap().as_str(), "NL");
        assert_eq!(d.tiers, tiers);

        // The next request sends the token and not the agent: the buffers
        // are reused, nothing of the last request stays.
        let mut next = request_v4();
        next.headers.set(0, None);
        next.headers.set(1, Some("abc"));
        next.geo = Geo::default();
        encode(&next, &tiers, &mut words);
        d.decode(&words, |_| None);
        assert_eq!(d.request, next);
    }

    /// A 0.3.0 policy gets exactly the words of 0.3.0: no TLS bit, no
    /// GeoIP block, no headers, and a distance tier as a plain one.
    #[test]
    fn a_0_3_policy_gets_the_0_3_words() {
        let tiers = vec![Tier {
            region: 6,
            region_active: true,
            subnet: None,
            distance_km: Some(420),
            candidates: vec![candidate(1, 2, 3, CandidateState::all())],
        }];
        let mut words = Vec::new();
        encode_with(Contract::V0_3, &request_v4(), &tiers, &mut words, |_| {});
        #[rustfmt::skip]
        let expected = vec![
            1 | 2 << 8 | 2 << 16 | REQUEST_CLIENT_V6 | REQUEST_HAS_QUERY,
            0x2001_0db8, 0, 0, 0x000a_000b,
            2, 1, 4, 3,
            5, 3,
            u32::from_le_bytes(*b"abcd"), u32::from_le_bytes(*b"e\0\0\0"),
            u32::from_le_bytes(*b"q=1\0"),
            1,
            6, TIER_REGION_ACTIVE, 0, 1,
            1, 2, 3, 0b1111,
        ];
        assert_eq!(words, expected);
    }

    #[test]
    fn the_steer_layout_is_the_documented_one() {
        let tiers = vec![
            Tier::<u8> {
                region: 4,
                region_active: true,
                subnet: Some(9),
                distance_km: None,
                candidates: vec![candidate(1, 2, 3, CandidateState::all())],
            },
            Tier {
                region: 5,
                region_active: true,
                subnet: None,
                distance_km: None,
                candidates: vec![],
            },
        ];
        let pathways = [
            PathwayOffer {
                pathway: 3,
                current: true,
                clone: false,
                tier: Some(0),
                edges_up: 2,
                edges_total: 4,
                throughput_kbps: Some(5_000),
            },
            PathwayOffer {
                pathway: 7,
                current: false,
                clone: true,
                tier: None,
                edges_up: 0,
                edges_total: 0,
                throughput_kbps: None,
            },
        ];
        let mut request = request();
        request.kind = RequestKind::Live;
        request.query = None;
        let mut words = Vec::new();
        encode_steer(&request, &tiers, &pathways, &mut words);
        #[rustfmt::skip]
        let expected = vec![
            2 << 8 | 2 << 16 | REQUEST_CLIENT_V6,
            0x2001_0db8, 0, 0, 0x000a_000b,
            2, 1, 4, 3,
            5, 0,
            u32::from_le_bytes(*b"abcd"), u32::from_le_bytes(*b"e\0\0\0"),
            0, 0, 0, 0, 0,
            0,
            2,
            4, TIER_REGION_ACTIVE | TIER_HAS_SUBNET, 9, 0,
            5, TIER_REGION_ACTIVE, 0, 0,
            2,
            3, PATHWAY_CURRENT | PATHWAY_HAS_THROUGHPUT, 0, 2, 4, 5_000,
            7, PATHWAY_CLONE, PATHWAY_NO_TIER, 0, 0, 0,
        ];
        assert_eq!(words, expected);
        let mut d = Decoded::<u8>::new();
        d.decode_steer(&words);
        assert_eq!(d.request, request);
        assert_eq!(d.pathways, pathways);
        assert_eq!(d.tiers.len(), 2);
        assert!(d.tiers.iter().all(|t| t.candidates.is_empty()));
        // Truncated: what fits.
        d.decode_steer(&words[..words.len() - 3]);
        assert_eq!(d.pathways, pathways[..1]);
    }

    #[test]
    fn distances_and_codes() {
        let amsterdam = Coordinates {
            latitude: 52.37,
            longitude: 4.90,
        };
        let moscow = Coordinates {
            latitude: 55.76,
            longitude: 37.62,
        };
        let d = amsterdam.distance_km(&moscow);
        assert!((2140.0..2170.0).contains(&d), "{d}");
        assert_eq!(amsterdam.distance_km(&amsterdam), 0.0);
        assert_eq!(Country::new("ru").unwrap().to_string(), "RU");
        assert!(Country::new("R").is_none() && Country::new("R1").is_none());
        assert!(Country::new("рф").is_none());
        assert_eq!(Country::from_word(0), None);
    }

    #[test]
    fn garbage_header_counts_allocate_nothing() {
        let mut words = Vec::new();
        encode::<u8>(&request(), &[], &mut words);
        // The header count (after the GeoIP block) claims four billion.
        let at = words.len() - 2;
        words[at] = u32::MAX;
        words.truncate(at + 1);
        let mut d = Decoded::<u8>::new();
        d.decode(&words, |_| None);
        assert!(d.request.headers.is_empty());
        words.extend([7, 0x4141_4141]);
        d.declare_headers(["a", "b"]);
        d.decode(&words, |_| None);
        assert_eq!(d.request.headers.len(), 2);
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
            ..Request::empty()
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
        let _ = decode_tiers::<u8>(&[1, 0, 1, 0, 0], &mut tiers, |_| None);
        assert_eq!(tiers.len(), 1);
        assert!(tiers[0].candidates.is_empty());
        let _ = decode_tiers::<u8>(&[5, 1, 1, 0, 9, 3], &mut tiers, |_| None);
        assert_eq!(tiers.len(), 1, "one whole tier header");
        let _ = decode_tiers::<u8>(&[1, 1, 1, 0, 9, 3, 4, 5], &mut tiers, |_| None);
        assert!(
            tiers[0].candidates.is_empty(),
            "a partial candidate is dropped"
        );
        let _ = decode_tiers::<u8>(&[], &mut tiers, |_| None);
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
