//! The operators' promise, proved under load: while clients hammer the
//! engine, the active policy is swapped 100 times and the topology 20
//! times; every answer is a valid redirect and no connection is reset.

use crate::admin::upload;
use crate::harness::{Conn, Engine, fixtures};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;

#[derive(Default)]
struct Tally {
    requests: u64,
    redirects: u64,
    bad: Vec<String>,
    latencies_us: Vec<u64>,
}

#[test]
fn swapping_policies_and_topology_under_load_fails_no_request() {
    let text = std::fs::read_to_string(fixtures().join("routing.json")).unwrap();
    let original: Value = serde_json::from_str(&text).unwrap();
    let mut variant = original.clone();
    variant["subnets"][1]["region"] = json!("wide");
    variant["servers"][0]["port"] = json!(8080);

    let engine = Engine::start(&[
        "--topology",
        fixtures().join("routing.json").to_str().unwrap(),
        "--watch-interval-ms",
        "0",
    ]);
    let (_, v2) = upload(
        &engine,
        "nearest-b",
        "nearest",
        json!({"reason": "b"}),
        false,
    );
    let (_, v3) = upload(&engine, "consistent", "consistent", json!({}), false);
    let versions = [
        1,
        v2["version"].as_u64().unwrap(),
        v3["version"].as_u64().unwrap(),
    ];

    let stop = Arc::new(AtomicBool::new(false));
    let addr = engine.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut tally = Tally::default();
                let mut conn = Conn::open(addr);
                let paths = [
                    ("10.1.5.5", "/btv/live/hls/ch1.m3u8"),
                    ("10.2.0.1", "/btv/live/mpd_wv/ch1.mpd"),
                    ("10.9.0.7", "/btv/catchup/hls/p1.m3u8"),
                    ("2001:db8:1::5", "/vod/film.mp4?t=1"),
                    ("192.0.2.1", "/static/logo.png"),
                ];
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let (ip, path) = paths[i % paths.len()];
                    i += 1;
                    let started = Instant::now();
                    match conn.try_request("GET", path, &[("X-Real-IP", ip)]) {
                        Ok(resp) => {
                            tally
                                .latencies_us
                                .push(started.elapsed().as_micros() as u64);
                            tally.requests += 1;
                            let location_ok = resp.header("Location").is_some_and(|l| {
                                l.starts_with("http://") || l.starts_with("https://")
                            });
                            if resp.status == 302 && location_ok {
                                tally.redirects += 1;
                            } else {
                                tally.bad.push(format!(
                                    "{path} from {ip}: {} {:?}",
                                    resp.status, resp.body
                                ));
                            }
                        }
                        Err(e) => {
                            tally
                                .bad
                                .push(format!("{path} from {ip}: connection error {e}"));
                            conn = Conn::open(addr);
                        }
                    }
                }
                tally
            })
        })
        .collect();

    // Let the load settle, then swap.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let log_from = engine.log_len();
    let mut topology_swaps = 0;
    for i in 0..100 {
        let version = versions[(i + 1) % versions.len()];
        let (status, v) = engine.admin_json(
            "POST",
            &format!("/policies/{version}/activate"),
            json!(null),
        );
        assert_eq!(status, 200, "activation {i}: {v}");
        if i % 5 == 0 {
            let doc = if topology_swaps % 2 == 0 {
                &variant
            } else {
                &original
            };
            let resp = engine.admin(
                "PUT",
                "/topology",
                doc.to_string().as_bytes(),
                "application/json",
                None,
            );
            assert_eq!(
                resp.status, 200,
                "topology swap {topology_swaps}: {}",
                resp.body
            );
            topology_swaps += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let swapping = started.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);

    let mut total = Tally::default();
    for c in clients {
        let t = c.join().unwrap();
        total.requests += t.requests;
        total.redirects += t.redirects;
        total.bad.extend(t.bad);
        total.latencies_us.extend(t.latencies_us);
    }
    total.latencies_us.sort_unstable();
    let pct = |p: f64| total.latencies_us[((total.latencies_us.len() - 1) as f64 * p) as usize];
    eprintln!(
        "swap under load: {} requests, {} redirects, {} bad, 100 policy swaps + {topology_swaps} topology swaps in {:?}; \
         latency p50 {} us, p99 {} us, max {} us",
        total.requests,
        total.redirects,
        total.bad.len(),
        swapping,
        pct(0.5),
        pct(0.99),
        total.latencies_us.last().unwrap(),
    );
    // What the engine itself recorded (its audit log), not this loop's
    // own count: every change was applied, none twice.
    let audit = engine.log_lines()[log_from..].to_vec();
    let count = |what: &str| audit.iter().filter(|l| l.contains(what)).count();
    assert_eq!(count("policy activated"), 100, "{audit:#?}");
    assert_eq!(count("topology replaced"), 20, "{audit:#?}");
    assert!(
        total.bad.is_empty(),
        "{} bad answers, e.g. {:?}",
        total.bad.len(),
        &total.bad[..total.bad.len().min(5)]
    );
    assert!(
        total.requests > 1000,
        "the load must actually overlap the swaps"
    );
    let (_, status) = engine.admin_json("GET", "/status", json!(null));
    assert_eq!(status["topology"]["version"], 21);
    assert_eq!(status["last_automatic_rollback"], Value::Null);
}
