//! Reading one entity's changes into a local Parquet file before anything is written to its
//! Delta table.
//!
//! The new delta token exists only once the feed has been read to its end, and it must go into
//! the same Delta commit as the data; so the changes are read first, streamed batch by batch
//! into a staging file (bounded memory: one row group at a time), and written to the table
//! from there. Each row keeps its position in the feed (`_seq`), which decides which of
//! several changes of one key is the latest. The staging file is not part of any table: a sync
//! killed here leaves the table and its token as they were.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::{MirrorError, SyncEvent, SyncObserver};
use crate::changes::{CHANGE_TYPE, ChangeFeed, ROW_VERSION};
use crate::metadata::TableDefinition;

/// The column holding a change's position in the feed.
pub(crate) const SEQ: &str = "_seq";

/// Rows per row group of the staging file (the writer holds one group in memory).
const STAGING_ROW_GROUP: usize = 65_536;

/// The changes of one read, staged.
#[derive(Debug)]
pub(crate) struct Staged {
    pub(crate) path: PathBuf,
    /// The entity's data columns, typed as Delta stores them.
    pub(crate) data_schema: SchemaRef,
    pub(crate) upserts: u64,
    pub(crate) deletes: u64,
    /// Web API requests the read took.
    pub(crate) requests: u64,
    /// The token after these changes.
    pub(crate) token: String,
}

impl Staged {
    pub(crate) fn changes(&self) -> u64 {
        self.upserts + self.deletes
    }
}

/// Reads the change feed of `definition` from `start_token` (a full load from `None`) into the
/// Parquet file `path`.
pub(crate) async fn stage(
    feed: &Arc<ChangeFeed>,
    definition: Arc<TableDefinition>,
    start_token: Option<String>,
    path: &Path,
    observer: &SyncObserver,
) -> Result<Staged, MirrorError> {
    let entity = definition.entity.logical_name.clone();
    let (provider, handed) = feed.read_handing_token(definition, start_token)?;
    let ctx = SessionContext::new();
    let plan = provider.scan(&ctx.state(), None, &[], None).await?;
    let mut stream = plan.execute(0, ctx.task_ctx())?;
    let source = provider.schema();
    let data_schema = delta_schema(&source);
    let staged_schema = with_change_columns(&data_schema);
    let file = tokio::fs::File::create(path)
        .await
        .map_err(|source| MirrorError::io(path, source))?;
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(STAGING_ROW_GROUP))
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = AsyncArrowWriter::try_new(file, staged_schema.clone(), Some(properties))?;
    let mut counts = (0u64, 0u64);
    let mut seq = 0i64;
    while let Some(batch) = stream.next().await {
        let batch = staged_batch(&batch?, &staged_schema, seq)?;
        seq += batch.num_rows() as i64;
        counts = count_kinds(&batch, counts);
        writer.write(&batch).await?;
        observer.emit(SyncEvent::Read {
            entity: &entity,
            changes: seq as u64,
        });
    }
    writer.close().await?;
    let token = handed.take().ok_or_else(|| MirrorError::NoToken {
        entity: entity.clone(),
    })?;
    let requests = plan
        .metrics()
        .and_then(|m| m.sum_by_name("requests"))
        .map_or(0, |v| v.as_usize() as u64);
    Ok(Staged {
        path: path.to_path_buf(),
        data_schema,
        upserts: counts.0,
        deletes: counts.1,
        requests,
        token,
    })
}

/// The data columns of a change feed's schema with the types Delta stores: strings as plain
/// `Utf8` (Delta has no view types), everything else as in SQL.
fn delta_schema(feed: &Schema) -> SchemaRef {
    let fields: Vec<Field> = feed
        .fields()
        .iter()
        .filter(|f| f.name() != CHANGE_TYPE && f.name() != ROW_VERSION)
        .map(|f| f.as_ref().clone().with_data_type(delta_type(f.data_type())))
        .collect();
    Arc::new(Schema::new(fields))
}

fn delta_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::List(item) => DataType::List(Arc::new(
            item.as_ref()
                .clone()
                .with_data_type(delta_type(item.data_type())),
        )),
        other => other.clone(),
    }
}

fn with_change_columns(data: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = data.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(CHANGE_TYPE, DataType::Utf8, false));
    fields.push(Field::new(SEQ, DataType::Int64, false));
    Arc::new(Schema::new(fields))
}

/// One feed batch as staged: data columns cast, `_change_type`, and `_seq` numbered on from
/// `first_seq`.
fn staged_batch(
    batch: &RecordBatch,
    staged: &SchemaRef,
    first_seq: i64,
) -> Result<RecordBatch, MirrorError> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(staged.fields().len());
    for field in staged.fields().iter() {
        if field.name() == SEQ {
            let rows = batch.num_rows() as i64;
            columns.push(Arc::new(Int64Array::from_iter_values(
                first_seq..first_seq + rows,
            )));
            continue;
        }
        let column = batch.column_by_name(field.name()).ok_or_else(|| {
            MirrorError::Internal(format!("the change feed has no column {}", field.name()))
        })?;
        columns.push(cast(column, field.data_type())?);
    }
    Ok(RecordBatch::try_new(staged.clone(), columns)?)
}

fn count_kinds(batch: &RecordBatch, (upserts, deletes): (u64, u64)) -> (u64, u64) {
    use datafusion::arrow::array::{Array, AsArray};
    let kinds = batch
        .column_by_name(CHANGE_TYPE)
        .expect("staged batches have a change type")
        .as_string::<i32>();
    let deleted = (0..kinds.len())
        .filter(|&i| kinds.value(i) == "delete")
        .count() as u64;
    (
        upserts + batch.num_rows() as u64 - deleted,
        deletes + deleted,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_types_replace_string_views_also_inside_lists() {
        let list = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8View, true)));
        assert_eq!(
            delta_type(&list),
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
        );
        assert_eq!(delta_type(&DataType::Utf8View), DataType::Utf8);
        let money = DataType::Decimal128(38, 4);
        assert_eq!(delta_type(&money), money);
    }
}
