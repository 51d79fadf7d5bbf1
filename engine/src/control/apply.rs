//! Applying a change on this node: validate, publish atomically or not at
//! all, and write the audit record naming who made it and what it was
//! (`target: "audit"`). [`Control::apply`] is what a [`super::LocalWriter`]
//! calls; the etcd follower applies what it reads through the same methods.

use super::audit::{AuditEntry, AuditLog};
use super::journal::{self, Journal};
use super::{Change, ChangeError, Outcome, RoutingChange};
use crate::health::HealthTable;
use crate::policy::{
    LoadedPolicy, PolicyError, PolicyHost, PolicySource, RoutingError, ShadowReport,
};
use crate::routing::acceptance::{self, SampleResult};
use crate::topology::edit::{Applied, Edit};
use crate::topology::store::TopologyStore;
use crate::topology::{self, Topology, TopologyError};
use std::sync::Arc;
use std::time::Instant;

/// The engine's mutable configuration: topology and policies.
pub struct Control {
    /// The published topology.
    pub topology: Arc<TopologyStore>,
    /// The health of its servers (following each new topology).
    pub health: Arc<HealthTable>,
    /// The policy host and its routing state.
    pub policies: Arc<PolicyHost>,
    /// When the engine started.
    pub started: Instant,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    /// The audit trail of changes.
    pub audit: AuditLog,
    /// The programme rules guide imports follow (`--epg-protect-minutes`).
    pub epg_rules: crate::epg::rules::Rules,
    /// The DVRs, on a node given `--dvr`: a guide imported here cancels
    /// the recordings of the programmes it replaces.
    pub dvr: std::sync::OnceLock<Arc<crate::dvr::worker::Drivers>>,
    /// The fleet's split of the health checks, on a node sharing them.
    pub health_share: std::sync::OnceLock<Arc<crate::health::Share>>,
    /// Where a single node keeps its topology (none: in memory only, or
    /// a fleet's node, whose topology is in etcd).
    journal: Option<Arc<Journal>>,
    compacting: Arc<std::sync::atomic::AtomicBool>,
    ready: std::sync::atomic::AtomicBool,
}

/// When an entity change began to serve, and how long its journal sync
/// took after that.
#[derive(Debug, Clone, Copy)]
pub struct Edited {
    /// When the new snapshot was published.
    pub served: Instant,
    /// How long the journal took to keep it (zero without a journal).
    pub synced: std::time::Duration,
}

impl Control {
    /// Bundles the stores.
    pub fn new(topology: Arc<TopologyStore>, policies: Arc<PolicyHost>) -> Self {
        Control {
            health: Arc::new(HealthTable::new(&topology.snapshot())),
            topology,
            policies,
            started: Instant::now(),
            metrics: crate::metrics::Metrics::new(),
            audit: AuditLog::in_memory(),
            epg_rules: Default::default(),
            dvr: Default::default(),
            health_share: Default::default(),
            journal: None,
            compacting: Default::default(),
            ready: false.into(),
        }
    }

    /// Shares the health checks with the fleet through `share`.
    pub fn set_health_share(&self, share: Option<Arc<crate::health::Share>>) {
        if let Some(share) = share {
            let _ = self.health_share.set(share);
        }
    }

    /// Imports guides by these rules.
    pub fn with_epg_rules(mut self, rules: crate::epg::rules::Rules) -> Self {
        self.epg_rules = rules;
        self
    }

    /// Keeps the topology in `journal` (a single node's state directory).
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = Some(Arc::new(journal));
        self
    }

    /// Keeps the audit trail in `audit`.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = audit;
        self
    }

    /// Marks the engine ready: topology and policy loaded, workers serving.
    pub fn set_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Marks the engine not ready (it is shutting down).
    pub fn set_not_ready(&self) {
        self.ready
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the engine serves player traffic (a node of a fleet is
    /// ready once it also has a configuration from etcd or its disk copy).
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Applies a change on this node, on behalf of `who`.
    pub fn apply(&self, change: Change, who: &str) -> Result<Outcome, ChangeError> {
        match change {
            Change::Topology(bytes) => {
                let t = self.replace_topology(bytes, who)?;
                Ok(Outcome::Topology {
                    version: t.version,
                    hash: t.hash.clone(),
                    summary: t.summary(),
                })
            }
            Change::Entities(edits) => {
                let started = Instant::now();
                let (t, applied, timing) = self.edit_topology(&edits, who, None)?;
                Ok(Outcome::Entities {
                    version: t.version,
                    revision: t.revision(),
                    applied,
                    served: timing.served.saturating_duration_since(started),
                    took: started.elapsed(),
                    synced: timing.synced,
                })
            }
            Change::Policy { source, activate } => {
                let (p, samples) = self.upload_policy(source, activate, who)?;
                Ok(Outcome::Policy {
                    name: p.name.clone(),
                    version: p.version,
                    hash: Some(p.hash.clone()),
                    digest: None,
                    activated: activate,
                    limits: p.limits,
                    samples,
                })
            }
            Change::Drain { server, draining } => match self.set_draining(&server, draining, who) {
                Some(changed) => Ok(Outcome::Drain {
                    server,
                    draining,
                    changed,
                }),
                None => Err(ChangeError::UnknownServer(server)),
            },
            Change::Routing(change) => self.change_routing(change, who),
        }
    }

    /// Applies a routing change.
    fn change_routing(&self, change: RoutingChange, who: &str) -> Result<Outcome, ChangeError> {
        let mut outcome = Outcome::Routing {
            aborted: None,
            stopped_shadow: None,
            unchanged: false,
        };
        match change {
            RoutingChange::Activate(v) => {
                self.activate(v, who)?;
            }
            RoutingChange::Rollback => {
                self.rollback(who)?;
            }
            RoutingChange::SetCanary(v, p) => self.set_canary(v, p, who)?,
            RoutingChange::PromoteCanary => {
                self.promote_canary(who)?;
            }
            RoutingChange::AbortCanary => {
                let p = self.abort_canary(who)?;
                if let Outcome::Routing { aborted, .. } = &mut outcome {
                    *aborted = Some(p.label());
                }
            }
            RoutingChange::SetShadow(v, p) => self.set_shadow(v, p, who)?,
            RoutingChange::ClearShadow => {
                let stopped = self.clear_shadow(who).ok_or(RoutingError::NoShadow)?;
                if let Outcome::Routing { stopped_shadow, .. } = &mut outcome {
                    *stopped_shadow = Some(stopped);
                }
            }
            RoutingChange::Automatic { version, failures } => {
                let changed = self.policies.auto_rollback(version, failures);
                if changed {
                    tracing::warn!(
                        target: "audit",
                        who,
                        version,
                        failures,
                        active = %self.policies.active().label(),
                        "automatic rollback"
                    );
                }
                if let Outcome::Routing { unchanged, .. } = &mut outcome {
                    *unchanged = !changed;
                }
            }
        }
        Ok(outcome)
    }

    /// The acceptance steps (compile, instantiate, `init`, the sample
    /// requests of the current topology) without adding the policy to the
    /// catalogue: what a node of a fleet runs before it writes a policy to
    /// etcd.
    pub fn check_policy(
        &self,
        source: PolicySource,
    ) -> Result<(Arc<LoadedPolicy>, Vec<SampleResult>), PolicyError> {
        self.accept(source, 0)
    }

    /// Compiles a policy as `version` and runs it on the samples.
    fn accept(
        &self,
        source: PolicySource,
        version: u64,
    ) -> Result<(Arc<LoadedPolicy>, Vec<SampleResult>), PolicyError> {
        let policy = self.policies.compile(source, version)?;
        let samples = acceptance::accept(
            &self.policies,
            &policy,
            &self.topology.snapshot(),
            &self.health.load(),
        )?;
        Ok((policy, samples))
    }

    /// [`Control::accept`] under a new version number (`wanted`, or the
    /// next local one), then added to the catalogue.
    fn load(
        &self,
        source: PolicySource,
        wanted: Option<u64>,
        who: &str,
    ) -> Result<(Arc<LoadedPolicy>, Vec<SampleResult>), PolicyError> {
        let name = source.name.clone();
        let version = self.policies.next_version(wanted);
        match self.accept(source, version) {
            Ok((policy, samples)) => {
                self.policies.register(policy.clone());
                tracing::info!(
                    target: "audit",
                    who,
                    policy = %policy.label(),
                    hash = %policy.hash,
                    "policy accepted"
                );
                Ok((policy, samples))
            }
            Err(e) => {
                tracing::warn!(target: "audit", who, policy = %name, "policy refused: {}", one_line(&e.to_string()));
                Err(e)
            }
        }
    }

    /// Parses and validates a topology without publishing it.
    pub fn check_topology(&self, bytes: bytes::Bytes) -> Result<Topology, TopologyError> {
        topology::load(bytes, 0)
    }

    /// Loads a policy under a version number chosen by the caller (etcd's),
    /// without activating it.
    pub fn load_policy_as(
        &self,
        source: PolicySource,
        version: u64,
        who: &str,
    ) -> Result<Arc<LoadedPolicy>, PolicyError> {
        self.load(source, Some(version), who).map(|(p, _)| p)
    }

    /// Parses, validates and publishes a topology (JSON or MessagePack).
    pub fn replace_topology(
        &self,
        bytes: bytes::Bytes,
        who: &str,
    ) -> Result<Arc<Topology>, ChangeError> {
        self.replace_topology_at(bytes, who, None)
    }

    /// [`Control::replace_topology`] at `revision` (etcd's), or the next
    /// one of this node. A single node's journal is rebased on it before
    /// it is served.
    pub fn replace_topology_at(
        &self,
        bytes: bytes::Bytes,
        who: &str,
        revision: Option<u64>,
    ) -> Result<Arc<Topology>, ChangeError> {
        let journal = self.journal.clone();
        let result = self
            .topology
            .replace_with(bytes, revision, |t| match &journal {
                Some(j) => j
                    .rebase(t.source(), t.revision(), &t.hash)
                    .map_err(ChangeError::Unavailable),
                None => Ok(()),
            });
        if let Ok(t) = &result {
            self.health.follow(t);
            self.audit
                .record(vec![AuditEntry::topology(who, t.revision(), &t.hash)]);
        }
        match &result {
            Ok(t) => tracing::info!(
                target: "audit",
                who,
                version = t.version,
                hash = %t.hash,
                "topology replaced: {}",
                t.summary()
            ),
            Err(e) => tracing::warn!(
                target: "audit",
                who,
                kept = self.topology.load().version,
                "topology refused: {}",
                one_line(&e.to_string())
            ),
        }
        result
    }

    /// Applies entity changes, all or none, at `revision` (etcd's) or the
    /// next one of this node: checked, served, journalled (a single node
    /// with a state directory; a change the journal cannot keep is taken
    /// back), then audited. Also gives when it began to serve and how long
    /// the journal took to sync.
    pub fn edit_topology(
        &self,
        edits: &[Edit],
        who: &str,
        revision: Option<u64>,
    ) -> Result<(Arc<Topology>, Vec<Applied>, Edited), ChangeError> {
        let journal = self.journal.clone();
        let mut journalled = 0;
        let mut timing = Edited {
            served: Instant::now(),
            synced: std::time::Duration::ZERO,
        };
        let result = self.topology.edit(edits, revision, |t| {
            let started = Instant::now();
            timing.served = started;
            if let Some(j) = &journal {
                journalled = j
                    .append(&journal::Entry {
                        revision: t.revision(),
                        who: who.to_string(),
                        time: crate::time::now_rfc3339(),
                        edits: edits.to_vec(),
                    })
                    .map_err(ChangeError::Unavailable)?;
            }
            timing.synced = started.elapsed();
            Ok::<(), ChangeError>(())
        });
        let (t, applied) = match result {
            Ok(done) => done,
            Err(e) => {
                // Served again as before, if it had begun to serve.
                self.health.follow(&self.topology.snapshot());
                tracing::warn!(target: "audit", who, "entity change refused: {}", one_line(&e.to_string()));
                return Err(e);
            }
        };
        self.health.follow(&t);
        self.audit.record(
            applied
                .iter()
                .map(|a| AuditEntry::entity(who, a, t.revision()))
                .collect(),
        );
        if journalled >= journal::COMPACT_AFTER {
            self.compact();
        }
        Ok((t, applied, timing))
    }

    /// Compacts the journal in the background: the current document
    /// becomes its base.
    fn compact(&self) {
        use std::sync::atomic::Ordering;
        let Some(journal) = self.journal.clone() else {
            return;
        };
        if self.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        let snapshot = self.topology.snapshot();
        let compacting = self.compacting.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            match journal.rebase(snapshot.source(), snapshot.revision(), &snapshot.hash) {
                Ok(()) => tracing::info!(
                    revision = snapshot.revision(),
                    ms = started.elapsed().as_millis() as u64,
                    "topology journal compacted"
                ),
                Err(e) => tracing::error!("topology journal not compacted: {e}"),
            }
            compacting.store(false, Ordering::Release);
        });
    }

    /// Runs a policy through the acceptance steps and, if asked, activates it.
    pub fn upload_policy(
        &self,
        source: PolicySource,
        activate: bool,
        who: &str,
    ) -> Result<(Arc<LoadedPolicy>, Vec<SampleResult>), PolicyError> {
        let (policy, samples) = self.load(source, None, who)?;
        if activate {
            self.activate(policy.version, who)
                .expect("a just-registered version exists");
        }
        Ok((policy, samples))
    }

    /// Makes a loaded version the active one.
    pub fn activate(&self, version: u64, who: &str) -> Result<Arc<LoadedPolicy>, RoutingError> {
        let previous = self.policies.activate(version)?;
        let active = self.policies.active();
        tracing::info!(
            target: "audit",
            who,
            policy = %active.label(),
            hash = %active.hash,
            previous = %previous.label(),
            "policy activated"
        );
        Ok(active)
    }

    /// Re-activates the previous version.
    pub fn rollback(&self, who: &str) -> Result<Arc<LoadedPolicy>, RoutingError> {
        let (from, to) = self.policies.rollback()?;
        tracing::info!(target: "audit", who, from = %from.label(), to = %to.label(), "policy rolled back");
        Ok(to)
    }

    /// Starts or changes a canary.
    pub fn set_canary(&self, version: u64, percent: u32, who: &str) -> Result<(), RoutingError> {
        self.policies.set_canary(version, percent)?;
        tracing::info!(target: "audit", who, version, percent, "canary set");
        Ok(())
    }

    /// Promotes the canary to active.
    pub fn promote_canary(&self, who: &str) -> Result<Arc<LoadedPolicy>, RoutingError> {
        let p = self.policies.promote_canary()?;
        tracing::info!(target: "audit", who, policy = %p.label(), "canary promoted");
        Ok(p)
    }

    /// Ends the canary.
    pub fn abort_canary(&self, who: &str) -> Result<Arc<LoadedPolicy>, RoutingError> {
        let p = self.policies.abort_canary()?;
        tracing::info!(target: "audit", who, policy = %p.label(), "canary aborted");
        Ok(p)
    }

    /// Starts a shadow.
    pub fn set_shadow(
        &self,
        version: u64,
        sample_percent: u32,
        who: &str,
    ) -> Result<(), RoutingError> {
        self.policies.set_shadow(version, sample_percent)?;
        tracing::info!(target: "audit", who, version, sample_percent, "shadow set");
        Ok(())
    }

    /// Stops the shadow; returns it (`name@version`) and its final report.
    pub fn clear_shadow(&self, who: &str) -> Option<(String, ShadowReport)> {
        let (p, report) = self.policies.clear_shadow()?;
        tracing::info!(
            target: "audit",
            who,
            policy = %p.label(),
            compared = report.compared,
            agreed = report.agreed,
            "shadow stopped"
        );
        Some((p.label(), report))
    }
}

impl Control {
    /// Drains (no new redirects, health still tracked) or undrains a server.
    /// `None` when no server has this id; else whether anything changed.
    pub fn set_draining(&self, id: &str, draining: bool, who: &str) -> Option<bool> {
        let changed = self.health.load().by_id(id)?.set_draining(draining);
        if changed {
            tracing::info!(
                target: "audit",
                who,
                server = id,
                "server {}",
                if draining { "drained" } else { "undrained" }
            );
        }
        Some(changed)
    }
}

impl Control {
    /// Makes exactly the servers of `drained` (by id) drained; servers not
    /// in the topology are ignored. Returns how many changed.
    pub fn apply_drained(&self, drained: &std::collections::BTreeSet<String>, who: &str) -> usize {
        let mut changed = 0;
        for server in self.health.load().entries() {
            let draining = drained.contains(&*server.id);
            if server.health.set_draining(draining) {
                changed += 1;
                tracing::info!(
                    target: "audit",
                    who,
                    server = %server.id,
                    "server {}",
                    if draining { "drained" } else { "undrained" }
                );
            }
        }
        changed
    }
}

/// A multi-line message on one log line.
pub fn one_line(message: &str) -> String {
    message.replace("\n  - ", " | ").replace('\n', " ")
}
