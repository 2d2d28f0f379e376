//! Printing results: aligned tables (with a row cap), CSV with a header, a JSON array, or one
//! JSON object per line. NULL is `NULL` in tables and `null` in JSON; decimals and
//! timestamps are printed exactly as Arrow holds them.

use std::io::Write;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::FormatOptions;
use datafusion::arrow::util::pretty::pretty_format_batches_with_options;
use datafusion::error::{DataFusionError, Result};

use super::args::Format;

/// How results are printed.
#[derive(Clone, Debug)]
pub struct PrintOptions {
    pub format: Format,
    /// Table format only: rows shown at most (0 = all).
    pub max_rows: usize,
    pub quiet: bool,
    pub timing: bool,
}

fn io(e: std::io::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl PrintOptions {
    /// Writes `batches` to `out` in the chosen format.
    pub fn print(&self, out: &mut dyn Write, batches: &[RecordBatch]) -> Result<()> {
        match self.format {
            Format::Table => self.print_table(out, batches),
            Format::Csv => write_csv(out, batches, true),
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

    fn print_table(&self, out: &mut dyn Write, batches: &[RecordBatch]) -> Result<()> {
        let total: usize = batches.iter().map(|b| b.num_rows()).sum();
        self.print_table_with_total(out, batches, total)
    }

    /// A table of (at most `max_rows` of) `batches`, noting when `total` rows were more.
    pub fn print_table_with_total(
        &self,
        out: &mut dyn Write,
        batches: &[RecordBatch],
        total: usize,
    ) -> Result<()> {
        let shown = capped(batches, self.max_rows);
        let options = FormatOptions::default().with_null("NULL");
        if shown.iter().all(|b| b.num_columns() == 0) {
            return Ok(());
        }
        let table = pretty_format_batches_with_options(&shown, &options)?;
        writeln!(out, "{table}").map_err(io)?;
        if self.max_rows > 0 && total > self.max_rows {
            writeln!(
                out,
                "({} of {total} rows shown; use --max-rows 0 or \\pset max_rows 0 for all)",
                self.max_rows
            )
            .map_err(io)?;
        }
        Ok(())
    }
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
