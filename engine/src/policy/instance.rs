//! A warm policy instance: one `Store` with an instantiated, initialised
//! policy, reused call after call by one worker thread.

use super::bindings::{Decision, Request, Router, Tier};
use super::{EPOCH_TICK, HostState, LoadedPolicy, PolicyError, Sandbox};
use crate::topology::Topology;
use std::sync::Arc;
use wasmtime::{Engine, Store};

/// Why a call to a policy failed. The instance must then be discarded.
#[derive(Debug, thiserror::Error)]
#[error("policy {policy:?} (version {version}) failed: {message}")]
pub struct CallError {
    /// Policy name.
    pub policy: String,
    /// Policy version.
    pub version: u64,
    /// The trap or error.
    pub message: String,
    /// Whether the call ran out of time.
    pub deadline: bool,
}

/// An instantiated, initialised policy in its own `Store`.
pub struct WarmInstance {
    store: Store<HostState>,
    router: Router,
    policy: Arc<LoadedPolicy>,
    deadline_ticks: u64,
}

impl WarmInstance {
    pub(super) fn new(
        engine: &Engine,
        sandbox: Sandbox,
        seed: Option<u64>,
        policy: &Arc<LoadedPolicy>,
    ) -> Result<Self, PolicyError> {
        let mut store = Store::new(
            engine,
            HostState::new(&policy.name, seed, sandbox.max_memory_bytes),
        );
        store.limiter(|s| &mut s.limits);
        let deadline_ticks = (sandbox.deadline.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64
            // The tick in progress may be nearly over: allow one more.
            + 1;
        store.set_epoch_deadline(deadline_ticks);
        let router = policy
            .pre
            .instantiate(&mut store)
            .map_err(|e| PolicyError::Instantiate {
                name: policy.name.clone(),
                message: format!("{e:#}"),
            })?;
        store.set_epoch_deadline(deadline_ticks);
        let init = router
            .edgeward_policy_policy()
            .call_init(&mut store, &policy.config);
        match init {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                return Err(PolicyError::Init {
                    name: policy.name.clone(),
                    message,
                });
            }
            Err(trap) => {
                return Err(PolicyError::Init {
                    name: policy.name.clone(),
                    message: format!("init trapped: {trap:#}"),
                });
            }
        }
        Ok(WarmInstance {
            store,
            router,
            policy: policy.clone(),
            deadline_ticks,
        })
    }

    /// The policy this instance runs.
    pub fn policy(&self) -> &Arc<LoadedPolicy> {
        &self.policy
    }

    /// Calls the policy's `select` for one request, under the deadline.
    /// `topology` must be the snapshot the request and tiers were built from.
    pub fn select(
        &mut self,
        topology: &Arc<Topology>,
        request: &Request,
        tiers: &[Tier],
    ) -> Result<Decision, CallError> {
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().topology = Some(topology.clone());
        let result =
            self.router
                .edgeward_policy_policy()
                .call_select(&mut self.store, request, tiers);
        self.store.data_mut().topology = None;
        result.map_err(|e| {
            let deadline = matches!(
                e.downcast_ref::<wasmtime::Trap>(),
                Some(wasmtime::Trap::Interrupt)
            );
            CallError {
                policy: self.policy.name.clone(),
                version: self.policy.version,
                message: format!("{e:#}"),
                deadline,
            }
        })
    }
}
