//! The policy host: loads WebAssembly routing policies and runs them.
//!
//! A policy becomes a [`LoadedPolicy`] through [`PolicyHost::compile`]:
//! compile the component, instantiate it, call its `init` with its
//! configuration. (The acceptance check on sample requests, which needs the
//! request path, is [`crate::routing::acceptance`]; [`crate::control`] runs
//! both before it [`PolicyHost::register`]s a version.) The request
//! path never instantiates: each worker thread keeps a [`WarmInstance`] of
//! the active policy and replaces it only when the active version changes
//! or after a failure (a `Store` that trapped is never reused).
//!
//! Every call runs under a CPU budget and a memory cap, so a policy that
//! loops or grows without bound fails that call instead of taking the worker
//! down. The budget is counted in fuel (wasm instructions), which is
//! deterministic: a worker thread that the OS happens to deschedule does not
//! make a well-behaved policy miss its deadline. Epoch interruption (one
//! ticker thread) adds a wall-clock backstop at ten times the deadline (at
//! least one second).

pub mod bindings;
pub mod component;
mod instance;
pub mod native;
mod registry;
pub mod signing;
mod state;
pub mod stats;
mod wasi;

pub use instance::{CallError, CallTrace, WarmInstance};
pub use registry::{
    AutoRollback, Canary, Disagreement, Fallback, PolicyInfo, RoutingError, RoutingState, Shadow,
    ShadowReport,
};
pub use state::{HostState, LoggedTopology, LookupTables};

use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

/// Why a policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The bytes are not a valid component for this engine.
    #[error("policy {name:?} is not a valid WebAssembly component: {message}")]
    Compile {
        /// Policy name.
        name: String,
        /// What wasmtime said.
        message: String,
    },
    /// The component does not fit the `edgeward:policy/router` world.
    #[error(
        "policy {name:?} cannot be instantiated (this engine loads edgeward:policy@0.4.0 and \
         @0.3.0): {message}"
    )]
    Instantiate {
        /// Policy name.
        name: String,
        /// What wasmtime said.
        message: String,
    },
    /// `init` trapped or returned an error.
    #[error("policy {name:?} refused its configuration: {message}")]
    Init {
        /// Policy name.
        name: String,
        /// The policy's own message, or the trap.
        message: String,
    },
    /// The policy failed on a sample request.
    #[error("policy {name:?} failed the acceptance check: {message}")]
    Samples {
        /// Policy name.
        name: String,
        /// What failed.
        message: String,
    },
    /// The limits stored with it are out of range.
    #[error("policy {name:?}: {message}")]
    Limits {
        /// Policy name.
        name: String,
        /// Which limit, and why.
        message: String,
    },
    /// Its signature is missing, wrong or not from a trusted key.
    #[error("policy {name:?} is refused: {message}")]
    Signature {
        /// Policy name.
        name: String,
        /// What is wrong with its signature.
        message: String,
    },
    /// The configuration file is malformed.
    #[error("policy configuration {path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Limits every policy runs under.
#[derive(Debug, Clone, Copy)]
pub struct Sandbox {
    /// Longest a single call may run.
    pub deadline: Duration,
    /// Largest linear memory an instance may grow to.
    pub max_memory_bytes: usize,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox {
            deadline: Duration::from_millis(5),
            max_memory_bytes: 16 << 20,
        }
    }
}

/// Limits stored with one policy (its upload, its etcd record), which
/// replace the host's [`Sandbox`] for that policy's calls: a JavaScript
/// policy burns about 90 times the fuel of a Rust one per call and its JS
/// engine needs more than 16 MiB, so one host-wide setting cannot suit
/// both. A field left out takes the host's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Longest a call may run (it sets the call's fuel), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Largest memory an instance may grow to, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
}

/// The least deadline of a policy that carries a language runtime (a
/// JavaScript one), when its limits do not set one: its calls burn fuel by
/// the hundred thousand (measured: 0.5 M for `nearest`, 98 k for a select
/// that returns a constant), and its garbage collector's pauses, which
/// fall on some calls, burn up to ~6 M: 25 ms is 12.5 M.
pub const RUNTIME_DEADLINE: Duration = Duration::from_millis(25);
/// The least memory cap of such a policy, when its limits do not set one:
/// its runtime starts at a few MiB and grows call after call (an instance
/// is recycled before it reaches its cap; see `instance::recycle`), so a
/// larger cap means fewer re-instantiations.
pub const RUNTIME_MEMORY: usize = 64 << 20;

/// The range a stored deadline must be in, in milliseconds: a redirect
/// that waits a second for its policy is already a failed one.
pub const DEADLINE_MS_RANGE: std::ops::RangeInclusive<u64> = 1..=1000;
/// The range a stored memory cap must be in, in MiB (every worker holds an
/// instance, so the cap is multiplied by the workers).
pub const MEMORY_MIB_RANGE: std::ops::RangeInclusive<u64> = 1..=1024;

impl Limits {
    /// Whether no field is set (the host's sandbox applies).
    pub fn is_default(&self) -> bool {
        *self == Limits::default()
    }

    /// Checks the ranges; the error names the field and the value.
    pub fn check(&self) -> Result<(), String> {
        let out_of = |field: &str, v: u64, r: &std::ops::RangeInclusive<u64>, unit: &str| {
            format!(
                "limits.{field}: {v} is out of range ({}–{} {unit})",
                r.start(),
                r.end()
            )
        };
        if let Some(v) = self.deadline_ms
            && !DEADLINE_MS_RANGE.contains(&v)
        {
            return Err(out_of("deadline_ms", v, &DEADLINE_MS_RANGE, "ms"));
        }
        if let Some(v) = self.memory_mib
            && !MEMORY_MIB_RANGE.contains(&v)
        {
            return Err(out_of("memory_mib", v, &MEMORY_MIB_RANGE, "MiB"));
        }
        Ok(())
    }

    /// Reads `deadline_ms` and `memory_mib` from a query string (a raw
    /// `.wasm` upload's); other parameters are left to the caller.
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut limits = Limits::default();
        for (key, value) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            let field = match key {
                "deadline_ms" => &mut limits.deadline_ms,
                "memory_mib" => &mut limits.memory_mib,
                _ => continue,
            };
            *field = Some(value.parse().map_err(|_| {
                format!(
                    "limits.{key}: {:?} is not a whole number",
                    value.chars().take(32).collect::<String>()
                )
            })?);
        }
        limits.check()?;
        Ok(limits)
    }

    /// A short text for listings: `deadline 50 ms, memory 64 MiB`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = self.deadline_ms {
            parts.push(format!("deadline {v} ms"));
        }
        if let Some(v) = self.memory_mib {
            parts.push(format!("memory {v} MiB"));
        }
        parts.join(", ")
    }
}

/// Granularity of the wall-clock backstop. The backstop is at least a
/// second, so ticking every 10 ms is precise enough, and a tenth of the
/// wake-ups of a 1 ms ticker on a busy machine.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Fuel (roughly, wasm instructions) a call gets per millisecond of
/// deadline: a conservative ~0.5 instruction per nanosecond.
const FUEL_PER_MS: u64 = 500_000;
/// The wall-clock backstop, as a multiple of the deadline...
const BACKSTOP_FACTOR: u32 = 10;
/// ...and never less than this: fuel already bounds the CPU a call may use,
/// the backstop only catches a call stuck for other reasons, and it must
/// not fire on a thread the OS merely descheduled for a while.
const BACKSTOP_MIN: Duration = Duration::from_secs(1);
/// Budget of instantiation and `init`, which may build tables.
const INIT_BUDGET: Duration = Duration::from_secs(1);

impl Sandbox {
    /// This sandbox with a policy's own limits in place of its values.
    pub fn with(self, limits: &Limits) -> Sandbox {
        Sandbox {
            deadline: limits
                .deadline_ms
                .map_or(self.deadline, Duration::from_millis),
            max_memory_bytes: limits
                .memory_mib
                .map_or(self.max_memory_bytes, |mib| (mib as usize) << 20),
        }
    }

    /// The sandbox of a component that carries a language runtime (one
    /// that imports WASI: componentize-js's), unless its own limits say
    /// otherwise: at least [`RUNTIME_DEADLINE`] and [`RUNTIME_MEMORY`].
    pub fn for_runtime(self) -> Sandbox {
        Sandbox {
            deadline: self.deadline.max(RUNTIME_DEADLINE),
            max_memory_bytes: self.max_memory_bytes.max(RUNTIME_MEMORY),
        }
    }

    /// Fuel for one call.
    fn call_fuel(&self) -> u64 {
        (self.deadline.as_micros() as u64 * FUEL_PER_MS / 1000).max(10_000)
    }

    /// Epoch ticks for one call's wall-clock backstop.
    fn call_ticks(&self) -> u64 {
        ticks((self.deadline * BACKSTOP_FACTOR).max(BACKSTOP_MIN))
    }
}

fn ticks(d: Duration) -> u64 {
    (d.as_micros() / EPOCH_TICK.as_micros()) as u64 + 1
}

/// A policy that compiled, instantiated and accepted its configuration.
pub struct LoadedPolicy {
    /// Operator-given name (file stem, or `nearest` for the built-in).
    pub name: String,
    /// SHA-256 of the component bytes (hex).
    pub hash: String,
    /// Version number assigned when it was loaded (increases per host).
    pub version: u64,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Its configuration, as the MessagePack bytes passed to `init`.
    pub config: Vec<u8>,
    /// The limits stored with it (unset fields: the host's).
    pub limits: Limits,
    /// What its calls run under: the host's sandbox with its limits.
    pub sandbox: Sandbox,
    /// Who signed it (none: unsigned, or the built-in policy).
    pub signed: Option<signing::Signed>,
    /// Call statistics, summed over all workers.
    pub stats: stats::PolicyStats,
    /// `name@version`, ready for the decision header.
    pub header: http::HeaderValue,
    /// The request headers it declared in its manifest (0.4.0), lower
    /// case, in order: set by its first instance (see
    /// [`LoadedPolicy::headers`]).
    headers: std::sync::OnceLock<Vec<String>>,
    pre: Pre,
    /// It imports WASI (a JavaScript policy): its calls run off the tokio
    /// runtime (see `instance::off_runtime`).
    pub(crate) wasi: bool,
}

/// A policy's pre-instantiated component, by the contract it was built
/// for.
#[derive(Clone)]
pub(crate) enum Pre {
    V0_3(bindings::v0_3::RouterPre<HostState>),
    V0_4(bindings::v0_4::RouterPre<HostState>),
}

impl Pre {
    /// The contract.
    pub(crate) fn contract(&self) -> bindings::Contract {
        match self {
            Pre::V0_3(_) => bindings::Contract::V0_3,
            Pre::V0_4(_) => bindings::Contract::V0_4,
        }
    }
}

/// At most this many headers a policy may declare.
pub const MAX_DECLARED_HEADERS: usize = 16;

/// The declared header names of a manifest, checked: at most
/// [`MAX_DECLARED_HEADERS`], each a valid HTTP field name, lower-cased,
/// no repeats.
pub fn check_declared_headers(names: &[String]) -> Result<Vec<String>, String> {
    if names.len() > MAX_DECLARED_HEADERS {
        return Err(format!(
            "its manifest declares {} headers; at most {MAX_DECLARED_HEADERS} may be declared",
            names.len()
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let lower = name.to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(format!(
                "its manifest declares header {:?}, which is not a valid HTTP header name",
                name.chars().take(64).collect::<String>()
            ));
        }
        if out.contains(&lower) {
            return Err(format!("its manifest declares header {lower:?} twice"));
        }
        out.push(lower);
    }
    Ok(out)
}

impl LoadedPolicy {
    /// `name@version`, as shown in logs and the decision header.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The contract it was built for.
    pub fn contract(&self) -> bindings::Contract {
        self.pre.contract()
    }

    /// The request headers its manifest declared, lower case, in order.
    pub fn headers(&self) -> &[String] {
        self.headers.get().map_or(&[], Vec::as_slice)
    }
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("name", &self.name)
            .field("hash", &self.hash)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// The wasmtime engine, the linker with our host functions, and the active
/// policy.
pub struct PolicyHost {
    engine: Engine,
    linker: Linker<HostState>,
    sandbox: Sandbox,
    seed: Option<u64>,
    next_version: std::sync::atomic::AtomicU64,
    /// Which versions serve (active, canary, shadow), read per request.
    routing: ArcSwap<RoutingState>,
    /// Every loaded version and the activation history (writers only).
    catalog: std::sync::Mutex<registry::Catalog>,
    /// What answers a request whose policy call failed.
    pub fallback: Fallback,
    /// Consecutive failures of a newly activated version that roll it back.
    pub rollback_after: u64,
    /// Compiled components by SHA-256 of their bytes: loading the same
    /// component again (a re-upload, a version from etcd that this node
    /// already checked, a restart) skips compilation.
    compiled: CompiledCache,
    /// Where a version failing `rollback_after` calls in a row is reported
    /// (the configuration door, set when the engine is wired); without it,
    /// the version is rolled back here and now.
    on_failing: std::sync::OnceLock<FailureHook>,
    /// The keys a policy must be signed by (none: signatures optional).
    trust: signing::Trust,
}

/// Receives `(version, consecutive failures)` from the request path.
pub type FailureHook = Box<dyn Fn(u64, u64) + Send + Sync>;

/// Compiled components: the last few in memory, and every one on disk when
/// a cache directory is set (keyed by content hash and by what wasmtime
/// needs to stay compatible: its version and this engine's settings).
struct CompiledCache {
    memory: std::sync::Mutex<Vec<(String, Component)>>,
    dir: Option<std::path::PathBuf>,
}

impl CompiledCache {
    fn new(dir: Option<std::path::PathBuf>) -> Self {
        if let Some(dir) = &dir {
            use std::os::unix::fs::DirBuilderExt;
            // Private: what is in it is loaded as native code.
            if let Err(e) = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
            {
                tracing::warn!("policy cache {}: {e}; compiling every time", dir.display());
            }
        }
        CompiledCache {
            memory: std::sync::Mutex::new(Vec::new()),
            dir,
        }
    }

    fn get_or_compile(
        &self,
        engine: &Engine,
        hash: &str,
        wasm: &[u8],
        name: &str,
    ) -> Result<Component, PolicyError> {
        let memory = |c: &Component| {
            let mut m = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            if m.len() >= COMPILED_KEPT {
                m.remove(0);
            }
            m.push((hash.to_string(), c.clone()));
        };
        {
            let m = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, c)) = m.iter().find(|(h, _)| h == hash) {
                return Ok(c.clone());
            }
        }
        let file = self.dir.as_ref().map(|dir| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            dir.join(format!("{hash}-{:016x}.cwasm", h.finish()))
        });
        if let Some(file) = &file {
            match crate::durable::read_sealed(file) {
                Ok(None) => {}
                Ok(Some(crate::durable::Sealed::Verified(bytes))) => {
                    // SAFETY: the bytes are what `Component::serialize` of
                    // an engine with the same compatibility hash (it is in
                    // the name) wrote into a directory private to this
                    // user, verified against the SHA-256 sealed with them;
                    // wasmtime checks their header and version too.
                    #[allow(unsafe_code)]
                    let loaded = unsafe { Component::deserialize(engine, &bytes) };
                    match loaded {
                        Ok(c) => {
                            memory(&c);
                            return Ok(c);
                        }
                        Err(e) => tracing::warn!(
                            "policy cache {}: {e:#}; compiling again",
                            file.display()
                        ),
                    }
                }
                Ok(Some(crate::durable::Sealed::Unsealed(_))) => tracing::info!(
                    "policy cache {}: written without a seal (an older engine); compiling again",
                    file.display()
                ),
                Err(e) => tracing::warn!("policy cache {e}; compiling again"),
            }
        }
        let component = component::of(wasm, name)?;
        let c = Component::new(engine, &component).map_err(|e| PolicyError::Compile {
            name: name.to_string(),
            message: format!("{e:#}"),
        })?;
        if let Some(file) = &file {
            let written = c
                .serialize()
                .map_err(std::io::Error::other)
                .and_then(|bytes| crate::durable::write_sealed(file, &bytes));
            if let Err(e) = written {
                tracing::warn!("policy cache {}: {e}", file.display());
            }
        }
        memory(&c);
        Ok(c)
    }
}

/// What a worker's [`RoutingCache`] reads through.
pub struct HostHandle(Arc<PolicyHost>);

impl std::ops::Deref for HostHandle {
    type Target = ArcSwap<RoutingState>;
    fn deref(&self) -> &ArcSwap<RoutingState> {
        &self.0.routing
    }
}

/// A worker's own handle on the routing state.
pub type RoutingCache = arc_swap::cache::Cache<HostHandle, Arc<RoutingState>>;

/// Version number of the policy a host starts with.
const FIRST_VERSION: u64 = 1;
/// Compiled components kept in memory.
const COMPILED_KEPT: usize = 16;

impl PolicyHost {
    /// Creates the host and loads `initial` as the active policy.
    pub fn new(
        sandbox: Sandbox,
        seed: Option<u64>,
        initial: PolicySource,
        fallback: Fallback,
        rollback_after: u64,
    ) -> Result<Arc<Self>, PolicyError> {
        Self::with_cache(
            sandbox,
            seed,
            initial,
            fallback,
            rollback_after,
            None,
            signing::Trust::default(),
        )
    }

    /// [`PolicyHost::new`], keeping compiled components in `cache_dir` so
    /// that restarts and re-uploads skip compilation, and admitting only
    /// policies signed by one of the `trust` keys when it has any.
    pub fn with_cache(
        sandbox: Sandbox,
        seed: Option<u64>,
        initial: PolicySource,
        fallback: Fallback,
        rollback_after: u64,
        cache_dir: Option<std::path::PathBuf>,
        trust: signing::Trust,
    ) -> Result<Arc<Self>, PolicyError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).expect("the wasmtime configuration is valid");

        let mut linker = Linker::new(&engine);
        bindings::v0_4::Router::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .expect("host functions link");
        bindings::v0_3::Router::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .expect("host functions of 0.3.0 link");
        // What JavaScript policies import (locked down: see `wasi`).
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("WASI links");

        // One ticker advances the epoch for every store of this engine.
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("policy-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .expect("spawning the epoch ticker");

        let compiled = CompiledCache::new(cache_dir);
        let first = Self::compile_and_check(
            &engine,
            &linker,
            &compiled,
            (sandbox, &trust),
            seed,
            initial,
            FIRST_VERSION,
        )?;
        Ok(Arc::new(PolicyHost {
            engine,
            linker,
            sandbox,
            seed,
            next_version: (FIRST_VERSION + 1).into(),
            routing: ArcSwap::from_pointee(RoutingState::new(first.clone())),
            catalog: std::sync::Mutex::new(registry::Catalog::new(first)),
            fallback,
            rollback_after: rollback_after.max(1),
            compiled,
            on_failing: std::sync::OnceLock::new(),
            trust,
        }))
    }

    /// The version number for a new policy: `wanted` (etcd's revision of
    /// the policy, the same on every node) or the next local one. Later
    /// local numbers stay above any wanted one.
    pub fn next_version(&self, wanted: Option<u64>) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        match wanted {
            Some(v) => {
                self.next_version.fetch_max(v + 1, Relaxed);
                v
            }
            None => self.next_version.fetch_add(1, Relaxed),
        }
    }

    /// Compiles, instantiates and initialises a policy as `version`,
    /// without adding it to the catalogue (version 0: only a check).
    pub fn compile(
        &self,
        source: PolicySource,
        version: u64,
    ) -> Result<Arc<LoadedPolicy>, PolicyError> {
        Self::compile_and_check(
            &self.engine,
            &self.linker,
            &self.compiled,
            (self.sandbox, &self.trust),
            self.seed,
            source,
            version,
        )
    }

    /// Sends failing versions to `hook` (once, at start) instead of rolling
    /// them back here.
    pub fn on_failing(&self, hook: FailureHook) {
        let _ = self.on_failing.set(hook);
    }

    /// Called by a worker when `version` has failed `failures` calls in a
    /// row (at least `rollback_after`).
    pub fn report_failing(&self, version: u64, failures: u64) {
        match self.on_failing.get() {
            Some(hook) => hook(version, failures),
            None => {
                self.auto_rollback(version, failures);
            }
        }
    }

    /// Which versions serve requests now (one lock-free load per request).
    #[inline]
    pub fn routing(&self) -> arc_swap::Guard<Arc<RoutingState>> {
        self.routing.load()
    }

    /// A cached handle on the routing state for one worker (see
    /// [`crate::topology::store::TopologyCache`]).
    pub fn routing_cache(self: &Arc<Self>) -> RoutingCache {
        arc_swap::cache::Cache::new(HostHandle(self.clone()))
    }

    /// The active policy.
    pub fn active(&self) -> Arc<LoadedPolicy> {
        self.routing.load().active.clone()
    }

    /// A fresh, initialised instance of `policy` for one worker.
    pub fn instantiate(&self, policy: &Arc<LoadedPolicy>) -> Result<WarmInstance, PolicyError> {
        WarmInstance::new(&self.engine, self.seed, policy)
    }

    fn compile_and_check(
        engine: &Engine,
        linker: &Linker<HostState>,
        compiled: &CompiledCache,
        (sandbox, trust): (Sandbox, &signing::Trust),
        seed: Option<u64>,
        source: PolicySource,
        version: u64,
    ) -> Result<Arc<LoadedPolicy>, PolicyError> {
        let started = Instant::now();
        let name: String = source
            .name
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
        let hash = crate::sha256_hex(&source.wasm);
        source
            .limits
            .check()
            .map_err(|message| PolicyError::Limits {
                name: name.clone(),
                message,
            })?;
        // The signature first: bytes nobody trusted are not compiled.
        let signed = match source.wasm == crate::builtin::NEAREST {
            true => None,
            false => trust
                .admit(source.signature.as_deref(), &name, &source.wasm)
                .map_err(|message| PolicyError::Signature {
                    name: name.clone(),
                    message,
                })?,
        };
        component::check(&source.wasm, &name)?;
        let component = compiled.get_or_compile(engine, &hash, &source.wasm, &name)?;
        let pre = pre_instantiate(engine, linker, &component, &name)?;
        let wasi = component
            .component_type()
            .imports(engine)
            .any(|(import, _)| import.starts_with("wasi:"));
        let policy = Arc::new(LoadedPolicy {
            wasi,
            name: name.clone(),
            hash,
            version,
            loaded_at: SystemTime::now(),
            config: source.config,
            limits: source.limits,
            sandbox: if wasi { sandbox.for_runtime() } else { sandbox }.with(&source.limits),
            signed,
            stats: Default::default(),
            header: http::HeaderValue::from_str(&format!("{name}@{version}"))
                .unwrap_or_else(|_| http::HeaderValue::from_static("policy")),
            headers: Default::default(),
            pre,
        });
        // Instantiating and initialising once proves the policy can serve,
        // and gives its manifest.
        WarmInstance::new(engine, seed, &policy)?;
        tracing::info!(
            policy = %policy.name,
            version,
            contract = policy.contract().name(),
            headers = ?policy.headers(),
            hash = %policy.hash,
            limits = %policy.limits.describe(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "policy loaded"
        );
        Ok(policy)
    }
}

/// The component pre-instantiated against the contract it exports: 0.4.0,
/// else 0.3.0; neither is refused with what it does export.
fn pre_instantiate(
    engine: &Engine,
    linker: &Linker<HostState>,
    component: &Component,
    name: &str,
) -> Result<Pre, PolicyError> {
    let refuse = |message: String| PolicyError::Instantiate {
        name: name.to_string(),
        message,
    };
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| refuse(format!("{e:#}")))?;
    let v4 = match bindings::v0_4::RouterPre::new(pre.clone()) {
        Ok(p) => return Ok(Pre::V0_4(p)),
        Err(e) => e,
    };
    if let Ok(p) = bindings::v0_3::RouterPre::new(pre) {
        return Ok(Pre::V0_3(p));
    }
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    Err(refuse(
        if exports.iter().any(|e| e.starts_with("edgeward:policy/")) {
            format!(
                "it exports {}, and not the `edgeward:policy/policy` interface of a contract this \
             engine loads ({v4:#})",
                exports.join(", ")
            )
        } else {
            format!(
                "it exports no `edgeward:policy/policy` interface (its exports: {})",
                if exports.is_empty() {
                    "none".to_string()
                } else {
                    exports.join(", ")
                }
            )
        },
    ))
}

/// Where a policy comes from: its name, component bytes and configuration.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// Name for logs and listings.
    pub name: String,
    /// The component.
    pub wasm: Vec<u8>,
    /// MessagePack configuration for `init`.
    pub config: Vec<u8>,
    /// Its own fuel/deadline and memory limits.
    pub limits: Limits,
    /// Its signature, if it came with one.
    pub signature: Option<Box<signing::PolicySignature>>,
}

impl PolicySource {
    /// The built-in default policy (`policies/nearest`), embedded in the binary.
    pub fn builtin_nearest() -> Self {
        PolicySource {
            name: "nearest".into(),
            wasm: crate::builtin::NEAREST.to_vec(),
            config: empty_config(),
            limits: Limits::default(),
            signature: None,
        }
    }

    /// Reads a component file, its signature (`FILE.sig`) if there is one
    /// and, optionally, its TOML or JSON configuration.
    pub fn from_files(
        wasm: &std::path::Path,
        config: Option<&std::path::Path>,
    ) -> Result<Self, PolicyError> {
        let bytes = std::fs::read(wasm).map_err(|source| PolicyError::Io {
            path: wasm.display().to_string(),
            source,
        })?;
        let config = match config {
            Some(path) => config_from_file(path)?,
            None => empty_config(),
        };
        let name = wasm
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "policy".into());
        let signature = signing::read_beside(wasm)
            .map_err(|message| PolicyError::Signature {
                name: name.clone(),
                message,
            })?
            .map(Box::new);
        Ok(PolicySource {
            name,
            wasm: bytes,
            config,
            limits: Limits::default(),
            signature,
        })
    }
}

/// MessagePack for an empty map: the configuration of a policy given none.
pub fn empty_config() -> Vec<u8> {
    vec![0x80]
}

/// Reads a policy configuration written as TOML (`.toml`) or JSON (anything
/// else that parses as JSON) and encodes it as MessagePack.
pub fn config_from_file(path: &std::path::Path) -> Result<Vec<u8>, PolicyError> {
    let value = config_value_from_file(path)?;
    rmp_serde::to_vec_named(&value).map_err(|e| PolicyError::Config {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Reads a policy configuration written as TOML (`.toml`) or JSON; it must
/// be a table/object.
pub fn config_value_from_file(path: &std::path::Path) -> Result<serde_json::Value, PolicyError> {
    let err = |message: String| PolicyError::Config {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    let value: serde_json::Value = if is_toml {
        toml::from_str(&text).map_err(|e| err(format!("invalid TOML: {e}")))?
    } else {
        serde_json::from_str(&text).map_err(|e| err(format!("invalid JSON: {e}")))?
    };
    if !value.is_object() {
        return Err(err("the configuration must be a table/object".into()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_replace_only_the_fields_they_set() {
        let host = Sandbox::default();
        let both = host.with(&Limits {
            deadline_ms: Some(50),
            memory_mib: Some(64),
        });
        assert_eq!(both.deadline, Duration::from_millis(50));
        assert_eq!(both.max_memory_bytes, 64 << 20);
        let memory_only = host.with(&Limits {
            deadline_ms: None,
            memory_mib: Some(32),
        });
        assert_eq!(memory_only.deadline, host.deadline);
        assert_eq!(memory_only.max_memory_bytes, 32 << 20);
        let none = host.with(&Limits::default());
        assert_eq!(none.deadline, host.deadline);
        assert_eq!(none.max_memory_bytes, host.max_memory_bytes);
        // The deadline is the fuel: ten times the deadline, ten times the fuel.
        assert_eq!(
            host.with(&Limits {
                deadline_ms: Some(50),
                memory_mib: None
            })
            .call_fuel(),
            10 * host.call_fuel()
        );
    }

    #[test]
    fn limits_out_of_range_name_field_and_value() {
        let err = Limits {
            deadline_ms: Some(0),
            memory_mib: None,
        }
        .check()
        .unwrap_err();
        assert_eq!(err, "limits.deadline_ms: 0 is out of range (1–1000 ms)");
        let err = Limits {
            deadline_ms: Some(5),
            memory_mib: Some(4096),
        }
        .check()
        .unwrap_err();
        assert_eq!(err, "limits.memory_mib: 4096 is out of range (1–1024 MiB)");
        assert!(
            Limits {
                deadline_ms: Some(1000),
                memory_mib: Some(1)
            }
            .check()
            .is_ok()
        );
    }

    #[test]
    fn limits_from_a_query_string() {
        let limits = Limits::from_query("activate=true&deadline_ms=20&memory_mib=64").unwrap();
        assert_eq!(
            limits,
            Limits {
                deadline_ms: Some(20),
                memory_mib: Some(64)
            }
        );
        assert!(Limits::from_query("activate=true").unwrap().is_default());
        assert_eq!(
            Limits::from_query("deadline_ms=fast").unwrap_err(),
            "limits.deadline_ms: \"fast\" is not a whole number"
        );
        assert_eq!(
            Limits::from_query("memory_mib=0").unwrap_err(),
            "limits.memory_mib: 0 is out of range (1–1024 MiB)"
        );
    }

    #[test]
    fn limits_serialise_only_what_is_set() {
        assert_eq!(serde_json::to_string(&Limits::default()).unwrap(), "{}");
        let parsed: Limits = serde_json::from_str(r#"{"deadline_ms": 30}"#).unwrap();
        assert_eq!(parsed.deadline_ms, Some(30));
        assert!(serde_json::from_str::<Limits>(r#"{"deadline": 30}"#).is_err());
    }
}
