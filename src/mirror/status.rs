//! `dvsql sync --status`: the mirrored tables, their versions, row counts and sync state.

use std::path::Path;

use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;

use super::state::{self, SyncState};
use super::{MirrorError, open_or_new};

/// One mirrored table.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TableStatus {
    /// The directory name (the entity's logical name).
    pub entity: String,
    /// The table's current version.
    pub version: i64,
    /// Rows in the current version.
    pub rows: u64,
    /// The last sync's state (token, time), if the log still holds it.
    pub last_sync: Option<SyncState>,
}

/// The Delta tables directly under `root` (directories with a `_delta_log`), by name.
pub fn table_names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("_delta_log").is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// The status of every table under `root`.
pub async fn status(root: &Path) -> Result<Vec<TableStatus>, MirrorError> {
    let mut out = Vec::new();
    for entity in table_names(root) {
        let table = open_or_new(&root.join(&entity)).await?;
        let Some(version) = super::version_of(&table) else {
            continue;
        };
        out.push(TableStatus {
            rows: row_count(&table).await?,
            last_sync: state::latest(&table, None).await?,
            version,
            entity,
        });
    }
    Ok(out)
}

/// The number of rows of the table's current version (from the files' statistics when they
/// have them, as DataFusion answers `count(*)`).
pub(crate) async fn row_count(table: &DeltaTable) -> Result<u64, MirrorError> {
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    let provider = table.table_provider().await?;
    let rows = ctx.read_table(provider)?.count().await?;
    Ok(rows as u64)
}
