//! A watched folder of guide files (`--epg-dir`), as the old system had:
//! the `.xml` files directly in it are imported in name order; one
//! imported moves to `processed/`, one that cannot be (malformed, only
//! unknown channels, refused by validation) to `failed/` with the reason
//! beside it in `NAME.reason`; one whose write failed for a reason of the
//! moment (etcd away, a conflict) stays for the next look. A file changed
//! within the last second is left for the next look too, as it may still
//! be being written (write elsewhere and rename into the folder to be
//! sure).

use crate::control::{Control, Writer};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long a file must have been left alone before it is read.
const SETTLED: Duration = Duration::from_secs(1);

/// The guide files ready in `dir`, in name order.
fn ready(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let now = SystemTime::now();
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| !n.starts_with('.') && n.to_ascii_lowercase().ends_with(".xml"))
        })
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= SETTLED)
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// `file` moved into `dir/sub/`, under a new name if its own is taken.
fn move_to(file: &Path, dir: &Path, sub: &str) -> std::io::Result<PathBuf> {
    let target_dir = dir.join(sub);
    std::fs::create_dir_all(&target_dir)?;
    let name = file
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut target = target_dir.join(&name);
    let mut n = 1;
    while target.exists() {
        target = target_dir.join(format!("{name}.{n}"));
        n += 1;
    }
    std::fs::rename(file, &target)?;
    Ok(target)
}

/// Imports every file ready in `dir`.
pub async fn import_ready(dir: &Path, control: &Control, writer: &dyn Writer) {
    for file in ready(dir) {
        let name = file.display().to_string();
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(file = %name, "EPG file unreadable: {e}");
                continue;
            }
        };
        let who = format!(
            "epg folder ({})",
            file.file_name().unwrap_or_default().to_string_lossy()
        );
        match super::import(control, writer, bytes, &who).await {
            Ok(done) => {
                let report = &done.report;
                for (channel, r) in &report.channels {
                    tracing::info!(
                        file = %name,
                        channel = %channel,
                        created = r.created,
                        replaced = r.replaced,
                        too_soon = r.too_soon,
                        "EPG imported"
                    );
                }
                for channel in &report.unknown_channels {
                    tracing::warn!(file = %name, channel = %channel, "EPG: linear channel does not exist; its programmes were left out");
                }
                let refused = done.refused();
                if refused.is_empty() {
                    if done.changes == 0 {
                        tracing::info!(file = %name, "EPG file changed nothing");
                    }
                    if let Err(e) = move_to(&file, dir, "processed") {
                        tracing::error!(file = %name, "EPG file imported but not moved to processed/: {e}");
                    }
                } else {
                    let reason: Vec<String> = refused
                        .iter()
                        .map(|(c, why)| {
                            format!("channel {c:?} refused (its programmes unchanged): {why}")
                        })
                        .collect();
                    set_aside(
                        &file,
                        dir,
                        &name,
                        &format!(
                            "{}\n(the file's other channels were imported)",
                            reason.join("\n")
                        ),
                    );
                }
            }
            Err(e) if e.transient() => {
                tracing::warn!(file = %name, "EPG file not imported yet (tried again later): {e}");
            }
            Err(e) => {
                tracing::error!(file = %name, "EPG file refused: {e}");
                set_aside(&file, dir, &name, &e.to_string());
            }
        }
    }
}

/// Moves a refused file to `failed/`, with the reason beside it.
fn set_aside(file: &Path, dir: &Path, name: &str, why: &str) {
    match move_to(file, dir, "failed") {
        Ok(moved) => {
            let mut reason = moved.into_os_string();
            reason.push(".reason");
            if let Err(w) = std::fs::write(&reason, format!("{why}\n")) {
                tracing::error!(file = %name, "cannot write the reason beside it: {w}");
            }
        }
        Err(m) => {
            tracing::error!(file = %name, "EPG file refused and not moved to failed/: {m}")
        }
    }
}
