//! A Delta Lake mirror of Dataverse tables, kept exactly once (`dvsql sync`; ARCHITECTURE.md:
//! "Mirror sync"). Feature `delta`.
//!
//! One Delta table per entity under `{dir}/{entity}`. A sync of one table:
//!
//! 1. takes the table's lock (`lock.rs`) and reloads the entity's attributes (new columns);
//! 2. reads the table's sync state from its own Delta log ([`state`]): the last committed
//!    delta token, or nothing (first run);
//! 3. reads the change feed from that token (a full load without one) into a staging Parquet
//!    file (`stage.rs`); only at the end of the feed is the new token in hand. An expired token
//!    restarts the read as a full load (or fails, if asked to);
//! 4. writes the changes and the new token in ONE Delta commit (`apply.rs`): a full load
//!    overwrites the table, changes are MERGEd on the primary key (the latest change of each
//!    key wins); a read that found nothing commits nothing, unless the token needs renewing.
//!
//! A sync killed at any moment leaves the table at its last commit with that commit's token:
//! the next sync reads the same changes again and applies them once. Files written by a
//! killed sync and never committed are ignored by every Delta reader and removed by VACUUM.

mod apply;
mod lock;
mod schema;
mod stage;
pub mod state;
mod status;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::error::DataFusionError;
use deltalake::{DeltaTable, DeltaTableError};

use crate::changes::{ChangeFeed, ChangesError};
use crate::metadata::{MetadataError, MetadataStore, TableDefinition};
pub use schema::{MIRROR_SCHEMA, MirrorSchema, register_mirror};
use stage::Staged;
pub use state::SyncState;
use state::{Saved, SyncState as State};
pub use status::{TableStatus, status};

/// What a sync does with an expired (or otherwise rejected) delta token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnExpiredToken {
    /// Reload the whole table in one commit, with a warning ([`SyncEvent::TokenExpired`]).
    #[default]
    Reload,
    /// Fail with [`MirrorError::TokenExpired`]; the table stays as it is.
    Fail,
}

/// One step of a sync, for progress displays (and tests that stop a sync at a given point).
#[derive(Debug)]
#[non_exhaustive]
pub enum SyncEvent<'a> {
    /// The change feed is about to be read: from a token, or in full.
    Reading {
        /// The entity's logical name.
        entity: &'a str,
        /// True for a full load.
        full: bool,
    },
    /// More changes were read and staged.
    Read {
        /// The entity's logical name.
        entity: &'a str,
        /// Changes read so far.
        changes: u64,
    },
    /// The saved token was rejected as expired; the table is being reloaded in full.
    TokenExpired {
        /// The entity's logical name.
        entity: &'a str,
    },
    /// The feed has been read to its end; the changes and the new token are about to be
    /// written in one commit.
    Writing {
        /// The entity's logical name.
        entity: &'a str,
        /// Changes to write.
        changes: u64,
    },
    /// The commit landed.
    Committed {
        /// The entity's logical name.
        entity: &'a str,
        /// The table version it created.
        version: i64,
    },
}

/// A function called with each [`SyncEvent`].
type EventFn = dyn Fn(&SyncEvent<'_>) + Send + Sync;

/// Receives the [`SyncEvent`]s of a sync.
#[derive(Clone, Default)]
pub struct SyncObserver(Option<Arc<EventFn>>);

impl SyncObserver {
    /// An observer calling `f` for every event.
    pub fn new(f: impl Fn(&SyncEvent<'_>) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    pub(crate) fn emit(&self, event: SyncEvent<'_>) {
        if let Some(f) = &self.0 {
            f(&event);
        }
    }
}

impl std::fmt::Debug for SyncObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "SyncObserver(set)"
        } else {
            "SyncObserver(none)"
        })
    }
}

/// How to sync; every field has a default.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SyncOptions {
    /// What an expired token does (default: reload).
    pub on_expired: OnExpiredToken,
    /// Only say what would be read; read and write nothing.
    pub dry_run: bool,
    /// Compact small files after the sync (deltalake's OPTIMIZE).
    pub optimize: bool,
    /// Delete files no version within the retention period uses (deltalake's VACUUM, default
    /// retention 7 days).
    pub vacuum: bool,
    /// When nothing changed, the token is still committed anew once the saved one is this old,
    /// so that a quiet table never reaches Dataverse's token expiry (default one day).
    pub token_renewal: Duration,
    /// Progress events.
    pub observer: SyncObserver,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            on_expired: OnExpiredToken::Reload,
            dry_run: false,
            optimize: false,
            vacuum: false,
            token_renewal: Duration::from_secs(24 * 3600),
            observer: SyncObserver::default(),
        }
    }
}

impl SyncOptions {
    /// Sets what an expired token does.
    pub fn with_on_expired(mut self, on_expired: OnExpiredToken) -> Self {
        self.on_expired = on_expired;
        self
    }

    /// Only reports what would be read.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Compacts small files after the sync.
    pub fn with_optimize(mut self, optimize: bool) -> Self {
        self.optimize = optimize;
        self
    }

    /// Removes unused old files after the sync.
    pub fn with_vacuum(mut self, vacuum: bool) -> Self {
        self.vacuum = vacuum;
        self
    }

    /// Sets the token age after which an unchanged table's token is committed anew.
    pub fn with_token_renewal(mut self, age: Duration) -> Self {
        self.token_renewal = age;
        self
    }

    /// Sets the progress observer.
    pub fn with_observer(mut self, observer: SyncObserver) -> Self {
        self.observer = observer;
        self
    }
}

/// What one table's sync did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncOutcome {
    /// The first sync: the whole table was loaded.
    FullLoad,
    /// The saved token had expired (or was lost from the log): the table was reloaded.
    Reloaded,
    /// Changes were merged.
    Merged,
    /// Nothing changed; nothing was committed.
    Unchanged,
    /// Nothing changed; a commit without data renewed the token.
    TokenRenewed,
    /// `dry_run`: nothing was read. True when the sync would be a full load.
    DryRun {
        /// Whether the sync would load the whole table.
        full: bool,
    },
}

/// The report of one table's sync.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TableReport {
    /// The entity's logical name.
    pub entity: String,
    /// What happened.
    pub outcome: SyncOutcome,
    /// Rows inserted (all rows of a full load).
    pub inserted: u64,
    /// Rows updated.
    pub updated: u64,
    /// Rows deleted.
    pub deleted: u64,
    /// Changes read from the feed.
    pub changes_read: u64,
    /// Web API requests made for this table (metadata and feed pages).
    pub requests: u64,
    /// Wall time of the table's sync.
    pub duration: Duration,
    /// The table's version afterwards (`None` in a dry run of a new table).
    pub version: Option<i64>,
    /// When the token now saved was received (for a dry run: the one that would be used).
    pub token_time: Option<String>,
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// The entity does not exist in the environment.
    #[error("there is no table named '{entity}'")]
    UnknownTable {
        /// The name asked for.
        entity: String,
    },
    /// A name that cannot be a Dataverse logical name (nor a directory under the mirror).
    #[error("'{entity}' is not a table name (lower-case letters, digits and _)")]
    InvalidName {
        /// The name asked for.
        entity: String,
    },
    /// Another sync of the same table is running.
    #[error(
        "another dvsql sync is writing {entity} (it holds {lock}); try again when it has ended"
    )]
    Busy {
        /// The entity's logical name.
        entity: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// The directory holds the mirror of another environment's table.
    #[error(
        "the mirror of {entity} was synced from {environment} ({mirrored}), not from this \
         environment; use another directory"
    )]
    OtherEnvironment {
        /// The entity asked for.
        entity: String,
        /// The environment the table was synced from.
        environment: String,
        /// The entity it mirrors there.
        mirrored: String,
    },
    /// The directory holds a Delta table that no sync wrote (it carries no sync state).
    #[error(
        "{dir} is a Delta table that dvsql sync did not write; it is left alone (use another \
         directory)"
    )]
    NotAMirror {
        /// The table's directory.
        dir: PathBuf,
    },
    /// The saved token expired and [`OnExpiredToken::Fail`] was asked for.
    #[error(
        "the change token of {entity} has expired; the mirror is unchanged. Sync without \
         --fail-on-expired to reload the table in full"
    )]
    TokenExpired {
        /// The entity's logical name.
        entity: String,
        /// The server's refusal.
        #[source]
        source: DataFusionError,
    },
    /// The feed ended without a token.
    #[error("the change feed of {entity} ended without a delta token; nothing was written")]
    NoToken {
        /// The entity's logical name.
        entity: String,
    },
    /// The change feed could not be opened.
    #[error(transparent)]
    Changes(#[from] ChangesError),
    /// The entity's metadata could not be loaded.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// Reading the feed or planning a write failed.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// Converting a batch failed.
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// Writing the staging file failed.
    #[error(transparent)]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    /// The Delta table could not be read or written (a conflicting concurrent commit included).
    #[error("Delta table: {0}")]
    Delta(#[from] DeltaTableError),
    /// A file of the mirror could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// A broken promise inside the sync.
    #[error("internal error: {0}")]
    Internal(String),
}

impl MirrorError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        MirrorError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether this is the server refusing the start token (expired).
    fn is_token_rejected(&self) -> bool {
        let MirrorError::DataFusion(e) = self else {
            return false;
        };
        matches!(
            e.find_root(),
            DataFusionError::External(inner)
                if matches!(inner.downcast_ref::<ChangesError>(), Some(ChangesError::TokenRejected { .. }))
        )
    }
}

/// What a sync needs from a connection: its change feeds, metadata and environment.
#[derive(Clone, Debug)]
pub struct MirrorSource {
    feed: Arc<ChangeFeed>,
    metadata: Arc<MetadataStore>,
    environment: String,
}

impl MirrorSource {
    pub(crate) fn new(
        feed: Arc<ChangeFeed>,
        metadata: Arc<MetadataStore>,
        environment: String,
    ) -> Self {
        Self {
            feed,
            metadata,
            environment,
        }
    }
}

/// Where the Delta table of `entity` lives under `root`.
pub fn table_dir(root: &Path, entity: &str) -> PathBuf {
    root.join(entity)
}

/// Syncs one entity into `{root}/{entity}` (see the module documentation).
pub async fn sync_table(
    source: &MirrorSource,
    root: &Path,
    entity: &str,
    options: &SyncOptions,
) -> Result<TableReport, MirrorError> {
    let started = Instant::now();
    if entity.is_empty()
        || !entity
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(MirrorError::InvalidName {
            entity: entity.to_string(),
        });
    }
    std::fs::create_dir_all(root).map_err(|e| MirrorError::io(root, e))?;
    let _lock = lock::lock(root, entity)?;
    let definition =
        source
            .metadata
            .reload_table(entity)
            .await?
            .ok_or_else(|| MirrorError::UnknownTable {
                entity: entity.to_string(),
            })?;
    if !definition.entity.change_tracking {
        return Err(ChangesError::NotTracked {
            entity: entity.to_string(),
        }
        .into());
    }
    let table = open_or_new(&table_dir(root, entity)).await?;
    let saved = match table.version() {
        Some(_) => state::read(&table, &source.environment, entity).await?,
        None => Saved::Nothing,
    };
    // A sync's first commit creates the table together with its state, so an existing table
    // without one was written by something else: never overwrite it.
    if table.version().is_some() && matches!(saved, Saved::Nothing) {
        return Err(MirrorError::NotAMirror {
            dir: table_dir(root, entity),
        });
    }
    let mut run = TableSync {
        source,
        root,
        definition,
        options,
        report: TableReport {
            entity: entity.to_string(),
            outcome: SyncOutcome::Unchanged,
            inserted: 0,
            updated: 0,
            deleted: 0,
            changes_read: 0,
            // The attribute metadata request.
            requests: 1,
            duration: Duration::ZERO,
            version: version_of(&table),
            token_time: None,
        },
    };
    let table = run.sync(table, saved).await?;
    if options.optimize || options.vacuum {
        maintain(table, options).await?;
    }
    run.report.duration = started.elapsed();
    Ok(run.report)
}

/// The state of one table's sync while it runs.
struct TableSync<'a> {
    source: &'a MirrorSource,
    root: &'a Path,
    definition: Arc<TableDefinition>,
    options: &'a SyncOptions,
    report: TableReport,
}

impl TableSync<'_> {
    fn entity(&self) -> String {
        self.report.entity.clone()
    }

    async fn sync(&mut self, table: DeltaTable, saved: Saved) -> Result<DeltaTable, MirrorError> {
        let entity = self.entity();
        let start = match &saved {
            Saved::State(state) => Some(state.clone()),
            Saved::Nothing | Saved::Lost(_) => None,
        };
        if self.options.dry_run {
            self.report.outcome = SyncOutcome::DryRun {
                full: start.is_none(),
            };
            self.report.token_time = start.map(|s| s.synced_at);
            return Ok(table);
        }
        let lost = matches!(saved, Saved::Lost(_));
        let staged = match self.stage(start.as_ref().map(|s| s.token.clone())).await {
            Err(e) if start.is_some() && e.is_token_rejected() => {
                let MirrorError::DataFusion(source) = e else {
                    unreachable!("checked by is_token_rejected")
                };
                if self.options.on_expired == OnExpiredToken::Fail {
                    return Err(MirrorError::TokenExpired { entity, source });
                }
                self.options
                    .observer
                    .emit(SyncEvent::TokenExpired { entity: &entity });
                let staged = self.stage(None).await?;
                return self.write_full(table, &saved, staged, true).await;
            }
            other => other?,
        };
        match start {
            None => self.write_full(table, &saved, staged, lost).await,
            Some(previous) => self.write_changes(table, &saved, &previous, staged).await,
        }
    }

    /// Reads the feed into a fresh staging file (removing what a killed sync of this table
    /// may have left: the lock is held, so no other sync of it is running).
    async fn stage(&mut self, start_token: Option<String>) -> Result<Staged, MirrorError> {
        let entity = self.entity();
        let dir = lock::private_dir(self.root).join("staging");
        std::fs::create_dir_all(&dir).map_err(|e| MirrorError::io(&dir, e))?;
        remove_staging(&dir, &entity);
        let path = dir.join(format!("{entity}.{}.parquet", uuid::Uuid::new_v4()));
        self.options.observer.emit(SyncEvent::Reading {
            entity: &entity,
            full: start_token.is_none(),
        });
        let result = stage::stage(
            &self.source.feed,
            self.definition.clone(),
            start_token,
            &path,
            &self.options.observer,
        )
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        let staged = result?;
        self.report.requests += staged.requests;
        self.report.changes_read += staged.changes();
        Ok(staged)
    }

    fn state(&self, saved: &Saved, staged: &Staged, mode: &str) -> State {
        State {
            environment: self.source.environment.clone(),
            entity: self.entity(),
            sequence: saved.next_sequence(),
            token: staged.token.clone(),
            synced_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            mode: mode.to_string(),
        }
    }

    async fn write_full(
        &mut self,
        table: DeltaTable,
        saved: &Saved,
        staged: Staged,
        reload: bool,
    ) -> Result<DeltaTable, MirrorError> {
        let state = self.state(saved, &staged, if reload { "reload" } else { "full" });
        let previous_rows = match table.version() {
            Some(_) => status::row_count(&table).await?,
            None => 0,
        };
        let table = self
            .commit(&staged, apply::overwrite(table, &staged, &state))
            .await?;
        self.report.outcome = if reload || previous_rows > 0 {
            SyncOutcome::Reloaded
        } else {
            SyncOutcome::FullLoad
        };
        self.report.inserted = staged.upserts;
        self.report.deleted = previous_rows;
        self.finish(&table, &state, staged);
        Ok(table)
    }

    async fn write_changes(
        &mut self,
        table: DeltaTable,
        saved: &Saved,
        previous: &State,
        staged: Staged,
    ) -> Result<DeltaTable, MirrorError> {
        if staged.changes() == 0 {
            let age = previous
                .synced_at()
                .map(|t| (chrono::Utc::now() - t).to_std().unwrap_or_default());
            if age.is_some_and(|age| age < self.options.token_renewal) {
                self.report.outcome = SyncOutcome::Unchanged;
                self.report.token_time = Some(previous.synced_at.clone());
                let _ = std::fs::remove_file(&staged.path);
                return Ok(table);
            }
            let state = self.state(saved, &staged, "token");
            let table = self
                .commit(&staged, apply::renew_token(table, &staged, &state))
                .await?;
            self.report.outcome = SyncOutcome::TokenRenewed;
            self.finish(&table, &state, staged);
            return Ok(table);
        }
        let state = self.state(saved, &staged, "merge");
        let primary_key = self.definition.primary_id().to_string();
        let (table, metrics) = self
            .commit(&staged, apply::merge(table, &staged, &primary_key, &state))
            .await?;
        self.report.outcome = SyncOutcome::Merged;
        self.report.inserted = metrics.num_target_rows_inserted as u64;
        self.report.updated = metrics.num_target_rows_updated as u64;
        self.report.deleted = metrics.num_target_rows_deleted as u64;
        self.finish(&table, &state, staged);
        Ok(table)
    }

    /// Runs one committing operation between the `Writing` and `Committed` events.
    async fn commit<T: CommittedTable>(
        &self,
        staged: &Staged,
        operation: impl std::future::Future<Output = Result<T, MirrorError>>,
    ) -> Result<T, MirrorError> {
        let entity = self.entity();
        self.options.observer.emit(SyncEvent::Writing {
            entity: &entity,
            changes: staged.changes(),
        });
        let done = operation.await?;
        self.options.observer.emit(SyncEvent::Committed {
            entity: &entity,
            version: version_of(done.table()).unwrap_or(-1),
        });
        Ok(done)
    }

    fn finish(&mut self, table: &DeltaTable, state: &State, staged: Staged) {
        self.report.version = version_of(table);
        self.report.token_time = Some(state.synced_at.clone());
        let _ = std::fs::remove_file(&staged.path);
    }
}

/// What a committing operation returns: the table, with or without metrics.
trait CommittedTable {
    fn table(&self) -> &DeltaTable;
}

impl CommittedTable for DeltaTable {
    fn table(&self) -> &DeltaTable {
        self
    }
}

impl<M> CommittedTable for (DeltaTable, M) {
    fn table(&self) -> &DeltaTable {
        &self.0
    }
}

/// Staging files of `entity` left by a sync that was killed.
fn remove_staging(dir: &Path, entity: &str) {
    let prefix = format!("{entity}.");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// The table's version as Delta numbers it in its log (0, 1, …).
pub(crate) fn version_of(table: &DeltaTable) -> Option<i64> {
    table.version().map(|v| v as i64)
}

/// The Delta table at `dir`, or an uninitialised handle when none exists yet.
pub(crate) async fn open_or_new(dir: &Path) -> Result<DeltaTable, MirrorError> {
    std::fs::create_dir_all(dir).map_err(|e| MirrorError::io(dir, e))?;
    let url = table_url(dir)?;
    Ok(DeltaTable::try_from_url(url).await?)
}

pub(crate) fn table_url(dir: &Path) -> Result<url::Url, MirrorError> {
    let absolute = std::path::absolute(dir).map_err(|e| MirrorError::io(dir, e))?;
    url::Url::from_directory_path(&absolute)
        .map_err(|()| MirrorError::Internal(format!("{} is not a directory path", dir.display())))
}

/// OPTIMIZE (compaction) and VACUUM (old files), as asked.
async fn maintain(table: DeltaTable, options: &SyncOptions) -> Result<(), MirrorError> {
    let mut table = table;
    if options.optimize {
        let (optimized, _metrics) = table.optimize().await?;
        table = optimized;
    }
    if options.vacuum {
        table.vacuum().await?;
    }
    Ok(())
}
