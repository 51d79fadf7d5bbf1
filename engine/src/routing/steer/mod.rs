//! Content steering (HLS Content Steering, DASH-IF Content Steering): a
//! player polls `GET /steer/{hls|dash}/...` every `TTL` seconds and gets a
//! manifest ordering the pathways (CDNs, or our server groups behind a host
//! name) it should fetch from. One poll, top to bottom, in
//! [`Steering::poll`]:
//!
//! 1. the URL and what the player reports ([`poll`]);
//! 2. steering switched off in the topology: `410 Gone`;
//! 3. the session token of the previous manifest opened ([`token`]); a
//!    poll far sooner than its TTL: `429` with `Retry-After`;
//! 4. the client's tiers, and the active pathways offered with their
//!    edges' health ([`order`]);
//! 5. the order: the policy's `steer` export (the canary's for its
//!    clients), checked; the engine's default order for a 0.3.0 policy, a
//!    failed call, a refused answer; the session's last order with a
//!    doubled TTL when this worker is over its rate of policy calls (a shed
//!    poll never gets a `429`: hls.js gives up steering on one);
//! 6. the manifest, with the next session token in its `RELOAD-URI`
//!    ([`manifest`]).

pub mod explain;
pub mod manifest;
pub mod order;
pub mod poll;
pub mod token;

use super::candidates::{Offer, Scratch, prepare_reusing};
use super::decider::{Decided, SteerCall};
use super::headers::RequestHeaders;
use super::{Decider, Outcome};
use crate::health::ServersHealth;
use crate::metrics::SteeringMetrics;
use crate::policy::RoutingState;
use crate::policy::bindings::PathwayOffer;
use crate::topology::Topology;
use order::{Checked, MAX_TTL};
use poll::{Poll, Steered};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Policy `steer` calls a worker makes per second at most, by default;
/// polls beyond are shed (answered with the session's last order and a
/// doubled TTL). At a 300 s TTL, 2,000 a second per worker steer some
/// 600,000 players per worker.
pub const DEFAULT_MAX_RATE: u32 = 2000;

/// Where the signing key of session tokens comes from: the fleet's shared
/// key (the admin sessions', shared through etcd), read at each poll so a
/// key change is followed.
pub type KeySource = Arc<dyn Fn() -> [u8; 32] + Send + Sync>;

/// How a worker answers steering polls.
#[derive(Clone)]
pub struct SteeringSetup {
    /// The signing key.
    pub key: KeySource,
    /// Policy `steer` calls per second at most (0: no limit).
    pub max_rate: u32,
}

/// The key is never printed.
impl std::fmt::Debug for SteeringSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SteeringSetup")
            .field("max_rate", &self.max_rate)
            .finish_non_exhaustive()
    }
}

impl Default for SteeringSetup {
    /// A key of this process's own (tokens do not survive a restart or
    /// cross to another node: such a poll starts a new session).
    fn default() -> Self {
        let mut key = [0; 32];
        rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut key)
            .expect("the operating system's random numbers");
        SteeringSetup {
            key: Arc::new(move || key),
            max_rate: DEFAULT_MAX_RATE,
        }
    }
}

/// What a poll needs to know about its request.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// The URL's path (under [`poll::PREFIX`]).
    pub path: &'a str,
    /// Its query.
    pub query: Option<&'a str>,
    /// The client.
    pub client: IpAddr,
    /// Over TLS.
    pub tls: bool,
    /// Its headers (for those the policy declared).
    pub headers: RequestHeaders<'a>,
    /// What GeoIP databases say of the client.
    pub geo: crate::policy::bindings::Geo,
}

/// One worker's steering: its signing key (derived once per key), its
/// budget of policy calls, its random draws (session ids) and buffers.
pub struct Steering {
    setup: SteeringSetup,
    key: Option<([u8; 32], [u8; 32])>,
    budget: Budget,
    rng: SmallRng,
    scratch: Scratch,
    offers: Vec<PathwayOffer>,
}

/// A token bucket of policy calls: `rate` a second, a second's worth of
/// burst.
struct Budget {
    rate: u32,
    tokens: f64,
    last: Instant,
}

impl Budget {
    fn take(&mut self, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let rate = f64::from(self.rate);
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How a poll was answered, as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Policy,
    Default,
    Fallback,
    Shed,
    Stopped,
    Throttled,
    Refused,
}

impl Answer {
    const fn name(self) -> &'static str {
        match self {
            Answer::Policy => "policy",
            Answer::Default => "default",
            Answer::Fallback => "fallback",
            Answer::Shed => "shed",
            Answer::Stopped => "stopped",
            Answer::Throttled => "throttled",
            Answer::Refused => "refused",
        }
    }
}

impl Steering {
    /// A worker's steering, as set up.
    pub fn new(setup: SteeringSetup, seed: Option<u64>) -> Self {
        let rate = setup.max_rate;
        Steering {
            setup,
            key: None,
            budget: Budget {
                rate,
                tokens: f64::from(rate),
                last: Instant::now(),
            },
            rng: match seed {
                Some(s) => SmallRng::seed_from_u64(s ^ 0x5_7ee7),
                None => SmallRng::from_os_rng(),
            },
            scratch: Scratch::default(),
            offers: Vec::new(),
        }
    }

    /// The token key for the current fleet key.
    fn key(&mut self) -> [u8; 32] {
        let shared = (self.setup.key)();
        match self.key {
            Some((s, derived)) if s == shared => derived,
            _ => {
                let derived = token::derive(&shared);
                self.key = Some((shared, derived));
                derived
            }
        }
    }

    /// Answers one steering poll on `topology` (with its servers'
    /// `health`) with the policies of `routing`.
    #[allow(clippy::too_many_arguments)]
    pub fn poll(
        &mut self,
        decider: &mut Decider,
        topology: &Arc<Topology>,
        health: &ServersHealth,
        routing: &Arc<RoutingState>,
        asked: &Asked<'_>,
        metrics: Option<&SteeringMetrics>,
    ) -> Decided {
        let started = Instant::now();
        let (decided, steered, answer) =
            self.answer(decider, topology, health, routing, asked, metrics);
        if let Some(m) = metrics {
            m.poll(steered.map_or("-", Steered::name), answer.name());
            m.duration(started.elapsed().as_secs_f64());
        }
        decided
    }

    fn answer(
        &mut self,
        decider: &mut Decider,
        topology: &Arc<Topology>,
        health: &ServersHealth,
        routing: &Arc<RoutingState>,
        asked: &Asked<'_>,
        metrics: Option<&SteeringMetrics>,
    ) -> (Decided, Option<Steered>, Answer) {
        let refuse = |status: u16, reason: String| {
            Decided::refused(Outcome::Refuse {
                status,
                reason: reason.into(),
            })
        };
        // 1. The URL and what the player reports.
        let poll = match poll::parse(asked.path, asked.query) {
            Ok(poll) => poll,
            Err((status, why)) => return (refuse(status, why), None, Answer::Refused),
        };
        let steered = Some(poll.steered);
        // 2. Switched off.
        if !topology.steering.enabled {
            let outcome = refuse(410, "content steering is switched off".into());
            return (outcome, steered, Answer::Stopped);
        }
        // 3. The session.
        let key = self.key();
        let now_ms = crate::time::unix_millis(SystemTime::now());
        let session = poll
            .session
            .as_deref()
            .and_then(|t| token::open(&key, poll.target, t).ok());
        if let Some(s) = &session {
            let ttl_ms = u64::from(s.ttl_s) * 1000;
            let age = now_ms.saturating_sub(s.issued_ms);
            if age < ttl_ms / 4 {
                let retry_after = (ttl_ms - age).div_ceil(1000).max(1) as u32;
                let outcome = Decided::refused(Outcome::TooSoon { retry_after });
                return (outcome, steered, Answer::Throttled);
            }
        }
        // 4. Tiers and pathways.
        let mut prepared = match prepare_reusing(
            topology,
            health,
            &poll.route,
            asked.query,
            asked.client,
            Offer {
                fail_open: false,
                tls: asked.tls,
                geo: asked.geo,
                nearest_regions: decider.nearest_regions,
            },
            &mut self.scratch,
        ) {
            Ok(p) => p,
            Err(outcome) => return (Decided::refused(outcome), steered, Answer::Refused),
        };
        for tier in &mut prepared.tiers {
            tier.candidates.clear();
        }
        order::offers(
            topology,
            health,
            &prepared.tiers,
            &poll.reported,
            &mut self.offers,
        );
        if self.offers.is_empty() {
            self.scratch = prepared.into_scratch();
            let outcome = refuse(503, "no active steering pathway".into());
            return (outcome, steered, Answer::Refused);
        }
        // 5. The order.
        let default_ttl = topology.steering.ttl_s;
        let last_state = session.as_ref().map_or(&[][..], |s| &s.state[..]);
        let (answer, order, ttl, state, decided_by, fell_back) =
            if !self.budget.take(Instant::now()) {
                let last = session.as_ref().map_or(&[][..], |s| &s.order[..]);
                let ttl = session.as_ref().map_or(default_ttl, |s| u32::from(s.ttl_s));
                let order = order::repeat(topology, last, &self.offers);
                let ttl = ttl.saturating_mul(2).min(MAX_TTL);
                (Answer::Shed, order, ttl, last_state.to_vec(), None, None)
            } else {
                let offers = &self.offers;
                match decider.steer(
                    routing,
                    topology,
                    asked.client,
                    &mut prepared,
                    asked.headers,
                    offers,
                    last_state,
                    |d| order::check(d, offers),
                ) {
                    SteerCall::Answered(Checked::Order(order, ttl, state), by) => {
                        let ttl = if ttl == 0 { default_ttl } else { ttl };
                        (Answer::Policy, order, ttl, state, Some(by), None)
                    }
                    SteerCall::Answered(Checked::Default, by) => {
                        let order = order::default_order(offers);
                        (
                            Answer::Default,
                            order,
                            default_ttl,
                            Vec::new(),
                            Some(by),
                            None,
                        )
                    }
                    SteerCall::Answered(Checked::Stop, by) => {
                        self.scratch = prepared.into_scratch();
                        let mut outcome = refuse(
                            410,
                            "the routing policy stopped steering this session".into(),
                        );
                        outcome.decided_by = Some(by);
                        return (outcome, steered, Answer::Stopped);
                    }
                    SteerCall::Native => {
                        let order = order::default_order(offers);
                        (Answer::Default, order, default_ttl, Vec::new(), None, None)
                    }
                    SteerCall::Failed(label, by) => {
                        let order = order::default_order(offers);
                        let fell_back = Some((label, super::decider::NATIVE));
                        (
                            Answer::Fallback,
                            order,
                            default_ttl,
                            Vec::new(),
                            Some(by),
                            fell_back,
                        )
                    }
                }
            };
        self.scratch = prepared.into_scratch();
        if order.is_empty() {
            let outcome = refuse(503, "no steering pathway for this client".into());
            return (outcome, steered, Answer::Refused);
        }
        // 6. The manifest and the next token.
        let ids: Vec<String> = order
            .iter()
            .take(token::ORDER_KEPT)
            .map(|&p| topology.pathways[p as usize].id.to_string())
            .collect();
        if let Some(m) = metrics {
            let switched = session
                .as_ref()
                .and_then(|s| s.order.first())
                .is_some_and(|previous| *previous != ids[0]);
            m.answered(poll.steered.name(), &ids[0], switched);
        }
        let next = token::Session {
            id: session
                .as_ref()
                .map_or_else(|| self.rng.next_u64(), |s| s.id),
            issued_ms: now_ms,
            ttl_s: ttl as u16,
            polls: session.as_ref().map_or(1, |s| s.polls.saturating_add(1)),
            order: ids,
            state,
        };
        let reload_uri = reload_uri(&poll, &token::seal(&key, poll.target, &next));
        let json = manifest::write(topology, poll.steered, &order, ttl, &reload_uri);
        let decided = Decided {
            outcome: Outcome::Manifest { json, max_age: ttl },
            decided_by,
            chosen: None,
            fell_back,
        };
        (decided, steered, answer)
    }
}

/// The next poll's URI: this poll's path with its other parameters and
/// the new session token (the player adds its `_HLS_`/`_DASH_` ones).
/// Path-absolute, resolved by the player against the manifest's URL: a
/// proxy in front must keep the `/steer/` prefix.
fn reload_uri(poll: &Poll<'_>, token: &str) -> String {
    let mut uri = String::with_capacity(poll::PREFIX.len() + poll.target.len() + token.len() + 16);
    uri.push_str(poll::PREFIX);
    uri.push_str(poll.target);
    uri.push('?');
    if !poll.kept.is_empty() {
        uri.push_str(&poll.kept);
        uri.push('&');
    }
    uri.push_str(poll::SESSION);
    uri.push('=');
    uri.push_str(token);
    uri
}
