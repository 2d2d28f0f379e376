//! Writing staged changes to a Delta table in one commit, with deltalake's own operations:
//! a full load overwrites the table (WRITE, mode overwrite), later changes are MERGEd on the
//! primary key. The commit properties carry the sync state ([`super::state`]), so the data and
//! the token land together or not at all.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::ExprFunctionExt;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext, col, ident, lit};
use deltalake::DeltaTable;
use deltalake::operations::merge::MergeMetrics;
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;

use super::MirrorError;
use super::stage::{SEQ, Staged};
use super::state::SyncState;
use crate::changes::CHANGE_TYPE;

/// Rows per Parquet row group of the table's files: the writer holds one group in memory
/// (the same size as `COPY` exports, for the same reason).
const ROW_GROUP_ROWS: usize = crate::PARQUET_ROW_GROUP_ROWS;

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

/// A session with deltalake's planner extensions (its operations plan their own nodes).
fn delta_session() -> SessionContext {
    deltalake::delta_datafusion::DeltaSessionContext::new().into_inner()
}

async fn staged_frame(ctx: &SessionContext, staged: &Staged) -> Result<DataFrame, MirrorError> {
    let path = staged.path.to_string_lossy();
    Ok(ctx
        .read_parquet(path.as_ref(), ParquetReadOptions::default())
        .await?)
}

/// Replaces the table's rows (or creates the table) with the staged full load; the schema
/// becomes the entity's current one.
pub(crate) async fn overwrite(
    table: DeltaTable,
    staged: &Staged,
    state: &SyncState,
) -> Result<DeltaTable, MirrorError> {
    let ctx = delta_session();
    let data: Vec<&str> = data_columns(&staged.data_schema);
    let rows = staged_frame(&ctx, staged)
        .await?
        .filter(col(CHANGE_TYPE).eq(lit("upsert")))?
        .select_columns(&data)?;
    let table = table
        .write(Vec::new())
        .with_input_plan(rows.logical_plan().clone())
        .with_session_state(Arc::new(ctx.state()))
        .with_save_mode(SaveMode::Overwrite)
        .with_schema_mode(SchemaMode::Overwrite)
        .with_writer_properties(writer_properties())
        .with_commit_properties(state.commit_properties())
        .await?;
    Ok(table)
}

/// A commit with no data that renews the token (nothing changed, but the saved token is
/// getting old: Dataverse lets tokens expire, by default after 7 days).
pub(crate) async fn renew_token(
    table: DeltaTable,
    staged: &Staged,
    state: &SyncState,
) -> Result<DeltaTable, MirrorError> {
    let ctx = delta_session();
    let data: Vec<&str> = data_columns(&staged.data_schema);
    let nothing = staged_frame(&ctx, staged)
        .await?
        .select_columns(&data)?
        .limit(0, Some(0))?;
    let table = table
        .write(Vec::new())
        .with_input_plan(nothing.logical_plan().clone())
        .with_session_state(Arc::new(ctx.state()))
        .with_save_mode(SaveMode::Append)
        .with_schema_mode(SchemaMode::Merge)
        .with_commit_properties(state.commit_properties())
        .await?;
    Ok(table)
}

/// MERGEs the staged changes on the primary key: the latest change of each key (the last in
/// feed order) updates or inserts the row, or deletes it. Columns new in the entity are added
/// to the table (schema evolution); columns the entity no longer has are set to NULL in the
/// rows it changes.
pub(crate) async fn merge(
    table: DeltaTable,
    staged: &Staged,
    primary_key: &str,
    state: &SyncState,
) -> Result<(DeltaTable, MergeMetrics), MirrorError> {
    let ctx = delta_session();
    let source = latest_change_per_key(staged_frame(&ctx, staged).await?, primary_key)?;
    let data: Vec<String> = data_columns(&staged.data_schema)
        .into_iter()
        .map(String::from)
        .collect();
    let removed: Vec<String> = table
        .snapshot()?
        .schema()
        .fields()
        .map(|f| f.name().to_string())
        .filter(|name| !data.contains(name))
        .collect();
    let on = format!("target.{pk} = source.{pk}", pk = quoted(primary_key));
    let is_delete = format!("source.{CHANGE_TYPE} = 'delete'");
    let is_upsert = format!("source.{CHANGE_TYPE} = 'upsert'");
    let (table, metrics) = table
        .merge(source, on)
        .with_source_alias("source")
        .with_target_alias("target")
        .with_merge_schema(true)
        .with_session_state(Arc::new(ctx.state()))
        .with_writer_properties(writer_properties())
        .with_commit_properties(state.commit_properties())
        .when_matched_delete(|delete| delete.predicate(is_delete.clone()))?
        .when_matched_update(|mut update| {
            update = update.predicate(is_upsert.clone());
            for name in &data {
                update = update.update(name.as_str(), format!("source.{}", quoted(name)));
            }
            for name in &removed {
                update = update.update(name.as_str(), "NULL");
            }
            update
        })?
        .when_not_matched_insert(|mut insert| {
            insert = insert.predicate(is_upsert.clone());
            for name in &data {
                insert = insert.set(name.as_str(), format!("source.{}", quoted(name)));
            }
            insert
        })?
        .await?;
    Ok((table, metrics))
}

/// One row per key: the change with the highest feed position. Dataverse returns a row's
/// latest state, then the deletions; a key that appears more than once (changed while the
/// feed was paged, or deleted after an upsert) ends as its last appearance says.
fn latest_change_per_key(changes: DataFrame, primary_key: &str) -> Result<DataFrame, MirrorError> {
    const RANK: &str = "_rank";
    let rank = row_number()
        .partition_by(vec![ident(primary_key)])
        .order_by(vec![col(SEQ).sort(false, false)])
        .build()?
        .alias(RANK);
    let latest = changes
        .window(vec![rank])?
        .filter(col(RANK).eq(lit(1u64)))?
        .drop_columns(&[RANK, SEQ])?;
    Ok(latest)
}

fn data_columns(schema: &Schema) -> Vec<&str> {
    schema.fields().iter().map(|f| f.name().as_str()).collect()
}

/// A column name as a SQL identifier. Dataverse logical names are lower-case letters, digits
/// and underscores; quoting keeps any other name from being read as SQL.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
