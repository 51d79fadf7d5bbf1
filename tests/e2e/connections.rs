//! Overload protection on the player listener: a worker at its connection
//! limit closes new connections at once and keeps serving the ones it has;
//! idle connections are closed after the head timeout, idle HTTP/2 ones
//! after the idle timeout; all are counted.

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

/// Timeouts on the cleartext listener, summed over the workers.
pub fn plain_timeouts(engine: &Engine) -> f64 {
    let text = engine
        .admin("GET", "/metrics", b"", "text/plain", None)
        .body;
    text.lines()
        .filter(|l| l.starts_with("edgeward_connections_timed_out_total{listener=\"http\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
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

/// One HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[test]
fn an_idle_http2_connection_is_closed_with_goaway_after_the_idle_timeout() {
    let engine = Engine::start(&["--idle-timeout-ms", "300"]);
    let mut stream = TcpStream::connect(engine.addr).unwrap();
    // h2c with prior knowledge: the preface, empty SETTINGS, one GET
    // (HPACK without Huffman: :method GET, :scheme http, then :path and
    // :authority as literals with indexed names).
    let path = b"/vod/a.mp4";
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x01, 1, b'x']);
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(4, 0, 0, &[]));
    hello.extend(frame(1, 0x05, 1, &block));
    stream.write_all(&hello).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Frames until the engine closes: the answer's HEADERS on stream 1,
    // then a GOAWAY (and a PING this client, like one that has gone away,
    // never answers: the engine closes anyway).
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut acked = false;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("still open after 10 s: {e}"),
        }
        // Acknowledge the engine's SETTINGS (its first frame), as a
        // client must.
        if !acked {
            acked = true;
            let _ = stream.write_all(&frame(4, 1, 0, &[]));
        }
    }
    let mut kinds = Vec::new();
    let mut at = 0;
    while at + 9 <= got.len() {
        let len = u32::from_be_bytes([0, got[at], got[at + 1], got[at + 2]]) as usize;
        let stream_id = u32::from_be_bytes([got[at + 5], got[at + 6], got[at + 7], got[at + 8]]);
        kinds.push((got[at + 3], stream_id & 0x7fff_ffff));
        at += 9 + len;
    }
    assert!(kinds.contains(&(1, 1)), "the answer's HEADERS: {kinds:?}");
    assert!(
        kinds.iter().any(|&(kind, _)| kind == 7),
        "a GOAWAY: {kinds:?}"
    );
    eventually("the idle HTTP/2 connection counted as timed out", || {
        (plain_timeouts(&engine) >= 1.0).then_some(())
    });
}
