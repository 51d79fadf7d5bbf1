//! A small etcd v3 client speaking etcd's HTTP/JSON gateway (`/v3/kv/...`,
//! `/v3/watch`), which every etcd member serves on its client port.
//!
//! Why not the gRPC crate (`etcd-client`): it compiles etcd's `.proto`
//! files at build time and so needs `protoc` installed, which would break
//! `cargo run` on a fresh machine. The gateway is etcd's documented JSON
//! mapping of the same API; with the hyper and rustls this engine already
//! has, the few calls edgeward needs (range, transaction, watch,
//! authenticate) are a few hundred lines.
//!
//! Every call tries the member that answered last, then the others in turn;
//! a member that refuses connections, times out or reports it cannot serve
//! (no leader, no quorum) is skipped.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Pause between rounds of a call while the members elect a leader.
const ELECTION_RETRY: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a call waits, at most, for the members to elect a leader.
const ELECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Largest answer read from a unary call (a range over the configuration
/// keys or one blob chunk, base64-encoded).
const MAX_ANSWER: usize = 64 << 20;

/// How edgeward reaches etcd.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Client URLs of the members, `http://host:port` or `https://…`.
    pub endpoints: Vec<String>,
    /// User name and password, when etcd has authentication enabled.
    pub credentials: Option<(String, String)>,
    /// TLS settings for `https://` endpoints (server CA, client certificate).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Time limit of one call to one member.
    pub timeout: Duration,
}

/// Why an etcd call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    /// No member could be reached or none could serve the call.
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// etcd refused the call (bad request, permission denied, …).
    #[error("etcd refused the request: {0}")]
    Refused(String),
    /// A watch asked for history that has been compacted away.
    #[error("etcd history before revision {0} was compacted")]
    Compacted(i64),
}

/// One key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// Revision that created the key.
    pub create_revision: i64,
    /// Revision of the last change.
    pub mod_revision: i64,
}

/// A condition of a transaction.
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key was last changed at this revision (0: the key is absent).
    ModRevision(String, i64),
    /// The key was created at this revision (0: the key is absent).
    CreateRevision(String, i64),
}

/// An operation of a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Set a key.
    Put(String, Vec<u8>),
    /// Set a key that lives as long as the lease (an id from
    /// [`EtcdClient::lease_grant`]).
    PutLeased(String, Vec<u8>, i64),
    /// Delete a key.
    Delete(String),
    /// Delete every key with this prefix.
    DeletePrefix(String),
}

/// What a transaction did.
#[derive(Debug, Clone)]
pub struct TxnResult {
    /// Whether every comparison held (and the success branch ran).
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
}

/// One change seen by a watch.
#[derive(Debug, Clone)]
pub enum Event {
    /// A key was set (its new value and revisions).
    Put(KeyValue),
    /// A key was deleted.
    Delete {
        /// The key.
        key: String,
        /// Revision of the deletion.
        mod_revision: i64,
    },
}

/// The changes of one or more revisions, as a watch delivers them.
#[derive(Debug, Clone)]
pub struct WatchBatch {
    /// The store's revision when the batch was sent.
    pub revision: i64,
    /// The changes, in revision order.
    pub events: Vec<Event>,
}

/// An etcd client over the JSON gateway.
pub struct EtcdClient {
    endpoints: Vec<Endpoint>,
    /// Index of the member that answered last.
    current: AtomicUsize,
    credentials: Option<(String, String)>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    token: std::sync::Mutex<Option<String>>,
    /// The cluster id in the last answer.
    cluster_id: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password or the token.
        f.debug_struct("EtcdClient")
            .field("endpoints", &self.endpoints())
            .field("authenticated", &self.credentials.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    https: bool,
    host: String,
    port: u16,
}

impl EtcdClient {
    /// Checks the endpoint URLs; connects lazily.
    pub fn new(config: EtcdConfig) -> Result<Self, String> {
        if config.endpoints.is_empty() {
            return Err("no etcd endpoint given".into());
        }
        let mut endpoints = Vec::new();
        for url in &config.endpoints {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| format!("etcd endpoint {url:?}: {e}"))?;
            let https = match uri.scheme_str() {
                Some("http") => false,
                Some("https") => true,
                _ => {
                    return Err(format!(
                        "etcd endpoint {url:?}: must start with http:// or https://"
                    ));
                }
            };
            let host = uri
                .host()
                .ok_or_else(|| format!("etcd endpoint {url:?}: no host"))?
                .trim_matches(|c| c == '[' || c == ']')
                .to_string();
            let port = uri.port_u16().unwrap_or(2379);
            endpoints.push(Endpoint {
                url: url.trim_end_matches('/').to_string(),
                https,
                host,
                port,
            });
        }
        if endpoints.iter().any(|e| e.https) && config.tls.is_none() {
            return Err("https:// etcd endpoints need TLS settings".into());
        }
        Ok(EtcdClient {
            endpoints,
            current: AtomicUsize::new(0),
            credentials: config.credentials,
            tls: config.tls,
            timeout: config.timeout,
            token: std::sync::Mutex::new(None),
            cluster_id: 0.into(),
        })
    }

    /// The endpoint URLs.
    pub fn endpoints(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| e.url.clone()).collect()
    }

    /// The id of the cluster that answered last (0: none yet). A cluster
    /// rebuilt from a snapshot has a new one.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id.load(Ordering::Relaxed)
    }

    /// The member that answered last.
    pub fn member(&self) -> String {
        let i = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        self.endpoints[i].url.clone()
    }

    /// Every key starting with `prefix`, in key order, and the store's
    /// revision they were read at.
    pub async fn range_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        let answer = self
            .call(
                "/v3/kv/range",
                json!({ "key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix.as_bytes())) }),
            )
            .await?;
        let kvs = answer["kvs"]
            .as_array()
            .map(|a| a.iter().filter_map(key_value).collect())
            .unwrap_or_default();
        Ok((kvs, header_revision(&answer)))
    }

    /// At most `limit` keys from `from` (inclusive) to `end` (exclusive),
    /// in key order.
    pub async fn range(
        &self,
        from: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<KeyValue>, EtcdError> {
        let answer = self
            .call(
                "/v3/kv/range",
                json!({
                    "key": b64(from.as_bytes()),
                    "range_end": b64(end.as_bytes()),
                    "limit": limit.to_string(),
                }),
            )
            .await?;
        Ok(answer["kvs"]
            .as_array()
            .map(|a| a.iter().filter_map(key_value).collect())
            .unwrap_or_default())
    }

    /// Deletes the keys from `from` (inclusive) to `end` (exclusive).
    pub async fn delete_range(&self, from: &str, end: &str) -> Result<i64, EtcdError> {
        let answer = self
            .call(
                "/v3/kv/deleterange",
                json!({ "key": b64(from.as_bytes()), "range_end": b64(end.as_bytes()) }),
            )
            .await?;
        Ok(header_revision(&answer))
    }

    /// One key, if it exists, and the store's revision.
    pub async fn get(&self, key: &str) -> Result<(Option<KeyValue>, i64), EtcdError> {
        let answer = self
            .call("/v3/kv/range", json!({ "key": b64(key.as_bytes()) }))
            .await?;
        let kv = answer["kvs"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(key_value);
        Ok((kv, header_revision(&answer)))
    }

    /// Sets one key; returns the new revision.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<i64, EtcdError> {
        let answer = self
            .call(
                "/v3/kv/put",
                json!({ "key": b64(key.as_bytes()), "value": b64(value) }),
            )
            .await?;
        Ok(header_revision(&answer))
    }

    /// Deletes one key.
    pub async fn delete(&self, key: &str) -> Result<i64, EtcdError> {
        let answer = self
            .call("/v3/kv/deleterange", json!({ "key": b64(key.as_bytes()) }))
            .await?;
        Ok(header_revision(&answer))
    }

    /// Deletes every key starting with `prefix`.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<i64, EtcdError> {
        let answer = self
            .call(
                "/v3/kv/deleterange",
                json!({ "key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix.as_bytes())) }),
            )
            .await?;
        Ok(header_revision(&answer))
    }

    /// Runs `success` if every comparison holds, atomically.
    pub async fn txn(&self, compare: &[Compare], success: &[Op]) -> Result<TxnResult, EtcdError> {
        let compare: Vec<Value> = compare
            .iter()
            .map(|c| match c {
                Compare::ModRevision(key, rev) => json!({
                    "key": b64(key.as_bytes()),
                    "target": "MOD",
                    "result": "EQUAL",
                    "mod_revision": rev.to_string(),
                }),
                Compare::CreateRevision(key, rev) => json!({
                    "key": b64(key.as_bytes()),
                    "target": "CREATE",
                    "result": "EQUAL",
                    "create_revision": rev.to_string(),
                }),
            })
            .collect();
        let success: Vec<Value> = success
            .iter()
            .map(|op| match op {
                Op::Put(key, value) => {
                    json!({ "request_put": { "key": b64(key.as_bytes()), "value": b64(value) } })
                }
                Op::PutLeased(key, value, lease) => json!({ "request_put": {
                    "key": b64(key.as_bytes()),
                    "value": b64(value),
                    "lease": lease.to_string(),
                } }),
                Op::Delete(key) => {
                    json!({ "request_delete_range": { "key": b64(key.as_bytes()) } })
                }
                Op::DeletePrefix(prefix) => json!({ "request_delete_range": {
                    "key": b64(prefix.as_bytes()),
                    "range_end": b64(&prefix_end(prefix.as_bytes())),
                } }),
            })
            .collect();
        let answer = self
            .call(
                "/v3/kv/txn",
                json!({ "compare": compare, "success": success }),
            )
            .await?;
        Ok(TxnResult {
            succeeded: answer["succeeded"].as_bool().unwrap_or(false),
            revision: header_revision(&answer),
        })
    }

    /// Grants a lease of `ttl_s` seconds; its id.
    pub async fn lease_grant(&self, ttl_s: u64) -> Result<i64, EtcdError> {
        let answer = self
            .call("/v3/lease/grant", json!({ "TTL": ttl_s.to_string() }))
            .await?;
        Some(int(&answer["ID"]))
            .filter(|&id| id != 0)
            .ok_or_else(|| EtcdError::Refused(format!("lease grant: no lease id in {answer}")))
    }

    /// Renews a lease for its TTL; the TTL left, or none if the lease has
    /// expired (or was revoked).
    pub async fn lease_keep_alive(&self, id: i64) -> Result<Option<i64>, EtcdError> {
        // The gateway's keep-alive is a stream; one request in, one
        // answer out.
        let answer = self
            .call("/v3/lease/keepalive", json!({ "ID": id.to_string() }))
            .await?;
        Ok(Some(int(&answer["result"]["TTL"])).filter(|&ttl| ttl > 0))
    }

    /// Ends a lease now, deleting its keys.
    pub async fn lease_revoke(&self, id: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", json!({ "ID": id.to_string() }))
            .await
            .map(drop)
    }

    /// Watches every key starting with `prefix` from `start_revision` on.
    pub async fn watch(&self, prefix: &str, start_revision: i64) -> Result<Watch, EtcdError> {
        let body = json!({ "create_request": {
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&prefix_end(prefix.as_bytes())),
            "start_revision": start_revision.to_string(),
        }});
        let mut last = String::from("no endpoint tried");
        for endpoint in self.rotation() {
            let token = self.token_for(endpoint).await;
            let token = match token {
                Ok(t) => t,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let request = tokio::time::timeout(
                self.timeout,
                self.open(endpoint, "/v3/watch", &body, token.as_deref()),
            )
            .await;
            match request {
                Ok(Ok((status, body))) if status.is_success() => {
                    self.current.store(endpoint, Ordering::Relaxed);
                    let mut watch = Watch {
                        body,
                        buffer: Vec::new(),
                        member: self.endpoints[endpoint].url.clone(),
                        revision: 0,
                        cluster_id: 0,
                    };
                    // The first message confirms the watch (or reports a
                    // compaction).
                    match tokio::time::timeout(self.timeout, watch.message()).await {
                        Ok(Ok(first)) => {
                            if let Some(rev) = compacted(&first) {
                                return Err(EtcdError::Compacted(rev));
                            }
                            watch.revision = header_revision(&first["result"]);
                            watch.cluster_id = cluster_id(&first["result"]["header"]);
                            return Ok(watch);
                        }
                        Ok(Err(e)) => last = format!("{}: {e}", self.endpoints[endpoint].url),
                        Err(_) => last = format!("{}: timed out", self.endpoints[endpoint].url),
                    }
                }
                Ok(Ok((status, body))) => {
                    let text = read_all(body).await.unwrap_or_default();
                    last = format!(
                        "{}: {status} {}",
                        self.endpoints[endpoint].url,
                        String::from_utf8_lossy(&text).trim()
                    );
                }
                Ok(Err(e)) => last = format!("{}: {e}", self.endpoints[endpoint].url),
                Err(_) => last = format!("{}: timed out", self.endpoints[endpoint].url),
            }
        }
        Err(EtcdError::Unavailable(last))
    }

    /// Member indices, starting with the one that answered last.
    fn rotation(&self) -> impl Iterator<Item = usize> + use<> {
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        (0..n).map(move |i| (first + i) % n)
    }

    /// One unary call, tried on each member in turn. While members answer
    /// that they have no leader, or that etcd timed out the request (an
    /// election after the leader was lost takes a second or two), the round
    /// is tried again, for up to [`ELECTION_WAIT`] (or the call's time limit
    /// if longer).
    async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let deadline = tokio::time::Instant::now() + self.timeout.max(ELECTION_WAIT);
        loop {
            match self.call_round(path, &body).await {
                Err(EtcdError::Unavailable(last))
                    if (last.contains("no leader")
                        || last.contains("etcdserver: request timed out"))
                        && tokio::time::Instant::now() + ELECTION_RETRY < deadline =>
                {
                    tokio::time::sleep(ELECTION_RETRY).await;
                }
                result => return result,
            }
        }
    }

    /// One round of [`EtcdClient::call`]: each member once.
    async fn call_round(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let body = body.clone();
        let mut last = String::from("no endpoint tried");
        // What every member said: one that has no leader keeps the round
        // worth retrying even when the last one tried is down.
        let mut said: Vec<String> = Vec::new();
        for endpoint in self.rotation() {
            let url = &self.endpoints[endpoint].url;
            for attempt in 0..2 {
                let token = match self.token_for(endpoint).await {
                    Ok(t) => t,
                    Err(e @ EtcdError::Refused(_)) => return Err(e),
                    Err(e) => {
                        last = e.to_string();
                        said.push(last.clone());
                        break;
                    }
                };
                let answer = tokio::time::timeout(self.timeout, async {
                    let (status, body) = self.open(endpoint, path, &body, token.as_deref()).await?;
                    let bytes = read_all(body).await?;
                    Ok::<_, String>((status, bytes))
                })
                .await;
                let (status, bytes) = match answer {
                    Ok(Ok(a)) => a,
                    Ok(Err(e)) => {
                        last = format!("{url}: {e}");
                        said.push(last.clone());
                        break;
                    }
                    Err(_) => {
                        last = format!("{url}: no answer within {} ms", self.timeout.as_millis());
                        said.push(last.clone());
                        break;
                    }
                };
                let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(
                    |_| json!({ "error": String::from_utf8_lossy(&bytes).trim().to_string() }),
                );
                if status.is_success() {
                    self.current.store(endpoint, Ordering::Relaxed);
                    self.cluster_id
                        .store(cluster_id(&value["header"]), Ordering::Relaxed);
                    return Ok(value);
                }
                let message = value["error"]
                    .as_str()
                    .or(value["message"].as_str())
                    .unwrap_or("no message")
                    .to_string();
                if attempt == 0 && self.credentials.is_some() && is_token_error(&message) {
                    // The token expired (or the member restarted): log in again.
                    *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    continue;
                }
                if is_member_problem(status, &message) {
                    last = format!("{url}: {message}");
                    said.push(last.clone());
                    break;
                }
                return Err(EtcdError::Refused(explain(&message)));
            }
        }
        if said.len() > 1 {
            last = said.join("; ");
        }
        Err(EtcdError::Unavailable(last))
    }

    /// The authentication token, logging in first when there is none.
    async fn token_for(&self, endpoint: usize) -> Result<Option<String>, EtcdError> {
        let Some((name, password)) = &self.credentials else {
            return Ok(None);
        };
        if let Some(t) = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(Some(t));
        }
        let url = &self.endpoints[endpoint].url;
        let body = json!({ "name": name, "password": password });
        let answer = tokio::time::timeout(self.timeout, async {
            let (status, body) = self
                .open(endpoint, "/v3/auth/authenticate", &body, None)
                .await?;
            Ok::<_, String>((status, read_all(body).await?))
        })
        .await
        .map_err(|_| EtcdError::Unavailable(format!("{url}: authentication timed out")))?
        .map_err(|e| EtcdError::Unavailable(format!("{url}: {e}")))?;
        let (status, bytes) = answer;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let raw = String::from_utf8_lossy(&bytes);
            let message = value["error"]
                .as_str()
                .or(value["message"].as_str())
                .unwrap_or(raw.trim());
            if is_member_problem(status, message) {
                return Err(EtcdError::Unavailable(format!("{url}: {message}")));
            }
            return Err(EtcdError::Refused(format!(
                "authentication as {name:?}: {}",
                explain(message)
            )));
        }
        let token = value["token"]
            .as_str()
            .ok_or_else(|| EtcdError::Refused("authentication answered no token".into()))?
            .to_string();
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
        Ok(Some(token))
    }

    /// Connects to a member and sends one POST; returns the status and the
    /// body still to be read.
    async fn open(
        &self,
        endpoint: usize,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<(http::StatusCode, Incoming), String> {
        let e = &self.endpoints[endpoint];
        let tcp = tokio::net::TcpStream::connect((e.host.as_str(), e.port))
            .await
            .map_err(|err| format!("connect: {err}"))?;
        let _ = tcp.set_nodelay(true);
        let request = http::Request::post(path)
            .header(http::header::HOST, format!("{}:{}", e.host, e.port))
            .header(http::header::CONTENT_TYPE, "application/json")
            // gRPC metadata through the gateway: a member that loses its
            // leader (a partition, a lost quorum) ends our watch instead of
            // leaving it open and silent, so the node notices and says so.
            .header("grpc-metadata-hasleader", "true");
        let request = match token {
            Some(t) => request.header(http::header::AUTHORIZATION, t),
            None => request,
        };
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|err| err.to_string())?;
        if !e.https {
            return send(tcp, request).await;
        }
        let tls = self.tls.clone().ok_or("no TLS settings")?;
        let name = rustls::pki_types::ServerName::try_from(e.host.clone())
            .map_err(|err| format!("tls: {err}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|err| format!("tls: {err}"))?;
        send(stream, request).await
    }
}

async fn send<IO>(
    io: IO,
    request: http::Request<Full<Bytes>>,
) -> Result<(http::StatusCode, Incoming), String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("handshake: {}", with_causes(&e)))?;
    tokio::spawn(conn);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {}", with_causes(&e)))?;
    let status = response.status();
    Ok((status, response.into_body()))
}

/// An error with its causes: hyper's own message ("connection error")
/// does not say what broke the connection (etcd closing a TLS connection
/// that lacks a client certificate, say); its sources do.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn read_all(body: Incoming) -> Result<Bytes, String> {
    Ok(Limited::new(body, MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes())
}

/// An open watch: a stream of JSON messages from one member.
pub struct Watch {
    body: Incoming,
    buffer: Vec<u8>,
    member: String,
    revision: i64,
    cluster_id: u64,
}

impl Watch {
    /// The store's revision when the watch was created.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The id of the cluster the watch is open on.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The member the watch is open on.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// The next batch of changes. Ends with an error when the member goes
    /// away or the watch is cancelled (then open a new one).
    pub async fn next(&mut self) -> Result<WatchBatch, EtcdError> {
        loop {
            let message = self
                .message()
                .await
                .map_err(|e| EtcdError::Unavailable(format!("{}: watch: {e}", self.member)))?;
            if let Some(rev) = compacted(&message) {
                return Err(EtcdError::Compacted(rev));
            }
            let result = &message["result"];
            if result["canceled"].as_bool() == Some(true) {
                return Err(EtcdError::Unavailable(format!(
                    "{}: watch cancelled: {}",
                    self.member,
                    result["cancel_reason"]
                        .as_str()
                        .unwrap_or("no reason given")
                )));
            }
            let Some(events) = result["events"].as_array() else {
                // A progress notification or the creation message.
                continue;
            };
            let events = events
                .iter()
                .filter_map(|e| {
                    let kv = key_value(&e["kv"])?;
                    Some(if e["type"].as_str() == Some("DELETE") {
                        Event::Delete {
                            key: kv.key,
                            mod_revision: kv.mod_revision,
                        }
                    } else {
                        Event::Put(kv)
                    })
                })
                .collect();
            return Ok(WatchBatch {
                revision: header_revision(result),
                events,
            });
        }
    }

    /// The next whole JSON message of the stream.
    async fn message(&mut self) -> Result<Value, String> {
        loop {
            // The gateway sends one JSON object per message; find where the
            // first complete one ends.
            let mut stream =
                serde_json::Deserializer::from_slice(&self.buffer).into_iter::<Value>();
            match stream.next() {
                Some(Ok(value)) => {
                    let used = stream.byte_offset();
                    self.buffer.drain(..used);
                    if let Some(error) = value.get("error") {
                        return Err(error.to_string());
                    }
                    return Ok(value);
                }
                Some(Err(e)) if !e.is_eof() => return Err(format!("bad JSON from etcd: {e}")),
                _ => {}
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        self.buffer.extend_from_slice(data);
                        if self.buffer.len() > MAX_ANSWER {
                            return Err("watch message too large".into());
                        }
                    }
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the member closed the watch".into()),
            }
        }
    }
}

fn compacted(message: &Value) -> Option<i64> {
    let rev = int(&message["result"]["compact_revision"]);
    (rev > 0).then_some(rev)
}

/// A member that cannot serve now (try another) rather than a request etcd
/// refuses.
fn is_member_problem(status: http::StatusCode, message: &str) -> bool {
    status.is_server_error()
        || message.contains("no leader")
        || message.contains("timed out")
        || message.contains("timeout")
        || message.contains("unavailable")
        || message.contains("not capable")
        || message.contains("deadline exceeded")
}

/// etcd's message, with a hint where etcd's own is cryptic.
fn explain(message: &str) -> String {
    if message.contains("CommonName of client sending a request against gateway") {
        format!(
            "{message} (etcd refuses client certificates on its HTTP gateway once \
             authentication is enabled: use a client certificate with \
             --client-cert-auth, or a user and password over TLS, not both)"
        )
    } else {
        message.to_string()
    }
}

fn is_token_error(message: &str) -> bool {
    message.contains("invalid auth token") || message.contains("token is expired")
}

fn key_value(v: &Value) -> Option<KeyValue> {
    let key = B64.decode(v["key"].as_str()?).ok()?;
    let value = match v["value"].as_str() {
        Some(s) => B64.decode(s).ok()?,
        None => Vec::new(),
    };
    Some(KeyValue {
        key: String::from_utf8(key).ok()?,
        value,
        create_revision: int(&v["create_revision"]),
        mod_revision: int(&v["mod_revision"]),
    })
}

fn cluster_id(header: &Value) -> u64 {
    match &header["cluster_id"] {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn header_revision(answer: &Value) -> i64 {
    int(&answer["header"]["revision"])
}

/// The gateway writes 64-bit integers as strings.
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every key: etcd's "\0" range end.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_covers_the_prefix() {
        assert_eq!(prefix_end(b"/edgeward/"), b"/edgeward0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }

    #[test]
    fn gateway_integers_and_key_values_parse() {
        let v = json!({"key": b64(b"/k"), "value": b64(b"v"), "create_revision": "7", "mod_revision": "9"});
        let kv = key_value(&v).unwrap();
        assert_eq!(kv.key, "/k");
        assert_eq!(kv.value, b"v");
        assert_eq!((kv.create_revision, kv.mod_revision), (7, 9));
        // An empty value is left out by the gateway.
        let kv = key_value(&json!({"key": b64(b"/e"), "mod_revision": "3"})).unwrap();
        assert!(kv.value.is_empty());
    }

    #[test]
    fn endpoints_are_checked() {
        let config = |e: &[&str]| EtcdConfig {
            endpoints: e.iter().map(|s| s.to_string()).collect(),
            credentials: None,
            tls: None,
            timeout: Duration::from_secs(1),
        };
        assert!(EtcdClient::new(config(&["http://127.0.0.1:2379"])).is_ok());
        assert!(EtcdClient::new(config(&[])).is_err());
        assert!(EtcdClient::new(config(&["ftp://x"])).is_err());
        assert!(
            EtcdClient::new(config(&["https://x:2379"]))
                .unwrap_err()
                .contains("TLS")
        );
    }

    #[test]
    fn member_problems_are_told_from_refusals() {
        assert!(is_member_problem(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "x"
        ));
        assert!(is_member_problem(
            http::StatusCode::BAD_REQUEST,
            "etcdserver: no leader"
        ));
        assert!(!is_member_problem(
            http::StatusCode::BAD_REQUEST,
            "etcdserver: permission denied"
        ));
    }
}
