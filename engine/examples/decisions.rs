//! Runs the request path of one worker a fixed number of times, for
//! instruction counts that do not depend on the machine's mood:
//!
//! ```sh
//! cargo build --release -p edgeward --example decisions
//! valgrind --tool=callgrind --toggle-collect='*run_decisions*' \
//!     target/release/examples/decisions 20000
//! ```
//!
//! The same topology, clients and policy as `benches/decision.rs`
//! (`decision/10k/wasm_nearest`); callgrind counts only `run_decisions`,
//! not the setup (compiling the policy, indexing the topology).

#[path = "../benches/support/mod.rs"]
mod support;

use edgeward::routing::{Outcome, PlayerRequest, Router};
use edgeward::topology::store::TopologyStore;
use edgeward::topology::synthetic::{Spec, generate};
use std::net::IpAddr;
use std::sync::Arc;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let doc = generate(Spec {
        v4_subnets: 9_700,
        v6_subnets: 300,
        regions: 100,
        seed: 2,
    });
    let store = Arc::new(TopologyStore::new(&doc).unwrap());
    let mut router = support::router(&store);
    let clients = support::clients(4096);
    // Warm: the instance, the worker's buffers.
    run_decisions(&mut router, &clients, 1000);
    let redirects = run_decisions(&mut router, &clients, n);
    println!("{redirects} redirects of {n} decisions");
}

#[inline(never)]
fn run_decisions(router: &mut Router, clients: &[IpAddr], n: usize) -> usize {
    let mut redirects = 0;
    for i in 0..n {
        let routed = router.route(&PlayerRequest {
            get_or_head: true,
            path: std::hint::black_box("/btv/live/hls/ch1.m3u8"),
            query: Some("token=abc"),
            peer: clients[i % clients.len()],
            x_real_ip: None,
            tls: false,
            forwarded_proto: None,
            headers: Default::default(),
        });
        redirects += usize::from(matches!(routed.outcome, Outcome::Redirect(_)));
    }
    redirects
}
