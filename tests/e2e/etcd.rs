//! Many nodes, one configuration: a real three-member etcd cluster on
//! loopback (Debian's `etcd-server`; `ETCD_BIN` may name another binary)
//! and real edgeward nodes following it.

use crate::admin::upload;
use crate::harness::{Conn, Engine, Response, TempDir, built_policy, wait_until};
use base64::Engine as _;
use serde_json::{Value, json};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// A local etcd cluster, stopped on drop.
pub struct EtcdCluster {
    dir: TempDir,
    members: Vec<Member>,
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn etcd_binary() -> String {
    let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into());
    let found = Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "etcd not found: install Debian's etcd-server (apt-get install etcd-server) \
         or set ETCD_BIN; .ci/run installs it"
    );
    bin
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster serves.
    pub fn start(n: usize, tag: &str) -> EtcdCluster {
        let dir = TempDir::new(tag);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let mut cluster = EtcdCluster { dir, members };
        for i in 0..n {
            cluster.start_member(i);
        }
        cluster.wait_healthy();
        cluster
    }

    fn start_member(&mut self, i: usize) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let data = self.dir.path(&m.name);
        let log = std::fs::File::create(self.dir.path(&format!("{}.log", m.name))).unwrap();
        let child = Command::new(etcd_binary())
            .args([
                "--name",
                &m.name,
                "--data-dir",
                data.to_str().unwrap(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{}", m.client),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{}", m.client),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-token",
                "edgeward-test",
                "--initial-cluster-state",
                "new",
                // Quick elections on loopback.
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning etcd");
        self.members[i].child = Some(child);
    }

    /// Waits until a linearizable read succeeds on every running member.
    fn wait_healthy(&self) {
        let what = format!("etcd becomes healthy (see {})", self.dir.0.display());
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            wait_until(&what, || {
                std::panic::catch_unwind(|| {
                    gateway(m.client, "/v3/kv/range", &json!({"key": b64("health")}))
                })
                .is_ok_and(|r| r.status == 200)
            });
        }
    }

    /// Every member's client URL, comma-separated (for `--etcd`).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Stops member `i` (SIGKILL: the harshest case).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) {
        self.start_member(i);
    }

    /// Restarts every stopped member and waits until the cluster serves.
    pub fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.restart(i);
            }
        }
        self.wait_healthy();
    }

    /// Compacts the history up to `revision`.
    pub fn compact(&self, revision: i64) {
        let m = self.members.iter().find(|m| m.child.is_some()).unwrap();
        let r = gateway(
            m.client,
            "/v3/kv/compaction",
            &json!({"revision": revision.to_string(), "physical": true}),
        );
        assert_eq!(r.status, 200, "{r:?}");
    }

    /// Writes a key directly (as an operator with etcdctl would), on the
    /// first running member.
    pub fn put(&self, key: &str, value: &[u8]) {
        let m = self.members.iter().find(|m| m.child.is_some()).unwrap();
        let r = gateway(
            m.client,
            "/v3/kv/put",
            &json!({"key": b64(key), "value": base64::engine::general_purpose::STANDARD.encode(value)}),
        );
        assert_eq!(r.status, 200, "{r:?}");
    }
}

impl EtcdCluster {
    /// The store's revision (how many writes it has taken), on the first
    /// running member.
    pub fn revision(&self) -> i64 {
        let m = self.members.iter().find(|m| m.child.is_some()).unwrap();
        let r = gateway(m.client, "/v3/kv/range", &json!({"key": b64("/")}));
        assert_eq!(r.status, 200, "{r:?}");
        let v: Value = serde_json::from_str(&r.body).unwrap();
        v["header"]["revision"].as_str().unwrap().parse().unwrap()
    }

    /// Deletes a key directly (as an operator with etcdctl would).
    pub fn delete(&self, key: &str) {
        let m = self.members.iter().find(|m| m.child.is_some()).unwrap();
        let r = gateway(m.client, "/v3/kv/deleterange", &json!({"key": b64(key)}));
        assert_eq!(r.status, 200, "{r:?}");
    }

    /// Reads a key directly, on the first running member: its value as
    /// text (empty when absent).
    pub fn get(&self, key: &str) -> String {
        let m = self.members.iter().find(|m| m.child.is_some()).unwrap();
        let r = gateway(m.client, "/v3/kv/range", &json!({"key": b64(key)}));
        assert_eq!(r.status, 200, "{r:?}");
        let v: Value = serde_json::from_str(&r.body).unwrap();
        v["kvs"][0]["value"]
            .as_str()
            .map(|b| {
                let bytes = base64::engine::general_purpose::STANDARD.decode(b).unwrap();
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .unwrap_or_default()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn gateway(port: u16, path: &str, body: &Value) -> Response {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    Conn::open(addr).request_with_body(
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// A topology with one region whose only edge is `host`.
fn topology(host: &str) -> Vec<u8> {
    json!({
        "default_region": "all",
        "regions": [{"id": "all", "server_groups": ["g"]}],
        "subnets": [{"cidr": "10.0.0.0/8", "region": "all"}],
        "server_groups": [{"id": "g", "servers": ["edge-1", "edge-2"]}],
        "servers": [
            {"id": "edge-1", "kind": "edge", "host": host, "port": 80},
            {"id": "edge-2", "kind": "edge", "host": format!("second.{host}"), "port": 80, "weight": 0}
        ],
        "channels": [{"epg_id": "ch1", "streams": [
            {"protocol": "hls", "encryption": "none", "path": "live/ch1/index.m3u8"}
        ]}],
        "programs": []
    })
    .to_string()
    .into_bytes()
}

/// A node of the fleet.
fn node(cluster: &EtcdCluster, state: &TempDir, name: &str) -> Engine {
    node_with(cluster, state, name, &[])
}

/// A node of the fleet (prefix `/fleet`), with more options.
pub(crate) fn node_with(
    cluster: &EtcdCluster,
    state: &TempDir,
    name: &str,
    extra: &[&str],
) -> Engine {
    let endpoints = cluster.endpoints();
    let dir = state.path(name);
    let mut args = vec![
        "--etcd",
        &endpoints,
        "--etcd-prefix",
        "/fleet",
        "--state-dir",
        dir.to_str().unwrap(),
        "--node-name",
        name,
        "--random-seed",
        "1",
        "--etcd-timeout-ms",
        "1000",
    ];
    args.extend_from_slice(extra);
    Engine::start(&args)
}

/// Where a client of 10/8 is sent for live `ch1`.
fn location(engine: &Engine) -> String {
    let r = engine.get("/btv/live/hls/ch1.m3u8", &[("X-Real-IP", "10.1.2.3")]);
    r.header("Location").unwrap_or_default().to_string()
}

fn policy_header(engine: &Engine) -> String {
    let r = engine.get("/btv/live/hls/ch1.m3u8", &[("X-Real-IP", "10.1.2.3")]);
    r.header("Edgeward-Policy").unwrap_or_default().to_string()
}

fn status(engine: &Engine) -> Value {
    engine.admin_json("GET", "/status", json!(null)).1
}

fn put_topology(engine: &Engine, body: &[u8], if_match: Option<&str>) -> (u16, Value) {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(m) = if_match {
        headers.push(("If-Match", m));
    }
    let r = Conn::open(engine.admin.unwrap()).request_with_body("PUT", "/topology", &headers, body);
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

/// Two nodes, `a` and `b`, following a single-member etcd.
fn pair(name: &str) -> (EtcdCluster, TempDir, Engine, Engine) {
    let etcd = EtcdCluster::start(1, name);
    let state = TempDir::new(&format!("{name}-nodes"));
    let a = node(&etcd, &state, "a");
    let b = node(&etcd, &state, "b");
    (etcd, state, a, b)
}

/// Three nodes following one 3-member etcd, each connected to it.
fn fleet(name: &str) -> (EtcdCluster, TempDir, Vec<Engine>) {
    let etcd = EtcdCluster::start(3, name);
    let state = TempDir::new(&format!("{name}-nodes"));
    let nodes: Vec<Engine> = ["a", "b", "c"]
        .iter()
        .map(|n| node(&etcd, &state, n))
        .collect();
    for n in &nodes {
        let s = status(n);
        assert_eq!(s["etcd"]["connected"], true, "{s}");
        assert_eq!(s["etcd"]["configuration_from"], "etcd", "{s}");
    }
    (etcd, state, nodes)
}

#[test]
fn a_topology_pushed_through_one_node_reaches_every_node() {
    let (_etcd, _state, nodes) = fleet("etcd-fleet-topology");
    // How long the fleet takes to follow is printed (a figure, not a
    // check: `-- --nocapture` shows it).
    let pushed = Instant::now();
    let (code, v) = put_topology(&nodes[0], &topology("one.test"), None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["applied_here"], true);
    for n in &nodes {
        wait_until("every node serves the new topology", || {
            location(n) == "http://one.test/live/ch1/index.m3u8"
        });
    }
    eprintln!(
        "fleet of 3 converged {} ms after the PUT was sent",
        pushed.elapsed().as_millis()
    );
    // The revision is the ETag every node shows.
    let etag = nodes[2]
        .admin("GET", "/topology", b"", "application/json", None)
        .header("ETag")
        .unwrap()
        .to_string();
    assert_eq!(etag, format!("\"{}\"", v["revision"]));
}

#[test]
fn a_server_drained_through_one_node_is_drained_everywhere() {
    let (_etcd, _state, nodes) = fleet("etcd-fleet-drain");
    let (code, v) = put_topology(&nodes[0], &topology("one.test"), None);
    assert_eq!(code, 200, "{v}");
    for n in &nodes {
        wait_until("every node serves the topology", || {
            location(n) == "http://one.test/live/ch1/index.m3u8"
        });
    }
    // Drained through node c (edge-2 has weight 0, so draining edge-1
    // leaves nothing: 503).
    let (code, v) = nodes[2].admin_json("POST", "/servers/edge-1/drain", json!(null));
    assert_eq!(code, 200, "{v}");
    for n in &nodes {
        wait_until(
            "every node stops sending clients to the drained edge",
            || !location(n).contains("//one.test/"),
        );
    }
    let (code, _) = nodes[0].admin_json("DELETE", "/servers/edge-1/drain", json!(null));
    assert_eq!(code, 200);
    for n in &nodes {
        wait_until(
            "every node sends clients to the undrained edge again",
            || location(n) == "http://one.test/live/ch1/index.m3u8",
        );
    }
}

#[test]
fn policies_activated_and_rolled_back_through_any_node_serve_everywhere() {
    let (_etcd, _state, nodes) = fleet("etcd-fleet-policies");
    // Pushed and activated through node b: the same version everywhere.
    let (code, v) = upload(&nodes[1], "spread", "consistent", json!({}), true);
    assert_eq!(code, 201, "{v}");
    let label = format!("spread@{}", v["version"]);
    for n in &nodes {
        wait_until("every node routes with the new policy", || {
            policy_header(n) == label
        });
    }

    // Every node's start policy is not in etcd, so the history is empty
    // and rollback is refused clearly.
    let (code, v) = nodes[0].admin_json("POST", "/policies/rollback", json!(null));
    assert_eq!(code, 409, "{v}");

    // A second policy with limits of its own, then rollback: all nodes
    // run it under those limits, then return to `spread`.
    let wasm = std::fs::read(built_policy("nearest")).unwrap();
    let (code, v) = nodes[0].admin_json(
        "POST",
        "/policies/near",
        json!({
            "wasm_base64": base64::engine::general_purpose::STANDARD.encode(wasm),
            "activate": true,
            "limits": {"deadline_ms": 40, "memory_mib": 32},
        }),
    );
    assert_eq!(code, 201, "{v}");
    let near = format!("near@{}", v["version"]);
    for n in &nodes {
        wait_until("every node routes with near", || policy_header(n) == near);
        let (_, listed) = n.admin_json("GET", "/policies", json!(null));
        let p = listed["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "near")
            .cloned()
            .unwrap();
        assert_eq!(
            p["limits"],
            json!({"deadline_ms": 40, "memory_mib": 32}),
            "{p}"
        );
        assert_eq!(p["deadline_ms"].as_f64(), Some(40.0), "{p}");
    }
    let (code, v) = nodes[2].admin_json("POST", "/policies/rollback", json!(null));
    assert_eq!(code, 200, "{v}");
    for n in &nodes {
        wait_until("every node rolled back", || policy_header(n) == label);
    }

    // The core module of a plain cargo build, through etcd: every node
    // encodes it when it loads it.
    let module = std::fs::read(crate::harness::built_module("nearest")).unwrap();
    let r = nodes[0].admin(
        "POST",
        "/policies/plain?activate=true",
        &module,
        "application/wasm",
        None,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let plain = format!("plain@{}", v["version"]);
    for n in &nodes {
        wait_until("every node routes with the plain module", || {
            policy_header(n) == plain
        });
    }
}

#[test]
fn a_policy_failing_on_one_node_is_rolled_back_on_every_node() {
    let etcd = EtcdCluster::start(1, "etcd-auto-rollback");
    let state = TempDir::new("etcd-auto-rollback-nodes");
    let fleet_node = |name: &str| node_with(&etcd, &state, name, &["--rollback-after", "5"]);
    let (a, b) = (fleet_node("a"), fleet_node("b"));
    let (code, v) = put_topology(&a, &topology("one.test"), None);
    assert_eq!(code, 200, "{v}");
    let (code, v) = upload(&a, "good", "nearest", json!({}), true);
    assert_eq!(code, 201, "{v}");
    let good = format!("good@{}", v["version"]);
    // Behaves on the samples; traps for the target "boom".
    let (code, v) = upload(
        &b,
        "bad",
        "hostile",
        json!({"mode": "panic", "only_target": "boom"}),
        true,
    );
    assert_eq!(code, 201, "{v}");
    let bad = format!("bad@{}", v["version"]);
    for n in [&a, &b] {
        wait_until("both nodes route with bad", || policy_header(n) == bad);
    }

    // Only node a sees the failures; the fleet rolls back once, and node b
    // follows without having seen any.
    let mut conn = a.connect();
    for _ in 0..5 {
        let r = conn.request("GET", "/vod/boom", &[("X-Real-IP", "10.1.2.3")]);
        assert_eq!(r.status, 302, "answered by the fallback: {r:?}");
    }
    for n in [&a, &b] {
        wait_until("both nodes route with good again", || {
            policy_header(n) == good
        });
    }
    a.wait_log(0, "AUTOMATIC ROLLBACK written to etcd");
    wait_until("node a reports its automatic rollback", || {
        status(&a)["last_automatic_rollback"]["from"] == bad
    });
    let routing = status(&b)["etcd"]["revisions"]["routing"].as_i64().unwrap();
    assert_eq!(
        routing,
        status(&a)["etcd"]["revisions"]["routing"].as_i64().unwrap(),
        "one routing record for the fleet"
    );
    let record = etcd.get("/fleet/config/routing");
    assert!(
        record.contains("automatic rollback on a"),
        "written by the door, naming who: {record}"
    );
}

#[test]
fn two_conflicting_topology_writes_one_wins_the_other_is_told() {
    let (_etcd, state, a, b) = pair("etcd-conflict");
    let (code, v) = put_topology(&a, &topology("base.test"), None);
    assert_eq!(code, 200, "{v}");
    let base = format!("\"{}\"", v["revision"]);
    wait_until("b has the base topology", || {
        location(&b) == "http://base.test/live/ch1/index.m3u8"
    });

    // Two operators, each editing what they read at the same revision.
    let (first, second) = std::thread::scope(|s| {
        let one = s.spawn(|| put_topology(&a, &topology("from-a.test"), Some(&base)));
        let two = s.spawn(|| put_topology(&b, &topology("from-b.test"), Some(&base)));
        (one.join().unwrap(), two.join().unwrap())
    });
    let mut codes = [first.0, second.0];
    codes.sort();
    assert_eq!(codes, [200, 409], "{first:?} {second:?}");
    let (winner, loser) = if first.0 == 200 {
        ("from-a.test", &second.1)
    } else {
        ("from-b.test", &first.1)
    };
    let message = loser["error"].as_str().unwrap();
    assert!(
        message.contains("conflict") && message.contains("changed by someone else"),
        "{message}"
    );
    assert!(loser["current_revision"].as_i64().unwrap() > 0);
    for n in [&a, &b] {
        wait_until("both nodes serve the winner", || {
            location(n) == format!("http://{winner}/live/ch1/index.m3u8")
        });
    }

    // Without If-Match a write is based on the node's view, which is now
    // current: it goes through. A stale If-Match does not.
    let (code, _) = put_topology(&a, &topology("later.test"), None);
    assert_eq!(code, 200);
    let (code, v) = put_topology(&b, &topology("stale.test"), Some(&base));
    assert_eq!(code, 409, "{v}");
    let (code, v) = put_topology(&b, &topology("bad.test"), Some("not-a-revision"));
    assert_eq!(code, 400, "{v}");

    // The operator CLI passes If-Match.
    let (ok, out, _) = crate::ctl::ctl(&b, &["status"]);
    assert!(ok && out.contains("etcd            connected"), "{out}");
    let file = state.path("stale.json");
    std::fs::write(&file, topology("stale.test")).unwrap();
    let (ok, _, err) = crate::ctl::ctl(
        &b,
        &[
            "--if-match",
            "1",
            "topology",
            "push",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        !ok && err.contains("409") && err.contains("conflict"),
        "{err}"
    );
}

#[test]
fn two_conflicting_routing_changes_one_wins() {
    let (_etcd, _state, a, b) = pair("etcd-conflict-routing");
    let (code, v) = upload(&a, "p1", "nearest", json!({}), false);
    assert_eq!(code, 201, "{v}");
    let version = v["version"].as_u64().unwrap();
    wait_until("b has loaded p1", || {
        b.admin_json("GET", "/policies", json!(null)).1["policies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["version"] == version)
    });
    let routing_rev = status(&a)["etcd"]["revisions"]["routing"].clone();
    assert!(
        routing_rev.is_null(),
        "no routing written yet: {routing_rev}"
    );
    let activate = |e: &Engine| {
        let r = Conn::open(e.admin.unwrap()).request_with_body(
            "POST",
            &format!("/policies/{version}/activate"),
            &[("If-Match", "\"0\"")],
            b"",
        );
        r.status
    };
    let mut codes = std::thread::scope(|s| {
        let one = s.spawn(|| activate(&a));
        let two = s.spawn(|| activate(&b));
        [one.join().unwrap(), two.join().unwrap()]
    });
    codes.sort();
    assert_eq!(codes, [200, 409]);
}

#[test]
fn a_node_away_during_a_compaction_reads_everything_again() {
    let (etcd, state, a, b) = pair("etcd-compaction");
    let (code, _) = put_topology(&a, &topology("base.test"), None);
    assert_eq!(code, 200);
    wait_until("b has the base topology", || {
        location(&b) == "http://base.test/live/ch1/index.m3u8"
    });
    // Away while etcd compacts its history: b reads everything again
    // instead of resuming its watch.
    drop(b);
    let (code, _) = put_topology(&a, &topology("while-away.test"), None);
    assert_eq!(code, 200);
    let now = status(&a)["etcd"]["applied_revision"].as_i64().unwrap();
    etcd.compact(now);
    let b = node(&etcd, &state, "b");
    b.wait_log(0, "reading everything again");
    wait_until("b has the change made while it was away", || {
        location(&b) == "http://while-away.test/live/ch1/index.m3u8"
    });
}

#[test]
fn a_change_that_fails_validation_is_refused_by_every_node() {
    let etcd = EtcdCluster::start(1, "etcd-invalid");
    let state = TempDir::new("etcd-invalid-nodes");
    let a = node(&etcd, &state, "a");
    let b = node(&etcd, &state, "b");
    let (code, v) = put_topology(&a, &topology("good.test"), None);
    assert_eq!(code, 200, "{v}");
    for n in [&a, &b] {
        wait_until("the good topology is served", || {
            location(n) == "http://good.test/live/ch1/index.m3u8"
        });
    }

    // Through the admin API, an invalid topology never reaches etcd.
    let mut bad: Value = serde_json::from_slice(&topology("bad.test")).unwrap();
    bad["subnets"][0]["region"] = json!("nowhere");
    let (code, v) = put_topology(&a, bad.to_string().as_bytes(), None);
    assert_eq!(code, 422, "{v}");
    assert!(v["problems"].to_string().contains("nowhere"), "{v}");

    // Written straight into etcd (as with etcdctl): every node refuses it,
    // says so, and keeps serving the good one.
    let bytes = bad.to_string().into_bytes();
    let hash = edgeward::sha256_hex(&bytes);
    etcd.put(&format!("/fleet/blobs/{hash}/00000"), &bytes);
    etcd.put(
        "/fleet/config/topology",
        json!({
            "blob": {"sha256": hash, "size": bytes.len(), "chunks": 1},
            "summary": "hand-written",
            "written_by": "an operator with etcdctl",
            "written_at": "2026-11-29T00:00:00Z"
        })
        .to_string()
        .as_bytes(),
    );
    for n in [&a, &b] {
        wait_until("the node reports the refusal", || {
            let s = status(n);
            s["etcd"]["refused"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["key"] == "/fleet/config/topology"))
        });
        let s = status(n);
        let refusal = s["etcd"]["refused"].to_string();
        assert!(refusal.contains("nowhere"), "{refusal}");
        assert_eq!(location(n), "http://good.test/live/ch1/index.m3u8");
        let metrics = n.admin("GET", "/metrics", b"", "text/plain", None).body;
        assert!(
            metrics.contains("edgeward_etcd_refused_changes_total 1"),
            "{metrics}"
        );
    }

    // Garbage records and a policy that is not a component: refused too;
    // a routing record naming that policy is refused whole.
    etcd.put(
        "/fleet/config/policies/0123456789abcdef0123456789abcdef",
        b"not json",
    );
    etcd.put(
        "/fleet/config/routing",
        json!({"active": "0123456789abcdef0123456789abcdef"})
            .to_string()
            .as_bytes(),
    );
    for n in [&a, &b] {
        wait_until("the node refuses the routing record", || {
            status(n)["etcd"]["refused"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["key"] == "/fleet/config/routing"))
        });
        assert_eq!(policy_header(n), "nearest@1");
        assert_eq!(location(n), "http://good.test/live/ch1/index.m3u8");
    }

    // A good change after the bad ones is applied (and clears the refusal).
    let (code, v) = put_topology(&b, &topology("fixed.test"), None);
    assert_eq!(code, 200, "{v}");
    for n in [&a, &b] {
        wait_until("the fix is served", || {
            location(n) == "http://fixed.test/live/ch1/index.m3u8"
        });
        let s = status(n);
        assert!(
            !s["etcd"]["refused"]
                .to_string()
                .contains("/fleet/config/topology"),
            "{s}"
        );
    }
}

#[test]
fn nodes_ride_out_the_loss_of_etcd_and_catch_up_on_return() {
    let mut etcd = EtcdCluster::start(3, "etcd-outage");
    let state = TempDir::new("etcd-outage-nodes");
    let a = node(&etcd, &state, "a");
    let b = node(&etcd, &state, "b");
    let mut c = Some(node(&etcd, &state, "c"));
    let (code, _) = put_topology(&a, &topology("t1.test"), None);
    assert_eq!(code, 200);

    // One member down: everything still works.
    etcd.stop(0);
    let (code, v) = put_topology(&b, &topology("t2.test"), None);
    assert_eq!(code, 200, "{v}");
    for n in [&a, &b, c.as_ref().unwrap()] {
        wait_until("t2 everywhere", || {
            location(n) == "http://t2.test/live/ch1/index.m3u8"
        });
    }

    // Node c goes away (once its disk copy holds t2: it serves a change a
    // moment before it has written it down); a change is made while it is
    // gone.
    // (Its blobs are files beside the copy's list of keys; t1's goes once
    // the list naming t2's is in place.)
    let blobs = state.path("c").join("etcd-copy.msgpack.blobs");
    let holding = |what: &[u8]| {
        std::fs::read_dir(&blobs).is_ok_and(|dir| {
            dir.flatten().any(|f| {
                std::fs::read(f.path()).is_ok_and(|b| b.windows(what.len()).any(|w| w == what))
            })
        })
    };
    wait_until("c's disk copy holds t2 (and no longer t1)", || {
        holding(b"t2.test") && !holding(b"t1.test")
    });
    drop(c.take());
    let (code, v) = upload(&a, "spread", "consistent", json!({}), true);
    assert_eq!(code, 201, "{v}");
    let label = format!("spread@{}", v["version"]);
    wait_until("b has the new policy before etcd goes", || {
        policy_header(&b) == label
    });

    // Every member down: the nodes keep answering from what they have.
    etcd.stop(1);
    etcd.stop(2);
    for n in [&a, &b] {
        wait_until("the node notices etcd is gone", || {
            status(n)["etcd"]["connected"] == false
        });
        assert_eq!(location(n), "http://t2.test/live/ch1/index.m3u8");
        assert_eq!(policy_header(n), label);
        let metrics = n.admin("GET", "/metrics", b"", "text/plain", None).body;
        assert!(metrics.contains("edgeward_etcd_connected 0"), "{metrics}");
        // Ready all the same: it serves its last good configuration.
        let ready = n.admin("GET", "/readyz", b"", "text/plain", None);
        assert_eq!(ready.status, 200);
    }
    let (code, v) = put_topology(&a, &topology("t3.test"), None);
    assert_eq!(code, 503, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("nothing was changed"),
        "{v}"
    );

    // Node c restarted while etcd is down serves its disk copy (t2, and its
    // start policy: it never saw `spread`).
    let c = node(&etcd, &state, "c");
    let s = status(&c);
    assert_eq!(s["etcd"]["configuration_from"], "disk copy", "{s}");
    assert_eq!(location(&c), "http://t2.test/live/ch1/index.m3u8");
    assert_eq!(
        c.admin("GET", "/readyz", b"", "text/plain", None).status,
        200
    );

    // etcd back: c catches up on what it missed, and new changes reach all.
    etcd.restart_all();
    wait_until("c catches up on the policy made while it was away", || {
        policy_header(&c) == label
    });
    let (code, v) = put_topology(&c, &topology("t4.test"), None);
    assert_eq!(code, 200, "{v}");
    for n in [&a, &b, &c] {
        wait_until("t4 everywhere", || {
            location(n) == "http://t4.test/live/ch1/index.m3u8"
        });
        wait_until("reconnected", || status(n)["etcd"]["connected"] == true);
    }
}

#[test]
fn a_node_with_neither_etcd_nor_a_disk_copy_is_not_ready() {
    // Nothing listens on this port.
    let port = free_port();
    let state = TempDir::new("etcd-absent");
    let e = Engine::start(&[
        "--etcd",
        &format!("http://127.0.0.1:{port}"),
        "--state-dir",
        state.path("n").to_str().unwrap(),
        "--etcd-start-wait-ms",
        "100",
    ]);
    assert_eq!(
        e.admin("GET", "/readyz", b"", "text/plain", None).status,
        503
    );
    wait_until("the node reports why it has no configuration", || {
        let s = status(&e);
        s["etcd"]["connected"] == false
            && s["etcd"]["last_error"]
                .as_str()
                .is_some_and(|m| m.contains("Connection refused"))
    });
    // A bad disk copy is named and ignored; the node still starts.
    let copy = state.path("m/etcd-copy.msgpack");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::write(&copy, b"garbage").unwrap();
    let e = Engine::start(&[
        "--etcd",
        &format!("http://127.0.0.1:{port}"),
        "--state-dir",
        state.path("m").to_str().unwrap(),
        "--etcd-start-wait-ms",
        "100",
    ]);
    e.wait_log(0, "cannot use the disk copy");
    assert_eq!(
        e.admin("GET", "/readyz", b"", "text/plain", None).status,
        503
    );
}

/// Certificates for an etcd member and its clients, signed by a test CA.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "edgeward test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>, cn: &str, usage: Vec<ExtendedKeyUsagePurpose>| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = usage;
        let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca: ca_cert.pem(),
        server: leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            "etcd",
            // etcd's gateway dials its own gRPC server with this
            // certificate, so it is a client certificate too.
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        ),
        client: leaf(
            vec!["edgeward".into()],
            "edgeward",
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        ),
    }
}

/// One etcd member with extra flags, killed on drop.
struct Single(Child);

impl Single {
    fn start(dir: &TempDir, name: &str, client_urls: &str, extra: &[&str]) -> Single {
        let peer = free_port();
        let log = std::fs::File::create(dir.path(&format!("{name}.log"))).unwrap();
        let advertise = client_urls.split(',').next().unwrap();
        let child = Command::new(etcd_binary())
            .args([
                "--name",
                name,
                "--data-dir",
                dir.path(name).to_str().unwrap(),
                "--listen-client-urls",
                client_urls,
                "--advertise-client-urls",
                advertise,
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &format!("{name}=http://127.0.0.1:{peer}"),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning etcd");
        Single(child)
    }
}

impl Drop for Single {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_node(args: &[&str], state: &std::path::Path, prefix: &str) -> Engine {
    let mut all = vec![
        "--etcd-prefix",
        prefix,
        "--state-dir",
        state.to_str().unwrap(),
        "--etcd-start-wait-ms",
        "3000",
    ];
    all.extend_from_slice(args);
    Engine::start(&all)
}

/// Waits until the node reports being refused, with a message holding
/// every one of `needles`.
fn assert_refused(engine: &Engine, needles: &[&str]) {
    wait_until("the node reports why etcd refused it", || {
        let s = status(engine);
        let error = s["etcd"]["last_error"].as_str().unwrap_or_default();
        s["etcd"]["connected"] == false && needles.iter().all(|n| error.contains(n))
    });
    assert_eq!(
        engine
            .admin("GET", "/readyz", b"", "text/plain", None)
            .status,
        503
    );
}

#[test]
fn etcd_over_tls_with_client_certificates() {
    let dir = TempDir::new("etcd-tls");
    let pki = pki();
    let write = |name: &str, text: &str| {
        let p = dir.path(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let ca = write("ca.pem", &pki.ca);
    let server_cert = write("server.pem", &pki.server.0);
    let server_key = write("server.key", &pki.server.1);
    let client_cert = write("client.pem", &pki.client.0);
    let client_key = write("client.key", &pki.client.1);
    let port = free_port();
    let endpoint = format!("https://127.0.0.1:{port}");
    let _etcd = Single::start(
        &dir,
        "tls",
        &endpoint,
        &[
            "--cert-file",
            &server_cert,
            "--key-file",
            &server_key,
            "--trusted-ca-file",
            &ca,
            "--client-cert-auth",
        ],
    );
    let tls = [
        "--etcd",
        endpoint.as_str(),
        "--etcd-ca-file",
        &ca,
        "--etcd-cert-file",
        &client_cert,
        "--etcd-key-file",
        &client_key,
    ];
    let good = start_node(&tls, &dir.path("good"), "/tls");
    wait_until("the node connects over TLS", || {
        status(&good)["etcd"]["connected"] == true
    });
    let (code, v) = put_topology(&good, &topology("secure.test"), None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(location(&good), "http://secure.test/live/ch1/index.m3u8");

    // Without the client certificate, or without trusting etcd's CA: the
    // node says why and is not ready.
    let no_cert = start_node(&tls[..4], &dir.path("no-cert"), "/tls");
    assert_refused(&no_cert, &["received fatal alert", "Certificate"]);
    let untrusted = start_node(
        &[tls[0], tls[1], tls[4], tls[5], tls[6], tls[7]],
        &dir.path("untrusted"),
        "/tls",
    );
    assert_refused(&untrusted, &["tls", "certificate", "Unknown"]);
}

#[test]
fn etcd_with_password_authentication() {
    let dir = TempDir::new("etcd-auth");
    let password = dir.path("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let wrong = dir.path("wrong");
    std::fs::write(&wrong, "guess\n").unwrap();
    let port = free_port();
    let _etcd = Single::start(&dir, "auth", &format!("http://127.0.0.1:{port}"), &[]);
    wait_until("etcd serves", || {
        std::panic::catch_unwind(|| gateway(port, "/v3/kv/range", &json!({"key": b64("x")})).status)
            .is_ok_and(|s| s == 200)
    });
    // A user that may read and write /auth/ only, then `auth enable`.
    for (path, body) in [
        (
            "/v3/auth/user/add",
            json!({"name": "root", "password": "rootpw"}),
        ),
        (
            "/v3/auth/user/grant",
            json!({"user": "root", "role": "root"}),
        ),
        ("/v3/auth/role/add", json!({"name": "edgeward"})),
        (
            "/v3/auth/role/grant",
            json!({"name": "edgeward", "perm": {"permType": "READWRITE", "key": b64("/auth/"), "range_end": b64("/auth0")}}),
        ),
        (
            "/v3/auth/user/add",
            json!({"name": "edgeward", "password": "s3cret"}),
        ),
        (
            "/v3/auth/user/grant",
            json!({"user": "edgeward", "role": "edgeward"}),
        ),
        ("/v3/auth/enable", json!({})),
    ] {
        let r = gateway(port, path, &body);
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }
    let r = gateway(port, "/v3/kv/range", &json!({"key": b64("/auth/x")}));
    assert_ne!(r.status, 200, "auth is on: {r:?}");

    let endpoint = format!("http://127.0.0.1:{port}");
    let args = |password: &std::path::Path| {
        vec![
            "--etcd".to_string(),
            endpoint.clone(),
            "--etcd-user".into(),
            "edgeward".into(),
            "--etcd-password-file".into(),
            password.to_str().unwrap().into(),
        ]
    };
    let good_args = args(&password);
    let good_args: Vec<&str> = good_args.iter().map(String::as_str).collect();
    let good = start_node(&good_args, &dir.path("good"), "/auth");
    wait_until("the node logs in", || {
        status(&good)["etcd"]["connected"] == true
    });
    let (code, v) = put_topology(&good, &topology("private.test"), None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(location(&good), "http://private.test/live/ch1/index.m3u8");

    let bad_args = args(&wrong);
    let bad_args: Vec<&str> = bad_args.iter().map(String::as_str).collect();
    let bad = start_node(&bad_args, &dir.path("bad"), "/auth");
    assert_refused(&bad, &["authentication"]);
    // Outside the user's permissions: refused, not retried as an outage.
    let outside = start_node(&good_args, &dir.path("outside"), "/elsewhere");
    assert_refused(&outside, &["permission denied"]);
}

#[test]
fn a_node_follows_an_etcd_rebuilt_with_other_history() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (first_dir, second_dir, state) = (
        TempDir::new("etcd-rebuilt-1"),
        TempDir::new("etcd-rebuilt-2"),
        TempDir::new("etcd-rebuilt-node"),
    );
    let first = Single::start(&first_dir, "x", &url, &[]);
    let node = start_node(&["--etcd", &url], &state.path("n"), "/edgeward");
    // Some history, so that the node's revision is well above a new
    // cluster's.
    for i in 0..5 {
        let (code, v) = put_topology(&node, &topology(&format!("old{i}.test")), None);
        assert_eq!(code, 200, "{v}");
    }
    drop(first);

    // A new cluster on the same address, with none of that history (as
    // after a rebuild): the node notices and reads everything again.
    let _second = Single::start(&second_dir, "x", &url, &[]);
    node.wait_log(0, "reading everything again");
    wait_until("the node is connected to the new cluster", || {
        status(&node)["etcd"]["connected"] == true
    });
    assert_eq!(location(&node), "http://old4.test/live/ch1/index.m3u8");
    let (code, v) = put_topology(&node, &topology("new.test"), None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["applied_here"], true, "{v}");
    assert_eq!(location(&node), "http://new.test/live/ch1/index.m3u8");
}

#[test]
fn a_node_whose_member_loses_quorum_notices() {
    let mut etcd = EtcdCluster::start(3, "etcd-quorum");
    let state = TempDir::new("etcd-quorum-node");
    // The node knows only member 0, which stays up but alone.
    let only_first = etcd.endpoints().split(',').next().unwrap().to_string();
    let n = start_node(&["--etcd", &only_first], &state.path("n"), "/edgeward");
    let (code, v) = put_topology(&n, &topology("before.test"), None);
    assert_eq!(code, 200, "{v}");
    etcd.stop(1);
    etcd.stop(2);
    // The member is alive, but without a leader it cannot serve the truth:
    // the watch ends and the node reports the outage (and keeps serving).
    wait_until("the node notices the member lost quorum", || {
        status(&n)["etcd"]["connected"] == false
    });
    assert_eq!(location(&n), "http://before.test/live/ch1/index.m3u8");
    etcd.restart_all();
    wait_until("the node follows again once quorum is back", || {
        status(&n)["etcd"]["connected"] == true
    });
    let (code, v) = put_topology(&n, &topology("after.test"), None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(location(&n), "http://after.test/live/ch1/index.m3u8");
}

#[test]
fn bad_etcd_settings_are_refused_at_start_with_the_reason() {
    let dir = TempDir::new("etcd-bad-flags");
    let state = dir.path("s");
    let state = state.to_str().unwrap();
    for (args, expected) in [
        (
            vec!["--etcd", "ftp://127.0.0.1:2379", "--state-dir", state],
            "must start with http:// or https://",
        ),
        (
            vec![
                "--etcd",
                "https://127.0.0.1:2379",
                "--etcd-ca-file",
                "/nonexistent/ca.pem",
                "--state-dir",
                state,
            ],
            "etcd CA file /nonexistent/ca.pem",
        ),
        (
            vec![
                "--etcd",
                "http://127.0.0.1:2379",
                "--etcd-user",
                "edgeward",
                "--state-dir",
                state,
            ],
            "--etcd-user needs --etcd-password-file or EDGEWARD_ETCD_PASSWORD",
        ),
    ] {
        let err = Engine::try_start(&args)
            .err()
            .unwrap_or_else(|| panic!("started with {args:?}"));
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

/// An entity change through a node's admin API: status and JSON body.
fn entity_change(
    engine: &Engine,
    method: &str,
    path: &str,
    body: &Value,
    if_match: Option<&str>,
) -> (u16, Value) {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(m) = if_match {
        headers.push(("If-Match", m));
    }
    let r = Conn::open(engine.admin.unwrap()).request_with_body(
        method,
        path,
        &headers,
        body.to_string().as_bytes(),
    );
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

#[test]
fn an_entity_changed_on_one_node_is_served_by_the_other_and_a_concurrent_edit_conflicts() {
    let (_etcd, _state, a, b) = pair("etcd-entities");
    let (code, v) = put_topology(&a, &topology("base.test"), None);
    assert_eq!(code, 200, "{v}");
    wait_until("b has the base topology", || {
        location(&b) == "http://base.test/live/ch1/index.m3u8"
    });
    // Changed on a, served by b.
    let (code, v) = entity_change(
        &a,
        "PATCH",
        "/topology/servers/edge-1",
        &json!({"host": "patched.test"}),
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["changes"][0]["after"]["host"], "patched.test");
    wait_until("b serves the change made on a", || {
        location(&b) == "http://patched.test/live/ch1/index.m3u8"
    });
    // Both nodes show the entity at the same revision.
    let revision = |n: &Engine| {
        let r = n.admin(
            "GET",
            "/topology/servers/edge-2",
            b"",
            "application/json",
            None,
        );
        r.header("ETag").unwrap().to_string()
    };
    wait_until("both nodes agree on the revision", || {
        revision(&a) == revision(&b)
    });
    let read = revision(&a);
    // Two operators edit what they read at that revision, one on each
    // node: one wins, the other is told, nothing is overwritten silently.
    let (first, second) = std::thread::scope(|s| {
        let one = s.spawn(|| {
            entity_change(
                &a,
                "PATCH",
                "/topology/servers/edge-2",
                &json!({"weight": 3}),
                Some(&read),
            )
        });
        let two = s.spawn(|| {
            entity_change(
                &b,
                "PATCH",
                "/topology/servers/edge-2",
                &json!({"weight": 5}),
                Some(&read),
            )
        });
        (one.join().unwrap(), two.join().unwrap())
    });
    let mut codes = [first.0, second.0];
    codes.sort();
    assert_eq!(codes, [200, 409], "{first:?} {second:?}");
    let (won, lost) = if first.0 == 200 {
        (3, &second.1)
    } else {
        (5, &first.1)
    };
    assert!(
        lost["error"].as_str().unwrap().contains("someone"),
        "{lost}"
    );
    for n in [&a, &b] {
        wait_until("both nodes serve the winner's weight", || {
            let r = n.admin(
                "GET",
                "/topology/servers/edge-2",
                b"",
                "application/json",
                None,
            );
            serde_json::from_str::<Value>(&r.body).unwrap()["value"]["weight"] == won
        });
    }
    // A refused change is refused the same way through etcd, and changes
    // nothing.
    let (code, v) = entity_change(&b, "DELETE", "/topology/servers/edge-1", &Value::Null, None);
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("member of server group \"g\""),
        "{v}"
    );
}

#[test]
fn entity_changes_are_change_records_folded_into_the_document_now_and_then() {
    let etcd = EtcdCluster::start(1, "etcd-fold");
    let state = TempDir::new("etcd-fold-nodes");
    let start = |name: &str| node_with(&etcd, &state, name, &["--etcd-fold-changes", "3"]);
    let a = start("a");
    let (code, v) = put_topology(&a, &topology("base.test"), None);
    assert_eq!(code, 200, "{v}");
    let record = etcd.get("/fleet/config/topology");
    // Two changes: two change records, the document untouched.
    for weight in [2, 3] {
        let (code, v) = entity_change(
            &a,
            "PATCH",
            "/topology/servers/edge-2",
            &json!({"weight": weight}),
            None,
        );
        assert_eq!(code, 200, "{v}");
    }
    assert_eq!(etcd.get("/fleet/config/topology"), record);
    let change = etcd.get("/fleet/config/topology-changes/00000000000000000002");
    assert!(
        change.contains("\"weight\":3") && change.contains("\"seq\":2"),
        "{change}"
    );
    // A node started now replays them.
    let b = start("b");
    let weight = |n: &Engine| {
        let r = n.admin(
            "GET",
            "/topology/servers/edge-2",
            b"",
            "application/json",
            None,
        );
        serde_json::from_str::<Value>(&r.body).unwrap()["value"]["weight"].clone()
    };
    wait_until("b replays the changes", || weight(&b) == 3);
    // The third is folded into a new topology record, which names it.
    let (code, v) = entity_change(
        &b,
        "PATCH",
        "/topology/servers/edge-1",
        &json!({"host": "folded.test"}),
        None,
    );
    assert_eq!(code, 200, "{v}");
    wait_until("the changes are folded", || {
        etcd.get("/fleet/config/topology").contains("\"seq\":3")
    });
    assert_eq!(
        etcd.get("/fleet/config/topology-changes/00000000000000000001"),
        ""
    );
    let host = |n: &Engine| {
        let r = n.admin(
            "GET",
            "/topology/servers/edge-1",
            b"",
            "application/json",
            None,
        );
        serde_json::from_str::<Value>(&r.body).unwrap()["value"]["host"].clone()
    };
    for n in [&a, &b] {
        wait_until("every node serves the folded change", || {
            host(n) == "folded.test"
        });
    }
    // A node started after the fold loads the folded document, and every
    // node names the same topology.
    let c = start("c");
    assert_eq!(host(&c), "folded.test");
    assert_eq!(weight(&c), 3);
    // Its audit trail is the fleet's, read from etcd: the changes folded
    // before it started, each naming who made it on which node, at the
    // revision it was written at.
    let r = c.admin("GET", "/audit?since=0", b"", "application/json", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let entries = serde_json::from_str::<Value>(&r.body).unwrap()["entries"].clone();
    let seen: Vec<(String, String, String)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e["revision"].as_u64().unwrap() > 0, "{e}");
            let who = e["who"].as_str().unwrap();
            let node = who.rsplit(' ').next().unwrap().to_string();
            (
                e["action"].as_str().unwrap().to_string(),
                e["key"].as_str().unwrap_or("").to_string(),
                node,
            )
        })
        .collect();
    let want = |action: &str, key: &str, node: &str| {
        (action.to_string(), key.to_string(), node.to_string())
    };
    assert_eq!(
        seen,
        [
            want("replace-topology", "", "a"),
            want("update", "edge-2", "a"),
            want("update", "edge-2", "a"),
            want("update", "edge-1", "b"),
        ],
        "{entries}"
    );
    let hash = |n: &Engine| status(n)["topology"]["hash"].clone();
    wait_until("one hash", || hash(&a) == hash(&b) && hash(&b) == hash(&c));
    // And a change after the fold is record 4.
    let (code, v) = entity_change(&c, "DELETE", "/topology/servers/edge-2", &Value::Null, None);
    assert_eq!(code, 409, "{v}");
    let (code, v) = entity_change(
        &c,
        "PATCH",
        "/topology/servers/edge-2",
        &json!({"weight": 0}),
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert!(
        etcd.get("/fleet/config/topology-changes/00000000000000000004")
            .contains("\"seq\":4")
    );
    wait_until("a serves it", || weight(&a) == 0);
}

/// An admin API call with optional headers and a JSON body.
fn admin_call(
    engine: &Engine,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Response {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    Conn::open(engine.admin.unwrap()).request_with_body(method, path, &all, text.as_bytes())
}

/// Signs in: the cookie and the CSRF token, or the refusal.
fn sign_in_to(engine: &Engine, email: &str, password: &str) -> Result<(String, String), Response> {
    let r = admin_call(
        engine,
        "POST",
        "/session",
        &[],
        Some(json!({"email": email, "password": password})),
    );
    if r.status != 200 {
        return Err(r);
    }
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let v: Value = serde_json::from_str(&r.body).unwrap();
    Ok((cookie, v["csrf_token"].as_str().unwrap().to_string()))
}

#[test]
fn accounts_tokens_and_sessions_are_the_fleets() {
    let (etcd, state, a, b) = pair("etcd-accounts");
    // The first admin, made on node a from loopback, signs in on node b.
    let r = admin_call(
        &a,
        "POST",
        "/users",
        &[],
        Some(json!({"email": "root@example.com", "role": "admin", "password": "admin password 1"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let (cookie_b, csrf_b) = wait_until_ok("the account reaches node b", || {
        sign_in_to(&b, "root@example.com", "admin password 1").ok()
    });
    // Node b now needs a session too: the account exists in the fleet.
    assert_eq!(admin_call(&b, "GET", "/status", &[], None).status, 401);
    // A session from node b is good on node a (one key for the fleet).
    let r = admin_call(&a, "GET", "/users", &[("Cookie", &cookie_b)], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("root@example.com"));

    // A token made on node b works on node a; deleted on a, refused on b.
    let r = admin_call(
        &b,
        "POST",
        "/tokens",
        &[("Cookie", &cookie_b), ("X-CSRF-Token", &csrf_b)],
        Some(json!({"name": "deploy", "role": "operator"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let secret = serde_json::from_str::<Value>(&r.body).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let bearer = format!("Bearer {secret}");
    wait_until("the token works on node a", || {
        let r = admin_call(&a, "GET", "/status", &[("Authorization", &bearer)], None);
        if r.status != 200 {
            eprintln!("{r:?}\n{}", a.log_lines().join("\n"));
        }
        r.status == 200
    });
    let r = admin_call(
        &a,
        "DELETE",
        "/tokens/deploy",
        &[("Cookie", &cookie_b), ("X-CSRF-Token", &csrf_b)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until("the deleted token is refused on node b", || {
        admin_call(&b, "GET", "/status", &[("Authorization", &bearer)], None).status == 401
    });

    // An operator made on b; a new password set on a ends its sessions on b.
    let r = admin_call(
        &b,
        "POST",
        "/users",
        &[("Cookie", &cookie_b), ("X-CSRF-Token", &csrf_b)],
        Some(
            json!({"email": "ops@example.com", "role": "operator", "password": "operator password 1"}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let (ops_cookie, _) = wait_until_ok("the operator signs in on a", || {
        sign_in_to(&a, "ops@example.com", "operator password 1").ok()
    });
    assert_eq!(
        admin_call(&b, "GET", "/status", &[("Cookie", &ops_cookie)], None).status,
        200
    );
    let r = admin_call(
        &a,
        "PATCH",
        "/users/ops@example.com",
        &[("Cookie", &cookie_b), ("X-CSRF-Token", &csrf_b)],
        Some(json!({"password": "a new password 2"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until("the old session ends on b", || {
        admin_call(&b, "GET", "/status", &[("Cookie", &ops_cookie)], None).status == 401
    });

    // Every node's audit trail shows the accounts' changes, from etcd.
    let r = admin_call(&b, "GET", "/audit", &[("Cookie", &cookie_b)], None);
    for needle in [
        "\"kind\": \"users\"",
        "\"kind\": \"tokens\"",
        "ops@example.com",
        "deploy",
    ] {
        assert!(r.body.contains(needle), "{needle}: {}", r.body);
    }

    // What etcd holds is hashes, never a password or a secret; the nodes
    // keep a copy, with which a node starts while etcd is away.
    let users = etcd.get("/fleet/access/users");
    assert!(
        users.contains("argon2id") && !users.contains("password 1"),
        "{users}"
    );
    assert!(!etcd.get("/fleet/access/tokens").contains(&secret));
    drop(b);
    let copy = std::fs::read_to_string(state.path("b").join("users.json")).unwrap();
    assert!(copy.contains("ops@example.com"), "{copy}");
    drop(a);
    drop(etcd);
    let alone = node_with_dead_etcd(&state, "b");
    assert!(sign_in_to(&alone, "ops@example.com", "a new password 2").is_ok());
    // A change to the accounts waits for etcd: refused, and nothing changes.
    let (cookie, csrf) = sign_in_to(&alone, "root@example.com", "admin password 1").unwrap();
    let r = admin_call(
        &alone,
        "POST",
        "/tokens",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        Some(json!({"name": "later", "role": "viewer"})),
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("etcd cannot be written"), "{}", r.body);
}

/// `eventually` for a value.
fn wait_until_ok<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    crate::harness::eventually(what, f)
}

/// A node of the fleet started while no etcd answers (its disk copy).
fn node_with_dead_etcd(state: &TempDir, name: &str) -> Engine {
    let dir = state.path(name);
    let dead = format!("http://127.0.0.1:{}", free_port());
    Engine::start(&[
        "--etcd",
        &dead,
        "--etcd-prefix",
        "/fleet",
        "--state-dir",
        dir.to_str().unwrap(),
        "--node-name",
        name,
        "--etcd-timeout-ms",
        "300",
        "--etcd-start-wait-ms",
        "500",
    ])
}

/// A steering session begun on one node goes on on another: both sign and
/// open session tokens with the fleet's key, so the second node knows the
/// session (here: that it polls far too soon, a `429` only a known session
/// gets), and a node outside the fleet does not (a new session: `200`).
#[test]
fn a_steering_session_moves_between_the_nodes_of_a_fleet() {
    let (_etcd, _state, a, b) = pair("etcd-steering");
    let mut doc: Value = serde_json::from_slice(&topology("e.test")).unwrap();
    doc["schema"] = json!(2);
    doc["pathways"] = json!([{"id": "p1", "group": "g", "host": "p1.test"}]);
    let (code, body) = put_topology(&a, doc.to_string().as_bytes(), None);
    assert_eq!(code, 200, "{body}");
    wait_until("b serves the pathways", || {
        b.get("/steer/hls/ch1", &[("X-Real-IP", "10.1.2.3")]).status == 200
    });
    let first = a.get("/steer/hls/ch1", &[("X-Real-IP", "10.1.2.3")]);
    assert_eq!(first.status, 200, "{first:?}");
    let manifest: Value = serde_json::from_str(&first.body).unwrap();
    let reload = manifest["RELOAD-URI"].as_str().unwrap();
    let again = b.get(reload, &[("X-Real-IP", "10.1.2.3")]);
    assert_eq!(again.status, 429, "b knows a's session: {again:?}");
    let outsider_dir = TempDir::new("etcd-steering-outsider");
    let outsider_topology = outsider_dir.path("t.json");
    std::fs::write(&outsider_topology, doc.to_string()).unwrap();
    let outsider = Engine::start(&["--topology", outsider_topology.to_str().unwrap()]);
    let fresh = outsider.get(reload, &[("X-Real-IP", "10.1.2.3")]);
    assert_eq!(fresh.status, 200, "another key: a new session: {fresh:?}");
}
