//! HTTP/3 on the player side (`--h3-listen`, opt-in): QUIC by quinn, the
//! HTTP layer by h3, the answers by the same request path as every other
//! protocol ([`respond::answer`] on the worker's own router).
//!
//! One UDP socket, served by worker 0: QUIC demultiplexes connections by
//! connection id inside one endpoint, and spreading them over several
//! `SO_REUSEPORT` sockets would need a BPF program steering packets by that
//! id (a client whose address changes would otherwise land on a worker that
//! does not know it). HTTP/3 therefore runs on one core; the TCP listeners
//! keep every worker.
//!
//! Certificates are the HTTPS listener's (same files, same reloads: a new
//! handshake sees a replaced certificate at once). The limits are the
//! worker's: a connection beyond `--max-connections` is refused (QUIC's
//! `CONNECTION_REFUSED`), `--idle-timeout-ms` is QUIC's idle timeout, and
//! a request stream must bring its headers within `--header-timeout-ms`.

use super::Shared;
use super::respond::{self, Asked};
use bytes::Bytes;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// What a QUIC handshake may take at most.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping worker waits for its HTTP/3 connections to close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The QUIC server configuration: TLS 1.3 with ALPN `h3` on the HTTPS
/// listener's certificates, QUIC's idle timeout at `idle`.
pub fn server_config(
    certificates: &Arc<super::tls::Certificates>,
    idle: Duration,
) -> Result<quinn::ServerConfig, String> {
    let tls = certificates.server_config(&[b"h3"]);
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| format!("HTTP/3: {e}"))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(idle).map_err(|e| format!("HTTP/3 idle timeout: {e}"))?,
    ));
    // Players send a few small requests per connection: no need for the
    // default's 100 streams of 1.25 MB windows each.
    transport.max_concurrent_bidi_streams(32u32.into());
    transport.max_concurrent_uni_streams(8u32.into());
    transport.stream_receive_window((64u32 * 1024).into());
    transport.receive_window((256u32 * 1024).into());
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The `Alt-Svc` value that advertises HTTP/3 on `port` for a day.
pub fn alt_svc(port: u16) -> http::HeaderValue {
    http::HeaderValue::try_from(format!("h3=\":{port}\"; ma=86400"))
        .expect("digits make a header value")
}

/// Accepts HTTP/3 connections on `socket` until `shutdown`, then closes
/// them and waits (briefly) for them to go.
pub(super) async fn serve(
    socket: std::net::UdpSocket,
    config: quinn::ServerConfig,
    shared: Rc<Shared>,
    mut shutdown: super::Shutdown,
) {
    let endpoint = match quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    ) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "HTTP/3 endpoint failed; HTTP/3 is off");
            return;
        }
    };
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = shutdown.changed() => break,
        };
        let Some(incoming) = incoming else { break };
        let figures = &shared.limits.h3;
        if shared.open.get() >= shared.limits.max_connections {
            figures.refused.inc();
            incoming.refuse();
            continue;
        }
        shared.open.set(shared.open.get() + 1);
        figures.open.inc();
        tokio::task::spawn_local(connection(incoming, shared.clone(), shutdown.clone()));
    }
    endpoint.close(quinn::VarInt::from_u32(0), b"shutting down");
    let _ = tokio::time::timeout(CLOSE_GRACE, endpoint.wait_idle()).await;
}

async fn connection(incoming: quinn::Incoming, shared: Rc<Shared>, shutdown: super::Shutdown) {
    let peer = incoming.remote_address();
    if let Err(e) = serve_connection(incoming, peer, &shared, shutdown).await {
        if e.timed_out {
            shared.limits.h3.timed_out.inc();
        }
        tracing::debug!(error = %e.message, %peer, "HTTP/3 connection ended with an error");
    }
    shared.open.set(shared.open.get() - 1);
    shared.limits.h3.open.dec();
}

/// Why a connection ended early.
struct Ended {
    message: String,
    timed_out: bool,
}

impl Ended {
    fn of(message: impl std::fmt::Display, timed_out: bool) -> Self {
        Ended {
            message: message.to_string(),
            timed_out,
        }
    }
}

async fn serve_connection(
    incoming: quinn::Incoming,
    peer: SocketAddr,
    shared: &Rc<Shared>,
    mut shutdown: super::Shutdown,
) -> Result<(), Ended> {
    let connecting = incoming.accept().map_err(|e| Ended::of(e, false))?;
    let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            let timed_out = matches!(e, quinn::ConnectionError::TimedOut);
            return Err(Ended::of(format!("handshake: {e}"), timed_out));
        }
        Err(_) => return Err(Ended::of("handshake timed out", true)),
    };
    let mut h3 = h3::server::builder()
        .build::<_, Bytes>(h3_quinn::Connection::new(conn.clone()))
        .await
        .map_err(|e| Ended::of(e, false))?;
    loop {
        let accepted = tokio::select! {
            accepted = h3.accept() => accepted,
            _ = shutdown.changed() => {
                // GOAWAY: the requests in progress finish, no new ones.
                let _ = h3.shutdown(0).await;
                return Ok(());
            }
        };
        match accepted {
            Ok(Some(resolver)) => {
                tokio::task::spawn_local(request(resolver, peer, shared.clone()));
            }
            Ok(None) => return Ok(()),
            Err(e) => {
                // The client closing, or the idle timeout, ends here too.
                let timed_out =
                    matches!(conn.close_reason(), Some(quinn::ConnectionError::TimedOut));
                if timed_out || e.is_h3_no_error() {
                    if timed_out {
                        shared.limits.h3.timed_out.inc();
                    }
                    return Ok(());
                }
                return Err(Ended::of(e, false));
            }
        }
    }
}

/// Answers one request stream.
async fn request(
    resolver: h3::server::RequestResolver<h3_quinn::Connection, Bytes>,
    peer: SocketAddr,
    shared: Rc<Shared>,
) {
    let resolved =
        tokio::time::timeout(shared.limits.header_timeout, resolver.resolve_request()).await;
    let (req, mut stream) = match resolved {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, %peer, "HTTP/3 request refused");
            return;
        }
        Err(_) => {
            shared.limits.h3.timed_out.inc();
            return;
        }
    };
    let reply = respond::answer(&shared.router, &shared.tls, &Asked::of(&req, peer.ip()));
    let (head, body) = reply.into_parts();
    let method = req.method();
    let sent = async {
        stream.send_response(head).await?;
        if method != http::Method::HEAD && !body.is_empty() {
            stream.send_data(body).await?;
        }
        stream.finish().await
    };
    if let Err(e) = sent.await {
        tracing::debug!(error = %e, %peer, "HTTP/3 answer not sent");
    }
}
