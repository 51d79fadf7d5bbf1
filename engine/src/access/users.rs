//! Operators' accounts: e-mail, name, role and an Argon2id hash of the
//! password, kept in one file (`{state dir}/users.json`, mode 0600, written
//! whole and renamed into place). The old system's rules about who may see
//! and change whom are [`may_change`]'s.

use super::Role;
use super::book::Book;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 12;

/// One account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// E-mail, lower-cased: the account's id.
    pub email: String,
    /// Display name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Argon2id hash of the password (PHC string).
    pub password_hash: String,
    /// When it was created, RFC 3339.
    pub created: String,
    /// When it last signed out (Unix milliseconds): its sessions from
    /// before are over.
    #[serde(default)]
    pub signed_out: u64,
}

impl User {
    /// What its sessions are signed with besides the key: a new password
    /// or a sign-out ends every session made before.
    pub fn session_stamp(&self) -> String {
        format!("{}:{}", self.password_hash, self.signed_out)
    }
}

/// An account as shown (no hash).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shown {
    /// E-mail.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// When it was created.
    pub created: String,
}

impl User {
    /// The account without its hash.
    pub fn shown(&self) -> Shown {
        Shown {
            email: self.email.clone(),
            name: self.name.clone(),
            role: self.role,
            created: self.created.clone(),
        }
    }
}

/// A change to an account (the fields given).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// New name.
    pub name: Option<String>,
    /// New role.
    pub role: Option<Role>,
    /// New password.
    pub password: Option<String>,
}

/// A new account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// E-mail.
    pub email: String,
    /// Display name (the e-mail's local part if none).
    #[serde(default)]
    pub name: Option<String>,
    /// Role.
    pub role: Role,
    /// Password.
    pub password: String,
}

/// Why a change to the accounts was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UserError {
    /// Bad input: names the field and value (never a password).
    #[error("{0}")]
    Invalid(String),
    /// The rules forbid it.
    #[error("{0}")]
    Forbidden(String),
    /// No such account.
    #[error("no user {0:?}")]
    NotFound(String),
    /// The e-mail is taken.
    #[error("user {0:?} exists already")]
    Exists(String),
    /// The file could not be written.
    #[error("{0}")]
    Unavailable(String),
}

/// Whether `actor` may make `change` to `target`'s account, by the old
/// system's rules: an admin may change anyone's name, password and role
/// but not their own role; anyone else may change only their own name and
/// password.
pub fn may_change(actor: &User, target: &str, change: &UserChange) -> Result<(), UserError> {
    let own = actor.email == target;
    if change.role.is_some() && own {
        return Err(UserError::Forbidden(
            "field `role`: nobody changes their own role".into(),
        ));
    }
    if actor.role != Role::Admin && !own {
        return Err(UserError::Forbidden(format!(
            "a {} may change only their own account, not {target:?}",
            actor.role.name()
        )));
    }
    Ok(())
}

/// The accounts ([`Book`]: the state directory, and etcd in a fleet).
pub struct Users {
    book: Book<User>,
}

/// Checks an account read from a file or etcd.
pub fn check_read(u: &User) -> Result<(), String> {
    PasswordHash::new(&u.password_hash).map_err(|e| {
        format!(
            "user {:?}: field `password_hash`: not a PHC hash ({e})",
            u.email
        )
    })?;
    Ok(())
}

impl Users {
    /// Accounts in memory only (no state directory).
    pub fn in_memory() -> Self {
        Users {
            book: Book::in_memory("users"),
        }
    }

    /// Reads the accounts in `file` (none if it does not exist yet).
    pub fn open(file: PathBuf) -> Result<Self, String> {
        Ok(Users {
            book: Book::open("users", file, check_read)?,
        })
    }

    /// The list as kept (for etcd).
    pub fn book(&self) -> &Book<User> {
        &self.book
    }

    /// Whether any account exists (then every admin call must sign in).
    pub fn any(&self) -> bool {
        !self.read().is_empty()
    }

    /// The account with this e-mail.
    pub fn get(&self, email: &str) -> Option<User> {
        let email = email.trim().to_lowercase();
        self.read().iter().find(|u| u.email == email).cloned()
    }

    /// Every account, by e-mail.
    pub fn list(&self) -> Vec<User> {
        let mut all = self.read().clone();
        all.sort_by(|a, b| a.email.cmp(&b.email));
        all
    }

    /// The account if the password is its own. Always hashes once, so
    /// that an unknown e-mail takes as long as a wrong password.
    pub fn verify(&self, email: &str, password: &str) -> Option<User> {
        let user = self.get(email);
        let hash = user
            .as_ref()
            .map_or(dummy_hash(), |u| u.password_hash.as_str());
        let ok = PasswordHash::new(hash).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        });
        user.filter(|_| ok)
    }

    /// Creates an account.
    pub async fn add(&self, new: NewUser) -> Result<User, UserError> {
        let email = check_email(&new.email)?;
        check_password(&new.password)?;
        let name = match new.name {
            Some(n) => check_name(&n)?,
            None => email.split('@').next().unwrap_or_default().to_string(),
        };
        let user = User {
            email: email.clone(),
            name,
            role: new.role,
            password_hash: hash(&new.password)?,
            created: crate::time::now_rfc3339(),
            signed_out: 0,
        };
        self.book
            .write(|list| {
                if list.iter().any(|u| u.email == email) {
                    return Err(UserError::Exists(email.clone()));
                }
                list.push(user.clone());
                Ok(())
            })
            .await?;
        Ok(user)
    }

    /// Changes an account (the rules are the caller's: [`may_change`]).
    pub async fn change(&self, email: &str, change: UserChange) -> Result<User, UserError> {
        let email = email.trim().to_lowercase();
        let name = change.name.as_deref().map(check_name).transpose()?;
        let password_hash = match &change.password {
            Some(p) => {
                check_password(p)?;
                Some(hash(p)?)
            }
            None => None,
        };
        self.book
            .write(|list| {
                let u = list
                    .iter_mut()
                    .find(|u| u.email == email)
                    .ok_or_else(|| UserError::NotFound(email.clone()))?;
                if let Some(name) = name {
                    u.name = name;
                }
                if let Some(role) = change.role {
                    u.role = role;
                }
                if let Some(h) = password_hash {
                    u.password_hash = h;
                }
                Ok(u.clone())
            })
            .await
    }

    /// Ends every session of an account (it signed out).
    pub async fn sign_out(&self, email: &str) -> Result<(), UserError> {
        let now = crate::time::unix_millis(std::time::SystemTime::now());
        self.book
            .write(|list| {
                if let Some(u) = list.iter_mut().find(|u| u.email == email) {
                    u.signed_out = now.max(u.signed_out + 1);
                }
                Ok(())
            })
            .await
    }

    /// Deletes an account; `actor` may not delete themselves.
    pub async fn delete(&self, actor: &str, email: &str) -> Result<User, UserError> {
        let email = email.trim().to_lowercase();
        if actor == email {
            return Err(UserError::Forbidden(
                "an admin cannot delete their own account".into(),
            ));
        }
        self.book
            .write(|list| {
                let at = list
                    .iter()
                    .position(|u| u.email == email)
                    .ok_or_else(|| UserError::NotFound(email.clone()))?;
                Ok(list.remove(at))
            })
            .await
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<User>> {
        self.book.read()
    }
}

/// A hash of a random password, verified for unknown e-mails.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let random: [u8; 16] = super::random_bytes();
        hash(&format!("{random:?}")).unwrap_or_default()
    })
}

fn hash(password: &str) -> Result<String, UserError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Unavailable(format!("cannot hash the password: {e}")))
}

fn check_email(email: &str) -> Result<String, UserError> {
    let email = email.trim().to_lowercase();
    let (local, domain) = email.split_once('@').unwrap_or(("", ""));
    let fine = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && email
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@.-_+".contains(c));
    if !fine {
        return Err(UserError::Invalid(format!(
            "field `email`: {email:?} is not an e-mail address (like ops@example.com)"
        )));
    }
    Ok(email)
}

fn check_name(name: &str) -> Result<String, UserError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(UserError::Invalid(format!(
            "field `name`: {name:?} must be 1 to 100 printable characters"
        )));
    }
    Ok(name.to_string())
}

fn check_password(password: &str) -> Result<(), UserError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(UserError::Invalid(format!(
            "field `password`: must be at least {MIN_PASSWORD} characters (it has {})",
            password.chars().count()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(email: &str, role: Role) -> NewUser {
        NewUser {
            email: email.into(),
            name: None,
            role,
            password: "correct horse battery".into(),
        }
    }

    #[tokio::test]
    async fn accounts_are_kept_hashed_and_checked() {
        let dir = std::env::temp_dir().join(format!("edgeward-users-{}", std::process::id()));
        let file = dir.join("users.json");
        let users = Users::open(file.clone()).unwrap();
        assert!(!users.any());
        let admin = users
            .add(new("Admin@Example.com", Role::Admin))
            .await
            .unwrap();
        assert_eq!(admin.email, "admin@example.com");
        assert!(admin.password_hash.starts_with("$argon2id$"));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("correct horse"), "no password on disk");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Read back: the same accounts.
        let again = Users::open(file.clone()).unwrap();
        assert_eq!(again.list(), vec![admin.clone()]);
        assert!(
            again
                .verify("admin@example.com", "correct horse battery")
                .is_some()
        );
        assert!(
            again
                .verify("admin@example.com", "wrong horse battery")
                .is_none()
        );
        assert!(
            again
                .verify("nobody@example.com", "correct horse battery")
                .is_none()
        );
        // Refusals name the field; a refused change changes nothing.
        let short = NewUser {
            password: "short".into(),
            ..new("op@example.com", Role::Operator)
        };
        assert!(
            matches!(again.add(short).await, Err(UserError::Invalid(m)) if m.contains("`password`") && !m.contains("short"))
        );
        assert!(
            matches!(again.add(new("not-an-email", Role::Viewer)).await, Err(UserError::Invalid(m)) if m.contains("`email`"))
        );
        assert_eq!(
            again.add(new("ADMIN@example.com", Role::Viewer)).await,
            Err(UserError::Exists("admin@example.com".into()))
        );
        assert_eq!(again.list().len(), 1);
        assert!(matches!(
            again.delete("admin@example.com", "admin@example.com").await,
            Err(UserError::Forbidden(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_old_rules_on_who_changes_whom() {
        let user = |email: &str, role| User {
            email: email.into(),
            name: "x".into(),
            role,
            password_hash: String::new(),
            created: String::new(),
            signed_out: 0,
        };
        let admin = user("a@x.io", Role::Admin);
        let op = user("o@x.io", Role::Operator);
        let role = UserChange {
            role: Some(Role::Viewer),
            ..Default::default()
        };
        let name = UserChange {
            name: Some("New".into()),
            ..Default::default()
        };
        assert!(may_change(&admin, "o@x.io", &role).is_ok());
        assert!(may_change(&admin, "a@x.io", &role).is_err(), "own role");
        assert!(may_change(&admin, "a@x.io", &name).is_ok());
        assert!(may_change(&op, "o@x.io", &name).is_ok());
        assert!(may_change(&op, "o@x.io", &role).is_err());
        assert!(
            may_change(&op, "a@x.io", &name).is_err(),
            "another's account"
        );
    }
}
