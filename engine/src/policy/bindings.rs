//! Host bindings generated from `wit/` (the single source of truth).
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "router",
});

pub use edgeward::policy::host::LogLevel;
pub use edgeward::policy::types::{
    Candidate, CandidateState, Decision, Encryption, Figure, GroupInfo, Health, IpAddress,
    Protocol, RegionInfo, Rejection, Request, RequestKind, ServerInfo, SubnetInfo, Tier,
};
