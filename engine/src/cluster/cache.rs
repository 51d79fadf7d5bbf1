//! The node's disk copy of the last good configuration from etcd: every
//! configuration key with its revisions, plus the blobs they point at (the
//! topology record's document and the policy components). Written after
//! each applied change (atomically and sealed, [`crate::durable`]), read
//! and verified at start,
//! so that a node restarted while etcd is down serves what it served
//! before. Blobs are files of their own beside it (`{file}.blobs/{sha256}`),
//! written once: an entity change rewrites the small list of keys, not a
//! document of a million subnets.

use super::etcd::KeyValue;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Format version of the file (1: blobs inside it; 2: blobs beside it).
const FORMAT: u32 = 2;

/// What the file holds.
#[derive(Debug)]
pub struct DiskCopy {
    /// The key prefix it was read from.
    pub prefix: String,
    /// Highest revision applied.
    pub revision: i64,
    /// The etcd cluster it came from.
    pub cluster_id: u64,
    /// When it was written, RFC 3339.
    pub saved_at: String,
    /// Every configuration key.
    pub kvs: Vec<KeyValue>,
    /// Blobs by SHA-256.
    pub blobs: Vec<(String, Bytes)>,
}

/// The file's layout. Saving borrows everything (`Vec<u8>` fields read as
/// owned bytes, written from slices); the documents themselves are blobs
/// beside it, so the file is the small list of keys.
#[derive(Serialize, Deserialize)]
struct File<Kvs, Blobs> {
    format: u32,
    prefix: String,
    revision: i64,
    #[serde(default)]
    cluster_id: u64,
    saved_at: String,
    kvs: Kvs,
    blobs: Blobs,
    /// The blobs kept beside the file, by SHA-256 (format 2).
    #[serde(default)]
    blob_files: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Kv<B> {
    key: String,
    value: B,
    create_revision: i64,
    mod_revision: i64,
}

#[derive(Serialize, Deserialize)]
struct Blob<B> {
    sha256: String,
    bytes: B,
}

type FileIn = File<Vec<Kv<serde_bytes::ByteBuf>>, Vec<Blob<serde_bytes::ByteBuf>>>;

/// Writes `copy` to `path` atomically.
pub fn save(path: &Path, copy: &DiskCopy) -> std::io::Result<()> {
    let kvs: Vec<Kv<&serde_bytes::Bytes>> = copy
        .kvs
        .iter()
        .map(|kv| Kv {
            key: kv.key.clone(),
            value: serde_bytes::Bytes::new(&kv.value),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
        })
        .collect();
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    // Blobs first, each once (named by its content), so that the list
    // never names one that is not there.
    let dir = blob_dir(path);
    std::fs::create_dir_all(&dir)?;
    let mut names = Vec::with_capacity(copy.blobs.len());
    for (hash, bytes) in &copy.blobs {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let file = dir.join(hash);
        if !file.exists() {
            crate::durable::write(&file, bytes)?;
        }
        names.push(hash.clone());
    }
    let blobs: Vec<Blob<&serde_bytes::Bytes>> = Vec::new();
    let file = File {
        format: FORMAT,
        prefix: copy.prefix.clone(),
        revision: copy.revision,
        cluster_id: copy.cluster_id,
        saved_at: copy.saved_at.clone(),
        kvs,
        blobs,
        blob_files: names.clone(),
    };
    // Sealed: a copy damaged on disk is reported and ignored at start,
    // never applied.
    let bytes = rmp_serde::to_vec_named(&file).map_err(std::io::Error::other)?;
    crate::durable::write_sealed(path, &bytes)?;
    // Blobs no longer named go.
    for entry in std::fs::read_dir(&dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !names.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Where the blobs of the copy at `path` are kept.
fn blob_dir(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".blobs");
    path.with_file_name(name)
}

/// Reads the copy at `path`: `None` if there is no file; an error naming
/// the problem if it cannot be used. Blobs whose content does not match
/// their hash are dropped (what needs them is then refused, not applied).
pub fn load(path: &Path) -> Result<Option<DiskCopy>, String> {
    let bytes = match crate::durable::read_sealed(path)? {
        None => return Ok(None),
        // A copy from an engine from before seals: its format is checked
        // below, its blobs against their hashes.
        Some(crate::durable::Sealed::Verified(b) | crate::durable::Sealed::Unsealed(b)) => b,
    };
    let file: FileIn = rmp_serde::from_slice(&bytes)
        .map_err(|e| format!("{}: not a configuration copy: {e}", path.display()))?;
    if file.format != 1 && file.format != FORMAT {
        return Err(format!(
            "{}: format {} (this engine reads 1 and {FORMAT})",
            path.display(),
            file.format
        ));
    }
    let mut blobs: Vec<(String, Bytes)> = file
        .blobs
        .into_iter()
        .map(|b| (b.sha256, Bytes::from(b.bytes.into_vec())))
        .collect();
    for hash in file.blob_files {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        if let Ok(bytes) = std::fs::read(blob_dir(path).join(&hash)) {
            blobs.push((hash, bytes.into()));
        }
    }
    Ok(Some(DiskCopy {
        prefix: file.prefix,
        revision: file.revision,
        cluster_id: file.cluster_id,
        saved_at: file.saved_at,
        kvs: file
            .kvs
            .into_iter()
            .map(|kv| KeyValue {
                key: kv.key,
                value: kv.value.into_vec(),
                create_revision: kv.create_revision,
                mod_revision: kv.mod_revision,
            })
            .collect(),
        blobs: blobs
            .into_iter()
            .filter(|(hash, bytes)| crate::sha256_hex(bytes) == *hash)
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_survives_the_round_trip_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("edgeward-cache-{}", std::process::id()));
        let path = dir.join("copy.msgpack");
        assert!(load(&path).unwrap().is_none());
        let blob = b"component".to_vec();
        let copy = DiskCopy {
            prefix: "/edgeward".into(),
            revision: 42,
            cluster_id: 7,
            saved_at: "now".into(),
            kvs: vec![KeyValue {
                key: "/edgeward/config/topology".into(),
                value: b"{}".to_vec(),
                create_revision: 2,
                mod_revision: 40,
            }],
            blobs: vec![
                (crate::sha256_hex(&blob), Bytes::from(blob.clone())),
                ("0".repeat(64), Bytes::from_static(b"does not match")),
            ],
        };
        save(&path, &copy).unwrap();
        let back = load(&path).unwrap().unwrap();
        assert_eq!(back.revision, 42);
        assert_eq!(back.kvs, copy.kvs);
        assert_eq!(
            back.blobs,
            vec![(crate::sha256_hex(&blob), Bytes::from(blob))]
        );

        // Damaged on disk: refused, never applied.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[5] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(load(&path).unwrap_err().contains("damaged"));

        std::fs::write(&path, b"garbage").unwrap();
        assert!(
            load(&path)
                .unwrap_err()
                .contains("not a configuration copy")
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
