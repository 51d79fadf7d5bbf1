//! Per-instance host state and the host functions a policy may call.

use super::bindings::v0_4::edgeward::policy::{host, types};
use super::bindings::{
    GroupInfo, LogLevel, PathwayInfo, RegionInfo, ServerInfo, SubnetInfo, from_v0_3, to_v0_3, v0_3,
};
use crate::topology::Topology;
use edgeward_codec::SplitMix64;
use std::sync::Arc;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// What the host keeps for one policy instance.
pub struct HostState {
    /// The topology of the current (or last) call: its indices are what
    /// the policy sees.
    pub(crate) topology: Option<Arc<Topology>>,
    /// The generator the WIT names, the same one the SDK runs inside the
    /// policy.
    rng: SplitMix64,
    pub(crate) limits: MemoryWatch,
    policy: Arc<str>,
    /// The lines the policy logs, kept while a call is explained.
    pub(crate) captured: Option<Vec<String>>,
    /// A fixed clock (a replayed call sees the time it was logged at).
    pub(crate) clock_ms: Option<u64>,
    /// Look-ups answered from a logged decision instead of `topology`
    /// (a replay without the topology the decision was made on).
    pub(crate) logged: Option<LoggedTopology>,
    /// The WASI of a policy that imports it (a JavaScript one), made on
    /// first use.
    wasi: Option<super::wasi::PolicyWasi>,
}

/// The store's limits, and how large its memories have grown: an instance
/// whose memory keeps growing (componentize-js's runtime leaks a little on
/// every call) is replaced before it reaches its cap, which it would trap
/// on (see [`super::WarmInstance::select`]).
pub struct MemoryWatch {
    limits: StoreLimits,
    /// The linear memories' total size, in bytes, as their growth was
    /// allowed.
    pub(crate) memory_bytes: usize,
}

impl ResourceLimiter for MemoryWatch {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes = self.memory_bytes.saturating_add(desired - current);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// What a decision log carries of a topology: what the look-ups of
/// servers, groups and regions answer (by index, from the log's topology
/// record) and the subnets the decision matched.
#[derive(Debug, Default)]
pub struct LoggedTopology {
    /// Servers, groups and regions of the decision's topology (none when
    /// the log has no record of it).
    pub tables: Option<Arc<LookupTables>>,
    /// The matched subnets, by index.
    pub subnets: Vec<(u32, SubnetInfo)>,
}

/// Servers, groups and regions by index.
#[derive(Debug, Default)]
pub struct LookupTables {
    /// Servers.
    pub servers: Vec<ServerInfo>,
    /// Server groups.
    pub groups: Vec<GroupInfo>,
    /// Regions.
    pub regions: Vec<RegionInfo>,
}

impl HostState {
    /// State for a new instance of the policy `policy`. With a `seed` the
    /// random stream is reproducible; without, it is seeded from the OS.
    /// (Each `select` call reseeds it; see [`super::WarmInstance::select`].)
    pub fn new(policy: &str, seed: Option<u64>, max_memory_bytes: usize) -> Self {
        HostState {
            topology: None,
            rng: SplitMix64::new(seed.unwrap_or_else(|| {
                use rand::{RngCore, SeedableRng};
                rand::rngs::SmallRng::from_os_rng().next_u64()
            })),
            limits: MemoryWatch {
                limits: StoreLimitsBuilder::new()
                    .memory_size(max_memory_bytes)
                    .instances(4)
                    .tables(4)
                    .memories(2)
                    .build(),
                memory_bytes: 0,
            },
            policy: policy.into(),
            captured: None,
            clock_ms: None,
            logged: None,
            wasi: None,
        }
    }

    /// The instance's WASI (see [`super::wasi`]).
    pub(crate) fn wasi(&mut self) -> &mut super::wasi::PolicyWasi {
        let policy = &self.policy;
        self.wasi
            .get_or_insert_with(|| super::wasi::PolicyWasi::new(policy))
    }

    /// Restarts the random stream from `seed` (once per call).
    pub(crate) fn reseed(&mut self, seed: u64) {
        self.rng = SplitMix64::new(seed);
        if let Some(wasi) = &self.wasi {
            wasi.reseed(seed);
        }
    }

    fn topo(&self) -> Option<&Topology> {
        self.topology.as_deref()
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        if let Some(lines) = &mut self.captured
            && lines.len() < 100
        {
            lines.push(format!("{level:?}: {message}"));
        }
        let policy = &*self.policy;
        match level {
            LogLevel::Trace => tracing::trace!(target: "policy", policy, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "policy", policy, "{message}"),
            LogLevel::Info => tracing::info!(target: "policy", policy, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "policy", policy, "{message}"),
            LogLevel::Error => tracing::error!(target: "policy", policy, "{message}"),
        }
    }

    fn now_ms(&mut self) -> u64 {
        self.clock_ms
            .unwrap_or_else(|| crate::time::unix_millis(std::time::SystemTime::now()))
    }

    fn random(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn lookup_server(&mut self, server: u32) -> Option<ServerInfo> {
        if let Some(logged) = &self.logged {
            return logged
                .tables
                .as_ref()?
                .servers
                .get(server as usize)
                .cloned();
        }
        let s = self.topo()?.servers.get(server as usize)?;
        Some(ServerInfo {
            id: s.id.to_string(),
            host: s.host.to_string(),
            port: s.port,
            tls_port: s.tls_port,
            weight: s.weight,
            active: s.active,
        })
    }

    fn lookup_region(&mut self, region: u32) -> Option<RegionInfo> {
        if let Some(logged) = &self.logged {
            return logged
                .tables
                .as_ref()?
                .regions
                .get(region as usize)
                .cloned();
        }
        let r = self.topo()?.regions.get(region as usize)?;
        Some(RegionInfo {
            id: r.id.to_string(),
            name: r.name.to_string(),
            active: r.active,
            location: r.location.map(|(latitude, longitude)| types::Coordinates {
                latitude,
                longitude,
            }),
        })
    }

    fn lookup_group(&mut self, group: u32) -> Option<GroupInfo> {
        if let Some(logged) = &self.logged {
            return logged.tables.as_ref()?.groups.get(group as usize).cloned();
        }
        let g = self.topo()?.groups.get(group as usize)?;
        Some(GroupInfo {
            id: g.id.to_string(),
            active: g.active,
        })
    }

    fn lookup_subnet(&mut self, subnet: u32) -> Option<SubnetInfo> {
        if let Some(logged) = &self.logged {
            return logged
                .subnets
                .iter()
                .find(|(i, _)| *i == subnet)
                .map(|(_, s)| s.clone());
        }
        let topo = self.topo()?;
        let s = topo.subnets.get(subnet as usize)?;
        Some(SubnetInfo {
            cidr: s.net.to_string(),
            name: topo.subnet_name(subnet).unwrap_or_default().to_string(),
            region: s.region,
        })
    }

    fn lookup_pathway(&mut self, pathway: u32) -> Option<PathwayInfo> {
        if self.logged.is_some() {
            // Decision logs record redirects, which name no pathway.
            return None;
        }
        let p = self.topo()?.pathways.get(pathway as usize)?;
        Some(PathwayInfo {
            id: p.id.to_string(),
            host: p.host.as_deref().unwrap_or_default().to_string(),
            group: p.group,
            base: p.base,
        })
    }
}

/// The host functions of 0.3.0: 0.4.0's, answering with the fields 0.3.0
/// knows.
impl v0_3::edgeward::policy::types::Host for HostState {}

impl v0_3::edgeward::policy::host::Host for HostState {
    fn log(&mut self, level: v0_3::edgeward::policy::host::LogLevel, message: String) {
        host::Host::log(self, from_v0_3::level(level), message)
    }

    fn now_ms(&mut self) -> u64 {
        host::Host::now_ms(self)
    }

    fn random(&mut self) -> u64 {
        host::Host::random(self)
    }

    fn lookup_server(&mut self, server: u32) -> Option<v0_3::edgeward::policy::types::ServerInfo> {
        host::Host::lookup_server(self, server).map(to_v0_3::server)
    }

    fn lookup_region(&mut self, region: u32) -> Option<v0_3::edgeward::policy::types::RegionInfo> {
        host::Host::lookup_region(self, region).map(to_v0_3::region)
    }

    fn lookup_group(&mut self, group: u32) -> Option<v0_3::edgeward::policy::types::GroupInfo> {
        host::Host::lookup_group(self, group).map(to_v0_3::group)
    }

    fn lookup_subnet(&mut self, subnet: u32) -> Option<v0_3::edgeward::policy::types::SubnetInfo> {
        host::Host::lookup_subnet(self, subnet).map(to_v0_3::subnet)
    }
}
