//! The audit trail of configuration changes: who changed what, when.
//!
//! Every change the [`super::Control`] applies is an [`AuditEntry`]: the
//! topology replaced, or one entity created, replaced, updated or deleted
//! (with the hashes of its value before and after and the fields that
//! changed). Entries go to the log (`target: "audit"`), to a recent list
//! in memory, and, when the node has a state directory, to
//! `{state dir}/audit.jsonl`, from which entries older than the retention
//! (30 days by default) are dropped at start and every hour.
//! `GET /audit?since=` answers from the memory list while it reaches back
//! far enough, and from the file otherwise.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Entries kept in memory.
const RECENT: usize = 10_000;

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, RFC 3339.
    pub time: String,
    /// Milliseconds since the epoch (what `since` compares).
    pub time_ms: u64,
    /// Who made it.
    pub who: String,
    /// What was done: `create`, `replace`, `update`, `delete`, or
    /// `replace-topology`.
    pub action: String,
    /// The kind of entity (`topology` for a whole document).
    pub kind: String,
    /// The entity's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The revision the change made.
    pub revision: u64,
    /// SHA-256 of the value before (none when created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// SHA-256 of the value after (none when deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The fields that changed: `{field: [before, after]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<Value>,
}

impl AuditEntry {
    /// An entry for an entity change, dated now.
    pub fn entity(
        who: &str,
        applied: &crate::topology::edit::Applied,
        revision: u64,
    ) -> AuditEntry {
        let now = SystemTime::now();
        let hash = |v: &Option<Value>| {
            v.as_ref()
                .map(|v| crate::sha256_hex(&serde_json::to_vec(v).expect("a value serialises")))
        };
        AuditEntry {
            time: crate::time::rfc3339(now),
            time_ms: crate::time::unix_millis(now),
            who: who.to_string(),
            action: applied.op.verb().to_string(),
            kind: applied.kind.name().to_string(),
            key: Some(applied.key.clone()),
            revision,
            before: hash(&applied.before),
            after: hash(&applied.after),
            changed: Some(diff(applied.before.as_ref(), applied.after.as_ref())),
        }
    }

    /// An entry for another action (a drain, a policy, a canary), dated
    /// now; `changed` says what it changed.
    pub fn action(
        who: &str,
        action: &str,
        kind: &str,
        key: Option<String>,
        changed: Value,
    ) -> AuditEntry {
        let now = SystemTime::now();
        AuditEntry {
            time: crate::time::rfc3339(now),
            time_ms: crate::time::unix_millis(now),
            who: who.to_string(),
            action: action.into(),
            kind: kind.into(),
            key,
            revision: 0,
            before: None,
            after: None,
            changed: Some(changed),
        }
    }

    /// An entry for a whole topology loaded, dated now.
    pub fn topology(who: &str, revision: u64, hash: &str) -> AuditEntry {
        let now = SystemTime::now();
        AuditEntry {
            time: crate::time::rfc3339(now),
            time_ms: crate::time::unix_millis(now),
            who: who.to_string(),
            action: "replace-topology".into(),
            kind: "topology".into(),
            key: None,
            revision,
            before: None,
            after: Some(hash.to_string()),
            changed: None,
        }
    }
}

/// The top-level fields that differ: `{field: [before, after]}` (`null`
/// where a side has none).
fn diff(before: Option<&Value>, after: Option<&Value>) -> Value {
    let empty = serde_json::Map::new();
    let b = before.and_then(Value::as_object).unwrap_or(&empty);
    let a = after.and_then(Value::as_object).unwrap_or(&empty);
    let mut out = serde_json::Map::new();
    for key in b.keys().chain(a.keys()) {
        if out.contains_key(key) {
            continue;
        }
        let (x, y) = (b.get(key), a.get(key));
        if x != y {
            out.insert(
                key.clone(),
                Value::Array(vec![
                    x.cloned().unwrap_or(Value::Null),
                    y.cloned().unwrap_or(Value::Null),
                ]),
            );
        }
    }
    Value::Object(out)
}

/// The audit trail of one node.
pub struct AuditLog {
    file: Option<PathBuf>,
    retention: Duration,
    inner: Mutex<Inner>,
}

struct Inner {
    recent: VecDeque<AuditEntry>,
    /// Whether `recent` holds every entry still kept (none was dropped
    /// from it for room).
    complete: bool,
    writer: Option<File>,
    pruned: SystemTime,
}

impl AuditLog {
    /// A trail in memory only.
    pub fn in_memory() -> Self {
        AuditLog {
            file: None,
            retention: Duration::from_secs(30 * 86_400),
            inner: Mutex::new(Inner {
                recent: VecDeque::new(),
                complete: true,
                writer: None,
                pruned: SystemTime::now(),
            }),
        }
    }

    /// A trail kept in `file` too, entries older than `retention` dropped.
    pub fn open(file: PathBuf, retention: Duration) -> Result<Self, String> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create the state directory {}: {e}", dir.display()))?;
        }
        let log = AuditLog {
            file: Some(file.clone()),
            retention,
            inner: Mutex::new(Inner {
                recent: VecDeque::new(),
                complete: false,
                writer: None,
                pruned: SystemTime::UNIX_EPOCH,
            }),
        };
        {
            let mut inner = log.inner.lock().unwrap_or_else(|e| e.into_inner());
            log.prune(&mut inner)?;
        }
        Ok(log)
    }

    /// Records entries (and logs each).
    pub fn record(&self, entries: Vec<AuditEntry>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if self.file.is_some()
            && inner.pruned + Duration::from_secs(3600) < SystemTime::now()
            && let Err(e) = self.prune(&mut inner)
        {
            tracing::warn!("audit trail: {e}");
        }
        for entry in entries {
            tracing::info!(
                target: "audit",
                who = %entry.who,
                revision = entry.revision,
                key = entry.key.as_deref().unwrap_or_default(),
                "{} {}",
                entry.action,
                entry.kind,
            );
            if let Some(w) = &mut inner.writer {
                let mut line = serde_json::to_vec(&entry).expect("an entry serialises");
                line.push(b'\n');
                if let Err(e) = w.write_all(&line) {
                    tracing::warn!("audit trail: cannot write: {e}");
                }
            }
            if inner.recent.len() == RECENT {
                inner.recent.pop_front();
                inner.complete = false;
            }
            inner.recent.push_back(entry);
        }
    }

    /// The entries since `since_ms` (milliseconds since the epoch), oldest
    /// first, at most `limit`.
    pub fn since(&self, since_ms: u64, limit: usize) -> Vec<AuditEntry> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let covered = inner.complete || inner.recent.front().is_some_and(|e| e.time_ms <= since_ms);
        if covered || self.file.is_none() {
            return inner
                .recent
                .iter()
                .filter(|e| e.time_ms >= since_ms)
                .take(limit)
                .cloned()
                .collect();
        }
        drop(inner);
        self.read_file()
            .into_iter()
            .filter(|e| e.time_ms >= since_ms)
            .take(limit)
            .collect()
    }

    fn read_file(&self) -> Vec<AuditEntry> {
        let Some(path) = &self.file else {
            return Vec::new();
        };
        let Ok(f) = File::open(path) else {
            return Vec::new();
        };
        BufReader::new(f)
            .split(b'\n')
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_slice(&line).ok())
            .collect()
    }

    /// Drops entries older than the retention from the file (rewritten by
    /// rename) and reopens it for appending.
    fn prune(&self, inner: &mut Inner) -> Result<(), String> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let now = SystemTime::now();
        let oldest = crate::time::unix_millis(now.checked_sub(self.retention).unwrap_or(now));
        let kept: Vec<AuditEntry> = self
            .read_file()
            .into_iter()
            .filter(|e| e.time_ms >= oldest)
            .collect();
        let tmp = path.with_extension("tmp");
        let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
        {
            let mut f = File::create(&tmp).map_err(err)?;
            for e in &kept {
                let mut line = serde_json::to_vec(e).expect("an entry serialises");
                line.push(b'\n');
                f.write_all(&line).map_err(err)?;
            }
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, path)
            .and_then(|()| crate::durable::sync_dir(path))
            .map_err(err)?;
        inner.writer = Some(
            OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .map_err(err)?,
        );
        inner.recent.retain(|e| e.time_ms >= oldest);
        if inner.recent.is_empty() {
            inner.complete = kept.len() <= RECENT;
            inner.recent = kept.into_iter().rev().take(RECENT).rev().collect();
        }
        inner.pruned = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_diff_names_the_fields_that_changed() {
        let d = diff(
            Some(&json!({"id": "e1", "port": 80, "weight": 2})),
            Some(&json!({"id": "e1", "port": 8080, "active": false})),
        );
        assert_eq!(
            d,
            json!({"port": [80, 8080], "weight": [2, null], "active": [null, false]})
        );
    }

    #[test]
    fn entries_outlive_a_reopen_and_old_ones_are_dropped() {
        let path =
            std::env::temp_dir().join(format!("edgeward-audit-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let log = AuditLog::open(path.clone(), Duration::from_secs(3600)).unwrap();
        let mut old = AuditEntry::topology("someone", 1, "h");
        old.time_ms -= 7_200_000;
        log.record(vec![old, AuditEntry::topology("someone", 2, "h2")]);
        drop(log);
        let log = AuditLog::open(path.clone(), Duration::from_secs(3600)).unwrap();
        let all = log.since(0, 100);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].revision, 2);
        let _ = std::fs::remove_file(&path);
    }
}
