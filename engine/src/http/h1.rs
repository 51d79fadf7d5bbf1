//! HTTP/1.1 on cleartext player connections: our own small loop, not
//! hyper's.
//!
//! Why: hyper keeps a connection's 8 KiB read buffer and its write buffer
//! for as long as the connection lives, so 10,000 idle keep-alive players
//! (steering polls, big NATs) held ~105 MiB, where nginx, which frees a
//! waiting connection's buffers, holds ~4 MiB. hyper has no setting to
//! release them. A connection here holds no buffer while it waits: it
//! waits for its socket to turn readable, reads into its worker's one
//! scratch buffer, answers every complete request found there into the
//! worker's one output buffer, and writes that out at once. Only the
//! bytes of a request head split across reads, or an answer the socket
//! would not take whole, are copied into buffers of its own, freed as
//! soon as they are done with.
//!
//! The player path needs little of HTTP/1.1 (GET and HEAD, no request
//! bodies, keep-alive and pipelining), so the loop is short; heads are
//! read by `httparse`, the parser hyper itself uses. A request with a
//! body is answered and the body dropped (up to [`MAX_BODY`]; beyond, or
//! chunked, the connection is closed after the answer). HTTP/2 and TLS
//! stay with hyper.

use super::Shared;
use super::respond::{self, Asked, Reply};
use crate::routing::headers::RequestHeaders;
use http::StatusCode;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::task::{Poll, Waker};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Bytes read from a socket at once.
const READ_CHUNK: usize = 16 * 1024;
/// The largest request head accepted (`431` beyond; nginx's default
/// allows 8 KiB per header line).
const MAX_HEAD: usize = 16 * 1024;
/// The most header lines a head may have (hyper's default).
const MAX_HEADERS: usize = 100;
/// The largest request body dropped to keep a connection alive.
pub const MAX_BODY: u64 = 64 * 1024;

/// A worker's buffers, lent to one connection at a time (a worker runs
/// one connection's code at a time, and never across an `await`).
pub(super) struct Scratch {
    read: Vec<u8>,
    write: Vec<u8>,
    date: Date,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            read: Vec::with_capacity(READ_CHUNK),
            write: Vec::with_capacity(4096),
            date: Date::default(),
        }
    }
}

/// The `Date` header, formatted once a second.
#[derive(Default)]
struct Date {
    second: u64,
    text: String,
}

impl Date {
    fn now(&mut self) -> &[u8] {
        let now = std::time::SystemTime::now();
        let second = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        self.text.as_bytes()
    }
}

/// Tells a worker's idle HTTP/1.1 connections that it stops. Each
/// connection has a slot for its waker, set while it waits between
/// requests: cheaper than a shared channel's waiter, which every request
/// would register and remove under a lock shared by all workers.
#[derive(Default)]
pub(super) struct Stop {
    stopping: Cell<bool>,
    wakers: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl Stop {
    /// Wakes every idle connection, which then closes.
    pub fn stop(&self) {
        self.stopping.set(true);
        let wakers: Vec<Waker> = self
            .wakers
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for waker in wakers {
            waker.wake();
        }
    }
}

/// One connection's slot in [`Stop`], given back when it ends.
struct Registered<'a> {
    stop: &'a Stop,
    slot: usize,
}

impl<'a> Registered<'a> {
    fn new(stop: &'a Stop) -> Self {
        let slot = stop.free.borrow_mut().pop().unwrap_or_else(|| {
            let mut wakers = stop.wakers.borrow_mut();
            wakers.push(None);
            wakers.len() - 1
        });
        Registered { stop, slot }
    }

    fn wake_me(&self, waker: &Waker) {
        let mut wakers = self.stop.wakers.borrow_mut();
        let slot = &mut wakers[self.slot];
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.stop.wakers.borrow_mut()[self.slot] = None;
        self.stop.free.borrow_mut().push(self.slot);
    }
}

/// How a connection ended.
pub(super) enum Ended {
    /// Closed by either side, or by the worker stopping.
    Closed,
    /// No (complete) request within the head or idle timeout.
    TimedOut,
    Failed(io::Error),
    /// It opened with the HTTP/2 preface (h2c with prior knowledge): for
    /// hyper, with the bytes read so far put back in front.
    Http2(Rewind),
}

/// The HTTP/2 connection preface, which an h2c client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection is in the middle of, between reads.
#[derive(Default)]
struct Pending {
    /// The start of a request head that has not all arrived.
    head: Vec<u8>,
    /// Bytes of a request body still to drop.
    body: u64,
    /// Requests answered so far.
    served: u64,
}

impl Pending {
    fn idle(&self) -> bool {
        self.head.is_empty() && self.body == 0
    }
}

/// What one read came to.
enum Step {
    /// Nothing to read after all (the readiness was stale).
    Nothing,
    /// Answered what there was.
    Answered {
        /// What the socket did not take at once.
        unsent: Option<Vec<u8>>,
        /// Close once it is sent.
        close: bool,
        /// A request was completed (the head timer starts again).
        completed: bool,
    },
    /// The HTTP/2 preface: these bytes of it were read.
    Http2(Vec<u8>),
    /// The peer closed.
    Eof,
    Failed(io::Error),
}

/// Serves one cleartext HTTP/1.1 connection until it closes, times out
/// or the worker stops. A new connection has the head timeout for its
/// first request; between requests a kept-alive one has the idle timeout.
/// While it waits, the connection's state is this future alone (a few
/// hundred bytes): readiness is polled without a waiter of its own, and
/// one timer serves every wait. A request does not touch the timer: when
/// it fires, the deadline is worked out from the last answer and the timer
/// set again if that is still ahead.
pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared) -> Ended {
    let limits = &shared.limits;
    let stop = Registered::new(&shared.stop);
    let mut pending = Pending::default();
    let timer = tokio::time::sleep(limits.header_timeout);
    tokio::pin!(timer);
    // Set while a head is awaited: a new connection's first, or one of
    // which some bytes have come.
    let mut head_deadline = Some(timer.deadline());
    let mut last_answer = Instant::now();
    loop {
        let idle = pending.idle();
        let woke = std::future::poll_fn(|cx| {
            if idle {
                // Stopping: an idle connection closes now, one in the
                // middle of a request once it is answered.
                if stop.stop.stopping.get() {
                    return Poll::Ready(Err(None));
                }
                stop.wake_me(cx.waker());
            }
            stream.poll_read_ready(cx).map_err(Some)
        });
        tokio::select! {
            biased;
            woke = woke => match woke {
                Ok(()) => {}
                Err(Some(e)) => return Ended::Failed(e),
                Err(None) => return Ended::Closed,
            },
            () = &mut timer => {
                let due = head_deadline.unwrap_or(last_answer + limits.idle_timeout);
                if Instant::now() >= due {
                    return Ended::TimedOut;
                }
                timer.as_mut().reset(due);
                continue;
            }
        }
        match read_and_answer(&stream, peer, shared, &mut pending) {
            Step::Nothing => {}
            Step::Eof => return Ended::Closed,
            Step::Failed(e) => return Ended::Failed(e),
            Step::Http2(read) => {
                return Ended::Http2(Rewind {
                    read,
                    at: 0,
                    stream,
                });
            }
            Step::Answered {
                unsent,
                close,
                completed,
            } => {
                if let Some(unsent) = unsent {
                    timer.as_mut().reset(Instant::now() + limits.header_timeout);
                    let mut rest = &unsent[..];
                    while !rest.is_empty() {
                        tokio::select! {
                            biased;
                            ready = std::future::poll_fn(|cx| stream.poll_write_ready(cx)) => {
                                if let Err(e) = ready {
                                    return Ended::Failed(e);
                                }
                            }
                            () = &mut timer => return Ended::TimedOut,
                        }
                        match stream.try_write(rest) {
                            Ok(n) => rest = &rest[n..],
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => return Ended::Failed(e),
                        }
                    }
                }
                if close {
                    // FIN after the answer, so that it is read before the
                    // socket goes.
                    let _ = socket2::SockRef::from(&stream).shutdown(std::net::Shutdown::Write);
                    return Ended::Closed;
                }
                last_answer = Instant::now();
                head_deadline = match (pending.idle(), head_deadline) {
                    (true, _) => None,
                    (false, Some(started)) if !completed => Some(started),
                    (false, _) => Some(last_answer + limits.header_timeout),
                };
                // The timer may fire early (it is then set again), never
                // late; on a busy connection it is left alone.
                let due = head_deadline.unwrap_or(last_answer + limits.idle_timeout);
                if due < timer.deadline() {
                    timer.as_mut().reset(due);
                }
            }
        }
    }
}

/// A cleartext connection handed to hyper's HTTP/2 with the bytes already
/// read from it put back in front.
pub(super) struct Rewind {
    read: Vec<u8>,
    at: usize,
    stream: TcpStream,
}

impl tokio::io::AsyncRead for Rewind {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.read.len() {
            let n = buf.remaining().min(this.read.len() - this.at);
            buf.put_slice(&this.read[this.at..this.at + n]);
            this.at += n;
            if this.at == this.read.len() {
                this.read = Vec::new();
                this.at = 0;
            }
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Rewind {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Reads what the socket has, answers every complete request in it and
/// writes the answers; keeps an incomplete head for the next read.
fn read_and_answer(
    stream: &TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    pending: &mut Pending,
) -> Step {
    let mut scratch = shared.scratch.borrow_mut();
    let Scratch { read, write, date } = &mut *scratch;
    write.clear();
    // After the part of a head already here, or else into the scratch.
    let own = !pending.head.is_empty();
    let buf = if own {
        pending.head.reserve(READ_CHUNK);
        &mut pending.head
    } else {
        read.clear();
        read
    };
    let room = buf.capacity() - buf.len();
    match stream.try_read_buf(buf) {
        Ok(0) => return Step::Eof,
        Ok(n) if n < room => {
            // A short read drained the socket: forget its readiness now
            // rather than learn it from one more read that would block
            // (nginx does the same).
            let _ = stream.try_io(Interest::READABLE, || {
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Nothing,
        Err(e) => return Step::Failed(e),
    }
    // h2c with prior knowledge opens with the preface (and
    // before any HTTP/1.1 request).
    if pending.served == 0 && !buf.is_empty() {
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] == H2_PREFACE[..n] {
            if n == H2_PREFACE.len() {
                let read = buf.to_vec();
                pending.head = Vec::new();
                return Step::Http2(read);
            }
            // Part of it: wait for the rest (the head timeout runs).
            if !own {
                pending.head = buf.to_vec();
            }
            return Step::Answered {
                unsent: None,
                close: false,
                completed: false,
            };
        }
    }
    let date = date.now();
    let mut at = 0;
    let mut close = false;
    let mut completed = false;
    while at < buf.len() && !close {
        // The rest of a body being dropped.
        if pending.body > 0 {
            let dropped = pending.body.min((buf.len() - at) as u64);
            pending.body -= dropped;
            at += dropped as usize;
            continue;
        }
        match one_request(&buf[at..], peer, pending.served, shared, date, write) {
            Head::Incomplete => break,
            Head::Answered { used, body, last } => {
                at += used;
                pending.served += 1;
                completed = true;
                match body {
                    Body::Drop(len) => pending.body = len,
                    Body::Unread => close = true,
                }
                close |= last;
            }
            Head::Refused => close = true,
        }
    }
    // Keep an incomplete head, in a buffer of its own; free it once done.
    let rest = buf.len() - at;
    let kept = (!own && rest > 0).then(|| buf[at..].to_vec());
    match (own, kept) {
        (true, _) if rest == 0 => pending.head = Vec::new(),
        (true, _) => {
            pending.head.drain(..at);
        }
        (false, Some(kept)) => pending.head = kept,
        (false, None) => {}
    }
    if close {
        pending.head = Vec::new();
    }
    let unsent = if write.is_empty() {
        None
    } else {
        match stream.try_write(write) {
            Ok(n) if n == write.len() => None,
            Ok(n) => Some(write[n..].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(write.to_vec()),
            Err(e) => return Step::Failed(e),
        }
    };
    Step::Answered {
        unsent,
        close,
        completed,
    }
}

/// What one request head came to.
enum Head {
    /// Not all here yet.
    Incomplete,
    /// Answered: `used` bytes of head; close after it when `last`.
    Answered { used: usize, body: Body, last: bool },
    /// Malformed: answered with an error, the connection to be closed.
    Refused,
}

/// The body after a head.
enum Body {
    /// This many bytes to drop (none, mostly).
    Drop(u64),
    /// Chunked or too large: not read, so the connection cannot go on.
    Unread,
}

/// Parses and answers the request at the start of `data`.
fn one_request(
    data: &[u8],
    peer: SocketAddr,
    served: u64,
    shared: &Shared,
    date: &[u8],
    out: &mut Vec<u8>,
) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let refuse = |out: &mut Vec<u8>, status: StatusCode, reason: &'static str| {
        shared.router.borrow().count_unparsed(status.as_u16());
        Reply::refusal(status, Some(Cow::Borrowed(reason))).write_h1(
            false,
            Some("close"),
            date,
            out,
        );
        Head::Refused
    };
    let used = match req.parse(data) {
        Ok(httparse::Status::Complete(used)) if used <= MAX_HEAD => used,
        Ok(httparse::Status::Partial) if data.len() <= MAX_HEAD => return Head::Incomplete,
        Ok(_) => {
            return refuse(
                out,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head too large",
            );
        }
        Err(httparse::Error::TooManyHeaders) => {
            return refuse(
                out,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many header lines",
            );
        }
        Err(_) => return refuse(out, StatusCode::BAD_REQUEST, "malformed request head"),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return refuse(out, StatusCode::BAD_REQUEST, "malformed request head");
    };
    let mut x_real_ip = None;
    let mut forwarded_proto = None;
    let mut says_close = false;
    let mut says_keep_alive = false;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for header in req.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("x-real-ip") {
            x_real_ip.get_or_insert(header.value);
        } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
            forwarded_proto.get_or_insert(header.value);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                says_close |= token.eq_ignore_ascii_case(b"close");
                says_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            match content_length(header.value) {
                Some(n) if length.is_none_or(|m| m == n) => length = Some(n),
                _ => {
                    return refuse(out, StatusCode::BAD_REQUEST, "malformed Content-Length");
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
    }
    if chunked && length.is_some() {
        // Two framings: a request-smuggling attempt, or a broken client.
        return refuse(
            out,
            StatusCode::BAD_REQUEST,
            "both Content-Length and Transfer-Encoding",
        );
    }
    let get_or_head = method == "GET" || method == "HEAD";
    let (path, query) = match split_target(target) {
        Some(parts) => parts,
        // Anything but GET and HEAD is refused before its path matters.
        None if !get_or_head => ("/", None),
        None => return refuse(out, StatusCode::BAD_REQUEST, "malformed request target"),
    };
    let reply = respond::answer(
        &shared.router,
        &shared.plain,
        &Asked {
            get_or_head,
            path,
            query,
            peer: peer.ip(),
            x_real_ip,
            forwarded_proto,
            headers: RequestHeaders::Parsed(req.headers),
        },
    );
    let body = match length {
        _ if chunked => Body::Unread,
        Some(n) if n > MAX_BODY => Body::Unread,
        n => Body::Drop(n.unwrap_or(0)),
    };
    let max = shared.limits.max_requests;
    let last = says_close
        || (version == 0 && !says_keep_alive)
        || matches!(body, Body::Unread)
        || (max > 0 && served + 1 >= max);
    let connection = match (last, version) {
        (true, _) => Some("close"),
        (false, 0) => Some("keep-alive"),
        (false, _) => None,
    };
    reply.write_h1(method == "HEAD", connection, date, out);
    Head::Answered { used, body, last }
}

/// A `Content-Length` value: digits only.
fn content_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The path and query of a request target, in origin form (`/a?b`) or
/// absolute form (`http://host/a?b`, which a server must accept); `None`
/// for anything else, or for bytes outside ASCII.
fn split_target(target: &str) -> Option<(&str, Option<&str>)> {
    if !target.is_ascii() {
        return None;
    }
    let target = target.split_once('#').map_or(target, |(t, _)| t);
    let rest = if target.starts_with('/') {
        target
    } else {
        let (scheme, after) = target.split_once("://")?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return None;
        }
        match after.find(['/', '?']) {
            Some(i) => &after[i..],
            None => "/",
        }
    };
    Some(match rest.split_once('?') {
        Some(("", query)) => ("/", Some(query)),
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_targets() {
        assert_eq!(split_target("/a/b?c=d"), Some(("/a/b", Some("c=d"))));
        assert_eq!(split_target("/a"), Some(("/a", None)));
        assert_eq!(split_target("/a#frag"), Some(("/a", None)));
        assert_eq!(
            split_target("http://h.test:8080/vod/x.mp4?t=1"),
            Some(("/vod/x.mp4", Some("t=1")))
        );
        assert_eq!(split_target("HTTPS://h.test"), Some(("/", None)));
        assert_eq!(split_target("http://h.test?q"), Some(("/", Some("q"))));
        assert_eq!(split_target("*"), None);
        assert_eq!(split_target("h.test:443"), None);
        assert_eq!(split_target("ftp://h.test/a"), None);
        assert_eq!(split_target("/caf\u{e9}"), None);
    }

    #[test]
    fn content_lengths() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b" 12 "), Some(12));
        assert_eq!(content_length(b""), None);
        assert_eq!(content_length(b"-1"), None);
        assert_eq!(content_length(b"1,1"), None);
        assert_eq!(content_length(b"99999999999999999999999"), None);
    }
}
