//! `read`: the configured streams one after another, each through the engine SQL uses.
//!
//! * **full refresh**: a scan of the selected columns (`$select`), read in parallel
//!   `createdon` ranges where the table is large, exactly as `SELECT … FROM <table>`;
//! * **incremental**: the table's change feed ([`ChangeFeed::stream`](datafusion_dataverse::changes::ChangeFeed::stream)) from the token in the
//!   state, or a full initial load without one; deleted rows arrive as their primary key.
//!
//! Each stream reports STARTED, RUNNING (with its first record), then COMPLETE or INCOMPLETE.
//! An incremental stream's STATE, holding its next `$deltatoken`, is written only after its
//! last record and only when the feed was read to its end: a read that fails or is killed
//! part-way leaves the previous state in force, and the next read sends every change since
//! again (at worst twice; a deduplicating destination keeps the newest). The token is only
//! known at the end of a feed (the server puts it on the last page), so no state is emitted
//! mid-stream.
//!
//! A stream that fails is reported (INCOMPLETE, a TRACE error) and the others are still read;
//! the process then ends with a non-zero status. Writing to standard output failing ends the
//! read at once.

use std::io::{self, Write};
use std::time::Instant;

use datafusion::common::TableReference;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;
use datafusion_dataverse::Dataverse;
use datafusion_dataverse::metadata::TableDefinition;
use futures::StreamExt;

use super::catalog::{ConfiguredCatalog, ConfiguredStream, Selection, SyncMode};
use super::protocol::{Failure, FailureType, Level, Output, StreamStatus, now_millis};
use super::records::{ChangeColumns, RecordWriter};
use super::state::StartTokens;

/// Why a stream stopped early.
enum Stop {
    /// The source failed: reported, and the next stream is read.
    Failed(Failure),
    /// Standard output failed: nothing more can be said.
    Output(io::Error),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        Stop::Output(e)
    }
}

/// Reads every configured stream; the names of those that failed.
pub async fn read_streams<W: Write>(
    dataverse: &Dataverse,
    ctx: &SessionContext,
    catalog: &ConfiguredCatalog,
    tokens: &StartTokens,
    out: &mut Output<W>,
) -> io::Result<Vec<String>> {
    let mut failed = Vec::new();
    for configured in &catalog.streams {
        let name = configured.name();
        out.stream_status(name, StreamStatus::Started)?;
        let reader = StreamReader {
            dataverse,
            ctx,
            configured,
            secret: dataverse.config().client_secret_value.expose(),
        };
        match reader.read(tokens.get(name), out).await {
            Ok(()) => out.stream_status(name, StreamStatus::Complete)?,
            Err(Stop::Failed(failure)) => {
                out.stream_status(name, StreamStatus::Incomplete)?;
                out.error(&failure, Some(name))?;
                failed.push(name.to_string());
            }
            Err(Stop::Output(e)) => return Err(e),
        }
        // Each stream's messages reach Airbyte before the next stream starts.
        out.flush()?;
    }
    Ok(failed)
}

/// Everything one stream's read needs.
struct StreamReader<'a> {
    dataverse: &'a Dataverse,
    ctx: &'a SessionContext,
    configured: &'a ConfiguredStream,
    secret: &'a str,
}

impl StreamReader<'_> {
    async fn read<W: Write>(
        &self,
        start_token: Option<&str>,
        out: &mut Output<W>,
    ) -> Result<(), Stop> {
        let name = self.configured.name();
        let started = Instant::now();
        let before = self.dataverse.stats();
        let table = self.table().await?;
        let selection = self.configured.select(&table);
        if !selection.unknown.is_empty() {
            out.log(
                Level::Warn,
                &format!(
                    "{name}: the table has no column for the configured properties {} \
                     (refresh the source schema to drop them); they are not sent",
                    selection.unknown.join(", ")
                ),
            )?;
        }
        let records = match self.configured.sync_mode {
            SyncMode::FullRefresh => {
                let mut batches = self.scan(&selection).await?;
                let writer = RecordWriter::new(name, &properties(&selection), None);
                self.pump(&mut batches, &writer, out).await?
            }
            SyncMode::Incremental => self.changes(&table, &selection, start_token, out).await?,
        };
        let after = self.dataverse.stats();
        out.log(
            Level::Info,
            &format!(
                "{name}: {records} records ({}) in {:.1} s; {} requests, {} retries",
                match (self.configured.sync_mode, start_token) {
                    (SyncMode::FullRefresh, _) => "full refresh",
                    (SyncMode::Incremental, None) => "incremental, initial load",
                    (SyncMode::Incremental, Some(_)) => "incremental, changes since the state",
                },
                started.elapsed().as_secs_f64(),
                after.requests - before.requests,
                after.retries - before.retries,
            ),
        )?;
        Ok(())
    }

    async fn table(&self) -> Result<std::sync::Arc<TableDefinition>, Stop> {
        let name = self.configured.name();
        match self.dataverse.metadata().table(name).await {
            Ok(Some(table)) => Ok(table),
            Ok(None) => Err(Stop::Failed(Failure::new(
                FailureType::ConfigError,
                format!(
                    "there is no table named {name} in this environment: refresh the source \
                     schema and update the connection"
                ),
                None,
                self.secret,
            ))),
            Err(e) => Err(self.failed(&e)),
        }
    }

    /// A full refresh: `SELECT <selected columns> FROM <table>`.
    async fn scan(&self, selection: &Selection<'_>) -> Result<SendableRecordBatchStream, Stop> {
        let names: Vec<&str> = selection.columns.iter().map(|c| c.name.as_str()).collect();
        let table = TableReference::bare(self.configured.name());
        let frame = self.ctx.table(table).await.map_err(|e| self.failed(&e))?;
        let frame = frame.select_columns(&names).map_err(|e| self.failed(&e))?;
        frame.execute_stream().await.map_err(|e| self.failed(&e))
    }

    /// An incremental read: the change feed's records, then the state with its next token.
    async fn changes<W: Write>(
        &self,
        table: &TableDefinition,
        selection: &Selection<'_>,
        start_token: Option<&str>,
        out: &mut Output<W>,
    ) -> Result<u64, Stop> {
        let name = self.configured.name();
        if !table.entity.change_tracking {
            return Err(Stop::Failed(Failure::new(
                FailureType::ConfigError,
                format!(
                    "{name} cannot be read incrementally: change tracking is not enabled for \
                     the table (turn on \"Track changes\" in its properties in Power Apps, or \
                     sync the stream in full refresh)"
                ),
                None,
                self.secret,
            )));
        }
        let names: Vec<&str> = selection.columns.iter().map(|c| c.name.as_str()).collect();
        let mut feed = self
            .dataverse
            .changes()
            .stream(name, &names, start_token)
            .await
            .map_err(|e| self.failed(&e))?;
        // The feed's batches hold the selected columns in order, then `_change_type`.
        let position = |column: &str| names.iter().position(|n| *n == column);
        let changes = ChangeColumns {
            change_type: names.len(),
            primary_key: position(table.primary_id()).expect("the key is always selected"),
            cursor: selection.cursor.and_then(|c| position(&c.name)),
        };
        let writer = RecordWriter::new(name, &properties(selection), Some(changes));
        let records = self.pump(feed.batches(), &writer, out).await?;
        let token = feed.next_token().map_err(|e| self.failed(&e))?;
        out.state(name, &token, records)?;
        Ok(records)
    }

    /// Writes every batch of `batches` as records; how many.
    async fn pump<W: Write>(
        &self,
        batches: &mut SendableRecordBatchStream,
        writer: &RecordWriter,
        out: &mut Output<W>,
    ) -> Result<u64, Stop> {
        let mut records = 0u64;
        let mut buffer = Vec::new();
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(|e| self.failed(&e))?;
            if batch.num_rows() == 0 {
                continue;
            }
            if records == 0 {
                out.stream_status(self.configured.name(), StreamStatus::Running)?;
            }
            buffer.clear();
            writer
                .write_batch(&batch, now_millis(), &mut buffer)
                .map_err(|e| self.failed(&e))?;
            out.line(&buffer)?;
            records += batch.num_rows() as u64;
        }
        Ok(records)
    }

    fn failed(&self, error: &(dyn std::error::Error + 'static)) -> Stop {
        let what = format!("reading {}", self.configured.name());
        Stop::Failed(Failure::of(&what, error, self.secret))
    }
}

/// Each selected column's Web API name and its position in the batches.
fn properties(selection: &Selection<'_>) -> Vec<(String, usize)> {
    selection
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.odata_name.clone(), i))
        .collect()
}
