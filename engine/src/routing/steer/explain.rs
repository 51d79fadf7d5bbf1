//! Why a steering poll gets the order it gets: what the player reported,
//! the client's tiers, every pathway with what it was offered (its first
//! tier, edges up and in all, the current flag and throughput) or why it
//! was not (inactive), the policy's answer (or the engine's default order
//! and why), and the order and TTL a manifest would carry. Part of
//! `GET /explain` (and `ctl explain`, `policy explain`) for a `/steer/`
//! URL; a fresh policy instance, as for redirects.

use super::order::{self, Checked};
use super::poll;
use crate::health::ServersHealth;
use crate::policy::bindings::PathwayOffer;
use crate::policy::{LoadedPolicy, PolicyHost};
use crate::routing::candidates::{Offer, prepare};
use crate::topology::Topology;
use serde_json::{Value, json};
use std::sync::Arc;

/// The explanation of a poll of `path` and `query` as `question` asks,
/// added to `out`.
#[allow(clippy::too_many_arguments)]
pub fn explain(
    topology: &Arc<Topology>,
    health: &ServersHealth,
    host: &PolicyHost,
    policy: &Arc<LoadedPolicy>,
    question: &crate::routing::explain::Question<'_>,
    path: &str,
    query: Option<&str>,
    mut out: Value,
) -> Value {
    let poll = match poll::parse(path, query) {
        Ok(p) => p,
        Err((status, why)) => {
            out["status"] = json!(status);
            out["reason"] = json!(why);
            return out;
        }
    };
    out["steering"] = json!({
        "protocol": poll.steered.name(),
        "target": poll.target,
        "reported": poll.reported.iter().map(|r| json!({
            "pathway": r.pathway,
            "throughput_bps": r.throughput_bps,
        })).collect::<Vec<_>>(),
        "session": if poll.session.is_some() {
            "a token (not opened here: the order below is a new session's)"
        } else {
            "none: a new session"
        },
    });
    if !topology.steering.enabled {
        out["status"] = json!(410);
        out["reason"] = json!("content steering is switched off");
        return out;
    }
    let mut prepared = match prepare(
        topology,
        health,
        &poll.route,
        query,
        question.client,
        Offer {
            tls: question.tls,
            geo: question.geo,
            nearest_regions: question.nearest_regions,
            ..Offer::default()
        },
    ) {
        Ok(p) => p,
        Err(outcome) => {
            out["status"] = json!(outcome.status());
            if let crate::routing::Outcome::Refuse { reason, .. } = &outcome {
                out["reason"] = json!(reason);
            }
            return out;
        }
    };
    for tier in &mut prepared.tiers {
        tier.candidates.clear();
    }
    out["tiers"] = prepared
        .tiers
        .iter()
        .map(|t| json!(&*topology.regions[t.region as usize].id))
        .collect();
    let mut offers = Vec::new();
    order::offers(
        topology,
        health,
        &prepared.tiers,
        &poll.reported,
        &mut offers,
    );
    out["pathways"] = topology
        .pathways
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut v = json!({ "id": &*p.id });
            match offers.iter().find(|o| o.pathway == i as u32) {
                None => v["offered"] = json!(false),
                Some(o) => describe(&mut v, topology, o),
            }
            if !p.active {
                v["why"] = json!("inactive");
            }
            v
        })
        .collect();
    if offers.is_empty() {
        out["status"] = json!(503);
        out["reason"] = json!("no active steering pathway");
        return out;
    }
    let default_ttl = topology.steering.ttl_s;
    let (order, ttl, answer) = match host.instantiate(policy) {
        Err(e) => (
            order::default_order(&offers),
            default_ttl,
            json!({ "error": e.to_string(), "answered_by": "the default order" }),
        ),
        Ok(mut instance) => {
            let mut request = prepared.request.clone();
            request.seed = 0;
            match instance.steer(topology, &request, &prepared.tiers, &offers, &[]) {
                Err(e) => (
                    order::default_order(&offers),
                    default_ttl,
                    json!({ "error": e.message, "answered_by": "the default order (a running engine's fallback)" }),
                ),
                Ok(decision) => match order::check(decision, &offers) {
                    Err(why) => (
                        order::default_order(&offers),
                        default_ttl,
                        json!({ "invalid": why, "answered_by": "the default order (a running engine's fallback)" }),
                    ),
                    Ok(Checked::Default) => (
                        order::default_order(&offers),
                        default_ttl,
                        json!({ "answer": "default-order" }),
                    ),
                    Ok(Checked::Stop) => {
                        out["policy"] = json!({ "version": policy.label(), "answer": "stop" });
                        out["status"] = json!(410);
                        out["reason"] = json!("the routing policy stopped steering this session");
                        return out;
                    }
                    Ok(Checked::Order(order, ttl, state)) => (
                        order,
                        if ttl == 0 { default_ttl } else { ttl },
                        json!({ "answer": "order", "ttl_s": ttl, "state_bytes": state.len() }),
                    ),
                },
            }
        }
    };
    let mut policy_out = answer;
    policy_out["version"] = json!(policy.label());
    out["policy"] = policy_out;
    out["status"] = json!(200);
    out["order"] = order
        .iter()
        .map(|&p| json!(&*topology.pathways[p as usize].id))
        .collect();
    out["ttl"] = json!(ttl);
    out
}

fn describe(v: &mut Value, topology: &Topology, o: &PathwayOffer) {
    v["offered"] = json!(true);
    v["tier"] = match o.tier {
        Some(t) => json!(t),
        None => json!(null),
    };
    if o.tier.is_none() {
        v["why"] = json!("no tier of this client may use it");
    }
    v["edges_up"] = json!(o.edges_up);
    v["edges_total"] = json!(o.edges_total);
    if o.edges_total > 0 && o.edges_up == 0 {
        v["why"] = json!("every edge of its group is down, drained or inactive");
    }
    v["current"] = json!(o.current);
    if let Some(kbps) = o.throughput_kbps {
        v["throughput_kbps"] = json!(kbps);
    }
    if let Some(base) = topology.pathways[o.pathway as usize].base {
        v["clone_of"] = json!(&*topology.pathways[base as usize].id);
    }
}
