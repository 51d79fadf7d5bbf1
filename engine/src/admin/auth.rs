//! Bearer-token authentication of the admin API.

use sha2::Digest;

/// An admin token. Only a short fingerprint of it is ever logged.
#[derive(Clone)]
pub struct Token {
    secret: Vec<u8>,
    /// First 8 hex digits of the token's SHA-256: names the token in logs.
    pub id: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({})", self.id)
    }
}

impl Token {
    /// A token from its text (surrounding whitespace is ignored). `None`
    /// for an empty one.
    pub fn new(text: &str) -> Option<Token> {
        let secret = text.trim();
        if secret.is_empty() {
            return None;
        }
        let digest = sha2::Sha256::digest(secret.as_bytes());
        Some(Token {
            secret: secret.as_bytes().to_vec(),
            id: digest[..4].iter().map(|b| format!("{b:02x}")).collect(),
        })
    }

    /// Whether an `Authorization` header value carries this token
    /// (compared in constant time).
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(given) = authorization.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let given = given.trim_ascii();
        if given.len() != self.secret.len() {
            return false;
        }
        given
            .iter()
            .zip(&self.secret)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let t = Token::new(" s3cret\n").unwrap();
        assert!(t.accepts(Some(b"Bearer s3cret")));
        assert!(!t.accepts(Some(b"Bearer s3cre")));
        assert!(!t.accepts(Some(b"Bearer s3cretx")));
        assert!(!t.accepts(Some(b"Basic s3cret")));
        assert!(!t.accepts(None));
        assert!(Token::new("  ").is_none());
        assert_eq!(t.id.len(), 8);
    }
}
