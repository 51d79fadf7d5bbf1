//! Prometheus metrics, served as text at `/metrics` on the admin listener.
//!
//! The request path only touches counters and a histogram owned by its own
//! worker (a `worker` label keeps workers from sharing cache lines; sum it
//! away in queries). Everything else (policy call statistics, server health,
//! topology and policy versions) is read from the live state when scraped.

use crate::control::Control;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Kind of a player request, as a label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Kind {
    /// `/btv/live/...`
    Live,
    /// `/btv/catchup/...`
    Catchup,
    /// `/vod/...`
    Vod,
    /// `/static/...`
    Static,
    /// Anything that is not a route, or not a GET/HEAD.
    Other,
}

impl Kind {
    /// The label value.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Live => "live",
            Kind::Catchup => "catchup",
            Kind::Vod => "vod",
            Kind::Static => "static",
            Kind::Other => "other",
        }
    }
}

// Written by hand: the derive would print a raw identifier (`r#static`).
impl EncodeLabelValue for Kind {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.name())
    }
}

const KINDS: [Kind; 5] = [
    Kind::Live,
    Kind::Catchup,
    Kind::Vod,
    Kind::Static,
    Kind::Other,
];
/// Statuses with a pre-created counter per worker; others take a slower path.
const STATUSES: [u16; 5] = [302, 400, 404, 405, 503];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: Kind,
    code: u16,
    worker: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabel {
    worker: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    policy: String,
    answered_by: String,
}

/// The engine's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    decision: Family<WorkerLabel, Histogram>,
    fallbacks: Family<FallbackLabels, Counter>,
    redirects: Arc<Mutex<RedirectBook>>,
    decision_log: std::sync::OnceLock<crate::decision_log::DecisionLog>,
}

/// Redirects per server and region: each worker counts into its own table
/// (indexed like the topology it was made for); a table whose topology was
/// replaced is folded into totals by id, so counters never go backwards.
#[derive(Default)]
struct RedirectBook {
    live: Vec<Arc<RedirectTable>>,
    retired_servers: HashMap<Box<str>, u64>,
    retired_regions: HashMap<Box<str>, u64>,
}

/// One worker's redirect counters for one topology version.
struct RedirectTable {
    version: u64,
    servers: Box<[(Box<str>, AtomicU64)]>,
    regions: Box<[(Box<str>, AtomicU64)]>,
}

impl RedirectTable {
    fn new(topology: &crate::topology::Topology) -> Self {
        RedirectTable {
            version: topology.version,
            servers: topology
                .servers
                .iter()
                .map(|s| (s.id.clone(), AtomicU64::new(0)))
                .collect(),
            regions: topology
                .regions
                .iter()
                .map(|r| (r.id.clone(), AtomicU64::new(0)))
                .collect(),
        }
    }
}

impl RedirectBook {
    /// Totals by server id and by region id.
    fn totals(&self) -> (HashMap<Box<str>, u64>, HashMap<Box<str>, u64>) {
        let (mut servers, mut regions) =
            (self.retired_servers.clone(), self.retired_regions.clone());
        for table in &self.live {
            fold(&mut servers, &table.servers);
            fold(&mut regions, &table.regions);
        }
        (servers, regions)
    }
}

fn fold(into: &mut HashMap<Box<str>, u64>, counts: &[(Box<str>, AtomicU64)]) {
    for (id, n) in counts {
        let n = n.load(Ordering::Relaxed);
        if n > 0 {
            *into.entry(id.clone()).or_default() += n;
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers the request-path metrics.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "edgeward_requests",
            "Player requests by kind and status code",
            requests.clone(),
        );
        let decision = Family::<WorkerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 5e-3, 2.5e-2,
            ])
        });
        registry.register(
            "edgeward_decision_duration_seconds",
            "Time from parsed request to decided answer (lookup, tiers, policy call, checks)",
            decision.clone(),
        );
        let fallbacks = Family::<FallbackLabels, Counter>::default();
        registry.register(
            "edgeward_policy_fallbacks",
            "Requests answered by the fallback after their policy call failed",
            fallbacks.clone(),
        );
        Metrics {
            registry,
            requests,
            decision,
            fallbacks,
            redirects: Default::default(),
            decision_log: std::sync::OnceLock::new(),
        }
    }

    /// Exposes the decision log's figures (records dropped when the writer
    /// fell behind).
    pub fn set_decision_log(&self, log: crate::decision_log::DecisionLog) {
        let _ = self.decision_log.set(log);
    }

    /// The handles one worker increments.
    pub fn worker(&self, worker: u16) -> WorkerMetrics {
        let counters = KINDS.map(|kind| {
            STATUSES.map(|code| {
                self.requests
                    .get_or_create(&RequestLabels { kind, code, worker })
                    .clone()
            })
        });
        WorkerMetrics {
            worker,
            counters,
            decision: self.decision.get_or_create(&WorkerLabel { worker }).clone(),
            requests: self.requests.clone(),
            fallbacks: self.fallbacks.clone(),
            redirects: self.redirects.clone(),
            table: None,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self, control: &Control) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &live_state(control));
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.totals());
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

impl Metrics {
    /// Redirects by server and region, and the decision log's drops.
    fn totals(&self) -> Registry {
        let mut r = Registry::default();
        let (servers, regions) = self
            .redirects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .totals();
        for (name, help, label, totals) in [
            (
                "edgeward_server_redirects",
                "Redirects to each server chosen by a policy or the native rule",
                "server",
                servers,
            ),
            (
                "edgeward_region_redirects",
                "Redirects to a server of each region (the tier the server was offered in)",
                "region",
                regions,
            ),
        ] {
            let family = Family::<Labels, Counter>::default();
            for (id, n) in totals {
                family
                    .get_or_create(&vec![(label.to_string(), id.to_string())])
                    .inc_by(n);
            }
            r.register(name, help, family);
        }
        if let Some(log) = self.decision_log.get() {
            let dropped = Counter::<u64>::default();
            dropped.inc_by(log.dropped());
            r.register(
                "edgeward_decision_log_dropped",
                "Decision-log records dropped because the writer fell behind",
                dropped,
            );
        }
        r
    }
}

/// One worker's metric handles.
pub struct WorkerMetrics {
    worker: u16,
    counters: [[Counter; STATUSES.len()]; KINDS.len()],
    decision: Histogram,
    requests: Family<RequestLabels, Counter>,
    fallbacks: Family<FallbackLabels, Counter>,
    redirects: Arc<Mutex<RedirectBook>>,
    table: Option<Arc<RedirectTable>>,
}

impl WorkerMetrics {
    /// Counts one answered request.
    #[inline]
    pub fn request(&self, kind: Kind, code: u16) {
        let k = KINDS
            .iter()
            .position(|&x| x == kind)
            .unwrap_or(KINDS.len() - 1);
        match STATUSES.iter().position(|&s| s == code) {
            Some(s) => {
                self.counters[k][s].inc();
            }
            None => {
                self.requests
                    .get_or_create(&RequestLabels {
                        kind,
                        code,
                        worker: self.worker,
                    })
                    .inc();
            }
        }
    }

    /// Records how long a decision took.
    #[inline]
    pub fn decision(&self, seconds: f64) {
        self.decision.observe(seconds);
    }

    /// Counts a redirect to `server` (offered in `region`'s tier).
    #[inline]
    pub fn redirected(
        &mut self,
        topology: &crate::topology::Topology,
        server: u32,
        region: Option<u32>,
    ) {
        if self
            .table
            .as_ref()
            .is_none_or(|t| t.version != topology.version)
        {
            self.new_table(topology);
        }
        let Some(table) = &self.table else { return };
        if let Some((_, n)) = table.servers.get(server as usize) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((_, n)) = region.and_then(|r| table.regions.get(r as usize)) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts counting against a new topology, folding the old table into
    /// the totals.
    #[cold]
    fn new_table(&mut self, topology: &crate::topology::Topology) {
        let table = Arc::new(RedirectTable::new(topology));
        let mut book = self.redirects.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = self.table.take() {
            book.live.retain(|t| !Arc::ptr_eq(t, &old));
            let RedirectBook {
                retired_servers,
                retired_regions,
                ..
            } = &mut *book;
            fold(retired_servers, &old.servers);
            fold(retired_regions, &old.regions);
        }
        book.live.push(table.clone());
        self.table = Some(table);
    }

    /// Counts a request answered by a fallback after `policy` failed.
    pub fn fallback(&self, policy: &str, answered_by: &str) {
        self.fallbacks
            .get_or_create(&FallbackLabels {
                policy: policy.to_string(),
                answered_by: answered_by.to_string(),
            })
            .inc();
    }
}

type Labels = Vec<(String, String)>;

/// Metrics read from the live state at scrape time.
fn live_state(control: &Control) -> Registry {
    let mut r = Registry::default();
    let gauge = |r: &mut Registry, name: &str, help: &str, series: Vec<(Labels, f64)>| {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        for (labels, value) in series {
            family.get_or_create(&labels).set(value);
        }
        r.register(name, help, family);
    };
    let counter = |r: &mut Registry, name: &str, help: &str, series: Vec<(Labels, u64)>| {
        let family = Family::<Labels, Counter>::default();
        for (labels, value) in series {
            family.get_or_create(&labels).inc_by(value);
        }
        r.register(name, help, family);
    };
    let l = |pairs: &[(&str, String)]| -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };

    gauge(
        &mut r,
        "edgeward_build_info",
        "Build of the running engine",
        vec![(l(&[("version", env!("CARGO_PKG_VERSION").into())]), 1.0)],
    );
    let topology = control.topology.load();
    gauge(
        &mut r,
        "edgeward_topology_info",
        "The topology being served",
        vec![(
            l(&[
                ("version", topology.version.to_string()),
                ("hash", topology.hash.clone()),
            ]),
            1.0,
        )],
    );
    gauge(
        &mut r,
        "edgeward_uptime_seconds",
        "Seconds since the engine started",
        vec![(Vec::new(), control.started.elapsed().as_secs_f64())],
    );
    gauge(
        &mut r,
        "edgeward_ready",
        "1 when the engine serves players",
        vec![(Vec::new(), if control.is_ready() { 1.0 } else { 0.0 })],
    );

    if let Some(cluster) = control.cluster() {
        let (connected, revision, reconnects, refused) = cluster.figures();
        gauge(
            &mut r,
            "edgeward_etcd_connected",
            "1 when the node is connected to etcd and following it",
            vec![(Vec::new(), if connected { 1.0 } else { 0.0 })],
        );
        gauge(
            &mut r,
            "edgeward_etcd_applied_revision",
            "Highest etcd revision of the configuration applied on this node",
            vec![(Vec::new(), revision as f64)],
        );
        counter(
            &mut r,
            "edgeward_etcd_disconnects",
            "Times the node lost etcd",
            vec![(Vec::new(), reconnects)],
        );
        counter(
            &mut r,
            "edgeward_etcd_refused_changes",
            "Changes from etcd this node refused (validation failed), keeping its configuration",
            vec![(Vec::new(), refused)],
        );
    }

    let policies = control.policies.list();
    let id = |p: &crate::policy::PolicyInfo| {
        l(&[
            ("policy", p.name.clone()),
            ("version", p.version.to_string()),
        ])
    };
    gauge(
        &mut r,
        "edgeward_policy_info",
        "Loaded policy versions and their role",
        policies
            .iter()
            .map(|p| {
                let mut labels = id(p);
                labels.extend(l(&[("role", p.role.into()), ("hash", p.hash.clone())]));
                (labels, 1.0)
            })
            .collect(),
    );
    counter(
        &mut r,
        "edgeward_policy_calls",
        "Policy calls",
        policies.iter().map(|p| (id(p), p.stats.calls)).collect(),
    );
    counter(
        &mut r,
        "edgeward_policy_traps",
        "Policy calls that trapped or ran out of budget",
        policies.iter().map(|p| (id(p), p.stats.traps)).collect(),
    );
    counter(
        &mut r,
        "edgeward_policy_deadline_hits",
        "Policy calls that ran out of budget",
        policies
            .iter()
            .map(|p| (id(p), p.stats.deadline_hits))
            .collect(),
    );
    counter(
        &mut r,
        "edgeward_policy_invalid_answers",
        "Policy answers refused by the engine's checks",
        policies
            .iter()
            .map(|p| (id(p), p.stats.invalid_answers))
            .collect(),
    );
    gauge(
        &mut r,
        "edgeward_policy_mean_call_seconds",
        "Mean duration of a policy call",
        policies
            .iter()
            .map(|p| (id(p), p.stats.mean_call_us / 1e6))
            .collect(),
    );
    gauge(
        &mut r,
        "edgeward_server_state",
        "Health state of each server: 1 for its current state (up, down, unknown, draining)",
        topology
            .servers
            .iter()
            .map(|s| {
                let state = s.health.view().state;
                (
                    l(&[("server", s.id.to_string()), ("state", state.to_string())]),
                    1.0,
                )
            })
            .collect(),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_listed_in_declaration_order() {
        for (i, kind) in KINDS.iter().enumerate() {
            assert_eq!(*kind as usize, i);
        }
    }
}
