//! Contract 0.4.0 across the boundary, and 0.3.0 still loaded: a policy
//! built for 0.3.0 (with its own bindings, `tests/policies/contract-0-3`)
//! serves and gets 0.3.0's words; a 0.4.0 policy (`tests/policies/echo`)
//! sees whether the player came over TLS and exactly the headers it
//! declared, over HTTP/1.1 and HTTP/2, in explain and in the decision log
//! (secrets left out); a manifest that declares bad headers is refused.

use crate::harness::{Engine, TempDir, binary, built_policy, wait_until};
use serde_json::Value;

// One region with an edge without TLS, one with `tls_port` 8443 and one
// on 443 of weight 0 (never drawn): the HTTPS tests' topology.
use crate::tls::TOPOLOGY;

fn engine_with(dir: &TempDir, policy: &str, config: Option<&str>, extra: &[&str]) -> Engine {
    std::fs::write(dir.path("topology.json"), TOPOLOGY).unwrap();
    let topology = dir.path("topology.json");
    let policy = built_policy(policy);
    let mut args = vec![
        "--topology",
        topology.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ];
    let config_file = dir.path("policy.toml");
    if let Some(config) = config {
        std::fs::write(&config_file, config).unwrap();
        args.extend(["--policy-config", config_file.to_str().unwrap()]);
    }
    args.extend_from_slice(extra);
    Engine::start(&args)
}

/// The query of a `Location` as `(key, value)` pairs, in order.
fn query_of(location: &str) -> Vec<(String, String)> {
    let (_, query) = location.split_once('?').unwrap_or((location, ""));
    query
        .split('&')
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned();
            (k.to_string(), v)
        })
        .collect()
}

fn param<'q>(query: &'q [(String, String)], key: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn a_policy_built_for_contract_0_3_still_loads_routes_and_gets_its_words() {
    let dir = TempDir::new("contract-0-3");
    let engine = engine_with(&dir, "contract-0-3", None, &[]);
    let (status, policies) = engine.admin_json("GET", "/policies", serde_json::json!(null));
    assert_eq!(status, 200, "{policies}");
    let active = policies["policies"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["role"] == "active"))
        .cloned()
        .unwrap_or_else(|| panic!("{policies:#}"));
    assert_eq!(active["contract"], "edgeward:policy@0.3.0", "{active:#}");

    let real_ip = [("X-Real-IP", "10.1.2.3")];
    let resp = engine.get("/vod/film.mp4", &real_ip);
    assert_eq!(resp.status, 302, "{resp:?}");
    assert_eq!(resp.location(), "http://plain.test/vod/film.mp4");

    // Its words are 0.3.0's: 11 header words, 2 of target (`film.mp4`), 1
    // of query (`echo`), the tier count, one tier header and three
    // candidates: 31, no GeoIP block, no headers, no TLS bit.
    let resp = engine.get("/vod/film.mp4?echo", &real_ip);
    assert_eq!(
        resp.location(),
        "http://plain.test:80/legacy?words=31&flags=0x2000002"
    );

    // Over TLS (a trusted proxy says so) it is offered only the edges
    // that serve TLS, so it cannot send the player to `http`.
    let resp = engine.get(
        "/vod/film.mp4",
        &[("X-Real-IP", "10.1.2.3"), ("X-Forwarded-Proto", "https")],
    );
    assert_eq!(resp.location(), "https://both.test:8443/vod/film.mp4");

    // `policy check` names its contract.
    let out = std::process::Command::new(binary())
        .args(["policy", "check"])
        .arg(built_policy("contract-0-3"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("contract edgeward:policy@0.3.0"), "{text}");
}

#[test]
fn a_policy_sees_tls_and_exactly_the_headers_it_declared() {
    let dir = TempDir::new("contract-headers");
    let engine = engine_with(
        &dir,
        "echo",
        Some("headers = [\"User-Agent\", \"x-device\"]\n"),
        &[],
    );
    let (_, policies) = engine.admin_json("GET", "/policies", serde_json::json!(null));
    let active = &policies["policies"][0];
    assert_eq!(active["contract"], "edgeward:policy@0.4.0", "{active:#}");
    assert_eq!(
        active["headers"],
        serde_json::json!(["user-agent", "x-device"])
    );

    // HTTP/1.1 (our own loop): declared headers cross, others do not.
    let mut conn = engine.connect();
    let resp = conn.request(
        "GET",
        "/vod/film.mp4",
        &[
            ("X-Real-IP", "10.1.2.3"),
            ("User-Agent", "SmartTV/2 (x; y)"),
            ("X-Other", "not-for-the-policy"),
        ],
    );
    assert_eq!(resp.status, 302, "{resp:?}");
    let location = resp.location().to_string();
    assert!(
        location.starts_with("http://plain.test:80/echo?"),
        "{location}"
    );
    assert!(!location.contains("not-for-the-policy"), "{location}");
    let q = query_of(&location);
    assert_eq!(param(&q, "tls"), Some("false"));
    assert_eq!(param(&q, "country"), Some("-"), "no GeoIP database");
    assert_eq!(param(&q, "h.user-agent"), Some("SmartTV/2 (x; y)"));
    assert_eq!(param(&q, "h.x-device"), Some("-"));
    assert_eq!(param(&q, "tier"), Some("0:-"));

    // The next request on the connection keeps nothing of this one; two
    // lines of one header are joined.
    let resp = conn.request(
        "GET",
        "/vod/film.mp4",
        &[
            ("X-Real-IP", "10.1.2.3"),
            ("X-Device", "stb"),
            ("x-device", "4k"),
        ],
    );
    let q = query_of(resp.location());
    assert_eq!(param(&q, "h.user-agent"), Some("-"));
    assert_eq!(param(&q, "h.x-device"), Some("stb, 4k"));

    // Over TLS: the flag is set and the edge offered serves TLS.
    let resp = engine.get(
        "/vod/film.mp4",
        &[("X-Real-IP", "10.1.2.3"), ("X-Forwarded-Proto", "https")],
    );
    let location = resp.location().to_string();
    assert!(
        location.starts_with("https://both.test:8443/echo?"),
        "{location}"
    );
    assert_eq!(param(&query_of(&location), "tls"), Some("true"));

    // HTTP/2 (hyper's header map) gives the same.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--http2-prior-knowledge",
        ])
        .args(["-H", "X-Real-IP: 10.1.2.3", "-H", "User-Agent: Player/h2"])
        .arg(format!("http://{}/vod/film.mp4", engine.addr))
        .output()
        .expect("curl (tests/run installs it)");
    let head = String::from_utf8_lossy(&out.stdout);
    assert!(head.starts_with("HTTP/2 302"), "{head}");
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap_or_else(|| panic!("{head}"));
    assert_eq!(
        param(&query_of(location.trim()), "h.user-agent"),
        Some("Player/h2")
    );

    // Explain takes headers too.
    let (status, trace) = engine.admin_json(
        "GET",
        "/explain?client=10.1.2.3&url=/vod/film.mp4&header=User-Agent%3A%20Explained",
        serde_json::json!(null),
    );
    assert_eq!(status, 200, "{trace:#}");
    assert_eq!(trace["headers"]["user-agent"], "Explained", "{trace:#}");
    assert_eq!(trace["headers"]["x-device"], Value::Null, "{trace:#}");
    let location = trace["location"].as_str().unwrap_or_default();
    assert_eq!(
        param(&query_of(location), "h.user-agent"),
        Some("Explained"),
        "{trace:#}"
    );
    let (status, trace) = engine.admin_json(
        "GET",
        "/explain?client=10.1.2.3&url=/vod/film.mp4&header=no%20colon",
        serde_json::json!(null),
    );
    assert_eq!(status, 400, "{trace}");
}

#[test]
fn a_manifest_declaring_bad_headers_is_refused_with_the_reason() {
    let dir = TempDir::new("contract-bad-manifest");
    std::fs::write(dir.path("topology.json"), TOPOLOGY).unwrap();
    let cases = [
        (
            "headers = [\"bad header\"]",
            "\"bad header\", which is not a valid HTTP header name",
        ),
        ("headers = [\"a\", \"A\"]", "declares header \"a\" twice"),
        (
            "headers = [\"h1\",\"h2\",\"h3\",\"h4\",\"h5\",\"h6\",\"h7\",\"h8\",\"h9\",\"h10\",\"h11\",\"h12\",\"h13\",\"h14\",\"h15\",\"h16\",\"h17\"]",
            "declares 17 headers; at most 16",
        ),
    ];
    for (config, reason) in cases {
        std::fs::write(dir.path("echo.toml"), config).unwrap();
        let err = Engine::try_start(&[
            "--topology",
            dir.path("topology.json").to_str().unwrap(),
            "--policy",
            built_policy("echo").to_str().unwrap(),
            "--policy-config",
            dir.path("echo.toml").to_str().unwrap(),
        ])
        .err()
        .unwrap_or_else(|| panic!("{config} must be refused"));
        assert!(err.contains(reason), "{config}: {err}");
        assert!(err.contains("policy \"echo\""), "{err}");
    }
}

#[test]
fn the_decision_log_keeps_declared_headers_but_not_secrets_and_replays_them() {
    let dir = TempDir::new("contract-log");
    let log = dir.path("decisions.jsonl");
    let config = "headers = [\"user-agent\", \"x-auth-token\"]\nhide = [\"x-auth-token\"]\n";
    let engine = engine_with(
        &dir,
        "echo",
        Some(config),
        &[
            "--decision-log",
            log.to_str().unwrap(),
            "--decision-log-sample",
            "1",
        ],
    );
    let with_token = engine.get(
        "/vod/film.mp4",
        &[
            ("X-Real-IP", "10.1.2.3"),
            ("User-Agent", "TV/1"),
            ("X-Auth-Token", "s3cr3t-value"),
            ("X-Forwarded-Proto", "https"),
        ],
    );
    assert_eq!(
        param(&query_of(with_token.location()), "h.x-auth-token"),
        Some("present"),
        "the policy itself sees it"
    );
    let without = engine.get(
        "/vod/film.mp4",
        &[
            ("X-Real-IP", "10.1.2.3"),
            ("User-Agent", "TV/2"),
            ("X-Forwarded-Proto", "https"),
        ],
    );
    assert_eq!(without.status, 302, "{without:?}");
    wait_until("both decisions are logged", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.matches("\"request_id\"").count() >= 2)
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("s3cr3t-value"), "{text}");
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r.get("request_id").is_some())
        .collect();
    assert_eq!(records[0]["schema"], 5);
    assert_eq!(records[0]["tls"], true);
    assert_eq!(
        records[0]["headers"],
        serde_json::json!([
            {"name": "user-agent", "value": "TV/1"},
            {"name": "x-auth-token", "redacted": true}
        ])
    );
    assert_eq!(
        records[1]["headers"],
        serde_json::json!([{"name": "user-agent", "value": "TV/2"}, {"name": "x-auth-token"}])
    );
    drop(engine);

    // Replayed, the decision without a secret comes out the same (TLS and
    // the header came back from the log); the one whose token was left
    // out of the log does not, and the report says so.
    std::fs::write(dir.path("echo.toml"), config).unwrap();
    let out = std::process::Command::new(binary())
        .args(["policy", "replay"])
        .arg(built_policy("echo"))
        .arg("--config")
        .arg(dir.path("echo.toml"))
        .arg("--log")
        .arg(&log)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["decisions"], 2, "{report:#}");
    assert_eq!(report["same"], 1, "{report:#}");
}
