//! Signed policies: `policy keygen` and `policy sign` make the files, and
//! an engine with `--policy-trust-key` refuses a policy without a valid
//! signature from one of its keys wherever it enters: the --policy file
//! (at start and on reload), an upload (JSON or raw), `ctl push`, etcd.

use crate::etcd::EtcdCluster;
use crate::harness::{Engine, TempDir, binary, built_policy, ctl_at, wait_until};
use base64::Engine as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `edgeward ARGS...`: (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Makes the key pair NAME in `dir`: (secret, public).
fn keygen(dir: &TempDir, name: &str) -> (PathBuf, PathBuf) {
    let (ok, out, err) = run(&["policy", "keygen", name, "--dir", s(&dir.0)]);
    assert!(ok, "{out}{err}");
    (
        dir.path(&format!("{name}.key")),
        dir.path(&format!("{name}.pub")),
    )
}

/// Copies the built policy `policy` to `dir/file` and signs it with
/// `key` as `name`.
fn signed_copy(dir: &TempDir, policy: &str, file: &str, key: &Path, name: &str) -> PathBuf {
    let path = dir.path(file);
    std::fs::copy(built_policy(policy), &path).unwrap();
    let (ok, out, err) = run(&["policy", "sign", s(&path), "--key", s(key), "--name", name]);
    assert!(ok, "{out}{err}");
    path
}

fn sig_of(path: &Path) -> Value {
    let text = std::fs::read_to_string(format!("{}.sig", path.display())).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn upload(engine: &Engine, name: &str, wasm: &Path, signature: Option<Value>) -> (u16, Value) {
    let mut body = json!({
        "wasm_base64": base64::engine::general_purpose::STANDARD.encode(std::fs::read(wasm).unwrap()),
        "activate": true,
    });
    if let Some(sig) = signature {
        body["signature"] = sig;
    }
    engine.admin_json("POST", &format!("/policies/{name}"), body)
}

fn policy_header(engine: &Engine) -> String {
    let r = engine.get("/btv/live/hls/ch1.m3u8", &[("X-Real-IP", "10.1.2.3")]);
    r.header("Edgeward-Policy").unwrap_or_default().to_string()
}

fn listed(engine: &Engine, name: &str) -> Value {
    let (_, v) = engine.admin_json("GET", "/policies", json!(null));
    v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn keygen_writes_a_private_secret_key_and_never_overwrites_one() {
    let dir = TempDir::new("sign-keygen");
    let (secret, public) = keygen(&dir, "ops-2026");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the secret key is readable by its owner only");
    let pubkey = std::fs::read_to_string(&public).unwrap();
    assert!(pubkey.contains("edgeward-policy-public-key-1 "), "{pubkey}");
    assert!(!pubkey.contains("secret-key"), "{pubkey}");
    let before = std::fs::read(&secret).unwrap();
    let (ok, _, err) = run(&["policy", "keygen", "ops-2026", "--dir", s(&dir.0)]);
    assert!(!ok);
    assert!(err.contains("exists; not overwriting"), "{err}");
    assert_eq!(std::fs::read(&secret).unwrap(), before);
    // A name is a file name: nothing that leaves the folder.
    let (ok, _, err) = run(&["policy", "keygen", "../escape", "--dir", s(&dir.0)]);
    assert!(!ok);
    assert!(err.contains("key name \"../escape\""), "{err}");
    // A secret key is not a trust key.
    let (ok, _, err) = run(&[
        "serve",
        "--policy-trust-key",
        s(&secret),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!ok);
    assert!(err.contains("this is a secret key"), "{err}");
}

#[test]
fn policy_check_shows_who_signed_and_whether_the_key_is_trusted() {
    let dir = TempDir::new("sign-check");
    let (secret, public) = keygen(&dir, "ops");
    let (_, stranger) = keygen(&dir, "stranger");
    let file = signed_copy(&dir, "consistent", "spread.wasm", &secret, "spread");
    let (ok, out, err) = run(&["policy", "check", s(&file)]);
    assert!(ok, "{err}");
    assert!(out.contains("signed by ops (key "), "{out}");
    assert!(out.contains("give --trust-key"), "{out}");
    let (ok, out, err) = run(&[
        "policy",
        "check",
        s(&file),
        "--trust-key",
        s(&public),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["signed_by"]["signer"], "ops", "{v}");
    assert_eq!(v["signed_by"]["trusted"], true, "{v}");
    let (ok, _, err) = run(&["policy", "check", s(&file), "--trust-key", s(&stranger)]);
    assert!(!ok);
    assert!(err.contains("not one of this engine's trust keys"), "{err}");
    // The bytes changed after signing: the signature no longer fits.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(&[0, 3, b'x', b'y', b'z']);
    std::fs::write(&file, bytes).unwrap();
    let (ok, _, err) = run(&["policy", "check", s(&file)]);
    assert!(!ok);
    assert!(err.contains("its signature is for other bytes"), "{err}");
    // Unsigned: said so.
    let plain = dir.path("plain.wasm");
    std::fs::copy(built_policy("nearest"), &plain).unwrap();
    let (ok, out, _) = run(&["policy", "check", s(&plain)]);
    assert!(ok && out.contains("not signed"), "{out}");
}

#[test]
fn a_policy_file_must_be_signed_at_start_and_on_reload() {
    let dir = TempDir::new("sign-file");
    let (secret, public) = keygen(&dir, "ops");
    // (Not `nearest`: its bytes are the built-in policy's, which the
    // binary trusts.)
    let unsigned = dir.path("near.wasm");
    std::fs::copy(built_policy("least-loaded"), &unsigned).unwrap();
    let err = Engine::try_start(&["--policy", s(&unsigned), "--policy-trust-key", s(&public)])
        .err()
        .expect("an unsigned policy file is refused at start");
    assert!(
        err.contains("policy \"near\" is refused: it is not signed"),
        "{err}"
    );

    // The built-in policy needs no signature.
    let builtin = Engine::start(&["--policy-trust-key", s(&public)]);
    assert!(policy_header(&builtin).starts_with("nearest@"));
    drop(builtin);

    let file = signed_copy(&dir, "consistent", "spread.wasm", &secret, "spread");
    let engine = Engine::start(&["--policy", s(&file), "--policy-trust-key", s(&public)]);
    assert_eq!(policy_header(&engine), "spread@1");
    let p = listed(&engine, "spread");
    assert_eq!(p["signed_by"]["signer"], "ops", "{p}");
    assert_eq!(p["signed_by"]["trusted"], true, "{p}");

    // Replaced by other bytes under the old signature: refused, kept.
    let from = engine.log_len();
    std::fs::copy(built_policy("least-loaded"), &file).unwrap();
    engine.sighup();
    let line = engine.wait_log(from, "policy reload refused");
    assert!(line.contains("its signature is for other bytes"), "{line}");
    assert_eq!(policy_header(&engine), "spread@1");

    // Signed again: the file watch sees the new signature and loads it.
    let from = engine.log_len();
    let (ok, out, err) = run(&["policy", "sign", s(&file), "--key", s(&secret)]);
    assert!(ok, "{out}{err}");
    engine.wait_log(from, "policy reloaded and activated");
    wait_until("the re-signed file serves", || {
        policy_header(&engine).starts_with("spread@") && policy_header(&engine) != "spread@1"
    });
}

#[test]
fn uploads_and_ctl_push_need_a_trusted_signature_for_their_name() {
    let dir = TempDir::new("sign-upload");
    let (secret, public) = keygen(&dir, "ops");
    let (stranger, _) = keygen(&dir, "stranger");
    let engine = Engine::start(&["--policy-trust-key", s(&public)]);
    let plain = dir.path("plain.wasm");
    std::fs::copy(built_policy("consistent"), &plain).unwrap();

    let (code, v) = upload(&engine, "spread", &plain, None);
    assert_eq!(code, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("it is not signed"),
        "{v}"
    );

    let theirs = signed_copy(&dir, "consistent", "theirs.wasm", &stranger, "spread");
    let (code, v) = upload(&engine, "spread", &theirs, Some(sig_of(&theirs)));
    assert_eq!(code, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not one of this engine's trust keys"),
        "{v}"
    );

    let ours = signed_copy(&dir, "consistent", "ours.wasm", &secret, "spread");
    let (code, v) = upload(&engine, "other-name", &ours, Some(sig_of(&ours)));
    assert_eq!(code, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("for the policy \"spread\", not \"other-name\""),
        "{v}"
    );
    let mut forged = sig_of(&ours);
    forged["ed25519"] = sig_of(&theirs)["ed25519"].clone();
    let (code, v) = upload(&engine, "spread", &ours, Some(forged));
    assert_eq!(code, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("does not verify"),
        "{v}"
    );
    let (code, v) = upload(&engine, "spread", &ours, Some(json!({"format": 1})));
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("missing field"),
        "{v}"
    );
    assert!(
        policy_header(&engine).starts_with("nearest@"),
        "nothing changed"
    );

    let (code, v) = upload(&engine, "spread", &ours, Some(sig_of(&ours)));
    assert_eq!(code, 201, "{v}");
    assert_eq!(policy_header(&engine), format!("spread@{}", v["version"]));
    assert_eq!(listed(&engine, "spread")["signed_by"]["signer"], "ops");

    // Raw bytes, the signature in a header.
    let raw = signed_copy(&dir, "nearest", "raw.wasm", &secret, "raw");
    let sig_line = std::fs::read_to_string(format!("{}.sig", raw.display())).unwrap();
    let bytes = std::fs::read(&raw).unwrap();
    let r = crate::harness::Conn::open(engine.admin.unwrap()).request_with_body(
        "POST",
        "/policies/raw",
        &[
            ("Content-Type", "application/wasm"),
            ("Edgeward-Signature", sig_line.trim()),
        ],
        &bytes,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = crate::harness::Conn::open(engine.admin.unwrap()).request_with_body(
        "POST",
        "/policies/raw",
        &[
            ("Content-Type", "application/wasm"),
            ("Edgeward-Signature", "{"),
        ],
        &bytes,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("header Edgeward-Signature"), "{}", r.body);

    // ctl push sends FILE.sig when it is there, and is refused without.
    let admin = engine.admin.unwrap().to_string();
    let pushed = signed_copy(&dir, "consistent", "pushed.wasm", &secret, "pushed");
    let (ok, out, err) = ctl_at(&admin, &["push", "pushed", s(&pushed), "--activate"], "");
    assert!(ok, "{out}{err}");
    assert!(out.contains("accepted pushed@"), "{out}");
    std::fs::remove_file(format!("{}.sig", pushed.display())).unwrap();
    let (ok, _, err) = ctl_at(&admin, &["push", "pushed", s(&pushed)], "");
    assert!(!ok);
    assert!(err.contains("it is not signed"), "{err}");
}

#[test]
fn each_node_of_a_fleet_verifies_the_signature_that_travels_with_a_policy() {
    let dir = TempDir::new("sign-fleet-keys");
    let (secret, public) = keygen(&dir, "ops");
    let mut etcd = EtcdCluster::start(1, "sign-fleet");
    let state = TempDir::new("sign-fleet-nodes");
    use crate::etcd::node_with;
    // `open` trusts nothing; `strict` only policies signed by ops.
    let open = node_with(&etcd, &state, "open", &[]);
    let strict = node_with(&etcd, &state, "strict", &["--policy-trust-key", s(&public)]);

    // Unsigned through the node that takes it: the strict node refuses to
    // load it from etcd and keeps its policy.
    let plain = dir.path("plain.wasm");
    std::fs::copy(built_policy("consistent"), &plain).unwrap();
    let from = strict.log_len();
    let (code, v) = upload(&open, "spread", &plain, None);
    assert_eq!(code, 201, "{v}");
    wait_until("the open node serves it", || {
        policy_header(&open).starts_with("spread@")
    });
    let line = strict.wait_log(from, "it is not signed");
    assert!(line.contains("spread"), "{line}");
    assert!(policy_header(&strict).starts_with("nearest@"));
    // Nor does the strict node take it itself.
    let (code, v) = upload(&strict, "spread", &plain, None);
    assert_eq!(code, 422, "{v}");

    // Signed: the signature is stored with it, and both nodes serve it.
    let signed = signed_copy(&dir, "consistent", "spread.wasm", &secret, "spread");
    let (code, v) = upload(&open, "spread", &signed, Some(sig_of(&signed)));
    assert_eq!(code, 201, "{v}");
    let label = format!("spread@{}", v["version"]);
    for n in [&open, &strict] {
        wait_until("every node serves the signed policy", || {
            policy_header(n) == label
        });
    }
    let (_, listing) = strict.admin_json("GET", "/policies", json!(null));
    let mine = listing["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["version"] == v["version"])
        .cloned()
        .unwrap();
    assert_eq!(mine["signed_by"]["signer"], "ops", "{mine}");
    assert_eq!(mine["signed_by"]["trusted"], true, "{mine}");
    let digest = v["digest"].as_str().unwrap();
    let record: Value =
        serde_json::from_str(&etcd.get(&format!("/fleet/config/policies/{digest}"))).unwrap();
    assert_eq!(record["signature"], sig_of(&signed), "{record}");

    // Restarted from its disk copy with etcd away: still verified, served.
    drop(strict);
    etcd.stop(0);
    let strict = node_with(&etcd, &state, "strict", &["--policy-trust-key", s(&public)]);
    wait_until("the strict node serves from its disk copy", || {
        policy_header(&strict) == label
    });
}
