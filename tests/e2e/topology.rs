//! Topology files: every kind of invalid file is refused with a message
//! naming the problem, by `check-topology` and by a running engine, which
//! keeps serving the topology it had.

use crate::harness::{Engine, TempDir, binary, fixtures};
use serde_json::{Value, json};
use std::process::Command;

fn good() -> Value {
    let text = std::fs::read_to_string(fixtures().join("routing.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `(what, mutation, words the error must contain)`.
type Case = (&'static str, fn(&mut Value), &'static [&'static str]);

fn invalid_cases() -> Vec<Case> {
    vec![
        (
            "a newer schema, with a field this engine does not know",
            |t| {
                t["schema"] = json!(4);
                t["routes"] = json!([]);
            },
            &[
                "field `schema`",
                "4 is newer than this engine reads (3)",
                "upgrade",
            ],
        ),
        (
            "steering pathways in a document that does not say schema 2",
            |t| {
                t["pathways"] = json!([{"id": "cdn-a", "host": "a.example"}]);
            },
            &["field `schema`", "`pathways` need schema 2"],
        ),
        (
            "a pathway cloned from a missing one",
            |t| {
                t["schema"] = json!(2);
                t["pathways"] = json!([{"id": "cdn-b", "base": "cdn-z", "host": "b.example"}]);
            },
            &["pathways[0] \"cdn-b\"", "field `base`", "\"cdn-z\""],
        ),
        (
            "server with a TLS port out of range",
            |t| {
                t["servers"][0]["tls_port"] = json!(70000);
            },
            &["servers[0]", "field `tls_port`", "70000", "out of range"],
        ),
        (
            "region names a missing group",
            |t| {
                t["regions"][0]["server_groups"] = json!(["g-nope"]);
            },
            &["regions[0] \"wide\"", "server_groups[0]", "\"g-nope\""],
        ),
        (
            "subnet names a missing region",
            |t| {
                t["subnets"][0]["region"] = json!("atlantis");
            },
            &["subnets[0]", "region", "\"atlantis\""],
        ),
        (
            "group names a missing server",
            |t| {
                t["server_groups"][0]["servers"] = json!(["e-nope"]);
            },
            &["server_groups[0] \"g-wide\"", "servers[0]", "\"e-nope\""],
        ),
        (
            "group names a missing channel",
            |t| {
                t["server_groups"][0]["channels"] = json!(["ch-nope"]);
            },
            &["server_groups[0]", "channels[0]", "\"ch-nope\""],
        ),
        (
            "program names a missing channel",
            |t| {
                t["programs"][0]["channel"] = json!("ch-nope");
            },
            &["programs[0] \"p1\"", "channel", "\"ch-nope\""],
        ),
        (
            "record names a missing server",
            |t| {
                t["programs"][0]["records"][0]["server"] = json!("dvr-nope");
            },
            &["programs[0] \"p1\".records[0]", "server", "\"dvr-nope\""],
        ),
        (
            "record on an edge server",
            |t| {
                t["programs"][0]["records"][0]["server"] = json!("e-wide");
            },
            &["records[0]", "\"e-wide\"", "not a dvr server"],
        ),
        (
            "default region missing",
            |t| {
                t["default_region"] = json!("nowhere");
            },
            &["default_region", "\"nowhere\""],
        ),
        (
            "duplicate region id",
            |t| {
                t["regions"][1]["id"] = json!("wide");
            },
            &["regions[1]", "\"wide\"", "duplicate of regions[0]"],
        ),
        (
            "duplicate server id",
            |t| {
                t["servers"][1]["id"] = json!("e-wide");
            },
            &["servers[1]", "\"e-wide\"", "duplicate of servers[0]"],
        ),
        (
            "duplicate channel epg_id",
            |t| {
                t["channels"][1]["epg_id"] = json!("ch1");
            },
            &["channels[1]", "\"ch1\"", "duplicate"],
        ),
        (
            "duplicate subnet",
            |t| {
                t["subnets"][1]["cidr"] = json!("10.0.0.0/8");
            },
            &["subnets[1]", "10.0.0.0/8", "same network", "subnets[0]"],
        ),
        (
            "malformed CIDR",
            |t| {
                t["subnets"][0]["cidr"] = json!("10.0.0.0/33");
            },
            &["subnets[0]", "cidr", "\"10.0.0.0/33\""],
        ),
        (
            "port out of range",
            |t| {
                t["servers"][0]["port"] = json!(70000);
            },
            &["servers[0] \"e-wide\"", "port", "70000", "out of range"],
        ),
        (
            "port zero",
            |t| {
                t["servers"][0]["port"] = json!(0);
            },
            &["servers[0]", "port", "0 is out of range"],
        ),
        (
            "unknown server kind",
            |t| {
                t["servers"][0]["kind"] = json!("origin");
            },
            &["servers[0].kind", "origin"],
        ),
        (
            "unknown protocol",
            |t| {
                t["channels"][0]["streams"][0]["protocol"] = json!("rtmp");
            },
            &["channels[0].streams[0].protocol", "rtmp"],
        ),
        (
            "unknown encryption",
            |t| {
                t["channels"][0]["streams"][0]["encryption"] = json!("fairplay");
            },
            &["channels[0].streams[0].encryption", "fairplay"],
        ),
        (
            "unknown record status",
            |t| {
                t["programs"][0]["records"][0]["status"] = json!("done");
            },
            &["programs[0].records[0].status", "done"],
        ),
        (
            "unknown field (typo)",
            |t| {
                t["servers"][0]["wieght"] = json!(3);
            },
            &["servers[0]", "wieght"],
        ),
        (
            "missing required field",
            |t| {
                t["servers"][0].as_object_mut().unwrap().remove("host");
            },
            &["servers[0]", "host"],
        ),
        (
            "dvr server without prefix",
            |t| {
                t["servers"][12].as_object_mut().unwrap().remove("prefix");
            },
            &["servers[12] \"dvr-1\"", "prefix", "required"],
        ),
        (
            "host with a space",
            |t| {
                t["servers"][0]["host"] = json!("bad host");
            },
            &["servers[0]", "host", "\"bad host\""],
        ),
        (
            "program ends before it starts",
            |t| {
                t["programs"][0]["end"] = json!("2026-11-28T09:00:00Z");
            },
            &["programs[0]", "end", "before"],
        ),
        (
            "malformed time",
            |t| {
                t["programs"][0]["start"] = json!("yesterday");
            },
            &["programs[0].start"],
        ),
        (
            "wrong type",
            |t| {
                t["servers"][0]["weight"] = json!("heavy");
            },
            &["servers[0].weight", "heavy"],
        ),
    ]
}

fn check(path: &std::path::Path) -> (bool, String) {
    let out = Command::new(binary())
        .arg("check-topology")
        .arg(path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_topology_accepts_the_fixtures_and_the_demo() {
    let (ok, text) = check(&fixtures().join("routing.json"));
    assert!(ok, "{text}");
    assert!(
        text.contains("OK: 10 regions, 12 subnets (10 IPv4, 2 IPv6)"),
        "{text}"
    );
}

#[test]
fn check_topology_names_every_kind_of_problem() {
    let dir = TempDir::new("check");
    for (what, mutate, words) in invalid_cases() {
        let mut doc = good();
        mutate(&mut doc);
        let path = dir.path("bad.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        let (ok, text) = check(&path);
        assert!(!ok, "{what}: accepted:\n{text}");
        for w in words {
            assert!(text.contains(w), "{what}: message lacks {w:?}:\n{text}");
        }
    }
}

#[test]
fn several_problems_are_reported_together() {
    let dir = TempDir::new("multi");
    let mut doc = good();
    doc["subnets"][0]["region"] = json!("atlantis");
    doc["servers"][0]["port"] = json!(99999);
    let path = dir.path("bad.json");
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    let (ok, text) = check(&path);
    assert!(!ok);
    assert!(text.contains("2 problems"), "{text}");
    assert!(
        text.contains("atlantis") && text.contains("99999"),
        "{text}"
    );
}

#[test]
fn malformed_json_and_msgpack_are_refused_with_a_position() {
    let dir = TempDir::new("syntax");
    let path = dir.path("bad.json");
    std::fs::write(&path, b"{\"regions\": [}").unwrap();
    let (ok, text) = check(&path);
    assert!(
        !ok && text.contains("not valid JSON") && text.contains("line 1"),
        "{text}"
    );
    std::fs::write(&path, [0x93, 0x01]).unwrap();
    let (ok, text) = check(&path);
    assert!(!ok && text.contains("MessagePack"), "{text}");
    let (ok, text) = check(&dir.path("missing.json"));
    assert!(!ok && text.contains("cannot read topology file"), "{text}");
}

#[test]
fn messagepack_topology_is_served_like_json() {
    let dir = TempDir::new("msgpack");
    let doc: edgeward::topology::TopologyDoc = serde_json::from_value(good()).unwrap();
    let path = dir.path("topology.msgpack");
    std::fs::write(&path, edgeward::topology::load::to_msgpack(&doc)).unwrap();
    let (ok, text) = check(&path);
    assert!(ok, "{text}");
    let engine = Engine::start(&["--topology", path.to_str().unwrap()]);
    let resp = engine.get("/btv/live/hls/ch1", &[("X-Real-IP", "10.1.5.5")]);
    assert_eq!(resp.location(), "http://e-city.test/live/ch1/index.m3u8");
}

#[test]
fn an_invalid_topology_at_start_is_refused() {
    let dir = TempDir::new("start");
    let mut doc = good();
    doc["subnets"][0]["cidr"] = json!("not-a-cidr");
    let path = dir.path("bad.json");
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    let err = Engine::try_start(&["--topology", path.to_str().unwrap()])
        .err()
        .expect("must not start");
    assert!(err.contains("not-a-cidr"), "{err}");
}

#[test]
fn reload_refuses_every_invalid_kind_and_keeps_serving_the_old_topology() {
    let dir = TempDir::new("reload");
    let path = dir.path("topology.json");
    std::fs::write(&path, serde_json::to_vec(&good()).unwrap()).unwrap();
    let mut engine = Engine::start(&[
        "--topology",
        path.to_str().unwrap(),
        "--watch-interval-ms",
        "0",
    ]);
    let probe = |engine: &Engine| {
        engine
            .get("/btv/live/hls/ch1", &[("X-Real-IP", "10.1.5.5")])
            .location()
            .to_string()
    };
    assert_eq!(probe(&engine), "http://e-city.test/live/ch1/index.m3u8");

    for (what, mutate, words) in invalid_cases() {
        let mut doc = good();
        mutate(&mut doc);
        // Also move 10.1/16 elsewhere, so that accepting it would show.
        doc["subnets"][1]["region"] = json!("wide");
        std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
        let from = engine.log_len();
        engine.sighup();
        let line = engine.wait_log(from, "topology reload refused");
        // The message names the object, the field and the value.
        for word in words {
            assert!(line.contains(word), "{what}: {word:?} missing in {line}");
        }
        assert!(engine.alive(), "{what}: engine died");
        assert_eq!(
            probe(&engine),
            "http://e-city.test/live/ch1/index.m3u8",
            "{what}"
        );
    }

    // Garbage and an emptied file are refused too.
    for bytes in [&b"\x00\x01garbage"[..], b""] {
        std::fs::write(&path, bytes).unwrap();
        let from = engine.log_len();
        engine.sighup();
        engine.wait_log(from, "topology reload refused");
        assert_eq!(probe(&engine), "http://e-city.test/live/ch1/index.m3u8");
    }

    // A good change is then taken.
    let mut doc = good();
    doc["subnets"][1]["region"] = json!("wide");
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    let from = engine.log_len();
    engine.sighup();
    engine.wait_log(from, "topology reloaded");
    assert_eq!(probe(&engine), "http://e-wide.test/live/ch1/index.m3u8");
}
