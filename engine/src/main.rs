//! The `edgeward` command: `serve` runs the redirect engine,
//! `check-topology` validates a topology file.

use anyhow::Context;
use clap::{Parser, Subcommand};
use edgeward::admin::{self, Token};
use edgeward::control::{Control, one_line};
use edgeward::policy::{Fallback, PolicyHost, PolicySource, Sandbox};
use edgeward::routing::client::TrustedProxies;
use edgeward::topology::{self, Topology, store::TopologyStore};
use edgeward::{builtin, http};
use ipnet::IpNet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "edgeward",
    version,
    about = "A redirect engine for video CDNs with hot-swappable WebAssembly routing policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve player requests (the default when no command is given).
    Serve(Box<ServeArgs>),
    /// Validate a topology file (JSON or MessagePack) and print a summary or
    /// every problem found.
    CheckTopology {
        /// The topology file.
        file: PathBuf,
    },
    /// Work with policy components offline.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Drive a node's admin API (policies, canary, shadow, topology, servers).
    Ctl(CtlArgs),
    /// Write a synthetic topology (for benchmarks and scale tests) to stdout.
    SynthTopology {
        /// IPv4 subnets.
        #[arg(long, default_value_t = 10_000)]
        v4: usize,
        /// IPv6 subnets.
        #[arg(long, default_value_t = 300)]
        v6: usize,
        /// Regions (2–4 edges each).
        #[arg(long, default_value_t = 100)]
        regions: usize,
        /// Generator seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write MessagePack instead of JSON.
        #[arg(long)]
        msgpack: bool,
    },
}

#[derive(clap::Args)]
struct CtlArgs {
    /// The node's admin API.
    #[arg(
        long,
        env = "EDGEWARD_ADMIN",
        default_value = "http://127.0.0.1:9090",
        global = true
    )]
    admin: String,
    /// File holding the bearer token (else EDGEWARD_ADMIN_TOKEN).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// Print the API's JSON instead of human-readable output.
    #[arg(long, global = true)]
    json: bool,
    /// With etcd: make the change only if the key is still at this
    /// revision (the ETag of `topology show`, the revisions in `status`);
    /// a change made meanwhile by someone else fails with a conflict.
    #[arg(long, global = true, value_name = "REVISION")]
    if_match: Option<i64>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand)]
enum CtlCommand {
    /// Active policy, canary, shadow, topology version, uptime.
    Status,
    /// Loaded policy versions with their role and statistics.
    Policies,
    /// Upload a policy (it is checked before it is accepted).
    Push {
        /// Name to load it under.
        name: String,
        /// The component.
        file: PathBuf,
        /// Its configuration, TOML (.toml) or JSON.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Activate it at once.
        #[arg(long)]
        activate: bool,
    },
    /// Make a loaded version the active one.
    Activate {
        /// Policy version.
        version: u64,
    },
    /// Re-activate the previous version.
    Rollback,
    /// Show, set, promote or abort the canary.
    Canary {
        #[command(subcommand)]
        action: Option<CanaryAction>,
    },
    /// Show, set or stop the shadow.
    Shadow {
        #[command(subcommand)]
        action: Option<ShadowAction>,
    },
    /// Replace or show the topology.
    Topology {
        #[command(subcommand)]
        action: TopologyAction,
    },
    /// Every server with its health.
    Servers,
    /// Take a server out of rotation (health is still tracked).
    Drain {
        /// Server id.
        id: String,
    },
    /// Put a drained server back.
    Undrain {
        /// Server id.
        id: String,
    },
}

#[derive(Subcommand)]
enum CanaryAction {
    /// Send PERCENT of clients (by address hash) to VERSION.
    Set {
        /// Policy version.
        version: u64,
        /// Share of clients, 0-100.
        percent: u32,
    },
    /// Make the canary the active version.
    Promote,
    /// End the canary.
    Abort,
}

#[derive(Subcommand)]
enum ShadowAction {
    /// Run VERSION beside the active one on PERCENT of requests.
    Set {
        /// Policy version.
        version: u64,
        /// Share of requests, 0-100.
        percent: u32,
    },
    /// Stop the shadow (prints its final report).
    Stop,
}

#[derive(Subcommand)]
enum TopologyAction {
    /// Replace the topology with FILE (JSON or MessagePack); every problem
    /// is listed if it is refused.
    Push {
        /// The topology file.
        file: PathBuf,
    },
    /// Print the current topology (JSON, or MessagePack to stdout).
    Show {
        /// MessagePack instead of JSON.
        #[arg(long)]
        msgpack: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run the acceptance steps a running engine would (compile,
    /// instantiate, init with the configuration, decide sample requests
    /// against a topology) and print the decisions.
    Check {
        /// The policy component.
        file: PathBuf,
        /// Topology for the sample requests (default: the embedded demo).
        #[arg(long)]
        topology: Option<PathBuf>,
        /// The policy's configuration, TOML (.toml) or JSON.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the built-in default policy (`nearest`) to a file, e.g. to
    /// upload it through the admin API or use it as a starting point.
    Export {
        /// Where to write the component.
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Topology file (JSON or MessagePack). Without it, an embedded demo
    /// topology is served. Reloaded on SIGHUP.
    #[arg(long)]
    topology: Option<PathBuf>,
    /// Routing policy component (.wasm). Without it, the built-in `nearest`
    /// policy is used. Reloaded on SIGHUP.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The policy's configuration, TOML (.toml) or JSON.
    #[arg(long, requires = "policy")]
    policy_config: Option<PathBuf>,
    /// Address for player traffic.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// A network whose X-Real-IP header is believed (repeatable). Default:
    /// loopback only.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    trusted_proxies: Vec<IpNet>,
    /// Worker threads, each with its own accept loop and policy instance.
    /// Default: one per CPU.
    #[arg(long)]
    workers: Option<usize>,
    /// Longest a single policy call may run, in milliseconds.
    #[arg(long, default_value_t = 5)]
    policy_deadline_ms: u64,
    /// Largest memory a policy instance may use, in MiB.
    #[arg(long, default_value_t = 16)]
    policy_memory_mib: usize,
    /// Seed the policies' random generator (reproducible draws, for tests).
    #[arg(long)]
    random_seed: Option<u64>,
    /// What answers a request whose policy call fails.
    #[arg(long, value_enum, default_value = "native")]
    policy_fallback: Fallback,
    /// Consecutive failures after which a newly activated policy version is
    /// rolled back (a canary: aborted) automatically.
    #[arg(long, default_value_t = 20)]
    rollback_after: u64,
    /// Do not send the `Edgeward-Policy: name@version` header.
    #[arg(long)]
    no_policy_header: bool,
    /// Address of the admin API, or `off`.
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin_listen: String,
    /// File holding the admin API's bearer token (else the
    /// EDGEWARD_ADMIN_TOKEN environment variable; loopback needs none).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// How often the --topology and --policy files are checked for changes,
    /// in milliseconds (0: only on SIGHUP).
    #[arg(long, default_value_t = 1000)]
    watch_interval_ms: u64,
    /// When every candidate of a request is down, offer them anyway (a
    /// possibly-dead edge rather than a 503). Drained servers stay out.
    #[arg(long)]
    health_fail_open: bool,
    /// Most health probes in flight at once.
    #[arg(long, default_value_t = edgeward::health::checker::DEFAULT_CONCURRENCY)]
    health_concurrency: usize,
    /// PEM file of extra CA certificates trusted by TLS health probes (port
    /// 443 servers), besides the Mozilla roots.
    #[arg(long)]
    health_ca_file: Option<PathBuf>,
    /// On SIGTERM/SIGINT, how long requests in flight may take to finish
    /// before the process exits anyway, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    shutdown_grace_ms: u64,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Where compiled policies are kept (by content hash), so that restarts
    /// and re-activations skip compilation; `off` to compile every time.
    /// Default: $STATE_DIRECTORY/policy-cache under systemd, else
    /// $XDG_CACHE_HOME/edgeward/policies or ~/.cache/edgeward/policies.
    #[arg(long, value_name = "DIR")]
    policy_cache_dir: Option<String>,
    /// Write a sampled JSON-lines record of decisions to this file.
    #[arg(long)]
    decision_log: Option<PathBuf>,
    /// Share of decisions recorded in the decision log (0-1).
    #[arg(long, default_value_t = 0.01)]
    decision_log_sample: f64,
    /// Size at which the decision log is rotated (FILE.1 … FILE.3 kept), MiB.
    #[arg(long, default_value_t = 100)]
    decision_log_max_mib: u64,
    /// Decide every request with the engine's native implementation of the
    /// default rule instead of the wasm policy: the baseline that shows what
    /// the sandbox costs. Not for production.
    #[arg(long)]
    native_only: bool,
    #[command(flatten)]
    etcd: EtcdArgs,
}

/// Following a configuration kept in etcd (see `deploy/README.md`).
#[derive(clap::Args)]
struct EtcdArgs {
    /// etcd client URLs, comma-separated (`http://10.0.0.1:2379,...`). With
    /// it, topology, policies, routing and drained servers come from etcd
    /// and admin changes are written there; --topology and --policy only
    /// seed a node that has neither etcd nor a disk copy.
    #[arg(long, env = "EDGEWARD_ETCD", value_delimiter = ',')]
    etcd: Vec<String>,
    /// Key prefix of this fleet's configuration in etcd.
    #[arg(long, default_value = "/edgeward")]
    etcd_prefix: String,
    /// etcd user (when etcd has authentication enabled).
    #[arg(long, requires = "etcd")]
    etcd_user: Option<String>,
    /// File holding the etcd user's password (else EDGEWARD_ETCD_PASSWORD).
    #[arg(long, requires = "etcd_user")]
    etcd_password_file: Option<PathBuf>,
    /// PEM file of CA certificates that sign the etcd members' certificates
    /// (for https:// endpoints), besides the Mozilla roots.
    #[arg(long)]
    etcd_ca_file: Option<PathBuf>,
    /// PEM client certificate for etcd (with --etcd-key-file).
    #[arg(long, requires = "etcd_key_file")]
    etcd_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long, requires = "etcd_cert_file")]
    etcd_key_file: Option<PathBuf>,
    /// Time limit of one call to one etcd member, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    etcd_timeout_ms: u64,
    /// How long start waits for etcd when there is no disk copy, in
    /// milliseconds (then the node serves its seed configuration but is not
    /// ready until etcd answers).
    #[arg(long, default_value_t = 5000)]
    etcd_start_wait_ms: u64,
    /// Where the node keeps its disk copy of the last good configuration
    /// (default: $STATE_DIRECTORY, as systemd sets it, else /var/lib/edgeward).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// This node's name in etcd records and logs (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
}

fn main() -> std::process::ExitCode {
    return_large_blocks_to_the_system();
    let cli = Cli::parse();
    let json_logs = matches!(
        &cli.command,
        Some(Command::Serve(args)) if matches!(args.log_format, LogFormat::Json)
    );
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    if json_logs {
        logs.json().init();
    } else {
        logs.init();
    }
    // No command means `serve` with its defaults.
    let command = cli
        .command
        .or_else(|| Cli::parse_from(["edgeward", "serve"]).command);
    let result = match command.expect("serve parses with no arguments") {
        Command::Serve(args) => serve(*args),
        Command::CheckTopology { file } => check_topology(&file),
        Command::Policy(PolicyCommand::Check {
            file,
            topology,
            config,
            json,
        }) => policy_check(&file, topology.as_deref(), config.as_deref(), json),
        Command::Ctl(args) => ctl(args),
        Command::SynthTopology {
            v4,
            v6,
            regions,
            seed,
            msgpack,
        } => synth_topology(v4, v6, regions, seed, msgpack),
        Command::Policy(PolicyCommand::Export { file }) => std::fs::write(&file, builtin::NEAREST)
            .with_context(|| format!("cannot write {}", file.display())),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgeward: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc's malloc raises its mmap threshold (up to 32 MiB) each time a
/// large block is freed; the large vectors of the next topology then come
/// from the heap and stay there once freed, so the resident size ratchets
/// up with every swap (84 -> 162 MiB after three swaps of 1M subnets). A
/// fixed threshold keeps blocks of 128 KiB and more in their own mappings,
/// which go back to the system when freed (87 MiB after the same swaps).
fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets a parameter of the allocator; this runs
    // first thing in `main`, before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn check_topology(file: &std::path::Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let topology = topology::load::load_file(file, 1)?;
    println!(
        "{}: OK: {} (read, validated and indexed in {} ms)",
        file.display(),
        topology.summary(),
        started.elapsed().as_millis()
    );
    Ok(())
}

fn synth_topology(
    v4: usize,
    v6: usize,
    regions: usize,
    seed: u64,
    msgpack: bool,
) -> anyhow::Result<()> {
    let doc = topology::synthetic::generate(topology::synthetic::Spec {
        v4_subnets: v4,
        v6_subnets: v6,
        regions,
        seed,
    });
    let bytes = if msgpack {
        topology::load::to_msgpack(&doc)
    } else {
        serde_json::to_vec(&doc)?
    };
    std::io::stdout().lock().write_all(&bytes)?;
    Ok(())
}

/// The topology file (or the embedded demo) published as version 1.
fn load_topology(path: Option<&std::path::Path>) -> anyhow::Result<TopologyStore> {
    match path {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read topology file {}", path.display()))?;
            TopologyStore::from_bytes(bytes.into())
                .with_context(|| format!("topology file {}", path.display()))
        }
        None => {
            TopologyStore::from_bytes(bytes::Bytes::from_static(builtin::DEMO_TOPOLOGY.as_bytes()))
                .context("embedded demo topology")
        }
    }
}

fn policy_source(args: &ServeArgs) -> anyhow::Result<PolicySource> {
    Ok(match &args.policy {
        Some(path) => PolicySource::from_files(path, args.policy_config.as_deref())?,
        None => PolicySource::builtin_nearest(),
    })
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Taken before the files are read: a change made while the engine
    // starts is seen by the watch, never lost between reading and watching.
    let seen = (
        fingerprint(args.topology.as_deref()),
        fingerprint(args.policy.as_deref()),
    );
    let store = Arc::new(load_topology(args.topology.as_deref())?);
    tracing::info!(version = 1, "topology loaded: {}", store.load().summary());

    let sandbox = Sandbox {
        deadline: Duration::from_millis(args.policy_deadline_ms.max(1)),
        max_memory_bytes: args.policy_memory_mib.max(1) << 20,
    };
    let policies = PolicyHost::with_cache(
        sandbox,
        args.random_seed,
        policy_source(&args)?,
        args.policy_fallback,
        args.rollback_after,
        policy_cache_dir(&args),
    )?;
    let control = Arc::new(Control::new(store.clone(), policies.clone()));

    let config = http::ListenerConfig {
        listen: args.listen,
        workers: args
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        trusted: if args.trusted_proxies.is_empty() {
            TrustedProxies::default()
        } else {
            TrustedProxies::new(args.trusted_proxies.clone())
        },
        policy_header: !args.no_policy_header,
        seed: args.random_seed,
        fail_open: args.health_fail_open,
        native_only: args.native_only,
        decision_log: match &args.decision_log {
            Some(path) => Some(
                edgeward::decision_log::DecisionLog::open(
                    path,
                    args.decision_log_sample,
                    args.decision_log_max_mib << 20,
                )
                .with_context(|| format!("cannot open decision log {}", path.display()))?,
            ),
            None => None,
        },
    };
    if let Some(log) = &config.decision_log {
        control.metrics.set_decision_log(log.clone());
    }
    let follows_etcd = follow_etcd(&args.etcd, &control)?;
    edgeward::health::checker::spawn(
        store.clone(),
        args.health_concurrency,
        args.health_ca_file.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    let admin_addr = if args.admin_listen == "off" {
        None
    } else {
        let listen: SocketAddr = args.admin_listen.parse().with_context(|| {
            format!(
                "--admin-listen {:?} is not an address or `off`",
                args.admin_listen
            )
        })?;
        Some(admin::spawn(
            admin::AdminConfig {
                listen,
                token: admin_token(&args)?,
            },
            control.clone(),
        )?)
    };
    let (sockets, bound) =
        http::bind(&config).with_context(|| format!("cannot listen on {}", config.listen))?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let workers = http::spawn_workers(
        sockets,
        &config,
        store.clone(),
        policies.clone(),
        &control.metrics,
        &shutdown,
    )?;
    control.set_ready();

    announce(bound, config.workers, &store.load(), admin_addr);
    let notifier = edgeward::systemd::Notifier::from_env();
    if let Some(n) = &notifier {
        n.notify("READY=1");
    }
    let grace = Duration::from_millis(args.shutdown_grace_ms);
    signals(
        args,
        seen,
        follows_etcd,
        control.clone(),
        notifier.as_ref(),
        &workers,
    )?;
    if let Some(n) = &notifier {
        n.notify("STOPPING=1");
    }

    // Graceful shutdown: not ready any more, stop accepting, let requests
    // in flight finish (within the grace period), then exit.
    control.set_not_ready();
    let _ = stop.send(true);
    let deadline = std::time::Instant::now() + grace;
    for worker in workers {
        while !worker.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Joins the fleet when --etcd is given: restores the disk copy, follows
/// etcd, and waits a while for a first configuration. Returns whether the
/// node follows etcd.
fn follow_etcd(args: &EtcdArgs, control: &Arc<Control>) -> anyhow::Result<bool> {
    if args.etcd.is_empty() {
        return Ok(false);
    }
    let password = match (&args.etcd_user, &args.etcd_password_file) {
        (None, _) => None,
        (Some(_), Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read etcd password file {}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
        (Some(_), None) => Some(
            std::env::var("EDGEWARD_ETCD_PASSWORD")
                .context("--etcd-user needs --etcd-password-file or EDGEWARD_ETCD_PASSWORD")?,
        ),
    };
    let tls = if args.etcd.iter().any(|e| e.starts_with("https://")) {
        Some(
            edgeward::cluster::tls_config(
                args.etcd_ca_file.as_deref(),
                args.etcd_cert_file
                    .as_deref()
                    .zip(args.etcd_key_file.as_deref()),
            )
            .map_err(anyhow::Error::msg)?,
        )
    } else {
        None
    };
    let state_dir = args
        .state_dir
        .clone()
        .or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/lib/edgeward"));
    let node = args.node_name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "edgeward".into())
    });
    let cluster = edgeward::cluster::Cluster::new(edgeward::cluster::ClusterConfig {
        etcd: edgeward::cluster::etcd::EtcdConfig {
            endpoints: args.etcd.clone(),
            credentials: args.etcd_user.clone().zip(password),
            tls,
            timeout: Duration::from_millis(args.etcd_timeout_ms.max(1)),
        },
        prefix: args.etcd_prefix.clone(),
        node,
        cache_file: Some(state_dir.join("etcd-copy.msgpack")),
    })
    .map_err(anyhow::Error::msg)?;
    control.set_cluster(cluster.clone());
    let restored = cluster
        .start(control)
        .context("cannot start following etcd")?;
    if !restored && !cluster.wait_for_config(Duration::from_millis(args.etcd_start_wait_ms)) {
        tracing::error!(
            "no configuration from etcd or a disk copy yet: serving the seed configuration, \
             not ready until etcd answers"
        );
    }
    Ok(true)
}

fn policy_cache_dir(args: &ServeArgs) -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    match args.policy_cache_dir.as_deref() {
        Some("off") => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => env("STATE_DIRECTORY")
            .map(|d| d.join("policy-cache"))
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("edgeward/policies")))
            .or_else(|| env("HOME").map(|d| d.join(".cache/edgeward/policies"))),
    }
}

fn admin_token(args: &ServeArgs) -> anyhow::Result<Option<Token>> {
    if let Some(path) = &args.admin_token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read admin token file {}", path.display()))?;
        return Token::new(&text)
            .map(Some)
            .with_context(|| format!("admin token file {} is empty", path.display()));
    }
    Ok(std::env::var("EDGEWARD_ADMIN_TOKEN")
        .ok()
        .and_then(|t| Token::new(&t)))
}

fn policy_check(
    file: &std::path::Path,
    topology: Option<&std::path::Path>,
    config: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<()> {
    let store = load_topology(topology)?;
    let source = PolicySource::from_files(file, config)?;
    let host = PolicyHost::new(
        Sandbox::default(),
        Some(1),
        PolicySource::builtin_nearest(),
        Fallback::Unavailable,
        u64::MAX,
    )?;
    let (policy, samples) = host.load(source, &store.snapshot())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "name": policy.name,
                "hash": policy.hash,
                "accepted": true,
                "samples": samples,
            }))?
        );
    } else {
        println!("{}: accepted (sha256 {})", file.display(), policy.hash);
        for s in samples {
            println!(
                "  {:<22} {:<45} -> {} {}",
                s.client, s.path, s.status, s.answer
            );
        }
    }
    Ok(())
}

/// Prints the bound address (the end-to-end tests read this line) and a
/// request that works against the loaded topology.
fn announce(bound: SocketAddr, workers: usize, topology: &Topology, admin: Option<SocketAddr>) {
    let shown = if bound.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), bound.port())
    } else {
        bound
    };
    let example = topology
        .channels
        .iter()
        .find_map(|c| {
            let s = c.streams.iter().find(|s| s.active && c.active)?;
            let (proto, ext) = match s.protocol {
                topology::Protocol::Hls => ("hls", "m3u8"),
                topology::Protocol::Mpd => ("mpd", "mpd"),
            };
            let suffix = match s.encryption {
                topology::Encryption::None => "",
                topology::Encryption::Widevine => "_wv",
                topology::Encryption::Playready => "_pr",
                topology::Encryption::Cenc => "_cenc",
            };
            Some(format!("/btv/live/{proto}{suffix}/{}.{ext}", c.epg_id))
        })
        .unwrap_or_else(|| "/vod/example.mp4".into());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "edgeward listening on http://{bound} ({workers} workers)"
    );
    let _ = writeln!(out, "try: curl -i http://{shown}{example}");
    if let Some(admin) = admin {
        let _ = writeln!(out, "edgeward admin API on http://{admin}");
    }
    let _ = out.flush();
}

/// Waits for signals and watches the files: SIGHUP, or a change of the
/// --topology or --policy file, reloads it through the same validation as
/// the admin API (a file that fails is refused and the current version
/// kept); SIGINT and SIGTERM stop the process.
fn signals(
    mut args: ServeArgs,
    seen: (Option<Fingerprint>, Option<Fingerprint>),
    follows_etcd: bool,
    control: Arc<Control>,
    notifier: Option<&edgeward::systemd::Notifier>,
    workers: &[std::thread::JoinHandle<()>],
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    if follows_etcd {
        // One source of truth: the files only seeded the node.
        args.topology = None;
        args.policy = None;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let watch = Duration::from_millis(args.watch_interval_ms.max(1));
        let mut tick = tokio::time::interval(watch);
        let (mut topology_seen, mut policy_seen) = seen;
        let watchdog = notifier.and(edgeward::systemd::Notifier::watchdog_interval());
        let mut ping = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
        loop {
            tokio::select! {
                _ = ping.tick(), if watchdog.is_some() => {
                    // Alive means: every worker thread still runs.
                    if workers.iter().all(|w| !w.is_finished())
                        && let Some(n) = notifier
                    {
                        n.notify("WATCHDOG=1");
                    }
                }
                _ = hup.recv() => {
                    reload_topology(&args, &control, "SIGHUP");
                    reload_policy(&args, &control, "SIGHUP");
                }
                _ = tick.tick(), if args.watch_interval_ms > 0 => {
                    let t = fingerprint(args.topology.as_deref());
                    if t != topology_seen {
                        topology_seen = t;
                        reload_topology(&args, &control, "file watch");
                    }
                    let p = fingerprint(args.policy.as_deref());
                    if p != policy_seen {
                        policy_seen = p;
                        reload_policy(&args, &control, "file watch");
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("stopping: no new connections, finishing requests in flight");
        Ok(())
    })
}

/// What identifies a file's content cheaply: modification time and size.
type Fingerprint = (std::time::SystemTime, u64);

fn fingerprint(path: Option<&std::path::Path>) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path?).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn reload_topology(args: &ServeArgs, control: &Control, why: &str) {
    let Some(path) = &args.topology else { return };
    let who = format!("{why} {}", path.display());
    match std::fs::read(path) {
        Ok(bytes) => match control.replace_topology(bytes.into(), &who) {
            Ok(t) => tracing::info!(version = t.version, "topology reloaded: {}", t.summary()),
            Err(e) => tracing::error!(
                version = control.topology.load().version,
                "topology reload refused, keeping the current version: {}",
                one_line(&e.to_string())
            ),
        },
        Err(e) => tracing::error!(
            "topology reload refused, keeping the current version: cannot read {}: {e}",
            path.display()
        ),
    }
}

fn reload_policy(args: &ServeArgs, control: &Control, why: &str) {
    let Some(path) = &args.policy else { return };
    let who = format!("{why} {}", path.display());
    match policy_source(args).and_then(|src| Ok(control.upload_policy(src, true, &who)?)) {
        Ok((p, _)) => tracing::info!(policy = %p.label(), "policy reloaded and activated"),
        Err(e) => tracing::error!(
            version = control.policies.active().version,
            "policy reload refused, keeping the current version: {}",
            one_line(&format!("{e:#}"))
        ),
    }
}

fn ctl(args: CtlArgs) -> anyhow::Result<()> {
    use edgeward::ctl::{Client, render};
    use serde_json::json;
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read token file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("EDGEWARD_ADMIN_TOKEN").ok(),
    };
    let mut client = Client::new(&args.admin, token)?;
    client.if_match = args.if_match;
    const JSON: &str = "application/json";
    let none = Vec::new;
    let (what, value) = match args.command {
        CtlCommand::Status => ("status", client.call("GET", "/status", JSON, none())?),
        CtlCommand::Policies => ("policies", client.call("GET", "/policies", JSON, none())?),
        CtlCommand::Push {
            name,
            file,
            config,
            activate,
        } => {
            use base64::Engine as _;
            let wasm =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let config = match config {
                None => serde_json::Value::Null,
                Some(path) => edgeward::policy::config_value_from_file(&path)?,
            };
            let mut body = json!({
                "wasm_base64": base64::engine::general_purpose::STANDARD.encode(wasm),
                "activate": activate,
            });
            if !config.is_null() {
                body["config"] = config;
            }
            let v = client.call(
                "POST",
                &format!("/policies/{name}"),
                JSON,
                body.to_string().into_bytes(),
            )?;
            if !args.json {
                println!(
                    "accepted {}@{} (sha256 {}){}",
                    v["name"].as_str().unwrap_or("?"),
                    v["version"],
                    v["hash"].as_str().unwrap_or("?"),
                    if activate { ", active" } else { "" }
                );
                return Ok(());
            }
            ("push", v)
        }
        CtlCommand::Activate { version } => (
            "activate",
            client.call(
                "POST",
                &format!("/policies/{version}/activate"),
                JSON,
                none(),
            )?,
        ),
        CtlCommand::Rollback => (
            "rollback",
            client.call("POST", "/policies/rollback", JSON, none())?,
        ),
        CtlCommand::Canary { action } => match action {
            None => ("canary", client.call("GET", "/canary", JSON, none())?),
            Some(CanaryAction::Set { version, percent }) => (
                "canary",
                client.call(
                    "PUT",
                    "/canary",
                    JSON,
                    json!({"version": version, "percent": percent})
                        .to_string()
                        .into_bytes(),
                )?,
            ),
            Some(CanaryAction::Promote) => (
                "canary",
                client.call("POST", "/canary/promote", JSON, none())?,
            ),
            Some(CanaryAction::Abort) => {
                ("canary", client.call("DELETE", "/canary", JSON, none())?)
            }
        },
        CtlCommand::Shadow { action } => match action {
            None => ("shadow", client.call("GET", "/shadow", JSON, none())?),
            Some(ShadowAction::Set { version, percent }) => (
                "shadow",
                client.call(
                    "PUT",
                    "/shadow",
                    JSON,
                    json!({"version": version, "sample_percent": percent})
                        .to_string()
                        .into_bytes(),
                )?,
            ),
            Some(ShadowAction::Stop) => ("shadow", client.call("DELETE", "/shadow", JSON, none())?),
        },
        CtlCommand::Topology { action } => match action {
            TopologyAction::Push { file } => {
                let bytes = std::fs::read(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let v = client.call("PUT", "/topology", JSON, bytes)?;
                if !args.json {
                    println!(
                        "topology version {}: {}",
                        v["version"],
                        v["summary"].as_str().unwrap_or("")
                    );
                    return Ok(());
                }
                ("topology", v)
            }
            TopologyAction::Show { msgpack } => {
                let path = if msgpack {
                    "/topology?format=msgpack"
                } else {
                    "/topology"
                };
                let answer = client.request("GET", path, JSON, none())?;
                if answer.status != 200 {
                    anyhow::bail!(
                        "GET {path}: {} {}",
                        answer.status,
                        String::from_utf8_lossy(&answer.body).trim()
                    );
                }
                std::io::stdout().lock().write_all(&answer.body)?;
                return Ok(());
            }
        },
        CtlCommand::Servers => ("servers", client.call("GET", "/servers", JSON, none())?),
        CtlCommand::Drain { id } => (
            "drain",
            client.call("POST", &format!("/servers/{id}/drain"), JSON, none())?,
        ),
        CtlCommand::Undrain { id } => (
            "undrain",
            client.call("DELETE", &format!("/servers/{id}/drain"), JSON, none())?,
        ),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render(what, &value));
        if !matches!(what, "status" | "policies" | "servers") {
            println!();
        }
    }
    Ok(())
}
