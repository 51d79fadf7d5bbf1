//! Programme guides (EPG): files parsed ([`parse`]) and turned, by the old
//! system's rules ([`rules`]), into one batch of entity changes that goes
//! through the one door like any other (validated, applied to every node,
//! audited), or is refused whole ([`import`]).
//!
//! Sources: `POST /epg` on the admin API, `edgeward ctl epg import FILE`,
//! and a watched folder ([`folder`], `--epg-dir`) that the fleet's
//! catalogue worker reads ([`crate::catalogue`], which also runs the
//! retention and the DVR recordings).

pub mod fetch;
pub mod folder;
pub mod parse;
pub mod rules;

use crate::control::{Change, ChangeError, Control, Writer};

/// Why a guide was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not a guide, or not one that can be imported (the
    /// message names line, column, programme, attribute and value).
    #[error("EPG file: {0}")]
    Bad(String),
    /// Every channel of the file is unknown (nothing changed).
    #[error("EPG file: linear channel does not exist: {} (nothing changed)", .0.join(", "))]
    UnknownChannels(Vec<String>),
    /// The batch was refused or could not be written.
    #[error(transparent)]
    Refused(#[from] ChangeError),
}

impl ImportError {
    /// Whether importing the same file again may succeed (the file is
    /// fine; the write failed for a reason of the moment).
    pub fn transient(&self) -> bool {
        matches!(
            self,
            ImportError::Refused(ChangeError::Conflict { .. } | ChangeError::Unavailable(_))
        )
    }
}

/// What an import did.
#[derive(Debug)]
pub struct Imported {
    /// Per channel.
    pub report: rules::Report,
    /// How many entity changes were made, in how many batches.
    pub changes: usize,
    /// The batches written (one per channel that changed).
    pub batches: usize,
    /// The topology version and revision after the last batch, and
    /// whether this node serves it already.
    pub last: Option<(u64, u64, bool)>,
}

impl Imported {
    /// The channels whose changes were refused.
    pub fn refused(&self) -> Vec<(&str, &str)> {
        self.report
            .channels
            .iter()
            .filter_map(|(c, r)| Some((c.as_str(), r.refused.as_deref()?)))
            .collect()
    }
}

/// About how many changes an import writes in one batch: few snapshots
/// (each copies the programme index's shards it touches), and a batch's
/// edits, before and after values and audit entries stay small (about
/// 2 KB a change; 5,000: a 50 MB guide in about 2 s, its peak memory
/// about 70 MB above the engine holding it, see the README).
pub const BATCH: usize = 5000;

/// Plans and writes `channels` as one batch against the topology of the
/// moment; whether it was written (a refusal is noted in each channel's
/// report; an error of the moment stops the import).
async fn write_group(
    control: &Control,
    writer: &dyn Writer,
    who: &str,
    now: time::OffsetDateTime,
    channels: &[(&str, Vec<&parse::Programme>)],
    done: &mut Imported,
) -> Result<bool, ImportError> {
    let topology = control.topology.snapshot();
    let mut edits = Vec::new();
    for (channel, programmes) in channels {
        let r = done.report.channels.entry(channel.to_string()).or_default();
        *r = rules::ChannelReport::default();
        edits.extend(rules::plan_channel(
            &topology,
            channel,
            programmes,
            now,
            control.epg_rules,
            r,
        ));
    }
    drop(topology);
    if edits.is_empty() {
        return Ok(true);
    }
    let n = edits.len();
    match writer.write(Change::Entities(edits), None, who).await {
        Ok(changed) => {
            done.changes += n;
            done.batches += 1;
            for (channel, _) in channels {
                if let Some(r) = done.report.channels.get_mut(*channel) {
                    cancel(control, std::mem::take(&mut r.in_flight)).await;
                }
            }
            if let crate::control::Outcome::Entities {
                version, revision, ..
            } = changed.outcome
            {
                done.last = Some((version, revision, changed.applied_here));
            }
            Ok(true)
        }
        Err(e @ (ChangeError::Conflict { .. } | ChangeError::Unavailable(_))) => {
            Err(ImportError::Refused(e))
        }
        Err(e) => {
            if let [(channel, _)] = channels {
                tracing::warn!(
                    channel,
                    who,
                    "EPG: the channel's programmes were refused: {e}"
                );
                if let Some(r) = done.report.channels.get_mut(*channel) {
                    r.refused = Some(e.to_string());
                }
            }
            Ok(false)
        }
    }
}

/// Cancels on their DVRs the recordings of replaced programmes that were
/// still to be made (best effort: a DVR that does not answer is told in
/// the log; one that no longer knows the recording has nothing to cancel).
async fn cancel(control: &Control, recordings: Vec<(String, String)>) {
    if recordings.is_empty() {
        return;
    }
    let Some(drivers) = control.dvr.get() else {
        tracing::warn!(
            recordings = recordings.len(),
            "EPG: programmes with recordings scheduled on a DVR were replaced, but this node \
             does not run --dvr: cancel them on the DVR, or import guides on the node that does"
        );
        return;
    };
    let topology = control.topology.snapshot();
    for (server, path) in recordings {
        let Some(dvr) = drivers.driver(&topology, &server) else {
            continue;
        };
        let started = std::time::Instant::now();
        let result = dvr.cancel(&path).await;
        let outcome = match &result {
            Ok(()) => "ok",
            Err(crate::dvr::DvrError::Fault { .. }) => "fault",
            Err(crate::dvr::DvrError::Transport(_)) => "error",
        };
        control
            .metrics
            .dvr
            .call("cancel", outcome, started.elapsed().as_secs_f64());
        match result {
            Ok(()) => tracing::info!(
                server,
                path,
                "DVR recording of a replaced programme cancelled"
            ),
            Err(e) => tracing::warn!(
                server,
                path,
                "DVR recording of a replaced programme not cancelled: {e}"
            ),
        }
    }
}

/// Imports a guide: parsed, then planned and written a few channels at a
/// time (each channel's window replaced whole or not at all) against the
/// topology of the moment, by `who`. A channel refused by validation is
/// reported and the others go on; a write that fails for a reason of the
/// moment stops the import with that error (importing the same file
/// again is safe: a window replaced again with the same programmes is
/// the same).
///
/// An owned file (`Vec`, `Bytes`) is let go once parsed, so that its
/// bytes are not held while its programmes are written.
pub async fn import(
    control: &Control,
    writer: &dyn Writer,
    bytes: impl AsRef<[u8]> + Send,
    who: &str,
) -> Result<Imported, ImportError> {
    let result = import_counted(control, writer, bytes, who).await;
    let metrics = &control.metrics.epg;
    match &result {
        Ok(done) => {
            metrics.file(if done.refused().is_empty() {
                "imported"
            } else {
                "partly"
            });
            let applied = || {
                done.report
                    .channels
                    .values()
                    .filter(|r| r.refused.is_none())
            };
            metrics.programmes("created", applied().map(|r| r.created).sum());
            metrics.programmes("replaced", applied().map(|r| r.replaced).sum());
        }
        Err(e) if !e.transient() => metrics.file("refused"),
        Err(_) => {}
    }
    result
}

async fn import_counted(
    control: &Control,
    writer: &dyn Writer,
    bytes: impl AsRef<[u8]> + Send,
    who: &str,
) -> Result<Imported, ImportError> {
    let guide = parse::parse(bytes.as_ref()).map_err(|e| ImportError::Bad(e.to_string()))?;
    drop(bytes);
    let groups = rules::group(&guide).map_err(|e| ImportError::Bad(e.to_string()))?;
    let mut done = Imported {
        report: rules::Report {
            dialect: guide.dialect.name(),
            ..Default::default()
        },
        changes: 0,
        batches: 0,
        last: None,
    };
    let known: Vec<_> = {
        let topology = control.topology.snapshot();
        groups
            .into_iter()
            .filter(|(channel, _)| {
                let known = topology.channel(channel).is_some();
                if !known {
                    done.report.unknown_channels.push(channel.to_string());
                }
                known
            })
            .collect()
    };
    if known.is_empty() && !done.report.unknown_channels.is_empty() {
        return Err(ImportError::UnknownChannels(done.report.unknown_channels));
    }
    let now = time::OffsetDateTime::now_utc();
    // Channels are written together, whole, in batches of about BATCH
    // changes: few snapshots for a guide of many small channels, little
    // memory for one of many large ones. A batch refused is written again
    // channel by channel, so that only the channels at fault are refused.
    let mut group: Vec<(&str, Vec<&parse::Programme>)> = Vec::new();
    let mut planned = 0;
    let mut known = known.into_iter().peekable();
    while let Some((channel, programmes)) = known.next() {
        let topology = control.topology.snapshot();
        let mut r = rules::ChannelReport::default();
        planned += rules::plan_channel(
            &topology,
            channel,
            &programmes,
            now,
            control.epg_rules,
            &mut r,
        )
        .len();
        done.report.channels.insert(channel.to_string(), r);
        group.push((channel, programmes));
        if planned < BATCH && known.peek().is_some() {
            continue;
        }
        planned = 0;
        let batch = std::mem::take(&mut group);
        if write_group(control, writer, who, now, &batch, &mut done).await? || batch.len() == 1 {
            continue;
        }
        for one in batch {
            write_group(
                control,
                writer,
                who,
                now,
                std::slice::from_ref(&one),
                &mut done,
            )
            .await?;
        }
    }
    Ok(done)
}
