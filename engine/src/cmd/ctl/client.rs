//! `edgeward ctl`: the operator's command line for a node's admin API.
//!
//! Human-readable output by default, the API's JSON with `--json`; the
//! token from `--token-file` or `EDGEWARD_ADMIN_TOKEN`; a non-zero exit and
//! a one-line message on every failure (unreachable node, refused change,
//! bad input).

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Where and how to reach the admin API.
pub struct Client {
    /// `host:port` of the admin listener.
    pub addr: String,
    /// Over HTTPS: the TLS configuration and the name to check.
    tls: Option<(
        std::sync::Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    /// Bearer token, if any.
    pub token: Option<String>,
    /// etcd revision a change must be based on (`If-Match`), if any.
    pub if_match: Option<i64>,
}

/// An admin API answer.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body)
            .context("the admin API answered something that is not JSON")
    }
}

impl Client {
    /// From `--admin` (`http://host:port`, `https://host:port` or
    /// `host:port`), the token, and a CA file for `https://`.
    pub fn new(
        admin: &str,
        token: Option<String>,
        ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Client> {
        let (https, rest) = match admin.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, admin.strip_prefix("http://").unwrap_or(admin)),
        };
        let addr = rest.trim_end_matches('/').to_string();
        if addr.contains('/') || addr.is_empty() {
            bail!("--admin {admin:?} must be http://host:port or https://host:port");
        }
        let tls = if https {
            let host = match addr.rsplit_once(':') {
                Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
                None => addr.as_str(),
            };
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .with_context(|| format!("--admin {admin:?}: {host:?} is not a host name"))?;
            let config = crate::cluster::tls_config(ca, None)
                .map_err(|e| anyhow::anyhow!("--admin-ca: {e}"))?;
            Some((config, name))
        } else {
            None
        };
        if !https && ca.is_some() {
            bail!("--admin-ca is for an https:// admin listener, and --admin is {admin:?}");
        }
        Ok(Client {
            addr,
            tls,
            token,
            if_match: None,
        })
    }

    /// One request; `Err` only when the node cannot be reached.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Answer> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let stream = tokio::net::TcpStream::connect(&self.addr)
                .await
                .with_context(|| format!("cannot reach the admin API at {}", self.addr))?;
            let mut sender = match &self.tls {
                None => {
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                    tokio::spawn(conn);
                    sender
                }
                Some((config, name)) => {
                    let tls = tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name.clone(), stream)
                        .await
                        .with_context(|| {
                            format!("TLS with the admin API at {} failed", self.addr)
                        })?;
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                    tokio::spawn(conn);
                    sender
                }
            };
            let mut req = http::Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, &self.addr)
                .header(http::header::CONTENT_TYPE, content_type);
            if let Some(t) = &self.token {
                req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
            }
            if let Some(rev) = self.if_match {
                req = req.header(http::header::IF_MATCH, format!("\"{rev}\""));
            }
            let resp = sender
                .send_request(req.body(Full::new(Bytes::from(body)))?)
                .await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok(Answer { status, body })
        })
    }

    /// A request whose answer must be a success; its JSON.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Value> {
        let answer = self.request(method, path, content_type, body)?;
        let json = answer.json().unwrap_or(Value::Null);
        if !(200..300).contains(&answer.status) {
            let mut message = json["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).trim().to_string());
            if let Some(problems) = json["problems"].as_array() {
                for p in problems {
                    message.push_str(&format!("\n  - {}", p.as_str().unwrap_or_default()));
                }
            }
            bail!("{method} {path}: {} {message}", answer.status);
        }
        Ok(json)
    }
}

/// Human-readable rendering of the answers that have a natural table form.
pub fn render(what: &str, v: &Value) -> String {
    let mut out = String::new();
    match what {
        "status" => {
            let p = &v["active_policy"];
            out.push_str(&format!(
                "active policy   {}@{} (sha256 {})\n",
                p["name"].as_str().unwrap_or("?"),
                p["version"],
                short(&p["hash"])
            ));
            if let Some(prev) = v["previous_policy"].as_str() {
                out.push_str(&format!("previous        {prev}\n"));
            }
            if !v["canary"].is_null() {
                out.push_str(&format!(
                    "canary          {} at {}%\n",
                    v["canary"]["policy"].as_str().unwrap_or("?"),
                    v["canary"]["percent"]
                ));
            }
            if !v["shadow"].is_null() {
                out.push_str(&format!(
                    "shadow          {} on {}% of requests\n",
                    v["shadow"]["policy"].as_str().unwrap_or("?"),
                    v["shadow"]["sample_percent"]
                ));
            }
            out.push_str(&format!(
                "fallback        {}\n",
                v["fallback"].as_str().unwrap_or("?")
            ));
            if !v["last_automatic_rollback"].is_null() {
                let r = &v["last_automatic_rollback"];
                out.push_str(&format!(
                    "AUTO ROLLBACK   {} -> {} ({})\n",
                    r["from"].as_str().unwrap_or("?"),
                    r["to"].as_str().unwrap_or("?"),
                    r["reason"].as_str().unwrap_or("?")
                ));
            }
            out.push_str(&format!(
                "topology        version {} (sha256 {}): {}\n",
                v["topology"]["version"],
                short(&v["topology"]["hash"]),
                v["topology"]["summary"].as_str().unwrap_or("")
            ));
            let etcd = &v["etcd"];
            if !etcd.is_null() {
                out.push_str(&format!(
                    "etcd            {} ({}), prefix {}, applied revision {} (topology {}, routing {}), configuration from {}\n",
                    if etcd["connected"] == true {
                        "connected"
                    } else {
                        "UNREACHABLE"
                    },
                    etcd["member"]
                        .as_str()
                        .or(etcd["last_error"].as_str())
                        .unwrap_or("?"),
                    etcd["prefix"].as_str().unwrap_or("?"),
                    etcd["applied_revision"],
                    etcd["revisions"]["topology"],
                    etcd["revisions"]["routing"],
                    etcd["configuration_from"].as_str().unwrap_or("?"),
                ));
                for r in etcd["refused"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "REFUSED         {} at revision {}: {}\n",
                        r["key"].as_str().unwrap_or("?"),
                        r["revision"],
                        r["error"].as_str().unwrap_or("?")
                    ));
                }
            }
            out.push_str(&format!(
                "uptime          {:.0} s\n",
                v["uptime_seconds"].as_f64().unwrap_or(0.0)
            ));
        }
        "policies" => {
            out.push_str(&format!(
                "{:<8} {:<20} {:<9} {:>10} {:>7} {:>10}  {:<14} {}\n",
                "VERSION", "NAME", "ROLE", "CALLS", "TRAPS", "MEAN µs", "SHA256", "LOADED"
            ));
            for p in v["policies"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "{:<8} {:<20} {:<9} {:>10} {:>7} {:>10.2}  {:<14} {}\n",
                    p["version"],
                    p["name"].as_str().unwrap_or("?"),
                    p["role"].as_str().unwrap_or("?"),
                    p["calls"],
                    p["traps"],
                    p["mean_call_us"].as_f64().unwrap_or(0.0),
                    short(&p["hash"]),
                    p["loaded_at"].as_str().unwrap_or("")
                ));
            }
        }
        "servers" => {
            out.push_str(&format!(
                "{:<20} {:<5} {:<32} {:<9} {:<26} {}\n",
                "ID", "KIND", "ADDRESS", "STATE", "SINCE", "LAST ERROR / FIGURES"
            ));
            for s in v["servers"].as_array().into_iter().flatten() {
                let detail = match s["last_error"].as_str() {
                    Some(e) => e.to_string(),
                    None => s["figures"].to_string(),
                };
                out.push_str(&format!(
                    "{:<20} {:<5} {:<32} {:<9} {:<26} {}\n",
                    s["id"].as_str().unwrap_or("?"),
                    s["kind"].as_str().unwrap_or("?"),
                    format!("{}:{}", s["host"].as_str().unwrap_or("?"), s["port"]),
                    s["state"].as_str().unwrap_or("?"),
                    s["since"].as_str().unwrap_or("-"),
                    if s["checked"] == Value::Bool(true) {
                        detail
                    } else {
                        "not checked".into()
                    }
                ));
            }
        }
        "users" => {
            for u in v["users"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "{:<32} {:<9} {}\n",
                    u["email"].as_str().unwrap_or("?"),
                    u["role"].as_str().unwrap_or("?"),
                    u["name"].as_str().unwrap_or("")
                ));
            }
        }
        "tokens" => {
            for t in v["tokens"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "{:<32} {:<9} {}\n",
                    t["name"].as_str().unwrap_or("?"),
                    t["role"].as_str().unwrap_or("?"),
                    t["created"].as_str().unwrap_or("")
                ));
            }
        }
        "token" if v["secret"].is_string() => {
            out.push_str(&format!(
                "token {} ({}); its secret, shown this once:\n{}\n",
                v["token"]["name"].as_str().unwrap_or("?"),
                v["token"]["role"].as_str().unwrap_or("?"),
                v["secret"].as_str().unwrap_or("")
            ));
        }
        _ => out.push_str(&serde_json::to_string_pretty(v).unwrap_or_default()),
    }
    out
}

fn short(v: &Value) -> String {
    v.as_str()
        .map(|s| s.chars().take(12).collect())
        .unwrap_or_default()
}
