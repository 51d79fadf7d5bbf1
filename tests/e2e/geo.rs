//! Geography against MaxMind's own test databases (made-up networks, never
//! real GeoLite2 data): what a policy sees of a client (country, ASN,
//! anonymous-IP flags), the nearest regions for a client in no configured
//! subnet, a database replaced under load with no failed lookup, and bad
//! databases refused with the file and the reason.

use crate::admin::upload;
use crate::harness::{Engine, TempDir, geoip_test_db, wait_until};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Regions with locations (London, Stockholm, Tokyo, Seattle) and a
/// default region without one; one subnet configured.
fn topology() -> Value {
    let region = |id: &str, lat: f64, lon: f64| json!({"id": id, "server_groups": [format!("g-{id}")], "location": {"latitude": lat, "longitude": lon}});
    let ids = ["london", "stockholm", "tokyo", "seattle", "central"];
    json!({
        "schema": 2,
        "default_region": "central",
        "regions": [
            region("london", 51.507, -0.128),
            region("stockholm", 59.329, 18.069),
            region("tokyo", 35.676, 139.650),
            region("seattle", 47.606, -122.332),
            {"id": "central", "server_groups": ["g-central"]}
        ],
        "subnets": [{"cidr": "81.2.69.0/24", "region": "tokyo", "name": "configured beats GeoIP"}],
        "server_groups": ids.iter().map(|id| json!({"id": format!("g-{id}"), "servers": [format!("e-{id}")]})).collect::<Vec<_>>(),
        "servers": ids.iter().map(|id| json!({"id": format!("e-{id}"), "kind": "edge", "host": format!("{id}.test"), "port": 80})).collect::<Vec<_>>(),
        "channels": [{"epg_id": "ch1", "streams": [{"protocol": "hls", "encryption": "none", "path": "live/ch1.m3u8"}]}]
    })
}

fn start(dir: &TempDir, dbs: &[&std::path::Path], extra: &[&str]) -> Result<Engine, String> {
    let path = dir.path("topology.json");
    std::fs::write(&path, topology().to_string()).unwrap();
    let mut args = vec!["--topology", path.to_str().unwrap()];
    for db in dbs {
        args.extend_from_slice(&["--geoip", db.to_str().unwrap()]);
    }
    args.extend_from_slice(extra);
    Engine::try_start(&args)
}

fn location(engine: &Engine, ip: &str) -> String {
    let resp = engine.get("/btv/live/hls/ch1", &[("X-Real-IP", ip)]);
    assert_eq!(resp.status, 302, "{ip}: {resp:?}");
    resp.location().to_string()
}

/// The `key=value` pairs of the echo policy's redirect.
fn echoed(engine: &Engine, ip: &str) -> Vec<(String, String)> {
    let loc = location(engine, ip);
    let query = loc.split_once('?').unwrap().1;
    query
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn field(pairs: &[(String, String)], key: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {key} in {pairs:?}"))
}

fn tiers(pairs: &[(String, String)]) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == "tier")
        .map(|(_, v)| v.clone())
        .collect()
}

#[test]
fn the_policy_sees_country_asn_and_anonymous_flags() {
    let dir = TempDir::new("geo-sees");
    let e = start(
        &dir,
        &[
            &geoip_test_db("GeoIP2-City-Test.mmdb"),
            &geoip_test_db("GeoLite2-ASN-Test.mmdb"),
            &geoip_test_db("GeoIP2-Anonymous-IP-Test.mmdb"),
        ],
        &[],
    )
    .unwrap();
    let (code, v) = upload(&e, "echo", "echo", json!({}), true);
    assert_eq!(code, 201, "{v}");
    // Linköping: SE, AS29518, not an anonymiser.
    let se = echoed(&e, "89.160.20.128");
    assert_eq!(field(&se, "country"), "SE");
    assert_eq!(field(&se, "asn"), "29518");
    assert_eq!(field(&se, "anonymous"), "0");
    // London: GB, no ASN record, every anonymous flag (1 anonymous, 2 VPN,
    // 4 hosting, 8 public proxy, 16 Tor, 32 residential proxy).
    let gb = echoed(&e, "81.2.69.142");
    assert_eq!(field(&gb, "country"), "GB");
    assert_eq!(field(&gb, "asn"), "-");
    assert_eq!(field(&gb, "anonymous"), "63");
    // A Tor exit the location database does not know.
    let tor = echoed(&e, "65.0.0.1");
    assert_eq!(field(&tor, "country"), "-");
    assert_eq!(field(&tor, "anonymous"), (1 | 16).to_string());
    // An address no database knows: nothing.
    let none = echoed(&e, "192.0.2.1");
    assert_eq!(
        (
            field(&none, "country"),
            field(&none, "asn"),
            field(&none, "anonymous")
        ),
        ("-".into(), "-".into(), "0".into())
    );
}

#[test]
fn a_client_in_no_subnet_gets_the_nearest_regions_before_the_default() {
    let dir = TempDir::new("geo-nearest");
    let city = geoip_test_db("GeoIP2-City-Test.mmdb");
    let e = start(&dir, &[&city], &["--geo-nearest-regions", "2"]).unwrap();
    // The default policy: Linköping's nearest region is Stockholm.
    assert_eq!(
        location(&e, "89.160.20.128"),
        "http://stockholm.test/live/ch1.m3u8"
    );
    // Seattle's client (216.160.83.56, near Tacoma) gets Seattle.
    assert_eq!(
        location(&e, "216.160.83.56"),
        "http://seattle.test/live/ch1.m3u8"
    );

    let (code, v) = upload(&e, "echo", "echo", json!({}), true);
    assert_eq!(code, 201, "{v}");
    // Two nearest with their distances in km, then the default region.
    let t = tiers(&echoed(&e, "89.160.20.128"));
    assert_eq!(t.len(), 3, "{t:?}");
    let (first, second) = (&t[0], &t[1]);
    assert!(first.starts_with("1:"), "Stockholm first: {t:?}");
    assert!(second.starts_with("0:"), "London second: {t:?}");
    let km = |t: &str| t.split(':').nth(1).unwrap().parse::<u32>().unwrap();
    assert!(
        (150..=200).contains(&km(first)),
        "Linköping-Stockholm: {t:?}"
    );
    assert!(
        (1200..=1320).contains(&km(second)),
        "Linköping-London: {t:?}"
    );
    assert_eq!(t[2], "4:-", "the default region, no distance");
    // A client in a configured subnet keeps its subnet's region, GeoIP or
    // not (81.2.69.142 is in London by GeoIP, in Tokyo's subnet here).
    assert_eq!(tiers(&echoed(&e, "81.2.69.142")), ["2:-", "4:-"]);
    // No location known: the default region only.
    assert_eq!(tiers(&echoed(&e, "192.0.2.1")), ["4:-"]);

    // Explain shows what GeoIP said and the tiers it gave, on the engine
    // and offline with the same database.
    let (code, v) = e.admin_json(
        "GET",
        "/explain?client=89.160.20.128&url=%2Fbtv%2Flive%2Fhls%2Fch1",
        json!(null),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["geo"]["country"], "SE", "{v:#}");
    let regions: Vec<&str> = v["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["region"].as_str().unwrap())
        .collect();
    assert_eq!(regions, ["stockholm", "london", "central"], "{v:#}");
    let out = std::process::Command::new(crate::harness::binary())
        .args(["policy", "explain"])
        .arg(crate::harness::built_policy("nearest"))
        .args([
            "89.160.20.128",
            "/btv/live/hls/ch1",
            "--geo-nearest-regions",
            "1",
        ])
        .arg("--topology")
        .arg(dir.path("topology.json"))
        .arg("--geoip")
        .arg(&city)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["geo"]["country"], "SE", "{v:#}");
    assert_eq!(
        v["location"], "http://stockholm.test/live/ch1.m3u8",
        "{v:#}"
    );
    assert_eq!(
        v["tiers"].as_array().unwrap().len(),
        2,
        "one nearest, then the default"
    );
}

#[test]
fn a_database_replaced_under_load_fails_no_lookup_and_a_broken_one_is_refused() {
    let dir = TempDir::new("geo-swap");
    let live = dir.path("city.mmdb");
    let geoip2 = geoip_test_db("GeoIP2-City-Test.mmdb");
    let geolite2 = geoip_test_db("GeoLite2-City-Test.mmdb");
    std::fs::copy(&geoip2, &live).unwrap();
    let e = Arc::new(start(&dir, &[&live], &["--watch-interval-ms", "20"]).unwrap());
    let (code, v) = upload(&e, "echo", "echo", json!({}), true);
    assert_eq!(code, 201, "{v}");

    // Players on keep-alive connections while the file is replaced.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let players: Vec<_> = (0..4)
        .map(|_| {
            let (e, stop, ok, bad) = (e.clone(), stop.clone(), ok.clone(), bad.clone());
            std::thread::spawn(move || {
                let mut conn = e.connect();
                while !stop.load(Ordering::Relaxed) {
                    let resp = conn.request(
                        "GET",
                        "/btv/live/hls/ch1",
                        &[("X-Real-IP", "89.160.20.128")],
                    );
                    // Both databases place this address in Sweden.
                    if resp.status == 302 && resp.location().contains("country=SE") {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let from = e.log_len();
    for round in 0..6 {
        let source = if round % 2 == 0 { &geolite2 } else { &geoip2 };
        // As an operator replaces it: a new file renamed over the old.
        let tmp = dir.path("city.mmdb.new");
        std::fs::copy(source, &tmp).unwrap();
        // Counted before the rename: the watch (every 20 ms) may log the
        // reload before this thread reads the log again.
        let seen = e.log_len();
        std::fs::rename(&tmp, &live).unwrap();
        e.wait_log(seen, "GeoIP databases reloaded");
    }
    // A broken file (cut short) is refused; the current set keeps serving.
    let bytes = std::fs::read(&geoip2).unwrap();
    let tmp = dir.path("city.mmdb.new");
    std::fs::write(&tmp, &bytes[..bytes.len() / 3]).unwrap();
    std::fs::rename(&tmp, &live).unwrap();
    let refused = e.wait_log(from, "GeoIP databases refused");
    assert!(refused.contains("city.mmdb"), "names the file: {refused}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for p in players {
        p.join().unwrap();
    }
    let (ok, bad) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    assert!(ok > 100, "{ok} answered");
    assert_eq!(bad, 0, "{bad} of {} lookups failed or differed", ok + bad);
    assert_eq!(field(&echoed(&e, "89.160.20.128"), "country"), "SE");
    wait_until("still serving", || {
        e.get("/btv/live/hls/ch1", &[]).status == 302
    });
}

#[test]
fn databases_that_do_not_read_are_refused_at_start_naming_the_file() {
    let dir = TempDir::new("geo-bad");
    let text = dir.path("notes.mmdb");
    std::fs::write(&text, "not a database").unwrap();
    let cases: Vec<(Vec<std::path::PathBuf>, &str)> = vec![
        (vec![text.clone()], "notes.mmdb"),
        (vec![dir.path("missing.mmdb")], "missing.mmdb"),
        (
            vec![geoip_test_db("MaxMind-DB-test-decoder.mmdb")],
            "edgeward reads City, Country",
        ),
        (
            vec![
                geoip_test_db("GeoIP2-City-Test.mmdb"),
                geoip_test_db("GeoLite2-City-Test.mmdb"),
            ],
            "a second location (City or Country) database",
        ),
    ];
    for (files, want) in cases {
        let refs: Vec<&std::path::Path> = files.iter().map(|f| f.as_path()).collect();
        let err = start(&dir, &refs, &[])
            .err()
            .unwrap_or_else(|| panic!("{files:?} must be refused"));
        assert!(err.contains(want), "{files:?}: {err}");
        assert!(err.contains("GeoIP database"), "{err}");
    }
}

#[test]
fn geo_block_and_geo_nearest_answer_from_what_geoip_says() {
    let dir = TempDir::new("geo-policies");
    let e = start(
        &dir,
        &[
            &geoip_test_db("GeoIP2-City-Test.mmdb"),
            &geoip_test_db("GeoIP2-Anonymous-IP-Test.mmdb"),
        ],
        &[],
    )
    .unwrap();
    let (code, v) = upload(
        &e,
        "geo-block",
        "geo-block",
        json!({
            "allow_cidrs": ["216.160.83.0/24"],
            "rules": [
                {"channels": ["ch1"], "allow": ["SE", "JP"]},
                {"paths": ["premium/*"], "anonymous": ["tor_exit_node"]}
            ]
        }),
        true,
    );
    assert_eq!(code, 201, "{v}");
    let status = |ip: &str, path: &str| {
        let resp = e.get(path, &[("X-Real-IP", ip)]);
        (resp.status, resp.body)
    };
    // ch1 only in Sweden and Japan: Linköping yes, London no (451), a
    // client GeoIP cannot place no, the allow-listed network (in the US)
    // yes.
    assert_eq!(status("89.160.20.128", "/btv/live/hls/ch1").0, 302);
    let (code, body) = status("81.2.69.142", "/btv/live/hls/ch1");
    assert_eq!((code, body.trim()), (451, "not available in your region"));
    assert_eq!(status("192.0.2.1", "/btv/live/hls/ch1").0, 451);
    assert_eq!(status("216.160.83.56", "/btv/live/hls/ch1").0, 302);
    // premium/ VOD: no Tor exits; others anywhere.
    assert_eq!(status("65.0.0.1", "/vod/premium/film.mp4").0, 451);
    assert_eq!(status("65.0.0.1", "/vod/free/film.mp4").0, 302);
    assert_eq!(
        status("81.2.69.142", "/vod/premium/film.mp4").0,
        451,
        "Tor too"
    );
    assert_eq!(status("89.160.20.128", "/vod/premium/film.mp4").0, 302);

    // geo-nearest: Linköping's nearest is Stockholm (174 km); with twenty
    // times the capacity, London (1,260 km) wins.
    let (code, v) = upload(&e, "geo-nearest", "geo-nearest", json!({}), true);
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        location(&e, "89.160.20.128"),
        "http://stockholm.test/live/ch1.m3u8"
    );
    let (code, v) = upload(
        &e,
        "geo-nearest",
        "geo-nearest",
        json!({"capacity": {"london": 20.0}}),
        true,
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        location(&e, "89.160.20.128"),
        "http://london.test/live/ch1.m3u8"
    );
    // A configured subnet still wins (81.2.69.0/24 is Tokyo's here).
    assert_eq!(
        location(&e, "81.2.69.142"),
        "http://tokyo.test/live/ch1.m3u8"
    );
}

#[test]
fn the_decision_log_keeps_what_geoip_said_and_a_replay_sees_it() {
    let dir = TempDir::new("geo-replay");
    let log = dir.path("decisions.jsonl");
    let config = dir.path("geo-nearest.json");
    std::fs::write(&config, r#"{"capacity": {"london": 20.0}}"#).unwrap();
    let city = geoip_test_db("GeoIP2-City-Test.mmdb");
    let anonymous = geoip_test_db("GeoIP2-Anonymous-IP-Test.mmdb");
    let policy = crate::harness::built_policy("geo-nearest");
    let e = start(
        &dir,
        &[&city, &anonymous],
        &[
            "--decision-log",
            log.to_str().unwrap(),
            "--decision-log-sample",
            "1",
            "--policy",
            policy.to_str().unwrap(),
            "--policy-config",
            config.to_str().unwrap(),
        ],
    )
    .unwrap();
    let clients = ["89.160.20.128", "81.2.69.142", "216.160.83.56", "192.0.2.1"];
    for ip in clients {
        location(&e, ip);
    }
    wait_until("every decision is logged", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.matches("\"request_id\"").count() >= 4)
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r.get("request_id").is_some())
        .collect();
    let of = |ip: &str| records.iter().find(|r| r["client"] == ip).unwrap().clone();
    assert_eq!(of("89.160.20.128")["geo"]["country"], "SE");
    assert_eq!(of("81.2.69.142")["geo"]["anonymous"], 63);
    assert!(
        of("192.0.2.1").get("geo").is_none(),
        "nothing known: no geo"
    );
    assert_eq!(of("89.160.20.128")["schema"], 5);
    // The replay, without the databases, answers as the engine did: the
    // log kept what they said.
    let report = crate::explain::replay_report("geo-nearest", &config, &log, &[]);
    assert_eq!(report["decisions"], 4, "{report:#}");
    assert_eq!(report["same"], 4, "{report:#}");
}
