//! The wire format of the player listener: a request's parts become a
//! [`PlayerRequest`] for the [`Router`] (which runs the request path and
//! counts it), and its [`crate::routing::Routed`] answer becomes a
//! [`Reply`]: one description of the response, written out by our own
//! HTTP/1.1 loop ([`Reply::write_h1`]) or handed to hyper for HTTP/2 and
//! TLS ([`Reply::into_response`]), so every protocol answers alike.

use crate::routing::{Outcome, PlayerRequest, Router};
use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ALLOW, ALT_SVC, CACHE_CONTROL,
    CONTENT_TYPE, LOCATION, RETRY_AFTER,
};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use std::borrow::Cow;
use std::cell::RefCell;

/// Seconds a player is asked to wait after a `503`.
const RETRY_AFTER_SECS: u32 = 5;
const NO_STORE: &str = "no-store";
const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const GET_HEAD: &str = "GET, HEAD";

/// What a worker needs besides its router.
#[derive(Clone)]
pub(super) struct Settings {
    /// Send the `Edgeward-Policy` header.
    pub policy_header: bool,
    /// The listener is TLS.
    pub tls: bool,
    /// `Alt-Svc` to send (HTTP/3 advertised on the HTTPS listener).
    pub alt_svc: Option<HeaderValue>,
}

/// Names the policy version that decided (turned off with
/// `--no-policy-header`).
const POLICY_HEADER: http::HeaderName = http::HeaderName::from_static("edgeward-policy");

/// The parts of a player request the answer depends on, however it came.
pub(super) struct Asked<'a> {
    pub get_or_head: bool,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub peer: std::net::IpAddr,
    pub x_real_ip: Option<&'a [u8]>,
    pub forwarded_proto: Option<&'a [u8]>,
    pub headers: crate::routing::headers::RequestHeaders<'a>,
}

impl<'a> Asked<'a> {
    /// The parts of a request as hyper and h3 hand it over (HTTP/2, TLS,
    /// HTTP/3).
    pub fn of<B>(req: &'a http::Request<B>, peer: std::net::IpAddr) -> Self {
        let (method, headers) = (req.method(), req.headers());
        Asked {
            get_or_head: method == http::Method::GET || method == http::Method::HEAD,
            path: req.uri().path(),
            query: req.uri().query(),
            peer,
            x_real_ip: headers.get("x-real-ip").map(HeaderValue::as_bytes),
            forwarded_proto: headers.get("x-forwarded-proto").map(HeaderValue::as_bytes),
            headers: crate::routing::headers::RequestHeaders::Map(headers),
        }
    }
}

/// One response, before it is put on a wire.
#[derive(Debug)]
pub(super) struct Reply {
    pub status: StatusCode,
    /// `Location` of a redirect (checked as a header value).
    pub location: Option<HeaderValue>,
    /// The plain-text reason of a refusal (sent with a newline).
    pub reason: Option<Cow<'static, str>>,
    /// A JSON body (a steering manifest), instead of a reason.
    pub json: Option<Bytes>,
    /// `Cache-Control: private, max-age=` this (a steering manifest's
    /// TTL: it is made for one client); otherwise `no-store`.
    pub max_age: Option<u32>,
    /// `Retry-After` seconds (on `503` and `429`).
    pub retry_after: Option<u32>,
    /// `Allow: GET, HEAD` (on `405`).
    pub allow: bool,
    /// `Edgeward-Policy`.
    pub policy: Option<HeaderValue>,
    /// `Alt-Svc`.
    pub alt_svc: Option<HeaderValue>,
    /// `Access-Control-Allow-Origin: *` (and `Retry-After` exposed).
    pub any_origin: bool,
}

/// Answers one player request.
pub(super) fn answer(router: &RefCell<Router>, settings: &Settings, asked: &Asked<'_>) -> Reply {
    let routed = router.borrow_mut().route(&PlayerRequest {
        get_or_head: asked.get_or_head,
        path: asked.path,
        query: asked.query,
        peer: asked.peer,
        x_real_ip: asked.x_real_ip,
        tls: settings.tls,
        forwarded_proto: asked.forwarded_proto,
        headers: asked.headers,
    });
    let mut reply = Reply::of(routed.outcome);
    reply.allow = !asked.get_or_head;
    reply.any_origin = routed.any_origin;
    if settings.policy_header {
        reply.policy = routed.decided_by;
    }
    reply.alt_svc = settings.alt_svc.clone();
    reply
}

impl Reply {
    /// The reply for an outcome.
    pub fn of(outcome: Outcome) -> Reply {
        match outcome {
            Outcome::Redirect(location) => match HeaderValue::try_from(location) {
                Ok(v) => Reply {
                    location: Some(v),
                    ..Reply::refusal(StatusCode::FOUND, None)
                },
                Err(_) => Reply::refusal(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Some(Cow::Borrowed("unrepresentable Location")),
                ),
            },
            Outcome::Refuse { status, reason } => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                Reply::refusal(status, Some(reason))
            }
            Outcome::Manifest { json, max_age } => Reply {
                json: Some(Bytes::from(json)),
                max_age: Some(max_age),
                ..Reply::refusal(StatusCode::OK, None)
            },
            Outcome::TooSoon { retry_after } => Reply {
                retry_after: Some(retry_after),
                ..Reply::refusal(
                    StatusCode::TOO_MANY_REQUESTS,
                    Some(Cow::Borrowed("steering polled too soon")),
                )
            },
        }
    }

    /// A refusal by the HTTP layer itself (a malformed request and such).
    pub fn refusal(status: StatusCode, reason: Option<Cow<'static, str>>) -> Reply {
        Reply {
            status,
            location: None,
            retry_after: (status == StatusCode::SERVICE_UNAVAILABLE).then_some(RETRY_AFTER_SECS),
            reason,
            json: None,
            max_age: None,
            allow: false,
            policy: None,
            alt_svc: None,
            any_origin: false,
        }
    }

    fn body_len(&self) -> usize {
        match &self.json {
            Some(json) => json.len(),
            None => self.reason.as_ref().map_or(0, |r| r.len() + 1),
        }
    }

    fn content_type(&self) -> Option<&'static str> {
        if self.json.is_some() {
            Some(JSON)
        } else {
            self.reason.as_ref().map(|_| TEXT)
        }
    }

    fn cache_control(&self) -> Cow<'static, str> {
        match self.max_age {
            Some(age) => Cow::Owned(format!("private, max-age={age}")),
            None => Cow::Borrowed(NO_STORE),
        }
    }

    /// For hyper (HTTP/2, and HTTP/1.1 over TLS), which adds
    /// `Content-Length` and `Date` and drops the body of a `HEAD` answer.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let (head, body) = self.into_parts();
        head.map(|()| Full::new(body))
    }

    /// The response head and its body (for HTTP/3, which sends them
    /// apart).
    pub fn into_parts(self) -> (Response<()>, Bytes) {
        let body = match &self.reason {
            _ if self.json.is_some() => self.json.clone().unwrap_or_default(),
            Some(reason) => {
                let mut body = String::with_capacity(reason.len() + 1);
                body.push_str(reason);
                body.push('\n');
                Bytes::from(body)
            }
            None => Bytes::new(),
        };
        let content_type = self.content_type();
        let cache_control = self.cache_control();
        let mut resp = Response::new(());
        *resp.status_mut() = self.status;
        let headers = resp.headers_mut();
        if let Some(location) = self.location {
            headers.insert(LOCATION, location);
        }
        if let Some(content_type) = content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(GET_HEAD));
        }
        match cache_control {
            Cow::Borrowed(s) => headers.insert(CACHE_CONTROL, HeaderValue::from_static(s)),
            Cow::Owned(s) => headers.insert(
                CACHE_CONTROL,
                HeaderValue::try_from(s).expect("digits are a header value"),
            ),
        };
        if let Some(policy) = self.policy {
            headers.insert(POLICY_HEADER, policy);
        }
        if let Some(alt_svc) = self.alt_svc {
            headers.insert(ALT_SVC, alt_svc);
        }
        if self.any_origin {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            headers.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("Retry-After"),
            );
        }
        (resp, body)
    }

    /// Appends the HTTP/1.1 response to `out`, header names in title
    /// case; the body left out when `head_only`. `connection` is the
    /// `Connection` header to send, if any.
    pub fn write_h1(
        &self,
        head_only: bool,
        connection: Option<&str>,
        date: &[u8],
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(location) = &self.location {
            line(out, "Location", location.as_bytes());
        }
        if let Some(content_type) = self.content_type() {
            line(out, "Content-Type", content_type.as_bytes());
        }
        if let Some(secs) = self.retry_after {
            line(
                out,
                "Retry-After",
                itoa::Buffer::new().format(secs).as_bytes(),
            );
        }
        if self.allow {
            line(out, "Allow", GET_HEAD.as_bytes());
        }
        line(out, "Cache-Control", self.cache_control().as_bytes());
        if let Some(policy) = &self.policy {
            line(out, "Edgeward-Policy", policy.as_bytes());
        }
        if self.any_origin {
            line(out, "Access-Control-Allow-Origin", b"*");
            line(out, "Access-Control-Expose-Headers", b"Retry-After");
        }
        if let Some(connection) = connection {
            line(out, "Connection", connection.as_bytes());
        }
        let mut len = itoa::Buffer::new();
        line(
            out,
            "Content-Length",
            len.format(self.body_len()).as_bytes(),
        );
        line(out, "Date", date);
        out.extend_from_slice(b"\r\n");
        if head_only {
            return;
        }
        if let Some(json) = &self.json {
            out.extend_from_slice(json);
        } else if let Some(reason) = &self.reason {
            out.extend_from_slice(reason.as_bytes());
            out.push(b'\n');
        }
    }
}

fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_and_a_refusal_on_the_wire() {
        let reply = Reply::of(Outcome::Redirect("http://e1.test/a".into()));
        let mut out = Vec::new();
        reply.write_h1(false, None, b"Tue, 01 Dec 2026 15:00:00 GMT", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 302 Found\r\nLocation: http://e1.test/a\r\n\
             Cache-Control: no-store\r\nContent-Length: 0\r\n\
             Date: Tue, 01 Dec 2026 15:00:00 GMT\r\n\r\n"
        );
        let reply = Reply::of(Outcome::refuse(503, "no edge"));
        let mut out = Vec::new();
        reply.write_h1(true, Some("close"), b"D", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 503 Service Unavailable\r\n\
             Content-Type: text/plain; charset=utf-8\r\nRetry-After: 5\r\n\
             Cache-Control: no-store\r\nConnection: close\r\nContent-Length: 8\r\n\
             Date: D\r\n\r\n"
        );
        // A status without a canonical reason phrase keeps the empty one.
        let reply = Reply::of(Outcome::refuse(299, "odd"));
        let mut out = Vec::new();
        reply.write_h1(false, None, b"D", &mut out);
        assert!(out.starts_with(b"HTTP/1.1 299 \r\n"));
        assert!(out.ends_with(b"\r\n\r\nodd\n"));
        // A Location that cannot be a header value never reaches the wire.
        let reply = Reply::of(Outcome::Redirect(
            "http://e1.test/a\r\nSet-Cookie: x".into(),
        ));
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(reply.location.is_none());
    }

    #[test]
    fn a_steering_manifest_and_a_too_soon_on_the_wire() {
        let json = r#"{"VERSION":1,"TTL":30}"#;
        let reply = Reply::of(Outcome::Manifest {
            json: json.into(),
            max_age: 30,
        });
        let mut out = Vec::new();
        reply.write_h1(false, None, b"D", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                 Cache-Control: private, max-age=30\r\nContent-Length: {}\r\n\
                 Date: D\r\n\r\n{json}",
                json.len()
            )
        );
        let (head, body) = Reply::of(Outcome::Manifest {
            json: json.into(),
            max_age: 30,
        })
        .into_parts();
        assert_eq!(body, json.as_bytes());
        assert_eq!(head.headers()[CACHE_CONTROL], "private, max-age=30");
        assert_eq!(head.headers()[CONTENT_TYPE], JSON);

        let (head, _) = Reply::of(Outcome::TooSoon { retry_after: 42 }).into_parts();
        assert_eq!(head.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(head.headers()[RETRY_AFTER], "42");
        assert_eq!(head.headers()[CACHE_CONTROL], NO_STORE);
    }
}
