//! A routing policy built the way policies were before contract 0.4.0:
//! against `wit/0.3.0/` with bindings of its own (no SDK, whose codec
//! speaks 0.4.0), decoding 0.3.0's packed words by hand. The engine must
//! keep loading such policies; the end-to-end tests route through this
//! one.
//!
//! The rule: the first eligible candidate (every state bit set, positive
//! weight) of the first active tier. With `?echo` in the query it
//! redirects instead to a URL that shows what it was given: the number
//! of words (0.3.0's layout has no GeoIP block and no headers), the
//! request flags and the first candidate's host from `lookup-server`.

#![allow(missing_docs)]
// The generated export glue is `unsafe` (the canonical ABI); this crate
// has no code of its own that is.
#![allow(unsafe_code)]

#[allow(clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/0.3.0",
        world: "router",
    });
}

use bindings::edgeward::policy::host;
use bindings::edgeward::policy::types::{Decision, Rejection, ServerHealth};
use bindings::exports::edgeward::policy::policy::Guest;

/// Words before the target in 0.3.0.
const HEADER_WORDS: usize = 11;
/// All of `candidate-state`'s four bits.
const ELIGIBLE: u32 = 0b1111;

struct Legacy;

impl Guest for Legacy {
    fn init(_config: Vec<u8>) -> Result<(), String> {
        Ok(())
    }

    fn select(call: Vec<u32>, _health: Option<Vec<ServerHealth>>) -> Decision {
        match decide(&call) {
            Some(d) => d,
            None => Decision::Reject(Rejection {
                status: 503,
                reason: "no eligible edge (contract 0.3.0 policy)".into(),
            }),
        }
    }
}

fn decide(call: &[u32]) -> Option<Decision> {
    let flags = *call.first()?;
    let target_words = (*call.get(9)? as usize).div_ceil(4);
    let query_len = *call.get(10)? as usize;
    let query_at = HEADER_WORDS + target_words;
    let query: Vec<u8> = call
        .get(query_at..query_at + query_len.div_ceil(4))?
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .take(query_len)
        .collect();
    let tiers_at = query_at + query_len.div_ceil(4);
    let tier_count = *call.get(tiers_at)? as usize;
    let headers = call.get(tiers_at + 1..tiers_at + 1 + tier_count * 4)?;
    let mut candidates = &call[tiers_at + 1 + tier_count * 4..];
    let mut first = None;
    for tier in headers.chunks_exact(4) {
        let (active, count) = (tier[1] & 1 != 0, tier[3] as usize);
        let (these, rest) = candidates.split_at(count * 4);
        candidates = rest;
        if first.is_none() && active {
            first = these
                .chunks_exact(4)
                .find(|c| c[2] > 0 && c[3] & ELIGIBLE == ELIGIBLE)
                .map(|c| c[0]);
        }
    }
    let server = first?;
    if query.starts_with(b"echo") {
        let info = host::lookup_server(server)?;
        return Some(Decision::Redirect(format!(
            "http://{}:{}/legacy?words={}&flags={flags:#x}",
            info.host,
            info.port,
            call.len()
        )));
    }
    Some(Decision::Choose(server))
}

bindings::export!(Legacy with_types_in bindings);
