//! The per-entity admin API: the topology's entities one by one, and the
//! audit trail.
//!
//! | method & path | what | answer |
//! |---|---|---|
//! | `GET /topology/{kind}[?page=&per_page=&order_by=&q=&{field}=]` | a page of entities | `{"kind", "total", "page", "per_page", "revision", "items": [{"key", "revision", "value"}]}` |
//! | `GET /topology/{kind}/{key}` | one entity (`ETag`: its revision) | `{"key", "revision", "value"}` |
//! | `POST /topology/{kind}` | create one (its value) | 201 *change* |
//! | `PUT /topology/{kind}/{key}` | replace its value | *change* |
//! | `PATCH /topology/{kind}/{key}` | change some fields (JSON merge patch) | *change* |
//! | `DELETE /topology/{kind}/{key}` | delete it | *change* |
//! | `POST /topology/batch` | several changes, all or none: `{"changes": [{"op", "kind", "key", "value", "if_match"}]}` | *change* |
//! | `POST /epg` | import a programme guide (Kaltura EPG XML or XMLTV) by the old system's rules ([`crate::epg`]), as one batch | *change* with `"epg"`: what it did per channel |
//! | `GET /audit[?since=&limit=]` | changes since a time (RFC 3339 or Unix milliseconds; default the last hour) | `{"entries": [...]}` |
//!
//! Kinds are `regions`, `subnets`, `server-groups`, `servers`, `channels`,
//! `streams`, `programs`, `records`, `pathways` (keys:
//! [`crate::topology::entity`]).
//! `If-Match: "<revision>"` on a single-entity change makes it fail with
//! 409 and the current revision if the entity changed since. *change* is
//! `{"version", "revision", "changes": [{"op", "kind", "key", "before",
//! "after"}], "applied_here"}`, with `Server-Timing: serve;dur=<ms>,
//! apply;dur=<ms>, journal;dur=<ms>`: how long the change took from its
//! arrival to this node serving it, to the answer, and the journal's sync
//! to disk (after serving, before the answer).

use super::Admin;
use super::api::{Reply, error, ok, reply};
use crate::control::{Change, ChangeError, Changed, Outcome};
use crate::topology::edit::{Applied, Edit, EditError, Op, Reason};
use crate::topology::entity::{Kind, ListQuery};
use http::{Method, StatusCode, header};
use serde_json::{Value, json};

/// Answers a request under `/topology/` or `/audit`, if it is one of
/// these routes.
pub(super) async fn handle(
    admin: &Admin,
    method: &Method,
    path: &[&str],
    query: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    who: &str,
) -> Option<Reply> {
    let reply = match (method, path) {
        (&Method::GET, ["audit"]) => audit(admin, query).await,
        (&Method::POST, ["topology", "batch"]) => batch(admin, body, who).await,
        (&Method::POST, ["epg"]) => epg(admin, body, who).await,
        (_, ["topology", kind, rest @ ..]) => {
            let Some(kind) = Kind::parse(kind) else {
                let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                return Some(error(
                    StatusCode::NOT_FOUND,
                    &format!("no kind of entity {kind:?} ({})", kinds.join(", ")),
                ));
            };
            let key = (!rest.is_empty()).then(|| {
                rest.iter()
                    .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            });
            let if_match = match revision_header(headers) {
                Ok(r) => r,
                Err(m) => return Some(error(StatusCode::BAD_REQUEST, &m)),
            };
            match (method, key) {
                (&Method::GET, None) => list(admin, kind, query),
                (&Method::GET, Some(key)) => get(admin, kind, &key),
                (&Method::POST, None) => {
                    let value = match json_body(body) {
                        Ok(v) => v,
                        Err(m) => return Some(error(StatusCode::BAD_REQUEST, &m)),
                    };
                    let edit = Edit {
                        op: Op::Create,
                        kind,
                        key: None,
                        value: Some(value),
                        if_match: None,
                    };
                    change(admin, vec![edit], who, true).await
                }
                (&Method::PUT | &Method::PATCH, Some(key)) => {
                    let value = match json_body(body) {
                        Ok(v) => v,
                        Err(m) => return Some(error(StatusCode::BAD_REQUEST, &m)),
                    };
                    let op = if method == Method::PUT {
                        Op::Replace
                    } else {
                        Op::Update
                    };
                    let edit = Edit {
                        op,
                        kind,
                        key: Some(key),
                        value: Some(value),
                        if_match,
                    };
                    change(admin, vec![edit], who, false).await
                }
                (&Method::DELETE, Some(key)) => {
                    let edit = Edit {
                        op: Op::Delete,
                        kind,
                        key: Some(key),
                        value: None,
                        if_match,
                    };
                    change(admin, vec![edit], who, false).await
                }
                _ => error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed here: GET or POST a kind, GET, PUT, PATCH or DELETE one entity",
                ),
            }
        }
        _ => return None,
    };
    Some(reply)
}

/// `If-Match: "<revision>"` (an entity's), if given.
fn revision_header(headers: &http::HeaderMap) -> Result<Option<u64>, String> {
    match super::api::if_match(headers) {
        None => Ok(None),
        Some(Ok(r)) if r >= 0 => Ok(Some(r as u64)),
        Some(_) => Err("If-Match must be an entity's revision, e.g. \"42\"".to_string()),
    }
}

fn json_body(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("the body is not a JSON value: {e}"))
}

fn list(admin: &Admin, kind: Kind, query: &str) -> Reply {
    match ListQuery::parse(kind, query) {
        Ok(q) => {
            let page = admin.control.topology.snapshot().list(kind, &q);
            ok(serde_json::to_value(page).expect("a page serialises"))
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

fn get(admin: &Admin, kind: Kind, key: &str) -> Reply {
    match admin.control.topology.snapshot().entity(kind, key) {
        Some(shown) => {
            let mut r =
                ok(json!({"key": shown.key, "revision": shown.revision, "value": shown.value}));
            with_etag(&mut r, shown.revision);
            r
        }
        None => error(
            StatusCode::NOT_FOUND,
            &format!("no {} {key:?}", kind.singular()),
        ),
    }
}

fn with_etag(r: &mut Reply, revision: u64) {
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"{revision}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
}

/// `POST /topology/batch`: `{"changes": [...]}` (or the list itself).
async fn batch(admin: &Admin, body: &[u8], who: &str) -> Reply {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch {
        changes: Vec<Edit>,
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = if first == Some(&b'[') {
        serde_path_to_error::deserialize::<_, Vec<Edit>>(&mut de)
    } else {
        serde_path_to_error::deserialize::<_, Batch>(&mut de).map(|b| b.changes)
    };
    let edits = match parsed {
        Ok(edits) => edits,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("not a batch of changes: at {}: {}", e.path(), e.inner()),
            );
        }
    };
    if edits.is_empty() {
        return error(StatusCode::BAD_REQUEST, "a batch needs at least one change");
    }
    change(admin, edits, who, false).await
}

async fn change(admin: &Admin, edits: Vec<Edit>, who: &str, create: bool) -> Reply {
    let single = edits.len() == 1;
    let result = admin.writer.write(Change::Entities(edits), None, who).await;
    answer(admin, result, single, create, None)
}

/// `POST /epg`: a programme guide, imported one channel at a time (see
/// [`crate::epg`]). The answer says per channel what changed (or why it
/// was refused) and how many changes were made; it does not list them
/// (a guide makes hundreds of thousands), the audit does.
async fn epg(admin: &Admin, body: &[u8], who: &str) -> Reply {
    use crate::epg::ImportError;
    match crate::epg::import(&admin.control, &*admin.writer, body, who).await {
        Ok(done) => {
            let refused = done.refused().len();
            let mut body = json!({
                "epg": done.report,
                "changes": done.changes,
                "batches": done.batches,
            });
            if let Some((version, revision, here)) = done.last {
                body["version"] = json!(version);
                body["revision"] = json!(revision);
                body["applied_here"] = json!(here);
            }
            let status = match done.last {
                None if refused > 0 => StatusCode::CONFLICT,
                Some((_, _, false)) => StatusCode::ACCEPTED,
                _ => StatusCode::OK,
            };
            reply(status, body)
        }
        Err(ImportError::Refused(e)) => super::api::change_error(admin, e),
        Err(e @ ImportError::UnknownChannels(_)) => error(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e @ ImportError::Bad(_)) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

fn answer(
    admin: &Admin,
    result: Result<Changed, ChangeError>,
    single: bool,
    create: bool,
    epg: Option<Value>,
) -> Reply {
    let changed = match result {
        Ok(c) => c,
        Err(e) => return super::api::change_error(admin, e),
    };
    let Outcome::Entities {
        version,
        revision,
        applied,
        served,
        took,
        synced,
    } = &changed.outcome
    else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected outcome");
    };
    let mut body = changed_body(*version, *revision, applied);
    body["applied_here"] = json!(changed.applied_here);
    if let Some(epg) = epg {
        body["epg"] = epg;
    }
    let status = match (changed.applied_here, create) {
        (false, _) => StatusCode::ACCEPTED,
        (true, true) => StatusCode::CREATED,
        (true, false) => StatusCode::OK,
    };
    let mut r = reply(status, body);
    if single {
        with_etag(&mut r, *revision);
    }
    // How long the change took to serve, to answer, and the journal's
    // sync (W3C Server-Timing).
    let ms = |d: &std::time::Duration| d.as_secs_f64() * 1000.0;
    let timing = format!(
        "serve;dur={:.3}, apply;dur={:.3}, journal;dur={:.3}",
        ms(served),
        ms(took),
        ms(synced)
    );
    if let Ok(v) = http::HeaderValue::from_str(&timing) {
        r.headers_mut().insert("server-timing", v);
    }
    r
}

/// The body of an answer to an entity change.
pub(super) fn changed_body(version: u64, revision: u64, applied: &[Applied]) -> Value {
    json!({
        "version": version,
        "revision": revision,
        "changes": applied,
    })
}

/// The answer to a refused entity change.
pub(super) fn refused(e: EditError) -> Reply {
    let status = match e.reason {
        Reason::Invalid => StatusCode::BAD_REQUEST,
        Reason::NotFound => StatusCode::NOT_FOUND,
        Reason::Exists | Reason::Conflict | Reason::InUse => StatusCode::CONFLICT,
    };
    let mut body = json!({ "error": e.message });
    if let Some(current) = e.current {
        body["current_revision"] = json!(current);
    }
    reply(status, body)
}

/// `GET /audit?since=&limit=`: from etcd in a fleet (every node's
/// changes), else from this node's trail.
async fn audit(admin: &Admin, query: &str) -> Reply {
    let mut since =
        crate::time::unix_millis(std::time::SystemTime::now()).saturating_sub(3_600_000);
    let mut limit = 1000usize;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
        match key {
            "since" => match parse_since(&value) {
                Some(ms) => since = ms,
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!(
                            "since: {value:?} is not a time (RFC 3339, e.g. 2026-12-01T10:00:00Z, or Unix milliseconds)"
                        ),
                    );
                }
            },
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=100_000).contains(&n) => limit = n,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("limit: {value:?} is not a number from 1 to 100000"),
                    );
                }
            },
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("unknown parameter {key:?} (since, limit)"),
                );
            }
        }
    }
    let entries = match &admin.cluster {
        Some(cluster) => match cluster.audit_since(since, limit).await {
            Ok(entries) => entries,
            Err(e) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("the audit trail is in etcd, which cannot be read: {e}"),
                );
            }
        },
        None => admin.control.audit.since(since, limit),
    };
    ok(json!({ "entries": entries }))
}

fn parse_since(text: &str) -> Option<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Some(ms);
    }
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}
