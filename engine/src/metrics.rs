//! Prometheus metrics, served as text at `/metrics` on the admin listener.
//!
//! The request path only touches counters and a histogram owned by its own
//! worker (a `worker` label keeps workers from sharing cache lines; sum it
//! away in queries). Everything else (policy call statistics, server health,
//! topology and policy versions) is read from the live state when scraped.

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
    /// `/steer/...` (content-steering polls).
    Steer,
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
            Kind::Steer => "steer",
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

const KINDS: [Kind; 6] = [
    Kind::Live,
    Kind::Catchup,
    Kind::Vod,
    Kind::Static,
    Kind::Steer,
    Kind::Other,
];
/// Statuses with a pre-created counter per worker; others take a slower path.
const STATUSES: [u16; 5] = [302, 400, 404, 405, 503];

/// Label pairs of a metric read from the live state.
pub(crate) type Labels = Vec<(String, String)>;

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
struct ListenerLabels {
    listener: &'static str,
    worker: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PollLabels {
    protocol: &'static str,
    answer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathwayLabel {
    pathway: String,
}

/// The content-steering figures one worker counts into.
#[derive(Clone)]
pub struct SteeringMetrics {
    polls: Family<PollLabels, Counter>,
    switches: Family<ProtocolLabel, Counter>,
    first: Family<PathwayLabel, Counter>,
    duration: Histogram,
}

impl SteeringMetrics {
    /// Counts a poll of `protocol` (`hls`, `dash`) and how it was
    /// answered (`policy`, `default`, `fallback`, `shed`, `stopped`,
    /// `throttled`, `refused`).
    pub fn poll(&self, protocol: &'static str, answer: &'static str) {
        self.polls
            .get_or_create(&PollLabels { protocol, answer })
            .inc();
    }

    /// Counts a manifest whose first pathway is `first`, and a switch
    /// when the session's previous manifest put another first.
    pub fn answered(&self, protocol: &'static str, first: &str, switched: bool) {
        self.first
            .get_or_create(&PathwayLabel {
                pathway: first.to_string(),
            })
            .inc();
        if switched {
            self.switches
                .get_or_create(&ProtocolLabel { protocol })
                .inc();
        }
    }

    /// Records how long answering a poll took (token, tiers, policy call,
    /// manifest).
    pub fn duration(&self, seconds: f64) {
        self.duration.observe(seconds);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabel {
    change: &'static str,
}

/// What programme-guide imports and the retention did.
#[derive(Clone, Default)]
pub struct EpgMetrics {
    files: Family<ResultLabel, Counter>,
    programmes: Family<ChangeLabel, Counter>,
}

impl EpgMetrics {
    /// Counts a guide file `imported` or `refused`.
    pub fn file(&self, result: &'static str) {
        self.files.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts `n` programmes `created`, `replaced` or `removed`.
    pub fn programmes(&self, change: &'static str, n: usize) {
        self.programmes
            .get_or_create(&ChangeLabel { change })
            .inc_by(n as u64);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    operation: &'static str,
    result: &'static str,
}

/// What the DVR worker did, and how its calls went.
#[derive(Clone)]
pub struct DvrMetrics {
    recordings: Family<ResultLabel, Counter>,
    calls: Family<CallLabels, Counter>,
    duration: Family<OperationLabel, Histogram>,
    leader: Gauge,
}

impl Metrics {
    /// Counts a failed authentication on the admin API.
    pub fn auth_failed(&self) {
        self.auth_failures.inc();
    }
}

impl DvrMetrics {
    /// Counts a recording `scheduled`, `completed`, `failed` or `removed`.
    pub fn recording(&self, result: &'static str) {
        self.recordings.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts one call (`schedule`, `status`, `remove`, `cancel`) and its
    /// result (`ok`, `fault`, `error`), and how long it took.
    pub fn call(&self, operation: &'static str, result: &'static str, seconds: f64) {
        self.calls
            .get_or_create(&CallLabels { operation, result })
            .inc();
        self.duration
            .get_or_create(&OperationLabel { operation })
            .observe(seconds);
    }

    /// Whether this node runs the guide importer and the DVR worker.
    pub fn leading(&self, yes: bool) {
        self.leader.set(i64::from(yes));
    }
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
    open: Family<ListenerLabels, Gauge>,
    refused: Family<ListenerLabels, Counter>,
    timed_out: Family<ListenerLabels, Counter>,
    steering: SteeringMetrics,
    /// Programme-guide imports.
    pub epg: EpgMetrics,
    /// DVR recordings.
    pub dvr: DvrMetrics,
    auth_failures: Counter,
}

/// One worker's connection figures on one listener (`http` or `https`).
#[derive(Clone, Debug)]
pub struct ConnectionMetrics {
    /// Connections open now.
    pub open: Gauge,
    /// Connections closed at once because the worker was at its limit.
    pub refused: Counter,
    /// Connections closed because a request's head (or the next one on an
    /// idle keep-alive connection, or a TLS handshake) took too long.
    pub timed_out: Counter,
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
        let open = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "edgeward_connections_open",
            "Player connections open, by listener (http, https) and worker",
            open.clone(),
        );
        let refused = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "edgeward_connections_refused",
            "Player connections closed at once: the worker had --max-connections-per-worker open",
            refused.clone(),
        );
        let timed_out = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "edgeward_connections_timed_out",
            "Player connections closed for a slow request head, an idle keep-alive or a slow TLS handshake",
            timed_out.clone(),
        );
        let steering = SteeringMetrics {
            polls: Family::default(),
            switches: Family::default(),
            first: Family::default(),
            duration: Histogram::new([
                1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 5e-3, 2.5e-2,
            ]),
        };
        registry.register(
            "edgeward_steering_polls",
            "Content-steering polls by protocol and answer (policy, default, fallback, shed, stopped, throttled, refused)",
            steering.polls.clone(),
        );
        registry.register(
            "edgeward_steering_switches",
            "Steering manifests whose first pathway differs from the session's previous one",
            steering.switches.clone(),
        );
        registry.register(
            "edgeward_steering_first",
            "Steering manifests by their first (preferred) pathway",
            steering.first.clone(),
        );
        registry.register(
            "edgeward_steering_duration_seconds",
            "Time to answer a steering poll (session token, tiers, policy call, manifest)",
            steering.duration.clone(),
        );
        let epg = EpgMetrics::default();
        registry.register(
            "edgeward_epg_files",
            "Programme guide files imported or refused (POST /epg, ctl, the --epg-dir folder)",
            epg.files.clone(),
        );
        registry.register(
            "edgeward_epg_programmes",
            "Programmes created, replaced by a guide's window, or removed by the retention",
            epg.programmes.clone(),
        );
        let dvr = DvrMetrics {
            recordings: Family::default(),
            calls: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
            }),
            leader: Gauge::default(),
        };
        registry.register(
            "edgeward_dvr_recordings",
            "DVR recordings scheduled, completed, failed (in error) or removed after retention",
            dvr.recordings.clone(),
        );
        registry.register(
            "edgeward_dvr_calls",
            "Calls to the DVRs by operation and result (ok, fault: the DVR refused, error: no answer)",
            dvr.calls.clone(),
        );
        registry.register(
            "edgeward_dvr_call_duration_seconds",
            "Time of a call to a DVR, by operation",
            dvr.duration.clone(),
        );
        registry.register(
            "edgeward_catalogue_leader",
            "1 while this node runs the programme-guide importer, the retention and the DVR worker (one per fleet)",
            dvr.leader.clone(),
        );
        let auth_failures = Counter::default();
        registry.register(
            "edgeward_admin_auth_failures",
            "Admin API requests with a wrong bearer token, and failed sign-ins (each answered after a growing delay)",
            auth_failures.clone(),
        );
        Metrics {
            epg,
            dvr,
            auth_failures,
            steering,
            open,
            refused,
            timed_out,
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

    /// One worker's connection figures on `listener` (`http`, `https`).
    pub fn connections(&self, listener: &'static str, worker: u16) -> ConnectionMetrics {
        let labels = ListenerLabels { listener, worker };
        ConnectionMetrics {
            open: self.open.get_or_create(&labels).clone(),
            refused: self.refused.get_or_create(&labels).clone(),
            timed_out: self.timed_out.get_or_create(&labels).clone(),
        }
    }

    /// The content-steering figures.
    pub fn steering(&self) -> SteeringMetrics {
        self.steering.clone()
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
            steering: self.steering.clone(),
        }
    }

    /// The request path's own counters and histogram alone, as text (what
    /// the console's dashboard samples).
    pub fn request_path_text(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        out
    }

    /// The text exposition of every metric, with `live`: what is read from
    /// the live state at scrape time.
    pub fn render(&self, live: &Registry) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, live);
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
    steering: SteeringMetrics,
}

impl WorkerMetrics {
    /// The content-steering figures.
    pub fn steering(&self) -> &SteeringMetrics {
        &self.steering
    }

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
