//! The delta-token store: for each (environment, entity), the `$deltatoken` that the next
//! `table_changes()` call starts from (ARCHITECTURE.md: "Change feeds").
//!
//! One small JSON file per entity under `{state_dir}/changes/{environment}/`, written
//! atomically (temporary file, then rename), so two dvsql processes never leave a torn file:
//! the last complete write wins. Without a state directory tokens live in memory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One saved token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedToken {
    /// The entity's logical name.
    pub entity: String,
    /// The `$deltatoken` value (opaque).
    pub token: String,
    /// When it was saved, RFC 3339 UTC.
    pub saved_at: String,
    /// The environment URL it belongs to.
    pub environment: String,
}

/// The delta tokens of one environment: files under the state directory (one per entity,
/// written atomically), or memory only.
#[derive(Debug)]
pub struct DeltaTokenStore {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<String, SavedToken>>,
    environment: String,
}

impl DeltaTokenStore {
    /// `state_dir/changes/{environment_key}`, or memory only when `state_dir` is `None`.
    pub(crate) fn new(
        state_dir: Option<&std::path::Path>,
        environment_key: &str,
        environment: &str,
    ) -> Self {
        Self {
            dir: state_dir.map(|d| d.join("changes").join(environment_key)),
            memory: Mutex::new(HashMap::new()),
            environment: environment.to_string(),
        }
    }

    fn file(&self, entity: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{entity}.json")))
    }

    /// The saved token for `entity`, if any.
    pub fn get(&self, entity: &str) -> std::io::Result<Option<SavedToken>> {
        match self.file(entity) {
            None => Ok(self
                .memory
                .lock()
                .expect("not poisoned")
                .get(entity)
                .cloned()),
            Some(path) => match std::fs::read(&path) {
                Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not a change token file: {e}", path.display()),
                    )
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// Saves `token` as the starting point of the next read of `entity`.
    pub fn save(&self, entity: &str, token: &str) -> std::io::Result<()> {
        let saved = SavedToken {
            entity: entity.to_string(),
            token: token.to_string(),
            saved_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            environment: self.environment.clone(),
        };
        match self.file(entity) {
            None => {
                self.memory
                    .lock()
                    .expect("not poisoned")
                    .insert(entity.to_string(), saved);
                Ok(())
            }
            Some(path) => {
                let body = serde_json::to_vec_pretty(&saved).expect("serialises");
                crate::fsutil::write_private_atomic(&path, &body)
            }
        }
    }

    /// Forgets the token of `entity`; the next read is a full load. True if one was saved.
    pub fn reset(&self, entity: &str) -> std::io::Result<bool> {
        match self.file(entity) {
            None => Ok(self
                .memory
                .lock()
                .expect("not poisoned")
                .remove(entity)
                .is_some()),
            Some(path) => match std::fs::remove_file(path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            },
        }
    }

    /// Every saved token, by entity name.
    pub fn list(&self) -> std::io::Result<Vec<SavedToken>> {
        let mut out: Vec<SavedToken> = match &self.dir {
            None => self
                .memory
                .lock()
                .expect("not poisoned")
                .values()
                .cloned()
                .collect(),
            Some(dir) => {
                let mut found = Vec::new();
                let entries = match std::fs::read_dir(dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
                    Err(e) => return Err(e),
                };
                for entry in entries {
                    let name = entry?.file_name().to_string_lossy().into_owned();
                    if let Some(entity) = name.strip_suffix(".json")
                        && !name.starts_with('.')
                        && let Some(token) = self.get(entity)?
                    {
                        found.push(token);
                    }
                }
                found
            }
        };
        out.sort_by(|a, b| a.entity.cmp(&b.entity));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeltaTokenStore::new(Some(dir.path()), "env", "https://env");
        assert_eq!(store.get("account").unwrap(), None);
        store.save("account", "919042!08/22/2017 08:10:44").unwrap();
        store.save("contact", "1!x").unwrap();
        assert_eq!(
            store.get("account").unwrap().unwrap().token,
            "919042!08/22/2017 08:10:44"
        );
        let listed: Vec<_> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|t| t.entity)
            .collect();
        assert_eq!(listed, vec!["account", "contact"]);
        assert!(store.reset("account").unwrap());
        assert!(!store.reset("account").unwrap());
        assert_eq!(store.get("account").unwrap(), None);
    }

    #[test]
    fn concurrent_writers_never_tear_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let store = DeltaTokenStore::new(Some(&path), "env", "https://env");
                    for j in 0..50 {
                        store
                            .save("account", &format!("{i}-{j}-{}", "x".repeat(500)))
                            .unwrap();
                    }
                })
            })
            .collect();
        let reader = DeltaTokenStore::new(Some(&path), "env", "https://env");
        for _ in 0..200 {
            // Every read sees a whole file, never a partial one.
            if let Some(t) = reader.get("account").unwrap() {
                assert!(t.token.ends_with(&"x".repeat(500)));
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        assert!(reader.get("account").unwrap().is_some());
    }
}
