//! The sync state of one mirrored table, kept in the table's own Delta log: no side file can
//! disagree with the data (ARCHITECTURE.md: "Mirror sync").
//!
//! Every sync commit carries two things beside its data:
//!
//! * an application transaction (`txn` action) with the app id `dvsql:{environment}:{entity}`
//!   and, as its version, the sync's sequence number (1, 2, 3, …). Delta keeps the latest
//!   version of each app id in the table state (checkpoints included), and a commit whose app
//!   id another commit has written since it read the table is refused as a conflict, so two
//!   syncs of one table can never both land;
//! * the [`SyncState`] (token, sequence, environment, time) in the commit's `commitInfo`,
//!   under the key [`COMMIT_KEY`]. The state that counts is the one whose sequence equals the
//!   `txn` version: a commit that never landed cannot be it.

use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{CommitInfo, Transaction};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::MirrorError;

/// The key of the sync state in a commit's `commitInfo`.
pub const COMMIT_KEY: &str = "dvsql.sync";

/// Commits looked at first when searching the log for the state; the whole retained history
/// is read only when they do not hold it (OPTIMIZE and VACUUM commits may come in between).
const RECENT_COMMITS: usize = 32;

/// What one sync committed, as stored in the `commitInfo` of its commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// The environment URL the table mirrors.
    pub environment: String,
    /// The entity's logical name.
    pub entity: String,
    /// The sync's sequence number: the version of the commit's application transaction.
    pub sequence: i64,
    /// The `$deltatoken` the next sync starts from.
    pub token: String,
    /// When the token was received, RFC 3339 UTC.
    pub synced_at: String,
    /// `full` (first load), `reload` (after an expired token), `merge` or `token` (nothing
    /// changed; the token was renewed).
    pub mode: String,
}

impl SyncState {
    /// The application-transaction id of (environment, entity).
    pub fn app_id(environment: &str, entity: &str) -> String {
        format!("dvsql:{environment}:{entity}")
    }

    /// When the token was received.
    pub fn synced_at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.synced_at)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The commit properties that put this state and its data in one commit.
    pub(crate) fn commit_properties(&self) -> CommitProperties {
        let app_id = Self::app_id(&self.environment, &self.entity);
        let now_ms = Utc::now().timestamp_millis();
        let state = serde_json::to_value(self).expect("serialises");
        CommitProperties::default()
            .with_application_transaction(Transaction::new_with_last_update(
                app_id,
                self.sequence,
                Some(now_ms),
            ))
            .with_metadata([(COMMIT_KEY.to_string(), state)])
    }

    fn of_commit(info: &CommitInfo) -> Option<SyncState> {
        serde_json::from_value(info.info.get(COMMIT_KEY)?.clone()).ok()
    }
}

/// Where a table's sync stands, as read from its log.
#[derive(Debug)]
pub(crate) enum Saved {
    /// No sync of this environment and entity has committed.
    Nothing,
    /// The state of the last committed sync.
    State(SyncState),
    /// A sync committed (this sequence) but its commit is no longer in the retained log
    /// (cleaned up after a checkpoint): the token is lost, a full reload follows.
    Lost(i64),
}

impl Saved {
    /// The sequence number the next commit takes.
    pub(crate) fn next_sequence(&self) -> i64 {
        match self {
            Saved::Nothing => 1,
            Saved::State(state) => state.sequence + 1,
            Saved::Lost(sequence) => sequence + 1,
        }
    }
}

/// Reads the sync state of (environment, entity) from an existing table. A table that holds
/// the state of another environment is refused: its rows are not this environment's.
pub(crate) async fn read(
    table: &DeltaTable,
    environment: &str,
    entity: &str,
) -> Result<Saved, MirrorError> {
    let app_id = SyncState::app_id(environment, entity);
    let snapshot = table.snapshot()?;
    let sequence = snapshot
        .transaction_version(table.log_store().as_ref(), &app_id)
        .await?;
    let Some(sequence) = sequence else {
        return match latest(table, None).await? {
            Some(other) if other.environment != environment || other.entity != entity => {
                Err(MirrorError::OtherEnvironment {
                    entity: entity.to_string(),
                    environment: other.environment,
                    mirrored: other.entity,
                })
            }
            _ => Ok(Saved::Nothing),
        };
    };
    let wanted = |s: &SyncState| {
        s.sequence == sequence && s.environment == environment && s.entity == entity
    };
    for limit in [Some(RECENT_COMMITS), None] {
        if let Some(state) = find(table, limit, &wanted).await? {
            return Ok(Saved::State(state));
        }
    }
    Ok(Saved::Lost(sequence))
}

/// The newest sync state in the log, whatever its environment (for `--status`).
pub(crate) async fn latest(
    table: &DeltaTable,
    limit: Option<usize>,
) -> Result<Option<SyncState>, MirrorError> {
    find(table, limit, &|_| true).await
}

async fn find(
    table: &DeltaTable,
    limit: Option<usize>,
    wanted: &dyn Fn(&SyncState) -> bool,
) -> Result<Option<SyncState>, MirrorError> {
    let mut history = table.history(limit);
    while let Some(info) = history.try_next().await? {
        if let Some(state) = SyncState::of_commit(&info).filter(|s| wanted(s)) {
            return Ok(Some(state));
        }
    }
    Ok(None)
}
