//! Backslash commands, in the psql / datafusion-cli tradition.
//!
//! [`COMMANDS`] is the one list of them: `\?` is printed from it, Tab completes from it and
//! [`run`] dispatches on it, so a command cannot exist without its help. `\d` answers from the
//! `metadata` schema through SQL, the same tables a user can query.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result};
use datafusion_dataverse::METADATA_SCHEMA;
use datafusion_dataverse::internals::closest;

use super::args::Format;
use super::exec::{Outcome, Session};
use super::print::Expanded;

/// What a command does; [`run`] matches on it together with the arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Help,
    Quit,
    Describe,
    Expanded,
    Pset,
    Timing,
    Pushdown,
    Refresh,
    Changes,
    ResetChanges,
    Stats,
}

/// One way to call a command: a line of `\?`.
pub struct Usage {
    /// What follows the name (`[on|off]`, `format F`); empty for nothing.
    pub args: &'static str,
    /// What it does. A line break continues the text under the first line.
    pub help: &'static str,
}

/// One backslash command.
pub struct Command {
    /// The name and its aliases (`\q`, `\quit`); `\?` shows the first.
    pub names: &'static [&'static str],
    pub usages: &'static [Usage],
    action: Action,
}

const fn usage(args: &'static str, help: &'static str) -> Usage {
    Usage { args, help }
}

/// Every backslash command, in the order `\?` lists them.
pub const COMMANDS: &[Command] = &[
    Command {
        names: &["\\?", "\\h", "\\help"],
        usages: &[usage("", "this help")],
        action: Action::Help,
    },
    Command {
        names: &["\\q", "\\quit"],
        usages: &[usage("", "quit (or Ctrl-D)")],
        action: Action::Quit,
    },
    Command {
        names: &["\\d"],
        usages: &[
            usage("", "list tables"),
            usage(
                "NAME",
                "describe a table: columns, Dataverse and Arrow types\n\
                 (also schema.table: metadata.entity, information_schema.tables)",
            ),
        ],
        action: Action::Describe,
    },
    Command {
        names: &["\\x"],
        usages: &[usage(
            "[on|off|auto]",
            "expanded display: one column per line (auto: when wider than the screen)",
        )],
        action: Action::Expanded,
    },
    Command {
        names: &["\\pset"],
        usages: &[
            usage("", "show the print settings"),
            usage("format F", "output format: table, csv, json, ndjson"),
            usage("max_rows N", "rows shown in table format (0 = all)"),
            usage(
                "pager on|off",
                "page long results through $PAGER at the prompt",
            ),
            usage(
                "tuples_only on|off",
                "rows only: no column names, no footer",
            ),
        ],
        action: Action::Pset,
    },
    Command {
        names: &["\\timing"],
        usages: &[usage(
            "[on|off]",
            "show elapsed time after each statement (toggles without argument)",
        )],
        action: Action::Timing,
    },
    Command {
        names: &["\\pushdown"],
        usages: &[usage(
            "[on|off]",
            "push filters to the server (off = evaluate everything locally)",
        )],
        action: Action::Pushdown,
    },
    Command {
        names: &["\\refresh"],
        usages: &[usage("", "forget cached metadata and reload it")],
        action: Action::Refresh,
    },
    Command {
        names: &["\\changes"],
        usages: &[
            usage("", "saved change-tracking tokens (table_changes)"),
            usage(
                "ENV",
                "another environment's tokens (with several --config)",
            ),
        ],
        action: Action::Changes,
    },
    Command {
        names: &["\\reset_changes"],
        usages: &[usage(
            "T",
            "forget T's change token: the next table_changes('T') is a full load",
        )],
        action: Action::ResetChanges,
    },
    Command {
        names: &["\\stats"],
        usages: &[usage("", "requests, rows, bytes, retries and 429s so far")],
        action: Action::Stats,
    },
];

/// What `\?` says after the commands.
const HELP_FOOTER: &str =
    "SQL statements end with ';' and may span lines. EXPLAIN shows the OData request each scan
sends. Tab lists completions. Ctrl-C cancels the running statement; exit, quit or Ctrl-D quits.";

/// Width of the name-and-arguments column of `\?`.
const SYNOPSIS_WIDTH: usize = 18;

/// The `\?` text, generated from [`COMMANDS`].
pub fn help() -> String {
    let mut text = String::from("Backslash commands:\n");
    for command in COMMANDS {
        for usage in command.usages {
            text.push_str(&help_line(command.names[0], usage));
        }
    }
    text.push_str(HELP_FOOTER);
    text
}

fn help_line(name: &str, usage: &Usage) -> String {
    let synopsis = if usage.args.is_empty() {
        name.to_string()
    } else {
        format!("{name} {}", usage.args)
    };
    // A synopsis wider than its column gets two spaces, so it reads apart from its help.
    let gap = if synopsis.len() > SYNOPSIS_WIDTH {
        "  "
    } else {
        " "
    };
    let continued = format!("\n{}", " ".repeat(2 + SYNOPSIS_WIDTH + 1));
    let help = usage.help.replace('\n', &continued);
    format!("  {synopsis:<SYNOPSIS_WIDTH$}{gap}{help}\n")
}

/// Every command name and alias, for completion.
pub fn names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().flat_map(|c| c.names.iter().copied())
}

fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.names.contains(&name))
}

/// Runs one backslash command line.
pub async fn run(session: &mut Session, line: &str) -> Result<Outcome> {
    let mut words = line.trim().trim_end_matches(';').split_whitespace();
    let name = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    let Some(command) = find(name) else {
        return Err(DataFusionError::Plan(format!(
            "unknown command {}; \\? lists the commands",
            line.trim()
        )));
    };
    match (command.action, args.as_slice()) {
        (Action::Quit, _) => return Ok(Outcome::Quit),
        (Action::Help, _) => println!("{}", help()),
        (Action::Describe, []) => list_tables(session).await?,
        (Action::Describe, [table]) => describe_any(session, table).await?,
        (Action::Expanded, []) => toggle_expanded(session),
        (Action::Expanded, [value]) => {
            session.print.expanded = expanded_value(value)?;
            say_expanded(session);
        }
        (Action::Pset, []) => show_settings(session),
        (Action::Pset, [name]) => show_setting(session, name)?,
        (Action::Pset, [name, value]) => set(session, name, value)?,
        (Action::Timing, []) => {
            session.print.timing = !session.print.timing;
            say_timing(session);
        }
        (Action::Timing, [value]) => {
            session.print.timing = on_off("timing", value)?;
            say_timing(session);
        }
        (Action::Pushdown, []) => println!("pushdown is {}", word(session.dataverse.pushdown())),
        (Action::Pushdown, [value @ ("on" | "off")]) => {
            session.dataverse.set_pushdown(*value == "on")
        }
        (Action::Changes, []) => {
            session
                .run_sql("SELECT entity, saved_at, age_seconds FROM dataverse_change_tokens() ORDER BY entity")
                .await?;
        }
        (Action::Changes, [environment]) => {
            let sql = format!(
                "SELECT entity, saved_at, age_seconds FROM dataverse_change_tokens({}) ORDER BY entity",
                quoted(environment)
            );
            session.run_sql(&sql).await?;
        }
        (Action::ResetChanges, [table]) => reset_changes(session, table).await?,
        (Action::Refresh, []) => refresh(session).await?,
        (Action::Stats, []) => show_stats(session),
        _ => {
            return Err(DataFusionError::Plan(format!(
                "wrong arguments in {}; \\? shows how {name} is used",
                line.trim()
            )));
        }
    }
    Ok(Outcome::Continue)
}

fn toggle_expanded(session: &mut Session) {
    session.print.expanded = match session.print.expanded {
        Expanded::Off => Expanded::On,
        Expanded::On | Expanded::Auto => Expanded::Off,
    };
    say_expanded(session);
}

async fn reset_changes(session: &Session, table: &str) -> Result<()> {
    known_table(session, table).await?;
    let had = session
        .dataverse
        .changes()
        .reset(table)
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    if had {
        eprintln!(
            "change token of {table} forgotten: the next table_changes('{table}') is a full load"
        );
    } else {
        eprintln!("{table} had no saved change token");
    }
    Ok(())
}

async fn refresh(session: &Session) -> Result<()> {
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
    Ok(())
}

fn show_stats(session: &Session) {
    let s = session.dataverse.stats();
    println!(
        "{} requests, {} rows, {:.1} MB, {} retries ({:.1} s waiting)",
        s.requests,
        s.rows,
        s.bytes as f64 / 1e6,
        s.retries,
        s.waited.as_secs_f64()
    );
    // The service reports its budget only through 429s: this is the client's side of it.
    println!("{}", super::progress::budget(&s));
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

fn show_setting(session: &Session, name: &str) -> Result<()> {
    match settings(session).iter().find(|(n, _)| *n == name) {
        Some((n, v)) => {
            println!("{n} is {v}");
            Ok(())
        }
        None => Err(unknown_setting(name)),
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

/// The session's Dataverse catalogs, the default first, when it has several environments;
/// empty when it has one (then nothing is qualified by environment).
fn environments(session: &Session) -> Vec<String> {
    let default = default_catalog(session);
    let mut others: Vec<String> = session
        .ctx
        .catalog_names()
        .into_iter()
        .filter(|name| *name != default && is_environment(session, name))
        .collect();
    if others.is_empty() {
        return others;
    }
    others.sort();
    std::iter::once(default).chain(others).collect()
}

/// A catalog holding an environment's `metadata` schema.
fn is_environment(session: &Session, catalog: &str) -> bool {
    session
        .ctx
        .catalog(catalog)
        .is_some_and(|c| c.schema(METADATA_SCHEMA).is_some())
}

fn default_catalog(session: &Session) -> String {
    session
        .ctx
        .state()
        .config_options()
        .catalog
        .default_catalog
        .clone()
}

/// `dev.account` or `dev.dataverse.account`: the environment `dev` (not the default) and the
/// rest of the name.
fn in_environment<'n>(session: &Session, name: &'n str) -> Option<(String, &'n str)> {
    let (first, rest) = name.split_once('.')?;
    let environment = environments(session)
        .into_iter()
        .skip(1)
        .find(|e| e.eq_ignore_ascii_case(first))?;
    Some((environment, rest))
}

/// `\d dev.account`, `\d dev.dataverse.account`: a table of another environment; any other
/// `dev.schema.table` through DataFusion's catalog.
async fn describe_in(session: &Session, environment: &str, rest: &str) -> Result<()> {
    let table = match rest.split_once('.') {
        None => rest,
        Some((schema, table)) if schema.eq_ignore_ascii_case(datafusion_dataverse::SCHEMA_NAME) => {
            table
        }
        Some((schema, table)) => {
            return describe_other(session, environment, &schema.to_lowercase(), table).await;
        }
    };
    describe(session, &metadata_of(Some(environment)), table).await
}

/// The `metadata` schema of an environment (`"dev".metadata`), or of the default one.
fn metadata_of(environment: Option<&str>) -> String {
    match environment {
        Some(name) => format!("\"{}\".{METADATA_SCHEMA}", name.replace('"', "\"\"")),
        None => METADATA_SCHEMA.to_string(),
    }
}

/// An error naming the close match unless `name` is a table of the environment.
async fn known_table(session: &Session, name: &str) -> Result<()> {
    let known = table_names(session, METADATA_SCHEMA).await?;
    if known.iter().any(|t| t == name) {
        return Ok(());
    }
    Err(not_found(name, &known))
}

/// The environment's tables, from its `metadata.entity`.
async fn table_names(session: &Session, metadata: &str) -> Result<Vec<String>> {
    let batches = query(
        session,
        &format!("SELECT logicalname FROM {metadata}.entity"),
    )
    .await?;
    let mut names = Vec::new();
    for batch in &batches {
        let column = cast(batch.column(0), &DataType::Utf8)?;
        names.extend(column.as_string::<i32>().iter().flatten().map(String::from));
    }
    Ok(names)
}

/// The same hint as `SELECT … FROM acount` gives.
fn not_found(name: &str, known: &[String]) -> DataFusionError {
    DataFusionError::Plan(match closest(name, known) {
        Some(hint) => format!("table '{name}' not found; did you mean '{hint}'?"),
        None => format!("table '{name}' not found; \\d lists the tables"),
    })
}

/// `\d NAME`: a Dataverse table (plain or `dataverse.`), any other `schema.table` through
/// DataFusion's catalog, or a schema's tables.
async fn describe_any(session: &Session, name: &str) -> Result<()> {
    if let Some((environment, rest)) = in_environment(session, name) {
        return describe_in(session, &environment, rest).await;
    }
    let catalog_name = default_catalog(session);
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
        return describe(session, METADATA_SCHEMA, name).await;
    };
    let schema = schema.to_lowercase();
    if schema == datafusion_dataverse::SCHEMA_NAME {
        return describe(session, METADATA_SCHEMA, table).await;
    }
    describe_other(session, &catalog_name, &schema, table).await
}

/// `\d schema.table` of any other schema (`information_schema` too), through the context.
async fn describe_other(
    session: &Session,
    catalog_name: &str,
    schema: &str,
    table: &str,
) -> Result<()> {
    let reference = TableReference::full(catalog_name, schema, table.to_lowercase());
    let found = match session.ctx.table_provider(reference).await {
        Ok(found) => found,
        Err(_) => {
            let catalog = session.ctx.catalog(catalog_name);
            let Some(provider) = catalog.as_ref().and_then(|c| c.schema(schema)) else {
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

/// `\d`: the tables, with their environment's name first when the session has several.
async fn list_tables(session: &Session) -> Result<()> {
    let columns = format!(
        "logicalname AS \"table\", entitysetname AS entity_set, \
         primaryidattribute AS primary_key, {} AS change_tracking, {} AS custom",
        yes_no_sql("changetrackingenabled"),
        yes_no_sql("iscustomentity"),
    );
    let environments = environments(session);
    let sql = if environments.is_empty() {
        format!("SELECT {columns} FROM {METADATA_SCHEMA}.entity ORDER BY logicalname")
    } else {
        // The default environment first, then the others by name.
        let each: Vec<String> = environments
            .iter()
            .enumerate()
            .map(|(position, name)| {
                format!(
                    "SELECT {position} AS position, {} AS environment, {columns} FROM {}.entity",
                    quoted(name),
                    metadata_of(Some(name))
                )
            })
            .collect();
        format!(
            "SELECT environment, \"table\", entity_set, primary_key, change_tracking, custom \
             FROM ({}) ORDER BY position, \"table\"",
            each.join(" UNION ALL ")
        )
    };
    print_batches(session, &query(session, &sql).await?)
}

/// A Dataverse table's columns from `metadata.attribute` (of the `metadata` schema given),
/// in the table's order, then the labels of its choice columns from `metadata.optionsetvalue`.
async fn describe(session: &Session, metadata: &str, name: &str) -> Result<()> {
    let sql = format!(
        "SELECT logicalname AS \"column\", columntype AS dataverse_type, \
         datatype AS arrow_type, {} AS nullable, \
         CASE WHEN attributeof IS NULL THEN odataname ELSE 'label of ' || attributeof END \
         AS source, pushdown AS filters \
         FROM {metadata}.attribute WHERE entitylogicalname = {} AND iscolumn \
         ORDER BY columnposition",
        yes_no_sql("isnullable"),
        quoted(name),
    );
    let columns = query(session, &sql).await?;
    // Every table has at least its primary key: no rows means no such table.
    if row_count(&columns) == 0 {
        return Err(not_found(name, &table_names(session, metadata).await?));
    }
    print_batches(session, &columns)?;
    describe_choices(session, metadata, name).await
}

/// The option values and labels of the table's choice columns, after its columns.
async fn describe_choices(session: &Session, metadata: &str, name: &str) -> Result<()> {
    let sql = format!(
        "SELECT attributelogicalname AS choice_column, value, coalesce(label, '') AS label \
         FROM {metadata}.optionsetvalue WHERE entitylogicalname = {} \
         ORDER BY attributelogicalname, value",
        quoted(name),
    );
    let options = query(session, &sql).await?;
    if row_count(&options) == 0 {
        return Ok(());
    }
    if session.print.format == Format::Table {
        println!();
    }
    print_batches(session, &options)
}

/// Runs `sql` and collects its rows: at least one batch, so an empty result still has its
/// header. No footer is printed; a description is not a query result.
async fn query(session: &Session, sql: &str) -> Result<Vec<RecordBatch>> {
    let frame = session.ctx.sql(sql).await?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let mut batches = frame.collect().await?;
    batches.retain(|b| b.num_rows() > 0);
    if batches.is_empty() {
        batches.push(RecordBatch::new_empty(schema));
    }
    Ok(batches)
}

fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// A SQL string literal.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// A boolean column shown as yes / no, in SQL.
fn yes_no_sql(column: &str) -> String {
    format!("CASE WHEN {column} THEN 'yes' ELSE 'no' END")
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
    print_batches(session, &[RecordBatch::try_new(schema, columns)?])
}

/// Prints through the session's printer, every row in table format (a description is not
/// cut at `max_rows`).
fn print_batches(session: &Session, batches: &[RecordBatch]) -> Result<()> {
    let mut print = session.print.clone();
    if print.format == Format::Table {
        print.max_rows = 0;
    }
    print.output.clone().with(|out| print.print(out, batches))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_shows_every_usage_of_every_command() {
        let help = help();
        for command in COMMANDS {
            for usage in command.usages {
                let first_line = usage.help.lines().next().unwrap();
                assert!(
                    help.lines()
                        .any(|l| l.trim_start().starts_with(command.names[0])
                            && l.contains(usage.args)
                            && l.ends_with(first_line)),
                    "{} {}: {help}",
                    command.names[0],
                    usage.args
                );
            }
        }
    }

    #[test]
    fn help_lines_continue_under_the_help_column() {
        let help = help();
        let lines: Vec<&str> = help.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with("  \\d NAME "))
            .unwrap();
        assert_eq!(lines[at].find("describe"), Some(2 + SYNOPSIS_WIDTH + 1));
        assert_eq!(
            lines[at + 1].find("(also"),
            Some(2 + SYNOPSIS_WIDTH + 1),
            "{help}"
        );
    }

    #[test]
    fn names_are_backslash_words_that_name_one_command_each() {
        let all: Vec<&str> = names().collect();
        for name in &all {
            assert!(name.starts_with('\\'), "{name}");
            assert_eq!(all.iter().filter(|n| *n == name).count(), 1, "{name}");
        }
        assert_eq!(find("\\quit").map(|c| c.action), Some(Action::Quit));
        assert!(find("\\nothing").is_none());
    }

    #[test]
    fn names_are_quoted_as_sql_literals() {
        assert_eq!(quoted("o'brien"), "'o''brien'");
    }
}
