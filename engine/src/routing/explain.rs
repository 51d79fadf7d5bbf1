//! Why a request goes where it goes: the request path run once more, step
//! by step, with each step written down. The URL as parsed; the content it
//! resolved to (and the encryption fallback taken); every subnet of the
//! client, longest first; the tiers with every candidate, its flags and,
//! when it is not eligible, why; the policy version asked, its answer, the
//! lines it logged, the fuel and time it used; the final status and
//! `Location`; with `draws`, the answers over that many seeds.
//!
//! Served by `GET /explain` on the admin API, `edgeward ctl explain` and,
//! offline, `edgeward policy explain`. It uses a fresh instance of the
//! policy, so it never disturbs the workers' warm ones.

use super::Outcome;
use super::answer;
use super::candidates::{Offer, prepare};
use super::url::{self, Route};
use crate::health::ServersHealth;
use crate::policy::bindings::Decision;
use crate::policy::bindings::Tier;
use crate::policy::{LoadedPolicy, PolicyHost};
use crate::topology::Topology;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Most seeds a distribution is drawn over.
pub const MAX_DRAWS: u32 = 100_000;

/// What to explain.
pub struct Question<'a> {
    /// The client address.
    pub client: IpAddr,
    /// Path and query, as a player asks.
    pub url: &'a str,
    /// Also decide over this many seeds and count the answers.
    pub draws: u32,
    /// As a player that came over TLS.
    pub tls: bool,
    /// Request headers, as `(name, value)` (only those the policy declared
    /// reach it).
    pub headers: &'a [(String, String)],
    /// What GeoIP databases say of the client (nothing without them).
    pub geo: crate::policy::bindings::Geo,
    /// Tiers of this many nearest regions for a client in no subnet.
    pub nearest_regions: u8,
}

/// The explanation, as JSON (the admin API's answer).
pub fn explain(
    topology: &Arc<Topology>,
    health: &ServersHealth,
    host: &PolicyHost,
    policy: &Arc<LoadedPolicy>,
    question: &Question<'_>,
) -> Value {
    let (path, query) = match question.url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (question.url, None),
    };
    let mut out = json!({
        "client": question.client.to_string(),
        "url": { "path": path, "query": query },
        "topology_version": topology.version,
    });
    if let Some(geo) = crate::decision_log::GeoRecord::of(&question.geo) {
        out["geo"] = json!(geo);
    }
    if path.starts_with(super::steer::poll::PREFIX) {
        return super::steer::explain::explain(
            topology, health, host, policy, question, path, query, out,
        );
    }
    let route = match url::parse(path) {
        Ok(route) => route,
        Err(e) => {
            let (status, reason) = match e {
                url::UrlError::NoRoute => (404, "no such route"),
                url::UrlError::Malformed(why) => (400, why),
            };
            out["url"]["error"] = json!(reason);
            out["status"] = json!(status);
            return out;
        }
    };
    out["url"]["route"] = describe_route(&route);
    out["content"] = content(topology, &route);
    out["subnets"] = subnets(topology, question.client);
    let offer = Offer {
        tls: question.tls,
        geo: question.geo,
        nearest_regions: question.nearest_regions,
        ..Offer::default()
    };
    let prepared = match prepare(topology, health, &route, query, question.client, offer) {
        Ok(p) => p,
        Err(outcome) => {
            out["status"] = json!(outcome.status());
            if let Outcome::Refuse { reason, .. } = &outcome {
                out["reason"] = json!(reason);
            }
            return out;
        }
    };
    // Every candidate is shown, those a TLS request does not offer too.
    let all = match question.tls {
        true => prepare(
            topology,
            health,
            &route,
            query,
            question.client,
            Offer {
                geo: question.geo,
                nearest_regions: question.nearest_regions,
                ..Offer::default()
            },
        )
        .ok(),
        false => None,
    };
    out["tls"] = json!(question.tls);
    out["tiers"] = tiers(
        topology,
        health,
        all.as_ref().map_or(&prepared.tiers, |a| &a.tiers),
        question.tls,
    );
    let mut instance = match host.instantiate(policy) {
        Ok(i) => i,
        Err(e) => {
            out["policy"] = json!({ "version": policy.label(), "error": e.to_string() });
            return out;
        }
    };
    let mut request = prepared.request.clone();
    request.seed = 0;
    request.headers = crate::policy::bindings::Headers::declared(policy.headers());
    super::headers::RequestHeaders::Pairs(question.headers).fill(&mut request.headers);
    if !request.headers.is_empty() {
        out["headers"] = request
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = match value {
                    Some(_) if crate::decision_log::is_secret_header(name) => json!("(redacted)"),
                    v => json!(v),
                };
                (name.to_string(), shown)
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    let (result, trace) = instance.select_traced(topology, &request, &prepared.tiers);
    let mut call = json!({
        "version": policy.label(),
        "seed": request.seed,
        "logs": trace.logs,
        "fuel": trace.fuel,
        "elapsed_us": trace.elapsed_us,
    });
    match result {
        Err(e) => {
            call["error"] = json!(e.message);
            out["policy"] = call;
            out["status"] = json!(503);
            out["reason"] =
                json!("routing policy failed (a running engine answers with its fallback)");
            return out;
        }
        Ok(decision) => {
            call["answer"] = describe_decision(topology, &decision);
            match answer::check(topology, &prepared, decision) {
                Ok(outcome) => {
                    out["status"] = json!(outcome.status());
                    match outcome {
                        Outcome::Redirect(location) => out["location"] = json!(location),
                        Outcome::Refuse { reason, .. } => out["reason"] = json!(reason),
                        // Steering answers: no policy `select` gives them.
                        Outcome::Manifest { .. } | Outcome::TooSoon { .. } => {}
                    }
                }
                Err(why) => {
                    call["invalid"] = json!(why);
                    out["status"] = json!(503);
                    out["reason"] =
                        json!("invalid policy answer (a running engine answers with its fallback)");
                }
            }
        }
    }
    out["policy"] = call;

    if question.draws > 0 {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for seed in 1..=u64::from(question.draws.min(MAX_DRAWS)) {
            request.seed = seed;
            let answer = match instance.select(topology, &request, &prepared.tiers) {
                Ok(decision) => match answer::check(topology, &prepared, decision) {
                    Ok(Outcome::Redirect(l)) => format!("302 {l}"),
                    Ok(Outcome::Refuse { status, reason }) => format!("{status} {reason}"),
                    Ok(other) => other.status().to_string(),
                    Err(why) => format!("invalid: {why}"),
                },
                Err(e) => {
                    let message = format!("failed: {}", e.message);
                    *counts.entry(message).or_default() += 1;
                    // A Store that failed is never reused.
                    match host.instantiate(policy) {
                        Ok(i) => instance = i,
                        Err(_) => break,
                    }
                    continue;
                }
            };
            *counts.entry(answer).or_default() += 1;
        }
        out["draws"] = json!({ "seeds": question.draws.min(MAX_DRAWS), "answers": counts });
    }
    out
}

fn describe_route(route: &Route<'_>) -> Value {
    match *route {
        Route::Live {
            protocol,
            encryption,
            epg_id,
        } => {
            json!({"kind": "live", "protocol": protocol, "encryption": encryption, "channel": epg_id})
        }
        Route::Catchup {
            protocol,
            encryption,
            epg_id,
        } => {
            json!({"kind": "catchup", "protocol": protocol, "encryption": encryption, "program": epg_id})
        }
        Route::Vod(path) => json!({"kind": "vod", "path": path}),
        Route::Static(path) => json!({"kind": "static-file", "path": path}),
    }
}

/// What the request resolved to, and any encryption fallback taken.
fn content(topology: &Topology, route: &Route<'_>) -> Value {
    match *route {
        Route::Live {
            protocol,
            encryption,
            epg_id,
        } => match topology.channel(epg_id) {
            None => json!({"error": format!("no channel {epg_id:?}")}),
            Some((_, c)) if !c.active => {
                json!({"channel": epg_id, "error": "the channel is not active"})
            }
            Some((_, c)) => match c.stream(protocol, encryption) {
                None => {
                    json!({"channel": epg_id, "error": "no active stream with this protocol and encryption"})
                }
                Some(s) => json!({
                    "channel": epg_id,
                    "stream": {"protocol": s.protocol, "encryption": s.encryption, "path": s.path},
                    "encryption_fallback": (s.encryption != encryption)
                        .then(|| format!("{encryption:?} asked, {:?} served", s.encryption).to_lowercase()),
                }),
            },
        },
        Route::Catchup {
            protocol,
            encryption,
            epg_id,
        } => match topology.program(epg_id) {
            None => json!({"error": format!("no program {epg_id:?}")}),
            Some((_, p)) => match p.record(protocol, encryption) {
                None => {
                    json!({"program": epg_id, "error": "no completed record with this protocol and encryption"})
                }
                Some(r) => json!({
                    "program": epg_id,
                    "channel": p.channel,
                    "record": {
                        "server": r.server,
                        "protocol": r.protocol,
                        "encryption": r.encryption,
                        "path": r.path(),
                    },
                    "encryption_fallback": (r.encryption != encryption)
                        .then(|| format!("{encryption:?} asked, {:?} served", r.encryption).to_lowercase()),
                }),
            },
        },
        Route::Vod(path) | Route::Static(path) => json!({ "path": path }),
    }
}

/// Every subnet holding the client, longest first, then the default region.
fn subnets(topology: &Topology, client: IpAddr) -> Value {
    let matched: Vec<Value> = topology
        .matching_subnets(client)
        .map(|i| {
            let s = &topology.subnets[i as usize];
            json!({
                "cidr": s.net.to_string(),
                "name": topology.subnet_name(i),
                "region": topology.regions[s.region as usize].id,
            })
        })
        .collect();
    json!({
        "matched": matched,
        "default_region": topology.default_region.map(|r| &topology.regions[r as usize].id),
    })
}

/// The tiers with every candidate and why it is not eligible.
fn tiers(topology: &Topology, health: &ServersHealth, tiers: &[Tier], tls: bool) -> Value {
    // The table of this very snapshot is read by index; another by id.
    let indexed = health.topology_version == topology.version;
    tiers
        .iter()
        .map(|t| {
            let region = &topology.regions[t.region as usize];
            let candidates: Vec<Value> = t
                .candidates
                .iter()
                .map(|c| {
                    let server = &topology.servers[c.server as usize];
                    let group = &topology.groups[c.group as usize];
                    let view = if indexed {
                        Some(health.of(c.server).view())
                    } else {
                        health.by_id(&server.id).map(|h| h.view())
                    };
                    let mut why_not = Vec::new();
                    let offered = !tls || server.tls_base_url.is_some();
                    if !offered {
                        why_not.push("no TLS (not offered to a TLS request)".to_string());
                    }
                    if !t.region_active {
                        why_not.push("region inactive".to_string());
                    }
                    if !server.active {
                        why_not.push("server inactive".into());
                    }
                    if !group.active {
                        why_not.push("group inactive".into());
                    }
                    if !c
                        .state
                        .contains(crate::policy::bindings::CandidateState::SERVES_RESOURCE)
                    {
                        why_not.push("group does not serve the channel".into());
                    }
                    if let Some(v) = &view {
                        if v.draining {
                            why_not.push("drained".into());
                        }
                        if v.health == crate::health::State::Down {
                            why_not.push(match &v.since {
                                Some(since) => format!("down since {since}"),
                                None => "down".into(),
                            });
                        }
                    }
                    if c.weight == 0 {
                        why_not.push("weight 0 (never drawn at random)".into());
                    }
                    json!({
                        "server": server.id,
                        "host": server.host,
                        "group": group.id,
                        "weight": c.weight,
                        "flags": c.state.names().collect::<Vec<_>>(),
                        "eligible": offered && t.region_active && c.is_eligible(),
                        "why_not": why_not,
                        "health": view.map(|v| v.state),
                    })
                })
                .collect();
            json!({
                "region": region.id,
                "region_active": t.region_active,
                "subnet": t.subnet.map(|s| topology.subnets[s as usize].net.to_string()),
                "candidates": candidates,
            })
        })
        .collect()
}

fn describe_decision(topology: &Topology, decision: &Decision) -> Value {
    match decision {
        Decision::Choose(server) => json!({
            "choose": topology.servers.get(*server as usize).map(|s| &s.id),
            "index": server,
        }),
        Decision::Reject(r) => json!({"reject": {"status": r.status, "reason": r.reason}}),
        Decision::Redirect(url) => json!({ "redirect": url }),
    }
}
