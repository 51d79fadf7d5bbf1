//! What ships inside the binary: the default policy and a demo topology, so
//! that `edgeward serve` works with no arguments.

mod built {
    include!(concat!(env!("OUT_DIR"), "/policies.rs"));
}

/// Every policy crate of `policies/`, built as a component by `build.rs`:
/// `(name, path of the .wasm file in the build directory)`.
pub use built::BUILT as BUILT_POLICIES;

/// The same crates as the core modules `cargo build` leaves (what a policy
/// author's plain build gives): `(name, path of the .wasm file)`.
pub use built::BUILT_MODULES;

/// The default policy, `policies/nearest`, as component bytes.
pub const NEAREST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/nearest.wasm"));

/// A small demo topology (JSON) whose subnets include loopback, so a local
/// `curl` is routed.
pub const DEMO_TOPOLOGY: &str = include_str!("../demo/topology.json");
