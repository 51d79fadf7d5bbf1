//! Signed policies: an ed25519 signature over the SHA-256 of the bytes an
//! author uploads (a component or a core module) and the name it is loaded
//! under, made with `edgeward policy sign` and checked wherever a policy
//! enters an engine that has trust keys (`--policy-trust-key`).
//!
//! The signature travels with the policy (a `.sig` file beside the `.wasm`,
//! a field of the upload, of the etcd record and of the fleet's disk copy),
//! so each node verifies for itself. The built-in policy is part of the
//! binary and needs none. Keys and signatures are small text files, one
//! line each, so they can be pasted, diffed and kept in a secret store.
//! ed25519 comes from `ring`, which the TLS listener already builds on.

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The first word of a secret key file.
const SECRET_TAG: &str = "edgeward-policy-secret-key-1";
/// The first word of a public (trust) key file.
const PUBLIC_TAG: &str = "edgeward-policy-public-key-1";
/// What a signature signs, before the name and the hash (so that a
/// signature made for anything else never verifies here).
const CONTEXT: &[u8] = b"edgeward-policy-signature-1\0";
/// The `format` of a signature.
const FORMAT: u32 = 1;
/// The longest key name (it names files and shows in listings).
const MAX_KEY_NAME: usize = 64;

/// A signature, as written to `FILE.wasm.sig` and stored with the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySignature {
    /// Always 1.
    pub format: u32,
    /// The name the policy is signed for.
    pub policy: String,
    /// SHA-256 of the signed bytes (hex).
    pub sha256: String,
    /// The signer's key name, as its key file says (not itself signed:
    /// listings show the trust key's own name).
    pub signer: String,
    /// The signer's public key (base64, 32 bytes).
    pub public_key: String,
    /// The signature (base64, 64 bytes).
    pub ed25519: String,
}

/// Who signed a loaded policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signed {
    /// The key's id: the first 8 bytes of the SHA-256 of its public key.
    pub key_id: String,
    /// The key's name: the trust key's when it is trusted, else what the
    /// signature claims.
    pub signer: String,
    /// Whether the key is one of the engine's trust keys.
    pub trusted: bool,
}

/// A secret key, read from the file `policy keygen` wrote.
pub struct SigningKey {
    name: String,
    pair: Ed25519KeyPair,
}

/// A public key the engine trusts.
#[derive(Debug, Clone)]
pub struct TrustKey {
    /// Its name.
    pub name: String,
    /// Its id (see [`Signed::key_id`]).
    pub id: String,
    public: [u8; 32],
}

/// The keys whose signatures are accepted; with none, signatures are not
/// required (but one that is present must still be right).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    keys: Vec<TrustKey>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A key's id.
fn key_id(public: &[u8]) -> String {
    crate::sha256_hex(public)[..16].to_string()
}

/// Whether `name` may name a key (and its files).
pub fn check_key_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_KEY_NAME
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "key name {name:?} must be 1 to {MAX_KEY_NAME} letters, digits, '-', '_', '.' or '@', \
             not starting with '.'"
        )),
    }
}

/// The message a signature covers: the context, the policy's name, a
/// zero byte and the 32 bytes of the SHA-256.
fn message(policy: &str, sha256: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + policy.len() + 33);
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(policy.as_bytes());
    m.push(0);
    m.extend_from_slice(sha256);
    m
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits a one-line key file into its tag, base64 key and name.
fn key_line<'a>(text: &'a str, tag: &str, path: &str) -> Result<(&'a str, &'a str), String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| format!("{path}: empty key file"))?;
    let mut words = line.split_whitespace();
    let found = words.next().unwrap_or_default();
    if found != tag {
        let what = match found {
            SECRET_TAG => "a secret key",
            PUBLIC_TAG => "a public key",
            _ => "not an edgeward policy key",
        };
        return Err(format!(
            "{path}: expected a line starting with {tag}, this is {what}"
        ));
    }
    let (Some(key), Some(name), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!("{path}: expected `{tag} BASE64 NAME`"));
    };
    check_key_name(name).map_err(|e| format!("{path}: {e}"))?;
    Ok((key, name))
}

fn key32(key: &str, what: &str, path: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    b64()
        .decode(key)
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| format!("{path}: the {what} is not 32 bytes of base64"))
}

/// A new key pair: the secret key file's text and the public key file's.
pub fn generate(name: &str) -> Result<(String, String), String> {
    use base64::Engine as _;
    use ring::rand::SecureRandom;
    check_key_name(name)?;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| "the system's random source failed".to_string())?;
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| e.to_string())?;
    let public = pair.public_key().as_ref();
    let secret = format!(
        "# edgeward policy signing key {name} (id {}): keep it secret\n{SECRET_TAG} {} {name}\n",
        key_id(public),
        b64().encode(seed)
    );
    Ok((secret, public_line(name, public)))
}

fn public_line(name: &str, public: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "# edgeward policy trust key {name} (id {})\n{PUBLIC_TAG} {} {name}\n",
        key_id(public),
        b64().encode(public)
    )
}

impl SigningKey {
    /// Reads a secret key file.
    pub fn read(path: &Path) -> Result<Self, String> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        let (key, name) = key_line(&text, SECRET_TAG, &shown)?;
        let seed = key32(key, "secret key", &shown)?;
        let pair =
            Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| format!("{shown}: {e}"))?;
        Ok(SigningKey {
            name: name.to_string(),
            pair,
        })
    }

    /// Its id.
    pub fn id(&self) -> String {
        key_id(self.pair.public_key().as_ref())
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Signs `bytes` as the policy `policy`.
    pub fn sign(&self, policy: &str, bytes: &[u8]) -> PolicySignature {
        use base64::Engine as _;
        let hash = sha256(bytes);
        let signature = self.pair.sign(&message(policy, &hash));
        PolicySignature {
            format: FORMAT,
            policy: policy.to_string(),
            sha256: hex(&hash),
            signer: self.name.clone(),
            public_key: b64().encode(self.pair.public_key().as_ref()),
            ed25519: b64().encode(signature.as_ref()),
        }
    }
}

impl TrustKey {
    /// Reads a public key file.
    pub fn read(path: &Path) -> Result<Self, String> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        Self::parse(&text, &shown)
    }

    fn parse(text: &str, shown: &str) -> Result<Self, String> {
        let (key, name) = key_line(text, PUBLIC_TAG, shown)?;
        let public = key32(key, "public key", shown)?;
        Ok(TrustKey {
            name: name.to_string(),
            id: key_id(&public),
            public,
        })
    }
}

impl Trust {
    /// Reads the trust key files (none: signatures are not required).
    pub fn read(paths: &[std::path::PathBuf]) -> Result<Self, String> {
        let mut keys: Vec<TrustKey> = Vec::new();
        for path in paths {
            let key = TrustKey::read(path)?;
            if keys.iter().any(|k| k.public == key.public) {
                return Err(format!(
                    "{}: key {} ({}) is given twice",
                    path.display(),
                    key.id,
                    key.name
                ));
            }
            keys.push(key);
        }
        Ok(Trust { keys })
    }

    /// Whether signatures are required.
    pub fn required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The trust keys.
    pub fn keys(&self) -> &[TrustKey] {
        &self.keys
    }

    /// Checks what a policy entering the engine carries: `Ok(None)` for an
    /// unsigned one where no signature is required, `Ok(Some)` for a
    /// signature that is right (and trusted, where trust keys are set).
    /// A signature that is present is always checked, trust keys or not.
    pub fn admit(
        &self,
        signature: Option<&PolicySignature>,
        policy: &str,
        bytes: &[u8],
    ) -> Result<Option<Signed>, String> {
        let Some(s) = signature else {
            return match self.required() {
                false => Ok(None),
                true => Err(format!(
                    "it is not signed, and this engine accepts only policies signed by one of its \
                     trust keys ({}); sign it with `edgeward policy sign FILE.wasm --key KEY --name \
                     {policy}`",
                    self.names()
                )),
            };
        };
        let public = verify(s, policy, bytes)?;
        let id = key_id(&public);
        match self.keys.iter().find(|k| k.public == public) {
            Some(k) => Ok(Some(Signed {
                key_id: id,
                signer: k.name.clone(),
                trusted: true,
            })),
            None if self.required() => Err(format!(
                "it is signed by key {id} ({:?}), which is not one of this engine's trust keys ({})",
                s.signer,
                self.names()
            )),
            None => Ok(Some(Signed {
                key_id: id,
                signer: s.signer.clone(),
                trusted: false,
            })),
        }
    }

    fn names(&self) -> String {
        self.keys
            .iter()
            .map(|k| format!("{} {}", k.id, k.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Checks that `s` signs `bytes` as `policy`; returns the public key.
fn verify(s: &PolicySignature, policy: &str, bytes: &[u8]) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    if s.format != FORMAT {
        return Err(format!(
            "signature format {} is not one this engine reads ({FORMAT})",
            s.format
        ));
    }
    if s.policy != policy {
        return Err(format!(
            "its signature is for the policy {:?}, not {policy:?} (the name is signed too)",
            s.policy
        ));
    }
    let hash = sha256(bytes);
    if !s.sha256.eq_ignore_ascii_case(&hex(&hash)) {
        return Err(format!(
            "its signature is for other bytes (sha256 {}, these are {})",
            short(&s.sha256),
            &hex(&hash)[..16]
        ));
    }
    let public = b64()
        .decode(&s.public_key)
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| {
            format!(
                "signature field public_key {:?} is not 32 bytes of base64",
                short(&s.public_key)
            )
        })?;
    let signature = b64()
        .decode(&s.ed25519)
        .ok()
        .filter(|k| k.len() == 64)
        .ok_or_else(|| {
            format!(
                "signature field ed25519 {:?} is not 64 bytes of base64",
                short(&s.ed25519)
            )
        })?;
    UnparsedPublicKey::new(&ED25519, &public)
        .verify(&message(policy, &hash), &signature)
        .map_err(|_| {
            format!(
                "its signature does not verify with key {} ({:?})",
                key_id(&public),
                s.signer
            )
        })?;
    Ok(public)
}

/// At most 24 characters of something a user gave, for a message.
fn short(s: &str) -> String {
    s.chars().take(24).collect()
}

/// Parses a signature (the `.sig` file's text or an upload's field).
pub fn parse(text: &[u8]) -> Result<PolicySignature, String> {
    if text.len() > 4096 {
        return Err(format!("a signature of {} bytes is too long", text.len()));
    }
    serde_json::from_slice(text).map_err(|e| format!("not a policy signature: {e}"))
}

/// The signature file that goes with a policy file: `FILE.wasm.sig`.
pub fn sig_path(file: &Path) -> std::path::PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sig");
    name.into()
}

/// Reads `FILE.wasm.sig` if there is one.
pub fn read_beside(file: &Path) -> Result<Option<PolicySignature>, String> {
    let path = sig_path(file);
    match std::fs::read(&path) {
        Ok(text) => parse(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// A signature as one line of JSON (the `.sig` file).
pub fn to_line(s: &PolicySignature) -> String {
    let mut line = serde_json::to_string(s).expect("a signature serialises");
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (SigningKey, Trust) {
        let (secret, public) = generate(name).unwrap();
        let dir = std::env::temp_dir().join(format!("edgeward-sign-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (s, p) = (dir.join("k.key"), dir.join("k.pub"));
        std::fs::write(&s, secret).unwrap();
        std::fs::write(&p, public).unwrap();
        let key = SigningKey::read(&s).unwrap();
        let trust = Trust::read(&[p]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        (key, trust)
    }

    #[test]
    fn a_signature_verifies_for_its_bytes_and_name_only() {
        let (key, trust) = pair("ops");
        let s = key.sign("nearest", b"bytes");
        let signed = trust.admit(Some(&s), "nearest", b"bytes").unwrap().unwrap();
        assert_eq!(signed.signer, "ops");
        assert!(signed.trusted);
        assert_eq!(signed.key_id, key.id());
        let other_bytes = trust.admit(Some(&s), "nearest", b"bytez").unwrap_err();
        assert!(other_bytes.contains("other bytes"), "{other_bytes}");
        let other_name = trust.admit(Some(&s), "geo", b"bytes").unwrap_err();
        assert!(
            other_name.contains("\"nearest\", not \"geo\""),
            "{other_name}"
        );
        let mut forged = s.clone();
        forged.ed25519 = key.sign("nearest", b"other").ed25519;
        let e = trust.admit(Some(&forged), "nearest", b"bytes").unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
    }

    #[test]
    fn trust_keys_require_a_signature_from_one_of_them() {
        let (key, trust) = pair("ops");
        let (stranger, _) = pair("stranger");
        let e = trust.admit(None, "p", b"x").unwrap_err();
        assert!(e.contains("not signed") && e.contains("ops"), "{e}");
        let e = trust
            .admit(Some(&stranger.sign("p", b"x")), "p", b"x")
            .unwrap_err();
        assert!(e.contains("not one of this engine's trust keys"), "{e}");
        assert!(trust.admit(Some(&key.sign("p", b"x")), "p", b"x").is_ok());
        // No trust keys: unsigned passes, a signature is still checked.
        let none = Trust::default();
        assert_eq!(none.admit(None, "p", b"x").unwrap(), None);
        let s = none
            .admit(Some(&stranger.sign("p", b"x")), "p", b"x")
            .unwrap()
            .unwrap();
        assert!(!s.trusted);
        assert!(
            none.admit(Some(&stranger.sign("p", b"x")), "p", b"y")
                .is_err()
        );
    }

    #[test]
    fn malformed_keys_and_signatures_are_named() {
        let e = TrustKey::parse("edgeward-policy-secret-key-1 AAAA ops\n", "k.pub").unwrap_err();
        assert!(e.contains("this is a secret key"), "{e}");
        let e = TrustKey::parse("edgeward-policy-public-key-1 AAAA ops\n", "k.pub").unwrap_err();
        assert!(e.contains("not 32 bytes"), "{e}");
        let e = TrustKey::parse("edgeward-policy-public-key-1 AAAA ../x\n", "k.pub").unwrap_err();
        assert!(e.contains("key name"), "{e}");
        assert!(
            parse(b"{\"format\":1}")
                .unwrap_err()
                .contains("missing field")
        );
        assert!(parse(&[b' '; 5000]).unwrap_err().contains("too long"));
        let (key, trust) = pair("ops2");
        let mut s = key.sign("p", b"x");
        s.public_key = "%%".into();
        assert!(
            trust
                .admit(Some(&s), "p", b"x")
                .unwrap_err()
                .contains("public_key")
        );
        let s = PolicySignature {
            format: 2,
            ..key.sign("p", b"x")
        };
        assert!(
            trust
                .admit(Some(&s), "p", b"x")
                .unwrap_err()
                .contains("format 2")
        );
    }

    #[test]
    fn a_signature_round_trips_through_its_file_line() {
        let (key, _) = pair("ops3");
        let s = key.sign("p", b"x");
        let line = to_line(&s);
        assert_eq!(line.lines().count(), 1);
        assert_eq!(parse(line.as_bytes()).unwrap(), s);
    }
}
