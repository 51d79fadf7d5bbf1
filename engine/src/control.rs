//! The one door configuration changes enter by. Whatever the source (a
//! watched file, SIGHUP, the admin API), a change goes through the same
//! validation, is applied atomically or not at all, and is logged with who
//! made it and what it was (`target: "audit"`).

use crate::policy::acceptance::SampleResult;
use crate::policy::{LoadedPolicy, PolicyError, PolicyHost, PolicySource, RoutingError};
use crate::topology::store::TopologyStore;
use crate::topology::{self, Topology, TopologyError};
use std::sync::Arc;
use std::time::Instant;

/// The engine's mutable configuration: topology and policies.
pub struct Control {
    /// The published topology.
    pub topology: Arc<TopologyStore>,
    /// The policy host and its routing state.
    pub policies: Arc<PolicyHost>,
    /// When the engine started.
    pub started: Instant,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    ready: std::sync::atomic::AtomicBool,
    /// The link to etcd, when the configuration lives there.
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl Control {
    /// Bundles the stores.
    pub fn new(topology: Arc<TopologyStore>, policies: Arc<PolicyHost>) -> Self {
        Control {
            topology,
            policies,
            started: Instant::now(),
            metrics: crate::metrics::Metrics::new(),
            ready: false.into(),
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// Makes this node follow etcd (once, at start).
    pub fn set_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The link to etcd, when the configuration lives there.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.get()
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

    /// Whether the engine serves player traffic (and, when it follows
    /// etcd, has a configuration from etcd or its disk copy).
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Relaxed)
            && self.cluster.get().is_none_or(|c| c.has_config())
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
        let name = source.name.clone();
        let topology = self.topology.snapshot();
        match self.policies.load_as(source, &topology, Some(version)) {
            Ok((policy, _)) => {
                tracing::info!(target: "audit", who, policy = %policy.label(), hash = %policy.hash, "policy accepted");
                Ok(policy)
            }
            Err(e) => {
                tracing::warn!(target: "audit", who, policy = %name, "policy refused: {}", one_line(&e.to_string()));
                Err(e)
            }
        }
    }

    /// Parses, validates and publishes a topology (JSON or MessagePack).
    pub fn replace_topology(
        &self,
        bytes: bytes::Bytes,
        who: &str,
    ) -> Result<Arc<Topology>, TopologyError> {
        let result = self.topology.replace_with(bytes);
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

    /// Runs a policy through the acceptance steps and, if asked, activates it.
    pub fn upload_policy(
        &self,
        source: PolicySource,
        activate: bool,
        who: &str,
    ) -> Result<(Arc<LoadedPolicy>, Vec<SampleResult>), PolicyError> {
        let name = source.name.clone();
        let topology = self.topology.snapshot();
        match self.policies.load(source, &topology) {
            Ok((policy, samples)) => {
                tracing::info!(
                    target: "audit",
                    who,
                    policy = %policy.label(),
                    hash = %policy.hash,
                    "policy accepted"
                );
                if activate {
                    self.activate(policy.version, who)
                        .expect("a just-registered version exists");
                }
                Ok((policy, samples))
            }
            Err(e) => {
                tracing::warn!(target: "audit", who, policy = %name, "policy refused: {}", one_line(&e.to_string()));
                Err(e)
            }
        }
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

    /// Stops the shadow.
    pub fn clear_shadow(&self, who: &str) -> bool {
        let stopped = self.policies.clear_shadow();
        if let Some((p, report)) = &stopped {
            tracing::info!(
                target: "audit",
                who,
                policy = %p.label(),
                compared = report.compared,
                agreed = report.agreed,
                "shadow stopped"
            );
        }
        stopped.is_some()
    }
}

impl Control {
    /// Drains (no new redirects, health still tracked) or undrains a server.
    /// `None` when no server has this id; else whether anything changed.
    pub fn set_draining(&self, id: &str, draining: bool, who: &str) -> Option<bool> {
        let topology = self.topology.load();
        let server = &topology.servers[topology.server_index(id)? as usize];
        let changed = server.health.set_draining(draining);
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
        let topology = self.topology.load();
        let mut changed = 0;
        for server in &topology.servers {
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
