//! A test policy for contract 0.4.0: it declares the request headers its
//! configuration names (`headers = ["user-agent"]`) and redirects to the
//! first eligible edge with a query that shows what it was given: whether
//! the player came over TLS, what GeoIP said, each declared header's value
//! (`-` when absent) and each tier's region and distance. The end-to-end
//! tests read that URL back.
//!
//! Steering polls, as `steer` says: absent, the engine's default order;
//! `reverse`, the pathways offered in reverse, a TTL of 17 s and as state
//! what it was offered (per pathway: index, flags — 1 current, 2 with a
//! throughput, 4 a clone —, tier (255 none), edges up, edges total and
//! throughput in Mbit/s, a byte each, after a count of the polls it has
//! seen), which the tests read back from the session token; `stop`, stop
//! steering; `bad`, a pathway never offered; `panic`, a trap.

use edgeward_sdk::{
    Decision, Policy, Request, SteerDecision, SteerPoll, Steering, Tier, export_policy, host,
};

/// The configuration.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Headers to declare.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Declared headers shown only as `present` (or `-`), never by value.
    #[serde(default)]
    pub hide: Vec<String>,
    /// How steering polls are answered (see above).
    #[serde(default)]
    pub steer: Option<String>,
}

/// The policy.
pub struct Echo {
    headers: Vec<String>,
    hide: Vec<String>,
    steer: Option<String>,
}

impl Policy for Echo {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(Echo {
            headers: config.headers,
            hide: config.hide,
            steer: config.steer,
        })
    }

    fn steer(&mut self, poll: &SteerPoll<'_>) -> SteerDecision {
        match self.steer.as_deref() {
            Some("reverse") => {
                let polls = poll.state.first().copied().unwrap_or(0);
                let mut state = vec![polls.saturating_add(1)];
                for o in poll.pathways.iter().take(10) {
                    let flags = u8::from(o.current)
                        | u8::from(o.throughput_kbps.is_some()) << 1
                        | u8::from(o.clone) << 2;
                    state.extend_from_slice(&[
                        o.pathway as u8,
                        flags,
                        o.tier.map_or(255, |t| t as u8),
                        o.edges_up as u8,
                        o.edges_total as u8,
                        o.throughput_kbps.map_or(0, |k| (k / 1000).min(255) as u8),
                    ]);
                }
                SteerDecision::Order(Steering {
                    priority: poll.pathways.iter().rev().map(|o| o.pathway).collect(),
                    ttl_s: 17,
                    state,
                })
            }
            Some("stop") => SteerDecision::Stop,
            Some("bad") => SteerDecision::order(vec![9999], 0),
            Some("panic") => panic!("echo panics on a steering poll"),
            _ => SteerDecision::DefaultOrder,
        }
    }

    fn headers(&self) -> Vec<String> {
        self.headers.clone()
    }

    fn select(&mut self, request: &Request, tiers: &[Tier]) -> Decision {
        let Some(candidate) = tiers.iter().flat_map(|t| t.eligible()).next() else {
            return Decision::reject(503, "no eligible edge");
        };
        let Some(server) = host::server_info(candidate.server) else {
            return Decision::reject(500, "lookup-server found nothing");
        };
        let (scheme, port) = match (request.tls, server.tls_port) {
            (true, Some(p)) => ("https", p),
            (true, None) => {
                return Decision::reject(500, "a TLS request offered a server without TLS");
            }
            (false, _) => ("http", server.port),
        };
        let geo = &request.geo;
        let mut url = format!(
            "{scheme}://{}:{port}/echo?tls={}&country={}&asn={}&anonymous={}",
            server.host,
            request.tls,
            geo.country.map_or("-".into(), |c| c.to_string()),
            geo.asn.map_or("-".into(), |a| a.to_string()),
            geo.anonymous.bits(),
        );
        for (name, value) in request.headers.iter() {
            let shown = match value {
                None => "-".into(),
                Some(_) if self.hide.iter().any(|h| h.eq_ignore_ascii_case(name)) => {
                    "present".into()
                }
                Some(v) => escape(v),
            };
            url.push_str(&format!("&h.{name}={shown}"));
        }
        for tier in tiers {
            url.push_str(&format!(
                "&tier={}:{}",
                tier.region,
                tier.distance_km.map_or("-".into(), |d| d.to_string())
            ));
        }
        Decision::Redirect(url)
    }
}

/// Percent-encodes everything but ASCII letters, digits and `-._~`.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

export_policy!(Echo);
