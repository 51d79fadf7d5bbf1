//! One node of a fleet runs the singletons (the programme-guide importer,
//! the retention, the DVR worker): the one holding the leader key, a key
//! bound to an etcd lease that the node keeps alive. A node that dies
//! stops renewing it; etcd deletes the key when the lease expires (its
//! TTL after the last renewal), and the next node to ask takes it. A node
//! that cannot reach etcd for a TTL stops leading on its own, before its
//! lease can have expired and another node taken over; a node that stops
//! cleanly revokes its lease, so another takes over at once. On a single
//! node, the node itself leads ([`Leadership::solo`]).

use super::Cluster;
use super::etcd::{Compare, Op};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Whether this node leads, as last learnt.
pub struct Leadership {
    leading: AtomicBool,
}

impl Leadership {
    /// A node with no fleet: it leads.
    pub fn solo() -> Arc<Self> {
        Arc::new(Leadership {
            leading: AtomicBool::new(true),
        })
    }

    /// Whether this node leads now.
    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Campaigns for the fleet's leader key of `role` (under the key
    /// prefix: `{prefix}/leader/{role}`) as this node, with leases of
    /// `ttl`, on the current tokio runtime until `stop` is set (then the
    /// lease is revoked).
    pub fn campaign(
        cluster: Arc<Cluster>,
        role: &str,
        ttl: Duration,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Arc<Self> {
        let me = Arc::new(Leadership {
            leading: AtomicBool::new(false),
        });
        let key = format!(
            "{}/leader/{role}",
            cluster.keys.prefix().trim_end_matches('/')
        );
        tokio::spawn(campaign(me.clone(), cluster, key, ttl, stop));
        me
    }

    fn set(&self, leading: bool, key: &str) {
        if self.leading.swap(leading, Ordering::AcqRel) != leading {
            if leading {
                tracing::info!(
                    key,
                    "this node now leads: it runs the guide importer, retention and DVR worker"
                );
            } else {
                tracing::warn!(key, "this node no longer leads");
            }
        }
    }
}

async fn campaign(
    me: Arc<Leadership>,
    cluster: Arc<Cluster>,
    key: String,
    ttl: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let client = &cluster.client;
    let node = &cluster.node;
    let ttl_s = ttl.as_secs().max(2);
    let every = Duration::from_millis(ttl_s * 1000 / 3);
    let mut lease: Option<i64> = None;
    // When etcd last confirmed this node's lease.
    let mut confirmed: Option<Instant> = None;
    loop {
        let round = async {
            let id = match lease {
                Some(id) => match client.lease_keep_alive(id).await? {
                    Some(_) => id,
                    None => {
                        // Expired: whoever holds the key now, not us.
                        lease = None;
                        me.set(false, &key);
                        client.lease_grant(ttl_s).await?
                    }
                },
                None => client.lease_grant(ttl_s).await?,
            };
            lease = Some(id);
            confirmed = Some(Instant::now());
            let value = format!("{node} {id}");
            let won = client
                .txn(
                    &[Compare::CreateRevision(key.clone(), 0)],
                    &[Op::PutLeased(key.clone(), value.clone().into_bytes(), id)],
                )
                .await?
                .succeeded;
            let leads = won || {
                let (kv, _) = client.get(&key).await?;
                kv.is_some_and(|kv| kv.value == value.as_bytes())
            };
            Ok::<bool, super::etcd::EtcdError>(leads)
        };
        match round.await {
            Ok(leads) => me.set(leads, &key),
            Err(e) => {
                tracing::warn!(key, "leader election: {e}");
                // Stop a round before the lease can have expired.
                if confirmed.is_none_or(|t| t.elapsed() + every >= ttl) {
                    me.set(false, &key);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
    }
    me.set(false, &key);
    if let Some(id) = lease {
        let _ = client.lease_revoke(id).await;
    }
}
