//! One player request, from URL to answer, read top to bottom in
//! [`Router::route`]:
//!
//! 1. the method (GET or HEAD);
//! 2. the path parsed into a [`url::Route`] ([`url`]);
//! 3. the client address, `X-Real-IP` from a trusted proxy, and whether
//!    it came over TLS (or `X-Forwarded-Proto: https` from one) ([`client`]);
//! 4. the candidates: what the request resolved to in the topology and the
//!    candidate tiers for this client ([`candidates`]);
//! 5. the policy: which version decides, its warm instance called, a
//!    fallback when it fails, the shadow fed ([`decider`]);
//! 6. its answer checked and the `Location` built ([`answer`]);
//! 7. the metrics, counted once, here.
//!
//! Content-steering polls (`/steer/...`) take their own path after step 3
//! ([`steer`]), on the same snapshots and the same warm instances.
//!
//! The HTTP layer ([`crate::http`]) only turns the resulting [`Routed`]
//! into a response. The acceptance check of new policies ([`acceptance`])
//! runs steps 4 to 6 on sample requests.

pub mod acceptance;
pub mod answer;
pub mod candidates;
pub mod client;
pub mod decider;
pub mod explain;
pub mod headers;
mod record;
pub mod steer;
pub mod url;

pub use decider::{Decided, Decider};

use crate::health::{HealthCache, HealthTable};
use crate::metrics::{Kind, WorkerMetrics};
use crate::policy::{PolicyHost, RoutingCache};
use crate::topology::store::{TopologyCache, TopologyStore};
use client::TrustedProxies;
use http::HeaderValue;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `302 Found` to this URL.
    Redirect(String),
    /// An error status with a short plain-text reason.
    Refuse {
        /// HTTP status code.
        status: u16,
        /// Reason sent as the body.
        reason: Cow<'static, str>,
    },
    /// `200 OK` with a content-steering manifest ([`steer`]), which the
    /// player may keep for `max_age` seconds.
    Manifest {
        /// The manifest, JSON.
        json: String,
        /// Its `TTL`, for `Cache-Control`.
        max_age: u32,
    },
    /// `429 Too Many Requests`: a steering session polled far sooner than
    /// its TTL; it may poll again in `retry_after` seconds.
    TooSoon {
        /// Seconds, for `Retry-After`.
        retry_after: u32,
    },
}

impl Outcome {
    /// A refusal with a static reason.
    pub const fn refuse(status: u16, reason: &'static str) -> Self {
        Outcome::Refuse {
            status,
            reason: Cow::Borrowed(reason),
        }
    }

    /// The HTTP status this outcome is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Redirect(_) => 302,
            Outcome::Refuse { status, .. } => *status,
            Outcome::Manifest { .. } => 200,
            Outcome::TooSoon { .. } => 429,
        }
    }
}

/// A player request, as far as routing needs it.
#[derive(Debug, Clone, Copy)]
pub struct PlayerRequest<'a> {
    /// GET or HEAD (anything else is refused with `405`).
    pub get_or_head: bool,
    /// The URL's path.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// The socket peer.
    pub peer: IpAddr,
    /// The `X-Real-IP` header, if any.
    pub x_real_ip: Option<&'a [u8]>,
    /// The connection is TLS.
    pub tls: bool,
    /// The `X-Forwarded-Proto` header, if any (believed from a trusted
    /// proxy: `https` counts as TLS).
    pub forwarded_proto: Option<&'a [u8]>,
    /// All its headers, for those a policy declared.
    pub headers: headers::RequestHeaders<'a>,
}

/// What to answer, and which policy version decided it.
#[derive(Debug)]
pub struct Routed {
    /// The answer.
    pub outcome: Outcome,
    /// `name@version` (or `native`) of what decided, when a policy ran.
    pub decided_by: Option<HeaderValue>,
    /// Readable by a page of any origin (CORS): a steering answer, which
    /// a web player fetches from script and must read, a `410` or `429`
    /// included.
    pub any_origin: bool,
}

/// The request path of one worker thread: its decider, its cached handles
/// on the topology, the servers' health and the routing state (one cheap
/// load each per request), and its metric handles.
pub struct Router {
    trusted: TrustedProxies,
    decider: Decider,
    topology: TopologyCache,
    health: HealthCache,
    routing: RoutingCache,
    metrics: Option<WorkerMetrics>,
    steering: steer::Steering,
    geo: Option<crate::geo::GeoCache>,
}

impl Router {
    /// A router reading the shared `topology`, `health` and `policies`.
    pub fn new(
        topology: &Arc<TopologyStore>,
        health: &Arc<HealthTable>,
        policies: &Arc<PolicyHost>,
        trusted: TrustedProxies,
        mut decider: Decider,
        metrics: Option<WorkerMetrics>,
    ) -> Self {
        decider.count_redirects = metrics.is_some();
        Router {
            trusted,
            decider,
            topology: topology.cache(),
            health: health.cache(),
            routing: policies.routing_cache(),
            metrics,
            steering: steer::Steering::new(steer::SteeringSetup::default(), None),
            geo: None,
        }
    }

    /// Looks clients up in these GeoIP databases.
    pub fn with_geo(mut self, geo: Option<&Arc<crate::geo::GeoIp>>) -> Self {
        self.geo = geo.map(crate::geo::GeoIp::cache);
        self
    }

    /// What the GeoIP databases say of `client` (nothing without them).
    fn geo(&mut self, client: IpAddr) -> crate::policy::bindings::Geo {
        match &mut self.geo {
            Some(geo) => geo.lookup(client),
            None => Default::default(),
        }
    }

    /// Answers steering polls as `setup` says (its key, its rate), its
    /// session ids drawn from `seed` when given.
    pub fn with_steering(mut self, setup: steer::SteeringSetup, seed: Option<u64>) -> Self {
        self.steering = steer::Steering::new(setup, seed);
        self
    }

    /// Answers one request.
    pub fn route(&mut self, req: &PlayerRequest<'_>) -> Routed {
        // 1. The method.
        if !req.get_or_head {
            let outcome = Outcome::refuse(405, "method not allowed");
            return self.counted(Kind::Other, Decided::refused(outcome), None);
        }
        let started = Instant::now();
        if req.path.starts_with(steer::poll::PREFIX) {
            return self.steer(req);
        }
        // 2. The path.
        let route = match url::parse(req.path) {
            Ok(route) => route,
            Err(url::UrlError::NoRoute) => {
                let outcome = Outcome::refuse(404, "no such route");
                return self.counted(Kind::Other, Decided::refused(outcome), None);
            }
            Err(url::UrlError::Malformed(why)) => {
                let outcome = Outcome::refuse(400, why);
                return self.counted(Kind::Other, Decided::refused(outcome), None);
            }
        };
        let kind = match route {
            url::Route::Live { .. } => Kind::Live,
            url::Route::Catchup { .. } => Kind::Catchup,
            url::Route::Vod(_) => Kind::Vod,
            url::Route::Static(_) => Kind::Static,
        };
        // 3. The client address.
        let client = match self.trusted.client(req.peer, req.x_real_ip) {
            Ok(ip) => ip,
            Err(why) => {
                let decided = Decided::refused(Outcome::refuse(400, why));
                return self.counted(kind, decided, Some(started));
            }
        };
        let tls = req.tls || self.trusted.forwarded_tls(req.peer, req.forwarded_proto);
        let geo = self.geo(client);
        // 4-6. Candidates, policy, answer check: on one topology snapshot
        // and one routing state, however they change meanwhile.
        let topology = self.topology.load();
        let health = self.health.load();
        let routing = self.routing.load();
        let decided = self.decider.decide(
            topology,
            health,
            routing,
            &decider::Asked {
                route: &route,
                query: req.query,
                client,
                tls,
                headers: req.headers,
                geo,
            },
        );
        // 7. The metrics.
        if let (Some(metrics), Some((server, region))) = (&mut self.metrics, decided.chosen) {
            metrics.redirected(topology, server, region);
        }
        self.counted(kind, decided, Some(started))
    }

    /// Answers a content-steering poll ([`steer`]).
    fn steer(&mut self, req: &PlayerRequest<'_>) -> Routed {
        let client = match self.trusted.client(req.peer, req.x_real_ip) {
            Ok(ip) => ip,
            Err(why) => {
                let decided = Decided::refused(Outcome::refuse(400, why));
                return Routed {
                    any_origin: true,
                    ..self.counted(Kind::Steer, decided, None)
                };
            }
        };
        let tls = req.tls || self.trusted.forwarded_tls(req.peer, req.forwarded_proto);
        let geo = self.geo(client);
        let decided = self.steering.poll(
            &mut self.decider,
            self.topology.load(),
            self.health.load(),
            self.routing.load(),
            &steer::Asked {
                path: req.path,
                query: req.query,
                client,
                tls,
                headers: req.headers,
                geo,
            },
            self.metrics.as_ref().map(WorkerMetrics::steering),
        );
        Routed {
            any_origin: true,
            ..self.counted(Kind::Steer, decided, None)
        }
    }

    /// Counts a request the HTTP layer refused before it could be routed
    /// (a malformed head: `400`, one too large: `431`), with the others.
    pub fn count_unparsed(&self, status: u16) {
        if let Some(m) = &self.metrics {
            m.request(Kind::Other, status);
        }
    }

    /// Counts a decided request (its decision time when it got that far)
    /// and gives its answer.
    fn counted(&mut self, kind: Kind, decided: Decided, started: Option<Instant>) -> Routed {
        if let Some(m) = &self.metrics {
            m.request(kind, decided.outcome.status());
            if let Some(started) = started {
                m.decision(started.elapsed().as_secs_f64());
            }
            if let Some((policy, by)) = &decided.fell_back {
                m.fallback(policy, by.to_str().unwrap_or("?"));
            }
        }
        Routed {
            outcome: decided.outcome,
            decided_by: decided.decided_by,
            any_origin: false,
        }
    }
}
