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

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let dir = TempDir::new("unit");
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/edgeward.service"),
    )
    .unwrap();
    // Point ExecStart at the binary under test (verify checks it exists).
    let path = dir.path("edgeward.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/edgeward", crate::harness::binary()),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package) is needed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}

#[test]
fn ready_and_watchdog_notifications_reach_systemd() {
    use std::os::unix::net::UnixDatagram;
    let dir = TempDir::new("notify");
    let socket_path = dir.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut child = std::process::Command::new(crate::harness::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let n = socket.recv(&mut buf).expect("a notification");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen[0], "READY=1");
    assert!(seen[1..].iter().all(|s| s == "WATCHDOG=1"), "{seen:?}");
}

#[test]
fn metrics_count_requests_by_kind_and_status() {
    let engine = Engine::start(&[]);
    let mut conn = engine.connect();
    for _ in 0..3 {
        assert_eq!(
            conn.request("GET", "/btv/live/hls/ch1.m3u8", &[]).status,
            302
        );
    }
    conn.request("GET", "/vod/a.mp4", &[]);
    conn.request("GET", "/btv/live/hls/nope", &[]);
    conn.request("GET", "/nothing", &[]);
    conn.request("POST", "/vod/a.mp4", &[("Content-Length", "0")]);
    let resp = engine.admin("GET", "/metrics", b"", "text/plain", None);
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("Content-Type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = resp.body;
    let total = |kind: &str, code: u16| -> u64 {
        text.lines()
            .filter(|l| {
                l.starts_with(&format!(
                    "edgeward_requests_total{{kind=\"{kind}\",code=\"{code}\","
                ))
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(total("live", 302), 3, "{text}");
    assert_eq!(total("vod", 302), 1);
    assert_eq!(total("live", 404), 1);
    assert_eq!(total("other", 404), 1);
    assert_eq!(total("other", 405), 1);
    for name in [
        "edgeward_decision_duration_seconds_bucket",
        "edgeward_policy_info{policy=\"nearest\",version=\"1\",role=\"active\"",
        "edgeward_policy_calls_total{policy=\"nearest\",version=\"1\"}",
        "edgeward_topology_info{version=\"1\"",
        "edgeward_server_state{server=\"edge-msk-1\",state=\"unknown\"} 1",
        "edgeward_build_info",
        "edgeward_ready 1",
    ] {
        assert!(text.contains(name), "missing {name}:\n{text}");
    }
    assert!(text.trim_end().ends_with("# EOF"));

    // Redirects per server and per region (the 3 live requests and the VOD
    // one, all from loopback: the msk region's two edges).
    let sum = |text: &str, prefix: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(
        sum(&text, "edgeward_server_redirects_total{server=\"edge-msk-"),
        4,
        "{text}"
    );
    assert_eq!(
        sum(&text, "edgeward_region_redirects_total{region=\"msk\"}"),
        4
    );
    // They survive a topology swap (the workers' tables are folded by id).
    let topology = engine
        .admin("GET", "/topology", b"", "application/json", None)
        .body;
    let swapped = engine.admin(
        "PUT",
        "/topology",
        topology.as_bytes(),
        "application/json",
        None,
    );
    assert_eq!(swapped.status, 200, "{swapped:?}");
    for _ in 0..2 {
        assert_eq!(
            conn.request("GET", "/btv/live/hls/ch1.m3u8", &[]).status,
            302
        );
    }
    let text = engine
        .admin("GET", "/metrics", b"", "text/plain", None)
        .body;
    assert_eq!(
        sum(&text, "edgeward_server_redirects_total{server=\"edge-msk-"),
        6,
        "{text}"
    );
    assert_eq!(
        sum(&text, "edgeward_region_redirects_total{region=\"msk\"}"),
        6
    );

    // A static file's kind is `static` (not the Rust identifier `r#static`).
    assert_eq!(conn.request("GET", "/static/logo.png", &[]).status, 302);
    let text = engine
        .admin("GET", "/metrics", b"", "text/plain", None)
        .body;
    assert!(
        text.lines()
            .any(|l| l.starts_with("edgeward_requests_total{kind=\"static\",code=\"302\",")),
        "{text}"
    );
    assert!(!text.contains("r#static"), "{text}");
}

#[test]
fn the_decision_log_records_sampled_decisions_and_rotates() {
    let dir = TempDir::new("decisions");
    let log = dir.path("decisions.jsonl");
    let engine = Engine::start(&[
        "--decision-log",
        log.to_str().unwrap(),
        "--decision-log-sample",
        "1",
        "--decision-log-max-mib",
        "0",
    ]);
    let mut conn = engine.connect();
    for _ in 0..20 {
        conn.request(
            "GET",
            "/btv/live/hls/ch1.m3u8?t=1",
            &[("X-Real-IP", "10.2.0.9")],
        );
    }
    // Rotation at the 4 KiB floor keeps FILE.1..FILE.3 beside FILE.
    // Rotation keeps at most four small files, so not every record stays:
    // wait for a rotation and at least 8 records.
    let records = crate::harness::eventually("a rotated log with 8 records", || {
        let mut all = Vec::new();
        for name in [
            "decisions.jsonl",
            "decisions.jsonl.1",
            "decisions.jsonl.2",
            "decisions.jsonl.3",
        ] {
            if let Ok(text) = std::fs::read_to_string(dir.path(name)) {
                // Each file describes the topology before its first
                // decision on it, so that a replay needs no other file.
                if let Some(first) = text.lines().next() {
                    let first: serde_json::Value = serde_json::from_str(first).unwrap();
                    assert_eq!(first["record"], "topology", "{name}: {first}");
                    let servers = first["servers"].as_array().unwrap();
                    assert!(
                        servers.iter().any(|s| s["id"] == "edge-spb-1"
                            && s["host"] == "e1.spb.cdn.example"
                            && s["port"] == 8080),
                        "{first}"
                    );
                }
                all.extend(
                    text.lines()
                        .filter(|l| !l.contains(r#""record":"topology""#))
                        .map(str::to_string),
                );
            }
        }
        (all.len() >= 8 && dir.path("decisions.jsonl.1").exists()).then_some(all)
    });
    assert!(dir.path("decisions.jsonl.1").exists(), "the log rotated");
    assert!(records.len() >= 8, "{} records kept", records.len());
    let r: serde_json::Value = serde_json::from_str(&records[0]).unwrap();
    assert_eq!(r["client"], "10.2.0.9");
    assert!(r["request_id"].as_str().unwrap().contains('-'));
    assert_eq!(r["kind"], "live");
    assert_eq!(r["target"], "ch1");
    assert_eq!(r["query"], "t=1");
    assert_eq!(r["status"], 302);
    assert_eq!(r["policy"], "nearest@1");
    assert_eq!(r["tiers"][0]["region"], "spb");
    assert_eq!(r["tiers"][0]["subnet"], "10.2.0.0/16");
    assert_eq!(r["tiers"][0]["candidates"][0]["server"], "edge-spb-1");
    assert!(
        r["location"]
            .as_str()
            .unwrap()
            .starts_with("http://e1.spb.cdn.example:8080/")
    );
    assert!(r["duration_us"].as_f64().unwrap() > 0.0);
    // Records the writer could not keep up with are counted, not hidden.
    let metrics = engine
        .admin("GET", "/metrics", b"", "text/plain", None)
        .body;
    assert!(
        metrics.contains("edgeward_decision_log_dropped_total "),
        "{metrics}"
    );
}

#[test]
fn compiled_policies_are_kept_on_disk_and_a_damaged_cache_is_recompiled() {
    let dir = TempDir::new("policy-cache");
    let cache = dir.path("cache");
    let cached = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&cache)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let args = ["--policy-cache-dir", cache.to_str().unwrap()];
    let first = Engine::start(&args);
    assert_eq!(first.get("/btv/live/hls/ch1.m3u8", &[]).status, 302);
    drop(first);
    let files = cached();
    assert_eq!(files.len(), 1, "one compiled component: {files:?}");
    let hash = edgeward::sha256_hex(edgeward::builtin::NEAREST);
    assert!(
        files[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&hash),
        "{files:?}"
    );

    // A damaged file is refused (it has no seal), compiled again and
    // replaced; the engine serves all the same.
    std::fs::write(&files[0], b"not a compiled component").unwrap();
    let second = Engine::start(&args);
    second.wait_log(0, "compiling again");
    assert_eq!(second.get("/btv/live/hls/ch1.m3u8", &[]).status, 302);
    assert_ne!(
        std::fs::read(&files[0]).unwrap(),
        b"not a compiled component"
    );
    drop(second);
    let third = Engine::start(&args);
    assert!(
        !third
            .log_lines()
            .iter()
            .any(|l| l.contains("compiling again")),
        "the replaced file is good"
    );
    drop(third);
    // One byte of machine code changed, which wasmtime's header checks
    // cannot see: the seal does, and the file is never deserialised.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&files[0], &bytes).unwrap();
    let fourth = Engine::start(&args);
    let line = fourth.wait_log(0, "compiling again");
    assert!(line.contains("do not match their SHA-256"), "{line}");
    assert_eq!(fourth.get("/btv/live/hls/ch1.m3u8", &[]).status, 302);
}
