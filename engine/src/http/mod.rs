//! The player-facing HTTP listener.
//!
//! One OS thread per worker, each with its own current-thread tokio runtime
//! and its own `SO_REUSEPORT` listening socket on the same address: the
//! kernel spreads connections over the workers, and everything a request
//! touches on its worker (the [`Decider`] and its warm policy instance) is
//! thread-local, so the request path takes no lock. Responses go out with
//! title-case header names (`Location`) on HTTP/1.1, which some smart-TV
//! players require.
//!
//! The plain listener speaks HTTP/1.1 with our own loop ([`h1`], which
//! holds no buffer while a connection waits) and cleartext HTTP/2 with
//! prior knowledge (h2c) with hyper. Each worker also accepts on the HTTPS
//! listener when there is one ([`tls`]): HTTP/2 or HTTP/1.1 chosen by
//! ALPN, with hyper. Worker 0 also serves HTTP/3 when asked ([`h3`]),
//! which the HTTPS answers advertise with `Alt-Svc`.

mod h1;
pub mod h3;
mod respond;
pub mod tls;

use crate::policy::PolicyHost;
use crate::routing::client::TrustedProxies;
use crate::routing::{Decider, Router};
use crate::topology::store::TopologyStore;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// How the player listener is set up.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The HTTPS listener, if any.
    pub tls: Option<TlsListener>,
    /// The HTTP/3 (UDP) address, if any (it uses the HTTPS listener's
    /// certificates).
    pub h3: Option<SocketAddr>,
    /// Number of worker threads (each with its own accept loop).
    pub workers: usize,
    /// Proxies whose `X-Real-IP` is believed.
    pub trusted: TrustedProxies,
    /// Send `Edgeward-Policy: name@version` with every decided answer.
    pub policy_header: bool,
    /// Seed of the workers' random draws (worker `i` uses `seed + i`).
    pub seed: Option<u64>,
    /// Offer down edges when no edge of a request is up.
    pub fail_open: bool,
    /// Decide with the native rule only (benchmark baseline).
    pub native_only: bool,
    /// Sampled decision records.
    pub decision_log: Option<crate::decision_log::DecisionLog>,
    /// Connections a worker keeps open at most; beyond, a new one is
    /// accepted and closed at once (never left waiting in the backlog).
    pub max_connections: usize,
    /// Longest wait for a request's head, from a connection's start or
    /// from a head's first byte (over TLS, hyper also times the wait
    /// between requests with it).
    pub header_timeout: Duration,
    /// Longest a cleartext HTTP/1.1 or an HTTP/2 connection is kept open
    /// between requests (over TLS, HTTP/1.1 has the head timeout).
    pub idle_timeout: Duration,
    /// Requests answered on one cleartext HTTP/1.1 connection before it is
    /// closed (0: no limit).
    pub max_requests: u64,
    /// How steering polls are answered (signing key, rate of policy calls).
    pub steering: crate::routing::steer::SteeringSetup,
    /// GeoIP databases, if any.
    pub geoip: Option<Arc<crate::geo::GeoIp>>,
    /// Tiers of this many nearest regions for a client in no subnet.
    pub nearest_regions: u8,
}

/// Connections a worker keeps open at most, by default.
pub const MAX_CONNECTIONS_PER_WORKER: usize = 20_000;

/// The HTTPS player listener.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Its certificates (reloaded in place).
    pub certificates: Arc<tls::Certificates>,
}

/// A worker's listening sockets: plain HTTP, and HTTPS when configured.
pub struct WorkerSockets {
    plain: std::net::TcpListener,
    tls: Option<std::net::TcpListener>,
    /// The HTTP/3 socket (worker 0's only).
    h3: Option<std::net::UdpSocket>,
}

/// The bound addresses.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// Plain HTTP.
    pub plain: SocketAddr,
    /// HTTPS.
    pub tls: Option<SocketAddr>,
    /// HTTP/3 (UDP).
    pub h3: Option<SocketAddr>,
}

/// Binds one `SO_REUSEPORT` socket per worker on `config.listen` and, with
/// TLS, one more on its address (port 0 picks a free port, shared by all).
pub fn bind(config: &ListenerConfig) -> std::io::Result<(Vec<WorkerSockets>, Bound)> {
    let workers = config.workers.max(1);
    let (plain, plain_addr) = bind_each(config.listen, workers)?;
    let (mut tls, tls_addr) = match &config.tls {
        Some(t) => {
            let (sockets, addr) = bind_each(t.listen, workers)?;
            (sockets.into_iter().map(Some).collect(), Some(addr))
        }
        None => ((0..workers).map(|_| None).collect::<Vec<_>>(), None),
    };
    let mut quic = match config.h3 {
        Some(addr) if config.tls.is_some() => {
            let socket = std::net::UdpSocket::bind(addr)?;
            socket.set_nonblocking(true)?;
            Some(socket)
        }
        _ => None,
    };
    let h3_addr = quic.as_ref().map(|s| s.local_addr()).transpose()?;
    let sockets = plain
        .into_iter()
        .zip(tls.drain(..))
        .map(|(plain, tls)| WorkerSockets {
            plain,
            tls,
            h3: quic.take(),
        })
        .collect();
    Ok((
        sockets,
        Bound {
            plain: plain_addr,
            tls: tls_addr,
            h3: h3_addr,
        },
    ))
}

fn bind_each(
    mut addr: SocketAddr,
    count: usize,
) -> std::io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_tcp_nodelay(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(4096)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        sockets.push(listener);
    }
    Ok((sockets, addr))
}

/// Starts one worker thread per socket. The threads run until `shutdown`
/// turns true; then each stops accepting and returns once its open
/// connections have finished their requests.
pub fn spawn_workers(
    sockets: Vec<WorkerSockets>,
    config: &ListenerConfig,
    topology: Arc<TopologyStore>,
    health: Arc<crate::health::HealthTable>,
    policies: Arc<PolicyHost>,
    metrics: &crate::metrics::Metrics,
    shutdown: &Shutdown,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let tls = config
        .tls
        .as_ref()
        .map(|t| t.certificates.server_config(&[b"h2", b"http/1.1"]));
    let quic = match (&config.tls, sockets.first().and_then(|s| s.h3.as_ref())) {
        (Some(t), Some(socket)) => Some((
            h3::server_config(&t.certificates, config.idle_timeout)
                .map_err(std::io::Error::other)?,
            h3::alt_svc(socket.local_addr()?.port()),
        )),
        _ => None,
    };
    let alt_svc = quic.as_ref().map(|(_, v)| v.clone());
    let quic = quic.map(|(c, _)| c);
    sockets
        .into_iter()
        .enumerate()
        .map(|(i, sockets)| {
            let settings = respond::Settings {
                policy_header: config.policy_header,
                tls: false,
                alt_svc: None,
            };
            // Each worker its own copy: cloning a shared one per answer
            // would bounce its reference count between the cores' caches.
            let alt_svc = alt_svc
                .as_ref()
                .map(|v| http::HeaderValue::from_bytes(v.as_bytes()).expect("a header value"));
            let quic = quic.clone();
            let mut decider = Decider::new(
                policies.clone(),
                config.seed.map(|s| s.wrapping_add(i as u64)),
            );
            decider.fail_open = config.fail_open;
            decider.nearest_regions = config.nearest_regions;
            decider.native_only = config.native_only;
            decider.decision_log = config.decision_log.clone();
            decider.worker = i as u16;
            let router = Router::new(
                &topology,
                &health,
                &policies,
                config.trusted.clone(),
                decider,
                Some(metrics.worker(i as u16)),
            )
            .with_steering(
                config.steering.clone(),
                config.seed.map(|s| s.wrapping_add(i as u64)),
            )
            .with_geo(config.geoip.as_ref());
            let shutdown = shutdown.clone();
            let tls = tls.clone();
            let limits = Limits {
                max_connections: config.max_connections.max(1),
                header_timeout: config.header_timeout,
                idle_timeout: config.idle_timeout,
                max_requests: config.max_requests,
                plain: metrics.connections("http", i as u16),
                tls: metrics.connections("https", i as u16),
                h3: metrics.connections("h3", i as u16),
            };
            let secure = Secure { tls, quic, alt_svc };
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker(sockets, secure, settings, limits, router, shutdown))
        })
        .collect()
}

/// Longest an idle HTTP/2 connection is given to take its GOAWAY.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One worker's connection limits and their figures.
struct Limits {
    max_connections: usize,
    header_timeout: Duration,
    idle_timeout: Duration,
    max_requests: u64,
    plain: crate::metrics::ConnectionMetrics,
    tls: crate::metrics::ConnectionMetrics,
    h3: crate::metrics::ConnectionMetrics,
}

/// A worker's TLS settings: the HTTPS listener's, HTTP/3's (worker 0,
/// when on) and the `Alt-Svc` its HTTPS answers carry.
struct Secure {
    tls: Option<Arc<rustls::ServerConfig>>,
    quic: Option<quinn::ServerConfig>,
    alt_svc: Option<http::HeaderValue>,
}

/// What one worker's connections share.
struct Shared {
    router: RefCell<Router>,
    plain: respond::Settings,
    tls: respond::Settings,
    limits: Limits,
    /// Connections open on this worker.
    open: std::cell::Cell<usize>,
    /// The buffers of the HTTP/1.1 loop.
    scratch: RefCell<h1::Scratch>,
    /// Wakes idle HTTP/1.1 connections when the worker stops (HTTP/2 and
    /// TLS connections are told by `Shutdown`).
    stop: h1::Stop,
}

fn worker(
    sockets: WorkerSockets,
    secure_config: Secure,
    settings: respond::Settings,
    limits: Limits,
    router: Router,
    mut shutdown: Shutdown,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a worker runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let plain =
            tokio::net::TcpListener::from_std(sockets.plain).expect("registering the listener");
        let secure = sockets
            .tls
            .map(|s| tokio::net::TcpListener::from_std(s).expect("registering the TLS listener"));
        let acceptor = secure_config.tls.map(tokio_rustls::TlsAcceptor::from);
        let shared = Rc::new(Shared {
            router: RefCell::new(router),
            tls: respond::Settings {
                tls: true,
                alt_svc: secure_config.alt_svc,
                ..settings.clone()
            },
            plain: settings,
            limits,
            open: std::cell::Cell::new(0),
            scratch: RefCell::new(h1::Scratch::new()),
            stop: h1::Stop::default(),
        });
        let quic = match (sockets.h3, secure_config.quic) {
            (Some(socket), Some(config)) => Some(tokio::task::spawn_local(h3::serve(
                socket,
                config,
                shared.clone(),
                shutdown.clone(),
            ))),
            _ => None,
        };
        loop {
            let (accepted, is_tls) = tokio::select! {
                accepted = plain.accept() => (accepted, false),
                accepted = accept_on(secure.as_ref()) => (accepted, true),
                _ = shutdown.changed() => break,
            };
            let (stream, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not die.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let figures = match is_tls {
                true => &shared.limits.tls,
                false => &shared.limits.plain,
            };
            if shared.open.get() >= shared.limits.max_connections {
                // At the limit: close at once rather than leave it waiting
                // (the connections already open keep being served).
                figures.refused.inc();
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            let shutdown = shutdown.clone();
            shared.open.set(shared.open.get() + 1);
            figures.open.inc();
            // One task per connection, each sized for its own kind: an
            // async block holding both the TLS and the plain path would
            // make every connection as large as a TLS one.
            match (is_tls, acceptor.clone()) {
                (true, Some(acceptor)) => {
                    tokio::task::spawn_local(tls_connection(
                        stream, peer, shared, acceptor, shutdown,
                    ));
                }
                _ => {
                    tokio::task::spawn_local(plain_connection(stream, peer, shared, shutdown));
                }
            }
        }
        // Stopped accepting (the sockets close here); let open connections
        // finish their requests.
        drop(plain);
        drop(secure);
        shared.stop.stop();
        if let Some(quic) = quic {
            let _ = quic.await;
        }
        while shared.open.get() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
}

/// One cleartext connection: HTTP/1.1, or h2c when it opens with the
/// HTTP/2 preface.
async fn plain_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Rc<Shared>,
    shutdown: Shutdown,
) {
    match h1::serve(stream, peer, &shared).await {
        h1::Ended::Closed => {}
        h1::Ended::TimedOut => {
            shared.limits.plain.timed_out.inc();
        }
        h1::Ended::Failed(e) => {
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        }
        h1::Ended::Http2(stream) => {
            // Boxed: a task is as large as the largest future it may
            // hold, and HTTP/1.1 connections should not pay for HTTP/2's.
            let result = Box::pin(serve_h2(stream, peer, &shared, false, shutdown)).await;
            hyper_ended(result, &shared, false, peer);
        }
    }
    shared.open.set(shared.open.get() - 1);
    shared.limits.plain.open.dec();
}

/// One TLS connection: the handshake, then HTTP/2 or HTTP/1.1 by ALPN.
async fn tls_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Rc<Shared>,
    acceptor: tokio_rustls::TlsAcceptor,
    shutdown: Shutdown,
) {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let result = match stream.get_ref().1.alpn_protocol() {
                Some(b"h2") => Box::pin(serve_h2(stream, peer, &shared, true, shutdown)).await,
                _ => serve_h1(stream, peer, &shared, true, shutdown).await,
            };
            hyper_ended(result, &shared, true, peer);
        }
        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
        Err(_) => {
            shared.limits.tls.timed_out.inc();
            tracing::debug!(%peer, "TLS handshake timed out");
        }
    }
    shared.open.set(shared.open.get() - 1);
    shared.limits.tls.open.dec();
}

/// The next connection on `listener`, or never when there is none.
async fn accept_on(
    listener: Option<&tokio::net::TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Counts how a connection served by hyper ended.
fn hyper_ended(result: Result<(), hyper::Error>, shared: &Shared, tls: bool, peer: SocketAddr) {
    if let Err(e) = result {
        if e.is_timeout() {
            let figures = if tls {
                &shared.limits.tls
            } else {
                &shared.limits.plain
            };
            figures.timed_out.inc();
        }
        tracing::debug!(error = %e, %peer, "connection ended with an error");
    }
}

/// A player response.
type PlayerResponse = http::Response<http_body_util::Full<bytes::Bytes>>;
/// What the handler answers with, at once.
type Answered = std::future::Ready<Result<PlayerResponse, std::convert::Infallible>>;

/// The request handler of one connection.
fn service(
    shared: &Rc<Shared>,
    tls: bool,
    peer: SocketAddr,
    activity: Option<Rc<std::cell::Cell<tokio::time::Instant>>>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = PlayerResponse,
    Error = std::convert::Infallible,
    Future = Answered,
> + 'static {
    let shared = shared.clone();
    service_fn(move |req: http::Request<hyper::body::Incoming>| {
        if let Some(activity) = &activity {
            activity.set(tokio::time::Instant::now());
        }
        let s = &*shared;
        let settings = if tls { &s.tls } else { &s.plain };
        let asked = respond::Asked::of(&req, peer.ip());
        let response = respond::answer(&s.router, settings, &asked).into_response();
        std::future::ready(Ok::<_, std::convert::Infallible>(response))
    })
}

async fn serve_h1<I>(
    io: I,
    peer: SocketAddr,
    shared: &Rc<Shared>,
    tls: bool,
    mut shutdown: Shutdown,
) -> Result<(), hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .title_case_headers(true)
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout)
        .serve_connection(TokioIo::new(io), service(shared, tls, peer, None));
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.changed() => {
            // Finish the request in progress, then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

async fn serve_h2<I>(
    io: I,
    peer: SocketAddr,
    shared: &Rc<Shared>,
    tls: bool,
    mut shutdown: Shutdown,
) -> Result<(), hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    // hyper has no idle timeout for HTTP/2: a connection whose last
    // request came longer than the idle timeout ago is closed (GOAWAY,
    // then the socket), timed from when each request arrives.
    let last = Rc::new(std::cell::Cell::new(tokio::time::Instant::now()));
    let conn = hyper::server::conn::http2::Builder::new(LocalExec)
        .timer(TokioTimer::new())
        .serve_connection(
            TokioIo::new(io),
            service(shared, tls, peer, Some(last.clone())),
        );
    let mut conn = std::pin::pin!(conn);
    let idle = shared.limits.idle_timeout;
    let timer = tokio::time::sleep(idle);
    let mut timer = std::pin::pin!(timer);
    loop {
        tokio::select! {
            result = conn.as_mut() => return result,
            () = &mut timer => {
                let due = last.get() + idle;
                if tokio::time::Instant::now() < due {
                    timer.as_mut().reset(due);
                    continue;
                }
                let figures = if tls { &shared.limits.tls } else { &shared.limits.plain };
                figures.timed_out.inc();
                // GOAWAY, then a PING the client is to answer before the
                // last GOAWAY: an idle client may be gone, so not for long.
                conn.as_mut().graceful_shutdown();
                return tokio::time::timeout(IDLE_CLOSE_GRACE, conn)
                    .await
                    .unwrap_or(Ok(()));
            }
            _ = shutdown.changed() => {
                conn.as_mut().graceful_shutdown();
                return conn.await;
            }
        }
    }
}

/// Runs HTTP/2 streams on the worker's own thread (the router is not
/// `Send`, and need not be).
#[derive(Clone, Copy)]
struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: std::future::Future + 'static,
{
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

/// Tells the workers to stop: they stop accepting, finish the requests in
/// progress, close their connections and return.
pub type Shutdown = tokio::sync::watch::Receiver<bool>;
