//! Shared health checking through etcd (`--health-mode shared`): the
//! fleet's nodes split the checked servers among themselves instead of
//! each probing all of them (300 nodes × 5,000 edges every 2 s would be
//! 750,000 probes a second on the edges).
//!
//! - **Members**: each node keeps `{prefix}/health/members/{node}` alive
//!   under an etcd lease and reads the member list every third of the
//!   lease's TTL; [`Share`] gives each server to one member by rendezvous
//!   hashing. A node that dies stops renewing; its keys go when the lease
//!   expires, and the others take its servers over at their next read.
//! - **Reports**: a node writes what it probed as one key,
//!   `{prefix}/health/reports/{node}` (under the same lease): at once when
//!   a server changes state, else every `--health-report-ms` with the
//!   figures, so a probe is not a write of its own.
//! - **Following**: every node watches the reports and takes each server's
//!   state from the member that probes it, so every node routes on every
//!   server's health.
//! - **etcd lost**: a node that has not reached etcd for a lease's TTL is
//!   alone and probes every server itself until it joins again.

use super::Cluster;
use super::etcd::{Event, KeyValue, Op};
use crate::health::{HealthTable, Report, Share};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// How the fleet shares its checks.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The members' lease: how long a dead node's servers go unprobed at
    /// most (plus a third of it, the read interval).
    pub lease: Duration,
    /// How often a node writes its figures when no state changed.
    pub report_every: Duration,
}

/// What a node writes of the servers it probes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeReport {
    /// Milliseconds since the epoch, when written.
    at_ms: u64,
    /// By server id.
    servers: BTreeMap<String, Report>,
}

/// Joins the fleet's shared checks on a thread of its own; the returned
/// share tells the checker what to probe. Sending `true` on `stop` leaves
/// (the lease is revoked, so the others take over at once).
pub fn start(
    cluster: Arc<Cluster>,
    table: Arc<HealthTable>,
    settings: Settings,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<Arc<Share>> {
    let share = Share::new(&cluster.node);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let s = share.clone();
    std::thread::Builder::new()
        .name("health-share".into())
        .spawn(move || {
            runtime.block_on(async move {
                let lease = Arc::new(AtomicI64::new(0));
                tokio::spawn(follow(cluster.clone(), table.clone(), s.clone()));
                tokio::spawn(publish(
                    cluster.clone(),
                    table,
                    s.clone(),
                    lease.clone(),
                    settings,
                ));
                membership(cluster, s, lease, settings, stop).await
            })
        })?;
    Ok(share)
}

fn members_prefix(cluster: &Cluster) -> String {
    format!("{}/health/members/", cluster.keys.prefix())
}

fn reports_prefix(cluster: &Cluster) -> String {
    format!("{}/health/reports/", cluster.keys.prefix())
}

/// Keeps this node's lease and member key, and reads the member list.
async fn membership(
    cluster: Arc<Cluster>,
    share: Arc<Share>,
    lease: Arc<AtomicI64>,
    settings: Settings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let client = &cluster.client;
    let ttl = settings.lease.max(Duration::from_secs(2));
    let ttl_s = ttl.as_secs();
    let every = ttl / 3;
    let me_key = format!("{}{}", members_prefix(&cluster), cluster.node);
    let mut confirmed: Option<Instant> = None;
    loop {
        let round = async {
            let mut id = lease.load(Ordering::Acquire);
            if id == 0 || client.lease_keep_alive(id).await?.is_none() {
                id = client.lease_grant(ttl_s).await?;
                client
                    .txn(
                        &[],
                        &[Op::PutLeased(
                            me_key.clone(),
                            cluster.node.clone().into_bytes(),
                            id,
                        )],
                    )
                    .await?;
                lease.store(id, Ordering::Release);
                // A new lease: the report goes out again under it.
                share.state_changed();
            }
            let (kvs, _) = client.range_prefix(&members_prefix(&cluster)).await?;
            Ok::<Vec<KeyValue>, super::etcd::EtcdError>(kvs)
        };
        match round.await {
            Ok(kvs) => {
                confirmed = Some(Instant::now());
                let prefix = members_prefix(&cluster);
                let members: Vec<String> = kvs
                    .iter()
                    .filter_map(|kv| kv.key.strip_prefix(&prefix))
                    .map(str::to_string)
                    .collect();
                if members.iter().any(|m| *m == cluster.node) {
                    share.set_members(members);
                } else {
                    // This node's key is gone though its lease lives (an
                    // operator deleted it): a new lease puts it back.
                    lease.store(0, Ordering::Release);
                }
            }
            Err(e) => {
                tracing::warn!("shared health checks: {e}");
                // Alone a round before the lease can have expired: by then
                // the others may have dropped this node and its servers.
                if confirmed.is_none_or(|t| t.elapsed() + every >= ttl) {
                    lease.store(0, Ordering::Release);
                    share.go_alone("etcd cannot be reached");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
    }
    share.go_alone("this node is stopping");
    let id = lease.swap(0, Ordering::AcqRel);
    if id != 0 {
        let _ = client.lease_revoke(id).await;
    }
}

/// Writes this node's report: at once when a state changed (gathering the
/// changes of a few milliseconds), else every `report_every`.
async fn publish(
    cluster: Arc<Cluster>,
    table: Arc<HealthTable>,
    share: Arc<Share>,
    lease: Arc<AtomicI64>,
    settings: Settings,
) {
    let key = format!("{}{}", reports_prefix(&cluster), cluster.node);
    loop {
        tokio::select! {
            _ = share.urgent.notified() => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ = tokio::time::sleep(settings.report_every) => {}
        }
        let id = lease.load(Ordering::Acquire);
        if id == 0 || share.alone() {
            continue;
        }
        let servers = table.load_full();
        let report = NodeReport {
            at_ms: crate::time::unix_millis(std::time::SystemTime::now()),
            servers: servers
                .entries()
                .iter()
                .filter(|s| s.check.is_some() && share.owns(&s.id))
                .map(|s| (s.id.to_string(), s.health.report()))
                .collect(),
        };
        let value = serde_json::to_vec(&report).expect("a report serialises");
        if let Err(e) = cluster
            .client
            .txn(&[], &[Op::PutLeased(key.clone(), value, id)])
            .await
        {
            tracing::debug!("shared health checks: report not written: {e}");
        }
    }
}

/// Reads the other members' reports, then watches them; applies each
/// server's state from the member that probes it (again when the topology
/// or the members change).
async fn follow(cluster: Arc<Cluster>, table: Arc<HealthTable>, share: Arc<Share>) {
    let prefix = reports_prefix(&cluster);
    let mut reports: HashMap<String, NodeReport> = HashMap::new();
    let mut topology = table.subscribe();
    let mut owners = share.subscribe();
    let mut backoff = super::follow::BACKOFF_MIN;
    loop {
        let (kvs, revision) = match cluster.client.range_prefix(&prefix).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("shared health checks: reports not read: {e}");
                backoff = super::follow::wait(backoff).await;
                continue;
            }
        };
        reports.clear();
        for kv in &kvs {
            read(&prefix, kv, &mut reports);
        }
        apply(&table, &share, &reports);
        let mut watch = match cluster.client.watch(&prefix, revision + 1).await {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!("shared health checks: reports not watched: {e}");
                backoff = super::follow::wait(backoff).await;
                continue;
            }
        };
        backoff = super::follow::BACKOFF_MIN;
        loop {
            tokio::select! {
                batch = watch.next() => match batch {
                    Ok(batch) => {
                        for event in batch.events {
                            match event {
                                Event::Put(kv) => {
                                    if let Some(node) = read(&prefix, &kv, &mut reports) {
                                        apply_one(&table, &share, &node, &reports[&node]);
                                    }
                                }
                                Event::Delete { key, .. } => {
                                    // A member gone: its servers keep their
                                    // last state until their new owner
                                    // reports.
                                    if let Some(node) = key.strip_prefix(&prefix) {
                                        reports.remove(node);
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!("shared health checks: the watch ended: {e}");
                        break;
                    }
                },
                _ = topology.changed() => apply(&table, &share, &reports),
                _ = owners.changed() => apply(&table, &share, &reports),
            }
        }
    }
}

/// Takes one report key into `reports` (a malformed one is logged and
/// left out); returns its node.
fn read(prefix: &str, kv: &KeyValue, reports: &mut HashMap<String, NodeReport>) -> Option<String> {
    let node = kv.key.strip_prefix(prefix)?;
    match serde_json::from_slice::<NodeReport>(&kv.value) {
        Ok(r) => {
            reports.insert(node.to_string(), r);
            Some(node.to_string())
        }
        Err(e) => {
            tracing::warn!(
                node,
                "shared health checks: a report that does not read: {e}"
            );
            None
        }
    }
}

/// Applies what `node` reported of the servers it probes.
fn apply_one(table: &HealthTable, share: &Share, node: &str, report: &NodeReport) {
    if share.alone() || node == share.me() {
        return;
    }
    let servers = table.load();
    for (id, r) in &report.servers {
        if share.owner(id).as_deref() != Some(node) {
            continue;
        }
        if let Some(health) = servers.by_id(id) {
            health.adopt(id, r, node);
        }
    }
}

/// Applies, for every server this node does not probe, the report of the
/// member that does.
fn apply(table: &HealthTable, share: &Share, reports: &HashMap<String, NodeReport>) {
    if share.alone() {
        return;
    }
    let servers = table.load_full();
    for server in servers.entries() {
        if server.check.is_none() {
            continue;
        }
        let Some(owner) = share.owner(&server.id) else {
            continue;
        };
        if owner == share.me() {
            continue;
        }
        if let Some(report) = reports.get(&owner).and_then(|r| r.servers.get(&*server.id)) {
            server.health.adopt(&server.id, report, &owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_and_refuses_unknown_fields() {
        let mut servers = BTreeMap::new();
        servers.insert(
            "e1".to_string(),
            Report {
                state: crate::health::State::Down,
                since_ms: Some(1),
                probe_ms: Some(2),
                error: Some("refused".into()),
                rtt_us: None,
                figures: vec![("load".into(), 0.5)],
            },
        );
        let r = NodeReport { at_ms: 3, servers };
        let bytes = serde_json::to_vec(&r).unwrap();
        let back: NodeReport = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.servers, r.servers);
        assert!(
            serde_json::from_slice::<NodeReport>(b"{\"at_ms\":1,\"servers\":{},\"x\":1}").is_err()
        );
    }
}
