//! The CDN topology: what exists (regions, subnets, groups, servers,
//! channels, programs), as an immutable, indexed snapshot.
//!
//! A [`Topology`] is built once from a [`model::TopologyDoc`] by
//! [`load::build`], which validates everything first; after that every
//! reference is an index that cannot dangle, and request-time questions
//! (which subnets contain this client? which channel has this `epg_id`?)
//! are answered from prebuilt indexes. Snapshots are never mutated: a new
//! topology is a new snapshot, published by [`store::TopologyStore`].

pub mod load;
pub mod model;
pub mod prefix_table;
pub mod store;
pub mod synthetic;

use foldhash::HashMap;
use ipnet::IpNet;
use std::net::IpAddr;

pub use load::{TopologyError, build, load, parse};
pub use model::{Encryption, Protocol, RecordStatus, ServerKind, TopologyDoc};
use prefix_table::{NONE, PrefixTable};

/// An immutable, indexed topology snapshot.
#[derive(Debug)]
pub struct Topology {
    /// Version number assigned when the snapshot was published.
    pub version: u64,
    /// The document it was built from, as MessagePack with field names
    /// (what `GET /topology` serves and what a restart or another node
    /// loads). When the document arrived in exactly this form, these are
    /// the bytes it arrived in, not a copy.
    pub source: bytes::Bytes,
    /// SHA-256 of `source`, hex.
    pub hash: String,
    /// Regions, in file order.
    pub regions: Vec<Region>,
    /// Server groups, in file order.
    pub groups: Vec<Group>,
    /// Servers, in file order.
    pub servers: Vec<Server>,
    /// Client subnets, in file order.
    pub subnets: Vec<Subnet>,
    /// Names of the subnets that have one, by subnet index (ascending).
    subnet_names: Box<[(u32, Box<str>)]>,
    /// Channels, in file order.
    pub channels: Vec<Channel>,
    /// Programs, in file order.
    pub programs: Vec<Program>,
    /// Index of the default region.
    pub default_region: Option<u32>,
    v4: PrefixTable<u32>,
    v6: PrefixTable<u128>,
    channel_by_epg: HashMap<Box<str>, u32>,
    program_by_epg: HashMap<Box<str>, u32>,
    server_by_id: HashMap<Box<str>, u32>,
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
#[derive(Debug)]
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

/// A recorded program.
#[derive(Debug)]
pub struct Program {
    /// EPG id.
    pub epg_id: Box<str>,
    /// Channel index.
    pub channel: u32,
    /// Recordings in file order.
    pub records: Box<[Record]>,
}

/// A recording of a program.
#[derive(Debug)]
pub struct Record {
    /// Index of the DVR server holding it.
    pub server: u32,
    /// Protocol.
    pub protocol: Protocol,
    /// Encryption.
    pub encryption: Encryption,
    /// Path below the DVR prefix, without a leading `/`.
    pub path: Box<str>,
    /// Recording state.
    pub status: RecordStatus,
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
    /// The index of the most specific subnet containing `addr`.
    #[inline]
    pub fn longest_match(&self, addr: IpAddr) -> Option<u32> {
        match addr {
            IpAddr::V4(a) => self.v4.longest(u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.v4.longest(u32::from(v4)),
                None => self.v6.longest(u128::from(a)),
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
        let at = self
            .subnet_names
            .binary_search_by_key(&index, |&(i, _)| i)
            .ok()?;
        Some(&self.subnet_names[at].1)
    }

    /// The channel with this EPG id.
    pub fn channel(&self, epg_id: &str) -> Option<(u32, &Channel)> {
        let &i = self.channel_by_epg.get(epg_id)?;
        Some((i, &self.channels[i as usize]))
    }

    /// The program with this EPG id.
    pub fn program(&self, epg_id: &str) -> Option<(u32, &Program)> {
        let &i = self.program_by_epg.get(epg_id)?;
        Some((i, &self.programs[i as usize]))
    }

    /// The index of the server with this id.
    pub fn server_index(&self, id: &str) -> Option<u32> {
        self.server_by_id.get(id).copied()
    }

    /// A one-line summary, e.g. for `check-topology` and reload logs.
    pub fn summary(&self) -> String {
        let v6 = self
            .subnets
            .iter()
            .filter(|s| s.net.addr().is_ipv6())
            .count();
        format!(
            "{} regions, {} subnets ({} IPv4, {} IPv6), {} server groups, {} servers ({} edge, {} dvr), {} channels, {} programs, default region {}",
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
