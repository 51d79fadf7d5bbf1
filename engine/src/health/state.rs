//! One server's live health and operator state.

use arc_swap::ArcSwapOption;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::time::SystemTime;

/// What health checking concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not checked (no `healthcheck`), or no probe has finished yet.
    Unknown,
    /// Passing its checks.
    Up,
    /// Failed `fall` checks in a row.
    Down,
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// A server's health, shared by the checker (writer) and the workers.
#[derive(Debug)]
pub struct ServerHealth {
    state: AtomicU8,
    draining: AtomicBool,
    figures: ArcSwapOption<Figures>,
    /// Whether `figures` was ever set: the request path checks this flag
    /// (a plain load) before paying for an `ArcSwap` load per candidate.
    has_figures: AtomicBool,
    detail: Mutex<Detail>,
}

#[derive(Debug)]
struct Detail {
    successes: u32,
    failures: u32,
    since: Option<SystemTime>,
    last_error: Option<String>,
    last_probe: Option<SystemTime>,
    figures: Vec<(String, f64)>,
    rtt_us: Option<u32>,
}

/// A server's health as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerHealthView {
    /// Checked state.
    pub health: State,
    /// Drained by an operator.
    pub draining: bool,
    /// `draining`, else the checked state.
    pub state: &'static str,
    /// When the checked state last changed (RFC 3339).
    pub since: Option<String>,
    /// When the last probe finished (RFC 3339).
    pub last_probe: Option<String>,
    /// Why the last probe failed, if it did.
    pub last_error: Option<String>,
    /// Round-trip time of the last successful probe.
    pub rtt_us: Option<u32>,
    /// Numeric fields of the last JSON health answer.
    pub figures: serde_json::Map<String, serde_json::Value>,
}

/// What the last successful probe of a server reported: what a policy is
/// offered as the candidate's health (the policy host turns it into the
/// contract's `health` record).
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Round-trip time of the probe, in microseconds.
    pub rtt_us: Option<u32>,
    /// Numeric top-level fields of the edge's JSON health answer.
    pub figures: Vec<(String, f64)>,
}

impl Default for ServerHealth {
    fn default() -> Self {
        ServerHealth::new()
    }
}

/// A successful probe.
#[derive(Debug, Clone)]
pub struct ProbeOk {
    /// Round-trip time.
    pub rtt_us: u32,
    /// Numeric top-level fields of a JSON answer.
    pub figures: Vec<(String, f64)>,
}

impl ServerHealth {
    /// Nothing known yet: not checked, not drained (and so available).
    pub const fn new() -> Self {
        ServerHealth {
            state: AtomicU8::new(UNKNOWN),
            draining: AtomicBool::new(false),
            figures: ArcSwapOption::const_empty(),
            has_figures: AtomicBool::new(false),
            detail: Mutex::new(Detail {
                successes: 0,
                failures: 0,
                since: None,
                last_error: None,
                last_probe: None,
                figures: Vec::new(),
                rtt_us: None,
            }),
        }
    }

    /// Whether the request path may send players here: not down, not drained.
    #[inline]
    pub fn available(&self) -> bool {
        self.state.load(Relaxed) != DOWN && !self.draining.load(Relaxed)
    }

    /// Whether an operator drained the server.
    #[inline]
    pub fn draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// Checked state.
    pub fn state(&self) -> State {
        match self.state.load(Relaxed) {
            UP => State::Up,
            DOWN => State::Down,
            _ => State::Unknown,
        }
    }

    /// Sets the checked state directly, as a probe result would after the
    /// thresholds (for offline runs such as `policy test`, where nothing
    /// is probed).
    pub fn set_checked(&self, state: State) {
        self.state.store(
            match state {
                State::Unknown => UNKNOWN,
                State::Up => UP,
                State::Down => DOWN,
            },
            Relaxed,
        );
    }

    /// Drains or undrains; returns whether it changed.
    pub fn set_draining(&self, draining: bool) -> bool {
        self.draining.swap(draining, Relaxed) != draining
    }

    /// The figures of the last successful probe, if there was one (a
    /// shared handle: offering them to a policy copies nothing).
    #[inline]
    pub fn figures(&self) -> Option<Arc<Figures>> {
        if !self.has_figures.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.figures.load_full()
    }

    /// Applies one probe result with the `rise`/`fall` thresholds, logging
    /// a line when the state changes.
    pub fn record(&self, id: &str, result: Result<ProbeOk, String>, rise: u32, fall: u32) {
        let mut d = self.detail.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        d.last_probe = Some(now);
        let state = self.state.load(Relaxed);
        match result {
            Ok(ok) => {
                d.failures = 0;
                d.successes = d.successes.saturating_add(1);
                d.last_error = None;
                d.rtt_us = Some(ok.rtt_us);
                self.figures.store(Some(Arc::new(Figures {
                    rtt_us: Some(ok.rtt_us),
                    figures: ok.figures.clone(),
                })));
                self.has_figures
                    .store(true, std::sync::atomic::Ordering::Release);
                d.figures = ok.figures;
                let up = match state {
                    UNKNOWN => true,
                    DOWN => d.successes >= rise,
                    _ => false,
                };
                if up {
                    self.state.store(UP, Relaxed);
                    d.since = Some(now);
                    tracing::info!(server = id, after = d.successes, "health: server is UP");
                }
            }
            Err(error) => {
                d.successes = 0;
                d.failures = d.failures.saturating_add(1);
                if state != DOWN && d.failures >= fall {
                    self.state.store(DOWN, Relaxed);
                    d.since = Some(now);
                    tracing::warn!(server = id, failures = d.failures, %error, "health: server is DOWN");
                }
                d.last_error = Some(error);
            }
        }
    }

    /// The admin view.
    pub fn view(&self) -> ServerHealthView {
        let d = self.detail.lock().unwrap_or_else(|e| e.into_inner());
        let health = self.state();
        let draining = self.draining();
        ServerHealthView {
            health,
            draining,
            state: if draining {
                "draining"
            } else {
                match health {
                    State::Up => "up",
                    State::Down => "down",
                    State::Unknown => "unknown",
                }
            },
            since: d.since.map(crate::time::rfc3339),
            last_probe: d.last_probe.map(crate::time::rfc3339),
            last_error: d.last_error.clone(),
            rtt_us: d.rtt_us,
            figures: d
                .figures
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Result<ProbeOk, String> {
        Ok(ProbeOk {
            rtt_us: 100,
            figures: vec![("load".into(), 0.5)],
        })
    }

    #[test]
    fn rise_and_fall_thresholds() {
        let h = ServerHealth::default();
        assert!(h.available());
        assert_eq!(h.state(), State::Unknown);
        h.record("s", ok(), 2, 3);
        assert_eq!(h.state(), State::Up);
        assert_eq!(h.figures().unwrap().figures[0].0, "load");
        for i in 0..3 {
            assert!(h.available(), "still up after {i} failures");
            h.record("s", Err("boom".into()), 2, 3);
        }
        assert_eq!(h.state(), State::Down);
        assert!(!h.available());
        h.record("s", ok(), 2, 3);
        assert_eq!(h.state(), State::Down, "one success is not enough");
        h.record("s", Err("boom".into()), 2, 3);
        h.record("s", ok(), 2, 3);
        assert_eq!(h.state(), State::Down, "successes must be consecutive");
        h.record("s", ok(), 2, 3);
        assert_eq!(h.state(), State::Up);
    }

    #[test]
    fn drain_is_independent_of_health() {
        let h = ServerHealth::default();
        assert!(h.set_draining(true));
        assert!(!h.set_draining(true));
        assert!(!h.available());
        assert_eq!(h.view().state, "draining");
        h.set_draining(false);
        assert!(h.available());
    }
}
