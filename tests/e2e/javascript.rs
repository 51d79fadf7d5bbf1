//! Policies in JavaScript: the shipped ones (`policies/js/`), the test
//! ones (`tests/policies-js/`) and one made by `edgeward policy new --lang
//! js`, built with componentize-js (from the npm registry, at the
//! committed lockfile's version: `policies/js/package-lock.json`), loaded
//! by the engine under the same sandbox as Rust ones, and the JavaScript
//! SDK held to the Rust SDK's answers.

use crate::harness::{Conn, Engine, TempDir, binary, built_policy, fixtures, wait_until};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// componentize-js, as `npm ci --prefix policies/js` installs it.
fn componentize_js() -> PathBuf {
    let tool = root().join("policies/js/node_modules/.bin/componentize-js");
    assert!(
        tool.exists(),
        "{} is missing: run `npm ci --prefix policies/js` (tests/run does)",
        tool.display()
    );
    tool
}

/// The JavaScript policy `source` (relative to the repository) built as a
/// component of the `router` world, once per test run; its path. It is
/// built from the repository's root, where its relative imports (the SDK
/// in `sdk/js/`) resolve.
fn built_js(source: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get_or_insert_with(HashMap::new).get(source) {
        return path.clone();
    }
    let out_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("js-policies");
    std::fs::create_dir_all(&out_dir).unwrap();
    let stem = Path::new(source).file_stem().unwrap().to_str().unwrap();
    let out = out_dir.join(format!("{stem}.wasm"));
    let run = Command::new(componentize_js())
        .current_dir(root())
        .args(["--wit", "wit", "--world-name", "router"])
        .args(["--disable", "http", "fetch-event", "-o"])
        .arg(&out)
        .arg(source)
        .output()
        .expect("running componentize-js");
    assert!(
        run.status.success(),
        "componentize-js {source}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    built
        .get_or_insert_with(HashMap::new)
        .insert(source.to_string(), out.clone());
    out
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
    let wasm = built_js("tests/policies-js/hostile.js");
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
fn a_policy_runs_under_the_limits_stored_with_it() {
    let wasm = std::fs::read(built_js("tests/policies-js/hostile.js")).unwrap();
    let topology = fixtures().join("routing.json");
    let engine = Engine::start(&["--topology", topology.to_str().unwrap()]);
    let upload = |query: &str| {
        engine.admin(
            "POST",
            &format!("/policies/roomy{query}"),
            &wasm,
            "application/wasm",
            None,
        )
    };

    // Out of range or malformed: refused, naming the field and the value.
    for (query, said) in [
        (
            "?deadline_ms=0",
            "limits.deadline_ms: 0 is out of range (1–1000 ms)",
        ),
        (
            "?memory_mib=4096",
            "limits.memory_mib: 4096 is out of range (1–1024 MiB)",
        ),
        (
            "?deadline_ms=soon",
            "limits.deadline_ms: \"soon\" is not a whole number",
        ),
    ] {
        let r = upload(query);
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        let error: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(error["error"], said, "{query}");
    }
    let r = engine.admin_json(
        "POST",
        "/policies/roomy",
        serde_json::json!({"wasm_base64": "AA==", "limits": {"deadline": 5}}),
    );
    assert_eq!(r.0, 400, "{}", r.1);
    assert!(
        r.1.to_string().contains("unknown field `deadline`"),
        "{}",
        r.1
    );

    // Too little memory for a JavaScript engine: it cannot be instantiated,
    // which is said, and nothing is loaded.
    let r = upload("?memory_mib=1");
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("cannot be instantiated"), "{}", r.body);
    assert_eq!(policies(&engine).len(), 1, "only the built-in policy");

    // Its own limits, stored and reported; the built-in keeps the host's.
    let r = upload("?deadline_ms=40&memory_mib=64&activate=true");
    assert_eq!(r.status, 201, "{}", r.body);
    let up: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        up["limits"],
        serde_json::json!({"deadline_ms": 40, "memory_mib": 64})
    );
    let listed = policies(&engine);
    let roomy = listed.iter().find(|p| p["name"] == "roomy").unwrap();
    assert_eq!(
        roomy["limits"],
        serde_json::json!({"deadline_ms": 40, "memory_mib": 64})
    );
    assert_eq!(
        (roomy["deadline_ms"].as_f64(), roomy["memory_mib"].as_f64()),
        (Some(40.0), Some(64.0))
    );
    let builtin = listed.iter().find(|p| p["name"] == "nearest").unwrap();
    assert_eq!(builtin["limits"], serde_json::json!({}));
    assert_eq!(
        (
            builtin["deadline_ms"].as_f64(),
            builtin["memory_mib"].as_f64()
        ),
        (Some(5.0), Some(16.0))
    );

    // It serves, and its misdeeds are still contained under the larger
    // limits: the loop runs out of its (larger) fuel, the hoard out of its
    // (larger) memory.
    let (status, _, policy) = get(&engine, "/btv/live/hls/ch1", "10.1.2.3");
    assert_eq!((status, policy), (302, format!("roomy@{}", up["version"])));
    for how in ["loop", "alloc"] {
        let (status, _, policy) = get(&engine, &format!("/vod/{how}"), "10.1.2.3");
        assert_eq!((status, policy.as_str()), (302, "native"), "{how}");
    }
    let roomy = policies(&engine)
        .into_iter()
        .find(|p| p["name"] == "roomy")
        .unwrap();
    assert!(roomy["deadline_hits"].as_u64().unwrap() >= 1, "{roomy}");
    let traps = roomy["traps"].as_u64().unwrap();

    // A policy whose memory grows call after call (a quarter of a MiB a
    // call here; componentize-js's runtime itself grows a little) is
    // given a fresh instance before it reaches its cap: every call is
    // answered by it, none traps.
    let label = format!("roomy@{}", up["version"]);
    let mut conn = Conn::open(engine.addr);
    for i in 0..400 {
        let r = conn.request("GET", "/vod/grow", &[("X-Real-IP", "10.1.2.3")]);
        let policy = r.header("edgeward-policy").unwrap_or_default();
        assert_eq!((r.status, policy), (302, label.as_str()), "call {i}");
    }
    let roomy = policies(&engine)
        .into_iter()
        .find(|p| p["name"] == "roomy")
        .unwrap();
    assert_eq!(roomy["traps"].as_u64(), Some(traps), "{roomy}");
    assert!(roomy["recycled"].as_u64().unwrap() >= 2, "{roomy}");
    drop(engine);

    // The offline commands take the same limits.
    let file = built_js("tests/policies-js/hostile.js");
    let check = |extra: &[&str]| {
        Command::new(binary())
            .args(["policy", "check"])
            .arg(&file)
            .args(["--topology", topology.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let roomy = check(&["--deadline-ms", "40", "--memory-mib", "64"]);
    assert!(
        roomy.status.success(),
        "{}",
        String::from_utf8_lossy(&roomy.stderr)
    );
    let cramped = check(&["--memory-mib", "1"]);
    let said = String::from_utf8_lossy(&cramped.stderr);
    assert!(
        !cramped.status.success() && said.contains("cannot be instantiated"),
        "{said}"
    );
    let wrong = check(&["--deadline-ms", "0"]);
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success() && said.contains("limits.deadline_ms: 0 is out of range"),
        "{said}"
    );
}

/// `edgeward policy new NAME --lang js` in `dir`, built with `policy
/// build`; the component's path. The project's `node_modules` is
/// `policies/js`'s: its lockfile is that one (only the project's name
/// differs), so `npm ci` would install the same packages again.
fn policy_from_the_template(dir: &TempDir, name: &str) -> PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new(binary()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "edgeward {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let parent = dir.path("");
    let wrote = run(&[
        "policy",
        "new",
        name,
        "--lang",
        "js",
        "--into",
        parent.to_str().unwrap(),
    ]);
    assert!(wrote.contains("npm ci && edgeward policy build"), "{wrote}");
    let project = dir.path(name);
    for file in [
        "package.json",
        "package-lock.json",
        "policy.js",
        "cases.toml",
        "wit/policy.wit",
        "edgeward/edgeward.js",
        "edgeward/edgeward.d.ts",
        "edgeward/testing/host.js",
    ] {
        assert!(project.join(file).is_file(), "policy new wrote no {file}");
    }
    let lock: Value =
        serde_json::from_str(&std::fs::read_to_string(project.join("package-lock.json")).unwrap())
            .unwrap();
    assert_eq!(lock["name"], name);
    assert_eq!(lock["packages"][""]["name"], name);
    // Without its packages, build says what to do.
    let out = Command::new(binary())
        .args(["policy", "build"])
        .arg(&project)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run `npm ci`"), "{err}");
    std::os::unix::fs::symlink(
        root().join("policies/js/node_modules"),
        project.join("node_modules"),
    )
    .unwrap();
    let built: Value = serde_json::from_str(&run(&[
        "policy",
        "build",
        project.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(built["contract"], "edgeward:policy@0.4.0", "{built}");
    assert!(built["size"].as_u64().unwrap() > 1_000_000, "{built}");
    let wasm = PathBuf::from(built["path"].as_str().unwrap());
    assert!(
        wasm.ends_with(format!("target/edgeward/{name}.wasm")),
        "{built}"
    );
    // The template's cases hold through the engine's request path.
    let tested = run(&[
        "policy",
        "test",
        wasm.to_str().unwrap(),
        "--cases",
        project.join("cases.toml").to_str().unwrap(),
    ]);
    assert!(tested.contains("4 passed"), "{tested}");
    wasm
}

#[test]
fn a_javascript_policy_from_the_template_is_shadowed_canaried_and_promoted_under_load() {
    let dir = TempDir::new("js-canary");
    let wasm = policy_from_the_template(&dir, "js-nearest");
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
                if policy == "js-nearest@2" {
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
        "/policies/js-nearest",
        &std::fs::read(&wasm).unwrap(),
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
    let report = &stopped["stopped"]["report"];
    assert_eq!(report["shadow_failures"], 0, "{stopped}");
    // The JavaScript nearest draws what the Rust one draws (the shadow's
    // call is seeded like the primary's): every answer agrees.
    assert_eq!(report["agreed"], report["compared"], "{stopped}");
    assert_eq!(stopped["stopped"]["agreement"], 1.0, "{stopped}");
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
    assert_eq!(after.header("edgeward-policy"), Some("js-nearest@2"));
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
        by.contains_key("nearest@1") && by.contains_key("js-nearest@2"),
        "{by:?}"
    );
    assert!(!by.contains_key("native"), "no call failed: {by:?}");
}

/// The JavaScript SDK's own tests (`node --test`) against the golden
/// vectors the codec and the Rust SDK wrote (`sdk/tests/js_vectors.rs`
/// checks that the committed file is what they write today).
#[test]
fn the_javascript_sdk_answers_as_the_rust_sdk() {
    let sdk = root().join("sdk/js");
    let out = Command::new("node")
        .current_dir(&sdk)
        .args(["--import", "./testing/register.js", "--test", "test/"])
        .output()
        .expect("running node");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("# fail 0") && !report.contains("# pass 0"),
        "{report}"
    );
}

/// The shipped JavaScript nearest and consistent give the Rust ones'
/// answers: the Rust policy's decisions, logged by a real engine over
/// clients of every kind (IPv4, IPv6, subnets and none, every URL kind,
/// a server down), replay through the JavaScript one with every answer
/// the same (nearest's random draws included: the seed is in the log).
#[test]
fn javascript_nearest_and_consistent_answer_as_the_rust_ones() {
    let topology = fixtures().join("routing.json");
    let dir = TempDir::new("js-conformance");
    for (rust, js, config) in [
        ("nearest", "policies/js/nearest.js", "{}"),
        ("consistent", "policies/js/consistent.js", "{}"),
        (
            "consistent",
            "policies/js/consistent.js",
            r#"{"key": "client"}"#,
        ),
    ] {
        let js = built_js(js);
        let config_file = dir.path(&format!("{rust}-{}.json", config.len()));
        std::fs::write(&config_file, config).unwrap();
        let log = dir.path(&format!("{rust}-{}.jsonl", config.len()));
        let engine = Engine::start(&[
            "--topology",
            topology.to_str().unwrap(),
            "--policy",
            built_policy(rust).to_str().unwrap(),
            "--policy-config",
            config_file.to_str().unwrap(),
            "--decision-log",
            log.to_str().unwrap(),
            "--decision-log-sample",
            "1",
        ]);
        let mut conn = engine.connect();
        let mut sent = 0;
        let clients = [
            "10.1.2.3",
            "10.1.9.200",
            "10.6.0.4",
            "192.0.2.1",
            "2001:db8::1",
            "2001:db8:1::7",
            "::ffff:10.1.2.3",
            "fe80::1:0:0:0",
        ];
        let paths = [
            "/btv/live/hls/ch1.m3u8",
            "/btv/live/mpd_wv/ch1.mpd",
            "/btv/catchup/hls/p1.m3u8?t=5",
            "/vod/films/a.mp4?token=x",
            "/static/logo.png",
            "/vod/films/b.mp4",
        ];
        // Each request four times: nearest draws anew each time.
        for _ in 0..4 {
            for client in clients {
                for path in paths {
                    let r = conn.request("GET", path, &[("X-Real-IP", client)]);
                    assert_eq!(r.status, 302, "{client} {path}: {r:?}");
                    sent += 1;
                }
            }
        }
        wait_until("every decision is logged", || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.matches("\"request_id\"").count() >= sent)
        });
        drop(engine);
        let out = Command::new(binary())
            .args(["policy", "replay"])
            .arg(&js)
            .arg("--config")
            .arg(&config_file)
            .arg("--log")
            .arg(&log)
            .arg("--topology")
            .arg(&topology)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let decisions = report["decisions"].as_u64().unwrap();
        assert!(decisions > 100, "{rust} {config}: {report:#}");
        assert_eq!(report["same"], decisions, "{rust} {config}: {report:#}");
    }
}
