//! What the decision benchmark and the instruction-count example share:
//! the client addresses, and a worker's request path on a topology with the
//! built-in `nearest` policy.

use edgeward::health::HealthTable;
use edgeward::policy::{Fallback, PolicyHost, PolicySource, Sandbox};
use edgeward::routing::client::TrustedProxies;
use edgeward::routing::{Decider, Router};
use edgeward::topology::store::TopologyStore;
use std::net::IpAddr;
use std::sync::Arc;

/// Client addresses: mostly inside the synthetic ranges, a few outside.
pub fn clients(n: usize) -> Vec<IpAddr> {
    let mut x: u64 = 0x1234_5678_9abc_def0;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match i % 20 {
                0 => IpAddr::from([192, 0, 2, (x % 250) as u8]),
                1 => IpAddr::from(((0x2001_0db8u128 << 96) | u128::from(x) << 40).to_be_bytes()),
                2..=5 => IpAddr::from((0x6440_0000 | (x as u32 & 0x003f_ffff)).to_be_bytes()),
                _ => IpAddr::from((0x0a00_0000 | (x as u32 & 0x00ff_ffff)).to_be_bytes()),
            }
        })
        .collect()
}

/// A policy host with `policy` active, seeded, no rollback.
pub fn host(policy: PolicySource) -> Arc<PolicyHost> {
    PolicyHost::new(
        Sandbox::default(),
        Some(1),
        policy,
        Fallback::Native,
        u64::MAX,
    )
    .unwrap()
}

/// The whole request path of one worker, as the HTTP layer calls it (the
/// client is the peer: no trusted proxy, no X-Real-IP), with `nearest`.
pub fn router(store: &Arc<TopologyStore>) -> Router {
    router_with(store, PolicySource::builtin_nearest())
}

/// [`router`] with another policy.
#[allow(dead_code)]
pub fn router_with(store: &Arc<TopologyStore>, policy: PolicySource) -> Router {
    let policies = host(policy);
    let health = Arc::new(HealthTable::new(&store.snapshot()));
    Router::new(
        store,
        &health,
        &policies,
        TrustedProxies::new(Vec::new()),
        Decider::new(policies.clone(), Some(1)),
        None,
    )
}
