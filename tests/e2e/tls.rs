//! Players over HTTPS (HTTP/1.1 and HTTP/2 by ALPN) and cleartext HTTP/2:
//! certificates chosen by SNI, reloaded without a failed request, a broken
//! one refused; a player that came over TLS is sent to `https` and only to
//! edges that serve it. Certificates are made here (rcgen; an RSA key with
//! openssl), requests made with curl.

use crate::harness::{Engine, TempDir, wait_until};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// A test certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Ca {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    }

    /// Writes the CA's certificate to `path`.
    fn write(&self, path: &Path) {
        std::fs::write(path, self.cert.pem()).unwrap();
    }

    /// A leaf for `names` with `key`, written as `cert` and `key` PEM files.
    fn leaf(&self, names: &[&str], key: &KeyPair, cert_file: &Path, key_file: &Path) {
        let p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        let cert = p.signed_by(key, &self.cert, &self.key).unwrap();
        std::fs::write(cert_file, cert.pem()).unwrap();
        std::fs::write(key_file, key.serialize_pem()).unwrap();
    }
}

/// An RSA 2048 key, made by openssl (ring, under rcgen, cannot make one).
fn rsa_key(dir: &TempDir) -> KeyPair {
    let path = dir.path("rsa.key");
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .output()
        .expect("openssl (tests/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    KeyPair::from_pem(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The topology: the client subnet's region has an edge without TLS
/// (port 80), one with `tls_port` 8443 and one on 443 (TLS implied, but
/// weight 0: never drawn), so a TLS player always goes to `both`.
pub const TOPOLOGY: &str = r#"{
  "regions": [{"id": "r", "server_groups": ["g"]}],
  "subnets": [{"cidr": "10.0.0.0/8", "region": "r"}],
  "server_groups": [{"id": "g", "servers": ["plain", "both", "secure"]}],
  "servers": [
    {"id": "plain", "kind": "edge", "host": "plain.test", "port": 80},
    {"id": "both", "kind": "edge", "host": "both.test", "port": 80, "tls_port": 8443},
    {"id": "secure", "kind": "edge", "host": "secure.test", "port": 443, "weight": 0}
  ],
  "channels": []
}"#;

struct Setup {
    dir: TempDir,
    engine: Engine,
    ca: PathBuf,
}

/// An engine with an HTTPS listener: `a.test` with an ECDSA key (the
/// default), `b.test` with an RSA key, both from one CA.
fn setup(name: &str) -> Setup {
    setup_with(name, &[])
}

/// [`setup`], with `extra` arguments for the engine.
fn setup_with(name: &str, extra: &[&str]) -> Setup {
    let dir = TempDir::new(name);
    let ca = Ca::new("edgeward test CA");
    ca.write(&dir.path("ca.pem"));
    ca.leaf(
        &["a.test"],
        &KeyPair::generate().unwrap(),
        &dir.path("a.pem"),
        &dir.path("a.key"),
    );
    ca.leaf(
        &["b.test"],
        &rsa_key(&dir),
        &dir.path("b.pem"),
        &dir.path("b.key"),
    );
    std::fs::write(dir.path("topology.json"), TOPOLOGY).unwrap();
    let pair = |n: &str| {
        format!(
            "{},{}",
            dir.path(&format!("{n}.pem")).display(),
            dir.path(&format!("{n}.key")).display()
        )
    };
    let (a, b) = (pair("a"), pair("b"));
    let topology = dir.path("topology.json");
    let mut args = vec![
        "--topology",
        topology.to_str().unwrap(),
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &a,
        "--tls-cert",
        &b,
        "--watch-interval-ms",
        "100",
    ];
    args.extend_from_slice(extra);
    let engine = Engine::start(&args);
    let ca = dir.path("ca.pem");
    Setup { dir, engine, ca }
}

/// What curl saw: the HTTP version, the status and the `Location`.
#[derive(Debug, PartialEq)]
struct Seen {
    version: String,
    status: u16,
    location: Option<String>,
}

/// `curl` of `https://NAME:PORT/PATH` (NAME resolved to the engine),
/// verifying with `ca`, with `extra` options; `Err` is curl's complaint.
fn curl_tls(s: &Setup, ca: &Path, name: &str, path: &str, extra: &[&str]) -> Result<Seen, String> {
    let port = s
        .engine
        .tls
        .expect("the engine runs an HTTPS listener")
        .port();
    let url = format!("https://{name}:{port}{path}");
    curl(
        &[
            &[
                "--cacert",
                ca.to_str().unwrap(),
                "--resolve",
                &format!("{name}:{port}:127.0.0.1"),
            ][..],
            extra,
            &[&url],
        ]
        .concat(),
    )
}

fn curl(args: &[&str]) -> Result<Seen, String> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-H",
            "X-Real-IP: 10.1.2.3",
        ])
        .args(args)
        .output()
        .expect("curl (tests/run installs it)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default().to_string();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let location = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("location")
            .then(|| value.trim().to_string())
    });
    Ok(Seen {
        version,
        status,
        location,
    })
}

#[test]
fn https_over_http2_and_http1_chooses_the_certificate_by_name_and_redirects_to_https() {
    let s = setup("tls-basic");
    let ca = s.ca.clone();
    // HTTP/2 by ALPN, ECDSA certificate for a.test.
    let seen = curl_tls(&s, &ca, "a.test", "/vod/film.mp4", &["--http2"]).unwrap();
    assert_eq!(seen.version, "HTTP/2", "{seen:?}");
    assert_eq!(seen.status, 302);
    // The only TLS edge of positive weight is `both`, on its TLS port; the
    // plain edge is not offered.
    assert_eq!(
        seen.location.as_deref(),
        Some("https://both.test:8443/vod/film.mp4")
    );
    // HTTP/1.1 by ALPN, RSA certificate for b.test: curl verifies the name,
    // so the right certificate was chosen.
    let seen = curl_tls(&s, &ca, "b.test", "/vod/film.mp4", &["--http1.1"]).unwrap();
    assert_eq!(seen.version, "HTTP/1.1", "{seen:?}");
    assert_eq!(
        seen.location.as_deref(),
        Some("https://both.test:8443/vod/film.mp4")
    );
    // TLS 1.2 and 1.3 both.
    for v in [&["--tls-max", "1.2"][..], &["--tlsv1.3"]] {
        let seen = curl_tls(&s, &ca, "a.test", "/vod/x.mp4", v).unwrap();
        assert_eq!(seen.status, 302, "{v:?}");
    }
    // An unknown name gets the first (default) certificate, for a.test.
    let err = curl_tls(&s, &ca, "c.test", "/vod/x.mp4", &[]).unwrap_err();
    assert!(
        err.contains("no alternative certificate subject name"),
        "{err}"
    );
    let seen = curl_tls(&s, &ca, "c.test", "/vod/x.mp4", &["-k"]).unwrap();
    assert_eq!(seen.status, 302);

    // Plain HTTP: HTTP/1.1 with a title-case Location, and h2c.
    let plain_edges = [
        "http://plain.test/vod/film.mp4",
        "http://both.test/vod/film.mp4",
    ];
    let resp = s.engine.get("/vod/film.mp4", &[("X-Real-IP", "10.1.2.3")]);
    assert!(
        resp.headers
            .iter()
            .any(|(n, v)| n == "Location" && plain_edges.contains(&v.as_str())),
        "{resp:?}"
    );
    let plain = format!("http://{}/vod/film.mp4", s.engine.addr);
    let seen = curl(&["--http2-prior-knowledge", &plain]).unwrap();
    assert_eq!(seen.version, "HTTP/2");
    assert!(
        plain_edges.contains(&seen.location.as_deref().unwrap()),
        "{seen:?}"
    );
    // A trusted proxy's X-Forwarded-Proto: https counts as TLS.
    let resp = s.engine.get(
        "/vod/film.mp4",
        &[("X-Real-IP", "10.1.2.3"), ("X-Forwarded-Proto", "https")],
    );
    assert_eq!(
        resp.header("Location"),
        Some("https://both.test:8443/vod/film.mp4")
    );
    drop(s.dir);
}

#[test]
fn explain_shows_edges_without_tls_as_not_offered() {
    let s = setup("tls-explain");
    let (status, trace) = s.engine.admin_json(
        "GET",
        "/explain?client=10.1.2.3&url=/vod/a.mp4&tls=1",
        serde_json::json!(null),
    );
    assert_eq!(status, 200);
    let plain = trace["tiers"][0]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["server"] == "plain")
        .unwrap();
    assert_eq!(plain["eligible"], false, "{trace:#}");
    assert!(
        plain["why_not"][0].as_str().unwrap().starts_with("no TLS"),
        "{trace:#}"
    );
    assert_eq!(
        trace["location"], "https://both.test:8443/vod/a.mp4",
        "{trace:#}"
    );
}

#[test]
fn a_replaced_certificate_is_served_without_a_failed_request_and_a_broken_one_is_refused() {
    let s = setup("tls-reload");
    // Both CAs are trusted by the client that keeps requesting.
    let ca2 = Ca::new("edgeward second CA");
    ca2.write(&s.dir.path("ca2.pem"));
    let bundle = s.dir.path("bundle.pem");
    std::fs::write(
        &bundle,
        std::fs::read_to_string(&s.ca).unwrap()
            + &std::fs::read_to_string(s.dir.path("ca2.pem")).unwrap(),
    )
    .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = s.engine.tls.unwrap().port();
    let requester = {
        let stop = stop.clone();
        let bundle = bundle.clone();
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let mut done = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Ten requests on one kept-alive connection, then a new one.
                let url = format!("https://a.test:{port}/vod/x.mp4");
                let urls: Vec<&str> = std::iter::repeat_n(url.as_str(), 10).collect();
                let out = Command::new("curl")
                    .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}\n", "--cacert"])
                    .arg(&bundle)
                    .args([
                        "--resolve",
                        &format!("a.test:{port}:127.0.0.1"),
                        "-H",
                        "X-Real-IP: 10.1.2.3",
                    ])
                    .args(&urls)
                    .output()
                    .unwrap();
                let codes = String::from_utf8_lossy(&out.stdout).into_owned();
                if !out.status.success() || codes.lines().any(|c| c != "302") {
                    failures.push(format!("{codes} {}", String::from_utf8_lossy(&out.stderr)));
                }
                done += 1;
            }
            (done, failures)
        })
    };
    let ca1 = s.ca.clone();
    wait_until("requests are being made", || {
        curl_tls(&s, &ca1, "a.test", "/vod/x.mp4", &[]).is_ok()
    });
    // Replace a.test's pair with one from the second CA (key first, then
    // the certificate, as a renewal tool might): the watch reloads it.
    let from = s.engine.log_len();
    let new_key = KeyPair::generate().unwrap();
    ca2.leaf(
        &["a.test"],
        &new_key,
        &s.dir.path("a2.pem"),
        &s.dir.path("a2.key"),
    );
    std::fs::rename(s.dir.path("a2.key"), s.dir.path("a.key")).unwrap();
    std::fs::rename(s.dir.path("a2.pem"), s.dir.path("a.pem")).unwrap();
    s.engine.wait_log(from, "TLS certificates reloaded");
    let ca2_file = s.dir.path("ca2.pem");
    wait_until("the new certificate is served", || {
        curl_tls(&s, &ca2_file, "a.test", "/vod/x.mp4", &[]).is_ok()
    });
    assert!(
        curl_tls(&s, &ca1, "a.test", "/vod/x.mp4", &[]).is_err(),
        "the old one is gone"
    );

    // A broken certificate file is refused with the reason; the current
    // pair keeps serving, and SIGHUP does not change that.
    let from = s.engine.log_len();
    std::fs::write(s.dir.path("a.pem"), "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    let line = s.engine.wait_log(from, "TLS certificates refused");
    assert!(line.contains("a.pem"), "{line}");
    s.engine.sighup();
    s.engine.wait_log(from, "why=\"SIGHUP\"");
    assert!(curl_tls(&s, &ca2_file, "a.test", "/vod/x.mp4", &[]).is_ok());

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (done, failures) = requester.join().unwrap();
    assert!(done > 0);
    assert!(
        failures.is_empty(),
        "requests failed during the reload: {failures:?}"
    );
}

#[test]
fn a_bad_certificate_at_start_is_refused_with_the_reason() {
    let dir = TempDir::new("tls-bad-start");
    std::fs::write(dir.path("c.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path("c.key"), "not a key").unwrap();
    let pair = format!(
        "{},{}",
        dir.path("c.pem").display(),
        dir.path("c.key").display()
    );
    let err = match Engine::try_start(&["--tls-listen", "127.0.0.1:0", "--tls-cert", &pair]) {
        Ok(_) => panic!("the engine started with {pair}"),
        Err(log) => log,
    };
    assert!(
        err.contains("c.pem") && err.contains("holds no certificate"),
        "{err}"
    );
    // A key that is not the certificate's.
    let ca = Ca::new("ca");
    ca.leaf(
        &["x.test"],
        &KeyPair::generate().unwrap(),
        &dir.path("x.pem"),
        &dir.path("x.key"),
    );
    ca.leaf(
        &["y.test"],
        &KeyPair::generate().unwrap(),
        &dir.path("y.pem"),
        &dir.path("y.key"),
    );
    let pair = format!(
        "{},{}",
        dir.path("x.pem").display(),
        dir.path("y.key").display()
    );
    let err = match Engine::try_start(&["--tls-listen", "127.0.0.1:0", "--tls-cert", &pair]) {
        Ok(_) => panic!("the engine started with {pair}"),
        Err(log) => log,
    };
    assert!(err.contains("does not belong to certificate"), "{err}");
}

/// What an HTTP/3 request got: status and headers.
#[derive(Debug)]
struct H3Seen {
    status: u16,
    headers: http::HeaderMap,
}

/// One HTTP/3 request (quinn and h3 as the client, the test CA `ca` as
/// the only root) to the engine's UDP port, asking for `name`.
fn h3_request(
    engine: &Engine,
    ca: &Path,
    name: &str,
    method: &str,
    path: &str,
) -> Result<H3Seen, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let addr = engine.h3.expect("the engine serves HTTP/3");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).map_err(|e| e.to_string())?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = endpoint
            .connect(addr, name)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn))
            .await
            .map_err(|e| e.to_string())?;
        let drive = tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        let req = http::Request::builder()
            .method(method)
            .uri(format!("https://{name}{path}"))
            .header("x-real-ip", "10.1.2.3")
            .body(())
            .unwrap();
        let mut stream = send.send_request(req).await.map_err(|e| e.to_string())?;
        stream.finish().await.map_err(|e| e.to_string())?;
        let resp = stream.recv_response().await.map_err(|e| e.to_string())?;
        while stream
            .recv_data()
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {}
        drop(send);
        drive.abort();
        endpoint.close(0u32.into(), b"done");
        Ok(H3Seen {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
        })
    })
}

#[test]
fn http3_answers_like_https_and_is_advertised_by_alt_svc() {
    let s = setup_with("tls-h3", &["--h3-listen", "127.0.0.1:0"]);
    let port = s.engine.h3.unwrap().port();
    // The HTTPS answers advertise HTTP/3 (HTTP/2 and HTTP/1.1 alike); the
    // plain listener's do not.
    let alt_svc = format!("h3=\":{port}\"; ma=86400");
    for version in ["--http2", "--http1.1"] {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-D", "-", version, "--cacert"])
            .arg(&s.ca)
            .args([
                "--resolve",
                &format!("a.test:{}:127.0.0.1", s.engine.tls.unwrap().port()),
                "-H",
                "X-Real-IP: 10.1.2.3",
            ])
            .arg(format!(
                "https://a.test:{}/vod/film.mp4",
                s.engine.tls.unwrap().port()
            ))
            .output()
            .unwrap();
        let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(
            head.contains(&format!("alt-svc: {alt_svc}")),
            "{version}: {head}"
        );
    }
    let plain = s.engine.get("/vod/film.mp4", &[("X-Real-IP", "10.1.2.3")]);
    assert_eq!(plain.header("Alt-Svc"), None, "{plain:?}");

    // Over HTTP/3: the same answer as over HTTPS, certificates by name.
    for name in ["a.test", "b.test"] {
        let seen = h3_request(&s.engine, &s.ca, name, "GET", "/vod/film.mp4").unwrap();
        assert_eq!(seen.status, 302, "{name}: {seen:?}");
        assert_eq!(
            seen.headers.get("location").unwrap(),
            "https://both.test:8443/vod/film.mp4"
        );
        assert!(seen.headers.get("edgeward-policy").is_some(), "{seen:?}");
        assert_eq!(seen.headers.get("alt-svc").unwrap(), alt_svc.as_str());
    }
    let seen = h3_request(&s.engine, &s.ca, "a.test", "POST", "/vod/film.mp4").unwrap();
    assert_eq!(seen.status, 405, "{seen:?}");
    assert_eq!(seen.headers.get("allow").unwrap(), "GET, HEAD");
    let seen = h3_request(&s.engine, &s.ca, "a.test", "GET", "/nowhere").unwrap();
    assert_eq!(seen.status, 404, "{seen:?}");

    // A replaced certificate is what the next HTTP/3 handshake sees.
    let ca2 = Ca::new("edgeward second CA");
    ca2.write(&s.dir.path("ca2.pem"));
    let from = s.engine.log_len();
    ca2.leaf(
        &["a.test"],
        &KeyPair::generate().unwrap(),
        &s.dir.path("a2.pem"),
        &s.dir.path("a2.key"),
    );
    std::fs::rename(s.dir.path("a2.key"), s.dir.path("a.key")).unwrap();
    std::fs::rename(s.dir.path("a2.pem"), s.dir.path("a.pem")).unwrap();
    s.engine.wait_log(from, "TLS certificates reloaded");
    let ca2_file = s.dir.path("ca2.pem");
    wait_until("HTTP/3 serves the new certificate", || {
        h3_request(&s.engine, &ca2_file, "a.test", "GET", "/vod/x.mp4").is_ok()
    });
    let err = h3_request(&s.engine, &s.ca, "a.test", "GET", "/vod/x.mp4").unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // Its connections are counted under their own listener.
    let metrics = s
        .engine
        .admin("GET", "/metrics", b"", "text/plain", None)
        .body;
    assert!(
        metrics.contains("listener=\"h3\""),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("connections"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn http3_needs_an_https_listener() {
    let err = Engine::try_start(&["--h3-listen", "127.0.0.1:0"])
        .err()
        .expect("must not start");
    assert!(err.contains("--tls-listen"), "{err}");
}

/// `openssl s_client -status` against the HTTPS listener for `name`: what
/// it printed.
fn s_client_status(engine: &Engine, name: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(engine.tls.unwrap().to_string())
        .args(["-servername", name, "-status"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl (tests/run installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_ocsp_response_from_a_file_is_stapled_and_a_bad_one_refused() {
    let dir = TempDir::new("tls-ocsp");
    let ca = Ca::new("edgeward OCSP CA");
    ca.write(&dir.path("ca.pem"));
    std::fs::write(dir.path("ca.key"), ca.key.serialize_pem()).unwrap();
    ca.leaf(
        &["a.test"],
        &KeyPair::generate().unwrap(),
        &dir.path("a.pem"),
        &dir.path("a.key"),
    );
    // A response for a.pem signed by the CA, from openssl's own responder
    // (its index is empty, so the certificate's status is `unknown`; the
    // response itself is `successful`, which is what is stapled).
    std::fs::write(dir.path("index.txt"), "").unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(&dir.0)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "ocsp",
        "-issuer",
        "ca.pem",
        "-cert",
        "a.pem",
        "-no_nonce",
        "-reqout",
        "req.der",
    ]);
    openssl(&[
        "ocsp",
        "-index",
        "index.txt",
        "-CA",
        "ca.pem",
        "-rsigner",
        "ca.pem",
        "-rkey",
        "ca.key",
        "-reqin",
        "req.der",
        "-respout",
        "a.ocsp",
        "-ndays",
        "1",
    ]);
    std::fs::write(dir.path("topology.json"), TOPOLOGY).unwrap();
    let pair = |ocsp: &str| {
        format!(
            "{},{},{}",
            dir.path("a.pem").display(),
            dir.path("a.key").display(),
            dir.path(ocsp).display()
        )
    };
    let engine = Engine::start(&[
        "--topology",
        dir.path("topology.json").to_str().unwrap(),
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &pair("a.ocsp"),
        "--watch-interval-ms",
        "100",
    ]);
    let seen = s_client_status(&engine, "a.test");
    assert!(seen.contains("OCSP Response Status: successful"), "{seen}");
    assert!(seen.contains("Cert Status: unknown"), "{seen}");

    // A file that is not a response is refused; the stapled one stays.
    let from = engine.log_len();
    std::fs::write(dir.path("a.ocsp"), "not der").unwrap();
    let line = engine.wait_log(from, "TLS certificates refused");
    assert!(
        line.contains("a.ocsp") && line.contains("not a DER OCSP response"),
        "{line}"
    );
    let seen = s_client_status(&engine, "a.test");
    assert!(seen.contains("OCSP Response Status: successful"), "{seen}");
    drop(engine);

    // At start, a `tryLater` saved by a fetcher is refused with its name.
    std::fs::write(dir.path("later.ocsp"), [0x30, 0x03, 0x0a, 0x01, 0x03]).unwrap();
    let err = Engine::try_start(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &pair("later.ocsp"),
    ])
    .err()
    .expect("must not start");
    assert!(
        err.contains("later.ocsp") && err.contains("tryLater"),
        "{err}"
    );
}

/// `edgeward ctl` against an `https://` admin listener, trusting `ca`.
fn ctl_https(admin: &str, ca: Option<&Path>, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut all: Vec<&str> = Vec::new();
    if let Some(ca) = ca {
        all.extend(["--admin-ca", ca.to_str().unwrap()]);
    }
    all.extend_from_slice(args);
    crate::harness::ctl_at(admin, &all, stdin)
}

/// The response headers of `curl` with these arguments.
fn curl_head(args: &[&str]) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", "-"])
        .args(args)
        .output()
        .expect("curl (tests/run installs it)");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn the_admin_listener_serves_https_with_secure_cookies_and_reloads_its_certificate() {
    let dir = TempDir::new("admin-tls");
    let ca = Ca::new("edgeward admin CA");
    let ca_file = dir.path("ca.pem");
    ca.write(&ca_file);
    let (cert, key) = (dir.path("admin.pem"), dir.path("admin.key"));
    ca.leaf(&["localhost"], &KeyPair::generate().unwrap(), &cert, &key);
    let state = dir.path("state");
    let args = [
        "--state-dir",
        state.to_str().unwrap(),
        "--admin-tls-cert",
        cert.to_str().unwrap(),
        "--admin-tls-key",
        key.to_str().unwrap(),
        "--watch-interval-ms",
        "100",
    ];
    let mut engine = Engine::start(&args);
    let port = engine.admin.unwrap().port();
    let admin = format!("https://localhost:{port}");

    // ctl speaks HTTPS, trusting the CA it is given (and only then).
    let (ok, _, err) = ctl_https(&admin, None, &["status"], "");
    assert!(!ok);
    assert!(err.contains("TLS with the admin API"), "{err}");
    let (ok, out, err) = ctl_https(&admin, Some(&ca_file), &["status"], "");
    assert!(ok, "{err}");
    assert!(out.contains("nearest"), "{out}");
    let (ok, _, err) = ctl_https(
        &admin,
        Some(&ca_file),
        &["user", "add", "root@example.com", "--role", "admin"],
        "admin password 1\n",
    );
    assert!(ok, "{err}");

    // Session cookies are Secure, the console's too; plain HTTP gets no
    // answer from the TLS port.
    let resolve = format!("localhost:{port}:127.0.0.1");
    let tls = ["--cacert", ca_file.to_str().unwrap(), "--resolve", &resolve];
    let head = curl_head(
        &[
            &tls[..],
            &[
                "-H",
                "Content-Type: application/json",
                "--data",
                r#"{"email": "root@example.com", "password": "admin password 1"}"#,
                &format!("{admin}/session"),
            ],
        ]
        .concat(),
    )
    .unwrap();
    let cookie = head
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: edgeward_session=")
        })
        .unwrap_or_else(|| panic!("{head}"));
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let head = curl_head(&[&tls[..], &[&format!("{admin}/ui/sign-in")]].concat()).unwrap();
    assert!(
        head.contains("edgeward_sign_in=") && head.contains("; Secure"),
        "{head}"
    );
    assert!(curl_head(&[&format!("http://127.0.0.1:{port}/healthz")]).is_err());

    // A renewed certificate is picked up; a broken one is refused and the
    // current one kept.
    let from = engine.log_len();
    let ca2 = Ca::new("edgeward second admin CA");
    let ca2_file = dir.path("ca2.pem");
    ca2.write(&ca2_file);
    ca2.leaf(
        &["localhost"],
        &KeyPair::generate().unwrap(),
        &dir.path("new.pem"),
        &dir.path("new.key"),
    );
    std::fs::rename(dir.path("new.key"), &key).unwrap();
    std::fs::rename(dir.path("new.pem"), &cert).unwrap();
    engine.wait_log(from, "TLS certificates reloaded");
    let healthz = |ca: &Path| {
        curl_head(&[
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            &format!("{admin}/healthz"),
        ])
    };
    crate::harness::wait_until("the renewed certificate is served", || {
        healthz(&ca2_file).is_ok()
    });
    assert!(healthz(&ca_file).is_err(), "the old one is gone");
    let from = engine.log_len();
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    let line = engine.wait_log(from, "TLS certificates refused");
    assert!(line.contains("admin.pem"), "{line}");
    assert!(
        healthz(&ca2_file).is_ok(),
        "the kept certificate still serves"
    );
    engine.signal("-TERM");
    engine.wait_exit();

    // Beyond loopback: with neither a token nor an account the engine
    // refuses to start; with accounts it needs TLS, else sign-in would
    // cross the network in the clear.
    let bare = TempDir::new("admin-tls-bare");
    let err = match Engine::try_start(&[
        "--state-dir",
        bare.path("state").to_str().unwrap(),
        "--admin-listen",
        "0.0.0.0:0",
    ]) {
        Ok(_) => panic!("an open admin API beyond loopback"),
        Err(log) => log,
    };
    assert!(err.contains("neither a token nor an account"), "{err}");
    std::fs::write(&cert, std::fs::read_to_string(dir.path("ca2.pem")).unwrap()).unwrap();
    let err = match Engine::try_start(&[
        "--state-dir",
        state.to_str().unwrap(),
        "--admin-listen",
        "0.0.0.0:0",
    ]) {
        Ok(_) => panic!("sign-in over plain HTTP beyond loopback"),
        Err(log) => log,
    };
    assert!(err.contains("over plain HTTP"), "{err}");
    // A broken admin certificate at start is refused with the reason.
    let err = match Engine::try_start(&args) {
        Ok(_) => panic!("started with a CA certificate and someone else's key"),
        Err(log) => log,
    };
    assert!(err.contains("the admin listener's certificate"), "{err}");
    ca2.leaf(&["localhost"], &KeyPair::generate().unwrap(), &cert, &key);
    let engine = Engine::start(&[
        "--state-dir",
        state.to_str().unwrap(),
        "--admin-listen",
        "0.0.0.0:0",
        "--admin-tls-cert",
        cert.to_str().unwrap(),
        "--admin-tls-key",
        key.to_str().unwrap(),
    ]);
    let admin = format!("https://localhost:{}", engine.admin.unwrap().port());
    let (ok, _, err) = ctl_https(&admin, Some(&ca2_file), &["status"], "");
    assert!(!ok && err.contains("401"), "accounts guard it: {err}");
}
