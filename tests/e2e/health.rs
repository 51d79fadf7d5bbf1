//! Health checking against real (small) HTTP edge servers on loopback:
//! down after `fall` failed probes, up after `rise`, timeouts, expected
//! bodies, JSON figures reaching the policy, drain, fail-open, and state
//! kept across a topology swap.

use crate::admin::upload;
use crate::harness::{Engine, TempDir, wait_until};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const RISE: u64 = 2;
const FALL: u64 = 2;

/// How a test edge answers its health probes.
#[derive(Clone)]
pub(crate) enum Answer {
    Ok(&'static str),
    Status(u16),
    Slow(Duration),
}

/// A tiny real HTTP server standing in for an edge's health endpoint.
pub(crate) struct Edge {
    pub(crate) port: u16,
    answer: Arc<Mutex<Answer>>,
    /// Probes answered with a success / a failure.
    good: Arc<AtomicU64>,
    bad: Arc<AtomicU64>,
}

impl Edge {
    pub(crate) fn start(answer: Answer) -> Edge {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = Arc::new(Mutex::new(answer));
        let good = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(AtomicU64::new(0));
        let (a, g, b) = (answer.clone(), good.clone(), bad.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (a, g, b) = (a.clone(), g.clone(), b.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 2048];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer = a.lock().unwrap().clone();
                    let (status, body) = match answer {
                        Answer::Ok(body) => {
                            g.fetch_add(1, Ordering::SeqCst);
                            (200, body)
                        }
                        Answer::Status(s) => {
                            b.fetch_add(1, Ordering::SeqCst);
                            (s, "failing")
                        }
                        Answer::Slow(d) => {
                            b.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(d);
                            (200, "OK")
                        }
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Edge {
            port,
            answer,
            good,
            bad,
        }
    }

    pub(crate) fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// Probes answered so far.
    pub(crate) fn probes(&self) -> u64 {
        self.good.load(Ordering::SeqCst) + self.bad.load(Ordering::SeqCst)
    }

    fn location(&self) -> String {
        format!("http://127.0.0.1:{}/vod/x.mp4", self.port)
    }
}

/// A topology with one region whose group holds the edges, all checked.
fn topology(edges: &[&Edge], expect_body: Option<&str>) -> Value {
    let servers: Vec<Value> = edges
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut check = json!({"path": "/health", "interval": "100ms", "timeout": "80ms", "rise": RISE, "fall": FALL});
            if let Some(b) = expect_body {
                check["expect_body"] = json!(b);
            }
            json!({"id": format!("e{}", i + 1), "kind": "edge", "host": "127.0.0.1", "port": e.port, "healthcheck": check})
        })
        .collect();
    let ids: Vec<String> = (1..=edges.len()).map(|i| format!("e{i}")).collect();
    json!({
        "regions": [{"id": "r", "server_groups": ["g"]}],
        "subnets": [{"cidr": "10.0.0.0/8", "region": "r"}],
        "server_groups": [{"id": "g", "servers": ids}],
        "servers": servers,
        "channels": [{"epg_id": "ch1", "streams": [{"protocol": "hls", "encryption": "none", "path": "live/ch1.m3u8"}]}]
    })
}

struct Setup {
    engine: Engine,
    _dir: TempDir,
}

fn start(doc: &Value, extra: &[&str]) -> Setup {
    let dir = TempDir::new("health");
    let path = dir.path("topology.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let mut args = vec![
        "--topology",
        path.to_str().unwrap(),
        "--watch-interval-ms",
        "0",
    ];
    args.extend_from_slice(extra);
    Setup {
        engine: Engine::start(&args),
        _dir: dir,
    }
}

pub(crate) fn state(engine: &Engine, id: &str) -> Value {
    let (_, v) = engine.admin_json("GET", "/servers", json!(null));
    v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
        .unwrap()
}

/// Where `n` requests from a client of the region go.
fn destinations(engine: &Engine, n: usize) -> Vec<String> {
    let mut conn = engine.connect();
    (0..n)
        .map(|_| {
            let resp = conn.request("GET", "/vod/x.mp4", &[("X-Real-IP", "10.1.1.1")]);
            if resp.status == 302 {
                resp.location().to_string()
            } else {
                format!("{} {}", resp.status, resp.body.trim())
            }
        })
        .collect()
}

#[test]
fn an_edge_that_fails_stops_receiving_redirects_and_comes_back_after_rise() {
    let (e1, e2) = (Edge::start(Answer::Ok("OK")), Edge::start(Answer::Ok("OK")));
    let s = start(&topology(&[&e1, &e2], None), &[]);
    wait_until("both edges are up", || {
        state(&s.engine, "e1")["state"] == "up" && state(&s.engine, "e2")["state"] == "up"
    });
    assert!(destinations(&s.engine, 60).contains(&e2.location()));

    let bad_before = e2.bad.load(Ordering::SeqCst);
    e2.set(Answer::Status(503));
    wait_until("e2 is down", || state(&s.engine, "e2")["state"] == "down");
    // Marked down by its `fall`-th failed probe (one more may be in flight).
    let failed = e2.bad.load(Ordering::SeqCst) - bad_before;
    assert!(
        (FALL..=FALL + 1).contains(&failed),
        "{failed} failed probes before down"
    );
    let now = destinations(&s.engine, 60);
    assert!(now.iter().all(|l| *l == e1.location()), "{now:?}");
    let v = state(&s.engine, "e2");
    assert_eq!(v["last_error"], "status 503");
    assert!(v["since"].is_string());
    s.engine.wait_log(0, "health: server is DOWN");

    let good_before = e2.good.load(Ordering::SeqCst);
    e2.set(Answer::Ok("OK"));
    wait_until("e2 receives redirects again", || {
        destinations(&s.engine, 30).contains(&e2.location())
    });
    let passed = e2.good.load(Ordering::SeqCst) - good_before;
    assert!(
        (RISE..=RISE + 1).contains(&passed),
        "{passed} good probes before up"
    );
    s.engine.wait_log(0, "health: server is UP");
}

#[test]
fn a_slow_edge_counts_as_down() {
    let (e1, e2) = (
        Edge::start(Answer::Ok("OK")),
        Edge::start(Answer::Slow(Duration::from_millis(300))),
    );
    let s = start(&topology(&[&e1, &e2], None), &[]);
    wait_until("e2 is down", || state(&s.engine, "e2")["state"] == "down");
    assert!(
        state(&s.engine, "e2")["last_error"]
            .as_str()
            .unwrap()
            .contains("timed out")
    );
    assert!(
        destinations(&s.engine, 40)
            .iter()
            .all(|l| *l == e1.location())
    );
}

#[test]
fn the_expected_body_must_match() {
    let (e1, e2) = (
        Edge::start(Answer::Ok("OK\n")),
        Edge::start(Answer::Ok("MAINTENANCE")),
    );
    let s = start(&topology(&[&e1, &e2], Some("OK")), &[]);
    wait_until("e2 is down", || state(&s.engine, "e2")["state"] == "down");
    assert_eq!(
        state(&s.engine, "e1")["state"],
        "up",
        "surrounding whitespace is ignored"
    );
    assert!(
        state(&s.engine, "e2")["last_error"]
            .as_str()
            .unwrap()
            .contains("MAINTENANCE")
    );
}

#[test]
fn json_figures_reach_the_policy() {
    let (e1, e2) = (
        Edge::start(Answer::Ok(r#"{"load": 0.9, "connections": 1800}"#)),
        Edge::start(Answer::Ok(r#"{"load": 0.1, "connections": 20}"#)),
    );
    let s = start(&topology(&[&e1, &e2], None), &[]);
    upload(&s.engine, "least-loaded", "least-loaded", json!({}), true);
    wait_until("figures are known", || {
        state(&s.engine, "e1")["figures"]["load"] == 0.9
            && state(&s.engine, "e2")["figures"]["load"] == 0.1
    });
    assert_eq!(state(&s.engine, "e1")["figures"]["connections"], 1800.0);
    assert!(state(&s.engine, "e1")["rtt_us"].as_u64().is_some());
    assert!(
        destinations(&s.engine, 30)
            .iter()
            .all(|l| *l == e2.location())
    );

    e1.set(Answer::Ok(r#"{"load": 0.05}"#));
    wait_until("the lighter edge takes the traffic", || {
        destinations(&s.engine, 10)
            .iter()
            .all(|l| *l == e1.location())
    });
}

#[test]
fn drain_takes_an_edge_out_and_keeps_checking_it() {
    let (e1, e2) = (Edge::start(Answer::Ok("OK")), Edge::start(Answer::Ok("OK")));
    let s = start(&topology(&[&e1, &e2], None), &[]);
    wait_until("e1 is up", || state(&s.engine, "e1")["state"] == "up");
    let (status, v) = s
        .engine
        .admin_json("POST", "/servers/e1/drain", json!(null));
    assert_eq!((status, v["changed"].as_bool()), (200, Some(true)));
    assert_eq!(state(&s.engine, "e1")["state"], "draining");
    assert!(
        destinations(&s.engine, 40)
            .iter()
            .all(|l| *l == e2.location())
    );
    let probes = e1.good.load(Ordering::SeqCst);
    wait_until("a drained edge is still probed", || {
        e1.good.load(Ordering::SeqCst) > probes + 1
    });
    let (status, _) = s
        .engine
        .admin_json("DELETE", "/servers/e1/drain", json!(null));
    assert_eq!(status, 200);
    wait_until("e1 is back", || {
        destinations(&s.engine, 30).contains(&e1.location())
    });
    let (status, _) = s
        .engine
        .admin_json("POST", "/servers/nope/drain", json!(null));
    assert_eq!(status, 404);
}

#[test]
fn all_down_is_a_503_unless_fail_open() {
    let (e1, e2) = (
        Edge::start(Answer::Status(500)),
        Edge::start(Answer::Status(500)),
    );
    let doc = topology(&[&e1, &e2], None);
    let closed = start(&doc, &[]);
    let open = start(&doc, &["--health-fail-open"]);
    for s in [&closed, &open] {
        wait_until("both down", || {
            state(&s.engine, "e1")["state"] == "down" && state(&s.engine, "e2")["state"] == "down"
        });
    }
    let answers = destinations(&closed.engine, 10);
    assert!(answers.iter().all(|a| a.starts_with("503")), "{answers:?}");
    let answers = destinations(&open.engine, 40);
    assert!(
        answers
            .iter()
            .all(|a| *a == e1.location() || *a == e2.location()),
        "{answers:?}"
    );
    // Drained servers stay out even then.
    open.engine
        .admin_json("POST", "/servers/e1/drain", json!(null));
    assert!(
        destinations(&open.engine, 40)
            .iter()
            .all(|a| *a == e2.location())
    );
}

#[test]
fn a_topology_swap_keeps_the_state_of_unchanged_servers() {
    let (e1, e2) = (
        Edge::start(Answer::Ok("OK")),
        Edge::start(Answer::Status(500)),
    );
    let mut doc = topology(&[&e1, &e2], None);
    let s = start(&doc, &[]);
    wait_until("e2 is down", || state(&s.engine, "e2")["state"] == "down");
    s.engine
        .admin_json("POST", "/servers/e1/drain", json!(null));
    // Another channel: a change that leaves both servers as they were.
    doc["channels"]
        .as_array_mut()
        .unwrap()
        .push(json!({"epg_id": "ch2", "streams": [{"protocol": "hls", "encryption": "none", "path": "live/ch2.m3u8"}]}));
    let resp = s.engine.admin(
        "PUT",
        "/topology",
        doc.to_string().as_bytes(),
        "application/json",
        None,
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    // Right after the swap, no probe needed: e2 is still down, e1 still drained.
    let (_, v) = s.engine.admin_json("GET", "/servers", json!(null));
    assert_eq!(v["topology_version"], 2);
    assert_eq!(state(&s.engine, "e2")["state"], "down");
    assert_eq!(state(&s.engine, "e1")["state"], "draining");
    let answers = destinations(&s.engine, 10);
    assert!(answers.iter().all(|a| a.starts_with("503")), "{answers:?}");
}

/// A TLS health endpoint on 127.0.0.2:443 with a self-signed certificate;
/// returns the certificate's PEM.
fn start_tls_edge() -> String {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.2".to_string()]).unwrap();
    let pem = cert.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let config = Arc::new(config);
    let listener =
        TcpListener::bind("127.0.0.2:443").expect("binding 127.0.0.2:443 (tests run as root)");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut buf = [0u8; 2048];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK",
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    pem
}

#[test]
fn edges_on_443_are_probed_over_tls() {
    let pem = start_tls_edge();
    let doc = json!({
        "regions": [{"id": "r", "server_groups": ["g"]}],
        "subnets": [{"cidr": "10.0.0.0/8", "region": "r"}],
        "server_groups": [{"id": "g", "servers": ["tls"]}],
        "servers": [{"id": "tls", "kind": "edge", "host": "127.0.0.2", "port": 443,
                     "healthcheck": {"path": "/health", "interval": "100ms", "timeout": "80ms", "expect_body": "OK"}}],
        "channels": []
    });
    let dir = TempDir::new("tls-ca");
    let ca = dir.path("ca.pem");
    std::fs::write(&ca, &pem).unwrap();
    let trusting = start(&doc, &["--health-ca-file", ca.to_str().unwrap()]);
    let untrusting = start(&doc, &[]);
    wait_until("the TLS edge is up", || {
        state(&trusting.engine, "tls")["state"] == "up"
    });
    wait_until("an unknown certificate fails the check", || {
        state(&untrusting.engine, "tls")["state"] == "down"
    });
    let error = state(&untrusting.engine, "tls")["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.starts_with("tls:"), "{error}");
    let resp = trusting
        .engine
        .get("/vod/x.mp4", &[("X-Real-IP", "10.1.1.1")]);
    assert_eq!(resp.location(), "https://127.0.0.2/vod/x.mp4");

    let err = Engine::try_start(&[
        "--health-ca-file",
        dir.path("missing.pem").to_str().unwrap(),
    ])
    .err()
    .expect("must not start");
    assert!(err.contains("health CA file"), "{err}");
}
