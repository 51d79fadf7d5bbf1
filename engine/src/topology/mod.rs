//! The CDN topology: what exists (regions, subnets, groups, servers,
//! channels, programs), as an immutable, indexed snapshot.
//!
//! A [`Topology`] is built once from a [`model::TopologyDoc`] by
//! [`load::build`], which validates everything first; after that every
//! reference is an index that cannot dangle, and request-time questions
//! (which subnets contain this client? which channel has this `epg_id`?)
//! are answered from prebuilt indexes. Snapshots are never mutated: a new
//! topology is a new snapshot, published by [`store::TopologyStore`].
//!
//! A snapshot is made of parts, each behind its own `Arc`: the network
//! (regions, groups, servers), the subnets and their prefix tables, the
//! channels, and the programs. An entity change ([`edit`]) builds a new
//! snapshot that shares every part it does not touch, so changing a
//! program on a topology of a million subnets copies no subnet.

pub mod document;
pub mod edit;
pub mod entity;
pub mod load;
pub mod model;
pub mod prefix_table;
pub mod store;
pub mod synthetic;

use foldhash::HashMap;
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

pub use load::{TopologyError, build, load, parse};
pub use model::{Encryption, Protocol, RecordStatus, ServerKind, TopologyDoc};
use prefix_table::{NONE, PrefixTable};

/// An immutable, indexed topology snapshot. A clone shares every part.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Version number assigned when the snapshot was published.
    pub version: u64,
    /// What identifies its document: the SHA-256 (hex) of the canonical
    /// MessagePack of a document loaded whole; after entity changes, the
    /// SHA-256 of the previous hash and the changes (so every node that
    /// applies the same changes to the same document agrees on it, and no
    /// change re-encodes a million subnets to hash them).
    pub hash: String,
    /// Regions, in file order.
    pub regions: Arc<[Region]>,
    /// Server groups, in file order.
    pub groups: Arc<[Group]>,
    /// Servers, in file order.
    pub servers: Arc<[Server]>,
    /// Client subnets, in file order, and their prefix tables.
    pub subnets: Arc<Subnets>,
    /// Channels, in file order.
    pub channels: Arc<[Channel]>,
    /// Programs, in file order.
    pub programs: Arc<Programs>,
    /// Index of the default region.
    pub default_region: Option<u32>,
    /// Content-steering pathways, in file order.
    pub pathways: Arc<[Pathway]>,
    /// How steering polls are answered.
    pub steering: SteeringSettings,
    /// The network part as written (what `GET /topology` shows of it and
    /// what entity changes edit).
    pub(crate) network: Arc<NetworkDoc>,
    /// The channels as written.
    pub(crate) channel_docs: Arc<[model::ChannelDoc]>,
    indexes: Arc<Indexes>,
    /// The revisions of its entities.
    revisions: Arc<Revisions>,
    /// The canonical MessagePack of the document, made when first asked
    /// for (a document loaded in that form keeps the bytes it came in).
    source: OnceLock<bytes::Bytes>,
}

/// The small collections of a document, as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NetworkDoc {
    pub schema: Option<u32>,
    pub default_region: Option<String>,
    pub regions: Vec<model::RegionDoc>,
    pub server_groups: Vec<model::GroupDoc>,
    pub servers: Vec<model::ServerDoc>,
    pub pathways: Vec<model::PathwayDoc>,
    pub steering: Option<model::SteeringDoc>,
}

/// Ids to indexes of the network and the channels.
#[derive(Debug, Default)]
pub(crate) struct Indexes {
    pub regions: HashMap<Box<str>, u32>,
    pub groups: HashMap<Box<str>, u32>,
    pub servers: HashMap<Box<str>, u32>,
    pub channels: HashMap<Box<str>, u32>,
}

/// Which revision each entity is at: the document's, unless an entity
/// change touched it since the document was loaded.
#[derive(Debug, Default, Clone)]
pub(crate) struct Revisions {
    /// The revision of the document loaded whole.
    pub base: u64,
    /// The revision of the last change.
    pub last: u64,
    /// The entities changed since, at their revision.
    pub changed: HashMap<(entity::Kind, Box<str>), u64>,
}

/// Subnets per chunk of the list.
const CHUNK: usize = 4096;

/// The region of a removed subnet's slot.
const GONE: u32 = u32::MAX;

/// The client subnets: a list by slot, and a longest-prefix table per
/// address family that labels addresses with slots.
///
/// A million of them would be 28 MB of list and 16 MB of tables, so both
/// are cut into shared pieces and a change copies only the pieces it
/// touches: the list in chunks of [`CHUNK`] slots (with the names and the
/// CIDRs as written of their subnets), the tables in runs of intervals. A
/// removed subnet leaves its slot empty, so no other subnet's slot (the id
/// the tables, parent links and policies know it by) ever moves; a whole
/// load packs the list again.
#[derive(Debug, Clone)]
pub struct Subnets {
    chunks: Vec<Arc<SubnetChunk>>,
    /// Slots in use, removed ones included.
    slots: u32,
    /// Subnets in the list.
    live: u32,
    v4: Arc<PrefixTable<u32>>,
    v6: Arc<PrefixTable<u128>>,
}

/// [`CHUNK`] slots of the subnet list.
#[derive(Debug, Clone, Default)]
struct SubnetChunk {
    list: Vec<Subnet>,
    /// Names of the subnets that have one, by offset in the chunk
    /// (ascending).
    names: Vec<(u16, Box<str>)>,
    /// The CIDRs written with host bits set, as written, by offset
    /// (ascending): `GET /topology` gives them back unchanged.
    written: Vec<(u16, IpNet)>,
}

impl std::ops::Index<usize> for Subnets {
    type Output = Subnet;
    /// The subnet in slot `i` (which a lookup returned).
    #[inline]
    fn index(&self, i: usize) -> &Subnet {
        &self.chunks[i / CHUNK].list[i % CHUNK]
    }
}

/// Programs per chunk of the list.
const PROGRAM_CHUNK: usize = 1024;

/// Shards of the program index.
const PROGRAM_SHARDS: usize = 256;

/// The programs, in file order, each its own allocation; the list in
/// chunks and the index by `epg_id` in shards, each shared, so that a
/// change copies one chunk and one shard (a programme guide of 50,000
/// would otherwise be copied whole at every change). A removed program
/// leaves its slot empty: no other program's slot moves.
#[derive(Debug, Clone)]
pub struct Programs {
    chunks: Vec<Arc<Vec<Option<Arc<Program>>>>>,
    slots: u32,
    live: u32,
    by_epg: Vec<Arc<HashMap<Arc<str>, u32>>>,
}

impl Default for Programs {
    fn default() -> Self {
        Programs {
            chunks: Vec::new(),
            slots: 0,
            live: 0,
            by_epg: vec![Arc::default(); PROGRAM_SHARDS],
        }
    }
}

impl Programs {
    /// The shard of the index holding `epg_id`.
    fn shard(epg_id: &str) -> usize {
        use std::hash::BuildHasher;
        // Fixed, so that every snapshot shards alike; the shards' own maps
        // hash with seeds of their own.
        foldhash::fast::FixedState::default().hash_one(epg_id) as usize % PROGRAM_SHARDS
    }

    /// How many programs there are.
    pub fn len(&self) -> usize {
        self.live as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The slot of the program with this EPG id.
    pub fn slot(&self, epg_id: &str) -> Option<u32> {
        self.by_epg[Self::shard(epg_id)].get(epg_id).copied()
    }

    /// The program in slot `i`, unless it was removed.
    pub fn get(&self, i: u32) -> Option<&Arc<Program>> {
        let i = i as usize;
        self.chunks
            .get(i / PROGRAM_CHUNK)?
            .get(i % PROGRAM_CHUNK)?
            .as_ref()
    }

    /// Every program, in document order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Program>> + '_ {
        self.chunks.iter().flat_map(|c| c.iter().flatten())
    }

    /// Adds a program in a new slot at the end, unless one of its EPG id
    /// is there (then gives that one's slot).
    pub(crate) fn push(&mut self, program: Arc<Program>) -> Result<u32, u32> {
        let slot = self.slots;
        let shard = Arc::make_mut(&mut self.by_epg[Self::shard(&program.epg_id)]);
        match shard.entry(program.epg_id.clone()) {
            std::collections::hash_map::Entry::Occupied(first) => return Err(*first.get()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(slot);
            }
        }
        if (slot as usize).is_multiple_of(PROGRAM_CHUNK) {
            self.chunks
                .push(Arc::new(Vec::with_capacity(PROGRAM_CHUNK)));
        }
        Arc::make_mut(self.chunks.last_mut().expect("a chunk was pushed")).push(Some(program));
        self.slots += 1;
        self.live += 1;
        Ok(slot)
    }

    /// Puts `program` (of the same EPG id) in slot `i`.
    pub(crate) fn set(&mut self, i: u32, program: Arc<Program>) {
        let i = i as usize;
        Arc::make_mut(&mut self.chunks[i / PROGRAM_CHUNK])[i % PROGRAM_CHUNK] = Some(program);
    }

    /// Removes the program in slot `i`, leaving the slot empty.
    pub(crate) fn remove(&mut self, i: u32) {
        let at = i as usize;
        let chunk = Arc::make_mut(&mut self.chunks[at / PROGRAM_CHUNK]);
        if let Some(p) = chunk[at % PROGRAM_CHUNK].take() {
            Arc::make_mut(&mut self.by_epg[Self::shard(&p.epg_id)]).remove(&p.epg_id);
            self.live -= 1;
        }
    }
}

/// A region and the edge servers its groups offer.
#[derive(Debug)]
pub struct Region {
    /// Id from the file.
    pub id: Box<str>,
    /// Name from the file (the id when absent).
    pub name: Box<str>,
    /// `active` flag.
    pub active: bool,
    /// Every `(edge server, group)` pair reachable through the region's
    /// groups, in file order.
    pub members: Box<[Member]>,
    /// Where it is (latitude, longitude in degrees), when the file says.
    pub location: Option<(f64, f64)>,
}

/// A content-steering pathway.
#[derive(Debug)]
pub struct Pathway {
    /// Id from the file (what the manifests and players call it).
    pub id: Box<str>,
    /// The host its URLs point at (a clone's replacement host).
    pub host: Option<Box<str>>,
    /// The server group whose edges' health says whether it is up: its
    /// own, or a clone's base's.
    pub group: Option<u32>,
    /// The pathway it is a clone of.
    pub base: Option<u32>,
    /// A clone's `URI-REPLACEMENT` `PARAMS`, by name.
    pub params: Box<[(Box<str>, Box<str>)]>,
    /// `active` flag.
    pub active: bool,
    /// Sorted indices of the regions whose clients may use it; `None`: all.
    pub regions: Option<Box<[u32]>>,
    /// Indices of the edge servers of its group (none for a pathway that
    /// is not one of ours): their health says whether it is up.
    pub edges: Box<[u32]>,
}

impl Pathway {
    /// Whether clients of `region` may use it.
    #[inline]
    pub fn serves_region(&self, region: u32) -> bool {
        self.regions
            .as_ref()
            .is_none_or(|list| list.binary_search(&region).is_ok())
    }
}

/// How steering polls are answered (the document's `steering`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SteeringSettings {
    /// Off: every poll is answered `410 Gone`.
    pub enabled: bool,
    /// The manifests' TTL in seconds when the policy leaves it to the
    /// engine.
    pub ttl_s: u32,
}

impl Default for SteeringSettings {
    fn default() -> Self {
        SteeringSettings {
            enabled: true,
            ttl_s: 300,
        }
    }
}

/// An edge server as reached through one of a region's groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Server index.
    pub server: u32,
    /// Group index.
    pub group: u32,
}

/// A server group.
#[derive(Debug)]
pub struct Group {
    /// Id from the file.
    pub id: Box<str>,
    /// `active` flag.
    pub active: bool,
    /// Sorted indices of the channels it serves; `None` serves all.
    pub channels: Option<Box<[u32]>>,
}

impl Group {
    /// Whether this group serves `channel` (`None`: a request that is not
    /// for a channel, such as VOD, which every group serves).
    #[inline]
    pub fn serves(&self, channel: Option<u32>) -> bool {
        match (&self.channels, channel) {
            (Some(list), Some(ch)) => list.binary_search(&ch).is_ok(),
            _ => true,
        }
    }
}

/// A server.
#[derive(Debug)]
pub struct Server {
    /// Id from the file.
    pub id: Box<str>,
    /// Edge or DVR.
    pub kind: ServerKind,
    /// Host name or address.
    pub host: Box<str>,
    /// TCP port.
    pub port: u16,
    /// Draw weight.
    pub weight: u32,
    /// `active` flag.
    pub active: bool,
    /// DVR path prefix (DVR servers only).
    pub prefix: Option<Box<str>>,
    /// `scheme://host[:port]`, rendered once for every Location.
    pub base_url: Box<str>,
    /// The port it serves HTTPS on (`tls_port`, or 443 when `port` is).
    pub tls_port: Option<u16>,
    /// `https://host[:tls_port]`, for players that came over TLS; none when
    /// the server serves no TLS.
    pub tls_base_url: Option<Box<str>>,
    /// Health check settings, when configured (the checks themselves and
    /// their results are [`crate::health`]'s).
    pub healthcheck: Option<model::HealthcheckDoc>,
}

/// A client subnet (28 bytes: a topology may hold millions; its name, if
/// any, is in [`Topology::subnet_name`]).
#[derive(Debug, Clone)]
pub struct Subnet {
    /// The normalised network.
    pub net: IpNet,
    /// Region index.
    pub region: u32,
    /// The most specific other subnet enclosing this one ([`NONE`] if none).
    parent: u32,
}

/// A channel.
#[derive(Debug)]
pub struct Channel {
    /// EPG id.
    pub epg_id: Box<str>,
    /// Name from the file.
    pub name: Option<Box<str>>,
    /// `active` flag.
    pub active: bool,
    /// `dvr_enabled` flag.
    pub dvr_enabled: bool,
    /// Streams in file order.
    pub streams: Box<[Stream]>,
}

/// A stream of a channel.
#[derive(Debug)]
pub struct Stream {
    /// Protocol.
    pub protocol: Protocol,
    /// Encryption.
    pub encryption: Encryption,
    /// Path on the edge, without a leading `/`.
    pub path: Box<str>,
    /// `active` flag.
    pub active: bool,
}

/// A recorded program (as written: a program is its own document).
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// EPG id.
    pub epg_id: Arc<str>,
    /// `epg_id` of its channel.
    pub channel: Box<str>,
    /// Start time.
    pub start: Option<time::OffsetDateTime>,
    /// End time.
    pub end: Option<time::OffsetDateTime>,
    /// Recordings in file order.
    pub records: Box<[Record]>,
}

/// A recording of a program.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Id of the DVR server holding it.
    pub server: Box<str>,
    /// Protocol.
    pub protocol: Protocol,
    /// Encryption.
    pub encryption: Encryption,
    /// Path below the DVR prefix, as written (see [`Record::path`]).
    pub written_path: Box<str>,
    /// Recording state.
    pub status: RecordStatus,
    /// What it was asked of the DVR as (its identity there).
    pub placement: Option<Box<str>>,
    /// Why it is in error, as the DVR said.
    pub error: Option<Box<str>>,
}

impl Record {
    /// Path below the DVR prefix, without a leading `/`.
    #[inline]
    pub fn path(&self) -> &str {
        self.written_path.trim_start_matches('/')
    }
}

/// The encryptions that may serve a request for `asked`, in order of
/// preference: Widevine and PlayReady players can also play `cenc`; `none`
/// and `cenc` match only themselves.
pub fn acceptable_encryptions(asked: Encryption) -> &'static [Encryption] {
    match asked {
        Encryption::None => &[Encryption::None],
        Encryption::Cenc => &[Encryption::Cenc],
        Encryption::Widevine => &[Encryption::Widevine, Encryption::Cenc],
        Encryption::Playready => &[Encryption::Playready, Encryption::Cenc],
    }
}

impl Channel {
    /// The active stream to serve for this protocol and asked encryption
    /// (with the `cenc` fallback).
    pub fn stream(&self, protocol: Protocol, asked: Encryption) -> Option<&Stream> {
        acceptable_encryptions(asked).iter().find_map(|&enc| {
            self.streams
                .iter()
                .find(|s| s.active && s.protocol == protocol && s.encryption == enc)
        })
    }
}

impl Program {
    /// The completed recording to serve for this protocol and asked
    /// encryption (with the `cenc` fallback).
    pub fn record(&self, protocol: Protocol, asked: Encryption) -> Option<&Record> {
        acceptable_encryptions(asked).iter().find_map(|&enc| {
            self.records.iter().find(|r| {
                r.status == RecordStatus::Completed && r.protocol == protocol && r.encryption == enc
            })
        })
    }
}

impl Topology {
    /// This snapshot, its document (and so every entity) at `revision`.
    pub fn at_revision(mut self, revision: u64) -> Self {
        self.revisions = Arc::new(Revisions {
            base: revision,
            last: revision,
            changed: HashMap::default(),
        });
        self
    }

    /// The index of the most specific subnet containing `addr`.
    #[inline]
    pub fn longest_match(&self, addr: IpAddr) -> Option<u32> {
        match addr {
            IpAddr::V4(a) => self.subnets.v4.longest(u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.subnets.v4.longest(u32::from(v4)),
                None => self.subnets.v6.longest(u128::from(a)),
            },
        }
    }

    /// Every subnet containing `addr`, most specific first.
    pub fn matching_subnets(&self, addr: IpAddr) -> impl Iterator<Item = u32> + '_ {
        let mut next = self.longest_match(addr);
        std::iter::from_fn(move || {
            let current = next?;
            let parent = self.subnets[current as usize].parent;
            next = (parent != NONE).then_some(parent);
            Some(current)
        })
    }

    /// The name of subnet `index`, if the file gave it one.
    pub fn subnet_name(&self, index: u32) -> Option<&str> {
        self.subnets.name(index)
    }

    /// The channel with this EPG id.
    pub fn channel(&self, epg_id: &str) -> Option<(u32, &Channel)> {
        let &i = self.indexes.channels.get(epg_id)?;
        Some((i, &self.channels[i as usize]))
    }

    /// The program with this EPG id.
    pub fn program(&self, epg_id: &str) -> Option<(u32, &Program)> {
        let i = self.programs.slot(epg_id)?;
        Some((i, self.programs.get(i)?))
    }

    /// The index of the server with this id.
    pub fn server_index(&self, id: &str) -> Option<u32> {
        self.indexes.servers.get(id).copied()
    }

    /// The index of the region with this id.
    pub fn region_index(&self, id: &str) -> Option<u32> {
        self.indexes.regions.get(id).copied()
    }

    /// The index of the steering pathway with this id (there are few:
    /// looked for in order).
    pub fn pathway_index(&self, id: &str) -> Option<u32> {
        self.pathways
            .iter()
            .position(|p| &*p.id == id)
            .map(|i| i as u32)
    }

    /// The index of the server group with this id.
    pub fn group_index(&self, id: &str) -> Option<u32> {
        self.indexes.groups.get(id).copied()
    }

    /// A one-line summary, e.g. for `check-topology` and reload logs.
    pub fn summary(&self) -> String {
        let v6 = self
            .subnets
            .iter()
            .filter(|(_, s)| s.net.addr().is_ipv6())
            .count();
        let pathways = match self.pathways.len() {
            0 => String::new(),
            n => format!(", {n} steering pathways"),
        };
        format!(
            "{} regions, {} subnets ({} IPv4, {} IPv6), {} server groups, {} servers ({} edge, {} dvr), {} channels, {} programs, default region {}{pathways}",
            self.regions.len(),
            self.subnets.len(),
            self.subnets.len() - v6,
            v6,
            self.groups.len(),
            self.servers.len(),
            self.servers
                .iter()
                .filter(|s| s.kind == ServerKind::Edge)
                .count(),
            self.servers
                .iter()
                .filter(|s| s.kind == ServerKind::Dvr)
                .count(),
            self.channels.len(),
            self.programs.len(),
            self.default_region
                .map_or("none", |r| &*self.regions[r as usize].id),
        )
    }
}

impl Subnets {
    /// Packs a loaded list (slot = place in the file) and its tables.
    pub(crate) fn from_parts(
        list: Vec<Subnet>,
        names: Vec<(u32, Box<str>)>,
        written: Vec<(u32, IpNet)>,
        v4: PrefixTable<u32>,
        v6: PrefixTable<u128>,
    ) -> Self {
        let mut chunks: Vec<SubnetChunk> = list
            .chunks(CHUNK)
            .map(|c| SubnetChunk {
                list: c.to_vec(),
                ..SubnetChunk::default()
            })
            .collect();
        for (i, name) in names {
            chunks[i as usize / CHUNK]
                .names
                .push(((i as usize % CHUNK) as u16, name));
        }
        for (i, net) in written {
            chunks[i as usize / CHUNK]
                .written
                .push(((i as usize % CHUNK) as u16, net));
        }
        Subnets {
            chunks: chunks.into_iter().map(Arc::new).collect(),
            slots: list.len() as u32,
            live: list.len() as u32,
            v4: Arc::new(v4),
            v6: Arc::new(v6),
        }
    }

    /// No subnets.
    pub(crate) fn empty() -> Self {
        Self::from_parts(
            Vec::new(),
            Vec::new(),
            Vec::new(),
            PrefixTable::build(&[]).0,
            PrefixTable::build(&[]).0,
        )
    }

    /// How many subnets there are.
    pub fn len(&self) -> usize {
        self.live as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The subnet in slot `i`, unless there is none (or it was removed).
    pub fn get(&self, i: usize) -> Option<&Subnet> {
        let s = self.chunks.get(i / CHUNK)?.list.get(i % CHUNK)?;
        (s.region != GONE).then_some(s)
    }

    /// Every subnet with its slot, in document order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Subnet)> + '_ {
        self.chunks
            .iter()
            .flat_map(|c| &c.list)
            .enumerate()
            .filter(|(_, s)| s.region != GONE)
            .map(|(i, s)| (i as u32, s))
    }

    /// The name of subnet `index`, if it has one.
    pub fn name(&self, index: u32) -> Option<&str> {
        let chunk = self.chunks.get(index as usize / CHUNK)?;
        let offset = (index as usize % CHUNK) as u16;
        let at = chunk
            .names
            .binary_search_by_key(&offset, |&(i, _)| i)
            .ok()?;
        Some(&chunk.names[at].1)
    }

    /// The CIDR of subnet `index` as written (host bits and all).
    pub fn written(&self, index: u32) -> IpNet {
        let chunk = &self.chunks[index as usize / CHUNK];
        let offset = (index as usize % CHUNK) as u16;
        match chunk.written.binary_search_by_key(&offset, |&(i, _)| i) {
            Ok(at) => chunk.written[at].1,
            Err(_) => chunk.list[offset as usize].net,
        }
    }

    /// The slot of the subnet of exactly this (normalised) network.
    pub fn find(&self, net: IpNet) -> Option<u32> {
        let net = net.trunc();
        let found = match net {
            IpNet::V4(n) => self.v4.longest(u32::from(n.network())),
            IpNet::V6(n) => self.v6.longest(u128::from(n.network())),
        };
        // The most specific subnet at the network's first address is it,
        // or one inside it, or one enclosing it: walk up to its length.
        let mut at = found?;
        loop {
            let s = &self[at as usize];
            match s.net.prefix_len().cmp(&net.prefix_len()) {
                std::cmp::Ordering::Equal => return (s.net == net).then_some(at),
                std::cmp::Ordering::Less => return None,
                std::cmp::Ordering::Greater => {
                    if s.parent == NONE {
                        return None;
                    }
                    at = s.parent;
                }
            }
        }
    }
}
