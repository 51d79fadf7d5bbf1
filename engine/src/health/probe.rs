//! One HTTP health probe.

use super::state::ProbeOk;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest health answer read.
const MAX_BODY: usize = 64 << 10;

/// What a probe asks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path, starting with `/`.
    pub path: String,
    /// Exact body expected, if any.
    pub expect_body: Option<String>,
    /// Time limit.
    pub timeout: Duration,
}

/// Probes `target` (over TLS when its port is 443, verified against `tls`'s
/// roots): succeeds on a 2xx answer (with the expected body, when one is
/// set) within the timeout.
pub async fn probe(target: &Target, tls: &Arc<rustls::ClientConfig>) -> Result<ProbeOk, String> {
    let started = Instant::now();
    let body = tokio::time::timeout(target.timeout, fetch(target, tls))
        .await
        .map_err(|_| format!("timed out after {} ms", target.timeout.as_millis()))??;
    let rtt_us = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
    if let Some(expected) = &target.expect_body
        && body.trim_ascii() != expected.trim().as_bytes()
    {
        return Err(format!(
            "body {:?} is not the expected {expected:?}",
            String::from_utf8_lossy(&body[..body.len().min(64)])
        ));
    }
    Ok(ProbeOk {
        rtt_us,
        figures: figures(&body),
    })
}

async fn fetch(target: &Target, tls: &Arc<rustls::ClientConfig>) -> Result<Bytes, String> {
    let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    if target.port != 443 {
        return exchange(stream, target).await;
    }
    let name = rustls::pki_types::ServerName::try_from(target.host.clone())
        .map_err(|e| format!("tls: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, stream)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    exchange(stream, target).await
}

/// One `GET` over an established connection.
async fn exchange<IO>(io: IO, target: &Target) -> Result<Bytes, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let host = match (target.host.contains(':'), target.port) {
        (true, 80 | 443) => format!("[{}]", target.host),
        (true, port) => format!("[{}]:{port}", target.host),
        (false, 80 | 443) => target.host.clone(),
        (false, port) => format!("{}:{port}", target.host),
    };
    let req = http::Request::get(target.path.as_str())
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "edgeward-health/0.1")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    conn.abort();
    if !status.is_success() {
        return Err(format!("status {}", status.as_u16()));
    }
    Ok(body)
}

/// The numeric top-level fields of a JSON object body.
fn figures(body: &[u8]) -> Vec<(String, f64)> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter_map(|(k, v)| v.as_f64().map(|n| (k, n)))
            .collect(),
        _ => Vec::new(),
    }
}

/// TLS settings of the probes: the Mozilla roots, plus the PEM
/// certificates of `extra_ca` (for edges with a private CA).
pub fn tls_config(extra_ca: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("health CA file {}: {e}", path.display()))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| format!("health CA file {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("health CA file {}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!(
                "health CA file {} holds no certificate",
                path.display()
            ));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_become_figures() {
        let f =
            figures(br#"{"load": 0.42, "connections": 1800, "name": "e1", "nested": {"x": 1}}"#);
        assert_eq!(f.len(), 2);
        assert!(f.contains(&("load".into(), 0.42)));
        assert!(f.contains(&("connections".into(), 1800.0)));
        assert!(figures(b"OK").is_empty());
    }
}
