//! Programme guides fetched on a schedule (`--epg-sources`): over HTTP,
//! from a test server that answers `304` to a repeated `ETag`, and from a
//! real FTP server (pyftpdlib) with the old system's delete-after-import,
//! where a bad file stays on the server and is not fetched again.

use crate::epg::{at, kaltura, programs_of};
use crate::harness::{Engine, TempDir, fixtures, wait_until};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A node on the routing fixture fetching the guides of `sources`.
fn fetching_node(sources: &std::path::Path) -> Engine {
    let topology = fixtures().join("routing.json");
    Engine::start(&[
        "--topology",
        topology.to_str().unwrap(),
        "--epg-sources",
        sources.to_str().unwrap(),
    ])
}

/// An XMLTV guide of `ch1`.
fn xmltv(programmes: &[(i64, i64)]) -> String {
    let mut xml = String::from("<?xml version=\"1.0\"?>\n<tv>\n<channel id=\"ch1\"/>\n");
    for (from, to) in programmes {
        xml.push_str(&format!(
            "<programme channel=\"ch1\" start=\"{} +0000\" stop=\"{} +0000\"><title>t</title></programme>\n",
            at(*from),
            at(*to)
        ));
    }
    xml.push_str("</tv>\n");
    xml
}

/// Serves `body` at every path with `ETag: "v1"`, answering `304` to
/// `If-None-Match: "v1"`; counts requests and `304`s.
fn guide_server(
    body: Arc<Mutex<String>>,
) -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (requests, unchanged) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, u) = (requests.clone(), unchanged.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            let mut tag = None;
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("if-none-match:") {
                    tag = Some(v.trim().to_string());
                }
            }
            r.fetch_add(1, Ordering::SeqCst);
            let body = body.lock().unwrap().clone();
            let etag = format!("\"{}\"", body.len());
            if tag.as_deref() == Some(etag.as_str()) {
                u.fetch_add(1, Ordering::SeqCst);
                let _ = conn.write_all(b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n");
                continue;
            }
            let _ = conn.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    (addr, requests, unchanged)
}

#[test]
fn a_guide_is_fetched_over_http_and_not_imported_again_unchanged() {
    let body = Arc::new(Mutex::new(xmltv(&[(120, 180), (180, 240)])));
    let (addr, requests, unchanged) = guide_server(body.clone());
    let dir = TempDir::new("epg-http");
    let sources = dir.path("sources.toml");
    std::fs::write(
        &sources,
        format!("[[source]]\nurl = \"http://{addr}/guides/tv.xml\"\nevery = \"1s\"\n"),
    )
    .unwrap();
    let e = fetching_node(&sources);
    let id = |minutes: i64| format!("ch1-{}", at(minutes));
    wait_until("the guide is imported", || {
        let p = programs_of(&e, "ch1");
        p.contains(&id(120)) && p.contains(&id(180))
    });
    wait_until("asked again, answered 304", || {
        unchanged.load(Ordering::SeqCst) >= 2
    });
    let (_, audit) = e.admin_json("GET", "/audit", serde_json::json!(null));
    let imports = audit.to_string().matches("epg fetch http://").count();
    assert!(imports >= 1, "{audit}");
    // A new version is imported, and one in the Kaltura dialect too.
    *body.lock().unwrap() = xmltv(&[(120, 180), (180, 240), (240, 300)]);
    wait_until("the new version is imported", || {
        programs_of(&e, "ch1").contains(&id(240))
    });
    *body.lock().unwrap() = kaltura("ch1", &[("http-k", 400, 460)]);
    wait_until("the Kaltura guide is imported", || {
        programs_of(&e, "ch1").contains(&"http-k".to_string())
    });
    assert!(requests.load(Ordering::SeqCst) >= 4);
}

/// pyftpdlib serving `dir` to `epg`/`secret` on a free port.
struct FtpServer(Child, u16);

impl FtpServer {
    fn start(dir: &std::path::Path) -> FtpServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "pyftpdlib",
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-w",
                "-u",
                "epg",
                "-P",
                "secret",
                "-d",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m pyftpdlib (tests/run installs it)");
        wait_until("the FTP server listens", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        FtpServer(child, port)
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn guides_are_pulled_from_ftp_and_deleted_once_imported() {
    let dir = TempDir::new("epg-ftp");
    let remote = dir.path("remote");
    std::fs::create_dir_all(&remote).unwrap();
    std::fs::write(
        remote.join("KalturaEPG_ch1_261204.xml"),
        kaltura("ch1", &[("ftp1", 120, 180)]),
    )
    .unwrap();
    std::fs::write(
        remote.join("broken.xml"),
        "<EpgChannels>\n<programme channel=\"ch1\"",
    )
    .unwrap();
    std::fs::write(remote.join("readme.txt"), "not a guide").unwrap();
    let ftp = FtpServer::start(&remote);
    let sources = dir.path("sources.toml");
    std::fs::write(
        &sources,
        format!(
            "[[source]]\nurl = \"ftp://127.0.0.1:{}/\"\nuser = \"epg\"\npassword = \"secret\"\nevery = \"1s\"\ndelete_after_import = true\n",
            ftp.1
        ),
    )
    .unwrap();
    let e = fetching_node(&sources);
    wait_until("ftp1 is imported and its file deleted", || {
        programs_of(&e, "ch1").contains(&"ftp1".to_string())
            && !remote.join("KalturaEPG_ch1_261204.xml").exists()
    });
    // The bad file stays on the server, reported once, not fetched again.
    wait_until("the bad file is reported", || {
        e.log_lines()
            .iter()
            .any(|l| l.contains("EPG file refused") && l.contains("broken.xml"))
    });
    assert!(remote.join("broken.xml").exists());
    assert!(remote.join("readme.txt").exists());
    // XMLTV too.
    std::fs::write(
        remote.join("tv.xml"),
        format!(
            "<tv><programme channel=\"sports\" id=\"ftp-x\" start=\"{} +0000\" stop=\"{} +0000\"/></tv>",
            at(120),
            at(180)
        ),
    )
    .unwrap();
    wait_until("the XMLTV file is imported", || {
        programs_of(&e, "sports").contains(&"ftp-x".to_string()) && !remote.join("tv.xml").exists()
    });
    // A new file is picked up on a later round.
    std::fs::write(
        remote.join("KalturaEPG_ch1_261205.xml"),
        kaltura("ch1", &[("ftp2", 300, 360)]),
    )
    .unwrap();
    wait_until("ftp2 is imported", || {
        programs_of(&e, "ch1").contains(&"ftp2".to_string())
    });
    let refused = e
        .log_lines()
        .iter()
        .filter(|l| l.contains("EPG file refused") && l.contains("broken.xml"))
        .count();
    assert_eq!(refused, 1, "refused once, not every round");
    assert!(
        e.log_lines().iter().all(|l| !l.contains("secret")),
        "no password in the log"
    );
}
