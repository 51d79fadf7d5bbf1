//! The default rule implemented natively in the engine: the fallback when a
//! policy fails (`--policy-fallback native`) and the baseline that shows what
//! the WebAssembly sandbox costs.
//!
//! Same rule as `policies/nearest`: the first tier of an active region with
//! an eligible candidate of positive weight wins; one of its eligible
//! candidates is drawn in proportion to weight. Nothing anywhere: `503`.

use super::bindings::{Candidate, CandidateState, Decision, Rejection, Tier};

/// Decides with the default rule, using `random` for the weighted draw.
pub fn select(tiers: &[Tier], random: u64) -> Decision {
    for tier in tiers.iter().filter(|t| t.region_active) {
        let eligible = || {
            tier.candidates
                .iter()
                .filter(|c| c.state.contains(CandidateState::all()) && c.weight > 0)
        };
        let total: u64 = eligible().map(|c| u64::from(c.weight)).sum();
        if total == 0 {
            continue;
        }
        let mut point = ((u128::from(random) * u128::from(total)) >> 64) as u64;
        let mut last: Option<&Candidate> = None;
        for c in eligible() {
            if point < u64::from(c.weight) {
                return Decision::Choose(c.server);
            }
            point -= u64::from(c.weight);
            last = Some(c);
        }
        if let Some(c) = last {
            return Decision::Choose(c.server);
        }
    }
    Decision::Reject(Rejection {
        status: 503,
        reason: "no available edge server for this client".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(server: u32, weight: u32, state: CandidateState) -> Candidate {
        Candidate {
            server,
            group: 0,
            weight,
            state,
            health: None,
        }
    }

    #[test]
    fn first_eligible_tier_and_weights() {
        let all = CandidateState::all();
        let tiers = vec![
            Tier {
                region: 0,
                region_active: false,
                subnet: None,
                distance_km: None,
                candidates: vec![cand(9, 1, all)],
            },
            Tier {
                region: 1,
                region_active: true,
                subnet: None,
                distance_km: None,
                candidates: vec![
                    cand(8, 0, all),
                    cand(7, 1, all & !CandidateState::AVAILABLE),
                ],
            },
            Tier {
                region: 2,
                region_active: true,
                subnet: None,
                distance_km: None,
                candidates: vec![cand(1, 3, all), cand(2, 1, all)],
            },
        ];
        let mut counts = [0u32; 3];
        for i in 0..4000u64 {
            match select(&tiers, i.wrapping_mul(u64::MAX / 4000)) {
                Decision::Choose(s) => counts[s as usize] += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(
            counts[1].abs_diff(3000) <= 1 && counts[2].abs_diff(1000) <= 1,
            "{counts:?}"
        );
        assert!(matches!(select(&tiers[..2], 1), Decision::Reject(r) if r.status == 503));
    }
}
