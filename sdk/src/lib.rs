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
    Decision, Figure, GroupInfo, Health, Manifest, PathwayInfo, RegionInfo, Rejection,
    ServerHealth, ServerInfo, SteerDecision, Steering, SubnetInfo,
};
/// The request and candidate types come from the contract's codec, the
/// crate the engine encodes them with (`edgeward-codec`).
pub use edgeward_codec::{
    AnonymousIp, CandidateState, Coordinates, Country, Encryption, Geo, Headers, IpAddress,
    PathwayOffer, Protocol, Request, RequestKind,
};

/// The contract this SDK builds policies for.
pub const CONTRACT: &str = "edgeward:policy@0.4.0";

/// An edge server that could serve the request: its server and group
/// indices (see [`host::server_info`], [`host::group_info`]), `weight` (0
/// means "never draw at random"), `state` flags and live `health` figures
/// when the engine has any. [`Candidate::is_eligible`] says whether all its
/// flags are set.
pub type Candidate = edgeward_codec::Candidate<Health>;

/// The candidates of one region, in the order of preference the topology
/// implies: one tier per matched subnet (longest prefix first), then, for
/// a client in no subnet, the regions nearest to its GeoIP location
/// ([`Tier::distance_km`](edgeward_codec::Tier::distance_km) set), then
/// the `default_region` tier. A region already offered by an earlier tier
/// is not repeated. [`Tier::eligible`] lists the candidates a policy may
/// pick.
pub type Tier = edgeward_codec::Tier<Health>;

/// One content-steering poll: the player's request (its kind and
/// protocol are those of the steered stream; its query is the poll's),
/// the client's tiers (regions only: no candidates), the pathways the
/// engine offers, and what this policy returned as state for the
/// session's previous poll (empty on the first).
#[derive(Debug, Clone, Copy)]
pub struct SteerPoll<'a> {
    /// The poll as a request.
    pub request: &'a Request,
    /// The client's tiers, in order of preference, without candidates.
    pub tiers: &'a [Tier],
    /// The pathways offered (see [`host::pathway_info`]).
    pub pathways: &'a [PathwayOffer],
    /// The policy's state from the previous poll (at most 64 bytes).
    pub state: &'a [u8],
}

impl SteerDecision {
    /// This priority order of pathway indices, with this TTL in seconds (0:
    /// the engine's default) and no state.
    pub fn order(priority: Vec<u32>, ttl_s: u32) -> Self {
        SteerDecision::Order(Steering {
            priority,
            ttl_s,
            state: Vec::new(),
        })
    }
}

impl RegionInfo {
    /// Where the region is, when the topology says.
    pub fn coordinates(&self) -> Option<Coordinates> {
        self.location.map(|c| Coordinates {
            latitude: c.latitude,
            longitude: c.longitude,
        })
    }
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

    /// The request headers this policy reads, by name (any case; at most
    /// 16). Only these cross the boundary, as [`Request::headers`]: a
    /// policy that reads none pays nothing for them. Asked once, right
    /// after [`Policy::new`], so it may depend on the configuration.
    fn headers(&self) -> Vec<String> {
        Vec::new()
    }

    /// Orders the pathways of a content-steering poll. The default leaves
    /// it to the engine ([`SteerDecision::DefaultOrder`]: the pathways of
    /// the client's tiers in tier order, those with edges up first).
    fn steer(&mut self, poll: &SteerPoll<'_>) -> SteerDecision {
        let _ = poll;
        SteerDecision::DefaultOrder
    }
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
                ) -> ::core::result::Result<$crate::Manifest, ::std::string::String> {
                    $crate::host::install_panic_hook();
                    let config = $crate::config::decode::<<$policy as $crate::Policy>::Config>(&config)?;
                    let policy = <$policy as $crate::Policy>::new(config)?;
                    let headers = $crate::abi::declare_headers($crate::Policy::headers(&policy));
                    INSTANCE.with(|slot| *slot.borrow_mut() = ::core::option::Option::Some(policy));
                    ::core::result::Result::Ok($crate::Manifest { headers })
                }

                fn steer(
                    call: ::std::vec::Vec<u32>,
                    state: ::std::vec::Vec<u8>,
                ) -> $crate::SteerDecision {
                    $crate::abi::with_steer(&call, &state, |poll| {
                        INSTANCE.with(|slot| match slot.borrow_mut().as_mut() {
                            ::core::option::Option::Some(policy) => {
                                $crate::Policy::steer(policy, poll)
                            }
                            ::core::option::Option::None => $crate::SteerDecision::DefaultOrder,
                        })
                    })
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
