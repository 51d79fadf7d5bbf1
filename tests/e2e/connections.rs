//! Overload protection on the player listener: a worker at its connection
//! limit closes new connections at once and keeps serving the ones it has;
//! idle connections are closed after the head timeout; both are counted.

use crate::harness::{Engine, eventually};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Reads until the peer closes (`true`) or `wait` passes with the
/// connection still open (`false`).
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn metric(engine: &Engine, line_start: &str) -> f64 {
    let text = engine
        .admin("GET", "/metrics", b"", "text/plain", None)
        .body;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn at_the_connection_limit_new_connections_are_closed_and_open_ones_served() {
    let engine = Engine::spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--max-connections-per-worker",
        "3",
        "--header-timeout-ms",
        "400",
    ])
    .unwrap();
    let mut busy = engine.connect();
    let resp = busy.request("GET", "/vod/a.mp4", &[("X-Real-IP", "10.1.2.3")]);
    assert_eq!(resp.status, 302);
    let mut idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(engine.addr).unwrap())
        .collect();
    // Let the worker take them before the one over the limit.
    eventually("three connections open", || {
        (metric(
            &engine,
            "edgeward_connections_open{listener=\"http\",worker=\"0\"}",
        ) == 3.0)
            .then_some(())
    });
    let mut over = TcpStream::connect(engine.addr).unwrap();
    let _ = over.write_all(b"GET /vod/a.mp4 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        closed_within(&mut over, Duration::from_secs(5)),
        "the connection over the limit is closed at once, unanswered"
    );
    // The open one is still served.
    let resp = busy.request("GET", "/vod/b.mp4", &[("X-Real-IP", "10.1.2.3")]);
    assert_eq!(resp.status, 302);
    assert_eq!(
        metric(
            &engine,
            "edgeward_connections_refused_total{listener=\"http\",worker=\"0\"}"
        ),
        1.0
    );

    // Idle connections (no request yet, or kept alive after one) are
    // closed after the head timeout, and counted.
    for stream in &mut idle {
        assert!(
            closed_within(stream, Duration::from_secs(10)),
            "idle connection closed"
        );
    }
    eventually("idle connections counted as timed out", || {
        (metric(
            &engine,
            "edgeward_connections_timed_out_total{listener=\"http\",worker=\"0\"}",
        ) >= 2.0)
            .then_some(())
    });
    // With room again, new connections are served.
    let resp = engine.get("/vod/c.mp4", &[("X-Real-IP", "10.1.2.3")]);
    assert_eq!(resp.status, 302);
}
