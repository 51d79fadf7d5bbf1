//! `edgeward policy replay NEW.wasm --log decisions.jsonl...`: every
//! logged decision replayed through another policy exactly as the engine
//! called the one that made it (the same request, candidates, flags,
//! health figures, random seed and clock), and what would have changed.
//!
//! Host look-ups during the replay answer from `--topology` (checked
//! against the hash each record carries) or, without it, from what the log
//! carries: the topology records (servers, groups and regions) written
//! before the first decision on each topology, and each decision's matched
//! subnets (schema 3; for schema 2 records they find nothing). When the replayed
//! policy fails, the fallback answers as the engine's would have.

use crate::decision_log::{Answer, HealthRecord, SCHEMA, TopologyRecord};
use crate::health::Figures;
use crate::policy::bindings::{
    Candidate, CandidateState, Decision, Encryption, Protocol, Request, RequestKind, Tier,
};
use crate::policy::bindings::{GroupInfo, RegionInfo, ServerInfo, SubnetInfo};
use crate::policy::{LoggedTopology, LookupTables, PolicyHost, WarmInstance, native};
use crate::topology::Topology;
use anyhow::{Context, bail};
use std::collections::{BTreeMap, HashMap};
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
    #[serde(default, borrow)]
    fallback: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    tls: bool,
    #[serde(default)]
    headers: Vec<crate::decision_log::HeaderRecord>,
    #[serde(default)]
    geo: Option<crate::decision_log::GeoRecord>,
}

#[derive(serde::Deserialize)]
struct TierRecord<'a> {
    #[serde(default)]
    region_index: u32,
    #[serde(borrow)]
    region: std::borrow::Cow<'a, str>,
    region_active: bool,
    #[serde(default, borrow)]
    subnet: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    subnet_index: Option<u32>,
    #[serde(default, borrow)]
    subnet_name: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    distance_km: Option<u32>,
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

/// What answers when the replayed policy fails (`--fallback`): the
/// engine's `--policy-fallback`, but for `previous`, which has no
/// previous version to call here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayFallback {
    /// The engine's native rule, with the record's seed.
    Native,
    /// `503`.
    Unavailable,
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
    /// Calls of the replayed policy that failed (the fallback answered).
    pub failed: u64,
    /// Logged decisions a fallback had answered because their policy
    /// failed.
    pub logged_fallbacks: u64,
    /// Where host look-ups answered from: `topology` or `log`.
    pub lookups: &'static str,
    /// Topology records read from the logs.
    pub topologies: u64,
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
    fallback: ReplayFallback,
    limits: super::LimitArgs,
) -> anyhow::Result<Report> {
    let host = super::offline_host(file, config, limits, None)?;
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
    let declared = crate::policy::bindings::Headers::declared(policy.headers());
    let mut replayer = Replayer {
        instance: host.instantiate(&policy)?,
        host: &host,
        policy,
        topology,
        checked,
        fallback,
        report: Report {
            lookups: if checked { "topology" } else { "log" },
            ..Report::default()
        },
        before: HashMap::new(),
        after: HashMap::new(),
        tiers: Vec::new(),
        request: Request {
            headers: declared,
            ..Request::empty()
        },
        tables: HashMap::new(),
    };
    let started = std::time::Instant::now();
    for log in logs {
        for_each_line(log, |number, line| {
            let record =
                match parse_line(line).with_context(|| format!("{}:{number}", log.display()))? {
                    Line::Decision(record) => record,
                    Line::Topology(topology) => {
                        replayer.learn(topology);
                        return Ok(());
                    }
                };
            replayer
                .replay(&record)
                .with_context(|| format!("{}:{number}", log.display()))
        })?;
    }
    let Replayer {
        mut report,
        before,
        after,
        ..
    } = replayer;
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
    let mut ids: Vec<&Box<str>> = before.keys().chain(after.keys()).collect();
    ids.sort();
    ids.dedup();
    report.servers = ids
        .into_iter()
        .map(|id| ServerShare {
            server: id.to_string(),
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

/// Bytes read from a log at a time.
const CHUNK: usize = 4 << 20;

/// Calls `each` with every non-blank line of the file `log` and its
/// number. Reads in large chunks and hands out lines in place: a per-line
/// read would copy every record once more.
fn for_each_line(
    log: &Path,
    mut each: impl FnMut(u64, &str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = std::fs::File::open(log)
        .with_context(|| format!("cannot read decision log {}", log.display()))?;
    lines_in(file, CHUNK, log, &mut each)
}

/// [`for_each_line`] on what `file` reads, `chunk` bytes at a time.
fn lines_in(
    mut file: impl std::io::Read,
    chunk: usize,
    log: &Path,
    each: &mut impl FnMut(u64, &str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use std::io::Read;
    let mut buf: Vec<u8> = Vec::with_capacity(chunk * 2);
    let mut number = 0u64;
    loop {
        // Into the spare capacity, which is not zeroed first.
        let read = (&mut file)
            .take(chunk as u64)
            .read_to_end(&mut buf)
            .with_context(|| format!("cannot read decision log {}", log.display()))?;
        let end = match read {
            0 => buf.len(),
            _ => match buf.iter().rposition(|&b| b == b'\n') {
                Some(at) => at + 1,
                // A line longer than a chunk: read on.
                None => continue,
            },
        };
        let text = std::str::from_utf8(&buf[..end]).map_err(|e| {
            let valid = &buf[..e.valid_up_to()];
            let line = number + 1 + valid.iter().filter(|&&b| b == b'\n').count() as u64;
            anyhow::anyhow!("{}:{line}: not UTF-8 text", log.display())
        })?;
        // (`str::split` on a character finds it with `memchr`, not byte by
        // byte.)
        for line in text.split('\n') {
            number += 1;
            if !line.trim_ascii().is_empty() {
                each(number, line)?;
            }
        }
        // The last split piece is the empty rest after the final newline.
        number -= u64::from(end > 0 && buf[end - 1] == b'\n');
        buf.drain(..end);
        if read == 0 {
            return Ok(());
        }
    }
}

/// A replay in progress: the policy's instance, what it is replayed on,
/// and the tallies.
struct Replayer<'h> {
    instance: WarmInstance,
    host: &'h PolicyHost,
    policy: Arc<crate::policy::LoadedPolicy>,
    topology: Arc<Topology>,
    /// Whether `topology` is the one given (else look-ups answer from the
    /// records).
    checked: bool,
    fallback: ReplayFallback,
    report: Report,
    /// Redirects per server id: logged, replayed.
    before: HashMap<Box<str>, u64>,
    after: HashMap<Box<str>, u64>,
    /// The last record's tiers and request, reused.
    tiers: Vec<Tier>,
    request: Request,
    /// What the logs' topology records say, by topology hash.
    tables: HashMap<String, Arc<LookupTables>>,
}

impl Replayer<'_> {
    /// Keeps what a topology record says, for look-ups in the decisions
    /// made on it.
    fn learn(&mut self, topology: TopologyRecord) {
        self.report.topologies += 1;
        let tables = LookupTables {
            servers: topology
                .servers
                .into_iter()
                .map(|s| ServerInfo {
                    id: s.id,
                    host: s.host,
                    port: s.port,
                    tls_port: s.tls_port,
                    weight: s.weight,
                    active: s.active,
                })
                .collect(),
            groups: topology
                .groups
                .into_iter()
                .map(|g| GroupInfo {
                    id: g.id,
                    active: g.active,
                })
                .collect(),
            regions: topology
                .regions
                .into_iter()
                .map(|r| RegionInfo {
                    id: r.id,
                    name: r.name,
                    active: r.active,
                    location: None,
                })
                .collect(),
        };
        self.tables.insert(topology.topology_hash, Arc::new(tables));
    }

    /// Replays one record (or counts why it cannot be).
    fn replay(&mut self, record: &Record<'_>) -> anyhow::Result<()> {
        let report = &mut self.report;
        if !(2..=SCHEMA).contains(&record.schema) {
            *report
                .skipped
                .entry(format!(
                    "schema {} (only schema 2 to {SCHEMA} records carry what a replay needs)",
                    record.schema.max(1)
                ))
                .or_default() += 1;
            return Ok(());
        }
        let Some(logged) = &record.answer else {
            *report
                .skipped
                .entry("answered by a fallback, which schema 2 does not record".into())
                .or_default() += 1;
            return Ok(());
        };
        if record.fallback.is_some() {
            report.logged_fallbacks += 1;
        }
        if self.checked && *record.topology_hash != *self.topology.hash {
            bail!(
                "the decision was made on topology {} but the topology given has hash {}; \
                 give the topology it was made on, or none (host look-ups then answer from the log)",
                record.topology_hash,
                self.topology.hash
            );
        }
        request_of(record, &self.topology, &mut self.request)?;
        tiers_of(record, &mut self.tiers);
        self.instance.set_clock(Some(record.time_ms));
        if !self.checked {
            let tables = self.tables.get(&*record.topology_hash);
            let logged = self
                .instance
                .logged_topology()
                .get_or_insert_with(LoggedTopology::default);
            if !logged
                .tables
                .as_ref()
                .zip(tables)
                .is_some_and(|(a, b)| Arc::ptr_eq(a, b))
            {
                logged.tables = tables.cloned();
            }
            subnets_of(record, &mut logged.subnets);
        }
        // A failed call is answered by the fallback, as in the engine;
        // `Err` keeps why the policy failed.
        let replayed = match self
            .instance
            .select(&self.topology, &self.request, &self.tiers)
        {
            Ok(decision) => Ok(answer_of(&decision)),
            Err(e) => {
                self.instance = self.host.instantiate(&self.policy)?;
                self.report.failed += 1;
                Err(e.message)
            }
        };
        let effective = match &replayed {
            Ok(a) => a.clone(),
            Err(_) => match self.fallback {
                ReplayFallback::Native => answer_of(&native::select(&self.tiers, record.seed)),
                ReplayFallback::Unavailable => Answer::Reject(503),
            },
        };
        let report = &mut self.report;
        report.decisions += 1;
        if let Answer::Choose(s) = logged {
            count(&mut self.before, record, *s);
        }
        if let Answer::Choose(s) = &effective {
            count(&mut self.after, record, *s);
        }
        if effective == *logged {
            report.same += 1;
            return Ok(());
        }
        let kind = match &replayed {
            Ok(a) => change(record, logged, a),
            Err(_) => format!(
                "the new policy failed ({})",
                change(record, logged, &effective)
            ),
        };
        *report.changed.entry(kind).or_default() += 1;
        if report.examples.len() < EXAMPLES {
            let name = |a: &Answer| describe(record, a);
            report.examples.push(Example {
                request_id: record.request_id.to_string(),
                client: record.client.to_string(),
                target: record.target.to_string(),
                before: name(logged),
                after: match &replayed {
                    Ok(a) => name(a),
                    Err(e) => format!("failed ({e}), the fallback: {}", name(&effective)),
                },
            });
        }
        Ok(())
    }
}

/// Counts a redirect to `server` (allocating its id only the first time).
fn count(counts: &mut HashMap<Box<str>, u64>, record: &Record<'_>, server: u32) {
    match offered(record, server) {
        Some((id, _)) => match counts.get_mut(id) {
            Some(n) => *n += 1,
            None => {
                counts.insert(id.into(), 1);
            }
        },
        None => *counts.entry(server_id(record, server).into()).or_default() += 1,
    }
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
    request.tls = record.tls;
    request.geo = record.geo.as_ref().map(|g| g.to_geo()).unwrap_or_default();
    // What the log kept of the headers the deciding policy declared (a
    // redacted value is absent): by name, for whatever this policy declares.
    for i in 0..request.headers.names().len() {
        let name = &request.headers.names()[i];
        let value = record
            .headers
            .iter()
            .find(|h| h.name == *name)
            .and_then(|h| h.value.clone());
        request.headers.set(i, value.as_deref());
    }
    Ok(())
}

/// One line of a decision log (a value on the stack, one line at a time:
/// its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Line<'a> {
    Decision(Record<'a>),
    Topology(TopologyRecord),
}

/// Reads a line: a decision record, else a topology record, else damage.
fn parse_line(line: &str) -> anyhow::Result<Line<'_>> {
    match serde_json::from_str(line) {
        Ok(record) => Ok(Line::Decision(record)),
        Err(e) => serde_json::from_str::<TopologyRecord>(line)
            .ok()
            .filter(|t| t.record == "topology")
            .map(Line::Topology)
            .with_context(|| format!("not a decision record: {e}")),
    }
}

/// What one line of a decision log is, as `policy replay` reads it, up to
/// (not including) the policy call: a topology record (`Ok(None)`), or a
/// decision turned back into the request, tiers and subnets the engine
/// passed, with the answer it logged (if it logged one). What the fuzz target `decision_log`
/// drives: it is everything replay does with a line it did not write.
pub fn decode_line(
    line: &str,
    request: &mut Request,
    tiers: &mut Vec<Tier>,
    subnets: &mut Vec<(u32, SubnetInfo)>,
) -> anyhow::Result<Option<Option<Answer>>> {
    let Line::Decision(record) = parse_line(line)? else {
        return Ok(None);
    };
    if !(2..=SCHEMA).contains(&record.schema) {
        bail!("schema {} is not one this engine replays", record.schema);
    }
    static EMPTY: std::sync::OnceLock<Topology> = std::sync::OnceLock::new();
    let empty = EMPTY.get_or_init(|| {
        crate::topology::load(
            bytes::Bytes::from_static(
                br#"{"regions": [], "subnets": [], "server_groups": [], "servers": [], "channels": []}"#,
            ),
            0,
        )
        .expect("the empty topology loads")
    });
    request_of(&record, empty, request)?;
    tiers_of(&record, tiers);
    subnets_of(&record, subnets);
    Ok(Some(record.answer))
}

/// The tiers as the engine passed them, into `tiers` (reused).
/// (Each tier's candidate list is reused.)
fn tiers_of(record: &Record, tiers: &mut Vec<Tier>) {
    tiers.truncate(record.tiers.len());
    while tiers.len() < record.tiers.len() {
        tiers.push(Tier {
            region: 0,
            region_active: false,
            subnet: None,
            distance_km: None,
            candidates: Vec::new(),
        });
    }
    for (tier, t) in tiers.iter_mut().zip(&record.tiers) {
        tier.region = t.region_index;
        tier.region_active = t.region_active;
        tier.subnet = t.subnet_index;
        tier.distance_km = t.distance_km;
        tier.candidates.clear();
        tier.candidates
            .extend(t.candidates.iter().map(|c| Candidate {
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
            }));
    }
}

fn answer_of(decision: &Decision) -> Answer {
    match decision {
        Decision::Choose(s) => Answer::Choose(*s),
        Decision::Reject(r) => Answer::Reject(r.status),
        Decision::Redirect(url) => Answer::Redirect(url.clone()),
    }
}

/// The subnets a decision matched, as `host.lookup-subnet` answers them.
fn subnets_of(record: &Record<'_>, subnets: &mut Vec<(u32, SubnetInfo)>) {
    subnets.clear();
    for tier in &record.tiers {
        if let (Some(index), Some(cidr)) = (tier.subnet_index, &tier.subnet) {
            subnets.push((
                index,
                SubnetInfo {
                    cidr: cidr.to_string(),
                    name: tier.subnet_name.as_deref().unwrap_or_default().to_string(),
                    region: tier.region_index,
                },
            ));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines and their numbers come out right whatever the chunk size:
    /// lines split across chunks, longer than a chunk, blank, and a last
    /// one without a newline.
    #[test]
    fn lines_are_numbered_across_chunks() {
        let text = "one\n\ntwo two two two\n  \nthree\nfour";
        for chunk in [1, 2, 3, 5, 7, 64] {
            let mut seen = Vec::new();
            lines_in(text.as_bytes(), chunk, Path::new("t"), &mut |n, l| {
                seen.push((n, l.to_string()));
                Ok(())
            })
            .unwrap();
            assert_eq!(
                seen,
                [
                    (1, "one".to_string()),
                    (3, "two two two two".to_string()),
                    (5, "three".to_string()),
                    (6, "four".to_string())
                ],
                "chunk {chunk}"
            );
        }
        let err = lines_in(&b"ok\n\xff\n"[..], 4, Path::new("t"), &mut |_, _| Ok(())).unwrap_err();
        assert_eq!(err.to_string(), "t:2: not UTF-8 text");
    }
}
