//! Step 5 of the request path: the policy's answer checked and turned into
//! the response. Never trust a policy: a server must be one offered, a
//! status an error status, a URL absolute http(s) (https for a player that
//! came over HTTPS); the `Location` is built here from the chosen edge's
//! base URL (its TLS one for such a player) and the resolved path.

use super::Outcome;
use super::candidates::{Prepared, Resolved};
use crate::policy::bindings::{Decision, Tier};
use crate::topology::Topology;
use std::borrow::Cow;

/// Longest reason text passed on from a policy's rejection.
const MAX_REASON: usize = 256;

/// Checks a policy's answer and turns it into the response outcome. Never
/// trusts the policy: a server must be one offered, a status an error
/// status, a URL absolute http(s). `Err` names what was wrong.
pub fn check(
    topology: &Topology,
    prepared: &Prepared<'_>,
    decision: Decision,
) -> Result<Outcome, &'static str> {
    check_decision(
        topology,
        decision,
        &prepared.tiers,
        &prepared.resolved,
        prepared.query,
        prepared.tls,
    )
}

/// Never trust what a policy returns: a server must be one offered, a
/// status must be an error status, a URL must be absolute http(s).
fn check_decision(
    topology: &Topology,
    decision: Decision,
    tiers: &[Tier],
    resolved: &Resolved<'_>,
    query: Option<&str>,
    tls: bool,
) -> Result<Outcome, &'static str> {
    match decision {
        Decision::Choose(server) => {
            let offered = tiers
                .iter()
                .any(|t| t.candidates.iter().any(|c| c.server == server));
            if !offered {
                return Err("chose a server that was not a candidate");
            }
            let server = &topology.servers[server as usize];
            // A TLS request is offered only servers with a TLS port.
            let base = match (tls, &server.tls_base_url) {
                (true, Some(url)) => url,
                _ => &server.base_url,
            };
            Ok(Outcome::Redirect(location(base, resolved, query)))
        }
        Decision::Reject(r) => {
            if !(400..=599).contains(&r.status) {
                return Err("rejected with a status outside 400-599");
            }
            Ok(Outcome::Refuse {
                status: r.status,
                reason: Cow::Owned(sanitize_reason(&r.reason)),
            })
        }
        Decision::Redirect(url) => {
            let ok = url.len() <= 8192
                && http::HeaderValue::from_str(&url).is_ok()
                && url.parse::<http::Uri>().is_ok_and(|u| {
                    matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
                });
            if !ok {
                return Err("redirected to something that is not an absolute http(s) URL");
            }
            if tls && !url.starts_with("https://") {
                return Err(
                    "redirected a player that came over HTTPS to an http URL (mixed content)",
                );
            }
            Ok(Outcome::Redirect(url))
        }
    }
}

/// `{base}/{path}[?{query}]`.
fn location(base: &str, resolved: &Resolved<'_>, query: Option<&str>) -> String {
    let [a, b, c] = resolved.path;
    let q = query.map_or(0, |q| q.len() + 1);
    let mut s = String::with_capacity(base.len() + 2 + a.len() + b.len() + c.len() + q);
    s.push_str(base);
    s.push('/');
    s.push_str(a);
    s.push_str(b);
    if !c.is_empty() {
        s.push('/');
        s.push_str(c);
    }
    if let Some(q) = query {
        s.push('?');
        s.push_str(q);
    }
    s
}

fn sanitize_reason(reason: &str) -> String {
    let mut out: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON)
        .collect();
    if out.trim().is_empty() {
        out = "refused by routing policy".into();
    }
    out
}
