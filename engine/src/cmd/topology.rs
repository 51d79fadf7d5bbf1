//! `edgeward check-topology` and `edgeward synth-topology`.

use crate::topology;
use std::io::Write;

/// Options of `synth-topology`.
#[derive(clap::Args)]
pub struct SynthArgs {
    /// IPv4 subnets.
    #[arg(long, default_value_t = 10_000)]
    pub v4: usize,
    /// IPv6 subnets.
    #[arg(long, default_value_t = 300)]
    pub v6: usize,
    /// Regions (2–4 edges each).
    #[arg(long, default_value_t = 100)]
    pub regions: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write MessagePack instead of JSON.
    #[arg(long)]
    pub msgpack: bool,
    /// Channels besides `ch1` (with a programme guide: see --programs).
    #[arg(long, default_value_t = 0)]
    pub channels: usize,
    /// Programs, spread over the channels, each with two records on the
    /// DVR servers (four are added).
    #[arg(long, default_value_t = 0)]
    pub programs: usize,
}

/// Validates a topology file and prints its summary (or every problem).
pub fn check(file: &std::path::Path) -> anyhow::Result<()> {
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

/// Writes a synthetic topology to stdout.
pub fn synth(args: &SynthArgs) -> anyhow::Result<()> {
    let mut doc = topology::synthetic::generate(topology::synthetic::Spec {
        v4_subnets: args.v4,
        v6_subnets: args.v6,
        regions: args.regions,
        seed: args.seed,
    });
    topology::synthetic::add_catalogue(&mut doc, args.channels, args.programs);
    let bytes = if args.msgpack {
        topology::load::to_msgpack(&doc)
    } else {
        serde_json::to_vec(&doc)?
    };
    std::io::stdout().lock().write_all(&bytes)?;
    Ok(())
}
