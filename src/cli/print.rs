//! Printing results: aligned tables (with a row cap, expanded records with `\x`, tuples only
//! with `-t`), CSV with a header, a JSON array, or one JSON object per line. NULL is `NULL` in
//! tables and `null` in JSON; decimals and timestamps are printed exactly as Arrow holds them.
//! Table cells are one line each: tabs, line breaks and other control characters are shown
//! escaped (`\t`, `\n`), so data cannot break the layout. EXPLAIN output is printed as plan
//! sections rather than a table (see [`super::explain`]).

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::{DataFusionError, Result};

use super::args::Format;

/// `\x`: one record per block of `column | value` lines instead of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expanded {
    Off,
    On,
    /// Expanded when the table would be wider than the terminal.
    Auto,
}

impl Expanded {
    pub fn name(self) -> &'static str {
        match self {
            Expanded::Off => "off",
            Expanded::On => "on",
            Expanded::Auto => "auto",
        }
    }
}

/// Where results go: standard output, or the file of `-o FILE`.
#[derive(Clone, Debug, Default)]
pub struct Output {
    file: Option<Arc<Mutex<std::io::BufWriter<std::fs::File>>>>,
}

impl Output {
    pub fn file(path: &Path) -> std::result::Result<Self, String> {
        let file = std::fs::File::create(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Self {
            file: Some(Arc::new(Mutex::new(std::io::BufWriter::new(file)))),
        })
    }

    pub fn is_stdout(&self) -> bool {
        self.file.is_none()
    }

    /// Runs `f` on the destination, flushing afterwards.
    pub fn with<R>(&self, f: impl FnOnce(&mut dyn Write) -> Result<R>) -> Result<R> {
        match &self.file {
            None => {
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                let r = f(&mut out)?;
                out.flush().map_err(io)?;
                Ok(r)
            }
            Some(file) => {
                let mut out = file.lock().expect("not poisoned");
                let r = f(&mut *out)?;
                out.flush().map_err(io)?;
                Ok(r)
            }
        }
    }
}

/// How results are printed.
#[derive(Clone, Debug)]
pub struct PrintOptions {
    pub format: Format,
    /// Table format only: rows shown at most (0 = all).
    pub max_rows: usize,
    pub quiet: bool,
    pub timing: bool,
    /// No column names and no footer (`-t`).
    pub tuples_only: bool,
    pub expanded: Expanded,
    /// Page long tables through `$PAGER` (only at a prompt on a terminal).
    pub pager: bool,
    /// The terminal's (columns, rows), known at a prompt; `None` in scripts.
    pub screen: Option<(usize, usize)>,
    pub output: Output,
}

impl PrintOptions {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            max_rows: 100,
            quiet: false,
            timing: true,
            tuples_only: false,
            expanded: Expanded::Off,
            pager: true,
            screen: None,
            output: Output::default(),
        }
    }
}

pub fn io(e: std::io::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl PrintOptions {
    /// Writes `batches` to `out` in the chosen format.
    pub fn print(&self, out: &mut dyn Write, batches: &[RecordBatch]) -> Result<()> {
        match self.format {
            Format::Table => {
                let total: usize = batches.iter().map(|b| b.num_rows()).sum();
                let text = self.render_table(batches, total)?;
                out.write_all(text.as_bytes()).map_err(io)
            }
            Format::Csv => write_csv(out, batches, !self.tuples_only),
            Format::Json => {
                let mut writer = datafusion::arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, datafusion::arrow::json::writer::JsonArray>(&mut *out);
                for b in batches {
                    writer.write(b)?;
                }
                writer.finish()?;
                writeln!(out).map_err(io)
            }
            Format::Ndjson => write_ndjson(out, batches),
        }
    }

    /// A table of (at most `max_rows` of) `batches`, noting when `total` rows were more.
    pub fn render_table(&self, batches: &[RecordBatch], total: usize) -> Result<String> {
        let Some(first) = batches.first() else {
            return Ok(String::new());
        };
        let schema = first.schema();
        if schema.fields().is_empty() {
            return Ok(String::new());
        }
        let shown = capped(batches, self.max_rows);
        let cells = Cells::of(&schema, &shown)?;
        let table = cells.table(self.tuples_only);
        let expanded = match self.expanded {
            Expanded::Off => false,
            Expanded::On => true,
            Expanded::Auto => self.screen.is_some_and(|(cols, _)| {
                table
                    .lines()
                    .next()
                    .is_some_and(|l| l.chars().count() > cols)
            }),
        };
        let mut text = if expanded { cells.expanded() } else { table };
        if self.max_rows > 0 && total > self.max_rows {
            text.push_str(&format!(
                "({} of {total} rows shown; use --max-rows 0 or \\pset max_rows 0 for all)\n",
                self.max_rows
            ));
        }
        Ok(text)
    }
}

/// Every shown cell as one line of text.
struct Cells {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Cells {
    fn of(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Self> {
        let options = FormatOptions::default().with_null("NULL");
        let header = schema.fields().iter().map(|f| escape(f.name())).collect();
        let mut rows = Vec::new();
        for batch in batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            for row in 0..batch.num_rows() {
                rows.push(
                    formatters
                        .iter()
                        .map(|f| escape(&f.value(row).to_string()))
                        .collect(),
                );
            }
        }
        Ok(Self { header, rows })
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        widths
    }

    /// The bordered table (as Arrow's pretty printer draws it), or with `tuples_only` the rows
    /// alone, separated by ` | `.
    fn table(&self, tuples_only: bool) -> String {
        let widths = self.widths();
        let mut out = String::new();
        if tuples_only {
            for row in &self.rows {
                let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| pad(c, *w)).collect();
                out.push_str(cells.join(" | ").trim_end());
                out.push('\n');
            }
            return out;
        }
        let border: String = widths
            .iter()
            .map(|w| format!("+{}", "-".repeat(w + 2)))
            .collect::<String>()
            + "+\n";
        let line = |cells: &[String]| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("| {} ", pad(c, *w)))
                .collect::<String>()
                + "|\n"
        };
        out.push_str(&border);
        out.push_str(&line(&self.header));
        out.push_str(&border);
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out.push_str(&border);
        out
    }

    /// psql's `\x` layout: a `-[ RECORD n ]` line, then `column | value` per column.
    fn expanded(&self) -> String {
        let name_width = self.header.iter().map(|h| width(h)).max().unwrap_or(0);
        let value_width = self
            .rows
            .iter()
            .flat_map(|r| r.iter().map(|c| width(c)))
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        if self.rows.is_empty() {
            out.push_str("(0 rows)\n");
        }
        for (i, row) in self.rows.iter().enumerate() {
            let title = format!("-[ RECORD {} ]", i + 1);
            // The `+` marks the column of the `|` below, when the title leaves room for it.
            if width(&title) <= name_width + 1 {
                out.push_str(&format!(
                    "{title}{}+{}\n",
                    "-".repeat(name_width + 1 - width(&title)),
                    "-".repeat(value_width + 1)
                ));
            } else {
                let total = (name_width + 3 + value_width).max(width(&title));
                out.push_str(&format!("{title}{}\n", "-".repeat(total - width(&title))));
            }
            for (name, value) in self.header.iter().zip(row) {
                out.push_str(format!("{} | {value}", pad(name, name_width)).trim_end());
                out.push('\n');
            }
        }
        out
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad(s: &str, w: usize) -> String {
    let mut out = s.to_string();
    out.extend(std::iter::repeat_n(' ', w.saturating_sub(width(s))));
    out
}

/// One line per cell: control characters shown as escapes.
pub fn escape(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Shows `text` through `$PAGER` (default `less -SRX`: long lines chopped, scroll sideways)
/// when it is taller or wider than the terminal, as psql does. Returns false when no pager
/// ran and the caller is to print `text` itself.
pub fn page(text: &str, print: &PrintOptions) -> bool {
    let Some((cols, rows)) = print.screen else {
        return false;
    };
    // A terminal without a size (a new pseudo-terminal) reports endless rows: not paged.
    if !print.pager || !print.output.is_stdout() || rows >= usize::from(u16::MAX) {
        return false;
    }
    let tall = text.lines().count() + 2 > rows;
    let wide = text.lines().any(|l| l.chars().count() > cols);
    if !tall && !wide {
        return false;
    }
    let pager = std::env::var("PAGER")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "less -SRX".to_string());
    let Ok(mut child) = std::process::Command::new("sh")
        .args(["-c", &pager])
        .stdin(std::process::Stdio::piped())
        .spawn()
    else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        // The pager may quit before reading everything (`q` in less): not an error.
        let _ = stdin.write_all(text.as_bytes());
    }
    // 127: the shell found no such command; the text is printed instead.
    !matches!(child.wait().map(|s| s.code()), Ok(Some(127)) | Err(_))
}

/// CSV, with a header line when `header` (streamed exports write it with the first batch only).
pub fn write_csv(out: &mut dyn Write, batches: &[RecordBatch], header: bool) -> Result<()> {
    let mut writer = datafusion::arrow::csv::WriterBuilder::new()
        .with_header(header)
        .build(&mut *out);
    for b in batches {
        writer.write(b)?;
    }
    Ok(())
}

/// One JSON object per row and line, NULLs written as `null`.
pub fn write_ndjson(out: &mut dyn Write, batches: &[RecordBatch]) -> Result<()> {
    let mut writer = datafusion::arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, datafusion::arrow::json::writer::LineDelimited>(&mut *out);
    for b in batches {
        writer.write(b)?;
    }
    writer.finish()?;
    Ok(())
}

/// The first `max_rows` rows (all when 0).
fn capped(batches: &[RecordBatch], max_rows: usize) -> Vec<RecordBatch> {
    if max_rows == 0 {
        return batches.to_vec();
    }
    let mut left = max_rows;
    let mut out = Vec::new();
    for b in batches {
        if left == 0 {
            break;
        }
        let take = b.num_rows().min(left);
        out.push(b.slice(0, take));
        left -= take;
    }
    if out.is_empty()
        && let Some(first) = batches.first()
    {
        out.push(first.slice(0, 0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("note", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 22])),
                Arc::new(StringArray::from(vec![Some("a\tb\nc"), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn tables_escape_tabs_and_line_breaks() {
        let text = PrintOptions::new(Format::Table)
            .render_table(&[batch()], 2)
            .unwrap();
        assert_eq!(
            text,
            "+----+---------+\n| id | note    |\n+----+---------+\n| 1  | a\\tb\\nc |\n| 22 | NULL    |\n+----+---------+\n"
        );
    }

    #[test]
    fn expanded_shows_one_record_per_block() {
        let mut print = PrintOptions::new(Format::Table);
        print.expanded = Expanded::On;
        let text = print.render_table(&[batch()], 2).unwrap();
        assert_eq!(
            text,
            "-[ RECORD 1 ]-\nid   | 1\nnote | a\\tb\\nc\n-[ RECORD 2 ]-\nid   | 22\nnote | NULL\n"
        );
    }

    #[test]
    fn tuples_only_has_no_header_or_borders() {
        let mut print = PrintOptions::new(Format::Table);
        print.tuples_only = true;
        let text = print.render_table(&[batch()], 2).unwrap();
        assert_eq!(text, "1  | a\\tb\\nc\n22 | NULL\n");
    }
}
