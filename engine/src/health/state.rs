//! One server's live health and operator state.

use arc_swap::ArcSwapOption;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::time::SystemTime;

/// What health checking concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// The fleet member whose probes these are (none: this node's).
    by: Option<Box<str>>,
}

/// What a node tells the fleet of a server it probes (shared health
/// checks): enough for every other node to route on it and show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Checked state.
    pub state: State,
    /// When it last changed, milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// When the last probe finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_ms: Option<u64>,
    /// Why the last probe failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Round-trip time of the last successful probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<u32>,
    /// Numeric fields of the last JSON health answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub figures: Vec<(String, f64)>,
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn from_epoch_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms)
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
    /// The fleet member that probes it, when another node does (shared
    /// health checks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probed_by: Option<String>,
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
                by: None,
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
    /// a line when the state changes; returns whether it did.
    pub fn record(&self, id: &str, result: Result<ProbeOk, String>, rise: u32, fall: u32) -> bool {
        let mut d = self.detail.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        d.last_probe = Some(now);
        d.by = None;
        let mut changed = false;
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
                    changed = true;
                    tracing::info!(server = id, after = d.successes, "health: server is UP");
                }
            }
            Err(error) => {
                d.successes = 0;
                d.failures = d.failures.saturating_add(1);
                if state != DOWN && d.failures >= fall {
                    self.state.store(DOWN, Relaxed);
                    d.since = Some(now);
                    changed = true;
                    tracing::warn!(server = id, failures = d.failures, %error, "health: server is DOWN");
                }
                d.last_error = Some(error);
            }
        }
        changed
    }

    /// What this node tells the fleet of the server.
    pub fn report(&self) -> Report {
        let d = self.detail.lock().unwrap_or_else(|e| e.into_inner());
        Report {
            state: self.state(),
            since_ms: d.since.map(epoch_ms),
            probe_ms: d.last_probe.map(epoch_ms),
            error: d.last_error.clone(),
            rtt_us: d.rtt_us,
            figures: d.figures.clone(),
        }
    }

    /// Takes what fleet member `by` reported of the server it probes (the
    /// thresholds were applied there); the next probe here, if this node
    /// takes the server over, goes on from this state.
    pub fn adopt(&self, id: &str, report: &Report, by: &str) {
        let mut d = self.detail.lock().unwrap_or_else(|e| e.into_inner());
        let to = match report.state {
            State::Unknown => UNKNOWN,
            State::Up => UP,
            State::Down => DOWN,
        };
        if self.state.swap(to, Relaxed) != to {
            match report.state {
                State::Down => tracing::warn!(server = id, by, "health: server is DOWN"),
                _ => tracing::info!(server = id, by, state = ?report.state, "health: server is {}",
                    if report.state == State::Up { "UP" } else { "not checked yet" }),
            }
        }
        d.successes = 0;
        d.failures = 0;
        d.since = report.since_ms.map(from_epoch_ms);
        d.last_probe = report.probe_ms.map(from_epoch_ms);
        d.last_error = report.error.clone();
        if d.rtt_us != report.rtt_us || d.figures != report.figures {
            d.rtt_us = report.rtt_us;
            d.figures = report.figures.clone();
            self.figures.store(Some(Arc::new(Figures {
                rtt_us: report.rtt_us,
                figures: report.figures.clone(),
            })));
            self.has_figures
                .store(true, std::sync::atomic::Ordering::Release);
        }
        if d.by.as_deref() != Some(by) {
            d.by = Some(by.into());
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
            probed_by: d.by.as_deref().map(str::to_string),
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
    fn a_peers_report_is_adopted_and_a_probe_here_takes_over_from_it() {
        let peer = ServerHealth::default();
        peer.record("s", ok(), 1, 1);
        peer.record("s", Err("refused".into()), 1, 1);
        let report = peer.report();
        assert_eq!(report.state, State::Down);
        assert_eq!(report.error.as_deref(), Some("refused"));

        let h = ServerHealth::default();
        h.adopt("s", &report, "node-2");
        assert!(!h.available());
        let view = h.view();
        assert_eq!(view.probed_by.as_deref(), Some("node-2"));
        assert_eq!(view.last_error.as_deref(), Some("refused"));
        assert_eq!(
            h.figures().unwrap().figures,
            vec![("load".to_string(), 0.5)]
        );
        // This node takes the server over: its own probes count from the
        // adopted state, with its own thresholds.
        assert!(!h.record("s", ok(), 2, 1), "one success of two");
        assert!(h.record("s", ok(), 2, 1));
        assert_eq!(h.state(), State::Up);
        assert_eq!(h.view().probed_by, None);
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
