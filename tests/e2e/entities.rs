//! The per-entity API: every kind created, changed and deleted through
//! `/topology/{kind}`, and served to players at once; every validation
//! rule and integrity refusal; revisions and `If-Match`; lists; the state
//! directory across a restart; the audit trail.

use crate::harness::{Conn, Engine, TempDir, fixtures};
use serde_json::{Value, json};

/// One admin request: status, JSON body, ETag.
fn call(
    engine: &Engine,
    method: &str,
    path: &str,
    body: Option<Value>,
    if_match: Option<&str>,
) -> (u16, Value, Option<String>) {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(m) = if_match {
        headers.push(("If-Match", m));
    }
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let r = Conn::open(engine.admin.unwrap()).request_with_body(
        method,
        path,
        &headers,
        text.as_bytes(),
    );
    let v = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {r:?}"));
    (r.status, v, r.header("ETag").map(str::to_string))
}

fn routing_engine(extra: &[&str]) -> Engine {
    let topology = fixtures().join("routing.json");
    let mut args = vec![
        "--topology",
        topology.to_str().unwrap(),
        "--random-seed",
        "1",
    ];
    args.extend_from_slice(extra);
    Engine::start(&args)
}

fn location(engine: &Engine, path: &str, ip: &str) -> (u16, String) {
    let r = engine.get(path, &[("X-Real-IP", ip)]);
    (
        r.status,
        r.header("Location").unwrap_or_default().to_string(),
    )
}

fn document_hash(engine: &Engine) -> String {
    let (_, s, _) = call(engine, "GET", "/status", None, None);
    s["topology"]["hash"].as_str().unwrap().to_string()
}

#[test]
fn every_kind_is_created_changed_and_deleted_and_served_at_once() {
    let e = routing_engine(&[]);
    // A new region with a group of a new edge, and a subnet for it.
    for (kind, value) in [
        (
            "servers",
            json!({"id": "e-new", "kind": "edge", "host": "e-new.test", "port": 80}),
        ),
        (
            "server-groups",
            json!({"id": "g-new", "servers": ["e-new"]}),
        ),
        ("regions", json!({"id": "new", "server_groups": ["g-new"]})),
        ("subnets", json!({"cidr": "10.50.0.0/16", "region": "new"})),
    ] {
        let (status, body, etag) =
            call(&e, "POST", &format!("/topology/{kind}"), Some(value), None);
        assert_eq!(status, 201, "{kind}: {body}");
        assert_eq!(etag.unwrap(), format!("\"{}\"", body["revision"]));
    }
    assert_eq!(
        location(&e, "/btv/live/hls/ch1.m3u8", "10.50.1.1"),
        (302, "http://e-new.test/live/ch1/index.m3u8".into())
    );
    // A channel and its stream.
    let (s, b, _) = call(
        &e,
        "POST",
        "/topology/channels",
        Some(json!({"epg_id": "news", "name": "News"})),
        None,
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(location(&e, "/btv/live/hls/news.m3u8", "10.50.1.1").0, 404);
    let (s, b, _) = call(
        &e,
        "POST",
        "/topology/streams",
        Some(
            json!({"channel": "news", "protocol": "hls", "encryption": "none", "path": "live/news/index.m3u8"}),
        ),
        None,
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["changes"][0]["key"], "news/hls/none");
    assert_eq!(
        location(&e, "/btv/live/hls/news.m3u8", "10.50.1.1").1,
        "http://e-new.test/live/news/index.m3u8"
    );
    // A program, and a record that is served once completed.
    let (s, b, _) = call(
        &e,
        "POST",
        "/topology/programs",
        Some(
            json!({"epg_id": "n1", "channel": "news", "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T11:00:00Z"}),
        ),
        None,
    );
    assert_eq!(s, 201, "{b}");
    let (s, b, _) = call(
        &e,
        "POST",
        "/topology/records",
        Some(
            json!({"program": "n1", "server": "dvr-2", "protocol": "hls", "encryption": "none", "path": "news/n1.m3u8", "status": "running"}),
        ),
        None,
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(location(&e, "/btv/catchup/hls/n1.m3u8", "10.50.1.1").0, 404);
    let (s, b, _) = call(
        &e,
        "PATCH",
        "/topology/records/n1/dvr-2/hls/none",
        Some(json!({"status": "completed"})),
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["changes"][0]["before"]["status"], "running");
    assert_eq!(b["changes"][0]["after"]["status"], "completed");
    assert_eq!(
        location(&e, "/btv/catchup/hls/n1.m3u8", "10.50.1.1").1,
        "http://e-new.test/dvr/dvr2/news/n1.m3u8"
    );
    // Move the subnet to another region; replace the edge's host.
    let (s, b, _) = call(
        &e,
        "PUT",
        "/topology/subnets/10.50.0.0/16",
        Some(json!({"region": "city"})),
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        location(&e, "/btv/live/hls/ch1.m3u8", "10.50.1.1").1,
        "http://e-city.test/live/ch1/index.m3u8"
    );
    let (s, b, _) = call(
        &e,
        "PATCH",
        "/topology/servers/e-city",
        Some(json!({"host": "moved.test", "port": 8080})),
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        location(&e, "/btv/live/hls/ch1.m3u8", "10.50.1.1").1,
        "http://moved.test:8080/live/ch1/index.m3u8"
    );
    // Delete everything created, in one batch, in an order that works.
    let (s, b, _) = call(
        &e,
        "POST",
        "/topology/batch",
        Some(json!({"changes": [
            {"op": "delete", "kind": "records", "key": "n1/dvr-2/hls/none"},
            {"op": "delete", "kind": "programs", "key": "n1"},
            {"op": "delete", "kind": "streams", "key": "news/hls/none"},
            {"op": "delete", "kind": "channels", "key": "news"},
            {"op": "delete", "kind": "subnets", "key": "10.50.0.0/16"},
            {"op": "delete", "kind": "regions", "key": "new"},
            {"op": "delete", "kind": "server-groups", "key": "g-new"},
            {"op": "delete", "kind": "servers", "key": "e-new"}
        ]})),
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["changes"].as_array().unwrap().len(), 8);
    assert_eq!(location(&e, "/btv/live/hls/news.m3u8", "10.50.1.1").0, 404);
    assert_eq!(
        location(&e, "/btv/live/hls/ch1.m3u8", "10.50.1.1").1,
        "http://e-wide.test/live/ch1/index.m3u8"
    );
    // GET /topology is the same document a whole load would give: loading
    // it back is accepted and changes nothing a player sees.
    let doc = e
        .admin("GET", "/topology", b"", "application/json", None)
        .body;
    let (s, b, _) = call(
        &e,
        "PUT",
        "/topology",
        Some(serde_json::from_str(&doc).unwrap()),
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        location(&e, "/btv/live/hls/ch1.m3u8", "10.1.9.9").1,
        "http://moved.test:8080/live/ch1/index.m3u8"
    );
}

#[test]
fn each_validation_rule_is_refused_naming_object_field_and_value_and_changes_nothing() {
    let e = routing_engine(&[]);
    let before = document_hash(&e);
    let cases: Vec<(&str, &str, Value, u16, &[&str])> = vec![
        (
            "POST",
            "/topology/servers",
            json!({"id": "x", "kind": "edge", "host": "x.test", "port": 0}),
            400,
            &["field `port`", "0", "out of range"],
        ),
        (
            "POST",
            "/topology/servers",
            json!({"id": "x", "kind": "edge", "host": "x.test", "port": 80, "tls_port": 70000}),
            400,
            &["field `tls_port`", "70000"],
        ),
        (
            "POST",
            "/topology/servers",
            json!({"id": "x", "kind": "edge", "host": "bad host/", "port": 80}),
            400,
            &["field `host`", "bad host/"],
        ),
        (
            "POST",
            "/topology/servers",
            json!({"id": "x", "kind": "dvr", "host": "x.test", "port": 80}),
            400,
            &["field `prefix` is required"],
        ),
        (
            "POST",
            "/topology/servers",
            json!({"id": "x", "kind": "dvr", "host": "x.test", "port": 80, "prefix": "a/b"}),
            400,
            &["field `prefix`", "a/b"],
        ),
        (
            "POST",
            "/topology/servers",
            json!({"id": "x", "kind": "cache", "host": "x.test", "port": 80}),
            400,
            &["field `kind`", "cache"],
        ),
        (
            "POST",
            "/topology/servers",
            json!({"id": "x", "kind": "edge", "host": "x.test", "port": 80, "weight": -1}),
            400,
            &["field `weight`", "-1"],
        ),
        (
            "POST",
            "/topology/servers",
            json!({"id": "e-wide", "kind": "edge", "host": "x.test", "port": 80}),
            409,
            &["server \"e-wide\" exists already"],
        ),
        (
            "POST",
            "/topology/servers",
            json!({"id": "x", "kind": "edge", "host": "x.test", "port": 80, "colour": "red"}),
            400,
            &["unknown field `colour`"],
        ),
        (
            "POST",
            "/topology/subnets",
            json!({"cidr": "10.300.0.0/16", "region": "wide"}),
            400,
            &["field `cidr`", "10.300.0.0/16"],
        ),
        (
            "POST",
            "/topology/subnets",
            json!({"cidr": "10.60.0.0/33", "region": "wide"}),
            400,
            &["field `cidr`", "10.60.0.0/33"],
        ),
        (
            "POST",
            "/topology/subnets",
            json!({"cidr": "10.1.7.7/16", "region": "wide"}),
            409,
            &["subnet \"10.1.0.0/16\" exists already"],
        ),
        (
            "POST",
            "/topology/subnets",
            json!({"cidr": "10.60.0.0/16", "region": "atlantis"}),
            400,
            &["field `region`", "atlantis", "not the id of any region"],
        ),
        (
            "POST",
            "/topology/regions",
            json!({"id": "r", "server_groups": ["g-none"]}),
            400,
            &["field `server_groups[0]`", "g-none"],
        ),
        (
            "POST",
            "/topology/server-groups",
            json!({"id": "g", "servers": ["nobody"]}),
            400,
            &["field `servers[0]`", "nobody"],
        ),
        (
            "POST",
            "/topology/server-groups",
            json!({"id": "g", "servers": [], "channels": ["radio"]}),
            400,
            &["field `channels[0]`", "radio"],
        ),
        (
            "POST",
            "/topology/channels",
            json!({"epg_id": "two words"}),
            400,
            &["field `epg_id`", "two words", "URL path segment"],
        ),
        (
            "POST",
            "/topology/streams",
            json!({"channel": "ch1", "protocol": "rtmp", "encryption": "none", "path": "x"}),
            400,
            &["field `protocol`", "rtmp"],
        ),
        (
            "POST",
            "/topology/streams",
            json!({"channel": "ch1", "protocol": "hls", "encryption": "none", "path": "a path"}),
            409,
            &["stream \"ch1/hls/none\" exists already"],
        ),
        (
            "POST",
            "/topology/streams",
            json!({"channel": "sports", "protocol": "mpd", "encryption": "none", "path": "a path"}),
            400,
            &["field `path`", "a path"],
        ),
        (
            "POST",
            "/topology/streams",
            json!({"channel": "radio", "protocol": "hls", "encryption": "none", "path": "x"}),
            400,
            &["field `channel`", "radio"],
        ),
        (
            "POST",
            "/topology/programs",
            json!({"epg_id": "q", "channel": "radio"}),
            400,
            &["field `channel`", "radio"],
        ),
        (
            "POST",
            "/topology/programs",
            json!({"epg_id": "q", "channel": "ch1", "start": "yesterday"}),
            400,
            &["field `start`"],
        ),
        (
            "POST",
            "/topology/programs",
            json!({"epg_id": "q", "channel": "ch1", "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T09:00:00Z"}),
            400,
            &["field `end`", "before `start`"],
        ),
        (
            "POST",
            "/topology/records",
            json!({"program": "p1", "server": "e-wide", "protocol": "hls", "encryption": "playready", "path": "x", "status": "completed"}),
            400,
            &["field `server`", "e-wide", "not a dvr server"],
        ),
        (
            "POST",
            "/topology/records",
            json!({"program": "p1", "server": "dvr-1", "protocol": "hls", "encryption": "playready", "path": "x", "status": "done"}),
            400,
            &["field `status`", "done"],
        ),
        (
            "POST",
            "/topology/records",
            json!({"program": "nope", "server": "dvr-1", "protocol": "hls", "encryption": "playready", "path": "x", "status": "completed"}),
            400,
            &["field `program`", "nope"],
        ),
        (
            "PATCH",
            "/topology/servers/e-wide",
            json!({"id": "e-other"}),
            400,
            &["the id cannot change"],
        ),
        (
            "PATCH",
            "/topology/subnets/10.1.0.0/16",
            json!({"cidr": "10.2.0.0/16"}),
            400,
            &["the cidr cannot change"],
        ),
        (
            "PATCH",
            "/topology/servers/e-wide",
            json!("port 81"),
            400,
            &["must be an object"],
        ),
        (
            "PATCH",
            "/topology/servers/nobody",
            json!({"port": 81}),
            404,
            &["no server \"nobody\""],
        ),
        (
            "PUT",
            "/topology/channels/radio",
            json!({"name": "Radio"}),
            404,
            &["no channel \"radio\""],
        ),
        (
            "GET",
            "/topology/servers?order_by=colour",
            json!(null),
            400,
            &["order_by", "colour"],
        ),
        (
            "GET",
            "/topology/servers?per_page=0",
            json!(null),
            400,
            &["per_page", "0"],
        ),
        (
            "GET",
            "/topology/satellites",
            json!(null),
            404,
            &["no kind of entity \"satellites\""],
        ),
    ];
    for (method, path, body, status, words) in cases {
        let body = (!body.is_null()).then_some(body);
        let (s, b, _) = call(&e, method, path, body.clone(), None);
        let message = b["error"].as_str().unwrap_or_default();
        assert_eq!(s, status, "{method} {path} {body:?}: {b}");
        for w in words {
            assert!(
                message.contains(w),
                "{method} {path}: {message:?} lacks {w:?}"
            );
        }
    }
    // A body that is not JSON, a batch that is not one.
    let r = e.admin(
        "POST",
        "/topology/servers",
        b"{not json",
        "application/json",
        None,
    );
    assert_eq!(r.status, 400, "{r:?}");
    let (s, b, _) = call(
        &e,
        "POST",
        "/topology/batch",
        Some(json!({"changes": [{"op": "explode", "kind": "servers"}]})),
        None,
    );
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"].as_str().unwrap().contains("changes[0].op"),
        "{b}"
    );
    assert_eq!(document_hash(&e), before, "nothing changed");
    assert!(e.get("/btv/live/hls/ch1.m3u8", &[]).status < 500);
}

#[test]
fn deleting_what_is_still_referred_to_is_refused_naming_it() {
    let e = routing_engine(&[]);
    let before = document_hash(&e);
    let cases: [(&str, &[&str]); 7] = [
        ("regions/city", &["region \"city\" still has 1 subnet"]),
        ("regions/fallback", &["is the default region"]),
        (
            "server-groups/g-wide",
            &["still a group of region \"wide\""],
        ),
        (
            "servers/e-wide",
            &["still a member of server group \"g-wide\""],
        ),
        ("servers/dvr-2", &["server \"dvr-2\" still holds", "record"]),
        (
            "channels/ch1",
            &["channel \"ch1\" still has 6 streams and", "program"],
        ),
        ("programs/p1", &["program \"p1\" still has 4 records"]),
    ];
    for (path, words) in cases {
        let (s, b, _) = call(&e, "DELETE", &format!("/topology/{path}"), None, None);
        assert_eq!(s, 409, "{path}: {b}");
        let message = b["error"].as_str().unwrap();
        for w in words {
            assert!(message.contains(w), "{path}: {message:?} lacks {w:?}");
        }
    }
    // Changing a DVR that holds records into an edge is refused too.
    let (s, b, _) = call(
        &e,
        "PATCH",
        "/topology/servers/dvr-1",
        Some(json!({"kind": "edge"})),
        None,
    );
    assert_eq!(s, 409, "{b}");
    assert!(
        b["error"].as_str().unwrap().contains("stays a dvr server"),
        "{b}"
    );
    // A batch whose last change fails changes nothing.
    let (s, b, _) = call(
        &e,
        "POST",
        "/topology/batch",
        Some(json!([
            {"op": "update", "kind": "servers", "key": "e-wide", "value": {"weight": 9}},
            {"op": "delete", "kind": "regions", "key": "wide"}
        ])),
        None,
    );
    assert_eq!(s, 409, "{b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .starts_with("change 2 of 2 (delete region \"wide\")"),
        "{b}"
    );
    assert_eq!(document_hash(&e), before);
    let (_, server, _) = call(&e, "GET", "/topology/servers/e-wide", None, None);
    assert_eq!(server["value"]["weight"], 1, "{server}");
}

#[test]
fn a_concurrent_edit_is_a_conflict_with_the_current_revision() {
    let e = routing_engine(&[]);
    let (s, got, etag) = call(&e, "GET", "/topology/servers/e-w1", None, None);
    assert_eq!(s, 200);
    let etag = etag.unwrap();
    assert_eq!(etag, format!("\"{}\"", got["revision"]));
    // Two operators read the same revision; the first write wins.
    let (s, first, new_etag) = call(
        &e,
        "PATCH",
        "/topology/servers/e-w1",
        Some(json!({"weight": 4})),
        Some(&etag),
    );
    assert_eq!(s, 200, "{first}");
    let (s, second, _) = call(
        &e,
        "PATCH",
        "/topology/servers/e-w1",
        Some(json!({"weight": 7})),
        Some(&etag),
    );
    assert_eq!(s, 409, "{second}");
    assert_eq!(second["current_revision"], first["revision"]);
    assert!(
        second["error"]
            .as_str()
            .unwrap()
            .contains("read it again and retry")
    );
    let (_, now, _) = call(&e, "GET", "/topology/servers/e-w1", None, None);
    assert_eq!(now["value"]["weight"], 4, "not overwritten");
    // Others are untouched: their revision is still the document's.
    let (_, other, _) = call(&e, "GET", "/topology/servers/e-w3", None, None);
    assert_eq!(other["revision"], got["revision"]);
    // With the new revision the write goes through.
    let (s, _, _) = call(
        &e,
        "PATCH",
        "/topology/servers/e-w1",
        Some(json!({"weight": 7})),
        new_etag.as_deref(),
    );
    assert_eq!(s, 200);
    let (s, b, _) = call(
        &e,
        "DELETE",
        "/topology/servers/e-w0",
        None,
        Some("\"not a number\""),
    );
    assert_eq!(s, 400, "{b}");
}

#[test]
fn lists_are_paged_sorted_filtered_and_counted() {
    let e = routing_engine(&[]);
    let (s, page, _) = call(&e, "GET", "/topology/servers?per_page=5&page=2", None, None);
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["total"], 14);
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e-w0", "e-inactive", "e-off", "e-sports", "e-loop"]);
    let (_, page, _) = call(
        &e,
        "GET",
        "/topology/servers?kind=dvr&order_by=-id",
        None,
        None,
    );
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["dvr-2", "dvr-1"]);
    let (_, page, _) = call(
        &e,
        "GET",
        "/topology/servers?order_by=-weight,id&per_page=3",
        None,
        None,
    );
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e-inactive", "e-w3", "dvr-1"]);
    let (_, page, _) = call(&e, "GET", "/topology/subnets?region=off", None, None);
    assert_eq!(page["total"], 3);
    let (_, page, _) = call(
        &e,
        "GET",
        "/topology/records?status=completed&program=p1",
        None,
        None,
    );
    assert_eq!(page["total"], 2);
    let (_, page, _) = call(
        &e,
        "GET",
        "/topology/streams?channel=ch1&active=false",
        None,
        None,
    );
    assert_eq!(page["items"][0]["key"], "ch1/hls/playready");
    let (_, page, _) = call(&e, "GET", "/topology/regions?q=10%2F8", None, None);
    assert_eq!(page["items"][0]["key"], "wide");
    let (_, page, _) = call(&e, "GET", "/topology/subnets?q=host+bits", None, None);
    assert_eq!(page["items"][0]["key"], "10.1.2.0/24");
    assert_eq!(
        page["items"][0]["value"]["cidr"], "10.1.2.77/24",
        "as written"
    );
}

#[test]
fn changes_outlive_a_restart_in_the_state_directory_and_the_file_only_seeds() {
    let dir = TempDir::new("entity-state");
    let state = dir.path("state");
    let args = ["--state-dir", state.to_str().unwrap()];
    let mut e = routing_engine(&args);
    let r = Conn::open(e.admin.unwrap()).request_with_body(
        "PATCH",
        "/topology/servers/e-wide",
        &[("Content-Type", "application/json")],
        json!({"host": "kept.test"}).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // The answer says how long the change took to serve, to answer, and
    // the journal's sync.
    let timing = r.header("Server-Timing").unwrap_or_default().to_string();
    let figure = |name: &str| -> f64 {
        let at = timing
            .find(&format!("{name};dur="))
            .unwrap_or_else(|| panic!("{timing}"));
        let rest = &timing[at + name.len() + 5..];
        rest.split(',').next().unwrap().trim().parse().unwrap()
    };
    assert!(
        figure("journal") > 0.0 && figure("journal") <= figure("apply"),
        "{timing}"
    );
    // It served before the journal's sync, which the answer waited for.
    assert!(
        figure("serve") + figure("journal") <= figure("apply") + 0.01,
        "{timing}"
    );
    let b: Value = serde_json::from_str(&r.body).unwrap();
    let revision = b["revision"].clone();
    let (s, b, _) = call(&e, "DELETE", "/topology/subnets/10.9.0.0/16", None, None);
    assert_eq!(s, 200, "{b}");
    let hash = document_hash(&e);
    e.signal("-TERM");
    e.wait_exit();

    // The same file is given again: the state directory wins.
    let e = routing_engine(&args);
    assert_eq!(
        location(&e, "/btv/live/hls/ch1.m3u8", "10.9.1.1").1,
        "http://kept.test/live/ch1/index.m3u8"
    );
    assert_eq!(document_hash(&e), hash, "the same snapshot");
    let (_, server, _) = call(&e, "GET", "/topology/servers/e-wide", None, None);
    assert_eq!(server["revision"], revision, "revisions survive too");
    // The audit trail survives as well, naming who.
    let (s, audit, _) = call(&e, "GET", "/audit?since=0", None, None);
    assert_eq!(s, 200);
    let entries = audit["entries"].as_array().unwrap();
    let update = entries
        .iter()
        .find(|x| x["action"] == "update")
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(update["kind"], "servers");
    assert_eq!(update["key"], "e-wide");
    assert!(
        update["who"].as_str().unwrap().starts_with("loopback"),
        "{update}"
    );
    assert_eq!(
        update["changed"]["host"],
        json!(["e-wide.test", "kept.test"])
    );
    assert!(
        entries
            .iter()
            .any(|x| x["action"] == "delete" && x["key"] == "10.9.0.0/16")
    );
    let (s, b, _) = call(&e, "GET", "/audit?since=yesterday", None, None);
    assert_eq!(s, 400, "{b}");
}

#[test]
fn pathways_and_region_locations_are_entities_and_bring_schema_2() {
    // The routing fixture is a schema 1 document.
    let e = routing_engine(&[]);
    let (_, doc) = e.admin_json("GET", "/topology", json!(null));
    assert!(doc.get("schema").is_none(), "{}", doc["schema"]);

    // A pathway of a group, and a clone of it: the document becomes
    // schema 2, and steering polls offer them at once.
    let (status, body, _) = call(
        &e,
        "POST",
        "/topology/pathways",
        Some(json!({"id": "wide", "group": "g-wide", "host": "wide.cdn.test"})),
        None,
    );
    assert_eq!(status, 201, "{body}");
    let (status, body, _) = call(
        &e,
        "POST",
        "/topology/pathways",
        Some(json!({"id": "wide-b", "base": "wide", "host": "b.cdn.test", "params": {"via": "b"}})),
        None,
    );
    assert_eq!(status, 201, "{body}");
    let (_, doc) = e.admin_json("GET", "/topology", json!(null));
    assert_eq!(doc["schema"], 2);
    let poll = e.get("/steer/hls/ch1", &[("X-Real-IP", "10.2.0.1")]);
    assert_eq!(poll.status, 200, "{poll:?}");
    let m: Value = serde_json::from_str(&poll.body).unwrap();
    assert_eq!(m["PATHWAY-PRIORITY"], json!(["wide", "wide-b"]));
    assert_eq!(
        m["PATHWAY-CLONES"][0]["URI-REPLACEMENT"]["PARAMS"],
        json!({"via": "b"})
    );

    // Listed, filtered, got, patched.
    let (status, list, _) = call(&e, "GET", "/topology/pathways?group=g-wide", None, None);
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 1, "{list}");
    let (status, body, _) = call(
        &e,
        "PATCH",
        "/topology/pathways/wide",
        Some(json!({"active": false})),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (_, got, _) = call(&e, "GET", "/topology/pathways/wide", None, None);
    assert_eq!(got["value"]["active"], false, "{got}");

    // A group no region uses, behind a pathway.
    for (kind, value) in [
        (
            "server-groups",
            json!({"id": "g-free", "servers": ["e-city"]}),
        ),
        ("pathways", json!({"id": "free", "group": "g-free"})),
    ] {
        let (status, body, _) = call(&e, "POST", &format!("/topology/{kind}"), Some(value), None);
        assert_eq!(status, 201, "{kind}: {body}");
    }
    // Refusals name what still refers to it, or the field and value.
    for (method, path, value, status, want) in [
        (
            "DELETE",
            "/topology/pathways/wide",
            None,
            409,
            "still the base of clone \"wide-b\"",
        ),
        (
            "DELETE",
            "/topology/server-groups/g-free",
            None,
            409,
            "still the group of pathway \"free\"",
        ),
        (
            "POST",
            "/topology/pathways",
            Some(json!({"id": "bad id", "host": "x.test"})),
            400,
            "field `id`: \"bad id\"",
        ),
        (
            "POST",
            "/topology/pathways",
            Some(json!({"id": "x", "group": "g-nope"})),
            400,
            "field `group`: \"g-nope\"",
        ),
        (
            "PATCH",
            "/topology/regions/city",
            Some(json!({"location": {"latitude": 95.0, "longitude": 0.0}})),
            400,
            "field `location`: (95, 0)",
        ),
    ] {
        let (got, body, _) = call(&e, method, path, value, None);
        assert_eq!(got, status, "{method} {path}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(want), "{method} {path}: {body}");
    }
    // A region's place.
    let (status, body, _) = call(
        &e,
        "PATCH",
        "/topology/regions/city",
        Some(json!({"location": {"latitude": 55.75, "longitude": 37.62}})),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (_, got, _) = call(&e, "GET", "/topology/regions/city", None, None);
    assert_eq!(got["value"]["location"]["latitude"], 55.75);
    // Clone, then base, deleted in order.
    for path in [
        "/topology/pathways/wide-b",
        "/topology/pathways/wide",
        "/topology/pathways/free",
    ] {
        let (status, body, _) = call(&e, "DELETE", path, None, None);
        assert_eq!(status, 200, "{path}: {body}");
    }
    let poll = e.get("/steer/hls/ch1", &[("X-Real-IP", "10.2.0.1")]);
    assert_eq!(poll.status, 503, "no pathway left: {poll:?}");
}
