//! The one door configuration changes enter by.
//!
//! Every change, whatever its source (the admin API, `ctl`, a watched file
//! or SIGHUP, automatic rollback, and the per-entity edits to come), is a
//! [`Change`] handed to a [`Writer`] with the name of who made it:
//!
//! - [`LocalWriter`] (a single node) applies it through [`Control`];
//! - the etcd writer ([`crate::cluster::EtcdWriter`], a fleet) validates it
//!   the same way, writes it to etcd in one compare-and-swap, and every
//!   node's follower applies it from there, through [`Control`] too.
//!
//! [`Control`] is where a change is validated, published atomically (or
//! not at all) and written to the audit log (`target: "audit"`) with who
//! made it. Nothing else changes the topology, the policies or the routing.

mod apply;
pub mod audit;
pub mod journal;

pub use apply::{Control, Edited, one_line};

use crate::policy::{PolicyError, PolicySource, RoutingError, ShadowReport};
use crate::routing::acceptance::SampleResult;
use crate::topology::TopologyError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// One configuration change.
#[derive(Debug, Clone)]
pub enum Change {
    /// Replace the topology with this document (JSON or MessagePack).
    Topology(bytes::Bytes),
    /// Change entities of the topology, all or none
    /// ([`crate::topology::edit`]).
    Entities(Vec<crate::topology::edit::Edit>),
    /// Load a policy and, if asked, activate it.
    Policy {
        /// The component and its configuration.
        source: PolicySource,
        /// Make it the active version at once.
        activate: bool,
    },
    /// Change which versions serve.
    Routing(RoutingChange),
    /// Drain a server (no new redirects, health still tracked) or put it
    /// back.
    Drain {
        /// Server id.
        server: String,
        /// Drain (true) or undrain.
        draining: bool,
    },
}

/// A change of which policy versions serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingChange {
    /// Make a version active.
    Activate(u64),
    /// Re-activate the previous one.
    Rollback,
    /// Start or change a canary: version, percent of clients.
    SetCanary(u64, u32),
    /// Make the canary active.
    PromoteCanary,
    /// End the canary.
    AbortCanary,
    /// Start or change a shadow: version, percent of requests.
    SetShadow(u64, u32),
    /// Stop the shadow.
    ClearShadow,
    /// A version failed `failures` calls in a row: roll it back if it is
    /// still active (end its canary if it is the canary). Decided by the
    /// engine itself, once per fleet.
    Automatic {
        /// The failing version.
        version: u64,
        /// Consecutive failed calls.
        failures: u64,
    },
}

/// What a change did.
#[derive(Debug, Clone)]
pub struct Changed {
    /// The etcd revision that holds it (a fleet), else none.
    pub revision: Option<i64>,
    /// Whether this node serves it already (a fleet's write is applied by
    /// each node's follower; the answer waits a while for this node's).
    pub applied_here: bool,
    /// What changed.
    pub outcome: Outcome,
}

/// What changed, by kind of change.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The topology now served.
    Topology {
        /// Its version on this node.
        version: u64,
        /// SHA-256 of its document.
        hash: String,
        /// One line: what it holds.
        summary: String,
    },
    /// Entities changed.
    Entities {
        /// The topology version now served on this node.
        version: u64,
        /// The revision the change made.
        revision: u64,
        /// What each edit changed.
        applied: Vec<crate::topology::edit::Applied>,
        /// From the change's arrival to this node serving it (in a fleet,
        /// where etcd holds it first: to the answer).
        served: std::time::Duration,
        /// From the change's arrival to the answer: served and kept (or,
        /// in a fleet, held by etcd and, if it got here in time, served).
        took: std::time::Duration,
        /// The journal's sync to disk, after serving (single node with a
        /// state directory; zero otherwise).
        synced: std::time::Duration,
    },
    /// A policy loaded.
    Policy {
        /// Its name.
        name: String,
        /// Its version.
        version: u64,
        /// SHA-256 of the component (none while this node has not loaded
        /// it yet).
        hash: Option<String>,
        /// Its key in etcd (a fleet).
        digest: Option<String>,
        /// Whether it was activated.
        activated: bool,
        /// The limits stored with it.
        limits: crate::policy::Limits,
        /// Its decisions of the acceptance samples.
        samples: Vec<SampleResult>,
    },
    /// The routing changed.
    Routing {
        /// The canary that was ended (`name@version`), if one was.
        aborted: Option<String>,
        /// The shadow that was stopped (`name@version`) and its final
        /// report, if one was.
        stopped_shadow: Option<(String, ShadowReport)>,
        /// Nothing needed changing (an automatic rollback that another
        /// node, or an operator, made first).
        unchanged: bool,
    },
    /// A server drained or undrained.
    Drain {
        /// Server id.
        server: String,
        /// Its drain state now.
        draining: bool,
        /// Whether that was a change.
        changed: bool,
    },
}

/// Why a change was not made. Nothing was changed in every case.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The topology failed validation.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// An entity change was refused.
    #[error(transparent)]
    Entity(#[from] crate::topology::edit::EditError),
    /// The policy failed its acceptance steps.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The routing change is impossible (unknown version, no previous, …).
    #[error(transparent)]
    Routing(#[from] RoutingError),
    /// No server has this id in the topology.
    #[error("no server {0:?} in the topology")]
    UnknownServer(String),
    /// Someone else changed the key since the revision this change was
    /// based on.
    #[error(
        "conflict: {what} was changed by someone else (now at revision {current}, this change was based on revision {based_on}); nothing was written: read it again and retry"
    )]
    Conflict {
        /// What was changed.
        what: &'static str,
        /// The revision the write expected.
        based_on: i64,
        /// The revision it has now.
        current: i64,
    },
    /// A policy version this node loaded on its own, not through etcd.
    #[error(
        "policy version {0} is local to this node (its start policy), not in etcd; upload it through the admin API to use it fleet-wide"
    )]
    LocalOnly(u64),
    /// The shared store could not be reached.
    #[error("{0}; nothing was changed")]
    Unavailable(String),
    /// The shared store refused the write.
    #[error("{0}; nothing was changed")]
    Refused(String),
}

/// A boxed future of a change's result.
pub type Writing<'a> = Pin<Box<dyn Future<Output = Result<Changed, ChangeError>> + Send + 'a>>;

/// The door: where every configuration change is written.
pub trait Writer: Send + Sync {
    /// Makes `change` on behalf of `who`. `based_on` is the revision the
    /// change was based on (`If-Match`, with etcd): a change made meanwhile
    /// by someone else is a [`ChangeError::Conflict`]. Without it, the
    /// change is based on what this node last applied.
    fn write<'a>(&'a self, change: Change, based_on: Option<i64>, who: &'a str) -> Writing<'a>;

    /// A policy version failed `failures` calls in a row on this node
    /// (called from the request path: it must not block).
    fn report_failing(&self, version: u64, failures: u64);
}

/// Who an automatic rollback is written by.
pub fn automatic(node: &str) -> String {
    format!("automatic rollback on {node}")
}

/// The writer of a single node: changes apply here, now.
pub struct LocalWriter {
    control: Arc<Control>,
}

impl LocalWriter {
    /// A writer applying to `control`.
    pub fn new(control: Arc<Control>) -> Self {
        LocalWriter { control }
    }
}

impl Writer for LocalWriter {
    fn write<'a>(&'a self, change: Change, _based_on: Option<i64>, who: &'a str) -> Writing<'a> {
        // One node has no revisions to compare: its changes are serialised
        // by the stores themselves.
        let result = self.control.apply(change, who).map(|outcome| Changed {
            revision: None,
            applied_here: true,
            outcome,
        });
        Box::pin(std::future::ready(result))
    }

    fn report_failing(&self, version: u64, failures: u64) {
        // An ArcSwap store: cheap enough to do on the request path, and the
        // very next request is served by the restored version.
        let change = Change::Routing(RoutingChange::Automatic { version, failures });
        let _ = self.control.apply(change, &automatic("this node"));
    }
}
