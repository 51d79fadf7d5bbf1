//! What a steering policy is offered and what it may answer: the active
//! pathways with, for this client, the first tier that may use each and
//! its edges up; the engine's default order (for 0.3.0 policies, a
//! policy's `default-order`, a failure, a shed poll); and the check of a
//! policy's own order.

use super::poll::Reported;
use super::token::MAX_STATE;
use crate::health::ServersHealth;
use crate::policy::bindings::{PathwayOffer, SteerDecision, Tier};
use crate::topology::Topology;

/// Longest TTL a manifest may give (and the longest a policy may ask).
pub const MAX_TTL: u32 = 3600;

/// The active pathways of `topology` for a client with these `tiers`,
/// joined to their edges' health and to what the player `reported` (its
/// current pathway first).
pub fn offers(
    topology: &Topology,
    health: &ServersHealth,
    tiers: &[Tier],
    reported: &[Reported],
    out: &mut Vec<PathwayOffer>,
) {
    out.clear();
    for (i, p) in topology.pathways.iter().enumerate() {
        if !p.active {
            continue;
        }
        let group_active = p.group.is_some_and(|g| topology.groups[g as usize].active);
        let edges_up = if group_active {
            p.edges
                .iter()
                .filter(|&&s| {
                    topology.servers[s as usize].active
                        && super::super::candidates::available(topology, health, s)
                })
                .count() as u32
        } else {
            0
        };
        let throughput_kbps = reported
            .iter()
            .find(|r| *r.pathway == *p.id)
            .and_then(|r| r.throughput_bps)
            .map(|bps| u32::try_from(bps / 1000).unwrap_or(u32::MAX));
        out.push(PathwayOffer {
            pathway: i as u32,
            current: reported.first().is_some_and(|r| *r.pathway == *p.id),
            clone: p.base.is_some(),
            tier: tiers
                .iter()
                .position(|t| p.serves_region(t.region))
                .map(|t| t as u32),
            edges_up,
            edges_total: p.edges.len() as u32,
            throughput_kbps,
        });
    }
}

/// Whether the offer is a pathway of ours with no edge up.
fn down(o: &PathwayOffer) -> bool {
    o.edges_total > 0 && o.edges_up == 0
}

/// The engine's order: the pathways of the client's tiers (all of them
/// when none is), those with edges up first, then by the first tier that
/// may use them, then in file order.
pub fn default_order(offers: &[PathwayOffer]) -> Vec<u32> {
    let any_tier = offers.iter().any(|o| o.tier.is_some());
    let mut usable: Vec<&PathwayOffer> = offers
        .iter()
        .filter(|o| !any_tier || o.tier.is_some())
        .collect();
    usable.sort_by_key(|o| (down(o), o.tier.unwrap_or(u32::MAX)));
    usable.iter().map(|o| o.pathway).collect()
}

/// The order a shed poll repeats: the session's last one, by id, of the
/// pathways still offered (the default order after them, in case the
/// last one is gone).
pub fn repeat(topology: &Topology, last: &[String], offers: &[PathwayOffer]) -> Vec<u32> {
    let mut order: Vec<u32> = last
        .iter()
        .filter_map(|id| topology.pathway_index(id))
        .filter(|i| offers.iter().any(|o| o.pathway == *i))
        .collect();
    for p in default_order(offers) {
        if !order.contains(&p) {
            order.push(p);
        }
    }
    order
}

/// A policy's ordering, checked: every pathway one offered, none twice, at
/// least one; a TTL of at most [`MAX_TTL`] (0: the engine's); a state of
/// at most [`MAX_STATE`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The default order.
    Default,
    /// This order, TTL (0: the engine's) and state.
    Order(Vec<u32>, u32, Vec<u8>),
    /// Stop steering the session.
    Stop,
}

/// Checks a policy's answer against what it was offered.
pub fn check(decision: SteerDecision, offers: &[PathwayOffer]) -> Result<Checked, String> {
    let s = match decision {
        SteerDecision::DefaultOrder => return Ok(Checked::Default),
        SteerDecision::Stop => return Ok(Checked::Stop),
        SteerDecision::Order(s) => s,
    };
    if s.priority.is_empty() {
        return Err("an empty priority list".into());
    }
    for (i, p) in s.priority.iter().enumerate() {
        if !offers.iter().any(|o| o.pathway == *p) {
            return Err(format!("priority[{i}]: pathway {p} was not offered"));
        }
        if s.priority[..i].contains(p) {
            return Err(format!("priority[{i}]: pathway {p} is listed twice"));
        }
    }
    if s.ttl_s > MAX_TTL {
        return Err(format!("ttl-s {} is over {MAX_TTL}", s.ttl_s));
    }
    if s.state.len() > MAX_STATE {
        return Err(format!(
            "state of {} bytes is over {MAX_STATE}",
            s.state.len()
        ));
    }
    Ok(Checked::Order(s.priority, s.ttl_s, s.state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::bindings::Steering;

    fn offer(pathway: u32, tier: Option<u32>, up: u32, total: u32) -> PathwayOffer {
        PathwayOffer {
            pathway,
            current: false,
            clone: false,
            tier,
            edges_up: up,
            edges_total: total,
            throughput_kbps: None,
        }
    }

    #[test]
    fn the_default_order_puts_down_pathways_last_then_follows_the_tiers() {
        let offers = [
            offer(0, Some(1), 2, 2),
            offer(1, Some(0), 0, 3),
            offer(2, None, 1, 1),
            offer(3, Some(0), 0, 0),
            offer(4, Some(1), 1, 2),
        ];
        // 2 is for no tier of this client; 3 is not ours (no edges known).
        assert_eq!(default_order(&offers), [3, 0, 4, 1]);
        // A client none may use: all of them, by availability.
        let none = [offer(0, None, 0, 1), offer(1, None, 1, 1)];
        assert_eq!(default_order(&none), [1, 0]);
    }

    #[test]
    fn a_policy_order_must_name_offered_pathways_once() {
        let offers = [offer(0, Some(0), 1, 1), offer(2, Some(0), 1, 1)];
        let order = |priority: Vec<u32>, ttl_s, state: Vec<u8>| {
            SteerDecision::Order(Steering {
                priority,
                ttl_s,
                state,
            })
        };
        assert_eq!(
            check(order(vec![2, 0], 30, vec![1]), &offers),
            Ok(Checked::Order(vec![2, 0], 30, vec![1]))
        );
        for (decision, want) in [
            (order(vec![], 0, vec![]), "empty"),
            (
                order(vec![1], 0, vec![]),
                "priority[0]: pathway 1 was not offered",
            ),
            (
                order(vec![0, 0], 0, vec![]),
                "priority[1]: pathway 0 is listed twice",
            ),
            (order(vec![0], 3601, vec![]), "ttl-s 3601"),
            (order(vec![0], 0, vec![0; 65]), "65 bytes"),
        ] {
            let e = check(decision, &offers).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        assert_eq!(check(SteerDecision::Stop, &offers), Ok(Checked::Stop));
    }
}
