//! The player-facing HTTP listener.
//!
//! One OS thread per worker, each with its own current-thread tokio runtime
//! and its own `SO_REUSEPORT` listening socket on the same address: the
//! kernel spreads connections over the workers, and everything a request
//! touches on its worker (the [`Decider`] and its warm policy instance) is
//! thread-local, so the request path takes no lock. Responses go out with
//! title-case header names (`Location`), which some smart-TV players require.

mod respond;

use crate::policy::PolicyHost;
use crate::routing::client::TrustedProxies;
use crate::routing::{Decider, Router};
use crate::topology::store::TopologyStore;
use hyper::server::conn::http1;
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
}

/// Binds one `SO_REUSEPORT` socket per worker on `config.listen` (port 0
/// picks a free port, shared by all). Returns the sockets and the bound
/// address.
pub fn bind(config: &ListenerConfig) -> std::io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    let mut addr = config.listen;
    let mut sockets = Vec::with_capacity(config.workers);
    for _ in 0..config.workers.max(1) {
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
    sockets: Vec<std::net::TcpListener>,
    config: &ListenerConfig,
    topology: Arc<TopologyStore>,
    health: Arc<crate::health::HealthTable>,
    policies: Arc<PolicyHost>,
    metrics: &crate::metrics::Metrics,
    shutdown: &Shutdown,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let settings = respond::Settings {
                policy_header: config.policy_header,
            };
            let mut decider = Decider::new(
                policies.clone(),
                config.seed.map(|s| s.wrapping_add(i as u64)),
            );
            decider.fail_open = config.fail_open;
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
            );
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker(socket, settings, router, shutdown))
        })
        .collect()
}

fn worker(
    socket: std::net::TcpListener,
    settings: respond::Settings,
    router: Router,
    mut shutdown: Shutdown,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a worker runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = tokio::net::TcpListener::from_std(socket).expect("registering the listener");
        let router = Rc::new(RefCell::new(router));
        let settings = Rc::new(settings);
        let open = Rc::new(std::cell::Cell::new(0usize));
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
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
            let _ = stream.set_nodelay(true);
            let router = router.clone();
            let settings = settings.clone();
            let mut shutdown = shutdown.clone();
            let open = open.clone();
            open.set(open.get() + 1);
            tokio::task::spawn_local(async move {
                let service = service_fn(move |req| {
                    let response = respond::answer(&router, &settings, peer, &req);
                    std::future::ready(Ok::<_, std::convert::Infallible>(response))
                });
                let conn = http1::Builder::new()
                    .title_case_headers(true)
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(TokioIo::new(stream), service);
                let mut conn = std::pin::pin!(conn);
                let result = tokio::select! {
                    result = conn.as_mut() => result,
                    _ = shutdown.changed() => {
                        // Finish the request in progress, then close.
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                open.set(open.get() - 1);
            });
        }
        // Stopped accepting (the socket closes here); let open connections
        // finish their requests.
        drop(listener);
        while open.get() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
}

/// Tells the workers to stop: they stop accepting, finish the requests in
/// progress, close their connections and return.
pub type Shutdown = tokio::sync::watch::Receiver<bool>;
