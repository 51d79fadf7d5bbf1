//! Steps 3 to 5 of the request path for one worker thread: candidates
//! ([`super::candidates`]), then the policy: which version decides (active
//! or canary), a call of its warm instance, its answer checked
//! ([`super::answer`]), a fallback when it fails, the shadow fed, and a
//! version that keeps failing reported for automatic rollback. Sampled
//! decisions go to the decision log.
//!
//! A [`Decider`] belongs to one worker thread and owns that worker's warm
//! instances (at most one per version in use), so the request path takes no
//! lock. It decides on the topology snapshot and routing state it is given,
//! loaded once per request: a concurrent swap never mixes versions within
//! one decision.

use super::Outcome;
use super::answer;
use super::candidates::{Offer, Prepared, prepare_reusing};
use super::headers::RequestHeaders;
use super::url::Route;
use crate::health::ServersHealth;
use crate::policy::bindings as wit;
use crate::policy::{Disagreement, Fallback, RoutingState};
use crate::policy::{LoadedPolicy, PolicyHost, WarmInstance, native};
use crate::topology::Topology;
use http::HeaderValue;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Decision header value when the native rule answered.
pub(super) const NATIVE: HeaderValue = HeaderValue::from_static("native");
/// At most one policy-failure warning per worker per this interval.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// A decided request: the outcome, which policy version decided it, and
/// what the metrics count of it.
pub struct Decided {
    /// What to answer.
    pub outcome: Outcome,
    /// `name@version` (or `native`) of what decided, when a policy ran.
    pub decided_by: Option<HeaderValue>,
    /// The server chosen (a `choose` answer) and the region of the tier
    /// that offered it.
    pub chosen: Option<(u32, Option<u32>)>,
    /// The version whose call failed and what answered instead.
    pub fell_back: Option<(String, HeaderValue)>,
}

impl Decided {
    /// An answer given before any policy ran.
    pub fn refused(outcome: Outcome) -> Self {
        Decided {
            outcome,
            decided_by: None,
            chosen: None,
            fell_back: None,
        }
    }
}

/// What a player asked, as far as deciding needs it.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// The route parsed from the path.
    pub route: &'a Route<'a>,
    /// The raw query string (without `?`).
    pub query: Option<&'a str>,
    /// The client address.
    pub client: IpAddr,
    /// The player came over TLS (or through a trusted proxy that says so).
    pub tls: bool,
    /// Its headers, for those a policy declared.
    pub headers: super::headers::RequestHeaders<'a>,
    /// What GeoIP databases say of the client.
    pub geo: wit::Geo,
}

/// Gives the request the headers `policy` declared, with their values.
/// (Nothing to do for a policy that declared none, the usual case, or
/// when the names are already the ones it declared.)
fn declare_and_fill(
    prepared: &mut Prepared<'_>,
    policy: &LoadedPolicy,
    headers: RequestHeaders<'_>,
) {
    let wanted = policy.headers();
    let current = &mut prepared.request.headers;
    if current.names() != wanted {
        *current = wit::Headers::declared(wanted);
    }
    if !wanted.is_empty() {
        headers.fill(current);
    }
}

/// What came of asking a policy to order a steering poll's pathways
/// ([`Decider::steer`]).
pub enum SteerCall<T> {
    /// The policy answered, and its answer passed the check.
    Answered(T, HeaderValue),
    /// No policy runs (`--native-only`): the engine's default order.
    Native,
    /// The call failed or its answer did not pass (counted and logged as
    /// for `select`): the policy's label and its header.
    Failed(String, HeaderValue),
}

/// Decides requests for one worker thread.
pub struct Decider {
    policies: Arc<PolicyHost>,
    instances: Vec<WarmInstance>,
    rng: SmallRng,
    /// The routing state the instances were last pruned against.
    seen_routing: usize,
    last_warning: Option<Instant>,
    suppressed: u64,
    /// Offer down edges when no edge is up (`--health-fail-open`).
    pub fail_open: bool,
    /// Tiers of this many nearest regions for a client in no subnet whose
    /// location GeoIP knows (`--geo-nearest-regions`).
    pub nearest_regions: u8,
    /// Decide with the native rule only, never calling a wasm policy (the
    /// benchmark baseline that shows what the sandbox costs).
    pub native_only: bool,
    /// Report the chosen server and its region in [`Decided::chosen`]
    /// (for the redirect counters).
    pub count_redirects: bool,
    /// Where sampled decisions are recorded (`--decision-log`).
    pub decision_log: Option<crate::decision_log::DecisionLog>,
    /// This worker's number (for request ids).
    pub worker: u16,
    /// Requests decided so far by this worker.
    requests: u64,
    /// The server the last successful `Choose` answer named.
    last_choice: Option<u32>,
    /// The last request's buffers (tiers, target, query), reused by the
    /// next.
    scratch: super::candidates::Scratch,
}

impl Decider {
    /// A decider calling the policies of `policies`; `seed` makes its
    /// random draws reproducible.
    pub fn new(policies: Arc<PolicyHost>, seed: Option<u64>) -> Self {
        Decider {
            policies,
            instances: Vec::new(),
            rng: match seed {
                Some(s) => SmallRng::seed_from_u64(s),
                None => SmallRng::from_os_rng(),
            },
            seen_routing: 0,
            last_warning: None,
            suppressed: 0,
            fail_open: false,
            nearest_regions: crate::geo::NEAREST_REGIONS,
            native_only: false,
            count_redirects: false,
            decision_log: None,
            worker: 0,
            requests: 0,
            last_choice: None,
            scratch: Default::default(),
        }
    }

    /// Decides one request on `topology` (with its servers' `health`) with the
    /// versions of `routing`:
    /// for the request `asked`.
    pub fn decide(
        &mut self,
        topology: &Arc<Topology>,
        health: &ServersHealth,
        routing: &Arc<RoutingState>,
        asked: &Asked<'_>,
    ) -> Decided {
        let Asked {
            route,
            query,
            client,
            tls,
            headers,
            geo,
        } = *asked;
        // Only the decision log needs the decision's own duration.
        let started = self.decision_log.is_some().then(Instant::now);
        self.requests += 1;
        let mut prepared = match prepare_reusing(
            topology,
            health,
            route,
            query,
            client,
            Offer {
                fail_open: self.fail_open,
                tls,
                geo,
                nearest_regions: self.nearest_regions,
            },
            &mut self.scratch,
        ) {
            Ok(p) => p,
            Err(outcome) => return Decided::refused(outcome),
        };
        let seed = self.rng.next_u64();
        prepared.request.seed = seed;
        self.last_choice = None;
        if self.native_only {
            let outcome = self
                .finish(topology, &prepared, native::select(&prepared.tiers, seed))
                .unwrap_or(Outcome::refuse(
                    503,
                    "no available edge server for this client",
                ));
            let chosen = self.chosen(&prepared);
            self.scratch = prepared.into_scratch();
            return Decided {
                outcome,
                decided_by: Some(NATIVE),
                chosen,
                fell_back: None,
            };
        }
        self.prune(routing);
        let policy = routing.for_client(client_hash(client));

        let mut fell_back = None;
        let (outcome, decided_by) = match self.call(policy, topology, &mut prepared, headers) {
            Some(decided) => decided,
            None => {
                let (outcome, by) =
                    self.fall_back(routing, policy, topology, &mut prepared, headers, seed);
                fell_back = Some((policy.label(), by.clone()));
                (outcome, by)
            }
        };
        let chosen = self.chosen(&prepared);
        // The shadow's call below overwrites `last_choice`.
        let answered = self.last_choice;

        if let Some(shadow) = &routing.shadow
            && self.rng.next_u64() % 100 < u64::from(shadow.sample_percent)
        {
            let theirs = self
                .call(&shadow.policy, topology, &mut prepared, headers)
                .map(|(outcome, _)| outcome);
            let mut report = shadow.report.lock().unwrap_or_else(|e| e.into_inner());
            match theirs {
                None => report.shadow_failures += 1,
                Some(theirs) => report.record(theirs == outcome, || Disagreement {
                    client: client.to_string(),
                    request: describe(&prepared),
                    served: describe_outcome(&outcome),
                    shadow: describe_outcome(&theirs),
                }),
            }
        }
        if let Some(log) = &self.decision_log
            && let Some(started) = started
            && log.sampled(self.rng.next_u64())
        {
            let id = self.request_id();
            // The record shows the headers of the policy that decided.
            declare_and_fill(&mut prepared, policy, headers);
            log.record(super::record::record(
                topology,
                &prepared,
                &outcome,
                super::record::Decided {
                    by: &decided_by,
                    chosen: answered,
                    fallback: fell_back.as_ref().map(|(failed, _)| failed.as_str()),
                },
                started,
                id,
            ));
        }
        self.scratch = prepared.into_scratch();
        Decided {
            outcome,
            decided_by: Some(decided_by),
            chosen,
            fell_back,
        }
    }

    /// Asks the policy deciding for this client (the active version, or
    /// the canary for the clients it takes) to order a content-steering
    /// poll's `offers` for the client's tiers (without candidates) in
    /// `prepared`; `state` is what it returned for the session's previous
    /// poll. `check` vets its answer: a failed call or a refused answer is
    /// counted, logged and may trip automatic rollback, as for `select`.
    /// The shadow is not asked (it compares redirects).
    #[allow(clippy::too_many_arguments)]
    pub fn steer<T>(
        &mut self,
        routing: &Arc<RoutingState>,
        topology: &Arc<Topology>,
        client: IpAddr,
        prepared: &mut Prepared<'_>,
        headers: RequestHeaders<'_>,
        offers: &[wit::PathwayOffer],
        state: &[u8],
        check: impl FnOnce(wit::SteerDecision) -> Result<T, String>,
    ) -> SteerCall<T> {
        self.requests += 1;
        prepared.request.seed = self.rng.next_u64();
        if self.native_only {
            return SteerCall::Native;
        }
        self.prune(routing);
        let policy = routing.for_client(client_hash(client));
        declare_and_fill(prepared, policy, headers);
        let failed = || SteerCall::Failed(policy.label(), policy.header.clone());
        let Some(index) = self.instance(policy) else {
            return failed();
        };
        let instance = &mut self.instances[index];
        let failure =
            match instance.steer(topology, &prepared.request, &prepared.tiers, offers, state) {
                Ok(decision) => match check(decision) {
                    Ok(checked) => {
                        policy.stats.succeeded();
                        return SteerCall::Answered(checked, instance.header().clone());
                    }
                    Err(why) => {
                        instance.note_invalid();
                        format!("invalid steering answer: {why}")
                    }
                },
                Err(e) => {
                    self.instances.swap_remove(index);
                    e.message
                }
            };
        self.failed(policy, &failure);
        failed()
    }

    /// A failed call of `policy`: logged, counted, and reported for
    /// automatic rollback once it has failed often enough in a row.
    fn failed(&mut self, policy: &LoadedPolicy, failure: &str) {
        self.warn(policy, failure);
        let failures = policy.stats.failed();
        if failures >= self.policies.rollback_after {
            self.policies.report_failing(policy.version, failures);
        }
    }

    /// Calls `policy` and checks its answer. `None` when it failed (the
    /// failure is counted, logged and may trip automatic rollback).
    fn call(
        &mut self,
        policy: &Arc<LoadedPolicy>,
        topology: &Arc<Topology>,
        prepared: &mut Prepared<'_>,
        headers: RequestHeaders<'_>,
    ) -> Option<(Outcome, HeaderValue)> {
        declare_and_fill(prepared, policy, headers);
        let prepared = &*prepared;
        let index = self.instance(policy)?;
        let instance = &mut self.instances[index];
        let mut choice = None;
        let failure = match instance
            .select(topology, &prepared.request, &prepared.tiers)
            .inspect(|d| choice = chosen(d))
        {
            Ok(decision) => match answer::check(topology, prepared, decision) {
                Ok(outcome) => {
                    policy.stats.succeeded();
                    self.last_choice = choice;
                    return Some((outcome, instance.header().clone()));
                }
                Err(why) => {
                    instance.note_invalid();
                    format!("invalid answer: {why}")
                }
            },
            Err(e) => {
                // A Store that failed is never reused.
                self.instances.swap_remove(index);
                e.message
            }
        };
        self.failed(policy, &failure);
        None
    }

    /// Answers a request whose policy failed, as configured.
    fn fall_back(
        &mut self,
        routing: &RoutingState,
        failed: &Arc<LoadedPolicy>,
        topology: &Arc<Topology>,
        prepared: &mut Prepared<'_>,
        headers: RequestHeaders<'_>,
        seed: u64,
    ) -> (Outcome, HeaderValue) {
        match self.policies.fallback {
            Fallback::Unavailable => {
                return (
                    Outcome::refuse(503, "routing policy failed"),
                    failed.header.clone(),
                );
            }
            Fallback::Previous => {
                if let Some(previous) = routing
                    .previous
                    .as_ref()
                    .filter(|p| p.version != failed.version)
                    && let Some(decided) = self.call(previous, topology, prepared, headers)
                {
                    return decided;
                }
            }
            Fallback::Native => {}
        }
        let outcome = self
            .finish(topology, prepared, native::select(&prepared.tiers, seed))
            .unwrap_or(Outcome::refuse(503, "routing policy failed"));
        (outcome, NATIVE)
    }

    /// [`answer::check`] for the native rule's answers, noting its choice.
    fn finish(
        &mut self,
        topology: &Topology,
        prepared: &Prepared<'_>,
        decision: wit::Decision,
    ) -> Result<Outcome, &'static str> {
        let choice = chosen(&decision);
        let outcome = answer::check(topology, prepared, decision)?;
        self.last_choice = choice;
        Ok(outcome)
    }

    /// The server the answer chose and the region of the tier offering it
    /// (looked up only when redirects are counted).
    fn chosen(&self, prepared: &Prepared<'_>) -> Option<(u32, Option<u32>)> {
        if !self.count_redirects {
            return None;
        }
        let server = self.last_choice?;
        let region = prepared
            .tiers
            .iter()
            .find(|t| t.candidates.iter().any(|c| c.server == server))
            .map(|t| t.region);
        Some((server, region))
    }

    /// Index of this worker's warm instance of `policy`, created if needed.
    fn instance(&mut self, policy: &Arc<LoadedPolicy>) -> Option<usize> {
        if let Some(i) = self
            .instances
            .iter()
            .position(|i| i.policy().version == policy.version)
        {
            return Some(i);
        }
        match self.policies.instantiate(policy) {
            Ok(instance) => {
                self.instances.push(instance);
                Some(self.instances.len() - 1)
            }
            Err(e) => {
                self.warn(policy, &format!("cannot instantiate: {e}"));
                None
            }
        }
    }

    /// Drops instances of versions the routing state no longer uses.
    fn prune(&mut self, routing: &Arc<RoutingState>) {
        let ptr = Arc::as_ptr(routing) as usize;
        if ptr != self.seen_routing {
            self.seen_routing = ptr;
            self.instances.retain(|i| routing.uses(i.policy().version));
        }
    }

    /// Logs a policy failure, at most once per [`WARN_EVERY`] per worker.
    /// The id of the request being decided: `{worker}-{sequence}`, the
    /// same in its log lines and its decision-log record.
    fn request_id(&self) -> String {
        format!("{}-{}", self.worker, self.requests)
    }

    fn warn(&mut self, policy: &LoadedPolicy, failure: &str) {
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            request_id = %self.request_id(),
            policy = %policy.label(),
            suppressed = self.suppressed,
            "policy call failed: {failure}"
        );
        self.last_warning = Some(now);
        self.suppressed = 0;
    }
}

/// The server a `Choose` answer names.
fn chosen(decision: &wit::Decision) -> Option<u32> {
    match decision {
        wit::Decision::Choose(server) => Some(*server),
        _ => None,
    }
}

/// A stable hash of the client address (the same on every node), for the
/// canary split.
pub fn client_hash(ip: IpAddr) -> u64 {
    let bits = match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let mut z = (bits as u64) ^ ((bits >> 64) as u64).rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn describe(p: &Prepared<'_>) -> String {
    let r = &p.request;
    format!(
        "{} {}/{} {}",
        r.kind.as_str(),
        r.protocol.map_or("-", wit::Protocol::as_str),
        r.encryption.as_str(),
        r.target
    )
}

fn describe_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Redirect(url) => format!("302 {url}"),
        Outcome::Refuse { status, reason } => format!("{status} {reason}"),
        other => other.status().to_string(),
    }
}
