//! The published topology: one [`Topology`] snapshot behind an `ArcSwap`.
//!
//! Readers (every request) take the current snapshot with a lock-free load
//! and keep it for the whole request, so a replacement never changes the
//! ground under a request in flight. Writers (file reload, admin API) are
//! serialised; a document that fails validation is refused and the current
//! snapshot stays.

use super::edit::{Applied, Edit, EditError};
use super::{Topology, TopologyDoc, TopologyError, build, load};
use arc_swap::ArcSwap;
use bytes::Bytes;
use std::sync::{Arc, Mutex};

/// Holds the current topology snapshot.
#[derive(Debug)]
pub struct TopologyStore {
    current: ArcSwap<Topology>,
    writer: Mutex<()>,
    /// Announces each new version.
    published: tokio::sync::watch::Sender<u64>,
}

/// What a worker's [`TopologyCache`] reads through.
#[derive(Debug, Clone)]
pub struct StoreHandle(Arc<TopologyStore>);

impl std::ops::Deref for StoreHandle {
    type Target = ArcSwap<Topology>;
    fn deref(&self) -> &ArcSwap<Topology> {
        &self.0.current
    }
}

/// A worker's own handle on the current snapshot: checking that it is
/// still current is one relaxed atomic load, cheaper than an `ArcSwap`
/// load, and it holds its `Arc` without touching the shared count.
pub type TopologyCache = arc_swap::cache::Cache<StoreHandle, Arc<Topology>>;

impl TopologyStore {
    /// A cached handle for one worker (see [`TopologyCache`]).
    pub fn cache(self: &Arc<Self>) -> TopologyCache {
        arc_swap::cache::Cache::new(StoreHandle(self.clone()))
    }

    /// Publishes `doc` as version 1.
    pub fn new(doc: &TopologyDoc) -> Result<Self, TopologyError> {
        Ok(Self::first(build(doc, 1)?))
    }

    /// Parses, validates and publishes a document (JSON or MessagePack) as
    /// version 1.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, TopologyError> {
        Ok(Self::first(load(bytes, 1)?))
    }

    /// Publishes a snapshot already built (a restored one) as version 1.
    pub fn from_topology(topology: Topology) -> Self {
        Self::first(topology)
    }

    fn first(topology: Topology) -> Self {
        let topology = if topology.revision() == 0 {
            topology.at_revision(1)
        } else {
            topology
        };
        TopologyStore {
            current: ArcSwap::from_pointee(topology),
            writer: Mutex::new(()),
            published: tokio::sync::watch::Sender::new(1),
        }
    }

    /// A receiver that sees every newly published version.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
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
        self.publish(|old| {
            Ok((
                build(doc, old.version + 1)?.at_revision(old.revision() + 1),
                (),
            ))
        })
        .map(|(t, ())| t)
    }

    /// Parses and validates a document (JSON or MessagePack) and, if it is
    /// good, has `commit` keep it (a journal) and publishes it with the
    /// next version number, at `revision` or the next one. On error the
    /// current snapshot is kept. One replacement is built at a time, which
    /// also bounds the memory replacements take.
    pub fn replace_with<E: From<TopologyError>>(
        &self,
        bytes: Bytes,
        revision: Option<u64>,
        commit: impl FnOnce(&Topology) -> Result<(), E>,
    ) -> Result<Arc<Topology>, E> {
        self.publish(|old| {
            let revision = revision.unwrap_or(old.revision() + 1);
            let t = load(bytes, old.version + 1)?.at_revision(revision);
            commit(&t)?;
            Ok((t, ()))
        })
        .map(|(t, ())| t)
    }

    /// Applies entity changes ([`super::edit`]) to the current snapshot
    /// and, if they are good, publishes the result at `revision` or the
    /// next one, then has `commit` keep them (a journal), still as the one
    /// writer: a small change serves without waiting for the disk. If
    /// `commit` fails, the snapshot from before serves again (as the next
    /// version) and its error is returned, so nothing that was not kept
    /// stays served.
    pub fn edit<E: From<EditError>>(
        &self,
        edits: &[Edit],
        revision: Option<u64>,
        commit: impl FnOnce(&Topology) -> Result<(), E>,
    ) -> Result<(Arc<Topology>, Vec<Applied>), E> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.current.load_full();
        let revision = revision.unwrap_or(old.revision() + 1);
        let edited = super::edit::apply(&old, edits, old.version + 1, revision)?;
        let topology = Arc::new(edited.topology);
        self.current.store(topology.clone());
        self.published.send_replace(topology.version);
        if let Err(e) = commit(&topology) {
            let mut back = Topology::clone(&old);
            back.version = topology.version + 1;
            let back = Arc::new(back);
            self.current.store(back.clone());
            self.published.send_replace(back.version);
            return Err(e);
        }
        Ok((topology, edited.applied))
    }

    /// Publishes what `build` makes of the current snapshot, one writer at
    /// a time.
    fn publish<T, E>(
        &self,
        build: impl FnOnce(&Topology) -> Result<(Topology, T), E>,
    ) -> Result<(Arc<Topology>, T), E> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.current.load_full();
        let (topology, extra) = build(&old)?;
        let topology = Arc::new(topology);
        self.current.store(topology.clone());
        self.published.send_replace(topology.version);
        Ok((topology, extra))
    }

    /// Gives the current snapshot, if it is still `t`, the hash `hash` (a
    /// document with entity changes folded in keeps the hash it had).
    pub fn rehash(&self, t: &Arc<Topology>, hash: &str) {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load_full();
        if !Arc::ptr_eq(&current, t) {
            return;
        }
        let mut renamed = Topology::clone(t);
        renamed.hash = hash.to_string();
        self.current.store(Arc::new(renamed));
    }

    /// Publishes `topology` as it is (a restored one) with the next
    /// version number.
    pub fn restore(&self, topology: Topology) -> Arc<Topology> {
        self.publish(|_| Ok::<_, std::convert::Infallible>((topology, ())))
            .map(|(t, ())| t)
            .unwrap_or_else(|e| match e {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::edit::Op;
    use crate::topology::entity::Kind;

    fn store() -> TopologyStore {
        TopologyStore::from_bytes(Bytes::from_static(crate::builtin::DEMO_TOPOLOGY.as_bytes()))
            .unwrap()
    }

    fn new_region(id: &str) -> Edit {
        Edit {
            op: Op::Create,
            kind: Kind::Regions,
            key: None,
            value: Some(serde_json::json!({"id": id, "server_groups": []})),
            if_match: None,
        }
    }

    #[test]
    fn an_edit_serves_before_its_commit_and_is_taken_back_if_the_commit_fails() {
        let store = store();
        let before = store.snapshot();
        // The commit sees the edit already served.
        let (t, _) = store
            .edit(&[new_region("r-new")], None, |t| {
                assert_eq!(store.snapshot().version, t.version, "served before commit");
                Ok::<(), EditError>(())
            })
            .unwrap();
        assert!(t.regions.iter().any(|r| &*r.id == "r-new"));
        // A commit that fails: the snapshot from before serves again, as
        // a newer version.
        let err = store.edit(&[new_region("r-lost")], None, |_| {
            Err(EditError {
                reason: crate::topology::edit::Reason::Invalid,
                message: "the disk is full".into(),
                current: None,
            })
        });
        assert_eq!(err.unwrap_err().message, "the disk is full");
        let now = store.snapshot();
        assert_eq!(now.version, t.version + 2);
        assert!(!now.regions.iter().any(|r| &*r.id == "r-lost"));
        assert!(now.regions.iter().any(|r| &*r.id == "r-new"));
        assert_eq!(now.source(), t.source());
        assert!(before.version < t.version);
    }
}
