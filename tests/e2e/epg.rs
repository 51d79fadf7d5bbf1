//! Programme guides imported through `POST /epg` and `ctl epg import`, in
//! both dialects, by the old system's rules: programmes about to start
//! are kept as they are, a file's window replaces the channel's
//! programmes in it (their recordings with them), an unknown channel
//! changes nothing, a malformed file is refused naming line and column.

use crate::harness::{Conn, Engine, ctl_at, fixtures};
use serde_json::{Value, json};
use time::OffsetDateTime;

fn engine() -> Engine {
    let topology = fixtures().join("routing.json");
    Engine::start(&["--topology", topology.to_str().unwrap()])
}

/// `now + minutes` as `YYYYMMDDhhmmss` (UTC), to the minute.
pub fn at(minutes: i64) -> String {
    let t = OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
    format!(
        "{:04}{:02}{:02}{:02}{:02}00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

pub fn kaltura(channel: &str, programmes: &[(&str, i64, i64)]) -> String {
    let mut xml = format!("<?xml version=\"1.0\"?>\n<EpgChannels>\n<channel id=\"{channel}\">\n");
    for (id, from, to) in programmes {
        xml.push_str(&format!(
            "<programme channel=\"{channel}\" external_id=\"{id}\" start=\"{}\" stop=\"{}\"><title>{id} &amp; co</title></programme>\n",
            at(*from),
            at(*to)
        ));
    }
    xml.push_str("</channel>\n</EpgChannels>\n");
    xml
}

fn post(engine: &Engine, xml: &str) -> (u16, Value) {
    let r = Conn::open(engine.admin.unwrap()).request_with_body(
        "POST",
        "/epg",
        &[("Content-Type", "application/xml")],
        xml.as_bytes(),
    );
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

pub fn programs_of(engine: &Engine, channel: &str) -> Vec<String> {
    let (_, v) = engine.admin_json(
        "GET",
        &format!("/topology/programs?channel={channel}&order_by=start&per_page=1000"),
        json!(null),
    );
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap().to_string())
        .collect()
}

fn document_hash(engine: &Engine) -> String {
    let (_, s) = engine.admin_json("GET", "/status", json!(null));
    s["topology"]["hash"].as_str().unwrap().to_string()
}

#[test]
fn a_guide_replaces_its_window_and_never_what_is_about_to_start() {
    let e = engine();
    let before = programs_of(&e, "ch1");
    // One in 10 minutes (too soon: left out), two later.
    let xml = kaltura("ch1", &[("soon", 10, 70), ("a", 120, 180), ("b", 180, 240)]);
    let (code, v) = post(&e, &xml);
    assert_eq!(code, 200, "{v}");
    let r = &v["epg"]["channels"]["ch1"];
    assert_eq!(
        (
            r["in_file"].as_u64(),
            r["too_soon"].as_u64(),
            r["created"].as_u64()
        ),
        (Some(3), Some(1), Some(2)),
        "{v}"
    );
    assert_eq!(v["epg"]["dialect"], "kaltura");
    let after = programs_of(&e, "ch1");
    assert!(
        after.contains(&"a".to_string()) && after.contains(&"b".to_string()),
        "{after:?}"
    );
    assert!(!after.contains(&"soon".to_string()));
    assert_eq!(after.len(), before.len() + 2, "{after:?}");

    // A future programme with a recording, inside the next file's window.
    let (code, v) = e.admin_json(
        "POST",
        "/topology/records",
        json!({"program": "b", "server": "dvr-1", "protocol": "hls", "encryption": "none",
               "path": "ch1/b/index.m3u8", "status": "planned"}),
    );
    assert_eq!(code, 201, "{v}");
    // The next file covers 2 h to 4 h with other programmes: a and b go,
    // b's recording with it.
    let xml = kaltura("ch1", &[("c", 120, 200), ("d", 200, 240)]);
    let (code, v) = post(&e, &xml);
    assert_eq!(code, 200, "{v}");
    let r = &v["epg"]["channels"]["ch1"];
    assert_eq!(
        (
            r["replaced"].as_u64(),
            r["records_deleted"].as_u64(),
            r["created"].as_u64()
        ),
        (Some(2), Some(1), Some(2)),
        "{v}"
    );
    let after = programs_of(&e, "ch1");
    for gone in ["a", "b"] {
        assert!(!after.contains(&gone.to_string()), "{after:?}");
    }
    for kept in ["c", "d", "p1"] {
        assert!(after.contains(&kept.to_string()), "{kept}: {after:?}");
    }
    // The whole import is one audited change, and counted.
    let (_, audit) = e.admin_json("GET", "/audit", json!(null));
    assert!(audit.to_string().contains("\"c\""), "{audit}");
    let metrics = e.admin("GET", "/metrics", b"", "text/plain", None).body;
    for line in [
        "edgeward_epg_files_total{result=\"imported\"} 2",
        "edgeward_epg_programmes_total{change=\"created\"} 4",
        "edgeward_epg_programmes_total{change=\"replaced\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[test]
fn xmltv_through_ctl_gets_ids_from_channel_and_start() {
    let e = engine();
    let dir = crate::harness::TempDir::new("epg-xmltv");
    let file = dir.path("guide.xml");
    let start = at(300);
    std::fs::write(
        &file,
        format!(
            "<tv><channel id=\"sports\"/>\n<programme channel=\"sports\" start=\"{start} +0000\" stop=\"{} +0000\"><title>Match</title></programme></tv>",
            at(400)
        ),
    )
    .unwrap();
    let admin = format!("http://{}", e.admin.unwrap());
    let (ok, out, err) = ctl_at(
        &admin,
        &["--json", "epg", "import", file.to_str().unwrap()],
        "",
    );
    assert!(ok, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["epg"]["dialect"], "xmltv");
    assert!(
        programs_of(&e, "sports").contains(&format!("sports-{start}")),
        "{:?}",
        programs_of(&e, "sports")
    );
    // And the Kaltura dialect through ctl; XMLTV through the API.
    std::fs::write(&file, kaltura("ch1", &[("by-ctl", 120, 180)])).unwrap();
    let (ok, out, err) = ctl_at(
        &admin,
        &["--json", "epg", "import", file.to_str().unwrap()],
        "",
    );
    assert!(ok, "{out}{err}");
    assert!(programs_of(&e, "ch1").contains(&"by-ctl".to_string()));
    let (code, v) = post(
        &e,
        &format!(
            "<tv><programme channel=\"sports\" id=\"by-api\" start=\"{} +0000\" stop=\"{} +0000\"/></tv>",
            at(500),
            at(560)
        ),
    );
    assert_eq!(
        (code, v["epg"]["dialect"].as_str()),
        (200, Some("xmltv")),
        "{v}"
    );
    assert!(programs_of(&e, "sports").contains(&"by-api".to_string()));
}

#[test]
fn unknown_channels_and_malformed_files_change_nothing() {
    let e = engine();
    let hash = document_hash(&e);
    let (code, v) = post(&e, &kaltura("nope", &[("x", 120, 180)]));
    assert_eq!(code, 404, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("linear channel does not exist: nope"),
        "{v}"
    );
    for (xml, want) in [
        ("<EpgChannels>\n<programme channel=\"ch1\" external_id=\"x\" start=\"2026\" stop=\"20261204100000\"/>".to_string(), "EPG file: line 2, column 1: <programme \"x\">: attribute `start`: \"2026\""),
        ("<EpgChannels>\n<programme channel=\"ch1\"".to_string(), "EPG file: line 2"),
        ("{\"json\": true}".to_string(), "EPG file: line 1, column 1"),
        (kaltura("ch1", &[("x", 120, 180), ("x", 180, 240)]), "programme \"x\" appears twice"),
        (kaltura("ch1", &[("x", 180, 120)]), "`stop`"),
    ] {
        let (code, v) = post(&e, &xml);
        assert_eq!(code, 400, "{xml}: {v}");
        assert!(v["error"].as_str().unwrap().contains(want), "{v}");
    }
    // A known channel beside an unknown one: the known one is imported,
    // the other reported.
    let xml = format!(
        "<tv>\n<programme channel=\"nope\" start=\"{}\" stop=\"{}\"/>\n<programme channel=\"ch1\" start=\"{}\" stop=\"{}\"/></tv>",
        at(120),
        at(180),
        at(120),
        at(180)
    );
    let (code, v) = post(&e, &xml);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["epg"]["unknown_channels"], json!(["nope"]));
    assert_ne!(document_hash(&e), hash);
    assert!(
        e.get("/btv/live/hls/ch1", &[("X-Real-IP", "10.2.0.1")])
            .status
            == 302
    );
}

#[test]
fn a_watched_folder_imports_its_files_and_sets_aside_the_bad_ones() {
    let dir = crate::harness::TempDir::new("epg-folder");
    let inbox = dir.path("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let topology = fixtures().join("routing.json");
    let e = Engine::start(&[
        "--topology",
        topology.to_str().unwrap(),
        "--epg-dir",
        inbox.to_str().unwrap(),
        "--watch-interval-ms",
        "50",
    ]);
    // Written elsewhere and renamed in, as a fetcher should.
    let drop_in = |name: &str, xml: &str| {
        let tmp = dir.path(name);
        std::fs::write(&tmp, xml).unwrap();
        std::fs::rename(&tmp, inbox.join(name)).unwrap();
    };
    drop_in(
        "KalturaEPG_ch1_261204.xml",
        &kaltura("ch1", &[("f1", 120, 180)]),
    );
    drop_in("broken.xml", "<EpgChannels>\n<programme channel=\"ch1\"");
    drop_in("unknown.xml", &kaltura("nope", &[("f2", 120, 180)]));
    drop_in("notes.txt", "not a guide");
    drop_in(
        "xmltv-sports.xml",
        &format!(
            "<tv><programme channel=\"sports\" id=\"folder-x\" start=\"{} +0000\" stop=\"{} +0000\"/></tv>",
            at(120),
            at(180)
        ),
    );
    crate::harness::wait_until("the folder is worked through", || {
        inbox.join("processed/KalturaEPG_ch1_261204.xml").exists()
            && inbox.join("failed/broken.xml").exists()
            && inbox.join("failed/unknown.xml").exists()
    });
    assert!(programs_of(&e, "ch1").contains(&"f1".to_string()));
    crate::harness::wait_until("the XMLTV file is imported", || {
        inbox.join("processed/xmltv-sports.xml").exists()
    });
    assert!(programs_of(&e, "sports").contains(&"folder-x".to_string()));
    let reason = std::fs::read_to_string(inbox.join("failed/broken.xml.reason")).unwrap();
    assert!(reason.contains("EPG file: line 2"), "{reason}");
    let reason = std::fs::read_to_string(inbox.join("failed/unknown.xml.reason")).unwrap();
    assert!(
        reason.contains("linear channel does not exist: nope"),
        "{reason}"
    );
    assert!(
        inbox.join("notes.txt").exists(),
        "only .xml files are guides"
    );
    // The retention: the fixture's p1 (2026-11-28) started more than 48 h
    // ago and goes, with its recordings; a programme with no start stays.
    crate::harness::wait_until("p1 is removed", || {
        !programs_of(&e, "ch1").contains(&"p1".to_string())
    });
    assert!(programs_of(&e, "sports").contains(&"p-sports".to_string()));
    let (_, audit) = e.admin_json("GET", "/audit", json!(null));
    assert!(audit.to_string().contains("epg retention"), "{audit}");
    // The same name again: kept beside the first.
    drop_in(
        "KalturaEPG_ch1_261204.xml",
        &kaltura("ch1", &[("f3", 300, 360)]),
    );
    crate::harness::wait_until("the second is processed", || {
        inbox.join("processed/KalturaEPG_ch1_261204.xml.1").exists()
    });
    assert!(programs_of(&e, "ch1").contains(&"f3".to_string()));
    // A folder that is not one: refused at start.
    let err = Engine::try_start(&["--epg-dir", dir.path("missing").to_str().unwrap()])
        .err()
        .unwrap();
    assert!(
        err.contains("--epg-dir") && err.contains("not a directory"),
        "{err}"
    );
}

#[test]
fn a_channel_refused_leaves_the_others_of_the_guide_imported() {
    let e = engine();
    // `p1` is a programme of ch1 already: the sports channel cannot have
    // it, so its window is refused whole; ch1's is imported.
    let xml = kaltura("ch1", &[("n1", 120, 180)]).replace(
        "</EpgChannels>",
        &format!(
            "<channel id=\"sports\">\n<programme channel=\"sports\" external_id=\"s1\" start=\"{}\" stop=\"{}\"/>\n\
             <programme channel=\"sports\" external_id=\"p1\" start=\"{}\" stop=\"{}\"/>\n</channel>\n</EpgChannels>",
            at(120),
            at(180),
            at(180),
            at(240)
        ),
    );
    let (code, v) = post(&e, &xml);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["epg"]["channels"]["ch1"]["created"], 1, "{v}");
    let refused = v["epg"]["channels"]["sports"]["refused"]
        .as_str()
        .unwrap_or_default();
    assert!(refused.contains("\"p1\" exists already"), "{v}");
    assert!(programs_of(&e, "ch1").contains(&"n1".to_string()));
    let sports = programs_of(&e, "sports");
    assert!(
        !sports.contains(&"s1".to_string()),
        "nothing of the refused channel: {sports:?}"
    );
    assert_eq!(v["changes"], 1, "{v}");
    // Only the refused channel, again: nothing applied, a conflict.
    let sports_only = format!(
        "<?xml version=\"1.0\"?>\n<EpgChannels>\n{}",
        &xml[xml.find("<channel id=\"sports\">").unwrap()..]
    );
    let (code, v) = post(&e, &sports_only);
    assert_eq!(code, 409, "{v}");
    assert!(v["epg"]["channels"]["sports"]["refused"].is_string(), "{v}");
}

#[test]
fn the_protected_time_is_configurable() {
    let topology = fixtures().join("routing.json");
    let e = Engine::start(&[
        "--topology",
        topology.to_str().unwrap(),
        "--epg-protect-minutes",
        "5",
    ]);
    // In 10 minutes: too soon by the old system's 30, not by 5.
    let (code, v) = post(&e, &kaltura("ch1", &[("ten", 10, 40), ("three", 3, 10)]));
    assert_eq!(code, 200, "{v}");
    let r = &v["epg"]["channels"]["ch1"];
    assert_eq!(
        (r["created"].as_u64(), r["too_soon"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert!(programs_of(&e, "ch1").contains(&"ten".to_string()));
}
