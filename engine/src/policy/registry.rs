//! Which policy versions exist and which serve: the active one, an optional
//! canary (a share of clients, hashed on the client address so each client
//! sticks to one version) and an optional shadow (run beside the active one
//! on a sample of requests, its answers only compared, never sent).
//!
//! Workers read the [`RoutingState`] once per request through an `ArcSwap`;
//! every change builds a new state and swaps it in, so a request in flight
//! finishes on the versions it started with.

use super::{LoadedPolicy, PolicyHost, stats::StatsSnapshot};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// How many loaded versions are kept (the active, canary, shadow and
/// previous ones are always kept).
const KEEP_VERSIONS: usize = 16;
/// Disagreement examples a shadow report keeps.
const SHADOW_EXAMPLES: usize = 20;

/// What answers a request when its policy call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// The previously active version (then the native rule if that fails too).
    Previous,
    /// The engine's built-in native implementation of the default rule.
    Native,
    /// `503 Service Unavailable`.
    Unavailable,
}

/// The versions serving requests.
#[derive(Debug, Clone)]
pub struct RoutingState {
    /// Decides requests not in the canary share.
    pub active: Arc<LoadedPolicy>,
    /// The version active before this one (the rollback target and the
    /// `previous` fallback).
    pub previous: Option<Arc<LoadedPolicy>>,
    /// A version serving a share of clients.
    pub canary: Option<Canary>,
    /// A version run on a sample of requests for comparison only.
    pub shadow: Option<Arc<Shadow>>,
}

/// A canary: `percent` of clients (by address hash) go to `policy`.
#[derive(Debug, Clone)]
pub struct Canary {
    /// The canary version.
    pub policy: Arc<LoadedPolicy>,
    /// Share of clients, 0..=100.
    pub percent: u8,
}

/// A shadow version and what it has seen.
#[derive(Debug)]
pub struct Shadow {
    /// The shadow version.
    pub policy: Arc<LoadedPolicy>,
    /// Share of requests also sent to the shadow, 0..=100.
    pub sample_percent: u8,
    /// Comparison so far.
    pub report: Mutex<ShadowReport>,
}

/// How often a shadow agreed with the version that answered.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ShadowReport {
    /// Requests decided by both.
    pub compared: u64,
    /// Requests where both gave the same answer.
    pub agreed: u64,
    /// Calls of the shadow that failed.
    pub shadow_failures: u64,
    /// The most recent disagreements.
    pub examples: VecDeque<Disagreement>,
}

/// One request on which the shadow answered differently.
#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    /// Client address.
    pub client: String,
    /// What was asked (`live hls/none ch1`).
    pub request: String,
    /// What the serving version answered.
    pub served: String,
    /// What the shadow answered.
    pub shadow: String,
}

impl ShadowReport {
    /// Records one comparison.
    pub fn record(&mut self, agreed: bool, example: impl FnOnce() -> Disagreement) {
        self.compared += 1;
        if agreed {
            self.agreed += 1;
        } else {
            if self.examples.len() == SHADOW_EXAMPLES {
                self.examples.pop_front();
            }
            self.examples.push_back(example());
        }
    }
}

impl RoutingState {
    pub(super) fn new(active: Arc<LoadedPolicy>) -> Self {
        RoutingState {
            active,
            previous: None,
            canary: None,
            shadow: None,
        }
    }

    /// The version that decides for a client whose address hashes to
    /// `client_hash`.
    #[inline]
    pub fn for_client(&self, client_hash: u64) -> &Arc<LoadedPolicy> {
        match &self.canary {
            Some(c) if client_hash % 100 < u64::from(c.percent) => &c.policy,
            _ => &self.active,
        }
    }

    /// Whether `version` is one this state may call.
    pub fn uses(&self, version: u64) -> bool {
        self.active.version == version
            || self.previous.as_ref().is_some_and(|p| p.version == version)
            || self
                .canary
                .as_ref()
                .is_some_and(|c| c.policy.version == version)
            || self
                .shadow
                .as_ref()
                .is_some_and(|s| s.policy.version == version)
    }
}

/// Every loaded version, oldest first, and the activation history.
pub(super) struct Catalog {
    versions: Vec<Arc<LoadedPolicy>>,
    /// Versions activated before the current one, most recent last.
    history: Vec<Arc<LoadedPolicy>>,
    /// Set when the engine rolled a version back by itself.
    pub(super) auto_rollback: Option<AutoRollback>,
}

/// An automatic rollback, as reported on the status endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct AutoRollback {
    /// The version rolled back.
    pub from: String,
    /// The version restored.
    pub to: String,
    /// Why.
    pub reason: String,
    /// When (seconds since the Unix epoch).
    pub at_unix: u64,
}

impl Catalog {
    pub(super) fn new(first: Arc<LoadedPolicy>) -> Self {
        Catalog {
            versions: vec![first],
            history: Vec::new(),
            auto_rollback: None,
        }
    }
}

/// A loaded version as listed by the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInfo {
    /// Policy name.
    pub name: String,
    /// Version number.
    pub version: u64,
    /// SHA-256 of the component.
    pub hash: String,
    /// Load time, RFC 3339.
    pub loaded_at: String,
    /// `active`, `canary`, `shadow`, `previous` or `inactive`.
    pub role: &'static str,
    /// The contract it was built for (`edgeward:policy@0.4.0`).
    pub contract: &'static str,
    /// The request headers it reads (its manifest).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// The limits stored with it (empty: the host's).
    pub limits: super::Limits,
    /// Who signed it (null: unsigned, or the built-in policy).
    pub signed_by: Option<super::signing::Signed>,
    /// What its calls run under: the deadline, in milliseconds...
    pub deadline_ms: f64,
    /// ...and the memory cap, in MiB.
    pub memory_mib: f64,
    /// Call statistics.
    #[serde(flatten)]
    pub stats: StatsSnapshot,
}

/// Why a routing change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// No loaded version has this number.
    #[error("no policy version {0} is loaded")]
    UnknownVersion(u64),
    /// Nothing to roll back to.
    #[error("there is no previous policy version to roll back to")]
    NoPrevious,
    /// No canary is running.
    #[error("no canary is running")]
    NoCanary,
    /// No shadow is running.
    #[error("no shadow is running")]
    NoShadow,
    /// A percentage outside 0..=100.
    #[error("percent must be between 0 and 100, got {0}")]
    BadPercent(u32),
}

impl PolicyHost {
    /// Adds a compiled (and accepted) version to the catalogue, not yet
    /// serving.
    pub fn register(&self, policy: Arc<LoadedPolicy>) {
        let mut catalog = self.catalog.lock().unwrap_or_else(|e| e.into_inner());
        catalog.versions.push(policy);
        // Forget the oldest versions nobody uses.
        let routing = self.routing.load();
        while catalog.versions.len() > KEEP_VERSIONS {
            let Some(pos) = catalog
                .versions
                .iter()
                .position(|p| !routing.uses(p.version))
            else {
                break;
            };
            let gone = catalog.versions.remove(pos);
            catalog.history.retain(|h| h.version != gone.version);
        }
    }

    /// The loaded version with this number.
    pub fn find(&self, version: u64) -> Option<Arc<LoadedPolicy>> {
        let catalog = self.catalog.lock().unwrap_or_else(|e| e.into_inner());
        catalog
            .versions
            .iter()
            .find(|p| p.version == version)
            .cloned()
    }

    /// Every loaded version with its role and statistics.
    pub fn list(&self) -> Vec<PolicyInfo> {
        let catalog = self.catalog.lock().unwrap_or_else(|e| e.into_inner());
        let routing = self.routing.load();
        catalog
            .versions
            .iter()
            .map(|p| {
                let v = p.version;
                let role = if routing.active.version == v {
                    "active"
                } else if routing
                    .canary
                    .as_ref()
                    .is_some_and(|c| c.policy.version == v)
                {
                    "canary"
                } else if routing
                    .shadow
                    .as_ref()
                    .is_some_and(|s| s.policy.version == v)
                {
                    "shadow"
                } else if routing.previous.as_ref().is_some_and(|p| p.version == v) {
                    "previous"
                } else {
                    "inactive"
                };
                PolicyInfo {
                    name: p.name.clone(),
                    version: v,
                    hash: p.hash.clone(),
                    loaded_at: crate::time::rfc3339(p.loaded_at),
                    role,
                    contract: p.contract().name(),
                    headers: p.headers().to_vec(),
                    limits: p.limits,
                    signed_by: p.signed.clone(),
                    deadline_ms: p.sandbox.deadline.as_secs_f64() * 1e3,
                    memory_mib: p.sandbox.max_memory_bytes as f64 / (1 << 20) as f64,
                    stats: p.stats.snapshot(),
                }
            })
            .collect()
    }

    /// The last automatic rollback, if any.
    pub fn last_auto_rollback(&self) -> Option<AutoRollback> {
        let catalog = self.catalog.lock().unwrap_or_else(|e| e.into_inner());
        catalog.auto_rollback.clone()
    }

    /// Makes `version` the active one (ending a canary of that version, and
    /// keeping any shadow). Returns the previously active version.
    pub fn activate(&self, version: u64) -> Result<Arc<LoadedPolicy>, RoutingError> {
        let mut catalog = self.catalog.lock().unwrap_or_else(|e| e.into_inner());
        let policy = catalog
            .versions
            .iter()
            .find(|p| p.version == version)
            .cloned()
            .ok_or(RoutingError::UnknownVersion(version))?;
        let old = self.routing.load_full();
        if old.active.version == version {
            return Ok(old.active.clone());
        }
        catalog.history.push(old.active.clone());
        let canary = old.canary.clone().filter(|c| c.policy.version != version);
        self.routing.store(Arc::new(RoutingState {
            active: policy,
            previous: Some(old.active.clone()),
            canary,
            shadow: old.shadow.clone(),
        }));
        Ok(old.active.clone())
    }

    /// Re-activates the version active before the current one. Returns
    /// `(rolled back, restored)`.
    pub fn rollback(&self) -> Result<(Arc<LoadedPolicy>, Arc<LoadedPolicy>), RoutingError> {
        let mut catalog = self.catalog.lock().unwrap_or_else(|e| e.into_inner());
        let target = catalog.history.pop().ok_or(RoutingError::NoPrevious)?;
        let old = self.routing.load_full();
        self.routing.store(Arc::new(RoutingState {
            active: target.clone(),
            previous: catalog.history.last().cloned(),
            canary: old.canary.clone(),
            shadow: old.shadow.clone(),
        }));
        Ok((old.active.clone(), target))
    }

    /// Called by a worker after `failures` consecutive failures of `version`:
    /// rolls it back if it is still the active version and has a
    /// predecessor, or ends its canary. Returns whether anything changed.
    pub fn auto_rollback(&self, version: u64, failures: u64) -> bool {
        let routing = self.routing.load_full();
        if routing
            .canary
            .as_ref()
            .is_some_and(|c| c.policy.version == version)
        {
            if self.abort_canary().is_ok() {
                tracing::error!(
                    version,
                    failures,
                    "AUTOMATIC CANARY ABORT: policy version {version} failed {failures} calls in a row"
                );
                self.note_auto_rollback(
                    &routing.canary.as_ref().unwrap().policy,
                    &routing.active,
                    failures,
                );
                return true;
            }
            return false;
        }
        if routing.active.version != version {
            return false;
        }
        match self.rollback() {
            Ok((from, to)) => {
                tracing::error!(
                    from = %from.label(),
                    to = %to.label(),
                    failures,
                    "AUTOMATIC ROLLBACK: policy {} failed {failures} calls in a row; {} restored",
                    from.label(),
                    to.label()
                );
                self.note_auto_rollback(&from, &to, failures);
                true
            }
            Err(_) => false,
        }
    }

    /// Records an automatic rollback for the status endpoint (done here for
    /// a local one; by the fleet's writer for one written to etcd).
    pub fn note_auto_rollback(&self, from: &LoadedPolicy, to: &LoadedPolicy, failures: u64) {
        let mut catalog = self.catalog.lock().unwrap_or_else(|e| e.into_inner());
        catalog.auto_rollback = Some(AutoRollback {
            from: from.label(),
            to: to.label(),
            reason: format!("{failures} consecutive failed calls"),
            at_unix: crate::time::unix_seconds(SystemTime::now()),
        });
    }

    /// Replaces the routing state with `change(current)`, under the
    /// catalogue lock so that concurrent changes do not lose each other.
    fn update_routing(
        &self,
        change: impl FnOnce(&RoutingState) -> Result<RoutingState, RoutingError>,
    ) -> Result<Arc<RoutingState>, RoutingError> {
        let _guard = self.catalog.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.routing.load_full();
        self.routing.store(Arc::new(change(&old)?));
        Ok(old)
    }

    /// Starts or widens a canary of `version` for `percent` of clients.
    pub fn set_canary(&self, version: u64, percent: u32) -> Result<(), RoutingError> {
        if percent > 100 {
            return Err(RoutingError::BadPercent(percent));
        }
        let policy = self
            .find(version)
            .ok_or(RoutingError::UnknownVersion(version))?;
        self.update_routing(|old| {
            Ok(RoutingState {
                canary: Some(Canary {
                    policy,
                    percent: percent as u8,
                }),
                ..old.clone()
            })
        })?;
        Ok(())
    }

    /// Ends the canary; its clients go back to the active version.
    pub fn abort_canary(&self) -> Result<Arc<LoadedPolicy>, RoutingError> {
        let old = self.update_routing(|old| {
            old.canary.as_ref().ok_or(RoutingError::NoCanary)?;
            Ok(RoutingState {
                canary: None,
                ..old.clone()
            })
        })?;
        Ok(old.canary.clone().expect("checked above").policy)
    }

    /// Makes the canary version the active one for everybody.
    pub fn promote_canary(&self) -> Result<Arc<LoadedPolicy>, RoutingError> {
        let version = self
            .routing
            .load()
            .canary
            .as_ref()
            .map(|c| c.policy.version)
            .ok_or(RoutingError::NoCanary)?;
        self.activate(version)?;
        self.find(version)
            .ok_or(RoutingError::UnknownVersion(version))
    }

    /// Runs `version` as a shadow on `sample_percent` of requests (a new
    /// report starts).
    pub fn set_shadow(&self, version: u64, sample_percent: u32) -> Result<(), RoutingError> {
        if sample_percent > 100 {
            return Err(RoutingError::BadPercent(sample_percent));
        }
        let policy = self
            .find(version)
            .ok_or(RoutingError::UnknownVersion(version))?;
        self.update_routing(|old| {
            Ok(RoutingState {
                shadow: Some(Arc::new(Shadow {
                    policy,
                    sample_percent: sample_percent as u8,
                    report: Mutex::new(ShadowReport::default()),
                })),
                ..old.clone()
            })
        })?;
        Ok(())
    }

    /// Stops the shadow; returns its final report.
    pub fn clear_shadow(&self) -> Option<(Arc<LoadedPolicy>, ShadowReport)> {
        let old = self
            .update_routing(|old| {
                old.shadow.as_ref().ok_or(RoutingError::NoShadow)?;
                Ok(RoutingState {
                    shadow: None,
                    ..old.clone()
                })
            })
            .ok()?;
        let shadow = old.shadow.clone()?;
        let report = shadow
            .report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Some((shadow.policy.clone(), report))
    }
}
