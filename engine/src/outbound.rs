//! One HTTP(S) request the engine makes as a client: a DVR's SOAP call, a
//! programme guide fetched from a URL. A fresh connection each time (these
//! are a few calls a minute), a time limit on the whole exchange and a
//! limit on the answer read, so that a slow or hostile server costs a
//! bounded wait and bounded memory. (Health probes have their own, tuned
//! loop in [`crate::health`].)

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// What to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: http::Method,
    /// `http://` or `https://` URL.
    pub url: http::Uri,
    /// Headers besides `Host`, `User-Agent` and `Connection`.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The body (empty for a `GET`).
    pub body: Bytes,
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: http::StatusCode,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body, whole.
    pub body: Bytes,
}

/// Why there is no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboundError {
    /// The URL cannot be fetched (scheme, host).
    #[error("{0}")]
    Url(String),
    /// Connecting, TLS, the exchange, or the time limit.
    #[error("{0}")]
    Transport(String),
    /// The answer is larger than the limit.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
}

/// Sends `request` and reads the answer (at most `limit` bytes of body),
/// all within `timeout`; `https://` URLs are verified against `tls`.
pub async fn send(
    request: Request,
    tls: &Arc<rustls::ClientConfig>,
    timeout: Duration,
    limit: usize,
) -> Result<Answer, OutboundError> {
    tokio::time::timeout(timeout, exchange(request, tls, limit))
        .await
        .map_err(|_| {
            OutboundError::Transport(format!("no answer within {} ms", timeout.as_millis()))
        })?
}

async fn exchange(
    request: Request,
    tls: &Arc<rustls::ClientConfig>,
    limit: usize,
) -> Result<Answer, OutboundError> {
    let https = match request.url.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        other => {
            return Err(OutboundError::Url(format!(
                "{}: the scheme {:?} is not http or https",
                request.url,
                other.unwrap_or("")
            )));
        }
    };
    let host = request
        .url
        .host()
        .ok_or_else(|| OutboundError::Url(format!("{}: no host", request.url)))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = request
        .url
        .port_u16()
        .unwrap_or(if https { 443 } else { 80 });
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| OutboundError::Transport(format!("connect to {host}:{port}: {e}")))?;
    let _ = stream.set_nodelay(true);
    if !https {
        return over(stream, request, limit).await;
    }
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| OutboundError::Url(format!("{}: {e}", request.url)))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, stream)
        .await
        .map_err(|e| OutboundError::Transport(format!("TLS with {host}:{port}: {e}")))?;
    over(stream, request, limit).await
}

async fn over<IO>(io: IO, request: Request, limit: usize) -> Result<Answer, OutboundError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let transport = |what: &str, e: hyper::Error| OutboundError::Transport(format!("{what}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| transport("handshake", e))?;
    let conn = tokio::spawn(conn);
    let authority = request
        .url
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let path = request
        .url
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut builder = http::Request::builder()
        .method(request.method)
        .uri(path)
        .header(http::header::HOST, authority)
        .header(
            http::header::USER_AGENT,
            concat!("edgeward/", env!("CARGO_PKG_VERSION")),
        )
        .header(http::header::CONNECTION, "close");
    for (name, value) in request.headers {
        builder = builder.header(name, value);
    }
    let req = builder
        .body(Full::new(request.body))
        .map_err(|e| OutboundError::Url(format!("request: {e}")))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| transport("request", e))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                OutboundError::TooLarge(limit)
            } else {
                OutboundError::Transport(format!("answer: {e}"))
            }
        })?
        .to_bytes();
    conn.abort();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// The `Authorization` value of HTTP basic authentication.
pub fn basic_auth(user: &str, password: &str) -> http::HeaderValue {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = http::HeaderValue::try_from(format!("Basic {token}"))
        .expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}
