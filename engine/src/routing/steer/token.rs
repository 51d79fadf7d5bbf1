//! The session token a steering manifest's `RELOAD-URI` carries: what the
//! next poll needs (the session, when it was answered, its TTL, the order
//! given and the policy's state), signed by the engine (HMAC-SHA-256,
//! truncated to 128 bits) and bound to the stream it steers, so the state
//! lives in the player's URL, not in the engine, and a player can neither
//! forge nor move it. Every node of a fleet signs with the same key (the
//! key the admin sessions use, shared through etcd), so a poll may land on
//! any of them.
//!
//! Layout (then base64url without padding):
//!
//! ```text
//! version(1) session(8) issued_ms(8) ttl_s(2) polls(4)
//! order_count(1) order_count x [len(1) id]  state_len(1) state  tag(16)
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const TAG: usize = 16;
/// The first pathways of the last order kept (what a shed poll answers
/// with again, and what tells a switch).
pub const ORDER_KEPT: usize = 4;
/// Longest policy state (the contract's limit).
pub const MAX_STATE: usize = 64;
/// What the token key is derived with from the fleet's signing key (so the
/// admin sessions' key signs nothing a player holds).
const DERIVE: &[u8] = b"edgeward content-steering session token v1";

/// A steering session as its last manifest left it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    /// Random id, the same for every poll of one player's session.
    pub id: u64,
    /// When the manifest carrying this token was made (Unix ms).
    pub issued_ms: u64,
    /// The TTL it gave (seconds).
    pub ttl_s: u16,
    /// Polls answered in this session so far.
    pub polls: u32,
    /// Its first pathways, by id ([`ORDER_KEPT`] at most).
    pub order: Vec<String>,
    /// The policy's state (at most [`MAX_STATE`] bytes).
    pub state: Vec<u8>,
}

/// The token key for a fleet signing key.
pub fn derive(shared: &[u8; 32]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(shared).expect("any key length");
    mac.update(DERIVE);
    mac.finalize().into_bytes().into()
}

fn tag(key: &[u8; 32], bound: &str, payload: &[u8]) -> [u8; TAG] {
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(&(bound.len() as u32).to_be_bytes());
    mac.update(bound.as_bytes());
    mac.update(payload);
    let full = mac.finalize().into_bytes();
    full[..TAG].try_into().expect("16 of 32 bytes")
}

/// The token for `session`, bound to `bound` (the steered stream's path).
pub fn seal(key: &[u8; 32], bound: &str, session: &Session) -> String {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    out.extend_from_slice(&session.id.to_be_bytes());
    out.extend_from_slice(&session.issued_ms.to_be_bytes());
    out.extend_from_slice(&session.ttl_s.to_be_bytes());
    out.extend_from_slice(&session.polls.to_be_bytes());
    let order: Vec<&String> = session
        .order
        .iter()
        .filter(|id| id.len() <= usize::from(u8::MAX))
        .take(ORDER_KEPT)
        .collect();
    out.push(order.len() as u8);
    for id in order {
        out.push(id.len() as u8);
        out.extend_from_slice(id.as_bytes());
    }
    let state = &session.state[..session.state.len().min(MAX_STATE)];
    out.push(state.len() as u8);
    out.extend_from_slice(state);
    let tag = tag(key, bound, &out);
    out.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(out)
}

/// Why a token was not believed (the poll then starts a new session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not base64url, too short, or not laid out as a token.
    Malformed,
    /// Its signature does not hold: forged, altered, for another stream,
    /// or signed with a key this node does not have.
    Forged,
}

/// The session in `token`, if this engine signed it for `bound`.
pub fn open(key: &[u8; 32], bound: &str, token: &str) -> Result<Session, Refused> {
    if token.len() > 1024 {
        return Err(Refused::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| Refused::Malformed)?;
    if bytes.len() < TAG + 1 {
        return Err(Refused::Malformed);
    }
    let (payload, their_tag) = bytes.split_at(bytes.len() - TAG);
    let ours = tag(key, bound, payload);
    // Constant time: the tag must not be guessable byte by byte.
    let diff = ours
        .iter()
        .zip(their_tag)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        return Err(Refused::Forged);
    }
    read(payload).ok_or(Refused::Malformed)
}

fn read(payload: &[u8]) -> Option<Session> {
    let mut r = payload;
    let mut take = |n: usize| -> Option<&[u8]> {
        if r.len() < n {
            return None;
        }
        let (head, rest) = r.split_at(n);
        r = rest;
        Some(head)
    };
    if take(1)? != [VERSION] {
        return None;
    }
    let id = u64::from_be_bytes(take(8)?.try_into().ok()?);
    let issued_ms = u64::from_be_bytes(take(8)?.try_into().ok()?);
    let ttl_s = u16::from_be_bytes(take(2)?.try_into().ok()?);
    let polls = u32::from_be_bytes(take(4)?.try_into().ok()?);
    let count = take(1)?[0] as usize;
    let mut order = Vec::with_capacity(count.min(ORDER_KEPT));
    for _ in 0..count {
        let len = take(1)?[0] as usize;
        order.push(String::from_utf8(take(len)?.to_vec()).ok()?);
    }
    let len = take(1)?[0] as usize;
    let state = take(len)?.to_vec();
    if !r.is_empty() || state.len() > MAX_STATE {
        return None;
    }
    Some(Session {
        id,
        issued_ms,
        ttl_s,
        polls,
        order,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            id: 0x1234_5678_9abc_def0,
            issued_ms: 1_796_000_000_000,
            ttl_s: 300,
            polls: 7,
            order: vec!["cdn-a".into(), "cdn-b".into()],
            state: vec![1, 2, 3],
        }
    }

    #[test]
    fn a_token_opens_to_what_was_sealed() {
        let key = derive(&[7; 32]);
        let token = seal(&key, "hls/ch1", &session());
        assert!(token.len() < 120, "{} chars", token.len());
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "URL-safe as it is"
        );
        assert_eq!(open(&key, "hls/ch1", &token), Ok(session()));
        // Empty order and state, and the limits.
        let mut big = session();
        big.order = (0..9).map(|i| format!("p{i}")).collect();
        big.state = vec![9; 80];
        let opened = open(&key, "x", &seal(&key, "x", &big)).unwrap();
        assert_eq!(opened.order.len(), ORDER_KEPT);
        assert_eq!(opened.state.len(), MAX_STATE);
        let empty = Session::default();
        assert_eq!(open(&key, "x", &seal(&key, "x", &empty)), Ok(empty));
    }

    #[test]
    fn altered_moved_or_foreign_tokens_are_refused() {
        let key = derive(&[7; 32]);
        let token = seal(&key, "hls/ch1", &session());
        assert_eq!(open(&key, "hls/ch2", &token), Err(Refused::Forged));
        assert_eq!(
            open(&derive(&[8; 32]), "hls/ch1", &token),
            Err(Refused::Forged)
        );
        // Every single-byte change is caught.
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            let altered = URL_SAFE_NO_PAD.encode(&b);
            assert_eq!(
                open(&key, "hls/ch1", &altered),
                Err(Refused::Forged),
                "byte {i}"
            );
        }
        for junk in ["", "!!!", "AAAA", &"A".repeat(2000)] {
            assert_eq!(
                open(&key, "hls/ch1", junk),
                Err(Refused::Malformed),
                "{junk:?}"
            );
        }
        assert_ne!(derive(&[7; 32]), [7; 32]);
    }
}
