//! The player listener's certificates: one or more certificate/key pairs,
//! chosen per handshake by the name the client asks for (SNI), the first
//! pair when none matches. They reload as a whole, on SIGHUP or when a file
//! changes: a set with any bad file is refused with the reason and the
//! current one kept, and handshakes in progress finish with the certificate
//! they started with (each takes its own reference), so a reload drops no
//! connection and fails no handshake.

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A certificate chain file and its private key file (PEM), and
/// optionally an OCSP response to staple (DER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    /// The chain, leaf first.
    pub cert: PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
    /// A DER OCSP response for the leaf, stapled to every handshake (as
    /// nginx's `ssl_stapling_file`: the file is kept fresh by whoever
    /// fetches it, and reloads like the pair).
    pub ocsp: Option<PathBuf>,
}

impl std::str::FromStr for CertPair {
    type Err = String;

    /// `CERT.pem,KEY.pem[,OCSP.der]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(',').collect();
        match parts[..] {
            [cert, key] | [cert, key, _] if !cert.is_empty() && !key.is_empty() => Ok(CertPair {
                cert: cert.into(),
                key: key.into(),
                ocsp: parts.get(2).filter(|o| !o.is_empty()).map(PathBuf::from),
            }),
            _ => Err(format!(
                "{s:?} is not CERT.pem,KEY.pem[,OCSP.der] (a certificate chain, its key and \
                 optionally an OCSP response to staple)"
            )),
        }
    }
}

/// One loaded pair.
#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// The DNS names the leaf is valid for (as the log shows them).
    names: Vec<String>,
}

/// The current certificates, swapped whole on reload.
#[derive(Debug)]
pub struct Certificates {
    pairs: Vec<CertPair>,
    current: ArcSwap<Vec<Loaded>>,
    provider: Arc<CryptoProvider>,
}

impl Certificates {
    /// Loads every pair; the first is the default. `Err` names the file
    /// and what is wrong with it.
    pub fn load(pairs: Vec<CertPair>) -> Result<Arc<Self>, String> {
        if pairs.is_empty() {
            return Err("--tls-listen needs at least one --tls-cert CERT.pem,KEY.pem".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = load_all(&pairs, &provider)?;
        for l in &loaded {
            tracing::info!(names = ?l.names, "TLS certificate loaded");
        }
        Ok(Arc::new(Certificates {
            pairs,
            current: ArcSwap::from_pointee(loaded),
            provider,
        }))
    }

    /// Reads the files again and swaps the new set in; on any error the
    /// current set stays and the error says why.
    pub fn reload(&self) -> Result<(), String> {
        let loaded = load_all(&self.pairs, &self.provider)?;
        for l in &loaded {
            tracing::info!(names = ?l.names, "TLS certificate reloaded");
        }
        self.current.store(Arc::new(loaded));
        Ok(())
    }

    /// The files, for the file watch.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.pairs.iter().flat_map(|p| {
            [
                Some(p.cert.as_path()),
                Some(p.key.as_path()),
                p.ocsp.as_deref(),
            ]
            .into_iter()
            .flatten()
        })
    }

    /// The TLS server configuration: TLS 1.2 and 1.3, these certificates,
    /// and ALPN offering `alpn` (e.g. `h2`, `http/1.1`).
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.current.load();
        let by_name = hello.server_name().and_then(|name| {
            let name = ServerName::try_from(name).ok()?;
            current.iter().find(|l| {
                l.key.end_entity_cert().is_ok_and(|der| {
                    webpki::EndEntityCert::try_from(der)
                        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
                })
            })
        });
        by_name.or(current.first()).map(|l| l.key.clone())
    }
}

/// Checks that `der` is an OCSP response whose `responseStatus` is
/// `successful` (RFC 6960, 4.2.1: `OCSPResponse ::= SEQUENCE {
/// responseStatus ENUMERATED, responseBytes [0] EXPLICIT ... }`), which is
/// all a stapler may rely on without the issuer: a file that is not one,
/// or a `tryLater` the fetcher saved, is refused rather than stapled.
fn ocsp_status(der: &[u8]) -> Result<(), String> {
    let not_ocsp = || "not a DER OCSP response".to_string();
    let (&tag, rest) = der.split_first().ok_or_else(not_ocsp)?;
    if tag != 0x30 {
        return Err(not_ocsp());
    }
    // The SEQUENCE's length: short form, or long form of 1 to 4 bytes.
    let (&len, mut rest) = rest.split_first().ok_or_else(not_ocsp)?;
    let body_len = if len < 0x80 {
        usize::from(len)
    } else {
        let n = usize::from(len & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(not_ocsp());
        }
        let value = rest[..n]
            .iter()
            .fold(0usize, |v, &b| v << 8 | usize::from(b));
        rest = &rest[n..];
        value
    };
    if body_len != rest.len() {
        return Err(not_ocsp());
    }
    match rest {
        [0x0a, 0x01, 0, ..] if rest.len() > 3 => Ok(()),
        [0x0a, 0x01, 0] => Err("it is `successful` but carries no response".into()),
        [0x0a, 0x01, status, ..] => Err(format!(
            "its status is {} ({status}), not successful",
            match status {
                1 => "malformedRequest",
                2 => "internalError",
                3 => "tryLater",
                5 => "sigRequired",
                6 => "unauthorized",
                _ => "unknown",
            }
        )),
        _ => Err(not_ocsp()),
    }
}

fn load_all(pairs: &[CertPair], provider: &CryptoProvider) -> Result<Vec<Loaded>, String> {
    pairs.iter().map(|p| load_pair(p, provider)).collect()
}

fn load_pair(pair: &CertPair, provider: &CryptoProvider) -> Result<Loaded, String> {
    let cert_file = pair.cert.display();
    let key_file = pair.key.display();
    let chain_pem = std::fs::read(&pair.cert)
        .map_err(|e| format!("TLS certificate {cert_file}: cannot read it: {e}"))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("TLS certificate {cert_file}: not a PEM certificate chain: {e:?}"))?;
    let Some(leaf) = chain.first() else {
        return Err(format!(
            "TLS certificate {cert_file}: holds no certificate (expected -----BEGIN CERTIFICATE-----)"
        ));
    };
    let names: Vec<String> = match webpki::EndEntityCert::try_from(leaf) {
        Ok(cert) => cert.valid_dns_names().map(str::to_string).collect(),
        Err(e) => {
            return Err(format!(
                "TLS certificate {cert_file}: the first certificate cannot be parsed: {e}"
            ));
        }
    };
    let key_pem =
        std::fs::read(&pair.key).map_err(|e| format!("TLS key {key_file}: cannot read it: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!("TLS key {key_file}: not a PEM private key (PKCS#8, RSA or EC): {e:?}")
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("TLS key {key_file}: unusable: {e}"))?;
    let mut key = CertifiedKey::new(chain, signing);
    key.keys_match().map_err(|e| {
        format!("TLS key {key_file} does not belong to certificate {cert_file}: {e}")
    })?;
    if let Some(path) = &pair.ocsp {
        let response = std::fs::read(path)
            .map_err(|e| format!("OCSP response {}: cannot read it: {e}", path.display()))?;
        ocsp_status(&response).map_err(|why| format!("OCSP response {}: {why}", path.display()))?;
        key.ocsp = Some(response);
    }
    Ok(Loaded {
        key: Arc::new(key),
        names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_take_an_optional_ocsp_response() {
        let p: CertPair = "a.pem,a.key".parse().unwrap();
        assert_eq!(p.ocsp, None);
        let p: CertPair = "a.pem,a.key,a.ocsp".parse().unwrap();
        assert_eq!(p.ocsp.as_deref(), Some(Path::new("a.ocsp")));
        for bad in ["a.pem", ",a.key", "a.pem,", "a,b,c,d"] {
            assert!(bad.parse::<CertPair>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_successful_ocsp_response_is_stapled() {
        // SEQUENCE { ENUMERATED 0, [0] { ... } }
        assert!(ocsp_status(&[0x30, 0x07, 0x0a, 0x01, 0x00, 0xa0, 0x02, 0x05, 0x00]).is_ok());
        let e = ocsp_status(&[0x30, 0x03, 0x0a, 0x01, 0x03]).unwrap_err();
        assert!(e.contains("tryLater"), "{e}");
        assert!(ocsp_status(&[0x30, 0x03, 0x0a, 0x01, 0x00]).is_err());
        assert!(
            ocsp_status(b"-----BEGIN")
                .unwrap_err()
                .contains("not a DER OCSP")
        );
        assert!(ocsp_status(&[0x30, 0x09, 0x0a]).is_err(), "truncated");
        assert!(ocsp_status(&[]).is_err());
        // Long-form length.
        let mut long = vec![0x30, 0x81, 0x83, 0x0a, 0x01, 0x00, 0xa0, 0x7e];
        long.extend([0u8; 0x7e]);
        assert!(ocsp_status(&long).is_ok());
    }
}
