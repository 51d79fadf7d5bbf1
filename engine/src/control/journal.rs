//! A single node's topology on disk: the last document loaded whole (the
//! base) and the entity changes made since (the journal), in
//! `{state dir}/topology/`:
//!
//! - `base-{revision}.msgpack`: the base document, canonical MessagePack;
//! - `changes.jsonl`: a header line `{"base", "revision", "hash"}` naming
//!   the base, then one line per change `{"revision", "who", "time",
//!   "edits"}`, each synced to disk before the change is served.
//!
//! At start the base is loaded and the changes applied again, giving the
//! snapshot (and its hash) the node served before. Now and then the
//! journal is compacted: the current document becomes the new base and the
//! changes it holds leave the journal. Files are replaced by rename, so a
//! crash at any point leaves a journal naming a base that exists; a line
//! torn by a crash was never acknowledged and is dropped.

use crate::topology::edit::Edit;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Compact once the journal holds this many changes.
pub const COMPACT_AFTER: usize = 1000;

/// The first line of `changes.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    /// The base file's name.
    base: String,
    /// Its revision.
    revision: u64,
    /// The hash of the snapshot it was written from.
    hash: String,
}

/// One change, as journalled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Its revision.
    pub revision: u64,
    /// Who made it.
    pub who: String,
    /// When, RFC 3339.
    pub time: String,
    /// The edits, as applied.
    pub edits: Vec<Edit>,
}

/// What a journal held at start.
pub struct Restored {
    /// The base document.
    pub base: Bytes,
    /// Its revision.
    pub revision: u64,
    /// The hash of the snapshot it was written from.
    pub hash: String,
    /// The changes since, in order.
    pub entries: Vec<Entry>,
    /// Bytes of the journal up to its last complete line.
    valid: u64,
}

/// The journal of one node.
pub struct Journal {
    dir: PathBuf,
    file: Mutex<Open>,
}

struct Open {
    changes: File,
    /// Changes in the journal since its base.
    count: usize,
    base_revision: u64,
}

impl Journal {
    /// Opens (creating) the journal in `dir`; returns what it held, if
    /// anything.
    pub fn open(dir: &Path) -> Result<(Option<Self>, Option<Restored>), String> {
        let err = |what: &str, e: &dyn std::fmt::Display| format!("{what} {}: {e}", dir.display());
        fs::create_dir_all(dir).map_err(|e| err("cannot create the state directory", &e))?;
        let changes = dir.join("changes.jsonl");
        if !changes.exists() {
            return Ok((None, None));
        }
        let restored = read(dir, &changes)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&changes)
            .map_err(|e| err("cannot open the journal in", &e))?;
        // A line torn by a crash goes, so that the next one starts clean.
        let len = file
            .metadata()
            .map_err(|e| err("cannot read the journal in", &e))?
            .len();
        if len + 1 == restored.valid {
            // The last line is whole but for its newline.
            (&file)
                .write_all(b"\n")
                .and_then(|()| file.sync_all())
                .map_err(|e| err("cannot repair the journal in", &e))?;
        } else if len > restored.valid {
            file.set_len(restored.valid)
                .and_then(|()| file.sync_all())
                .map_err(|e| err("cannot repair the journal in", &e))?;
        }
        let journal = Journal {
            dir: dir.to_path_buf(),
            file: Mutex::new(Open {
                changes: file,
                count: restored.entries.len(),
                base_revision: restored.revision,
            }),
        };
        Ok((Some(journal), Some(restored)))
    }

    /// Starts a journal in `dir` with `base` (the document at `revision`,
    /// its snapshot hashed `hash`), replacing whatever was there.
    pub fn create(dir: &Path, base: &[u8], revision: u64, hash: &str) -> Result<Self, String> {
        fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the state directory {}: {e}", dir.display()))?;
        let file = write_base(dir, base, revision, hash, &[])?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            file: Mutex::new(Open {
                changes: file,
                count: 0,
                base_revision: revision,
            }),
        })
    }

    /// Appends a change and syncs it to disk.
    pub fn append(&self, entry: &Entry) -> Result<usize, String> {
        let mut line = serde_json::to_vec(entry).expect("an entry serialises");
        line.push(b'\n');
        let mut open = self.file.lock().unwrap_or_else(|e| e.into_inner());
        open.changes
            .write_all(&line)
            .and_then(|()| open.changes.sync_data())
            .map_err(|e| format!("cannot write the journal in {}: {e}", self.dir.display()))?;
        open.count += 1;
        Ok(open.count)
    }

    /// Makes `base` (at `revision`, hashed `hash`) the base, keeping the
    /// journalled changes after `revision`.
    pub fn rebase(&self, base: &[u8], revision: u64, hash: &str) -> Result<(), String> {
        let mut open = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if revision < open.base_revision {
            return Ok(());
        }
        let later: Vec<Entry> = read(&self.dir, &self.dir.join("changes.jsonl"))?
            .entries
            .into_iter()
            .filter(|e| e.revision > revision)
            .collect();
        let old = open.base_revision;
        open.changes = write_base(&self.dir, base, revision, hash, &later)?;
        open.count = later.len();
        open.base_revision = revision;
        if old != revision {
            let _ = fs::remove_file(self.dir.join(base_name(old)));
        }
        Ok(())
    }

    /// How many changes the journal holds since its base.
    pub fn len(&self) -> usize {
        self.file.lock().unwrap_or_else(|e| e.into_inner()).count
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn base_name(revision: u64) -> String {
    format!("base-{revision}.msgpack")
}

/// Writes the base file and a journal naming it (with `later` changes),
/// each by rename; returns the journal, open for appending.
fn write_base(
    dir: &Path,
    base: &[u8],
    revision: u64,
    hash: &str,
    later: &[Entry],
) -> Result<File, String> {
    let err = |e: std::io::Error| format!("cannot write the topology in {}: {e}", dir.display());
    let name = base_name(revision);
    replace_file(&dir.join(&name), base).map_err(err)?;
    let mut text = serde_json::to_vec(&Header {
        base: name,
        revision,
        hash: hash.to_string(),
    })
    .expect("a header serialises");
    text.push(b'\n');
    for entry in later {
        serde_json::to_writer(&mut text, entry).expect("an entry serialises");
        text.push(b'\n');
    }
    let changes = dir.join("changes.jsonl");
    replace_file(&changes, &text).map_err(err)?;
    OpenOptions::new().append(true).open(&changes).map_err(err)
}

/// Writes `path` whole: to a temporary file, synced, then renamed over it.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads a journal and its base.
fn read(dir: &Path, changes: &Path) -> Result<Restored, String> {
    let err = |e: &dyn std::fmt::Display| format!("journal {}: {e}", changes.display());
    let file = File::open(changes).map_err(|e| err(&e))?;
    let mut lines = BufReader::new(file).split(b'\n');
    let mut valid = 0u64;
    let header: Header = match lines.next() {
        Some(Ok(line)) => {
            valid += line.len() as u64 + 1;
            serde_json::from_slice(&line).map_err(|e| err(&e))?
        }
        Some(Err(e)) => return Err(err(&e)),
        None => return Err(err(&"it is empty")),
    };
    if header.base.contains('/') || !header.base.starts_with("base-") {
        return Err(err(&format!("base {:?} is not a base file", header.base)));
    }
    let base = fs::read(dir.join(&header.base))
        .map_err(|e| err(&format!("cannot read its base {}: {e}", header.base)))?;
    let mut entries = Vec::new();
    let mut lines = lines.peekable();
    let mut n = 1;
    while let Some(line) = lines.next() {
        n += 1;
        let line = line.map_err(|e| err(&e))?;
        match serde_json::from_slice::<Entry>(&line) {
            Ok(entry) => {
                valid += line.len() as u64 + 1;
                entries.push(entry);
            }
            // The last line, torn by a crash while it was written: never
            // acknowledged.
            Err(e) if lines.peek().is_none() => {
                tracing::warn!(
                    "journal {}: line {n} is incomplete ({e}); it was never acknowledged, dropping it",
                    changes.display()
                );
            }
            Err(e) => return Err(err(&format!("line {n}: {e}"))),
        }
    }
    Ok(Restored {
        base: base.into(),
        revision: header.revision,
        hash: header.hash,
        entries,
        valid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::edit::Op;
    use crate::topology::entity::Kind;

    fn entry(revision: u64) -> Entry {
        Entry {
            revision,
            who: "test".into(),
            time: "2026-12-01T00:00:00Z".into(),
            edits: vec![Edit {
                op: Op::Delete,
                kind: Kind::Servers,
                key: Some(format!("e{revision}")),
                value: None,
                if_match: None,
            }],
        }
    }

    #[test]
    fn changes_survive_a_reopen_and_a_rebase_keeps_the_later_ones() {
        let dir = std::env::temp_dir().join(format!("edgeward-journal-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert!(Journal::open(&dir).unwrap().0.is_none());
        let j = Journal::create(&dir, b"base one", 1, "h1").unwrap();
        for r in 2..=4 {
            j.append(&entry(r)).unwrap();
        }
        j.rebase(b"base three", 3, "h3").unwrap();
        assert_eq!(j.len(), 1);
        j.append(&entry(5)).unwrap();
        drop(j);
        // A torn last line is dropped.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join("changes.jsonl"))
            .unwrap();
        f.write_all(b"{\"revision\": 6, \"who\"").unwrap();
        let (j, restored) = Journal::open(&dir).unwrap();
        let restored = restored.unwrap();
        assert_eq!(&restored.base[..], b"base three");
        assert_eq!((restored.revision, restored.hash.as_str()), (3, "h3"));
        let revisions: Vec<u64> = restored.entries.iter().map(|e| e.revision).collect();
        assert_eq!(revisions, [4, 5]);
        let j = j.unwrap();
        assert_eq!(j.len(), 2);
        j.append(&entry(6)).unwrap();
        drop(j);
        let (_, restored) = Journal::open(&dir).unwrap();
        assert_eq!(restored.unwrap().entries.len(), 3);
        assert!(!dir.join("base-1.msgpack").exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
