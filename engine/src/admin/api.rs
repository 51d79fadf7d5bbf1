//! The admin API's one route table. Every answer is JSON; errors are
//! `{"error": "..."}` with a status that says whose fault it is. A change
//! is answered the same way on a single node and on a node of a fleet
//! (there `revision` is the etcd revision that holds it, `applied_here`
//! whether this node serves it already; 202 when it does not yet).
//!
//! | method & path | what | answer |
//! |---|---|---|
//! | `GET /healthz`, `GET /readyz` | liveness, readiness (no token needed) | `{"status"}` |
//! | `GET /metrics` | Prometheus/OpenMetrics text | text |
//! | `GET /status` | active policy, canary, shadow, topology version, uptime, last automatic rollback, etcd | status |
//! | `GET /policies` | loaded versions with role, hash, load time, calls, traps, mean call time | `{"policies": [...]}` |
//! | `POST /policies/{name}[?activate=true][&deadline_ms=&memory_mib=]` | upload a policy: raw `.wasm` body (its signature in `Edgeward-Signature`), or JSON `{"wasm_base64", "config", "activate", "limits", "signature"}` | 201 *policy* |
//! | `POST /policies/{version}/activate` | make a loaded version active | *routing* |
//! | `POST /policies/rollback` | re-activate the previous version | *routing* |
//! | `GET /canary` | the canary | `{"active", "canary"}` |
//! | `PUT /canary`, `POST /canary/promote`, `DELETE /canary` | set (`{"version", "percent"}`), promote, abort | *routing* (+ `aborted`) |
//! | `GET /shadow` | the shadow and its agreement so far | `{"shadow", "version", "sample_percent", "agreement", "report"}` |
//! | `PUT /shadow`, `DELETE /shadow` | run (`{"version", "sample_percent"}`), stop | *routing* (+ `stopped`: the final report) |
//! | `GET /topology[?format=msgpack]` | the topology (`ETag`: its etcd revision) | the document |
//! | `/topology/{kind}[/{key}]`, `POST /topology/batch`, `GET /audit` | the entities one by one, and who changed what ([`super::entities`]) | |
//! | `PUT /topology` | replace it (JSON or MessagePack body) | *topology* |
//! | `GET /explain?client=IP&url=PATH[&version=N][&draws=N]` | why that client's request goes where it goes ([`crate::routing::explain`]) | the trace |
//! | `GET /servers` | every server with its health (up/down/unknown/draining), since, last error, figures | `{"topology_version", "servers"}` |
//! | `POST /servers/{id}/drain`, `DELETE /servers/{id}/drain` | drain or undrain a server | *drain* |
//!
//! - *policy*: `{"name", "version", "hash", "digest", "active", "limits", "samples", "revision", "applied_here"}`;
//! - *routing*: `{"active", "previous", "canary", "shadow", "revision", "applied_here"}`, what serves after the change;
//! - *topology*: `{"version", "hash", "summary", "revision", "applied_here"}`;
//! - *drain*: `{"server", "draining", "changed", "revision", "applied_here"}`.
//!
//! A change may carry `If-Match: "<revision>"` (with etcd: the `ETag` of
//! `GET /topology`, or the revisions in `GET /status`), so that it fails
//! with 409 if someone changed the configuration since.

use super::{Admin, Token};
use crate::control::audit::AuditEntry;
use crate::control::{Change, ChangeError, Changed, Outcome, RoutingChange};
use crate::policy::{PolicyError, PolicySource, RoutingError};
use crate::time::rfc3339;
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use std::net::SocketAddr;

/// Largest request body (a topology of a million subnets fits).
const MAX_BODY: usize = 256 << 20;

pub(super) type Reply = Response<Full<Bytes>>;

pub(super) async fn handle(
    admin: &Admin,
    token: Option<&Token>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Reply {
    // Probes for orchestrators: no token needed, nothing revealed.
    if req.method() == Method::GET {
        match req.uri().path() {
            "/healthz" => return ok(json!({ "status": "alive" })),
            "/readyz" if admin.is_ready() => return ok(json!({ "status": "ready" })),
            "/readyz" => {
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "status": "not ready" }),
                );
            }
            _ => {}
        }
    }
    // Signing in is the way through the gate (its body is small).
    if req.method() == Method::POST && req.uri().path() == "/session" {
        return match Limited::new(req.into_body(), 4096).collect().await {
            Ok(b) => super::users::sign_in(admin, &b.to_bytes(), peer).await,
            Err(e) => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("sign-in: cannot read body: {e}"),
            ),
        };
    }
    // The console's pages, behind a gate of their own (a signed-in session).
    if req.uri().path() == "/ui" || req.uri().path().starts_with("/ui/") {
        return super::console::handle(admin, peer, req).await;
    }
    let presented = req.headers().contains_key(header::AUTHORIZATION);
    let actor = match super::users::authenticate(admin, token, req.method(), req.headers()) {
        Ok(a) => {
            if presented {
                admin.access.throttle.succeeded(peer.ip());
            }
            a
        }
        Err(r) => {
            // A wrong credential is answered after a pause that grows
            // with the failures from this address.
            if presented && r.status() == StatusCode::UNAUTHORIZED {
                let wait = admin.access.throttle.failed(peer.ip());
                admin.control.metrics.auth_failed();
                tracing::warn!(%peer, wait_ms = wait.as_millis() as u64, "admin API: a wrong bearer token");
                tokio::time::sleep(wait).await;
            }
            return *r;
        }
    };
    let (parts, body) = req.into_parts();
    let body = match read_body(&parts.headers, body).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("cannot read body: {e}"),
            );
        }
    };
    dispatch(
        admin,
        Call {
            actor: &actor,
            peer,
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or_default(),
            headers: &parts.headers,
            body: &body,
        },
    )
    .await
}

/// Reads a request body (at most [`MAX_BODY`]) into one buffer, sized
/// from `Content-Length` when it is given: a large upload (a policy, a
/// topology, a programme guide) is held once, not as its frames and then
/// again as their concatenation.
async fn read_body(
    headers: &http::HeaderMap,
    body: hyper::body::Incoming,
) -> Result<Bytes, String> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(format!("length limit exceeded ({MAX_BODY} bytes)"));
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0));
    let mut body = Limited::new(body, MAX_BODY);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// One call past the gate: who makes it and what it asks. The JSON API
/// and the console's forms both answer through [`dispatch`], so that a
/// form is authorised, validated and audited exactly as the API call it
/// stands for.
pub(super) struct Call<'a> {
    /// Who calls (authenticated).
    pub actor: &'a super::users::Actor,
    /// From where.
    pub peer: SocketAddr,
    /// The method.
    pub method: &'a Method,
    /// The path (`/topology/servers/e1`).
    pub path: &'a str,
    /// The query, without `?`.
    pub query: &'a str,
    /// The request's headers (`If-Match`, `Content-Type`).
    pub headers: &'a http::HeaderMap,
    /// The body.
    pub body: &'a Bytes,
}

/// Authorises and answers one call (see the module's table).
pub(super) async fn dispatch(admin: &Admin, call: Call<'_>) -> Reply {
    let control = &admin.control;
    let Call {
        actor,
        peer,
        method,
        path,
        query,
        headers,
        body,
    } = call;
    let who = actor.who(peer);
    let path: Vec<&str> = path.trim_matches('/').split('/').collect();
    if let Err(r) = super::users::authorize(actor, method, &path) {
        return *r;
    }
    if let Some(r) = super::users::handle(admin, actor, method, &path, body, peer).await {
        return r;
    }
    if let Some(r) = super::entities::handle(admin, method, &path, query, headers, body, &who).await
    {
        return r;
    }
    let based_on = match if_match(headers) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(())) => {
            return error(
                StatusCode::BAD_REQUEST,
                "If-Match must be an etcd revision, e.g. \"42\"",
            );
        }
    };
    let change = |change: Change| admin.writer.write(change, based_on, &who);
    // Policies, routing and drains are audited here (entity and topology
    // changes by the writer, with their records).
    let routing = |c: RoutingChange| {
        let (action, key, what) = match &c {
            RoutingChange::Activate(v) => ("activate", Some(v.to_string()), json!({"active": v})),
            RoutingChange::Rollback => ("rollback", None, json!({})),
            RoutingChange::SetCanary(v, p) => {
                ("set-canary", Some(v.to_string()), json!({"percent": p}))
            }
            RoutingChange::PromoteCanary => ("promote-canary", None, json!({})),
            RoutingChange::AbortCanary => ("abort-canary", None, json!({})),
            RoutingChange::SetShadow(v, p) => (
                "set-shadow",
                Some(v.to_string()),
                json!({"sample_percent": p}),
            ),
            RoutingChange::ClearShadow => ("stop-shadow", None, json!({})),
            RoutingChange::Automatic { .. } => ("automatic", None, json!({})),
        };
        let written = change(Change::Routing(c));
        let who = &who;
        async move {
            let result = written.await;
            if result.is_ok() {
                let active = admin.control.policies.routing().active.label();
                let mut what = what;
                what["now_active"] = json!(active);
                admin.audit(vec![AuditEntry::action(who, action, "routing", key, what)]);
            }
            result
        }
    };

    match (method, path.as_slice()) {
        (&Method::GET, ["metrics"]) => {
            let mut r = Response::new(Full::new(Bytes::from(admin.metrics())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        (&Method::GET, ["status"]) => ok(status(admin)),
        (&Method::GET, ["policies"]) => ok(json!({ "policies": control.policies.list() })),
        (&Method::POST, ["policies", "rollback"]) => {
            changed(admin, routing(RoutingChange::Rollback).await)
        }
        (&Method::POST, ["policies", version, "activate"]) => match version.parse::<u64>() {
            Ok(v) => changed(admin, routing(RoutingChange::Activate(v)).await),
            Err(_) => error(StatusCode::BAD_REQUEST, "version must be a number"),
        },
        (&Method::POST, ["policies", name]) => match parse_upload(name, query, headers, body) {
            Ok((source, activate)) => {
                let result = change(Change::Policy { source, activate }).await;
                if let Ok(Changed {
                    outcome:
                        Outcome::Policy {
                            name,
                            version,
                            hash,
                            activated,
                            ..
                        },
                    ..
                }) = &result
                {
                    let what = json!({"hash": hash, "activated": activated});
                    let key = Some(format!("{name}@{version}"));
                    admin.audit(vec![AuditEntry::action(
                        &who, "load", "policies", key, what,
                    )]);
                }
                changed(admin, result)
            }
            Err(r) => *r,
        },
        (&Method::GET, ["servers"]) => ok(servers(admin)),
        (&Method::POST | &Method::DELETE, ["servers", id, "drain"]) => {
            let draining = method == Method::POST;
            let server = id.to_string();
            let result = change(Change::Drain { server, draining }).await;
            if let Ok(Changed {
                outcome:
                    Outcome::Drain {
                        server,
                        changed: true,
                        ..
                    },
                ..
            }) = &result
            {
                let action = if draining { "drain" } else { "undrain" };
                let what = json!({"draining": [!draining, draining]});
                admin.audit(vec![AuditEntry::action(
                    &who,
                    action,
                    "servers",
                    Some(server.clone()),
                    what,
                )]);
            }
            changed(admin, result)
        }
        (&Method::GET, ["canary"]) => ok(canary(admin)),
        (&Method::PUT, ["canary"]) => match percent_body(body, "percent") {
            Ok((v, p)) => changed(admin, routing(RoutingChange::SetCanary(v, p)).await),
            Err(r) => *r,
        },
        (&Method::POST, ["canary", "promote"]) => {
            changed(admin, routing(RoutingChange::PromoteCanary).await)
        }
        (&Method::DELETE, ["canary"]) => changed(admin, routing(RoutingChange::AbortCanary).await),
        (&Method::GET, ["shadow"]) => ok(shadow(admin)),
        (&Method::PUT, ["shadow"]) => match percent_body(body, "sample_percent") {
            Ok((v, p)) => changed(admin, routing(RoutingChange::SetShadow(v, p)).await),
            Err(r) => *r,
        },
        (&Method::DELETE, ["shadow"]) => changed(admin, routing(RoutingChange::ClearShadow).await),
        (&Method::GET, ["topology"]) => topology(admin, query),
        (&Method::GET, ["explain"]) => explain(admin, query),
        (&Method::PUT, ["topology"]) => {
            changed(admin, change(Change::Topology(body.clone())).await)
        }
        (_, ["status" | "policies" | "canary" | "shadow" | "topology", ..]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this path",
        ),
        _ => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
    }
}

/// The answer to a change: what it did (see the module's table), 200 (201
/// for a new policy), or 202 when a fleet's write is not applied here yet.
fn changed(admin: &Admin, result: Result<Changed, ChangeError>) -> Reply {
    let changed = match result {
        Ok(c) => c,
        Err(e) => return change_error(admin, e),
    };
    let mut body = match changed.outcome {
        Outcome::Entities {
            version,
            revision,
            applied,
            ..
        } => super::entities::changed_body(version, revision, &applied),
        Outcome::Topology {
            version,
            hash,
            summary,
        } => json!({ "version": version, "hash": hash, "summary": summary }),
        Outcome::Policy {
            name,
            version,
            hash,
            digest,
            activated,
            limits,
            samples,
        } => json!({
            "name": name,
            "version": version,
            "hash": hash,
            "digest": digest,
            "active": activated,
            "limits": limits,
            "samples": samples,
        }),
        Outcome::Routing {
            aborted,
            stopped_shadow,
            unchanged: _,
        } => {
            let mut v = routing_view(admin);
            if let Some(aborted) = aborted {
                v["aborted"] = json!(aborted);
            }
            if let Some((policy, report)) = stopped_shadow {
                v["stopped"] = json!({
                    "shadow": policy,
                    "agreement": agreement(report.agreed, report.compared),
                    "report": report,
                });
            }
            v
        }
        Outcome::Drain {
            server,
            draining,
            changed,
        } => json!({ "server": server, "draining": draining, "changed": changed }),
    };
    let created = body.get("samples").is_some();
    body["revision"] = json!(changed.revision);
    body["applied_here"] = json!(changed.applied_here);
    let status = match (changed.applied_here, created) {
        (false, _) => StatusCode::ACCEPTED,
        (true, true) => StatusCode::CREATED,
        (true, false) => StatusCode::OK,
    };
    reply(status, body)
}

/// What serves now on this node.
fn routing_view(admin: &Admin) -> Value {
    let routing = admin.control.policies.routing();
    json!({
        "active": routing.active.label(),
        "previous": routing.previous.as_ref().map(|p| p.label()),
        "canary": routing.canary.as_ref().map(|c| json!({"policy": c.policy.label(), "version": c.policy.version, "percent": c.percent})),
        "shadow": routing.shadow.as_ref().map(|s| json!({"policy": s.policy.label(), "version": s.policy.version, "sample_percent": s.sample_percent})),
    })
}

pub(super) fn change_error(admin: &Admin, e: ChangeError) -> Reply {
    match e {
        ChangeError::Topology(e) => topology_refused(admin, &e),
        ChangeError::Entity(e) => super::entities::refused(e),
        ChangeError::Policy(e) => policy_error(e),
        ChangeError::Routing(e) => routing_error(e),
        ChangeError::UnknownServer(_) => error(StatusCode::NOT_FOUND, &e.to_string()),
        ChangeError::Conflict { current, .. } => reply(
            StatusCode::CONFLICT,
            json!({ "error": e.to_string(), "current_revision": current }),
        ),
        ChangeError::LocalOnly(_) => error(StatusCode::CONFLICT, &e.to_string()),
        ChangeError::Refused(_) => error(StatusCode::BAD_GATEWAY, &e.to_string()),
        ChangeError::Unavailable(_) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `GET /explain`: the request path traced for one client and URL, with the
/// version that would decide (`version` to ask another loaded one).
fn explain(admin: &Admin, query: &str) -> Reply {
    let mut client = None;
    let mut url = None;
    let mut version = None;
    let mut draws = 0;
    let mut tls = false;
    let mut headers: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(&value.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        let bad = |what: &str| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("{key}: {value:?} is not {what}"),
            )
        };
        match key {
            "client" => match value.parse::<std::net::IpAddr>() {
                Ok(ip) => client = Some(ip),
                Err(_) => return bad("an IP address"),
            },
            "url" => url = Some(value),
            "version" => match value.parse::<u64>() {
                Ok(v) => version = Some(v),
                Err(_) => return bad("a policy version"),
            },
            "draws" => match value.parse::<u32>() {
                Ok(d) if d <= crate::routing::explain::MAX_DRAWS => draws = d,
                _ => return bad("a number of draws (at most 100000)"),
            },
            "tls" => match value.as_str() {
                "1" | "true" => tls = true,
                "0" | "false" => tls = false,
                _ => return bad("1 or 0"),
            },
            "header" => match parse_header(&value) {
                Some(h) if headers.len() < 64 => headers.push(h),
                _ => return bad("a header `Name: value` (at most 64)"),
            },
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "unknown parameter {key:?} (client, url, version, draws, tls, header)"
                    ),
                );
            }
        }
    }
    let (Some(client), Some(url)) = (client, url) else {
        return error(
            StatusCode::BAD_REQUEST,
            "client and url are required, e.g. /explain?client=10.1.2.3&url=/btv/live/hls/ch1.m3u8",
        );
    };
    let control = &admin.control;
    let policy = match version {
        Some(v) => match control.policies.find(v) {
            Some(p) => p,
            None => return routing_error(RoutingError::UnknownVersion(v)),
        },
        None => control
            .policies
            .routing()
            .for_client(crate::routing::decider::client_hash(client))
            .clone(),
    };
    ok(crate::routing::explain::explain(
        &control.topology.snapshot(),
        &control.health.load(),
        &control.policies,
        &policy,
        &crate::routing::explain::Question {
            client,
            url: &url,
            draws,
            tls,
            headers: &headers,
            geo: admin
                .geoip
                .as_ref()
                .map(|(g, _)| g.lookup(client))
                .unwrap_or_default(),
            nearest_regions: admin
                .geoip
                .as_ref()
                .map_or(crate::geo::NEAREST_REGIONS, |(_, n)| *n),
        },
    ))
}

/// `Name: value`, the name a valid header name.
pub fn parse_header(text: &str) -> Option<(String, String)> {
    let (name, value) = text.split_once(':')?;
    let name = name.trim();
    http::HeaderName::from_bytes(name.as_bytes()).ok()?;
    Some((name.to_string(), value.trim().to_string()))
}

/// `GET /topology`: the document as JSON, or as MessagePack exactly as it
/// was loaded.
fn topology(admin: &Admin, query: &str) -> Reply {
    let t = admin.control.topology.snapshot();
    if query.contains("format=msgpack") {
        let mut r = Response::new(Full::new(t.source().clone()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/msgpack"),
        );
        return with_version(admin, r, t.version);
    }
    // Written straight from the snapshot's parts: a `Value` of a million
    // subnets would cost far more than the text.
    let text = crate::topology::document::to_json(&t);
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    with_version(admin, r, t.version)
}

/// The header that carries a raw upload's signature (the `.sig` file's
/// one line of JSON).
const SIGNATURE_HEADER: &str = "edgeward-signature";

/// The policy an upload carries and whether to activate it: a raw `.wasm`
/// body (its signature in an `Edgeward-Signature` header), or JSON
/// `{"wasm_base64", "config", "activate", "limits", "signature"}`; the
/// limits may also come as `?deadline_ms=&memory_mib=`. (Public for the
/// fuzz target `policy_upload`.)
pub fn parse_upload(
    name: &str,
    query: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(PolicySource, bool), Box<Reply>> {
    let bad = |m: String| Box::new(error(StatusCode::BAD_REQUEST, &m));
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let mut signature = match headers.get(SIGNATURE_HEADER) {
        None => None,
        Some(v) => Some(
            crate::policy::signing::parse(v.as_bytes())
                .map(Box::new)
                .map_err(|e| bad(format!("header Edgeward-Signature: {e}")))?,
        ),
    };
    let mut activate = query
        .split('&')
        .any(|kv| kv == "activate=true" || kv == "activate=1");
    let mut limits = crate::policy::Limits::from_query(query).map_err(bad)?;
    let (wasm, config) = if is_json {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Upload {
            wasm_base64: String,
            #[serde(default)]
            config: Option<Value>,
            #[serde(default)]
            activate: bool,
            #[serde(default)]
            limits: Option<crate::policy::Limits>,
            #[serde(default)]
            signature: Option<crate::policy::signing::PolicySignature>,
        }
        let up: Upload =
            serde_json::from_slice(body).map_err(|e| bad(format!("invalid upload JSON: {e}")))?;
        activate |= up.activate;
        if let Some(s) = up.signature {
            signature = Some(Box::new(s));
        }
        if let Some(given) = up.limits {
            given.check().map_err(bad)?;
            limits = crate::policy::Limits {
                deadline_ms: given.deadline_ms.or(limits.deadline_ms),
                memory_mib: given.memory_mib.or(limits.memory_mib),
            };
        }
        let wasm = base64::engine::general_purpose::STANDARD
            .decode(up.wasm_base64.trim())
            .map_err(|e| bad(format!("wasm_base64: {e}")))?;
        let config = match up.config {
            None => crate::policy::empty_config(),
            Some(v @ Value::Object(_)) => {
                rmp_serde::to_vec_named(&v).map_err(|e| bad(format!("config: {e}")))?
            }
            Some(_) => return Err(bad("config must be a JSON object".into())),
        };
        (wasm, config)
    } else {
        (body.to_vec(), crate::policy::empty_config())
    };
    let source = PolicySource {
        name: name.to_string(),
        wasm,
        config,
        limits,
        signature,
    };
    Ok((source, activate))
}

fn policy_error(e: PolicyError) -> Reply {
    let status = match e {
        PolicyError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    reply(status, json!({ "error": e.to_string() }))
}

fn topology_refused(admin: &Admin, e: &crate::topology::TopologyError) -> Reply {
    let problems: Vec<String> = match e {
        crate::topology::TopologyError::Invalid(p) => p.clone(),
        other => vec![other.to_string()],
    };
    reply(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({
            "error": "topology refused; the current one is kept",
            "kept_version": admin.control.topology.load().version,
            "problems": problems,
        }),
    )
}

fn status(admin: &Admin) -> Value {
    let control = &admin.control;
    let routing = control.policies.routing();
    let topology = control.topology.load();
    let mut v = json!({
        "active_policy": {
            "name": routing.active.name,
            "version": routing.active.version,
            "hash": routing.active.hash,
            "loaded_at": rfc3339(routing.active.loaded_at),
        },
        "previous_policy": routing.previous.as_ref().map(|p| p.label()),
        "canary": routing.canary.as_ref().map(|c| json!({"policy": c.policy.label(), "version": c.policy.version, "percent": c.percent})),
        "shadow": routing.shadow.as_ref().map(|s| json!({"policy": s.policy.label(), "version": s.policy.version, "sample_percent": s.sample_percent})),
        "fallback": control.policies.fallback,
        "last_automatic_rollback": control.policies.last_auto_rollback(),
        "topology": {
            "version": topology.version,
            "revision": topology.revision(),
            "hash": topology.hash,
            "summary": topology.summary(),
        },
        "uptime_seconds": control.started.elapsed().as_secs_f64(),
    });
    if let Some(cluster) = &admin.cluster {
        v["etcd"] = cluster.status();
    }
    v["health"] = match control.health_share.get() {
        None => json!({"mode": "local"}),
        Some(share) => {
            let health = control.health.load();
            let checked = health.entries().iter().filter(|s| s.check.is_some());
            let probed_here = checked.filter(|s| share.owns(&s.id)).count();
            json!({
                "mode": "shared",
                "alone": share.alone(),
                "members": *share.members(),
                "probed_here": probed_here,
            })
        }
    };
    v
}

fn servers(admin: &Admin) -> Value {
    let topology = admin.control.topology.load();
    let health = admin.control.health.load();
    let list: Vec<Value> = topology
        .servers
        .iter()
        .map(|s| {
            let mut v = json!({
                "id": s.id,
                "kind": s.kind,
                "host": s.host,
                "port": s.port,
                "active": s.active,
                "checked": s.healthcheck.is_some(),
            });
            if let (Value::Object(m), Ok(Value::Object(h))) = (
                &mut v,
                serde_json::to_value(health.by_id(&s.id).map(|h| h.view())),
            ) {
                m.extend(h);
            }
            v
        })
        .collect();
    json!({ "topology_version": topology.version, "servers": list })
}

fn canary(admin: &Admin) -> Value {
    let routing = admin.control.policies.routing();
    json!({
        "active": routing.active.label(),
        "canary": routing.canary.as_ref().map(|c| json!({"policy": c.policy.label(), "version": c.policy.version, "percent": c.percent})),
    })
}

fn shadow(admin: &Admin) -> Value {
    let routing = admin.control.policies.routing();
    match &routing.shadow {
        None => json!({ "shadow": null }),
        Some(s) => {
            let report = s.report.lock().unwrap_or_else(|e| e.into_inner()).clone();
            json!({
                "shadow": s.policy.label(),
                "version": s.policy.version,
                "sample_percent": s.sample_percent,
                "agreement": agreement(report.agreed, report.compared),
                "report": report,
            })
        }
    }
}

/// The share of agreements, none before the first comparison.
fn agreement(agreed: u64, compared: u64) -> Option<f64> {
    (compared > 0).then(|| agreed as f64 / compared as f64)
}

/// `{"version": N, "<field>": P}`.
fn percent_body(body: &[u8], field: &str) -> Result<(u64, u32), Box<Reply>> {
    let bad = |m: String| Box::new(error(StatusCode::BAD_REQUEST, &m));
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let version = v["version"]
        .as_u64()
        .ok_or_else(|| bad("field `version` (a number) is required".into()))?;
    let percent = v[field]
        .as_u64()
        .ok_or_else(|| bad(format!("field `{field}` (0-100) is required")))?;
    Ok((version, percent.min(u64::from(u32::MAX)) as u32))
}

/// The revision in an `If-Match` header (`"123"` or `123`), if any.
pub(super) fn if_match(headers: &http::HeaderMap) -> Option<Result<i64, ()>> {
    let v = headers.get(header::IF_MATCH)?;
    Some(
        v.to_str()
            .ok()
            .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
            .and_then(|s| s.parse().ok())
            .ok_or(()),
    )
}

fn routing_error(e: RoutingError) -> Reply {
    let status = match e {
        RoutingError::UnknownVersion(_) | RoutingError::NoCanary | RoutingError::NoShadow => {
            StatusCode::NOT_FOUND
        }
        RoutingError::NoPrevious => StatusCode::CONFLICT,
        RoutingError::BadPercent(_) => StatusCode::BAD_REQUEST,
    };
    error(status, &e.to_string())
}

/// Adds the topology version (and, with etcd, the topology record's
/// revision as `ETag`, for `If-Match`).
fn with_version(admin: &Admin, mut r: Reply, version: u64) -> Reply {
    r.headers_mut().insert(
        "edgeward-topology-version",
        http::HeaderValue::from(version),
    );
    if let Some(cluster) = &admin.cluster {
        let rev = cluster.revision_of(&cluster.keys().topology());
        if let Ok(v) = http::HeaderValue::from_str(&format!("\"{rev}\"")) {
            r.headers_mut().insert(header::ETAG, v);
        }
    }
    r
}

pub(super) fn ok(v: Value) -> Reply {
    reply(StatusCode::OK, v)
}

pub(super) fn error(status: StatusCode, message: &str) -> Reply {
    reply(status, json!({ "error": message }))
}

pub(super) fn reply(status: StatusCode, v: Value) -> Reply {
    let mut body = serde_json::to_vec_pretty(&v).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
