//! From an HTTP request to an HTTP response: method, route, client address,
//! decision, wire format.

use crate::metrics::Kind;
use crate::routing::client::TrustedProxies;
use crate::routing::url::{self, UrlError};
use crate::routing::{Decided, Decider, Outcome};
use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::cell::RefCell;
use std::net::SocketAddr;

/// Seconds a player is asked to wait after a `503`.
const RETRY_AFTER_SECS: HeaderValue = HeaderValue::from_static("5");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const GET_HEAD: HeaderValue = HeaderValue::from_static("GET, HEAD");

/// What a worker needs besides its decider.
pub(super) struct Settings {
    /// Proxies whose `X-Real-IP` is believed.
    pub trusted: TrustedProxies,
    /// Send the `Edgeward-Policy` header.
    pub policy_header: bool,
}

/// Names the policy version that decided (turned off with
/// `--no-policy-header`).
const POLICY_HEADER: http::HeaderName = http::HeaderName::from_static("edgeward-policy");

/// Answers one player request.
pub(super) fn answer<B>(
    decider: &RefCell<Decider>,
    settings: &Settings,
    peer: SocketAddr,
    req: &Request<B>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        resp.headers_mut().insert(ALLOW, GET_HEAD);
        resp.headers_mut().insert(CACHE_CONTROL, NO_STORE);
        count(decider, Kind::Other, 405, None);
        return resp;
    }
    let started = std::time::Instant::now();
    let (decided, kind) = decide(decider, &settings.trusted, peer, req);
    let elapsed = (kind != Kind::Other).then(|| started.elapsed());
    let mut resp = render(decided.outcome);
    if settings.policy_header
        && let Some(by) = decided.decided_by
    {
        resp.headers_mut().insert(POLICY_HEADER, by);
    }
    count(decider, kind, resp.status().as_u16(), elapsed);
    resp
}

fn count(
    decider: &RefCell<Decider>,
    kind: Kind,
    status: u16,
    decision: Option<std::time::Duration>,
) {
    if let Some(m) = &decider.borrow().metrics {
        m.request(kind, status);
        if let Some(d) = decision {
            m.decision(d.as_secs_f64());
        }
    }
}

fn decide<B>(
    decider: &RefCell<Decider>,
    trusted: &TrustedProxies,
    peer: SocketAddr,
    req: &Request<B>,
) -> (Decided, Kind) {
    let refuse = |outcome, kind| {
        (
            Decided {
                outcome,
                decided_by: None,
            },
            kind,
        )
    };
    let route = match url::parse(req.uri().path()) {
        Ok(route) => route,
        Err(UrlError::NoRoute) => {
            return refuse(Outcome::refuse(404, "no such route"), Kind::Other);
        }
        Err(UrlError::Malformed(why)) => return refuse(Outcome::refuse(400, why), Kind::Other),
    };
    let kind = match route {
        url::Route::Live { .. } => Kind::Live,
        url::Route::Catchup { .. } => Kind::Catchup,
        url::Route::Vod(_) => Kind::Vod,
        url::Route::Static(_) => Kind::Static,
    };
    let x_real_ip = req.headers().get("x-real-ip").map(HeaderValue::as_bytes);
    let client = match trusted.client(peer.ip(), x_real_ip) {
        Ok(ip) => ip,
        Err(why) => return refuse(Outcome::refuse(400, why), kind),
    };
    let decided = decider
        .borrow_mut()
        .decide(&route, req.uri().query(), client);
    (decided, kind)
}

/// The response for an outcome. (For `HEAD`, hyper sends the same head
/// without the body.)
fn render(outcome: Outcome) -> Response<Full<Bytes>> {
    let mut resp = match outcome {
        Outcome::Redirect(location) => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::FOUND;
            match HeaderValue::try_from(location) {
                Ok(v) => {
                    resp.headers_mut().insert(LOCATION, v);
                }
                Err(_) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "unrepresentable Location",
                    );
                }
            }
            resp
        }
        Outcome::Refuse { status, reason } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut resp = error(status, &reason);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                resp.headers_mut().insert(RETRY_AFTER, RETRY_AFTER_SECS);
            }
            resp
        }
    };
    resp.headers_mut().insert(CACHE_CONTROL, NO_STORE);
    resp
}

fn error(status: StatusCode, reason: &str) -> Response<Full<Bytes>> {
    let mut body = String::with_capacity(reason.len() + 1);
    body.push_str(reason);
    body.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, TEXT);
    resp
}
