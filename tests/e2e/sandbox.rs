//! Hostile policies: refused at upload when they misbehave on the sample
//! requests; when they misbehave only later, on live traffic, the engine
//! falls back, keeps answering, and rolls the version back by itself.

use crate::admin::upload;
use crate::harness::{Engine, fixtures};
use serde_json::json;

fn engine(extra: &[&str]) -> Engine {
    let topology = fixtures().join("routing.json");
    let mut args = vec![
        "--topology",
        topology.to_str().unwrap(),
        "--watch-interval-ms",
        "0",
    ];
    args.extend_from_slice(extra);
    Engine::start(&args)
}

#[test]
fn misbehaving_policies_are_refused_at_upload() {
    let mut engine = engine(&["--policy-deadline-ms", "20"]);
    for (mode, why) in [
        ("panic", "unreachable"),
        ("loop", "deadline"),
        ("grow", "acceptance"),
        ("bad-server", "not a candidate"),
        ("bad-status", "outside 400-599"),
        ("bad-url", "not an absolute http(s) URL"),
        ("fail-init", "refuses to start"),
    ] {
        let (status, v) = upload(&engine, mode, "hostile", json!({"mode": mode}), true);
        assert_eq!(status, 422, "{mode}: {v}");
        let error = v["error"].as_str().unwrap();
        assert!(error.contains(why), "{mode}: {error}");
        assert!(engine.alive());
        let resp = engine.get("/btv/live/hls/ch1", &[("X-Real-IP", "10.1.5.5")]);
        assert_eq!(
            resp.location(),
            "http://e-city.test/live/ch1/index.m3u8",
            "{mode}"
        );
        assert_eq!(resp.header("Edgeward-Policy"), Some("nearest@1"), "{mode}");
    }
    // Not a component at all.
    let resp = engine.admin(
        "POST",
        "/policies/junk",
        b"\0asm\x01\0\0\0",
        "application/wasm",
        None,
    );
    assert_eq!(resp.status, 422);
    assert!(
        resp.body.contains("not a valid WebAssembly component"),
        "{}",
        resp.body
    );
    let resp = engine.admin("POST", "/policies/junk", b"hello", "application/wasm", None);
    assert_eq!(resp.status, 422);
    // Malformed upload envelope.
    let resp = engine.admin(
        "POST",
        "/policies/junk",
        b"{\"wasm\": 1}",
        "application/json",
        None,
    );
    assert_eq!(resp.status, 400);
    let (_, list) = engine.admin_json("GET", "/policies", json!(null));
    assert_eq!(
        list["policies"].as_array().unwrap().len(),
        1,
        "nothing refused was kept: {list}"
    );
}

#[test]
fn runtime_failures_fall_back_and_trip_automatic_rollback() {
    for mode in [
        "panic",
        "loop",
        "grow",
        "bad-server",
        "bad-status",
        "bad-url",
    ] {
        let mut engine = engine(&["--rollback-after", "5", "--policy-deadline-ms", "20"]);
        // Behaves on the samples; misbehaves for the target "boom".
        let (status, v) = upload(
            &engine,
            "hostile",
            "hostile",
            json!({"mode": mode, "only_target": "boom"}),
            true,
        );
        assert_eq!(status, 201, "{mode}: {v}");
        let label = format!("hostile@{}", v["version"]);
        let mut conn = engine.connect();
        let resp = conn.request("GET", "/vod/fine.mp4", &[("X-Real-IP", "10.1.5.5")]);
        assert_eq!(
            resp.header("Edgeward-Policy"),
            Some(label.as_str()),
            "{mode}"
        );

        // Each failed call is answered by the native rule; none is an error.
        for i in 0..4 {
            let resp = conn.request("GET", "/vod/boom", &[("X-Real-IP", "10.1.5.5")]);
            assert_eq!(resp.status, 302, "{mode} #{i}: {resp:?}");
            assert_eq!(resp.location(), "http://e-city.test/vod/boom", "{mode}");
            assert_eq!(resp.header("Edgeward-Policy"), Some("native"), "{mode}");
        }
        // The fifth consecutive failure rolls the version back.
        let resp = conn.request("GET", "/vod/boom", &[("X-Real-IP", "10.1.5.5")]);
        assert_eq!(resp.status, 302, "{mode}");
        let resp = conn.request("GET", "/vod/boom", &[("X-Real-IP", "10.1.5.5")]);
        assert_eq!(
            resp.header("Edgeward-Policy"),
            Some("nearest@1"),
            "{mode}: rolled back"
        );
        let (_, status) = engine.admin_json("GET", "/status", json!(null));
        assert_eq!(status["active_policy"]["name"], "nearest", "{mode}");
        assert_eq!(
            status["last_automatic_rollback"]["from"], label,
            "{mode}: {status}"
        );
        let (_, list) = engine.admin_json("GET", "/policies", json!(null));
        let hostile = list["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "hostile")
            .unwrap()
            .clone();
        let counted =
            hostile["traps"].as_u64().unwrap() + hostile["invalid_answers"].as_u64().unwrap();
        assert_eq!(counted, 5, "{mode}: {hostile}");
        engine.wait_log(0, "AUTOMATIC ROLLBACK");
        assert!(engine.alive());
    }
}

#[test]
fn fallback_can_be_the_previous_version_or_a_503() {
    let engine_prev = engine(&["--policy-fallback", "previous", "--rollback-after", "1000"]);
    upload(
        &engine_prev,
        "hostile",
        "hostile",
        json!({"mode": "panic", "only_target": "boom"}),
        true,
    );
    let resp = engine_prev.get("/vod/boom", &[("X-Real-IP", "10.1.5.5")]);
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("Edgeward-Policy"), Some("nearest@1"));

    let engine_503 = engine(&[
        "--policy-fallback",
        "unavailable",
        "--rollback-after",
        "1000",
    ]);
    let (_, v) = upload(
        &engine_503,
        "hostile",
        "hostile",
        json!({"mode": "panic", "only_target": "boom"}),
        true,
    );
    let resp = engine_503.get("/vod/boom", &[("X-Real-IP", "10.1.5.5")]);
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("Retry-After"), Some("5"));
    assert_eq!(resp.body, "routing policy failed\n");
    assert_eq!(
        resp.header("Edgeward-Policy"),
        Some(format!("hostile@{}", v["version"]).as_str())
    );
    // The trapped instance was replaced: the next request is served.
    let resp = engine_503.get("/vod/fine", &[("X-Real-IP", "10.1.5.5")]);
    assert_eq!(resp.status, 302);
}

#[test]
fn a_memory_hungry_policy_hits_the_cap_not_the_host() {
    let engine = engine(&["--policy-memory-mib", "4", "--rollback-after", "1000"]);
    let (status, _) = upload(
        &engine,
        "grow",
        "hostile",
        json!({"mode": "grow", "only_target": "boom"}),
        true,
    );
    assert_eq!(status, 201);
    let mut conn = engine.connect();
    for _ in 0..10 {
        let resp = conn.request("GET", "/vod/boom", &[("X-Real-IP", "10.1.5.5")]);
        assert_eq!(resp.status, 302);
        assert_eq!(resp.header("Edgeward-Policy"), Some("native"));
    }
}
