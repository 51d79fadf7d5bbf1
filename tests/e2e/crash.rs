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
