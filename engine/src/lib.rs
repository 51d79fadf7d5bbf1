//! edgeward: a redirect engine for video CDNs.
//!
//! A player asks for a stream; edgeward answers at once with a redirect to
//! the edge server that should serve it. The crate is organised by concern:
//!
//! - [`topology`]: what exists (regions, subnets, servers, channels,
//!   programs), validated and indexed into immutable snapshots;
//! - [`health`]: which edges are alive (active checks) and drained;
//! - [`policy`]: the WebAssembly routing policies that decide who serves;
//! - [`routing`]: one request from URL to decision to `Location`;
//! - [`http`]: the listener, workers and wire format;
//! - [`control`]: the one door configuration changes enter by;
//! - [`admin`]: the operators' API (policies, canary, shadow, topology);
//! - [`cluster`]: many nodes following one configuration kept in etcd;
//! - [`cmd`]: the command line (`serve`, `ctl`, `policy`, ...);
//! - [`builtin`]: the policies and demo topology embedded in the binary;
//! - [`time`]: how times are written.

pub mod access;
pub mod admin;
pub mod builtin;
pub mod catalogue;
pub mod cluster;
pub mod cmd;
pub mod control;
pub mod decision_log;
pub mod durable;
pub mod dvr;
pub mod epg;
pub mod geo;
pub mod health;
pub mod http;
pub mod metrics;
pub mod outbound;
pub mod policy;
pub mod routing;
pub mod systemd;
pub mod time;
pub mod topology;

/// SHA-256 of `bytes`, as lowercase hex: the content identity of policies
/// and topologies.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
