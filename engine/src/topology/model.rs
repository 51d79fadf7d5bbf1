//! The topology file format: what operators write, field for field.
//!
//! These types mirror the JSON (or MessagePack) document exactly. Field names
//! are part of the contract; unknown fields are refused so that a typo does
//! not pass silently. Semantic checks (references, duplicates, ranges) are in
//! [`super::load`]; the indexed in-memory form is [`super::Topology`].

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_one(w: &u32) -> bool {
    *w == 1
}

/// The whole topology document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyDoc {
    /// Region serving clients that match no subnet, and the last tier for all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_region: Option<String>,
    /// Regions: named sets of server groups.
    pub regions: Vec<RegionDoc>,
    /// Client subnets, each mapped to a region.
    pub subnets: Vec<SubnetDoc>,
    /// Server groups: sets of servers, optionally restricted to some channels.
    pub server_groups: Vec<GroupDoc>,
    /// Edge and DVR servers.
    pub servers: Vec<ServerDoc>,
    /// Live channels and their streams.
    pub channels: Vec<ChannelDoc>,
    /// Recorded programs available for catch-up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<ProgramDoc>,
}

/// A region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionDoc {
    /// Unique id.
    pub id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An inactive region offers no candidates.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub active: bool,
    /// Ids of the server groups serving this region.
    pub server_groups: Vec<String>,
}

/// A client subnet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetDoc {
    /// IPv4 or IPv6 CIDR; host bits are cleared.
    pub cidr: String,
    /// Id of the region serving it.
    pub region: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A server group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupDoc {
    /// Unique id.
    pub id: String,
    /// An inactive group offers no candidates.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub active: bool,
    /// Ids of its servers.
    pub servers: Vec<String>,
    /// `epg_id`s of the channels it serves; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
}

/// What a server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// Serves players.
    Edge,
    /// Stores recordings; reached through an edge at `/dvr/{prefix}/`.
    Dvr,
}

/// A server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerDoc {
    /// Unique id.
    pub id: String,
    /// `edge` or `dvr`.
    pub kind: ServerKind,
    /// Host name or IP address players are sent to.
    pub host: String,
    /// TCP port, 1..=65535 (443 means https).
    pub port: u32,
    /// An inactive server is never chosen.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub active: bool,
    /// Relative share of random draws; 0 means never drawn.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub weight: u32,
    /// Health check settings (used by health checking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthcheckDoc>,
    /// Path segment naming this DVR server on the edges; required for `dvr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// How a server's health is checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckDoc {
    /// Path probed over HTTP, e.g. `/health`.
    pub path: String,
}

/// A live channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelDoc {
    /// Unique EPG id, as used in live URLs.
    pub epg_id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An inactive channel is not served live.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub active: bool,
    /// Whether the channel is recorded for catch-up.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dvr_enabled: bool,
    /// Its streams.
    pub streams: Vec<StreamDoc>,
}

/// Streaming protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HLS (`.m3u8`).
    Hls,
    /// MPEG-DASH (`.mpd`).
    Mpd,
}

/// Stream encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// Clear.
    None,
    /// Widevine DRM.
    Widevine,
    /// PlayReady DRM.
    Playready,
    /// Common encryption, usable by Widevine and PlayReady players.
    Cenc,
}

/// One stream of a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamDoc {
    /// `hls` or `mpd`.
    pub protocol: Protocol,
    /// `none`, `widevine`, `playready` or `cenc`.
    pub encryption: Encryption,
    /// Path on the edge, e.g. `live/ch1/index.m3u8`.
    pub path: String,
    /// An inactive stream is never served.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub active: bool,
}

/// A recorded program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramDoc {
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
    pub start: Option<OffsetDateTime>,
    /// End time (RFC 3339).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub end: Option<OffsetDateTime>,
    /// Its recordings.
    pub records: Vec<RecordDoc>,
}

/// State of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// Scheduled.
    Planned,
    /// Being recorded.
    Running,
    /// Finished and playable.
    Completed,
    /// Failed.
    Error,
}

/// One recording of a program on a DVR server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordDoc {
    /// Id of the DVR server holding it.
    pub server: String,
    /// `hls` or `mpd`.
    pub protocol: Protocol,
    /// `none`, `widevine`, `playready` or `cenc`.
    pub encryption: Encryption,
    /// Path below the DVR server's prefix.
    pub path: String,
    /// Only `completed` recordings are served.
    pub status: RecordStatus,
}
