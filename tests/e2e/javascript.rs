//! Policies in JavaScript: built from `tests/policies-js/` with
//! componentize-js (from the npm registry, at the committed lockfile's
//! version), loaded by the engine under the same sandbox as Rust ones.

use crate::harness::{Conn, Engine, TempDir, fixtures, wait_until};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `tests/policies-js/NAME.js` built as a component of the `router` world
/// (once per test run), and its path.
fn built_js(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    assert_eq!(name, "hostile", "only hostile.js is built");
    BUILT
        .get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let dir = root.join("tests/policies-js");
            let tool = dir.join("node_modules/.bin/componentize-js");
            assert!(
                tool.exists(),
                "{} is missing: run `npm ci --prefix tests/policies-js` (tests/run does)",
                tool.display()
            );
            let out_dir = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"))
                .join("js-policies");
            std::fs::create_dir_all(&out_dir).unwrap();
            let out = out_dir.join(format!("{name}.wasm"));
            let built = Command::new(&tool)
                .current_dir(&dir)
                .args(["--wit", "../../wit", "--world-name", "router"])
                .args(["--disable", "http", "fetch-event", "-o"])
                .arg(&out)
                .arg(format!("{name}.js"))
                .output()
                .expect("running componentize-js");
            assert!(
                built.status.success(),
                "componentize-js: {}",
                String::from_utf8_lossy(&built.stderr)
            );
            out
        })
        .clone()
}

fn get(engine: &Engine, path: &str, client: &str) -> (u16, String, String) {
    let r = engine.get(path, &[("X-Real-IP", client)]);
    let policy = r.header("edgeward-policy").unwrap_or_default().to_string();
    let location = r.header("location").unwrap_or_default().to_string();
    (r.status, location, policy)
}

fn policies(engine: &Engine) -> Vec<Value> {
    let r = Conn::open(engine.admin.unwrap()).request("GET", "/policies", &[]);
    serde_json::from_str::<Value>(&r.body).unwrap()["policies"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_javascript_policy_decides_and_its_misdeeds_are_contained() {
    let wasm = built_js("hostile");
    let topology = fixtures().join("routing.json");
    let engine = Engine::start(&[
        "--topology",
        topology.to_str().unwrap(),
        "--policy",
        wasm.to_str().unwrap(),
    ]);
    // It decides: the first eligible edge of the client's region.
    let (status, location, policy) = get(&engine, "/btv/live/hls/ch1", "10.1.2.3");
    assert_eq!((status, policy.as_str()), (302, "hostile@1"), "{location}");
    assert!(location.starts_with("http://e-city.test/"), "{location}");
    // What it prints reaches the log, tagged with the policy.
    let ready = engine.wait_log(0, "hostile.js: ready");
    assert!(
        ready.contains("policy=\"hostile\"") && ready.contains("stdout"),
        "{ready}"
    );

    // A loop, a throw, unbounded allocation and a flood of output: each
    // call fails and is answered by the fallback; the engine lives on.
    for how in ["loop", "throw", "alloc", "spam"] {
        let (status, _, policy) = get(&engine, &format!("/vod/{how}"), "10.1.2.3");
        assert_eq!((status, policy.as_str()), (302, "native"), "{how}");
        let (status, _, policy) = get(&engine, "/btv/live/hls/ch1", "10.1.2.3");
        assert_eq!((status, policy.as_str()), (302, "hostile@1"), "after {how}");
    }
    let log = engine.log_lines();
    let spam = log.iter().filter(|l| l.contains("spam line")).count();
    assert!(
        (1..=LINES_LOGGED * 2).contains(&spam),
        "{spam} lines of the flood logged"
    );
    assert!(
        log.iter().any(|l| l.contains("deadline exceeded")),
        "{log:?}"
    );
    let p = &policies(&engine)[0];
    assert!(p["traps"].as_u64().unwrap() >= 4, "{p}");
    assert!(p["deadline_hits"].as_u64().unwrap() >= 1, "{p}");
}

/// Lines of one call's output an instance may log (its limit a second).
pub const LINES_LOGGED: usize = 20;

#[test]
fn a_javascript_policy_is_shadowed_canaried_and_promoted_under_load() {
    let wasm = built_js("hostile");
    let dir = TempDir::new("js-canary");
    let topology = fixtures().join("routing.json");
    let engine = Engine::start(&[
        "--topology",
        topology.to_str().unwrap(),
        "--state-dir",
        dir.path("state").to_str().unwrap(),
    ]);
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    // Answers the JavaScript version gave, as the players saw them.
    let by_js = std::sync::Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, by_js) = (stop.clone(), by_js.clone());
        let addr = engine.addr;
        std::thread::spawn(move || {
            let mut conn = Conn::open(addr);
            let mut done = 0;
            let mut failed = Vec::new();
            let mut by = std::collections::BTreeMap::new();
            // 64 clients: a 50 % canary (by client hash) takes some of them.
            let clients: Vec<String> = (0..64).map(|i| format!("10.{}.{i}.7", i % 8)).collect();
            while !stop.load(Ordering::Relaxed) {
                let client = &clients[done % clients.len()];
                let r = conn.request("GET", "/btv/live/hls/ch1", &[("X-Real-IP", client)]);
                if r.status != 302 {
                    failed.push(format!("{} {}", r.status, r.body));
                }
                let policy = r.header("edgeward-policy").unwrap_or("").to_string();
                if policy == "hostile@2" {
                    by_js.fetch_add(1, Ordering::Relaxed);
                }
                *by.entry(policy).or_insert(0) += 1;
                done += 1;
            }
            (done, failed, by)
        })
    };
    let admin = |method: &str, path: &str, body: &[u8], content_type: &str| {
        let r = engine.admin(method, path, body, content_type, None);
        assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.body);
        serde_json::from_str::<Value>(&r.body).unwrap()
    };
    let up = admin(
        "POST",
        "/policies/hostile",
        &std::fs::read(Path::new(&wasm)).unwrap(),
        "application/wasm",
    );
    assert_eq!(up["version"], 2, "{up}");
    admin(
        "PUT",
        "/shadow",
        br#"{"version": 2, "sample_percent": 100}"#,
        "application/json",
    );
    wait_until("the shadow compares answers", || {
        let v = admin("GET", "/shadow", b"", "application/json");
        v["report"]["compared"].as_u64().unwrap_or(0) >= 50
    });
    let stopped = admin("DELETE", "/shadow", b"", "application/json");
    assert_eq!(
        stopped["stopped"]["report"]["shadow_failures"], 0,
        "{stopped}"
    );
    admin(
        "PUT",
        "/canary",
        br#"{"version": 2, "percent": 50}"#,
        "application/json",
    );
    wait_until("the canary answers players", || {
        by_js.load(Ordering::Relaxed) > 50
    });
    admin("POST", "/canary/promote", b"", "application/json");
    let after = engine.get("/btv/live/hls/ch1", &[("X-Real-IP", "10.1.2.3")]);
    assert_eq!(after.header("edgeward-policy"), Some("hostile@2"));
    let promoted = by_js.load(Ordering::Relaxed);
    wait_until("the promoted version answers the players", || {
        by_js.load(Ordering::Relaxed) > promoted + 200
    });
    stop.store(true, Ordering::Relaxed);
    let (done, failed, by) = load.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {done} requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(
        by.contains_key("nearest@1") && by.contains_key("hostile@2"),
        "{by:?}"
    );
    assert!(!by.contains_key("native"), "no call failed: {by:?}");
}
