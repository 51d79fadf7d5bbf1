//! DVR credentials (`--dvr-secrets FILE`), kept out of the topology so that
//! `GET /topology`, the audit, the decision log and every node's disk copy
//! of the configuration never hold them:
//!
//! ```toml
//! # by DVR server id
//! [servers.dvr-1]
//! user = "recorder"
//! password = "…"
//!
//! # for every DVR not named above
//! [default]
//! user = "recorder"
//! password = "…"
//! ```
//!
//! The file is read again when it changes; one that does not read is
//! refused, with the reason, and the credentials read before are kept. A
//! file others may read is reported at start.

use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A user name and password for HTTP basic authentication.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The credentials of every DVR.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// By DVR server id.
    #[serde(default)]
    servers: HashMap<String, Credentials>,
    /// For the others.
    #[serde(default)]
    default: Option<Credentials>,
}

impl Secrets {
    /// Reads a secrets document; a mistake names the table and field
    /// (never a value, which may be a password).
    pub fn parse(text: &str) -> Result<Self, String> {
        let secrets: Secrets = toml::from_str(text).map_err(|e| {
            let span = e
                .span()
                .map(|s| {
                    let line = text[..s.start].matches('\n').count() + 1;
                    format!("line {line}: ")
                })
                .unwrap_or_default();
            format!("{span}{}", e.message())
        })?;
        for (id, c) in secrets
            .servers
            .iter()
            .map(|(id, c)| (format!("servers.{id}"), c))
            .chain(secrets.default.iter().map(|c| ("default".to_string(), c)))
        {
            if c.user.is_empty() || c.user.contains(':') || c.user.chars().any(char::is_control) {
                return Err(format!(
                    "[{id}]: field `user`: {:?} must be non-empty, without `:` or control characters",
                    c.user
                ));
            }
            if c.password.chars().any(char::is_control) {
                return Err(format!(
                    "[{id}]: field `password` holds a control character"
                ));
            }
        }
        Ok(secrets)
    }

    /// The credentials for DVR server `id`.
    pub fn for_server(&self, id: &str) -> Option<&Credentials> {
        self.servers.get(id).or(self.default.as_ref())
    }
}

/// What identifies a version of the file cheaply: modified time and size.
type Stamp = (std::time::SystemTime, u64);

/// The secrets file, read again when it changes.
#[derive(Debug)]
pub struct SecretsFile {
    path: PathBuf,
    state: Mutex<(Option<Stamp>, Arc<Secrets>)>,
}

impl SecretsFile {
    /// Reads the file now; it must read.
    pub fn open(path: &Path) -> Result<Self, String> {
        let (stamp, secrets) = read(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    file = %path.display(),
                    "the DVR secrets file may be read by others than its owner (chmod 600 it)"
                );
            }
        }
        Ok(SecretsFile {
            path: path.to_path_buf(),
            state: Mutex::new((stamp, Arc::new(secrets))),
        })
    }

    /// The credentials, read again if the file changed since (a file that
    /// no longer reads keeps the last good ones, and says why).
    pub fn current(&self) -> Arc<Secrets> {
        let stamp = stamp(&self.path);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if stamp != state.0 {
            state.0 = stamp;
            match read(&self.path) {
                Ok((_, secrets)) => {
                    tracing::info!(file = %self.path.display(), "DVR secrets read again");
                    state.1 = Arc::new(secrets);
                }
                Err(e) => tracing::error!("{e}; the DVR credentials read before are kept"),
            }
        }
        state.1.clone()
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read(path: &Path) -> Result<(Option<Stamp>, Secrets), String> {
    let stamp = stamp(path);
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("DVR secrets file {}: {e}", path.display()))?;
    let secrets =
        Secrets::parse(&text).map_err(|e| format!("DVR secrets file {}: {e}", path.display()))?;
    Ok((stamp, secrets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_by_server_then_default() {
        let s = Secrets::parse(
            "[servers.d1]\nuser = \"a\"\npassword = \"pa\"\n[default]\nuser = \"b\"\npassword = \"pb\"\n",
        )
        .unwrap();
        assert_eq!(s.for_server("d1").unwrap().user, "a");
        assert_eq!(s.for_server("d2").unwrap().user, "b");
        assert_eq!(Secrets::parse("").unwrap().for_server("d1"), None);
    }

    #[test]
    fn mistakes_are_named_and_passwords_never_shown() {
        let e = Secrets::parse("[servers.d1]\nuser = \"a\"\npasword = \"hunter2\"\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("pasword"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = Secrets::parse("[default]\nuser = \"a:b\"\npassword = \"x\"\n").unwrap_err();
        assert!(e.contains("[default]: field `user`"), "{e}");
        let c = Credentials {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
