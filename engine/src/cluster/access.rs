//! A fleet's operators' accounts, API tokens and session key, in etcd
//! (`{prefix}/access/users`, `…/tokens`, `…/session-key`): an account made
//! on one node signs in on every node, and a session or token one node
//! gave is accepted by all.
//!
//! Each node follows the keys with a watch of their own (they are outside
//! `config/`: the configuration's follower never sees them) and keeps a
//! copy in its state directory, which it starts with while etcd cannot be
//! reached. A change is written to etcd first, with a compare-and-swap on
//! the revision the node last saw: one made meanwhile on another node
//! refuses it, and nothing changes. A fleet whose etcd has no accounts yet
//! is seeded with the first node's (the state directory's, as a single
//! node kept them), and likewise its session key.

use super::Cluster;
use super::etcd::{Compare, Event, KeyValue, Op};
use crate::access::Access;
use crate::access::book::{Backend, Book, BoxFuture};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

/// One list's key in etcd, and the revision of it this node last saw.
struct EtcdList {
    cluster: Arc<Cluster>,
    key: String,
    seen: AtomicI64,
}

impl Backend for EtcdList {
    fn save(&self, json: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let seen = self.seen.load(Ordering::Acquire);
            let result = self
                .cluster
                .client
                .txn(
                    &[Compare::ModRevision(self.key.clone(), seen)],
                    &[Op::Put(self.key.clone(), json)],
                )
                .await
                .map_err(|e| format!("etcd cannot be written ({e}); nothing changed"))?;
            if !result.succeeded {
                return Err(format!(
                    "{} was changed on another node meanwhile; nothing changed here, try again",
                    self.key
                ));
            }
            self.seen.store(result.revision, Ordering::Release);
            Ok(())
        })
    }
}

/// The node's lists, tied to their keys.
struct Followed {
    access: Arc<Access>,
    users: Arc<EtcdList>,
    tokens: Arc<EtcdList>,
    session_key: String,
    loaded: AtomicBool,
}

impl Followed {
    /// Applies one key's value.
    fn apply(&self, kv: &KeyValue) {
        if kv.key == self.users.key {
            take(
                self.access.users.book(),
                &self.users,
                kv,
                crate::access::users::check_read,
            );
        } else if kv.key == self.tokens.key {
            take(
                self.access.tokens.book(),
                &self.tokens,
                kv,
                crate::access::tokens::check_read,
            );
        } else if kv.key == self.session_key {
            match <[u8; 32]>::try_from(kv.value.as_slice()) {
                Ok(key) => self.access.sessions.use_key(key),
                Err(_) => tracing::error!(
                    key = %kv.key,
                    "the fleet's session key is {} bytes, not 32: this node keeps signing with its own",
                    kv.value.len()
                ),
            }
        }
    }

    /// A deleted key: an empty list (etcd is the truth).
    fn deleted(&self, key: &str) {
        for (list, book_is_users) in [(&self.users, true), (&self.tokens, false)] {
            if key == list.key {
                list.seen.store(0, Ordering::Release);
                if book_is_users {
                    self.access.users.book().replace(Vec::new());
                } else {
                    self.access.tokens.book().replace(Vec::new());
                }
                tracing::warn!(key, "deleted in etcd: this node now has none");
            }
        }
    }
}

/// A list read from etcd replaces the node's; one that cannot be read is
/// logged, naming the key, and the node keeps what it has.
fn take<T: Clone + Serialize + DeserializeOwned>(
    book: &Book<T>,
    list: &EtcdList,
    kv: &KeyValue,
    check: impl Fn(&T) -> Result<(), String>,
) {
    list.seen.store(kv.mod_revision, Ordering::Release);
    match Book::<T>::parse(&kv.value, check) {
        Ok(items) => book.replace(items),
        Err(e) => {
            tracing::error!(key = %kv.key, "not a list this node can read ({e}): it keeps its own")
        }
    }
}

/// Ties the node's accounts, tokens and session key to the fleet's, and
/// follows them on a thread of its own. Waits up to `wait` for the first
/// read (else the node starts with its state directory's copy).
pub fn join(cluster: &Arc<Cluster>, access: &Arc<Access>, wait: Duration) -> std::io::Result<()> {
    let prefix = cluster.keys().access();
    let list = |name: &str| {
        Arc::new(EtcdList {
            cluster: cluster.clone(),
            key: format!("{prefix}{name}"),
            seen: AtomicI64::new(0),
        })
    };
    let followed = Arc::new(Followed {
        access: access.clone(),
        users: list("users"),
        tokens: list("tokens"),
        session_key: format!("{prefix}session-key"),
        loaded: AtomicBool::new(false),
    });
    access.users.book().set_backend(followed.users.clone());
    access.tokens.book().set_backend(followed.tokens.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (cluster, f) = (cluster.clone(), followed.clone());
    std::thread::Builder::new()
        .name("etcd-access".into())
        .spawn(move || runtime.block_on(follow(cluster, f, prefix)))?;
    let deadline = std::time::Instant::now() + wait;
    while !followed.loaded.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !followed.loaded.load(Ordering::Acquire) {
        tracing::warn!(
            "etcd did not answer in time: accounts, tokens and the session key are the state \
             directory's copy until it does (changes to them wait for etcd)"
        );
    }
    Ok(())
}

/// Reads the keys, seeds the absent ones, then watches; again after any
/// failure.
async fn follow(cluster: Arc<Cluster>, f: Arc<Followed>, prefix: String) {
    let mut backoff = super::follow::BACKOFF_MIN;
    loop {
        let (kvs, revision) = match cluster.client.range_prefix(&prefix).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("accounts not read from etcd: {e}");
                backoff = super::follow::wait(backoff).await;
                continue;
            }
        };
        for kv in &kvs {
            f.apply(kv);
        }
        // Keys the fleet has not got yet get this node's.
        let present = |key: &str| kvs.iter().any(|kv| kv.key == key);
        let mut seeded = Vec::new();
        if !present(&f.users.key) && f.access.users.any() {
            seeded.push((f.users.key.clone(), f.access.users.book().to_json()));
        }
        if !present(&f.tokens.key) && !f.access.tokens.list().is_empty() {
            seeded.push((f.tokens.key.clone(), f.access.tokens.book().to_json()));
        }
        if !present(&f.session_key) {
            let key = f.access.sessions.shared_key().to_vec();
            seeded.push((f.session_key.clone(), key));
        }
        let mut again = false;
        for (key, value) in seeded {
            match cluster
                .client
                .txn(
                    &[Compare::ModRevision(key.clone(), 0)],
                    &[Op::Put(key.clone(), value)],
                )
                .await
            {
                Ok(r) if r.succeeded => {
                    tracing::info!(key, "seeded the fleet with this node's copy");
                    again = true;
                }
                // Another node seeded it first: read everything again.
                Ok(_) => again = true,
                Err(e) => tracing::warn!(key, "cannot seed the fleet: {e}"),
            }
        }
        if again {
            continue;
        }
        f.loaded.store(true, Ordering::Release);
        let mut watch = match cluster.client.watch(&prefix, revision + 1).await {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!("accounts not watched: {e}");
                backoff = super::follow::wait(backoff).await;
                continue;
            }
        };
        backoff = super::follow::BACKOFF_MIN;
        loop {
            match watch.next().await {
                Ok(batch) => {
                    for event in batch.events {
                        match event {
                            Event::Put(kv) => f.apply(&kv),
                            Event::Delete { key, .. } => f.deleted(&key),
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!("the accounts' watch ended: {e}");
                    break;
                }
            }
        }
    }
}
