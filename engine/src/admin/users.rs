//! Signing in and the accounts, on the admin API, and the gate every other
//! call passes ([`authenticate`], [`authorize`]).
//!
//! | route | does | who |
//! |---|---|---|
//! | `POST /session` `{"email", "password"}` | signs in: a session cookie, and the CSRF token changes must carry (`X-CSRF-Token`) | anyone; 429 after 5 failures in 15 minutes |
//! | `GET /session` | the account signed in, and its CSRF token | a session |
//! | `DELETE /session` | signs out: the cookie is cleared, and every session of the account ends | anyone |
//! | `GET /users` | the accounts (a non-admin: only their own) | any role |
//! | `POST /users` `{"email", "name", "role", "password"}` | creates one (the first from loopback, with none yet) | admin |
//! | `PATCH /users/{email}` `{"name", "role", "password"}` | changes one: a non-admin only their own name and password; nobody their own role | any role |
//! | `DELETE /users/{email}` | deletes one (not oneself) | admin |
//! | `GET /tokens` | the API tokens (names and roles, never secrets) | admin |
//! | `POST /tokens` `{"name", "role"}` | makes one: its secret is in the answer, once | admin |
//! | `DELETE /tokens/{name}` | deletes one: its secret is refused from then on | admin |

use super::Admin;
use super::api::{Reply, error, ok, reply};
use super::auth::Token;
use crate::access::Role;
use crate::access::session::{self, Session};
use crate::access::users::{NewUser, User, UserChange, UserError, may_change};
use crate::control::audit::AuditEntry;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use std::net::SocketAddr;

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Actor {
    /// Loopback, while no account exists and no token is required.
    Loopback,
    /// The bearer token of `--admin-token-file` (an admin's).
    Token(String),
    /// A named API token, with its role.
    ApiToken(crate::access::tokens::ApiToken),
    /// A signed-in account.
    User(User, Session),
}

impl Actor {
    /// What it may do.
    pub fn role(&self) -> Role {
        match self {
            Actor::Loopback | Actor::Token(_) => Role::Admin,
            Actor::ApiToken(t) => t.role,
            Actor::User(u, _) => u.role,
        }
    }

    /// How the audit trail and the log name it.
    pub fn who(&self, peer: SocketAddr) -> String {
        match self {
            Actor::Loopback => format!("loopback {peer}"),
            Actor::Token(id) => format!("token:{id} from {peer}"),
            Actor::ApiToken(t) => format!("token:{} from {peer}", t.name),
            Actor::User(u, _) => format!("user:{} from {peer}", u.email),
        }
    }
}

/// The caller of a request, or the refusal to answer. A bearer token, if
/// given, must be the configured one; else a session cookie; else, with no
/// token configured and no account yet, a loopback caller is let in (the
/// admin listener then listens on loopback only). A change made with a
/// session cookie must carry the session's CSRF token.
pub fn authenticate(
    admin: &Admin,
    token: Option<&Token>,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Actor, Box<Reply>> {
    // A change sent by another site's page (a browser says so) is refused
    // whoever it claims to be: with no account yet, loopback is let in
    // without a cookie, which a form on any page could otherwise use.
    let reads = matches!(*method, Method::GET | Method::HEAD);
    if !reads
        && let Some(site) = headers.get("sec-fetch-site")
        && matches!(site.as_bytes(), b"cross-site" | b"same-site")
    {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "a change sent by another site's page is refused (Sec-Fetch-Site)",
        )));
    }
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if let Some(t) = token
        && t.accepts(authorization)
    {
        return Ok(Actor::Token(t.id.clone()));
    }
    let access = &admin.access;
    if let Some(t) = access.tokens.find(authorization) {
        return Ok(Actor::ApiToken(t));
    }
    let bearer = authorization.is_some_and(|a| a.starts_with(b"Bearer "));
    if bearer && (token.is_some() || access.users.any()) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "the bearer token is not the admin token nor an API token (deleted?)",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Err(Box::new(r));
    }
    if let Some((user, s)) = signed_in(admin, headers) {
        let csrf = headers.get(session::CSRF_HEADER).map(|v| v.as_bytes());
        if !reads && !access.sessions.csrf_holds(&s, csrf) {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "a change signed in with a session cookie needs its CSRF token in X-CSRF-Token (GET /session gives it)",
            )));
        }
        return Ok(Actor::User(user, s));
    }
    if token.is_none() && !access.users.any() {
        return Ok(Actor::Loopback);
    }
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        if access.users.any() {
            "sign in (POST /session) or give the bearer token"
        } else {
            "missing or wrong bearer token"
        },
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Err(Box::new(r))
}

/// The account and session a session cookie proves, if any (the API's
/// gate and the console's).
pub fn signed_in(admin: &Admin, headers: &HeaderMap) -> Option<(User, Session)> {
    let value = cookie(headers, session::COOKIE)?;
    let access = &admin.access;
    // The account is read once: its stamp checks the cookie.
    let mut account = None;
    let session = access.sessions.check(value, |email| {
        let user = access.users.get(email)?;
        let stamp = user.session_stamp();
        account = Some(user);
        Some(stamp)
    })?;
    Some((account?, session))
}

/// Whether the actor's role allows the request: a viewer only reads; the
/// accounts' routes decide for themselves ([`handle`]).
pub fn authorize(actor: &Actor, method: &Method, path: &[&str]) -> Result<(), Box<Reply>> {
    let reads = matches!(*method, Method::GET | Method::HEAD);
    if reads
        || matches!(path.first(), Some(&"users" | &"session" | &"tokens"))
        || actor.role().may_change()
    {
        return Ok(());
    }
    Err(Box::new(error(
        StatusCode::FORBIDDEN,
        &format!(
            "a {} may only read ({} /{} is a change)",
            actor.role().name(),
            method,
            path.join("/")
        ),
    )))
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `POST /session` (sign in), before any gate. The password is checked
/// off the admin thread, two at a time: Argon2 takes tens of milliseconds
/// by design, and a flood of sign-ins must neither stall the admin API
/// nor take every core from the players.
pub async fn sign_in(admin: &Admin, body: &[u8], peer: SocketAddr) -> Reply {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Form {
        email: String,
        password: String,
    }
    let form: Form = match serde_json::from_slice(body) {
        Ok(f) => f,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("sign-in: the body must be {{\"email\", \"password\"}}: {e}"),
            );
        }
    };
    match check_sign_in(admin, &form.email, form.password, peer).await {
        Ok((user, value, session)) => {
            let mut r = ok(session_body(admin, &user, &session));
            set_cookie(
                &mut r,
                &session_cookie(&value, session::LIFETIME, admin.secure),
            );
            r
        }
        Err(refusal) => {
            let mut r = error(refusal.status, &refusal.message);
            if let Some(secs) = refusal.retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            r
        }
    }
}

/// Why a sign-in was refused.
pub struct SignInRefused {
    /// 401 (wrong e-mail or password) or 429 (locked out).
    pub status: StatusCode,
    /// What to tell the person.
    pub message: String,
    /// Seconds until a locked-out account may try again.
    pub retry_after: Option<u64>,
}

/// Checks an e-mail and password (the API's `POST /session` and the
/// console's sign-in form): the account, a new session's cookie value and
/// the session; or why not. Failures count towards the lock-out, and the
/// audit log names the e-mail, never the password.
pub async fn check_sign_in(
    admin: &Admin,
    email: &str,
    password: String,
    peer: SocketAddr,
) -> Result<(User, String, Session), SignInRefused> {
    let email = email.trim().to_lowercase();
    let access = &admin.access;
    if let Some(left) = access.sessions.locked(&email) {
        tracing::warn!(target: "audit", email, %peer, "sign-in refused: locked out");
        return Err(SignInRefused {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "too many failed sign-ins for {email:?}: try again in {} minutes",
                left.as_secs().div_ceil(60)
            ),
            retry_after: Some(left.as_secs().max(1)),
        });
    }
    let verified = {
        let _turn = access.hashing.acquire().await;
        let (access, email) = (admin.access.clone(), email.clone());
        tokio::task::spawn_blocking(move || access.users.verify(&email, &password)).await
    };
    let Ok(Some(user)) = verified else {
        access.sessions.failed(&email);
        let wait = access.throttle.failed(peer.ip());
        admin.control.metrics.auth_failed();
        tracing::warn!(target: "audit", email, %peer, wait_ms = wait.as_millis() as u64, "sign-in failed");
        tokio::time::sleep(wait).await;
        return Err(SignInRefused {
            status: StatusCode::UNAUTHORIZED,
            message: "wrong e-mail or password".into(),
            retry_after: None,
        });
    };
    access.sessions.succeeded(&email);
    access.throttle.succeeded(peer.ip());
    let (value, session) = access.sessions.issue(&user.email, &user.session_stamp());
    tracing::info!(target: "audit", email = user.email, %peer, "signed in");
    Ok((user, value, session))
}

/// The `Set-Cookie` value of a session (`max_age` zero clears it).
/// `HttpOnly`: no script reads it; `SameSite=Strict`: no other site's page
/// sends it; `Secure` when the admin listener serves HTTPS: the browser then never
/// sends it over plain HTTP.
pub fn session_cookie(value: &str, max_age: std::time::Duration, secure: bool) -> String {
    format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        session::COOKIE,
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

pub(super) fn session_body(admin: &Admin, user: &User, session: &Session) -> Value {
    json!({
        "user": user.shown(),
        "expires": crate::time::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(session.expires)),
        "csrf_token": admin.access.sessions.csrf(session),
    })
}

fn set_cookie(r: &mut Reply, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
}

/// Answers `/session`, `/users` and `/tokens` routes, if the request is
/// one.
pub async fn handle(
    admin: &Admin,
    actor: &Actor,
    method: &Method,
    path: &[&str],
    body: &[u8],
    peer: SocketAddr,
) -> Option<Reply> {
    let users = &admin.access.users;
    let who = actor.who(peer);
    let refused = |e: UserError| {
        let status = match e {
            UserError::Invalid(_) => StatusCode::BAD_REQUEST,
            UserError::Forbidden(_) => StatusCode::FORBIDDEN,
            UserError::NotFound(_) => StatusCode::NOT_FOUND,
            UserError::Exists(_) => StatusCode::CONFLICT,
            UserError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        error(status, &e.to_string())
    };
    let audit = |action: &str, key: &str, changed: Value, kind: &str| {
        let now = std::time::SystemTime::now();
        admin.audit(vec![AuditEntry {
            time: crate::time::rfc3339(now),
            time_ms: crate::time::unix_millis(now),
            who: who.clone(),
            action: action.into(),
            kind: kind.into(),
            key: Some(key.into()),
            revision: 0,
            before: None,
            after: None,
            changed: Some(changed),
        }]);
    };
    let own = match actor {
        Actor::User(u, _) => Some(u.email.as_str()),
        _ => None,
    };
    let is_admin = actor.role() == Role::Admin;
    Some(match (method, path) {
        (&Method::GET, ["session"]) => match actor {
            Actor::User(u, s) => ok(session_body(admin, u, s)),
            _ => error(StatusCode::NOT_FOUND, "not signed in with a session"),
        },
        (&Method::DELETE, ["session"]) => {
            // Every session of the account ends, not only this cookie.
            if let Some(email) = own {
                if let Err(e) = users.sign_out(email).await {
                    return Some(error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()));
                }
                tracing::info!(target: "audit", email, %peer, "signed out");
            }
            let mut r = reply(StatusCode::OK, json!({ "signed_out": true }));
            set_cookie(
                &mut r,
                &session_cookie("", std::time::Duration::ZERO, admin.secure),
            );
            r
        }
        (&Method::GET, ["users"]) => {
            let shown: Vec<_> = users
                .list()
                .iter()
                .filter(|u| is_admin || Some(u.email.as_str()) == own)
                .map(User::shown)
                .collect();
            ok(json!({ "users": shown }))
        }
        (&Method::POST, ["users"]) => {
            if !is_admin {
                return Some(error(
                    StatusCode::FORBIDDEN,
                    &format!("a {} cannot create accounts", actor.role().name()),
                ));
            }
            let new: NewUser = match serde_json::from_slice(body) {
                Ok(n) => n,
                Err(e) => {
                    return Some(error(
                        StatusCode::BAD_REQUEST,
                        &format!(
                            "new user: the body must be {{\"email\", \"name\", \"role\", \"password\"}}: {e}"
                        ),
                    ));
                }
            };
            match users.add(new).await {
                Ok(u) => {
                    audit(
                        "create",
                        &u.email,
                        json!({ "role": [null, u.role] }),
                        "users",
                    );
                    reply(StatusCode::CREATED, json!({ "user": u.shown() }))
                }
                Err(e) => refused(e),
            }
        }
        (&Method::PATCH, ["users", email]) => {
            let email = percent_encoding::percent_decode_str(email)
                .decode_utf8_lossy()
                .to_lowercase();
            let change: UserChange = match serde_json::from_slice(body) {
                Ok(c) => c,
                Err(e) => {
                    return Some(error(
                        StatusCode::BAD_REQUEST,
                        &format!("user {email:?}: the body may have name, role, password: {e}"),
                    ));
                }
            };
            if let Actor::User(me, _) = actor
                && let Err(e) = may_change(me, &email, &change)
            {
                return Some(refused(e));
            }
            let before = users.get(&email);
            match users.change(&email, change.clone()).await {
                Ok(u) => {
                    let mut changed = serde_json::Map::new();
                    if let Some(b) = before {
                        if b.name != u.name {
                            changed.insert("name".into(), json!([b.name, u.name]));
                        }
                        if b.role != u.role {
                            changed.insert("role".into(), json!([b.role, u.role]));
                        }
                    }
                    if change.password.is_some() {
                        changed.insert("password".into(), json!("changed"));
                    }
                    audit("update", &u.email, Value::Object(changed), "users");
                    ok(json!({ "user": u.shown() }))
                }
                Err(e) => refused(e),
            }
        }
        (&Method::DELETE, ["users", email]) => {
            let email = percent_encoding::percent_decode_str(email)
                .decode_utf8_lossy()
                .to_lowercase();
            if !is_admin {
                return Some(error(
                    StatusCode::FORBIDDEN,
                    &format!("a {} cannot delete accounts", actor.role().name()),
                ));
            }
            match users.delete(own.unwrap_or_default(), &email).await {
                Ok(u) => {
                    audit(
                        "delete",
                        &u.email,
                        json!({ "role": [u.role, null] }),
                        "users",
                    );
                    ok(json!({ "deleted": u.shown() }))
                }
                Err(e) => refused(e),
            }
        }
        (_, ["tokens", ..]) if !is_admin => error(
            StatusCode::FORBIDDEN,
            &format!("a {} cannot see or make API tokens", actor.role().name()),
        ),
        (&Method::GET, ["tokens"]) => {
            let shown: Vec<_> = admin
                .access
                .tokens
                .list()
                .iter()
                .map(crate::access::tokens::ApiToken::shown)
                .collect();
            ok(json!({ "tokens": shown }))
        }
        (&Method::POST, ["tokens"]) => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct NewToken {
                name: String,
                role: Role,
            }
            let new: NewToken = match serde_json::from_slice(body) {
                Ok(n) => n,
                Err(e) => {
                    return Some(error(
                        StatusCode::BAD_REQUEST,
                        &format!("new token: the body must be {{\"name\", \"role\"}}: {e}"),
                    ));
                }
            };
            match admin.access.tokens.add(&new.name, new.role).await {
                Ok((t, secret)) => {
                    audit(
                        "create",
                        &t.name,
                        json!({ "role": [null, t.role] }),
                        "tokens",
                    );
                    reply(
                        StatusCode::CREATED,
                        json!({ "token": t.shown(), "secret": secret,
                                "note": "the secret is shown this once; give it as Authorization: Bearer <secret>" }),
                    )
                }
                Err(e) => refused(e),
            }
        }
        (&Method::DELETE, ["tokens", name]) => {
            let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            match admin.access.tokens.delete(&name).await {
                Ok(t) => {
                    audit(
                        "delete",
                        &t.name,
                        json!({ "role": [t.role, null] }),
                        "tokens",
                    );
                    ok(json!({ "deleted": t.shown() }))
                }
                Err(e) => refused(e),
            }
        }
        (_, ["tokens", ..]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "see GET/POST /tokens, DELETE /tokens/{name}",
        ),
        (_, ["users", ..] | ["session"]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "see GET/POST /users, PATCH/DELETE /users/{email}, POST/GET/DELETE /session",
        ),
        _ => return None,
    })
}
