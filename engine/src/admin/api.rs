//! Admin API routes. Every answer is JSON; errors are
//! `{"error": "..."}` with a status that says whose fault it is.
//!
//! | method & path | what |
//! |---|---|
//! | `GET /healthz`, `GET /readyz` | liveness, readiness (no token needed) |
//! | `GET /metrics` | Prometheus/OpenMetrics text |
//! | `GET /status` | active policy, canary, shadow, topology version, uptime, last automatic rollback |
//! | `GET /policies` | loaded versions with role, hash, load time, calls, traps, mean call time |
//! | `POST /policies/{name}[?activate=true]` | upload a policy: raw `.wasm` body, or JSON `{"wasm_base64", "config", "activate"}` |
//! | `POST /policies/{version}/activate` | make a loaded version active |
//! | `POST /policies/rollback` | re-activate the previous version |
//! | `GET/PUT/DELETE /canary`, `POST /canary/promote` | canary: `{"version", "percent"}` |
//! | `GET/PUT/DELETE /shadow` | shadow: `{"version", "sample_percent"}`; GET reports agreement |
//! | `GET /topology[?format=msgpack]`, `PUT /topology` | read or replace the topology (JSON or MessagePack body) |
//! | `GET /servers` | every server with its health (up/down/unknown/draining), since, last error, figures |
//! | `POST /servers/{id}/drain`, `DELETE /servers/{id}/drain` | drain or undrain a server |

use super::Token;
use super::shared;
use crate::control::Control;
use crate::policy::{PolicyError, PolicySource, RoutingError, rfc3339};
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
    control: &Control,
    token: Option<&Token>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Reply {
    // Probes for orchestrators: no token needed, nothing revealed.
    if req.method() == Method::GET {
        match req.uri().path() {
            "/healthz" => return ok(json!({ "status": "alive" })),
            "/readyz" if control.is_ready() => return ok(json!({ "status": "ready" })),
            "/readyz" => {
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "status": "not ready" }),
                );
            }
            _ => {}
        }
    }
    let who = match token {
        Some(t) => {
            let auth = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            if !t.accepts(auth) {
                let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer"),
                );
                return r;
            }
            format!("token:{} from {peer}", t.id)
        }
        None => format!("loopback {peer}"),
    };
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("cannot read body: {e}"),
            );
        }
    };
    let path: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
    let query = parts.uri.query().unwrap_or_default();
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));

    if let Some(cluster) = control.cluster()
        && let Some(r) = shared::handle(
            control,
            cluster,
            &shared::Call {
                method: &parts.method,
                path: &path,
                query,
                if_match: if_match(&parts.headers),
                is_json,
                body: &body,
                who: &who,
            },
        )
        .await
    {
        return r;
    }

    match (&parts.method, path.as_slice()) {
        (&Method::GET, ["metrics"]) => {
            let mut r = Response::new(Full::new(Bytes::from(control.metrics.render(control))));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        (&Method::GET, ["status"]) => ok(status(control)),
        (&Method::GET, ["policies"]) => ok(json!({ "policies": control.policies.list() })),
        (&Method::POST, ["policies", "rollback"]) => match control.rollback(&who) {
            Ok(p) => ok(json!({ "active": p.label() })),
            Err(e) => routing_error(e),
        },
        (&Method::POST, ["policies", version, "activate"]) => match version.parse::<u64>() {
            Ok(v) => match control.activate(v, &who) {
                Ok(p) => ok(json!({ "active": p.label() })),
                Err(e) => routing_error(e),
            },
            Err(_) => error(StatusCode::BAD_REQUEST, "version must be a number"),
        },
        (&Method::POST, ["policies", name]) => upload(control, name, query, is_json, &body, &who),
        (&Method::GET, ["servers"]) => ok(servers(control)),
        (&Method::POST | &Method::DELETE, ["servers", id, "drain"]) => {
            let draining = parts.method == Method::POST;
            match control.set_draining(id, draining, &who) {
                Some(changed) => {
                    ok(json!({ "server": id, "draining": draining, "changed": changed }))
                }
                None => error(
                    StatusCode::NOT_FOUND,
                    &format!("no server {id:?} in the topology"),
                ),
            }
        }
        (&Method::GET, ["canary"]) => ok(canary(control)),
        (&Method::PUT, ["canary"]) => match percent_body(&body, "percent") {
            Ok((version, percent)) => match control.set_canary(version, percent, &who) {
                Ok(()) => ok(canary(control)),
                Err(e) => routing_error(e),
            },
            Err(r) => *r,
        },
        (&Method::POST, ["canary", "promote"]) => match control.promote_canary(&who) {
            Ok(p) => ok(json!({ "active": p.label() })),
            Err(e) => routing_error(e),
        },
        (&Method::DELETE, ["canary"]) => match control.abort_canary(&who) {
            Ok(p) => ok(json!({ "aborted": p.label() })),
            Err(e) => routing_error(e),
        },
        (&Method::GET, ["shadow"]) => ok(shadow(control)),
        (&Method::PUT, ["shadow"]) => match percent_body(&body, "sample_percent") {
            Ok((version, percent)) => match control.set_shadow(version, percent, &who) {
                Ok(()) => ok(shadow(control)),
                Err(e) => routing_error(e),
            },
            Err(r) => *r,
        },
        (&Method::DELETE, ["shadow"]) => {
            let report = shadow(control);
            if control.clear_shadow(&who) {
                ok(report)
            } else {
                error(StatusCode::NOT_FOUND, "no shadow is running")
            }
        }
        (&Method::GET, ["topology"]) => {
            let t = control.topology.snapshot();
            if query.contains("format=msgpack") {
                let mut r = Response::new(Full::new(t.source.clone()));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/msgpack"),
                );
                with_version(control, r, t.version)
            } else {
                // Written straight from the document: a `Value` of a
                // million subnets would cost far more than the text.
                match crate::topology::parse(&t.source)
                    .map_err(|e| e.to_string())
                    .and_then(|doc| serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string()))
                {
                    Ok(mut text) => {
                        text.push(b'\n');
                        let mut r = Response::new(Full::new(Bytes::from(text)));
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        with_version(control, r, t.version)
                    }
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
                }
            }
        }
        (&Method::PUT, ["topology"]) => match control.replace_topology(body, &who) {
            Ok(t) => ok(json!({ "version": t.version, "hash": t.hash, "summary": t.summary() })),
            Err(e) => topology_refused(control, &e),
        },
        (_, ["status" | "policies" | "canary" | "shadow" | "topology", ..]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this path",
        ),
        _ => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
    }
}

/// The policy an upload carries and whether to activate it: a raw `.wasm`
/// body, or JSON `{"wasm_base64", "config", "activate"}`.
pub(super) fn parse_upload(
    name: &str,
    query: &str,
    is_json: bool,
    body: &[u8],
) -> Result<(PolicySource, bool), Box<Reply>> {
    let bad = |m: String| Box::new(error(StatusCode::BAD_REQUEST, &m));
    let mut activate = query
        .split('&')
        .any(|kv| kv == "activate=true" || kv == "activate=1");
    let (wasm, config) = if is_json {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Upload {
            wasm_base64: String,
            #[serde(default)]
            config: Option<Value>,
            #[serde(default)]
            activate: bool,
        }
        let up: Upload =
            serde_json::from_slice(body).map_err(|e| bad(format!("invalid upload JSON: {e}")))?;
        activate |= up.activate;
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
    };
    Ok((source, activate))
}

fn upload(
    control: &Control,
    name: &str,
    query: &str,
    is_json: bool,
    body: &[u8],
    who: &str,
) -> Reply {
    let (source, activate) = match parse_upload(name, query, is_json, body) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    match control.upload_policy(source, activate, who) {
        Ok((p, samples)) => reply(
            StatusCode::CREATED,
            json!({
                "name": p.name,
                "version": p.version,
                "hash": p.hash,
                "active": activate,
                "samples": samples,
            }),
        ),
        Err(e) => policy_error(e),
    }
}

pub(super) fn policy_error(e: PolicyError) -> Reply {
    let status = match e {
        PolicyError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    reply(status, json!({ "error": e.to_string() }))
}

pub(super) fn topology_refused(control: &Control, e: &crate::topology::TopologyError) -> Reply {
    let problems: Vec<String> = match e {
        crate::topology::TopologyError::Invalid(p) => p.clone(),
        other => vec![other.to_string()],
    };
    reply(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({
            "error": "topology refused; the current one is kept",
            "kept_version": control.topology.load().version,
            "problems": problems,
        }),
    )
}

fn status(control: &Control) -> Value {
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
            "hash": topology.hash,
            "summary": topology.summary(),
        },
        "uptime_seconds": control.started.elapsed().as_secs_f64(),
    });
    if let Some(cluster) = control.cluster() {
        v["etcd"] = cluster.status();
    }
    v
}

fn servers(control: &Control) -> Value {
    let topology = control.topology.load();
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
            if let (Value::Object(m), Ok(Value::Object(h))) =
                (&mut v, serde_json::to_value(s.health.view()))
            {
                m.extend(h);
            }
            v
        })
        .collect();
    json!({ "topology_version": topology.version, "servers": list })
}

fn canary(control: &Control) -> Value {
    let routing = control.policies.routing();
    json!({
        "active": routing.active.label(),
        "canary": routing.canary.as_ref().map(|c| json!({"policy": c.policy.label(), "version": c.policy.version, "percent": c.percent})),
    })
}

fn shadow(control: &Control) -> Value {
    let routing = control.policies.routing();
    match &routing.shadow {
        None => json!({ "shadow": null }),
        Some(s) => {
            let report = s.report.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let rate = if report.compared == 0 {
                None
            } else {
                Some(report.agreed as f64 / report.compared as f64)
            };
            json!({
                "shadow": s.policy.label(),
                "version": s.policy.version,
                "sample_percent": s.sample_percent,
                "agreement": rate,
                "report": report,
            })
        }
    }
}

/// `{"version": N, "<field>": P}`.
pub(super) fn percent_body(body: &[u8], field: &str) -> Result<(u64, u32), Box<Reply>> {
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
fn if_match(headers: &http::HeaderMap) -> Option<Result<i64, ()>> {
    let v = headers.get(header::IF_MATCH)?;
    Some(
        v.to_str()
            .ok()
            .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
            .and_then(|s| s.parse().ok())
            .ok_or(()),
    )
}

pub(super) fn routing_error(e: RoutingError) -> Reply {
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
fn with_version(control: &Control, mut r: Reply, version: u64) -> Reply {
    r.headers_mut().insert(
        "edgeward-topology-version",
        http::HeaderValue::from(version),
    );
    if let Some(cluster) = control.cluster() {
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
