//! The policy host: loads WebAssembly routing policies and runs them.
//!
//! A policy goes through one door, [`PolicyHost::load`]: compile the
//! component, instantiate it, call its `init` with its configuration. Only
//! a policy that passes all three becomes a [`LoadedPolicy`]. The request
//! path never instantiates: each worker thread keeps a [`WarmInstance`] of
//! the active policy and replaces it only when the active version changes
//! or after a failure (a `Store` that trapped is never reused).
//!
//! Every call runs under a deadline (epoch interruption, driven by one
//! ticker thread) and a memory cap, so a policy that loops or grows without
//! bound fails that call instead of taking the worker down.

pub mod bindings;
mod instance;
mod state;

pub use instance::{CallError, WarmInstance};
pub use state::HostState;

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
        "policy {name:?} cannot be instantiated (does it target edgeward:policy@0.1.0?): {message}"
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

/// Granularity of call deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(1);

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
    pre: bindings::RouterPre<HostState>,
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
    active: ArcSwap<LoadedPolicy>,
    next_version: std::sync::atomic::AtomicU64,
}

impl PolicyHost {
    /// Creates the host and loads `initial` as the active policy.
    pub fn new(
        sandbox: Sandbox,
        seed: Option<u64>,
        initial: PolicySource,
    ) -> Result<Arc<Self>, PolicyError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).expect("the wasmtime configuration is valid");

        let mut linker = Linker::new(&engine);
        bindings::Router::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .expect("host functions link");

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

        let mut next_version = 1;
        let first =
            Self::compile_and_check(&engine, &linker, sandbox, seed, initial, next_version)?;
        next_version += 1;
        Ok(Arc::new(PolicyHost {
            engine,
            linker,
            sandbox,
            seed,
            active: ArcSwap::new(first),
            next_version: next_version.into(),
        }))
    }

    /// Compiles, instantiates and initialises a policy, without activating it.
    pub fn load(&self, source: PolicySource) -> Result<Arc<LoadedPolicy>, PolicyError> {
        let version = self
            .next_version
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self::compile_and_check(
            &self.engine,
            &self.linker,
            self.sandbox,
            self.seed,
            source,
            version,
        )
    }

    /// Makes `policy` the active one; the next request of every worker uses it.
    pub fn activate(&self, policy: Arc<LoadedPolicy>) {
        self.active.store(policy);
    }

    /// The active policy.
    #[inline]
    pub fn active(&self) -> arc_swap::Guard<Arc<LoadedPolicy>> {
        self.active.load()
    }

    /// A fresh, initialised instance of `policy` for one worker.
    pub fn instantiate(&self, policy: &Arc<LoadedPolicy>) -> Result<WarmInstance, PolicyError> {
        WarmInstance::new(&self.engine, self.sandbox, self.seed, policy)
    }

    fn compile_and_check(
        engine: &Engine,
        linker: &Linker<HostState>,
        sandbox: Sandbox,
        seed: Option<u64>,
        source: PolicySource,
        version: u64,
    ) -> Result<Arc<LoadedPolicy>, PolicyError> {
        let started = Instant::now();
        let name = source.name;
        let component = Component::new(engine, &source.wasm).map_err(|e| PolicyError::Compile {
            name: name.clone(),
            message: format!("{e:#}"),
        })?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(bindings::RouterPre::new)
            .map_err(|e| PolicyError::Instantiate {
                name: name.clone(),
                message: format!("{e:#}"),
            })?;
        let policy = Arc::new(LoadedPolicy {
            name,
            hash: fingerprint(&source.wasm),
            version,
            loaded_at: SystemTime::now(),
            config: source.config,
            pre,
        });
        // Instantiating and initialising once proves the policy can serve.
        WarmInstance::new(engine, sandbox, seed, &policy)?;
        tracing::info!(
            policy = %policy.name,
            version,
            hash = %policy.hash,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "policy loaded"
        );
        Ok(policy)
    }
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
}

impl PolicySource {
    /// The built-in default policy (`policies/nearest`), embedded in the binary.
    pub fn builtin_nearest() -> Self {
        PolicySource {
            name: "nearest".into(),
            wasm: crate::builtin::NEAREST.to_vec(),
            config: empty_config(),
        }
    }

    /// Reads a component file and, optionally, its TOML or JSON configuration.
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
        Ok(PolicySource {
            name,
            wasm: bytes,
            config,
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
    rmp_serde::to_vec_named(&value).map_err(|e| err(e.to_string()))
}

/// SHA-256 of the component bytes, hex: the policy's content identity.
fn fingerprint(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
