//! Backslash commands, in the psql / datafusion-cli tradition.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::{DataFusionError, Result};
use datafusion_dataverse::provider::catalog::closest;
use datafusion_dataverse::provider::translate::pushdown_support;

use super::args::Format;
use super::exec::{Outcome, Session};
use super::print::Expanded;

pub const HELP: &str = r"Backslash commands:
  \?                 this help
  \q                 quit (or Ctrl-D)
  \d                 list tables
  \d NAME            describe a table: columns, Dataverse and Arrow types
                     (also schema.table: metadata.entity, information_schema.tables)
  \x [on|off|auto]   expanded display: one column per line (auto: when wider than the screen)
  \pset              show the print settings
  \pset format F     output format: table, csv, json, ndjson
  \pset max_rows N   rows shown in table format (0 = all)
  \pset pager on|off page long results through $PAGER at the prompt
  \pset tuples_only on|off  rows only: no column names, no footer
  \timing [on|off]   show elapsed time after each statement (toggles without argument)
  \pushdown [on|off] push filters to the server (off = evaluate everything locally)
  \refresh           forget cached metadata and reload it
  \changes           saved change-tracking tokens (table_changes)
  \reset_changes T   forget T's change token: the next table_changes('T') is a full load
  \stats             requests, rows, bytes and retries so far
SQL statements end with ';' and may span lines. EXPLAIN shows the OData request each scan
sends. Tab lists completions. Ctrl-C cancels the running statement; exit, quit or Ctrl-D quits.";

/// Runs one backslash command line.
pub async fn run(session: &mut Session, line: &str) -> Result<Outcome> {
    let mut words = line.trim().trim_end_matches(';').split_whitespace();
    let name = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    match (name, args.as_slice()) {
        ("\\q" | "\\quit", _) => return Ok(Outcome::Quit),
        ("\\?" | "\\h" | "\\help", _) => println!("{HELP}"),
        ("\\d", []) => list_tables(session).await?,
        ("\\d", [table]) => describe_any(session, table).await?,
        ("\\x", []) => {
            session.print.expanded = match session.print.expanded {
                Expanded::Off => Expanded::On,
                Expanded::On | Expanded::Auto => Expanded::Off,
            };
            say_expanded(session);
        }
        ("\\x", [value]) => {
            session.print.expanded = expanded_value(value)?;
            say_expanded(session);
        }
        ("\\pset", []) => show_settings(session),
        ("\\pset", [name]) => {
            let settings = settings(session);
            match settings.iter().find(|(n, _)| n == name) {
                Some((n, v)) => println!("{n} is {v}"),
                None => return Err(unknown_setting(name)),
            }
        }
        ("\\pset", [name, value]) => set(session, name, value)?,
        ("\\timing", []) => {
            session.print.timing = !session.print.timing;
            say_timing(session);
        }
        ("\\timing", [value]) => {
            session.print.timing = on_off("timing", value)?;
            say_timing(session);
        }
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
            known_table(session, table).await?;
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
        (
            "\\d" | "\\x" | "\\pset" | "\\timing" | "\\pushdown" | "\\changes" | "\\reset_changes"
            | "\\refresh" | "\\stats",
            _,
        ) => {
            return Err(DataFusionError::Plan(format!(
                "wrong arguments in {}; \\? shows how {name} is used",
                line.trim()
            )));
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

fn on_off(name: &str, value: &str) -> Result<bool> {
    match value.to_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(DataFusionError::Plan(format!(
            "\\pset {name}: unknown value '{value}'; use on or off"
        ))),
    }
}

fn expanded_value(value: &str) -> Result<Expanded> {
    match value.to_lowercase().as_str() {
        "auto" => Ok(Expanded::Auto),
        other => Ok(if on_off("expanded", other)? {
            Expanded::On
        } else {
            Expanded::Off
        }),
    }
}

fn word(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

fn say_expanded(session: &Session) {
    if session.print.quiet {
        return;
    }
    match session.print.expanded {
        Expanded::Auto => eprintln!("Expanded display is used automatically."),
        e => eprintln!("Expanded display is {}.", e.name()),
    }
}

fn say_timing(session: &Session) {
    if session.print.quiet {
        return;
    }
    eprintln!("Timing is {}.", word(session.print.timing));
}

/// The print settings `\pset` shows and sets, as (name, value).
fn settings(session: &Session) -> Vec<(&'static str, String)> {
    let p = &session.print;
    vec![
        ("format", format!("{:?}", p.format).to_lowercase()),
        ("max_rows", p.max_rows.to_string()),
        ("expanded", p.expanded.name().to_string()),
        ("pager", word(p.pager).to_string()),
        ("tuples_only", word(p.tuples_only).to_string()),
        ("timing", word(p.timing).to_string()),
    ]
}

fn show_settings(session: &Session) {
    for (name, value) in settings(session) {
        println!("{name:<12} {value}");
    }
}

fn unknown_setting(name: &str) -> DataFusionError {
    DataFusionError::Plan(format!(
        "\\pset: unknown setting '{name}'; the settings are format, max_rows, expanded, pager, tuples_only, timing"
    ))
}

fn set(session: &mut Session, name: &str, value: &str) -> Result<()> {
    let print = &mut session.print;
    match name {
        "format" => {
            print.format = value
                .parse()
                .map_err(|e: String| DataFusionError::Plan(format!("\\pset format: {e}")))?
        }
        "max_rows" => {
            print.max_rows = value.parse().map_err(|_| {
                DataFusionError::Plan(format!(
                    "\\pset max_rows: '{value}' is not a number of rows (0 = all)"
                ))
            })?
        }
        "expanded" => print.expanded = expanded_value(value)?,
        "pager" => print.pager = on_off(name, value)?,
        "tuples_only" => print.tuples_only = on_off(name, value)?,
        "timing" => print.timing = on_off(name, value)?,
        _ => return Err(unknown_setting(name)),
    }
    Ok(())
}

/// An error naming the close match unless `name` is a table of the environment.
async fn known_table(session: &Session, name: &str) -> Result<()> {
    let metadata = session.dataverse.metadata();
    if metadata
        .table(name)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
        .is_some()
    {
        return Ok(());
    }
    Err(not_found(session, name))
}

fn not_found(session: &Session, name: &str) -> DataFusionError {
    let known: Vec<String> = session
        .dataverse
        .metadata()
        .entities_loaded()
        .map(|list| list.iter().map(|e| e.logical_name.clone()).collect())
        .unwrap_or_default();
    DataFusionError::Plan(match closest(name, &known) {
        Some(hint) => format!("table '{name}' not found; did you mean '{hint}'?"),
        None => format!("table '{name}' not found; \\d lists the tables"),
    })
}

/// `\d NAME`: a Dataverse table (plain or `dataverse.`), any other `schema.table` through
/// DataFusion's catalog, or a schema's tables.
async fn describe_any(session: &Session, name: &str) -> Result<()> {
    let catalog_name = session
        .ctx
        .state()
        .config_options()
        .catalog
        .default_catalog
        .clone();
    let Some((schema, table)) = name.split_once('.') else {
        // `\d metadata`: a schema's tables (no Dataverse table is named like a schema).
        if name != datafusion_dataverse::SCHEMA_NAME
            && let Some(schema) = session
                .ctx
                .catalog(&catalog_name)
                .and_then(|c| c.schema(&name.to_lowercase()))
        {
            let mut names = schema.table_names();
            names.sort();
            return print_rows(
                session,
                &["table"],
                names.into_iter().map(|n| vec![n]).collect(),
            );
        }
        return describe(session, name).await;
    };
    let schema = schema.to_lowercase();
    if schema == datafusion_dataverse::SCHEMA_NAME {
        return describe(session, table).await;
    }
    // Through the context, which also knows `information_schema`.
    let found = match session.ctx.table_provider(name.to_lowercase()).await {
        Ok(found) => found,
        Err(_) => {
            let catalog = session.ctx.catalog(&catalog_name);
            let Some(provider) = catalog.as_ref().and_then(|c| c.schema(&schema)) else {
                let mut schemas = catalog.map(|c| c.schema_names()).unwrap_or_default();
                schemas.push("information_schema".into());
                schemas.sort();
                return Err(DataFusionError::Plan(format!(
                    "schema '{schema}' not found; the schemas are {}",
                    schemas.join(", ")
                )));
            };
            let mut names = provider.table_names();
            names.sort();
            return Err(DataFusionError::Plan(match closest(table, &names) {
                Some(hint) => {
                    format!("table '{schema}.{table}' not found; did you mean '{schema}.{hint}'?")
                }
                None => format!(
                    "table '{schema}.{table}' not found; its tables are {}",
                    names.join(", ")
                ),
            }));
        }
    };
    let rows = found
        .schema()
        .fields()
        .iter()
        .map(|f| {
            vec![
                f.name().clone(),
                f.data_type().to_string(),
                yes_no(f.is_nullable()),
            ]
        })
        .collect();
    print_rows(session, &["column", "arrow_type", "nullable"], rows)
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
        return Err(not_found(session, name));
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
    print.output.clone().with(|out| print.print(out, &[batch]))
}
