//! The `edgeward` command line, one module per command: [`serve`] runs the
//! engine ([`reload`] keeps its files and signals), [`ctl`] drives a
//! node's admin API, [`policy`] works with policy components offline,
//! [`topology`] checks and generates topology files. `main.rs` only sets
//! up the process and hands over to [`run`].

pub mod ctl;
pub mod policy;
pub mod reload;
pub mod serve;
pub mod topology;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// The command line.
#[derive(Parser)]
#[command(
    name = "edgeward",
    version,
    about = "A redirect engine for video CDNs with hot-swappable WebAssembly routing policies"
)]
pub struct Cli {
    /// What to do (`serve` when none is given).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Serve player requests (the default when no command is given).
    Serve(Box<serve::ServeArgs>),
    /// Validate a topology file (JSON or MessagePack) and print a summary or
    /// every problem found.
    CheckTopology {
        /// The topology file.
        file: PathBuf,
    },
    /// Work with policy components offline.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Drive a node's admin API (policies, canary, shadow, topology, servers).
    Ctl(ctl::CtlArgs),
    /// Write a synthetic topology (for benchmarks and scale tests) to stdout.
    SynthTopology(topology::SynthArgs),
}

impl Cli {
    /// Whether the command serves (`serve`, or no command at all).
    pub fn serves(&self) -> bool {
        matches!(&self.command, None | Some(Command::Serve(_)))
    }

    /// Whether logs go out as JSON lines (`serve --log-format json`).
    pub fn json_logs(&self) -> bool {
        matches!(
            &self.command,
            Some(Command::Serve(args)) if matches!(args.log_format, serve::LogFormat::Json)
        )
    }
}

/// Runs a command; no command means `serve` with its defaults.
pub fn run(command: Option<Command>) -> anyhow::Result<()> {
    let command = command.or_else(|| Cli::parse_from(["edgeward", "serve"]).command);
    match command.expect("serve parses with no arguments") {
        Command::Serve(args) => serve::serve(*args),
        Command::CheckTopology { file } => topology::check(&file),
        Command::Policy(command) => policy::run(command),
        Command::Ctl(args) => ctl::run(args),
        Command::SynthTopology(args) => topology::synth(&args),
    }
}

/// The topology file (or the embedded demo) published as version 1.
pub(crate) fn load_topology(
    path: Option<&std::path::Path>,
) -> anyhow::Result<crate::topology::store::TopologyStore> {
    match path {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read topology file {}", path.display()))?;
            crate::topology::store::TopologyStore::from_bytes(bytes.into())
                .with_context(|| format!("topology file {}", path.display()))
        }
        None => crate::topology::store::TopologyStore::from_bytes(bytes::Bytes::from_static(
            crate::builtin::DEMO_TOPOLOGY.as_bytes(),
        ))
        .context("embedded demo topology"),
    }
}
