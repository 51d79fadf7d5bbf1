//! `edgeward serve`: the engine's wiring. Loads the topology and the
//! policy, joins the fleet when etcd is given, starts health checking, the
//! admin API and the player workers, then waits in [`super::reload`] until
//! it is told to stop, and stops gracefully.

use super::{load_topology, reload};
use crate::admin::{self, Token};
use crate::cluster::{Cluster, EtcdWriter};
use crate::control::{Control, LocalWriter, Writer};
use crate::http;
use crate::policy::{Fallback, PolicyHost, PolicySource, Sandbox};
use crate::routing::client::TrustedProxies;
use crate::topology::{self, Topology};
use anyhow::Context;
use ipnet::IpNet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How logs are written.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Who probes the checked servers.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HealthMode {
    /// This node, all of them.
    Local,
    /// The fleet, each node its share (needs --etcd).
    Shared,
}

/// Options of `serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Topology file (JSON or MessagePack). Without it, an embedded demo
    /// topology is served. Reloaded on SIGHUP and when it changes. With a
    /// state directory (--state-dir), it only seeds an empty one: at start
    /// the topology kept there (with its entity changes) is served.
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// Days the audit trail (`GET /audit`, `{state dir}/audit.jsonl`)
    /// keeps a change.
    #[arg(long, default_value_t = 30)]
    pub audit_retention_days: u64,
    /// Routing policy component (.wasm). Without it, the built-in `nearest`
    /// policy is used. Reloaded on SIGHUP.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The policy's configuration, TOML (.toml) or JSON.
    #[arg(long, requires = "policy")]
    pub policy_config: Option<PathBuf>,
    /// A public key (`edgeward policy keygen`) whose signatures this
    /// engine accepts (repeatable). With any, every policy must be signed
    /// by one of them, wherever it enters: --policy (its FILE.sig), an
    /// upload, `ctl push`, etcd. The built-in policy needs no signature.
    #[arg(long, value_name = "FILE")]
    pub policy_trust_key: Vec<PathBuf>,
    /// Address for player traffic.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Address for player traffic over HTTPS (HTTP/2 or HTTP/1.1 by ALPN);
    /// needs --tls-cert.
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Option<SocketAddr>,
    /// UDP address for player traffic over HTTP/3 (QUIC), advertised by
    /// `Alt-Svc` on the HTTPS listener; needs --tls-listen (same
    /// certificates). Served by one worker.
    #[arg(long, value_name = "ADDR", requires = "tls_listen")]
    pub h3_listen: Option<SocketAddr>,
    /// A certificate chain and its private key, PEM: `CERT.pem,KEY.pem`,
    /// optionally with a DER OCSP response to staple: `,OCSP.der`
    /// (repeatable: chosen by the name the client asks for, the first
    /// when none matches). Reloaded on SIGHUP and when a file changes.
    #[arg(long, value_name = "CERT,KEY[,OCSP]")]
    pub tls_cert: Vec<http::tls::CertPair>,
    /// A folder of programme guide files (Kaltura EPG XML or XMLTV),
    /// imported as they arrive (checked every second by the catalogue
    /// worker; in a fleet, by the one node elected to run it): an imported
    /// file moves to `processed/`, one refused to `failed/` with the
    /// reason beside it.
    #[arg(long, value_name = "DIR")]
    pub epg_dir: Option<PathBuf>,
    /// Programmes of a guide starting sooner than this many minutes from
    /// now are never replaced by it (the old system's 30).
    #[arg(long, default_value_t = 30, value_name = "MINUTES")]
    pub epg_protect_minutes: u32,
    /// Guides fetched on a schedule over HTTP(S) or from an FTP server
    /// (TOML: `[[source]]` tables with `url`, `every`, and for FTP `user`,
    /// `password` and `delete_after_import`).
    #[arg(long, value_name = "FILE")]
    pub epg_sources: Option<PathBuf>,
    /// With --epg-dir, --epg-sources or --dvr: programmes that started more than this many
    /// hours ago are removed, with their recordings (removed from the DVRs
    /// first), every 30 s (0: never).
    #[arg(long, default_value_t = 48)]
    pub epg_retention_hours: u32,
    /// Schedule DVR recordings of the programmes of channels with
    /// `dvr_enabled` and a `recording_group`, follow them until completed,
    /// and remove them after retention (in a fleet, on the one node elected
    /// among those given --dvr or --epg-dir).
    #[arg(long)]
    pub dvr: bool,
    /// The DVRs' credentials (TOML: `[servers.ID]` or `[default]` with
    /// `user` and `password`), read again when it changes; never in the
    /// topology or a log.
    #[arg(long, value_name = "FILE")]
    pub dvr_secrets: Option<PathBuf>,
    /// With --dvr: time between rounds of scheduling and status polls.
    #[arg(long, default_value_t = 15_000, value_name = "MS")]
    pub dvr_interval_ms: u64,
    /// With --dvr: programmes starting within this many minutes are
    /// scheduled.
    #[arg(long, default_value_t = 20, value_name = "MINUTES")]
    pub dvr_horizon_minutes: u32,
    /// In a fleet: the TTL of the lease by which one node leads the
    /// catalogue worker; another takes over this long after it dies.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub leader_ttl_s: u32,
    /// A MaxMind database (GeoIP2 or GeoLite2 City or Country, ASN or ISP,
    /// Anonymous-IP; repeatable, one of each kind): what policies learn of
    /// a client's country, network and anonymiser, and the nearest regions
    /// for a client in no configured subnet. Reloaded on SIGHUP and when a
    /// file changes.
    #[arg(long, value_name = "FILE.mmdb")]
    pub geoip: Vec<PathBuf>,
    /// A client in no configured subnet whose location a GeoIP database
    /// knows gets tiers of this many of the nearest regions that declare a
    /// `location`, before the default region (0: none).
    #[arg(long, default_value_t = crate::geo::NEAREST_REGIONS)]
    pub geo_nearest_regions: u8,
    /// Connections a worker keeps open at most; beyond, a new connection
    /// is accepted and closed at once.
    #[arg(long, default_value_t = http::MAX_CONNECTIONS_PER_WORKER)]
    pub max_connections_per_worker: usize,
    /// Longest wait for a request's head, in milliseconds: from a
    /// connection's start for its first, from its first byte for the
    /// next (over TLS, also the wait between requests).
    #[arg(long, default_value_t = 30_000)]
    pub header_timeout_ms: u64,
    /// Longest a cleartext HTTP/1.1 or an HTTP/2 connection is kept open
    /// between requests, in milliseconds (nginx's keepalive_timeout
    /// default).
    #[arg(long, default_value_t = 75_000)]
    pub idle_timeout_ms: u64,
    /// Requests answered on one cleartext HTTP/1.1 connection before it
    /// is closed (`Connection: close` on the last); 0 for no limit.
    #[arg(long, default_value_t = 0)]
    pub max_requests_per_connection: u64,
    /// Content-steering polls a worker asks its policy about per second at
    /// most; beyond, a poll is shed: answered with the session's last
    /// order and a doubled TTL, without a policy call (0: no limit).
    #[arg(long, default_value_t = crate::routing::steer::DEFAULT_MAX_RATE)]
    pub steering_max_rate: u32,
    /// A network whose X-Real-IP header is believed (repeatable). Default:
    /// loopback only.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxies: Vec<IpNet>,
    /// Worker threads, each with its own accept loop and policy instance.
    /// Default: one per CPU.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Longest a single policy call may run, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub policy_deadline_ms: u64,
    /// Largest memory a policy instance may use, in MiB.
    #[arg(long, default_value_t = 16)]
    pub policy_memory_mib: usize,
    /// Seed the policies' random generator (reproducible draws, for tests).
    #[arg(long)]
    pub random_seed: Option<u64>,
    /// What answers a request whose policy call fails.
    #[arg(long, value_enum, default_value = "native")]
    pub policy_fallback: Fallback,
    /// Consecutive failures after which a newly activated policy version is
    /// rolled back (a canary: aborted) automatically.
    #[arg(long, default_value_t = 20)]
    pub rollback_after: u64,
    /// Do not send the `Edgeward-Policy: name@version` header.
    #[arg(long)]
    pub no_policy_header: bool,
    /// Address of the admin API, or `off`.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: String,
    /// File holding the admin API's bearer token (else the
    /// EDGEWARD_ADMIN_TOKEN environment variable; loopback needs none).
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// The admin listener's certificate chain (PEM): the admin API and the
    /// console are then served over HTTPS only, and session cookies are
    /// `Secure`. Reloaded on SIGHUP and when the file changes, like the
    /// player certificates. Needs --admin-tls-key.
    #[arg(long, value_name = "CERT.pem", requires = "admin_tls_key")]
    pub admin_tls_cert: Option<PathBuf>,
    /// The private key of --admin-tls-cert (PEM).
    #[arg(long, value_name = "KEY.pem", requires = "admin_tls_cert")]
    pub admin_tls_key: Option<PathBuf>,
    /// How often the --topology and --policy files are checked for changes,
    /// in milliseconds (0: only on SIGHUP).
    #[arg(long, default_value_t = 1000)]
    pub watch_interval_ms: u64,
    /// When every candidate of a request is down, offer them anyway (a
    /// possibly-dead edge rather than a 503). Drained servers stay out.
    #[arg(long)]
    pub health_fail_open: bool,
    /// Most health probes in flight at once.
    #[arg(long, default_value_t = crate::health::checker::DEFAULT_CONCURRENCY)]
    pub health_concurrency: usize,
    /// `local`: this node probes every checked server. `shared` (with
    /// --etcd): the fleet's nodes split the servers among themselves
    /// through etcd and route on each other's results; a node that
    /// loses etcd probes everything itself again.
    #[arg(
        long,
        value_enum,
        default_value = "local",
        requires_if("shared", "etcd")
    )]
    pub health_mode: HealthMode,
    /// With --health-mode shared: the members' etcd lease, in seconds;
    /// a dead node's servers are taken over this long after its last
    /// renewal (plus a third of it).
    #[arg(long, default_value_t = 10, value_name = "S")]
    pub health_lease_s: u64,
    /// With --health-mode shared: how often a node writes the figures of
    /// the servers it probes (a change of state is written at once), in
    /// milliseconds.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub health_report_ms: u64,
    /// PEM file of extra CA certificates trusted by TLS health probes (port
    /// 443 servers), besides the Mozilla roots.
    #[arg(long)]
    pub health_ca_file: Option<PathBuf>,
    /// On SIGTERM/SIGINT, how long requests in flight may take to finish
    /// before the process exits anyway, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub shutdown_grace_ms: u64,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Where compiled policies are kept (by content hash), so that restarts
    /// and re-activations skip compilation; `off` to compile every time.
    /// Default: $STATE_DIRECTORY/policy-cache under systemd, else
    /// $XDG_CACHE_HOME/edgeward/policies or ~/.cache/edgeward/policies.
    #[arg(long, value_name = "DIR")]
    pub policy_cache_dir: Option<String>,
    /// Write a sampled JSON-lines record of decisions to this file.
    #[arg(long)]
    pub decision_log: Option<PathBuf>,
    /// Share of decisions recorded in the decision log (0-1).
    #[arg(long, default_value_t = 0.01)]
    pub decision_log_sample: f64,
    /// Size at which the decision log is rotated (FILE.1 … FILE.3 kept), MiB.
    #[arg(long, default_value_t = 100)]
    pub decision_log_max_mib: u64,
    /// Decide every request with the engine's native implementation of the
    /// default rule instead of the wasm policy: the baseline that shows what
    /// the sandbox costs. Not for production.
    #[arg(long)]
    pub native_only: bool,
    /// Following etcd.
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

/// Following a configuration kept in etcd (see `deploy/README.md`).
#[derive(clap::Args)]
pub struct EtcdArgs {
    /// etcd client URLs, comma-separated (`http://10.0.0.1:2379,...`). With
    /// it, topology, policies, routing and drained servers come from etcd
    /// and admin changes are written there; --topology and --policy only
    /// seed a node that has neither etcd nor a disk copy.
    #[arg(long, env = "EDGEWARD_ETCD", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// Key prefix of this fleet's configuration in etcd.
    #[arg(long, default_value = "/edgeward")]
    pub etcd_prefix: String,
    /// etcd user (when etcd has authentication enabled).
    #[arg(long, requires = "etcd")]
    pub etcd_user: Option<String>,
    /// File holding the etcd user's password (else EDGEWARD_ETCD_PASSWORD).
    #[arg(long, requires = "etcd_user")]
    pub etcd_password_file: Option<PathBuf>,
    /// PEM file of CA certificates that sign the etcd members' certificates
    /// (for https:// endpoints), besides the Mozilla roots.
    #[arg(long)]
    pub etcd_ca_file: Option<PathBuf>,
    /// PEM client certificate for etcd (with --etcd-key-file).
    #[arg(long, requires = "etcd_key_file")]
    pub etcd_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long, requires = "etcd_cert_file")]
    pub etcd_key_file: Option<PathBuf>,
    /// Time limit of one call to one etcd member, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub etcd_timeout_ms: u64,
    /// How long start waits for etcd when there is no disk copy, in
    /// milliseconds (then the node serves its seed configuration but is not
    /// ready until etcd answers).
    #[arg(long, default_value_t = 5000)]
    pub etcd_start_wait_ms: u64,
    /// Where the node keeps its state: on a single node its topology and
    /// the entity changes made since (without it, or $STATE_DIRECTORY,
    /// they last until the engine stops); with --etcd the disk copy of the
    /// last good configuration (default there: $STATE_DIRECTORY, else
    /// /var/lib/edgeward). The audit trail is kept there too.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Entity changes kept as change records in etcd before they are
    /// folded into a new topology record.
    #[arg(long, default_value_t = 1000)]
    pub etcd_fold_changes: u64,
    /// This node's name in etcd records and logs (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
}

/// Runs the engine until SIGTERM or SIGINT.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Taken before the files are read: a change made while the engine
    // starts is seen by the watch, never lost between reading and watching.
    let seen = reload::Watched::new(&args);
    // A single node keeps its topology in its state directory, if it has
    // one; a fleet's is in etcd.
    let own_state = args
        .etcd
        .state_dir
        .clone()
        .or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from));
    let (store, journal) = match own_state.as_deref().filter(|_| args.etcd.etcd.is_empty()) {
        Some(dir) => {
            let (store, journal) = open_state(&dir.join("topology"), args.topology.as_deref())?;
            (store, Some(journal))
        }
        None => {
            if args.etcd.etcd.is_empty() {
                tracing::info!(
                    "no --state-dir: entity changes are kept in memory only, until the engine stops"
                );
            }
            (load_topology(args.topology.as_deref())?, None)
        }
    };
    let store = Arc::new(store);
    tracing::info!(version = 1, "topology loaded: {}", store.load().summary());

    let sandbox = Sandbox {
        deadline: Duration::from_millis(args.policy_deadline_ms.max(1)),
        max_memory_bytes: args.policy_memory_mib.max(1) << 20,
    };
    let trust = crate::policy::signing::Trust::read(&args.policy_trust_key)
        .map_err(|e| anyhow::anyhow!("--policy-trust-key {e}"))?;
    for key in trust.keys() {
        tracing::info!(key = %key.id, name = %key.name, "policies must be signed: trust key");
    }
    let policies = PolicyHost::with_cache(
        sandbox,
        args.random_seed,
        policy_source(&args)?,
        args.policy_fallback,
        args.rollback_after,
        policy_cache_dir(&args),
        trust,
    )?;
    let mut control =
        Control::new(store.clone(), policies.clone()).with_epg_rules(crate::epg::rules::Rules {
            protect: time::Duration::minutes(i64::from(args.epg_protect_minutes)),
        });
    if let Some(journal) = journal {
        control = control.with_journal(journal);
    }
    if let Some(dir) = &own_state {
        let retention = Duration::from_secs(args.audit_retention_days.max(1) * 86_400);
        control = control.with_audit(
            crate::control::audit::AuditLog::open(dir.join("audit.jsonl"), retention)
                .map_err(anyhow::Error::msg)?,
        );
    }
    let control = Arc::new(control);
    // Operators' accounts, API tokens and the session key live with the
    // configuration: the state directory on one node, etcd in a fleet
    // (with a copy in the state directory: `cluster::access`).
    let access = Arc::new(match &own_state {
        Some(dir) => crate::access::Access::open(dir).map_err(anyhow::Error::msg)?,
        None => crate::access::Access::in_memory(),
    });

    let tls = match args.tls_listen {
        Some(listen) => Some(http::TlsListener {
            listen,
            certificates: http::tls::Certificates::load(args.tls_cert.clone())
                .map_err(anyhow::Error::msg)?,
        }),
        None if !args.tls_cert.is_empty() => {
            anyhow::bail!("--tls-cert is given but no --tls-listen address")
        }
        None => None,
    };
    // Certificates SIGHUP and the file watch reload: the players' and the
    // admin listener's.
    if let Some(dir) = &args.epg_dir
        && !dir.is_dir()
    {
        anyhow::bail!("--epg-dir {}: not a directory", dir.display());
    }
    let catalogue = catalogue_settings(&args)?;
    if let Some(drivers) = catalogue.as_ref().and_then(|c| c.dvr.clone()) {
        let _ = control.dvr.set(drivers);
    }
    let geoip = match args.geoip.is_empty() {
        true => None,
        false => Some(crate::geo::GeoIp::load(args.geoip.clone()).map_err(anyhow::Error::msg)?),
    };
    let geoip_for_admin = geoip.clone();
    let mut reloaded_certificates: Vec<Arc<http::tls::Certificates>> =
        tls.iter().map(|t| t.certificates.clone()).collect();
    let config = http::ListenerConfig {
        listen: args.listen,
        tls,
        h3: args.h3_listen,
        max_connections: args.max_connections_per_worker,
        header_timeout: std::time::Duration::from_millis(args.header_timeout_ms.max(1)),
        idle_timeout: std::time::Duration::from_millis(args.idle_timeout_ms.max(1)),
        max_requests: args.max_requests_per_connection,
        geoip: geoip.clone(),
        nearest_regions: args.geo_nearest_regions,
        steering: {
            // Session tokens are signed with a key derived from the
            // fleet's (the admin sessions'): any node opens any node's.
            let access = access.clone();
            crate::routing::steer::SteeringSetup {
                key: Arc::new(move || access.sessions.shared_key()),
                max_rate: args.steering_max_rate,
            }
        },
        workers: args
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        trusted: if args.trusted_proxies.is_empty() {
            TrustedProxies::default()
        } else {
            TrustedProxies::new(args.trusted_proxies.clone())
        },
        policy_header: !args.no_policy_header,
        seed: args.random_seed,
        fail_open: args.health_fail_open,
        native_only: args.native_only,
        decision_log: match &args.decision_log {
            Some(path) => Some(
                crate::decision_log::DecisionLog::open(
                    path,
                    args.decision_log_sample,
                    args.decision_log_max_mib << 20,
                )
                .with_context(|| format!("cannot open decision log {}", path.display()))?,
            ),
            None => None,
        },
    };
    if let Some(log) = &config.decision_log {
        control.metrics.set_decision_log(log.clone());
    }
    let audit_retention = Duration::from_secs(args.audit_retention_days.max(1) * 86_400);
    let cluster = follow_etcd(&args.etcd, &control, audit_retention)?;
    if let Some(cluster) = &cluster {
        crate::cluster::access::join(
            cluster,
            &access,
            Duration::from_millis(args.etcd.etcd_start_wait_ms),
        )?;
    }
    let follows_etcd = cluster.is_some();
    // The one door for changes: this node's, or the fleet's.
    let writer: Arc<dyn Writer> = match &cluster {
        Some(cluster) => Arc::new(EtcdWriter::new(cluster.clone(), control.clone())),
        None => Arc::new(LocalWriter::new(control.clone())),
    };
    let failing = writer.clone();
    policies.on_failing(Box::new(move |version, failures| {
        failing.report_failing(version, failures)
    }));
    // Shared health checks: this node's share of the servers, from etcd;
    // it leaves the fleet's split (its lease revoked) when it stops.
    let (stop_sharing, sharing_stopped) = tokio::sync::watch::channel(false);
    let share = match (&cluster, args.health_mode) {
        (Some(cluster), HealthMode::Shared) => Some(crate::cluster::health::start(
            cluster.clone(),
            control.health.clone(),
            crate::cluster::health::Settings {
                lease: Duration::from_secs(args.health_lease_s.max(2)),
                report_every: Duration::from_millis(args.health_report_ms.max(100)),
            },
            sharing_stopped,
        )?),
        _ => None,
    };
    let sharing = share.is_some();
    control.set_health_share(share.clone());
    crate::health::checker::spawn(
        control.health.clone(),
        args.health_concurrency,
        args.health_ca_file.as_deref(),
        share,
    )
    .map_err(anyhow::Error::msg)?;
    let admin_addr = if args.admin_listen == "off" {
        None
    } else {
        let listen: SocketAddr = args.admin_listen.parse().with_context(|| {
            format!(
                "--admin-listen {:?} is not an address or `off`",
                args.admin_listen
            )
        })?;
        let admin_tls = match (&args.admin_tls_cert, &args.admin_tls_key) {
            (Some(cert), Some(key)) => Some(
                http::tls::Certificates::load(vec![http::tls::CertPair {
                    cert: cert.clone(),
                    key: key.clone(),
                    ocsp: None,
                }])
                .map_err(|e| anyhow::anyhow!("the admin listener's certificate: {e}"))?,
            ),
            _ => None,
        };
        if let Some(c) = &admin_tls {
            reloaded_certificates.push(c.clone());
        }
        Some(admin::spawn(
            admin::AdminConfig {
                listen,
                token: admin_token(&args)?,
                tls: admin_tls.clone(),
            },
            Arc::new(admin::Admin {
                control: control.clone(),
                writer: writer.clone(),
                cluster: cluster.clone(),
                access: access.clone(),
                console: Default::default(),
                secure: admin_tls.is_some(),
                geoip: geoip_for_admin.map(|g| (g, args.geo_nearest_regions)),
            }),
        )?)
    };
    let (sockets, bound) =
        http::bind(&config).with_context(|| format!("cannot listen on {}", config.listen))?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let workers = http::spawn_workers(
        sockets,
        &config,
        store.clone(),
        control.health.clone(),
        policies.clone(),
        &control.metrics,
        &shutdown,
    )?;
    control.set_ready();

    let events = reload::Events::install(seen)?;
    announce(
        bound,
        config.workers,
        &store.load(),
        admin_addr.map(|a| (a, args.admin_tls_cert.is_some())),
    );
    let reloaded = reload::Reloaded {
        control: control.clone(),
        writer,
        certificates: reloaded_certificates,
        geoip,
        catalogue,
        cluster: cluster.clone(),
    };
    let notifier = crate::systemd::Notifier::from_env();
    if let Some(n) = &notifier {
        n.notify("READY=1");
    }
    let grace = Duration::from_millis(args.shutdown_grace_ms);
    reload::until_stopped(
        events,
        args,
        follows_etcd,
        reloaded,
        notifier.as_ref(),
        &workers,
    )?;
    if let Some(n) = &notifier {
        n.notify("STOPPING=1");
    }
    if sharing && stop_sharing.send(true).is_ok() {
        // Time for the lease's revocation, so the others take over now.
        std::thread::sleep(Duration::from_millis(100));
    }

    // Graceful shutdown: not ready any more, stop accepting, let requests
    // in flight finish (within the grace period), then exit.
    control.set_not_ready();
    let _ = stop.send(true);
    let deadline = std::time::Instant::now() + grace;
    for worker in workers {
        while !worker.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// A single node's topology from its state directory: the base and the
/// changes journalled since, or (an empty directory) the seed file or the
/// demo, which becomes the base.
fn open_state(
    dir: &std::path::Path,
    seed: Option<&std::path::Path>,
) -> anyhow::Result<(
    crate::topology::store::TopologyStore,
    crate::control::journal::Journal,
)> {
    use crate::control::journal::Journal;
    use crate::topology::store::TopologyStore;
    let (journal, restored) = Journal::open(dir).map_err(anyhow::Error::msg)?;
    let (Some(journal), Some(restored)) = (journal, restored) else {
        let store = load_topology(seed)?;
        let t = store.snapshot();
        let journal =
            Journal::create(dir, t.source(), t.revision(), &t.hash).map_err(anyhow::Error::msg)?;
        tracing::info!(
            "state directory {}: seeded with the topology at revision {}",
            dir.display(),
            t.revision()
        );
        return Ok((store, journal));
    };
    let mut t = topology::load(restored.base, 1)
        .with_context(|| format!("the base topology in {}", dir.display()))?
        .at_revision(restored.revision);
    t.hash = restored.hash;
    let entries = restored.entries.len();
    let mut replayed = 0;
    for entry in &restored.entries {
        match topology::edit::apply(&t, &entry.edits, 1, entry.revision) {
            Ok(edited) => {
                t = edited.topology;
                replayed += 1;
            }
            Err(e) => {
                // Never expected (each was checked before it was written):
                // keep what applied, and the rest beside the journal.
                let rest = &restored.entries[replayed..];
                let kept = dir.join(format!("changes.rejected-{}.jsonl", entry.revision));
                let text: Vec<u8> = rest
                    .iter()
                    .flat_map(|e| {
                        let mut line = serde_json::to_vec(e).unwrap_or_default();
                        line.push(b'\n');
                        line
                    })
                    .collect();
                std::fs::write(&kept, text)
                    .with_context(|| format!("cannot write {}", kept.display()))?;
                tracing::error!(
                    "state directory {}: change at revision {} no longer applies ({e}); \
                     serving revision {}, the {} changes from it on are in {}",
                    dir.display(),
                    entry.revision,
                    t.revision(),
                    rest.len(),
                    kept.display()
                );
                journal
                    .rebase(t.source(), t.revision(), &t.hash)
                    .map_err(anyhow::Error::msg)?;
                break;
            }
        }
    }
    if seed.is_some() {
        tracing::info!(
            "the --topology file is not read at start: the state directory {} has the topology \
             (it replaces it when it changes while the engine runs)",
            dir.display()
        );
    }
    tracing::info!(
        "state directory {}: topology at revision {} ({replayed} of {entries} changes replayed)",
        dir.display(),
        t.revision()
    );
    Ok((TopologyStore::from_topology(t), journal))
}

/// Joins the fleet when --etcd is given: restores the disk copy, follows
/// etcd, and waits a while for a first configuration. Returns the link to
/// etcd, if the node follows it.
fn follow_etcd(
    args: &EtcdArgs,
    control: &Arc<Control>,
    audit_retention: Duration,
) -> anyhow::Result<Option<Arc<Cluster>>> {
    if args.etcd.is_empty() {
        return Ok(None);
    }
    let password = match (&args.etcd_user, &args.etcd_password_file) {
        (None, _) => None,
        (Some(_), Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read etcd password file {}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
        (Some(_), None) => Some(
            std::env::var("EDGEWARD_ETCD_PASSWORD")
                .context("--etcd-user needs --etcd-password-file or EDGEWARD_ETCD_PASSWORD")?,
        ),
    };
    let tls = if args.etcd.iter().any(|e| e.starts_with("https://")) {
        Some(
            crate::cluster::tls_config(
                args.etcd_ca_file.as_deref(),
                args.etcd_cert_file
                    .as_deref()
                    .zip(args.etcd_key_file.as_deref()),
            )
            .map_err(|e| anyhow::anyhow!("etcd {e}"))?,
        )
    } else {
        None
    };
    let state_dir = args
        .state_dir
        .clone()
        .or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/lib/edgeward"));
    let node = args.node_name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "edgeward".into())
    });
    let cluster = Cluster::new(crate::cluster::ClusterConfig {
        etcd: crate::cluster::etcd::EtcdConfig {
            endpoints: args.etcd.clone(),
            credentials: args.etcd_user.clone().zip(password),
            tls,
            timeout: Duration::from_millis(args.etcd_timeout_ms.max(1)),
        },
        prefix: args.etcd_prefix.clone(),
        node,
        cache_file: Some(state_dir.join("etcd-copy.msgpack")),
        fold_after: args.etcd_fold_changes,
        audit_retention,
    })
    .map_err(anyhow::Error::msg)?;
    let restored = cluster
        .start(control)
        .context("cannot start following etcd")?;
    if !restored && !cluster.wait_for_config(Duration::from_millis(args.etcd_start_wait_ms)) {
        tracing::error!(
            "no configuration from etcd or a disk copy yet: serving the seed configuration, \
             not ready until etcd answers"
        );
    }
    Ok(Some(cluster))
}

/// The catalogue worker's settings, when this node may run it (it has a
/// guide folder or sources, or schedules recordings).
fn catalogue_settings(args: &ServeArgs) -> anyhow::Result<Option<crate::catalogue::Settings>> {
    if args.epg_dir.is_none() && args.epg_sources.is_none() && !args.dvr {
        if args.dvr_secrets.is_some() {
            anyhow::bail!("--dvr-secrets is given but not --dvr");
        }
        return Ok(None);
    }
    let tls = crate::health::probe::tls_config(None).map_err(anyhow::Error::msg)?;
    let epg_sources = match &args.epg_sources {
        Some(path) => crate::epg::fetch::load(path).map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    let dvr = if args.dvr {
        let secrets = args
            .dvr_secrets
            .as_deref()
            .map(crate::dvr::secrets::SecretsFile::open)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        Some(Arc::new(crate::dvr::worker::Drivers::new(
            secrets,
            tls.clone(),
        )))
    } else {
        None
    };
    Ok(Some(crate::catalogue::Settings {
        epg_dir: args.epg_dir.clone(),
        epg_sources,
        tls,
        retention: (args.epg_retention_hours > 0)
            .then(|| time::Duration::hours(i64::from(args.epg_retention_hours))),
        dvr,
        dvr_every: Duration::from_millis(args.dvr_interval_ms.max(100)),
        dvr_plan: crate::dvr::plan::Settings {
            horizon: time::Duration::minutes(i64::from(args.dvr_horizon_minutes)),
        },
    }))
}

fn policy_cache_dir(args: &ServeArgs) -> Option<PathBuf> {
    match args.policy_cache_dir.as_deref() {
        Some("off") => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => default_policy_cache_dir(),
    }
}

/// Where compiled policies are kept when no folder is given:
/// $STATE_DIRECTORY/policy-cache under systemd, else
/// $XDG_CACHE_HOME/edgeward/policies or ~/.cache/edgeward/policies. The
/// offline `policy` commands share it, so that a 12 MB JavaScript policy is
/// compiled once, not at every `policy test`, `explain` or `replay`.
pub fn default_policy_cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("STATE_DIRECTORY")
        .map(|d| d.join("policy-cache"))
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("edgeward/policies")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/edgeward/policies")))
}

fn admin_token(args: &ServeArgs) -> anyhow::Result<Option<Token>> {
    if let Some(path) = &args.admin_token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read admin token file {}", path.display()))?;
        return Token::new(&text)
            .map(Some)
            .with_context(|| format!("admin token file {} is empty", path.display()));
    }
    Ok(std::env::var("EDGEWARD_ADMIN_TOKEN")
        .ok()
        .and_then(|t| Token::new(&t)))
}

/// Prints the bound address (the end-to-end tests read this line) and a
/// request that works against the loaded topology.
fn announce(
    bound: http::Bound,
    workers: usize,
    topology: &Topology,
    admin: Option<(SocketAddr, bool)>,
) {
    let secure = bound.tls;
    let quic = bound.h3;
    let bound = bound.plain;
    let shown = if bound.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), bound.port())
    } else {
        bound
    };
    let live = topology.channels.iter().find_map(|c| {
        let s = c.streams.iter().find(|s| s.active && c.active)?;
        let (proto, ext, steered) = match s.protocol {
            topology::Protocol::Hls => ("hls", "m3u8", "hls"),
            topology::Protocol::Mpd => ("mpd", "mpd", "dash"),
        };
        let suffix = match s.encryption {
            topology::Encryption::None => "",
            topology::Encryption::Widevine => "_wv",
            topology::Encryption::Playready => "_pr",
            topology::Encryption::Cenc => "_cenc",
        };
        Some((
            format!("/btv/live/{proto}{suffix}/{}.{ext}", c.epg_id),
            format!("/steer/{steered}{suffix}/{}", c.epg_id),
        ))
    });
    let example = live
        .as_ref()
        .map_or_else(|| "/vod/example.mp4".to_string(), |(l, _)| l.clone());
    // With pathways, a steering poll too.
    let steering = live
        .filter(|_| topology.pathways.iter().any(|p| p.active))
        .map(|(_, s)| s);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "edgeward listening on http://{bound} ({workers} workers)"
    );
    let _ = writeln!(out, "try: curl -i http://{shown}{example}");
    if let Some(steering) = steering {
        let _ = writeln!(out, "try steering: curl -s http://{shown}{steering}");
    }
    if let Some(secure) = secure {
        let _ = writeln!(
            out,
            "edgeward listening on https://{secure} (HTTP/2, HTTP/1.1)"
        );
    }
    if let Some(quic) = quic {
        let _ = writeln!(out, "edgeward listening on h3://{quic} (HTTP/3, UDP)");
    }
    if let Some((admin, tls)) = admin {
        let scheme = if tls { "https" } else { "http" };
        let _ = writeln!(
            out,
            "edgeward admin API on {scheme}://{admin} (the console: {scheme}://{admin}/ui/)"
        );
    }
    let _ = out.flush();
}

/// The policy given with --policy (and its configuration), or the
/// built-in default.
pub(super) fn policy_source(args: &ServeArgs) -> anyhow::Result<PolicySource> {
    Ok(match &args.policy {
        Some(path) => PolicySource::from_files(path, args.policy_config.as_deref())?,
        None => PolicySource::builtin_nearest(),
    })
}
