//! A list of accounts or tokens, kept whole: in memory for reading, in a
//! JSON file of the state directory (mode 0600, written whole and renamed
//! into place), and, in a fleet, in etcd ([`Backend`]), which a change
//! must reach before it counts. Changes take turns; a change refused by
//! the backend or the disk changes nothing.

use super::users::UserError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

/// A boxed future (what [`Backend::save`] returns).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where a changed list is written first: etcd, in a fleet.
pub trait Backend: Send + Sync {
    /// Writes the list's new JSON; `Err` (e.g. another node changed it
    /// meanwhile) refuses the change.
    fn save(&self, json: Vec<u8>) -> BoxFuture<'_, Result<(), String>>;
}

/// One list.
pub struct Book<T> {
    /// What it holds, in messages (`users`, `tokens`).
    what: &'static str,
    file: Option<PathBuf>,
    list: RwLock<Vec<T>>,
    backend: OnceLock<Arc<dyn Backend>>,
    turn: tokio::sync::Mutex<()>,
}

impl<T: Clone + Serialize + DeserializeOwned> Book<T> {
    /// A list in memory only.
    pub fn in_memory(what: &'static str) -> Self {
        Book {
            what,
            file: None,
            list: RwLock::new(Vec::new()),
            backend: OnceLock::new(),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// The list in `file` (empty if there is none yet), each item checked.
    pub fn open(
        what: &'static str,
        file: PathBuf,
        check: impl Fn(&T) -> Result<(), String>,
    ) -> Result<Self, String> {
        let list = match std::fs::read(&file) {
            Ok(bytes) => Self::parse(&bytes, &check)
                .map_err(|e| format!("{what} file {}: {e}", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("cannot read {what} file {}: {e}", file.display())),
        };
        Ok(Book {
            what,
            file: Some(file),
            list: RwLock::new(list),
            backend: OnceLock::new(),
            turn: tokio::sync::Mutex::new(()),
        })
    }

    /// A list from its JSON, each item checked.
    pub fn parse(bytes: &[u8], check: impl Fn(&T) -> Result<(), String>) -> Result<Vec<T>, String> {
        let list: Vec<T> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        for item in &list {
            check(item)?;
        }
        Ok(list)
    }

    /// The list now.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<T>> {
        self.list.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The list's JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&*self.read()).expect("the list serialises")
    }

    /// From now on, changes are written to `backend` first.
    pub fn set_backend(&self, backend: Arc<dyn Backend>) {
        let _ = self.backend.set(backend);
    }

    /// Replaces the list with one another node wrote (and keeps a copy
    /// on disk, for a start while etcd cannot be reached).
    pub fn replace(&self, list: Vec<T>) {
        if let Some(file) = &self.file
            && let Err(e) = save_json(file, self.what, &list)
        {
            tracing::warn!("{e}");
        }
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = list;
    }

    /// Changes the list and writes it whole (to the backend first, if
    /// any, then the file); on any error nothing changes.
    pub async fn write<R>(
        &self,
        f: impl FnOnce(&mut Vec<T>) -> Result<R, UserError>,
    ) -> Result<R, UserError> {
        let _turn = self.turn.lock().await;
        let mut draft = self.read().clone();
        let out = f(&mut draft)?;
        if let Some(backend) = self.backend.get() {
            let json = serde_json::to_vec_pretty(&draft).expect("the list serialises");
            backend.save(json).await.map_err(UserError::Unavailable)?;
        }
        if let Some(file) = &self.file {
            save_json(file, self.what, &draft).map_err(UserError::Unavailable)?;
        }
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = draft;
        Ok(out)
    }
}

/// Writes a JSON file of `what` whole (see [`save_bytes`]).
pub(super) fn save_json<T: Serialize + ?Sized>(
    file: &Path,
    what: &str,
    value: &T,
) -> Result<(), String> {
    save_bytes(
        file,
        what,
        &serde_json::to_vec_pretty(value).expect("the file serialises"),
    )
}

/// Writes a file of `what` whole: a temporary file, mode 0600, synced,
/// then renamed over the old one, and the directory synced.
pub(super) fn save_bytes(file: &Path, what: &str, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| format!("cannot write {what} file {}: {e}", file.display());
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    // A name of its own: the watch of a fleet's accounts may write the
    // same file at the same time.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = file.with_extension(format!("tmp.{}.{n}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, file)
        .and_then(|()| crate::durable::sync_dir(file))
        .map_err(err)
}
