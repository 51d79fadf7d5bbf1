//! HTTP/1.1 on the cleartext player listener, byte by byte: pipelining,
//! heads split across packets, keep-alive rules of 1.0 and 1.1, request
//! bodies, absolute-form targets, the idle timeout and the request limit,
//! and malformed or oversized heads answered with a clear status while
//! the engine goes on serving.

use crate::harness::{Engine, eventually};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What came back on a connection: everything read, and whether the
/// engine closed it (`false`: still open after `wait` of silence).
struct Exchange {
    text: String,
    closed: bool,
}

impl Exchange {
    fn statuses(&self) -> Vec<u16> {
        self.text
            .split("HTTP/1.1 ")
            .skip(1)
            .map(|s| s[..3].parse().unwrap())
            .collect()
    }
}

fn exchange(engine: &Engine, parts: &[&[u8]], wait: Duration) -> Exchange {
    let mut stream = TcpStream::connect(engine.addr).unwrap();
    stream.set_nodelay(true).unwrap();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
        stream.write_all(part).unwrap();
    }
    read_all(&mut stream, wait)
}

fn read_all(stream: &mut TcpStream, wait: Duration) -> Exchange {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    Exchange {
        text: String::from_utf8_lossy(&got).into_owned(),
        closed,
    }
}

const GET: &[u8] = b"GET /vod/a.mp4 HTTP/1.1\r\nHost: x\r\n\r\n";
const SHORT: Duration = Duration::from_millis(500);

#[test]
fn pipelined_split_and_keep_alive() {
    let engine = Engine::start(&[]);
    // Three requests in one packet: three answers, in order.
    let pipelined = [
        GET,
        b"HEAD /vod/b.mp4 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    .concat();
    let got = exchange(&engine, &[&pipelined], SHORT);
    assert_eq!(got.statuses(), [302, 302, 404], "{}", got.text);
    assert!(got.text.contains("/vod/a.mp4\r\n") && got.text.contains("/vod/b.mp4\r\n"));
    assert!(got.text.ends_with("no such route\n"), "{}", got.text);
    assert!(!got.closed, "HTTP/1.1 stays open");

    // A head in pieces, the last one with a second request's start.
    let got = exchange(
        &engine,
        &[
            b"GET /vod/a.m",
            b"p4 HTTP/1.1\r\nHo",
            b"st: x\r\n\r\nGET /vod/c",
            b".mp4 HTTP/1.1\r\n\r\n",
        ],
        SHORT,
    );
    assert_eq!(got.statuses(), [302, 302], "{}", got.text);
    assert!(got.text.contains("/vod/c.mp4\r\n"), "{}", got.text);

    // HTTP/1.0 closes unless asked to keep alive.
    let got = exchange(&engine, &[b"GET /vod/a.mp4 HTTP/1.0\r\n\r\n"], SHORT);
    assert_eq!(got.statuses(), [302]);
    assert!(got.text.contains("Connection: close\r\n") && got.closed);
    let got = exchange(
        &engine,
        &[b"GET /vod/a.mp4 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"],
        SHORT,
    );
    assert!(
        got.text.contains("Connection: keep-alive\r\n"),
        "{}",
        got.text
    );
    assert!(!got.closed);
    // Connection: close on 1.1, after a first request kept alive.
    let closing = [
        GET,
        b"GET /vod/b.mp4 HTTP/1.1\r\nConnection: close\r\n\r\n",
        GET,
    ]
    .concat();
    let got = exchange(&engine, &[&closing], SHORT);
    assert_eq!(got.statuses(), [302, 302], "nothing after the close");
    assert!(got.closed);

    // An absolute-form target is routed by its path and query.
    let got = exchange(
        &engine,
        &[b"GET http://redirector.test/vod/a.mp4?t=1 HTTP/1.1\r\n\r\n"],
        SHORT,
    );
    assert_eq!(got.statuses(), [302]);
    assert!(got.text.contains("/vod/a.mp4?t=1\r\n"), "{}", got.text);
}

#[test]
fn request_bodies_are_dropped_or_end_the_connection() {
    let engine = Engine::start(&[]);
    // A small body is read past: the next request is served.
    let got = exchange(
        &engine,
        &[
            b"POST /vod/a.mp4 HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello",
            b" world",
            GET,
        ],
        SHORT,
    );
    assert_eq!(got.statuses(), [405, 302], "{}", got.text);
    assert!(got.text.contains("Allow: GET, HEAD\r\n"));
    assert!(!got.closed);
    // A chunked body is not read: answered, then closed.
    let got = exchange(
        &engine,
        &[b"POST /vod/a.mp4 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
        SHORT,
    );
    assert_eq!(got.statuses(), [405]);
    assert!(got.text.contains("Connection: close\r\n") && got.closed);
    // So is one larger than 64 KiB.
    let got = exchange(
        &engine,
        &[b"POST /vod/a.mp4 HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n"],
        SHORT,
    );
    assert_eq!(got.statuses(), [405]);
    assert!(got.closed);
}

#[test]
fn malformed_and_oversized_heads_are_refused_and_the_engine_serves_on() {
    let mut engine = Engine::start(&[]);
    let long_header = format!(
        "GET /vod/a.mp4 HTTP/1.1\r\nX-Long: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let many_headers = format!(
        "GET /vod/a.mp4 HTTP/1.1\r\n{}\r\n",
        (0..150)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&[u8], u16, &str)> =
        vec![
        (b"GARBAGE\r\n\r\n", 400, "malformed request head"),
        (b"GET /vod/a.mp4 HTTP/1.1\r\nBad Name: v\r\n\r\n", 400, "malformed request head"),
        (b"GET /vod/a.mp4 HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400, "malformed request head"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, "malformed request head"),
        (b"GET /vod/a.mp4 HTTP/3.0\r\n\r\n", 400, "malformed request head"),
        (
            b"GET /vod/a.mp4 HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "both Content-Length and Transfer-Encoding",
        ),
        (
            b"GET /vod/a.mp4 HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
            "malformed Content-Length",
        ),
        (b"GET /vod/a.mp4 HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "malformed Content-Length"),
        (b"GET * HTTP/1.1\r\n\r\n", 400, "malformed request target"),
        (
            "GET /vod/caf\u{e9}.mp4 HTTP/1.1\r\n\r\n".as_bytes(),
            400,
            "malformed request target",
        ),
        (long_header.as_bytes(), 431, "request head too large"),
        (many_headers.as_bytes(), 431, "too many header lines"),
    ];
    for (sent, status, reason) in cases {
        let got = exchange(&engine, &[sent], Duration::from_secs(5));
        let shown = String::from_utf8_lossy(&sent[..sent.len().min(60)]).into_owned();
        assert_eq!(got.statuses(), [status], "{shown:?}: {}", got.text);
        assert!(
            got.text.ends_with(&format!("\r\n\r\n{reason}\n")),
            "{shown:?}: {}",
            got.text
        );
        assert!(got.text.contains("Connection: close\r\n"), "{shown:?}");
        assert!(got.closed, "{shown:?}: closed after the refusal");
    }
    assert!(engine.alive());
    assert_eq!(engine.get("/vod/a.mp4", &[]).status, 302);
    // Refusals of the HTTP layer are counted with the others.
    assert_eq!(engine.requests_total("other", 400), 10);
    assert_eq!(engine.requests_total("other", 431), 2);
}

#[test]
fn many_pipelined_requests_all_answered_in_order_while_the_client_reads_slowly() {
    let engine = Engine::start(&[]);
    // A small receive buffer, so that the engine's answers back up and it
    // must wait for the socket to take the rest.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&engine.addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    let mut reader = stream.try_clone().unwrap();
    const N: usize = 40_000;
    let writer = std::thread::spawn(move || {
        let mut batch = Vec::new();
        for i in 0..N {
            batch.extend_from_slice(format!("GET /vod/{i}.mp4 HTTP/1.1\r\n\r\n").as_bytes());
        }
        // One write of ~1.2 MB, with more answers (~7 MB) than the
        // socket buffers hold until the reader below catches up.
        stream.write_all(&batch).unwrap();
        stream
    });
    // Read nothing for a while: the engine's answers back up.
    std::thread::sleep(Duration::from_millis(500));
    reader
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    let mut seen = 0;
    while seen < N || !text.ends_with("\r\n\r\n") {
        let n = reader.read(&mut buf).expect("answers keep coming");
        assert!(n > 0, "closed after {seen} answers");
        let from = text.len().saturating_sub(20);
        text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        seen += text[from..].matches("HTTP/1.1 302 Found").count()
            - text[from..text.len() - n]
                .matches("HTTP/1.1 302 Found")
                .count();
    }
    let _stream = writer.join().unwrap();
    let order: Vec<usize> = text
        .match_indices("/vod/")
        .map(|(at, _)| {
            let rest = &text[at + 5..];
            rest[..rest.find('.').unwrap()].parse().unwrap()
        })
        .collect();
    assert_eq!(order, (0..N).collect::<Vec<_>>());
}

#[test]
fn idle_timeout_request_limit_and_stalled_heads() {
    // The idle timeout short, the head timeout at its default (30 s).
    let engine = Engine::start(&[
        "--idle-timeout-ms",
        "300",
        "--max-requests-per-connection",
        "3",
    ]);
    // Kept alive after a request, then idle: closed by the idle timeout
    // (the head timeout would take 30 s).
    let mut stream = TcpStream::connect(engine.addr).unwrap();
    stream.write_all(GET).unwrap();
    let got = read_all(&mut stream, Duration::from_secs(10));
    assert_eq!(got.statuses(), [302]);
    assert!(got.closed);

    // Requests within the idle timeout keep it open, up to the limit.
    let mut stream = TcpStream::connect(engine.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut texts = String::new();
    for _ in 0..3 {
        stream.write_all(GET).unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).unwrap();
        texts.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(texts.matches("HTTP/1.1 302").count(), 3, "{texts}");
    assert_eq!(
        texts.matches("Connection: close").count(),
        1,
        "on the third"
    );
    assert!(read_all(&mut stream, Duration::from_secs(5)).closed);

    // Half a head, then nothing: closed by the head timeout, unanswered,
    // counted.
    let engine = Engine::start(&["--header-timeout-ms", "300"]);
    let got = exchange(
        &engine,
        &[b"GET /vod/a.mp4 HTTP/1.1\r\nHost"],
        Duration::from_secs(10),
    );
    assert!(got.closed && got.text.is_empty(), "{}", got.text);
    eventually("the timeout counted", || {
        (crate::connections::plain_timeouts(&engine) >= 1.0).then_some(())
    });
}
