//! The rounds of the DVR worker, each from a fresh snapshot (see
//! [`super::plan`] for the rules): [`schedule`] writes the intents, asks
//! the DVRs and writes their answers; [`follow`] asks the state of the
//! recordings that should have started or ended; [`expire`] removes old
//! programmes, telling the DVRs to remove their recordings first. Each
//! round's changes are one batch through the one door, written by
//! `dvr scheduler` (so the audit says who); if the batch is refused as a
//! whole (an operator deleted a programme meanwhile), its changes are
//! written one by one, so one gone record does not hold up the others.

use super::plan::{self, Keyed, Pending};
use super::secrets::SecretsFile;
use super::soap::SoapDvr;
use super::{Dvr, DvrError};
use crate::control::{Change, ChangeError, Control, Writer};
use crate::topology::Topology;
use crate::topology::edit::{Edit, Op};
use crate::topology::entity::{Kind, RecordEntity};
use crate::topology::model::RecordStatus;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Instant;
use time::OffsetDateTime;

/// Who the worker's changes are written by.
pub const WHO: &str = "dvr scheduler";

/// How the worker reaches the DVRs.
pub struct Drivers {
    secrets: Option<SecretsFile>,
    tls: Arc<rustls::ClientConfig>,
}

impl Drivers {
    /// The DVRs' SOAP APIs, with credentials from `secrets` if given.
    pub fn new(secrets: Option<SecretsFile>, tls: Arc<rustls::ClientConfig>) -> Self {
        Drivers { secrets, tls }
    }

    /// The API of DVR server `id`, when it has a management address.
    pub fn driver(&self, t: &Topology, id: &str) -> Option<Arc<dyn Dvr>> {
        let i = t.server_index(id)?;
        let m = t.network.servers[i as usize].management.as_ref()?;
        let secrets = self.secrets.as_ref().map(SecretsFile::current);
        let credentials = secrets.as_ref().and_then(|s| s.for_server(id));
        let port = u16::try_from(m.port).ok()?;
        match SoapDvr::new(&m.host, port, credentials, self.tls.clone()) {
            Ok(d) => Some(Arc::new(d)),
            Err(e) => {
                tracing::warn!(server = id, "{e}");
                None
            }
        }
    }
}

/// Calls `op` of a DVR, counted and timed.
async fn counted<T>(
    control: &Control,
    operation: &'static str,
    call: impl std::future::Future<Output = Result<T, DvrError>>,
) -> Result<T, DvrError> {
    let started = Instant::now();
    let result = call.await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(DvrError::Fault { .. }) => "fault",
        Err(DvrError::Transport(_)) => "error",
    };
    control
        .metrics
        .dvr
        .call(operation, outcome, started.elapsed().as_secs_f64());
    result
}

fn replace(k: &Keyed, record: RecordEntity) -> Edit {
    Edit {
        op: Op::Replace,
        kind: Kind::Records,
        key: Some(k.key.clone()),
        value: Some(serde_json::to_value(record).expect("a record serialises")),
        if_match: None,
    }
}

fn delete(kind: Kind, key: String) -> Edit {
    Edit {
        op: Op::Delete,
        kind,
        key: Some(key),
        value: None,
        if_match: None,
    }
}

/// Writes `edits` as one batch, or one by one if the batch is refused;
/// how many were written.
async fn write(writer: &dyn Writer, edits: Vec<Edit>, what: &str) -> usize {
    if edits.is_empty() {
        return 0;
    }
    let n = edits.len();
    match writer
        .write(Change::Entities(edits.clone()), None, WHO)
        .await
    {
        Ok(_) => n,
        Err(ChangeError::Entity(e)) if n > 1 => {
            tracing::warn!(
                "DVR worker: {what}: the batch was refused ({e}); writing its changes one by one"
            );
            let mut written = 0;
            for edit in edits {
                match writer.write(Change::Entities(vec![edit]), None, WHO).await {
                    Ok(_) => written += 1,
                    Err(e) => tracing::warn!("DVR worker: {what}: {e}"),
                }
            }
            written
        }
        Err(e) => {
            tracing::warn!("DVR worker: {what}: {e}");
            0
        }
    }
}

/// Writes the intents for the programmes about to start, asks the DVRs
/// for them (and for intents left unanswered), and writes the answers.
pub async fn schedule(
    control: &Control,
    writer: &dyn Writer,
    drivers: &Drivers,
    settings: plan::Settings,
) {
    let now = OffsetDateTime::now_utc();
    let t = control.topology.snapshot();
    let mut rng = SmallRng::from_os_rng();
    let (intents, skipped) = plan::intents(&t, now, settings, &mut |n| rng.random_range(0..n));
    for s in skipped {
        tracing::debug!(
            channel = s.channel,
            "DVR worker: not recorded: {}",
            s.reason
        );
    }
    let creates: Vec<Edit> = intents
        .into_iter()
        .map(|r| Edit {
            op: Op::Create,
            kind: Kind::Records,
            key: None,
            value: Some(serde_json::to_value(r).expect("a record serialises")),
            if_match: None,
        })
        .collect();
    write(writer, creates, "recording intents").await;

    let t = control.topology.snapshot();
    let pending = plan::pending(&t, OffsetDateTime::now_utc(), &mut |n| {
        rng.random_range(0..n)
    });
    let mut answers = Vec::new();
    for p in pending {
        match p {
            Pending::Fail(k, why) => {
                tracing::warn!(record = k.key, "DVR worker: recording in error: {why}");
                control.metrics.dvr.recording("failed");
                let mut r = k.record.clone();
                r.status = RecordStatus::Error;
                r.error = Some(why);
                answers.push(replace(&k, r));
            }
            Pending::Send(k, s) => {
                let Some(dvr) = drivers.driver(&t, &k.record.server) else {
                    continue;
                };
                match counted(control, "schedule", dvr.schedule(&s)).await {
                    Ok(path) => {
                        tracing::info!(
                            record = k.key,
                            placement = s.placement,
                            path,
                            "DVR recording scheduled"
                        );
                        control.metrics.dvr.recording("scheduled");
                        let mut r = k.record.clone();
                        r.path = path;
                        answers.push(replace(&k, r));
                    }
                    Err(DvrError::Fault { code, message }) => {
                        tracing::warn!(
                            record = k.key,
                            placement = s.placement,
                            "DVR refused the recording: {code}: {message}"
                        );
                        control.metrics.dvr.recording("failed");
                        let mut r = k.record.clone();
                        r.status = RecordStatus::Error;
                        r.error = Some(clip(format!("{code}: {message}")));
                        answers.push(replace(&k, r));
                    }
                    Err(e) => {
                        // Asked again next round, with the same placement.
                        tracing::warn!(record = k.key, "{e}; asked again next round");
                    }
                }
            }
        }
    }
    write(writer, answers, "DVR answers").await;
}

/// A DVR's text, as a record's `error` holds it.
fn clip(text: String) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.len() <= 1024 {
        return text;
    }
    let mut end = 1024;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Asks the DVRs the state of the recordings that should have started or
/// ended, and writes what changed.
pub async fn follow(control: &Control, writer: &dyn Writer, drivers: &Drivers) {
    let t = control.topology.snapshot();
    let mut changes = Vec::new();
    for k in plan::polls(&t, OffsetDateTime::now_utc()) {
        let Some(dvr) = drivers.driver(&t, &k.record.server) else {
            continue;
        };
        let mut r = k.record.clone();
        match counted(control, "status", dvr.status(&k.record.path)).await {
            Ok(status) if status == k.record.status => continue,
            Ok(status) => {
                tracing::info!(
                    record = k.key,
                    from = k.record.status.name(),
                    to = status.name(),
                    "DVR recording state changed"
                );
                match status {
                    RecordStatus::Completed => control.metrics.dvr.recording("completed"),
                    RecordStatus::Error => control.metrics.dvr.recording("failed"),
                    _ => {}
                }
                r.status = status;
            }
            Err(DvrError::Fault { code, message }) => {
                tracing::warn!(
                    record = k.key,
                    "DVR fault on getRecording: {code}: {message}"
                );
                control.metrics.dvr.recording("failed");
                r.status = RecordStatus::Error;
                r.error = Some(clip(format!("{code}: {message}")));
            }
            Err(e) => {
                tracing::warn!(record = k.key, "{e}");
                continue;
            }
        }
        changes.push(replace(&k, r));
    }
    write(writer, changes, "recording states").await;
}

/// Removes the programmes that started more than `keep` ago with their
/// records, after telling the DVRs to remove the recordings. A programme
/// one of whose DVRs does not answer stays for the next round; a DVR that
/// no longer knows the recording (a fault) counts as removed. Returns
/// the number of programmes removed.
pub async fn expire(
    control: &Control,
    writer: &dyn Writer,
    drivers: Option<&Drivers>,
    keep: time::Duration,
) -> usize {
    let t = control.topology.snapshot();
    let mut edits = Vec::new();
    let mut programmes = 0;
    'programmes: for e in plan::expired(&t, OffsetDateTime::now_utc(), keep) {
        for k in &e.records {
            let on_dvr = !k.record.path.is_empty() && k.record.status != RecordStatus::Removed;
            if let (true, Some(dvr)) =
                (on_dvr, drivers.and_then(|d| d.driver(&t, &k.record.server)))
            {
                match counted(control, "remove", dvr.remove(&k.record.path)).await {
                    Ok(()) => control.metrics.dvr.recording("removed"),
                    Err(DvrError::Fault { code, message }) => {
                        tracing::info!(
                            record = k.key,
                            "DVR did not remove the recording ({code}: {message}); removed here"
                        );
                    }
                    Err(err) => {
                        tracing::warn!(
                            record = k.key,
                            "{err}; the programme {:?} is kept until its DVR answers",
                            e.program
                        );
                        continue 'programmes;
                    }
                }
            }
        }
        for k in e.records {
            edits.push(delete(Kind::Records, k.key));
        }
        edits.push(delete(Kind::Programs, e.program));
        programmes += 1;
    }
    if edits.is_empty() {
        return 0;
    }
    match writer
        .write(Change::Entities(edits), None, "epg retention")
        .await
    {
        Ok(_) => {
            control.metrics.epg.programmes("removed", programmes);
            programmes
        }
        Err(e) => {
            tracing::warn!("EPG retention: {e}");
            0
        }
    }
}
