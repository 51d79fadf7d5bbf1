//! The decision log: a sampled JSON-lines record of routing decisions
//! (`--decision-log FILE`), rotated by size.
//!
//! Each record (schema [`SCHEMA`]) says when, who (client address), what
//! was asked, the candidate tiers exactly as the policy saw them (indices
//! and ids, flags, health figures), the random seed and clock of the call,
//! the topology's version and hash, what the policy answered, what was
//! sent, which policy version decided and how long it took: everything
//! `edgeward policy replay` needs to call another policy exactly as the
//! engine called this one. Workers hand
//! records to a writer thread through a bounded channel and never wait: when
//! the writer falls behind, records are dropped and counted.

use crate::topology::Topology;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

/// Records waiting for the writer, at most.
const QUEUE: usize = 8192;
/// Rotated files kept (`FILE.1` … `FILE.N`).
const KEEP: usize = 3;

/// The version of the record format. 2 added what an exact replay needs:
/// `seed`, `time_ms`, `topology_hash`, `answer`, and indices, state bits
/// and health figures in the tiers; a candidate's flag names became
/// `missing`, the flags it lacks (version 1 records have no `schema`).
/// 3 added what the host's look-ups answer, so that a replay needs no
/// topology: a [`TopologyRecord`] of the servers, groups and regions before
/// the first decision made on each topology in each file, and a tier's
/// `subnet_name`; and `fallback`: a fallback's answer is recorded too.
/// 4 (contract 0.4.0) added `tls`, the `headers` the deciding policy
/// declared (values of [`is_secret_header`] ones left out), a tier's
/// `distance_km` and a server's `tls_port`. 5 added `geo`, what GeoIP
/// databases said of the client.
pub const SCHEMA: u32 = 5;

/// A header whose value the decision log leaves out: credentials and
/// anything named like them (`authorization`, `cookie`, `*token*`,
/// `*secret*`, `*key*`, `*session*`, `*password*`, `*auth*`), so that no
/// secret ends up in a log file. A replay sees such a header as absent.
pub fn is_secret_header(name: &str) -> bool {
    const SECRET: [&str; 7] = [
        "cookie", "token", "secret", "key", "session", "password", "auth",
    ];
    SECRET.iter().any(|s| name.contains(s))
}

/// A declared header of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HeaderRecord {
    /// Its name, lower case.
    pub name: String,
    /// Its value; none when the request had none, or when it is secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Set when the value was left out as a secret.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

/// What GeoIP databases said of a decision's client.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct GeoRecord {
    /// ISO 3166 alpha-2 country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Autonomous system number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// Latitude and longitude, degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<(f64, f64)>,
    /// Anonymous-IP flags, the contract's bits.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub anonymous: u8,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl GeoRecord {
    /// The record of `geo`, none when nothing was known.
    pub fn of(geo: &crate::policy::bindings::Geo) -> Option<GeoRecord> {
        (*geo != Default::default()).then(|| GeoRecord {
            country: geo.country.map(|c| c.to_string()),
            asn: geo.asn,
            location: geo.location.map(|l| (l.latitude, l.longitude)),
            anonymous: geo.anonymous.bits(),
        })
    }

    /// Back to what the policy saw.
    pub fn to_geo(&self) -> crate::policy::bindings::Geo {
        use crate::policy::bindings::{AnonymousIp, Coordinates, Country, Geo};
        Geo {
            country: self.country.as_deref().and_then(Country::new),
            asn: self.asn,
            location: self.location.map(|(latitude, longitude)| Coordinates {
                latitude,
                longitude,
            }),
            anonymous: AnonymousIp::from_bits_truncate(self.anonymous),
        }
    }
}

/// One decision.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Record {
    /// [`SCHEMA`].
    #[serde(default)]
    pub schema: u32,
    /// The request's id (as in its log lines).
    pub request_id: String,
    /// RFC 3339 time.
    pub time: String,
    /// Client address.
    pub client: String,
    /// `live`, `catchup`, `vod` or `static-file`.
    pub kind: String,
    /// Protocol, for live and catch-up.
    pub protocol: Option<String>,
    /// Asked encryption.
    pub encryption: String,
    /// Channel or program `epg_id`, or asset path.
    pub target: String,
    /// Raw query string.
    pub query: String,
    /// The player came over TLS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// The headers the deciding policy declared, with their values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderRecord>,
    /// What GeoIP databases said of the client (none: nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo: Option<GeoRecord>,
    /// Topology version the decision used.
    pub topology_version: u64,
    /// SHA-256 of that topology's document.
    #[serde(default)]
    pub topology_hash: String,
    /// The request's random seed.
    #[serde(default)]
    pub seed: u64,
    /// The clock of the call, milliseconds since the Unix epoch.
    #[serde(default)]
    pub time_ms: u64,
    /// What the policy saw.
    pub tiers: Vec<TierRecord>,
    /// What decided answered: the policy, or the fallback when the policy
    /// failed (schema 2 records leave a fallback's answer out).
    #[serde(default)]
    pub answer: Option<Answer>,
    /// `name@version` of the policy whose call failed, when a fallback
    /// (`policy`) answered instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// `name@version` of what decided (or `native`).
    pub policy: String,
    /// Status answered.
    pub status: u16,
    /// `Location`, for redirects.
    pub location: Option<String>,
    /// Reason, for refusals.
    pub reason: Option<String>,
    /// Time to decide, in microseconds.
    pub duration_us: f64,
    /// The topology decided on, for its [`TopologyRecord`] (not written).
    #[serde(skip)]
    pub topology: Option<Arc<Topology>>,
}

/// What the host's look-ups answer on one topology: written once per
/// topology per file, before the first decision made on it, so that the
/// decisions themselves stay small. Subnets are not in it (a topology may
/// have millions); a decision's tiers carry their matched subnets.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct TopologyRecord {
    /// Always `"topology"` (what tells this line from a decision).
    pub record: String,
    /// [`SCHEMA`].
    pub schema: u32,
    /// The topology's version.
    pub topology_version: u64,
    /// SHA-256 of its document, as the decisions name it.
    pub topology_hash: String,
    /// Every server, by index.
    pub servers: Vec<ServerEntry>,
    /// Every server group, by index.
    pub groups: Vec<GroupEntry>,
    /// Every region, by index.
    pub regions: Vec<RegionEntry>,
}

/// A server of a [`TopologyRecord`] (what `host.lookup-server` answers).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ServerEntry {
    /// Id.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_port: Option<u16>,
    /// Weight.
    pub weight: u32,
    /// `active` flag.
    pub active: bool,
}

/// A server group of a [`TopologyRecord`].
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct GroupEntry {
    /// Id.
    pub id: String,
    /// `active` flag.
    pub active: bool,
}

/// A region of a [`TopologyRecord`].
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RegionEntry {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `active` flag.
    pub active: bool,
}

impl TopologyRecord {
    /// The record of `topology`.
    pub fn of(topology: &Topology) -> Self {
        TopologyRecord {
            record: "topology".into(),
            schema: SCHEMA,
            topology_version: topology.version,
            topology_hash: topology.hash.clone(),
            servers: topology
                .servers
                .iter()
                .map(|s| ServerEntry {
                    id: s.id.to_string(),
                    host: s.host.to_string(),
                    port: s.port,
                    tls_port: s.tls_port,
                    weight: s.weight,
                    active: s.active,
                })
                .collect(),
            groups: topology
                .groups
                .iter()
                .map(|g| GroupEntry {
                    id: g.id.to_string(),
                    active: g.active,
                })
                .collect(),
            regions: topology
                .regions
                .iter()
                .map(|r| RegionEntry {
                    id: r.id.to_string(),
                    name: r.name.to_string(),
                    active: r.active,
                })
                .collect(),
        }
    }
}

/// A policy's answer, as the log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    /// The candidate with this server index.
    Choose(u32),
    /// A refusal with this status.
    Reject(u16),
    /// A redirect to this URL.
    Redirect(String),
}

/// One tier as the policy saw it.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct TierRecord {
    /// Region index.
    #[serde(default)]
    pub region_index: u32,
    /// Region id.
    pub region: String,
    /// Region `active` flag.
    pub region_active: bool,
    /// Matched subnet (omitted for the default-region tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Its index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_index: Option<u32>,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_name: Option<String>,
    /// For a tier found by distance from the client's GeoIP location, the
    /// distance in kilometres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_km: Option<u32>,
    /// The candidates.
    pub candidates: Vec<CandidateRecord>,
}

/// One candidate as the policy saw it.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct CandidateRecord {
    /// Server index.
    #[serde(default)]
    pub server_index: u32,
    /// Group index.
    #[serde(default)]
    pub group_index: u32,
    /// The flags as the packed call carries them.
    #[serde(default)]
    pub bits: u8,
    /// Health figures offered with it: round-trip time and named figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthRecord>,
    /// Server id.
    pub server: String,
    /// Group id.
    pub group: String,
    /// Weight.
    pub weight: u32,
    /// The flags that are not set (`server-active`, `group-active`,
    /// `serves-resource`, `available`): what keeps it from being eligible.
    /// Omitted when all are set; `bits` holds them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// Health figures of a candidate.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct HealthRecord {
    /// Round-trip time of the last probe, microseconds.
    pub rtt_us: Option<u32>,
    /// Named figures, in the order the edge reported them.
    pub figures: Vec<(String, f64)>,
}

/// The workers' handle on the log.
#[derive(Clone, Debug)]
pub struct DecisionLog {
    tx: SyncSender<Record>,
    /// Records are kept when a 64-bit draw is below this.
    threshold: u64,
    dropped: Arc<AtomicU64>,
}

impl DecisionLog {
    /// Opens (appends to) `path` and starts the writer thread. `sample` is
    /// the share of decisions recorded (0–1); files rotate past `max_bytes`.
    pub fn open(path: &Path, sample: f64, max_bytes: u64) -> std::io::Result<DecisionLog> {
        let file = open_append(path)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let path = path.to_path_buf();
        let dropped = Arc::new(AtomicU64::new(0));
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || writer(rx, path, file, max_bytes.max(4096)))?;
        Ok(DecisionLog {
            tx,
            threshold: (sample.clamp(0.0, 1.0) * u64::MAX as f64) as u64,
            dropped,
        })
    }

    /// Whether a decision with this random draw is to be recorded.
    #[inline]
    pub fn sampled(&self, draw: u64) -> bool {
        draw < self.threshold || self.threshold == u64::MAX
    }

    /// Hands a record to the writer without waiting.
    pub fn record(&self, record: Record) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(record)
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn writer(rx: Receiver<Record>, path: PathBuf, file: std::fs::File, max_bytes: u64) {
    let mut written = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut out = std::io::BufWriter::new(file);
    // The topologies whose record this file has (the last few).
    let mut described: Vec<String> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        // Write what is queued, then flush once.
        while let Some(record) = next {
            let mut line = Vec::new();
            if let Some(topology) = &record.topology
                && !described.contains(&topology.hash)
            {
                line = serde_json::to_vec(&TopologyRecord::of(topology)).unwrap_or_default();
                line.push(b'\n');
                if described.len() >= 8 {
                    described.remove(0);
                }
                described.push(topology.hash.clone());
            }
            let _ = serde_json::to_writer(&mut line, &record);
            line.push(b'\n');
            if out.write_all(&line).is_err() {
                tracing::warn!(path = %path.display(), "decision log write failed");
            }
            written += line.len() as u64;
            if written >= max_bytes {
                let _ = out.flush();
                match rotate(&path) {
                    Ok(file) => {
                        out = std::io::BufWriter::new(file);
                        written = 0;
                        described.clear();
                    }
                    Err(e) => tracing::warn!(error = %e, "decision log rotation failed"),
                }
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
}

/// `FILE` → `FILE.1` → … → `FILE.KEEP` (the oldest is removed); a new
/// `FILE` is opened.
fn rotate(path: &Path) -> std::io::Result<std::fs::File> {
    let numbered = |n: usize| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    };
    let _ = std::fs::remove_file(numbered(KEEP));
    for n in (1..KEEP).rev() {
        let _ = std::fs::rename(numbered(n), numbered(n + 1));
    }
    std::fs::rename(path, numbered(1))?;
    open_append(path)
}
