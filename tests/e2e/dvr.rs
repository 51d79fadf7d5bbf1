//! DVR recordings against a test DVR speaking the old system's SOAP API:
//! a programme about to start is scheduled once per active stream on a
//! DVR of its channel's recording group (with the credentials of the
//! secrets file), followed until completed, and then serves catch-up; a
//! DVR fault puts the record in error; retention removes the programme
//! and tells the DVR to remove the recording; in a fleet, one node does
//! it, and another takes over when it dies, without scheduling twice.

use crate::fake_dvr::FakeDvr;
use crate::harness::{Engine, TempDir, eventually, wait_until};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `now + seconds`, RFC 3339.
fn at(seconds: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
        .replace_nanosecond(0)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

/// A topology whose channels `ch1` (two streams) and `ch2` are recorded
/// on group `rec` (edge `e1`, DVR `d1` managed at `dvr`), with `programs`.
fn topology(dvr: std::net::SocketAddr, programs: Value) -> String {
    json!({
        "schema": 3,
        "default_region": "all",
        "regions": [{"id": "all", "server_groups": ["rec"]}],
        "subnets": [{"cidr": "10.0.0.0/8", "region": "all"}],
        "server_groups": [{"id": "rec", "servers": ["e1", "d1"]}],
        "servers": [
            {"id": "e1", "kind": "edge", "host": "e1.test", "port": 80},
            {"id": "d1", "kind": "dvr", "host": "d1.test", "port": 80, "prefix": "dvr1",
             "management": {"host": dvr.ip().to_string(), "port": dvr.port()}}
        ],
        "channels": [
            {"epg_id": "ch1", "dvr_enabled": true, "recording_group": "rec", "code_name": "one", "storage_id": 4,
             "streams": [
                {"protocol": "hls", "encryption": "none", "path": "live/ch1/index.m3u8"},
                {"protocol": "mpd", "encryption": "none", "path": "live/ch1/manifest.mpd"}
             ]},
            {"epg_id": "ch2", "dvr_enabled": true, "recording_group": "rec", "code_name": "two",
             "streams": [{"protocol": "hls", "encryption": "none", "path": "live/ch2/index.m3u8"}]}
        ],
        "programs": programs
    })
    .to_string()
}

fn secrets(dir: &TempDir, password: &str) -> std::path::PathBuf {
    let path = dir.path("dvr-secrets.toml");
    std::fs::write(
        &path,
        format!("[servers.d1]\nuser = \"recorder\"\npassword = \"{password}\"\n"),
    )
    .unwrap();
    path
}

/// A single node scheduling recordings (a round every 300 ms) on the
/// topology in `topology` with the credentials in `secrets`.
fn recording_node(topology: &std::path::Path, secrets: &std::path::Path, extra: &[&str]) -> Engine {
    let mut args = vec![
        "--topology",
        topology.to_str().unwrap(),
        "--dvr",
        "--dvr-secrets",
        secrets.to_str().unwrap(),
        "--dvr-interval-ms",
        "300",
    ];
    args.extend_from_slice(extra);
    Engine::start(&args)
}

fn records(engine: &Engine, program: &str) -> Vec<Value> {
    let (code, v) = engine.admin_json(
        "GET",
        &format!("/topology/records?program={program}&per_page=100"),
        json!(null),
    );
    assert_eq!(code, 200, "{v}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["value"].clone())
        .collect()
}

fn create_program(engine: &Engine, id: &str, channel: &str, start: i64, end: i64) {
    let (code, v) = engine.admin_json(
        "POST",
        "/topology/programs",
        json!({"epg_id": id, "channel": channel, "start": at(start), "end": at(end)}),
    );
    assert_eq!(code, 201, "{v}");
}

fn metric(engine: &Engine, line_start: &str) -> f64 {
    let text = engine
        .admin("GET", "/metrics", b"", "text/plain", None)
        .body;
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_programme_is_recorded_followed_served_and_removed_after_retention() {
    let dvr = FakeDvr::start("recorder", "s3cret-pass");
    // Recorded three days ago: past retention; the DVR holds it.
    dvr.hold(
        "rec/one/hls/none/old/index",
        "one/hls/none/old",
        "COMPLETED",
    );
    let dir = TempDir::new("dvr-single");
    let topology_file = dir.path("topology.json");
    std::fs::write(
        &topology_file,
        topology(
            dvr.addr,
            json!([{"epg_id": "old", "channel": "ch1", "start": at(-72 * 3600), "end": at(-71 * 3600),
                    "records": [{"server": "d1", "protocol": "hls", "encryption": "none",
                                 "path": "rec/one/hls/none/old/index", "status": "completed"}]}]),
        ),
    )
    .unwrap();
    let secrets = secrets(&dir, "s3cret-pass");
    let engine = recording_node(&topology_file, &secrets, &["--epg-protect-minutes", "2"]);

    // Retention: the DVR is told, then the programme and its record go.
    wait_until("the old programme is removed", || {
        engine
            .admin_json("GET", "/topology/programs/old", json!(null))
            .0
            == 404
    });
    let removed = dvr.calls_of("removeRecording");
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0].fields["path"], "rec/one/hls/none/old/index");

    // A programme starting in 4 s, on air for 4 s: scheduled at once, once
    // per stream, with what the DVR needs.
    dvr.refuse("two/hls/none/pf");
    create_program(&engine, "p1", "ch1", 4, 8);
    create_program(&engine, "pf", "ch2", 4, 8);
    let scheduled = eventually("p1 scheduled for both streams", || {
        let r = records(&engine, "p1");
        (r.len() == 2
            && r.iter()
                .all(|r| r["path"].as_str().is_some_and(|p| !p.is_empty())))
        .then_some(r)
    });
    let mut placements: Vec<&str> = scheduled
        .iter()
        .map(|r| r["placement"].as_str().unwrap())
        .collect();
    placements.sort();
    assert_eq!(placements, ["one/hls/none/p1", "one/mpd/none/p1"]);
    let calls = dvr.calls_of("scheduleRecording");
    let hls = calls
        .iter()
        .find(|c| c.fields["placement"] == "one/hls/none/p1")
        .expect("asked for the HLS recording");
    assert_eq!(
        hls.fields["assetToCapture"],
        "http://e1.test/live/ch1/index.m3u8"
    );
    assert_eq!(
        hls.fields["params"],
        "format=hls;encryption=none;channel=one;storageID=4"
    );
    assert!(
        hls.fields["plannedStartTime"].ends_with("+00:00"),
        "{hls:?}"
    );
    assert_eq!(scheduled[0]["server"], "d1");

    // The refused one is in error, with the DVR's reason.
    let failed = eventually("pf in error", || {
        records(&engine, "pf")
            .into_iter()
            .find(|r| r["status"] == "error")
    });
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("no storage for two/hls/none/pf"),
        "{failed}"
    );

    // Not completed yet: no catch-up.
    let r = engine.get("/btv/catchup/hls/p1.m3u8", &[("X-Real-IP", "10.1.2.3")]);
    assert_eq!(r.status, 404, "{r:?}");
    // On air the DVR says it runs; after the end, that it is complete.
    wait_until("p1 followed while on air", || {
        dvr.calls_of("getRecording")
            .iter()
            .any(|c| c.fields["path"] == "rec/one/hls/none/p1/index")
    });
    dvr.set_status("one/hls/none/p1", "RUNNING");
    wait_until("p1 running", || {
        records(&engine, "p1")
            .iter()
            .any(|r| r["status"] == "running")
    });
    dvr.set_status("one/hls/none/p1", "COMPLETED");
    dvr.set_status("one/mpd/none/p1", "COMPLETED");
    wait_until("p1 completed", || {
        records(&engine, "p1")
            .iter()
            .all(|r| r["status"] == "completed")
    });
    let r = engine.get("/btv/catchup/hls/p1.m3u8", &[("X-Real-IP", "10.1.2.3")]);
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(
        r.location(),
        "http://e1.test/dvr/dvr1/rec/one/hls/none/p1/index"
    );

    // A guide replacing a scheduled programme: its recordings are
    // cancelled on the DVR.
    create_program(&engine, "p9", "ch2", 600, 900);
    wait_until("p9 scheduled", || {
        records(&engine, "p9")
            .iter()
            .any(|r| r["path"] == "rec/two/hls/none/p9/index")
    });
    let r = engine.admin(
        "POST",
        "/epg",
        crate::epg::kaltura("ch2", &[("p9-new", 8, 30)]).as_bytes(),
        "application/xml",
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let cancelled = dvr.calls_of("cancelRecording");
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    assert_eq!(cancelled[0].fields["path"], "rec/two/hls/none/p9/index");
    assert!(!dvr.recordings().contains_key("rec/two/hls/none/p9/index"));

    // Each recording asked for once; every call authenticated; the
    // password in no log line and not in GET /topology.
    let asked: Vec<String> = dvr
        .calls_of("scheduleRecording")
        .iter()
        .map(|c| c.fields["placement"].clone())
        .collect();
    let mut once = asked.clone();
    once.sort();
    once.dedup();
    assert_eq!(
        asked.len(),
        once.len(),
        "a placement asked twice: {asked:?}"
    );
    assert_eq!(dvr.unauthorised(), 0);
    assert!(
        engine
            .log_lines()
            .iter()
            .all(|l| !l.contains("s3cret-pass"))
    );
    let doc = engine
        .admin("GET", "/topology", b"", "application/json", None)
        .body;
    assert!(!doc.contains("s3cret-pass"));
    assert!(
        metric(
            &engine,
            "edgeward_dvr_recordings_total{result=\"scheduled\"}"
        ) >= 2.0
    );
    assert!(
        metric(
            &engine,
            "edgeward_dvr_recordings_total{result=\"completed\"}"
        ) >= 2.0
    );
    assert!(metric(&engine, "edgeward_dvr_recordings_total{result=\"failed\"}") >= 1.0);
    assert!(
        metric(
            &engine,
            "edgeward_dvr_calls_total{operation=\"schedule\",result=\"fault\"}"
        ) >= 1.0
    );
    assert_eq!(metric(&engine, "edgeward_catalogue_leader "), 1.0);
    // The audit says who made the changes.
    let (_, audit) = engine.admin_json("GET", "/audit", json!(null));
    assert!(audit.to_string().contains("dvr scheduler"), "{audit}");
    // The console shows each programme's recordings and their states.
    let base = format!("http://{}", engine.admin.unwrap());
    let (ok, _, err) = crate::harness::ctl_at(
        &base,
        &["user", "add", "viewer@example.com", "--role", "viewer"],
        "a-long-viewer-password\n",
    );
    assert!(ok, "{err}");
    let cookie =
        crate::harness::session_cookie(&engine, "viewer@example.com", "a-long-viewer-password");
    let page = crate::harness::Conn::open(engine.admin.unwrap()).request(
        "GET",
        "/ui/topology/programs?channel=ch1",
        &[("Cookie", &cookie)],
    );
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.body.contains("<th scope=\"col\">Recordings</th>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("hls/none completed, mpd/none completed"),
        "{}",
        page.body
    );
}

#[test]
fn wrong_dvr_credentials_fail_the_calls_and_are_never_logged() {
    let dvr = FakeDvr::start("recorder", "right-one");
    let dir = TempDir::new("dvr-credentials");
    let topology_file = dir.path("topology.json");
    std::fs::write(&topology_file, topology(dvr.addr, json!([]))).unwrap();
    let secrets = secrets(&dir, "wrong-one");
    let engine = recording_node(&topology_file, &secrets, &[]);
    create_program(&engine, "p1", "ch2", 60, 120);
    wait_until("the DVR refused the credentials", || {
        dvr.unauthorised() >= 2
    });
    // The intent stays, to be asked again.
    let r = records(&engine, "p1");
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0]["status"].as_str(), r[0]["path"].as_str()),
        (Some("new"), Some(""))
    );
    assert!(
        engine
            .log_lines()
            .iter()
            .any(|l| l.contains("HTTP status 401"))
    );
    assert!(engine.log_lines().iter().all(|l| !l.contains("wrong-one")));
    // Fixed credentials are read again: the same placement is scheduled.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(
        &secrets,
        "[default]\nuser = \"recorder\"\npassword = \"right-one\"\n",
    )
    .unwrap();
    wait_until("scheduled with the new credentials", || {
        records(&engine, "p1")[0]["path"] == "rec/two/hls/none/p1/index"
    });
    assert_eq!(dvr.recordings().len(), 1);
    // A secrets file that no longer reads keeps the credentials read
    // before: the next programme is scheduled with them.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&secrets, "[default\nuser = ").unwrap();
    create_program(&engine, "p2", "ch2", 60, 120);
    wait_until("p2 scheduled with the kept credentials", || {
        records(&engine, "p2")
            .first()
            .is_some_and(|r| r["path"] == "rec/two/hls/none/p2/index")
    });
    assert!(
        engine
            .log_lines()
            .iter()
            .any(|l| l.contains("the DVR credentials read before are kept")),
        "the refusal is logged"
    );
}

/// A node of a fleet on `etcd` that may run the catalogue worker.
fn fleet_node(
    etcd: &crate::etcd::EtcdCluster,
    state: &TempDir,
    name: &str,
    secrets: &std::path::Path,
) -> Engine {
    let endpoints = etcd.endpoints();
    let dir = state.path(name);
    Engine::start(&[
        "--etcd",
        &endpoints,
        "--etcd-prefix",
        "/dvr-fleet",
        "--state-dir",
        dir.to_str().unwrap(),
        "--node-name",
        name,
        "--etcd-timeout-ms",
        "1000",
        "--dvr",
        "--dvr-secrets",
        secrets.to_str().unwrap(),
        "--dvr-interval-ms",
        "300",
        "--leader-ttl-s",
        "2",
    ])
}

fn leads(engine: &Engine) -> bool {
    metric(engine, "edgeward_catalogue_leader ") == 1.0
}

#[test]
fn one_node_of_a_fleet_schedules_and_another_takes_over_when_it_dies() {
    let dvr = FakeDvr::start("recorder", "fleet-pass");
    let etcd = crate::etcd::EtcdCluster::start(1, "dvr-fleet");
    let state = TempDir::new("dvr-fleet-nodes");
    let secrets = secrets(&state, "fleet-pass");
    let mut nodes = [
        fleet_node(&etcd, &state, "a", &secrets),
        fleet_node(&etcd, &state, "b", &secrets),
    ];
    let r = nodes[0].admin(
        "PUT",
        "/topology",
        topology(dvr.addr, json!([])).as_bytes(),
        "application/json",
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let leader = eventually("exactly one leader", || {
        let l: Vec<usize> = (0..nodes.len()).filter(|&i| leads(&nodes[i])).collect();
        (l.len() == 1).then(|| l[0])
    });
    // Programmes created through the node that does not lead.
    let other = 1 - leader;
    for p in ["p1", "p2", "p3"] {
        create_program(&nodes[other], p, "ch1", 120, 180);
    }
    let scheduled = |engine: &Engine, programs: &[&str]| {
        programs.iter().all(|p| {
            let r = records(engine, p);
            r.len() == 2
                && r.iter()
                    .all(|r| r["path"].as_str().is_some_and(|p| !p.is_empty()))
        })
    };
    wait_until("p1..p3 scheduled", || {
        scheduled(&nodes[other], &["p1", "p2", "p3"])
    });
    assert_eq!(dvr.calls_of("scheduleRecording").len(), 6);

    // The leader dies; the other takes over once its lease expires.
    nodes[leader].signal("-KILL");
    nodes[leader].wait_exit();
    let died = std::time::Instant::now();
    let survivor = &nodes[other];
    wait_until("the survivor leads", || leads(survivor));
    let took = died.elapsed();
    eprintln!("takeover after {} ms (lease TTL 2 s)", took.as_millis());
    // An intent the dead node wrote but had no answer for, though the DVR
    // took it: asked again with the same placement, it gets the same
    // recording, not a second one.
    dvr.hold("rec/one/hls/none/p4/index", "one/hls/none/p4", "PLANNED");
    create_program(survivor, "p4", "ch1", 120, 180);
    let (code, v) = survivor.admin_json(
        "POST",
        "/topology/records",
        json!({"program": "p4", "server": "d1", "protocol": "hls", "encryption": "none",
               "status": "new", "placement": "one/hls/none/p4"}),
    );
    assert_eq!(code, 201, "{v}");
    for p in ["q1", "q2"] {
        create_program(survivor, p, "ch1", 120, 180);
    }
    wait_until("p4, q1, q2 scheduled by the survivor", || {
        scheduled(survivor, &["p4", "q1", "q2"])
    });
    let p4 = records(survivor, "p4");
    assert!(
        p4.iter().any(|r| r["path"] == "rec/one/hls/none/p4/index"),
        "{p4:?}"
    );

    // No placement scheduled twice: one recording on the DVR for each
    // record, and each record's path distinct.
    let recordings = dvr.recordings();
    assert_eq!(recordings.len(), 12, "{recordings:?}");
    let mut paths: Vec<String> = ["p1", "p2", "p3", "p4", "q1", "q2"]
        .iter()
        .flat_map(|p| records(survivor, p))
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 12);
    let calls = dvr.calls_of("scheduleRecording");
    let mut placements: Vec<&str> = calls
        .iter()
        .map(|c| c.fields["placement"].as_str())
        .collect();
    placements.sort();
    let before = placements.len();
    placements.dedup();
    assert_eq!(
        before,
        placements.len(),
        "a placement asked twice: {calls:?}"
    );
}

#[test]
fn bad_dvr_and_guide_source_settings_are_refused_at_start_with_the_reason() {
    let dir = TempDir::new("dvr-settings");
    let bad_secrets = dir.path("secrets.toml");
    std::fs::write(
        &bad_secrets,
        "[servers.d1]\nuser = \"a:b\"\npassword = \"hunter2\"\n",
    )
    .unwrap();
    let bad_sources = dir.path("sources.toml");
    std::fs::write(&bad_sources, "[[source]]\nurl = \"gopher://epg.test/\"\n").unwrap();
    let missing = dir.path("none.toml");
    let cases: [(&[&str], &str); 4] = [
        (
            &["--dvr", "--dvr-secrets", bad_secrets.to_str().unwrap()],
            "[servers.d1]: field `user`",
        ),
        (
            &["--dvr", "--dvr-secrets", missing.to_str().unwrap()],
            "DVR secrets file",
        ),
        (
            &["--dvr-secrets", bad_secrets.to_str().unwrap()],
            "--dvr-secrets is given but not --dvr",
        ),
        (
            &["--epg-sources", bad_sources.to_str().unwrap()],
            "source 1: field `url`: the scheme \"gopher\"",
        ),
    ];
    for (args, needle) in cases {
        let err = Engine::try_start(args).err().expect("refused");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("hunter2"), "no password in the reason: {err}");
    }
}
