//! The player-facing contract: URL grammar, Location shapes, tiers, weights,
//! client addresses and error statuses.

use crate::harness::{Engine, fixtures};
use std::sync::{Arc, Mutex, Weak};

/// One engine on the routing fixture, shared by the tests of this module
/// that run at the same time. Each test holds it while it runs; when the
/// last one lets go, the engine is stopped (a `static` holding the engine
/// itself is never dropped, and its process would outlive the tests).
fn engine() -> Arc<Engine> {
    static ENGINE: Mutex<Weak<Engine>> = Mutex::new(Weak::new());
    let mut shared = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(engine) = shared.upgrade() {
        return engine;
    }
    let topology = fixtures().join("routing.json");
    let engine = Arc::new(Engine::start(&[
        "--topology",
        topology.to_str().unwrap(),
        "--random-seed",
        "7",
    ]));
    *shared = Arc::downgrade(&engine);
    engine
}

/// The Location for `path` asked by a client at `ip` (via X-Real-IP from
/// loopback, a trusted proxy by default).
fn location_for(engine: &Engine, ip: &str, path: &str) -> String {
    let resp = engine.get(path, &[("X-Real-IP", ip)]);
    assert_eq!(resp.status, 302, "{path} from {ip}: {resp:?}");
    resp.location().to_string()
}

fn status_for(engine: &Engine, ip: &str, path: &str) -> (u16, String) {
    let resp = engine.get(path, &[("X-Real-IP", ip)]);
    (resp.status, resp.body)
}

#[test]
fn live_redirect_shape_with_query_and_headers() {
    let engine = engine();
    let resp = engine.get(
        "/btv/live/hls/ch1.m3u8?token=a%20b&x=1",
        &[("X-Real-IP", "10.2.0.1")],
    );
    assert_eq!(resp.status, 302);
    assert_eq!(
        resp.location(),
        "http://e-wide.test/live/ch1/index.m3u8?token=a%20b&x=1"
    );
    assert_eq!(resp.header("Cache-Control"), Some("no-store"));
    assert_eq!(resp.body, "");
    // Without an extension, and for DASH.
    assert_eq!(
        location_for(&engine, "10.2.0.1", "/btv/live/hls/ch1"),
        "http://e-wide.test/live/ch1/index.m3u8"
    );
    assert_eq!(
        location_for(&engine, "10.2.0.1", "/btv/live/mpd/ch1.mpd"),
        "http://e-wide.test/live/ch1/manifest.mpd"
    );
}

#[test]
fn header_names_go_on_the_wire_in_title_case() {
    let engine = engine();
    let resp = engine.get("/btv/live/hls/ch1.m3u8", &[("X-Real-IP", "10.2.0.1")]);
    let names: Vec<&str> = resp.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"Location"), "{names:?}");
    assert!(names.contains(&"Cache-Control"), "{names:?}");
    let resp = engine.get("/btv/live/hls/ch1.m3u8", &[("X-Real-IP", "192.0.2.1")]);
    assert_eq!(resp.status, 302);
    let unreachable = Engine::start(&[
        "--topology",
        fixtures().join("unreachable.json").to_str().unwrap(),
    ]);
    let resp = unreachable.get("/btv/live/hls/ch1.m3u8", &[("X-Real-IP", "10.0.0.1")]);
    assert_eq!(resp.status, 503);
    let names: Vec<&str> = resp.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"Retry-After"), "{names:?}");
    assert!(names.contains(&"Content-Type"), "{names:?}");
}

#[test]
fn encryption_rules_and_cenc_fallback() {
    let engine = engine();
    let ip = "10.2.0.1";
    let base = "http://e-wide.test/";
    for (path, expected) in [
        ("/btv/live/mpd_wv/ch1.mpd", "live/ch1/wv.mpd"),
        // No PlayReady DASH stream: the cenc one serves.
        ("/btv/live/mpd_pr/ch1.mpd", "live/ch1/cenc.mpd"),
        ("/btv/live/mpd_cenc/ch1.mpd", "live/ch1/cenc.mpd"),
        // The PlayReady HLS stream is inactive: cenc serves.
        ("/btv/live/hls_pr/ch1.m3u8", "live/ch1/cenc.m3u8"),
        ("/btv/live/hls_wv/ch1.m3u8", "live/ch1/cenc.m3u8"),
        ("/btv/live/mpd_wv/cenc-only", "live/cenc-only/cenc.mpd"),
        ("/btv/live/mpd_pr/cenc-only", "live/cenc-only/cenc.mpd"),
    ] {
        assert_eq!(
            location_for(&engine, ip, path),
            format!("{base}{expected}"),
            "{path}"
        );
    }
    // `none` and `cenc` match only themselves.
    for path in [
        "/btv/live/mpd/cenc-only.mpd",
        "/btv/live/hls_cenc/sports.m3u8",
        "/btv/live/mpd/sports.mpd",
    ] {
        let (status, body) = status_for(&engine, ip, path);
        assert_eq!(status, 404, "{path}");
        assert!(body.contains("no active stream"), "{path}: {body}");
    }
}

#[test]
fn catchup_serves_completed_records_through_the_dvr_prefix() {
    let engine = engine();
    let ip = "10.2.0.1";
    assert_eq!(
        location_for(&engine, ip, "/btv/catchup/hls/p1.m3u8?t=5"),
        "http://e-wide.test/dvr/dvr1/ch1/p1/index.m3u8?t=5"
    );
    assert_eq!(
        location_for(&engine, ip, "/btv/catchup/mpd_wv/p1.mpd"),
        "http://e-wide.test/dvr/dvr2/ch1/p1/cenc.mpd"
    );
    // Only a running record for DASH clear; only an errored one for HLS widevine
    // (and no HLS cenc record): nothing to serve.
    for path in ["/btv/catchup/mpd/p1.mpd", "/btv/catchup/hls_wv/p1.m3u8"] {
        let (status, body) = status_for(&engine, ip, path);
        assert_eq!(status, 404, "{path}");
        assert!(body.contains("no completed record"), "{path}: {body}");
    }
    let (status, body) = status_for(&engine, ip, "/btv/catchup/hls/nope.m3u8");
    assert_eq!((status, body.as_str()), (404, "unknown program\n"));
    // Catch-up follows the program's channel restrictions like live does.
    assert_eq!(
        location_for(&engine, "10.7.0.1", "/btv/catchup/hls/p-sports"),
        "http://e-sports.test/dvr/dvr2/sports/p/index.m3u8"
    );
    // p1 is on ch1, which the sports-only group does not serve: next tier.
    assert_eq!(
        location_for(&engine, "10.7.0.1", "/btv/catchup/hls/p1"),
        "http://e-wide.test/dvr/dvr1/ch1/p1/index.m3u8"
    );
}

#[test]
fn vod_and_static_keep_their_path() {
    let engine = engine();
    assert_eq!(
        location_for(&engine, "10.2.0.1", "/vod/films/2024/movie.mp4?sig=xyz"),
        "http://e-wide.test/vod/films/2024/movie.mp4?sig=xyz"
    );
    assert_eq!(
        location_for(&engine, "10.2.0.1", "/static/img/logo.png"),
        "http://e-wide.test/static/img/logo.png"
    );
    // Every group serves VOD, channel restrictions notwithstanding.
    assert_eq!(
        location_for(&engine, "10.7.0.1", "/vod/x.mp4"),
        "http://e-sports.test/vod/x.mp4"
    );
}

#[test]
fn longest_prefix_wins_and_falls_back_to_shorter_prefixes() {
    let engine = engine();
    // 10.1.5.5 is in 10.1/16 (city) and 10/8 (wide): the longer wins.
    assert_eq!(
        location_for(&engine, "10.1.5.5", "/btv/live/hls/ch1"),
        "http://e-city.test/live/ch1/index.m3u8"
    );
    // 10.1.2.3 is in 10.1.2/24 (block, whose only group is inactive): next is city.
    assert_eq!(
        location_for(&engine, "10.1.2.3", "/btv/live/hls/ch1"),
        "http://e-city.test/live/ch1/index.m3u8"
    );
    assert_eq!(
        location_for(&engine, "10.200.0.1", "/btv/live/hls/ch1"),
        "http://e-wide.test/live/ch1/index.m3u8"
    );
}

#[test]
fn default_region_serves_unmatched_clients_and_exhausted_tiers() {
    let engine = engine();
    let fallback = "http://e-fallback.test:8443/live/ch1/index.m3u8";
    // No subnet matches.
    assert_eq!(
        location_for(&engine, "192.0.2.1", "/btv/live/hls/ch1"),
        fallback
    );
    // 10.8/16's region is inactive, but 10/8 still matches: wide.
    assert_eq!(
        location_for(&engine, "10.8.0.1", "/btv/live/hls/ch1"),
        "http://e-wide.test/live/ch1/index.m3u8"
    );
    // A region with no groups, likewise.
    assert_eq!(
        location_for(&engine, "10.6.0.1", "/btv/live/hls/ch1"),
        "http://e-wide.test/live/ch1/index.m3u8"
    );
    // Every matched tier is exhausted (inactive region, then a region with
    // no groups): the default region serves.
    assert_eq!(
        location_for(&engine, "172.16.0.1", "/btv/live/hls/ch1"),
        fallback
    );
    assert_eq!(
        location_for(&engine, "172.20.0.1", "/btv/live/hls/ch1"),
        fallback
    );
    // A group restricted to some channels serves those only.
    assert_eq!(
        location_for(&engine, "10.7.0.1", "/btv/live/hls/sports"),
        "http://e-sports.test/live/sports/index.m3u8"
    );
    assert_eq!(
        location_for(&engine, "10.7.0.1", "/btv/live/hls/ch1"),
        "http://e-wide.test/live/ch1/index.m3u8"
    );
}

#[test]
fn ipv6_clients_and_ipv6_edges() {
    let engine = engine();
    // IPv6 literal edge on 443: https with brackets.
    assert_eq!(
        location_for(&engine, "2001:db8:1::5", "/btv/live/hls/ch1"),
        "https://[2001:db8::10]/live/ch1/index.m3u8"
    );
    // 2001:db8:1:2::/64's region is inactive: the enclosing /48 serves.
    assert_eq!(
        location_for(&engine, "2001:db8:1:2::9", "/btv/live/hls/ch1"),
        "https://[2001:db8::10]/live/ch1/index.m3u8"
    );
    assert_eq!(
        location_for(&engine, "2001:db8:ffff::1", "/btv/live/hls/ch1"),
        "http://e-fallback.test:8443/live/ch1/index.m3u8"
    );
    // IPv4-mapped IPv6 is matched as IPv4.
    assert_eq!(
        location_for(&engine, "::ffff:10.1.5.5", "/btv/live/hls/ch1"),
        "http://e-city.test/live/ch1/index.m3u8"
    );
}

#[test]
fn ipv6_listener() {
    let topology = fixtures().join("routing.json");
    let engine = Engine::spawn(&[
        "serve",
        "--listen",
        "[::1]:0",
        "--workers",
        "1",
        "--topology",
        topology.to_str().unwrap(),
    ])
    .unwrap();
    // The peer ::1 is loopback, trusted: X-Real-IP applies.
    let resp = engine.get("/btv/live/hls/ch1", &[("X-Real-IP", "10.1.5.5")]);
    assert_eq!(resp.location(), "http://e-city.test/live/ch1/index.m3u8");
}

#[test]
fn x_real_ip_only_from_trusted_proxies() {
    let engine = engine();
    // Default: loopback is trusted.
    assert_eq!(
        location_for(&engine, "10.1.5.5", "/btv/live/hls/ch1"),
        "http://e-city.test/live/ch1/index.m3u8"
    );
    // Without the header, the peer address (127.0.0.1) is the client.
    let resp = engine.get("/btv/live/hls/ch1", &[]);
    assert_eq!(resp.location(), "http://e-loop.test/live/ch1/index.m3u8");
    // A malformed header from a trusted proxy is a bad request.
    let (status, body) = status_for(&engine, "10.1.5.500", "/btv/live/hls/ch1");
    assert_eq!(
        (status, body.as_str()),
        (400, "malformed X-Real-IP header\n")
    );

    // Trust only another network: loopback's header is ignored.
    let topology = fixtures().join("routing.json");
    let untrusting = Engine::start(&[
        "--topology",
        topology.to_str().unwrap(),
        "--trusted-proxy",
        "192.0.2.0/24",
    ]);
    let resp = untrusting.get("/btv/live/hls/ch1", &[("X-Real-IP", "10.1.5.5")]);
    assert_eq!(resp.location(), "http://e-loop.test/live/ch1/index.m3u8");
    let resp = untrusting.get("/btv/live/hls/ch1", &[("X-Real-IP", "garbage")]);
    assert_eq!(
        resp.status, 302,
        "an untrusted header is ignored, even malformed"
    );
}

#[test]
fn inactive_region_group_server_and_stream_are_excluded() {
    let engine = engine();
    // Inactive region (10.8/16 → off) and inactive group (10.1.2/24 → block)
    // are covered above; the weighted region has an inactive server of
    // weight 100 and a dvr server: neither is ever chosen.
    let mut conn = engine.connect();
    for _ in 0..300 {
        let resp = conn.request("GET", "/btv/live/hls/ch1", &[("X-Real-IP", "10.9.0.1")]);
        let loc = resp.location();
        assert!(
            !loc.contains("e-inactive") && !loc.contains("dvr1"),
            "{loc}"
        );
    }
    let (status, body) = status_for(&engine, "10.2.0.1", "/btv/live/hls/ch-off.m3u8");
    assert_eq!((status, body.as_str()), (404, "channel is not active\n"));
}

#[test]
fn weights_set_the_proportions_and_weight_zero_is_never_drawn() {
    let engine = engine();
    let n = 4000;
    let (mut w3, mut w1, mut other) = (0, 0, 0);
    let mut conn = engine.connect();
    for _ in 0..n {
        let resp = conn.request("GET", "/vod/x.mp4", &[("X-Real-IP", "10.9.3.3")]);
        match resp.location() {
            "http://e-w3.test/vod/x.mp4" => w3 += 1,
            "http://e-w1.test/vod/x.mp4" => w1 += 1,
            loc => {
                other += 1;
                eprintln!("unexpected {loc}");
            }
        }
    }
    assert_eq!(
        other, 0,
        "weight 0, inactive and dvr servers must never be drawn"
    );
    // Expected 3:1. Binomial sd for the w1 share is sqrt(n·¼·¾) ≈ 27; allow
    // five of them.
    let expected_w1 = n as f64 / 4.0;
    let sd = (n as f64 * 0.25 * 0.75).sqrt();
    assert!(
        (w1 as f64 - expected_w1).abs() < 5.0 * sd,
        "w3={w3} w1={w1}: not 3:1 within 5 sd"
    );
}

#[test]
fn error_statuses_name_the_reason() {
    let engine = engine();
    let ip = "10.2.0.1";
    for (path, status, reason) in [
        ("/btv/live/hls/unknown.m3u8", 404, "unknown channel"),
        ("/btv/live/flv/ch1", 400, "protocol must be hls or mpd"),
        (
            "/btv/live/hls_xx/ch1",
            400,
            "encryption suffix must be _wv, _pr or _cenc",
        ),
        ("/btv/live/hls", 400, "expected /{protocol}/{epg_id}"),
        (
            "/btv/live/hls/ch1/extra",
            400,
            "epg_id must be a single path segment",
        ),
        (
            "/vod/../secret",
            400,
            "asset path must not contain empty, . or .. segments",
        ),
        ("/nothing/here", 404, "no such route"),
        ("/", 404, "no such route"),
    ] {
        let (got, body) = status_for(&engine, ip, path);
        assert_eq!(
            (got, body.as_str()),
            (status, format!("{reason}\n").as_str()),
            "{path}"
        );
    }

    let unreachable = Engine::start(&[
        "--topology",
        fixtures().join("unreachable.json").to_str().unwrap(),
    ]);
    // Every edge inactive, no default region.
    let resp = unreachable.get("/btv/live/hls/ch1.m3u8", &[("X-Real-IP", "10.0.0.1")]);
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("Retry-After"), Some("5"));
    assert_eq!(resp.body, "no available edge server for this client\n");
    // No subnet matches and there is no default region.
    let resp = unreachable.get("/vod/a.mp4", &[("X-Real-IP", "192.0.2.1")]);
    assert_eq!(resp.status, 503);
}

#[test]
fn head_and_other_methods() {
    let engine = engine();
    let mut conn = engine.connect();
    let head = conn.request(
        "HEAD",
        "/btv/live/hls/ch1.m3u8",
        &[("X-Real-IP", "10.2.0.1")],
    );
    assert_eq!(head.status, 302);
    assert_eq!(head.location(), "http://e-wide.test/live/ch1/index.m3u8");
    assert_eq!(head.body, "");
    let head = conn.request(
        "HEAD",
        "/btv/live/hls/nope.m3u8",
        &[("X-Real-IP", "10.2.0.1")],
    );
    assert_eq!(head.status, 404);
    // The connection is still in sync after bodiless HEAD answers.
    let get = conn.request(
        "GET",
        "/btv/live/hls/nope.m3u8",
        &[("X-Real-IP", "10.2.0.1")],
    );
    assert_eq!((get.status, get.body.as_str()), (404, "unknown channel\n"));

    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let resp = conn.request(method, "/btv/live/hls/ch1.m3u8", &[("Content-Length", "0")]);
        assert_eq!(resp.status, 405, "{method}");
        assert_eq!(resp.header("Allow"), Some("GET, HEAD"), "{method}");
    }
}
