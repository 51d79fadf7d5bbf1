//! The SDK for writing edgeward routing policies in Rust.
//!
//! A policy is a WebAssembly component that the edgeward engine calls once per
//! player request to decide which edge server the player is redirected to.
//! This crate hides the generated WIT bindings behind a small API:
//!
//! - implement [`Policy`] (a constructor taking your configuration, and
//!   [`Policy::select`]);
//! - export it with [`export_policy!`];
//! - use the helpers in [`choose`] (weighted random choice, consistent
//!   hashing) and [`host`] (log, time, randomness, topology look-ups).
//!
//! ```ignore
//! use edgeward_sdk::{export_policy, choose, Decision, Policy, Request, Tier};
//!
//! struct FirstTier;
//!
//! impl Policy for FirstTier {
//!     type Config = edgeward_sdk::NoConfig;
//!     fn new(_: Self::Config) -> Result<Self, String> { Ok(FirstTier) }
//!     fn select(&mut self, _req: &Request, tiers: &[Tier]) -> Decision {
//!         for tier in tiers {
//!             if let Some(c) = choose::weighted(tier.eligible(), |c| c.weight) {
//!                 return Decision::Choose(c.server);
//!             }
//!         }
//!         Decision::reject(503, "no available edge")
//!     }
//! }
//!
//! export_policy!(FirstTier);
//! ```
//!
//! Build it for `wasm32-unknown-unknown` and encode the module as a component
//! (the engine's build does this for every crate in `policies/`); the result
//! imports nothing but the `edgeward:policy/host` interface.
//!
//! Off WebAssembly (in a policy's own `cargo test`), the [`host`] functions
//! run natively: logs go to stderr, randomness comes from a seedable
//! generator, and topology look-ups answer from [`host::testing`].

pub mod choose;
pub mod config;
pub mod host;

/// Generated bindings (`wit_bindgen::generate!` over `wit/`). Policy authors
/// should not need these; they are public for the export macro.
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "router",
        pub_export_macro: true,
        default_bindings_module: "edgeward_sdk::bindings",
        export_macro_name: "__export_router",
    });
}

pub use bindings::edgeward::policy::types::{
    CandidateState, Decision, Encryption, Figure, GroupInfo, Health, Protocol, RegionInfo,
    Rejection, RequestKind, ServerHealth, ServerInfo, SubnetInfo,
};

/// A client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpAddress {
    /// IPv4, as its four bytes.
    V4((u8, u8, u8, u8)),
    /// IPv6, as its eight 16-bit groups.
    V6((u16, u16, u16, u16, u16, u16, u16, u16)),
}

/// One player request, as the engine parsed it. (`policy.select` carries
/// it packed in its words; see the WIT.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Live, catch-up, VOD or static file.
    pub kind: RequestKind,
    /// Set for live and catch-up requests; none for VOD and static files.
    pub protocol: Option<Protocol>,
    /// The encryption asked for in the URL (`none` for VOD and static).
    pub encryption: Encryption,
    /// The channel `epg_id` (live), the program `epg_id` (catch-up) or the
    /// path below `/vod/` or `/static/`.
    pub target: String,
    /// The raw query string without the leading `?`; none when absent or
    /// empty.
    pub query: Option<String>,
    /// The client address (from `X-Real-IP` when the peer is a trusted
    /// proxy).
    pub client: IpAddress,
    /// Version of the topology the indices in this call refer to.
    pub topology_version: u64,
    /// This request's random seed: [`host::random`](crate::host::random)
    /// draws from a SplitMix64 generator seeded with it. The engine seeds a
    /// shadow's call like the primary's.
    pub seed: u64,
}

/// An edge server that could serve the request.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Index of the server (see [`host::server_info`]).
    pub server: u32,
    /// Index of the server group it was reached through (see [`host::group_info`]).
    pub group: u32,
    /// The server's `weight` (0 means "never draw at random").
    pub weight: u32,
    /// Active, group active, serves the resource, available.
    pub state: CandidateState,
    /// Live health figures, when the engine has any.
    pub health: Option<Health>,
}

/// The candidates of one region, in the order of preference the topology
/// implies: one tier per matched subnet (longest prefix first), then the
/// `default_region` tier. A region already offered by an earlier tier is
/// not repeated.
#[derive(Debug, Clone)]
pub struct Tier {
    /// Index of the region (see [`host::region_info`]).
    pub region: u32,
    /// The region's `active` flag.
    pub region_active: bool,
    /// Index of the matched subnet (see [`host::subnet_info`]); none for the
    /// `default_region` tier.
    pub subnet: Option<u32>,
    /// Its candidates.
    pub candidates: Vec<Candidate>,
}

pub mod abi;
pub use config::NoConfig;

/// A routing policy.
///
/// One value of the implementing type lives in each warm instance of the
/// policy; the engine may run several instances at once (one per worker
/// thread), so do not rely on state shared between requests for correctness.
pub trait Policy: Sized + 'static {
    /// The policy's configuration, decoded from the MessagePack bytes the
    /// engine passes to `init` (operators write it as TOML or JSON). Use
    /// [`NoConfig`] when there is none; mark fields `#[serde(default)]` to
    /// make them optional.
    type Config: serde::de::DeserializeOwned;

    /// Builds the policy from its configuration. An error refuses the policy
    /// (the engine keeps the previous one).
    fn new(config: Self::Config) -> Result<Self, String>;

    /// Decides where one request goes. `tiers` come in order of preference
    /// (longest matching subnet first, the default region last).
    fn select(&mut self, request: &Request, tiers: &[Tier]) -> Decision;
}

impl Decision {
    /// A rejection with this status and reason.
    pub fn reject(status: u16, reason: impl Into<String>) -> Self {
        Decision::Reject(Rejection {
            status,
            reason: reason.into(),
        })
    }
}

impl Candidate {
    /// Active, in an active group that serves the resource, and available
    /// according to health checking. (The region's own `active` flag is on
    /// the [`Tier`].)
    pub fn is_eligible(&self) -> bool {
        self.state.contains(CandidateState::all())
    }
}

impl Tier {
    /// The eligible candidates of this tier: none when the region is
    /// inactive, else those for which [`Candidate::is_eligible`] holds.
    pub fn eligible(&self) -> impl Iterator<Item = &Candidate> + Clone {
        let candidates = if self.region_active {
            &self.candidates[..]
        } else {
            &[]
        };
        candidates.iter().filter(|c| c.is_eligible())
    }
}

impl IpAddress {
    /// The address as a standard library value.
    pub fn to_std(&self) -> std::net::IpAddr {
        match *self {
            IpAddress::V4((a, b, c, d)) => std::net::Ipv4Addr::new(a, b, c, d).into(),
            IpAddress::V6((a, b, c, d, e, f, g, h)) => {
                std::net::Ipv6Addr::new(a, b, c, d, e, f, g, h).into()
            }
        }
    }
}

/// Exports a [`Policy`] implementation as the component's `policy` interface.
///
/// Use it once, at the root of the policy crate: `export_policy!(MyPolicy);`.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        const _: () = {
            ::std::thread_local! {
                static INSTANCE: ::core::cell::RefCell<::core::option::Option<$policy>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            struct EdgewardPolicyExport;

            impl $crate::bindings::exports::edgeward::policy::policy::Guest for EdgewardPolicyExport {
                fn init(
                    config: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::host::install_panic_hook();
                    let config = $crate::config::decode::<<$policy as $crate::Policy>::Config>(&config)?;
                    let policy = <$policy as $crate::Policy>::new(config)?;
                    INSTANCE.with(|slot| *slot.borrow_mut() = ::core::option::Option::Some(policy));
                    ::core::result::Result::Ok(())
                }

                fn select(
                    call: ::std::vec::Vec<u32>,
                    health: ::core::option::Option<::std::vec::Vec<$crate::ServerHealth>>,
                ) -> $crate::Decision {
                    $crate::abi::with_call(&call, health.as_deref(), |request, tiers| {
                        INSTANCE.with(|slot| match slot.borrow_mut().as_mut() {
                            ::core::option::Option::Some(policy) => {
                                $crate::Policy::select(policy, request, tiers)
                            }
                            ::core::option::Option::None => {
                                $crate::Decision::reject(500, "policy used before init")
                            }
                        })
                    })
                }
            }

            // The component exports only exist on WebAssembly; natively (a
            // policy's unit tests) the crate is an ordinary library.
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::__export_router!(EdgewardPolicyExport);
        };
    };
}
