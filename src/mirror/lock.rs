//! One sync of a table at a time on this machine: an exclusive lock on
//! `{dir}/.dvsql/locks/{entity}.lock`, taken without waiting.
//!
//! The operating system releases the lock when its process ends, however it ends (SIGKILL
//! included), so a crashed sync never leaves a stale lock. Syncs on other machines sharing the
//! directory are kept apart by Delta's optimistic concurrency instead (the application
//! transaction of [`super::state`]); the lock only turns the common case into a clear message
//! before any work is done.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::MirrorError;

/// Held while one table is synced; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct TableLock {
    _file: File,
}

/// The directory of dvsql's own files under the mirror directory (locks, staging). Its name
/// starts with a dot, so Delta readers and `--status` never take it for a table.
pub(crate) fn private_dir(root: &Path) -> PathBuf {
    root.join(".dvsql")
}

/// Takes the lock of `entity`, or fails at once when another sync holds it.
pub(crate) fn lock(root: &Path, entity: &str) -> Result<TableLock, MirrorError> {
    let dir = private_dir(root).join("locks");
    std::fs::create_dir_all(&dir).map_err(|e| MirrorError::io(&dir, e))?;
    let path = dir.join(format!("{entity}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| MirrorError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(TableLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(MirrorError::Busy {
            entity: entity.to_string(),
            lock: path,
        }),
        Err(TryLockError::Error(e)) => Err(MirrorError::io(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_of_one_table_fails_until_the_first_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path(), "account").unwrap();
        let second = lock(dir.path(), "account");
        assert!(
            matches!(second, Err(MirrorError::Busy { ref entity, .. }) if entity == "account"),
            "{second:?}"
        );
        // Another table is independent.
        let _contact = lock(dir.path(), "contact").unwrap();
        drop(first);
        lock(dir.path(), "account").unwrap();
    }
}
