//! The operators' web console: server-rendered pages under `/ui/` on the
//! admin listener, each a form or a table over the same calls as the JSON
//! API. A form post is turned into the API call it stands for and answered
//! through [`super::api::dispatch`], so that it is authorised, validated
//! and audited exactly as that call; the page then shows the answer.
//!
//! Every asset is in the binary ([`assets`]); nothing is fetched from
//! elsewhere, and the pages work without JavaScript (the little there is
//! refreshes the dashboard).
//!
//! | page | what |
//! |---|---|
//! | `/ui/sign-in` | e-mail and password |
//! | `/ui/` | dashboard: requests, decision time, policies, topology, health, etcd |
//! | `/ui/topology[/{kind}[/{key}]]`, `/ui/new/{kind}` | every entity: lists, forms |
//! | `/ui/health` | the health board: drain and undrain |
//! | `/ui/policies` | versions, upload, activate, roll back, canary, shadow |
//! | `/ui/explain` | why a client's request goes where it goes |
//! | `/ui/audit` | who changed what, and when |
//! | `/ui/users` | accounts (an admin: all; others: their own), API tokens |
//!
//! The gate: a signed-in session (the API's cookie), for every page but
//! sign-in and the assets; every post carries the session's CSRF token in
//! a `csrf` field, checked before anything else is read.

mod assets;
mod audit;
mod dashboard;
mod entities;
mod explain;
mod form;
mod health;
mod page;
mod policies;
mod sign_in;
mod users;

pub(super) use dashboard::sample_forever;

use super::Admin;
use super::api::{Call, Reply, dispatch};
use super::users::Actor;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

/// Largest form post (a policy upload is the largest).
const MAX_FORM: usize = 64 << 20;

/// The console's own state: the dashboard's samples and the messages a
/// page shows once after a change.
#[derive(Default)]
pub struct Console {
    samples: Mutex<dashboard::Samples>,
    flashes: Mutex<HashMap<String, page::Flash>>,
}

/// A request to a page, past the gate.
pub(super) struct Ctx<'a> {
    admin: &'a Admin,
    actor: Actor,
    peer: SocketAddr,
    /// The session's CSRF token, put into every form.
    csrf: String,
    /// The path below `/ui/`, split at `/` (empty for the dashboard).
    path: Vec<String>,
    query: String,
}

/// What the API answered a call the console made.
pub(super) struct Answer {
    status: StatusCode,
    value: Value,
}

impl Answer {
    fn is_ok(&self) -> bool {
        self.status.is_success()
    }

    /// The API's error message.
    fn error(&self) -> String {
        match self.value.get("error").and_then(Value::as_str) {
            Some(e) => {
                let problems: Vec<&str> = self
                    .value
                    .get("problems")
                    .and_then(Value::as_array)
                    .map(|p| p.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if problems.is_empty() {
                    e.to_string()
                } else {
                    format!("{e}: {}", problems.join("; "))
                }
            }
            None => format!("{} ({})", self.status, self.value),
        }
    }
}

impl Ctx<'_> {
    /// Makes one API call as the signed-in account (a JSON body, if any).
    async fn api(&self, method: Method, path: &str, query: &str, body: Option<&Value>) -> Answer {
        let mut headers = HeaderMap::new();
        let body = match body {
            Some(v) => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Bytes::from(serde_json::to_vec(v).unwrap_or_default())
            }
            None => Bytes::new(),
        };
        self.api_raw(method, path, query, headers, body).await
    }

    /// Makes one API call with the given headers and body.
    async fn api_raw(
        &self,
        method: Method,
        path: &str,
        query: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Answer {
        let reply = dispatch(
            self.admin,
            Call {
                actor: &self.actor,
                peer: self.peer,
                method: &method,
                path,
                query,
                headers: &headers,
                body: &body,
            },
        )
        .await;
        let status = reply.status();
        let bytes = reply
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer { status, value }
    }

    /// Whether the account may change things (not a viewer).
    fn may_change(&self) -> bool {
        self.actor.role().may_change()
    }

    /// The account's e-mail.
    fn email(&self) -> &str {
        match &self.actor {
            Actor::User(u, _) => &u.email,
            _ => "",
        }
    }

    /// Keeps a message for the next page this session shows.
    fn flash(&self, flash: page::Flash) {
        let mut flashes = self
            .admin
            .console
            .flashes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if flashes.len() > 10_000 {
            flashes.clear();
        }
        flashes.insert(self.csrf.clone(), flash);
    }

    /// The message kept for this page, if any (shown once).
    fn take_flash(&self) -> Option<page::Flash> {
        self.admin
            .console
            .flashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.csrf)
    }
}

/// Answers a request under `/ui`.
pub(super) async fn handle(admin: &Admin, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    if path == "/ui" {
        return page::see_other("/ui/");
    }
    if let Some(name) = path.strip_prefix("/ui/assets/") {
        return assets::serve(name);
    }
    let method = req.method().clone();
    let (parts, body) = req.into_parts();
    let body = if method == Method::POST {
        match Limited::new(body, MAX_FORM).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return page::plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the form cannot be read: {e}"),
                );
            }
        }
    } else {
        Bytes::new()
    };
    if path == "/ui/sign-in" {
        return match method {
            Method::GET | Method::HEAD => sign_in::page(admin, &parts.headers, &query, None),
            Method::POST => sign_in::submit(admin, &parts.headers, &body, peer).await,
            _ => page::plain(StatusCode::METHOD_NOT_ALLOWED, "GET or POST"),
        };
    }
    // The gate: a signed-in account, else the sign-in page (and back).
    let Some((user, session)) = super::users::signed_in(admin, &parts.headers) else {
        if method == Method::GET {
            let back = form::encode(&[("next", &path)]);
            return page::see_other(&format!("/ui/sign-in?{back}"));
        }
        return page::plain(
            StatusCode::UNAUTHORIZED,
            "not signed in (or the session ended): sign in at /ui/sign-in",
        );
    };
    let csrf = admin.access.sessions.csrf(&session);
    let actor = Actor::User(user, session);
    let ctx = Ctx {
        admin,
        csrf,
        peer,
        path: path
            .trim_start_matches("/ui/")
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect(),
        query,
        actor,
    };
    match method {
        Method::GET | Method::HEAD => get(&ctx).await,
        Method::POST => {
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let form = match form::Form::read(content_type, body).await {
                Ok(f) => f,
                Err(e) => return page::plain(StatusCode::BAD_REQUEST, &e),
            };
            // The CSRF token first: nothing else of a forged post is read.
            if !admin
                .access
                .sessions
                .csrf_holds(session_of(&ctx), form.get("csrf").map(str::as_bytes))
            {
                return page::plain(
                    StatusCode::FORBIDDEN,
                    "the form's CSRF token is missing or wrong (reload the page and try again)",
                );
            }
            post(&ctx, form).await
        }
        _ => page::plain(StatusCode::METHOD_NOT_ALLOWED, "GET or POST"),
    }
}

fn session_of<'a>(ctx: &'a Ctx<'_>) -> &'a crate::access::session::Session {
    match &ctx.actor {
        Actor::User(_, s) => s,
        _ => unreachable!("the console's gate only lets accounts in"),
    }
}

async fn get(ctx: &Ctx<'_>) -> Reply {
    let path: Vec<&str> = ctx.path.iter().map(String::as_str).collect();
    match path.as_slice() {
        [] => dashboard::page(ctx).await,
        ["health"] => health::page(ctx).await,
        ["topology"] => entities::index(ctx).await,
        ["topology", kind] => entities::list(ctx, kind).await,
        ["new", kind] => entities::new(ctx, kind).await,
        ["topology", kind, key @ ..] => entities::show(ctx, kind, &key.join("/")).await,
        ["policies"] => policies::page(ctx).await,
        ["explain"] => explain::page(ctx).await,
        ["audit"] => audit::page(ctx).await,
        ["users"] => users::page(ctx).await,
        _ => page::not_found(ctx),
    }
}

async fn post(ctx: &Ctx<'_>, form: form::Form) -> Reply {
    let path: Vec<&str> = ctx.path.iter().map(String::as_str).collect();
    match path.as_slice() {
        ["sign-out"] => sign_in::sign_out(ctx).await,
        ["health", server] => health::drain(ctx, server, &form).await,
        ["new", kind] => entities::create(ctx, kind, &form).await,
        ["topology", kind, key @ ..] => entities::save(ctx, kind, &key.join("/"), &form).await,
        ["policies", action @ ..] => policies::act(ctx, action, form).await,
        ["users"] => users::create(ctx, &form).await,
        ["users", email] => users::save(ctx, email, &form).await,
        ["tokens"] => users::create_token(ctx, &form).await,
        ["tokens", name] => users::delete_token(ctx, name).await,
        _ => page::not_found(ctx),
    }
}

/// Builds a reply with a body and content type.
fn with_body(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
