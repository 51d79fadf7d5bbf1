//! Decoding what the engine passes to `select` (the packed layout described
//! in the WIT) into a [`Request`] and [`Tier`] and [`Candidate`] values.
//! Used by [`crate::export_policy!`]; policy authors do not need it.

use crate::{
    Candidate, CandidateState, Encryption, IpAddress, Protocol, Request, RequestKind, ServerHealth,
    Tier,
};
use std::cell::RefCell;

const REQUEST_CLIENT_V6: u32 = 1 << 24;
const REQUEST_HAS_QUERY: u32 = 1 << 25;
const REQUEST_HEADER_WORDS: usize = 11;
const TIER_REGION_ACTIVE: u32 = 1;
const TIER_HAS_SUBNET: u32 = 2;

/// What a `select` call decodes into, reused call after call: the strings
/// and vectors keep their capacity, so a warm policy allocates nothing to
/// read its input.
pub struct Decoded {
    /// The request.
    pub request: Request,
    /// The tiers.
    pub tiers: Vec<Tier>,
    /// The query's buffer while the request has none.
    spare_query: String,
}

impl Default for Decoded {
    fn default() -> Self {
        Decoded::new()
    }
}

impl Decoded {
    /// Empty buffers.
    pub const fn new() -> Self {
        Decoded {
            request: Request {
                kind: RequestKind::Live,
                protocol: None,
                encryption: Encryption::None,
                target: String::new(),
                query: None,
                client: IpAddress::V4((0, 0, 0, 0)),
                topology_version: 0,
                seed: 0,
            },
            tiers: Vec::new(),
            spare_query: String::new(),
        }
    }

    /// Decodes the words of a `select` call. Malformed input (it comes
    /// from the engine, so this is defence only) decodes what fits.
    pub fn decode(&mut self, words: &[u32], health: Option<&[ServerHealth]>) {
        let rest = self.decode_request(words);
        decode(rest, health, &mut self.tiers);
    }

    /// Decodes the request part of `words`; returns the words after it.
    fn decode_request<'w>(&mut self, words: &'w [u32]) -> &'w [u32] {
        let Some((header, rest)) = words.split_first_chunk::<REQUEST_HEADER_WORDS>() else {
            self.request.target.clear();
            self.request.query = None;
            return &[];
        };
        let r = &mut self.request;
        let flags = header[0];
        r.kind = match flags & 0xff {
            1 => RequestKind::Catchup,
            2 => RequestKind::Vod,
            3 => RequestKind::StaticFile,
            _ => RequestKind::Live,
        };
        r.protocol = match (flags >> 8) & 0xff {
            1 => Some(Protocol::Hls),
            2 => Some(Protocol::Mpd),
            _ => None,
        };
        r.encryption = match (flags >> 16) & 0xff {
            1 => Encryption::Widevine,
            2 => Encryption::Playready,
            3 => Encryption::Cenc,
            _ => Encryption::None,
        };
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

thread_local! {
    static DECODED: RefCell<Decoded> = const { RefCell::new(Decoded::new()) };
}

/// Decodes the words of a `select` call, seeds [`crate::host::random`]
/// with the request's seed, and runs `f` on the request and tiers.
#[doc(hidden)]
pub fn with_call<R>(
    words: &[u32],
    health: Option<&[ServerHealth]>,
    f: impl FnOnce(&Request, &[Tier]) -> R,
) -> R {
    DECODED.with(|cell| {
        // A policy that re-enters (it cannot: one call at a time) would get
        // fresh buffers rather than a panic.
        let mut fresh = Decoded::new();
        let mut guard = cell.try_borrow_mut();
        let decoded = match guard.as_deref_mut() {
            Ok(d) => d,
            Err(_) => &mut fresh,
        };
        decoded.decode(words, health);
        crate::host::seed_call(decoded.request.seed);
        f(&decoded.request, &decoded.tiers)
    })
}

/// Decodes the tier part of the words into `tiers` (reusing its vectors).
/// Malformed input stops decoding at the first word that does not fit.
pub fn decode(words: &[u32], health: Option<&[ServerHealth]>, tiers: &mut Vec<Tier>) {
    let count = words.first().copied().unwrap_or(0) as usize;
    let headers = words.get(1..).unwrap_or_default();
    let count = count.min(headers.len() / 4);
    tiers.truncate(count);
    while tiers.len() < count {
        tiers.push(Tier {
            region: 0,
            region_active: false,
            subnet: None,
            candidates: Vec::new(),
        });
    }
    let mut rest = &headers[count * 4..];
    for (tier, h) in tiers.iter_mut().zip(headers.chunks_exact(4)) {
        tier.region = h[0];
        tier.region_active = h[1] & TIER_REGION_ACTIVE != 0;
        tier.subnet = (h[1] & TIER_HAS_SUBNET != 0).then_some(h[2]);
        let n = (h[3] as usize).min(rest.len() / 4);
        tier.candidates.clear();
        for c in rest[..n * 4].chunks_exact(4) {
            tier.candidates.push(Candidate {
                server: c[0],
                group: c[1],
                weight: c[2],
                state: state(c[3]),
                health: health.and_then(|all| {
                    all.iter()
                        .find(|s| s.server == c[0])
                        .map(|s| s.health.clone())
                }),
            });
        }
        rest = &rest[n * 4..];
    }
}

fn state(bits: u32) -> CandidateState {
    let mut s = CandidateState::empty();
    for (i, flag) in [
        CandidateState::SERVER_ACTIVE,
        CandidateState::GROUP_ACTIVE,
        CandidateState::SERVES_RESOURCE,
        CandidateState::AVAILABLE,
    ]
    .into_iter()
    .enumerate()
    {
        if bits & (1 << i) != 0 {
            s |= flag;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Health;

    #[test]
    fn decodes_the_documented_layout_and_survives_garbage() {
        let words = [
            2, //
            4, 3, 9, 1, //
            5, 0, 0, 2, //
            1, 2, 3, 0b1001, //
            7, 8, 0, 0b1111, //
            1, 6, 3, 0,
        ];
        let health = [ServerHealth {
            server: 1,
            health: Health {
                rtt_us: Some(5),
                figures: vec![],
            },
        }];
        let mut tiers = Vec::new();
        decode(&words, Some(&health), &mut tiers);
        assert_eq!(tiers.len(), 2);
        assert_eq!(
            (tiers[0].region, tiers[0].region_active, tiers[0].subnet),
            (4, true, Some(9))
        );
        assert_eq!(
            (tiers[1].region, tiers[1].region_active, tiers[1].subnet),
            (5, false, None)
        );
        let c = &tiers[0].candidates[0];
        assert_eq!((c.server, c.group, c.weight), (1, 2, 3));
        assert_eq!(
            c.state,
            CandidateState::SERVER_ACTIVE | CandidateState::AVAILABLE
        );
        assert_eq!(c.health.as_ref().unwrap().rtt_us, Some(5));
        assert_eq!(tiers[1].candidates.len(), 2);
        assert_eq!(tiers[1].candidates[0].state, CandidateState::all());
        assert!(tiers[1].candidates[0].health.is_none());
        assert!(tiers[1].candidates[1].health.is_some());

        // Reused: a smaller call shrinks the tiers.
        decode(&[1, 0, 1, 0, 0], None, &mut tiers);
        assert_eq!(tiers.len(), 1);
        assert!(tiers[0].candidates.is_empty());
        // Truncated or lying input decodes what fits.
        decode(&[5, 1, 1, 0, 9, 3], None, &mut tiers);
        assert_eq!(tiers.len(), 1, "one whole tier header");
        assert!(tiers[0].candidates.is_empty());
        decode(&[1, 1, 1, 0, 9, 3, 4, 5], None, &mut tiers);
        assert_eq!(
            tiers[0].candidates.len(),
            0,
            "a partial candidate is dropped"
        );
        decode(&[], None, &mut tiers);
        assert!(tiers.is_empty());
    }

    #[test]
    fn decodes_the_documented_request_layout_reusing_its_buffers() {
        let mut d = Decoded::new();
        let call = [
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
            1,
            7,
            3,
            3,
            1,
            8,
            9,
            2,
            15,
        ];
        d.decode(&call, None);
        let r = &d.request;
        assert_eq!(r.kind, RequestKind::Catchup);
        assert_eq!(r.protocol, Some(Protocol::Mpd));
        assert_eq!(r.encryption, Encryption::Playready);
        assert_eq!(r.target, "abcde");
        assert_eq!(r.query.as_deref(), Some("q=1"));
        assert_eq!(
            r.client.to_std(),
            "2001:db8::a:b".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!((r.topology_version, r.seed), (0x1_0000_0002, 0x3_0000_0004));
        assert_eq!(d.tiers.len(), 1);
        assert_eq!((d.tiers[0].region, d.tiers[0].subnet), (7, Some(3)));
        assert_eq!(d.tiers[0].candidates[0].server, 8);
        let target = d.request.target.as_ptr();

        let call = [
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
            u32::from_le_bytes(*b"wxyz"),
            0,
        ];
        d.decode(&call, None);
        let r = &d.request;
        assert_eq!(
            (r.kind, r.protocol, r.encryption),
            (RequestKind::Vod, None, Encryption::None)
        );
        assert_eq!(r.target, "wxyz");
        assert_eq!(r.target.as_ptr(), target, "the buffer is reused");
        assert_eq!(r.query, None);
        assert_eq!(
            r.client.to_std(),
            "10.1.2.3".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!((r.topology_version, r.seed), (7, 9));
        assert!(d.tiers.is_empty());

        // Truncated input decodes what fits.
        d.decode(&call[..12], None);
        assert_eq!(d.request.target, "wxyz");
        d.decode(&call[..3], None);
        assert_eq!(d.request.target, "");
        let bad = [0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0xffff];
        d.decode(&bad, None);
        assert_eq!(d.request.target, "\u{fffd}\u{fffd}");
    }
}
