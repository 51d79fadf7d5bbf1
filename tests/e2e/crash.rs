//! A single node's state directory under SIGKILL: the engine is killed at
//! random moments while it takes 200 writes (entity changes, and every
//! tenth a whole topology, which rewrites the journal's base), restarted
//! each time, and each restart must serve one of the states the writes
//! made: every acknowledged write, and at most the one in flight when it
//! died, never a mix.

use crate::harness::{Conn, Engine, TempDir, fixtures};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// The regions named `crash-…` the engine serves.
fn written_regions(engine: &Engine) -> BTreeSet<String> {
    let (code, v) = engine.admin_json("GET", "/topology/regions?per_page=1000", json!(null));
    assert_eq!(code, 200, "{v}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["key"].as_str())
        .filter(|k| k.starts_with("crash-"))
        .map(str::to_string)
        .collect()
}

/// Write `i` of the sequence: a region created, or (every tenth) the whole
/// topology replaced by the seed with every region so far and this one.
fn write(engine: &Engine, seed: &Value, i: usize, so_far: &BTreeSet<String>) -> Option<u16> {
    let name = format!("crash-{i:03}");
    let mut conn = Conn::try_open(engine.admin?).ok()?;
    let r = if i.is_multiple_of(10) {
        let mut doc = seed.clone();
        let regions = doc["regions"].as_array_mut().unwrap();
        for id in so_far.iter().chain([&name]) {
            regions.push(json!({"id": id, "server_groups": []}));
        }
        conn.try_request_with_body(
            "PUT",
            "/topology",
            &[("Content-Type", "application/json")],
            doc.to_string().as_bytes(),
        )
        .ok()?
    } else {
        conn.try_request_with_body(
            "POST",
            "/topology/regions",
            &[("Content-Type", "application/json")],
            json!({"id": name, "server_groups": []})
                .to_string()
                .as_bytes(),
        )
        .ok()?
    };
    Some(r.status)
}

#[test]
fn every_restart_after_a_sigkill_serves_a_whole_state_old_or_new() {
    let dir = TempDir::new("crash");
    let state = dir.path("state");
    let seed_file = fixtures().join("routing.json");
    let seed: Value = serde_json::from_slice(&std::fs::read(&seed_file).unwrap()).unwrap();
    let args = [
        "--topology",
        seed_file.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    // states[i]: the regions after the first i writes.
    let mut states: Vec<BTreeSet<String>> = vec![BTreeSet::new()];
    let mut acknowledged = 0;
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut lives = 0;
    while acknowledged < 200 {
        lives += 1;
        let engine = Engine::start(&args);
        // What it serves is a state the writes made: all acknowledged
        // ones, and perhaps the one in flight.
        let served = written_regions(&engine);
        let at = states
            .iter()
            .position(|s| *s == served)
            .unwrap_or_else(|| panic!("life {lives}: serves a state no write made: {served:?}"));
        assert!(
            at == acknowledged || at == acknowledged + 1,
            "life {lives}: serves the state after write {at}, acknowledged {acknowledged}"
        );
        acknowledged = at;
        states.truncate(at + 1);
        // Killed after a while, whatever it is doing.
        let pid = engine.pid();
        let life = Duration::from_millis(1 + next() % 12);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(life);
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        });
        loop {
            let i = states.len();
            let mut after = states[i - 1].clone();
            after.insert(format!("crash-{i:03}"));
            states.push(after);
            match write(&engine, &seed, i, &states[i - 1]) {
                Some(code) if (200..300).contains(&code) => acknowledged = i,
                Some(code) => panic!("write {i}: status {code}"),
                None => break,
            }
        }
        killer.join().unwrap();
        drop(engine);
    }
    assert!(lives >= 10, "{lives} lives");
    eprintln!("{acknowledged} writes over {lives} lives, each ended by SIGKILL");
}

/// A fleet node's disk copy of the configuration and its compiled-policy
/// cache under SIGKILL: a node follows etcd while another takes 200 writes
/// (and now and then a new policy), and is killed at random moments. After
/// each death the node is started again with etcd out of reach, so it
/// serves what its disk copy holds: a whole configuration some writes
/// made, never older than the last one it served, never a mix; and its
/// policy cache, killed in the middle of writing a compiled policy
/// perhaps, gives a policy that serves.
#[test]
fn a_fleet_nodes_disk_copy_and_policy_cache_survive_sigkill() {
    let dir = TempDir::new("crash-fleet");
    let etcd = crate::etcd::EtcdCluster::start(1, "crash-fleet");
    let endpoints = etcd.endpoints();
    let seed_file = fixtures().join("routing.json");
    let seed: Value = serde_json::from_slice(&std::fs::read(&seed_file).unwrap()).unwrap();
    let node = |name: &str, etcd: &str, cache: &str| {
        let state = dir.path(name);
        Engine::start(&[
            "--etcd",
            etcd,
            "--etcd-prefix",
            "/fleet",
            "--etcd-timeout-ms",
            "300",
            "--etcd-start-wait-ms",
            "0",
            "--state-dir",
            state.to_str().unwrap(),
            "--node-name",
            name,
            "--policy-cache-dir",
            cache,
        ])
    };
    let writer_cache = dir.path("writer-cache");
    let writer = node("writer", &endpoints, writer_cache.to_str().unwrap());
    let put = Conn::open(writer.admin.unwrap()).request_with_body(
        "PUT",
        "/topology",
        &[("Content-Type", "application/json")],
        seed.to_string().as_bytes(),
    );
    assert_eq!(put.status, 200, "{}", put.body);

    let mut states: Vec<BTreeSet<String>> = vec![BTreeSet::new()];
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let policies = ["consistent", "least-loaded", "nearest"];
    let mut served_before = 0;
    let (mut behind, mut uploaded) = (0, 0);
    let mut lives = 0;
    while states.len() <= 200 {
        lives += 1;
        // A cache of its own per life: the follower compiles (and writes)
        // the active policy as it starts, and may die doing it.
        let cache = dir.path(&format!("cache-{lives}"));
        let follower = node("follower", &endpoints, cache.to_str().unwrap());
        let pid = follower.pid();
        let life = Duration::from_millis(50 + next() % 400);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(life);
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        });
        for step in 0..8 {
            let i = states.len();
            if step == 0 {
                // A new policy record each life: the follower compiles it
                // into its cache while it may be killed.
                let wasm =
                    std::fs::read(crate::harness::built_policy(policies[lives % 3])).unwrap();
                use base64::Engine as _;
                let (code, v) = writer.admin_json(
                    "POST",
                    &format!("/policies/p{i}"),
                    json!({
                        "wasm_base64": base64::engine::general_purpose::STANDARD.encode(wasm),
                        "activate": true,
                        "limits": {"deadline_ms": 20 + i as u64},
                    }),
                );
                assert_eq!(code, 201, "{v}");
            }
            let mut after = states[i - 1].clone();
            after.insert(format!("crash-{i:03}"));
            let code = write(&writer, &seed, i, &states[i - 1]).expect("the writer answers");
            assert!((200..300).contains(&code), "write {i}: status {code}");
            states.push(after);
            std::thread::sleep(Duration::from_millis(next() % 40));
        }
        killer.join().unwrap();
        drop(follower);
        // Started again with etcd out of reach: its disk copy serves.
        let restored = node("follower", "http://127.0.0.1:9", cache.to_str().unwrap());
        let served = written_regions(&restored);
        let at = states
            .iter()
            .position(|s| *s == served)
            .unwrap_or_else(|| panic!("life {lives}: serves a state no write made: {served:?}"));
        assert!(
            at >= served_before,
            "life {lives}: serves the state after write {at}, older than {served_before} before"
        );
        served_before = at;
        let r = restored.get("/btv/live/hls/ch1.m3u8", &[("X-Real-IP", "10.1.2.3")]);
        assert!(
            r.status == 302 || r.status == 503,
            "life {lives}: the restored node answers players: {r:?}"
        );
        if let Some(p) = r.header("Edgeward-Policy") {
            assert!(p == "native" || p.contains('@'), "{p}");
            if p.starts_with('p') {
                uploaded += 1;
            }
        }
        let log = restored.log_lines();
        assert!(!log.iter().any(|l| l.contains("panicked")), "life {lives}");
        if at + 1 < states.len() {
            behind += 1;
        }
        drop(restored);
    }
    drop(etcd);
    eprintln!(
        "{} writes over {lives} lives of a follower, each ended by SIGKILL; its disk copy served \
         the state after write {served_before} at the end; {behind} restarts served a copy \
         behind the writes, {uploaded} served an uploaded policy compiled into a cache of that life",
        states.len() - 1
    );
}
