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

/// The newest topology document schema this engine reads. Documents
/// without `schema` are schema 1, the format of every edgeward before
/// content steering. Schema 2 adds `pathways`, `steering` and region
/// `location`s; schema 3 what DVR recording needs (a channel's
/// `recording_group`, `code_name` and `storage_id`, a DVR's `management`
/// address, a record's `placement` and `error`, and the record states
/// `new`, `canceled` and `removed`). A document using them must say its
/// schema, so that a node too old to read them refuses it as newer rather
/// than for an unknown field (see the README's rolling upgrade).
pub const SCHEMA: u32 = 3;

/// The whole topology document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyDoc {
    /// The document's format version, [`SCHEMA`] or older (absent: 1). A
    /// node refuses a document of a newer schema than it reads, saying so,
    /// rather than failing on the first field it does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<u32>,
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
    /// Content-steering pathways (schema 2): the CDNs or server groups a
    /// steering manifest orders for players.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pathways: Vec<PathwayDoc>,
    /// Content-steering settings (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steering: Option<SteeringDoc>,
}

/// A content-steering pathway: what a player's `PATHWAY-ID` (HLS) or
/// `serviceLocation` (DASH) names, a CDN or one of our server groups
/// reached through a host name; or a clone of another pathway with its
/// host replaced (`PATHWAY-CLONES`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathwayDoc {
    /// Unique id, as written in the manifests: letters, digits, `.`, `-`
    /// and `_` (HLS's rule for `PATHWAY-ID`).
    pub id: String,
    /// The host name its URLs point at (for a clone: the host that
    /// replaces its base's, `URI-REPLACEMENT` `HOST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The server group behind it, when it is one of ours: its edges'
    /// health tells whether the pathway is up. A clone without one has
    /// its base's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Ids of the regions whose clients may use it. Empty: the regions
    /// serving its group, or every region for a pathway with no group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// The pathway this one is a clone of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Query parameters a clone's URLs get (`URI-REPLACEMENT` `PARAMS`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: std::collections::BTreeMap<String, String>,
    /// An inactive pathway is offered to no player.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub active: bool,
}

/// How the engine answers steering polls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteeringDoc {
    /// Off: every poll is answered `410 Gone`, which stops steering for
    /// that player's session (it keeps its current pathway).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// The manifests' `TTL` when the policy leaves it to the engine
    /// (whole seconds, 1 s to 1 h; players default to 300 s).
    #[serde(
        default = "default_steering_ttl",
        skip_serializing_if = "is_default_steering_ttl"
    )]
    pub ttl: Millis,
}

impl Default for SteeringDoc {
    fn default() -> Self {
        SteeringDoc {
            enabled: true,
            ttl: default_steering_ttl(),
        }
    }
}

fn default_steering_ttl() -> Millis {
    Millis(300_000)
}

fn is_default_steering_ttl(t: &Millis) -> bool {
    *t == default_steering_ttl()
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
    /// Where the region is (schema 2), for policies that weigh distance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<LocationDoc>,
}

/// A point on the globe, in degrees (WGS 84).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationDoc {
    /// -90 to 90, north positive.
    pub latitude: f64,
    /// -180 to 180, east positive.
    pub longitude: f64,
}

/// A client subnet.
///
/// A topology may hold a million of these, so the fields are compact: the
/// CIDR is parsed as it is read and the region id is shared between the
/// subnets naming it (see [`Cidr`], [`SharedId`]); a subnet costs 56 bytes
/// and, unless it has a name, no allocation of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetDoc {
    /// IPv4 or IPv6 CIDR; host bits are cleared.
    pub cidr: Cidr,
    /// Id of the region serving it.
    pub region: SharedId,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Box<str>>,
}

/// A subnet's `cidr` field: parsed when the document is read, or kept as
/// written when it is not a CIDR, so that validation can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cidr {
    /// A network (host bits as written; the loader clears them).
    Net(ipnet::IpNet),
    /// Text that is not an IPv4 or IPv6 CIDR.
    Invalid(Box<str>),
}

impl From<ipnet::IpNet> for Cidr {
    fn from(net: ipnet::IpNet) -> Self {
        Cidr::Net(net)
    }
}

impl From<&str> for Cidr {
    fn from(text: &str) -> Self {
        match text.trim().parse() {
            Ok(net) => Cidr::Net(net),
            Err(_) => Cidr::Invalid(text.into()),
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cidr::Net(net) => net.fmt(f),
            Cidr::Invalid(text) => f.write_str(text),
        }
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Cidr;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a CIDR string such as \"10.1.0.0/16\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Cidr, E> {
                Ok(Cidr::from(v))
            }
        }
        d.deserialize_str(V)
    }
}

/// An id repeated across many records (a subnet's region). While a
/// document is being read by [`super::parse`], equal ids share one
/// allocation; elsewhere each is allocated on its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SharedId(std::sync::Arc<str>);

impl std::ops::Deref for SharedId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SharedId {
    fn from(id: &str) -> Self {
        INTERNER.with_borrow_mut(|table| match table {
            Some(table) => match table.get(id) {
                Some(shared) => SharedId(shared.clone()),
                None => {
                    let shared: std::sync::Arc<str> = id.into();
                    table.insert(shared.clone());
                    SharedId(shared)
                }
            },
            None => SharedId(id.into()),
        })
    }
}

impl From<String> for SharedId {
    fn from(id: String) -> Self {
        SharedId::from(id.as_str())
    }
}

impl Serialize for SharedId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SharedId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SharedId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SharedId, E> {
                Ok(SharedId::from(v))
            }
        }
        d.deserialize_str(V)
    }
}

thread_local! {
    /// The ids seen so far by the [`super::parse`] running on this thread.
    static INTERNER: std::cell::RefCell<Option<std::collections::HashSet<std::sync::Arc<str>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Shares equal [`SharedId`]s read on this thread until it is dropped.
pub(super) struct Interning(());

impl Interning {
    /// Starts sharing.
    pub(super) fn start() -> Self {
        INTERNER.set(Some(Default::default()));
        Interning(())
    }
}

impl Drop for Interning {
    fn drop(&mut self) {
        INTERNER.set(None);
    }
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
    /// Port the server serves HTTPS on, for players that came over TLS
    /// (443 when `port` is 443). A server without one is not a candidate
    /// for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_port: Option<u32>,
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
    /// Where a DVR server's management API listens (schema 3), for
    /// scheduling recordings; its credentials are in the DVR secrets
    /// file, never here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management: Option<ManagementDoc>,
}

/// A DVR's management API: `http://{host}:{port}/cti-dvr/dvr-service`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementDoc {
    /// Host name or IP address.
    pub host: String,
    /// TCP port, 1..=65535.
    pub port: u32,
}

/// How a server's health is checked: `GET {scheme}://{host}{:port}{path}`
/// every `interval`; a server is marked down after `fall` consecutive
/// failures and up again after `rise` consecutive successes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckDoc {
    /// Path probed over HTTP, e.g. `/health`.
    pub path: String,
    /// Time between probes (`"2s"`, `"500ms"`, or a number of seconds).
    #[serde(default = "default_interval")]
    pub interval: Millis,
    /// Longest a probe may take before it counts as failed.
    #[serde(default = "default_timeout")]
    pub timeout: Millis,
    /// Consecutive successes that bring a down server up.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures that take a server down.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// The exact body a healthy server answers (surrounding whitespace
    /// ignored), e.g. `OK`; unset accepts any body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<String>,
}

fn default_interval() -> Millis {
    Millis(2000)
}

fn default_timeout() -> Millis {
    Millis(1000)
}

fn default_rise() -> u32 {
    2
}

fn default_fall() -> u32 {
    3
}

/// A duration in milliseconds, written as `"2s"`, `"250ms"` or a number of
/// seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Millis(pub u64);

impl Millis {
    /// As a standard duration.
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

impl Serialize for Millis {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", self.0))
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Millis;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as \"2s\", \"250ms\" or a number of seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Millis, E> {
                Ok(Millis(v.saturating_mul(1000)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Millis, E> {
                u64::try_from(v)
                    .map(|v| Millis(v.saturating_mul(1000)))
                    .map_err(|_| E::custom(format!("negative duration {v}")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Millis, E> {
                if v.is_finite() && v >= 0.0 {
                    Ok(Millis((v * 1000.0).round() as u64))
                } else {
                    Err(E::custom(format!("invalid duration {v}")))
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Millis, E> {
                let t = v.trim();
                let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
                    (n, 1.0)
                } else if let Some(n) = t.strip_suffix('s') {
                    (n, 1000.0)
                } else if let Some(n) = t.strip_suffix('m') {
                    (n, 60_000.0)
                } else {
                    (t, 1000.0)
                };
                match num.trim().parse::<f64>() {
                    Ok(n) if n.is_finite() && n >= 0.0 => Ok(Millis((n * scale).round() as u64)),
                    _ => Err(E::custom(format!(
                        "invalid duration {v:?} (expected e.g. \"2s\" or \"250ms\")"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
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
    /// The server group whose edges the DVR records it from and whose
    /// DVR servers record it (schema 3); without one it is not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_group: Option<String>,
    /// Its name on the DVR, the first segment of a recording's placement
    /// (schema 3): letters, digits, `_` and `-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_name: Option<String>,
    /// The DVR storage its recordings go to, 1 to 10 (schema 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_id: Option<u32>,
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

/// State of a recording, as the DVR reports it (`new`, `canceled` and
/// `removed` are schema 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// Asked of the DVR (with no `path` yet: the intent, written before
    /// the DVR is called).
    New,
    /// Scheduled.
    Planned,
    /// Being recorded.
    Running,
    /// Finished and playable.
    Completed,
    /// Failed.
    Error,
    /// Cancelled on the DVR.
    Canceled,
    /// Removed from the DVR.
    Removed,
}

impl RecordStatus {
    /// As written in documents and the DVR's answers.
    pub fn name(self) -> &'static str {
        match self {
            RecordStatus::New => "new",
            RecordStatus::Planned => "planned",
            RecordStatus::Running => "running",
            RecordStatus::Completed => "completed",
            RecordStatus::Error => "error",
            RecordStatus::Canceled => "canceled",
            RecordStatus::Removed => "removed",
        }
    }

    /// Whether documents of schema 2 and older can hold it.
    pub fn before_schema_3(self) -> bool {
        matches!(
            self,
            RecordStatus::Planned
                | RecordStatus::Running
                | RecordStatus::Completed
                | RecordStatus::Error
        )
    }
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
    /// Path below the DVR server's prefix, as the DVR answered; empty
    /// only while the record is `new` (asked, not yet answered), or when
    /// it never got one (`error`, `canceled`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Only `completed` recordings are served.
    pub status: RecordStatus,
    /// What the recording was asked as, which identifies it on the DVR
    /// (schema 3): `{code name}/{protocol}/{encryption}/{programme}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    /// Why it is `error`, as the DVR said (schema 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
