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
