//! `edgeward policy replay NEW.wasm --log decisions.jsonl...`: every
//! logged decision replayed through another policy exactly as the engine
//! called the one that made it (the same request, candidates, flags,
//! health figures, random seed and clock), and what would have changed.
//!
//! Host look-ups during the replay answer from `--topology` (checked
//! against the hash each record carries) or, without it, find nothing.

use crate::decision_log::{Answer, HealthRecord, SCHEMA};
use crate::health::Figures;
use crate::policy::bindings::{
    Candidate, CandidateState, Decision, Encryption, Protocol, Request, RequestKind, Tier,
};
use crate::policy::{PolicyHost, WarmInstance};
use crate::topology::Topology;
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Changed decisions shown as examples, at most.
const EXAMPLES: usize = 10;

/// What a replay reads of a decision record (the rest of it is skipped
/// without being stored; strings are borrowed from the line).
#[derive(serde::Deserialize)]
struct Record<'a> {
    #[serde(default)]
    schema: u32,
    #[serde(borrow)]
    request_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    client: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    protocol: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    encryption: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    target: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    query: std::borrow::Cow<'a, str>,
    topology_version: u64,
    #[serde(default, borrow)]
    topology_hash: std::borrow::Cow<'a, str>,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    time_ms: u64,
    #[serde(borrow)]
    tiers: Vec<TierRecord<'a>>,
    #[serde(default)]
    answer: Option<Answer>,
}

#[derive(serde::Deserialize)]
struct TierRecord<'a> {
    #[serde(default)]
    region_index: u32,
    #[serde(borrow)]
    region: std::borrow::Cow<'a, str>,
    region_active: bool,
    #[serde(default)]
    subnet_index: Option<u32>,
    #[serde(borrow)]
    candidates: Vec<CandidateRecord<'a>>,
}

#[derive(serde::Deserialize)]
struct CandidateRecord<'a> {
    #[serde(default)]
    server_index: u32,
    #[serde(default)]
    group_index: u32,
    #[serde(default)]
    bits: u8,
    #[serde(default)]
    health: Option<HealthRecord>,
    #[serde(borrow)]
    server: std::borrow::Cow<'a, str>,
    weight: u32,
}

/// What the replay found.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Decisions replayed.
    pub decisions: u64,
    /// Of which the new policy answered the same.
    pub same: u64,
    /// Share of `same` (0-1).
    pub same_share: f64,
    /// Changed decisions by kind of change.
    pub changed: BTreeMap<String, u64>,
    /// Records that could not be replayed, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Redirects per server id, before and after, largest change first.
    pub servers: Vec<ServerShare>,
    /// Some changed decisions.
    pub examples: Vec<Example>,
    /// Replayed decisions per second.
    pub per_second: f64,
}

/// One server's share of redirects.
#[derive(Debug, serde::Serialize)]
pub struct ServerShare {
    /// Server id.
    pub server: String,
    /// Share of the logged decisions that chose it.
    pub before: f64,
    /// Share of the replayed ones.
    pub after: f64,
}

/// A changed decision.
#[derive(Debug, serde::Serialize)]
pub struct Example {
    /// The logged request id.
    pub request_id: String,
    /// Client address.
    pub client: String,
    /// What was asked.
    pub target: String,
    /// The logged answer.
    pub before: String,
    /// The new policy's.
    pub after: String,
}

/// Replays the `logs` through the policy in `file`.
pub fn run(
    file: &Path,
    logs: &[PathBuf],
    topology: Option<&Path>,
    config: Option<&Path>,
) -> anyhow::Result<Report> {
    let host = super::offline_host(file, config)?;
    let topology: Arc<Topology> = match topology {
        Some(path) => super::super::load_topology(Some(path))?.snapshot(),
        None => Arc::new(crate::topology::load(
            bytes::Bytes::from_static(
                br#"{"regions": [], "subnets": [], "server_groups": [], "servers": [], "channels": []}"#,
            ),
            0,
        )?),
    };
    let checked = topology.version != 0;
    let policy = host.active();
    let mut instance = host.instantiate(&policy)?;
    let mut report = Report::default();
    let mut before: BTreeMap<String, u64> = BTreeMap::new();
    let mut after: BTreeMap<String, u64> = BTreeMap::new();
    let started = std::time::Instant::now();
    let mut line = String::new();
    let mut tiers: Vec<Tier> = Vec::new();
    let mut request = Request::empty();
    for log in logs {
        let file = std::fs::File::open(log)
            .with_context(|| format!("cannot read decision log {}", log.display()))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut number = 0u64;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                break;
            }
            number += 1;
            if line.trim().is_empty() {
                continue;
            }
            let record: Record = match serde_json::from_str(&line) {
                Ok(r) => r,
                Err(e) => bail!("{}:{number}: not a decision record: {e}", log.display()),
            };
            if record.schema != SCHEMA {
                *report
                    .skipped
                    .entry(format!(
                        "schema {} (only schema {SCHEMA} records carry what a replay needs)",
                        record.schema.max(1)
                    ))
                    .or_default() += 1;
                continue;
            }
            let Some(logged) = &record.answer else {
                *report
                    .skipped
                    .entry("answered by a fallback, not a policy".into())
                    .or_default() += 1;
                continue;
            };
            if checked && *record.topology_hash != *topology.hash {
                bail!(
                    "{}:{number}: the decision was made on topology {} but the topology given has hash {}; \
                     give the topology it was made on, or none (host look-ups then find nothing)",
                    log.display(),
                    record.topology_hash,
                    topology.hash
                );
            }
            request_of(&record, &topology, &mut request)
                .with_context(|| format!("{}:{number}", log.display()))?;
            tiers_of(&record, &mut tiers);
            instance.set_clock(Some(record.time_ms));
            let replayed = match instance.select(&topology, &request, &tiers) {
                Ok(decision) => answer_of(&decision),
                Err(e) => {
                    instance = fresh(&host, &policy)?;
                    Err(e.message)
                }
            };
            report.decisions += 1;
            let name = |a: &Answer| describe(&record, a);
            if let Answer::Choose(s) = logged {
                *before.entry(server_id(&record, *s)).or_default() += 1;
            }
            if let Ok(Answer::Choose(s)) = &replayed {
                *after.entry(server_id(&record, *s)).or_default() += 1;
            }
            let kind = match &replayed {
                Ok(a) if a == logged => {
                    report.same += 1;
                    continue;
                }
                Ok(a) => change(&record, logged, a),
                Err(_) => "the new policy failed".to_string(),
            };
            *report.changed.entry(kind).or_default() += 1;
            if report.examples.len() < EXAMPLES {
                report.examples.push(Example {
                    request_id: record.request_id.to_string(),
                    client: record.client.to_string(),
                    target: record.target.to_string(),
                    before: name(logged),
                    after: match &replayed {
                        Ok(a) => name(a),
                        Err(e) => format!("failed: {e}"),
                    },
                });
            }
        }
    }
    if report.decisions == 0 {
        bail!(
            "no decision could be replayed ({})",
            report
                .skipped
                .iter()
                .map(|(why, n)| format!("{n} records: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    report.per_second = report.decisions as f64 / started.elapsed().as_secs_f64().max(1e-9);
    report.same_share = report.same as f64 / report.decisions as f64;
    let total = report.decisions as f64;
    let mut ids: Vec<&String> = before.keys().chain(after.keys()).collect();
    ids.sort();
    ids.dedup();
    report.servers = ids
        .into_iter()
        .map(|id| ServerShare {
            server: id.clone(),
            before: before.get(id).copied().unwrap_or(0) as f64 / total,
            after: after.get(id).copied().unwrap_or(0) as f64 / total,
        })
        .collect();
    report.servers.sort_by(|a, b| {
        (b.after - b.before)
            .abs()
            .total_cmp(&(a.after - a.before).abs())
    });
    Ok(report)
}

fn fresh(
    host: &PolicyHost,
    policy: &Arc<crate::policy::LoadedPolicy>,
) -> anyhow::Result<WarmInstance> {
    Ok(host.instantiate(policy)?)
}

/// The request as the engine passed it, into `request` (its strings reused).
fn request_of(
    record: &Record<'_>,
    topology: &Topology,
    request: &mut Request,
) -> anyhow::Result<()> {
    let kind = *RequestKind::ALL
        .iter()
        .find(|k| k.as_str() == record.kind.as_ref())
        .with_context(|| format!("kind {:?} is not a request kind", record.kind))?;
    let protocol = match &record.protocol {
        None => None,
        Some(p) => Some(
            *Protocol::ALL
                .iter()
                .find(|x| x.as_str() == *p)
                .with_context(|| format!("protocol {p:?} is not a protocol"))?,
        ),
    };
    let encryption = *Encryption::ALL
        .iter()
        .find(|e| e.as_str() == record.encryption.as_ref())
        .with_context(|| format!("encryption {:?} is not an encryption", record.encryption))?;
    let client: std::net::IpAddr = record
        .client
        .parse()
        .with_context(|| format!("client {:?} is not an IP address", record.client))?;
    request.kind = kind;
    request.protocol = protocol;
    request.encryption = encryption;
    request.target.clear();
    request.target.push_str(&record.target);
    if record.query.is_empty() {
        request.query = None;
    } else {
        let query = request.query.get_or_insert_with(String::new);
        query.clear();
        query.push_str(&record.query);
    }
    request.client = client.into();
    // The indices refer to the logged topology; look-ups answer from the
    // one given (checked to be the same) or from none.
    request.topology_version = if topology.version == 0 {
        record.topology_version
    } else {
        topology.version
    };
    request.seed = record.seed;
    Ok(())
}

/// The tiers as the engine passed them, into `tiers` (reused).
fn tiers_of(record: &Record, tiers: &mut Vec<Tier>) {
    tiers.clear();
    tiers.extend(record.tiers.iter().map(|t| {
        Tier {
            region: t.region_index,
            region_active: t.region_active,
            subnet: t.subnet_index,
            candidates: t
                .candidates
                .iter()
                .map(|c| Candidate {
                    server: c.server_index,
                    group: c.group_index,
                    weight: c.weight,
                    state: CandidateState::from_bits_truncate(c.bits),
                    health: c.health.as_ref().map(|h| {
                        Arc::new(Figures {
                            rtt_us: h.rtt_us,
                            figures: h.figures.clone(),
                        })
                    }),
                })
                .collect(),
        }
    }));
}

fn answer_of(decision: &Decision) -> Result<Answer, String> {
    Ok(match decision {
        Decision::Choose(s) => Answer::Choose(*s),
        Decision::Reject(r) => Answer::Reject(r.status),
        Decision::Redirect(url) => Answer::Redirect(url.clone()),
    })
}

/// A candidate's server id and the region of its tier.
fn offered<'r>(record: &'r Record<'_>, server: u32) -> Option<(&'r str, &'r str)> {
    record.tiers.iter().find_map(|t| {
        t.candidates
            .iter()
            .find(|c| c.server_index == server)
            .map(|c| (&*c.server, &*t.region))
    })
}

fn server_id(record: &Record<'_>, server: u32) -> String {
    offered(record, server).map_or_else(
        || format!("#{server} (not offered)"),
        |(id, _)| id.to_string(),
    )
}

fn describe(record: &Record<'_>, answer: &Answer) -> String {
    match answer {
        Answer::Choose(s) => format!("choose {}", server_id(record, *s)),
        Answer::Reject(status) => format!("reject {status}"),
        Answer::Redirect(url) => format!("redirect {url}"),
    }
}

/// The kind of a change.
fn change(record: &Record<'_>, before: &Answer, after: &Answer) -> String {
    match (before, after) {
        (Answer::Choose(a), Answer::Choose(b)) => {
            match (offered(record, *a), offered(record, *b)) {
                (Some((_, ra)), Some((_, rb))) if ra == rb => {
                    "another edge in the same region".into()
                }
                (_, Some(_)) => "an edge in another region".into(),
                _ => "a server that was not offered".into(),
            }
        }
        (Answer::Choose(_), Answer::Reject(_)) => "choose -> reject".into(),
        (Answer::Reject(_), Answer::Choose(_)) => "reject -> choose".into(),
        (Answer::Reject(_), Answer::Reject(_)) => "another rejection status".into(),
        (_, Answer::Redirect(_)) => "-> redirect".into(),
        (Answer::Redirect(_), _) => "redirect ->".into(),
    }
}
