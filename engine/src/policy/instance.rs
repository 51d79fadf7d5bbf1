//! A warm policy instance: one `Store` with an instantiated, initialised
//! policy, reused call after call by one worker thread.

use super::bindings::{
    Contract, Decision, PathwayOffer, Request, ServerHealth, SteerDecision, Tier, from_v0_3, v0_3,
    v0_4,
};
use super::stats::{FLUSH_EVERY, LocalStats, TIME_EVERY};
use super::{HostState, INIT_BUDGET, LoadedPolicy, PolicyError, Pre, Sandbox, ticks};
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
    /// Whether the call ran out of its budget (fuel or wall clock).
    pub deadline: bool,
}

/// An instantiated policy, by the contract it was built for.
enum Router {
    V0_3(v0_3::Router),
    V0_4(v0_4::Router),
}

/// An instantiated, initialised policy in its own `Store`.
pub struct WarmInstance {
    store: Store<HostState>,
    router: Router,
    policy: Arc<LoadedPolicy>,
    call_ticks: u64,
    call_fuel: u64,
    local: LocalStats,
    /// This instance's own copy of the decision header value (a per-worker
    /// copy, so cloning it per request touches no shared cache line).
    header: http::HeaderValue,
    /// Buffers the candidates are packed into, reused call after call.
    words: Vec<u32>,
    health: Vec<ServerHealth>,
    /// The seed it was made with, to make its replacement with.
    seed: Option<u64>,
    /// Calls it has answered.
    calls_made: u64,
    /// Memory size beyond which it is replaced by a fresh instance between
    /// calls: three quarters of the way from its size after `init` to its
    /// cap.
    recycle_at: usize,
}

/// Calls an instance serves at least before it is recycled: a policy that
/// grows most of its headroom in a call or two is re-instantiated at most
/// once in this many calls (it traps at its cap in between).
const RECYCLE_MIN_CALLS: u64 = 16;

impl WarmInstance {
    /// An instance of `policy` under the limits it runs with
    /// (`policy.sandbox`).
    pub(super) fn new(
        engine: &Engine,
        seed: Option<u64>,
        policy: &Arc<LoadedPolicy>,
    ) -> Result<Self, PolicyError> {
        let sandbox = policy.sandbox;
        let (instance, headers) =
            off_runtime(policy.wasi, || Self::create(engine, sandbox, seed, policy))?;
        // The first instance's manifest is the policy's; a policy must not
        // change its needs from instance to instance (the engine gathers
        // what the first declared).
        let declared = policy.headers.get_or_init(|| headers.clone());
        if *declared != headers {
            return Err(PolicyError::Init {
                name: policy.name.clone(),
                message: format!(
                    "an instance declared the headers {headers:?}, where the first declared \
                     {declared:?}"
                ),
            });
        }
        Ok(instance)
    }

    fn create(
        engine: &Engine,
        sandbox: Sandbox,
        seed: Option<u64>,
        policy: &Arc<LoadedPolicy>,
    ) -> Result<(Self, Vec<String>), PolicyError> {
        let mut store = Store::new(
            engine,
            HostState::new(&policy.name, seed, sandbox.max_memory_bytes),
        );
        store.limiter(|s| &mut s.limits);
        // Instantiation and init get a generous budget of their own.
        let init_ticks = ticks(INIT_BUDGET);
        let init_fuel = Sandbox {
            deadline: INIT_BUDGET,
            ..sandbox
        }
        .call_fuel();
        store.set_epoch_deadline(init_ticks);
        store.set_fuel(init_fuel).expect("fuel is enabled");
        let instantiate_error = |e: wasmtime::Error| PolicyError::Instantiate {
            name: policy.name.clone(),
            message: format!("{e:#}"),
        };
        let (router, init) = match &policy.pre {
            Pre::V0_4(pre) => {
                let router = pre.instantiate(&mut store).map_err(instantiate_error)?;
                let init = router
                    .edgeward_policy_policy()
                    .call_init(&mut store, &policy.config)
                    .map(|r| r.map(|manifest| manifest.headers));
                (Router::V0_4(router), init)
            }
            Pre::V0_3(pre) => {
                let router = pre.instantiate(&mut store).map_err(instantiate_error)?;
                let init = router
                    .edgeward_policy_policy()
                    .call_init(&mut store, &policy.config)
                    .map(|r| r.map(|()| Vec::new()));
                (Router::V0_3(router), init)
            }
        };
        let headers = match init {
            Ok(Ok(headers)) => {
                super::check_declared_headers(&headers).map_err(|message| PolicyError::Init {
                    name: policy.name.clone(),
                    message,
                })?
            }
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
        };
        let mut instance = WarmInstance {
            store,
            router,
            policy: policy.clone(),
            call_ticks: sandbox.call_ticks(),
            call_fuel: sandbox.call_fuel(),
            local: LocalStats::default(),
            header: http::HeaderValue::from_bytes(policy.header.as_bytes())
                .expect("a header value copies into a header value"),
            words: Vec::with_capacity(64),
            health: Vec::new(),
            seed,
            calls_made: 0,
            recycle_at: 0,
        };
        let after_init = instance.store.data().limits.memory_bytes;
        instance.recycle_at =
            after_init + sandbox.max_memory_bytes.saturating_sub(after_init) / 4 * 3;
        Ok((instance, headers))
    }

    /// The policy this instance runs.
    pub fn policy(&self) -> &Arc<LoadedPolicy> {
        &self.policy
    }

    /// `name@version` for the decision header.
    pub fn header(&self) -> &http::HeaderValue {
        &self.header
    }

    /// Calls the policy's `select` for one request, under the deadline.
    /// `topology` must be the snapshot the request and tiers were built from;
    /// `request.seed` seeds the randomness of this call, so two versions
    /// given the same seed draw the same numbers (that is what makes shadow
    /// comparisons of random policies meaningful).
    ///
    /// After an error the instance must be dropped: its `Store` is unusable.
    pub fn select(
        &mut self,
        topology: &Arc<Topology>,
        request: &Request,
        tiers: &[Tier],
    ) -> Result<Decision, CallError> {
        self.recycle_if_grown();
        self.enter(topology, request.seed);
        let contract = match self.router {
            Router::V0_3(_) => Contract::V0_3,
            Router::V0_4(_) => Contract::V0_4,
        };
        super::bindings::pack(contract, request, tiers, &mut self.words, &mut self.health);
        let health = (!self.health.is_empty()).then_some(&self.health[..]);
        let started = self
            .local
            .calls
            .is_multiple_of(TIME_EVERY)
            .then(std::time::Instant::now);
        let (router, store, words) = (&self.router, &mut self.store, &self.words);
        let result = off_runtime(self.policy.wasi, || match router {
            Router::V0_4(r) => r.edgeward_policy_policy().call_select(store, words, health),
            Router::V0_3(r) => select_v0_3(r, store, words, health),
        });
        if let Some(started) = started {
            self.local.nanos += started.elapsed().as_nanos() as u64;
            self.local.timed += 1;
        }
        self.local.calls += 1;
        match result {
            Ok(decision) => {
                if self.local.calls >= FLUSH_EVERY {
                    self.policy.stats.publish(&mut self.local);
                }
                self.calls_made += 1;
                Ok(decision)
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Recycles the instance if its memory has grown past `recycle_at`
    /// (checked before a call, so what a traced call reports is its own).
    #[inline]
    fn recycle_if_grown(&mut self) {
        if self.store.data().limits.memory_bytes > self.recycle_at
            && self.calls_made >= RECYCLE_MIN_CALLS
        {
            self.recycle();
        }
    }

    /// Replaces this instance by a fresh one of the same policy, whose
    /// memory is back to its size after `init`: a policy whose memory
    /// grows call after call (componentize-js's runtime does) would
    /// otherwise trap at its cap and fail a call. If no fresh instance can
    /// be made, this one goes on.
    #[cold]
    #[inline(never)]
    fn recycle(&mut self) {
        let engine = self.store.engine().clone();
        match WarmInstance::new(&engine, self.seed, &self.policy) {
            Ok(mut fresh) => {
                tracing::debug!(
                    policy = %self.policy.name,
                    version = self.policy.version,
                    calls = self.calls_made,
                    memory_mib = self.store.data().limits.memory_bytes as f64 / (1 << 20) as f64,
                    "policy instance recycled"
                );
                self.policy.stats.recycled();
                // What the caller set for the coming call (a replay's fixed
                // clock and logged look-ups, an explanation's capture)
                // carries over; the old instance publishes its counts as it
                // is dropped.
                let (old, new) = (self.store.data_mut(), fresh.store.data_mut());
                new.clock_ms = old.clock_ms;
                new.logged = old.logged.take();
                new.captured = old.captured.take();
                *self = fresh;
            }
            Err(e) => {
                tracing::warn!(policy = %self.policy.name, error = %e, "cannot recycle a policy instance");
                self.recycle_at = usize::MAX;
            }
        }
    }

    /// Calls the policy's `steer` for one content-steering poll, under the
    /// deadline: `tiers` are the client's (their candidates are not
    /// passed), `state` what the policy returned for the session's last
    /// poll. A 0.3.0 policy has no `steer`: the engine's default order.
    ///
    /// After an error the instance must be dropped, as after `select`.
    pub fn steer(
        &mut self,
        topology: &Arc<Topology>,
        request: &Request,
        tiers: &[Tier],
        pathways: &[PathwayOffer],
        state: &[u8],
    ) -> Result<SteerDecision, CallError> {
        if matches!(self.router, Router::V0_3(_)) {
            return Ok(SteerDecision::DefaultOrder);
        }
        self.recycle_if_grown();
        self.enter(topology, request.seed);
        edgeward_codec::encode_steer(request, tiers, pathways, &mut self.words);
        self.local.calls += 1;
        self.calls_made += 1;
        let result = match &self.router {
            Router::V0_4(r) => {
                let (store, words) = (&mut self.store, &self.words);
                off_runtime(self.policy.wasi, || {
                    r.edgeward_policy_policy().call_steer(store, words, state)
                })
            }
            Router::V0_3(_) => return Ok(SteerDecision::DefaultOrder),
        };
        result.map_err(|e| self.failed(e))
    }

    /// Arms the call budget and points the host functions at `topology`
    /// and the call's `seed`.
    fn enter(&mut self, topology: &Arc<Topology>, seed: u64) {
        self.store.set_epoch_deadline(self.call_ticks);
        self.store
            .set_fuel(self.call_fuel)
            .expect("fuel is enabled");
        let state = self.store.data_mut();
        // Keep the snapshot between calls and swap it only when it changes:
        // cloning the shared Arc on every call would bounce its reference
        // count between the cores' caches.
        if !state
            .topology
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, topology))
        {
            state.topology = Some(topology.clone());
        }
        state.reseed(seed);
    }

    /// Counts a failed call and describes it.
    fn failed(&mut self, e: wasmtime::Error) -> CallError {
        let deadline = matches!(
            e.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt | wasmtime::Trap::OutOfFuel)
        );
        self.local.failures += 1;
        self.local.deadline_hits += u64::from(deadline);
        let message = if deadline {
            format!("deadline exceeded ({e:#})")
        } else {
            format!("{e:#}")
        };
        CallError {
            policy: self.policy.name.clone(),
            version: self.policy.version,
            message,
            deadline,
        }
    }

    /// Fixes the clock the policy reads (`host.now-ms`), or lets it run.
    pub fn set_clock(&mut self, ms: Option<u64>) {
        self.store.data_mut().clock_ms = ms;
    }

    /// Where host look-ups answer from: a logged decision's entries (the
    /// table is kept between calls so its buffers are reused; `None`
    /// answers from the call's topology again).
    pub fn logged_topology(&mut self) -> &mut Option<super::LoggedTopology> {
        &mut self.store.data_mut().logged
    }

    /// [`WarmInstance::select`], with what an explanation shows of the
    /// call: the lines the policy logged, the fuel it used and how long it
    /// took.
    pub fn select_traced(
        &mut self,
        topology: &Arc<Topology>,
        request: &Request,
        tiers: &[Tier],
    ) -> (Result<Decision, CallError>, CallTrace) {
        self.recycle_if_grown();
        self.store.data_mut().captured = Some(Vec::new());
        let started = std::time::Instant::now();
        let result = self.select(topology, request, tiers);
        let elapsed = started.elapsed();
        let fuel = self
            .call_fuel
            .saturating_sub(self.store.get_fuel().unwrap_or(0));
        let logs = self.store.data_mut().captured.take().unwrap_or_default();
        (
            result,
            CallTrace {
                logs,
                fuel,
                elapsed_us: elapsed.as_secs_f64() * 1e6,
            },
        )
    }

    /// Counts an answer the engine refused (the caller decides what next).
    pub fn note_invalid(&mut self) {
        self.local.invalid += 1;
    }
}

/// Runs `call` where WASI's host functions may block: they wait on a
/// tokio runtime of their own, which they cannot start from inside a
/// worker's. A policy that imports WASI (a JavaScript one) is called on
/// the calling thread's own call thread when the caller runs on a runtime
/// (one per worker, started at its first such call, so that a call costs
/// two thread hand-offs, not a thread's start and its wasmtime set-up);
/// any other, and any caller off a runtime (the offline tools), right here.
pub(super) fn off_runtime<R: Send>(wasi: bool, call: impl FnOnce() -> R + Send) -> R {
    if !wasi || tokio::runtime::Handle::try_current().is_err() {
        return call();
    }
    thread_local! {
        static CALL_THREAD: Option<rayon_core::ThreadPool> = rayon_core::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "policy-call".into())
            .build()
            .map_err(|e| tracing::error!(error = %e, "cannot start a policy call thread"))
            .ok();
    }
    let mut call = Some(call);
    let ran = CALL_THREAD.with(|pool| {
        pool.as_ref()
            .map(|pool| pool.install(|| (call.take().expect("called once"))()))
    });
    match ran {
        Some(r) => r,
        // No thread to be had: a short-lived one, as a last resort.
        None => std::thread::scope(
            |s| match s.spawn(call.take().expect("called once")).join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            },
        ),
    }
}

/// A 0.3.0 policy's `select`, out of the hot path of 0.4.0's (its health
/// records are 0.4.0's, field for field, in 0.3.0's types).
#[cold]
#[inline(never)]
fn select_v0_3(
    router: &v0_3::Router,
    store: &mut Store<HostState>,
    words: &[u32],
    health: Option<&[ServerHealth]>,
) -> wasmtime::Result<Decision> {
    use v0_3::edgeward::policy::types as old;
    let health: Option<Vec<old::ServerHealth>> = health.map(|h| {
        h.iter()
            .map(|s| old::ServerHealth {
                server: s.server,
                health: old::Health {
                    rtt_us: s.health.rtt_us,
                    figures: s
                        .health
                        .figures
                        .iter()
                        .map(|f| old::Figure {
                            name: f.name.clone(),
                            value: f.value,
                        })
                        .collect(),
                },
            })
            .collect()
    });
    router
        .edgeward_policy_policy()
        .call_select(store, words, health.as_deref())
        .map(from_v0_3::decision)
}

/// What an explained call did besides answering.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallTrace {
    /// Lines the policy logged during the call.
    pub logs: Vec<String>,
    /// Fuel (wasm instructions, roughly) the call used.
    pub fuel: u64,
    /// How long the call took, in microseconds.
    pub elapsed_us: f64,
}

impl Drop for WarmInstance {
    fn drop(&mut self) {
        self.policy.stats.publish(&mut self.local);
    }
}
