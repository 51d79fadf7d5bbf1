//! Files the engine writes for itself, written so that a crash or a power
//! cut at any moment leaves either the old file or the new one, never a
//! mix, and (for the sealed ones) checked when read, so that a file
//! damaged on disk is reported and ignored rather than used.
//!
//! [`write`]: to a temporary file beside it, synced, renamed over it, and
//! the directory synced (the rename itself is then on disk).
//! [`write_sealed`] also appends a seal (a marker and the SHA-256 of the
//! contents); [`read_sealed`] gives the contents back only if the seal
//! holds. Used for what is rebuilt from elsewhere when it is bad: the
//! compiled-policy cache (deserialised as machine code, so never from a
//! file that does not verify) and a fleet node's disk copy of the
//! configuration.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// The seal's marker, before the 32 bytes of SHA-256.
const MAGIC: &[u8; 8] = b"EWSEAL1\0";
/// The seal's length.
const SEAL: usize = MAGIC.len() + 32;

/// Writes `bytes` to `path` atomically and durably.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_parts(path, &[bytes])
}

/// Writes `bytes` and their seal to `path` atomically and durably.
pub fn write_sealed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let hash = Sha256::digest(bytes);
    write_parts(path, &[bytes, MAGIC, &hash])
}

fn write_parts(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // Unique per process and call: two writers never share a temporary.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let written = (|| {
        let mut f = File::create(&tmp)?;
        for part in parts {
            f.write_all(part)?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Syncs the directory holding `path`, so that a rename into it is on disk.
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// What a sealed file held.
#[derive(Debug, PartialEq, Eq)]
pub enum Sealed {
    /// The contents, verified.
    Verified(Vec<u8>),
    /// A file with no seal (written by an engine from before seals):
    /// the caller decides whether it may be used.
    Unsealed(Vec<u8>),
}

/// Reads a file written by [`write_sealed`]: `None` if there is none; an
/// error naming the file if it cannot be read or its seal does not hold
/// (damaged or cut short).
pub fn read_sealed(path: &Path) -> Result<Option<Sealed>, String> {
    let mut bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let Some(at) = bytes.len().checked_sub(SEAL) else {
        return Ok(Some(Sealed::Unsealed(bytes)));
    };
    if &bytes[at..at + MAGIC.len()] != MAGIC {
        // Perhaps a sealed file cut short: its marker is then further in.
        if bytes.windows(MAGIC.len()).any(|w| w == MAGIC) {
            return Err(format!(
                "{}: damaged or cut short (its seal is not at its end)",
                path.display()
            ));
        }
        return Ok(Some(Sealed::Unsealed(bytes)));
    }
    let hash = Sha256::digest(&bytes[..at]);
    if hash.as_slice() != &bytes[at + MAGIC.len()..] {
        return Err(format!(
            "{}: damaged (its contents do not match their SHA-256)",
            path.display()
        ));
    }
    bytes.truncate(at);
    Ok(Some(Sealed::Verified(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_file_reads_back_and_any_damage_is_named() {
        let dir = std::env::temp_dir().join(format!("edgeward-durable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.bin");
        assert_eq!(read_sealed(&path).unwrap(), None);
        write_sealed(&path, b"contents").unwrap();
        assert_eq!(
            read_sealed(&path).unwrap(),
            Some(Sealed::Verified(b"contents".to_vec()))
        );
        // No temporary left beside it.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // A byte changed.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[2] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_sealed(&path).unwrap_err().contains("do not match"));
        // Cut short.
        write_sealed(&path, b"contents").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(read_sealed(&path).unwrap_err().contains("cut short"));
        // An older engine's file, with no seal.
        write(&path, b"old").unwrap();
        assert_eq!(
            read_sealed(&path).unwrap(),
            Some(Sealed::Unsealed(b"old".to_vec()))
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
