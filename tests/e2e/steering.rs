//! Content steering (`GET /steer/{hls|dash}/...`) on a real engine: both
//! manifest formats with their fields, clones, what the player reports
//! (`_HLS_pathway`, `_DASH_pathway`, throughputs) reaching the policy, the
//! signed session token, a pathway whose edges go down moving last on the
//! next poll (health checks against real loopback edges), the example
//! policy's hysteresis, `410`, `429`, shed polls and the metrics.

use crate::admin::upload;
use crate::harness::{Engine, TempDir, wait_until};
use crate::health::{Answer, Edge};
use base64::Engine as _;
use serde_json::{Value, json};
use std::time::Duration;

/// Two regions with a group each (their edges health-checked against
/// `msk` and `spb`), and five pathways: one per group, a CDN for every
/// region, a clone of `msk`, and one only `spb`'s clients may use.
fn topology(msk: &Edge, spb: &Edge, ttl: &str) -> Value {
    let check =
        json!({"path": "/health", "interval": "100ms", "timeout": "80ms", "rise": 1, "fall": 1});
    json!({
        "schema": 2,
        "default_region": "spb",
        "regions": [
            {"id": "msk", "server_groups": ["g-msk"], "location": {"latitude": 55.75, "longitude": 37.62}},
            {"id": "spb", "server_groups": ["g-spb"]}
        ],
        "subnets": [
            {"cidr": "10.1.0.0/16", "region": "msk"},
            {"cidr": "10.2.0.0/16", "region": "spb"}
        ],
        "server_groups": [
            {"id": "g-msk", "servers": ["e-msk"]},
            {"id": "g-spb", "servers": ["e-spb"]}
        ],
        "servers": [
            {"id": "e-msk", "kind": "edge", "host": "127.0.0.1", "port": msk.port, "healthcheck": check},
            {"id": "e-spb", "kind": "edge", "host": "127.0.0.1", "port": spb.port, "healthcheck": check}
        ],
        "channels": [{"epg_id": "ch1", "streams": [
            {"protocol": "hls", "encryption": "none", "path": "live/ch1/index.m3u8"},
            {"protocol": "mpd", "encryption": "none", "path": "live/ch1/manifest.mpd"}
        ]}],
        "pathways": [
            {"id": "msk", "group": "g-msk", "host": "msk.cdn.test"},
            {"id": "spb", "group": "g-spb", "host": "spb.cdn.test"},
            {"id": "cdn-x", "host": "cdn-x.test"},
            {"id": "msk-b", "base": "msk", "host": "msk-b.cdn.test", "params": {"via": "b"}},
            {"id": "north", "host": "north.test", "regions": ["spb"]}
        ],
        "steering": {"ttl": ttl}
    })
}

struct Setup {
    engine: Engine,
    msk: Edge,
    spb: Edge,
    dir: TempDir,
}

fn start(ttl: &str, extra: &[&str]) -> Setup {
    let dir = TempDir::new("steering");
    let msk = Edge::start(Answer::Ok("OK"));
    let spb = Edge::start(Answer::Ok("OK"));
    let path = dir.path("topology.json");
    std::fs::write(&path, topology(&msk, &spb, ttl).to_string()).unwrap();
    let mut args = vec!["--topology", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let engine = Engine::start(&args);
    Setup {
        engine,
        msk,
        spb,
        dir,
    }
}

/// A poll from a client at `ip`: its status, headers and JSON body.
fn poll(engine: &Engine, ip: &str, uri: &str) -> (crate::harness::Response, Value) {
    let resp = engine.get(uri, &[("X-Real-IP", ip)]);
    let json = if resp.status == 200 {
        serde_json::from_str(&resp.body).unwrap_or_else(|e| panic!("{uri}: {e}: {resp:?}"))
    } else {
        Value::Null
    };
    (resp, json)
}

fn manifest(engine: &Engine, ip: &str, uri: &str) -> Value {
    let (resp, json) = poll(engine, ip, uri);
    assert_eq!(resp.status, 200, "{uri}: {resp:?}");
    json
}

fn priority(m: &Value) -> Vec<String> {
    m["PATHWAY-PRIORITY"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The next poll's URI, as a player builds it: the `RELOAD-URI` with its
/// own parameters added.
fn next(m: &Value, add: &str) -> String {
    let reload = m["RELOAD-URI"].as_str().unwrap();
    if add.is_empty() {
        reload.to_string()
    } else {
        format!("{reload}&{add}")
    }
}

/// The policy state inside a `RELOAD-URI`'s session token (its layout is
/// `routing::steer::token`'s).
fn token_state(m: &Value) -> Vec<u8> {
    let reload = m["RELOAD-URI"].as_str().unwrap();
    let token = reload.split("session=").nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .unwrap();
    let mut at = 1 + 8 + 8 + 2 + 4;
    let count = bytes[at] as usize;
    at += 1;
    for _ in 0..count {
        at += 1 + bytes[at] as usize;
    }
    let len = bytes[at] as usize;
    bytes[at + 1..at + 1 + len].to_vec()
}

/// A counter's value summed over its series that carry `labels`.
fn counter(engine: &Engine, name: &str, labels: &[&str]) -> u64 {
    let text = engine
        .admin("GET", "/metrics", b"", "text/plain", None)
        .body;
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

fn server_state(engine: &Engine, id: &str) -> String {
    crate::health::state(engine, id)["state"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

#[test]
fn hls_and_dash_manifests_carry_what_the_specifications_ask() {
    let s = start("60s", &[]);
    let e = &s.engine;
    // HLS, from a client of `msk`: the pathways of its tiers (its own
    // region's, then the default region's), the clone declared.
    let (resp, m) = poll(e, "10.1.0.5", "/steer/hls/ch1?token=abc");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Content-Type"), Some("application/json"));
    assert_eq!(resp.header("Cache-Control"), Some("private, max-age=60"));
    // A web player fetches it from script, from a page of another origin.
    assert_eq!(resp.header("Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(m["VERSION"], 1);
    assert_eq!(m["TTL"], 60);
    assert_eq!(priority(&m), ["msk", "cdn-x", "msk-b", "spb", "north"]);
    assert!(m.get("SERVICE-LOCATION-PRIORITY").is_none(), "{m}");
    assert_eq!(
        m["PATHWAY-CLONES"],
        json!([{"BASE-ID": "msk", "ID": "msk-b",
                "URI-REPLACEMENT": {"HOST": "msk-b.cdn.test", "PARAMS": {"via": "b"}}}])
    );
    let reload = m["RELOAD-URI"].as_str().unwrap();
    assert!(
        reload.starts_with("/steer/hls/ch1?token=abc&session="),
        "the origin's parameter kept, the session added: {reload}"
    );
    let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
    assert_eq!(
        keys.len(),
        5,
        "VERSION, TTL, RELOAD-URI, PATHWAY-PRIORITY, PATHWAY-CLONES: {keys:?}"
    );

    // DASH: both priority keys, alike. A client of `spb` only: `msk`'s
    // pathways are not for it.
    let m = manifest(e, "10.2.0.5", "/steer/dash/ch1");
    assert_eq!(priority(&m), ["spb", "cdn-x", "north"]);
    assert_eq!(m["SERVICE-LOCATION-PRIORITY"], m["PATHWAY-PRIORITY"]);
    assert!(
        m.get("PATHWAY-CLONES").is_none(),
        "no clone in the order: {m}"
    );
    assert!(
        m["RELOAD-URI"]
            .as_str()
            .unwrap()
            .starts_with("/steer/dash/ch1?session=")
    );
    // VOD and catch-up paths, and HEAD.
    assert_eq!(
        poll(e, "10.1.0.5", "/steer/hls/vod/films/a.m3u8").0.status,
        200
    );
    let head = e.connect().request("HEAD", "/steer/hls/ch1", &[]);
    assert_eq!((head.status, head.body.as_str()), (200, ""));

    // Mistakes: a status and a reason that names the parameter and value.
    for (uri, status, want) in [
        ("/steer/hls/nope", 404, "unknown channel"),
        ("/steer/rtmp/ch1", 400, "\"rtmp\" must be hls or dash"),
        (
            "/steer/hls/ch1?_HLS_pathway=msk&_HLS_throughput=fast",
            400,
            "query `_HLS_throughput`: \"fast\"",
        ),
        (
            "/steer/hls/ch1?_HLS_pathway=%3Cscript%3E",
            400,
            "\"<script>\" is not a pathway id",
        ),
        (
            "/steer/dash/ch1?_DASH_pathway=%22a,b%22&_DASH_throughput=5",
            400,
            "1 values for 2 pathways",
        ),
    ] {
        let (resp, _) = poll(e, "10.1.0.5", uri);
        assert_eq!(resp.status, status, "{uri}: {resp:?}");
        assert!(resp.body.contains(want), "{uri}: {}", resp.body);
    }
    assert!(counter(e, "edgeward_steering_polls_total", &["answer=\"refused\""]) >= 5);
    assert!(e.requests_total("steer", 200) >= 4);
    assert!(counter(e, "edgeward_steering_first_total", &["pathway=\"msk\""]) >= 1);
}

#[test]
fn a_session_polling_too_soon_gets_429_and_a_forged_token_starts_afresh() {
    let s = start("60s", &[]);
    let e = &s.engine;
    let m = manifest(e, "10.1.0.5", "/steer/hls/ch1");
    // Polled again at once, far sooner than its 60 s: 429 with the wait.
    let (resp, _) = poll(e, "10.1.0.5", &next(&m, "_HLS_pathway=msk"));
    assert_eq!(resp.status, 429, "{resp:?}");
    let wait: u64 = resp.header("Retry-After").unwrap().parse().unwrap();
    assert_eq!(resp.header("Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(
        resp.header("Access-Control-Expose-Headers"),
        Some("Retry-After"),
        "a script may read the wait"
    );
    assert!((45..=60).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        counter(
            e,
            "edgeward_steering_polls_total",
            &["answer=\"throttled\""]
        ),
        1
    );

    // An altered token, one for another stream, or junk: not believed, so
    // a new session (a 200, never a 429 or an error for the player).
    let reload = m["RELOAD-URI"].as_str().unwrap();
    let token = reload.split("session=").nth(1).unwrap();
    let mut altered = token.to_string();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    for uri in [
        format!("/steer/hls/ch1?session={altered}"),
        format!("/steer/dash/ch1?session={token}"),
        "/steer/hls/ch1?session=%00%FF".to_string(),
    ] {
        let (resp, m2) = poll(e, "10.1.0.5", &uri);
        assert_eq!(resp.status, 200, "{uri}: {resp:?}");
        assert_ne!(m2["RELOAD-URI"], m["RELOAD-URI"]);
    }
}

#[test]
fn a_pathway_whose_edges_go_down_moves_last_and_the_example_policy_holds_it_there() {
    // A TTL of 2 s: a session may poll again after half a second.
    let s = start("2s", &[]);
    let e = &s.engine;
    let msk_client = "10.1.0.5";
    let m = manifest(e, msk_client, "/steer/hls/ch1");
    assert_eq!(priority(&m)[0], "msk");

    // Its only edge fails its health checks: the default order puts the
    // pathway (and its clone) last on the next poll.
    s.msk.set(Answer::Status(500));
    wait_until("e-msk is down", || server_state(e, "e-msk") == "down");
    std::thread::sleep(Duration::from_millis(600));
    let m = manifest(e, msk_client, &next(&m, "_HLS_pathway=msk"));
    assert_eq!(priority(&m), ["cdn-x", "spb", "north", "msk", "msk-b"]);
    assert!(counter(e, "edgeward_steering_switches_total", &[]) >= 1);

    // Back up: first again at once with the default order.
    s.msk.set(Answer::Ok("OK"));
    wait_until("e-msk is up", || server_state(e, "e-msk") == "up");
    std::thread::sleep(Duration::from_millis(600));
    let m = manifest(e, msk_client, &next(&m, "_HLS_pathway=cdn-x"));
    assert_eq!(priority(&m)[0], "msk");

    // The example policy: away from a pathway whose edges are down or
    // whose throughput fell below the floor, and held away one more poll.
    let (code, v) = upload(
        e,
        "steer-region",
        "steer-region",
        json!({"throughput_floor_kbps": 2000, "hold_polls": 1, "ttl_s": 2}),
        true,
    );
    assert_eq!(code, 201, "{v}");
    let mut m = manifest(e, msk_client, "/steer/hls/ch1");
    assert_eq!(
        priority(&m),
        ["msk", "cdn-x", "msk-b", "spb", "north"],
        "the client's region's pathway first"
    );
    let mut poll_with = |add: &str| {
        std::thread::sleep(Duration::from_millis(600));
        m = manifest(e, msk_client, &next(&m, add));
        priority(&m)
    };
    // The player reports 1.2 Mbit/s on `msk`: below the floor.
    let order = poll_with("_HLS_pathway=msk&_HLS_throughput=1200000");
    assert_eq!(order, ["cdn-x", "msk-b", "spb", "north", "msk"]);
    // Fast again, but held one poll.
    let order = poll_with("_HLS_pathway=cdn-x&_HLS_throughput=9000000");
    assert_eq!(order[0], "cdn-x");
    let order = poll_with("_HLS_pathway=cdn-x&_HLS_throughput=9000000");
    assert_eq!(order[0], "msk", "the hold is over");
    // Its edge goes down: last (with its clone: the same edges).
    s.msk.set(Answer::Status(500));
    wait_until("e-msk is down", || server_state(e, "e-msk") == "down");
    let order = poll_with("_HLS_pathway=msk");
    assert_eq!(&order[order.len() - 2..], ["msk", "msk-b"]);
    assert!(counter(e, "edgeward_steering_polls_total", &["answer=\"policy\""]) >= 5);
    drop(s.spb);
}

#[test]
fn the_policy_sees_what_the_player_reports_keeps_state_and_can_stop_steering() {
    let s = start("60s", &[]);
    let e = &s.engine;
    let (code, v) = upload(e, "echo", "echo", json!({"steer": "reverse"}), true);
    assert_eq!(code, 201, "{v}");
    let m = manifest(
        e,
        "10.1.0.5",
        "/steer/dash/ch1?_DASH_pathway=%22spb,cdn-x%22&_DASH_throughput=%224000000,12000000%22",
    );
    assert_eq!(priority(&m), ["north", "msk-b", "cdn-x", "spb", "msk"]);
    assert_eq!(m["TTL"], 17);
    assert_eq!(m["SERVICE-LOCATION-PRIORITY"], m["PATHWAY-PRIORITY"]);
    // What it was offered, per pathway: index, flags, tier, edges up and
    // total, Mbit/s.
    let state = token_state(&m);
    assert_eq!(state[0], 1, "its first poll");
    let offered: Vec<&[u8]> = state[1..].chunks(6).collect();
    assert_eq!(
        offered,
        [
            &[0, 0, 0, 1, 1, 0][..],
            &[1, 1 | 2, 1, 1, 1, 4],
            &[2, 2, 0, 0, 0, 12],
            &[3, 4, 0, 1, 1, 0],
            &[4, 0, 1, 0, 0, 0],
        ]
    );
    // Its state comes back on the next poll (signed: the count goes on).
    // The engine's own TTL for the 429 window is the policy's 17 s.
    let (resp, _) = poll(e, "10.1.0.5", &next(&m, ""));
    assert_eq!(resp.status, 429);

    // A policy whose answer is wrong, or that traps: the default order,
    // counted as a fallback; the player never sees the failure.
    for mode in ["bad", "panic"] {
        let (code, v) = upload(e, "echo", "echo", json!({"steer": mode}), true);
        assert_eq!(code, 201, "{v}");
        let m = manifest(e, "10.1.0.5", "/steer/hls/ch1");
        assert_eq!(
            priority(&m),
            ["msk", "cdn-x", "msk-b", "spb", "north"],
            "{mode}"
        );
    }
    assert!(counter(e, "edgeward_steering_polls_total", &["answer=\"fallback\""]) >= 2);

    // The policy stops steering: 410, which ends it for the session.
    let (code, v) = upload(e, "echo", "echo", json!({"steer": "stop"}), true);
    assert_eq!(code, 201, "{v}");
    let (resp, _) = poll(e, "10.1.0.5", "/steer/hls/ch1");
    assert_eq!(resp.status, 410, "{resp:?}");
    assert!(resp.body.contains("stopped steering"), "{}", resp.body);

    // The operator switches steering off: 410 for every poll; the
    // redirects go on.
    let mut doc = topology(&s.msk, &s.spb, "60s");
    doc["steering"]["enabled"] = json!(false);
    let resp = e.admin(
        "PUT",
        "/topology",
        doc.to_string().as_bytes(),
        "application/json",
        None,
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    let (resp, _) = poll(e, "10.2.0.5", "/steer/dash/ch1");
    assert_eq!(resp.status, 410);
    assert!(resp.body.contains("switched off"), "{}", resp.body);
    assert_eq!(resp.header("Access-Control-Allow-Origin"), Some("*"));
    let redirect = e.get("/btv/live/hls/ch1", &[("X-Real-IP", "10.2.0.5")]);
    assert_eq!(redirect.status, 302);
    assert_eq!(redirect.header("Access-Control-Allow-Origin"), None);
    assert!(counter(e, "edgeward_steering_polls_total", &["answer=\"stopped\""]) >= 2);
    drop(s.dir);
}

#[test]
fn polls_over_the_rate_are_shed_with_the_last_order_and_a_longer_ttl() {
    let dir = TempDir::new("steering-shed");
    let msk = Edge::start(Answer::Ok("OK"));
    let spb = Edge::start(Answer::Ok("OK"));
    let path = dir.path("topology.json");
    std::fs::write(&path, topology(&msk, &spb, "60s").to_string()).unwrap();
    // One worker, one policy call a second.
    let e = Engine::spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--topology",
        path.to_str().unwrap(),
        "--steering-max-rate",
        "1",
    ])
    .unwrap();
    let mut ttls = Vec::new();
    for _ in 0..5 {
        let m = manifest(&e, "10.1.0.5", "/steer/hls/ch1");
        assert_eq!(priority(&m)[0], "msk");
        ttls.push(m["TTL"].as_u64().unwrap());
    }
    assert_eq!(ttls[0], 60);
    assert!(
        ttls.contains(&120),
        "shed polls get twice the TTL: {ttls:?}"
    );
    assert!(counter(&e, "edgeward_steering_polls_total", &["answer=\"shed\""]) >= 1);
    assert_eq!(
        counter(
            &e,
            "edgeward_steering_polls_total",
            &["answer=\"throttled\""]
        ),
        0,
        "a shed poll is never a 429"
    );
}

#[test]
fn explain_shows_why_a_poll_gets_its_order() {
    let s = start("60s", &[]);
    let e = &s.engine;
    s.msk.set(Answer::Status(500));
    wait_until("e-msk is down", || server_state(e, "e-msk") == "down");
    let url = "/steer/hls/ch1?_HLS_pathway=msk&_HLS_throughput=3000000";
    let query = format!(
        "client=10.1.0.5&url={}",
        url.replace('/', "%2F")
            .replace('?', "%3F")
            .replace('&', "%26")
            .replace('=', "%3D")
    );
    let (code, v) = e.admin_json("GET", &format!("/explain?{query}"), json!(null));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], 200, "{v:#}");
    assert_eq!(v["steering"]["protocol"], "hls");
    assert_eq!(v["steering"]["reported"][0]["throughput_bps"], 3_000_000);
    assert_eq!(v["tiers"], json!(["msk", "spb"]));
    assert_eq!(v["order"], json!(["cdn-x", "spb", "north", "msk", "msk-b"]));
    assert_eq!(v["ttl"], 60);
    assert_eq!(v["policy"]["answer"], "default-order", "{v:#}");
    let msk = &v["pathways"][0];
    assert_eq!(msk["id"], "msk");
    assert_eq!(
        (msk["edges_up"].as_u64(), msk["edges_total"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(msk["current"], true);
    assert_eq!(msk["throughput_kbps"], 3000);
    assert!(msk["why"].as_str().unwrap().contains("down"), "{msk}");
    assert_eq!(v["pathways"][3]["clone_of"], "msk");
    // A malformed poll is explained as the player would be answered.
    let (_, v) = e.admin_json(
        "GET",
        "/explain?client=10.1.0.5&url=%2Fsteer%2Frtmp%2Fch1",
        json!(null),
    );
    assert_eq!(v["status"], 400, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("rtmp"), "{v}");
}
