//! Explain: why a request goes where it goes, through the admin API,
//! `ctl explain` and, offline, `policy explain`.

use crate::harness::{Engine, binary, built_policy, fixtures};
use serde_json::{Value, json};

fn engine() -> Engine {
    Engine::start(&[
        "--topology",
        fixtures().join("routing.json").to_str().unwrap(),
    ])
}

fn explain(engine: &Engine, query: &str) -> (u16, Value) {
    engine.admin_json("GET", &format!("/explain?{query}"), json!(null))
}

/// The candidate `server` of the explanation, wherever its tier.
fn candidate<'v>(trace: &'v Value, server: &str) -> &'v Value {
    trace["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["candidates"].as_array().unwrap())
        .find(|c| c["server"] == server)
        .unwrap_or_else(|| panic!("no candidate {server} in {trace:#}"))
}

fn why_not(trace: &Value, server: &str) -> Vec<String> {
    candidate(trace, server)["why_not"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn explain_names_why_each_candidate_is_not_eligible() {
    let engine = engine();
    // Weight 0, an inactive server; then a drained one.
    let (status, trace) = explain(&engine, "client=10.9.0.1&url=/vod/a.mp4&draws=200");
    assert_eq!(status, 200, "{trace}");
    assert_eq!(
        why_not(&trace, "e-w0"),
        ["weight 0 (never drawn at random)"]
    );
    assert_eq!(why_not(&trace, "e-inactive"), ["server inactive"]);
    assert!(why_not(&trace, "e-w3").is_empty());
    assert_eq!(trace["policy"]["version"], "nearest@1", "{trace:#}");
    assert!(trace["policy"]["fuel"].as_u64().unwrap() > 0, "{trace:#}");
    assert_eq!(trace["status"], 302);
    // Over 200 seeds, only the positive-weight, active edges answer.
    let answers = trace["draws"]["answers"].as_object().unwrap();
    let mut hosts: Vec<&str> = answers.keys().map(String::as_str).collect();
    hosts.sort();
    assert_eq!(
        hosts,
        [
            "302 http://e-w1.test/vod/a.mp4",
            "302 http://e-w3.test/vod/a.mp4"
        ],
        "{trace:#}"
    );
    let total: u64 = answers.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 200);

    let (status, _) = engine.admin_json("POST", "/servers/e-w1/drain", json!(null));
    assert_eq!(status, 200);
    let (_, trace) = explain(&engine, "client=10.9.0.1&url=/vod/a.mp4");
    assert_eq!(why_not(&trace, "e-w1"), ["drained"]);

    // An inactive group (10.1.2/24's region serves through one).
    let (_, trace) = explain(&engine, "client=10.1.2.5&url=/vod/a.mp4");
    assert_eq!(why_not(&trace, "e-block"), ["group inactive"]);
    // A group that does not serve the channel.
    let (_, trace) = explain(&engine, "client=10.7.0.1&url=/btv/live/hls/ch1.m3u8");
    assert_eq!(
        why_not(&trace, "e-sports"),
        ["group does not serve the channel"]
    );
    // An inactive region.
    let (_, trace) = explain(&engine, "client=10.8.0.1&url=/vod/a.mp4");
    assert_eq!(why_not(&trace, "e-off"), ["region inactive"]);
}

#[test]
fn explain_shows_subnets_fallbacks_and_the_content_resolved() {
    let engine = engine();
    // A region without edges: the shorter prefix, then default_region.
    let (_, trace) = explain(
        &engine,
        "client=10.6.1.1&url=%2Fbtv%2Flive%2Fmpd_wv%2Fcenc-only.mpd%3Ftoken%3Dx",
    );
    let matched: Vec<(&str, &str)> = trace["subnets"]["matched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["cidr"].as_str().unwrap(), s["region"].as_str().unwrap()))
        .collect();
    assert_eq!(matched, [("10.6.0.0/16", "empty"), ("10.0.0.0/8", "wide")]);
    assert_eq!(trace["subnets"]["default_region"], "fallback");
    let regions: Vec<&str> = trace["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["region"].as_str().unwrap())
        .collect();
    assert_eq!(regions, ["empty", "wide", "fallback"]);
    assert_eq!(trace["tiers"][0]["candidates"], json!([]));
    // Widevine asked, only CENC there.
    assert_eq!(
        trace["content"]["encryption_fallback"],
        "widevine asked, cenc served"
    );
    assert_eq!(trace["url"]["query"], "token=x");
    assert_eq!(
        trace["location"],
        "http://e-wide.test/live/cenc-only/cenc.mpd?token=x"
    );
    // A client of no subnet: the default region only.
    let (_, trace) = explain(&engine, "client=192.0.2.9&url=/vod/a.mp4");
    assert_eq!(trace["subnets"]["matched"], json!([]));
    assert_eq!(trace["tiers"][0]["region"], "fallback");
    // Unknown content is explained too.
    let (_, trace) = explain(&engine, "client=10.1.5.5&url=/btv/live/hls/nope.m3u8");
    assert_eq!(trace["status"], 404);
    assert_eq!(trace["content"]["error"], "no channel \"nope\"");
}

#[test]
fn explain_refuses_bad_questions_and_works_from_ctl_and_offline() {
    let engine = engine();
    let (status, v) = explain(&engine, "url=/vod/a.mp4");
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("client and url are required"),
        "{v}"
    );
    let (status, v) = explain(&engine, "client=nobody&url=/vod/a.mp4");
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("\"nobody\" is not an IP address"),
        "{v}"
    );
    let (status, v) = explain(&engine, "client=10.1.5.5&url=/vod/a.mp4&version=99");
    assert_eq!(status, 404, "{v}");

    let (ok, out, err) = crate::ctl::ctl(
        &engine,
        &[
            "--json",
            "explain",
            "10.9.0.1",
            "/vod/a.mp4?x=1",
            "--draws",
            "10",
        ],
    );
    assert!(ok, "{err}");
    let trace: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(trace["url"]["query"], "x=1", "{trace:#}");
    assert_eq!(trace["draws"]["seeds"], 10);

    // Offline, with a server taken as down.
    let out = std::process::Command::new(binary())
        .args(["policy", "explain"])
        .arg(built_policy("nearest"))
        .args(["10.1.5.5", "/vod/a.mp4", "--topology"])
        .arg(fixtures().join("routing.json"))
        .args(["--down", "e-city"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(why_not(&trace, "e-city"), ["down"]);
    assert_eq!(
        trace["location"], "http://e-wide.test/vod/a.mp4",
        "{trace:#}"
    );
}

/// Decisions of `nearest` logged at a sample of 1, then replayed.
#[test]
fn replay_gives_the_same_answers_with_the_same_policy_and_shows_the_changes_of_another() {
    let dir = crate::harness::TempDir::new("replay");
    let log = dir.path("decisions.jsonl");
    let topology = fixtures().join("routing.json");
    let engine = logging_engine(&log, &["--topology", topology.to_str().unwrap()]);
    let sent = send_logged(
        &engine,
        &log,
        (0..100).flat_map(|i| {
            [
                (format!("10.9.0.{}", i % 50), format!("/vod/film-{i}.mp4")),
                (format!("10.1.5.{i}"), "/btv/live/hls/ch1.m3u8".to_string()),
                (format!("10.6.0.{i}"), format!("/static/{i}.png")),
            ]
        }),
        |_| {},
    );
    let replay = |policy: &str, extra: &[&str]| {
        let out = std::process::Command::new(binary())
            .args(["policy", "replay"])
            .arg(built_policy(policy))
            .arg("--log")
            .arg(&log)
            .args(extra)
            .arg("--json")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let topo = ["--topology", topology.to_str().unwrap()];

    // The policy that made them: every answer the same (random draws
    // included: the seed is in the log).
    let (ok, out, err) = replay("nearest", &topo);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["decisions"], sent, "{report:#}");
    assert_eq!(report["same"], sent, "{report:#}");
    assert_eq!(report["same_share"], 1.0);
    // Without the topology too (nearest looks nothing up).
    let (ok, out, err) = replay("nearest", &[]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["same"], sent, "{report:#}");

    // Another policy: `consistent` keys the weighted region's edges by
    // asset, so some of those change edge within the region, and only
    // those.
    let (ok, out, err) = replay("consistent", &topo);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let changed = report["changed"].as_object().unwrap();
    assert_eq!(
        changed.keys().collect::<Vec<_>>(),
        ["another edge in the same region"],
        "{report:#}"
    );
    let n = changed["another edge in the same region"].as_u64().unwrap();
    assert!(n > 0 && n < 100, "{report:#}");
    assert_eq!(report["same"].as_u64().unwrap() + n, sent as u64);
    // Only the weighted region's edges may change share (they may also
    // swap in equal numbers, leaving every share as it was).
    let moved: Vec<&str> = report["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["after"] != s["before"])
        .map(|s| s["server"].as_str().unwrap())
        .collect();
    assert!(
        moved.iter().all(|s| *s == "e-w3" || *s == "e-w1"),
        "{report:#}"
    );
    assert!(!report["examples"].as_array().unwrap().is_empty());

    // The wrong topology is refused, naming both hashes.
    let other = fixtures().join("unreachable.json");
    let (ok, _, err) = replay("nearest", &["--topology", other.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("was made on topology") && err.contains("the topology given has hash"),
        "{err}"
    );
    // A damaged line is named.
    std::fs::write(dir.path("bad.jsonl"), "{\"schema\": 2}\nnot json\n").unwrap();
    let out = std::process::Command::new(binary())
        .args(["policy", "replay"])
        .arg(built_policy("nearest"))
        .arg("--log")
        .arg(dir.path("bad.jsonl"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.jsonl:1: not a decision record"), "{err}");
}

/// An engine recording every decision in `log`, with `extra` arguments.
fn logging_engine(log: &std::path::Path, extra: &[&str]) -> Engine {
    let mut args = vec![
        "--decision-log",
        log.to_str().unwrap(),
        "--decision-log-sample",
        "1",
    ];
    args.extend_from_slice(extra);
    Engine::start(&args)
}

/// Sends each `(client, path)` on one connection, expecting a redirect
/// (and whatever `check` asserts of it), and waits until every decision
/// is in `log`. Returns how many were sent.
fn send_logged(
    engine: &Engine,
    log: &std::path::Path,
    requests: impl IntoIterator<Item = (String, String)>,
    check: impl Fn(&crate::harness::Response),
) -> usize {
    let mut conn = engine.connect();
    let mut sent = 0;
    for (ip, path) in requests {
        let resp = conn.request("GET", &path, &[("X-Real-IP", &ip)]);
        assert_eq!(resp.status, 302, "{resp:?}");
        check(&resp);
        sent += 1;
    }
    crate::harness::wait_until("every decision is logged", || {
        std::fs::read_to_string(log).is_ok_and(|t| t.matches("\"request_id\"").count() >= sent)
    });
    sent
}

/// Runs `policy replay --json` and parses its report.
pub(crate) fn replay_report(
    policy: &str,
    config: &std::path::Path,
    log: &std::path::Path,
    extra: &[&str],
) -> Value {
    let out = std::process::Command::new(binary())
        .args(["policy", "replay"])
        .arg(built_policy(policy))
        .arg("--config")
        .arg(config)
        .arg("--log")
        .arg(log)
        .args(extra)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A policy that asks the host about servers, groups, regions and subnets
/// replays identically without the topology: the log carries what those
/// look-ups answer.
#[test]
fn replay_without_the_topology_answers_look_ups_from_the_log() {
    let dir = crate::harness::TempDir::new("replay-lookups");
    let log = dir.path("decisions.jsonl");
    let config = dir.path("look-up.json");
    std::fs::write(&config, r#"{"mode": "look-up"}"#).unwrap();
    let topology = fixtures().join("routing.json");
    let engine = logging_engine(
        &log,
        &[
            "--topology",
            topology.to_str().unwrap(),
            "--policy",
            built_policy("hostile").to_str().unwrap(),
            "--policy-config",
            config.to_str().unwrap(),
        ],
    );
    let sent = send_logged(
        &engine,
        &log,
        (0..40).flat_map(|i| {
            [
                (format!("10.9.0.{i}"), format!("/vod/film-{i}.mp4")),
                (format!("10.1.5.{i}"), "/btv/live/hls/ch1.m3u8".to_string()),
            ]
        }),
        |resp| {
            let location = resp.header("Location").unwrap();
            assert!(
                !location.contains("none") && location.contains("&subnet=10."),
                "{location}"
            );
        },
    );
    for extra in [&["--topology", topology.to_str().unwrap()][..], &[]] {
        let report = replay_report("hostile", &config, &log, extra);
        assert_eq!(report["decisions"], sent, "{report:#}");
        assert_eq!(report["same"], sent, "{extra:?}: {report:#}");
        let from = if extra.is_empty() { "log" } else { "topology" };
        assert_eq!(report["lookups"], from);
        assert_eq!(report["topologies"], 1, "{report:#}");
    }
}

/// Decisions a fallback answered are logged with what it answered and
/// which version failed, and replay through the same fallback.
#[test]
fn replay_covers_decisions_a_fallback_answered() {
    let dir = crate::harness::TempDir::new("replay-fallback");
    let log = dir.path("decisions.jsonl");
    let config = dir.path("panic.json");
    std::fs::write(&config, r#"{"mode": "panic", "only_target": "boom"}"#).unwrap();
    let engine = logging_engine(
        &log,
        &[
            "--topology",
            fixtures().join("routing.json").to_str().unwrap(),
            "--policy",
            built_policy("hostile").to_str().unwrap(),
            "--policy-config",
            config.to_str().unwrap(),
            "--rollback-after",
            "1000",
        ],
    );
    let sent = send_logged(
        &engine,
        &log,
        (0..30).flat_map(|i| {
            ["/vod/boom", "/vod/fine.mp4"].map(|p| (format!("10.9.0.{i}"), p.to_string()))
        }),
        |_| {},
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let boom: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["target"] == "boom")
        .unwrap();
    assert_eq!(boom["schema"], 5);
    assert_eq!(boom["policy"], "native", "{boom:#}");
    assert_eq!(boom["fallback"], "hostile@1", "{boom:#}");
    assert!(boom["answer"]["choose"].is_u64(), "{boom:#}");

    let report = replay_report("hostile", &config, &log, &[]);
    assert_eq!(report["decisions"], sent, "{report:#}");
    assert_eq!(report["same"], sent, "{report:#}");
    assert_eq!(report["logged_fallbacks"], 30, "{report:#}");
    assert_eq!(report["failed"], 30, "{report:#}");

    // With a 503 for a fallback, the failed ones change, and only those.
    let report = replay_report("hostile", &config, &log, &["--fallback", "unavailable"]);
    assert_eq!(report["same"], 30, "{report:#}");
    assert_eq!(
        report["changed"],
        json!({"the new policy failed (choose -> reject)": 30}),
        "{report:#}"
    );
}
