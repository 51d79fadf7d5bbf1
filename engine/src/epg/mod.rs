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

use crate::control::{Change, ChangeError, Changed, Control, Writer};

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

/// Imports a guide: parsed, planned against the current topology at the
/// current time, and written as one batch by `who`. The report says what
/// it did per channel; the change is none when nothing was to change.
pub async fn import(
    control: &Control,
    writer: &dyn Writer,
    bytes: &[u8],
    who: &str,
) -> Result<(rules::Report, Option<Changed>), ImportError> {
    let result = import_counted(control, writer, bytes, who).await;
    let metrics = &control.metrics.epg;
    match &result {
        Ok((report, _)) => {
            metrics.file("imported");
            metrics.programmes("created", report.channels.values().map(|r| r.created).sum());
            metrics.programmes(
                "replaced",
                report.channels.values().map(|r| r.replaced).sum(),
            );
        }
        Err(e) if !e.transient() => metrics.file("refused"),
        Err(_) => {}
    }
    result
}

async fn import_counted(
    control: &Control,
    writer: &dyn Writer,
    bytes: &[u8],
    who: &str,
) -> Result<(rules::Report, Option<Changed>), ImportError> {
    let guide = parse::parse(bytes).map_err(|e| ImportError::Bad(e.to_string()))?;
    let topology = control.topology.snapshot();
    let now = time::OffsetDateTime::now_utc();
    let (edits, report) = rules::plan(&topology, &guide, now, Default::default())
        .map_err(|e| ImportError::Bad(e.to_string()))?;
    if report.channels.is_empty() && !report.unknown_channels.is_empty() {
        return Err(ImportError::UnknownChannels(report.unknown_channels));
    }
    if edits.is_empty() {
        return Ok((report, None));
    }
    let changed = writer.write(Change::Entities(edits), None, who).await?;
    Ok((report, Some(changed)))
}
