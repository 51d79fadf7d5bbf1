//! The WASI a policy may import, locked down. A policy built with
//! `cargo build --target wasm32-unknown-unknown` imports none of it; a
//! JavaScript one made by componentize-js imports `wasi:io`, `clocks`,
//! `cli`, `filesystem` and `random` (its JS engine's needs), and would not
//! instantiate without them.
//!
//! What it gets: no files (no preopened directory), no sockets, no
//! environment, no arguments, an empty standard input; the host's clocks;
//! randomness from a generator reseeded from the request's seed on every
//! call, so that decisions stay reproducible and replayable (which makes
//! `Math.random` and `crypto.getRandomValues` predictable inside a policy:
//! they must not be used for secrets); standard output and error go to the
//! engine's log, a line at a time, tagged with the policy, at most
//! [`LINES_PER_SECOND`] lines a second per instance (the rest are counted
//! and the count logged).

use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

/// Lines of output an instance of a policy may log per second.
pub const LINES_PER_SECOND: u32 = 20;

/// Longest line kept (the rest is cut).
const MAX_LINE: usize = 1024;

/// A policy instance's WASI: the context and its resources, and the
/// generator behind `wasi:random`.
pub struct PolicyWasi {
    ctx: WasiCtx,
    table: ResourceTable,
    seed: Arc<AtomicU64>,
}

impl PolicyWasi {
    /// The WASI of an instance of `policy`.
    pub fn new(policy: &Arc<str>) -> Self {
        let seed = Arc::new(AtomicU64::new(0));
        let log = Arc::new(OutputLimit::default());
        let output = |stream: &'static str| PolicyOutput {
            policy: policy.clone(),
            stream,
            limit: log.clone(),
        };
        let ctx = WasiCtx::builder()
            .stdout(output("stdout"))
            .stderr(output("stderr"))
            .secure_random(Seeded(seed.clone()))
            .insecure_random(Seeded(seed.clone()))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        PolicyWasi {
            ctx,
            table: ResourceTable::new(),
            seed,
        }
    }

    /// Restarts `wasi:random` from a call's seed.
    pub fn reseed(&self, seed: u64) {
        // Not the seed itself: the policy's own generator starts there.
        self.seed
            .store(seed ^ 0x5741_5349_5241_4e44, Ordering::Relaxed);
    }
}

impl WasiView for super::state::HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let wasi = self.wasi();
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
        }
    }
}

/// `wasi:random`, from the seed of the call in progress (SplitMix64).
struct Seeded(Arc<AtomicU64>);

impl Seeded {
    fn next(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl rand_core_10::TryRng for Seeded {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.next() as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.next())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let n = self.next().to_le_bytes();
            chunk.copy_from_slice(&n[..chunk.len()]);
        }
        Ok(())
    }
}

/// How much of its output an instance may log: [`LINES_PER_SECOND`]
/// lines a second.
pub struct OutputLimit {
    window: Mutex<(Instant, u32, u64)>,
}

impl Default for OutputLimit {
    fn default() -> Self {
        OutputLimit {
            window: Mutex::new((Instant::now(), 0, 0)),
        }
    }
}

impl OutputLimit {
    /// Whether a line may be logged now; the lines dropped in the last
    /// second, to report, when a new second starts.
    fn admit(&self) -> (bool, u64) {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let mut dropped = 0;
        if w.0.elapsed().as_secs() >= 1 {
            dropped = w.2;
            *w = (Instant::now(), 0, 0);
        }
        if w.1 < LINES_PER_SECOND {
            w.1 += 1;
            (true, dropped)
        } else {
            w.2 += 1;
            (false, dropped)
        }
    }
}

/// A policy's standard output or error.
#[derive(Clone)]
struct PolicyOutput {
    policy: Arc<str>,
    stream: &'static str,
    limit: Arc<OutputLimit>,
}

impl IsTerminal for PolicyOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PolicyOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter {
            output: self.clone(),
            line: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI 0.3 streams are asynchronous: no policy world uses one.
        Box::new(tokio::io::sink())
    }
}

/// Cuts what a policy writes into lines and logs them.
struct LineWriter {
    output: PolicyOutput,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self) {
        let (admitted, dropped) = self.output.limit.admit();
        let policy = &*self.output.policy;
        if dropped > 0 {
            tracing::warn!(target: "policy", policy, dropped, "policy output over the limit dropped");
        }
        if admitted {
            let text = String::from_utf8_lossy(&self.line);
            tracing::info!(target: "policy", policy, stream = self.output.stream, "{}", text.trim_end());
        }
        self.line.clear();
    }
}

#[async_trait::async_trait]
impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        for &b in bytes.iter() {
            if b == b'\n' {
                self.emit();
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randomness_follows_the_call_seed() {
        let seed = Arc::new(AtomicU64::new(0));
        let (a, b) = (Seeded(seed.clone()), Seeded(seed.clone()));
        seed.store(7, Ordering::Relaxed);
        let first: Vec<u64> = (0..3).map(|_| a.next()).collect();
        seed.store(7, Ordering::Relaxed);
        let again: Vec<u64> = (0..3).map(|_| b.next()).collect();
        assert_eq!(first, again);
        assert_ne!(first[0], first[1]);
    }

    #[test]
    fn output_is_limited_per_second() {
        let limit = OutputLimit::default();
        let admitted = (0..100).filter(|_| limit.admit().0).count();
        assert_eq!(admitted, LINES_PER_SECOND as usize);
    }
}
