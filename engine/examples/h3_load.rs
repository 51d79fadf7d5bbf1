//! A small HTTP/3 load generator for edgeward's `--h3-listen` (no packaged
//! tool here speaks HTTP/3: Debian's wrk and h2load do not, nginx 1.22
//! has no QUIC). Used by `load_testing/bench/h3.sh`.
//!
//! ```sh
//! # C connections, each sending requests one after another for S seconds:
//! cargo run --release -p edgeward --example h3_load -- load ADDR NAME CA.pem C S PATH [CLIENTS]
//! # N connections opened, one request each, then held idle for S seconds:
//! cargo run --release -p edgeward --example h3_load -- idle ADDR NAME CA.pem N S PATH
//! ```
//!
//! `CLIENTS` is a file of client addresses, one per line, sent as
//! `X-Real-IP` in turn (the engine trusts loopback). Prints one JSON line.

use bytes::Buf;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, bytes::Bytes>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 7 {
        eprintln!("usage: h3_load load|idle ADDR NAME CA.pem COUNT SECONDS PATH [CLIENTS]");
        std::process::exit(2);
    }
    let mode = args[0].clone();
    let addr: SocketAddr = args[1].parse().expect("ADDR");
    let name = args[2].clone();
    let count: usize = args[4].parse().expect("COUNT");
    let seconds: f64 = args[5].parse().expect("SECONDS");
    let path = args[6].clone();
    let clients: Vec<String> = match args.get(7) {
        Some(f) => std::fs::read_to_string(f)
            .expect("CLIENTS")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
            .collect(),
        None => vec!["10.1.2.3".to_string()],
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&args[3]).expect("CA.pem") {
        roots.add(cert.expect("a certificate")).expect("a root");
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).expect("QUIC");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let mut endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("endpoint");
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let clients = Rc::new(clients);
        match mode.as_str() {
            "load" => load(&endpoint, addr, &name, count, seconds, &path, clients).await,
            "idle" => idle(&endpoint, addr, &name, count, seconds, &path).await,
            other => panic!("unknown mode {other}"),
        }
        endpoint.close(0u32.into(), b"done");
    });
}

async fn connect(endpoint: &quinn::Endpoint, addr: SocketAddr, name: &str) -> SendRequest {
    let conn = endpoint
        .connect(addr, name)
        .expect("connect")
        .await
        .expect("handshake");
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .expect("h3");
    tokio::task::spawn_local(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    send
}

/// One GET; its status, or the error.
async fn get(send: &mut SendRequest, name: &str, path: &str, client: &str) -> Result<u16, String> {
    let req = http::Request::builder()
        .uri(format!("https://{name}{path}"))
        .header("x-real-ip", client)
        .body(())
        .unwrap();
    let mut stream = send.send_request(req).await.map_err(|e| e.to_string())?;
    stream.finish().await.map_err(|e| e.to_string())?;
    let resp = stream.recv_response().await.map_err(|e| e.to_string())?;
    while let Some(mut chunk) = stream.recv_data().await.map_err(|e| e.to_string())? {
        chunk.advance(chunk.remaining());
    }
    Ok(resp.status().as_u16())
}

async fn load(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    name: &str,
    connections: usize,
    seconds: f64,
    path: &str,
    clients: Rc<Vec<String>>,
) {
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(endpoint, addr, name).await);
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut send) in senders.into_iter().enumerate() {
        let (name, path, clients) = (name.to_string(), path.to_string(), clients.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let mut latencies = Vec::new();
            let (mut redirects, mut errors) = (0u64, 0u64);
            let mut n = i;
            while Instant::now() < deadline {
                let client = &clients[n % clients.len()];
                n += connections;
                let t = Instant::now();
                match get(&mut send, &name, &path, client).await {
                    Ok(302) => redirects += 1,
                    Ok(_) | Err(_) => errors += 1,
                }
                latencies.push(t.elapsed().as_micros() as u32);
            }
            (latencies, redirects, errors)
        }));
    }
    let (mut all, mut redirects, mut errors) = (Vec::new(), 0, 0);
    for t in tasks {
        let (l, r, e) = t.await.expect("task");
        all.extend(l);
        redirects += r;
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |&us| f64::from(us) / 1000.0)
    };
    println!(
        "{{\"mode\":\"load\",\"connections\":{connections},\"requests\":{},\"redirects\":{redirects},\"errors\":{errors},\"rps\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
}

async fn idle(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    name: &str,
    connections: usize,
    seconds: f64,
    path: &str,
) {
    let mut held = Vec::with_capacity(connections);
    let mut errors = 0;
    for _ in 0..connections {
        let mut send = connect(endpoint, addr, name).await;
        if get(&mut send, name, path, "10.1.2.3").await != Ok(302) {
            errors += 1;
        }
        held.push(send);
    }
    println!("{{\"mode\":\"idle\",\"connections\":{connections},\"errors\":{errors}}}");
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    drop(held);
}
