//! Signed-in sessions: stateless cookies signed with HMAC-SHA-256 under a
//! key kept with the configuration (`{state dir}/session.key`), so that a
//! restarted node accepts the sessions it gave. A cookie names the
//! account and its expiry, and is signed together with the account's
//! stamp (its password hash and when it last signed out): a new password
//! or a sign-out ends every session of the account. The CSRF
//! token of a session is derived from it under the same key. Repeated
//! failed sign-ins lock the account out for a while.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// The session cookie's name.
pub const COOKIE: &str = "edgeward_session";

/// The header a cookie-signed change must carry its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How long a session lasts.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Failed sign-ins of an account, within [`LOCKOUT`], that lock it out.
pub const MAX_FAILURES: u32 = 5;

/// How long failures are counted and an account stays locked.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);

type HmacSha256 = Hmac<sha2::Sha256>;

/// Session signing and the sign-in failure counts.
pub struct Sessions {
    /// The signing key: the state directory's, or the fleet's (etcd).
    key: std::sync::RwLock<[u8; 32]>,
    /// Where it is kept, if anywhere.
    file: Option<std::path::PathBuf>,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// A session a cookie proved.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The account's e-mail.
    pub email: String,
    /// When it ends (Unix seconds).
    pub expires: u64,
}

impl Sessions {
    /// Sessions signed with a key of its own (lost at exit).
    pub fn ephemeral() -> Self {
        Sessions {
            key: std::sync::RwLock::new(super::random_bytes()),
            file: None,
            failures: Mutex::default(),
        }
    }

    /// Sessions signed with the key in `file`, made (32 random bytes, mode
    /// 0600) if there is none yet.
    pub fn open(file: &Path) -> Result<Self, String> {
        let err = |e: std::io::Error| format!("session key {}: {e}", file.display());
        let key = match std::fs::read(file) {
            Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                format!(
                    "session key {}: {} bytes, not 32 (delete it to make a new one; sessions end)",
                    file.display(),
                    bytes.len()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let key: [u8; 32] = super::random_bytes();
                if let Some(dir) = file.parent() {
                    std::fs::create_dir_all(dir).map_err(err)?;
                }
                // Written beside it and linked into place: a crash never
                // leaves a key file cut short, and of two processes
                // starting at once the first one's key wins.
                let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(err)?;
                f.write_all(&key).and_then(|()| f.sync_all()).map_err(err)?;
                let linked = std::fs::hard_link(&tmp, file);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        crate::durable::sync_dir(file).map_err(err)?;
                        key
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Self::open(file);
                    }
                    Err(e) => return Err(err(e)),
                }
            }
            Err(e) => return Err(err(e)),
        };
        Ok(Sessions {
            key: std::sync::RwLock::new(key),
            file: Some(file.to_path_buf()),
            failures: Mutex::default(),
        })
    }

    fn mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.key()).expect("any key length");
        for p in parts {
            mac.update(&(p.len() as u32).to_be_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().to_vec()
    }

    /// The signing key.
    fn key(&self) -> [u8; 32] {
        *self.key.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The signing key, to share with a fleet (see
    /// `cluster::access`).
    pub fn shared_key(&self) -> [u8; 32] {
        self.key()
    }

    /// Signs with the fleet's key from now on (sessions signed with the
    /// old one end).
    pub fn use_key(&self, key: [u8; 32]) {
        let mut current = self.key.write().unwrap_or_else(|e| e.into_inner());
        if *current == key {
            return;
        }
        *current = key;
        // Kept on disk too, for a start while etcd cannot be reached.
        if let Some(file) = &self.file
            && let Err(e) = super::book::save_bytes(file, "session key", &key)
        {
            tracing::warn!("{e}");
        }
    }

    /// A cookie value for a session of `email` (whose password hash is
    /// `password_hash`) from now.
    pub fn issue(&self, email: &str, password_hash: &str) -> (String, Session) {
        let expires = crate::time::unix_millis(SystemTime::now()) / 1000 + LIFETIME.as_secs();
        let exp = expires.to_string();
        let sig = self.mac(&[
            b"session",
            email.as_bytes(),
            exp.as_bytes(),
            password_hash.as_bytes(),
        ]);
        let value = format!("{}.{exp}.{}", B64.encode(email), B64.encode(sig));
        let session = Session {
            email: email.to_string(),
            expires,
        };
        (value, session)
    }

    /// The session a cookie value proves, if it is signed, unexpired and
    /// made with the account's current stamp (`hash_of` gives it, called
    /// once).
    pub fn check(
        &self,
        value: &str,
        hash_of: impl FnOnce(&str) -> Option<String>,
    ) -> Option<Session> {
        let mut parts = value.split('.');
        let (email, exp, sig) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let email = String::from_utf8(B64.decode(email).ok()?).ok()?;
        let expires: u64 = exp.parse().ok()?;
        let hash = hash_of(&email)?;
        let mut mac = HmacSha256::new_from_slice(&self.key()).expect("any key length");
        for p in [
            b"session".as_slice(),
            email.as_bytes(),
            exp.as_bytes(),
            hash.as_bytes(),
        ] {
            mac.update(&(p.len() as u32).to_be_bytes());
            mac.update(p);
        }
        // Constant-time comparison of the signature.
        mac.verify_slice(&B64.decode(sig).ok()?).ok()?;
        let now = crate::time::unix_millis(SystemTime::now()) / 1000;
        (expires > now).then_some(Session { email, expires })
    }

    /// The CSRF token of a session.
    pub fn csrf(&self, session: &Session) -> String {
        B64.encode(self.mac(&[
            b"csrf",
            session.email.as_bytes(),
            session.expires.to_string().as_bytes(),
        ]))
    }

    /// Whether `token` is the session's CSRF token (in constant time).
    pub fn csrf_holds(&self, session: &Session, token: Option<&[u8]>) -> bool {
        let want = self.csrf(session);
        token.is_some_and(|t| {
            t.len() == want.len()
                && t.iter()
                    .zip(want.as_bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
    }

    /// How long `email` stays locked out, if it is.
    pub fn locked(&self, email: &str) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let &(count, last) = failures.get(email)?;
        let left = LOCKOUT.checked_sub(last.elapsed())?;
        (count >= MAX_FAILURES).then_some(left)
    }

    /// Counts a failed sign-in of `email`.
    pub fn failed(&self, email: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.retain(|_, (_, last)| last.elapsed() < LOCKOUT);
        let entry = failures
            .entry(email.to_string())
            .or_insert((0, Instant::now()));
        entry.0 += 1;
        entry.1 = Instant::now();
    }

    /// Forgets the failures of `email` (it signed in).
    pub fn succeeded(&self, email: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(email);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_signed_bound_to_the_password_and_expire() {
        let s = Sessions::ephemeral();
        let hash = |_: &str| Some("hash-1".to_string());
        let (cookie, session) = s.issue("a@x.io", "hash-1");
        assert_eq!(s.check(&cookie, hash), Some(session.clone()));
        // Another key, another password, a changed byte: refused.
        assert_eq!(Sessions::ephemeral().check(&cookie, hash), None);
        assert_eq!(s.check(&cookie, |_| Some("hash-2".into())), None);
        assert_eq!(s.check(&cookie, |_| None), None, "account deleted");
        let forged = cookie.replacen(&B64.encode("a@x.io"), &B64.encode("b@x.io"), 1);
        assert_eq!(s.check(&forged, hash), None);
        let (email, rest) = cookie.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        assert_eq!(s.check(&format!("{email}.99999999999.{sig}"), hash), None);
        assert_eq!(s.check("garbage", hash), None);
        // CSRF tokens are the session's.
        let csrf = s.csrf(&session);
        assert!(s.csrf_holds(&session, Some(csrf.as_bytes())));
        assert!(!s.csrf_holds(&session, Some(b"nope")));
        assert!(!s.csrf_holds(&session, None));
    }

    #[test]
    fn repeated_failures_lock_an_account_out() {
        let s = Sessions::ephemeral();
        for _ in 0..MAX_FAILURES - 1 {
            s.failed("a@x.io");
        }
        assert_eq!(s.locked("a@x.io"), None);
        s.failed("a@x.io");
        assert!(s.locked("a@x.io").is_some());
        assert_eq!(s.locked("b@x.io"), None);
        s.succeeded("a@x.io");
        assert_eq!(s.locked("a@x.io"), None);
    }

    #[test]
    fn the_key_is_kept_and_a_bad_one_refused() {
        let dir = std::env::temp_dir().join(format!("edgeward-session-{}", std::process::id()));
        let file = dir.join("session.key");
        let a = Sessions::open(&file).unwrap();
        let (cookie, _) = a.issue("a@x.io", "h");
        let b = Sessions::open(&file).unwrap();
        assert!(
            b.check(&cookie, |_| Some("h".into())).is_some(),
            "same key after a restart"
        );
        std::fs::write(&file, b"short").unwrap();
        let e = Sessions::open(&file).err().unwrap();
        assert!(e.contains("5 bytes, not 32"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
