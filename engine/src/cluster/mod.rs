//! Many nodes, one configuration: etcd as the source of truth.
//!
//! With `--etcd`, a node follows the configuration kept in etcd (topology,
//! policies, which policy serves, drained servers; see [`layout`]):
//!
//! - **Following** ([`follow`]): at start the node reads everything under
//!   `{prefix}/config/`, then watches it. Every change goes through
//!   [`crate::control::Control`], the same validation as a local reload; a
//!   change this node refuses is logged, counted and shown in `/status`,
//!   and the node keeps what it served.
//! - **Writing** ([`write`]): the admin API of any node validates a change
//!   first, then writes it in an etcd transaction that compares the
//!   revision the change was based on, so two operators cannot overwrite
//!   each other silently; the loser gets a conflict.
//! - **etcd away**: nodes keep serving their last good configuration, retry
//!   with backoff, report it (`/status`, `edgeward_etcd_connected`), and
//!   resume the watch from the last revision they saw (or read everything
//!   again after a compaction). Each node keeps the last good configuration
//!   on disk ([`cache`]) so that a node restarted while etcd is down still
//!   serves it.

pub mod access;
pub mod cache;
pub mod etcd;
pub mod follow;
pub mod health;
pub mod layout;
pub mod lead;
pub mod write;

pub use write::EtcdWriter;

use crate::control::Control;
use crate::control::audit::AuditEntry;
use etcd::{EtcdClient, EtcdConfig, KeyValue};
use layout::Keys;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// TLS settings for etcd: the Mozilla roots plus `ca` (PEM), and a client
/// certificate and key (PEM) when given.
pub fn tls_config(
    ca: Option<&std::path::Path>,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca {
        let err = |e: &dyn std::fmt::Display| format!("CA file {}: {e}", path.display());
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(&e))? {
            roots.add(cert.map_err(|e| err(&e))?).map_err(|e| err(&e))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("etcd client certificate {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("etcd client key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("etcd client certificate: {e}"))?
        }
    };
    Ok(Arc::new(config))
}

/// How a node joins the fleet.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// How to reach etcd.
    pub etcd: EtcdConfig,
    /// Key prefix, e.g. `/edgeward`.
    pub prefix: String,
    /// This node's name, in records it writes and in logs.
    pub node: String,
    /// Where the last good configuration is kept on disk (none: not kept).
    pub cache_file: Option<PathBuf>,
    /// Topology change records after which they are folded into a new
    /// topology record.
    pub fold_after: u64,
    /// How long audit records are kept in etcd.
    pub audit_retention: Duration,
}

/// A node's link to the shared configuration.
pub struct Cluster {
    client: EtcdClient,
    keys: Keys,
    node: String,
    cache_file: Option<PathBuf>,
    fold_after: u64,
    audit_retention: Duration,
    /// Whether this node is folding the topology's change records.
    folding: AtomicBool,
    /// What the follower last applied, for writers and `/status`.
    shared: std::sync::Mutex<Shared>,
    /// Highest etcd revision applied on this node.
    applied: tokio::sync::watch::Sender<i64>,
    /// Whether this node has a configuration from etcd or its disk copy.
    has_config: AtomicBool,
    reconnects: AtomicU64,
    refusals: AtomicU64,
}

/// The follower's view, as writers and `/status` see it.
#[derive(Debug, Default, Clone)]
struct Shared {
    /// Every configuration key, as last applied.
    kvs: BTreeMap<String, KeyValue>,
    /// Highest revision applied.
    revision: i64,
    /// Policy digest → local version (the policy record's create revision).
    policies: HashMap<String, u64>,
    /// Changes this node refused, by key.
    refused: BTreeMap<String, Refusal>,
    connected: bool,
    member: Option<String>,
    since: Option<SystemTime>,
    last_error: Option<String>,
    /// The last topology change record applied (or folded into the
    /// topology record applied).
    topology_seq: u64,
    /// The `seq` of the topology record applied.
    topology_base_seq: u64,
    source: &'static str,
}

/// A change this node refused.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// The key.
    pub key: String,
    /// Its revision.
    pub revision: i64,
    /// Why.
    pub error: String,
    /// When, RFC 3339.
    pub at: String,
}

impl Cluster {
    /// Sets the link up (no etcd call yet).
    pub fn new(config: ClusterConfig) -> Result<Arc<Self>, String> {
        let client = EtcdClient::new(config.etcd)?;
        Ok(Arc::new(Cluster {
            client,
            keys: Keys::new(&config.prefix),
            node: config.node,
            cache_file: config.cache_file,
            fold_after: config.fold_after.max(1),
            audit_retention: config.audit_retention,
            folding: AtomicBool::new(false),
            shared: std::sync::Mutex::new(Shared {
                source: "none",
                ..Default::default()
            }),
            applied: tokio::sync::watch::channel(0).0,
            has_config: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        }))
    }

    /// Restores the disk copy (if there is one), then follows etcd on a
    /// thread of its own. Returns whether a disk copy was applied.
    pub fn start(self: &Arc<Self>, control: &Arc<Control>) -> std::io::Result<bool> {
        let mut follower = follow::Follower::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let restored = match self.cache_file.as_deref().map(cache::load) {
            None | Some(Ok(None)) => false,
            Some(Ok(Some(copy))) if copy.prefix != self.keys.prefix() => {
                tracing::warn!(
                    "ignoring the disk copy of the configuration: it is of prefix {:?}, not {:?}",
                    copy.prefix,
                    self.keys.prefix()
                );
                false
            }
            Some(Ok(Some(copy))) => {
                runtime.block_on(follower.restore(self, control, copy));
                true
            }
            Some(Err(e)) => {
                tracing::error!("cannot use the disk copy of the configuration: {e}");
                false
            }
        };
        let cluster = self.clone();
        let control = control.clone();
        std::thread::Builder::new()
            .name("etcd-follow".into())
            .spawn(move || {
                runtime.block_on(async {
                    tokio::spawn(cluster.clone().prune_audit_hourly());
                    follower.run(&cluster, &control).await
                })
            })?;
        Ok(restored)
    }

    /// Writes audit entries of a change made outside the configuration's
    /// own records (an account, a token): a record of their own.
    pub async fn record_audit(&self, entries: Vec<AuditEntry>) -> Result<(), etcd::EtcdError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let random: [u8; 6] = crate::access::random_bytes();
        let what = format!(
            "a{}",
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let key = self.keys.audit_record(first.time_ms, &what);
        self.client
            .put(&key, &write::audit_value(entries))
            .await
            .map(|_| ())
    }

    /// The audit entries written to etcd since `since_ms` (milliseconds
    /// since the epoch), oldest first, at most `limit`; each entry's
    /// revision is its record's.
    pub async fn audit_since(
        &self,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, etcd::EtcdError> {
        let prefix = self.keys.audit();
        let end = String::from_utf8(etcd::prefix_end(prefix.as_bytes())).expect("an ASCII key");
        let records = self
            .client
            .range(&format!("{prefix}{since_ms:016}"), &end, limit)
            .await?;
        let mut out = Vec::new();
        for kv in records {
            match serde_json::from_slice::<Vec<AuditEntry>>(&kv.value) {
                Ok(entries) => out.extend(
                    entries
                        .into_iter()
                        .filter(|e| e.time_ms >= since_ms)
                        .map(|e| AuditEntry {
                            revision: kv.mod_revision.max(0) as u64,
                            ..e
                        }),
                ),
                Err(e) => tracing::warn!(key = %kv.key, "audit record not readable: {e}"),
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// Deletes the audit records older than the retention, now and every
    /// hour (every node does; the deletes are the same).
    async fn prune_audit_hourly(self: Arc<Self>) {
        loop {
            let cutoff = SystemTime::now()
                .checked_sub(self.audit_retention)
                .map_or(0, crate::time::unix_millis);
            let prefix = self.keys.audit();
            if let Err(e) = self
                .client
                .delete_range(&prefix, &format!("{prefix}{cutoff:016}"))
                .await
            {
                tracing::debug!("audit records not pruned: {e}");
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }

    /// Waits until the node has a configuration (from etcd or disk) or
    /// `limit` passes; returns whether it has one.
    pub fn wait_for_config(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while !self.has_config() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.has_config()
    }

    /// Whether the node has a configuration from etcd or its disk copy.
    pub fn has_config(&self) -> bool {
        self.has_config.load(Ordering::Relaxed)
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Mod revision of a configuration key as this node last applied it
    /// (0: absent).
    pub fn revision_of(&self, key: &str) -> i64 {
        self.lock().kvs.get(key).map_or(0, |kv| kv.mod_revision)
    }

    /// Whether the node is connected to etcd now.
    pub fn connected(&self) -> bool {
        self.lock().connected
    }

    /// The link's state, for `/status`.
    pub fn status(&self) -> serde_json::Value {
        let s = self.lock();
        serde_json::json!({
            "endpoints": self.client.endpoints(),
            "prefix": self.keys.prefix(),
            "node": self.node,
            "connected": s.connected,
            "member": s.member,
            "since": s.since.map(crate::time::rfc3339),
            "last_error": s.last_error,
            "configuration_from": s.source,
            "applied_revision": s.revision,
            "revisions": {
                "topology": s.kvs.get(&self.keys.topology()).map(|kv| kv.mod_revision),
                "routing": s.kvs.get(&self.keys.routing()).map(|kv| kv.mod_revision),
            },
            "refused": s.refused.values().collect::<Vec<_>>(),
            "reconnects": self.reconnects.load(Ordering::Relaxed),
            "cache_file": self.cache_file.as_ref().map(|p| p.display().to_string()),
        })
    }

    /// Figures for `/metrics`: connected (0/1), applied revision,
    /// reconnects, refused changes.
    pub fn figures(&self) -> (bool, i64, u64, u64) {
        let s = self.lock();
        (
            s.connected,
            s.revision,
            self.reconnects.load(Ordering::Relaxed),
            self.refusals.load(Ordering::Relaxed),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the connection state.
    fn set_connected(&self, connected: bool, member: Option<String>, error: Option<String>) {
        let mut s = self.lock();
        if s.connected != connected {
            s.since = Some(SystemTime::now());
            if connected {
                tracing::info!(member = member.as_deref().unwrap_or("?"), "etcd connected");
            } else {
                tracing::warn!(
                    error = error.as_deref().unwrap_or(""),
                    "etcd unreachable; serving the last good configuration"
                );
            }
        }
        if !connected && s.connected {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        s.connected = connected;
        if connected {
            s.member = member;
        }
        if error.is_some() {
            s.last_error = error;
        }
    }
}
