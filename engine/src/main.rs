//! The `edgeward` binary: sets the process up, parses the command line and
//! hands over to [`edgeward::cmd`], where each command has its module.

use clap::Parser;
use edgeward::cmd::Cli;

fn main() -> std::process::ExitCode {
    return_large_blocks_to_the_system();
    let cli = Cli::parse();
    if !cli.serves() {
        end_quietly_on_a_closed_pipe();
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    if cli.json_logs() {
        logs.json().init();
    } else {
        logs.init();
    }
    match edgeward::cmd::run(cli.command) {
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

/// A command-line tool whose output is cut short (`edgeward policy check
/// x.wasm | head -1`) should end as `cat` does, not panic in `println!`
/// with a backtrace: Rust ignores SIGPIPE, so the default is put back for
/// every command but `serve`, whose sockets must see EPIPE as an error.
fn end_quietly_on_a_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition; this runs first
    // thing in `main`, before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
