//! The admin API: authentication, policy upload/activate/rollback, canary,
//! shadow, topology replacement, status.

use crate::harness::{Engine, TempDir, built_policy, fixtures};
use base64::Engine as _;
use serde_json::{Value, json};

fn engine() -> Engine {
    Engine::start(&[
        "--topology",
        fixtures().join("routing.json").to_str().unwrap(),
        "--watch-interval-ms",
        "0",
    ])
}

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(built_policy(name)).unwrap()
}

/// Uploads a policy as JSON with a configuration; returns the response.
pub fn upload(
    engine: &Engine,
    name: &str,
    policy: &str,
    config: Value,
    activate: bool,
) -> (u16, Value) {
    let body = json!({
        "wasm_base64": base64::engine::general_purpose::STANDARD.encode(wasm(policy)),
        "config": config,
        "activate": activate,
    });
    engine.admin_json("POST", &format!("/policies/{name}"), body)
}

fn decided_by(engine: &Engine, ip: &str, path: &str) -> String {
    let resp = engine.get(path, &[("X-Real-IP", ip)]);
    resp.header("Edgeward-Policy")
        .unwrap_or_else(|| panic!("no Edgeward-Policy header: {resp:?}"))
        .to_string()
}

#[test]
fn token_is_required_when_configured_and_non_loopback_needs_one() {
    let dir = TempDir::new("token");
    let token_file = dir.path("token");
    std::fs::write(&token_file, "let-me-in\n").unwrap();
    let engine = Engine::start(&["--admin-token-file", token_file.to_str().unwrap()]);
    let resp = engine.admin("GET", "/status", b"", "application/json", None);
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("WWW-Authenticate"), Some("Bearer"));
    let resp = engine.admin("GET", "/status", b"", "application/json", Some("wrong"));
    assert_eq!(resp.status, 401);
    let resp = engine.admin("GET", "/status", b"", "application/json", Some("let-me-in"));
    assert_eq!(resp.status, 200, "{resp:?}");

    // Wrong tokens from one address wait longer and longer for their
    // answer; a right one forgets the failures.
    let waits = |engine: &Engine| -> Vec<String> {
        engine
            .log_lines()
            .iter()
            .filter(|l| l.contains("a wrong bearer token"))
            .filter_map(|l| {
                l.split("wait_ms=")
                    .nth(1)?
                    .split_whitespace()
                    .next()
                    .map(str::to_string)
            })
            .collect()
    };
    for _ in 0..2 {
        let resp = engine.admin("GET", "/status", b"", "application/json", Some("guess"));
        assert_eq!(resp.status, 401);
    }
    // The first wrong one was forgotten with the right one after it.
    assert_eq!(waits(&engine), ["250", "250", "500"]);
    let resp = engine.admin("GET", "/status", b"", "application/json", Some("let-me-in"));
    assert_eq!(resp.status, 200, "{resp:?}");
    let resp = engine.admin("GET", "/status", b"", "application/json", Some("guess"));
    assert_eq!(resp.status, 401);
    assert_eq!(waits(&engine).last().map(String::as_str), Some("250"));
    let metrics = engine
        .admin("GET", "/metrics", b"", "text/plain", Some("let-me-in"))
        .body;
    assert!(
        metrics.contains("edgeward_admin_auth_failures_total 4"),
        "{metrics}"
    );

    let err = Engine::try_start(&["--admin-listen", "0.0.0.0:0"])
        .err()
        .expect("must refuse a public admin listener without a token");
    assert!(err.contains("neither a token nor an account"), "{err}");
}

#[test]
fn upload_activate_list_rollback_and_the_decision_header() {
    let engine = engine();
    let (status, v) = engine.admin_json("GET", "/status", json!(null));
    assert_eq!(status, 200);
    assert_eq!(v["active_policy"]["name"], "nearest");
    assert_eq!(v["topology"]["version"], 1);
    assert_eq!(decided_by(&engine, "10.9.0.1", "/vod/a.mp4"), "nearest@1");

    // Raw .wasm body, not activated.
    let resp = engine.admin(
        "POST",
        "/policies/consistent",
        &wasm("consistent"),
        "application/wasm",
        None,
    );
    assert_eq!(resp.status, 201, "{}", resp.body);
    let up: Value = serde_json::from_str(&resp.body).unwrap();
    let v2 = up["version"].as_u64().unwrap();
    assert_eq!(up["hash"].as_str().unwrap().len(), 64);
    assert!(
        !up["samples"].as_array().unwrap().is_empty(),
        "sample decisions are reported"
    );
    assert_eq!(decided_by(&engine, "10.9.0.1", "/vod/a.mp4"), "nearest@1");

    let (status, v) = engine.admin_json("POST", &format!("/policies/{v2}/activate"), json!(null));
    assert_eq!(
        (status, v["active"].as_str()),
        (200, Some(format!("consistent@{v2}").as_str()))
    );
    assert_eq!(
        decided_by(&engine, "10.9.0.1", "/vod/a.mp4"),
        format!("consistent@{v2}")
    );

    let (_, list) = engine.admin_json("GET", "/policies", json!(null));
    let list = list["policies"].as_array().unwrap();
    let roles: Vec<(&str, &str)> = list
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["role"].as_str().unwrap()))
        .collect();
    assert!(
        roles.contains(&("consistent", "active")) && roles.contains(&("nearest", "previous")),
        "{roles:?}"
    );
    let consistent = list.iter().find(|p| p["name"] == "consistent").unwrap();
    for field in ["calls", "traps", "mean_call_us", "loaded_at", "hash"] {
        assert!(
            consistent.get(field).is_some(),
            "missing {field}: {consistent}"
        );
    }

    let (status, v) = engine.admin_json("POST", "/policies/rollback", json!(null));
    assert_eq!((status, v["active"].as_str()), (200, Some("nearest@1")));
    assert_eq!(decided_by(&engine, "10.9.0.1", "/vod/a.mp4"), "nearest@1");
    let (status, _) = engine.admin_json("POST", "/policies/rollback", json!(null));
    assert_eq!(status, 409, "nothing left to roll back to");
    let (status, _) = engine.admin_json("POST", "/policies/999/activate", json!(null));
    assert_eq!(status, 404);

    // With configuration, activated on upload.
    let (status, v) = upload(
        &engine,
        "nearest-custom",
        "nearest",
        json!({"reason": "custom"}),
        true,
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        decided_by(&engine, "10.9.0.1", "/vod/a.mp4"),
        format!("nearest-custom@{}", v["version"])
    );
}

#[test]
fn the_policy_header_can_be_turned_off() {
    let engine = Engine::start(&["--no-policy-header"]);
    let resp = engine.get("/btv/live/hls/ch1", &[]);
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("Edgeward-Policy"), None);
}

#[test]
fn canary_splits_clients_stably_and_promotes_or_aborts() {
    let engine = engine();
    let (_, up) = upload(
        &engine,
        "canary",
        "hostile",
        json!({"mode": "behave"}),
        false,
    );
    let v2 = up["version"].as_u64().unwrap();
    let (status, _) = engine.admin_json("PUT", "/canary", json!({"version": v2, "percent": 30}));
    assert_eq!(status, 200);

    let label = format!("canary@{v2}");
    let mut canary_clients = 0;
    let clients = 400;
    for i in 0..clients {
        let ip = format!("10.9.{}.{}", i / 200, i % 200 + 1);
        let first = decided_by(&engine, &ip, "/vod/a.mp4");
        // One client sticks to one version.
        assert_eq!(decided_by(&engine, &ip, "/vod/b.mp4"), first, "{ip}");
        if first == label {
            canary_clients += 1;
        } else {
            assert_eq!(first, "nearest@1");
        }
    }
    // 30 % of 400 = 120; sd ≈ 9.2.
    assert!(
        (75..=165).contains(&canary_clients),
        "{canary_clients} of {clients} in the canary"
    );

    let (status, _) = engine.admin_json("PUT", "/canary", json!({"version": v2, "percent": 101}));
    assert_eq!(status, 400);
    let (status, _) = engine.admin_json("DELETE", "/canary", json!(null));
    assert_eq!(status, 200);
    for i in 0..50 {
        assert_eq!(
            decided_by(&engine, &format!("10.9.0.{i}"), "/vod/a.mp4"),
            "nearest@1"
        );
    }
    engine.admin_json("PUT", "/canary", json!({"version": v2, "percent": 10}));
    let (status, v) = engine.admin_json("POST", "/canary/promote", json!(null));
    assert_eq!((status, v["active"].as_str()), (200, Some(label.as_str())));
    for i in 0..50 {
        assert_eq!(
            decided_by(&engine, &format!("10.9.0.{i}"), "/vod/a.mp4"),
            label
        );
    }
    let (_, v) = engine.admin_json("GET", "/canary", json!(null));
    assert_eq!(v["canary"], Value::Null);
}

#[test]
fn shadow_reports_agreement_without_changing_answers() {
    let engine = engine();
    // The same rule as the active one: with per-request seeds shared between
    // the two, even random draws agree.
    let (_, same) = upload(&engine, "same", "hostile", json!({"mode": "behave"}), false);
    let (status, _) = engine.admin_json(
        "PUT",
        "/shadow",
        json!({"version": same["version"], "sample_percent": 100}),
    );
    assert_eq!(status, 200);
    let mut conn = engine.connect();
    for i in 0..200 {
        let resp = conn.request(
            "GET",
            &format!("/vod/{i}.mp4"),
            &[("X-Real-IP", "10.9.0.1")],
        );
        assert_eq!(
            resp.header("Edgeward-Policy"),
            Some("nearest@1"),
            "the shadow never answers"
        );
    }
    let (_, v) = engine.admin_json("GET", "/shadow", json!(null));
    assert_eq!(v["report"]["compared"], 200, "{v}");
    assert_eq!(v["agreement"], 1.0, "{v}");

    // A different rule disagrees sometimes, with examples.
    let (_, other) = upload(&engine, "other", "consistent", json!({}), false);
    engine.admin_json(
        "PUT",
        "/shadow",
        json!({"version": other["version"], "sample_percent": 100}),
    );
    for i in 0..200 {
        conn.request(
            "GET",
            &format!("/vod/{i}.mp4"),
            &[("X-Real-IP", "10.9.0.1")],
        );
    }
    let (_, v) = engine.admin_json("GET", "/shadow", json!(null));
    let agreement = v["agreement"].as_f64().unwrap();
    assert!(agreement < 0.95 && agreement > 0.2, "{v}");
    let example = &v["report"]["examples"][0];
    assert!(
        example["served"].as_str().unwrap().starts_with("302 "),
        "{v}"
    );
    assert_ne!(example["served"], example["shadow"]);

    let (status, _) = engine.admin_json("DELETE", "/shadow", json!(null));
    assert_eq!(status, 200);
    let (status, _) = engine.admin_json("DELETE", "/shadow", json!(null));
    assert_eq!(status, 404);
}

#[test]
fn topology_replace_and_read_through_the_admin_api() {
    let engine = engine();
    let text = std::fs::read_to_string(fixtures().join("routing.json")).unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();

    // Invalid: refused with every problem listed, old one kept.
    doc["subnets"][1]["region"] = json!("atlantis");
    doc["servers"][0]["port"] = json!(0);
    let resp = engine.admin(
        "PUT",
        "/topology",
        doc.to_string().as_bytes(),
        "application/json",
        None,
    );
    assert_eq!(resp.status, 422);
    let v: Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(v["kept_version"], 1);
    assert_eq!(v["problems"].as_array().unwrap().len(), 2, "{v}");
    let resp = engine.admin("PUT", "/topology", b"{not json", "application/json", None);
    assert_eq!(resp.status, 422);

    // Valid: applied.
    doc["subnets"][1]["region"] = json!("wide");
    doc["servers"][0]["port"] = json!(8080);
    let resp = engine.admin(
        "PUT",
        "/topology",
        doc.to_string().as_bytes(),
        "application/json",
        None,
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v: Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(v["version"], 2);
    let resp = engine.get("/btv/live/hls/ch1", &[("X-Real-IP", "10.1.5.5")]);
    assert_eq!(
        resp.location(),
        "http://e-wide.test:8080/live/ch1/index.m3u8"
    );

    // Read back: the same document, with its version.
    let resp = engine.admin("GET", "/topology", b"", "application/json", None);
    assert_eq!(resp.header("Edgeward-Topology-Version"), Some("2"));
    let back: Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(back["servers"][0]["port"], 8080);
    assert_eq!(back["subnets"][1]["region"], "wide");
    let (_, status) = engine.admin_json("GET", "/status", json!(null));
    assert_eq!(status["topology"]["version"], 2);

    // MessagePack in and out.
    let resp = engine.admin(
        "GET",
        "/topology?format=msgpack",
        b"",
        "application/json",
        None,
    );
    assert_eq!(resp.header("Content-Type"), Some("application/msgpack"));
}
