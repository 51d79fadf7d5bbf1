//! `steer-region`: an example content-steering policy.
//!
//! Redirects (`select`) as `nearest`: the first tier with an eligible edge,
//! one drawn by weight. Steering polls (`steer`) get the pathways the
//! client's tiers may use, ordered:
//!
//! 1. pathways in good standing before demoted ones: a pathway is demoted
//!    while its edges are all down, while the player reports a throughput
//!    on it below `throughput_floor_kbps`, and for `hold_polls` polls after
//!    either (hysteresis: a pathway that just recovered does not take the
//!    player back at once, and one that flaps does not make it flap);
//! 2. then by the client's tier preference: its own region's pathway first;
//! 3. then in the topology's order.
//!
//! The demotions travel in the session's state (signed by the engine, in
//! the manifest's `RELOAD-URI`), so the engine keeps nothing per player.
//!
//! Configuration (all optional): `throughput_floor_kbps` (0, the default,
//! never demotes for throughput), `hold_polls` (default 3), `ttl_s` (0,
//! the default: the topology's `steering.ttl`), `reason` (the 503 text).

use edgeward_sdk::{
    Decision, PathwayOffer, Policy, Request, SteerDecision, SteerPoll, Steering, Tier, choose,
    export_policy,
};
use serde::Deserialize;

/// Configuration of the `steer-region` policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// A reported throughput below this (kbit/s) demotes the pathway; 0: never.
    pub throughput_floor_kbps: u32,
    /// Polls a demoted pathway stays demoted after its cause is gone.
    pub hold_polls: u8,
    /// The manifests' TTL in seconds (0: the topology's).
    pub ttl_s: u32,
    /// Reason sent with the 503 when no edge is available.
    pub reason: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            throughput_floor_kbps: 0,
            hold_polls: 3,
            ttl_s: 0,
            reason: "no available edge server for this client".into(),
        }
    }
}

/// The policy itself.
pub struct SteerRegion {
    config: Config,
}

/// The state's format: a version byte, then `(pathway, polls left)` pairs.
const STATE_VERSION: u8 = 1;
/// Most demotions remembered (2 bytes each, within the 64-byte state).
const MAX_HELD: usize = 31;

/// Demotions still held from the previous polls: `(pathway, polls left)`.
fn held(state: &[u8]) -> Vec<(u32, u8)> {
    match state.split_first() {
        Some((&STATE_VERSION, pairs)) => pairs
            .chunks_exact(2)
            .map(|p| (u32::from(p[0]), p[1]))
            .collect(),
        // Empty (a new session) or another version's: nothing held.
        _ => Vec::new(),
    }
}

fn encode(held: &[(u32, u8)]) -> Vec<u8> {
    let mut out = vec![STATE_VERSION];
    for &(p, left) in held.iter().take(MAX_HELD) {
        if let Ok(p) = u8::try_from(p) {
            out.extend_from_slice(&[p, left]);
        }
    }
    out
}

impl SteerRegion {
    /// Why `offer` is demoted this poll, if it is (not counting holds).
    fn failing(&self, offer: &PathwayOffer) -> bool {
        let down = offer.edges_total > 0 && offer.edges_up == 0;
        let slow = self.config.throughput_floor_kbps > 0
            && offer
                .throughput_kbps
                .is_some_and(|t| t < self.config.throughput_floor_kbps);
        down || slow
    }
}

impl Policy for SteerRegion {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.ttl_s > 3600 {
            return Err(format!("`ttl_s` {} is over 3600", config.ttl_s));
        }
        Ok(SteerRegion { config })
    }

    fn select(&mut self, _request: &Request, tiers: &[Tier]) -> Decision {
        for tier in tiers {
            if let Some(candidate) = choose::weighted(tier.eligible(), |c| c.weight) {
                return Decision::Choose(candidate.server);
            }
        }
        Decision::reject(503, self.config.reason.clone())
    }

    fn steer(&mut self, poll: &SteerPoll<'_>) -> SteerDecision {
        // Demoted this poll: those held from before, and those failing now
        // (held for `hold_polls` more).
        let mut held: Vec<(u32, u8)> = held(poll.state)
            .into_iter()
            .filter(|&(_, left)| left > 0)
            .collect();
        for offer in poll.pathways.iter().filter(|o| self.failing(o)) {
            held.retain(|&(p, _)| p != offer.pathway);
            held.push((offer.pathway, self.config.hold_polls.saturating_add(1)));
        }
        let demoted = |p: u32| held.iter().any(|&(h, _)| h == p);
        // What the next poll holds: one poll less.
        let next: Vec<(u32, u8)> = held
            .iter()
            .filter(|&&(_, left)| left > 1)
            .map(|&(p, left)| (p, left - 1))
            .collect();

        let mut usable: Vec<&PathwayOffer> =
            poll.pathways.iter().filter(|o| o.tier.is_some()).collect();
        if usable.is_empty() {
            // No tier of this client may use any: leave it to the engine.
            return SteerDecision::DefaultOrder;
        }
        // Stable: equals keep the topology's order.
        usable.sort_by_key(|o| (demoted(o.pathway), o.tier));
        SteerDecision::Order(Steering {
            priority: usable.iter().map(|o| o.pathway).collect(),
            ttl_s: self.config.ttl_s,
            state: encode(&next),
        })
    }
}

export_policy!(SteerRegion);

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(pathway: u32, tier: Option<u32>, up: u32, kbps: Option<u32>) -> PathwayOffer {
        PathwayOffer {
            pathway,
            current: false,
            clone: false,
            tier,
            edges_up: up,
            edges_total: 2,
            throughput_kbps: kbps,
        }
    }

    fn steer(policy: &mut SteerRegion, offers: &[PathwayOffer], state: &[u8]) -> Steering {
        let request = Request::empty();
        let poll = SteerPoll {
            request: &request,
            tiers: &[],
            pathways: offers,
            state,
        };
        match policy.steer(&poll) {
            SteerDecision::Order(s) => s,
            other => panic!("{other:?}"),
        }
    }

    fn policy(floor: u32, hold: u8) -> SteerRegion {
        SteerRegion::new(Config {
            throughput_floor_kbps: floor,
            hold_polls: hold,
            ..Config::default()
        })
        .unwrap()
    }

    #[test]
    fn the_region_pathway_leads_until_it_fails_and_returns_after_the_hold() {
        let mut p = policy(0, 2);
        let healthy = [offer(0, Some(1), 2, None), offer(1, Some(0), 2, None)];
        let s = steer(&mut p, &healthy, &[]);
        assert_eq!(s.priority, [1, 0], "the client's own region first");

        // Its edges go down: last, and held.
        let down = [offer(0, Some(1), 2, None), offer(1, Some(0), 0, None)];
        let s = steer(&mut p, &down, &s.state);
        assert_eq!(s.priority, [0, 1]);
        // Recovered, but held for two more polls.
        let s = steer(&mut p, &healthy, &s.state);
        assert_eq!(s.priority, [0, 1]);
        let s = steer(&mut p, &healthy, &s.state);
        assert_eq!(s.priority, [0, 1]);
        let s = steer(&mut p, &healthy, &s.state);
        assert_eq!(s.priority, [1, 0], "back after the hold");
        assert_eq!(s.state, [STATE_VERSION]);
    }

    #[test]
    fn a_throughput_below_the_floor_demotes_and_pathways_for_no_tier_are_left_out() {
        let mut p = policy(3000, 1);
        let offers = [
            offer(0, Some(1), 2, None),
            offer(1, Some(0), 2, Some(1200)),
            offer(2, None, 2, None),
        ];
        let s = steer(&mut p, &offers, &[]);
        assert_eq!(s.priority, [0, 1]);
        let offers = [offer(0, Some(1), 2, None), offer(1, Some(0), 2, Some(5000))];
        let s = steer(&mut p, &offers, &s.state);
        assert_eq!(s.priority, [0, 1], "held one poll");
        let s = steer(&mut p, &offers, &s.state);
        assert_eq!(s.priority, [1, 0], "the hold is over");
        // A state of another version or garbage holds nothing.
        assert_eq!(steer(&mut p, &offers, &[9, 1, 5]).priority, [1, 0]);
        assert!(
            SteerRegion::new(Config {
                ttl_s: 4000,
                ..Config::default()
            })
            .is_err()
        );
    }
}
