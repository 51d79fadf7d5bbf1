//! The health of every server of the published topology, kept apart from
//! the topology itself: a [`HealthTable`] follows each new snapshot
//! ([`HealthTable::follow`], called by the door that publishes it), and
//! servers whose address and check are unchanged keep their
//! [`ServerHealth`] (so their state survives the swap); drain state is kept
//! by id whatever changed. The request path joins health to the
//! candidates where it builds the tiers ([`crate::routing::candidates`]),
//! by server index.

use super::ServerHealth;
use crate::topology::Topology;
use crate::topology::model::HealthcheckDoc;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The servers' health for one topology version.
#[derive(Debug)]
pub struct ServersHealth {
    /// The topology version whose server indices this table follows.
    pub topology_version: u64,
    servers: Box<[Entry]>,
    /// The same handles, packed: what the request path reads per
    /// candidate.
    by_index: Box<[Arc<ServerHealth>]>,
    by_id: HashMap<Box<str>, u32>,
}

/// One server's health, with what its probes need.
#[derive(Debug)]
pub struct Entry {
    /// Server id.
    pub id: Box<str>,
    /// Host probed.
    pub host: Box<str>,
    /// Port probed.
    pub port: u16,
    /// The health check, when one is configured.
    pub check: Option<HealthcheckDoc>,
    /// Live health and operator state.
    pub health: Arc<ServerHealth>,
}

impl ServersHealth {
    /// The server with this index in topology `topology_version`.
    #[inline]
    pub fn of(&self, server: u32) -> &ServerHealth {
        &self.by_index[server as usize]
    }

    /// Every server's health, by index in topology `topology_version`.
    #[inline]
    pub fn by_index(&self) -> &[Arc<ServerHealth>] {
        &self.by_index
    }

    /// The server with this id.
    pub fn by_id(&self, id: &str) -> Option<&Arc<ServerHealth>> {
        let i = *self.by_id.get(id)?;
        Some(&self.servers[i as usize].health)
    }

    /// Every server, by index.
    pub fn entries(&self) -> &[Entry] {
        &self.servers
    }

    fn of_topology(topology: &Topology, previous: Option<&ServersHealth>) -> Self {
        let servers: Box<[Entry]> = topology
            .servers
            .iter()
            .map(|s| {
                let before = previous.and_then(|p| Some(&p.servers[*p.by_id.get(&s.id)? as usize]));
                let health = match before {
                    Some(b) if b.host == s.host && b.port == s.port && b.check == s.healthcheck => {
                        b.health.clone()
                    }
                    Some(b) => {
                        let fresh = ServerHealth::default();
                        fresh.set_draining(b.health.draining());
                        Arc::new(fresh)
                    }
                    None => Arc::default(),
                };
                Entry {
                    id: s.id.clone(),
                    host: s.host.clone(),
                    port: s.port,
                    check: s.healthcheck.clone(),
                    health,
                }
            })
            .collect();
        let by_id = servers
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i as u32))
            .collect();
        ServersHealth {
            topology_version: topology.version,
            by_index: servers.iter().map(|e| e.health.clone()).collect(),
            servers,
            by_id,
        }
    }
}

/// The published [`ServersHealth`]: one lock-free load per request.
#[derive(Debug)]
pub struct HealthTable {
    current: ArcSwap<ServersHealth>,
    writer: Mutex<()>,
    /// Announces each new table (the checker listens).
    published: tokio::sync::watch::Sender<u64>,
}

/// What a worker's [`HealthCache`] reads through.
#[derive(Debug, Clone)]
pub struct TableHandle(Arc<HealthTable>);

impl std::ops::Deref for TableHandle {
    type Target = ArcSwap<ServersHealth>;
    fn deref(&self) -> &ArcSwap<ServersHealth> {
        &self.0.current
    }
}

/// A worker's own handle on the current table (see
/// [`crate::topology::store::TopologyCache`]).
pub type HealthCache = arc_swap::cache::Cache<TableHandle, Arc<ServersHealth>>;

impl HealthTable {
    /// Every server of `topology`, with no health known yet.
    pub fn new(topology: &Topology) -> Self {
        HealthTable {
            current: ArcSwap::from_pointee(ServersHealth::of_topology(topology, None)),
            writer: Mutex::new(()),
            published: tokio::sync::watch::Sender::new(topology.version),
        }
    }

    /// Follows a newly published topology (servers unchanged keep their
    /// state; drain state is kept by id).
    pub fn follow(&self, topology: &Topology) {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.current.load_full();
        if old.topology_version >= topology.version {
            return;
        }
        self.current
            .store(Arc::new(ServersHealth::of_topology(topology, Some(&old))));
        self.published.send_replace(topology.version);
    }

    /// The current table, as an owned handle.
    pub fn load_full(&self) -> Arc<ServersHealth> {
        self.current.load_full()
    }

    /// The current table.
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<ServersHealth>> {
        self.current.load()
    }

    /// A cached handle for one worker.
    pub fn cache(self: &Arc<Self>) -> HealthCache {
        arc_swap::cache::Cache::new(TableHandle(self.clone()))
    }

    /// A receiver that sees every new table.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }
}
