//! A test policy for contract 0.4.0: it declares the request headers its
//! configuration names (`headers = ["user-agent"]`) and redirects to the
//! first eligible edge with a query that shows what it was given: whether
//! the player came over TLS, what GeoIP said, each declared header's value
//! (`-` when absent) and each tier's region and distance. The end-to-end
//! tests read that URL back.

use edgeward_sdk::{Decision, Policy, Request, Tier, export_policy, host};

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
}

/// The policy.
pub struct Echo {
    headers: Vec<String>,
    hide: Vec<String>,
}

impl Policy for Echo {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(Echo {
            headers: config.headers,
            hide: config.hide,
        })
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
