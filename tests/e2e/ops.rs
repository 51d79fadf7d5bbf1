//! Operations: liveness and readiness probes, graceful shutdown, JSON logs.

use crate::harness::{Engine, TempDir};

#[test]
fn healthz_and_readyz_need_no_token() {
    let dir = TempDir::new("probes");
    let token = dir.path("token");
    std::fs::write(&token, "secret").unwrap();
    let engine = Engine::start(&["--admin-token-file", token.to_str().unwrap()]);
    for path in ["/healthz", "/readyz"] {
        let resp = engine.admin("GET", path, b"", "application/json", None);
        assert_eq!(resp.status, 200, "{path}: {resp:?}");
    }
    let resp = engine.admin("GET", "/status", b"", "application/json", None);
    assert_eq!(resp.status, 401, "everything else still needs the token");
}

#[test]
fn sigterm_finishes_requests_and_exits_cleanly() {
    let mut engine = Engine::start(&[]);
    let mut conn = engine.connect();
    let resp = conn.request("GET", "/btv/live/hls/ch1.m3u8", &[]);
    assert_eq!(resp.status, 302);
    engine.signal("-TERM");
    assert_eq!(engine.wait_exit(), Some(0));
    let log = engine.log_lines().join("\n");
    assert!(
        log.contains("finishing requests in flight") && log.contains("stopped"),
        "{log}"
    );
    // The idle keep-alive connection was closed, not left hanging.
    assert!(
        conn.try_request("GET", "/btv/live/hls/ch1.m3u8", &[])
            .is_err()
    );
    assert!(
        std::net::TcpStream::connect(engine.addr).is_err(),
        "no longer accepting"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let engine = Engine::start(&["--log-format", "json"]);
    let from = 0;
    engine.wait_log(from, "topology loaded");
    let lines = engine.log_lines();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
}
