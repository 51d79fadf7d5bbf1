//! The policy author's path outside this repository: `policy new` writes a
//! standalone crate, its own `cargo test` runs, `policy build` makes the
//! component, and the engine loads it. One test builds a crate (it takes a
//! while: the SDK's macros compile), the others check refusals.

use crate::harness::{Engine, TempDir, binary, fixtures};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

/// `edgeward ARGS` in `dir`, with none of the outer build's flags.
fn edgeward(dir: &Path, args: &[&str]) -> Output {
    clean(Command::new(binary()).args(args).current_dir(dir))
        .output()
        .unwrap()
}

/// A command without the flags a surrounding cargo or coverage run sets
/// (the author's build must not inherit them).
fn clean(cmd: &mut Command) -> &mut Command {
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `(name, version)` of every locked package.
fn locked(lock: &Path) -> BTreeSet<(String, String)> {
    let parsed: toml::Table = toml::from_str(&std::fs::read_to_string(lock).unwrap()).unwrap();
    parsed["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The quickstart block of the README, as it stands.
fn quickstart() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let start = readme
        .find("<!-- quickstart")
        .expect("README has a quickstart");
    let block = &readme[start..];
    let body = &block[block.find("```sh\n").unwrap() + 6..];
    body[..body.find("```").unwrap()].to_string()
}

/// `(name, version)` of every locked package but the crate's own.
fn locked_deps(lock: &Path, own: &str) -> BTreeSet<(String, String)> {
    locked(lock).into_iter().filter(|(n, _)| n != own).collect()
}

/// The one test that builds a policy crate (the SDK's macros take a while):
/// the README's quickstart, run as it stands, outside the repository.
#[test]
fn the_readme_quickstart_works_outside_the_repository() {
    let dir = TempDir::new("quickstart");
    let decisions = dir.path("decisions.jsonl");
    let engine = Engine::start(&[
        "--decision-log",
        decisions.to_str().unwrap(),
        "--decision-log-sample",
        "1",
    ]);
    // Traffic for the replay step.
    let mut conn = engine.connect();
    for i in 0..50 {
        let ip = format!("10.1.{i}.3");
        assert_eq!(
            conn.request("GET", &format!("/vod/{i}.mp4"), &[("X-Real-IP", &ip)])
                .status,
            302
        );
    }
    crate::harness::wait_until("the decisions are logged", || {
        std::fs::read_to_string(&decisions).is_ok_and(|t| t.matches("\"request_id\"").count() >= 50)
    });
    let bin_dir = Path::new(binary()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!("set -eux\n{}", quickstart());
    let out = clean(
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(&dir.0)
            .env("PATH", path)
            .env(
                "EDGEWARD_ADMIN",
                format!("http://{}", engine.admin.unwrap()),
            ),
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "the quickstart failed:\n{}",
        text(&out)
    );
    let log = text(&out);
    assert!(log.contains("4 passed, 0 failed"), "{log}");
    assert!(
        log.contains("test the_cases_hold_through_the_engine ... ok"),
        "{log}"
    );
    assert!(log.contains("decisions replayed"), "{log}");
    assert!(log.contains("contract edgeward:policy@0.4.0"), "{log}");
    assert!(log.contains("accepted my-policy@2"), "{log}");

    // The engine serves it for everybody now.
    let resp = engine.get("/vod/a.mp4", &[("X-Real-IP", "10.1.2.3")]);
    assert_eq!(resp.status, 302, "{resp:?}");
    assert_eq!(resp.header("Edgeward-Policy"), Some("my-policy@2"));

    // The crate refers to nothing of this repository.
    let krate = dir.path("my-policy");
    for file in [
        "Cargo.toml",
        "vendor/edgeward-sdk/Cargo.toml",
        "vendor/edgeward-codec/Cargo.toml",
    ] {
        let manifest = std::fs::read_to_string(krate.join(file)).unwrap();
        assert!(!manifest.contains("workspace = true"), "{file}: {manifest}");
        assert!(!manifest.contains("\"../../"), "{file}: {manifest}");
    }
    assert!(krate.join("vendor/wit/policy.wit").is_file());
    // The build kept every version the command locked.
    let out = edgeward(
        &dir.0,
        &["policy", "new", "fresh", "--template", "consistent"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let written = locked_deps(&dir.path("fresh/Cargo.lock"), "fresh");
    assert!(
        written.iter().any(|(n, _)| n == "wit-bindgen"),
        "{written:?}"
    );
    assert_eq!(locked_deps(&krate.join("Cargo.lock"), "my-policy"), written);

    // The plain cargo output goes through `ctl push` too.
    let module = krate.join("target/wasm32-unknown-unknown/release/my_policy.wasm");
    let (ok, out, err) = crate::ctl::ctl(
        &engine,
        &["push", "plain", module.to_str().unwrap(), "--activate"],
    );
    assert!(ok && out.starts_with("accepted plain@3"), "{out}{err}");
}

#[test]
fn policy_new_and_build_refuse_bad_input_clearly() {
    let dir = TempDir::new("authoring-bad");
    let out = edgeward(&dir.0, &["policy", "new", "../escape"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("\"../escape\" is not a crate name"),
        "{}",
        text(&out)
    );
    assert!(!dir.path("escape").exists() && !dir.0.parent().unwrap().join("escape").exists());

    std::fs::create_dir(dir.path("taken")).unwrap();
    let out = edgeward(&dir.0, &["policy", "new", "taken"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("already exists"), "{}", text(&out));

    let out = edgeward(&dir.0, &["policy", "build", "taken"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("has no Cargo.toml"), "{}", text(&out));
}

#[test]
fn policy_test_reports_each_case_and_fails_on_a_mismatch() {
    let dir = TempDir::new("policy-test");
    let cases = dir.path("cases.toml");
    std::fs::write(
        &cases,
        r#"
[[case]]
name = "10.1/16 with e-city down goes to the wide region"
client = "10.1.5.5"
url = "/btv/live/hls/ch1.m3u8"
down = ["e-city"]
expect = { edge = "e-wide" }

[[case]]
name = "wrong on purpose"
client = "10.1.5.5"
url = "/vod/a.mp4"
expect = { host = "nowhere.test" }
"#,
    )
    .unwrap();
    let nearest = crate::harness::built_policy("nearest");
    let topology = fixtures().join("routing.json");
    let args = |cases: &Path| {
        vec![
            "policy".to_string(),
            "test".into(),
            nearest.to_str().unwrap().into(),
            "--cases".into(),
            cases.to_str().unwrap().into(),
            "--topology".into(),
            topology.to_str().unwrap().into(),
        ]
    };
    let run = |cases: &Path| {
        let args = args(cases);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        edgeward(&dir.0, &args)
    };
    let out = run(&cases);
    let report = text(&out);
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains("ok      10.1/16 with e-city down"),
        "{report}"
    );
    assert!(report.contains("FAILED  wrong on purpose"), "{report}");
    assert!(report.contains("expected host nowhere.test"), "{report}");
    assert!(
        report.contains("got      302 http://e-city.test/vod/a.mp4 (edge e-city)"),
        "{report}"
    );
    assert!(
        report.contains("explain:") && report.contains("\"why_not\""),
        "{report}"
    );
    assert!(report.contains("1 passed, 1 failed"), "{report}");

    // A case naming a server that does not exist is refused, named.
    std::fs::write(
        &cases,
        "[[case]]\nclient = \"10.1.5.5\"\nurl = \"/vod/a.mp4\"\ndown = [\"ghost\"]\nexpect = { status = 302 }\n",
    )
    .unwrap();
    let out = run(&cases);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("field `down`: \"ghost\" is not the id of any server"),
        "{}",
        text(&out)
    );
    // A malformed file names the problem.
    std::fs::write(&cases, "[[case]]\nclient = \"not-an-ip\"\n").unwrap();
    let out = run(&cases);
    assert!(!out.status.success());
    assert!(text(&out).contains("cases file"), "{}", text(&out));
    assert!(text(&out).contains("client"), "{}", text(&out));
}
