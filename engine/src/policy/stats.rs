//! Per-version call statistics, shared by every worker.
//!
//! Workers count locally and publish every [`FLUSH_EVERY`] calls (and when an
//! instance is dropped), so the hot path does not bounce a shared cache line
//! between cores on every request.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Calls a worker counts locally before publishing.
pub const FLUSH_EVERY: u64 = 64;
/// One call in this many is timed (reading the clock twice per call costs
/// more than the mean needs).
pub const TIME_EVERY: u64 = 16;

/// Shared counters of one policy version.
#[derive(Debug, Default)]
pub struct PolicyStats {
    calls: AtomicU64,
    failures: AtomicU64,
    deadline_hits: AtomicU64,
    invalid_answers: AtomicU64,
    call_nanos: AtomicU64,
    timed_calls: AtomicU64,
    recycled: AtomicU64,
    /// Failures since the last success (published immediately, it drives
    /// automatic rollback).
    consecutive_failures: AtomicU64,
}

/// A snapshot of [`PolicyStats`].
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct StatsSnapshot {
    /// Calls made.
    pub calls: u64,
    /// Calls that trapped or ran out of time.
    pub traps: u64,
    /// Of which ran out of time.
    pub deadline_hits: u64,
    /// Answers refused by the engine's checks.
    pub invalid_answers: u64,
    /// Mean call time in microseconds.
    pub mean_call_us: f64,
    /// Instances replaced by fresh ones before their memory reached its
    /// cap.
    pub recycled: u64,
}

impl PolicyStats {
    /// Adds a worker's local counts.
    pub fn publish(&self, local: &mut LocalStats) {
        if local.calls == 0 && local.failures == 0 {
            return;
        }
        self.calls.fetch_add(local.calls, Relaxed);
        self.call_nanos.fetch_add(local.nanos, Relaxed);
        self.timed_calls.fetch_add(local.timed, Relaxed);
        self.failures.fetch_add(local.failures, Relaxed);
        self.deadline_hits.fetch_add(local.deadline_hits, Relaxed);
        self.invalid_answers.fetch_add(local.invalid, Relaxed);
        *local = LocalStats::default();
    }

    /// Counts an instance replaced before its memory reached its cap.
    pub fn recycled(&self) {
        self.recycled.fetch_add(1, Relaxed);
    }

    /// Records a failure (trap, deadline or invalid answer) and returns the
    /// number of consecutive failures.
    pub fn failed(&self) -> u64 {
        self.consecutive_failures.fetch_add(1, Relaxed) + 1
    }

    /// Records a success: the run of consecutive failures is over.
    #[inline]
    pub fn succeeded(&self) {
        // Read first: the common case writes nothing.
        if self.consecutive_failures.load(Relaxed) != 0 {
            self.consecutive_failures.store(0, Relaxed);
        }
    }

    /// Current figures.
    pub fn snapshot(&self) -> StatsSnapshot {
        let calls = self.calls.load(Relaxed);
        let timed = self.timed_calls.load(Relaxed);
        StatsSnapshot {
            calls,
            traps: self.failures.load(Relaxed),
            deadline_hits: self.deadline_hits.load(Relaxed),
            invalid_answers: self.invalid_answers.load(Relaxed),
            recycled: self.recycled.load(Relaxed),
            mean_call_us: if timed == 0 {
                0.0
            } else {
                self.call_nanos.load(Relaxed) as f64 / timed as f64 / 1e3
            },
        }
    }
}

/// A worker's not-yet-published counts for one version.
#[derive(Debug, Default)]
pub struct LocalStats {
    /// Calls made.
    pub calls: u64,
    /// Total time of the timed calls.
    pub nanos: u64,
    /// Calls timed.
    pub timed: u64,
    /// Traps and deadline hits.
    pub failures: u64,
    /// Deadline hits.
    pub deadline_hits: u64,
    /// Invalid answers.
    pub invalid: u64,
}
