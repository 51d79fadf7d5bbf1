//! `nearest`: edgeward's default routing policy.
//!
//! It reproduces the rule of the system edgeward replaces: walk the tiers in
//! order (longest matching subnet first, the default region last); in each,
//! the candidates are the edge servers that are active and available, in
//! active server groups that serve the requested channel, of an active
//! region. The first tier with any candidate of positive weight wins, and one
//! of them is drawn at random in proportion to its `weight`. No candidate
//! anywhere: `503`.
//!
//! Configuration (all optional): `reason`, the text sent with the 503.

use edgeward_sdk::{Decision, Policy, Request, Tier, choose, export_policy};
use serde::Deserialize;

/// Configuration of the `nearest` policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Reason sent with the 503 when no edge is available.
    pub reason: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            reason: "no available edge server for this client".into(),
        }
    }
}

/// The policy itself.
pub struct Nearest {
    config: Config,
}

impl Policy for Nearest {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(Nearest { config })
    }

    fn select(&mut self, _request: &Request, tiers: &[Tier]) -> Decision {
        for tier in tiers {
            if let Some(candidate) = choose::weighted(tier.eligible(), |c| c.weight) {
                return Decision::Choose(candidate.server);
            }
        }
        Decision::reject(503, self.config.reason.clone())
    }
}

export_policy!(Nearest);

#[cfg(test)]
mod tests {
    use super::*;
    use edgeward_sdk::{Candidate, CandidateState, Encryption, IpAddress, RequestKind};

    fn request() -> Request {
        Request {
            kind: RequestKind::Live,
            protocol: None,
            encryption: Encryption::None,
            target: "ch1".into(),
            query: None,
            client: IpAddress::V4((10, 0, 0, 1)),
            topology_version: 1,
            seed: 0,
            ..Request::empty()
        }
    }

    fn cand(server: u32, weight: u32, state: CandidateState) -> Candidate {
        Candidate {
            server,
            group: 0,
            weight,
            state,
            health: None,
        }
    }

    fn tier(active: bool, candidates: Vec<Candidate>) -> Tier {
        Tier {
            region: 0,
            region_active: active,
            subnet: None,
            distance_km: None,
            candidates,
        }
    }

    fn policy() -> Nearest {
        Nearest::new(Config::default()).unwrap()
    }

    #[test]
    fn first_tier_with_an_eligible_candidate_wins() {
        let all = CandidateState::all();
        let tiers = [
            tier(false, vec![cand(1, 1, all)]),
            tier(true, vec![cand(2, 1, all - CandidateState::AVAILABLE)]),
            tier(true, vec![cand(3, 0, all)]),
            tier(true, vec![cand(4, 1, all)]),
            tier(true, vec![cand(5, 1, all)]),
        ];
        for _ in 0..50 {
            assert!(matches!(
                policy().select(&request(), &tiers),
                Decision::Choose(4)
            ));
        }
    }

    #[test]
    fn nothing_eligible_is_a_503() {
        let all = CandidateState::all();
        let tiers = [tier(
            true,
            vec![
                cand(1, 1, all - CandidateState::SERVER_ACTIVE),
                cand(2, 1, all - CandidateState::GROUP_ACTIVE),
                cand(3, 1, all - CandidateState::SERVES_RESOURCE),
            ],
        )];
        match policy().select(&request(), &tiers) {
            Decision::Reject(r) => assert_eq!(r.status, 503),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
}
