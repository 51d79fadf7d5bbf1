//! The catalogue worker: what keeps programmes and recordings current
//! without an operator, as the old system's cluster singletons did. Every
//! second, while this node leads ([`crate::cluster::lead`]; a single node
//! always does), it imports the guide files waiting in `--epg-dir`
//! ([`crate::epg::folder`]) and those due from `--epg-sources`
//! ([`crate::epg::fetch`]); every `--dvr-interval-ms` (15 s) it schedules
//! and follows the DVR recordings ([`crate::dvr::worker`]); every 30 s it
//! removes what is past retention, recordings first. A node that takes
//! over finds the intents its predecessor wrote and had no answer for,
//! and asks again with the same placement, so a crash between the DVR
//! call and the record does not schedule twice.

use crate::cluster::lead::Leadership;
use crate::control::{Control, Writer};
use crate::dvr::{plan, worker};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(30);

/// What the worker does.
pub struct Settings {
    /// The watched folder of guide files.
    pub epg_dir: Option<PathBuf>,
    /// Guides fetched over HTTP(S) or FTP.
    pub epg_sources: Vec<crate::epg::fetch::Source>,
    /// TLS settings of the HTTPS fetches.
    pub tls: Arc<rustls::ClientConfig>,
    /// Programmes older than this are removed (none: never).
    pub retention: Option<time::Duration>,
    /// The DVRs, when this node schedules recordings.
    pub dvr: Option<Arc<worker::Drivers>>,
    /// Time between DVR rounds.
    pub dvr_every: Duration,
    /// The DVR rules.
    pub dvr_plan: plan::Settings,
}

/// Runs until `stop` is set.
pub async fn run(
    control: Arc<Control>,
    writer: Arc<dyn Writer>,
    leadership: Arc<Leadership>,
    mut settings: Settings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_dvr, mut last_retention): (Option<Instant>, Option<Instant>) = (None, None);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let leading = leadership.leading();
        control.metrics.dvr.leading(leading);
        if !leading {
            // A node that leads again starts its rounds afresh.
            (last_dvr, last_retention) = (None, None);
            continue;
        }
        if let Some(dir) = &settings.epg_dir {
            crate::epg::folder::import_ready(dir, &control, &*writer).await;
        }
        for source in settings.epg_sources.iter_mut().filter(|s| s.due()) {
            source.fetch(&control, &*writer, &settings.tls).await;
        }
        if let Some(drivers) = &settings.dvr
            && last_dvr.is_none_or(|t| t.elapsed() >= settings.dvr_every)
        {
            last_dvr = Some(Instant::now());
            worker::schedule(&control, &*writer, drivers, settings.dvr_plan).await;
            worker::follow(&control, &*writer, drivers).await;
        }
        if let Some(keep) = settings.retention
            && last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY)
        {
            last_retention = Some(Instant::now());
            let n = worker::expire(&control, &*writer, settings.dvr.as_deref(), keep).await;
            if n > 0 {
                tracing::info!(programmes = n, "EPG retention removed old programmes");
            }
        }
    }
}
