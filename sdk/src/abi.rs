//! The bridge between the generated exports and a [`crate::Policy`]:
//! the words are decoded by the contract's codec (`edgeward-codec`, the
//! same crate the engine encodes them with) into buffers reused from call
//! to call, and the health list is joined to the candidates. Used by
//! [`crate::export_policy!`]; policy authors do not need it.

use crate::{Health, Request, ServerHealth, SteerPoll, Tier};
use edgeward_codec::Decoded;
use std::cell::RefCell;

thread_local! {
    static DECODED: RefCell<Decoded<Health>> = const { RefCell::new(Decoded::new()) };
}

/// Runs `f` on the decoding buffers: the thread's own, or (a policy that
/// re-enters, which it cannot: one call at a time) fresh ones rather than
/// a panic. The fresh ones are made only then: a `Decoded` is some 300
/// bytes, and building one per call costs a copy the size of it.
fn with_decoded<R>(f: impl FnOnce(&mut Decoded<Health>) -> R) -> R {
    DECODED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut decoded) => f(&mut decoded),
        Err(_) => f(&mut Decoded::new()),
    })
}

/// Decodes the words of a `select` call, seeds [`crate::host::random`]
/// with the request's seed, and runs `f` on the request and tiers.
#[doc(hidden)]
pub fn with_call<R>(
    words: &[u32],
    health: Option<&[ServerHealth]>,
    f: impl FnOnce(&Request, &[Tier]) -> R,
) -> R {
    with_decoded(|decoded| {
        decoded.decode(words, |server| {
            health?
                .iter()
                .find(|s| s.server == server)
                .map(|s| s.health.clone())
        });
        crate::host::seed_call(decoded.request.seed);
        f(&decoded.request, &decoded.tiers)
    })
}

/// Names the headers the policy declared, lower-cased, for the calls to
/// come; returns them for the manifest.
#[doc(hidden)]
pub fn declare_headers(names: Vec<String>) -> Vec<String> {
    let names: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    DECODED.with(|cell| {
        if let Ok(mut d) = cell.try_borrow_mut() {
            d.declare_headers(&names);
        }
    });
    names
}

/// Decodes the words of a `steer` call, seeds [`crate::host::random`],
/// and runs `f` on the poll.
#[doc(hidden)]
pub fn with_steer<R>(words: &[u32], state: &[u8], f: impl FnOnce(&SteerPoll<'_>) -> R) -> R {
    with_decoded(|decoded| {
        decoded.decode_steer(words);
        crate::host::seed_call(decoded.request.seed);
        f(&SteerPoll {
            request: &decoded.request,
            tiers: &decoded.tiers,
            pathways: &decoded.pathways,
            state,
        })
    })
}
