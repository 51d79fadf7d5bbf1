//! The topology's entities, one by one: what the per-entity admin API and
//! `edgeward ctl` read and write.
//!
//! Each kind has a JSON form, its key and its revision:
//!
//! | kind | form | key |
//! |---|---|---|
//! | `regions` | a region of the document | `id` |
//! | `subnets` | a subnet of the document | its normalised CIDR (`10.1.0.0/16`) |
//! | `server-groups` | a server group (servers and channels by id) | `id` |
//! | `servers` | a server | `id` |
//! | `channels` | a channel without its streams | `epg_id` |
//! | `streams` | `{channel, protocol, encryption, path, active}` | `channel/protocol/encryption` |
//! | `programs` | a program without its records | `epg_id` |
//! | `records` | `{program, server, protocol, encryption, path, status}` | `program/server/protocol/encryption` |
//!
//! A document may hold two streams (records) with the same key (valid
//! since the first edgeward): the second is `…/2`, the third `…/3`.
//!
//! An entity's revision is the revision of the change that last touched
//! it, or the revision of the document loaded whole (`PUT /topology`, the
//! seed file) when no entity change has touched it since.

use super::model::{Encryption, Protocol, RecordStatus};
use super::{Program, Topology};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A kind of entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Regions.
    Regions,
    /// Client subnets.
    Subnets,
    /// Server groups.
    ServerGroups,
    /// Edge and DVR servers.
    Servers,
    /// Channels.
    Channels,
    /// Streams of channels.
    Streams,
    /// Programs.
    Programs,
    /// Records of programs.
    Records,
    /// Content-steering pathways (schema 2).
    Pathways,
}

impl Kind {
    /// Every kind, in the order the API lists them.
    pub const ALL: [Kind; 9] = [
        Kind::Regions,
        Kind::Subnets,
        Kind::ServerGroups,
        Kind::Servers,
        Kind::Channels,
        Kind::Streams,
        Kind::Programs,
        Kind::Records,
        Kind::Pathways,
    ];

    /// The kind named in a URL (`server-groups`).
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Its name in URLs and messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Regions => "regions",
            Kind::Subnets => "subnets",
            Kind::ServerGroups => "server-groups",
            Kind::Servers => "servers",
            Kind::Channels => "channels",
            Kind::Streams => "streams",
            Kind::Programs => "programs",
            Kind::Records => "records",
            Kind::Pathways => "pathways",
        }
    }

    /// One of it, in messages ("server group").
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Regions => "region",
            Kind::Subnets => "subnet",
            Kind::ServerGroups => "server group",
            Kind::Servers => "server",
            Kind::Channels => "channel",
            Kind::Streams => "stream",
            Kind::Programs => "program",
            Kind::Records => "record",
            Kind::Pathways => "pathway",
        }
    }

    /// The fields of its form that make its key, in key order.
    pub fn key_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Regions | Kind::ServerGroups | Kind::Servers | Kind::Pathways => &["id"],
            Kind::Subnets => &["cidr"],
            Kind::Channels | Kind::Programs => &["epg_id"],
            Kind::Streams => &["channel", "protocol", "encryption"],
            Kind::Records => &["program", "server", "protocol", "encryption"],
        }
    }

    /// The fields `?q=` searches.
    fn searched(self) -> &'static [&'static str] {
        match self {
            Kind::Regions => &["id", "name"],
            Kind::Subnets => &["cidr", "name"],
            Kind::ServerGroups => &["id"],
            Kind::Servers => &["id", "host"],
            Kind::Channels => &["epg_id", "name"],
            Kind::Streams => &["channel", "path"],
            Kind::Programs => &["epg_id", "channel"],
            Kind::Records => &["program", "server", "path"],
            Kind::Pathways => &["id", "host"],
        }
    }
}

/// A channel, without its streams (those are `streams`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelEntity {
    /// Unique EPG id, as used in live URLs.
    pub epg_id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An inactive channel is not served live.
    #[serde(default = "yes")]
    pub active: bool,
    /// Whether the channel is recorded for catch-up.
    #[serde(default)]
    pub dvr_enabled: bool,
    /// The server group it is recorded from and on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_group: Option<String>,
    /// Its name on the DVR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_name: Option<String>,
    /// The DVR storage its recordings go to (1 to 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_id: Option<u32>,
}

/// A stream of a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamEntity {
    /// `epg_id` of its channel.
    pub channel: String,
    /// `hls` or `mpd`.
    pub protocol: Protocol,
    /// `none`, `widevine`, `playready` or `cenc`.
    pub encryption: Encryption,
    /// Path on the edge.
    pub path: String,
    /// An inactive stream is never served.
    #[serde(default = "yes")]
    pub active: bool,
}

/// A program, without its records (those are `records`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramEntity {
    /// Unique EPG id, as used in catch-up URLs.
    pub epg_id: String,
    /// `epg_id` of its channel.
    pub channel: String,
    /// Start time (RFC 3339).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub start: Option<time::OffsetDateTime>,
    /// End time (RFC 3339).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub end: Option<time::OffsetDateTime>,
}

/// A record of a program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordEntity {
    /// `epg_id` of its program.
    pub program: String,
    /// Id of the DVR server holding it.
    pub server: String,
    /// `hls` or `mpd`.
    pub protocol: Protocol,
    /// `none`, `widevine`, `playready` or `cenc`.
    pub encryption: Encryption,
    /// Path below the DVR server's prefix; empty only while `new`.
    #[serde(default)]
    pub path: String,
    /// Only `completed` records are served.
    pub status: RecordStatus,
    /// What it was asked of the DVR as (its identity there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    /// Why it is `error`, as the DVR said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn yes() -> bool {
    true
}

/// A protocol as keys and URLs write it.
pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Hls => "hls",
        Protocol::Mpd => "mpd",
    }
}

/// An encryption as keys and URLs write it.
pub fn encryption_name(e: Encryption) -> &'static str {
    match e {
        Encryption::None => "none",
        Encryption::Widevine => "widevine",
        Encryption::Playready => "playready",
        Encryption::Cenc => "cenc",
    }
}

/// Keys `base`, `base/2`, `base/3`… for entries sharing a base key, in
/// order.
fn numbered<'a>(bases: impl Iterator<Item = String> + 'a) -> impl Iterator<Item = String> + 'a {
    let mut seen: foldhash::HashMap<String, u32> = Default::default();
    bases.map(move |base| {
        let n = seen.entry(base.clone()).or_default();
        *n += 1;
        if *n == 1 { base } else { format!("{base}/{n}") }
    })
}

/// The key of a stream of `channel`.
pub fn stream_key(channel: &str, protocol: Protocol, encryption: Encryption) -> String {
    format!(
        "{channel}/{}/{}",
        protocol_name(protocol),
        encryption_name(encryption)
    )
}

/// The key of a record of `program`.
pub fn record_key(
    program: &str,
    server: &str,
    protocol: Protocol,
    encryption: Encryption,
) -> String {
    format!(
        "{program}/{server}/{}/{}",
        protocol_name(protocol),
        encryption_name(encryption)
    )
}

/// The streams of channel `c`: `(key, entity)` in document order.
pub(super) fn streams_of(t: &Topology, c: usize) -> Vec<(String, StreamEntity)> {
    let doc = &t.channel_docs[c];
    let keys = numbered(
        doc.streams
            .iter()
            .map(|s| stream_key(&doc.epg_id, s.protocol, s.encryption)),
    );
    keys.zip(doc.streams.iter())
        .map(|(key, s)| {
            (
                key,
                StreamEntity {
                    channel: doc.epg_id.clone(),
                    protocol: s.protocol,
                    encryption: s.encryption,
                    path: s.path.clone(),
                    active: s.active,
                },
            )
        })
        .collect()
}

/// The records of program `p`: `(key, entity)` in document order.
pub fn records_of(p: &Program) -> Vec<(String, RecordEntity)> {
    let keys = numbered(
        p.records
            .iter()
            .map(|r| record_key(&p.epg_id, &r.server, r.protocol, r.encryption)),
    );
    keys.zip(p.records.iter())
        .map(|(key, r)| {
            (
                key,
                RecordEntity {
                    program: p.epg_id.to_string(),
                    server: r.server.to_string(),
                    protocol: r.protocol,
                    encryption: r.encryption,
                    path: r.written_path.to_string(),
                    status: r.status,
                    placement: r.placement.as_deref().map(Into::into),
                    error: r.error.as_deref().map(Into::into),
                },
            )
        })
        .collect()
}

/// The normalised form of a subnet key (a CIDR, host bits cleared).
pub fn subnet_key(text: &str) -> Option<ipnet::IpNet> {
    text.trim().parse::<ipnet::IpNet>().ok().map(|n| n.trunc())
}

/// One entity as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    /// Its key.
    pub key: String,
    /// Its revision.
    pub revision: u64,
    /// Its form.
    pub value: Value,
}

impl Topology {
    /// The revision of the entity `kind`/`key` (that exists).
    pub fn revision_of(&self, kind: Kind, key: &str) -> u64 {
        if self.revisions.changed.is_empty() {
            return self.revisions.base;
        }
        self.revisions
            .changed
            .get(&(kind, key.into()))
            .copied()
            .unwrap_or(self.revisions.base)
    }

    /// The revision of the last change.
    pub fn revision(&self) -> u64 {
        self.revisions.last
    }

    /// The entity `kind`/`key`, if there is one.
    pub fn entity(&self, kind: Kind, key: &str) -> Option<Shown> {
        let value = match kind {
            Kind::Regions => to_value(self.network.regions.iter().find(|r| r.id == key)?),
            Kind::ServerGroups => {
                to_value(self.network.server_groups.iter().find(|g| g.id == key)?)
            }
            Kind::Servers => to_value(&self.network.servers[self.server_index(key)? as usize]),
            Kind::Pathways => to_value(self.network.pathways.iter().find(|p| p.id == key)?),
            Kind::Subnets => {
                let net = subnet_key(key)?;
                let i = self.subnets.find(net)?;
                return Some(self.subnet_shown(i));
            }
            Kind::Channels => {
                let (i, _) = self.channel(key)?;
                to_value(&channel_entity(&self.channel_docs[i as usize]))
            }
            Kind::Programs => to_value(&program_entity(self.program(key)?.1)),
            Kind::Streams => {
                let channel = key.split('/').next()?;
                let (i, _) = self.channel(channel)?;
                let (_, s) = streams_of(self, i as usize)
                    .into_iter()
                    .find(|(k, _)| k == key)?;
                to_value(&s)
            }
            Kind::Records => {
                let program = key.split('/').next()?;
                let (_, p) = self.program(program)?;
                let (_, r) = records_of(p).into_iter().find(|(k, _)| k == key)?;
                to_value(&r)
            }
        };
        let key = key.to_string();
        Some(Shown {
            revision: self.revision_of(kind, &key),
            key,
            value: complete(kind, value),
        })
    }

    fn subnet_shown(&self, i: u32) -> Shown {
        let s = &self.subnets[i as usize];
        let key = s.net.to_string();
        let value = to_value(&super::document::SubnetView {
            cidr: self.subnets.written(i),
            region: &self.regions[s.region as usize].id,
            name: self.subnets.name(i),
        });
        Shown {
            revision: self.revision_of(Kind::Subnets, &key),
            key,
            value,
        }
    }

    /// Every entity of a kind, in document order.
    pub fn entities(&self, kind: Kind) -> Box<dyn Iterator<Item = Shown> + '_> {
        let shown = move |key: String, value: Value| Shown {
            revision: self.revision_of(kind, &key),
            key,
            value: complete(kind, value),
        };
        match kind {
            Kind::Regions => Box::new(
                self.network
                    .regions
                    .iter()
                    .map(move |r| shown(r.id.clone(), to_value(r))),
            ),
            Kind::ServerGroups => Box::new(
                self.network
                    .server_groups
                    .iter()
                    .map(move |g| shown(g.id.clone(), to_value(g))),
            ),
            Kind::Servers => Box::new(
                self.network
                    .servers
                    .iter()
                    .map(move |s| shown(s.id.clone(), to_value(s))),
            ),
            Kind::Pathways => Box::new(
                self.network
                    .pathways
                    .iter()
                    .map(move |p| shown(p.id.clone(), to_value(p))),
            ),
            Kind::Subnets => Box::new(self.subnets.iter().map(move |(i, _)| self.subnet_shown(i))),
            Kind::Channels => Box::new(
                self.channel_docs
                    .iter()
                    .map(move |c| shown(c.epg_id.clone(), to_value(&channel_entity(c)))),
            ),
            Kind::Streams => Box::new((0..self.channel_docs.len()).flat_map(move |c| {
                streams_of(self, c)
                    .into_iter()
                    .map(move |(k, s)| shown(k, to_value(&s)))
            })),
            Kind::Programs => Box::new(
                self.programs
                    .iter()
                    .map(move |p| shown(p.epg_id.to_string(), to_value(&program_entity(p)))),
            ),
            Kind::Records => Box::new(self.programs.iter().flat_map(move |p| {
                records_of(p)
                    .into_iter()
                    .map(move |(k, r)| shown(k, to_value(&r)))
            })),
        }
    }
}

/// A channel's entity form.
pub(super) fn channel_entity(c: &super::model::ChannelDoc) -> ChannelEntity {
    ChannelEntity {
        epg_id: c.epg_id.clone(),
        name: c.name.clone(),
        active: c.active,
        dvr_enabled: c.dvr_enabled,
        recording_group: c.recording_group.clone(),
        code_name: c.code_name.clone(),
        storage_id: c.storage_id,
    }
}

/// A program's entity form.
pub(super) fn program_entity(p: &Program) -> ProgramEntity {
    ProgramEntity {
        epg_id: p.epg_id.to_string(),
        channel: p.channel.to_string(),
        start: p.start,
        end: p.end,
    }
}

fn to_value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).expect("an entity always serialises")
}

/// An entity's form with the fields the document leaves out at their
/// default written out (`active`, `weight`, a group's `channels`), so
/// that lists filter and sort by what applies.
pub(super) fn complete(kind: Kind, mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        let mut default = |field: &str, v: Value| {
            object.entry(field.to_string()).or_insert(v);
        };
        match kind {
            Kind::Regions | Kind::Pathways => default("active", Value::Bool(true)),
            Kind::ServerGroups => {
                default("active", Value::Bool(true));
                default("channels", Value::Array(Vec::new()));
            }
            Kind::Servers => {
                default("active", Value::Bool(true));
                default("weight", Value::from(1));
            }
            _ => {}
        }
    }
    value
}

/// What a list asks for: `?page=&per_page=&order_by=&q=` and field
/// filters (`?channel=ch1`, `?status=completed`).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// 1-based page.
    pub page: usize,
    /// Entities per page (default 100, at most 10,000).
    pub per_page: usize,
    /// Fields to sort by, `-` in front for descending.
    pub order_by: Vec<String>,
    /// Text searched (case-insensitively) in the kind's names and ids.
    pub q: Option<String>,
    /// Fields that must equal a value (as text; `true`/`false` for flags).
    pub filters: Vec<(String, String)>,
}

/// Largest page.
pub const MAX_PER_PAGE: usize = 10_000;

impl ListQuery {
    /// Reads a query string; an unknown parameter or a bad number is an
    /// error naming it.
    pub fn parse(kind: Kind, query: &str) -> Result<ListQuery, String> {
        let mut q = ListQuery {
            page: 1,
            per_page: 100,
            ..Default::default()
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(&value.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            let number = |what: &str, max: usize| match value.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(format!(
                    "parameter `{key}`: {value:?} is not {what} (1 to {max})"
                )),
            };
            match key {
                "page" => q.page = number("a page number", usize::MAX)?,
                "per_page" => q.per_page = number("a page size", MAX_PER_PAGE)?,
                "order_by" => {
                    for field in value.split(',').filter(|f| !f.is_empty()) {
                        let name = field.trim_start_matches('-');
                        if !fields(kind).contains(&name) {
                            return Err(format!(
                                "parameter `order_by`: {name:?} is not a field of {} ({})",
                                kind.name(),
                                fields(kind).join(", ")
                            ));
                        }
                        q.order_by.push(field.to_string());
                    }
                }
                "q" => q.q = Some(value.to_lowercase()),
                field if fields(kind).contains(&field) => q.filters.push((key.into(), value)),
                _ => {
                    return Err(format!(
                        "unknown parameter {key:?} for {} (page, per_page, order_by, q, or a field: {})",
                        kind.name(),
                        fields(kind).join(", ")
                    ));
                }
            }
        }
        Ok(q)
    }

    fn matches(&self, kind: Kind, e: &Shown) -> bool {
        let field_text = |name: &str| match e.value.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        for (name, wanted) in &self.filters {
            let got = field_text(name).or_else(|| default_text(kind, name));
            if got.as_deref() != Some(wanted.as_str()) {
                return false;
            }
        }
        match &self.q {
            None => true,
            Some(q) => kind.searched().iter().any(|f| {
                field_text(f).is_some_and(|text| text.to_lowercase().contains(q.as_str()))
            }),
        }
    }
}

/// The text of a field a form leaves out when it has its default value.
fn default_text(kind: Kind, field: &str) -> Option<String> {
    match (kind, field) {
        (_, "active") => Some("true".into()),
        (Kind::Channels, "dvr_enabled") => Some("false".into()),
        (Kind::Servers, "weight") => Some("1".into()),
        _ => None,
    }
}

/// The fields of a kind's form (what lists filter and sort by).
pub fn fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Regions => &["id", "name", "active", "server_groups"],
        Kind::Subnets => &["cidr", "region", "name"],
        Kind::ServerGroups => &["id", "active", "servers", "channels"],
        Kind::Servers => &[
            "id", "kind", "host", "port", "tls_port", "active", "weight", "prefix",
        ],
        Kind::Channels => &[
            "epg_id",
            "name",
            "active",
            "dvr_enabled",
            "recording_group",
            "code_name",
            "storage_id",
        ],
        Kind::Streams => &["channel", "protocol", "encryption", "path", "active"],
        Kind::Programs => &["epg_id", "channel", "start", "end"],
        Kind::Records => &[
            "program",
            "server",
            "protocol",
            "encryption",
            "path",
            "status",
            "placement",
            "error",
        ],
        Kind::Pathways => &["id", "host", "group", "regions", "base", "active"],
    }
}

/// One page of a list.
#[derive(Debug, Serialize)]
pub struct Page {
    /// The kind listed.
    pub kind: &'static str,
    /// How many match, on every page.
    pub total: usize,
    /// This page (1-based).
    pub page: usize,
    /// Entities per page.
    pub per_page: usize,
    /// The revision of the topology listed.
    pub revision: u64,
    /// The entities of this page.
    pub items: Vec<Value>,
}

impl Topology {
    /// One page of the entities of `kind` matching `query`, sorted as it
    /// asks (else in document order).
    pub fn list(&self, kind: Kind, query: &ListQuery) -> Page {
        let skip = (query.page - 1).saturating_mul(query.per_page);
        let mut total = 0;
        let mut items = Vec::new();
        let item = |e: Shown| json!({"key": e.key, "revision": e.revision, "value": e.value});
        if kind == Kind::Subnets && query.order_by.is_empty() {
            // A million of them: matched on the snapshot's own fields, and
            // only the page made into values.
            let wanted_region = query
                .filters
                .iter()
                .find(|(f, _)| f == "region")
                .map(|(_, r)| self.region_index(r));
            let simple = query.filters.iter().all(|(f, _)| f == "region") && query.q.is_none();
            for (i, s) in self.subnets.iter() {
                if let Some(r) = wanted_region
                    && r != Some(s.region)
                {
                    continue;
                }
                if !simple && !query.matches(kind, &self.subnet_shown(i)) {
                    continue;
                }
                if total >= skip && items.len() < query.per_page {
                    items.push(item(self.subnet_shown(i)));
                }
                total += 1;
            }
        } else if query.order_by.is_empty() {
            // In document order: only the page is kept.
            for e in self.entities(kind).filter(|e| query.matches(kind, e)) {
                if total >= skip && items.len() < query.per_page {
                    items.push(item(e));
                }
                total += 1;
            }
        } else {
            let mut all: Vec<Shown> = self
                .entities(kind)
                .filter(|e| query.matches(kind, e))
                .collect();
            total = all.len();
            all.sort_by(|a, b| {
                for field in &query.order_by {
                    let (name, descending) = match field.strip_prefix('-') {
                        Some(name) => (name, true),
                        None => (field.as_str(), false),
                    };
                    let order = compare(a.value.get(name), b.value.get(name));
                    let order = if descending { order.reverse() } else { order };
                    if order.is_ne() {
                        return order;
                    }
                }
                std::cmp::Ordering::Equal
            });
            items = all
                .into_iter()
                .skip(skip)
                .take(query.per_page)
                .map(item)
                .collect();
        }
        Page {
            kind: kind.name(),
            total,
            page: query.page,
            per_page: query.per_page,
            revision: self.revision(),
            items,
        }
    }
}

/// Orders two field values: absent first, numbers by value, the rest by
/// their text (RFC 3339 times sort as text).
fn compare(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (None | Some(Value::Null), None | Some(Value::Null)) => std::cmp::Ordering::Equal,
        (None | Some(Value::Null), _) => std::cmp::Ordering::Less,
        (_, None | Some(Value::Null)) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
    }
}
