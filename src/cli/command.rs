//! Backslash commands, in the psql / datafusion-cli tradition.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::{DataFusionError, Result};
use datafusion_dataverse::odata::translate::pushdown_support;
use datafusion_dataverse::provider::catalog::closest;

use super::args::Format;
use super::exec::{Outcome, Session};

pub const HELP: &str = r"Backslash commands:
  \?                 this help
  \q                 quit (or Ctrl-D)
  \d                 list tables
  \d NAME            describe a table: columns, Dataverse and Arrow types
  \pset format F     output format: table, csv, json, ndjson
  \pset max_rows N   rows shown in table format (0 = all)
  \timing [on|off]   show elapsed time after each statement
  \pushdown [on|off] push filters to the server (off = evaluate everything locally)
  \refresh           forget cached metadata and reload it
  \changes           saved change-tracking tokens (table_changes)
  \reset_changes T   forget T's change token: the next table_changes('T') is a full load
  \stats             requests, rows, bytes and retries so far
SQL statements end with ';'. EXPLAIN shows the OData request each scan sends.
Ctrl-C cancels the running statement.";

/// Runs one backslash command line.
pub async fn run(session: &mut Session, line: &str) -> Result<Outcome> {
    let mut words = line.trim().trim_end_matches(';').split_whitespace();
    let name = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    match (name, args.as_slice()) {
        ("\\q" | "\\quit", _) => return Ok(Outcome::Quit),
        ("\\?" | "\\h" | "\\help", _) => println!("{HELP}"),
        ("\\d", []) => list_tables(session).await?,
        ("\\d", [table]) => describe(session, table).await?,
        ("\\pset", ["format", f]) => {
            session.print.format = f.parse().map_err(DataFusionError::Plan)?;
        }
        ("\\pset", ["max_rows", n]) => {
            session.print.max_rows = n
                .parse()
                .map_err(|_| DataFusionError::Plan(format!("not a number: {n}")))?;
        }
        ("\\timing", []) => session.print.timing = !session.print.timing,
        ("\\timing", ["on"]) => session.print.timing = true,
        ("\\timing", ["off"]) => session.print.timing = false,
        ("\\pushdown", []) => println!(
            "pushdown is {}",
            if session.dataverse.pushdown() {
                "on"
            } else {
                "off"
            }
        ),
        ("\\pushdown", ["on"]) => session.dataverse.set_pushdown(true),
        ("\\pushdown", ["off"]) => session.dataverse.set_pushdown(false),
        ("\\changes", []) => {
            session
                .run_sql("SELECT entity, saved_at, age_seconds FROM dataverse_change_tokens() ORDER BY entity")
                .await?;
        }
        ("\\reset_changes", [table]) => {
            let had = session
                .dataverse
                .changes()
                .reset(table)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            eprintln!(
                "{}",
                if had {
                    format!(
                        "change token of {table} forgotten: the next table_changes('{table}') is a full load"
                    )
                } else {
                    format!("{table} had no saved change token")
                }
            );
        }
        ("\\refresh", []) => {
            session
                .dataverse
                .refresh_metadata()
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let n = session
                .dataverse
                .metadata()
                .entities_loaded()
                .map(|e| e.len())
                .unwrap_or(0);
            eprintln!("metadata reloaded: {n} tables");
        }
        ("\\stats", []) => {
            let s = session.dataverse.stats();
            println!(
                "{} requests, {} rows, {:.1} MB, {} retries ({:.1} s waiting)",
                s.requests,
                s.rows,
                s.bytes as f64 / 1e6,
                s.retries,
                s.waited.as_secs_f64()
            );
        }
        _ => {
            return Err(DataFusionError::Plan(format!(
                "unknown command {}; \\? lists the commands",
                line.trim()
            )));
        }
    }
    Ok(Outcome::Continue)
}

async fn list_tables(session: &Session) -> Result<()> {
    let entities = session
        .dataverse
        .metadata()
        .entities()
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let rows: Vec<Vec<String>> = entities
        .iter()
        .map(|e| {
            vec![
                e.logical_name.clone(),
                e.entity_set.clone(),
                e.primary_id.clone(),
                yes_no(e.change_tracking),
                yes_no(e.is_custom),
            ]
        })
        .collect();
    print_rows(
        session,
        &[
            "table",
            "entity_set",
            "primary_key",
            "change_tracking",
            "custom",
        ],
        rows,
    )
}

async fn describe(session: &Session, name: &str) -> Result<()> {
    let metadata = session.dataverse.metadata();
    let Some(table) = metadata
        .table(name)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
    else {
        // The same hint as `SELECT … FROM acount` gives.
        let known: Vec<String> = metadata
            .entities_loaded()
            .map(|list| list.iter().map(|e| e.logical_name.clone()).collect())
            .unwrap_or_default();
        return Err(DataFusionError::Plan(match closest(name, &known) {
            Some(hint) => format!("table '{name}' not found; did you mean '{hint}'?"),
            None => format!("table '{name}' not found; \\d lists the tables"),
        }));
    };
    let rows = table
        .columns
        .iter()
        .zip(table.schema.fields())
        .map(|(c, f)| {
            let (source, filters) = match &c.label {
                Some(l) => (format!("label of {}", l.parent), "local"),
                None => (c.odata_name.clone(), pushdown_support(c.kind)),
            };
            vec![
                c.name.clone(),
                c.attribute_type.clone(),
                f.data_type().to_string(),
                yes_no(f.is_nullable()),
                source,
                filters.to_string(),
            ]
        })
        .collect();
    print_rows(
        session,
        &[
            "column",
            "dataverse_type",
            "arrow_type",
            "nullable",
            "source",
            "filters",
        ],
        rows,
    )?;
    describe_choices(session, name).await
}

/// The option values and labels of the table's choice columns, after its columns.
async fn describe_choices(session: &Session, name: &str) -> Result<()> {
    let options = session
        .dataverse
        .metadata()
        .options(name)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
        .unwrap_or_default();
    if options.is_empty() {
        return Ok(());
    }
    let rows = options
        .iter()
        .map(|o| {
            vec![
                o.attribute.clone(),
                o.value.to_string(),
                o.label.clone().unwrap_or_default(),
            ]
        })
        .collect();
    if session.print.format == Format::Table {
        println!();
    }
    print_rows(session, &["choice_column", "value", "label"], rows)
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// Prints string rows through the session's printer, so every format applies.
fn print_rows(session: &Session, header: &[&str], rows: Vec<Vec<String>>) -> Result<()> {
    let schema = Arc::new(Schema::new(
        header
            .iter()
            .map(|h| Field::new(*h, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let columns = (0..header.len())
        .map(|i| {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r[i].as_str()),
            )) as Arc<dyn datafusion::arrow::array::Array>
        })
        .collect();
    let batch = RecordBatch::try_new(schema, columns)?;
    let mut print = session.print.clone();
    if print.format == Format::Table {
        print.max_rows = 0;
    }
    print.print(&mut std::io::stdout().lock(), &[batch])
}
