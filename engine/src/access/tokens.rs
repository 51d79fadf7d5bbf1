//! API tokens for scripts and other programs: a name, a role, and the
//! SHA-256 of a random secret that is shown once, when the token is made,
//! and never kept (`{state dir}/tokens.json`, mode 0600, holds only the
//! hashes). A request carries the secret as `Authorization: Bearer`; the
//! audit trail names the token.

use super::Role;
use super::book::Book;
use super::users::UserError;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::path::PathBuf;

/// What every secret starts with, so that one pasted somewhere it should
/// not be is easy to find.
pub const PREFIX: &str = "ew_";

/// One token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Its name: unique, what the audit trail says.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the secret, hex.
    pub sha256: String,
    /// When it was made, RFC 3339.
    pub created: String,
}

/// A token as shown (no hash).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shown {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// When it was made.
    pub created: String,
}

impl ApiToken {
    /// The token without its hash.
    pub fn shown(&self) -> Shown {
        Shown {
            name: self.name.clone(),
            role: self.role,
            created: self.created.clone(),
        }
    }
}

/// The tokens ([`Book`]: the state directory, and etcd in a fleet).
pub struct Tokens {
    book: Book<ApiToken>,
}

/// Checks a token read from a file or etcd.
pub fn check_read(t: &ApiToken) -> Result<(), String> {
    if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "token {:?}: field `sha256`: not a SHA-256 in hex",
            t.name
        ));
    }
    Ok(())
}

fn digest(secret: &[u8]) -> String {
    sha2::Sha256::digest(secret)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Tokens {
    /// Tokens in memory only (no state directory).
    pub fn in_memory() -> Self {
        Tokens {
            book: Book::in_memory("tokens"),
        }
    }

    /// Reads the tokens in `file` (none if it does not exist yet).
    pub fn open(file: PathBuf) -> Result<Self, String> {
        Ok(Tokens {
            book: Book::open("tokens", file, check_read)?,
        })
    }

    /// The list as kept (for etcd).
    pub fn book(&self) -> &Book<ApiToken> {
        &self.book
    }

    /// Every token, by name.
    pub fn list(&self) -> Vec<ApiToken> {
        let mut all = self.read().clone();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The token whose secret an `Authorization` header carries, if any
    /// (the hashes compared in constant time).
    pub fn find(&self, authorization: Option<&[u8]>) -> Option<ApiToken> {
        let secret = authorization?.strip_prefix(b"Bearer ")?.trim_ascii();
        if !secret.starts_with(PREFIX.as_bytes()) {
            return None;
        }
        let given = digest(secret);
        self.read()
            .iter()
            .find(|t| {
                t.sha256.len() == given.len()
                    && t.sha256
                        .bytes()
                        .zip(given.bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            })
            .cloned()
    }

    /// Makes a token: it, and its secret (shown once, kept nowhere).
    pub async fn add(&self, name: &str, role: Role) -> Result<(ApiToken, String), UserError> {
        let name = name.trim();
        let fine = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !fine {
            return Err(UserError::Invalid(format!(
                "field `name`: {name:?} is not a token name (1-64 letters, digits, '-', '_', '.')"
            )));
        }
        let secret = format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(super::random_bytes::<24>())
        );
        let token = ApiToken {
            name: name.to_string(),
            role,
            sha256: digest(secret.as_bytes()),
            created: crate::time::now_rfc3339(),
        };
        self.book
            .write(|list| {
                if list.iter().any(|t| t.name == token.name) {
                    return Err(UserError::Exists(format!("token {}", token.name)));
                }
                list.push(token.clone());
                Ok(())
            })
            .await?;
        Ok((token, secret))
    }

    /// Deletes a token: its secret is refused from now on.
    pub async fn delete(&self, name: &str) -> Result<ApiToken, UserError> {
        self.book
            .write(|list| {
                let at = list
                    .iter()
                    .position(|t| t.name == name)
                    .ok_or_else(|| UserError::NotFound(format!("token {name}")))?;
                Ok(list.remove(at))
            })
            .await
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<ApiToken>> {
        self.book.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn secrets_are_shown_once_and_kept_hashed() {
        let dir = std::env::temp_dir().join(format!("edgeward-tokens-{}", std::process::id()));
        let file = dir.join("tokens.json");
        let tokens = Tokens::open(file.clone()).unwrap();
        let (t, secret) = tokens.add("grafana", Role::Viewer).await.unwrap();
        assert!(secret.starts_with(PREFIX) && secret.len() > 30, "{secret}");
        let header = format!("Bearer {secret}");
        assert_eq!(tokens.find(Some(header.as_bytes())), Some(t.clone()));
        assert_eq!(tokens.find(Some(b"Bearer ew_wrong")), None);
        assert_eq!(tokens.find(Some(secret.as_bytes())), None);
        // The file holds the hash, never the secret; it reads back.
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains(&secret) && text.contains(&t.sha256));
        let again = Tokens::open(file.clone()).unwrap();
        assert_eq!(again.find(Some(header.as_bytes())), Some(t));
        assert!(matches!(
            again.add("grafana", Role::Admin).await,
            Err(UserError::Exists(_))
        ));
        assert!(matches!(
            again.add("no spaces", Role::Admin).await,
            Err(UserError::Invalid(_))
        ));
        again.delete("grafana").await.unwrap();
        assert_eq!(again.find(Some(header.as_bytes())), None);
        assert!(matches!(
            again.delete("grafana").await,
            Err(UserError::NotFound(_))
        ));
        std::fs::write(
            &file,
            r#"[{"name": "x", "role": "admin", "sha256": "zz", "created": ""}]"#,
        )
        .unwrap();
        let e = Tokens::open(file).err().unwrap();
        assert!(e.contains("token \"x\": field `sha256`"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
