//! `edgeward policy test [DIR|FILE.wasm] --cases FILE`: table-driven
//! cases run through the engine's own request path (the same candidates,
//! policy call, answer check and `Location` as a running engine), each
//! with its own health states. A mismatch prints the case, the expected
//! and the actual answer and the explanation of the request (what `policy
//! explain` prints: subnets, tiers, why each candidate is not eligible,
//! the policy's answer and logs).
//!
//! The cases file (TOML, or JSON by its `.json` extension):
//!
//! ```toml
//! [[case]]
//! name = "a Moscow client goes to a Moscow edge"
//! client = "10.1.2.3"
//! url = "/btv/live/hls/ch1.m3u8"
//! down = ["edge-msk-1"]        # optional: reported down by health checks
//! drained = []                 # optional: drained by an operator
//! expect = { status = 302, edge = "edge-msk-2" }
//! # or edges = ["a", "b"] (any of them: random policies), host = "...",
//! # location_prefix = "http://...", status = 503
//! ```

use super::build;
use crate::health::{HealthTable, ServersHealth, State};
use crate::routing::client::TrustedProxies;
use crate::routing::{Decider, Outcome, PlayerRequest, Router};
use crate::topology::Topology;
use anyhow::{Context, bail};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// A cases file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    case: Vec<Case>,
}

/// One case.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What it checks (defaults to its number).
    #[serde(default)]
    name: Option<String>,
    /// The client address.
    client: IpAddr,
    /// Path and query, as a player asks.
    url: String,
    /// Servers health checking reports down.
    #[serde(default)]
    down: Vec<String>,
    /// Servers an operator drained.
    #[serde(default)]
    drained: Vec<String>,
    /// As a player that came over HTTPS.
    #[serde(default)]
    tls: bool,
    /// Request headers, by name.
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    /// The expected answer.
    expect: Expect,
}

/// An expected answer: every field given must hold.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// HTTP status (302 when an edge, host or Location is expected).
    #[serde(default)]
    status: Option<u16>,
    /// The edge's server id.
    #[serde(default)]
    edge: Option<String>,
    /// Any one of these server ids.
    #[serde(default)]
    edges: Option<Vec<String>>,
    /// The edge's host.
    #[serde(default)]
    host: Option<String>,
    /// The start of the `Location`.
    #[serde(default)]
    location_prefix: Option<String>,
}

/// The outcome of a run.
pub struct Report {
    /// Cases that held.
    pub passed: usize,
    /// Cases that did not.
    pub failed: usize,
}

/// Runs the cases of `cases` against the policy at `policy` (a crate folder,
/// built first, or a `.wasm` file).
pub fn run(
    policy: &Path,
    cases: &Path,
    topology: Option<&Path>,
    config: Option<&Path>,
    limits: super::LimitArgs,
) -> anyhow::Result<Report> {
    let file = if policy.is_dir() {
        build::run(policy)?.path
    } else {
        policy.to_path_buf()
    };
    let text = std::fs::read_to_string(cases)
        .with_context(|| format!("cannot read cases file {}", cases.display()))?;
    let parsed: Cases = if cases.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{e}"))
    } else {
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{e}"))
    }
    .with_context(|| format!("cases file {}", cases.display()))?;
    if parsed.case.is_empty() {
        bail!("cases file {} holds no [[case]]", cases.display());
    }
    let store = Arc::new(super::super::load_topology(topology)?);
    let topology = store.snapshot();
    let host = super::offline_host(&file, config, limits, None)?;
    let mut report = Report {
        passed: 0,
        failed: 0,
    };
    for (i, case) in parsed.case.iter().enumerate() {
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("case {}", i + 1));
        let health = Arc::new(HealthTable::new(&topology));
        set_health(&health.load(), &case.down, &case.drained)
            .with_context(|| format!("{}: {name}", cases.display()))?;
        let mut router = Router::new(
            &store,
            &health,
            &host,
            TrustedProxies::new(Vec::new()),
            Decider::new(host.clone(), Some(i as u64 + 1)),
            None,
        );
        let (path, query) = match case.url.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (case.url.as_str(), None),
        };
        let headers: Vec<(String, String)> = case
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let routed = router.route(&PlayerRequest {
            get_or_head: true,
            path,
            query,
            peer: case.client,
            x_real_ip: None,
            tls: case.tls,
            forwarded_proto: None,
            headers: crate::routing::headers::RequestHeaders::Pairs(&headers),
        });
        let answer = Answer::of(&topology, &routed.outcome);
        match mismatch(&case.expect, &answer) {
            None => {
                report.passed += 1;
                println!("ok      {name}");
            }
            Some(why) => {
                report.failed += 1;
                println!("FAILED  {name}: {why}");
                println!("        {} {}", case.client, case.url);
                println!("        expected {}", describe(&case.expect));
                println!("        got      {}", answer.describe());
                if let Some(by) = routed.decided_by.as_ref().and_then(|h| h.to_str().ok()) {
                    println!("        decided by {by}");
                }
                // The explanation of this very request (see `policy explain`).
                let trace = crate::routing::explain::explain(
                    &topology,
                    &health.load(),
                    &host,
                    &host.active(),
                    &crate::routing::explain::Question {
                        client: case.client,
                        url: &case.url,
                        draws: 0,
                        tls: case.tls,
                        headers: &headers,
                        geo: Default::default(),
                        nearest_regions: crate::geo::NEAREST_REGIONS,
                    },
                );
                let text = serde_json::to_string_pretty(&trace).unwrap_or_default();
                println!("        explain:");
                for line in text.lines() {
                    println!("          {line}");
                }
            }
        }
    }
    println!("{} passed, {} failed", report.passed, report.failed);
    Ok(report)
}

/// Marks servers down (as health checks would) and drained.
pub(super) fn set_health(
    health: &ServersHealth,
    down: &[String],
    drained: &[String],
) -> anyhow::Result<()> {
    for (list, field) in [(down, "down"), (drained, "drained")] {
        for id in list {
            let Some(server) = health.by_id(id) else {
                bail!("field `{field}`: {id:?} is not the id of any server in the topology");
            };
            if field == "down" {
                server.set_checked(State::Down);
            } else {
                server.set_draining(true);
            }
        }
    }
    Ok(())
}

/// What the engine answered, in the terms of an expectation.
struct Answer {
    status: u16,
    location: Option<String>,
    edge: Option<String>,
    reason: Option<String>,
}

impl Answer {
    fn of(topology: &Topology, outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Redirect(location) => Answer {
                status: 302,
                edge: topology
                    .servers
                    .iter()
                    .find(|s| {
                        location
                            .strip_prefix(&*s.base_url)
                            .is_some_and(|rest| rest.starts_with('/'))
                    })
                    .map(|s| s.id.to_string()),
                location: Some(location.clone()),
                reason: None,
            },
            Outcome::Refuse { status, reason } => Answer {
                status: *status,
                location: None,
                edge: None,
                reason: Some(reason.to_string()),
            },
            // A steering poll's manifest is its "reason": what to compare.
            Outcome::Manifest { json, .. } => Answer {
                status: 200,
                location: None,
                edge: None,
                reason: Some(json.clone()),
            },
            Outcome::TooSoon { .. } => Answer {
                status: 429,
                location: None,
                edge: None,
                reason: None,
            },
        }
    }

    fn describe(&self) -> String {
        match (&self.location, &self.reason) {
            (Some(l), _) => format!(
                "302 {l} (edge {})",
                self.edge.as_deref().unwrap_or("not in the topology")
            ),
            (None, Some(r)) => format!("{} {r}", self.status),
            (None, None) => self.status.to_string(),
        }
    }
}

/// Why `answer` does not meet `expect`, if it does not.
fn mismatch(expect: &Expect, answer: &Answer) -> Option<String> {
    let wants_edge = expect.edge.is_some()
        || expect.edges.is_some()
        || expect.host.is_some()
        || expect.location_prefix.is_some();
    let status = expect.status.unwrap_or(if wants_edge { 302 } else { 0 });
    if status != 0 && answer.status != status {
        return Some(format!("status {} instead of {status}", answer.status));
    }
    if let Some(edge) = &expect.edge
        && answer.edge.as_ref() != Some(edge)
    {
        return Some(format!("edge {:?} instead of {edge:?}", answer.edge));
    }
    if let Some(edges) = &expect.edges
        && !answer.edge.as_ref().is_some_and(|e| edges.contains(e))
    {
        return Some(format!("edge {:?} is none of {edges:?}", answer.edge));
    }
    let location = answer.location.as_deref().unwrap_or_default();
    if let Some(host) = &expect.host {
        let actual = location
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or_default());
        if actual != Some(host.as_str()) {
            return Some(format!("host {actual:?} instead of {host:?}"));
        }
    }
    if let Some(prefix) = &expect.location_prefix
        && !location.starts_with(prefix.as_str())
    {
        return Some(format!(
            "Location {location:?} does not start with {prefix:?}"
        ));
    }
    None
}

fn describe(expect: &Expect) -> String {
    let mut parts = Vec::new();
    if let Some(s) = expect.status {
        parts.push(format!("status {s}"));
    }
    if let Some(e) = &expect.edge {
        parts.push(format!("edge {e}"));
    }
    if let Some(e) = &expect.edges {
        parts.push(format!("one of {}", e.join(", ")));
    }
    if let Some(h) = &expect.host {
        parts.push(format!("host {h}"));
    }
    if let Some(p) = &expect.location_prefix {
        parts.push(format!("Location {p}..."));
    }
    parts.join(", ")
}
