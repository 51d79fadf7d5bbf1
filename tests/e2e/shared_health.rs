//! Shared health checks (`--health-mode shared`): five real nodes on a
//! real etcd and 200 real HTTP edges on loopback. Each edge is probed
//! about once per interval by the fleet in all (not five times), every
//! node routes on every edge's state, a node killed has its edges probed
//! again by the others, and with etcd gone every node probes by itself.

use crate::etcd::EtcdCluster;
use crate::harness::{Conn, Engine, TempDir, wait_until};
use crate::health::{Answer, Edge};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const EDGES: usize = 200;
const NODES: usize = 5;
/// The edges' check interval.
const INTERVAL: Duration = Duration::from_secs(1);

fn topology(edges: &[Edge]) -> Value {
    let servers: Vec<Value> = edges
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({"id": format!("e{i}"), "kind": "edge", "host": "127.0.0.1", "port": e.port,
                   "healthcheck": {"path": "/health", "interval": "1s", "timeout": "500ms", "rise": 1, "fall": 1}})
        })
        .collect();
    let ids: Vec<String> = (0..edges.len()).map(|i| format!("e{i}")).collect();
    json!({
        "regions": [{"id": "r", "server_groups": ["g"]}],
        "subnets": [{"cidr": "10.0.0.0/8", "region": "r"}],
        "server_groups": [{"id": "g", "servers": ids}],
        "servers": servers,
        "channels": [{"epg_id": "ch1", "streams": [{"protocol": "hls", "encryption": "none", "path": "live/ch1.m3u8"}]}]
    })
}

fn health_status(engine: &Engine) -> Value {
    engine.admin_json("GET", "/status", json!(null)).1["health"].clone()
}

fn servers(engine: &Engine) -> Vec<Value> {
    let (_, v) = engine.admin_json("GET", "/servers", json!(null));
    v["servers"].as_array().cloned().unwrap_or_default()
}

/// Probes per edge per interval over `secs` intervals: (lowest, highest).
fn rates(edges: &[Edge], secs: u64) -> (f64, f64, Vec<f64>) {
    let before: Vec<u64> = edges.iter().map(Edge::probes).collect();
    let started = Instant::now();
    std::thread::sleep(INTERVAL * secs as u32);
    let elapsed = started.elapsed().as_secs_f64() / INTERVAL.as_secs_f64();
    let per: Vec<f64> = edges
        .iter()
        .zip(before)
        .map(|(e, b)| (e.probes() - b) as f64 / elapsed)
        .collect();
    let lo = per.iter().cloned().fold(f64::MAX, f64::min);
    let hi = per.iter().cloned().fold(0.0, f64::max);
    (lo, hi, per)
}

#[test]
fn a_fleet_probes_each_edge_about_once_and_takes_over_a_dead_nodes_share() {
    let edges: Vec<Edge> = (0..EDGES).map(|_| Edge::start(Answer::Ok("OK"))).collect();
    let mut etcd = EtcdCluster::start(1, "shared-health");
    let state = TempDir::new("shared-health-nodes");
    let names: Vec<String> = (0..NODES).map(|i| format!("n{i}")).collect();
    let mut nodes: Vec<Option<Engine>> = names
        .iter()
        .map(|name| {
            Some(crate::etcd::node_with(
                &etcd,
                &state,
                name,
                &[
                    "--health-mode",
                    "shared",
                    "--health-lease-s",
                    "2",
                    "--health-report-ms",
                    "500",
                ],
            ))
        })
        .collect();
    let live = |nodes: &[Option<Engine>]| -> Vec<usize> {
        (0..nodes.len()).filter(|i| nodes[*i].is_some()).collect()
    };

    let doc = topology(&edges).to_string();
    let first = nodes[0].as_ref().unwrap();
    let r = Conn::open(first.admin.unwrap()).request_with_body(
        "PUT",
        "/topology",
        &[("Content-Type", "application/json")],
        doc.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    for n in nodes.iter().flatten() {
        wait_until("every node has the fleet and its share", || {
            let h = health_status(n);
            h["mode"] == "shared"
                && h["alone"] == false
                && h["members"].as_array().map(Vec::len) == Some(NODES)
                && servers(n).len() == EDGES
        });
    }
    let shares: Vec<u64> = nodes
        .iter()
        .flatten()
        .map(|n| health_status(n)["probed_here"].as_u64().unwrap())
        .collect();
    assert_eq!(shares.iter().sum::<u64>(), EDGES as u64, "{shares:?}");
    // A member key deleted by hand while its node lives: the node puts
    // it back (under a new lease), and the fleet is five again.
    assert_eq!(etcd.get("/fleet/health/members/n4"), "n4");
    etcd.delete("/fleet/health/members/n4");
    assert_eq!(etcd.get("/fleet/health/members/n4"), "");
    wait_until("n4 puts its member key back", || {
        etcd.get("/fleet/health/members/n4") == "n4"
    });
    for n in nodes.iter().flatten() {
        wait_until("the fleet is five again", || {
            health_status(n)["members"].as_array().map(Vec::len) == Some(NODES)
        });
    }
    // Let the tasks of the servers each node no longer owns end.
    std::thread::sleep(INTERVAL * 2);

    let revision = etcd.revision();
    let (lo, hi, _) = rates(&edges, 10);
    let writes = etcd.revision() - revision;
    eprintln!(
        "shared: probes per edge per interval, 5 nodes: {lo:.2} to {hi:.2}; {writes} etcd writes \
         for {} probes",
        10 * EDGES
    );
    // A report per node per --health-report-ms (500), not one per probe.
    assert!(
        writes <= (NODES * 10 * 2 + 10) as i64,
        "{writes} writes in 10 s: results are written in batches"
    );
    assert!(
        (0.8..=1.5).contains(&lo) && (0.8..=1.5).contains(&hi),
        "each edge probed 0.8 to 1.5 times per interval, not {lo:.2} to {hi:.2}"
    );

    // An edge that fails is down on every node, whoever probes it.
    edges[7].set(Answer::Status(500));
    for n in nodes.iter().flatten() {
        wait_until("every node sees e7 down", || {
            servers(n)
                .iter()
                .any(|s| s["id"] == "e7" && s["health"] == "down")
        });
    }
    let by: Vec<String> = nodes
        .iter()
        .flatten()
        .map(|n| {
            servers(n)
                .into_iter()
                .find(|s| s["id"] == "e7")
                .and_then(|s| s["probed_by"].as_str().map(str::to_string))
                .unwrap_or_else(|| "itself".into())
        })
        .collect();
    assert_eq!(by.iter().filter(|b| *b == "itself").count(), 1, "{by:?}");
    edges[7].set(Answer::Ok("OK"));
    for n in nodes.iter().flatten() {
        wait_until("every node sees e7 up again", || {
            servers(n)
                .iter()
                .any(|s| s["id"] == "e7" && s["health"] == "up")
        });
    }

    // Kill node n2: its edges are probed again by the others.
    let victim = 2;
    let theirs: Vec<usize> = servers(nodes[0].as_ref().unwrap())
        .iter()
        .filter(|s| s["probed_by"] == names[victim])
        .map(|s| s["id"].as_str().unwrap()[1..].parse().unwrap())
        .collect();
    assert!(!theirs.is_empty());
    nodes[victim].as_ref().unwrap().signal("-KILL");
    let killed = Instant::now();
    nodes[victim] = None;
    let at_kill: Vec<u64> = theirs.iter().map(|&i| edges[i].probes()).collect();
    let mut last = Duration::ZERO;
    for (&i, &before) in theirs.iter().zip(&at_kill) {
        // Two more probes: one may have been in flight at the kill.
        wait_until("a dead node's edge is probed again", || {
            edges[i].probes() >= before + 2
        });
        last = last.max(killed.elapsed());
    }
    eprintln!(
        "shared: the {} edges of the killed node had their second probe since the kill from \
         the others within {:.1} s (lease 2 s, interval 1 s)",
        theirs.len(),
        last.as_secs_f64()
    );
    for i in live(&nodes) {
        wait_until("the others know the fleet is four", || {
            health_status(nodes[i].as_ref().unwrap())["members"]
                .as_array()
                .map(Vec::len)
                == Some(NODES - 1)
        });
    }
    std::thread::sleep(INTERVAL * 2);
    let (lo, hi, _) = rates(&edges, 10);
    eprintln!("shared: probes per edge per interval, 4 nodes: {lo:.2} to {hi:.2}");
    assert!(
        (0.8..=1.5).contains(&lo) && (0.8..=1.5).contains(&hi),
        "after the takeover each edge is probed 0.8 to 1.5 times per interval, not {lo:.2} to {hi:.2}"
    );

    // etcd gone: every node probes every edge itself.
    etcd.stop(0);
    for i in live(&nodes) {
        wait_until("each node is on its own", || {
            health_status(nodes[i].as_ref().unwrap())["alone"] == true
        });
    }
    std::thread::sleep(INTERVAL * 2);
    let (lo, hi, _) = rates(&edges, 5);
    eprintln!("shared: probes per edge per interval without etcd, 4 nodes: {lo:.2} to {hi:.2}");
    assert!(
        lo >= 0.8 * (NODES - 1) as f64,
        "without etcd each of the 4 nodes probes every edge: {lo:.2} to {hi:.2} per interval"
    );
    // And they still route: an edge down is seen by each node itself.
    edges[3].set(Answer::Status(500));
    for i in live(&nodes) {
        let n = nodes[i].as_ref().unwrap();
        wait_until("each node sees e3 down by itself", || {
            servers(n)
                .iter()
                .any(|s| s["id"] == "e3" && s["health"] == "down" && s.get("probed_by").is_none())
        });
    }
}
