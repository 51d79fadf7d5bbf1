//! The `edgeward` command: `serve` runs the redirect engine,
//! `check-topology` validates a topology file.

use anyhow::Context;
use clap::{Parser, Subcommand};
use edgeward::policy::{PolicyHost, PolicySource, Sandbox};
use edgeward::routing::client::TrustedProxies;
use edgeward::topology::{self, Topology, TopologyDoc, store::TopologyStore};
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
    Serve(ServeArgs),
    /// Validate a topology file (JSON or MessagePack) and print a summary or
    /// every problem found.
    CheckTopology {
        /// The topology file.
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
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // No command means `serve` with its defaults.
    let command = cli
        .command
        .or_else(|| Cli::parse_from(["edgeward", "serve"]).command);
    let result = match command.expect("serve parses with no arguments") {
        Command::Serve(args) => serve(args),
        Command::CheckTopology { file } => check_topology(&file),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgeward: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn check_topology(file: &std::path::Path) -> anyhow::Result<()> {
    let topology = topology::load::load_file(file, 1)?;
    println!("{}: OK: {}", file.display(), topology.summary());
    Ok(())
}

fn read_topology(path: Option<&std::path::Path>) -> anyhow::Result<TopologyDoc> {
    match path {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read topology file {}", path.display()))?;
            Ok(topology::parse(&bytes)
                .with_context(|| format!("topology file {}", path.display()))?)
        }
        None => Ok(topology::parse(builtin::DEMO_TOPOLOGY.as_bytes())?),
    }
}

fn policy_source(args: &ServeArgs) -> anyhow::Result<PolicySource> {
    Ok(match &args.policy {
        Some(path) => PolicySource::from_files(path, args.policy_config.as_deref())?,
        None => PolicySource::builtin_nearest(),
    })
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let doc = read_topology(args.topology.as_deref())?;
    let store = Arc::new(
        TopologyStore::new(&doc).with_context(|| match &args.topology {
            Some(p) => format!("topology file {}", p.display()),
            None => "embedded demo topology".into(),
        })?,
    );
    tracing::info!(version = 1, "topology loaded: {}", store.load().summary());

    let sandbox = Sandbox {
        deadline: Duration::from_millis(args.policy_deadline_ms.max(1)),
        max_memory_bytes: args.policy_memory_mib.max(1) << 20,
    };
    let policies = PolicyHost::new(sandbox, args.random_seed, policy_source(&args)?)?;

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
    };
    let (sockets, bound) =
        http::bind(&config).with_context(|| format!("cannot listen on {}", config.listen))?;
    http::spawn_workers(
        sockets,
        config.trusted.clone(),
        store.clone(),
        policies.clone(),
    )?;

    announce(bound, config.workers, &store.load());
    signals(args, store, policies)
}

/// Prints the bound address (the end-to-end tests read this line) and a
/// request that works against the loaded topology.
fn announce(bound: SocketAddr, workers: usize, topology: &Topology) {
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
    let _ = out.flush();
}

/// Waits for signals: SIGHUP reloads the topology and policy files (a file
/// that fails validation is refused and the current one kept); SIGINT and
/// SIGTERM stop the process.
fn signals(
    args: ServeArgs,
    store: Arc<TopologyStore>,
    policies: Arc<PolicyHost>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                _ = hup.recv() => reload(&args, &store, &policies),
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("stopping");
        Ok(())
    })
}

fn reload(args: &ServeArgs, store: &TopologyStore, policies: &PolicyHost) {
    if let Some(path) = &args.topology {
        match read_topology(Some(path)).and_then(|doc| Ok(store.replace(&doc)?)) {
            Ok(t) => tracing::info!(version = t.version, "topology reloaded: {}", t.summary()),
            Err(e) => tracing::error!(
                version = store.load().version,
                "topology reload refused, keeping the current version: {}",
                one_line(&e)
            ),
        }
    }
    if args.policy.is_some() {
        match policy_source(args).and_then(|src| Ok(policies.load(src)?)) {
            Ok(p) => {
                tracing::info!(policy = %p.name, version = p.version, "policy reloaded and activated");
                policies.activate(p);
            }
            Err(e) => tracing::error!(
                version = policies.active().version,
                "policy reload refused, keeping the current version: {}",
                one_line(&e)
            ),
        }
    }
}

/// An error with its causes and list items on one log line.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace("\n  - ", " | ").replace('\n', " ")
}
