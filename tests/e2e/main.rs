//! End-to-end tests: the real `edgeward` binary, real `.wasm` policies built
//! from `policies/`, real HTTP over loopback.

mod harness;
mod policies;
mod routing;
mod topology;
