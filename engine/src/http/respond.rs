//! The wire format of the player listener: an HTTP request becomes a
//! [`PlayerRequest`] for the [`Router`] (which runs the request path and
//! counts it), and its [`crate::routing::Routed`] answer becomes the
//! response.

use crate::routing::{Outcome, PlayerRequest, Router};
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

/// What a worker needs besides its router.
#[derive(Clone)]
pub(super) struct Settings {
    /// Send the `Edgeward-Policy` header.
    pub policy_header: bool,
    /// The listener is TLS.
    pub tls: bool,
}

/// Names the policy version that decided (turned off with
/// `--no-policy-header`).
const POLICY_HEADER: http::HeaderName = http::HeaderName::from_static("edgeward-policy");

/// Answers one player request.
pub(super) fn answer<B>(
    router: &RefCell<Router>,
    settings: &Settings,
    peer: SocketAddr,
    req: &Request<B>,
) -> Response<Full<Bytes>> {
    let get_or_head = req.method() == Method::GET || req.method() == Method::HEAD;
    let routed = router.borrow_mut().route(&PlayerRequest {
        get_or_head,
        path: req.uri().path(),
        query: req.uri().query(),
        peer: peer.ip(),
        x_real_ip: req.headers().get("x-real-ip").map(HeaderValue::as_bytes),
        tls: settings.tls,
        forwarded_proto: req
            .headers()
            .get("x-forwarded-proto")
            .map(HeaderValue::as_bytes),
    });
    let mut resp = render(routed.outcome);
    if !get_or_head {
        resp.headers_mut().insert(ALLOW, GET_HEAD);
    }
    if settings.policy_header
        && let Some(by) = routed.decided_by
    {
        resp.headers_mut().insert(POLICY_HEADER, by);
    }
    resp
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
