//! Who may use the admin API: operators' accounts with roles, signed-in
//! sessions, and what each role may do. The admin API asks [`Access`]
//! before it answers; once an account exists every call must come with a
//! session (and, for a change, its CSRF token) or a bearer token.

pub mod book;
pub mod session;
pub mod throttle;
pub mod tokens;
pub mod users;

use serde::{Deserialize, Serialize};

/// Random bytes from the operating system.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// Passwords checked at once.
const HASHING_AT_ONCE: usize = 2;

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, accounts included.
    Admin,
    /// Topology, content, policies, drain (the old system's manager).
    Operator,
    /// Reads only.
    Viewer,
}

impl Role {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    /// Whether it may change the configuration (anything but accounts).
    pub fn may_change(self) -> bool {
        matches!(self, Role::Admin | Role::Operator)
    }
}

/// Accounts and sessions.
pub struct Access {
    /// The accounts.
    pub users: users::Users,
    /// API tokens with roles, for scripts.
    pub tokens: tokens::Tokens,
    /// Session signing and sign-in failures.
    pub sessions: session::Sessions,
    /// Turns at checking a password (see `admin::users::sign_in`).
    pub hashing: tokio::sync::Semaphore,
    /// The delay after failed authentications, per client address.
    pub throttle: throttle::Throttle,
}

impl Access {
    /// No accounts, sessions signed with a key of their own.
    pub fn in_memory() -> Self {
        Access {
            users: users::Users::in_memory(),
            tokens: tokens::Tokens::in_memory(),
            sessions: session::Sessions::ephemeral(),
            hashing: tokio::sync::Semaphore::new(HASHING_AT_ONCE),
            throttle: Default::default(),
        }
    }

    /// The accounts and session key of a state directory.
    pub fn open(dir: &std::path::Path) -> Result<Self, String> {
        Ok(Access {
            users: users::Users::open(dir.join("users.json"))?,
            tokens: tokens::Tokens::open(dir.join("tokens.json"))?,
            sessions: session::Sessions::open(&dir.join("session.key"))?,
            hashing: tokio::sync::Semaphore::new(HASHING_AT_ONCE),
            throttle: Default::default(),
        })
    }
}
