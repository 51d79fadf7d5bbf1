//! Loading policies: the built `.wasm` files, their configuration, and
//! refusal of what is not a valid policy.

use crate::harness::{Engine, TempDir, built_policy, fixtures};

#[test]
fn the_built_nearest_component_serves_with_its_configuration() {
    let dir = TempDir::new("policy-config");
    let config = dir.path("nearest.toml");
    std::fs::write(&config, "reason = \"all edges are busy\"\n").unwrap();
    let policy = built_policy("nearest");
    let engine = Engine::start(&[
        "--topology",
        fixtures().join("unreachable.json").to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--policy-config",
        config.to_str().unwrap(),
    ]);
    let resp = engine.get("/btv/live/hls/ch1", &[("X-Real-IP", "10.0.0.1")]);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (503, "all edges are busy\n")
    );
}

#[test]
fn the_built_component_imports_no_wasi() {
    let bytes = std::fs::read(built_policy("nearest")).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("edgeward:policy/host@0.4.0"));
    assert!(!text.contains("wasi:"), "the policy must not import WASI");
}

#[test]
fn a_policy_refusing_its_configuration_is_not_started() {
    let dir = TempDir::new("policy-bad-config");
    let config = dir.path("nearest.json");
    std::fs::write(&config, r#"{"reasn": "typo"}"#).unwrap();
    let policy = built_policy("nearest");
    let err = Engine::try_start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--policy-config",
        config.to_str().unwrap(),
    ])
    .err()
    .expect("must not start");
    assert!(
        err.contains("refused its configuration") && err.contains("reasn"),
        "{err}"
    );

    std::fs::write(&config, "{not json").unwrap();
    let err = Engine::try_start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--policy-config",
        config.to_str().unwrap(),
    ])
    .err()
    .expect("must not start");
    assert!(err.contains("invalid JSON"), "{err}");
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let dir = TempDir::new("policy-garbage");
    let path = dir.path("garbage.wasm");
    std::fs::write(&path, b"\0asm garbage").unwrap();
    let err = Engine::try_start(&["--policy", path.to_str().unwrap()])
        .err()
        .expect("must not start");
    assert!(err.contains("not a valid WebAssembly component"), "{err}");
    let err = Engine::try_start(&["--policy", dir.path("missing.wasm").to_str().unwrap()])
        .err()
        .expect("must not start");
    assert!(err.contains("cannot read policy file"), "{err}");
}

#[test]
fn a_plain_cargo_build_is_accepted_by_policy_upload_and_ctl_push() {
    let module = crate::harness::built_module("consistent");
    let bytes = std::fs::read(&module).unwrap();
    assert!(bytes.starts_with(b"\0asm\x01\0\0\0"), "a core module");
    let topology = fixtures().join("routing.json");

    // --policy: the engine encodes it as a component when it loads it.
    let engine = Engine::start(&[
        "--topology",
        topology.to_str().unwrap(),
        "--policy",
        module.to_str().unwrap(),
    ]);
    let resp = engine.get("/vod/a.mp4", &[("X-Real-IP", "10.1.5.5")]);
    assert_eq!(resp.status, 302, "{resp:?}");
    assert_eq!(resp.header("Edgeward-Policy"), Some("consistent@1"));

    // The admin API, raw body.
    let resp = engine.admin(
        "POST",
        "/policies/plain?activate=true",
        &bytes,
        "application/wasm",
        None,
    );
    assert_eq!(resp.status, 201, "{}", resp.body);
    let resp = engine.get("/vod/a.mp4", &[("X-Real-IP", "10.1.5.5")]);
    assert_eq!(resp.header("Edgeward-Policy"), Some("plain@2"));

    // ctl push.
    let (ok, out, err) = crate::ctl::ctl(
        &engine,
        &["push", "pushed", module.to_str().unwrap(), "--activate"],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("accepted pushed@3"), "{out}");
    let resp = engine.get("/vod/a.mp4", &[("X-Real-IP", "10.1.5.5")]);
    assert_eq!(resp.header("Edgeward-Policy"), Some("pushed@3"));

    // A core module not built with the SDK: refused, saying what to run.
    let resp = engine.admin(
        "POST",
        "/policies/bare",
        b"\0asm\x01\0\0\0",
        "application/wasm",
        None,
    );
    assert_eq!(resp.status, 422, "{}", resp.body);
    assert!(
        resp.body.contains("not one built with edgeward-sdk")
            && resp.body.contains("edgeward policy build"),
        "{}",
        resp.body
    );
    let dir = TempDir::new("policy-text");
    let text = dir.path("policy.wasm");
    std::fs::write(&text, "fn main() {}").unwrap();
    let err = Engine::try_start(&["--policy", text.to_str().unwrap()])
        .err()
        .expect("must not start");
    assert!(
        err.contains("not WebAssembly")
            && err.contains("cargo build --release --target wasm32-unknown-unknown"),
        "{err}"
    );
}

#[test]
fn policy_reload_on_sighup_keeps_the_old_one_when_the_new_one_is_bad() {
    let dir = TempDir::new("policy-reload");
    let path = dir.path("policy.wasm");
    std::fs::copy(built_policy("nearest"), &path).unwrap();
    let mut engine = Engine::start(&[
        "--topology",
        fixtures().join("routing.json").to_str().unwrap(),
        "--policy",
        path.to_str().unwrap(),
        "--watch-interval-ms",
        "0",
    ]);
    std::fs::write(&path, b"not wasm at all").unwrap();
    let from = engine.log_len();
    engine.sighup();
    engine.wait_log(from, "policy reload refused");
    assert!(engine.alive());
    let resp = engine.get("/btv/live/hls/ch1", &[("X-Real-IP", "10.1.5.5")]);
    assert_eq!(resp.location(), "http://e-city.test/live/ch1/index.m3u8");

    std::fs::copy(built_policy("nearest"), &path).unwrap();
    let from = engine.log_len();
    engine.sighup();
    engine.wait_log(from, "policy reloaded and activated");
    let resp = engine.get("/btv/live/hls/ch1", &[("X-Real-IP", "10.1.5.5")]);
    assert_eq!(resp.location(), "http://e-city.test/live/ch1/index.m3u8");
}

#[test]
fn the_consistent_policy_keeps_one_asset_on_one_edge() {
    let policy = built_policy("consistent");
    let engine = Engine::start(&[
        "--topology",
        fixtures().join("routing.json").to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    let mut conn = engine.connect();
    let mut edges = std::collections::HashSet::new();
    for i in 0..40 {
        let path = format!("/vod/asset-{i}.mp4");
        let first = conn
            .request("GET", &path, &[("X-Real-IP", "10.9.0.1")])
            .location()
            .to_string();
        for _ in 0..5 {
            let again = conn.request("GET", &path, &[("X-Real-IP", "10.9.7.7")]);
            assert_eq!(again.location(), first, "{path} moved");
        }
        edges.insert(first.split('/').nth(2).unwrap().to_string());
    }
    // Both drawable edges of the region get a share; no other is used.
    let expected: std::collections::HashSet<String> =
        ["e-w3.test".to_string(), "e-w1.test".to_string()].into();
    assert_eq!(edges, expected);
}

#[test]
fn policy_check_runs_the_acceptance_steps_offline() {
    let out = std::process::Command::new(crate::harness::binary())
        .args(["policy", "check"])
        .arg(built_policy("consistent"))
        .arg("--topology")
        .arg(fixtures().join("routing.json"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("accepted (sha256 "), "{text}");
    assert!(
        text.contains("/btv/live/hls/ch1") && text.contains("-> 302 http://"),
        "{text}"
    );
    assert!(
        text.contains("198.51.100.77"),
        "an unmatched client is sampled: {text}"
    );
    // Only the policy checked is loaded and reported, not the built-in one.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("policy loaded") && log.contains("consistent"),
        "{log}"
    );
    assert!(!log.contains("nearest"), "{log}");

    let dir = TempDir::new("check-hostile");
    let config = dir.path("hostile.json");
    std::fs::write(&config, r#"{"mode": "bad-url"}"#).unwrap();
    let out = std::process::Command::new(crate::harness::binary())
        .args(["policy", "check"])
        .arg(built_policy("hostile"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("failed the acceptance check")
            && text.contains("not an absolute http(s) URL"),
        "{text}"
    );
}

#[test]
fn policy_export_writes_the_builtin_component() {
    let dir = TempDir::new("export");
    let path = dir.path("nearest.wasm");
    let status = std::process::Command::new(crate::harness::binary())
        .args(["policy", "export"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(built_policy("nearest")).unwrap()
    );
}

#[test]
fn changed_files_are_picked_up_without_a_signal() {
    let dir = TempDir::new("watch");
    let topology = dir.path("topology.json");
    let text = std::fs::read_to_string(fixtures().join("routing.json")).unwrap();
    std::fs::write(&topology, &text).unwrap();
    let engine = Engine::start(&[
        "--topology",
        topology.to_str().unwrap(),
        "--watch-interval-ms",
        "50",
    ]);
    let probe = || {
        engine
            .get("/btv/live/hls/ch1", &[("X-Real-IP", "10.1.5.5")])
            .location()
            .to_string()
    };
    assert_eq!(probe(), "http://e-city.test/live/ch1/index.m3u8");
    // Write the new content to a temporary file and rename it over the
    // watched one, as deployment tools do (no half-written file is seen).
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["subnets"][1]["region"] = serde_json::json!("wide");
    let tmp = dir.path("topology.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&doc).unwrap()).unwrap();
    let from = engine.log_len();
    std::fs::rename(&tmp, &topology).unwrap();
    engine.wait_log(from, "topology reloaded");
    assert_eq!(probe(), "http://e-wide.test/live/ch1/index.m3u8");
}

#[test]
fn a_wasm_policy_receives_the_request_as_the_engine_parsed_it() {
    let topology = fixtures().join("routing.json");
    let engine = Engine::start(&["--topology", topology.to_str().unwrap()]);
    let (status, _) = crate::admin::upload(
        &engine,
        "echo",
        "hostile",
        serde_json::json!({"mode": "echo"}),
        true,
    );
    assert_eq!(status, 201);
    let location = |path: &str, ip: &str| {
        let resp = engine.get(path, &[("X-Real-IP", ip)]);
        assert_eq!(resp.status, 302, "{resp:?}");
        resp.header("Location").unwrap().to_string()
    };
    assert_eq!(
        location("/btv/catchup/mpd_wv/p1.mpd?t=5&x=%C3%A9", "2001:db8::5"),
        "http://echo.invalid/RequestKind::Catchup/Some(Protocol::Mpd)/Encryption::Widevine/p1?query=t=5&x=%C3%A9&client=2001:db8::5&topology=1&tiers=1"
    );
    assert_eq!(
        location("/vod/films/2024/movie.mp4", "10.2.0.1"),
        "http://echo.invalid/RequestKind::Vod/None/Encryption::None/films/2024/movie.mp4?query=-&client=10.2.0.1&topology=1&tiers=2"
    );
    assert_eq!(
        location("/btv/live/mpd_cenc/ch1.mpd", "10.2.0.1"),
        "http://echo.invalid/RequestKind::Live/Some(Protocol::Mpd)/Encryption::Cenc/ch1?query=-&client=10.2.0.1&topology=1&tiers=2"
    );
}

/// A command whose output is cut short (`| head -1`) ends as `cat` does,
/// killed by SIGPIPE, not with a panic and a backtrace.
#[test]
fn a_command_whose_reader_went_away_ends_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(crate::harness::binary())
        .args(["policy", "check"])
        .arg(built_policy("nearest"))
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
}
