//! Decoding what the engine passes to `select` (the packed layout described
//! in the WIT) into [`Tier`] and [`Candidate`] values. Used by
//! [`crate::export_policy!`]; policy authors do not need it.

use crate::{Candidate, CandidateState, Request, ServerHealth, Tier};
use std::cell::RefCell;

const TIER_REGION_ACTIVE: u32 = 1;
const TIER_HAS_SUBNET: u32 = 2;

thread_local! {
    /// Decoded tiers, reused call after call (their vectors keep their
    /// capacity, so a warm policy allocates nothing to read its input).
    static TIERS: RefCell<Vec<Tier>> = const { RefCell::new(Vec::new()) };
}

/// Decodes the packed tiers of a `select` call, seeds [`crate::host::random`]
/// with the request's seed, and runs `f` on the tiers.
#[doc(hidden)]
pub fn with_tiers<R>(
    request: &Request,
    words: &[u32],
    health: Option<&[ServerHealth]>,
    f: impl FnOnce(&[Tier]) -> R,
) -> R {
    crate::host::seed_call(request.seed);
    TIERS.with(|cell| {
        // A policy that re-enters (it cannot: one call at a time) would get
        // a fresh vector rather than a panic.
        let mut fresh = Vec::new();
        let mut guard = cell.try_borrow_mut();
        let tiers = match guard.as_deref_mut() {
            Ok(t) => t,
            Err(_) => &mut fresh,
        };
        decode(words, health, tiers);
        f(tiers)
    })
}

/// Decodes `words` into `tiers` (reusing its vectors). Malformed input (it
/// comes from the engine, so this is defence only) stops decoding at the
/// first word that does not fit.
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
}
