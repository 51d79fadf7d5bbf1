//! The etcd writer ([`EtcdWriter`]): the door of a node whose configuration
//! lives in etcd. Each change is validated on this node first (the same
//! checks a local change passes), then written in one etcd transaction that
//! compares the revision the change was based on: the caller's `If-Match`,
//! else the revision this node last applied. A transaction that finds the
//! key changed meanwhile writes nothing and reports a
//! [`ChangeError::Conflict`]. After a successful write the node waits
//! (briefly) until its own follower has applied the new revision, so the
//! answer shows the new state.
//!
//! An automatic rollback is a compare-and-swap too, off the request path:
//! the first node to see a version fail rolls the fleet back, the others'
//! writes find the routing changed and stop there.

use super::Cluster;
use super::etcd::{Compare, EtcdClient, EtcdError, Op};
use super::layout::{
    self, BlobRef, CHUNK, CanaryRecord, ChangeRecord, DrainRecord, Keys, PolicyRecord,
    RoutingRecord, ShadowRecord, TopologyRecord,
};
use crate::control::audit::AuditEntry;
use crate::control::{
    Change, ChangeError, Changed, Control, Outcome, RoutingChange, Writer, Writing,
};
use crate::policy::{PolicySource, RoutingError};
use crate::routing::acceptance::SampleResult;
use base64::Engine as _;
use std::sync::Arc;
use std::time::Duration;

/// How long a write waits for this node to apply it.
const APPLY_WAIT: Duration = Duration::from_secs(5);
/// Policy records kept in etcd (the oldest unused ones are deleted).
const POLICIES_KEPT: usize = 16;

impl From<EtcdError> for ChangeError {
    fn from(e: EtcdError) -> Self {
        match e {
            EtcdError::Refused(_) => ChangeError::Refused(e.to_string()),
            _ => ChangeError::Unavailable(e.to_string()),
        }
    }
}

/// What a successful write returns.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// The etcd revision of the change.
    pub revision: i64,
    /// Whether this node applied it before answering.
    pub applied: bool,
}

/// Why a blob could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// etcd could not be asked.
    Etcd(EtcdError),
    /// The blob is missing or damaged.
    Bad(String),
}

/// Reads and checks a blob.
pub async fn read_blob(
    client: &EtcdClient,
    keys: &Keys,
    blob: &BlobRef,
) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::with_capacity(blob.size.min(1 << 30) as usize);
    for i in 0..blob.chunks {
        let (kv, _) = client
            .get(&keys.chunk(&blob.sha256, i))
            .await
            .map_err(ReadError::Etcd)?;
        let kv =
            kv.ok_or_else(|| ReadError::Bad(format!("blob {} lacks chunk {i}", blob.sha256)))?;
        bytes.extend_from_slice(&kv.value);
    }
    if bytes.len() as u64 != blob.size || crate::sha256_hex(&bytes) != blob.sha256 {
        return Err(ReadError::Bad(format!(
            "blob {} is damaged (size {} instead of {})",
            blob.sha256,
            bytes.len(),
            blob.size
        )));
    }
    Ok(bytes)
}

/// Stores `bytes` as a blob (unless it is already there).
async fn write_blob(client: &EtcdClient, keys: &Keys, bytes: &[u8]) -> Result<BlobRef, EtcdError> {
    let blob = BlobRef::of(bytes);
    // Chunks are written in order, so the last one present means all are.
    let (last, _) = client
        .get(&keys.chunk(&blob.sha256, blob.chunks - 1))
        .await?;
    if last.is_some() {
        return Ok(blob);
    }
    if bytes.is_empty() {
        client.put(&keys.chunk(&blob.sha256, 0), b"").await?;
    }
    for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
        client
            .put(&keys.chunk(&blob.sha256, i as u32), chunk)
            .await?;
    }
    Ok(blob)
}

impl Cluster {
    fn written_by(&self, who: &str) -> String {
        format!("{who} via {}", self.node)
    }

    /// Waits until this node has applied `revision`.
    async fn settle(&self, revision: i64) -> Written {
        let mut applied = self.applied.subscribe();
        let done = tokio::time::timeout(APPLY_WAIT, applied.wait_for(|r| *r >= revision)).await;
        Written {
            revision,
            applied: matches!(done, Ok(Ok(_))),
        }
    }

    /// Why a transaction on `key` based on `based_on` failed.
    async fn conflict(&self, what: &'static str, key: &str, based_on: i64) -> ChangeError {
        let current = match self.client.get(key).await {
            Ok((kv, _)) => kv.map_or(0, |kv| kv.mod_revision),
            Err(e) => return e.into(),
        };
        ChangeError::Conflict {
            what,
            based_on,
            current,
        }
    }

    /// Validates a topology, stores it and points the topology record at
    /// it (the entity changes since the last record go with it).
    pub async fn push_topology(
        &self,
        control: &Control,
        bytes: bytes::Bytes,
        if_match: Option<i64>,
        who: &str,
    ) -> Result<(Written, String, String), ChangeError> {
        let checked = control.check_topology(bytes)?;
        let key = self.keys.topology();
        let based_on = if_match.unwrap_or_else(|| self.revision_of(&key));
        let applied = self.lock().topology_seq;
        let (w, record) = self
            .write_topology(&checked, based_on, applied, 0, None, who, Audited::Topology)
            .await?;
        Ok((w, record.blob.sha256, record.summary))
    }

    /// Writes `topology` as the topology record, if the record is still at
    /// `based_on` and no entity change came after change `after` (the last
    /// one `topology` knows of); the change records go (they are in it, or
    /// replaced by it).
    #[allow(clippy::too_many_arguments)]
    async fn write_topology(
        &self,
        topology: &crate::topology::Topology,
        based_on: i64,
        after: u64,
        seq: u64,
        hash: Option<String>,
        who: &str,
        audited: Audited,
    ) -> Result<(Written, TopologyRecord), ChangeError> {
        let key = self.keys.topology();
        let next_change = self.keys.change(after + 1);
        let blob = write_blob(&self.client, &self.keys, topology.source()).await?;
        let record = TopologyRecord {
            blob: blob.clone(),
            summary: topology.summary(),
            written_by: self.written_by(who),
            written_at: crate::time::now_rfc3339(),
            seq,
            hash,
        };
        let mut ops = vec![
            Op::Put(key.clone(), json(&record)),
            Op::DeletePrefix(self.keys.changes()),
        ];
        // The blob the old record pointed at goes with it.
        let (old, _) = self.client.get(&key).await?;
        if let Some(old) = old
            && let Ok(old) = serde_json::from_slice::<TopologyRecord>(&old.value)
            && old.blob.sha256 != blob.sha256
        {
            ops.push(Op::DeletePrefix(self.keys.blob(&old.blob.sha256)));
        }
        let entries = match audited {
            Audited::Topology => vec![AuditEntry::topology(&self.written_by(who), 0, &blob.sha256)],
            Audited::Entities(entries) => entries,
            Audited::Not => Vec::new(),
        };
        if !entries.is_empty() {
            ops.push(self.audit_op(entries, &format!("t{after:020}")));
        }
        let result = self
            .client
            .txn(
                &[
                    Compare::ModRevision(key.clone(), based_on),
                    Compare::ModRevision(next_change, 0),
                ],
                &ops,
            )
            .await?;
        if !result.succeeded {
            return Err(self.conflict("the topology", &key, based_on).await);
        }
        tracing::info!(target: "audit", who, revision = result.revision, hash = %blob.sha256, seq, "topology written to etcd");
        Ok((self.settle(result.revision).await, record))
    }

    /// Writes entity changes, checked against this node's snapshot, as the
    /// next change record: only if no change was written after the last
    /// one this node applied (else a conflict). A batch too large for one
    /// etcd request is written as the whole document instead.
    pub async fn push_changes(
        &self,
        control: &Control,
        edits: Vec<crate::topology::edit::Edit>,
        who: &str,
    ) -> Result<(Written, Vec<crate::topology::edit::Applied>, bool), ChangeError> {
        // What the change follows, read before the snapshot it is checked
        // against: a change applied in between makes the write conflict
        // (its key exists), never one checked against another state.
        let topology_key = self.keys.topology();
        let topology_rev = self.revision_of(&topology_key);
        let seq = self.lock().topology_seq + 1;
        let base = control.topology.snapshot();
        let edited =
            crate::topology::edit::apply(&base, &edits, base.version, base.revision() + 1)?;
        // Revision 0: what an audit record in etcd was written at is its
        // key's revision, filled in when it is read.
        let audit: Vec<AuditEntry> = edited
            .applied
            .iter()
            .map(|a| AuditEntry::entity(&self.written_by(who), a, 0))
            .collect();
        let record = ChangeRecord {
            seq,
            edits,
            written_by: self.written_by(who),
            written_at: crate::time::now_rfc3339(),
        };
        let value = json(&record);
        if value.len() > layout::MAX_CHANGE {
            let (w, _) = self
                .write_topology(
                    &edited.topology,
                    topology_rev,
                    seq - 1,
                    0,
                    None,
                    who,
                    Audited::Entities(audit),
                )
                .await?;
            return Ok((w, edited.applied, false));
        }
        let key = self.keys.change(seq);
        let mut ops = vec![Op::Put(key.clone(), value)];
        if !audit.is_empty() {
            ops.push(self.audit_op(audit, &format!("c{seq:020}")));
        }
        let result = self
            .client
            .txn(
                &[
                    Compare::ModRevision(topology_key.clone(), topology_rev),
                    Compare::ModRevision(key.clone(), 0),
                ],
                &ops,
            )
            .await?;
        if !result.succeeded {
            return Err(self.conflict("the topology", &key, 0).await);
        }
        tracing::info!(target: "audit", who, revision = result.revision, seq, "entity change written to etcd");
        let written = self.settle(result.revision).await;
        let folded_since = self.lock().topology_base_seq;
        let fold = written.applied && seq - folded_since >= self.fold_after;
        Ok((written, edited.applied, fold))
    }

    /// The put of an audit record (see [`audit_value`]).
    fn audit_op(&self, entries: Vec<AuditEntry>, what: &str) -> Op {
        let time_ms = entries.first().map_or(0, |e| e.time_ms);
        Op::Put(self.keys.audit_record(time_ms, what), audit_value(entries))
    }

    /// Writes the topology this node serves whole, with the change
    /// records it has applied folded in; one fold at a time (a conflict
    /// means another node changed it first: a later change folds).
    pub async fn fold_changes(&self, control: &Control) {
        use std::sync::atomic::Ordering;
        if self.folding.swap(true, Ordering::AcqRel) {
            return;
        }
        // The change the snapshot is at: the one applied at its revision.
        let t = control.topology.snapshot();
        let topology_rev = self.revision_of(&self.keys.topology());
        let prefix = self.keys.changes();
        let seq = self.lock().kvs.iter().find_map(|(k, kv)| {
            let seq = k.strip_prefix(&prefix)?.parse::<u64>().ok()?;
            (kv.mod_revision.max(0) as u64 == t.revision()).then_some(seq)
        });
        if let Some(seq) = seq {
            match self
                .write_topology(
                    &t,
                    topology_rev,
                    seq,
                    seq,
                    Some(t.hash.clone()),
                    "compaction",
                    Audited::Not,
                )
                .await
            {
                Ok((w, _)) => tracing::info!(
                    revision = w.revision,
                    seq,
                    "topology changes folded into a new topology record"
                ),
                Err(e) => tracing::info!("topology changes not folded: {e}"),
            }
        }
        self.folding.store(false, Ordering::Release);
    }

    /// Checks a policy, stores it, and (if asked) makes it the active one.
    /// Returns the write and the policy's version (its record's revision).
    pub async fn push_policy(
        &self,
        control: &Control,
        source: PolicySource,
        activate: bool,
        who: &str,
    ) -> Result<(Written, u64, String, Vec<SampleResult>), ChangeError> {
        let (checked, samples) = control.check_policy(source.clone())?;
        let digest = layout::policy_digest(
            &checked.hash,
            &source.config,
            &source.limits,
            source.signature.as_deref(),
        );
        let key = self.keys.policy(&digest);
        let wasm = write_blob(&self.client, &self.keys, &source.wasm).await?;
        let record = PolicyRecord {
            name: checked.name.clone(),
            wasm,
            config_base64: base64::engine::general_purpose::STANDARD.encode(&source.config),
            limits: source.limits,
            signature: source.signature.as_deref().cloned(),
            written_by: self.written_by(who),
            written_at: crate::time::now_rfc3339(),
        };
        let (existing, _) = self.client.get(&key).await?;
        let mut compare = Vec::new();
        let mut ops = Vec::new();
        if existing.is_none() {
            compare.push(Compare::ModRevision(key.clone(), 0));
            ops.push(Op::Put(key.clone(), json(&record)));
            ops.extend(self.forget_old_policies(&digest));
        }
        let routing_key = self.keys.routing();
        let routing_based_on = self.revision_of(&routing_key);
        if activate {
            let mut routing = self.routing_record();
            if routing.active.as_deref() != Some(&digest) {
                make_active(&mut routing, &digest);
                routing.written_by = self.written_by(who);
                routing.written_at = crate::time::now_rfc3339();
                compare.push(Compare::ModRevision(routing_key.clone(), routing_based_on));
                ops.push(Op::Put(routing_key.clone(), json(&routing)));
            }
        }
        let revision = if ops.is_empty() {
            self.lock().revision
        } else {
            let result = self.client.txn(&compare, &ops).await?;
            if result.succeeded {
                result.revision
            } else if activate {
                return Err(self
                    .conflict("the routing", &routing_key, routing_based_on)
                    .await);
            } else {
                // Only the record's absence was compared: the same policy
                // (same component, same configuration) was uploaded
                // meanwhile, which is what this write wanted.
                self.client.get(&key).await?.1
            }
        };
        tracing::info!(target: "audit", who, policy = %checked.name, digest, activate, revision, "policy written to etcd");
        let written = self.settle(revision).await;
        let version = self
            .lock()
            .policies
            .get(&digest)
            .copied()
            .or(existing.map(|kv| kv.create_revision as u64))
            .unwrap_or(revision as u64);
        Ok((written, version, digest, samples))
    }

    /// Deletions that keep at most [`POLICIES_KEPT`] policy records: the
    /// oldest ones the routing record does not use.
    fn forget_old_policies(&self, adding: &str) -> Vec<Op> {
        let s = self.lock();
        let prefix = self.keys.policies();
        let routing = s
            .kvs
            .get(&self.keys.routing())
            .and_then(|kv| serde_json::from_slice::<RoutingRecord>(&kv.value).ok())
            .unwrap_or_default();
        let used = |d: &str| {
            d == adding
                || routing.active.as_deref() == Some(d)
                || routing.history.iter().any(|h| h == d)
                || routing.canary.as_ref().is_some_and(|c| c.policy == d)
                || routing.shadow.as_ref().is_some_and(|c| c.policy == d)
        };
        let mut records: Vec<(i64, String, Option<String>)> = s
            .kvs
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, kv)| {
                let blob = serde_json::from_slice::<PolicyRecord>(&kv.value)
                    .ok()
                    .map(|r| r.wasm.sha256);
                (kv.create_revision, k[prefix.len()..].to_string(), blob)
            })
            .collect();
        records.sort();
        let mut excess = (records.len() + 1).saturating_sub(POLICIES_KEPT);
        let mut ops = Vec::new();
        for (_, digest, blob) in records {
            if excess == 0 {
                break;
            }
            if used(&digest) {
                continue;
            }
            ops.push(Op::Delete(self.keys.policy(&digest)));
            // Blobs are shared by records with the same component; a blob
            // still referenced stays (it is re-checked on read anyway).
            if let Some(blob) = blob
                && !s.kvs.iter().any(|(k, kv)| {
                    k.starts_with(&prefix)
                        && !k.ends_with(&digest)
                        && serde_json::from_slice::<PolicyRecord>(&kv.value)
                            .is_ok_and(|r| r.wasm.sha256 == blob)
                })
            {
                ops.push(Op::DeletePrefix(self.keys.blob(&blob)));
            }
            excess -= 1;
        }
        ops
    }

    /// The routing record as last applied (or an empty one).
    fn routing_record(&self) -> RoutingRecord {
        self.lock()
            .kvs
            .get(&self.keys.routing())
            .and_then(|kv| serde_json::from_slice(&kv.value).ok())
            .unwrap_or_default()
    }

    /// The digest of a local version, if it came from etcd.
    fn digest_of(&self, version: u64) -> Result<String, ChangeError> {
        let s = self.lock();
        s.policies
            .iter()
            .find(|(_, v)| **v == version)
            .map(|(d, _)| d.clone())
            .ok_or(ChangeError::Routing(RoutingError::UnknownVersion(version)))
    }

    /// Changes the routing record with `change`, in a transaction based on
    /// `if_match` or the revision this node last applied.
    pub async fn change_routing(
        &self,
        change: RoutingChange,
        if_match: Option<i64>,
        who: &str,
        control: &Control,
    ) -> Result<Written, ChangeError> {
        let key = self.keys.routing();
        let based_on = if_match.unwrap_or_else(|| self.revision_of(&key));
        let mut routing = self.routing_record();
        // A version loaded but not from etcd is this node's start policy.
        let digest = |version: u64| -> Result<String, ChangeError> {
            self.digest_of(version)
                .map_err(|e| match control.policies.find(version) {
                    Some(_) => ChangeError::LocalOnly(version),
                    None => e,
                })
        };
        match change {
            RoutingChange::Activate(version) => make_active(&mut routing, &digest(version)?),
            RoutingChange::Rollback => {
                let previous = routing.history.pop().ok_or(RoutingError::NoPrevious)?;
                routing.active = Some(previous);
            }
            RoutingChange::SetCanary(version, percent) => {
                if percent > 100 {
                    return Err(RoutingError::BadPercent(percent).into());
                }
                routing.canary = Some(CanaryRecord {
                    policy: digest(version)?,
                    percent,
                });
            }
            RoutingChange::PromoteCanary => {
                let canary = routing.canary.take().ok_or(RoutingError::NoCanary)?;
                if let Some(old) = routing.active.take() {
                    routing.history.push(old);
                }
                routing.active = Some(canary.policy);
            }
            RoutingChange::AbortCanary => {
                routing.canary.take().ok_or(RoutingError::NoCanary)?;
            }
            RoutingChange::SetShadow(version, percent) => {
                if percent > 100 {
                    return Err(RoutingError::BadPercent(percent).into());
                }
                routing.shadow = Some(ShadowRecord {
                    policy: digest(version)?,
                    sample_percent: percent,
                });
            }
            RoutingChange::ClearShadow => {
                routing.shadow.take().ok_or(RoutingError::NoShadow)?;
            }
            RoutingChange::Automatic { version, .. } => {
                let failing = digest(version)?;
                if routing.canary.as_ref().is_some_and(|c| c.policy == failing) {
                    routing.canary = None;
                } else if routing.active.as_deref() == Some(failing.as_str()) {
                    let previous = routing.history.pop().ok_or(RoutingError::NoPrevious)?;
                    routing.active = Some(previous);
                } else {
                    // Rolled back already (by another node, or an operator).
                    return Err(RoutingError::UnknownVersion(version).into());
                }
            }
        }
        let keep = routing.history.len().saturating_sub(POLICIES_KEPT);
        routing.history.drain(..keep);
        routing.written_by = self.written_by(who);
        routing.written_at = crate::time::now_rfc3339();
        let result = self
            .client
            .txn(
                &[Compare::ModRevision(key.clone(), based_on)],
                &[Op::Put(key.clone(), json(&routing))],
            )
            .await?;
        if !result.succeeded {
            return Err(self.conflict("the routing", &key, based_on).await);
        }
        tracing::info!(target: "audit", who, revision = result.revision, "routing written to etcd: {change:?}");
        Ok(self.settle(result.revision).await)
    }

    /// Drains or undrains a server fleet-wide. Returns the write and
    /// whether anything changed.
    pub async fn set_draining(
        &self,
        control: &Control,
        id: &str,
        draining: bool,
        who: &str,
    ) -> Result<(Written, bool), ChangeError> {
        if control.topology.load().server_index(id).is_none() {
            return Err(ChangeError::UnknownServer(id.to_string()));
        }
        let key = self.keys.drain(id);
        let (existing, _) = self.client.get(&key).await?;
        let revision = match (draining, existing.is_some()) {
            (true, false) => {
                let record = DrainRecord {
                    written_by: self.written_by(who),
                    written_at: crate::time::now_rfc3339(),
                };
                self.client.put(&key, &json(&record)).await?
            }
            (false, true) => self.client.delete(&key).await?,
            _ => {
                let applied = self.lock().revision;
                return Ok((
                    Written {
                        revision: applied,
                        applied: true,
                    },
                    false,
                ));
            }
        };
        tracing::info!(target: "audit", who, server = id, draining, revision, "drain written to etcd");
        Ok((self.settle(revision).await, true))
    }
}

/// Makes `digest` the active policy of `routing`: the one it replaces goes
/// on the history, and a canary of the same policy ends.
fn make_active(routing: &mut RoutingRecord, digest: &str) {
    if routing.active.as_deref() != Some(digest)
        && let Some(old) = routing.active.replace(digest.to_string())
    {
        routing.history.push(old);
    }
    if routing.canary.as_ref().is_some_and(|c| c.policy == digest) {
        routing.canary = None;
    }
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialise")
}

/// The door of a node that follows etcd: see the module's documentation.
pub struct EtcdWriter {
    cluster: Arc<Cluster>,
    control: Arc<Control>,
    /// Failing versions whose rollback this node is writing: one write at a
    /// time per version, however many requests fail meanwhile. A version is
    /// forgotten once its write is done, so one activated again later can be
    /// rolled back again.
    reported: Arc<std::sync::Mutex<std::collections::HashSet<u64>>>,
}

impl EtcdWriter {
    /// The writer of a node following `cluster`, validating with `control`.
    pub fn new(cluster: Arc<Cluster>, control: Arc<Control>) -> Self {
        EtcdWriter {
            cluster,
            control,
            reported: Default::default(),
        }
    }

    async fn write_now(
        &self,
        change: Change,
        based_on: Option<i64>,
        who: &str,
    ) -> Result<Changed, ChangeError> {
        let (cluster, control) = (&*self.cluster, &*self.control);
        let (written, outcome) = match change {
            Change::Entities(edits) => {
                let started = std::time::Instant::now();
                let (w, applied, fold) = cluster.push_changes(control, edits, who).await?;
                let took = started.elapsed();
                if fold {
                    // Off the answer's path: it writes the whole document.
                    let (cluster, control) = (self.cluster.clone(), self.control.clone());
                    tokio::spawn(async move {
                        cluster.fold_changes(&control).await;
                    });
                }
                let version = control.topology.load().version;
                (
                    w,
                    Outcome::Entities {
                        version,
                        revision: w.revision.max(0) as u64,
                        applied,
                        // The answer waits for this node's follower to
                        // serve it (when it does in time).
                        served: took,
                        took,
                        synced: std::time::Duration::ZERO,
                    },
                )
            }
            Change::Topology(bytes) => {
                let (w, hash, summary) =
                    cluster.push_topology(control, bytes, based_on, who).await?;
                let version = control.topology.load().version;
                (
                    w,
                    Outcome::Topology {
                        version,
                        hash,
                        summary,
                    },
                )
            }
            Change::Policy { source, activate } => {
                let name = source.name.clone();
                let limits = source.limits;
                let (w, version, digest, samples) =
                    cluster.push_policy(control, source, activate, who).await?;
                let hash = control.policies.find(version).map(|p| p.hash.clone());
                (
                    w,
                    Outcome::Policy {
                        name,
                        version,
                        hash,
                        digest: Some(digest),
                        activated: activate,
                        limits,
                        samples,
                    },
                )
            }
            Change::Routing(change) => {
                let stopping = match change {
                    RoutingChange::ClearShadow => {
                        control.policies.routing().shadow.as_ref().map(|s| {
                            (
                                s.policy.label(),
                                s.report.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                            )
                        })
                    }
                    _ => None,
                };
                let aborted = match change {
                    RoutingChange::AbortCanary => control
                        .policies
                        .routing()
                        .canary
                        .as_ref()
                        .map(|c| c.policy.label()),
                    _ => None,
                };
                let w = cluster
                    .change_routing(change, based_on, who, control)
                    .await?;
                (
                    w,
                    Outcome::Routing {
                        aborted,
                        stopped_shadow: stopping,
                        unchanged: false,
                    },
                )
            }
            Change::Drain { server, draining } => {
                let (w, changed) = cluster
                    .set_draining(control, &server, draining, who)
                    .await?;
                (
                    w,
                    Outcome::Drain {
                        server,
                        draining,
                        changed,
                    },
                )
            }
        };
        Ok(Changed {
            revision: Some(written.revision),
            applied_here: written.applied,
            outcome,
        })
    }
}

impl Writer for EtcdWriter {
    fn write<'a>(&'a self, change: Change, based_on: Option<i64>, who: &'a str) -> Writing<'a> {
        Box::pin(self.write_now(change, based_on, who))
    }

    fn report_failing(&self, version: u64, failures: u64) {
        if !self
            .reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(version)
        {
            return;
        }
        let (cluster, control) = (self.cluster.clone(), self.control.clone());
        let reported = self.reported.clone();
        let who = crate::control::automatic(&cluster.node);
        // A rare event: a thread of its own keeps the write off the request
        // path and off the follower's loop.
        let spawned = std::thread::Builder::new()
            .name("auto-rollback".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                let change = RoutingChange::Automatic { version, failures };
                match runtime.block_on(cluster.change_routing(change, None, &who, &control)) {
                    Ok(w) => {
                        tracing::error!(
                            version,
                            failures,
                            revision = w.revision,
                            "AUTOMATIC ROLLBACK written to etcd: policy version {version} failed {failures} calls in a row"
                        );
                        if let Some(from) = control.policies.find(version) {
                            control.policies.note_auto_rollback(
                                &from,
                                &control.policies.active(),
                                failures,
                            );
                        }
                    }
                    Err(ChangeError::Conflict { .. } | ChangeError::Routing(_)) => tracing::info!(
                        version,
                        "automatic rollback: the fleet's routing changed meanwhile (another node rolled back first)"
                    ),
                    Err(e) => {
                        // etcd is away: protect this node at least; the
                        // fleet follows once etcd answers again.
                        tracing::error!(version, "automatic rollback could not be written to etcd: {e}; rolling back on this node only");
                        let _ = control.apply(
                            Change::Routing(change),
                            &crate::control::automatic("this node (etcd unreachable)"),
                        );
                    }
                }
                reported
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&version);
            });
        if let Err(e) = spawned {
            tracing::error!(version, "cannot start the automatic rollback: {e}");
        }
    }
}

/// An audit record's value: the entries as a JSON array, their fields
/// changed left out if that is too large, and summed up in one entry if it
/// still is.
pub(super) fn audit_value(mut entries: Vec<AuditEntry>) -> Vec<u8> {
    let mut value = json(&entries);
    if value.len() > layout::MAX_AUDIT {
        for e in &mut entries {
            e.changed = None;
        }
        value = json(&entries);
    }
    if value.len() > layout::MAX_AUDIT {
        let count = entries.len();
        let first = entries.swap_remove(0);
        let summary = AuditEntry {
            action: "batch".into(),
            kind: "entities".into(),
            key: None,
            before: None,
            after: None,
            changed: Some(serde_json::json!({ "changes": count })),
            ..first
        };
        value = json(&[summary]);
    }
    value
}

/// What a topology write puts in the audit trail.
enum Audited {
    /// A whole document, written by someone.
    Topology,
    /// Entity changes (a batch too large for a change record).
    Entities(Vec<AuditEntry>),
    /// Nothing: change records folded in.
    Not,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_record_too_large_loses_its_diffs_then_is_summed_up() {
        let entry = |i: usize, changed: usize| AuditEntry {
            time: "2026-12-01T00:00:00Z".into(),
            time_ms: 1,
            who: "ops via a".into(),
            action: "update".into(),
            kind: "programs".into(),
            key: Some(format!("p{i}")),
            revision: 0,
            before: Some("a".repeat(64)),
            after: Some("b".repeat(64)),
            changed: Some(serde_json::json!({ "name": ["x".repeat(changed), "y"] })),
        };
        let read = |v: Vec<u8>| serde_json::from_slice::<Vec<AuditEntry>>(&v).unwrap();
        let small = read(audit_value((0..3).map(|i| entry(i, 10)).collect()));
        assert_eq!(small.len(), 3);
        assert!(small[0].changed.is_some());
        let diffs_dropped = read(audit_value((0..100).map(|i| entry(i, 5_000)).collect()));
        assert_eq!(diffs_dropped.len(), 100);
        assert!(
            diffs_dropped
                .iter()
                .all(|e| e.changed.is_none() && e.after.is_some())
        );
        let value = audit_value((0..20_000).map(|i| entry(i, 10)).collect());
        assert!(value.len() <= layout::MAX_AUDIT);
        let summed = read(value);
        assert_eq!(summed.len(), 1);
        assert_eq!(summed[0].action, "batch");
        assert_eq!(
            summed[0].changed,
            Some(serde_json::json!({ "changes": 20_000 }))
        );
    }
}
