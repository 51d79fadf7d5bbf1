//! Edge health: what is alive, kept apart from what exists (topology) and
//! who is chosen (policy).
//!
//! Every server of a topology snapshot carries an `Arc<`[`ServerHealth`]`>`:
//! atomics the request path reads with one load, written by the
//! [`checker`], which probes each server that has a `healthcheck` over HTTP
//! (spread over the interval, bounded in concurrency) and applies the
//! `rise`/`fall` thresholds. Operators' drain state lives there too. When a
//! topology is replaced, servers whose address and check are unchanged keep
//! their `ServerHealth` (so their state survives the swap); drain state is
//! kept by server id.

pub mod checker;
mod probe;
mod state;

pub use state::{Figures, ServerHealth, ServerHealthView, State};
