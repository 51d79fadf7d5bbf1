//! Edge health: what is alive, kept apart from what exists (topology) and
//! who is chosen (policy).
//!
//! A [`HealthTable`] holds an `Arc<`[`ServerHealth`]`>` per server of the
//! published topology: atomics the request path reads with one load,
//! written by the [`checker`], which probes each server that has a
//! `healthcheck` over HTTP (spread over the interval, bounded in
//! concurrency) and applies the `rise`/`fall` thresholds. Operators' drain
//! state lives there too. The topology knows nothing of health; the table
//! follows each new snapshot, and servers whose address and check are
//! unchanged keep their `ServerHealth` (so their state survives the swap);
//! drain state is kept by server id. In a fleet sharing its checks
//! ([`share`]), a node probes only its share of the servers and takes the
//! others' states from the members that probe them.

pub mod checker;
pub mod probe;
pub mod share;
mod state;
mod table;

pub use share::Share;
pub use state::{Figures, Report, ServerHealth, ServerHealthView, State};
pub use table::{Entry, HealthCache, HealthTable, ServersHealth};
