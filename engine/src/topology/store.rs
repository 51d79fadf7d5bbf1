//! The published topology: one [`Topology`] snapshot behind an `ArcSwap`.
//!
//! Readers (every request) take the current snapshot with a lock-free load
//! and keep it for the whole request, so a replacement never changes the
//! ground under a request in flight. Writers (file reload, admin API) are
//! serialised; a document that fails validation is refused and the current
//! snapshot stays.

use super::{Topology, TopologyDoc, TopologyError, build};
use arc_swap::ArcSwap;
use std::sync::{Arc, Mutex};

/// Holds the current topology snapshot.
#[derive(Debug)]
pub struct TopologyStore {
    current: ArcSwap<Topology>,
    writer: Mutex<()>,
}

impl TopologyStore {
    /// Publishes `doc` as version 1.
    pub fn new(doc: &TopologyDoc) -> Result<Self, TopologyError> {
        Ok(TopologyStore {
            current: ArcSwap::from_pointee(build(doc, 1)?),
            writer: Mutex::new(()),
        })
    }

    /// The current snapshot, for the request path (no lock, no refcount
    /// traffic in the common case).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Topology>> {
        self.current.load()
    }

    /// The current snapshot as an owned handle.
    pub fn snapshot(&self) -> Arc<Topology> {
        self.current.load_full()
    }

    /// Validates `doc` and, if it is good, publishes it with the next version
    /// number. On error the current snapshot is kept.
    pub fn replace(&self, doc: &TopologyDoc) -> Result<Arc<Topology>, TopologyError> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let next = self.current.load().version + 1;
        let topology = Arc::new(build(doc, next)?);
        self.current.store(topology.clone());
        Ok(topology)
    }
}
