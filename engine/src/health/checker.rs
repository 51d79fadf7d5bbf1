//! The health checker: one task per checked server on a runtime of its own,
//! reconciled with the [`HealthTable`] whenever it follows a new topology.
//!
//! Each task starts at an offset within its interval derived from the
//! server id (so a thousand servers do not probe at once), then probes every
//! interval; a semaphore bounds how many probes run at the same time.

use super::probe::{Target, probe};
use super::{HealthTable, ServerHealth, Share};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Most probes in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 256;

/// Starts the checker on a thread of its own. It follows the table for as
/// long as the process runs. Servers on port 443 are probed
/// over TLS, trusting the Mozilla roots and the PEM certificates in
/// `extra_ca`. With a `share`, it probes only the servers this node owns,
/// and follows the share as members come and go.
pub fn spawn(
    table: Arc<HealthTable>,
    concurrency: usize,
    extra_ca: Option<&std::path::Path>,
    share: Option<Arc<Share>>,
) -> Result<(), String> {
    let tls = super::probe::tls_config(extra_ca)?;
    std::thread::Builder::new()
        .name("health".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building the health runtime");
            runtime.block_on(run(table, concurrency, tls, share));
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Identifies one probing task: a change of any part restarts it.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    id: Box<str>,
    target: Target,
    interval: Duration,
    rise: u32,
    fall: u32,
}

async fn run(
    table: Arc<HealthTable>,
    concurrency: usize,
    tls: Arc<rustls::ClientConfig>,
    share: Option<Arc<Share>>,
) {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut changes = table.subscribe();
    let mut owners = share.as_ref().map(|s| s.subscribe());
    let mut tasks: HashMap<Key, (tokio::task::JoinHandle<()>, Arc<ServerHealth>)> = HashMap::new();
    loop {
        let servers = table.load_full();
        let mut wanted: HashMap<Key, Arc<ServerHealth>> = HashMap::new();
        for server in servers.entries() {
            let Some(check) = &server.check else {
                continue;
            };
            if share.as_ref().is_some_and(|s| !s.owns(&server.id)) {
                continue;
            }
            let key = Key {
                id: server.id.clone(),
                target: Target {
                    host: server.host.to_string(),
                    port: server.port,
                    path: check.path.clone(),
                    expect_body: check.expect_body.clone(),
                    timeout: check.timeout.duration(),
                },
                interval: check.interval.duration(),
                rise: check.rise,
                fall: check.fall,
            };
            wanted.insert(key, server.health.clone());
        }
        // Stop what is no longer wanted, or whose health object changed.
        tasks.retain(|key, (task, health)| {
            let keep = wanted.get(key).is_some_and(|h| Arc::ptr_eq(h, health));
            if !keep {
                task.abort();
            }
            keep
        });
        for (key, health) in wanted {
            if tasks.contains_key(&key) {
                continue;
            }
            let task = tokio::spawn(probe_loop(
                key.clone(),
                health.clone(),
                permits.clone(),
                tls.clone(),
                share.clone(),
            ));
            tasks.insert(key, (task, health));
        }
        tracing::debug!(
            checked = tasks.len(),
            version = servers.topology_version,
            "health checks reconciled"
        );
        let owners_changed = async {
            match owners.as_mut() {
                Some(o) => o.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            c = changes.changed() => if c.is_err() { return },
            ok = owners_changed => if !ok { owners = None },
        }
    }
}

async fn probe_loop(
    key: Key,
    health: Arc<ServerHealth>,
    permits: Arc<Semaphore>,
    tls: Arc<rustls::ClientConfig>,
    share: Option<Arc<Share>>,
) {
    let interval = key.interval.max(Duration::from_millis(1));
    // Spread the first probes over one interval.
    let offset = stable_hash(&key.id) % (interval.as_millis() as u64).max(1);
    tokio::time::sleep(Duration::from_millis(offset)).await;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = {
            let _permit = permits
                .acquire()
                .await
                .expect("the semaphore is never closed");
            probe(&key.target, &tls).await
        };
        if health.record(&key.id, result, key.rise, key.fall)
            && let Some(share) = &share
        {
            share.state_changed();
        }
    }
}

fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
