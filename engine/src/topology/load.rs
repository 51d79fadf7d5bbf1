//! Turning bytes into a validated [`Topology`]: parse (JSON or MessagePack),
//! check every reference, id and value, then index.
//!
//! Every problem found is reported, not only the first, and each message
//! names the object (`servers[3] "edge-x"`), the field and the offending
//! value, so an operator can fix a file in one pass. Nothing here touches the
//! published topology: a file that fails never replaces a good one.

use super::model::*;
use super::prefix_table::{NONE, PrefixTable};
use super::{
    Channel, Group, Indexes, Member, NetworkDoc, Pathway, Program, Programs, Record, Region,
    Server, SteeringSettings, Stream, Subnet, Subnets, Topology,
};
use bytes::Bytes;
use foldhash::{HashMap, HashMapExt};
use ipnet::IpNet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// At most this many problems are listed; the rest are counted.
const MAX_LISTED: usize = 50;

/// Why a topology was refused.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The file could not be read.
    #[error("cannot read topology file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The document is not well-formed JSON/MessagePack of the right shape.
    #[error("topology is not valid {format}: at {at}: {message}")]
    Syntax {
        /// `JSON` or `MessagePack`.
        format: &'static str,
        /// Path of the offending element, e.g. `servers[2].kind`.
        at: String,
        /// What is wrong.
        message: String,
    },
    /// The document is well-formed but inconsistent.
    #[error("{}", Problems(.0))]
    Invalid(Vec<String>),
}

struct Problems<'a>(&'a [String]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "topology has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.0.iter().take(MAX_LISTED) {
            write!(f, "\n  - {p}")?;
        }
        if n > MAX_LISTED {
            write!(f, "\n  ... and {} more", n - MAX_LISTED)?;
        }
        Ok(())
    }
}

/// Parses a topology document. JSON is recognised by its first non-blank
/// byte (`{`); anything else is read as MessagePack. A document of a newer
/// schema than this engine reads is refused as such, whatever else fails.
pub fn parse(bytes: &[u8]) -> Result<TopologyDoc, TopologyError> {
    let doc = parse_any(bytes).map_err(|e| newer_schema(bytes).unwrap_or(e))?;
    match doc.schema {
        Some(n) if n > super::model::SCHEMA => Err(schema_error(n)),
        Some(0) => Err(TopologyError::Invalid(vec![
            "field `schema`: 0 is not a schema (the first is 1)".into(),
        ])),
        _ => Ok(doc),
    }
}

/// The refusal of a document of schema `n`, newer than this engine's.
fn schema_error(n: u32) -> TopologyError {
    TopologyError::Invalid(vec![format!(
        "field `schema`: {n} is newer than this engine reads ({}); upgrade this node \
         (every node of a fleet) before loading documents of schema {n}",
        super::model::SCHEMA
    )])
}

/// When a document did not parse: the refusal for its `schema`, if that
/// is newer than this engine's (only its top-level `schema` is read).
fn newer_schema(bytes: &[u8]) -> Option<TopologyError> {
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(default)]
        schema: Option<u32>,
    }
    let peek: Peek = if is_json(bytes) {
        serde_json::from_slice(bytes).ok()?
    } else {
        rmp_serde::from_slice(bytes).ok()?
    };
    peek.schema
        .filter(|&n| n > super::model::SCHEMA)
        .map(schema_error)
}

fn parse_any(bytes: &[u8]) -> Result<TopologyDoc, TopologyError> {
    let _shared_ids = Interning::start();
    if is_json(bytes) {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let doc: TopologyDoc =
            serde_path_to_error::deserialize(&mut de).map_err(|e| TopologyError::Syntax {
                format: "JSON",
                at: path_or_root(e.path()),
                message: e.inner().to_string(),
            })?;
        de.end().map_err(|e| TopologyError::Syntax {
            format: "JSON",
            at: "end of document".into(),
            message: e.to_string(),
        })?;
        Ok(doc)
    } else {
        let mut de = rmp_serde::Deserializer::new(bytes);
        serde_path_to_error::deserialize(&mut de).map_err(|e| TopologyError::Syntax {
            format: "MessagePack",
            at: path_or_root(e.path()),
            message: e.inner().to_string(),
        })
    }
}

/// Whether `bytes` is read as JSON by [`parse`].
fn is_json(bytes: &[u8]) -> bool {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    first == Some(&b'{') || first.is_none()
}

fn path_or_root(p: &serde_path_to_error::Path) -> String {
    let s = p.to_string();
    if s == "." { "the top level".into() } else { s }
}

/// Encodes a document as MessagePack with field names (the compact snapshot
/// form [`parse`] accepts).
pub fn to_msgpack(doc: &TopologyDoc) -> Vec<u8> {
    rmp_serde::to_vec_named(doc).expect("a topology document always serialises")
}

/// Reads, parses, validates and indexes a topology file.
pub fn load_file(path: &Path, version: u64) -> Result<Topology, TopologyError> {
    let bytes = std::fs::read(path).map_err(|source| TopologyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    load(bytes.into(), version)
}

/// Parses, validates and indexes a document (JSON or MessagePack).
///
/// Memory is what limits a large topology, so the bytes are let go as soon
/// as they are not needed: JSON once it is parsed; MessagePack that is
/// already in the canonical form ([`to_msgpack`]) is kept as the snapshot's
/// [`Topology::source`] instead of a second, re-encoded copy.
pub fn load(bytes: Bytes, version: u64) -> Result<Topology, TopologyError> {
    let doc = parse(&bytes)?;
    let original = if is_json(&bytes) {
        drop(bytes);
        None
    } else {
        Some(bytes)
    };
    build_with(&doc, original, version)
}

/// Validates a document and builds the indexed snapshot.
pub fn build(doc: &TopologyDoc, version: u64) -> Result<Topology, TopologyError> {
    build_with(doc, None, version)
}

/// Whether `bytes` are exactly what [`to_msgpack`] makes of `doc`, found by
/// encoding `doc` against them without keeping the encoding (and stopping
/// at the first difference).
fn is_canonical(doc: &TopologyDoc, bytes: &[u8]) -> bool {
    struct Compare<'a>(&'a [u8]);
    impl std::io::Write for Compare<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            match self.0.strip_prefix(buf) {
                Some(rest) => {
                    self.0 = rest;
                    Ok(buf.len())
                }
                None => Err(std::io::ErrorKind::InvalidData.into()),
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut compare = Compare(bytes);
    rmp_serde::encode::write_named(&mut compare, doc).is_ok() && compare.0.is_empty()
}

/// Checks a document and builds its snapshot: each collection has its
/// validator below, which names every problem (object, field, value) and
/// builds the snapshot's part; nothing is built when any is found.
fn build_with(
    doc: &TopologyDoc,
    original: Option<Bytes>,
    version: u64,
) -> Result<Topology, TopologyError> {
    let mut v = Validator::default();
    let network_doc = NetworkDoc {
        schema: doc.schema,
        default_region: doc.default_region.clone(),
        regions: doc.regions.clone(),
        server_groups: doc.server_groups.clone(),
        servers: doc.servers.clone(),
        pathways: doc.pathways.clone(),
        steering: doc.steering.clone(),
    };
    let (channels, channel_ids) = channels(&mut v, &doc.channels);
    let network = network(&mut v, &network_doc, &channel_ids);
    recording_groups(&mut v, &doc.channels, &network.indexes.groups);
    let subnets = subnets(&mut v, &doc.subnets, &network.indexes.regions);
    let programs = programs(&mut v, &doc.programs, &channel_ids, &network);
    if doc.schema.unwrap_or(1) < 3 {
        let used = schema_3_uses(
            &doc.servers,
            &doc.channels,
            doc.programs
                .iter()
                .map(|p| (p.epg_id.as_str(), p.records.as_slice())),
        );
        if !used.is_empty() {
            v.problem(format!(
                "field `schema`: {} is older than schema 3, but {} need schema 3: add \
                 `\"schema\": 3` (nodes older than schema 3 then refuse the document as newer)",
                doc.schema.map_or("absent".to_string(), |s| s.to_string()),
                used.join(", ")
            ));
        }
    }

    if !v.problems.is_empty() {
        return Err(TopologyError::Invalid(v.problems));
    }
    let source = match original {
        Some(bytes) if is_canonical(doc, &bytes) => bytes,
        _ => Bytes::from(to_msgpack(doc)),
    };
    let hash = crate::sha256_hex(&source);
    let mut indexes = network.indexes;
    indexes.channels = channel_ids;
    Ok(Topology {
        version,
        hash,
        regions: network.regions.into(),
        groups: network.groups.into(),
        servers: network.servers.into(),
        subnets: Arc::new(subnets),
        channels: channels.into(),
        programs: Arc::new(programs),
        default_region: network.default_region,
        pathways: network.pathways.into(),
        steering: network.steering,
        network: Arc::new(network_doc),
        channel_docs: doc.channels.clone().into(),
        indexes: Arc::new(indexes),
        revisions: Arc::default(),
        source: source.into(),
    })
}

/// The network part of a snapshot, built from its documents.
pub(super) struct Network {
    pub regions: Vec<Region>,
    pub groups: Vec<Group>,
    pub servers: Vec<Server>,
    pub default_region: Option<u32>,
    pub pathways: Vec<Pathway>,
    pub steering: SteeringSettings,
    /// Regions, groups and servers by id (channels left empty).
    pub indexes: Indexes,
}

/// Checks the network part (regions, groups, servers, default region)
/// against the channels it may name, and builds it.
pub(super) fn network(
    v: &mut Validator,
    doc: &NetworkDoc,
    channels: &HashMap<Box<str>, u32>,
) -> Network {
    let indexes = Indexes {
        regions: v.unique_ids("regions", "id", doc.regions.iter().map(|r| r.id.as_str())),
        groups: v.unique_ids(
            "server_groups",
            "id",
            doc.server_groups.iter().map(|g| g.id.as_str()),
        ),
        servers: v.unique_ids("servers", "id", doc.servers.iter().map(|s| s.id.as_str())),
        channels: HashMap::default(),
    };
    let default_region = doc.default_region.as_deref().and_then(|id| {
        let found = indexes.regions.get(id).copied();
        if found.is_none() {
            v.problem(format!(
                "field `default_region`: {id:?} is not the id of any region"
            ));
        }
        found
    });
    let servers = servers(v, &doc.servers);
    let groups = groups(v, &doc.server_groups, &indexes.servers, channels);
    let regions = regions(v, doc, &indexes);
    let pathways = pathways(v, doc, &indexes);
    let steering = steering(v, doc.steering.as_ref());
    schema_features(v, doc);
    Network {
        regions,
        groups,
        servers,
        default_region,
        pathways,
        steering,
        indexes,
    }
}

/// The fields of schema 2 are refused in a document that does not say it
/// is one: a node too old to read them must refuse such a document as
/// newer (see [`super::model::SCHEMA`]), not half-read it.
fn schema_features(v: &mut Validator, doc: &NetworkDoc) {
    if doc.schema.unwrap_or(1) >= 2 {
        return;
    }
    let mut used = Vec::new();
    if !doc.pathways.is_empty() {
        used.push("`pathways`".to_string());
    }
    if doc.steering.is_some() {
        used.push("`steering`".to_string());
    }
    if let Some((i, r)) = doc
        .regions
        .iter()
        .enumerate()
        .find(|(_, r)| r.location.is_some())
    {
        used.push(format!("`regions[{i}].location` ({:?})", r.id));
    }
    if !used.is_empty() {
        v.problem(format!(
            "field `schema`: {} is schema 1, but {} need schema 2: add `\"schema\": 2` \
             (nodes older than schema 2 then refuse the document as newer)",
            doc.schema.map_or("absent".to_string(), |s| s.to_string()),
            used.join(", ")
        ));
    }
}

/// Whether `id` may be a pathway id: HLS allows letters, digits, `.`, `-`
/// and `_` in a `PATHWAY-ID`.
pub fn is_pathway_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Whether `host` may be a host name (or address) in a URL.
fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && !host.contains(['/', '?', '#', '@', ' '])
        && format!("http://{host}/").parse::<http::Uri>().is_ok()
}

/// Steering pathways: unique ids HLS allows, hosts, groups, regions, a
/// clone's base (itself no clone) and parameters.
fn pathways(v: &mut Validator, doc: &NetworkDoc, ids: &Indexes) -> Vec<Pathway> {
    let index = v.unique_ids("pathways", "id", doc.pathways.iter().map(|p| p.id.as_str()));
    let mut pathways = Vec::with_capacity(doc.pathways.len());
    for (i, p) in doc.pathways.iter().enumerate() {
        let obj = format!("pathways[{i}] {:?}", p.id);
        if !is_pathway_id(&p.id) {
            v.problem(format!(
                "{obj}: field `id`: {:?} must be 1-64 letters, digits, `.`, `-` or `_`",
                p.id
            ));
        }
        if let Some(host) = &p.host
            && !is_host(host)
        {
            v.problem(format!(
                "{obj}: field `host`: {host:?} is not a valid host name or IP address"
            ));
        }
        let mut group = p.group.as_deref().and_then(|g| {
            let found = ids.groups.get(g).copied();
            if found.is_none() {
                v.problem(format!(
                    "{obj}: field `group`: {g:?} is not the id of any server group"
                ));
            }
            found
        });
        let base =
            p.base.as_deref().and_then(|b| {
                let found = index.get(b).copied();
                match found.map(|j| &doc.pathways[j as usize]) {
                None => v.problem(format!(
                    "{obj}: field `base`: {b:?} is not the id of any pathway"
                )),
                Some(base) if base.id == p.id => {
                    v.problem(format!("{obj}: field `base`: a pathway cannot be its own clone"))
                }
                Some(base) if base.base.is_some() => v.problem(format!(
                    "{obj}: field `base`: {b:?} is itself a clone (a clone's base must not be one)"
                )),
                Some(base) => {
                    if group.is_none() {
                        group = base.group.as_deref().and_then(|g| ids.groups.get(g).copied());
                    }
                }
            }
                found
            });
        if base.is_none() && p.base.is_none() && !p.params.is_empty() {
            v.problem(format!(
                "{obj}: field `params`: only a clone (with `base`) has parameters"
            ));
        }
        if p.base.is_some() && p.host.is_none() && p.params.is_empty() {
            v.problem(format!(
                "{obj}: a clone needs a `host` or `params` to differ from its base"
            ));
        }
        for (name, value) in &p.params {
            let ok = |t: &str| {
                !t.is_empty()
                    && t.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~')
                    })
            };
            if !ok(name) || name.starts_with("_HLS") || name.starts_with("_DASH") || !ok(value) {
                v.problem(format!(
                    "{obj}: field `params.{name}`: {value:?}: names and values must be \
                     letters, digits, `.`, `-`, `_` or `~` (names not starting `_HLS` or `_DASH`)"
                ));
            }
        }
        let mut regions = Vec::with_capacity(p.regions.len());
        for (j, r) in p.regions.iter().enumerate() {
            match ids.regions.get(r.as_str()) {
                Some(&idx) => regions.push(idx),
                None => v.problem(format!(
                    "{obj}: field `regions[{j}]`: {r:?} is not the id of any region"
                )),
            }
        }
        // No regions named: those serving its group, or all.
        if p.regions.is_empty()
            && let Some(g) = group
        {
            let gid = &doc.server_groups[g as usize].id;
            regions.extend(
                doc.regions
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.server_groups.iter().any(|x| x == gid))
                    .map(|(k, _)| k as u32),
            );
        }
        regions.sort_unstable();
        regions.dedup();
        let edges = group.map_or_else(Vec::new, |g| {
            doc.server_groups[g as usize]
                .servers
                .iter()
                .filter_map(|s| ids.servers.get(s.as_str()).copied())
                .filter(|&s| doc.servers[s as usize].kind == ServerKind::Edge)
                .collect()
        });
        pathways.push(Pathway {
            edges: edges.into(),
            id: p.id.as_str().into(),
            host: p.host.as_deref().map(Into::into),
            group,
            base,
            params: p
                .params
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
            active: p.active,
            regions: (!p.regions.is_empty() || group.is_some()).then(|| regions.into()),
        });
    }
    pathways
}

/// The steering settings: a TTL in whole seconds, 1 s to 1 h.
fn steering(v: &mut Validator, doc: Option<&SteeringDoc>) -> SteeringSettings {
    let Some(doc) = doc else {
        return SteeringSettings::default();
    };
    let ms = doc.ttl.0;
    if ms % 1000 != 0 || !(1000..=3_600_000).contains(&ms) {
        v.problem(format!(
            "steering: field `ttl`: {ms}ms must be whole seconds from 1s to 1h"
        ));
    }
    SteeringSettings {
        enabled: doc.enabled,
        ttl_s: (ms / 1000).clamp(1, 3600) as u32,
    }
}

/// Servers: port, host, DVR prefix, health check.
fn servers(v: &mut Validator, docs: &[ServerDoc]) -> Vec<Server> {
    docs.iter()
        .enumerate()
        .map(|(i, s)| server(v, &format!("servers[{i}] {:?}", s.id), s))
        .collect()
}

/// One server, checked and built; `obj` names it in problems.
pub(super) fn server(v: &mut Validator, obj: &str, s: &ServerDoc) -> Server {
    let port = match u16::try_from(s.port) {
        Ok(p) if p != 0 => p,
        _ => {
            v.problem(format!(
                "{obj}: field `port`: {} is out of range (1-65535)",
                s.port
            ));
            80
        }
    };
    let base_url = base_url(&s.host, port);
    let tls_port = match s.tls_port {
        None if port == 443 => Some(443),
        None => None,
        Some(p) => match u16::try_from(p) {
            Ok(p) if p != 0 => Some(p),
            _ => {
                v.problem(format!(
                    "{obj}: field `tls_port`: {p} is out of range (1-65535)"
                ));
                None
            }
        },
    };
    let tls_base_url = tls_port.map(|p| tls_base_url(&s.host, p).into());
    if s.host.is_empty() || base_url.parse::<http::Uri>().is_err() || s.host.contains('/') {
        v.problem(format!(
            "{obj}: field `host`: {:?} is not a valid host name or IP address",
            s.host
        ));
    }
    if s.id.is_empty() {
        v.problem(format!("{obj}: field `id` is empty"));
    }
    let prefix = match (s.kind, &s.prefix) {
        (ServerKind::Dvr, None) => {
            v.problem(format!("{obj}: field `prefix` is required on a dvr server"));
            None
        }
        (_, Some(p)) => {
            if p.is_empty() || p.contains('/') || !is_uri_path(p) {
                v.problem(format!(
                    "{obj}: field `prefix`: {p:?} must be one non-empty URL path segment"
                ));
            }
            Some(p.as_str().into())
        }
        (ServerKind::Edge, None) => None,
    };
    if let Some(m) = &s.management {
        if s.kind != ServerKind::Dvr {
            v.problem(format!(
                "{obj}: field `management`: only a dvr server has a management API"
            ));
        }
        if m.host.is_empty() || m.host.contains('/') || !is_host(&m.host) {
            v.problem(format!(
                "{obj}: field `management.host`: {:?} is not a valid host name or IP address",
                m.host
            ));
        }
        if !(1..=65535).contains(&m.port) {
            v.problem(format!(
                "{obj}: field `management.port`: {} is out of range (1-65535)",
                m.port
            ));
        }
    }
    if let Some(h) = &s.healthcheck {
        if !h.path.starts_with('/') || !is_uri_path(&h.path) {
            v.problem(format!(
                "{obj}: field `healthcheck.path`: {:?} must be a URL path starting with `/`",
                h.path
            ));
        }
        if h.interval.0 == 0 {
            v.problem(format!(
                "{obj}: field `healthcheck.interval` must be positive"
            ));
        }
        if h.timeout.0 == 0 || h.timeout.0 > h.interval.0.max(1) {
            v.problem(format!(
                "{obj}: field `healthcheck.timeout`: {}ms must be positive and at most the interval ({}ms)",
                h.timeout.0, h.interval.0
            ));
        }
        if h.rise == 0 || h.fall == 0 {
            v.problem(format!(
                "{obj}: fields `healthcheck.rise` and `healthcheck.fall` must be at least 1"
            ));
        }
    }
    Server {
        id: s.id.as_str().into(),
        kind: s.kind,
        host: s.host.as_str().into(),
        port,
        weight: s.weight,
        active: s.active,
        prefix,
        base_url: base_url.into(),
        tls_port,
        tls_base_url,
        healthcheck: s.healthcheck.clone(),
    }
}

/// Channels and their streams: ids usable in a URL, edge paths. Returns
/// them with their index by `epg_id`.
pub(super) fn channels(
    v: &mut Validator,
    docs: &[ChannelDoc],
) -> (Vec<Channel>, HashMap<Box<str>, u32>) {
    let ids = v.unique_ids("channels", "epg_id", docs.iter().map(|c| c.epg_id.as_str()));
    let mut channels = Vec::with_capacity(docs.len());
    for (i, c) in docs.iter().enumerate() {
        let obj = format!("channels[{i}] {:?}", c.epg_id);
        v.check_resource_id(&obj, "epg_id", &c.epg_id);
        let streams = c
            .streams
            .iter()
            .enumerate()
            .map(|(j, s)| Stream {
                protocol: s.protocol,
                encryption: s.encryption,
                path: v.edge_path(&format!("{obj}.streams[{j}]"), &s.path),
                active: s.active,
            })
            .collect();
        if let Some(code) = &c.code_name
            && !is_code_name(code)
        {
            v.problem(format!(
                "{obj}: field `code_name`: {code:?} must be 1 to 64 letters, digits, `_` or `-`"
            ));
        }
        if let Some(id) = c.storage_id
            && !(1..=10).contains(&id)
        {
            v.problem(format!(
                "{obj}: field `storage_id`: {id} is out of range (1-10)"
            ));
        }
        channels.push(Channel {
            epg_id: c.epg_id.as_str().into(),
            name: c.name.as_deref().map(Into::into),
            active: c.active,
            dvr_enabled: c.dvr_enabled,
            streams,
        });
    }
    (channels, ids)
}

/// Whether `name` may be a channel's name on the DVR (the first segment
/// of its recordings' placements).
pub fn is_code_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// The channels' recording groups name server groups.
pub(super) fn recording_groups(
    v: &mut Validator,
    docs: &[ChannelDoc],
    groups: &HashMap<Box<str>, u32>,
) {
    for (i, c) in docs.iter().enumerate() {
        if let Some(g) = &c.recording_group
            && !groups.contains_key(g.as_str())
        {
            v.problem(format!(
                "channels[{i}] {:?}: field `recording_group`: {g:?} is not the id of any server group",
                c.epg_id
            ));
        }
    }
}

/// What a document uses of schema 3 (DVR recording), named for the
/// refusal of a document that says it is older.
pub(super) fn schema_3_uses<'a>(
    servers: &[ServerDoc],
    channels: &[ChannelDoc],
    programs: impl Iterator<Item = (&'a str, &'a [RecordDoc])>,
) -> Vec<String> {
    let mut used = Vec::new();
    if let Some((i, s)) = servers
        .iter()
        .enumerate()
        .find(|(_, s)| s.management.is_some())
    {
        used.push(format!("`servers[{i}].management` ({:?})", s.id));
    }
    for (i, c) in channels.iter().enumerate() {
        let fields = [
            ("recording_group", c.recording_group.is_some()),
            ("code_name", c.code_name.is_some()),
            ("storage_id", c.storage_id.is_some()),
        ];
        if let Some((field, _)) = fields.iter().find(|(_, set)| *set) {
            used.push(format!("`channels[{i}].{field}` ({:?})", c.epg_id));
            break;
        }
    }
    for (program, records) in programs {
        if let Some(r) = records.iter().find(|r| record_uses_schema_3(r)) {
            used.push(format!(
                "a record of program {program:?} ({})",
                if r.status.before_schema_3() {
                    "`placement` or `error`".to_string()
                } else {
                    format!("status `{}`", r.status.name())
                }
            ));
            break;
        }
    }
    used
}

/// Whether a record has what only schema 3 can hold.
pub(super) fn record_uses_schema_3(r: &RecordDoc) -> bool {
    !r.status.before_schema_3() || r.placement.is_some() || r.error.is_some()
}

/// Server groups: the servers and channels they name exist.
fn groups(
    v: &mut Validator,
    docs: &[GroupDoc],
    servers: &HashMap<Box<str>, u32>,
    channel_ids: &HashMap<Box<str>, u32>,
) -> Vec<Group> {
    let mut groups = Vec::with_capacity(docs.len());
    for (i, g) in docs.iter().enumerate() {
        let obj = format!("server_groups[{i}] {:?}", g.id);
        for (j, s) in g.servers.iter().enumerate() {
            if !servers.contains_key(s.as_str()) {
                v.problem(format!(
                    "{obj}: field `servers[{j}]`: {s:?} is not the id of any server"
                ));
            }
        }
        let channels = if g.channels.is_empty() {
            None
        } else {
            let mut list: Vec<u32> = Vec::with_capacity(g.channels.len());
            for (j, c) in g.channels.iter().enumerate() {
                match channel_ids.get(c.as_str()) {
                    Some(&idx) => list.push(idx),
                    None => v.problem(format!(
                        "{obj}: field `channels[{j}]`: {c:?} is not the epg_id of any channel"
                    )),
                }
            }
            list.sort_unstable();
            list.dedup();
            Some(list.into_boxed_slice())
        };
        groups.push(Group {
            id: g.id.as_str().into(),
            active: g.active,
            channels,
        });
    }
    groups
}

/// Regions, with their (edge server, group) members flattened.
fn regions(v: &mut Validator, doc: &NetworkDoc, ids: &Indexes) -> Vec<Region> {
    let mut regions = Vec::with_capacity(doc.regions.len());
    for (i, r) in doc.regions.iter().enumerate() {
        let obj = format!("regions[{i}] {:?}", r.id);
        let mut members = Vec::new();
        for (j, gid) in r.server_groups.iter().enumerate() {
            let Some(&g) = ids.groups.get(gid.as_str()) else {
                v.problem(format!(
                    "{obj}: field `server_groups[{j}]`: {gid:?} is not the id of any server group"
                ));
                continue;
            };
            for sid in &doc.server_groups[g as usize].servers {
                if let Some(&s) = ids.servers.get(sid.as_str())
                    && doc.servers[s as usize].kind == ServerKind::Edge
                {
                    let m = Member {
                        server: s,
                        group: g,
                    };
                    if !members.contains(&m) {
                        members.push(m);
                    }
                }
            }
        }
        regions.push(Region {
            id: r.id.as_str().into(),
            name: r.name.as_deref().unwrap_or(&r.id).into(),
            active: r.active,
            members: members.into_boxed_slice(),
            location: r.location.map(|l| {
                if !(-90.0..=90.0).contains(&l.latitude) || !(-180.0..=180.0).contains(&l.longitude)
                {
                    v.problem(format!(
                        "{obj}: field `location`: ({}, {}) is not a latitude in -90..90 \
                         and a longitude in -180..180",
                        l.latitude, l.longitude
                    ));
                }
                (l.latitude, l.longitude)
            }),
        });
    }
    regions
}

/// Subnets: CIDR and region, then indexed. Duplicate networks are found
/// once the prefixes are sorted for indexing, where they end up side by
/// side.
fn subnets(v: &mut Validator, docs: &[SubnetDoc], regions: &HashMap<Box<str>, u32>) -> Subnets {
    let mut list = Vec::with_capacity(docs.len());
    let mut names = Vec::new();
    let mut written = Vec::new();
    let mut v4 = Vec::with_capacity(docs.len());
    let mut v6 = Vec::new();
    for (i, s) in docs.iter().enumerate() {
        // Messages name the subnet by its place; no text is made for a
        // good one (there may be a million).
        let region = match regions.get(&*s.region) {
            Some(&r) => r,
            None => {
                v.problem(format!(
                    "subnets[{i}] {:?}: field `region`: {:?} is not the id of any region",
                    s.cidr.to_string(),
                    &*s.region
                ));
                NONE
            }
        };
        let (net, as_written) = match &s.cidr {
            Cidr::Net(n) => (n.trunc(), *n),
            Cidr::Invalid(text) => {
                v.problem(format!(
                    "subnets[{i}]: field `cidr`: {text:?} is not an IPv4 or IPv6 CIDR (like 10.1.0.0/16 or 2001:db8::/32)"
                ));
                continue;
            }
        };
        // The index in the file: the same as in `list` when the document
        // is valid (an invalid one is never indexed).
        let id = i as u32;
        match net {
            IpNet::V4(n) => v4.push((u32::from(n.network()), n.prefix_len(), id)),
            IpNet::V6(n) => v6.push((u128::from(n.network()), n.prefix_len(), id)),
        }
        if let Some(name) = &s.name {
            names.push((id, name.clone()));
        }
        if as_written != net {
            written.push((id, as_written));
        }
        list.push(Subnet {
            net,
            region,
            parent: NONE,
        });
    }
    PrefixTable::sort(&mut v4);
    PrefixTable::sort(&mut v6);
    let duplicates = PrefixTable::duplicates(&v4).chain(PrefixTable::duplicates(&v6));
    for (first, again) in duplicates {
        // Only parsed networks were sorted, so this is one.
        if let Cidr::Net(net) = &docs[again as usize].cidr {
            v.problem(format!(
                "subnets[{again}]: field `cidr`: {:?} is the same network ({}) as subnets[{first}]",
                net.to_string(),
                net.trunc()
            ));
        }
    }
    if !v.problems.is_empty() {
        return Subnets::empty();
    }
    let (v4_table, parents) = PrefixTable::build(&v4);
    for (&(_, _, id), parent) in v4.iter().zip(parents) {
        list[id as usize].parent = parent;
    }
    drop(v4);
    let (v6_table, parents) = PrefixTable::build(&v6);
    for (&(_, _, id), parent) in v6.iter().zip(parents) {
        list[id as usize].parent = parent;
    }
    Subnets::from_parts(list, names, written, v4_table, v6_table)
}

/// Programs and their records: ids, channel, times, DVR servers, paths.
fn programs(
    v: &mut Validator,
    docs: &[ProgramDoc],
    channels: &HashMap<Box<str>, u32>,
    network: &Network,
) -> Programs {
    let mut programs = Programs::default();
    // The place in the file of each slot (a duplicate takes none).
    let mut file_of = Vec::with_capacity(docs.len());
    for (i, p) in docs.iter().enumerate() {
        let built = program(
            v,
            || format!("programs[{i}] {:?}", p.epg_id),
            p,
            channels,
            &network.indexes.servers,
            &network.servers,
        );
        // The first of the same epg_id stays authoritative.
        match programs.push(Arc::new(built)) {
            Ok(_) => file_of.push(i),
            Err(first) => v.problem(format!(
                "programs[{i}]: field `epg_id`: {:?} is a duplicate of programs[{}]",
                p.epg_id, file_of[first as usize],
            )),
        }
    }
    programs
}

/// One program and its records, checked and built; `obj` names it in
/// problems (made only when there is one).
pub(super) fn program(
    v: &mut Validator,
    obj: impl Fn() -> String,
    p: &ProgramDoc,
    channels: &HashMap<Box<str>, u32>,
    server_ids: &HashMap<Box<str>, u32>,
    servers: &[Server],
) -> Program {
    if p.epg_id.is_empty() {
        v.problem(format!("{}: field `epg_id` is empty", obj()));
    }
    v.check_resource_id_with(&obj, "epg_id", &p.epg_id);
    if !channels.contains_key(p.channel.as_str()) {
        v.problem(format!(
            "{}: field `channel`: {:?} is not the epg_id of any channel",
            obj(),
            p.channel
        ));
    }
    if let (Some(start), Some(end)) = (p.start, p.end)
        && end < start
    {
        v.problem(format!(
            "{}: field `end`: {end} is before `start` {start}",
            obj()
        ));
    }
    let records = p
        .records
        .iter()
        .enumerate()
        .map(|(j, r)| {
            record(
                v,
                || format!("{}.records[{j}]", obj()),
                r,
                server_ids,
                servers,
            )
        })
        .collect();
    Program {
        epg_id: p.epg_id.as_str().into(),
        channel: p.channel.as_str().into(),
        start: p.start,
        end: p.end,
        records,
    }
}

/// One record, checked and built.
pub(super) fn record(
    v: &mut Validator,
    obj: impl Fn() -> String,
    r: &RecordDoc,
    server_ids: &HashMap<Box<str>, u32>,
    servers: &[Server],
) -> Record {
    match server_ids.get(r.server.as_str()) {
        Some(&s) if servers[s as usize].kind == ServerKind::Dvr => {}
        Some(_) => v.problem(format!(
            "{}: field `server`: {:?} is an edge server, not a dvr server",
            obj(),
            r.server
        )),
        None => v.problem(format!(
            "{}: field `server`: {:?} is not the id of any server",
            obj(),
            r.server
        )),
    }
    let trimmed = r.path.trim_start_matches('/');
    // A `new` record may have no path yet: it is the intent written
    // before the DVR is asked, and the DVR's answer is its path; one the
    // DVR refused (`error`) or that was cancelled before may never get one.
    let waiting = r.path.is_empty()
        && matches!(
            r.status,
            RecordStatus::New | RecordStatus::Error | RecordStatus::Canceled
        );
    if !waiting && (trimmed.is_empty() || !is_uri_path(trimmed)) {
        v.problem(format!(
            "{}: field `path`: {:?} is not a non-empty URL path",
            obj(),
            r.path
        ));
    }
    if let Some(p) = &r.placement
        && (p.is_empty() || p.len() > 512 || !is_uri_path(p))
    {
        v.problem(format!(
            "{}: field `placement`: {p:?} is not a URL path of at most 512 bytes",
            obj()
        ));
    }
    if let Some(e) = &r.error
        && (e.len() > 1024 || e.chars().any(char::is_control))
    {
        v.problem(format!(
            "{}: field `error`: {:?}… must be at most 1024 bytes of text without control characters",
            obj(),
            e.chars().take(40).collect::<String>()
        ));
    }
    Record {
        server: r.server.as_str().into(),
        protocol: r.protocol,
        encryption: r.encryption,
        written_path: r.path.as_str().into(),
        status: r.status,
        placement: r.placement.as_deref().map(Into::into),
        error: r.error.as_deref().map(Into::into),
    }
}

/// Collects problems while a document is checked.
#[derive(Default)]
pub(super) struct Validator {
    pub problems: Vec<String>,
}

impl Validator {
    pub fn problem(&mut self, message: String) {
        self.problems.push(message);
    }

    /// Maps ids to their index, reporting empty and duplicate ids.
    fn unique_ids<'a>(
        &mut self,
        collection: &str,
        field: &str,
        ids: impl Iterator<Item = &'a str>,
    ) -> HashMap<Box<str>, u32> {
        let mut map: HashMap<Box<str>, u32> = HashMap::new();
        for (i, id) in ids.enumerate() {
            if id.is_empty() {
                self.problem(format!("{collection}[{i}]: field `{field}` is empty"));
            }
            match map.entry(id.into()) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    // The first occurrence stays authoritative.
                    self.problem(format!(
                        "{collection}[{i}]: field `{field}`: {id:?} is a duplicate of {collection}[{}]",
                        first.get()
                    ));
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(i as u32);
                }
            }
        }
        map
    }

    /// An id that appears as one segment of a player URL.
    pub fn check_resource_id(&mut self, obj: &str, field: &str, id: &str) {
        self.check_resource_id_with(&|| obj.to_string(), field, id)
    }

    /// [`Validator::check_resource_id`], naming the object only if needed.
    pub fn check_resource_id_with(&mut self, obj: &dyn Fn() -> String, field: &str, id: &str) {
        if !id.is_empty() && (id.contains('/') || !is_uri_path(id)) {
            self.problem(format!(
                "{}: field `{field}`: {id:?} must be usable as one URL path segment",
                obj()
            ));
        }
    }

    /// A path on an edge, stored without its leading `/`.
    pub fn edge_path(&mut self, obj: &str, path: &str) -> Box<str> {
        let trimmed = path.trim_start_matches('/');
        if trimmed.is_empty() || !is_uri_path(trimmed) {
            self.problem(format!(
                "{obj}: field `path`: {path:?} is not a non-empty URL path"
            ));
        }
        trimmed.into()
    }
}

/// Whether `s` is made only of characters allowed in a URL path (RFC 3986
/// unreserved, sub-delims, `:`, `@`, `/` and `%`-escapes).
fn is_uri_path(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b))
}

/// `scheme://host[:port]`: 443 is https, 80 is http, any other port is
/// written out with http. IPv6 literals are bracketed.
pub fn base_url(host: &str, port: u16) -> String {
    let host = bracketed(host);
    match port {
        443 => format!("https://{host}"),
        80 => format!("http://{host}"),
        _ => format!("http://{host}:{port}"),
    }
}

/// `https://host[:port]` (the port left out when 443).
pub fn tls_base_url(host: &str, port: u16) -> String {
    let host = bracketed(host);
    match port {
        443 => format!("https://{host}"),
        _ => format!("https://{host}:{port}"),
    }
}

/// The host as a URL authority writes it: an IPv6 literal in brackets.
fn bracketed(host: &str) -> std::borrow::Cow<'_, str> {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]").into()
    } else {
        host.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_bracket_ipv6_and_leave_out_default_ports() {
        assert_eq!(base_url("e.test", 80), "http://e.test");
        assert_eq!(base_url("e.test", 443), "https://e.test");
        assert_eq!(base_url("2001:db8::1", 8080), "http://[2001:db8::1]:8080");
        assert_eq!(tls_base_url("e.test", 443), "https://e.test");
        assert_eq!(
            tls_base_url("2001:db8::1", 8443),
            "https://[2001:db8::1]:8443"
        );
        assert_eq!(tls_base_url("[2001:db8::1]", 443), "https://[2001:db8::1]");
    }

    const DOC: &str = r#"{
        "regions": [{"id": "r", "server_groups": ["g"]}],
        "server_groups": [{"id": "g", "servers": ["e"]}],
        "servers": [{"id": "e", "kind": "edge", "host": "e.example", "port": 80}],
        "channels": [],
        "subnets": [
            {"cidr": "10.0.0.0/8", "region": "r", "name": "ten"},
            {"cidr": " 10.1.2.3/16", "region": "r"}
        ]
    }"#;

    #[test]
    fn canonical_messagepack_is_kept_as_the_source_and_other_forms_are_encoded() {
        let from_json = load(Bytes::from_static(DOC.as_bytes()), 1).unwrap();
        let canonical = from_json.source().clone();
        assert_eq!(canonical, to_msgpack(&parse(DOC.as_bytes()).unwrap()));

        let again = load(canonical.clone(), 2).unwrap();
        assert_eq!(again.source().as_ptr(), canonical.as_ptr(), "not copied");
        assert_eq!(again.hash, from_json.hash);

        // MessagePack in another form (fields in another order) is
        // re-encoded.
        let value: serde_json::Value = serde_json::from_str(DOC).unwrap();
        let compact = Bytes::from(rmp_serde::to_vec_named(&value).unwrap());
        assert_ne!(compact, canonical);
        let other = load(compact.clone(), 3).unwrap();
        assert_ne!(other.source().as_ptr(), compact.as_ptr());
        assert_eq!(*other.source(), canonical);
    }

    #[test]
    fn a_document_of_a_newer_schema_is_refused_as_such() {
        let with = |schema: &str, extra: &str| {
            DOC.replacen('{', &format!("{{\"schema\": {schema}, {extra}"), 1)
        };
        assert!(parse(with("1", "").as_bytes()).is_ok());
        assert!(parse(with("2", "").as_bytes()).is_ok());
        assert!(parse(with("3", "").as_bytes()).is_ok());
        // Newer: refused for its schema, even when it also has fields this
        // engine does not know (which would otherwise be the error).
        for doc in [with("4", ""), with("7", "\"routes\": [],")] {
            let e = parse(doc.as_bytes()).unwrap_err().to_string();
            assert!(
                e.contains("field `schema`:") && e.contains("is newer than this engine reads (3)"),
                "{e}"
            );
        }
        let value: serde_json::Value = serde_json::from_str(&with("4", "\"x\": 1,")).unwrap();
        let msgpack = rmp_serde::to_vec_named(&value).unwrap();
        let e = parse(&msgpack).unwrap_err().to_string();
        assert!(e.contains("4 is newer"), "{e}");
        let e = parse(with("0", "").as_bytes()).unwrap_err().to_string();
        assert!(e.contains("0 is not a schema"), "{e}");
        // An unknown field in a document of this schema is still that.
        let e = parse(with("1", "\"x\": 1,").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `x`"), "{e}");
    }

    /// DOC with `schema` and `extra` fields put first.
    fn doc_with(schema: Option<u32>, extra: &str) -> String {
        let schema = schema.map_or(String::new(), |s| format!("\"schema\": {s}, "));
        DOC.replacen('{', &format!("{{{schema}{extra}"), 1)
    }

    #[test]
    fn pathways_steering_and_locations_need_schema_2() {
        let extra = r#""pathways": [{"id": "cdn-a", "group": "g"}],"#;
        for schema in [None, Some(1)] {
            let doc = parse(doc_with(schema, extra).as_bytes()).unwrap();
            let e = build(&doc, 1).unwrap_err().to_string();
            assert!(
                e.contains("field `schema`:") && e.contains("`pathways` need schema 2"),
                "{e}"
            );
        }
        let loc = DOC.replacen(
            r#""id": "r","#,
            r#""id": "r", "location": {"latitude": 55.7, "longitude": 37.6},"#,
            1,
        );
        let e = build(&parse(loc.as_bytes()).unwrap(), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`regions[0].location` (\"r\")"), "{e}");

        let doc = parse(doc_with(Some(2), extra).as_bytes()).unwrap();
        let t = build(&doc, 1).unwrap();
        let p = &t.pathways[0];
        assert_eq!((&*p.id, p.group, p.active), ("cdn-a", Some(0), true));
        assert!(
            p.serves_region(0),
            "the regions serving its group by default"
        );
        assert_eq!((t.steering.enabled, t.steering.ttl_s), (true, 300));
    }

    /// DOC with a DVR, a channel recorded on group `g` and a program with
    /// one record; `schema` first.
    fn dvr_doc(schema: Option<u32>, channel: &str, dvr: &str, record: &str) -> String {
        let schema = schema.map_or(String::new(), |s| format!("\"schema\": {s}, "));
        format!(
            r#"{{{schema}
            "regions": [{{"id": "r", "server_groups": ["g"]}}],
            "server_groups": [{{"id": "g", "servers": ["e", "d"]}}],
            "servers": [{{"id": "e", "kind": "edge", "host": "e.example", "port": 80}},
                        {{"id": "d", "kind": "dvr", "host": "d.example", "port": 80, "prefix": "d1"{dvr}}}],
            "channels": [{{"epg_id": "c", "dvr_enabled": true{channel}, "streams": []}}],
            "programs": [{{"epg_id": "p", "channel": "c", "records": [
                {{"server": "d", "protocol": "hls", "encryption": "none"{record}}}]}}],
            "subnets": []
        }}"#
        )
    }

    #[test]
    fn dvr_recording_fields_need_schema_3_and_are_checked() {
        let good = (
            r#", "recording_group": "g", "code_name": "ch-1", "storage_id": 3"#,
            r#", "management": {"host": "10.0.0.9", "port": 8080}"#,
            r#", "status": "new", "placement": "ch-1/hls/none/p""#,
        );
        let doc = dvr_doc(Some(3), good.0, good.1, good.2);
        let t = build(&parse(doc.as_bytes()).unwrap(), 1).unwrap();
        let p = t.programs.iter().next().unwrap();
        assert_eq!(p.records[0].status, RecordStatus::New);
        assert_eq!(
            p.records[0].written_path.as_ref(),
            "",
            "an intent has no path yet"
        );
        assert_eq!(
            t.document(),
            parse(doc.as_bytes()).unwrap(),
            "given back as loaded"
        );
        // Each schema-3 use in an older document names itself.
        for (doc, named) in [
            (
                dvr_doc(
                    Some(2),
                    good.0,
                    "",
                    r#", "status": "completed", "path": "x""#,
                ),
                "`channels[0].recording_group` (\"c\")",
            ),
            (
                dvr_doc(None, "", good.1, r#", "status": "completed", "path": "x""#),
                "`servers[1].management` (\"d\")",
            ),
            (
                dvr_doc(Some(1), "", "", r#", "status": "removed", "path": "x""#),
                "status `removed`",
            ),
            (
                dvr_doc(
                    Some(2),
                    "",
                    "",
                    r#", "status": "error", "path": "x", "error": "no""#,
                ),
                "`placement` or `error`",
            ),
        ] {
            let e = build(&parse(doc.as_bytes()).unwrap(), 1)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("need schema 3") && e.contains(named),
                "{named}: {e}"
            );
        }
        // Mistakes name the object, field and value.
        for ((channel, dvr, record), message) in [
            (
                (r#", "recording_group": "nope""#, "", good.2),
                r#"channels[0] "c": field `recording_group`: "nope" is not the id of any server group"#,
            ),
            (
                (r#", "code_name": "a b""#, "", good.2),
                r#"field `code_name`: "a b" must be"#,
            ),
            (
                (r#", "storage_id": 11"#, "", good.2),
                "field `storage_id`: 11 is out of range (1-10)",
            ),
            (
                ("", r#", "management": {"host": "", "port": 80}"#, good.2),
                "field `management.host`: \"\"",
            ),
            (
                (
                    "",
                    r#", "management": {"host": "m", "port": 70000}"#,
                    good.2,
                ),
                "field `management.port`: 70000",
            ),
            (
                ("", "", r#", "status": "planned""#),
                "field `path`: \"\" is not a non-empty URL path",
            ),
        ] {
            let doc = dvr_doc(Some(3), channel, dvr, record);
            let e = build(&parse(doc.as_bytes()).unwrap(), 1)
                .unwrap_err()
                .to_string();
            assert!(e.contains(message), "{message}: {e}");
        }
        // Management is a DVR's.
        let edge = DOC.replacen(
            r#""port": 80}"#,
            r#""port": 80, "management": {"host": "m", "port": 1}}"#,
            1,
        );
        let e = build(
            &parse(format!("{{\"schema\": 3, {}", &edge[1..]).as_bytes()).unwrap(),
            1,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("only a dvr server has a management API"), "{e}");
    }

    #[test]
    fn pathway_mistakes_name_the_pathway_field_and_value() {
        let cases = [
            (
                r#"{"id": "a b"}"#,
                r#"pathways[0] "a b": field `id`: "a b" must be"#,
            ),
            (
                r#"{"id": "a", "host": "x/y"}"#,
                r#"field `host`: "x/y" is not a valid host"#,
            ),
            (
                r#"{"id": "a", "group": "nope"}"#,
                r#"field `group`: "nope" is not the id"#,
            ),
            (
                r#"{"id": "a", "base": "zz"}"#,
                r#"field `base`: "zz" is not the id of any pathway"#,
            ),
            (
                r#"{"id": "a", "regions": ["q"]}"#,
                r#"field `regions[0]`: "q" is not the id"#,
            ),
            (
                r#"{"id": "a", "params": {"k": "v"}}"#,
                "field `params`: only a clone",
            ),
            (
                r#"{"id": "a", "base": "a", "host": "h"}"#,
                "cannot be its own clone",
            ),
        ];
        for (pathway, want) in cases {
            let doc = doc_with(Some(2), &format!(r#""pathways": [{pathway}],"#));
            let e = build(&parse(doc.as_bytes()).unwrap(), 1)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{pathway}: {e}");
        }
        let two = r#""pathways": [{"id": "a", "group": "g"},
            {"id": "b", "base": "a", "host": "b.example", "params": {"_HLSx": "1"}},
            {"id": "c", "base": "b", "host": "c.example"}],"#;
        let e = build(&parse(doc_with(Some(2), two).as_bytes()).unwrap(), 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(r#"pathways[1] "b": field `params._HLSx`"#),
            "{e}"
        );
        assert!(
            e.contains(r#"pathways[2] "c": field `base`: "b" is itself a clone"#),
            "{e}"
        );
        let dup = r#""pathways": [{"id": "a"}, {"id": "a"}],"#;
        let e = build(&parse(doc_with(Some(2), dup).as_bytes()).unwrap(), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"a\""), "{e}");
        let ttl = r#""steering": {"ttl": "1500ms"},"#;
        let e = build(&parse(doc_with(Some(2), ttl).as_bytes()).unwrap(), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("steering: field `ttl`: 1500ms"), "{e}");
        // A clone takes its base's group and regions.
        let ok = r#""pathways": [{"id": "a", "group": "g"},
            {"id": "b", "base": "a", "host": "b.example", "params": {"k": "v"}}],"#;
        let t = build(&parse(doc_with(Some(2), ok).as_bytes()).unwrap(), 1).unwrap();
        assert_eq!(
            (t.pathways[1].base, t.pathways[1].group),
            (Some(0), Some(0))
        );
        assert_eq!(t.pathway_index("b"), Some(1));
    }

    #[test]
    fn subnets_are_normalised_named_and_share_their_region_id() {
        let doc = parse(DOC.as_bytes()).unwrap();
        let (a, b) = (&doc.subnets[0].region, &doc.subnets[1].region);
        assert!(std::ptr::eq(a.as_ptr(), b.as_ptr()), "one allocation");
        assert_eq!(doc.subnets[1].cidr.to_string(), "10.1.2.3/16");

        let t = build(&doc, 1).unwrap();
        assert_eq!(t.subnets[1].net.to_string(), "10.1.0.0/16");
        assert_eq!(t.subnet_name(0), Some("ten"));
        assert_eq!(t.subnet_name(1), None);
        let addr = "10.1.9.9".parse().unwrap();
        assert_eq!(t.matching_subnets(addr).collect::<Vec<_>>(), vec![1, 0]);
    }

    #[test]
    fn a_cidr_or_region_of_the_wrong_type_is_a_syntax_error_naming_the_field() {
        for (from, to, at) in [
            (
                r#""cidr": " 10.1.2.3/16""#,
                r#""cidr": 10"#,
                "subnets[1].cidr",
            ),
            (
                r#""cidr": "10.0.0.0/8", "region": "r""#,
                r#""cidr": "10.0.0.0/8", "region": ["r"]"#,
                "subnets[0].region",
            ),
        ] {
            let doc = DOC.replace(from, to);
            match load(Bytes::from(doc), 1) {
                Err(TopologyError::Syntax { at: got, .. }) => assert_eq!(got, at),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn duplicates_after_an_invalid_cidr_are_named_by_their_place_in_the_file() {
        let doc = DOC.replace(
            r#"{"cidr": " 10.1.2.3/16", "region": "r"}"#,
            r#"{"cidr": "nope", "region": "r"},
               {"cidr": "10.1.0.0/16", "region": "r"},
               {"cidr": "2001:db8::/32", "region": "r"},
               {"cidr": "10.1.7.7/16", "region": "r"},
               {"cidr": "2001:DB8::1/32", "region": "r"}"#,
        );
        let Err(TopologyError::Invalid(problems)) = load(Bytes::from(doc), 1) else {
            panic!("accepted");
        };
        assert_eq!(
            problems,
            vec![
                r#"subnets[1]: field `cidr`: "nope" is not an IPv4 or IPv6 CIDR (like 10.1.0.0/16 or 2001:db8::/32)"#,
                r#"subnets[4]: field `cidr`: "10.1.7.7/16" is the same network (10.1.0.0/16) as subnets[2]"#,
                r#"subnets[5]: field `cidr`: "2001:db8::1/32" is the same network (2001:db8::/32) as subnets[3]"#,
            ]
        );
    }
}
