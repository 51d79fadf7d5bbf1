//! Following etcd: read everything, then watch, and apply each change
//! through [`Control`] in a fixed order (topology, policies, routing,
//! drained servers), so that a routing change never refers to a policy
//! this node has not loaded.

use super::cache::DiskCopy;
use super::etcd::{EtcdError, Event, KeyValue};
use super::layout::{BlobRef, PolicyRecord, RoutingRecord, TopologyRecord};
use super::{Cluster, Refusal};
use crate::control::{Change, Control, RoutingChange, one_line};
use crate::policy::PolicySource;
use base64::Engine as _;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// First wait after a failure; doubled up to [`BACKOFF_MAX`].
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(3);

/// The follower's own state (one per node, on the follow thread).
#[derive(Default)]
pub struct Follower {
    kvs: BTreeMap<String, KeyValue>,
    /// Highest revision applied.
    revision: i64,
    /// The etcd cluster those revisions are of (0: unknown).
    cluster_id: u64,
    /// Mod revision of the topology record last applied or refused.
    topology_rev: i64,
    /// The `seq` of that record, and of the last change record applied.
    topology_base_seq: u64,
    topology_seq: u64,
    /// The topology record's blob (for the disk copy): SHA-256 and bytes.
    topology_blob: Option<(String, Bytes)>,
    /// Mod revision of the routing record last applied or refused.
    routing_rev: i64,
    /// Policy key → mod revision last loaded or refused.
    policy_revs: HashMap<String, i64>,
    /// Policy digest → local version.
    policies: HashMap<String, u64>,
    /// Components of the policies loaded from etcd, by SHA-256 (kept for
    /// the disk copy).
    wasm: HashMap<String, Bytes>,
    refused: BTreeMap<String, Refusal>,
}

/// Why a blob could not be had.
enum BlobError {
    /// etcd could not be asked: try again later.
    Unavailable(EtcdError),
    /// The blob is missing or does not match its reference: refuse.
    Bad(String),
}

impl Follower {
    /// Applies the disk copy (before the workers start).
    pub async fn restore(&mut self, cluster: &Cluster, control: &Control, copy: DiskCopy) {
        let count = copy.kvs.len();
        self.kvs = copy
            .kvs
            .into_iter()
            .map(|kv| (kv.key.clone(), kv))
            .collect();
        let blobs: HashMap<String, Bytes> = copy.blobs.into_iter().collect();
        match self.apply(cluster, control, Some(&blobs)).await {
            Ok(_) => {
                self.revision = copy.revision;
                self.cluster_id = copy.cluster_id;
                self.publish(cluster, "disk copy");
                cluster.has_config.store(true, Ordering::Relaxed);
                tracing::info!(
                    revision = copy.revision,
                    saved_at = %copy.saved_at,
                    keys = count,
                    "configuration restored from the disk copy"
                );
            }
            Err(e) => tracing::error!("cannot restore the disk copy: {e}"),
        }
    }

    /// Reads, watches and applies, for ever.
    pub async fn run(mut self, cluster: &Cluster, control: &Control) {
        let prefix = cluster.keys.config();
        let mut backoff = BACKOFF_MIN;
        let mut full = self.revision == 0;
        loop {
            if full {
                match cluster.client.range_prefix(&prefix).await {
                    Ok((kvs, revision)) => {
                        self.kvs = kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
                        match self.apply(cluster, control, None).await {
                            Ok(_) => {
                                self.revision = revision;
                                self.cluster_id = cluster.client.cluster_id();
                                full = false;
                                cluster.set_connected(true, Some(cluster.client.member()), None);
                                self.publish(cluster, "etcd");
                                cluster.has_config.store(true, Ordering::Relaxed);
                                // Always: the copy records the revision.
                                self.save(cluster, control);
                            }
                            Err(e) => {
                                cluster.set_connected(false, None, Some(e.to_string()));
                                backoff = wait(backoff).await;
                                continue;
                            }
                        }
                    }
                    Err(e) => {
                        cluster.set_connected(false, None, Some(e.to_string()));
                        backoff = wait(backoff).await;
                        continue;
                    }
                }
            }
            let mut watch = match cluster.client.watch(&prefix, self.revision + 1).await {
                Ok(w) => w,
                Err(EtcdError::Compacted(rev)) => {
                    self.compacted(rev);
                    full = true;
                    continue;
                }
                Err(e) => {
                    cluster.set_connected(false, None, Some(e.to_string()));
                    backoff = wait(backoff).await;
                    continue;
                }
            };
            // A cluster rebuilt from a snapshot (or replaced) has other
            // history: revisions this node saw may be reused for other
            // changes. Read everything again.
            let replaced = self.cluster_id != 0 && watch.cluster_id() != self.cluster_id;
            if replaced || watch.revision() < self.revision {
                tracing::warn!(
                    seen = self.revision,
                    now = watch.revision(),
                    "etcd's history is not the one this node followed (restored from a \
                     snapshot?); reading everything again"
                );
                full = true;
                continue;
            }
            self.cluster_id = watch.cluster_id();
            cluster.set_connected(true, Some(watch.member().to_string()), None);
            backoff = BACKOFF_MIN;
            loop {
                match watch.next().await {
                    Ok(batch) => {
                        let mut highest = self.revision;
                        for event in batch.events {
                            match event {
                                Event::Put(kv) => {
                                    highest = highest.max(kv.mod_revision);
                                    self.kvs.insert(kv.key.clone(), kv);
                                }
                                Event::Delete { key, mod_revision } => {
                                    highest = highest.max(mod_revision);
                                    self.kvs.remove(&key);
                                }
                            }
                        }
                        match self.apply(cluster, control, None).await {
                            Ok(changed) => {
                                self.revision = highest;
                                self.publish(cluster, "etcd");
                                if changed {
                                    self.save(cluster, control);
                                }
                            }
                            Err(e) => {
                                // A blob could not be read: read everything
                                // again once etcd answers.
                                cluster.set_connected(false, None, Some(e.to_string()));
                                full = true;
                                break;
                            }
                        }
                    }
                    Err(EtcdError::Compacted(rev)) => {
                        self.compacted(rev);
                        full = true;
                        break;
                    }
                    Err(e) => {
                        cluster.set_connected(false, None, Some(e.to_string()));
                        break;
                    }
                }
            }
            backoff = wait(backoff).await;
        }
    }

    fn compacted(&self, revision: i64) {
        tracing::warn!(
            compacted = revision,
            seen = self.revision,
            "etcd compacted past the last revision seen; reading everything again"
        );
    }

    /// Makes the node follow `self.kvs`. Returns whether anything was
    /// applied or refused; an error means etcd could not be read (nothing
    /// further is applied, and the same step is tried again later).
    async fn apply(
        &mut self,
        cluster: &Cluster,
        control: &Control,
        cached: Option<&HashMap<String, Bytes>>,
    ) -> Result<bool, EtcdError> {
        let keys = cluster.keys.clone();
        let mut changed = false;

        // 1. The topology.
        if let Some(kv) = self.kvs.get(&keys.topology()).cloned()
            && kv.mod_revision != self.topology_rev
        {
            changed = true;
            let current = control.topology.load().hash.clone();
            match serde_json::from_slice::<TopologyRecord>(&kv.value) {
                Err(e) => self.refuse(cluster, &kv, format!("not a topology record: {e}")),
                // What this node serves already: its own document, or its
                // changes folded in.
                Ok(record)
                    if record.blob.sha256 == current
                        || record.hash.as_deref() == Some(current.as_str()) =>
                {
                    self.topology_base_seq = record.seq;
                    self.topology_seq = record.seq;
                    // Its blob, for the disk copy: the document this node
                    // serves (encoded once here, not at every change).
                    if self
                        .topology_blob
                        .as_ref()
                        .is_none_or(|(h, _)| *h != record.blob.sha256)
                    {
                        let bytes = match cached.and_then(|c| c.get(&record.blob.sha256)) {
                            Some(bytes) => bytes.clone(),
                            None => control.topology.load().source().clone(),
                        };
                        self.topology_blob = Some((record.blob.sha256.clone(), bytes));
                    }
                }
                Ok(record) => match self.blob(cluster, &record.blob, cached).await {
                    Err(BlobError::Unavailable(e)) => return Err(e),
                    Err(BlobError::Bad(m)) => self.refuse(cluster, &kv, m),
                    Ok(bytes) => {
                        let who = who(&kv, &record.written_by);
                        // At the record's etcd revision: every node gives
                        // the entities the same revisions.
                        let revision = Some(kv.mod_revision.max(0) as u64);
                        match control.replace_topology_at(bytes.clone(), &who, revision) {
                            Err(e) => self.refuse(cluster, &kv, one_line(&e.to_string())),
                            Ok(t) => {
                                // Folded changes keep the hash they had.
                                if let Some(hash) = &record.hash
                                    && record.seq > 0
                                {
                                    control.topology.rehash(&t, hash);
                                }
                                self.refused.remove(&kv.key);
                                self.topology_blob = Some((record.blob.sha256.clone(), bytes));
                            }
                        }
                        self.topology_base_seq = record.seq;
                        self.topology_seq = record.seq;
                    }
                },
            }
            self.topology_rev = kv.mod_revision;
        }

        // 1b. Entity changes since, in order.
        let prefix = keys.changes();
        let pending: Vec<(u64, KeyValue)> = self
            .kvs
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, kv)| Some((k[prefix.len()..].parse::<u64>().ok()?, kv.clone())))
            .filter(|(seq, _)| *seq > self.topology_seq)
            .collect();
        for (seq, kv) in pending {
            changed = true;
            match serde_json::from_slice::<super::layout::ChangeRecord>(&kv.value) {
                Err(e) => self.refuse(cluster, &kv, format!("not a change record: {e}")),
                Ok(record) if seq != self.topology_seq + 1 || record.seq != seq => {
                    self.refuse(
                        cluster,
                        &kv,
                        format!(
                            "change {seq} does not follow change {} (record says {})",
                            self.topology_seq, record.seq
                        ),
                    );
                }
                Ok(record) => {
                    let who = who(&kv, &record.written_by);
                    let revision = Some(kv.mod_revision.max(0) as u64);
                    match control.edit_topology(&record.edits, &who, revision) {
                        Ok(_) => {
                            self.refused.remove(&kv.key);
                        }
                        Err(e) => self.refuse(cluster, &kv, one_line(&e.to_string())),
                    }
                }
            }
            self.topology_seq = seq;
        }

        // 2. Policies not loaded yet.
        let records: Vec<KeyValue> = self
            .kvs
            .range(keys.policies()..)
            .take_while(|(k, _)| k.starts_with(&keys.policies()))
            .map(|(_, kv)| kv.clone())
            .collect();
        for kv in records {
            if self.policy_revs.get(&kv.key) == Some(&kv.mod_revision) {
                continue;
            }
            changed = true;
            let digest = kv.key[keys.policies().len()..].to_string();
            match self
                .load_policy(cluster, control, &kv, &digest, cached)
                .await
            {
                Err(BlobError::Unavailable(e)) => return Err(e),
                Err(BlobError::Bad(m)) => self.refuse(cluster, &kv, m),
                Ok(()) => {
                    self.refused.remove(&kv.key);
                }
            }
            self.policy_revs.insert(kv.key.clone(), kv.mod_revision);
        }

        // 3. Which policies serve.
        if let Some(kv) = self.kvs.get(&keys.routing()).cloned()
            && kv.mod_revision != self.routing_rev
        {
            changed = true;
            match serde_json::from_slice::<RoutingRecord>(&kv.value)
                .map_err(|e| format!("not a routing record: {e}"))
                .and_then(|record| self.route(control, &keys, &kv, &record))
            {
                Ok(()) => {
                    self.refused.remove(&kv.key);
                }
                Err(m) => self.refuse(cluster, &kv, m),
            }
            self.routing_rev = kv.mod_revision;
        }

        // 4. Drained servers (cheap and idempotent: always).
        let drained: BTreeSet<String> = self
            .kvs
            .range(keys.drained()..)
            .take_while(|(k, _)| k.starts_with(&keys.drained()))
            .map(|(k, _)| k[keys.drained().len()..].to_string())
            .collect();
        if control.apply_drained(&drained, "etcd") > 0 {
            changed = true;
        }
        Ok(changed)
    }

    async fn load_policy(
        &mut self,
        cluster: &Cluster,
        control: &Control,
        kv: &KeyValue,
        digest: &str,
        cached: Option<&HashMap<String, Bytes>>,
    ) -> Result<(), BlobError> {
        let record: PolicyRecord = serde_json::from_slice(&kv.value)
            .map_err(|e| BlobError::Bad(format!("not a policy record: {e}")))?;
        let config = base64::engine::general_purpose::STANDARD
            .decode(&record.config_base64)
            .map_err(|e| BlobError::Bad(format!("config_base64: {e}")))?;
        if super::layout::policy_digest(
            &record.wasm.sha256,
            &config,
            &record.limits,
            record.signature.as_ref(),
        ) != digest
        {
            return Err(BlobError::Bad(format!(
                "the record's component and configuration do not have digest {digest}"
            )));
        }
        let wasm = self.blob(cluster, &record.wasm, cached).await?;
        let source = PolicySource {
            name: record.name.clone(),
            wasm: wasm.to_vec(),
            config,
            limits: record.limits,
            signature: record.signature.clone().map(Box::new),
        };
        let version = kv.create_revision.max(1) as u64;
        control
            .load_policy_as(source, version, &who(kv, &record.written_by))
            .map_err(|e| BlobError::Bad(one_line(&e.to_string())))?;
        self.policies.insert(digest.to_string(), version);
        self.wasm.insert(record.wasm.sha256.clone(), wasm);
        Ok(())
    }

    /// Applies a routing record, or refuses it whole.
    fn route(
        &self,
        control: &Control,
        keys: &super::layout::Keys,
        kv: &KeyValue,
        record: &RoutingRecord,
    ) -> Result<(), String> {
        let resolve = |digest: &str| -> Result<u64, String> {
            self.policies.get(digest).copied().ok_or_else(|| {
                let why = self
                    .refused
                    .get(&keys.policy(digest))
                    .map(|r| format!(": {}", r.error))
                    .unwrap_or_default();
                format!("policy {digest} is not loaded on this node{why}")
            })
        };
        let active = record.active.as_deref().map(resolve).transpose()?;
        let canary = match &record.canary {
            Some(c) => Some((resolve(&c.policy)?, c.percent)),
            None => None,
        };
        let shadow = match &record.shadow {
            Some(s) => Some((resolve(&s.policy)?, s.sample_percent)),
            None => None,
        };
        let who = who(kv, &record.written_by);
        let routing = control.policies.routing();
        let current_canary = routing
            .canary
            .as_ref()
            .map(|c| (c.policy.version, u32::from(c.percent)));
        let current_shadow = routing
            .shadow
            .as_ref()
            .map(|s| (s.policy.version, u32::from(s.sample_percent)));
        let current_active = routing.active.version;
        drop(routing);
        // The record as the changes that lead here, applied through the
        // same door as a single node's.
        let apply = |change| {
            control
                .apply(Change::Routing(change), &who)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        if let Some(v) = active
            && v != current_active
        {
            apply(RoutingChange::Activate(v))?;
        }
        if canary != current_canary {
            match canary {
                Some((v, p)) => apply(RoutingChange::SetCanary(v, p))?,
                // Promoted (the activation above ended it) or aborted.
                None if control.policies.routing().canary.is_some() => {
                    apply(RoutingChange::AbortCanary)?
                }
                None => {}
            }
        }
        if shadow != current_shadow {
            match shadow {
                Some((v, p)) => apply(RoutingChange::SetShadow(v, p))?,
                None => apply(RoutingChange::ClearShadow)?,
            }
        }
        Ok(())
    }

    async fn blob(
        &self,
        cluster: &Cluster,
        blob: &BlobRef,
        cached: Option<&HashMap<String, Bytes>>,
    ) -> Result<Bytes, BlobError> {
        if let Some(bytes) = self.wasm.get(&blob.sha256) {
            return Ok(bytes.clone());
        }
        if let Some(cached) = cached {
            return cached.get(&blob.sha256).cloned().ok_or_else(|| {
                BlobError::Bad(format!("blob {} is not in the disk copy", blob.sha256))
            });
        }
        super::write::read_blob(&cluster.client, &cluster.keys, blob)
            .await
            .map(Bytes::from)
            .map_err(|e| match e {
                super::write::ReadError::Etcd(e) => BlobError::Unavailable(e),
                super::write::ReadError::Bad(m) => BlobError::Bad(m),
            })
    }

    fn refuse(&mut self, cluster: &Cluster, kv: &KeyValue, error: String) {
        tracing::error!(
            target: "audit",
            key = %kv.key,
            revision = kv.mod_revision,
            "change from etcd refused on this node, keeping the current configuration: {error}"
        );
        cluster.refusals.fetch_add(1, Ordering::Relaxed);
        self.refused.insert(
            kv.key.clone(),
            Refusal {
                key: kv.key.clone(),
                revision: kv.mod_revision,
                error,
                at: crate::time::now_rfc3339(),
            },
        );
    }

    /// Shows the applied state to writers and `/status`, and wakes writers
    /// waiting for their revision.
    fn publish(&self, cluster: &Cluster, source: &'static str) {
        {
            let mut s = cluster.lock();
            s.kvs = self.kvs.clone();
            s.revision = self.revision;
            s.policies = self.policies.clone();
            s.refused = self.refused.clone();
            s.source = source;
            s.topology_seq = self.topology_seq;
            s.topology_base_seq = self.topology_base_seq;
        }
        cluster.applied.send_replace(self.revision);
    }

    /// Writes the disk copy (failures are logged; serving goes on).
    fn save(&self, cluster: &Cluster, control: &Control) {
        let Some(path) = &cluster.cache_file else {
            return;
        };
        let topology = control.topology.snapshot();
        let mut blobs: Vec<(String, Bytes)> = self
            .wasm
            .iter()
            .map(|(h, b)| (h.clone(), b.clone()))
            .collect();
        // The topology record's blob (the change records since are keys);
        // a node with none serves a document of no record.
        match &self.topology_blob {
            Some((hash, bytes)) => blobs.push((hash.clone(), bytes.clone())),
            None if !topology.hash.is_empty() && self.topology_seq == 0 => {
                blobs.push((topology.hash.clone(), topology.source().clone()))
            }
            None => {}
        }
        let copy = DiskCopy {
            prefix: cluster.keys.prefix().to_string(),
            revision: self.revision,
            cluster_id: self.cluster_id,
            saved_at: crate::time::now_rfc3339(),
            kvs: self.kvs.values().cloned().collect(),
            blobs,
        };
        if let Err(e) = super::cache::save(path, &copy) {
            tracing::error!(
                "cannot write the disk copy of the configuration to {}: {e}",
                path.display()
            );
        }
    }
}

fn who(kv: &KeyValue, written_by: &str) -> String {
    format!("etcd rev {} ({written_by})", kv.mod_revision)
}

/// Sleeps `backoff` (with jitter) and returns the next one.
pub(super) async fn wait(backoff: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let jitter = nanos % (backoff.as_millis() as u64 / 2 + 1);
    tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
    (backoff * 2).min(BACKOFF_MAX)
}
