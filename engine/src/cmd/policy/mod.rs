//! `edgeward policy`: the policy author's commands. [`new`] writes a
//! standalone policy crate, [`build`] turns it into a component, `check`
//! runs the acceptance steps a running engine would, `export` writes the
//! built-in default.

pub mod build;
pub mod new;
pub mod new_js;
pub mod replay;
pub mod test;

use super::load_topology;
use crate::policy::{Fallback, PolicyHost, PolicySource, Sandbox};
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;

/// The `policy` commands.
#[derive(Subcommand)]
pub enum PolicyCommand {
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
        /// The policy's own limits, as stored with an upload.
        #[command(flatten)]
        limits: LimitArgs,
        /// Check its signature (FILE.sig) against this public key, as an
        /// engine with --policy-trust-key would (repeatable).
        #[arg(long, value_name = "KEY.pub")]
        trust_key: Vec<PathBuf>,
    },
    /// Make a key pair for signing policies: NAME.key (secret, mode 0600)
    /// and NAME.pub (what engines trust, with --policy-trust-key).
    Keygen {
        /// The key's name (shown as the signer).
        name: String,
        /// Where to write the two files.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// Sign a policy file (component or core module) for the name it will
    /// be loaded under; writes FILE.sig beside it, which --policy, `ctl
    /// push` and uploads carry with it.
    Sign {
        /// The policy file.
        file: PathBuf,
        /// The secret key (from `policy keygen`).
        #[arg(long, value_name = "KEY.key")]
        key: PathBuf,
        /// The name it will be loaded under (default: the file's stem, as
        /// `serve --policy` names it).
        #[arg(long)]
        name: Option<String>,
    },
    /// Write the built-in default policy (`nearest`) to a file, e.g. to
    /// upload it through the admin API or use it as a starting point.
    Export {
        /// Where to write the component.
        file: PathBuf,
    },
    /// Write a new policy in ./NAME that builds with nothing but this
    /// binary and a Rust toolchain with the wasm32-unknown-unknown target
    /// (`--lang rust`), or Node and npm (`--lang js`); the SDK and the
    /// contract are copied into it.
    New {
        /// The crate's name (and folder).
        name: String,
        /// Which policy it starts from.
        #[arg(long, value_enum, default_value = "nearest")]
        template: new::Template,
        /// The language: a Rust crate, or a JavaScript project (built
        /// with componentize-js from npm).
        #[arg(long, value_enum, default_value = "rust")]
        lang: new::Lang,
        /// Where to create the folder (default: here).
        #[arg(long, value_name = "DIR", default_value = ".")]
        into: PathBuf,
    },
    /// Run table-driven cases (TOML or JSON) through the engine's request
    /// path: client, URL, down or drained servers -> the expected status,
    /// edge, host or Location. Exits non-zero if any case fails.
    Test {
        /// The policy: a crate folder (built first) or a .wasm file.
        #[arg(default_value = ".")]
        policy: PathBuf,
        /// The cases file.
        #[arg(long)]
        cases: PathBuf,
        /// The policy's own limits, as stored with an upload.
        #[command(flatten)]
        limits: LimitArgs,
        /// Topology the cases route on (default: the embedded demo).
        #[arg(long)]
        topology: Option<PathBuf>,
        /// The policy's configuration, TOML (.toml) or JSON.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Explain, offline, how a policy decides one request: URL, content,
    /// subnets, tiers, every candidate and why it is not eligible, the
    /// answer, its logs, fuel and time (JSON).
    Explain {
        /// The policy component (or core module).
        file: PathBuf,
        /// The client address.
        client: std::net::IpAddr,
        /// Path and query, e.g. /btv/live/hls/ch1.m3u8.
        url: String,
        /// Topology (default: the embedded demo).
        #[arg(long)]
        topology: Option<PathBuf>,
        /// The policy's configuration, TOML (.toml) or JSON.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also decide over this many seeds and count the answers.
        #[arg(long, default_value_t = 0)]
        draws: u32,
        /// A server to take as reported down by health checks
        /// (repeatable).
        #[arg(long, value_name = "SERVER")]
        down: Vec<String>,
        /// A server to take as drained (repeatable).
        #[arg(long, value_name = "SERVER")]
        drained: Vec<String>,
        /// As a player that came over HTTPS.
        #[arg(long)]
        tls: bool,
        /// A request header, `Name: value` (repeatable).
        #[arg(long = "header", value_name = "NAME: VALUE", value_parser = header_arg)]
        headers: Vec<(String, String)>,
        /// A MaxMind database to look the client up in, as `serve --geoip`
        /// (repeatable).
        #[arg(long, value_name = "FILE.mmdb")]
        geoip: Vec<PathBuf>,
        /// Tiers of this many nearest regions for a client in no subnet.
        #[arg(long, default_value_t = crate::geo::NEAREST_REGIONS)]
        geo_nearest_regions: u8,
        /// The policy's own limits, as stored with an upload.
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Replay logged decisions (--decision-log files, schema 2 to 4) through
    /// another policy, exactly as the engine called the one that made them,
    /// and report what would have changed.
    Replay {
        /// The policy to replay through.
        file: PathBuf,
        /// Decision log files (repeatable).
        #[arg(long = "log", required = true)]
        logs: Vec<PathBuf>,
        /// The policy's own limits, as stored with an upload.
        #[command(flatten)]
        limits: LimitArgs,
        /// The topology the decisions were made on (checked against their
        /// hash); without it, host look-ups answer from what each record
        /// carries of what it offered.
        #[arg(long)]
        topology: Option<PathBuf>,
        /// What answers when the replayed policy fails.
        #[arg(long, value_enum, default_value = "native")]
        fallback: replay::ReplayFallback,
        /// The policy's configuration, TOML (.toml) or JSON.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build a policy crate for wasm and encode it as a component, or a
    /// JavaScript project with its componentize-js; prints the
    /// component's path, size, content hash and contract version.
    Build {
        /// The crate's folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A policy's own limits on the command line of the offline commands, as
/// `ctl policy push` stores them with an upload, so a policy is tried under
/// the limits it will run with.
#[derive(clap::Args, Clone, Copy, Default)]
pub struct LimitArgs {
    /// Longest a call may run, in milliseconds (default: the engine's 5).
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Largest memory an instance may grow to, in MiB (default: the
    /// engine's 16).
    #[arg(long)]
    memory_mib: Option<u64>,
}

impl LimitArgs {
    fn limits(self) -> crate::policy::Limits {
        crate::policy::Limits {
            deadline_ms: self.deadline_ms,
            memory_mib: self.memory_mib,
        }
    }
}

/// A policy host for one policy file, as the offline commands use it: the
/// file's policy is its only (and active) version, seeded, and a failing
/// call is a 503 (no fallback hides it). Compiled components are cached
/// where the engine caches them. Its signature is checked only with
/// `trust` (`policy check`): testing a policy just rebuilt must not trip
/// over the signature of the one before.
fn offline_host(
    file: &std::path::Path,
    config: Option<&std::path::Path>,
    limits: LimitArgs,
    trust: Option<crate::policy::signing::Trust>,
) -> anyhow::Result<std::sync::Arc<PolicyHost>> {
    let mut source = PolicySource {
        limits: limits.limits(),
        ..PolicySource::from_files(file, config)?
    };
    if trust.is_none() {
        source.signature = None;
    }
    Ok(PolicyHost::with_cache(
        Sandbox::default(),
        Some(1),
        source,
        Fallback::Unavailable,
        u64::MAX,
        super::serve::default_policy_cache_dir(),
        trust.unwrap_or_default(),
    )?)
}

/// `policy keygen`: NAME.key (secret, 0600, never overwritten) and NAME.pub.
fn keygen(name: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    let (secret, public) = crate::policy::signing::generate(name).map_err(anyhow::Error::msg)?;
    let (key, pubkey) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    for path in [&key, &pubkey] {
        if path.exists() {
            anyhow::bail!("{} exists; not overwriting a key", path.display());
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&key)
        .and_then(|mut f| f.write_all(secret.as_bytes()).and_then(|()| f.sync_all()))
        .with_context(|| format!("cannot write {}", key.display()))?;
    crate::durable::write(&pubkey, public.as_bytes())
        .with_context(|| format!("cannot write {}", pubkey.display()))?;
    let id = crate::policy::signing::SigningKey::read(&key)
        .map_err(anyhow::Error::msg)?
        .id();
    println!(
        "wrote {} (secret: keep it off the engines) and {} (trust it with serve \
         --policy-trust-key); key id {id}",
        key.display(),
        pubkey.display()
    );
    Ok(())
}

/// `policy sign`: writes FILE.sig.
fn sign(file: &std::path::Path, key: &std::path::Path, name: Option<String>) -> anyhow::Result<()> {
    use crate::policy::signing;
    let key = signing::SigningKey::read(key).map_err(anyhow::Error::msg)?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = match name {
        Some(n) => n,
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "policy".into()),
    };
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_graphic()) {
        anyhow::bail!(
            "--name {name:?}: a policy name is 1 to 64 printable characters without spaces"
        );
    }
    let signature = key.sign(&name, &bytes);
    let out = signing::sig_path(file);
    crate::durable::write(&out, signing::to_line(&signature).as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "wrote {}: {} (sha256 {}) signed as policy {name:?} by {} (key {})",
        out.display(),
        file.display(),
        signature.sha256,
        key.name(),
        key.id()
    );
    Ok(())
}

/// Runs a `policy` command.
pub fn run(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Check {
            file,
            topology,
            config,
            json,
            limits,
            trust_key,
        } => check(
            &file,
            topology.as_deref(),
            config.as_deref(),
            json,
            limits,
            &trust_key,
        ),
        PolicyCommand::Keygen { name, dir } => keygen(&name, &dir),
        PolicyCommand::Sign { file, key, name } => sign(&file, &key, name),
        PolicyCommand::Export { file } => std::fs::write(&file, crate::builtin::NEAREST)
            .with_context(|| format!("cannot write {}", file.display())),
        PolicyCommand::New {
            name,
            template,
            lang,
            into,
        } => {
            let dir = match lang {
                new::Lang::Rust => new::run(&name, template, &into)?,
                new::Lang::Js => new_js::run(&name, template, &into)?,
            };
            println!(
                "wrote {} (template {}, contract {}): cd {} && {}edgeward policy build",
                dir.display(),
                clap::ValueEnum::to_possible_value(&template)
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default(),
                new::CONTRACT,
                dir.display(),
                if lang == new::Lang::Js {
                    "npm ci && "
                } else {
                    ""
                }
            );
            Ok(())
        }
        PolicyCommand::Test {
            policy,
            cases,
            topology,
            config,
            limits,
        } => {
            let report = test::run(
                &policy,
                &cases,
                topology.as_deref(),
                config.as_deref(),
                limits,
            )?;
            if report.failed > 0 {
                anyhow::bail!(
                    "{} of {} cases failed",
                    report.failed,
                    report.failed + report.passed
                );
            }
            Ok(())
        }
        PolicyCommand::Explain {
            file,
            client,
            url,
            topology,
            config,
            draws,
            down,
            drained,
            tls,
            headers,
            geoip,
            geo_nearest_regions,
            limits,
        } => {
            let geo = match geoip.is_empty() {
                true => Default::default(),
                false => crate::geo::GeoIp::load(geoip)
                    .map_err(anyhow::Error::msg)?
                    .lookup(client),
            };
            let store = load_topology(topology.as_deref())?;
            let topology = store.snapshot();
            let host = offline_host(&file, config.as_deref(), limits, None)?;
            let health = crate::health::HealthTable::new(&topology);
            test::set_health(&health.load(), &down, &drained)?;
            let trace = crate::routing::explain::explain(
                &topology,
                &health.load(),
                &host,
                &host.active(),
                &crate::routing::explain::Question {
                    client,
                    url: &url,
                    draws: draws.min(crate::routing::explain::MAX_DRAWS),
                    tls,
                    headers: &headers,
                    geo,
                    nearest_regions: geo_nearest_regions,
                },
            );
            println!("{}", serde_json::to_string_pretty(&trace)?);
            Ok(())
        }
        PolicyCommand::Replay {
            file,
            logs,
            topology,
            config,
            fallback,
            json,
            limits,
        } => {
            let r = replay::run(
                &file,
                &logs,
                topology.as_deref(),
                config.as_deref(),
                fallback,
                limits,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            println!(
                "{} decisions replayed ({:.0}/s): {} the same ({:.2} %)",
                r.decisions,
                r.per_second,
                r.same,
                r.same_share * 100.0
            );
            println!("host look-ups answered from the {}", r.lookups);
            if r.logged_fallbacks > 0 {
                println!(
                    "{} logged decisions were answered by a fallback",
                    r.logged_fallbacks
                );
            }
            if r.failed > 0 {
                println!("the replayed policy failed {} times", r.failed);
            }
            for (why, n) in &r.skipped {
                println!("skipped {n}: {why}");
            }
            for (kind, n) in &r.changed {
                println!("changed {n}: {kind}");
            }
            println!("redirects per server, before -> after (largest change first):");
            for s in r.servers.iter().take(20) {
                println!(
                    "  {:<24} {:>6.2} % -> {:>6.2} %",
                    s.server,
                    s.before * 100.0,
                    s.after * 100.0
                );
            }
            for e in &r.examples {
                println!(
                    "  e.g. {} {} {}: {} -> {}",
                    e.request_id, e.client, e.target, e.before, e.after
                );
            }
            Ok(())
        }
        PolicyCommand::Build { dir, json } => {
            let built = build::run(&dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&built)?);
            } else {
                println!(
                    "built {}: {} bytes, sha256 {}, contract {}",
                    built.path.display(),
                    built.size,
                    built.sha256,
                    built.contract
                );
            }
            Ok(())
        }
    }
}

/// Runs the acceptance steps on a policy file and prints its decisions.
/// Only the user's policy is loaded (and reported): it is the host's first
/// version, with no built-in policy beside it.
fn check(
    file: &std::path::Path,
    topology: Option<&std::path::Path>,
    config: Option<&std::path::Path>,
    json: bool,
    limits: LimitArgs,
    trust_keys: &[PathBuf],
) -> anyhow::Result<()> {
    let store = load_topology(topology)?;
    let trust = crate::policy::signing::Trust::read(trust_keys)
        .map_err(|e| anyhow::anyhow!("--trust-key {e}"))?;
    let host = offline_host(file, config, limits, Some(trust))?;
    let policy = host.active();
    let topology = store.snapshot();
    let health = crate::health::HealthTable::new(&topology);
    let samples = crate::routing::acceptance::accept(&host, &policy, &topology, &health.load())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "name": policy.name,
                "hash": policy.hash,
                "contract": policy.contract().name(),
                "headers": policy.headers(),
                "signed_by": policy.signed,
                "accepted": true,
                "samples": samples,
            }))?
        );
    } else {
        println!(
            "{}: accepted (sha256 {}, contract {})",
            file.display(),
            policy.hash,
            policy.contract().name()
        );
        if !policy.headers().is_empty() {
            println!("  reads headers: {}", policy.headers().join(", "));
        }
        match &policy.signed {
            None => println!("  not signed"),
            Some(s) => println!(
                "  signed by {} (key {}){}",
                s.signer,
                s.key_id,
                if s.trusted {
                    ", a trusted key"
                } else {
                    "; give --trust-key to check it is one you trust"
                }
            ),
        }
        for s in samples {
            println!(
                "  {:<22} {:<45} -> {} {}",
                s.client, s.path, s.status, s.answer
            );
        }
    }
    Ok(())
}

/// A `--header NAME: VALUE` argument.
pub fn header_arg(text: &str) -> Result<(String, String), String> {
    crate::admin::api::parse_header(text)
        .ok_or_else(|| format!("{text:?} is not `Name: value` with a valid header name"))
}
