//! A real hls.js (from npm, at the lockfile's version) in headless
//! Chromium, steered by the engine: it loads a multivariant playlist with
//! two pathways (two "CDNs", each a small HTTP server on loopback that is
//! also the health-checked edge of its server group), polls
//! `/steer/hls/ch1`, and when the first CDN's edge fails its health checks
//! it receives the new order on its next poll and switches its levels to
//! the other pathway. (The segments never arrive, so the player's own
//! error handling never moves it: only steering does.)

use crate::browser::Browser;
use crate::harness::{Engine, TempDir, wait_until};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A CDN on loopback: its health endpoint (failing when told), a page,
/// and the playlists, all readable from any origin.
struct Cdn {
    port: u16,
    healthy: Arc<AtomicBool>,
}

impl Cdn {
    fn start(master: Arc<std::sync::Mutex<String>>, script: Arc<String>) -> Cdn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let healthy = Arc::new(AtomicBool::new(true));
        let h = healthy.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (h, master, script) = (h.clone(), master.clone(), script.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&got).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    if path.ends_with(".ts") {
                        // A segment that never comes: the player waits for
                        // its first byte (seconds) without an error of its
                        // own, so only steering moves it.
                        std::thread::sleep(std::time::Duration::from_secs(20));
                        return;
                    }
                    let (status, kind, body) = match path.split('?').next().unwrap() {
                        "/health" if h.load(Ordering::SeqCst) => (200, "text/plain", "OK".to_string()),
                        "/health" => (500, "text/plain", "failing".to_string()),
                        "/page.html" => (
                            200,
                            "text/html",
                            "<!doctype html><title>player</title><video muted></video><script src=\"/hls.min.js\"></script>".into(),
                        ),
                        "/hls.min.js" => (200, "text/javascript", (*script).clone()),
                        "/master.m3u8" => (
                            200,
                            "application/vnd.apple.mpegurl",
                            master.lock().unwrap().clone(),
                        ),
                        "/media.m3u8" => (
                            200,
                            "application/vnd.apple.mpegurl",
                            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\nseg0.ts\n#EXT-X-ENDLIST\n".into(),
                        ),
                        _ => (404, "text/plain", "not here".into()),
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nAccess-Control-Allow-Origin: *\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Cdn { port, healthy }
    }
}

fn hls_js() -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/browser/node_modules/hls.js/dist/hls.min.js");
    std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: run `npm ci --prefix tests/browser` (tests/run does)",
            file.display()
        )
    })
}

#[test]
fn hls_js_in_chromium_switches_pathway_when_its_cdn_goes_down() {
    let master = Arc::new(std::sync::Mutex::new(String::new()));
    let script = Arc::new(hls_js());
    let (a, b) = (
        Cdn::start(master.clone(), script.clone()),
        Cdn::start(master.clone(), script),
    );
    let check =
        json!({"path": "/health", "interval": "100ms", "timeout": "80ms", "rise": 1, "fall": 1});
    let topology = json!({
        "schema": 2,
        "regions": [{"id": "home", "server_groups": ["g-a", "g-b"]}],
        "subnets": [{"cidr": "127.0.0.0/8", "region": "home"}],
        "server_groups": [{"id": "g-a", "servers": ["e-a"]}, {"id": "g-b", "servers": ["e-b"]}],
        "servers": [
            {"id": "e-a", "kind": "edge", "host": "127.0.0.1", "port": a.port, "healthcheck": check},
            {"id": "e-b", "kind": "edge", "host": "127.0.0.1", "port": b.port, "healthcheck": check}
        ],
        "channels": [{"epg_id": "ch1", "streams": [{"protocol": "hls", "encryption": "none", "path": "master.m3u8"}]}],
        "pathways": [
            {"id": "cdn-a", "group": "g-a", "host": format!("127.0.0.1:{}", a.port)},
            {"id": "cdn-b", "group": "g-b", "host": format!("127.0.0.1:{}", b.port)}
        ],
        "steering": {"ttl": "1s"}
    });
    let dir = TempDir::new("hlsjs");
    let path = dir.path("topology.json");
    std::fs::write(&path, topology.to_string()).unwrap();
    let engine = Engine::start(&["--topology", path.to_str().unwrap()]);
    *master.lock().unwrap() = format!(
        "#EXTM3U\n\
         #EXT-X-CONTENT-STEERING:SERVER-URI=\"http://{engine}/steer/hls/ch1\",PATHWAY-ID=\"cdn-a\"\n\
         #EXT-X-STREAM-INF:BANDWIDTH=1000000,PATHWAY-ID=\"cdn-a\"\n\
         http://127.0.0.1:{a}/media.m3u8\n\
         #EXT-X-STREAM-INF:BANDWIDTH=1000000,PATHWAY-ID=\"cdn-b\"\n\
         http://127.0.0.1:{b}/media.m3u8\n",
        engine = engine.addr,
        a = a.port,
        b = b.port,
    );

    let browser = Browser::start(1024, 768);
    browser.goto(&format!("http://127.0.0.1:{}/page.html", a.port));
    wait_until("hls.js loaded", || {
        browser.run("return typeof Hls !== 'undefined';", json!([])) == json!(true)
    });
    browser.run(
        "window.seen = [];
         const hls = new Hls({ debug: false });
         window.hls = hls;
         hls.on(Hls.Events.STEERING_MANIFEST_LOADED, (_, d) => {
           window.seen.push(d.steeringManifest['PATHWAY-PRIORITY'].join(','));
         });
         hls.on(Hls.Events.ERROR, (_, d) => { window.lastError = d.details; });
         hls.attachMedia(document.querySelector('video'));
         hls.loadSource(arguments[0]);",
        json!([format!("http://127.0.0.1:{}/master.m3u8", a.port)]),
    );
    let state = || -> Value {
        browser.run(
            "const l = window.hls.levels || [];
             return { seen: window.seen, pathways: l.map(x => x.pathwayId),
                      priority: window.hls.pathwayPriority, failure: window.lastError || null };",
            json!([]),
        )
    };
    wait_until("hls.js steered to cdn-a", || {
        let s = state();
        s["seen"].as_array().is_some_and(|v| !v.is_empty()) && s["pathways"] == json!(["cdn-a"])
    });
    let first = state();
    assert_eq!(first["seen"][0], "cdn-a,cdn-b", "{first}");

    // cdn-a's edge fails its health checks: the next poll puts it last,
    // and hls.js moves its levels to cdn-b.
    a.healthy.store(false, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let s = state();
        if s["priority"] == json!(["cdn-b", "cdn-a"]) && s["pathways"] == json!(["cdn-b"]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hls.js did not switch to cdn-b: {s}; polls answered 200: {}, 429: {}, 410: {}",
            engine.requests_total("steer", 200),
            engine.requests_total("steer", 429),
            engine.requests_total("steer", 410),
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let after = state();
    assert!(
        after["seen"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "cdn-b,cdn-a"),
        "{after}"
    );
    // It kept polling (no 429 ended its steering) and got 200s only.
    let polls = engine.requests_total("steer", 200);
    assert!(polls >= 2, "{polls} polls");
    assert_eq!(engine.requests_total("steer", 429), 0);
    drop(b);
}
