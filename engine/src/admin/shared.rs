//! Admin routes when the configuration lives in etcd: changes are
//! validated here and written to etcd (see [`crate::cluster::write`])
//! instead of applied locally; every node, this one included, applies them
//! from its watch. Reads are the same as on a single node. A change may
//! carry `If-Match: "<revision>"` (the `ETag` of `GET /topology`, or the
//! revisions in `GET /status`) to make sure it is based on what its author
//! saw; without it, it is based on what this node last applied.

use super::api::{
    Reply, error, ok, parse_upload, percent_body, policy_error, reply, routing_error,
    topology_refused,
};
use crate::cluster::Cluster;
use crate::cluster::etcd::EtcdError;
use crate::cluster::write::{RoutingChange, WriteError, Written};
use crate::control::Control;
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// One admin request, as far as shared routes need it.
pub(super) struct Call<'a> {
    pub method: &'a Method,
    pub path: &'a [&'a str],
    pub query: &'a str,
    pub if_match: Option<Result<i64, ()>>,
    pub is_json: bool,
    pub body: &'a bytes::Bytes,
    pub who: &'a str,
}

/// Answers a change through etcd, or `None` for routes that are not
/// changes (answered locally).
pub(super) async fn handle(control: &Control, cluster: &Cluster, call: &Call<'_>) -> Option<Reply> {
    let if_match = match call.if_match {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(())) => {
            return Some(error(
                StatusCode::BAD_REQUEST,
                "If-Match must be an etcd revision, e.g. \"42\"",
            ));
        }
    };
    let who = call.who;
    let routing = |change| cluster.change_routing(change, if_match, who, control);
    let answer = match (call.method, call.path) {
        (&Method::PUT, ["topology"]) => {
            match cluster
                .push_topology(control, call.body.clone(), if_match, who)
                .await
            {
                Ok((w, hash, summary)) => written(
                    w,
                    json!({
                        "hash": hash,
                        "summary": summary,
                        "version": control.topology.load().version,
                    }),
                ),
                Err(e) => write_error(control, e),
            }
        }
        (&Method::POST, ["policies", "rollback"]) => {
            routed(control, routing(RoutingChange::Rollback).await)
        }
        (&Method::POST, ["policies", version, "activate"]) => match version.parse::<u64>() {
            Ok(v) => routed(control, routing(RoutingChange::Activate(v)).await),
            Err(_) => error(StatusCode::BAD_REQUEST, "version must be a number"),
        },
        (&Method::POST, ["policies", name]) => {
            match parse_upload(name, call.query, call.is_json, call.body) {
                Err(r) => *r,
                Ok((source, activate)) => {
                    let name = source.name.clone();
                    match cluster.push_policy(control, source, activate, who).await {
                        Ok((w, version, digest)) => {
                            let mut r = written(
                                w,
                                json!({
                                    "name": name,
                                    "version": version,
                                    "digest": digest,
                                    "hash": control.policies.find(version).map(|p| p.hash.clone()),
                                    "active": activate,
                                }),
                            );
                            if w.applied {
                                *r.status_mut() = StatusCode::CREATED;
                            }
                            r
                        }
                        Err(e) => write_error(control, e),
                    }
                }
            }
        }
        (&Method::POST | &Method::DELETE, ["servers", id, "drain"]) => {
            let draining = *call.method == Method::POST;
            match cluster.set_draining(control, id, draining, who).await {
                Ok((w, changed)) => written(
                    w,
                    json!({ "server": id, "draining": draining, "changed": changed }),
                ),
                Err(e) => write_error(control, e),
            }
        }
        (&Method::PUT, ["canary"]) => match percent_body(call.body, "percent") {
            Ok((v, p)) => routed(control, routing(RoutingChange::SetCanary(v, p)).await),
            Err(r) => *r,
        },
        (&Method::POST, ["canary", "promote"]) => {
            routed(control, routing(RoutingChange::PromoteCanary).await)
        }
        (&Method::DELETE, ["canary"]) => routed(control, routing(RoutingChange::AbortCanary).await),
        (&Method::PUT, ["shadow"]) => match percent_body(call.body, "sample_percent") {
            Ok((v, p)) => routed(control, routing(RoutingChange::SetShadow(v, p)).await),
            Err(r) => *r,
        },
        (&Method::DELETE, ["shadow"]) => routed(control, routing(RoutingChange::ClearShadow).await),
        _ => return None,
    };
    Some(answer)
}

/// A routing change's answer: what serves now on this node.
fn routed(control: &Control, result: Result<Written, WriteError>) -> Reply {
    match result {
        Ok(w) => {
            let routing = control.policies.routing();
            written(
                w,
                json!({
                    "active": routing.active.label(),
                    "canary": routing.canary.as_ref().map(|c| json!({"policy": c.policy.label(), "version": c.policy.version, "percent": c.percent})),
                    "shadow": routing.shadow.as_ref().map(|s| json!({"policy": s.policy.label(), "version": s.policy.version, "sample_percent": s.sample_percent})),
                }),
            )
        }
        Err(e) => write_error(control, e),
    }
}

/// 200 with the revision, or 202 when this node has not applied it yet.
fn written(w: Written, mut body: Value) -> Reply {
    body["revision"] = json!(w.revision);
    body["applied_here"] = json!(w.applied);
    if w.applied {
        ok(body)
    } else {
        reply(StatusCode::ACCEPTED, body)
    }
}

fn write_error(control: &Control, e: WriteError) -> Reply {
    match e {
        WriteError::Topology(e) => topology_refused(control, &e),
        WriteError::Policy(e) => policy_error(e),
        WriteError::Routing(e) => routing_error(e),
        WriteError::UnknownServer(_) => error(StatusCode::NOT_FOUND, &e.to_string()),
        WriteError::Conflict { current, .. } => reply(
            StatusCode::CONFLICT,
            json!({ "error": e.to_string(), "current_revision": current }),
        ),
        WriteError::LocalOnly(_) => error(StatusCode::CONFLICT, &e.to_string()),
        WriteError::Etcd(EtcdError::Refused(_)) => error(StatusCode::BAD_GATEWAY, &e.to_string()),
        WriteError::Etcd(_) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}
