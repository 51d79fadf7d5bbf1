//! What a running engine does besides serving: it waits for signals and
//! watches its files. SIGHUP, or a change of the --topology or --policy
//! file, reloads it through the same validation as the admin API (a file
//! that fails is refused and the current version kept); SIGINT and SIGTERM
//! stop the process; under systemd, the watchdog is pinged while every
//! worker runs.

use super::serve::ServeArgs;
use crate::control::{Change, Control, Outcome, Writer, one_line};
use std::sync::Arc;
use std::time::Duration;

/// The watched files as they were when last read.
pub(super) struct Watched {
    topology: Option<Fingerprint>,
    /// The policy file and its signature beside it.
    policy: [Option<Fingerprint>; 2],
}

impl Watched {
    /// Fingerprints of the files `args` names, as they are now.
    pub(super) fn new(args: &ServeArgs) -> Self {
        Watched {
            topology: fingerprint(args.topology.as_deref()),
            policy: policy_fingerprint(args),
        }
    }
}

/// Waits for signals and watches the files: SIGHUP, or a change of the
/// --topology or --policy file, reloads it through the same validation as
/// the admin API (a file that fails is refused and the current version
/// kept); SIGINT and SIGTERM stop the process.
/// What the engine waits on: its signals, installed before it announces
/// that it listens (a SIGHUP sent as soon as the address is printed
/// reloads, and never meets the default action, which ends the process),
/// and its watched files.
pub(super) struct Events {
    runtime: tokio::runtime::Runtime,
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    seen: Watched,
}

impl Events {
    /// Installs the signal handlers; `seen` is the files as first read.
    pub(super) fn install(seen: Watched) -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let _entered = runtime.enter();
        Ok(Events {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            runtime,
            seen,
        })
    }
}

/// What SIGHUP and the file watch reload.
pub(super) struct Reloaded {
    /// Topology and policy go through the one door.
    pub control: Arc<Control>,
    pub writer: Arc<dyn Writer>,
    /// The TLS listeners' certificates (the players', the admin's),
    /// reloaded in place.
    pub certificates: Vec<Arc<crate::http::tls::Certificates>>,
    /// The GeoIP databases, reloaded in place.
    pub geoip: Option<Arc<crate::geo::GeoIp>>,
    /// The catalogue worker's settings, when this node may run it, and
    /// the fleet it is elected in.
    pub catalogue: Option<crate::catalogue::Settings>,
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

pub(super) fn until_stopped(
    events: Events,
    mut args: ServeArgs,
    follows_etcd: bool,
    reloaded: Reloaded,
    notifier: Option<&crate::systemd::Notifier>,
    workers: &[std::thread::JoinHandle<()>],
) -> anyhow::Result<()> {
    if follows_etcd {
        // One source of truth: the files only seeded the node.
        args.topology = None;
        args.policy = None;
    }
    let Events {
        runtime,
        mut hup,
        mut term,
        mut int,
        seen,
    } = events;
    let Reloaded {
        control,
        writer,
        certificates,
        geoip,
        catalogue,
        cluster,
    } = reloaded;
    // The catalogue worker, led by this node alone or by one node of the
    // fleet; stopped (its lease revoked, so another node takes over at
    // once) when the engine stops.
    let (stop_catalogue, catalogue_stopped) = tokio::sync::watch::channel(false);
    let catalogue = catalogue.map(|settings| {
        let _entered = runtime.enter();
        let leadership = match &cluster {
            Some(cluster) => crate::cluster::lead::Leadership::campaign(
                cluster.clone(),
                "catalogue",
                Duration::from_secs(u64::from(args.leader_ttl_s.max(2))),
                catalogue_stopped.clone(),
            ),
            None => crate::cluster::lead::Leadership::solo(),
        };
        tokio::spawn(crate::catalogue::run(
            control.clone(),
            writer.clone(),
            leadership,
            settings,
            catalogue_stopped.clone(),
        ))
    });
    let geo_files = |g: &Option<Arc<crate::geo::GeoIp>>| -> Vec<Option<Fingerprint>> {
        g.iter()
            .flat_map(|g| g.files().iter().map(|f| fingerprint(Some(f))))
            .collect()
    };
    let mut geo_seen = geo_files(&geoip);
    let cert_files = |c: &Vec<Arc<crate::http::tls::Certificates>>| -> Vec<Option<Fingerprint>> {
        c.iter()
            .flat_map(|c| c.files().map(|f| fingerprint(Some(f))).collect::<Vec<_>>())
            .collect()
    };
    let mut certs_seen = cert_files(&certificates);
    runtime.block_on(async move {
        let watch = Duration::from_millis(args.watch_interval_ms.max(1));
        let mut tick = tokio::time::interval(watch);
        let Watched {
            topology: mut topology_seen,
            policy: mut policy_seen,
        } = seen;
        let watchdog = notifier.and(crate::systemd::Notifier::watchdog_interval());
        let mut ping = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
        loop {
            tokio::select! {
                _ = ping.tick(), if watchdog.is_some() => {
                    // Alive means: every worker thread still runs.
                    if workers.iter().all(|w| !w.is_finished())
                        && let Some(n) = notifier
                    {
                        n.notify("WATCHDOG=1");
                    }
                }
                _ = hup.recv() => {
                    reload_topology(&args, &control, &*writer, "SIGHUP").await;
                    reload_policy(&args, &control, &*writer, "SIGHUP").await;
                    reload_certificates(&certificates, "SIGHUP");
                    reload_geoip(geoip.as_deref(), "SIGHUP");
                }
                _ = tick.tick(), if args.watch_interval_ms > 0 => {
                    let t = fingerprint(args.topology.as_deref());
                    if t != topology_seen {
                        topology_seen = t;
                        reload_topology(&args, &control, &*writer, "file watch").await;
                    }
                    let p = policy_fingerprint(&args);
                    if p != policy_seen {
                        policy_seen = p;
                        reload_policy(&args, &control, &*writer, "file watch").await;
                    }
                    let c = cert_files(&certificates);
                    if c != certs_seen {
                        certs_seen = c;
                        reload_certificates(&certificates, "file watch");
                    }
                    let g = geo_files(&geoip);
                    if g != geo_seen {
                        geo_seen = g;
                        reload_geoip(geoip.as_deref(), "file watch");
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("stopping: no new connections, finishing requests in flight");
        let _ = stop_catalogue.send(true);
        if let Some(worker) = catalogue {
            let _ = tokio::time::timeout(Duration::from_secs(2), worker).await;
            // The campaign revokes its lease as it ends.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    })
}

/// Reloads each listener's TLS certificates; a bad set is refused and the
/// current one kept.
fn reload_certificates(certificates: &[Arc<crate::http::tls::Certificates>], why: &str) {
    for set in certificates {
        match set.reload() {
            Ok(()) => tracing::info!(why, "TLS certificates reloaded"),
            Err(e) => {
                tracing::error!(why, error = %e, "TLS certificates refused; the current ones stay")
            }
        }
    }
}

/// Reloads the GeoIP databases; a set with a file that does not read is
/// refused and the current one kept.
fn reload_geoip(geoip: Option<&crate::geo::GeoIp>, why: &str) {
    let Some(geoip) = geoip else { return };
    match geoip.reload() {
        Ok(()) => tracing::info!(why, "GeoIP databases reloaded"),
        Err(e) => {
            tracing::error!(why, error = %e, "GeoIP databases refused; the current ones stay")
        }
    }
}

/// What identifies a file's content cheaply: modification time and size.
type Fingerprint = (std::time::SystemTime, u64);

/// The --policy file's fingerprint and its signature's: signing a file
/// again reloads it too.
fn policy_fingerprint(args: &ServeArgs) -> [Option<Fingerprint>; 2] {
    let sig = args.policy.as_deref().map(crate::policy::signing::sig_path);
    [
        fingerprint(args.policy.as_deref()),
        fingerprint(sig.as_deref()),
    ]
}

fn fingerprint(path: Option<&std::path::Path>) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path?).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

async fn reload_topology(args: &ServeArgs, control: &Control, writer: &dyn Writer, why: &str) {
    let Some(path) = &args.topology else { return };
    let who = format!("{why} {}", path.display());
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(
                "topology reload refused, keeping the current version: cannot read {}: {e}",
                path.display()
            );
            return;
        }
    };
    match writer
        .write(Change::Topology(bytes.into()), None, &who)
        .await
    {
        Ok(changed) => {
            if let Outcome::Topology {
                version, summary, ..
            } = changed.outcome
            {
                tracing::info!(version, "topology reloaded: {summary}");
            }
        }
        Err(e) => tracing::error!(
            version = control.topology.load().version,
            "topology reload refused, keeping the current version: {}",
            one_line(&e.to_string())
        ),
    }
}

async fn reload_policy(args: &ServeArgs, control: &Control, writer: &dyn Writer, why: &str) {
    let Some(path) = &args.policy else { return };
    let who = format!("{why} {}", path.display());
    let source = match super::serve::policy_source(args) {
        Ok(source) => source,
        Err(e) => {
            tracing::error!(
                version = control.policies.active().version,
                "policy reload refused, keeping the current version: {}",
                one_line(&format!("{e:#}"))
            );
            return;
        }
    };
    let change = Change::Policy {
        source,
        activate: true,
    };
    match writer.write(change, None, &who).await {
        Ok(changed) => {
            if let Outcome::Policy { name, version, .. } = changed.outcome {
                tracing::info!(policy = %format!("{name}@{version}"), "policy reloaded and activated");
            }
        }
        Err(e) => tracing::error!(
            version = control.policies.active().version,
            "policy reload refused, keeping the current version: {}",
            one_line(&format!("{e:#}"))
        ),
    }
}
