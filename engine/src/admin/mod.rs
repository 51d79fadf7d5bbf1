//! The admin API: a second listener, separate from player traffic, through
//! which operators load and activate policies, run canaries and shadows,
//! replace the topology and read status. JSON in and out; every request
//! needs `Authorization: Bearer <token>` when a token is configured.
//!
//! It runs on its own thread and runtime: compiling a policy or indexing a
//! large topology takes milliseconds to seconds and must never hold up a
//! player request. Every change goes through the node's
//! [`crate::control::Writer`]: applied here on a single node, written to
//! etcd on a node of a fleet. [`api`] is the one route table.

pub mod api;
mod auth;
mod console;
mod entities;
mod metrics;
mod users;

pub use auth::Token;

use crate::cluster::Cluster;
use crate::control::{Control, Writer};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;

/// How the admin listener is set up.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Required bearer token, if any.
    pub token: Option<Token>,
    /// Its certificate, when it serves HTTPS.
    pub tls: Option<Arc<crate::http::tls::Certificates>>,
}

/// What the admin API serves from: the node's state, its door for
/// changes, and its link to etcd when it has one.
pub struct Admin {
    /// The node's configuration and stores.
    pub control: Arc<Control>,
    /// Where changes are written.
    pub writer: Arc<dyn Writer>,
    /// The link to etcd, when the configuration lives there.
    pub cluster: Option<Arc<Cluster>>,
    /// Operators' accounts and sessions.
    pub access: Arc<crate::access::Access>,
    /// The web console's own state (its samples and messages).
    pub console: console::Console,
    /// Served over HTTPS: session cookies are `Secure`.
    pub secure: bool,
    /// The GeoIP databases the players' requests are looked up in (for
    /// `explain`), and how many nearest regions a client in no subnet gets.
    pub geoip: Option<(Arc<crate::geo::GeoIp>, u8)>,
}

impl Admin {
    /// Ready to serve players: workers up, and (in a fleet) a configuration
    /// from etcd or the disk copy.
    pub fn is_ready(&self) -> bool {
        self.control.is_ready() && self.cluster.as_ref().is_none_or(|c| c.has_config())
    }

    /// Records what an action changed in the audit trail: in etcd in a
    /// fleet (written in the background; a failure is logged), else in
    /// this node's trail.
    pub fn audit(&self, entries: Vec<crate::control::audit::AuditEntry>) {
        match &self.cluster {
            Some(cluster) => {
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    if let Err(e) = cluster.record_audit(entries).await {
                        tracing::warn!("audit record not written to etcd: {e}");
                    }
                });
            }
            None => self.control.audit.record(entries),
        }
    }

    /// The text of `/metrics`.
    pub fn metrics(&self) -> String {
        self.control.metrics.render(&metrics::live_state(self))
    }
}

/// Why the admin listener was not started.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A non-loopback address with neither a token nor an account.
    #[error(
        "refusing to serve the admin API on non-loopback address {0} with neither a token nor an \
         account (set --admin-token-file or EDGEWARD_ADMIN_TOKEN, or create the first admin \
         with `edgeward ctl user add` while it listens on loopback)"
    )]
    NoToken(SocketAddr),
    /// A non-loopback address guarded by accounts alone, without TLS.
    #[error(
        "refusing to serve sign-in on non-loopback address {0} over plain HTTP: passwords and \
         session cookies would cross the network in the clear (give --admin-tls-cert and \
         --admin-tls-key)"
    )]
    ClearSignIn(SocketAddr),
    /// The socket could not be bound.
    #[error("cannot listen on {0} for the admin API: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// Binds the admin listener and serves it on a thread of its own. Returns
/// the bound address.
pub fn spawn(config: AdminConfig, admin: Arc<Admin>) -> Result<SocketAddr, AdminError> {
    if config.token.is_none() && !config.listen.ip().is_loopback() {
        if !admin.access.users.any() {
            return Err(AdminError::NoToken(config.listen));
        }
        if config.tls.is_none() {
            return Err(AdminError::ClearSignIn(config.listen));
        }
    }
    let acceptor = config
        .tls
        .as_ref()
        .map(|c| tokio_rustls::TlsAcceptor::from(c.server_config(&[b"http/1.1"])));
    let std_listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| AdminError::Bind(config.listen, e))?;
    let bound = std_listener
        .local_addr()
        .map_err(|e| AdminError::Bind(config.listen, e))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| AdminError::Bind(config.listen, e))?;
    let token = Arc::new(config.token);
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building the admin runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener)
                    .expect("registering the admin listener");
                tokio::spawn(console::sample_forever(admin.clone()));
                loop {
                    let Ok((stream, peer)) = listener.accept().await else {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    };
                    let admin = admin.clone();
                    let token = token.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        match acceptor {
                            None => serve(stream, admin, token, peer).await,
                            Some(acceptor) => {
                                // A handshake that does not finish in time
                                // is dropped, so it holds nothing open.
                                let handshake =
                                    tokio::time::timeout(HANDSHAKE, acceptor.accept(stream));
                                if let Ok(Ok(tls)) = handshake.await {
                                    serve(tls, admin, token, peer).await;
                                }
                            }
                        }
                    });
                }
            });
        })
        .map_err(|e| AdminError::Bind(config.listen, e))?;
    Ok(bound)
}

/// Longest wait for a TLS handshake on the admin listener.
const HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves one admin connection (plain or TLS).
async fn serve<IO>(io: IO, admin: Arc<Admin>, token: Arc<Option<Token>>, peer: SocketAddr)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let admin = admin.clone();
        let token = token.clone();
        async move {
            Ok::<_, std::convert::Infallible>(
                api::handle(&admin, token.as_ref().as_ref(), peer, req).await,
            )
        }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}
