//! What the engine offers a policy: logging, time, randomness and look-ups of
//! topology objects by the indices that requests and candidates carry.
//!
//! Inside the engine these call the host. Compiled natively (a policy's unit
//! tests), they are served in-process instead: logs go to stderr, time is the
//! system clock, randomness comes from a per-thread generator that
//! [`testing::seed`] makes deterministic, and look-ups answer from what
//! [`testing::set_servers`] and friends installed.

use crate::{GroupInfo, PathwayInfo, RegionInfo, ServerInfo, SubnetInfo};

/// Severity of a log line.
pub use crate::bindings::edgeward::policy::host::LogLevel;

/// Writes a line to the engine's log, tagged with the policy's name.
pub fn log(level: LogLevel, message: &str) {
    imp::log(level, message)
}

/// Logs at `info` level.
pub fn info(message: &str) {
    log(LogLevel::Info, message)
}

/// Logs at `warn` level.
pub fn warn(message: &str) {
    log(LogLevel::Warn, message)
}

/// Logs at `error` level.
pub fn error(message: &str) {
    log(LogLevel::Error, message)
}

/// Wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    imp::now_ms()
}

/// 64 random bits. Inside the engine they come from a generator seeded
/// with the request's seed (the same numbers the host's `random` would give,
/// without calling the host); in native tests, from [`testing::seed`].
pub fn random() -> u64 {
    imp::random()
}

/// Seeds [`random`] for one call (done by [`crate::export_policy!`]).
#[doc(hidden)]
pub fn seed_call(seed: u64) {
    imp::seed_call(seed)
}

/// The server with this index in the topology of the current call.
pub fn server_info(server: u32) -> Option<ServerInfo> {
    imp::server_info(server)
}

/// The region with this index in the topology of the current call.
pub fn region_info(region: u32) -> Option<RegionInfo> {
    imp::region_info(region)
}

/// The server group with this index in the topology of the current call.
pub fn group_info(group: u32) -> Option<GroupInfo> {
    imp::group_info(group)
}

/// The client subnet with this index in the topology of the current call.
pub fn subnet_info(subnet: u32) -> Option<SubnetInfo> {
    imp::subnet_info(subnet)
}

/// The steering pathway with this index in the topology of the current
/// call.
pub fn pathway_info(pathway: u32) -> Option<PathwayInfo> {
    imp::pathway_info(pathway)
}

/// Forwards panic messages to the engine's log: a policy built for
/// `wasm32-unknown-unknown` has no stderr, so without this a panic would
/// reach the operator only as a bare trap. Called by [`crate::export_policy!`].
#[doc(hidden)]
pub fn install_panic_hook() {
    #[cfg(target_arch = "wasm32")]
    {
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                error(&format!("policy panicked: {info}"));
            }));
        });
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::bindings::edgeward::policy::host as h;
    pub use h::{
        lookup_group as group_info, lookup_pathway as pathway_info, lookup_region as region_info,
        lookup_server as server_info, lookup_subnet as subnet_info, now_ms,
    };
    use std::cell::Cell;

    use edgeward_codec::SplitMix64;

    thread_local! {
        static RNG: Cell<SplitMix64> = const { Cell::new(SplitMix64::new(0)) };
    }

    pub fn seed_call(seed: u64) {
        RNG.with(|r| r.set(SplitMix64::new(seed)));
    }

    /// SplitMix64, as the WIT specifies for `host.random`.
    pub fn random() -> u64 {
        RNG.with(|r| {
            let mut g = r.get();
            let out = g.next_u64();
            r.set(g);
            out
        })
    }

    pub fn log(level: h::LogLevel, message: &str) {
        h::log(level, message)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::LogLevel;
    use super::testing::STATE;
    use crate::{GroupInfo, PathwayInfo, RegionInfo, ServerInfo, SubnetInfo};

    pub fn log(level: LogLevel, message: &str) {
        eprintln!("[policy {level:?}] {message}");
    }

    pub fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    pub fn random() -> u64 {
        STATE.with(|s| s.borrow_mut().next_random())
    }

    pub fn seed_call(seed: u64) {
        super::testing::seed(seed);
    }

    pub fn server_info(i: u32) -> Option<ServerInfo> {
        STATE.with(|s| s.borrow().servers.get(i as usize).cloned())
    }

    pub fn region_info(i: u32) -> Option<RegionInfo> {
        STATE.with(|s| s.borrow().regions.get(i as usize).cloned())
    }

    pub fn group_info(i: u32) -> Option<GroupInfo> {
        STATE.with(|s| s.borrow().groups.get(i as usize).cloned())
    }

    pub fn subnet_info(i: u32) -> Option<SubnetInfo> {
        STATE.with(|s| s.borrow().subnets.get(i as usize).cloned())
    }

    pub fn pathway_info(i: u32) -> Option<PathwayInfo> {
        STATE.with(|s| s.borrow().pathways.get(i as usize).cloned())
    }
}

/// In-process stand-ins for the host, for a policy's native unit tests.
/// They have no effect inside the engine.
#[cfg(not(target_arch = "wasm32"))]
pub mod testing {
    use crate::{GroupInfo, PathwayInfo, RegionInfo, ServerInfo, SubnetInfo};
    use std::cell::RefCell;

    pub(super) struct State {
        pub(super) rng: edgeward_codec::SplitMix64,
        pub(super) servers: Vec<ServerInfo>,
        pub(super) regions: Vec<RegionInfo>,
        pub(super) groups: Vec<GroupInfo>,
        pub(super) subnets: Vec<SubnetInfo>,
        pub(super) pathways: Vec<PathwayInfo>,
    }

    impl State {
        /// The generator the engine uses, so native tests draw alike.
        pub(super) fn next_random(&mut self) -> u64 {
            self.rng.next_u64()
        }
    }

    thread_local! {
        pub(super) static STATE: RefCell<State> = const {
            RefCell::new(State {
                rng: edgeward_codec::SplitMix64::new(0x5eed),
                servers: Vec::new(),
                regions: Vec::new(),
                groups: Vec::new(),
                subnets: Vec::new(),
                pathways: Vec::new(),
            })
        };
    }

    /// Reseeds this thread's generator behind [`super::random`].
    pub fn seed(seed: u64) {
        STATE.with(|s| s.borrow_mut().rng = edgeward_codec::SplitMix64::new(seed));
    }

    /// Installs the servers [`super::server_info`] answers from (by index).
    pub fn set_servers(servers: Vec<ServerInfo>) {
        STATE.with(|s| s.borrow_mut().servers = servers);
    }

    /// Installs the regions [`super::region_info`] answers from (by index).
    pub fn set_regions(regions: Vec<RegionInfo>) {
        STATE.with(|s| s.borrow_mut().regions = regions);
    }

    /// Installs the groups [`super::group_info`] answers from (by index).
    pub fn set_groups(groups: Vec<GroupInfo>) {
        STATE.with(|s| s.borrow_mut().groups = groups);
    }

    /// Installs the subnets [`super::subnet_info`] answers from (by index).
    pub fn set_subnets(subnets: Vec<SubnetInfo>) {
        STATE.with(|s| s.borrow_mut().subnets = subnets);
    }

    /// Installs the pathways [`super::pathway_info`] answers from (by index).
    pub fn set_pathways(pathways: Vec<PathwayInfo>) {
        STATE.with(|s| s.borrow_mut().pathways = pathways);
    }
}
