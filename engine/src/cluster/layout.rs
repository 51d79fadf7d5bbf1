//! What edgeward keeps in etcd, under one key prefix (`/edgeward` by
//! default). Values are JSON, so `etcdctl get --prefix /edgeward/config`
//! shows an operator what the fleet follows:
//!
//! | key | value |
//! |---|---|
//! | `{prefix}/config/topology` | [`TopologyRecord`]: the current topology's blob and who wrote it |
//! | `{prefix}/config/topology-changes/{seq}` | [`ChangeRecord`]: an entity change made since (applied in `seq` order; folded into a new topology record every `--etcd-fold-changes`, 1,000 by default) |
//! | `{prefix}/config/policies/{digest}` | [`PolicyRecord`]: one uploaded policy (component blob + configuration); its `create_revision` is its version number on every node |
//! | `{prefix}/config/routing` | [`RoutingRecord`]: active policy, history, canary, shadow |
//! | `{prefix}/config/drained/{server id}` | [`DrainRecord`]: a drained server |
//! | `{prefix}/blobs/{sha256}/{00000…}` | content-addressed bytes in 1 MiB chunks (topology MessagePack, `.wasm` components), so that values stay under etcd's request limit |
//!
//! Nodes watch `{prefix}/config/` only. Blobs are written before the record
//! that points at them, so a record never refers to a blob that is not there.

use serde::{Deserialize, Serialize};

/// Largest chunk of a blob (etcd refuses requests over 1.5 MiB by default).
pub const CHUNK: usize = 1 << 20;

/// Largest change record; a larger batch is written as a whole document.
pub const MAX_CHANGE: usize = 1 << 20;

/// Largest audit record: a change record near [`MAX_CHANGE`] and its audit
/// fit one request (1.5 MiB by default); a larger audit keeps its hashes
/// and drops the fields changed, then is summed up in one entry.
pub const MAX_AUDIT: usize = 256 << 10;

/// The keys under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (`/edgeward`; a trailing `/` is ignored).
    pub fn new(prefix: &str) -> Self {
        let prefix = prefix.trim_end_matches('/');
        Keys {
            prefix: if prefix.starts_with('/') {
                prefix.to_string()
            } else {
                format!("/{prefix}")
            },
        }
    }

    /// The prefix, without a trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every configuration key starts with this (what nodes watch).
    pub fn config(&self) -> String {
        format!("{}/config/", self.prefix)
    }

    /// The topology record.
    pub fn topology(&self) -> String {
        format!("{}/config/topology", self.prefix)
    }

    /// The routing record.
    pub fn routing(&self) -> String {
        format!("{}/config/routing", self.prefix)
    }

    /// Prefix of the topology's entity changes.
    pub fn changes(&self) -> String {
        format!("{}/config/topology-changes/", self.prefix)
    }

    /// Entity change `seq` (zero-padded, so that keys sort by `seq`).
    pub fn change(&self, seq: u64) -> String {
        format!("{}/config/topology-changes/{seq:020}", self.prefix)
    }

    /// Prefix of the policy records.
    pub fn policies(&self) -> String {
        format!("{}/config/policies/", self.prefix)
    }

    /// One policy record.
    pub fn policy(&self, digest: &str) -> String {
        format!("{}/config/policies/{digest}", self.prefix)
    }

    /// Prefix of the drained servers.
    pub fn drained(&self) -> String {
        format!("{}/config/drained/", self.prefix)
    }

    /// One drained server.
    pub fn drain(&self, server: &str) -> String {
        format!("{}/config/drained/{server}", self.prefix)
    }

    /// Prefix of the audit records (outside `config/`: nodes do not
    /// follow them, `GET /audit` reads them).
    pub fn audit(&self) -> String {
        format!("{}/audit/", self.prefix)
    }

    /// The audit record of a change written at `time_ms` (zero-padded, so
    /// that keys sort by time), `what` telling it from another written in
    /// the same millisecond.
    pub fn audit_record(&self, time_ms: u64, what: &str) -> String {
        format!("{}/audit/{time_ms:016}-{what}", self.prefix)
    }

    /// Prefix of the fleet's accounts, API tokens and session key
    /// (outside `config/`: see [`super::access`]).
    pub fn access(&self) -> String {
        format!("{}/access/", self.prefix)
    }

    /// Prefix of one blob's chunks.
    pub fn blob(&self, hash: &str) -> String {
        format!("{}/blobs/{hash}/", self.prefix)
    }

    /// One chunk of a blob.
    pub fn chunk(&self, hash: &str, index: u32) -> String {
        format!("{}/blobs/{hash}/{index:05}", self.prefix)
    }
}

/// Where a blob is and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobRef {
    /// SHA-256 of the whole blob, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// How many chunks it is stored in.
    pub chunks: u32,
}

impl BlobRef {
    /// The reference of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        BlobRef {
            sha256: crate::sha256_hex(bytes),
            size: bytes.len() as u64,
            chunks: bytes.len().div_ceil(CHUNK).max(1) as u32,
        }
    }
}

/// The current topology.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyRecord {
    /// The topology as MessagePack (the engine's canonical form).
    pub blob: BlobRef,
    /// One-line summary, for people reading etcd.
    pub summary: String,
    /// Who wrote it (admin identity and node).
    pub written_by: String,
    /// When, RFC 3339.
    pub written_at: String,
    /// The last entity change folded into it (0: none); the changes after
    /// it are `topology-changes/` records.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
    /// The hash of the snapshot it was folded from: a node serving that
    /// snapshot already keeps it instead of loading the blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An entity change to the topology, applied on every node in `seq` order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRecord {
    /// Its place: one after the change (or topology record) before it.
    pub seq: u64,
    /// The edits, all or none.
    pub edits: Vec<crate::topology::edit::Edit>,
    /// Who wrote it.
    pub written_by: String,
    /// When, RFC 3339.
    pub written_at: String,
}

/// One uploaded policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRecord {
    /// Its name.
    pub name: String,
    /// The component.
    pub wasm: BlobRef,
    /// Its configuration (MessagePack), base64.
    pub config_base64: String,
    /// The limits stored with it (absent in records written before they
    /// existed, and when none is set).
    #[serde(default, skip_serializing_if = "crate::policy::Limits::is_default")]
    pub limits: crate::policy::Limits,
    /// Its signature (absent: unsigned, and in records written before
    /// signatures existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::policy::signing::PolicySignature>,
    /// Who uploaded it.
    pub written_by: String,
    /// When, RFC 3339.
    pub written_at: String,
}

/// Which policies serve.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRecord {
    /// Digest of the active policy (none: each node's start policy).
    pub active: Option<String>,
    /// Previously active digests, most recent last (what rollback pops).
    #[serde(default)]
    pub history: Vec<String>,
    /// A canary, if one runs.
    #[serde(default)]
    pub canary: Option<CanaryRecord>,
    /// A shadow, if one runs.
    #[serde(default)]
    pub shadow: Option<ShadowRecord>,
    /// Who wrote it.
    #[serde(default)]
    pub written_by: String,
    /// When, RFC 3339.
    #[serde(default)]
    pub written_at: String,
}

/// A canary in the routing record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryRecord {
    /// Digest of the canary policy.
    pub policy: String,
    /// Share of clients, 0–100.
    pub percent: u32,
}

/// A shadow in the routing record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowRecord {
    /// Digest of the shadow policy.
    pub policy: String,
    /// Share of requests, 0–100.
    pub sample_percent: u32,
}

/// A drained server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRecord {
    /// Who drained it.
    pub written_by: String,
    /// When, RFC 3339.
    pub written_at: String,
}

/// The identity of a policy in etcd: its component, its configuration,
/// its limits and its signature. Limits and signature count only when set,
/// so the digest of a policy without them is the one it had before they
/// existed; a signed upload of a policy stored unsigned is a new record.
pub fn policy_digest(
    wasm_sha256: &str,
    config: &[u8],
    limits: &crate::policy::Limits,
    signature: Option<&crate::policy::signing::PolicySignature>,
) -> String {
    let mut bytes = wasm_sha256.as_bytes().to_vec();
    bytes.push(b'\n');
    bytes.extend_from_slice(config);
    if !limits.is_default() {
        bytes.push(b'\n');
        bytes.extend_from_slice(
            serde_json::to_string(limits)
                .expect("limits serialise")
                .as_bytes(),
        );
    }
    if let Some(s) = signature {
        bytes.extend_from_slice(b"\nsigned ");
        bytes.extend_from_slice(s.ed25519.as_bytes());
    }
    crate::sha256_hex(&bytes)[..32].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sit_under_one_prefix() {
        let k = Keys::new("edgeward/");
        assert_eq!(k.prefix(), "/edgeward");
        assert_eq!(k.topology(), "/edgeward/config/topology");
        assert!(k.policy("ab").starts_with(&k.config()));
        assert!(k.drain("e1").starts_with(&k.config()));
        assert!(!k.chunk("ab", 0).starts_with(&k.config()));
        assert_eq!(k.chunk("ab", 3), "/edgeward/blobs/ab/00003");
        assert!(k.change(7).starts_with(&k.changes()) && k.changes().starts_with(&k.config()));
        assert!(k.change(9) < k.change(10));
    }

    #[test]
    fn blobs_are_cut_in_chunks() {
        assert_eq!(BlobRef::of(b"").chunks, 1);
        assert_eq!(BlobRef::of(&vec![0; CHUNK]).chunks, 1);
        assert_eq!(BlobRef::of(&vec![0; CHUNK + 1]).chunks, 2);
    }

    #[test]
    fn the_digest_depends_on_component_and_configuration() {
        use crate::policy::Limits;
        let none = Limits::default();
        let a = policy_digest("aa", b"\x80", &none, None);
        assert_ne!(a, policy_digest("ab", b"\x80", &none, None));
        assert_ne!(a, policy_digest("aa", b"\x81\xa1k\x01", &none, None));
        assert_eq!(a, policy_digest("aa", b"\x80", &none, None));
        // What records written before limits existed hold.
        assert_eq!(a, "33eae5c5e3196796072c9fe3f343a597");
        let limited = Limits {
            deadline_ms: Some(50),
            memory_mib: None,
        };
        assert_ne!(a, policy_digest("aa", b"\x80", &limited, None));
        assert_ne!(
            policy_digest("aa", b"\x80", &limited, None),
            policy_digest(
                "aa",
                b"\x80",
                &Limits {
                    memory_mib: Some(50),
                    deadline_ms: None
                },
                None
            )
        );
        // A signed record is another record; the unsigned digest stays.
        let signature = crate::policy::signing::PolicySignature {
            format: 1,
            policy: "p".into(),
            sha256: "aa".into(),
            signer: "ops".into(),
            public_key: String::new(),
            ed25519: "c2ln".into(),
        };
        assert_ne!(a, policy_digest("aa", b"\x80", &none, Some(&signature)));
    }
}
