//! `edgeward ctl` against a real engine: human and JSON output, and a
//! non-zero exit with a clear message on every failure.

use crate::harness::{Engine, TempDir, binary, built_policy, fixtures};
use std::process::Command;

pub fn ctl(engine: &Engine, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary())
        .arg("ctl")
        .arg("--admin")
        .arg(format!("http://{}", engine.admin.unwrap()))
        .args(args)
        .env_remove("EDGEWARD_ADMIN_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ctl_drives_policies_servers_and_topology() {
    let engine = Engine::start(&[
        "--topology",
        fixtures().join("routing.json").to_str().unwrap(),
        "--watch-interval-ms",
        "0",
    ]);
    let (ok, out, err) = ctl(&engine, &["status"]);
    assert!(ok, "{err}");
    assert!(out.contains("active policy   nearest@1"), "{out}");

    let dir = TempDir::new("ctl");
    let config = dir.path("c.toml");
    std::fs::write(&config, "key = \"client\"\n").unwrap();
    let wasm = built_policy("consistent");
    let (ok, out, err) = ctl(
        &engine,
        &[
            "push",
            "consistent",
            wasm.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--activate",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.starts_with("accepted consistent@2") && out.contains("active"),
        "{out}"
    );
    let (ok, out, _) = ctl(&engine, &["policies"]);
    assert!(
        ok && out.contains("consistent") && out.contains("active") && out.contains("previous"),
        "{out}"
    );
    let (ok, out, _) = ctl(&engine, &["--json", "policies"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(ok && v["policies"].as_array().unwrap().len() == 2);
    let (ok, _, err) = ctl(&engine, &["rollback"]);
    assert!(ok, "{err}");
    let (ok, _, err) = ctl(&engine, &["canary", "set", "2", "20"]);
    assert!(ok, "{err}");
    let (ok, out, _) = ctl(&engine, &["status"]);
    assert!(
        ok && out.contains("canary          consistent@2 at 20%"),
        "{out}"
    );
    let (ok, _, _) = ctl(&engine, &["canary", "abort"]);
    assert!(ok);

    let (ok, out, _) = ctl(&engine, &["drain", "e-city"]);
    assert!(ok, "{out}");
    let (ok, out, _) = ctl(&engine, &["servers"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with("e-city") && l.contains("draining")),
        "{out}"
    );
    assert!(ctl(&engine, &["undrain", "e-city"]).0);

    // Failures: non-zero exit, a message naming the problem.
    let (ok, _, err) = ctl(&engine, &["activate", "99"]);
    assert!(
        !ok && err.contains("404") && err.contains("no policy version 99"),
        "{err}"
    );
    let (ok, _, err) = ctl(&engine, &["drain", "nope"]);
    assert!(!ok && err.contains("nope"), "{err}");
    let bad = dir.path("bad.json");
    std::fs::write(&bad, r#"{"regions": [], "subnets": [{"cidr": "x", "region": "y"}], "server_groups": [], "servers": [], "channels": []}"#).unwrap();
    let (ok, _, err) = ctl(&engine, &["topology", "push", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("422") && err.contains("\"x\""), "{err}");
    let (ok, out, _) = ctl(&engine, &["topology", "show"]);
    assert!(ok && out.contains("e-city"), "the old topology is kept");
    let (ok, _, err) = ctl(&engine, &["push", "junk", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("422"), "{err}");
}

#[test]
fn ctl_fails_clearly_without_a_node_or_with_a_wrong_token() {
    let out = Command::new(binary())
        .args(["ctl", "--admin", "http://127.0.0.1:1", "status"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot reach the admin API"),
        "{err}"
    );

    let dir = TempDir::new("ctl-token");
    let token = dir.path("token");
    std::fs::write(&token, "right").unwrap();
    let engine = Engine::start(&["--admin-token-file", token.to_str().unwrap()]);
    let (ok, _, err) = ctl(&engine, &["status"]);
    assert!(!ok && err.contains("401"), "{err}");
    let out = Command::new(binary())
        .args([
            "ctl",
            "--admin",
            &format!("http://{}", engine.admin.unwrap()),
            "--token-file",
        ])
        .arg(&token)
        .arg("status")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ctl_creates_lists_updates_and_deletes_entities_from_json_and_toml() {
    let engine = Engine::start(&[
        "--topology",
        fixtures().join("routing.json").to_str().unwrap(),
    ]);
    let dir = TempDir::new("ctl-entities");
    let server = dir.path("server.toml");
    std::fs::write(
        &server,
        "id = \"e-ctl\"\nkind = \"edge\"\nhost = \"e-ctl.test\"\nport = 80\n",
    )
    .unwrap();
    let (ok, out, err) = ctl(&engine, &["create", "servers", server.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.starts_with("created servers/e-ctl\nrevision "), "{out}");

    let (ok, out, err) = ctl(&engine, &["get", "servers", "e-ctl"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("e-ctl (revision "), "{out}");
    assert!(out.contains("host           e-ctl.test"), "{out}");
    let (ok, out, _) = ctl(&engine, &["--json", "get", "servers", "e-ctl"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(ok);
    let revision = v["revision"].to_string();

    let patch = dir.path("patch.json");
    std::fs::write(&patch, r#"{"weight": 5}"#).unwrap();
    let (ok, out, err) = ctl(
        &engine,
        &[
            "--if-match",
            &revision,
            "update",
            "servers",
            "e-ctl",
            patch.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("updated servers/e-ctl"), "{out}");
    // The same revision again: a conflict, one line, non-zero exit.
    let (ok, _, err) = ctl(
        &engine,
        &[
            "--if-match",
            &revision,
            "update",
            "servers",
            "e-ctl",
            patch.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("409") && err.contains("read it again and retry"),
        "{err}"
    );

    let (ok, out, err) = ctl(
        &engine,
        &["list", "servers", "--where", "weight=5", "--order-by=-id"],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("KEY"), "{out}");
    assert!(
        out.contains("e-ctl") && out.contains("1 of 1 servers"),
        "{out}"
    );

    let (ok, _, err) = ctl(&engine, &["delete", "servers", "e-wide"]);
    assert!(!ok);
    assert!(
        err.contains("still a member of server group \"g-wide\""),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (ok, out, err) = ctl(&engine, &["delete", "servers", "e-ctl"]);
    assert!(ok && out.starts_with("deleted servers/e-ctl"), "{out}{err}");

    let (ok, out, err) = ctl(&engine, &["audit", "--since", "0"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("create servers/e-ctl") && out.contains("weight: 1 -> 5"),
        "{out}"
    );
    let (ok, _, err) = ctl(&engine, &["get", "satellites", "x"]);
    assert!(!ok && err.contains("no kind of entity"), "{err}");
}
