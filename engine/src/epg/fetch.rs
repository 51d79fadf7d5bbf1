//! Guides fetched on a schedule (`--epg-sources FILE`), as the old system
//! pulled them from FTP:
//!
//! ```toml
//! [[source]]
//! url = "ftp://epg.example.net/guides/"   # every .xml file of the folder
//! user = "epg"
//! password = "…"
//! every = "30s"
//! delete_after_import = true               # the old system's option
//!
//! [[source]]
//! url = "https://epg.example.net/xmltv.xml"
//! every = "1h"
//! ```
//!
//! An HTTP(S) source is fetched with `If-None-Match` (its last `ETag`)
//! and imported when its content differs from the last one seen. An FTP
//! source's `.xml` files are imported in name order; one imported is
//! deleted when `delete_after_import` is set, else remembered (by name and
//! size) and not imported again. A file refused as bad is reported, left
//! on the server and not tried again until it changes; a failure of the moment
//! (the server or etcd away) is tried again next time. Passwords live
//! only in this file (keep it `chmod 600`) and are never logged; URLs are
//! logged without user information.

use crate::control::{Control, Writer};
use crate::outbound;
use crate::topology::model::Millis;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest guide fetched.
const MAX_GUIDE: usize = 256 << 20;
/// Time limit of an HTTP fetch, or of an FTP connection and login.
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesDoc {
    #[serde(default)]
    source: Vec<SourceDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceDoc {
    url: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    every: Option<Millis>,
    #[serde(default)]
    delete_after_import: bool,
}

enum Kind {
    Http(http::Uri),
    Ftp {
        host: String,
        port: u16,
        dir: String,
        user: String,
        password: String,
        delete: bool,
    },
}

/// One source and what was last seen of it.
pub struct Source {
    /// The URL, as logged (no user information).
    pub url: String,
    kind: Kind,
    every: Duration,
    last: Option<Instant>,
    /// HTTP: the last `ETag` and the hash of the last content seen.
    etag: Option<String>,
    seen: Option<String>,
    /// FTP: files (name, size) imported or refused, not to import again.
    done: HashSet<(String, usize)>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("url", &self.url)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

/// Reads a sources file; a mistake names the source, field and value
/// (never a password).
pub fn load(path: &Path) -> Result<Vec<Source>, String> {
    let at = |e: String| format!("EPG sources file {}: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
            && text.contains("password")
        {
            tracing::warn!(
                file = %path.display(),
                "the EPG sources file holds passwords and may be read by others than its owner (chmod 600 it)"
            );
        }
    }
    parse(&text).map_err(at)
}

/// Reads a sources document.
pub fn parse(text: &str) -> Result<Vec<Source>, String> {
    let doc: SourcesDoc = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| format!("line {}: ", text[..s.start].matches('\n').count() + 1))
            .unwrap_or_default();
        format!("{line}{}", e.message())
    })?;
    doc.source
        .into_iter()
        .enumerate()
        .map(|(i, s)| source(s).map_err(|e| format!("source {}: {e}", i + 1)))
        .collect()
}

fn source(s: SourceDoc) -> Result<Source, String> {
    let uri: http::Uri = s
        .url
        .parse()
        .map_err(|e| format!("field `url`: {:?} is not a URL: {e}", s.url))?;
    let authority = uri
        .authority()
        .ok_or_else(|| format!("field `url`: {:?} has no host", s.url))?;
    if authority.as_str().contains('@') {
        return Err(
            "field `url`: put the user and password in the `user` and `password` fields, not in the URL"
                .into(),
        );
    }
    let every = s.every.map_or(Duration::from_secs(30), Millis::duration);
    if every < Duration::from_secs(1) {
        return Err(format!(
            "field `every`: {} ms is shorter than 1 s",
            every.as_millis()
        ));
    }
    let kind = match uri.scheme_str() {
        Some("http" | "https") => {
            if s.delete_after_import {
                return Err("field `delete_after_import`: only an FTP source can delete".into());
            }
            if s.user.is_some() || s.password.is_some() {
                return Err("fields `user` and `password` are for FTP sources".into());
            }
            Kind::Http(uri.clone())
        }
        Some("ftp") => Kind::Ftp {
            host: authority.host().to_string(),
            port: authority.port_u16().unwrap_or(21),
            dir: uri.path().to_string(),
            user: s.user.unwrap_or_else(|| "anonymous".into()),
            password: s.password.unwrap_or_default(),
            delete: s.delete_after_import,
        },
        other => {
            return Err(format!(
                "field `url`: the scheme {:?} is not http, https or ftp",
                other.unwrap_or("")
            ));
        }
    };
    Ok(Source {
        url: s.url,
        kind,
        every,
        last: None,
        etag: None,
        seen: None,
        done: HashSet::new(),
    })
}

impl Source {
    /// Whether it is time to fetch again.
    pub fn due(&self) -> bool {
        self.last.is_none_or(|t| t.elapsed() >= self.every)
    }

    /// Fetches and imports what is new.
    pub async fn fetch(
        &mut self,
        control: &Control,
        writer: &dyn Writer,
        tls: &Arc<rustls::ClientConfig>,
    ) {
        self.last = Some(Instant::now());
        let result = match &self.kind {
            Kind::Http(uri) => {
                let uri = uri.clone();
                self.fetch_http(uri, control, writer, tls).await
            }
            Kind::Ftp { .. } => self.fetch_ftp(control, writer).await,
        };
        if let Err(e) = result {
            tracing::warn!(
                source = self.url,
                "EPG fetch: {e}; tried again in {} s",
                self.every.as_secs()
            );
        }
    }

    async fn fetch_http(
        &mut self,
        uri: http::Uri,
        control: &Control,
        writer: &dyn Writer,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<(), String> {
        let mut headers = Vec::new();
        if let Some(tag) = self
            .etag
            .as_deref()
            .and_then(|t| http::HeaderValue::from_str(t).ok())
        {
            headers.push((http::header::IF_NONE_MATCH, tag));
        }
        let answer = outbound::send(
            outbound::Request {
                method: http::Method::GET,
                url: uri,
                headers,
                body: bytes::Bytes::new(),
            },
            tls,
            TIMEOUT,
            MAX_GUIDE,
        )
        .await
        .map_err(|e| e.to_string())?;
        if answer.status == http::StatusCode::NOT_MODIFIED {
            return Ok(());
        }
        if !answer.status.is_success() {
            return Err(format!("HTTP status {}", answer.status.as_u16()));
        }
        let etag = answer
            .headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let hash = crate::sha256_hex(&answer.body);
        if self.seen.as_deref() == Some(hash.as_str()) {
            self.etag = etag;
            return Ok(());
        }
        let who = format!("epg fetch {}", self.url);
        match super::import(control, writer, answer.body, &who).await {
            Ok(done) => {
                tracing::info!(
                    source = self.url,
                    channels = done.report.channels.len(),
                    changes = done.changes,
                    "EPG guide fetched and imported"
                );
                for (channel, why) in done.refused() {
                    tracing::error!(source = self.url, channel, "EPG channel refused: {why}");
                }
            }
            Err(e) if e.transient() => return Err(e.to_string()),
            Err(e) => tracing::error!(source = self.url, "EPG guide refused: {e}"),
        }
        // Only once its content was dealt with: a later 304 means "seen".
        self.seen = Some(hash);
        self.etag = etag;
        Ok(())
    }

    async fn fetch_ftp(&mut self, control: &Control, writer: &dyn Writer) -> Result<(), String> {
        use suppaftp::tokio::AsyncFtpStream;
        use tokio::io::AsyncReadExt;
        let Kind::Ftp {
            host,
            port,
            dir,
            user,
            password,
            delete,
        } = &self.kind
        else {
            unreachable!("an FTP source")
        };
        let ftp_err = |what: &str, e: suppaftp::FtpError| format!("FTP {what}: {e}");
        let mut ftp = tokio::time::timeout(TIMEOUT, async {
            let mut ftp = AsyncFtpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| ftp_err("connect", e))?;
            ftp.login(user.as_str(), password.as_str())
                .await
                .map_err(|e| ftp_err("login", e))?;
            if !dir.is_empty() && dir != "/" {
                ftp.cwd(dir.as_str()).await.map_err(|e| ftp_err("cwd", e))?;
            }
            ftp.transfer_type(suppaftp::types::FileType::Binary)
                .await
                .map_err(|e| ftp_err("binary mode", e))?;
            Ok::<_, String>(ftp)
        })
        .await
        .map_err(|_| format!("FTP: no login within {} s", TIMEOUT.as_secs()))??;
        let mut names: Vec<String> = ftp
            .nlst(None)
            .await
            .map_err(|e| ftp_err("list", e))?
            .into_iter()
            .map(|n| n.rsplit('/').next().unwrap_or(&n).to_string())
            .filter(|n| !n.starts_with('.') && n.to_ascii_lowercase().ends_with(".xml"))
            .collect();
        names.sort();
        for name in names {
            let size = ftp.size(&name).await.map_err(|e| ftp_err("size", e))?;
            if self.done.contains(&(name.clone(), size)) {
                continue;
            }
            if size > MAX_GUIDE {
                tracing::error!(
                    source = self.url,
                    file = name,
                    size,
                    "EPG file larger than {MAX_GUIDE} bytes: not fetched"
                );
                self.done.insert((name, size));
                continue;
            }
            let mut stream = ftp
                .retr_as_stream(&name)
                .await
                .map_err(|e| ftp_err("retrieve", e))?;
            let mut bytes = Vec::with_capacity(size);
            (&mut stream)
                .take(MAX_GUIDE as u64 + 1)
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| format!("FTP retrieve {name}: {e}"))?;
            stream.finish().await.map_err(|e| ftp_err("retrieve", e))?;
            let who = format!("epg fetch {}{name}", self.url);
            match super::import(control, writer, bytes, &who).await {
                Ok(done) => {
                    tracing::info!(
                        source = self.url,
                        file = name,
                        channels = done.report.channels.len(),
                        changes = done.changes,
                        "EPG file fetched and imported"
                    );
                    for (channel, why) in done.refused() {
                        tracing::error!(
                            source = self.url,
                            file = name,
                            channel,
                            "EPG channel refused: {why}"
                        );
                    }
                    if *delete {
                        match ftp.rm(&name).await {
                            Ok(()) => continue,
                            Err(e) => tracing::warn!(
                                source = self.url,
                                file = name,
                                "FTP delete after import: {e}"
                            ),
                        }
                    }
                }
                Err(e) if e.transient() => return Err(format!("{name}: {e}")),
                // Left on the server for the operator to see, and not
                // fetched again until it changes.
                Err(e) => tracing::error!(source = self.url, file = name, "EPG file refused: {e}"),
            }
            self.done.insert((name, size));
        }
        let _ = ftp.quit().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_read_and_their_mistakes_named() {
        let s = parse(
            "[[source]]\nurl = \"ftp://epg.test:2121/in/\"\nuser = \"u\"\npassword = \"hunter2\"\nevery = \"10s\"\ndelete_after_import = true\n\
             [[source]]\nurl = \"https://epg.test/tv.xml\"\n",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert!(
            matches!(&s[0].kind, Kind::Ftp { host, port: 2121, dir, delete: true, .. } if host == "epg.test" && dir == "/in/")
        );
        assert_eq!(s[0].every, Duration::from_secs(10));
        assert_eq!(s[1].every, Duration::from_secs(30));
        assert!(!format!("{:?}", s[0]).contains("hunter2"));
        for (doc, needle) in [
            (
                "[[source]]\nurl = \"gopher://x/\"\n",
                "source 1: field `url`: the scheme \"gopher\"",
            ),
            ("[[source]]\nurl = \"ftp://u:p@x/\"\n", "not in the URL"),
            (
                "[[source]]\nurl = \"https://x/\"\ndelete_after_import = true\n",
                "only an FTP source",
            ),
            (
                "[[source]]\nurl = \"https://x/\"\nevery = \"100ms\"\n",
                "shorter than 1 s",
            ),
            (
                "[[source]]\nurl = \"https://x/\"\nuser = \"u\"\n",
                "are for FTP sources",
            ),
            (
                "[[source]]\nurl = \"https://x/\"\nevry = \"1s\"\n",
                "line 3",
            ),
        ] {
            let e = parse(doc).err().unwrap_or_default();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }
}
