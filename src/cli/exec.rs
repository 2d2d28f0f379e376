//! Running statements: split a script into SQL statements and backslash commands, plan and
//! execute each, stream the results to the printer, and report `N rows in X s, M requests`.
//! Ctrl-C cancels the running statement, not the program.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{SchemaRef, UInt64Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use datafusion_dataverse::Dataverse;
use futures::StreamExt;

use super::args::Format;
use super::cancel::{self, Interrupts};
use super::command;
use super::explain;
use super::print::{self, Output, PrintOptions};
use super::progress::Progress;

/// Whether `sql` holds only whole statements: nothing but whitespace and comments, or a last
/// token of `;` (outside strings and comments, which is why it tokenizes rather than looks
/// at the last character).
pub fn is_complete(sql: &str) -> bool {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        // An unterminated string or comment: more lines are to come.
        return false;
    };
    tokens
        .iter()
        .rev()
        .find(|t| !matches!(t, Token::Whitespace(_)))
        .is_none_or(|t| *t == Token::SemiColon)
}

/// What the caller should do after a script.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    Quit,
}

/// One connected session: the DataFusion context, the environment, and print settings.
pub struct Session {
    pub ctx: SessionContext,
    pub dataverse: Dataverse,
    pub print: PrintOptions,
    /// Show progress on stderr (a terminal, not quiet).
    pub progress: bool,
    /// SIGINT / SIGTERM: cancel the running statement.
    pub interrupts: Interrupts,
    /// The file being run (`-f`), named in errors with the line.
    pub source: Option<String>,
}

impl Session {
    /// Runs a script: SQL statements ending in `;` and backslash commands on their own lines.
    /// Stops at the first error.
    pub async fn run_script(&mut self, text: &str) -> Result<Outcome> {
        let mut sql = String::new();
        // The line (1-based) `sql` starts on, for `file:line` in errors.
        let mut first_line = 1;
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            // A backslash line is a command when the statements before it are complete; they
            // run first, so `SELECT …;` then `\pset format csv` apply in order.
            if trimmed.starts_with('\\') && is_complete(&sql) {
                if !sql.trim().is_empty() {
                    self.run_sql_at(&sql, first_line).await?;
                    sql.clear();
                }
                let outcome = command::run(self, trimmed)
                    .await
                    .map_err(|e| self.located(e, i + 1))?;
                if outcome == Outcome::Quit {
                    return Ok(Outcome::Quit);
                }
                first_line = i + 2;
                continue;
            }
            if sql.trim().is_empty() {
                sql.clear();
                first_line = i + 1;
            }
            sql.push_str(line);
            sql.push('\n');
        }
        if !sql.trim().is_empty() {
            self.run_sql_at(&sql, first_line).await?;
        }
        Ok(Outcome::Continue)
    }

    /// `error` prefixed with `file:line: ` when a file is running (see [`Session::source`]).
    fn located(&self, error: DataFusionError, line: usize) -> DataFusionError {
        match &self.source {
            Some(file) if !is_broken_pipe(&error) && !cancel::is_cancelled(&error) => {
                DataFusionError::Plan(format!("{file}:{line}: {}", one_line(&error)))
            }
            _ => error,
        }
    }

    /// Parses and runs the statements in `sql` one at a time, so that those before a syntax
    /// error have run when it is reported (as in psql). The loop is `DFParser::parse_statements`
    /// with each statement run as soon as it is parsed and its end found.
    pub async fn run_sql(&mut self, sql: &str) -> Result<()> {
        self.run_sql_at(sql, 1).await
    }

    /// [`Session::run_sql`] for `sql` that starts on line `first_line` of the script.
    async fn run_sql_at(&mut self, sql: &str, first_line: usize) -> Result<()> {
        // Blank lines in front make the parser's positions (`at Line: 4, Column: 10`) the
        // script's own.
        let padded = format!("{}{sql}", "\n".repeat(first_line.saturating_sub(1)));
        let dialect = GenericDialect {};
        let mut parser = DFParserBuilder::new(padded.as_str())
            .with_dialect(&dialect)
            .build()
            .map_err(syntax_error)
            .map_err(|e| self.located(e, first_line))?;
        loop {
            while parser.parser.consume_token(&Token::SemiColon) {}
            let next = parser.parser.peek_token();
            if next == Token::EOF {
                return Ok(());
            }
            let line = (next.span.start.line as usize).max(first_line);
            let statement = parser
                .parse_statement()
                .map_err(syntax_error)
                .map_err(|e| self.located(e, line))?;
            // `SELECT 1 SELECT 2` is one bad statement, not a good one followed by an error.
            let next = parser.parser.peek_token();
            if next != Token::SemiColon && next != Token::EOF {
                return Err(self.located(
                    DataFusionError::Plan(format!(
                        "syntax error: Expected: end of statement, found: {next}{}",
                        next.span.start
                    )),
                    line,
                ));
            }
            let result = self.run_statement(statement).await;
            result.map_err(|e| self.located(e, line))?;
        }
    }

    /// Runs one statement; change tokens read by it are saved only if it succeeds as a whole
    /// (a failed `COPY` of `table_changes` leaves the saved token where it was).
    async fn run_statement(&mut self, statement: Statement) -> Result<()> {
        let feed = self.dataverse.changes().clone();
        feed.set_auto_commit(false);
        let result = self.run_statement_inner(statement).await;
        match &result {
            Ok(()) => feed
                .commit()
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
            Err(_) => feed.discard(),
        }
        result
    }

    async fn run_statement_inner(&mut self, statement: Statement) -> Result<()> {
        let started = Instant::now();
        let before = self.dataverse.stats();
        let sql = statement.to_string();
        let guard = self.interrupts.statement();
        let cancel = guard.cancel().clone();
        let progress = Progress::start(self.progress, self.dataverse.clone());
        let run = async {
            // table_changes() plans synchronously: load its metadata first, without blocking.
            self.dataverse
                .prepare_statement(&statement)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let plan = self.ctx.state().statement_to_plan(statement).await?;
            let kind = StatementKind::of(&plan);
            let df = self.ctx.execute_logical_plan(plan).await?;
            let task_ctx = Arc::new(df.task_ctx());
            let physical = df.create_physical_plan().await?;
            let physical = cancel::with_cancel_checks(physical, &cancel)?;
            let mut stream = execute_stream(physical, task_ctx)?;
            let mut sink = Sink::new(&self.print, kind, stream.schema());
            while let Some(batch) = stream.next().await {
                sink.push(batch?)?;
            }
            Ok::<_, DataFusionError>((kind, sink))
        };
        // Dropping `run` drops the stream (aborting the tasks at their next await); the
        // cancel checks stop the ones that never await.
        let outcome = tokio::select! {
            r = run => r,
            _ = cancel.cancelled() => Err(cancel::cancelled_error()),
        };
        progress.finish();
        drop(guard);
        let (kind, sink) =
            outcome.map_err(|e| match super::errors::reword(&e, &sql, &self.dataverse) {
                Some(message) => DataFusionError::Plan(message),
                None => e,
            })?;
        let elapsed = started.elapsed();
        let stats = self.dataverse.stats().since(&before);
        sink.finish(&self.print)?;
        let time = if self.print.timing {
            format!(" in {}", seconds(elapsed))
        } else {
            String::new()
        };
        let footer = match kind {
            StatementKind::Query | StatementKind::Explain => Some(format!(
                "{}{time}{}",
                plural(sink.rows as u64, "row"),
                requests_note(&stats)
            )),
            StatementKind::Copy => Some(format!(
                "wrote {}{time}{}",
                plural(sink.copied, "row"),
                requests_note(&stats)
            )),
            StatementKind::Other => None,
        };
        // The footer goes to stderr so that stdout holds only results.
        if let Some(footer) = footer
            && !self.print.quiet
            && !self.print.tuples_only
        {
            eprintln!("{footer}");
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatementKind {
    Query,
    /// `EXPLAIN [ANALYZE]`: printed as plan sections in table format.
    Explain,
    Copy,
    Other,
}

impl StatementKind {
    fn of(plan: &LogicalPlan) -> Self {
        match plan {
            LogicalPlan::Copy(_) => StatementKind::Copy,
            LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) => StatementKind::Other,
            LogicalPlan::Dml(_) => StatementKind::Copy,
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => StatementKind::Explain,
            _ => StatementKind::Query,
        }
    }
}

/// Receives batches as they arrive: tables keep the first rows (and count the rest); CSV and
/// JSON stream straight to the output so large exports never sit in memory.
struct Sink {
    kind: StatementKind,
    /// Printed as an empty table (or a CSV header) when no batch arrives.
    schema: SchemaRef,
    format: Format,
    kept: Vec<RecordBatch>,
    kept_rows: usize,
    max_rows: usize,
    rows: usize,
    copied: u64,
    streamed: bool,
    header: bool,
    output: Output,
}

impl Sink {
    fn new(print: &PrintOptions, kind: StatementKind, schema: SchemaRef) -> Self {
        Self {
            kind,
            schema,
            format: print.format,
            kept: Vec::new(),
            kept_rows: 0,
            max_rows: if kind == StatementKind::Explain {
                0
            } else {
                print.max_rows
            },
            rows: 0,
            copied: 0,
            streamed: false,
            header: !print.tuples_only,
            output: print.output.clone(),
        }
    }

    fn push(&mut self, batch: RecordBatch) -> Result<()> {
        self.rows += batch.num_rows();
        let batch = if self.kind == StatementKind::Explain {
            explain::clean_batch(batch)?
        } else {
            batch
        };
        if self.kind == StatementKind::Copy {
            if let Some(col) = batch.columns().first()
                && let Some(counts) = col.as_primitive_opt::<UInt64Type>()
            {
                self.copied += counts.iter().flatten().sum::<u64>();
            }
            return Ok(());
        }
        match self.format {
            Format::Table => {
                // Keep one more row than shown so the printer knows rows were cut.
                if self.max_rows == 0 || self.kept_rows <= self.max_rows {
                    self.kept_rows += batch.num_rows();
                    self.kept.push(batch);
                }
            }
            // JSON arrays need all batches through one writer; keep them (bounded by memory).
            Format::Json => self.kept.push(batch),
            Format::Csv | Format::Ndjson => {
                let header = self.header && !self.streamed;
                self.streamed = true;
                let batches = std::slice::from_ref(&batch);
                let format = self.format;
                self.output.with(|out| match format {
                    Format::Csv => print::write_csv(out, batches, header),
                    _ => print::write_ndjson(out, batches),
                })?;
            }
        }
        Ok(())
    }

    fn finish(&self, print: &PrintOptions) -> Result<()> {
        if !matches!(self.kind, StatementKind::Query | StatementKind::Explain) {
            return Ok(());
        }
        let empty;
        let kept = if self.kept.is_empty() && !self.schema.fields().is_empty() {
            // No batch arrived: still show the columns (a table header, a CSV header).
            empty = [RecordBatch::new_empty(self.schema.clone())];
            &empty[..]
        } else {
            &self.kept[..]
        };
        match self.format {
            Format::Table => {
                let text = if self.kind == StatementKind::Explain {
                    let width = print
                        .screen
                        .map_or(explain::WIDTH, |(cols, _)| cols.max(40));
                    explain::render(kept, width)?
                } else {
                    // The printer caps the rows and needs the total to say how many were cut.
                    print.render_table(kept, self.rows)?
                };
                if !print::page(&text, print) {
                    self.output
                        .with(|out| out.write_all(text.as_bytes()).map_err(print::io))?;
                }
                Ok(())
            }
            Format::Json => self.output.with(|out| print.print(out, kept)),
            Format::Csv | Format::Ndjson => {
                if !self.streamed {
                    // An empty result still gets its CSV header.
                    self.output.with(|out| print.print(out, kept))?;
                }
                Ok(())
            }
        }
    }
}

fn plural(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn requests_note(stats: &datafusion_dataverse::StatsSnapshot) -> String {
    let mut note = format!(", {}", plural(stats.requests, "request"));
    if stats.retries > 0 {
        note.push_str(&format!(
            ", {} ({:.1} s waiting)",
            plural(stats.retries, "retry"),
            stats.waited.as_secs_f64()
        ));
    }
    note
}

/// The parser's error reads `SQL error: ParserError("…")` (its Debug form); say it plainly.
fn syntax_error(error: DataFusionError) -> DataFusionError {
    if let DataFusionError::SQL(e, _) = error.find_root() {
        let text = e.to_string();
        let text = text.strip_prefix("sql parser error: ").unwrap_or(&text);
        return DataFusionError::Plan(format!("syntax error: {text}"));
    }
    error
}

/// Whether writing the results failed because the reader went away (`dvsql … | head`): not
/// an error to report, just a reason to stop.
pub fn is_broken_pipe(error: &DataFusionError) -> bool {
    let io = match error.find_root() {
        DataFusionError::IoError(e) => Some(e),
        DataFusionError::ArrowError(e, _) => match e.as_ref() {
            datafusion::arrow::error::ArrowError::IoError(_, e) => Some(e),
            _ => None,
        },
        DataFusionError::External(e) => e.downcast_ref::<std::io::Error>(),
        _ => None,
    };
    io.is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// One line for a user: the error and its causes, DataFusion's nesting ("External error: …")
/// and line breaks removed.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    // The library keeps causes as sources; here, where the error is printed, they are joined.
    let text = datafusion_dataverse::error_report(error);
    let mut text = text.as_str();
    for prefix in [
        "External error: ",
        "Execution error: ",
        "Error during planning: ",
        "Arrow error: External error: ",
        "Arrow error: ",
        "External error: ",
    ] {
        text = text.strip_prefix(prefix).unwrap_or(text);
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_complete_at_a_semicolon_outside_strings_and_comments() {
        assert!(is_complete(""));
        assert!(is_complete("-- only a comment\n"));
        assert!(is_complete("SELECT 1;"));
        assert!(is_complete("SELECT 1; -- done\n"));
        assert!(!is_complete("SELECT 1"));
        assert!(!is_complete("SELECT ';"));
        assert!(!is_complete("SELECT 1 /* ; */"));
    }

    #[test]
    fn errors_become_one_line() {
        assert_eq!(
            one_line(&DataFusionError::External(
                "cannot reach\n  http://x".into()
            )),
            "cannot reach http://x"
        );
    }
}
